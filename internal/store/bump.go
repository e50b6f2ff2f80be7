package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"regexp"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// StartBump records the intent to move id to holder to and, if the epoch is
// active, commits T2 (revoke) in the same transaction. Exactly one of several
// concurrent bumps with the same expected epoch succeeds; the others get
// conflict. A Reconciler then carries the bump to its grant.
//
// bumpID, when not empty, is the caller's idempotency key: if the bump with
// that ID is in progress or already granted, StartBump returns it.
func (s *Store) StartBump(ctx context.Context, id fencing.ValidatorID, expected uint64, to string, c fencing.Change, bumpID string) (fencing.Bump, error) {
	if err := id.Required(); err != nil {
		return fencing.Bump{}, err
	}
	if bumpID != "" && !bumpIDRE.MatchString(bumpID) {
		return fencing.Bump{}, fencing.Errorf(fencing.CodeBadRequest, "bump id %q must be 16 to 64 lowercase hex digits", bumpID)
	}
	if err := fencing.ValidateHolder(to); err != nil {
		return fencing.Bump{}, err
	}
	if err := c.Validate(); err != nil {
		return fencing.Bump{}, err
	}
	for range 5 {
		b, err := s.startBump(ctx, id, expected, to, c, bumpID)
		if !errors.Is(err, errLostToFence) {
			return b, err
		}
	}
	return fencing.Bump{}, fencing.Errorf(fencing.CodeConflict, "validator %s kept changing while the bump was being recorded; nothing was changed, retry", id)
}

// errLostToFence: a bump of a frozen validator lost its compare to the
// reconciler's own T3 (revoking -> fenced, same epoch); reading again and
// retrying is correct, since no operator acted.
var errLostToFence = errors.New("raced with the fence transition")

// startBump is one attempt of StartBump.
func (s *Store) startBump(ctx context.Context, id fencing.ValidatorID, expected uint64, to string, c fencing.Change, bumpID string) (fencing.Bump, error) {
	st, err := s.Status(ctx, id)
	if err != nil {
		return fencing.Bump{}, err
	}
	if b := st.Bump; b != nil && bumpID != "" && b.ID == bumpID {
		return *b, nil // a retry of a bump in progress
	}
	if bumpID != "" && st.Bump == nil && st.Epoch.Epoch > 1 {
		if b, ok, err := s.GrantedBump(ctx, id, bumpID); err != nil || ok {
			return b, err // a retry of a bump already granted
		}
	}
	if b := st.Bump; b != nil {
		return fencing.Bump{}, fencing.Errorf(fencing.CodeConflict, "validator %s: a bump from epoch %d to %s by %s is already in progress since %s (id %s)", id, b.FromEpoch, b.To, b.By, b.StartedAt.Format(time.RFC3339), b.ID)
	}
	if err := checkExpected(id, st.Epoch, expected); err != nil {
		return fencing.Bump{}, err
	}
	c.At = s.now().UTC()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	if bumpID == "" {
		bumpID = hex.EncodeToString(rnd[:])
	}
	b := fencing.Bump{
		ID: bumpID, FromEpoch: st.Epoch.Epoch, FromHold: st.Epoch.Holder, To: to,
		By: c.By, Reason: c.Reason, Comment: c.Comment, StartedAt: c.At,
	}
	bv, err := encode(b)
	if err != nil {
		return fencing.Bump{}, err
	}
	noBump := clientv3.Compare(clientv3.CreateRevision(s.bumpKey(id)), "=", 0)
	putBump := clientv3.OpPut(s.bumpKey(id), bv)
	if st.Epoch.State == fencing.StateActive {
		next, err := st.Epoch.Freeze(c)
		if err != nil {
			return fencing.Bump{}, err
		}
		ev := fencing.Event{Kind: fencing.EventFreeze, From: &st.Epoch, BumpID: b.ID, Detail: "bump to " + to}
		if err := s.transition(ctx, "bump_revoke", id, st.Revision, next, ev, []clientv3.Cmp{noBump}, []clientv3.Op{putBump}); err != nil {
			return fencing.Bump{}, err
		}
	} else {
		// Already revoking or fenced (an operator froze it first): record
		// the intent only; the epoch record is compared, not changed.
		evCmp, evOp, err := s.eventOp(fencing.Event{Kind: fencing.EventBumpStarted, Validator: id, At: c.At, By: c.By, Reason: c.Reason, Comment: c.Comment, From: &st.Epoch, BumpID: b.ID, Detail: "bump to " + to})
		if err != nil {
			return fencing.Bump{}, err
		}
		tr, err := s.txn(ctx, "bump_start",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.epochKey(id)), "=", st.Revision), noBump, evCmp},
			[]clientv3.Op{putBump, evOp}, nil)
		if err != nil {
			return fencing.Bump{}, err
		}
		if !tr.Succeeded {
			if now, _, err := s.readEpoch(ctx, id); err == nil && now.Epoch == st.Epoch.Epoch && now.State == fencing.StateFenced && st.Epoch.State == fencing.StateRevoking {
				return fencing.Bump{}, errLostToFence
			}
			return fencing.Bump{}, fencing.Errorf(fencing.CodeConflict, "validator %s changed while the bump was being recorded (another operator acted first); nothing was changed, re-read fencectl status", id)
		}
	}
	s.lg.Info("bump started", "validator", id, "from_epoch", b.FromEpoch, "from", b.FromHold, "to", to, "by", c.By, "bump", b.ID)
	return b, nil
}

var bumpIDRE = regexp.MustCompile(`^[0-9a-f]{16,64}$`)

// GrantedBump finds the bump bumpID of id in the history, if it was granted.
func (s *Store) GrantedBump(ctx context.Context, id fencing.ValidatorID, bumpID string) (fencing.Bump, bool, error) {
	evs, err := s.Events(ctx, id, 0)
	if err != nil {
		return fencing.Bump{}, false, err
	}
	for _, ev := range evs {
		if ev.Kind == fencing.EventGrant && ev.BumpID == bumpID && ev.From != nil && ev.To != nil {
			return fencing.Bump{ID: bumpID, FromEpoch: ev.From.Epoch, FromHold: ev.From.Holder, To: ev.To.Holder, By: ev.By, Reason: ev.Reason, Comment: ev.Comment, StartedAt: ev.BumpStartedAt}, true, nil
		}
	}
	return fencing.Bump{}, false, nil
}

// Reconcile moves id forward as far as it can go now: a revoking epoch waits
// for its leases to drain and becomes fenced (T3); a fenced epoch with a bump
// recorded is granted to the bump's holder (T4). Every step is a
// compare-and-swap, so replicas reconciling the same validator at once can
// never grant an epoch twice or skip one; the Reconciler's lock only saves
// duplicate work. It returns the record it left.
func (s *Store) Reconcile(ctx context.Context, id fencing.ValidatorID) (fencing.Epoch, error) {
	for {
		st, err := s.Status(ctx, id)
		if err != nil {
			return fencing.Epoch{}, err
		}
		ep := st.Epoch
		switch {
		case ep.State == fencing.StateRevoking:
			if err := s.drain(ctx, id, ep.Epoch); err != nil {
				return ep, err
			}
			if err := s.fence(ctx, id, st); err != nil && !errors.Is(err, fencing.ErrConflict) {
				return ep, err
			}
		case ep.State == fencing.StateFenced && st.Bump != nil:
			if err := s.grant(ctx, id, st); err != nil && !errors.Is(err, fencing.ErrConflict) {
				return ep, err
			}
		default:
			return ep, nil
		}
	}
}

// drain returns once no lease key of epoch exists, recording each lease that
// disappears without a release as expired.
func (s *Store) drain(ctx context.Context, id fencing.ValidatorID, epoch uint64) error {
	prefix := s.leasePrefix(id, epoch)
	for {
		resp, err := s.get(ctx, "drain_list", prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		left := len(resp.Kvs)
		for wr := range s.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypeDelete {
					continue
				}
				holder, sidecar := splitLeaseName(string(ev.Kv.Key))
				s.markExpired(ctx, id, epoch, holder, sidecar)
				left--
			}
			if left <= 0 {
				break
			}
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// markExpired records that sidecar's lease of epoch ended without a release;
// if a release was recorded (in the same transaction as its delete), the
// compare keeps it.
func (s *Store) markExpired(ctx context.Context, id fencing.ValidatorID, epoch uint64, holder, sidecar string) {
	key := s.drainedPrefix(id, epoch) + leaseName(holder, sidecar)
	v, err := encode(fencing.Drained{Sidecar: sidecar, Holder: holder, Epoch: epoch, How: fencing.DrainExpired, At: s.now().UTC()})
	if err == nil {
		_, err = s.txn(ctx, "drain_mark", []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}, []clientv3.Op{clientv3.OpPut(key, v)}, nil)
	}
	if err != nil {
		s.lg.Warn("could not record an expired lease; fence will record it", "validator", id, "epoch", epoch, "sidecar", sidecar, "error", err)
	}
}

// fence is T3, committed only while no lease of the epoch exists. Leases
// granted under the epoch whose end nobody saw are recorded as expired.
func (s *Store) fence(ctx context.Context, id fencing.ValidatorID, st fencing.Status) error {
	n := st.Epoch.Epoch
	lessees, drained, err := s.leaseHistory(ctx, id, n)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	cmps := []clientv3.Cmp{s.noLeases(id, n)}
	var ops []clientv3.Op
	for name, lr := range lessees {
		if _, ok := drained[name]; ok {
			continue
		}
		d := fencing.Drained{Sidecar: lr.Sidecar, Holder: lr.Holder, Epoch: n, How: fencing.DrainExpired, At: now}
		v, err := encode(d)
		if err != nil {
			return err
		}
		key := s.drainedPrefix(id, n) + name
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		ops = append(ops, clientv3.OpPut(key, v))
		drained[name] = d
	}
	c := fencing.Change{By: st.Epoch.By, Reason: st.Epoch.Reason, Comment: st.Epoch.Comment, At: now}
	if st.Bump != nil {
		c.By, c.Reason, c.Comment = st.Bump.By, st.Bump.Reason, st.Bump.Comment
	}
	next, err := st.Epoch.Fence(c)
	if err != nil {
		return err
	}
	ev := fencing.Event{Kind: fencing.EventFenced, From: &st.Epoch, Detail: drainSummary(drained)}
	if st.Bump != nil {
		ev.BumpID = st.Bump.ID
	}
	if err := s.transition(ctx, "fence", id, st.Revision, next, ev, cmps, ops); err != nil {
		return err
	}
	s.lg.Info("epoch fenced", "validator", id, "epoch", n, "leases", len(drained))
	return nil
}

// grant is T4: fenced(N) -> active(N+1, bump.To), deleting the bump in the
// same transaction, and only while no lease of N exists (invariant 2).
func (s *Store) grant(ctx context.Context, id fencing.ValidatorID, st fencing.Status) error {
	b := st.Bump
	if b.FromEpoch != st.Epoch.Epoch {
		return fencing.Errorf(fencing.CodeInternal, "validator %s: bump %s is from epoch %d but the epoch is %d; refusing to grant (inspect with fencectl history)", id, b.ID, b.FromEpoch, st.Epoch.Epoch)
	}
	next, err := st.Epoch.Grant(b.To, fencing.Change{By: b.By, Reason: b.Reason, Comment: b.Comment, At: s.now().UTC()})
	if err != nil {
		return err
	}
	bumpResp, err := s.get(ctx, "grant_read", s.bumpKey(id))
	if err != nil {
		return err
	}
	if len(bumpResp.Kvs) == 0 {
		return fencing.Errorf(fencing.CodeConflict, "bump %s of %s already finished", b.ID, id)
	}
	cmps := []clientv3.Cmp{
		s.noLeases(id, st.Epoch.Epoch),
		clientv3.Compare(clientv3.ModRevision(s.bumpKey(id)), "=", bumpResp.Kvs[0].ModRevision),
	}
	ev := fencing.Event{Kind: fencing.EventGrant, From: &st.Epoch, BumpID: b.ID, BumpStartedAt: b.StartedAt}
	if err := s.transition(ctx, "grant", id, st.Revision, next, ev, cmps, []clientv3.Op{clientv3.OpDelete(s.bumpKey(id))}); err != nil {
		return err
	}
	s.lg.Info("grant committed", "validator", id, "epoch", next.Epoch, "holder", next.Holder, "bump", b.ID)
	return nil
}

// leaseHistory returns every lease granted under epoch and how those that
// ended did, by leaseName.
func (s *Store) leaseHistory(ctx context.Context, id fencing.ValidatorID, epoch uint64) (map[string]fencing.LeaseRecord, map[string]fencing.Drained, error) {
	tr, err := s.txn(ctx, "lease_history", nil, []clientv3.Op{
		clientv3.OpGet(s.lesseePrefix(id, epoch), clientv3.WithPrefix()),
		clientv3.OpGet(s.drainedPrefix(id, epoch), clientv3.WithPrefix()),
	}, nil)
	if err != nil {
		return nil, nil, err
	}
	lessees := map[string]fencing.LeaseRecord{}
	for _, kv := range tr.Responses[0].GetResponseRange().Kvs {
		var lr fencing.LeaseRecord
		if err := decode(string(kv.Key), kv.Value, &lr); err != nil {
			return nil, nil, err
		}
		lessees[leaseName(lr.Holder, lr.Sidecar)] = lr
	}
	drained := map[string]fencing.Drained{}
	for _, kv := range tr.Responses[1].GetResponseRange().Kvs {
		var d fencing.Drained
		if err := decode(string(kv.Key), kv.Value, &d); err != nil {
			return nil, nil, err
		}
		drained[leaseName(d.Holder, d.Sidecar)] = d
	}
	return lessees, drained, nil
}

func drainSummary(d map[string]fencing.Drained) string {
	if len(d) == 0 {
		return "no leases were held"
	}
	parts := make([]string, 0, len(d))
	for _, x := range d {
		parts = append(parts, x.Sidecar+" "+x.How+" at "+x.At.Format(time.RFC3339Nano))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
