package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/etcdtest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

var change = fencing.Change{By: "alice", Reason: "test"}

func newStore(t *testing.T, c *etcdtest.Cluster) *Store {
	t.Helper()
	s, err := New(c.Client(t), Options{RequestTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addValidator(t *testing.T, s *Store, id fencing.ValidatorID, holder string) {
	t.Helper()
	if _, err := s.AddValidator(context.Background(), id, holder, change); err != nil {
		t.Fatalf("AddValidator(%s) = %v", id, err)
	}
}

func wantCode(t *testing.T, what string, err error, code fencing.Code) {
	t.Helper()
	if fencing.CodeOf(err) != code {
		t.Fatalf("%s = %v, want code %s", what, err, code)
	}
}

func journal(s *Store, l fencing.Lease, h uint64, digest byte) (fencing.JournalEntry, error) {
	return s.Journal(context.Background(), fencing.JournalRequest{Lease: l, HRS: fencing.HRS{Height: h, Step: fencing.StepCommit}, Digest: fencing.Digest{digest}})
}

// Behaviour 1 / invariant 1: leases only for the holder while active; after
// the freeze, renew and journal under the old epoch fail with stale_epoch.
func TestLeaseOnlyForHolderWhileActive(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")

	_, err := s.Acquire(ctx, "val-1", "region-b", "b-0", 5)
	wantCode(t, "Acquire by the other holder", err, fencing.CodeFenced)

	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 5)
	if err != nil {
		t.Fatalf("Acquire = %v", err)
	}
	if _, err := s.Renew(ctx, g.Lease, nil); err != nil {
		t.Fatalf("Renew = %v", err)
	}
	if _, err := journal(s, g.Lease, 1, 1); err != nil {
		t.Fatalf("Journal = %v", err)
	}
	if _, err := s.Freeze(ctx, "val-1", 1, change); err != nil {
		t.Fatalf("Freeze = %v", err)
	}
	_, err = s.Renew(ctx, g.Lease, nil)
	wantCode(t, "Renew after freeze", err, fencing.CodeStaleEpoch)
	_, err = journal(s, g.Lease, 2, 2)
	wantCode(t, "Journal after freeze", err, fencing.CodeStaleEpoch)
	// Even the idempotent re-journal of a signed HRS is refused once revoked.
	_, err = journal(s, g.Lease, 1, 1)
	wantCode(t, "re-Journal after freeze", err, fencing.CodeStaleEpoch)
	_, err = s.Acquire(ctx, "val-1", "region-a", "a-0", 5)
	wantCode(t, "Acquire after freeze", err, fencing.CodeFenced)
	_, err = s.Freeze(ctx, "val-1", 0, change)
	wantCode(t, "second Freeze", err, fencing.CodeConflict)
}

func TestJournalWatermark(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 5)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		height uint64
		digest byte
		want   fencing.Code // "" = success
	}{
		{"first", 5, 1, ""},
		{"same HRS same digest is idempotent", 5, 1, ""},
		{"same HRS other digest", 5, 2, fencing.CodeWatermark},
		{"below watermark", 4, 3, fencing.CodeWatermark},
		{"above watermark", 6, 4, ""},
		{"old HRS same digest is idempotent", 5, 1, ""},
	}
	for _, st := range steps {
		_, err := journal(s, g.Lease, st.height, st.digest)
		if st.want == "" && err != nil || st.want != "" && fencing.CodeOf(err) != st.want {
			t.Fatalf("%s: Journal(height %d) = %v, want %q", st.name, st.height, err, st.want)
		}
	}
	var we *fencing.WatermarkError
	if _, err := journal(s, g.Lease, 5, 9); !errors.As(err, &we) || !we.SameHRS {
		t.Fatalf("Journal(5, other digest) = %v, want a WatermarkError with SameHRS", err)
	}
	st, err := s.Status(ctx, "val-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Watermark == nil || st.Watermark.Height != 6 || st.Watermark.Digest != (fencing.Digest{4}) {
		t.Fatalf("watermark = %+v, want height 6 digest 04…", st.Watermark)
	}
	entries, err := s.JournalEntries(ctx, "")
	if err != nil || len(entries) != 2 {
		t.Fatalf("JournalEntries = %d entries, %v; want 2", len(entries), err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Behaviour 5: one member of three down keeps working; two down fails every
// write closed with no_quorum and changes nothing.
func TestQuorumLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("three-member cluster; slow")
	}
	c := etcdtest.New(t, 3)
	s := newStore(t, c)
	s.timeout = 2 * time.Second
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 60)
	if err != nil {
		t.Fatal(err)
	}

	c.Stop(2)
	if _, err := journal(s, g.Lease, 1, 1); err != nil {
		t.Fatalf("Journal with one member down = %v", err)
	}
	addValidator(t, s, "val-2", "region-a")

	c.Stop(1)
	before := statusOrFail(t, c)
	writes := map[string]func() error{
		"add":     func() error { _, err := s.AddValidator(ctx, "val-3", "region-a", change); return err },
		"freeze":  func() error { _, err := s.Freeze(ctx, "val-1", 0, change); return err },
		"bump":    func() error { _, err := s.StartBump(ctx, "val-2", 0, "region-b", change, ""); return err },
		"journal": func() error { _, err := journal(s, g.Lease, 2, 2); return err },
		"renew":   func() error { _, err := s.Renew(ctx, g.Lease, nil); return err },
		"acquire": func() error { _, err := s.Acquire(ctx, "val-2", "region-a", "a-0", 5); return err },
	}
	for name, w := range writes {
		err := w()
		if fencing.CodeOf(err) != fencing.CodeNoQuorum {
			t.Errorf("%s without quorum = %v, want no_quorum", name, err)
		}
	}

	// Nothing changed while quorum was lost. (A refused write's proposal
	// may still commit once quorum returns, which is why no_quorum says
	// "not confirmed"; so compare before the restart, through a member.)
	if now := statusOrFail(t, c); fmt.Sprint(before) != fmt.Sprint(now) {
		t.Fatalf("state changed while without quorum:\nbefore %v\nafter  %v", before, now)
	}
	var wg sync.WaitGroup
	for _, i := range []int{1, 2} {
		wg.Go(func() { c.Restart(i) })
	}
	wg.Wait()
	if _, err := s.Statuses(ctx); err != nil {
		t.Fatalf("Statuses after quorum returned = %v", err)
	}
}

// statusOrFail reads every validator through a fresh client (serializable
// reads would do, but a quorum read after restart proves the state).
func statusOrFail(t *testing.T, c *etcdtest.Cluster) []string {
	t.Helper()
	cli := c.Client(t)
	resp, err := cli.Get(context.Background(), DefaultPrefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, fmt.Sprintf("%s@%d", kv.Key, kv.ModRevision))
	}
	return out
}

// Lease mode reports the local watermark on renew and release; the quorum
// watermark only ever moves up.
func TestRenewAndReleaseRaiseWatermark(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 5)
	if err != nil {
		t.Fatal(err)
	}
	wm := func(h uint64) *fencing.Watermark {
		return &fencing.Watermark{HRS: fencing.HRS{Height: h, Step: fencing.StepCommit}, Digest: fencing.Digest{byte(h)}}
	}
	steps := []struct {
		name string
		do   func() error
		want uint64
	}{
		{"renew raises", func() error { g.Lease, err = s.Renew(ctx, g.Lease, wm(7)); return err }, 7},
		{"renew never lowers", func() error { g.Lease, err = s.Renew(ctx, g.Lease, wm(3)); return err }, 7},
		{"release raises", func() error { return s.Release(ctx, g.Lease, wm(9)) }, 9},
		// A release that arrives after the lease ended (here: a retry) still
		// records the watermark it reports.
		{"late release raises", func() error { return s.Release(ctx, g.Lease, wm(10)) }, 10},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := s.Status(ctx, "val-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Watermark == nil || got.Watermark.Height != st.want {
			t.Fatalf("%s: quorum watermark %+v, want height %d", st.name, got.Watermark, st.want)
		}
	}
	evs, err := s.Events(ctx, "val-1", 0)
	if err != nil || evs[len(evs)-1].Kind != fencing.EventLateWatermark {
		t.Fatalf("history after a late release = %+v, %v; want a %s event last", evs, err, fencing.EventLateWatermark)
	}
	// A sidecar that never held a lease of the epoch cannot raise it.
	forged := g.Lease
	forged.Sidecar = "a-9"
	wantCode(t, "Release of a never-held lease with a watermark", s.Release(ctx, forged, wm(1<<40)), fencing.CodeFenced)
	// The next lease starts above it, and a journal write below it is refused.
	g2, err := s.Acquire(ctx, "val-1", "region-a", "a-1", 5)
	if err != nil || g2.Watermark == nil || g2.Watermark.Height != 10 {
		t.Fatalf("Acquire = %+v, %v; want watermark height 10", g2, err)
	}
	if _, err := journal(s, g2.Lease, 8, 1); fencing.CodeOf(err) != fencing.CodeWatermark {
		t.Fatalf("Journal below the raised watermark = %v, want watermark", err)
	}
}

func TestPruneJournal(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 5)
	if err != nil {
		t.Fatal(err)
	}
	for h := uint64(1); h <= 20; h++ {
		if _, err := journal(s, g.Lease, h, byte(h)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PruneJournal(ctx, "val-1", 5)
	if err != nil || n != 14 {
		t.Fatalf("PruneJournal(keep 5) = %d, %v; want 14 deleted (heights 1-14)", n, err)
	}
	entries, err := s.JournalEntries(ctx, "val-1")
	if err != nil || len(entries) != 6 || entries[0].HRS.Height != 15 {
		t.Fatalf("after pruning: %d entries from %+v, %v; want heights 15-20", len(entries), entries, err)
	}
	// The watermark still refuses what was pruned.
	if _, err := journal(s, g.Lease, 3, 99); fencing.CodeOf(err) != fencing.CodeWatermark {
		t.Fatalf("Journal at a pruned height = %v, want watermark", err)
	}
}

// Bumping a frozen validator while the reconciler fences it (revoking ->
// fenced under the bump's feet) is not a conflict: no operator acted.
func TestBumpFrozenWhileFencing(t *testing.T) {
	c := etcdtest.New(t, 1)
	s := newStore(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 20 {
		id := fencing.ValidatorID(fmt.Sprintf("val-%d", i))
		addValidator(t, s, id, "region-a")
		if _, err := s.Freeze(ctx, id, 1, change); err != nil {
			t.Fatal(err)
		}
		fenced := make(chan error, 1)
		go func() { _, err := s.Reconcile(ctx, id); fenced <- err }()
		if _, err := s.StartBump(ctx, id, 1, "region-b", change, ""); err != nil {
			t.Fatalf("StartBump(%s) racing the fence = %v, want success", id, err)
		}
		if err := <-fenced; err != nil {
			t.Fatal(err)
		}
	}
}

// Invariant 2: while a lease of the epoch lives neither T3 nor T4 may
// commit, whatever a replica tries (the transactions compare that no lease
// key of the epoch exists).
func TestFenceAndGrantRefusedWhileALeaseLives(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")
	if _, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 30); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartBump(ctx, "val-1", 1, "region-b", change, ""); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(ctx, "val-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.fence(ctx, "val-1", st); !errors.Is(err, fencing.ErrConflict) {
		t.Fatalf("fence with a live lease = %v, want conflict", err)
	}
	forced := st
	forced.Epoch.State = fencing.StateFenced
	if err := s.grant(ctx, "val-1", forced); !errors.Is(err, fencing.ErrConflict) {
		t.Fatalf("grant with a live lease = %v, want conflict", err)
	}
}
