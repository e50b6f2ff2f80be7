package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/validator-fencing/fencing/internal/etcdtest"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// TestLeaderFollowsActiveHolder: on three real etcd members (m0 in
// region-a, m1 in region-b, m2 the witness), a grant moves the etcd leader
// to a member of the holder with the most active epochs. The leader starts
// on the witness; the first bump leaves one validator on each holder (a
// tie: region-a, first by name), the second puts both on region-b.
func TestLeaderFollowsActiveHolder(t *testing.T) {
	c := etcdtest.New(t, 3)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := memberIDs(t, cli)

	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(cli, store.Options{RequestTimeout: 3 * time.Second, OnTransition: m.Transition})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(st, ServerOptions{Registry: reg, Metrics: m, ReconcileInterval: 50 * time.Millisecond, SessionTTL: 2 * time.Second,
		Leaders: &LeaderPlacement{
			Holders: map[string]string{"m0": "region-a", "m1": "region-b"},
			Dial: func(ep string) (*clientv3.Client, error) {
				return clientv3.New(clientv3.Config{Endpoints: []string{ep}, Logger: zap.NewNop()})
			},
			Interval: time.Hour, Settle: 10 * time.Millisecond, // only grants move it here
		}})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := srv.Start(sctx)
	defer func() { stop(); <-done }()

	change := fencing.Change{By: "test", Reason: "test"}
	for _, h := range []string{"region-a", "region-b"} {
		if err := st.RegisterHolder(ctx, h, change); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []fencing.ValidatorID{"val-1", "val-2"} {
		if _, err := st.AddValidator(ctx, v, "region-a", change); err != nil {
			t.Fatal(err)
		}
	}
	moveLeader(t, cli, ids["m2"])

	for _, step := range []struct {
		bump fencing.ValidatorID
		want string
	}{
		{"val-1", "m0"}, // one active epoch each: a tie goes to region-a
		{"val-2", "m1"}, // both on region-b
	} {
		if _, err := st.StartBump(ctx, step.bump, 1, "region-b", change, ""); err != nil {
			t.Fatalf("StartBump(%s) = %v", step.bump, err)
		}
		waitLeader(t, cli, ids[step.want], step.want)
	}
}

func memberIDs(t *testing.T, cli *clientv3.Client) map[string]uint64 {
	t.Helper()
	ml, err := cli.MemberList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, m := range ml.Members {
		out[m.Name] = m.ID
	}
	return out
}

// leaderID asks every endpoint of cli who leads.
func leaderID(t *testing.T, cli *clientv3.Client) uint64 {
	t.Helper()
	for _, ep := range cli.Endpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err == nil && st.Leader != 0 {
			return st.Leader
		}
	}
	return 0
}

// moveLeader makes id the leader, as the test's starting point.
func moveLeader(t *testing.T, cli *clientv3.Client, id uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for leaderID(t, cli) != id {
		if time.Now().After(deadline) {
			t.Fatalf("could not make %x the leader", id)
		}
		for _, ep := range cli.Endpoints() {
			one, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = one.MoveLeader(ctx, id) // only the leader accepts it
			cancel()
			_ = one.Close()
		}
	}
}

func waitLeader(t *testing.T, cli *clientv3.Client, id uint64, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := leaderID(t, cli)
		if got == id {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd leader = %x, want %s (%x)", got, name, id)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of the condition, not a guess
	}
}

func TestParseMemberHolders(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		problem  string
	}{
		{name: "two regions and spaces", in: "etcd-0=region-a, etcd-1=region-b", want: map[string]string{"etcd-0": "region-a", "etcd-1": "region-b"}},
		{name: "empty", in: "", want: map[string]string{}},
		{name: "no holder", in: "etcd-0", problem: "must be member=holder"},
		{name: "bad holder", in: "etcd-0=Region A", problem: "etcd-0=Region A"},
		{name: "twice", in: "etcd-0=region-a,etcd-0=region-b", problem: "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMemberHolders(tc.in)
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("ParseMemberHolders(%q) = %v, want an error saying %q", tc.in, err, tc.problem)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("ParseMemberHolders(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("ParseMemberHolders(%q)[%s] = %q, want %q", tc.in, k, got[k], v)
				}
			}
		})
	}
}

func TestBusiestHolder(t *testing.T) {
	members := map[string][]*memberInfo{"region-a": {{name: "a"}}, "region-b": {{name: "b"}}}
	for _, tc := range []struct {
		name   string
		active map[string]int
		leader string
		want   string
	}{
		{"most wins", map[string]int{"region-a": 1, "region-b": 3}, "region-a", "region-b"},
		{"tie keeps the leader's", map[string]int{"region-a": 2, "region-b": 2}, "region-b", "region-b"},
		{"tie, leader elsewhere: first by name", map[string]int{"region-a": 2, "region-b": 2}, "", "region-a"},
		{"holder without a member never chosen", map[string]int{"region-c": 9, "region-b": 1}, "", "region-b"},
		{"nothing active: no move", map[string]int{}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := busiestHolder(tc.active, members, tc.leader); got != tc.want {
				t.Errorf("busiestHolder(%v, leader %q) = %q, want %q", tc.active, tc.leader, got, tc.want)
			}
		})
	}
}
