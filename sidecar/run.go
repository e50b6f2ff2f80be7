package sidecar

import (
	"context"
	"errors"
	"fmt"
	"github.com/ethereum/go-ethereum/common"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/version"
)

// NewSigner loads the keys and local journals of cfg and builds a keeper for
// each validator. It fails on any unreadable key or corrupt journal.
func NewSigner(cfg Config, coord Coordinator, reg prometheus.Registerer, lg hclog.Logger) (*Signer, error) {
	m, err := newSignerMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Signer{mode: Mode(cfg.Mode), coord: coord, batcher: newJournalBatcher(coord), sidecar: cfg.Name, validators: map[fencing.ValidatorID]*validatorGate{}, m: m, now: time.Now}
	keys := make([]*Key, len(cfg.Keys))
	ids := make([]fencing.ValidatorID, len(cfg.Keys))
	seen := map[fencing.ValidatorID]bool{}
	for i, path := range cfg.Keys {
		k, err := LoadKey(path, cfg.PasswordFile)
		if err != nil {
			return nil, err
		}
		id := fencing.ValidatorID(k.Address.Hex()) // EIP-55: canonical
		if len(cfg.Validators) > 0 {
			if id, err = fencing.ParseValidatorID(cfg.Validators[i]); err != nil {
				return nil, err
			}
			// A validator named by an address signs with that address's
			// key only: a wrong key in the right Secret would sign under
			// another validator's lease.
			if common.IsHexAddress(string(id)) && strings.HasPrefix(string(id), "0x") && id != fencing.ValidatorID(k.Address.Hex()) {
				return nil, fmt.Errorf("--validator %s is an address, but key %s is the key of %s: give each --key its own validator, in order", id, path, k.Address.Hex())
			}
		}
		if seen[id] {
			return nil, fmt.Errorf("validator %s is configured twice", id)
		}
		seen[id] = true
		keys[i], ids[i] = k, id
	}
	journals, err := OpenLocalJournals(cfg.StateDir, cfg.Name, ids)
	if err != nil {
		return nil, err
	}
	if t := journals[0].Opened().Torn; t != nil {
		lg.Warn("local journal: cut a torn last record (a write a crash cut short; it was never acknowledged)", "at", t.Pos.String(), "bytes", t.Bytes)
	}
	for i, k := range keys {
		id, j := ids[i], journals[i]
		ko := KeeperOptions{
			Validator: id, Holder: cfg.Holder, Sidecar: cfg.Name, TTL: cfg.LeaseTTL, Margin: cfg.SafetyMargin,
			RenewEvery: cfg.RenewInterval, Logger: lg.Named("lease"),
		}
		if Mode(cfg.Mode) == ModeLease {
			ko.ReportWatermark = j.Watermark
		}
		g := &validatorGate{id: id, key: k, journal: j, keeper: NewLeaseKeeper(coord, ko)}
		s.list = append(s.list, g)
		s.validators[id] = g
		s.validators[fencing.ValidatorID(k.Address.Hex())] = g
		lg.Info("validator configured", "validator", id, "address", k.Address.Hex(), "local_watermark", wmText(j.Watermark()))
	}
	for _, c := range []prometheus.Collector{leaseCollector{signer: s}, version.Collector("fence-sidecar")} {
		if err := reg.Register(c); err != nil {
			for _, j := range journals {
				_ = j.Close()
			}
			return nil, err
		}
	}
	return s, nil
}

// Run holds every validator's lease and sends the strict-mode journal
// batches until ctx ends; the leases are released before it returns.
func (s *Signer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	bctx, stopBatcher := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { s.batcher.run(bctx) })
	var keepers sync.WaitGroup
	for _, g := range s.list {
		keepers.Go(func() { g.keeper.Run(ctx) })
	}
	keepers.Wait() // released (a release may wait for an in-flight journal write)
	stopBatcher()
	wg.Wait()
}

// Run serves until ctx ends, then releases every lease. Listeners open first
// and the first log line names the signing address.
func Run(ctx context.Context, cfg Config, lg hclog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	lg.Info("listening", "addr", ln.Addr().String(), "url", "http://"+ln.Addr().String(), "mode", cfg.Mode, "holder", cfg.Holder, "name", cfg.Name, "bare_digest", cfg.BareDigest)
	var mln net.Listener
	if cfg.MetricsListen != "" {
		if mln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.MetricsListen, err)
		}
		defer mln.Close()
		lg.Info("metrics listening", "addr", mln.Addr().String())
	}
	coord, err := api.NewClient(cfg.Coordinator, api.ClientOptions{TokenFile: cfg.TokenFile, CAFile: cfg.CoordinatorCA, CertFile: cfg.ClientCert, KeyFile: cfg.ClientKey})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	signer, err := NewSigner(cfg, coord, reg, lg)
	if err != nil {
		return err
	}
	var gate *Gate
	if cfg.GateExec != "" {
		if gate, err = NewGate(cfg, signer, reg, lg.Named("gate")); err != nil {
			return err
		}
	}
	srv := &Server{signer: signer, lg: lg, gatherer: reg, bareDigest: cfg.BareDigest}
	if host, _, err := net.SplitHostPort(cfg.Listen); err == nil {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			srv.listenHost = host
		}
	}

	kctx, stopKeepers := context.WithCancel(context.WithoutCancel(ctx))
	keepersDone := make(chan struct{})
	go func() { signer.Run(kctx); close(keepersDone) }()
	handler := srv.SigningHandler()
	gateDone := make(chan error, 1)
	if gate != nil {
		// Gate mode: the client signs in its own process; the sidecar
		// serves health and metrics only.
		handler = srv.MetricsHandler()
		go func() { gateDone <- gate.Run(kctx) }()
	}
	servers := []*http.Server{httpServer(handler)}
	lns := []net.Listener{ln}
	if mln != nil {
		servers = append(servers, httpServer(srv.MetricsHandler()))
		lns = append(lns, mln)
	}
	errc := make(chan error, len(servers))
	for i, hs := range servers {
		go func() { errc <- hs.Serve(lns[i]) }()
	}
	var gateErr error
	gateReturned := false
	select {
	case <-ctx.Done():
	case err = <-errc:
	case gateErr = <-gateDone:
		gateReturned = true
	}
	lg.Info("shutting down: releasing leases")
	for _, hs := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	stopKeepers()
	if gate != nil && !gateReturned {
		gateErr = <-gateDone // the validator client is gone, or the gate failed
	}
	if errors.Is(gateErr, ErrGateFailed) {
		// The keepers wait for the signing lock the failed gate keeps: the
		// lease is not released, it expires after its TTL.
		return fmt.Errorf("gate: %w", gateErr)
	}
	<-keepersDone
	for _, g := range signer.list {
		_ = g.journal.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if gateErr != nil {
		return fmt.Errorf("gate: %w", gateErr)
	}
	return nil
}

// httpServer serves h with timeouts: a slow or stuck client cannot hold a
// connection (or the signing lock it waits for) for long.
func httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
}
