package store

import (
	"context"
	"time"

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
// (invariant 1). holder and sidecar must be the authenticated caller's.
//
// At most one lease of an epoch is live at any time, whichever sidecar asks:
// a second sidecar of the same holder (a rolling update with surge, a
// replacement of a force-deleted pod) and a restarted or retried request of
// the same sidecar are refused with lease_held until the live lease is
// released or has expired. Nothing here ever deletes a live lease: a late
// acquire must not end the lease its sidecar signs under.
func (s *Store) Acquire(ctx context.Context, id fencing.ValidatorID, holder, sidecar string, ttl int64) (Grant, error) {
	if err := id.Required(); err != nil {
		return Grant{}, err
	}
	if err := fencing.ValidateHolder(holder); err != nil {
		return Grant{}, err
	}
	if err := fencing.ValidateSidecar(sidecar); err != nil {
		return Grant{}, err
	}
	if err := validTTL(ttl); err != nil {
		return Grant{}, err
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

	leaseID, err := s.grantLease(ctx, ttl)
	if err != nil {
		return Grant{}, err
	}
	rec := fencing.LeaseRecord{Sidecar: sidecar, Holder: holder, Epoch: ep.Epoch, AcquiredAt: s.now().UTC(), TTLSeconds: ttl}
	v, err := encode(rec)
	if err != nil {
		s.revokeLease(ctx, leaseID)
		return Grant{}, err
	}
	name := leaseName(holder, sidecar)
	tr, err := s.txn(ctx, "acquire",
		[]clientv3.Cmp{
			// the epoch record is exactly the active one checked above
			clientv3.Compare(clientv3.ModRevision(s.epochKey(id)), "=", epochRev),
			// no lease of this epoch is live, this sidecar's included
			s.noLeases(id, ep.Epoch),
		},
		[]clientv3.Op{
			clientv3.OpPut(s.leasePrefix(id, ep.Epoch)+name, v, clientv3.WithLease(leaseID)),
			clientv3.OpPut(s.lesseePrefix(id, ep.Epoch)+name, v),
			clientv3.OpDelete(s.drainedPrefix(id, ep.Epoch) + name),
		},
		[]clientv3.Op{clientv3.OpGet(s.leasePrefix(id, ep.Epoch), clientv3.WithPrefix())})
	if err != nil || !tr.Succeeded {
		s.revokeLease(ctx, leaseID)
		if err != nil {
			return Grant{}, err
		}
		if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			var live fencing.LeaseRecord
			if err := decode(string(kvs[0].Key), kvs[0].Value, &live); err != nil {
				return Grant{}, err
			}
			return Grant{}, fencing.Errorf(fencing.CodeLeaseHeld, "validator %s (epoch %d) is leased by sidecar %s of %s since %s; at most one sidecar signs at a time: retry after it releases or its lease expires (at most %ds)",
				id, ep.Epoch, live.Sidecar, live.Holder, live.AcquiredAt.Format(time.RFC3339), live.TTLSeconds)
		}
		return Grant{}, fencing.Errorf(fencing.CodeConflict, "validator %s changed while the lease was being granted; retry", id)
	}
	g.Lease = fencing.Lease{
		Validator: id, Epoch: ep.Epoch, Holder: holder, Sidecar: sidecar,
		EpochRevision: epochRev, LeaseRevision: tr.Header.Revision, EtcdLease: int64(leaseID), TTLSeconds: ttl,
	}
	s.lg.Info("lease acquired", "validator", id, "epoch", ep.Epoch, "holder", holder, "sidecar", sidecar, "ttl", ttl)
	return g, nil
}

func validTTL(ttl int64) error {
	if ttl < MinLeaseTTL || ttl > MaxLeaseTTL {
		return fencing.Errorf(fencing.CodeBadRequest, "lease TTL %ds must be between %ds and %ds", ttl, MinLeaseTTL, MaxLeaseTTL)
	}
	return nil
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

// Renew extends l for another TTL (invariant 1) and returns the token to
// use from now on. It attaches the lease key to a fresh etcd lease in a
// transaction that compares the epoch record's revision (epoch, state and
// holder as when granted), the key named by l's holder and sidecar with l's
// incarnation, and the etcd lease the key is attached to now: a renewal
// delivered late, after a later one succeeded, fails instead of moving the
// key back onto its own earlier-expiring lease; and none can land after a
// freeze.
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
	if err := validTTL(l.TTLSeconds); err != nil {
		return fencing.Lease{}, err
	}
	key := s.tokenKey(l)
	leaseID, err := s.grantLease(ctx, l.TTLSeconds)
	if err != nil {
		return fencing.Lease{}, err
	}
	tr, err := s.txn(ctx, "renew",
		append(s.leaseCmps(l), clientv3.Compare(clientv3.LeaseValue(key), "=", l.EtcdLease)),
		// The record keeps its value: only the etcd lease changes.
		append([]clientv3.Op{clientv3.OpPut(key, "", clientv3.WithIgnoreValue(), clientv3.WithLease(leaseID))}, raise...),
		[]clientv3.Op{clientv3.OpGet(s.epochKey(l.Validator)), clientv3.OpGet(key)})
	if err != nil {
		s.revokeLease(ctx, leaseID)
		return fencing.Lease{}, err
	}
	if !tr.Succeeded {
		s.revokeLease(ctx, leaseID)
		epKVs := tr.Responses[0].GetResponseRange().Kvs
		if kvs := tr.Responses[1].GetResponseRange().Kvs; len(epKVs) > 0 && epKVs[0].ModRevision == l.EpochRevision &&
			len(kvs) > 0 && kvs[0].CreateRevision == l.LeaseRevision && kvs[0].Lease != l.EtcdLease {
			return fencing.Lease{}, fencing.Errorf(fencing.CodeFenced, "renewal of %s (epoch %d, sidecar %s) is out of date: a later renewal of this lease already succeeded (a retried or delayed request); acquire anew once it ends", l.Validator, l.Epoch, l.Sidecar)
		}
		return fencing.Lease{}, s.whyNotHeld(l, epKVs)
	}
	s.revokeLease(ctx, clientv3.LeaseID(l.EtcdLease))
	l.EtcdLease = int64(leaseID)
	return l, nil
}

// leaseCmps holds inside a transaction only while l is valid: the epoch
// record is unchanged since the grant, and the lease key named by l's holder
// and sidecar (the authenticated caller's) exists as the same incarnation (it
// neither expired nor was released and re-acquired). Every transaction that
// uses a lease starts from these compares; Renew adds the etcd lease.
func (s *Store) leaseCmps(l fencing.Lease) []clientv3.Cmp {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(s.epochKey(l.Validator)), "=", l.EpochRevision),
		clientv3.Compare(clientv3.CreateRevision(s.tokenKey(l)), "=", l.LeaseRevision),
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

// Release ends l at once; holder and sidecar of l must be the authenticated
// caller's (the key they name is the one compared). It compares only the
// incarnation, not the epoch record: a lease of a revoked epoch is released
// too, which is what lets a cooperative bump finish early.
//
// wm raises the quorum watermark as in Renew, in the same transaction. A
// lease that is already gone (it expired, or a retried release) is a
// success, but a watermark reported with it is not dropped: it is raised
// and recorded in the history as a late report if this holder and sidecar
// ever held a lease of the epoch, and refused otherwise, so the caller knows
// it was not recorded.
func (s *Store) Release(ctx context.Context, l fencing.Lease, wm *fencing.Watermark) error {
	if err := l.Validate(); err != nil {
		return err
	}
	raise, err := s.raiseWatermarkOps(l, wm)
	if err != nil {
		return err
	}
	key := s.tokenKey(l)
	name := leaseName(l.Holder, l.Sidecar)
	v, err := encode(fencing.Drained{Sidecar: l.Sidecar, Holder: l.Holder, Epoch: l.Epoch, How: fencing.DrainReleased, At: s.now().UTC()})
	if err != nil {
		return err
	}
	tr, err := s.txn(ctx, "release",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", l.LeaseRevision)},
		append([]clientv3.Op{
			clientv3.OpGet(key),
			clientv3.OpDelete(key),
			clientv3.OpPut(s.drainedPrefix(l.Validator, l.Epoch)+name, v),
		}, raise...), nil)
	if err != nil {
		return err
	}
	if tr.Succeeded {
		if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			s.revokeLease(ctx, clientv3.LeaseID(kvs[0].Lease))
		}
		s.lg.Info("lease released", "validator", l.Validator, "epoch", l.Epoch, "sidecar", l.Sidecar)
		return nil
	}
	if wm == nil {
		return nil
	}
	return s.lateWatermark(ctx, l, *wm, raise)
}

// lateWatermark records wm, reported with the release of a lease that had
// already ended: raised if above the quorum watermark and written to the
// history, provided l's holder and sidecar held a lease of l's epoch.
func (s *Store) lateWatermark(ctx context.Context, l fencing.Lease, wm fencing.Watermark, raise []clientv3.Op) error {
	evCmp, evOp, err := s.eventOp(fencing.Event{
		Kind: fencing.EventLateWatermark, Validator: l.Validator, At: s.now().UTC(), By: l.Holder + "/" + l.Sidecar,
		Sidecar: l.Sidecar, Epoch: l.Epoch,
		Detail: "watermark " + wm.HRS.String() + " reported after the lease had ended (expired or already released); the quorum watermark is raised to it if it was below",
	})
	if err != nil {
		return err
	}
	tr, err := s.txn(ctx, "release_late_watermark",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.lesseePrefix(l.Validator, l.Epoch)+leaseName(l.Holder, l.Sidecar)), ">", 0), evCmp},
		append(raise, evOp), nil)
	if err != nil {
		return fencing.Errorf(fencing.CodeOf(err), "lease of %s (epoch %d) had already ended and its watermark %s was NOT recorded: %v", l.Validator, l.Epoch, wm.HRS, err)
	}
	if !tr.Succeeded {
		return fencing.Errorf(fencing.CodeFenced, "%s of %s never held a lease of %s under epoch %d; watermark %s NOT recorded", l.Sidecar, l.Holder, l.Validator, l.Epoch, wm.HRS)
	}
	raised := tr.Responses[0].GetResponseTxn().Succeeded
	s.lg.Warn("watermark reported after the lease ended", "validator", l.Validator, "epoch", l.Epoch, "sidecar", l.Sidecar, "watermark", wm.HRS.String(), "raised", raised)
	return nil
}

// CheckLease succeeds only while l is valid in etcd right now (one
// linearizable transaction): leaseCmps. Strict-mode sidecars call it before
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

// LiveLease is a lease key of an epoch still alive in etcd and the time
// until etcd expires it if nobody renews or releases it.
type LiveLease struct {
	Holder    string        `json:"holder"`
	Sidecar   string        `json:"sidecar"`
	ExpiresIn time.Duration `json:"expires_in"`
}

// LiveLeases lists the live leases of id's epoch with the time etcd gives
// each before it expires (what a bump still waits for).
func (s *Store) LiveLeases(ctx context.Context, id fencing.ValidatorID, epoch uint64) ([]LiveLease, error) {
	resp, err := s.get(ctx, "lease_list", s.leasePrefix(id, epoch), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make([]LiveLease, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		holder, sidecar := splitLeaseName(string(kv.Key))
		l := LiveLease{Holder: holder, Sidecar: sidecar}
		err := s.op(ctx, "lease_ttl", func(ctx context.Context) error {
			r, err := s.cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
			if err == nil && r.TTL > 0 {
				l.ExpiresIn = time.Duration(r.TTL) * time.Second
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}
