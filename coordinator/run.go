package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/validator-fencing/fencing/internal/embedetcd"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/kube"
	"github.com/validator-fencing/fencing/internal/logging"
	"github.com/validator-fencing/fencing/internal/store"
)

// Run serves until ctx ends. It listens first and logs the address it got
// as its first line, then connects to etcd (starting the embedded one if
// configured).
func Run(ctx context.Context, cfg Config, lg hclog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	lg.Info("listening", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String())

	endpoints := []string(cfg.EtcdEndpoints)
	if cfg.EmbeddedEtcd != "" {
		m, err := embedetcd.StartSingle(cfg.EmbeddedEtcd)
		if err != nil {
			return err
		}
		defer m.Close() // after the client below is closed (defer order)
		endpoints = []string{m.ClientURL}
		lg.Warn("using embedded single-node etcd: for development and drills only, one failure domain", "dir", cfg.EmbeddedEtcd, "endpoint", m.ClientURL)
	}
	cli, err := etcdClient(cfg, endpoints, lg.Named("etcd"))
	if err != nil {
		return err
	}
	defer cli.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	opts := store.Options{Prefix: cfg.EtcdPrefix, Logger: lg.Named("store"), RequestTimeout: cfg.EtcdTimeout, Registerer: reg, OnTransition: m.Transition}
	sopts := ServerOptions{ClientCerts: cfg.ClientCA != "", Metrics: m, Logger: lg, MaxWatchWait: cfg.MaxWatchWait, ReconcileInterval: cfg.ReconcileInterval, SessionTTL: cfg.SessionTTL, JournalRetention: cfg.JournalRetention, Registry: reg}

	if cfg.EtcdMemberHolders != "" {
		holders, _ := ParseMemberHolders(cfg.EtcdMemberHolders) // checked by Validate
		sopts.Leaders = &LeaderPlacement{Holders: holders, Logger: lg.Named("leader"), Dial: func(ep string) (*clientv3.Client, error) { return etcdClient(cfg, []string{ep}, lg.Named("etcd")) }}
	}

	modes := cfg.operatorModes()
	if slices.Contains(modes, OperatorAuthToken) {
		if sopts.OperatorToken, err = readOperatorToken(cfg.OperatorTokenFile); err != nil {
			return err
		}
	}
	if slices.Contains(modes, OperatorAuthNone) {
		lg.Warn("the operator API is open to whoever reaches the listener (--operator-auth none, loopback only)", "addr", ln.Addr().String())
	}
	if cfg.AuthAudience == "" && cfg.ClientCA == "" {
		lg.Warn("sidecars are not authenticated (no --auth-audience or --client-ca; loopback only)", "addr", ln.Addr().String())
	}
	kubeOperators := slices.Contains(modes, OperatorAuthKubernetes)
	if cfg.AuthAudience != "" || cfg.EventsNamespace != "" || kubeOperators {
		kc, err := kubeClient(cfg.Kubeconfig)
		if err != nil {
			return err
		}
		if cfg.AuthAudience != "" {
			bindings, err := loadBindings(cfg)
			if err != nil {
				return err
			}
			sopts.Auth = kube.NewTokenReviewAuthenticator(kc, cfg.AuthAudience, bindings, kube.WithLogger(lg.Named("auth")))
			lg.Info("sidecar authentication on", "audience", cfg.AuthAudience, "bindings", kube.FormatBindings(bindings))
		}
		if kubeOperators {
			sopts.OperatorReviewer = kube.NewOperatorAuthorizer(kc, cfg.OperatorNamespace, nil, kube.WithLogger(lg.Named("operators")))
			lg.Info("operator authorization by RBAC", "namespace", cfg.OperatorNamespace, "group", kube.OperatorAPIGroup)
		}
		if cfg.EventsNamespace != "" {
			rec := kube.NewEventRecorder(kc, cfg.EventsNamespace, kube.WithLogger(lg.Named("events")), kube.WithRegarding(kube.PodFromEnv(os.Getenv)))
			defer rec.Close(context.Background())
			opts.OnTransition = func(ev fencing.Event) { m.Transition(ev); rec.Record(context.Background(), ev) }
		}
	}

	st, err := store.New(cli, opts)
	if err != nil {
		return err
	}
	srv, err := NewServer(st, sopts)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := srv.Start(runCtx)

	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout, IdleTimeout: idleTimeout,
		ErrorLog: lg.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	if cfg.TLSCert != "" {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.ClientCA != "" {
			pool, err := loadCAs(cfg.ClientCA)
			if err != nil {
				return err
			}
			hs.TLSConfig.ClientCAs, hs.TLSConfig.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errc <- hs.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	lg.Info("coordinator ready", "etcd", endpoints, "prefix", cfg.EtcdPrefix)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	lg.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	stop()
	<-done
	return nil
}

func etcdClient(cfg Config, endpoints []string, lg hclog.Logger) (*clientv3.Client, error) {
	var tlsCfg *tls.Config
	if cfg.EtcdCACert != "" || cfg.EtcdCert != "" {
		info := transport.TLSInfo{TrustedCAFile: cfg.EtcdCACert, CertFile: cfg.EtcdCert, KeyFile: cfg.EtcdKey}
		var err error
		if tlsCfg, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: 5 * time.Second, TLS: tlsCfg, Logger: logging.Zap(lg),
		DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	if kubeconfig != "" {
		return kube.ClientForContext(kubeconfig, "")
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes: not in a cluster (%v); give --kubeconfig", err)
	}
	return kubernetes.NewForConfig(rc)
}

func loadBindings(cfg Config) ([]kube.Binding, error) {
	if cfg.AuthBindingsFile != "" {
		return kube.ParseBindingsFile(cfg.AuthBindingsFile)
	}
	return kube.ParseBindings(cfg.AuthBindings)
}

// readOperatorToken reads the operator token; the file must not be readable
// by others, and the token must be long enough to resist guessing.
func readOperatorToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--operator-token-file: %w", err)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return "", fmt.Errorf("--operator-token-file %s is readable by others (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--operator-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("--operator-token-file %s holds %d characters; use at least 16 random ones (e.g. openssl rand -hex 32)", path, len(tok))
	}
	return tok, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--client-ca %s holds no PEM certificate", path)
	}
	return pool, nil
}
