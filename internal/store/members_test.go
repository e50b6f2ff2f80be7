package store

import (
	"context"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/etcdtest"
)

// memberNames maps member name to what Members said of it.
func memberNames(m EtcdMembers) map[string]EtcdMember {
	out := map[string]EtcdMember{}
	for _, mm := range m.Members {
		out[mm.Name] = mm
	}
	return out
}

func TestMembersOfAHealthyCluster(t *testing.T) {
	c := etcdtest.New(t, 3)
	s := newStore(t, c)
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return at }
	// A member publishes its client URLs to the cluster shortly after it
	// starts (under load, after the others saw it join): wait for that.
	var m EtcdMembers
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if m, err = s.Members(context.Background()); err != nil {
			t.Fatalf("Members() = %v", err)
		}
		published := true
		for _, mm := range m.Members {
			published = published && len(mm.ClientURLs) > 0
		}
		if published || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m.ClusterID == 0 || !m.At.Equal(at) || !m.Asked.Equal(at) || len(m.Members) != 3 {
		t.Fatalf("Members() = cluster %x at %v with %d members, want a cluster ID, %v and 3 members", m.ClusterID, m.At, len(m.Members), at)
	}
	var leader uint64
	for _, mm := range m.Members {
		t.Logf("member %s id=%x leader=%x version=%s term=%d index=%d db=%d err=%v", mm.Name, mm.ID, mm.Leader, mm.Version, mm.RaftTerm, mm.RaftIndex, mm.DBSize, mm.Err)
		if mm.Err != nil || mm.Leader == 0 || mm.Version == "" || len(mm.ClientURLs) == 0 || len(mm.PeerURLs) == 0 || mm.Learner || len(mm.Alarms) > 0 {
			t.Errorf("member %s = %+v, want it answering with a leader, a version and its URLs", mm.Name, mm)
		}
		if leader == 0 {
			leader = mm.Leader
		} else if mm.Leader != leader {
			t.Errorf("member %s follows %x, another %x", mm.Name, mm.Leader, leader)
		}
	}
	if got := memberNames(m); len(got) != 3 || got["m0"].ID == 0 {
		t.Errorf("member names = %v, want m0, m1, m2", got)
	}
}

// A member that is down is listed with the reason it did not answer; with
// quorum gone the list is still read (serializably) and the members left
// say they know no leader.
func TestMembersReportsDownMembersAndLostQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("three-member cluster; waits for an election timeout")
	}
	c := etcdtest.New(t, 3)
	s := newStore(t, c)
	s.timeout = 2 * time.Second
	ctx := context.Background()

	c.Stop(2)
	m, err := s.Members(ctx)
	if err != nil {
		t.Fatalf("Members() with m2 down = %v", err)
	}
	got := memberNames(m)
	if got["m2"].Err == nil {
		t.Errorf("m2 is down but Members() says %+v", got["m2"])
	}
	t.Logf("m2 down: %v", got["m2"].Err)
	for _, n := range []string{"m0", "m1"} {
		if got[n].Err != nil || got[n].Leader == 0 {
			t.Errorf("%s = %+v, want it answering with a leader", n, got[n])
		}
	}

	c.Stop(1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := s.Members(ctx)
		var m0 EtcdMember
		if err == nil {
			m0 = memberNames(m)["m0"]
			if m0.Err == nil && m0.Leader == 0 && memberNames(m)["m1"].Err != nil {
				t.Logf("quorum lost: m0 answers with no leader; m1: %v", memberNames(m)["m1"].Err)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("with m1 and m2 down, Members() = %+v, %v; want m0 answering with no leader", m0, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMembersCancelled(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Members(ctx); err == nil {
		t.Fatal("Members(cancelled context) = nil error")
	}
}
