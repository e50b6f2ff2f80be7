package store

import (
	"context"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// AddValidator is T1: register id with epoch 1 active on holder. It fails
// with conflict if id exists.
func (s *Store) AddValidator(ctx context.Context, id fencing.ValidatorID, holder string, c fencing.Change) (fencing.Epoch, error) {
	if err := id.Required(); err != nil {
		return fencing.Epoch{}, err
	}
	c.At = s.now().UTC()
	ep, err := fencing.NewEpoch(holder, c)
	if err != nil {
		return fencing.Epoch{}, err
	}
	epv, err := encode(ep)
	if err != nil {
		return fencing.Epoch{}, err
	}
	evCmp, evOp, err := s.eventOp(fencing.Event{Kind: fencing.EventValidatorAdded, Validator: id, At: c.At, By: c.By, Reason: c.Reason, Comment: c.Comment, To: &ep})
	if err != nil {
		return fencing.Epoch{}, err
	}
	resp, err := s.txn(ctx, "add_validator",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.epochKey(id)), "=", 0), evCmp},
		[]clientv3.Op{
			clientv3.OpPut(s.registryKey(id), ""),
			clientv3.OpPut(s.epochKey(id), epv),
			// The watermark sort key exists from the start: a Value compare on
			// a missing key always fails in etcd.
			clientv3.OpPut(s.hrsKey(id), fencing.ZeroSortKey),
			evOp,
		}, nil)
	if err != nil {
		return fencing.Epoch{}, err
	}
	if !resp.Succeeded {
		return s.readd(ctx, id, holder, c)
	}
	s.lg.Info("validator added", "validator", id, "holder", holder, "by", c.By)
	return ep, nil
}

// readd registers again a validator that was removed: its epoch record,
// watermark and journal were kept, so it continues at the next epoch, above
// everything it ever signed (invariant 6).
func (s *Store) readd(ctx context.Context, id fencing.ValidatorID, holder string, c fencing.Change) (fencing.Epoch, error) {
	tr, err := s.txn(ctx, "readd_read", nil, []clientv3.Op{clientv3.OpGet(s.registryKey(id)), clientv3.OpGet(s.epochKey(id))}, nil)
	if err != nil {
		return fencing.Epoch{}, err
	}
	epKVs := tr.Responses[1].GetResponseRange().Kvs
	if len(tr.Responses[0].GetResponseRange().Kvs) > 0 || len(epKVs) == 0 {
		return fencing.Epoch{}, fencing.Errorf(fencing.CodeConflict, "validator %s is already registered; see fencectl status %s", id, id)
	}
	var ep fencing.Epoch
	if err := decode(s.epochKey(id), epKVs[0].Value, &ep); err != nil {
		return fencing.Epoch{}, err
	}
	next, err := ep.Grant(holder, c)
	if err != nil {
		return fencing.Epoch{}, err
	}
	ev := fencing.Event{Kind: fencing.EventValidatorAdded, From: &ep, Detail: "registered again after its removal; epoch, watermark and journal kept"}
	if err := s.transition(ctx, "readd_validator", id, epKVs[0].ModRevision, next, ev,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.registryKey(id)), "=", 0), s.noLeases(id, ep.Epoch)},
		[]clientv3.Op{clientv3.OpPut(s.registryKey(id), "")}); err != nil {
		return fencing.Epoch{}, err
	}
	s.lg.Info("validator added again", "validator", id, "epoch", next.Epoch, "holder", holder, "by", c.By)
	return next, nil
}

// RemoveValidator unregisters a fenced validator: it is no longer listed nor
// leased, but its epoch record, watermark and journal stay, so adding it
// again continues above everything it signed. It is refused unless the
// validator is fenced with no bump recorded and no lease live.
func (s *Store) RemoveValidator(ctx context.Context, id fencing.ValidatorID, c fencing.Change) error {
	if err := id.Required(); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	st, err := s.Status(ctx, id)
	if err != nil {
		return err
	}
	if st.Epoch.State != fencing.StateFenced || st.Bump != nil {
		return fencing.Errorf(fencing.CodeConflict, "validator %s is %s (epoch %d on %s); only a fenced validator with no bump in progress can be removed: fencectl freeze %s first", id, st.Epoch.State, st.Epoch.Epoch, st.Epoch.Holder, id)
	}
	c.At = s.now().UTC()
	evCmp, evOp, err := s.eventOp(fencing.Event{Kind: fencing.EventRemoved, Validator: id, At: c.At, By: c.By, Reason: c.Reason, Comment: c.Comment, From: &st.Epoch, Detail: "epoch record, watermark and journal kept"})
	if err != nil {
		return err
	}
	tr, err := s.txn(ctx, "remove_validator",
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(s.epochKey(id)), "=", st.Revision),
			clientv3.Compare(clientv3.CreateRevision(s.bumpKey(id)), "=", 0),
			s.noLeases(id, st.Epoch.Epoch),
			evCmp,
		},
		[]clientv3.Op{clientv3.OpDelete(s.registryKey(id)), evOp}, nil)
	if err != nil {
		return err
	}
	if !tr.Succeeded {
		return fencing.Errorf(fencing.CodeConflict, "validator %s changed while it was being removed; nothing was changed, re-read fencectl status", id)
	}
	s.lg.Info("validator removed", "validator", id, "by", c.By)
	return nil
}

// readEpoch returns the epoch record of id and its mod revision.
func (s *Store) readEpoch(ctx context.Context, id fencing.ValidatorID) (fencing.Epoch, int64, error) {
	resp, err := s.get(ctx, "get_epoch", s.epochKey(id))
	if err != nil {
		return fencing.Epoch{}, 0, err
	}
	if len(resp.Kvs) == 0 {
		return fencing.Epoch{}, 0, notFound(id)
	}
	var ep fencing.Epoch
	if err := decode(s.epochKey(id), resp.Kvs[0].Value, &ep); err != nil {
		return fencing.Epoch{}, 0, err
	}
	if err := ep.Validate(); err != nil {
		return fencing.Epoch{}, 0, err
	}
	return ep, resp.Kvs[0].ModRevision, nil
}

func notFound(id fencing.ValidatorID) error {
	return fencing.Errorf(fencing.CodeNotFound, "validator %s is not registered; add it with fencectl validator add %s --holder H", id, id)
}

// fencing.Status reads one validator.
func (s *Store) Status(ctx context.Context, id fencing.ValidatorID) (fencing.Status, error) {
	if err := id.Required(); err != nil {
		return fencing.Status{}, err
	}
	sts, err := s.statuses(ctx, []fencing.ValidatorID{id})
	if err != nil {
		return fencing.Status{}, err
	}
	return sts[0], nil
}

// Statuses reads every registered validator, sorted by id.
func (s *Store) Statuses(ctx context.Context) ([]fencing.Status, error) {
	resp, err := s.get(ctx, "list_validators", s.prefix+"registry/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	ids := make([]fencing.ValidatorID, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		id, err := fencing.ParseValidatorID(strings.TrimPrefix(string(kv.Key), s.prefix+"registry/"))
		if err != nil {
			return nil, fencing.Errorf(fencing.CodeInternal, "corrupt registry key %s: %v", kv.Key, err)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []fencing.Status
	const perTxn = 25 // 4 reads each, under etcd's default of 128 ops
	for len(ids) > 0 {
		n := min(perTxn, len(ids))
		sts, err := s.statuses(ctx, ids[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, sts...)
		ids = ids[n:]
	}
	return out, nil
}

// statuses reads ids in one transaction so each snapshot is consistent.
func (s *Store) statuses(ctx context.Context, ids []fencing.ValidatorID) ([]fencing.Status, error) {
	var ops []clientv3.Op
	for _, id := range ids {
		ops = append(ops,
			clientv3.OpGet(s.epochKey(id)),
			clientv3.OpGet(s.bumpKey(id)),
			clientv3.OpGet(s.watermarkKey(id)),
			clientv3.OpGet(s.vkey(id, "leases/"), clientv3.WithPrefix()))
	}
	resp, err := s.txn(ctx, "read_status", nil, ops, nil)
	if err != nil {
		return nil, err
	}
	out := make([]fencing.Status, 0, len(ids))
	for i, id := range ids {
		r := resp.Responses[4*i : 4*i+4]
		epKVs := r[0].GetResponseRange().Kvs
		if len(epKVs) == 0 {
			return nil, notFound(id)
		}
		st := fencing.Status{ID: id, Revision: epKVs[0].ModRevision, Leases: []fencing.LeaseRecord{}}
		if err := decode(string(epKVs[0].Key), epKVs[0].Value, &st.Epoch); err != nil {
			return nil, err
		}
		if kvs := r[1].GetResponseRange().Kvs; len(kvs) > 0 {
			st.Bump = new(fencing.Bump)
			if err := decode(string(kvs[0].Key), kvs[0].Value, st.Bump); err != nil {
				return nil, err
			}
		}
		if kvs := r[2].GetResponseRange().Kvs; len(kvs) > 0 {
			st.Watermark = new(fencing.Watermark)
			if err := decode(string(kvs[0].Key), kvs[0].Value, st.Watermark); err != nil {
				return nil, err
			}
		}
		for _, kv := range r[3].GetResponseRange().Kvs {
			var lr fencing.LeaseRecord
			if err := decode(string(kv.Key), kv.Value, &lr); err != nil {
				return nil, err
			}
			st.Leases = append(st.Leases, lr)
		}
		out = append(out, st)
	}
	return out, nil
}

// Freeze is T2 on its own: active(N) -> revoking(N). expected, when not zero,
// must equal the current epoch. The operator then bumps, or leaves the
// validator frozen ("freeze production writes").
func (s *Store) Freeze(ctx context.Context, id fencing.ValidatorID, expected uint64, c fencing.Change) (fencing.Epoch, error) {
	if err := id.Required(); err != nil {
		return fencing.Epoch{}, err
	}
	if err := c.Validate(); err != nil {
		return fencing.Epoch{}, err
	}
	ep, rev, err := s.readEpoch(ctx, id)
	if err != nil {
		return fencing.Epoch{}, err
	}
	if err := checkExpected(id, ep, expected); err != nil {
		return fencing.Epoch{}, err
	}
	c.At = s.now().UTC()
	next, err := ep.Freeze(c)
	if err != nil {
		return fencing.Epoch{}, err
	}
	if err := s.transition(ctx, "freeze", id, rev, next, fencing.Event{Kind: fencing.EventFreeze, From: &ep}, nil, nil); err != nil {
		return fencing.Epoch{}, err
	}
	s.lg.Info("revoke committed", "validator", id, "epoch", ep.Epoch, "by", c.By, "reason", c.Reason)
	return next, nil
}

func checkExpected(id fencing.ValidatorID, ep fencing.Epoch, expected uint64) error {
	if expected != 0 && ep.Epoch != expected {
		return fencing.Errorf(fencing.CodeConflict, "validator %s: expected epoch %d but the current epoch is %d (%s on %s); re-read fencectl status", id, expected, ep.Epoch, ep.State, ep.Holder)
	}
	return nil
}

// transition commits next over the record read at rev, with its event and any
// extra compares and operations, in one transaction. A lost race is conflict.
func (s *Store) transition(ctx context.Context, name string, id fencing.ValidatorID, rev int64, next fencing.Epoch, ev fencing.Event, cmps []clientv3.Cmp, ops []clientv3.Op) error {
	nv, err := encode(next)
	if err != nil {
		return err
	}
	ev.Validator, ev.At, ev.By, ev.Reason, ev.Comment, ev.To = id, next.UpdatedAt, next.By, next.Reason, next.Comment, &next
	evCmp, evOp, err := s.eventOp(ev)
	if err != nil {
		return err
	}
	cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.epochKey(id)), "=", rev), evCmp)
	ops = append(ops, clientv3.OpPut(s.epochKey(id), nv), evOp)
	resp, err := s.txn(ctx, name, cmps, ops, nil)
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fencing.Errorf(fencing.CodeConflict, "validator %s changed while %s was being committed (another operator or replica acted first); nothing was changed, re-read fencectl status", id, name)
	}
	if s.onTrans != nil {
		ev.Revision = resp.Header.Revision
		s.onTrans(ev)
	}
	return nil
}

// WatchEpoch returns the epoch record of id as soon as its revision is above
// after, or after wait (then with the current record and no error). It is the
// long poll sidecars use to learn of revoking without polling etcd.
func (s *Store) WatchEpoch(ctx context.Context, id fencing.ValidatorID, after int64, wait time.Duration) (fencing.Epoch, int64, error) {
	if err := id.Required(); err != nil {
		return fencing.Epoch{}, 0, err
	}
	resp, err := s.get(ctx, "get_epoch", s.epochKey(id))
	if err != nil {
		return fencing.Epoch{}, 0, err
	}
	if len(resp.Kvs) == 0 {
		return fencing.Epoch{}, 0, notFound(id)
	}
	kv := resp.Kvs[0]
	if kv.ModRevision <= after && wait > 0 {
		wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), wait)
		defer cancel()
		for wr := range s.cli.Watch(wctx, s.epochKey(id), clientv3.WithRev(resp.Header.Revision+1)) {
			if err := wr.Err(); err != nil {
				if wctx.Err() != nil {
					break
				}
				return fencing.Epoch{}, 0, fencing.Errorf(fencing.CodeNoQuorum, "etcd: watch on %s failed: %v", id, err)
			}
			if len(wr.Events) > 0 {
				kv = wr.Events[len(wr.Events)-1].Kv
				break
			}
		}
		if ctx.Err() != nil {
			return fencing.Epoch{}, 0, ctx.Err()
		}
		if wctx.Err() == nil && kv.ModRevision <= after {
			return fencing.Epoch{}, 0, fencing.Errorf(fencing.CodeNoQuorum, "etcd: watch on %s ended (no leader?)", id)
		}
	}
	var ep fencing.Epoch
	if err := decode(string(kv.Key), kv.Value, &ep); err != nil {
		return fencing.Epoch{}, 0, err
	}
	return ep, kv.ModRevision, nil
}
