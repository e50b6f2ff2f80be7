package store

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/etcdtest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// heldKV delays chosen transactions of one etcd client: a transaction the
// hold function picks is not sent until the test releases it, as when the
// coordinator stalls (a GC pause, SIGSTOP, a slow etcd leader) between
// deciding a transaction and etcd applying it. The etcd cluster is real;
// only the moment the message arrives changes.
type heldKV struct {
	clientv3.KV
	mu      sync.Mutex
	hold    bool          // hold the next transaction
	gate    chan struct{} // closed by release
	reached chan struct{} // closed when the held transaction is ready to send
}

func (h *heldKV) Txn(ctx context.Context) clientv3.Txn {
	h.mu.Lock()
	held, gate, reached := h.hold, h.gate, h.reached
	h.hold = false
	h.mu.Unlock()
	t := h.KV.Txn(ctx)
	if !held {
		return t
	}
	return &heldTxn{Txn: t, gate: gate, reached: reached}
}

// holdNext holds the next transaction: reached closes when it is about to
// be sent, release sends it.
func (h *heldKV) holdNext() (reached <-chan struct{}, release func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold, h.gate, h.reached = true, make(chan struct{}), make(chan struct{})
	gate := h.gate
	return h.reached, func() { close(gate) }
}

type heldTxn struct {
	clientv3.Txn
	gate, reached chan struct{}
}

func (t *heldTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t *heldTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }
func (t *heldTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }
func (t *heldTxn) Commit() (*clientv3.TxnResponse, error) {
	close(t.reached)
	<-t.gate
	return t.Txn.Commit()
}

// newHeldStore returns a store whose transactions the test can hold, over
// its own client of c (another coordinator replica).
func newHeldStore(t *testing.T, c *etcdtest.Cluster) (*Store, *heldKV) {
	t.Helper()
	cli := c.Client(t)
	h := &heldKV{KV: cli.KV}
	cli.KV = h
	s, err := New(cli, Options{RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s, h
}

// leaseOf returns the etcd lease the only live lease key of id is attached
// to, or 0 when there is none.
func leaseOf(t *testing.T, s *Store, id fencing.ValidatorID) clientv3.LeaseID {
	t.Helper()
	resp, err := s.cli.Get(context.Background(), s.vkey(id, "leases/"), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) > 1 {
		t.Fatalf("%d live lease keys for %s, want at most 1", len(resp.Kvs), id)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// Finding 1: a renewal whose transaction is delayed (one coordinator replica
// stalled) commits after a later renewal (through another replica) has
// succeeded. It must not move the key back onto its own, earlier-expiring
// etcd lease, nor revoke the later renewal's lease: the sidecar's deadline
// counts from the later renewal, so the key must outlive it.
func TestStaleRenewCannotShortenTheLease(t *testing.T) {
	c := etcdtest.New(t, 1)
	fast := newStore(t, c)
	slow, held := newHeldStore(t, c)
	ctx := context.Background()
	addValidator(t, fast, "val-1", "region-a")
	g, err := fast.Acquire(ctx, "val-1", "region-a", "a-0", 30)
	if err != nil {
		t.Fatal(err)
	}

	// R1 through the stalled replica: its etcd lease is granted, then its
	// transaction waits.
	reached, release := held.holdNext()
	r1 := make(chan error, 1)
	go func() { _, err := slow.Renew(ctx, g.Lease, nil); r1 <- err }()
	<-reached

	// R2, the sidecar's retry through a healthy replica, succeeds.
	l2, err := fast.Renew(ctx, g.Lease, nil)
	if err != nil {
		t.Fatalf("R2 = %v", err)
	}
	after2 := leaseOf(t, fast, "val-1")

	// R1 arrives late.
	release()
	err1 := <-r1
	t.Logf("late R1 = %v", err1)

	if got := leaseOf(t, fast, "val-1"); got != after2 {
		t.Fatalf("after the late renewal the key is on etcd lease %x, want %x (the lease of the later renewal R2): the key would expire before the sidecar's deadline", got, after2)
	}
	ttl, err := fast.cli.TimeToLive(ctx, after2)
	if err != nil || ttl.TTL <= 0 {
		t.Fatalf("R2's etcd lease %x was revoked by the late renewal (TTL %d, %v)", after2, ttl.TTL, err)
	}
	// The sidecar goes on with the token R2 gave it.
	if _, err := fast.Renew(ctx, l2, nil); err != nil {
		t.Fatalf("renew with R2's token after the late R1 = %v", err)
	}
}

// Finding 2: two sidecars of the active holder (a rolling update with
// surge, replicas: 2, a force-deleted pod's replacement) must not both hold a
// lease: at most one live lease per (validator, epoch).
func TestOneLiveLeasePerEpoch(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")
	if _, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 30); err != nil {
		t.Fatal(err)
	}
	_, err := s.Acquire(ctx, "val-1", "region-a", "a-1", 30)
	if err == nil {
		t.Fatal("a second sidecar of region-a acquired a lease while a-0 holds one: both would sign")
	}
	wantCode(t, "second sidecar's Acquire", err, fencing.CodeLeaseHeld)
}

// Finding 1 (acquire): an acquire of the same sidecar that arrives late (the
// sidecar retried after a timeout and got its lease from the retry) must not
// delete the key of the lease the sidecar now signs under.
func TestStaleAcquireKeepsTheCurrentLease(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 30)
	if err != nil {
		t.Fatal(err)
	}
	before := leaseOf(t, s, "val-1")
	// The first attempt's request, delivered late.
	_, err = s.Acquire(ctx, "val-1", "region-a", "a-0", 30)
	wantCode(t, "late Acquire", err, fencing.CodeLeaseHeld)
	if got := leaseOf(t, s, "val-1"); got != before {
		t.Fatalf("the late acquire moved the live lease from %x to %x", before, got)
	}
	if err := s.CheckLease(ctx, g.Lease); err != nil {
		t.Fatalf("the current lease is no longer valid after a late acquire: %v", err)
	}
}
