// Package etcdtest starts real embedded etcd clusters for tests: one or more
// members on 127.0.0.1 in t.TempDir(), with members that can be stopped and
// restarted to take quorum away and give it back.
package etcdtest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/validator-fencing/fencing/internal/embedetcd"
)

// Cluster is a running test cluster.
type Cluster struct {
	t       testing.TB
	specs   []embedetcd.Spec
	mu      sync.Mutex
	members []*embedetcd.Member
}

// New starts an n-member cluster and stops it when the test ends (after the
// clients made with Client, which close first).
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, members: make([]*embedetcd.Member, n)}
	dir := t.TempDir()
	var initial []string
	for i := range n {
		cu, err := embedetcd.FreeURL()
		if err != nil {
			t.Fatal(err)
		}
		pu, err := embedetcd.FreeURL()
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("m%d", i)
		c.specs = append(c.specs, embedetcd.Spec{Name: name, Dir: fmt.Sprintf("%s/%s", dir, name), ClientURL: cu, PeerURL: pu, FastElections: n > 1})
		initial = append(initial, name+"="+pu)
	}
	for i := range c.specs {
		c.specs[i].InitialCluster = strings.Join(initial, ",")
	}
	t.Cleanup(c.stopAll)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *Cluster) start(i int) error {
	m, err := embedetcd.Start(c.specs[i])
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.members[i] = m
	c.mu.Unlock()
	return nil
}

// Endpoints are the client URLs of all members, running or not.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, s := range c.specs {
		eps = append(eps, s.ClientURL)
	}
	return eps
}

// Client returns a client of every member, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Stop stops member i (its data stays for Restart).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	m := c.members[i]
	c.members[i] = nil
	c.mu.Unlock()
	if m != nil {
		m.Close()
	}
}

// Restart starts member i again from its data. With fewer than a quorum of
// members running it waits until enough are back, so restart in parallel.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.start(i); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) stopAll() {
	for i := range c.members {
		c.Stop(i)
	}
}
