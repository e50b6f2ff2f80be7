package coordinator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/etcdtest"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// The bump's driver (the reconciler) and its timeline, on real etcd: the
// transactions they drive are the store's (internal/store tests them one by
// one); these tests check the process around them.

var testChange = fencing.Change{By: "alice", Reason: "test"}

// newTestStore is a store (a coordinator replica) over its own client of c.
func newTestStore(t *testing.T, c *etcdtest.Cluster) (*store.Store, *clientv3.Client) {
	t.Helper()
	cli := c.Client(t)
	s, err := store.New(cli, store.Options{RequestTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s, cli
}

func addValidator(t *testing.T, s *store.Store, id fencing.ValidatorID, holder string) {
	t.Helper()
	if _, err := s.AddValidator(context.Background(), id, holder, testChange); err != nil {
		t.Fatalf("AddValidator(%s) = %v", id, err)
	}
}

func wantCode(t *testing.T, what string, err error, code fencing.Code) {
	t.Helper()
	if fencing.CodeOf(err) != code {
		t.Fatalf("%s = %v, want code %s", what, err, code)
	}
}

func journal(s *store.Store, l fencing.Lease, h uint64, digest byte) (fencing.JournalEntry, error) {
	return s.Journal(context.Background(), fencing.JournalRequest{Lease: l, HRS: fencing.HRS{Height: h, Step: fencing.StepCommit}, Digest: fencing.Digest{digest}})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// releaseOnRevoke plays a cooperative sidecar: it watches its epoch and
// releases the lease as soon as it sees revoking.
func releaseOnRevoke(ctx context.Context, s *store.Store, l fencing.Lease) error {
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
	s, _ := newTestStore(t, etcdtest.New(t, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addValidator(t, s, "val-1", "region-a")
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 60)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() { released <- releaseOnRevoke(ctx, s, g.Lease) }()
	go newReconciler(s, hclog.NewNullLogger(), 100*time.Millisecond, 5).run(ctx)

	b, err := s.StartBump(ctx, "val-1", 1, "region-b", testChange, "")
	if err != nil {
		t.Fatal(err)
	}
	// A 60 s lease: the bump can only finish inside this wait if the lease was
	// released rather than left to expire.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	res, err := waitBump(wctx, s, "val-1", b, 0)
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
	first := firstSignature(ctx, s, "val-1", 2, 5*time.Second)
	if first == nil || first.Step != "first_signature" || !strings.Contains(first.Detail, "7/0/commit by b-0") {
		t.Fatalf("firstSignature = %+v, want 7/0/commit by b-0", first)
	}
	if none := firstSignature(ctx, s, "val-1", 3, 200*time.Millisecond); none != nil {
		t.Fatalf("firstSignature of an epoch nobody signed in = %+v, want nil", none)
	}
}

// Behaviour 2, expired path and invariant 2: a sidecar that never answers
// holds the bump in revoking until its lease expires in etcd.
func TestBumpWaitsForExpiry(t *testing.T) {
	s, _ := newTestStore(t, etcdtest.New(t, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addValidator(t, s, "val-1", "region-a")
	const ttl = 3
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", ttl)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.StartBump(ctx, "val-1", 1, "region-b", testChange, "")
	if err != nil {
		t.Fatal(err)
	}
	// (That neither T3 nor T4 commits while the lease lives is
	// TestFenceAndGrantRefusedWhileALeaseLives in internal/store.)
	go newReconciler(s, hclog.NewNullLogger(), 100*time.Millisecond, 5).run(ctx)
	res, err := waitBump(ctx, s, "val-1", b, 0)
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
	r0, _ := newTestStore(t, c)
	r1, _ := newTestStore(t, c)
	replicas := []*store.Store{r0, r1}
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
		go newReconciler(r, hclog.NewNullLogger(), 50*time.Millisecond, 5).run(ctx)
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

func waitEpoch(t *testing.T, s *store.Store, id fencing.ValidatorID, epoch uint64) fencing.Epoch {
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
	r1, cli1 := newTestStore(t, c)
	r2, _ := newTestStore(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addValidator(t, r1, "val-1", "region-a")
	if _, err := r1.Acquire(ctx, "val-1", "region-a", "a-0", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.StartBump(ctx, "val-1", 1, "region-b", testChange, ""); err != nil {
		t.Fatal(err)
	}
	// r1 takes the bump lock and waits for the drain...
	ctx1, kill := context.WithCancel(ctx)
	go newReconciler(r1, hclog.NewNullLogger(), 50*time.Millisecond, 2).run(ctx1)
	waitFor(t, "r1 holds the bump lock", func() bool {
		resp, err := cli1.Get(ctx, store.DefaultPrefix+"validators/val-1/bump-lock", clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) == 1
	})
	// ...and dies: its connection goes first, so it cannot unlock.
	_ = cli1.Close()
	kill()

	go newReconciler(r2, hclog.NewNullLogger(), 50*time.Millisecond, 2).run(ctx)
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

// A bump retried with the same ID (a client failing over to another replica
// after the first committed it) gets that bump back, running or granted;
// another bump still conflicts.
func TestBumpIdempotent(t *testing.T) {
	c := etcdtest.New(t, 1)
	r1, _ := newTestStore(t, c)
	r2, _ := newTestStore(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addValidator(t, r1, "val-1", "region-a")
	const id = "00112233445566778899aabbccddeeff"
	b, err := r1.StartBump(ctx, "val-1", 1, "region-b", testChange, id)
	if err != nil || b.ID != id {
		t.Fatalf("StartBump = %+v, %v", b, err)
	}
	again, err := r2.StartBump(ctx, "val-1", 1, "region-b", testChange, id)
	if err != nil || again.ID != id || again.FromEpoch != 1 {
		t.Fatalf("retry while running = %+v, %v; want the same bump", again, err)
	}
	if _, err := r2.StartBump(ctx, "val-1", 1, "region-b", testChange, "ffeeddccbbaa99887766554433221100"); fencing.CodeOf(err) != fencing.CodeConflict {
		t.Fatalf("another bump while running = %v, want conflict", err)
	}
	go newReconciler(r1, hclog.NewNullLogger(), 50*time.Millisecond, 5).run(ctx)
	waitEpoch(t, r1, "val-1", 2)
	done, err := r2.StartBump(ctx, "val-1", 1, "region-b", testChange, id)
	if err != nil || done.ID != id || done.FromEpoch != 1 {
		t.Fatalf("retry after the grant = %+v, %v; want the granted bump", done, err)
	}
	res, err := waitBump(ctx, r2, "val-1", done, 0)
	if err != nil || !res.Done || res.Epoch.Epoch != 2 {
		t.Fatalf("WaitBump on the retried bump = %+v, %v; want done at epoch 2", res, err)
	}
	if _, err := r1.StartBump(ctx, "val-1", 0, "region-b", testChange, "NOT-HEX"); fencing.CodeOf(err) != fencing.CodeBadRequest {
		t.Fatalf("bad bump id = %v, want bad_request", err)
	}
}
