package store

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Lease TTL bounds, in seconds. etcd leases have whole-second TTLs and a
// floor of about 1.5 s set by its election timeout.
const (
	MinLeaseTTL = 2
	MaxLeaseTTL = 300
)

// Grant is what a sidecar receives with a lease: the token and the quorum
// watermark it must start above.
type Grant struct {
	Lease     fencing.Lease      `json:"lease"`
	Watermark *fencing.Watermark `json:"watermark,omitempty"`
}

// Acquire grants sidecar of holder a lease on id's current epoch
// (invariant 1). A lease this sidecar already holds under the epoch (it
// restarted) is replaced, which invalidates the old token.
func (s *Store) Acquire(ctx context.Context, id, holder, sidecar string, ttl int64) (Grant, error) {
	id, err := fencing.CanonicalValidatorID(id)
	if err != nil {
		return Grant{}, err
	}
	if err := fencing.ValidateHolder(holder); err != nil {
		return Grant{}, err
	}
	if err := fencing.ValidateSidecar(sidecar); err != nil {
		return Grant{}, err
	}
	if ttl < MinLeaseTTL || ttl > MaxLeaseTTL {
		return Grant{}, fencing.Errorf(fencing.CodeBadRequest, "lease TTL %ds must be between %ds and %ds", ttl, MinLeaseTTL, MaxLeaseTTL)
	}
	resp, err := s.txn(ctx, "acquire_read", nil, []clientv3.Op{
		clientv3.OpGet(s.epochKey(id)),
		clientv3.OpGet(s.watermarkKey(id)),
	}, nil)
	if err != nil {
		return Grant{}, err
	}
	epKVs := resp.Responses[0].GetResponseRange().Kvs
	if len(epKVs) == 0 {
		return Grant{}, notFound(id)
	}
	var ep fencing.Epoch
	if err := decode(s.epochKey(id), epKVs[0].Value, &ep); err != nil {
		return Grant{}, err
	}
	if err := ep.AllowsLease(holder); err != nil {
		return Grant{}, err
	}
	epochRev := epKVs[0].ModRevision
	var g Grant
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		g.Watermark = new(fencing.Watermark)
		if err := decode(s.watermarkKey(id), kvs[0].Value, g.Watermark); err != nil {
			return Grant{}, err
		}
	}

	key := s.leaseKey(id, ep.Epoch, sidecar)
	if err := s.dropOwnLease(ctx, key); err != nil {
		return Grant{}, err
	}
	leaseID, err := s.grantLease(ctx, ttl)
	if err != nil {
		return Grant{}, err
	}
	now := s.now().UTC()
	rec := fencing.LeaseRecord{Sidecar: sidecar, Holder: holder, Epoch: ep.Epoch, AcquiredAt: now, TTLSeconds: ttl}
	v, err := encode(rec)
	if err != nil {
		return Grant{}, err
	}
	tr, err := s.txn(ctx, "acquire",
		[]clientv3.Cmp{
			// 1. the epoch record is exactly the active one checked above
			clientv3.Compare(clientv3.ModRevision(s.epochKey(id)), "=", epochRev),
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		},
		[]clientv3.Op{
			clientv3.OpPut(key, v, clientv3.WithLease(leaseID)),
			clientv3.OpPut(s.lesseePrefix(id, ep.Epoch)+sidecar, v),
			clientv3.OpDelete(s.drainedPrefix(id, ep.Epoch) + sidecar),
		}, nil)
	if err != nil || !tr.Succeeded {
		s.revokeLease(ctx, leaseID)
		if err != nil {
			return Grant{}, err
		}
		return Grant{}, fencing.Errorf(fencing.CodeConflict, "validator %s changed while the lease was being granted; retry", id)
	}
	g.Lease = fencing.Lease{
		Validator: id, Epoch: ep.Epoch, Holder: holder, Sidecar: sidecar,
		EpochRevision: epochRev, LeaseRevision: tr.Header.Revision, TTLSeconds: ttl,
	}
	s.lg.Info("lease acquired", "validator", id, "epoch", ep.Epoch, "holder", holder, "sidecar", sidecar, "ttl", ttl)
	return g, nil
}

// dropOwnLease deletes a live lease key left by an earlier incarnation of the
// same sidecar, so the new one gets a new lease revision.
func (s *Store) dropOwnLease(ctx context.Context, key string) error {
	resp, err := s.get(ctx, "acquire_read", key)
	if err != nil || len(resp.Kvs) == 0 {
		return err
	}
	old := resp.Kvs[0]
	_, err = s.txn(ctx, "acquire_replace",
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", old.ModRevision)},
		[]clientv3.Op{clientv3.OpDelete(key)}, nil)
	if err == nil {
		s.revokeLease(ctx, clientv3.LeaseID(old.Lease))
	}
	return err
}

func (s *Store) grantLease(ctx context.Context, ttl int64) (clientv3.LeaseID, error) {
	var id clientv3.LeaseID
	err := s.op(ctx, "lease_grant", func(ctx context.Context) error {
		r, err := s.cli.Grant(ctx, ttl)
		if err == nil {
			id = r.ID
		}
		return err
	})
	return id, err
}

// revokeLease is best effort: a lease that is not revoked expires by itself.
func (s *Store) revokeLease(ctx context.Context, id clientv3.LeaseID) {
	if id == clientv3.NoLease {
		return
	}
	if err := s.op(context.WithoutCancel(ctx), "lease_revoke", func(ctx context.Context) error {
		_, err := s.cli.Revoke(ctx, id)
		return err
	}); err != nil {
		s.lg.Debug("lease revoke failed; it will expire", "lease", int64(id), "error", err)
	}
}

// Renew extends l for another TTL (invariant 1): it attaches the lease key to
// a fresh etcd lease in a transaction that compares the epoch record's
// revision (epoch, state and holder as when granted) and the lease key's
// incarnation, so a renewal can never land after a freeze.
//
// wm, when not nil, is the sidecar's local watermark (lease mode, which does
// not journal each signature): the same transaction raises the quorum
// watermark to it if it is higher, so the next holder starts above it.
func (s *Store) Renew(ctx context.Context, l fencing.Lease, wm *fencing.Watermark) (fencing.Lease, error) {
	if err := l.Validate(); err != nil {
		return fencing.Lease{}, err
	}
	raise, err := s.raiseWatermarkOps(l, wm)
	if err != nil {
		return fencing.Lease{}, err
	}
	if l.TTLSeconds < MinLeaseTTL || l.TTLSeconds > MaxLeaseTTL {
		return fencing.Lease{}, fencing.Errorf(fencing.CodeBadRequest, "lease TTL %ds must be between %ds and %ds", l.TTLSeconds, MinLeaseTTL, MaxLeaseTTL)
	}
	key := s.leaseKey(l.Validator, l.Epoch, l.Sidecar)
	leaseID, err := s.grantLease(ctx, l.TTLSeconds)
	if err != nil {
		return fencing.Lease{}, err
	}
	v, err := encode(fencing.LeaseRecord{Sidecar: l.Sidecar, Holder: l.Holder, Epoch: l.Epoch, RenewedAt: s.now().UTC(), TTLSeconds: l.TTLSeconds})
	if err != nil {
		return fencing.Lease{}, err
	}
	tr, err := s.txn(ctx, "renew",
		s.leaseCmps(l),
		append([]clientv3.Op{clientv3.OpGet(key), clientv3.OpPut(key, v, clientv3.WithLease(leaseID))}, raise...),
		[]clientv3.Op{clientv3.OpGet(s.epochKey(l.Validator))})
	if err != nil {
		s.revokeLease(ctx, leaseID)
		return fencing.Lease{}, err
	}
	if !tr.Succeeded {
		s.revokeLease(ctx, leaseID)
		return fencing.Lease{}, s.whyNotHeld(l, tr.Responses[0].GetResponseRange().Kvs)
	}
	if old := tr.Responses[0].GetResponseRange().Kvs; len(old) > 0 {
		s.revokeLease(ctx, clientv3.LeaseID(old[0].Lease))
	}
	return l, nil
}

// leaseCmps holds inside a transaction only while l is valid: the epoch
// record is unchanged since the grant and the lease key is the same
// incarnation (it neither expired nor was released and re-acquired).
func (s *Store) leaseCmps(l fencing.Lease) []clientv3.Cmp {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(s.epochKey(l.Validator)), "=", l.EpochRevision),
		clientv3.Compare(clientv3.CreateRevision(s.leaseKey(l.Validator, l.Epoch, l.Sidecar)), "=", l.LeaseRevision),
	}
}

// whyNotHeld explains a failed leaseCmps from the current epoch record.
func (s *Store) whyNotHeld(l fencing.Lease, epKVs []*mvccpb.KeyValue) error {
	if len(epKVs) == 0 {
		return notFound(l.Validator)
	}
	var ep fencing.Epoch
	if err := decode(s.epochKey(l.Validator), epKVs[0].Value, &ep); err != nil {
		return err
	}
	if epKVs[0].ModRevision != l.EpochRevision {
		return fencing.Errorf(fencing.CodeStaleEpoch, "lease of %s was for epoch %d on %s; the epoch is now %d, %s on %s", l.Validator, l.Epoch, l.Holder, ep.Epoch, ep.State, ep.Holder)
	}
	return fencing.Errorf(fencing.CodeFenced, "lease of %s (epoch %d, sidecar %s) expired or was released; acquire a new one", l.Validator, l.Epoch, l.Sidecar)
}

// Release ends l at once. Releasing a lease that is already gone succeeds.
// wm raises the quorum watermark as in Renew, in the same transaction.
func (s *Store) Release(ctx context.Context, l fencing.Lease, wm *fencing.Watermark) error {
	if err := l.Validate(); err != nil {
		return err
	}
	raise, err := s.raiseWatermarkOps(l, wm)
	if err != nil {
		return err
	}
	key := s.leaseKey(l.Validator, l.Epoch, l.Sidecar)
	v, err := encode(fencing.Drained{Sidecar: l.Sidecar, Holder: l.Holder, Epoch: l.Epoch, How: fencing.DrainReleased, At: s.now().UTC()})
	if err != nil {
		return err
	}
	tr, err := s.txn(ctx, "release",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", l.LeaseRevision)},
		append([]clientv3.Op{
			clientv3.OpGet(key),
			clientv3.OpDelete(key),
			clientv3.OpPut(s.drainedPrefix(l.Validator, l.Epoch)+l.Sidecar, v),
		}, raise...), nil)
	if err != nil {
		return err
	}
	if tr.Succeeded {
		if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			s.revokeLease(ctx, clientv3.LeaseID(kvs[0].Lease))
		}
		s.lg.Info("lease released", "validator", l.Validator, "epoch", l.Epoch, "sidecar", l.Sidecar)
	}
	return nil
}

// CheckLease succeeds only while l is valid in etcd right now (one
// linearizable transaction): the epoch record is unchanged since the grant and
// the lease key is the same incarnation. Strict-mode sidecars call it before
// a signature that has no HRS to journal (a bare digest).
func (s *Store) CheckLease(ctx context.Context, l fencing.Lease) error {
	if err := l.Validate(); err != nil {
		return err
	}
	tr, err := s.txn(ctx, "check_lease", s.leaseCmps(l), nil, []clientv3.Op{clientv3.OpGet(s.epochKey(l.Validator))})
	if err != nil {
		return err
	}
	if !tr.Succeeded {
		return s.whyNotHeld(l, tr.Responses[0].GetResponseRange().Kvs)
	}
	return nil
}

// raiseWatermarkOps returns a nested transaction that moves the quorum
// watermark of l's validator up to wm when wm is higher (never down), or
// nothing when wm is nil. It runs inside a transaction that already checked
// the lease.
func (s *Store) raiseWatermarkOps(l fencing.Lease, wm *fencing.Watermark) ([]clientv3.Op, error) {
	if wm == nil {
		return nil, nil
	}
	if err := wm.HRS.Validate(); err != nil {
		return nil, err
	}
	w := *wm
	w.Epoch, w.Sidecar = l.Epoch, l.Sidecar
	v, err := encode(w)
	if err != nil {
		return nil, err
	}
	id, sk := l.Validator, w.HRS.SortKey()
	return []clientv3.Op{clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.Value(s.hrsKey(id)), "<", sk)},
		[]clientv3.Op{clientv3.OpPut(s.hrsKey(id), sk), clientv3.OpPut(s.watermarkKey(id), v)},
		nil)}, nil
}
