// Package drill is the failover drill behind fence-drill (Main) and the
// building blocks of the end-to-end fault suite (e2e/): a signing workload
// that drives validators through both regions' sidecars, an observer that
// watches etcd directly, and an invariant checker over everything the
// workload received.
//
// Run performs one drill in this process, on real components: an embedded
// single-node etcd, the coordinator's HTTP API on a real listener, and an
// active (region-a) and a standby (region-b) fence-sidecar per validator,
// each serving its real signing API on 127.0.0.1. It signs, bumps every
// validator to region-b, waits for the standby's first signature, audits the
// journals and checks the invariants of docs/architecture.md:
//
//	| # | step                                                              |
//	|---|-------------------------------------------------------------------|
//	| 1 | start etcd, the coordinator, register N validators on region-a    |
//	| 2 | start active and standby sidecars; wait until the active lease    |
//	| 3 | sign: both regions ask for every HRS, with different digests      |
//	| 4 | --partition: cut region-a's sidecars off the coordinator          |
//	| 5 | bump region-a -> region-b, timeline per validator                 |
//	| 6 | wait for the first standby signature of every validator           |
//	| 7 | heal, stop signing, audit the quorum and local journals, check    |
//
// Cooperative handover (the sidecars see the revoke and release) should take
// well under a second; a partitioned one waits for the leases to expire in
// etcd, so it is bounded by the lease TTL.
package drill

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"

	"github.com/validator-fencing/fencing/coordinator"
	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/drill/faultproxy"
	"github.com/validator-fencing/fencing/internal/embedetcd"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/flagenv"
	"github.com/validator-fencing/fencing/internal/store"
	"github.com/validator-fencing/fencing/sidecar"
)

// The drill's failure domains.
const (
	RegionA = "region-a"
	RegionB = "region-b"
)

// Options configure a drill; zero values take the defaults.
type Options struct {
	// Validators to register and fail over; default 4.
	Validators int
	// LeaseTTL of the sidecars (whole seconds, 2s..300s); default 15s.
	LeaseTTL time.Duration
	// Partition cuts the active sidecars off the coordinator before the
	// bump: they neither see the revoke nor release, and the handover waits
	// for their leases to expire in etcd.
	Partition bool
	// Dir keeps the drill's files (etcd data, keys, sidecar journals, logs);
	// empty: a temporary directory, removed afterwards.
	Dir string
	// Progress receives one line per step as it happens; nil: nothing.
	Progress io.Writer
	// Operator is recorded as who bumped; default "drill".
	Operator string
	// Interval between consensus steps of the workload; default 100ms.
	Interval time.Duration
}

// Step is one line of the drill's own timeline.
type Step struct {
	At   time.Time `json:"at"`
	What string    `json:"what"`
}

// Handover is one validator's failover as measured.
type Handover struct {
	Validator string             `json:"validator"`
	Bump      fencing.BumpResult `json:"bump"`
	Error     string             `json:"error,omitempty"`
	// RevokeAt and GrantAt are the coordinator's commit times; Handover is
	// their difference: how long nobody could sign.
	RevokeAt time.Time    `json:"revoke_at"`
	GrantAt  time.Time    `json:"grant_at"`
	Handover api.Duration `json:"handover"`
	// LastActive is the last signature region-a returned, FirstStandby the
	// first region-b returned; SigningGap is the time between them as the
	// validators saw it, BumpToStandby from the operator's bump call.
	LastActive    time.Time    `json:"last_active_signature"`
	FirstStandby  time.Time    `json:"first_standby_signature"`
	SigningGap    api.Duration `json:"signing_gap"`
	BumpToStandby api.Duration `json:"bump_to_first_standby_signature"`
}

// Result is what a drill measured and found.
type Result struct {
	Kind        string       `json:"kind"` // "cooperative" or "partitioned"
	Validators  int          `json:"validators"`
	Mode        string       `json:"mode"`
	LeaseTTL    api.Duration `json:"lease_ttl"`
	Coordinator string       `json:"coordinator"`
	Dir         string       `json:"dir,omitempty"`
	Started     time.Time    `json:"started"`
	Finished    time.Time    `json:"finished"`
	Steps       []Step       `json:"steps"`
	Handovers   []Handover   `json:"handovers"`
	// MaxHandover is the slowest revoke-to-grant; Target is the goal for
	// this kind of drill (cooperative: 2s; partitioned: TTL + 2s).
	MaxHandover   api.Duration     `json:"max_handover"`
	MaxSigningGap api.Duration     `json:"max_signing_gap"`
	Target        api.Duration     `json:"target"`
	TargetMet     bool             `json:"target_met"`
	Check         *CheckReport     `json:"check"`
	Statuses      []fencing.Status `json:"statuses"`
	Events        []fencing.Event  `json:"events"`
}

// Clean reports a drill with no finding and within its target.
func (r *Result) Clean() bool {
	return r.Check != nil && r.Check.OK() && r.Check.Audit != nil && r.Check.Audit.DuplicateCount() == 0 && r.TargetMet
}

func (o Options) withDefaults() Options {
	if o.Validators == 0 {
		o.Validators = 4
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.Operator == "" {
		o.Operator = "drill"
	}
	if o.Interval == 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// Validate reports every problem of o at once. A zero Validators or
// LeaseTTL is one here; Run fills them in with the defaults first.
func (o Options) Validate() error {
	var errs []error
	if o.Validators < 1 || o.Validators > 64 {
		errs = append(errs, fmt.Errorf("--validators %d must be between 1 and 64", o.Validators))
	}
	if o.LeaseTTL%time.Second != 0 || o.LeaseTTL < 2*time.Second || o.LeaseTTL > 300*time.Second {
		errs = append(errs, fmt.Errorf("--lease-ttl %s must be whole seconds between 2s and 300s", o.LeaseTTL))
	}
	return flagenv.Problems(errs)
}

// Run performs one drill. It returns an error only when the drill could not
// run; findings are in the Result.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	d := &run{o: o, res: &Result{Kind: "cooperative", Validators: o.Validators, Mode: string(sidecar.ModeStrict), LeaseTTL: api.Duration{Duration: o.LeaseTTL}, Started: time.Now()}}
	if o.Partition {
		d.res.Kind = "partitioned"
	}
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "fence-drill-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		d.dir = dir
	} else {
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, err
		}
		d.dir, d.res.Dir = o.Dir, o.Dir
	}
	logf, err := os.OpenFile(filepath.Join(d.dir, "drill.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d.logw = &lockedWriter{w: logf}
	d.lg = hclog.New(&hclog.LoggerOptions{Name: "drill", Output: d.logw, Level: hclog.Info, TimeFormat: "15:04:05.000"})
	defer d.stop()
	if err := d.run(ctx); err != nil {
		return d.res, err
	}
	d.res.Finished = time.Now()
	return d.res, nil
}

// run is one drill's state.
type run struct {
	o    Options
	res  *Result
	dir  string
	logw io.Writer
	lg   hclog.Logger

	stops    []func() // run in reverse at the end
	client   *api.Client
	etcd     *clientv3.Client
	obs      *Observer
	rec      *Recorder
	keys     []*ecdsa.PrivateKey
	ids      []fencing.ValidatorID
	sidecars []*inProcSidecar
}

func (d *run) stop() {
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
}

func (d *run) step(format string, args ...any) {
	s := Step{At: time.Now(), What: fmt.Sprintf(format, args...)}
	d.res.Steps = append(d.res.Steps, s)
	fmt.Fprintf(d.o.Progress, "%s  +%6.3fs  %s\n", s.At.UTC().Format("15:04:05.000"), s.At.Sub(d.res.Started).Seconds(), s.What)
	d.lg.Info(s.What)
}

func (d *run) run(ctx context.Context) error {
	// 1. etcd, coordinator, validators.
	m, err := embedetcd.StartSingle(filepath.Join(d.dir, "etcd"))
	if err != nil {
		return err
	}
	d.stops = append(d.stops, m.Close)
	d.etcd, err = clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	d.stops = append(d.stops, func() { _ = d.etcd.Close() })
	st, err := store.New(d.etcd, store.Options{Logger: d.lg.Named("store"), RequestTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	srv, err := coordinator.NewServer(st, coordinator.ServerOptions{Logger: d.lg.Named("coordinator"), ReconcileInterval: 200 * time.Millisecond, SessionTTL: 5 * time.Second})
	if err != nil {
		return err
	}
	cctx, stopCoord := context.WithCancel(context.WithoutCancel(ctx))
	done := srv.Start(cctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopCoord()
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	d.stops = append(d.stops, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
		stopCoord()
		<-done
	})
	d.res.Coordinator = "http://" + ln.Addr().String()
	if d.client, err = api.NewClient([]string{d.res.Coordinator}, api.ClientOptions{Timeout: 15 * time.Second}); err != nil {
		return err
	}
	d.obs = NewObserver(d.etcd, store.DefaultPrefix)
	from, err := d.obs.Now(ctx) // before any validator is registered
	if err != nil {
		return err
	}
	octx, stopObs := context.WithCancel(context.WithoutCancel(ctx))
	var obsDone sync.WaitGroup
	obsDone.Go(func() { d.obs.Run(octx, from) })
	d.stops = append(d.stops, func() { stopObs(); obsDone.Wait() })
	d.step("embedded etcd %s and coordinator %s up (data in %s)", m.ClientURL, d.res.Coordinator, d.dir)

	kdir := filepath.Join(d.dir, "keys")
	if err := os.MkdirAll(kdir, 0o700); err != nil {
		return err
	}
	for i := range d.o.Validators {
		k, err := crypto.GenerateKey()
		if err != nil {
			return err
		}
		id := fencing.ValidatorID(crypto.PubkeyToAddress(k.PublicKey).Hex()) // EIP-55: canonical
		if err := os.WriteFile(filepath.Join(kdir, fmt.Sprintf("validator-%d.key", i)), fmt.Appendf(nil, "%x\n", crypto.FromECDSA(k)), 0o600); err != nil {
			return err
		}
		if _, err := d.client.AddValidator(ctx, api.AddValidatorRequest{Validator: id, Holder: RegionA, Operator: d.o.Operator, Reason: "failover drill: onboarding"}); err != nil {
			return fmt.Errorf("register %s: %w", id, err)
		}
		d.keys, d.ids = append(d.keys, k), append(d.ids, id)
	}
	d.step("registered %d validators: epoch 1 active on %s", d.o.Validators, RegionA)

	// 2. Sidecars. Region A's reach the coordinator through a proxy that
	// --partition blackholes.
	netw := faultproxy.NewNetwork(func(net.Conn) faultproxy.Source { return faultproxy.Source{Name: "region-a sidecars", Region: RegionA} })
	px, err := netw.Listen("coordinator", "coordinator", "127.0.0.1:0", ln.Addr().String())
	if err != nil {
		return err
	}
	d.stops = append(d.stops, px.Close)
	margin := max(sidecar.MinSafetyMargin(d.o.LeaseTTL), min(2*time.Second, d.o.LeaseTTL/4))
	for i, id := range d.ids {
		for _, region := range []string{RegionA, RegionB} {
			url := d.res.Coordinator
			if region == RegionA {
				url = px.URL()
			}
			name := fmt.Sprintf("validator-%d-%s", i, region[len(region)-1:])
			cfg := sidecar.Config{
				Coordinator: flagenv.List{url}, Holder: region, Name: name,
				Keys: flagenv.List{filepath.Join(kdir, fmt.Sprintf("validator-%d.key", i))}, Listen: "127.0.0.1:0",
				StateDir: filepath.Join(d.dir, "sidecars", name), Mode: string(sidecar.ModeStrict),
				LeaseTTL: d.o.LeaseTTL, SafetyMargin: margin, LogLevel: "info",
			}
			sc, err := startInProc(ctx, cfg, string(id), d.logw)
			if err != nil {
				return err
			}
			d.sidecars = append(d.sidecars, sc)
			d.stops = append(d.stops, sc.Stop)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, sc := range d.sidecars {
		if sc.region == RegionA {
			if err := sc.waitReady(wctx); err != nil {
				return fmt.Errorf("active sidecar %s: %w", sc.name, err)
			}
		}
	}
	d.step("%d active sidecars (%s) hold their leases; %d standby sidecars (%s) are fenced (strict mode, TTL %s, safety margin %s)",
		d.o.Validators, RegionA, d.o.Validators, RegionB, d.o.LeaseTTL, margin)

	// 3. Sign.
	d.rec = NewRecorder()
	sctx, stopSigning := context.WithCancel(ctx)
	var signing sync.WaitGroup
	stopWorkload := func() { stopSigning(); signing.Wait() }
	d.stops = append(d.stops, stopWorkload)
	for i, id := range d.ids {
		ch := NewChain(1, uint64(i))
		signing.Go(func() { ch.Run(sctx, d.o.Interval) })
		for _, sc := range d.sidecars {
			if sc.validator != string(id) {
				continue
			}
			dr := &Driver{Validator: string(id), Region: sc.region, Sidecar: sc.name, URL: sc.URL, Chain: ch, Rec: d.rec, Seed: uint64(i), Replay: 0.05, Retry: 0.05}
			signing.Go(func() { dr.Run(sctx) })
		}
	}
	d.step("signing: each validator's HRS sequence goes to both regions' sidecars, with different digests, every %s", d.o.Interval)
	for _, id := range d.ids {
		from := 0
		for range 5 {
			r, err := d.rec.WaitFor(wctx, from, func(r Record) bool { return r.Validator == string(id) && r.Region == RegionA && r.Outcome == Signed })
			if err != nil {
				return fmt.Errorf("no signature from %s's active sidecar: %w (%s)", id, err, r)
			}
			from = d.rec.Len()
		}
	}
	d.step("active sidecars are signing; standby sidecars refuse (fenced)")

	// 4. Partition.
	if d.o.Partition {
		netw.Isolate(RegionA, faultproxy.Blackhole)
		d.stops = append(d.stops, netw.Heal) // before the sidecars stop, on every path
		d.step("partition: %s's sidecars are cut off from the coordinator (blackhole); they will neither see the revoke nor release", RegionA)
	}

	// 5. Bump.
	mark := d.rec.Len()
	bumpAt := time.Now()
	d.step("bump %s -> %s for all %d validators (operator %s)", RegionA, RegionB, d.o.Validators, d.o.Operator)
	d.res.Handovers = make([]Handover, len(d.ids))
	var bumps sync.WaitGroup
	for i, id := range d.ids {
		bumps.Go(func() {
			r, err := d.client.Bump(ctx, id, api.BumpRequest{To: RegionB, Operator: d.o.Operator, Reason: "failover drill", Wait: api.Duration{Duration: d.o.LeaseTTL + time.Minute}})
			h := Handover{Validator: string(id), Bump: r}
			if err != nil {
				h.Error = err.Error()
			}
			d.res.Handovers[i] = h
		})
	}
	bumps.Wait()
	for _, h := range d.res.Handovers {
		if h.Error != "" || !h.Bump.Done {
			return fmt.Errorf("bump %s: not granted (%s)", h.Validator, h.Error)
		}
	}
	d.step("every bump granted: epoch 2 active on %s", RegionB)

	// 6. First standby signatures.
	fctx, cancelF := context.WithTimeout(ctx, d.o.LeaseTTL+30*time.Second)
	defer cancelF()
	for i, id := range d.ids {
		r, err := d.rec.WaitFor(fctx, mark, func(r Record) bool { return r.Validator == string(id) && r.Region == RegionB && r.Outcome == Signed })
		if err != nil {
			return fmt.Errorf("no signature from %s's standby sidecar after the grant: %w", id, err)
		}
		d.res.Handovers[i].FirstStandby = r.Done
		d.res.Handovers[i].BumpToStandby = api.Duration{Duration: r.Done.Sub(bumpAt)}
	}
	d.step("every standby sidecar signed")
	time.Sleep(time.Second)

	// 7. Heal, stop, audit, check.
	if d.o.Partition {
		netw.Heal()
		d.step("partition healed: %s's sidecars learn they were revoked", RegionA)
	}
	stopWorkload()
	d.step("signing stopped")
	if err := d.finish(ctx); err != nil {
		return err
	}
	for _, sc := range d.sidecars {
		sc.Stop()
	}
	d.step("sidecars stopped")
	return nil
}

// finish measures the handovers, audits and checks, and reads the evidence.
func (d *run) finish(ctx context.Context) error {
	recs := d.rec.Records()
	for i := range d.res.Handovers {
		h := &d.res.Handovers[i]
		h.RevokeAt, h.GrantAt = h.Bump.Bump.StartedAt, h.Bump.Epoch.UpdatedAt
		for _, te := range h.Bump.Timeline {
			switch te.Step {
			case string(fencing.EventFreeze):
				h.RevokeAt = te.At
			case string(fencing.EventGrant):
				h.GrantAt = te.At
			}
		}
		h.Handover = api.Duration{Duration: h.GrantAt.Sub(h.RevokeAt)}
		for _, r := range recs {
			if r.Validator == h.Validator && r.Region == RegionA && r.Outcome == Signed && r.Done.After(h.LastActive) {
				h.LastActive = r.Done
			}
		}
		h.SigningGap = api.Duration{Duration: h.FirstStandby.Sub(h.LastActive)}
		d.res.MaxHandover.Duration = max(d.res.MaxHandover.Duration, h.Handover.Duration)
		d.res.MaxSigningGap.Duration = max(d.res.MaxSigningGap.Duration, h.SigningGap.Duration)
	}
	d.res.Target.Duration = 2 * time.Second
	if d.o.Partition {
		d.res.Target.Duration = d.o.LeaseTTL + 2*time.Second
	}
	d.res.TargetMet = d.res.MaxHandover.Duration <= d.res.Target.Duration
	d.step("handover (revoke committed -> grant committed): slowest %s, target %s", d.res.MaxHandover.Round(time.Millisecond), d.res.Target)

	journal, err := ReadJournal(ctx, d.etcd, store.DefaultPrefix)
	if err != nil {
		return fmt.Errorf("read the quorum journal: %w", err)
	}
	events, err := d.client.Events(ctx, "", 0)
	if err != nil {
		return fmt.Errorf("read the history: %w", err)
	}
	in := CheckInput{Mode: string(sidecar.ModeStrict), Records: recs, Addresses: map[string]common.Address{}, Epochs: d.obs.Epochs(), Watermarks: d.obs.Watermarks(), Journal: journal, Events: events, Local: map[string]audit.LocalJournal{}}
	for i, k := range d.keys {
		in.Addresses[string(d.ids[i])] = crypto.PubkeyToAddress(k.PublicKey)
	}
	for _, sc := range d.sidecars {
		lj, err := audit.LoadLocalJournal(sc.stateDir)
		if err != nil {
			return fmt.Errorf("local journal of %s: %w", sc.name, err)
		}
		in.Local[sc.name] = lj
	}
	d.res.Check = Check(in)
	ar := d.res.Check.Audit
	d.step("journal audit over the quorum journal and %d local journals: %s", len(in.Local), ar.Verdict())
	d.step("invariant check: %s", d.res.Check.Summary())
	if err := d.client.ReportAudit(ctx, api.AuditReport{Kind: "journal", Duplicates: ar.DuplicateCount(), Incomplete: !ar.Complete(), Operator: d.o.Operator, Detail: auditDetail(d.res.Check)}); err != nil {
		return fmt.Errorf("record the audit: %w", err)
	}
	if d.res.Statuses, err = d.client.Statuses(ctx); err != nil {
		return err
	}
	if d.res.Events, err = d.client.Events(ctx, "", 0); err != nil {
		return err
	}
	sort.SliceStable(d.res.Events, func(i, j int) bool { return d.res.Events[i].Revision < d.res.Events[j].Revision })
	return nil
}

// inProcSidecar is a fence-sidecar (sidecar.Run) in this process.
type inProcSidecar struct {
	name, region, validator, stateDir string
	url                               string
	cancel                            context.CancelFunc
	done                              chan error
	once                              sync.Once
}

// startInProc runs sidecar.Run for cfg and waits for its listener.
func startInProc(ctx context.Context, cfg sidecar.Config, validator string, logw io.Writer) (*inProcSidecar, error) {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: cfg.Name, Output: logw, Level: hclog.Info, TimeFormat: "15:04:05.000"})
	addr := make(chan string, 1)
	sink := &addrSink{addr: addr}
	il.RegisterSink(sink)
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sc := &inProcSidecar{name: cfg.Name, region: cfg.Holder, validator: validator, stateDir: cfg.StateDir, cancel: cancel, done: make(chan error, 1)}
	go func() { sc.done <- sidecar.Run(sctx, cfg, il) }()
	select {
	case a := <-addr:
		il.DeregisterSink(sink)
		sc.url = "http://" + a
		return sc, nil
	case err := <-sc.done:
		cancel()
		return nil, fmt.Errorf("sidecar %s: %w", cfg.Name, err)
	case <-time.After(30 * time.Second):
		cancel()
		return nil, fmt.Errorf("sidecar %s did not listen within 30s", cfg.Name)
	}
}

// URL is the sidecar's base URL.
func (s *inProcSidecar) URL() string { return s.url }

// Stop stops the sidecar (it releases its leases) and waits for it.
func (s *inProcSidecar) Stop() {
	s.once.Do(func() {
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
		}
	})
}

// waitReady waits until /readyz says every lease is held.
func (s *inProcSidecar) waitReady(ctx context.Context) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("no lease within 30s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// addrSink catches the sidecar's first log line, which names its address.
type addrSink struct{ addr chan string }

func (a *addrSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	if msg != "listening" {
		return
	}
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == "addr" {
			select {
			case a.addr <- fmt.Sprint(args[i+1]):
			default:
			}
		}
	}
}

// lockedWriter serializes writes of several loggers to one file.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// auditDetail is the audit result recorded with the coordinator. Local
// writes dated after a revoke that the revisions explain are not findings.
func auditDetail(c *CheckReport) string {
	a := c.Audit
	s := fmt.Sprintf("failover drill: %d journal entries compared, %d duplicate(s)", a.Signatures, a.DuplicateCount())
	if late := len(a.AfterRevoke); late > 0 {
		s += fmt.Sprintf("; %d write(s) dated after a revoke, %d of them committed in the quorum journal before it", late, c.AuditLateExplained)
	}
	if !c.OK() {
		s += fmt.Sprintf("; %d invariant violation(s)", len(c.Violations))
	}
	return s
}
