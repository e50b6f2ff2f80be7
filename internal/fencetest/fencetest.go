// Package fencetest starts a real coordinator for tests: embedded etcd, the
// coordinator's handler on a real HTTP listener on 127.0.0.1, and a client.
package fencetest

import (
	"context"
	"github.com/prometheus/client_golang/prometheus"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/coordinator"
	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/etcdtest"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// Coordinator is a running test coordinator.
type Coordinator struct {
	URL    string
	Client *api.Client
	Store  *store.Store
	Etcd   *etcdtest.Cluster
}

// Options tune the coordinator; zero values are fast test defaults.
type Options struct {
	// Members of the etcd cluster; default 1.
	Members int
	// ReconcileInterval; default 100ms.
	ReconcileInterval time.Duration
	// OperatorToken, when set, guards the operator API.
	OperatorToken string
	// Auth, when set, authenticates sidecars.
	Auth coordinator.Authenticator
	// OperatorReviewer, when set, authorizes operators.
	OperatorReviewer coordinator.OperatorReviewer
	// Registry receives the coordinator's and its store's metrics; default
	// a new one.
	Registry *prometheus.Registry
	// Holders are registered at the start (a bump's target must be known);
	// default region-a and region-b. Give []string{} for none.
	Holders []string
}

// Start starts a coordinator that stops when the test ends.
func Start(t testing.TB, o Options) *Coordinator {
	t.Helper()
	if o.Members == 0 {
		o.Members = 1
	}
	if o.ReconcileInterval == 0 {
		o.ReconcileInterval = 100 * time.Millisecond
	}
	c := etcdtest.New(t, o.Members)
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := coordinator.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(c.Client(t), store.Options{RequestTimeout: 3 * time.Second, Registerer: reg, OnTransition: m.Transition})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := coordinator.NewServer(st, coordinator.ServerOptions{Registry: reg, Metrics: m, OperatorToken: o.OperatorToken, Auth: o.Auth, OperatorReviewer: o.OperatorReviewer, ReconcileInterval: o.ReconcileInterval, SessionTTL: 2 * time.Second, MaxWatchWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := srv.Start(ctx)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close(); cancel(); <-done })
	cli, err := api.NewClient([]string{hs.URL}, api.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Holders == nil {
		o.Holders = []string{"region-a", "region-b"}
	}
	for _, h := range o.Holders {
		if err := st.RegisterHolder(context.Background(), h, fencing.Change{By: "test", Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	return &Coordinator{URL: hs.URL, Client: cli, Store: st, Etcd: c}
}

// AddValidator registers id on holder or fails the test.
func (c *Coordinator) AddValidator(t testing.TB, id, holder string) {
	t.Helper()
	if _, err := c.Client.AddValidator(context.Background(), api.AddValidatorRequest{Validator: fencing.MustParseValidatorID(id), Holder: holder, Operator: "test", Reason: "test"}); err != nil {
		t.Fatalf("AddValidator(%s) = %v", id, err)
	}
}

// Bump moves id to holder to and waits for the grant or fails the test. It
// forces the bump: tests that check a standby's readiness call the client.
func (c *Coordinator) Bump(t testing.TB, id, to string) {
	t.Helper()
	res, err := c.Client.Bump(context.Background(), fencing.MustParseValidatorID(id), api.BumpRequest{To: to, Operator: "test", Reason: "test", Force: true, Wait: api.Duration{Duration: 30 * time.Second}})
	if err != nil || !res.Done {
		t.Fatalf("Bump(%s -> %s) = %+v, %v", id, to, res, err)
	}
}

// ClientWithToken returns a client of c that sends token as its bearer
// token.
func (c *Coordinator) ClientWithToken(t testing.TB, token string) *api.Client {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	cli, err := api.NewClient([]string{c.URL}, api.ClientOptions{TokenFile: f})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}
