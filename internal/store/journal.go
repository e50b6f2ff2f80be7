package store

import (
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/groupcommit"
)

// journalOps are the compares and writes of one journal entry (invariant 4):
// the epoch record and lease incarnation of the token (leaseCmps), the new
// HRS strictly above the quorum watermark, and no entry at this HRS yet.
func (s *Store) journalOps(r fencing.JournalRequest) ([]clientv3.Cmp, []clientv3.Op, fencing.JournalEntry, error) {
	id := r.Lease.Validator
	e := fencing.JournalEntry{Validator: id, HRS: r.HRS, Digest: r.Digest, Epoch: r.Lease.Epoch, Sidecar: r.Lease.Sidecar, At: s.now().UTC()}
	ev, err := encode(e)
	if err != nil {
		return nil, nil, e, err
	}
	wm, err := encode(fencing.Watermark{HRS: r.HRS, Digest: r.Digest, Epoch: r.Lease.Epoch, Sidecar: r.Lease.Sidecar})
	if err != nil {
		return nil, nil, e, err
	}
	jk := s.journalKey(id, r.HRS)
	sk := r.HRS.SortKey()
	cmps := append(s.leaseCmps(r.Lease),
		clientv3.Compare(clientv3.Value(s.hrsKey(id)), "<", sk),
		clientv3.Compare(clientv3.CreateRevision(jk), "=", 0))
	ops := []clientv3.Op{
		clientv3.OpPut(jk, ev),
		clientv3.OpPut(s.hrsKey(id), sk),
		clientv3.OpPut(s.watermarkKey(id), wm),
	}
	return cmps, ops, e, nil
}

// Journal commits r in its own transaction. Journaling the same HRS with the
// same digest again succeeds (idempotent) as long as the lease is still
// valid; another digest at a journaled HRS, or an HRS not above the
// watermark, fails with a *fencing.WatermarkError.
func (s *Store) Journal(ctx context.Context, r fencing.JournalRequest) (fencing.JournalEntry, error) {
	if err := r.Validate(); err != nil {
		return fencing.JournalEntry{}, err
	}
	return s.journalValid(ctx, r)
}

// journalValid is Journal for a request already validated.
func (s *Store) journalValid(ctx context.Context, r fencing.JournalRequest) (fencing.JournalEntry, error) {
	cmps, ops, e, err := s.journalOps(r)
	if err != nil {
		return e, err
	}
	id := r.Lease.Validator
	tr, err := s.txn(ctx, "journal", cmps, ops, []clientv3.Op{
		clientv3.OpGet(s.epochKey(id)),
		clientv3.OpGet(s.tokenKey(r.Lease)),
		clientv3.OpGet(s.journalKey(id, r.HRS)),
		clientv3.OpGet(s.watermarkKey(id)),
	})
	if err != nil {
		return e, err
	}
	if tr.Succeeded {
		return e, nil
	}
	return s.whyNotJournaled(r, tr.Responses)
}

// whyNotJournaled classifies a failed journal transaction from the snapshot
// its Else branch read; the idempotent case is a success.
func (s *Store) whyNotJournaled(r fencing.JournalRequest, rs []*etcdserverpb.ResponseOp) (fencing.JournalEntry, error) {
	l := r.Lease
	epKVs := rs[0].GetResponseRange().Kvs
	leaseKVs := rs[1].GetResponseRange().Kvs
	if len(epKVs) == 0 || epKVs[0].ModRevision != l.EpochRevision ||
		len(leaseKVs) == 0 || leaseKVs[0].CreateRevision != l.LeaseRevision {
		return fencing.JournalEntry{}, s.whyNotHeld(l, epKVs)
	}
	if kvs := rs[2].GetResponseRange().Kvs; len(kvs) > 0 {
		var prev fencing.JournalEntry
		if err := decode(string(kvs[0].Key), kvs[0].Value, &prev); err != nil {
			return fencing.JournalEntry{}, err
		}
		if prev.Digest == r.Digest {
			return prev, nil
		}
		return fencing.JournalEntry{}, &fencing.WatermarkError{Signed: prev.HRS, Requested: r.HRS, SameHRS: true, Epoch: prev.Epoch, Sidecar: prev.Sidecar}
	}
	var wm fencing.Watermark
	if kvs := rs[3].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := decode(string(kvs[0].Key), kvs[0].Value, &wm); err != nil {
			return fencing.JournalEntry{}, err
		}
	}
	return fencing.JournalEntry{}, &fencing.WatermarkError{Signed: wm.HRS, Requested: r.HRS, Epoch: wm.Epoch, Sidecar: wm.Sidecar}
}

// JournalEntries lists the journal of id (all of it when id is empty), in
// key order: by validator, then height, round and step.
func (s *Store) JournalEntries(ctx context.Context, id fencing.ValidatorID) ([]fencing.JournalEntry, error) {
	ids := []fencing.ValidatorID{id}
	if id == "" {
		sts, err := s.Statuses(ctx)
		if err != nil {
			return nil, err
		}
		ids = ids[:0]
		for _, st := range sts {
			ids = append(ids, st.ID)
		}
	}
	var out []fencing.JournalEntry
	for _, v := range ids {
		resp, err := s.get(ctx, "journal_list", s.journalPrefix(v), clientv3.WithPrefix())
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			var e fencing.JournalEntry
			if err := decode(string(kv.Key), kv.Value, &e); err != nil {
				return nil, err
			}
			e.Revision = kv.ModRevision
			out = append(out, e)
		}
	}
	return out, nil
}

// ValidJournalRequest is a journal request that passed
// fencing.JournalRequest.Validate: the only kind the Journaler takes, so a
// request is validated once, where it enters (the coordinator's handler),
// and never reaches etcd unvalidated.
type ValidJournalRequest struct{ r fencing.JournalRequest }

// ValidateJournalRequest checks r once for the Journaler.
func ValidateJournalRequest(r fencing.JournalRequest) (ValidJournalRequest, error) {
	if err := r.Validate(); err != nil {
		return ValidJournalRequest{}, err
	}
	return ValidJournalRequest{r}, nil
}

// Request is the validated request.
func (v ValidJournalRequest) Request() fencing.JournalRequest { return v.r }

// Journaler commits journal requests with group commit: while one
// transaction is in flight, requests queue; the next transaction carries all
// of them (one per validator, at most maxBatch) when every compare holds, and
// falls back to one transaction each when any does not, so every request
// gets its own answer. Latency at concurrency 1 is one transaction. A batch
// of requests submitted together (JournalAll: one sidecar's batch) reaches
// the committer together.
type Journaler struct {
	s        *Store
	maxBatch int
	queue    *groupcommit.Queue[fencing.JournalRequest, fencing.JournalEntry]
}

type pendingJournal = groupcommit.Item[fencing.JournalRequest, fencing.JournalEntry]

// NewJournaler returns a Journaler; Run must be running for JournalAll to
// return. maxBatch is capped so a batch stays under etcd's default limit of
// 128 compares per transaction.
func (s *Store) NewJournaler(maxBatch int) *Journaler {
	if maxBatch <= 0 || maxBatch > 32 {
		maxBatch = 32
	}
	return &Journaler{s: s, maxBatch: maxBatch, queue: groupcommit.New[fencing.JournalRequest, fencing.JournalEntry](4096)}
}

// JournalAll commits rs together (and with concurrent requests of other
// callers) and answers each: entries[i] or errs[i]. Requests of one
// validator in rs are committed one after the other, in rs's order. If ctx
// ends first, those not yet answered may still commit.
func (j *Journaler) JournalAll(ctx context.Context, rs []ValidJournalRequest) (entries []fencing.JournalEntry, errs []error) {
	reqs := make([]fencing.JournalRequest, len(rs))
	for i, r := range rs {
		reqs[i] = r.r
	}
	return j.queue.DoAll(ctx, reqs)
}

// journalInFlight is how many journal transactions the Journaler keeps in
// flight at once (of different validators): etcd puts concurrent proposals
// in one raft round and one WAL sync, so throughput is not capped at one
// batch per etcd round trip when the round trip is long (a quorum across
// regions, a loaded disk). A second one starts only with a full batch.
const journalInFlight = 4

// Run commits queued requests until ctx ends (and waits for the
// transactions in flight). A validator is in at most one transaction in
// flight, and its requests are committed in the order they queued.
func (j *Journaler) Run(ctx context.Context) {
	var (
		carry    []*pendingJournal
		busy     = map[fencing.ValidatorID]bool{} // validators in a transaction in flight
		free     = journalInFlight
		released = make(chan []*pendingJournal, journalInFlight)
		wg       sync.WaitGroup
	)
	defer wg.Wait()
	release := func(batch []*pendingJournal) {
		for _, p := range batch {
			delete(busy, p.Req.Lease.Validator)
		}
		free++
	}
	for {
		for drained := false; !drained; {
			select {
			case b := <-released:
				release(b)
			default:
				drained = true
			}
		}
		var batch []*pendingJournal
		if free > 0 {
			var rest []*pendingJournal
			seen := map[fencing.ValidatorID]bool{}
			take := func(p *pendingJournal) {
				v := p.Req.Lease.Validator
				if busy[v] || seen[v] || len(batch) == j.maxBatch {
					rest = append(rest, p)
					return
				}
				seen[v] = true
				batch = append(batch, p)
			}
			for _, p := range carry {
				take(p)
			}
			for len(batch) < j.maxBatch && len(rest) < 4096 {
				p, ok := j.queue.TryNext()
				if !ok {
					break
				}
				take(p)
			}
			carry = rest
		}
		// Start a transaction at once when none is in flight (latency at
		// concurrency 1 is one transaction); while some are, only a full
		// batch starts another, so requests keep sharing transactions.
		if len(batch) > 0 && free < journalInFlight && len(batch) < j.maxBatch {
			carry = append(batch, carry...) // each validator's requests stay in order
			batch = nil
		}
		if len(batch) > 0 {
			for _, p := range batch {
				busy[p.Req.Lease.Validator] = true
			}
			free--
			wg.Go(func() {
				j.commit(ctx, batch)
				released <- batch
			})
			continue
		}
		// Nothing to start: wait for a transaction to end, or for a new
		// request while one more may start.
		var next <-chan *pendingJournal
		if free > 0 {
			next = j.queue.Waiting()
		}
		select {
		case <-ctx.Done():
			return
		case b := <-released:
			release(b)
		case p := <-next:
			carry = append(carry, p)
		}
	}
}

func (j *Journaler) commit(ctx context.Context, batch []*pendingJournal) {
	if len(batch) == 1 {
		p := batch[0]
		p.Finish(j.s.journalValid(p.Ctx, p.Req))
		return
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	entries := make([]fencing.JournalEntry, len(batch))
	for i, p := range batch {
		c, o, e, err := j.s.journalOps(p.Req)
		if err != nil {
			p.Finish(e, err)
			batch[i] = nil
			continue
		}
		cmps, ops, entries[i] = append(cmps, c...), append(ops, o...), e
	}
	tr, err := j.s.txn(ctx, "journal_batch", cmps, ops, nil)
	if err == nil && tr.Succeeded {
		for i, p := range batch {
			if p != nil {
				p.Finish(entries[i], nil)
			}
		}
		return
	}
	// Some compare failed (or etcd did): answer each on its own.
	var wg sync.WaitGroup
	for _, p := range batch {
		if p == nil {
			continue
		}
		wg.Go(func() { p.Finish(j.s.journalValid(p.Ctx, p.Req)) })
	}
	wg.Wait()
}

// PruneJournal deletes id's journal entries more than keep heights below its
// quorum watermark (keep > 0) and returns how many it deleted. Entries at or
// above the watermark are never touched, so pruning cannot weaken the
// watermark check; it only shortens what the journal audit can look back on.
func (s *Store) PruneJournal(ctx context.Context, id fencing.ValidatorID, keep uint64) (int64, error) {
	st, err := s.Status(ctx, id)
	if err != nil || st.Watermark == nil || keep == 0 || st.Watermark.Height <= keep {
		return 0, err
	}
	below := fencing.HRS{Height: st.Watermark.Height - keep}
	var n int64
	err = s.op(ctx, "journal_prune", func(ctx context.Context) error {
		resp, err := s.cli.Delete(ctx, s.journalPrefix(st.ID), clientv3.WithRange(s.journalPrefix(st.ID)+below.JournalPath()[:20]))
		if err == nil {
			n = resp.Deleted
		}
		return err
	})
	return n, err
}
