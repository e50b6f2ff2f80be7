//go:build linux

package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/validator-fencing/fencing/coordinator"
	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/drill/faultproxy"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// BenchmarkStrictRegions: strict mode, one caller, on three etcd members in
// three regions, each its own process (e2e/cmd/fence-etcd) behind fault
// proxies that delay every byte between regions: 30 ms round trip between
// region-a and region-b, 10 ms from either to the witness (region-c).
// Everything else (the coordinator, the sidecar, the caller) runs in this
// process, in region-a, and reaches etcd-a without delay.
//
//	leader-X/sidecar    a signature with the etcd leader on member X
//	leader-X/etcd-txn   one bare Txn from region-a with the leader on X
//	follow/*            the same after the coordinator, started with the
//	                    leader on region-b and --etcd-member-holders, moved
//	                    it to the region that holds the active epoch
//
// The target compares follow/sidecar with follow/etcd-txn (one quorum write
// from the active region, the leader placed there). cpu-µs/op counts this process only: the
// members are processes of their own.
func BenchmarkStrictRegions(b *testing.B) {
	rg := startRegions(b)
	coord, setLeaders := rg.coordinator(b)
	r := newSurfaceRig(b, rigOptions{ttl: benchTTL, existing: coord})
	var seq atomic.Uint64
	run := func(name, leader string) (sidecar, txn figures) {
		sidecar = measure(b, name+"/sidecar", 1, func(w int) { signOverHTTP(b, r.url, r.ids[w], r.height()) })
		txn = measure(b, name+"/etcd-txn", 1, func(w int) { bareTxn(b, rg.cli, w, seq.Add(1)) })
		if id := rg.leader(b); id != rg.members[leader] {
			// An election on the loaded machine: the rows of name are mixed.
			fmt.Printf("NOTE %s: the etcd leader moved from %s during the measurement (now %x)\n", name, leader, id)
		}
		return sidecar, txn
	}
	for _, member := range []string{"etcd-a", "etcd-b", "etcd-c"} {
		rg.moveLeader(b, member)
		run("leader-"+strings.TrimPrefix(member, "etcd-"), member)
	}
	rg.moveLeader(b, "etcd-b")
	setLeaders(coordinator.LeaderPlacement{
		Holders: map[string]string{"etcd-a": "region-a", "etcd-b": "region-b"},
		Dial:    rg.dial, Interval: 200 * time.Millisecond,
	})
	rg.waitLeader(b, "etcd-a")
	// The baseline is the quorum write from region-a with the leader where
	// the coordinator put it, measured right after the signatures.
	follow, txn := run("follow", "etcd-a")
	target{path: "strict, three regions, 1 caller", baseline: "one quorum write from the active region", limit: 1.2}.report(follow, txn)
}

// regions is three fence-etcd processes behind delaying proxies.
type regions struct {
	net     *faultproxy.Network
	client  map[string]*faultproxy.Proxy // member name -> its client proxy
	cli     *clientv3.Client             // region-a's client: etcd-a's proxy
	members map[string]uint64            // name -> member ID
}

// One-way delays between the regions' members (half the round trip).
var regionDelay = map[[2]string]time.Duration{
	{"region-a", "region-b"}: 15 * time.Millisecond,
	{"region-a", "region-c"}: 5 * time.Millisecond,
	{"region-b", "region-c"}: 5 * time.Millisecond,
}

func startRegions(b *testing.B) *regions {
	bin := buildFenceEtcd(b)
	pids := faultproxy.NewPIDTable()
	pids.Register(os.Getpid(), faultproxy.Source{Name: "bench", Region: "region-a"})
	rg := &regions{net: faultproxy.NewNetwork(pids.Classify), client: map[string]*faultproxy.Proxy{}}
	names := map[string]string{"region-a": "etcd-a", "region-b": "etcd-b", "region-c": "etcd-c"}
	peer := map[string]*faultproxy.Proxy{}
	var initial []string
	for _, region := range []string{"region-a", "region-b", "region-c"} {
		name := names[region]
		cp, err := rg.net.Listen(name+"/client", region, "127.0.0.1:0", "")
		if err != nil {
			b.Fatal(err)
		}
		pp, err := rg.net.Listen(name+"/peer", region, "127.0.0.1:0", "")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cp.Close)
		b.Cleanup(pp.Close)
		rg.client[name], peer[name] = cp, pp
		initial = append(initial, name+"="+pp.URL())
	}
	// Every byte between two regions' members waits the one-way delay, in
	// both directions of each connection (raft messages travel both ways).
	for pair, d := range regionDelay {
		for _, dir := range [][2]string{{pair[0], pair[1]}, {pair[1], pair[0]}} {
			m := faultproxy.Match{From: []string{names[dir[0]]}, To: []string{names[dir[1]] + "/peer", names[dir[1]] + "/client"}}
			for _, way := range []faultproxy.Direction{faultproxy.Request, faultproxy.Response} {
				if _, err := rg.net.Delay(way, m, d); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	ready := make(chan error, 3)
	for region, name := range names {
		dir := filepath.Join(b.TempDir(), name)
		cmd := exec.Command(bin, "--name", name, "--data-dir", dir, "--advertise-client", rg.client[name].URL(), "--advertise-peer", peer[name].URL(), "--initial-cluster", strings.Join(initial, ","))
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stderr = io.Discard
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		pids.Register(cmd.Process.Pid, faultproxy.Source{Name: name, Region: region})
		b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
					rg.client[name].SetTarget(m[1])
					peer[name].SetTarget(m[2])
				}
				if sc.Text() == "ready" {
					ready <- nil
				}
			}
			ready <- fmt.Errorf("%s ended before it was ready", name)
		}()
	}
	for range names {
		select {
		case err := <-ready:
			if err != nil {
				b.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			b.Fatal("etcd members not ready within 60s")
		}
	}
	var err error
	rg.cli, err = rg.dial(rg.client["etcd-a"].URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rg.cli.Close() })
	ml, err := rg.cli.MemberList(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	rg.members = map[string]uint64{}
	for _, m := range ml.Members {
		rg.members[m.Name] = m.ID
	}
	return rg
}

var listeningRE = regexp.MustCompile(`^listening client=([0-9.]+:[0-9]+) peer=([0-9.]+:[0-9]+)`)

// buildFenceEtcd builds e2e/cmd/fence-etcd (the go command caches it).
func buildFenceEtcd(b *testing.B) string {
	if p := os.Getenv("FENCE_ETCD"); p != "" {
		return p
	}
	bin := filepath.Join(b.TempDir(), "fence-etcd")
	cmd := exec.Command("go", "build", "-o", bin, "../e2e/cmd/fence-etcd")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build fence-etcd (or set FENCE_ETCD to a built one): %v\n%s", err, out)
	}
	return bin
}

func (rg *regions) dial(ep string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// coordinator starts the coordinator of region-a on etcd-a; setLeaders
// starts a second one, with leader placement, beside it (its sidecar API
// stays unused: only its leader placement runs).
func (rg *regions) coordinator(b *testing.B) (*fencetest.Coordinator, func(coordinator.LeaderPlacement)) {
	start := func(p *coordinator.LeaderPlacement) *fencetest.Coordinator {
		reg := prometheus.NewRegistry()
		m, err := coordinator.NewMetrics(reg)
		if err != nil {
			b.Fatal(err)
		}
		st, err := store.New(rg.cli, store.Options{RequestTimeout: 3 * time.Second, OnTransition: m.Transition})
		if err != nil {
			b.Fatal(err)
		}
		srv, err := coordinator.NewServer(st, coordinator.ServerOptions{Registry: reg, Metrics: m, Leaders: p, SessionTTL: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := srv.Start(ctx)
		hs := httptest.NewServer(srv.Handler())
		b.Cleanup(func() { hs.CloseClientConnections(); hs.Close(); cancel(); <-done })
		cli, err := api.NewClient([]string{hs.URL}, api.ClientOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return &fencetest.Coordinator{URL: hs.URL, Client: cli, Store: st}
	}
	c := start(nil)
	for _, h := range []string{"region-a", "region-b"} {
		if err := c.Store.RegisterHolder(context.Background(), h, fencing.Change{By: "bench", Reason: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	return c, func(p coordinator.LeaderPlacement) { start(&p) }
}

func (rg *regions) leader(b *testing.B) uint64 {
	for _, p := range rg.client {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := rg.cli.Status(ctx, p.URL())
		cancel()
		if err == nil && st.Leader != 0 {
			return st.Leader
		}
	}
	b.Fatal("no etcd member says who leads")
	return 0
}

// moveLeader makes member the leader (asking the current leader).
func (rg *regions) moveLeader(b *testing.B, member string) {
	id := rg.members[member]
	for try := 0; rg.leader(b) != id; try++ {
		if try == 20 {
			b.Fatalf("could not move the etcd leader to %s", member)
		}
		for _, p := range rg.client {
			c, err := rg.dial(p.URL())
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = c.MoveLeader(ctx, id) // only the leader accepts it
			cancel()
			_ = c.Close()
		}
	}
}

// waitLeader waits until member leads.
func (rg *regions) waitLeader(b *testing.B, member string) {
	deadline := time.Now().Add(30 * time.Second)
	for rg.leader(b) != rg.members[member] {
		if time.Now().After(deadline) {
			b.Fatalf("the etcd leader did not move to %s within 30s", member)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
