package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/etcdtest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// The model-based test drives the store with random interleavings of
// acquire, renew, release, lease checks, journal writes, freezes, bumps and
// reconciliation from several sidecars of two holders, on real etcd, where
// any call may be delivered late (its first transaction held back while
// later calls run, then sent; its answer is then lost, as a caller that gave
// up and retried would lose it), and time passes by expiring the etcd
// leases granted earliest. After every step it checks, from etcd:
//
//	M1 at most one live lease key per (validator, epoch), none of another epoch
//	M2 a sidecar that holds a lease as far as it knows (its deadline, which
//	   counts from its last answered acquire or renewal, is ahead) finds its
//	   key alive, the same incarnation, on an etcd lease granted no earlier
//	   than the one of that answer (so the key outlives the deadline)
//	M3 a call made by a sidecar with another sidecar's lease (the holder in
//	   the token rewritten to its own, as a caller's identity would be)
//	   never journals nor renews (nor releases it: M2)
//	M4 the quorum watermark never moves back, epochs never go back
//
// FENCE_MODEL_SEED=N replays one schedule; FENCE_MODEL_STEPS sets its length.

// modelCall identifies one store call in its context, so the etcd wrappers
// know which call a transaction or lease grant belongs to.
type modelCall struct {
	id   int
	hold bool
}

type modelCallKey struct{}

// modelKV holds the first transaction of a call marked hold until released.
type modelKV struct {
	clientv3.KV
	mu      sync.Mutex
	started map[int]bool
	reached map[int]chan struct{}
	gates   map[int]chan struct{}
}

func (m *modelKV) Txn(ctx context.Context) clientv3.Txn {
	t := m.KV.Txn(ctx)
	c, ok := ctx.Value(modelCallKey{}).(modelCall)
	if !ok || !c.hold {
		return t
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started[c.id] {
		return t
	}
	m.started[c.id] = true
	return &heldTxn{Txn: t, gate: m.gates[c.id], reached: m.reached[c.id]}
}

// modelLease records every etcd lease grant in order: a lease granted later
// expires later (all have one TTL).
type modelLease struct {
	clientv3.Lease
	mu     sync.Mutex
	seq    map[clientv3.LeaseID]int
	byCall map[int]clientv3.LeaseID // the last lease a call granted
	order  []clientv3.LeaseID
}

func (m *modelLease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	r, err := m.Lease.Grant(ctx, ttl)
	if err == nil {
		m.mu.Lock()
		m.seq[r.ID] = len(m.order) + 1
		m.order = append(m.order, r.ID)
		if c, ok := ctx.Value(modelCallKey{}).(modelCall); ok {
			m.byCall[c.id] = r.ID
		}
		m.mu.Unlock()
	}
	return r, err
}

func (m *modelLease) seqOf(id clientv3.LeaseID) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq[id]
}

// modelSidecar is what one sidecar knows.
type modelSidecar struct {
	name, holder string
	held         bool          // it holds a lease as far as it knows
	lease        fencing.Lease // its token
	leaseSeq     int           // grant order of the etcd lease of its last answer
	height       uint64
}

type pendingCall struct {
	what string
	done chan error
	gate chan struct{}
}

type model struct {
	t      *testing.T
	rng    *rand.Rand
	s      *Store
	cli    *clientv3.Client
	kv     *modelKV
	leases *modelLease
	id     fencing.ValidatorID
	scs    []*modelSidecar
	nextID int

	pending []*pendingCall
	expired int // every etcd lease granted at or before this seq has expired
	lastWM  string
	lastEp  uint64
	log     []string
}

func (m *model) logf(format string, args ...any) {
	m.log = append(m.log, fmt.Sprintf(format, args...))
}

// call runs fn as one store call, held back with probability p: then it
// stays pending until deliver sends it, and its answer is lost.
func (m *model) call(what string, p float64, fn func(ctx context.Context) error) (error, bool) {
	m.nextID++
	c := modelCall{id: m.nextID, hold: m.rng.Float64() < p}
	ctx := context.WithValue(context.Background(), modelCallKey{}, c)
	pc := &pendingCall{what: what, done: make(chan error, 1)}
	var reached chan struct{}
	if c.hold {
		pc.gate, reached = make(chan struct{}), make(chan struct{})
		m.kv.mu.Lock()
		m.kv.gates[c.id], m.kv.reached[c.id] = pc.gate, reached
		m.kv.mu.Unlock()
	}
	go func() { pc.done <- fn(ctx) }()
	select {
	case err := <-pc.done:
		return err, false
	case <-reached:
		m.pending = append(m.pending, pc)
		m.logf("  held: %s", what)
		return nil, true
	}
}

func (m *model) grantSeqOf(callID int) int {
	m.leases.mu.Lock()
	id := m.leases.byCall[callID]
	m.leases.mu.Unlock()
	return m.leases.seqOf(id)
}

func (m *model) step(i int) {
	// Calls that need a lease come mostly from a sidecar that holds one.
	sc := m.scs[m.rng.IntN(len(m.scs))]
	var holders []*modelSidecar
	for _, h := range m.scs {
		if h.held {
			holders = append(holders, h)
		}
	}
	if len(holders) > 0 && m.rng.IntN(4) > 0 {
		sc = holders[m.rng.IntN(len(holders))]
	}
	ttl := int64(30)
	switch r := m.rng.IntN(100); {
	case r < 15: // acquire
		var g Grant
		callID := m.nextID + 1
		err, held := m.call("acquire "+sc.name, 0.2, func(ctx context.Context) error {
			var err error
			g, err = m.s.Acquire(ctx, m.id, sc.holder, sc.name, ttl)
			return err
		})
		m.logf("%d acquire %s: held=%t err=%v", i, sc.name, held, err)
		if !held && err == nil {
			sc.held, sc.lease, sc.leaseSeq = true, g.Lease, m.grantSeqOf(callID)
			if g.Watermark != nil {
				sc.height = max(sc.height, g.Watermark.Height)
			}
		}
	case r < 37: // renew
		if !sc.held {
			return
		}
		var nl fencing.Lease
		callID := m.nextID + 1
		err, held := m.call("renew "+sc.name, 0.3, func(ctx context.Context) error {
			var err error
			nl, err = m.s.Renew(ctx, sc.lease, nil)
			return err
		})
		m.logf("%d renew %s: held=%t err=%v", i, sc.name, held, err)
		switch {
		case held:
		case err == nil:
			sc.lease, sc.leaseSeq = nl, m.grantSeqOf(callID)
		default:
			sc.held = false // K3: it stops signing
		}
	case r < 45: // release
		if !sc.held {
			return
		}
		l := sc.lease
		sc.held = false // it stops signing before it asks
		err, held := m.call("release "+sc.name, 0.2, func(ctx context.Context) error { return m.s.Release(ctx, l, nil) })
		m.logf("%d release %s: held=%t err=%v", i, sc.name, held, err)
	case r < 65: // journal
		if !sc.held {
			return
		}
		sc.height++
		req := fencing.JournalRequest{Lease: sc.lease, HRS: fencing.HRS{Height: sc.height, Step: fencing.StepCommit}, Digest: fencing.Digest{byte(m.rng.Uint32())}}
		err, held := m.call("journal "+sc.name, 0.2, func(ctx context.Context) error { _, err := m.s.Journal(ctx, req); return err })
		m.logf("%d journal %s %d: held=%t err=%v", i, sc.name, sc.height, held, err)
	case r < 72: // a sidecar uses another's lease under its own holder
		var victim *modelSidecar
		for _, v := range m.scs {
			if v.held && v.holder != sc.holder {
				victim = v
			}
		}
		if victim == nil {
			return
		}
		forged := victim.lease
		forged.Holder = sc.holder
		req := fencing.JournalRequest{Lease: forged, HRS: fencing.HRS{Height: 1 << 40, Step: fencing.StepCommit}, Digest: fencing.Digest{0xee}}
		ops := []struct {
			name string
			fn   func(ctx context.Context) error
		}{
			{"journal", func(ctx context.Context) error { _, err := m.s.Journal(ctx, req); return err }},
			{"renew", func(ctx context.Context) error { _, err := m.s.Renew(ctx, forged, nil); return err }},
			{"release", func(ctx context.Context) error { return m.s.Release(ctx, forged, nil) }},
		}
		op := ops[m.rng.IntN(len(ops))]
		err, _ := m.call("forged "+op.name, 0, op.fn)
		m.logf("%d %s uses %s's lease for %s: err=%v", i, sc.name, victim.name, op.name, err)
		// A release of a lease that is not there succeeds (it is
		// idempotent); that it released nothing, M2 checks.
		if err == nil && op.name != "release" {
			m.fail("M3: %s succeeded with %s's lease (holder rewritten to %s)", op.name, victim.name, sc.holder)
		}
	case r < 78: // an operator bumps or freezes
		to := "region-a"
		if m.rng.IntN(2) == 0 {
			to = "region-b"
		}
		var err error
		if m.rng.IntN(3) == 0 {
			_, err = m.s.Freeze(context.Background(), m.id, 0, fencing.Change{By: "model", Reason: "model"})
		} else {
			_, err = m.s.StartBump(context.Background(), m.id, 0, to, fencing.Change{By: "model", Reason: "model"}, "")
		}
		m.logf("%d freeze/bump to %s: %v", i, to, err)
	case r < 86: // a coordinator replica reconciles for a moment
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		ep, err := m.s.Reconcile(ctx, m.id)
		cancel()
		m.logf("%d reconcile: %d %s %s (%v)", i, ep.Epoch, ep.State, ep.Holder, err)
	case r < 93: // time passes: the earliest live etcd lease expires
		m.expireEarliest(i)
	default: // a held call is delivered, late
		if len(m.pending) == 0 {
			return
		}
		k := m.rng.IntN(len(m.pending))
		pc := m.pending[k]
		m.pending = slices.Delete(m.pending, k, k+1)
		close(pc.gate)
		err := <-pc.done
		m.logf("%d delivered late: %s: err=%v", i, pc.what, err)
	}
}

// expireEarliest lets time pass until the earliest granted etcd lease that
// still holds a key expires: it and every lease granted before it are
// revoked, as etcd would expire them, and every sidecar whose last answer
// came with one of them has passed its deadline (which is before that
// lease's expiry).
func (m *model) expireEarliest(i int) {
	resp, err := m.cli.Get(context.Background(), m.s.vkey(m.id, "leases/"), clientv3.WithPrefix())
	if err != nil {
		m.t.Fatal(err)
	}
	upTo := 0
	for _, kv := range resp.Kvs {
		if s := m.leases.seqOf(clientv3.LeaseID(kv.Lease)); upTo == 0 || s < upTo {
			upTo = s
		}
	}
	if upTo == 0 {
		return
	}
	m.leases.mu.Lock()
	ids := slices.Clone(m.leases.order[m.expired:upTo])
	m.leases.mu.Unlock()
	for _, id := range ids {
		_, _ = m.cli.Revoke(context.Background(), id)
	}
	m.expired = upTo
	for _, sc := range m.scs {
		if sc.held && sc.leaseSeq <= upTo {
			sc.held = false
		}
	}
	m.logf("%d time passes: leases up to #%d expired", i, upTo)
}

func (m *model) fail(format string, args ...any) {
	m.t.Helper()
	tail := m.log[max(0, len(m.log)-40):]
	m.t.Fatalf("invariant violated: %s\nlast steps:\n%s", fmt.Sprintf(format, args...), strings.Join(tail, "\n"))
}

// check verifies M1, M2 and M4 from etcd.
func (m *model) check() {
	m.t.Helper()
	ctx := context.Background()
	tr, err := m.cli.Txn(ctx).Then(
		clientv3.OpGet(m.s.epochKey(m.id)),
		clientv3.OpGet(m.s.vkey(m.id, "leases/"), clientv3.WithPrefix()),
		clientv3.OpGet(m.s.hrsKey(m.id)),
	).Commit()
	if err != nil {
		m.t.Fatal(err)
	}
	var ep fencing.Epoch
	if err := json.Unmarshal(tr.Responses[0].GetResponseRange().Kvs[0].Value, &ep); err != nil {
		m.t.Fatal(err)
	}
	if ep.Epoch < m.lastEp {
		m.fail("M4: epoch went from %d back to %d", m.lastEp, ep.Epoch)
	}
	m.lastEp = ep.Epoch
	if wm := string(tr.Responses[2].GetResponseRange().Kvs[0].Value); wm < m.lastWM {
		m.fail("M4: quorum watermark went from %s back to %s", m.lastWM, wm)
	} else {
		m.lastWM = wm
	}
	live := tr.Responses[1].GetResponseRange().Kvs
	perEpoch := map[uint64]int{}
	for _, kv := range live {
		rest := strings.TrimPrefix(string(kv.Key), m.s.vkey(m.id, "leases/"))
		e, err := strconv.ParseUint(rest[:strings.IndexByte(rest, '/')], 10, 64)
		if err != nil {
			m.t.Fatalf("lease key %s: %v", kv.Key, err)
		}
		perEpoch[e]++
		if e != ep.Epoch {
			m.fail("M1: live lease key %s under epoch %d while the epoch is %d", kv.Key, e, ep.Epoch)
		}
	}
	if n := perEpoch[ep.Epoch]; n > 1 {
		m.fail("M1: %d live lease keys under epoch %d: two sidecars would sign", n, ep.Epoch)
	}
	for _, sc := range m.scs {
		if !sc.held {
			continue
		}
		var mine *struct {
			lease clientv3.LeaseID
		}
		for _, kv := range live {
			var lr fencing.LeaseRecord
			if json.Unmarshal(kv.Value, &lr) == nil && lr.Sidecar == sc.name && kv.CreateRevision == sc.lease.LeaseRevision {
				mine = &struct{ lease clientv3.LeaseID }{clientv3.LeaseID(kv.Lease)}
			}
		}
		if mine == nil {
			m.fail("M2: %s holds a lease as far as it knows (deadline ahead) but its key (incarnation %d) is gone: the drain would end while it signs", sc.name, sc.lease.LeaseRevision)
		}
		if got := m.leases.seqOf(mine.lease); got < sc.leaseSeq {
			m.fail("M2: %s's key is on etcd lease #%d, granted before #%d of its last answered renewal: it expires before the sidecar's deadline", sc.name, got, sc.leaseSeq)
		}
	}
}

func TestStoreModel(t *testing.T) {
	steps := 400
	rounds := 3
	if testing.Short() {
		steps, rounds = 150, 1
	}
	if v := os.Getenv("FENCE_MODEL_STEPS"); v != "" {
		steps, _ = strconv.Atoi(v)
	}
	seeds := make([]uint64, rounds)
	for i := range seeds {
		seeds[i] = rand.Uint64() % 1_000_000_000
	}
	if v := os.Getenv("FENCE_MODEL_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FENCE_MODEL_SEED=%q: %v", v, err)
		}
		seeds = []uint64{s}
	}
	c := etcdtest.New(t, 1)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("FENCE_MODEL_SEED=%d replays this schedule", seed)
			runModel(t, c, seed, steps)
		})
	}
}

func runModel(t *testing.T, c *etcdtest.Cluster, seed uint64, steps int) {
	cli := c.Client(t)
	kv := &modelKV{KV: cli.KV, started: map[int]bool{}, reached: map[int]chan struct{}{}, gates: map[int]chan struct{}{}}
	ls := &modelLease{Lease: cli.Lease, seq: map[clientv3.LeaseID]int{}, byCall: map[int]clientv3.LeaseID{}}
	cli.KV, cli.Lease = kv, ls
	s, err := New(cli, Options{Prefix: fmt.Sprintf("/model-%d/", seed), RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m := &model{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), s: s, cli: cli, kv: kv, leases: ls, id: "val-1"}
	for _, n := range []struct{ name, holder string }{{"a-0", "region-a"}, {"a-1", "region-a"}, {"b-0", "region-b"}, {"b-1", "region-b"}} {
		m.scs = append(m.scs, &modelSidecar{name: n.name, holder: n.holder})
	}
	if _, err := s.AddValidator(context.Background(), m.id, "region-a", fencing.Change{By: "model", Reason: "model"}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Deliver what is still held so no goroutine outlives the test.
		for _, pc := range m.pending {
			close(pc.gate)
			<-pc.done
		}
	}()
	for i := range steps {
		m.step(i)
		m.check()
	}
	t.Logf("%d steps, epoch %d, %d calls, %d still held", steps, m.lastEp, m.nextID, len(m.pending))
}
