package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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

// releaseOnRevoke plays a cooperative sidecar: it watches its epoch and
// releases the lease as soon as it sees revoking.
func releaseOnRevoke(ctx context.Context, s *Store, l fencing.Lease) error {
	var rev int64
	for {
		ep, r, err := s.WatchEpoch(ctx, l.Validator, rev, 5*time.Second)
		if err != nil {
			return err
		}
		if ep.Epoch != l.Epoch || ep.State != fencing.StateActive {
			return s.Release(ctx, l, nil)
		}
		rev = r
	}
}

// Behaviour 2, released path: the sidecar releases when it sees revoking, so
// the bump ends long before the lease's TTL.
func TestBumpCooperative(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addValidator(t, s, "val-1", "region-a")
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 60)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() { released <- releaseOnRevoke(ctx, s, g.Lease) }()
	go s.NewReconciler(100*time.Millisecond, 5).Run(ctx)

	b, err := s.StartBump(ctx, "val-1", 1, "region-b", change, "")
	if err != nil {
		t.Fatal(err)
	}
	// A 60 s lease: the bump can only finish inside this wait if the lease was
	// released rather than left to expire.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	res, err := s.WaitBump(wctx, "val-1", b, 0)
	if err != nil || !res.Done {
		t.Fatalf("WaitBump = %+v, %v; want done", res, err)
	}
	if err := <-released; err != nil {
		t.Fatalf("release = %v", err)
	}
	if res.Epoch.Epoch != 2 || res.Epoch.Holder != "region-b" || res.Epoch.State != fencing.StateActive {
		t.Fatalf("epoch after bump = %+v, want active(2, region-b)", res.Epoch)
	}
	steps := map[string]string{}
	for _, te := range res.Timeline {
		steps[te.Step] = te.Detail
	}
	for _, want := range []string{"revoke_committed", "lease_released", "fenced", "grant_committed"} {
		if _, ok := steps[want]; !ok {
			t.Errorf("timeline %+v lacks %s", res.Timeline, want)
		}
	}
	if _, ok := steps["lease_expired"]; ok {
		t.Errorf("timeline %+v has an expired lease; the sidecar released it", res.Timeline)
	}
	// The new holder can lease; the old one cannot.
	gb, err := s.Acquire(ctx, "val-1", "region-b", "b-0", 5)
	if err != nil {
		t.Fatalf("Acquire by new holder = %v", err)
	}
	_, err = s.Acquire(ctx, "val-1", "region-a", "a-0", 5)
	wantCode(t, "Acquire by old holder", err, fencing.CodeFenced)

	// The timeline ends with the new holder's first signature when it is
	// seen within the wait.
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = journal(s, gb.Lease, 7, 7)
	}()
	first := s.firstSignature(ctx, "val-1", 2, 5*time.Second)
	if first == nil || first.Step != "first_signature" || !strings.Contains(first.Detail, "7/0/commit by b-0") {
		t.Fatalf("firstSignature = %+v, want 7/0/commit by b-0", first)
	}
	if none := s.firstSignature(ctx, "val-1", 3, 200*time.Millisecond); none != nil {
		t.Fatalf("firstSignature of an epoch nobody signed in = %+v, want nil", none)
	}
}

// Behaviour 2, expired path and invariant 2: a sidecar that never answers
// holds the bump in revoking until its lease expires in etcd.
func TestBumpWaitsForExpiry(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addValidator(t, s, "val-1", "region-a")
	const ttl = 3
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", ttl)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.StartBump(ctx, "val-1", 1, "region-b", change, "")
	if err != nil {
		t.Fatal(err)
	}
	// While the lease lives neither T3 nor T4 may commit, whatever a replica
	// tries (the transactions compare that no lease key of epoch 1 exists).
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

	go s.NewReconciler(100*time.Millisecond, 5).Run(ctx)
	res, err := s.WaitBump(ctx, "val-1", b, 0)
	if err != nil || !res.Done {
		t.Fatalf("WaitBump = %+v, %v", res, err)
	}
	var expired, grant time.Time
	for _, te := range res.Timeline {
		switch te.Step {
		case "lease_expired":
			expired = te.At
		case "grant_committed":
			grant = te.At
		}
	}
	if expired.IsZero() || grant.Before(expired) {
		t.Fatalf("timeline %+v: want lease_expired before grant_committed", res.Timeline)
	}
	if _, err := journal(s, g.Lease, 1, 1); fencing.CodeOf(err) != fencing.CodeStaleEpoch {
		t.Fatalf("Journal with the expired lease = %v, want stale_epoch", err)
	}
}

// Behaviour 3: 50 goroutines on two coordinator replicas bump the same
// validator with the same expected epoch; exactly one wins.
func TestBumpHammer(t *testing.T) {
	c := etcdtest.New(t, 1)
	replicas := []*Store{newStore(t, c), newStore(t, c)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addValidator(t, replicas[0], "val-1", "region-a")

	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		wg.Go(func() {
			<-start
			_, err := replicas[i%2].StartBump(ctx, "val-1", 1, "region-b", fencing.Change{By: fmt.Sprintf("op-%d", i), Reason: "hammer"}, "")
			switch {
			case err == nil:
				wins.Add(1)
			case fencing.CodeOf(err) == fencing.CodeConflict:
				conflicts.Add(1)
			default:
				t.Errorf("StartBump = %v, want success or conflict", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != 49 {
		t.Fatalf("wins = %d, conflicts = %d; want 1 and 49", wins.Load(), conflicts.Load())
	}
	for _, r := range replicas {
		go r.NewReconciler(50*time.Millisecond, 5).Run(ctx)
	}
	waitEpoch(t, replicas[1], "val-1", 2)
	evs, err := replicas[0].Events(ctx, "val-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[fencing.EventKind]int{}
	for _, ev := range evs {
		counts[ev.Kind]++
	}
	if counts[fencing.EventFreeze] != 1 || counts[fencing.EventGrant] != 1 || counts[fencing.EventFenced] != 1 {
		t.Fatalf("history counts %v, want one revoke, one fenced, one grant", counts)
	}
}

func waitEpoch(t *testing.T, s *Store, id fencing.ValidatorID, epoch uint64) fencing.Epoch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rev int64
	for {
		ep, r, err := s.WatchEpoch(ctx, id, rev, time.Second)
		if err != nil {
			t.Fatalf("waiting for epoch %d: %v", epoch, err)
		}
		if ep.Epoch >= epoch && ep.State == fencing.StateActive {
			return ep
		}
		if ctx.Err() != nil {
			t.Fatalf("epoch is %+v after 20s, want %d", ep, epoch)
		}
		rev = r
	}
}

// Behaviour 4: the replica driving a bump dies after the revoke and before
// the grant; another replica finishes it, granting exactly once.
func TestBumpResumedByAnotherReplica(t *testing.T) {
	c := etcdtest.New(t, 1)
	r1, r2 := newStore(t, c), newStore(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addValidator(t, r1, "val-1", "region-a")
	if _, err := r1.Acquire(ctx, "val-1", "region-a", "a-0", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.StartBump(ctx, "val-1", 1, "region-b", change, ""); err != nil {
		t.Fatal(err)
	}
	// r1 takes the bump lock and waits for the drain...
	ctx1, kill := context.WithCancel(ctx)
	go r1.NewReconciler(50*time.Millisecond, 2).Run(ctx1)
	waitFor(t, "r1 holds the bump lock", func() bool {
		resp, err := r1.cli.Get(ctx, r1.bumpLockKey("val-1"), clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) == 1
	})
	// ...and dies: its connection goes first, so it cannot unlock.
	_ = r1.cli.Close()
	kill()

	go r2.NewReconciler(50*time.Millisecond, 2).Run(ctx)
	ep := waitEpoch(t, r2, "val-1", 2)
	if ep.Holder != "region-b" {
		t.Fatalf("epoch 2 held by %s, want region-b", ep.Holder)
	}
	evs, err := r2.Events(ctx, "val-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var grants []uint64
	for _, ev := range evs {
		if ev.Kind == fencing.EventGrant {
			grants = append(grants, ev.To.Epoch)
		}
	}
	if len(grants) != 1 || grants[0] != 2 {
		t.Fatalf("grants %v, want exactly [2]", grants)
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

// A bump retried with the same ID (a client failing over to another replica
// after the first committed it) gets that bump back, running or granted;
// another bump still conflicts.
func TestBumpIdempotent(t *testing.T) {
	c := etcdtest.New(t, 1)
	r1, r2 := newStore(t, c), newStore(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addValidator(t, r1, "val-1", "region-a")
	const id = "00112233445566778899aabbccddeeff"
	b, err := r1.StartBump(ctx, "val-1", 1, "region-b", change, id)
	if err != nil || b.ID != id {
		t.Fatalf("StartBump = %+v, %v", b, err)
	}
	again, err := r2.StartBump(ctx, "val-1", 1, "region-b", change, id)
	if err != nil || again.ID != id || again.FromEpoch != 1 {
		t.Fatalf("retry while running = %+v, %v; want the same bump", again, err)
	}
	if _, err := r2.StartBump(ctx, "val-1", 1, "region-b", change, "ffeeddccbbaa99887766554433221100"); fencing.CodeOf(err) != fencing.CodeConflict {
		t.Fatalf("another bump while running = %v, want conflict", err)
	}
	go r1.NewReconciler(50*time.Millisecond, 5).Run(ctx)
	waitEpoch(t, r1, "val-1", 2)
	done, err := r2.StartBump(ctx, "val-1", 1, "region-b", change, id)
	if err != nil || done.ID != id || done.FromEpoch != 1 {
		t.Fatalf("retry after the grant = %+v, %v; want the granted bump", done, err)
	}
	res, err := r2.WaitBump(ctx, "val-1", done, 0)
	if err != nil || !res.Done || res.Epoch.Epoch != 2 {
		t.Fatalf("WaitBump on the retried bump = %+v, %v; want done at epoch 2", res, err)
	}
	if _, err := r1.StartBump(ctx, "val-1", 0, "region-b", change, "NOT-HEX"); fencing.CodeOf(err) != fencing.CodeBadRequest {
		t.Fatalf("bad bump id = %v, want bad_request", err)
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
