package sidecar

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/version"
)

// Coordinator is the coordinator API as the sidecar uses it.
type Coordinator interface {
	Acquire(ctx context.Context, r api.AcquireRequest) (api.GrantResponse, error)
	Renew(ctx context.Context, l fencing.Lease, wm *fencing.Watermark) (fencing.Lease, error)
	Release(ctx context.Context, l fencing.Lease, wm *fencing.Watermark) error
	CheckLease(ctx context.Context, l fencing.Lease) error
	WatchEpoch(ctx context.Context, id fencing.ValidatorID, after int64, wait time.Duration) (fencing.Epoch, int64, error)
	JournalSignature(ctx context.Context, r fencing.JournalRequest) (fencing.JournalEntry, error)
	JournalBatch(ctx context.Context, rs []fencing.JournalRequest) ([]fencing.JournalEntry, []error, error)
}

var _ Coordinator = (*api.Client)(nil)

// LeaseKeeper holds one validator's lease.
//
//	| #  | from  | event                                         | to    |
//	|----|-------|-----------------------------------------------|-------|
//	| K1 | none  | acquire answered (sent at t)                  | held, deadline = t + TTL - margin |
//	| K2 | held  | renew answered (sent at t)                    | held, deadline = t + TTL - margin |
//	| K3 | held  | renew refused (stale_epoch, fenced)           | none  |
//	| K4 | held  | epoch watch sees the record change (revoke)   | none: stop signing, wait for in-flight signatures, release |
//	| K5 | held  | renew failed (coordinator or etcd unreachable) | strict: held until the deadline; lease: suspended (no signing) until a renewal succeeds or the deadline passes |
//
// The deadline is on the monotonic clock and counts from when the request
// was sent, never from a time in a response (invariant 3). The etcd lease is
// granted after the request was sent, so it outlives the deadline; margin
// covers clock rate differences between this host and the etcd leader.
//
// In lease mode the quorum learns what was signed only from the watermark
// sent with each renewal and the release, so the keeper stops signing at the
// first failed renewal (K5) instead of at the deadline: after a partition,
// what the next holder's floor can miss is bounded by what was signed
// between the last successful renewal's report and that failure, at most
// one renew interval plus two renewal timeouts (docs/architecture.md).
type LeaseKeeper struct {
	coord     Coordinator
	validator fencing.ValidatorID
	holder    string
	sidecar   string
	ttl       time.Duration
	margin    time.Duration
	renew     time.Duration
	lg        hclog.Logger
	now       func() time.Time
	report    func() *fencing.Watermark
	// suspendOnFailure: lease mode's K5.
	suspendOnFailure bool

	// signing is held by the gate for a whole signature; K4 takes it before
	// releasing, so no signature of this lease completes after its release.
	signing sync.Mutex
	// revoked is set by K4 before it waits for signing: new signatures stop
	// at once.
	revoked atomic.Bool

	mu        sync.Mutex
	lease     *fencing.Lease
	floor     *fencing.Watermark
	deadline  time.Time
	suspended error     // K5 in lease mode: why signing is suspended
	answered  time.Time // when the coordinator last answered (any answer but unavailable)
}

// KeeperOptions configure a LeaseKeeper.
type KeeperOptions struct {
	Validator               fencing.ValidatorID
	Holder, Sidecar         string
	TTL, Margin, RenewEvery time.Duration
	Logger                  hclog.Logger
	Now                     func() time.Time // default time.Now (monotonic)
	// ReportWatermark, when set (lease mode), is sent with every renewal and
	// the release so the quorum watermark follows the local one, and signing
	// is suspended from the first failed renewal until one succeeds.
	ReportWatermark func() *fencing.Watermark
}

// NewLeaseKeeper returns a keeper; Run holds the lease.
func NewLeaseKeeper(c Coordinator, o KeeperOptions) *LeaseKeeper {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return &LeaseKeeper{
		coord: c, validator: o.Validator, holder: o.Holder, sidecar: o.Sidecar,
		ttl: o.TTL, margin: o.Margin, renew: o.RenewEvery, lg: o.Logger.With("validator", o.Validator), now: o.Now,
		report: o.ReportWatermark, suspendOnFailure: o.ReportWatermark != nil,
	}
}

// current returns the lease while it may be used: held, not revoked, and its
// deadline in the future.
func (k *LeaseKeeper) current() (fencing.Lease, *fencing.Watermark, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.lease == nil:
		return fencing.Lease{}, nil, fencing.Errorf(fencing.CodeFenced, "%s holds no lease for %s (holder %s)", k.sidecar, k.validator, k.holder)
	case k.revoked.Load():
		return fencing.Lease{}, nil, fencing.Errorf(fencing.CodeStaleEpoch, "epoch %d of %s is being revoked", k.lease.Epoch, k.validator)
	case !k.now().Before(k.deadline):
		return fencing.Lease{}, nil, fencing.Errorf(fencing.CodeFenced, "lease of %s (epoch %d) passed its deadline without a renewal (coordinator unreachable?)", k.validator, k.lease.Epoch)
	case k.suspended != nil:
		return fencing.Lease{}, nil, fencing.Errorf(fencing.CodeFenced, "lease mode: signing for %s is suspended since its last renewal failed (%v); it resumes when a renewal succeeds", k.validator, k.suspended)
	}
	return *k.lease, k.floor, nil
}

// noteAnswer records that a coordinator call got an answer from a working
// coordinator and etcd: a success or a refusal, not unavailable.
func (k *LeaseKeeper) noteAnswer(err error) {
	switch fencing.CodeOf(err) {
	case fencing.CodeUnavailable, fencing.CodeNoQuorum, fencing.CodeInternal, fencing.CodeUnauthorized, fencing.CodeForbidden:
		if err != nil {
			return
		}
	}
	k.mu.Lock()
	k.answered = k.now()
	k.mu.Unlock()
}

// Ready reports whether this keeper could take over now: the coordinator
// (and etcd behind it) answered within one lease TTL. A standby that holds
// no lease is ready as long as it is reachable and allowed to ask.
func (k *LeaseKeeper) Ready() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return !k.answered.IsZero() && k.now().Sub(k.answered) < k.ttl
}

// Status is what metrics and health report.
func (k *LeaseKeeper) Status() (held bool, epoch uint64, remaining time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lease == nil {
		return false, 0, 0
	}
	remaining = k.deadline.Sub(k.now())
	held = remaining > 0 && !k.revoked.Load() && k.suspended == nil
	return held, k.lease.Epoch, max(remaining, 0)
}

func (k *LeaseKeeper) set(l *fencing.Lease, floor *fencing.Watermark, deadline time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lease, k.deadline, k.suspended = l, deadline, nil
	if l != nil && floor != nil {
		k.floor = floor
	}
}

// extend is K2: l is the token the renewal returned (a new etcd lease).
func (k *LeaseKeeper) extend(l fencing.Lease, deadline time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lease == nil || k.lease.LeaseRevision != l.LeaseRevision {
		return
	}
	k.lease, k.deadline, k.suspended = &l, deadline, nil
}

// suspend is K5 in lease mode; it reports whether signing is suspended.
func (k *LeaseKeeper) suspend(err error) bool {
	if !k.suspendOnFailure {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.suspended = err
	return true
}

// Run holds the lease until ctx ends, then releases it.
func (k *LeaseKeeper) Run(ctx context.Context) {
	backoff := newBackoff(200*time.Millisecond, 5*time.Second)
	var epochRev int64
	for ctx.Err() == nil {
		// K1: acquire.
		sent := k.now()
		g, err := k.coord.Acquire(ctx, api.AcquireRequest{Validator: k.validator, Holder: k.holder, Sidecar: k.sidecar, TTLSeconds: int64(k.ttl / time.Second), Version: version.String()})
		k.noteAnswer(err)
		if err != nil {
			if fencing.CodeOf(err) == fencing.CodeFenced || fencing.CodeOf(err) == fencing.CodeNotFound {
				// Not ours (now): wait for the epoch record to change.
				k.lg.Debug("no lease", "reason", err)
				_, rev, werr := k.coord.WatchEpoch(ctx, k.validator, epochRev, 30*time.Second)
				k.noteAnswer(werr)
				if werr == nil && rev != epochRev {
					epochRev = rev
					continue
				}
			} else if fencing.CodeOf(err) == fencing.CodeLeaseHeld {
				// A lease of this epoch is live (this sidecar's previous
				// incarnation, or another sidecar of the holder): at most
				// one signs; wait for it to be released or expire.
				k.lg.Info("waiting for the live lease to end", "reason", err)
			} else if ctx.Err() == nil {
				k.lg.Warn("acquire failed; retrying", "error", err)
			}
			backoff.wait(ctx)
			continue
		}
		backoff.reset()
		k.revoked.Store(false)
		k.set(&g.Lease, g.Watermark, sent.Add(k.ttl-k.margin))
		k.lg.Info("lease acquired", "epoch", g.Lease.Epoch, "ttl", k.ttl, "watermark", wmText(g.Watermark))
		epochRev = k.hold(ctx, g.Lease)
	}
	k.releaseNow(context.WithoutCancel(ctx), "sidecar stopping")
}

// hold renews l and watches its epoch until the lease is lost (K3, K4) or ctx
// ends. It returns the epoch record revision it last saw.
func (k *LeaseKeeper) hold(ctx context.Context, l fencing.Lease) int64 {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchDone := make(chan int64, 1)
	go func() { watchDone <- k.watch(hctx, l) }()
	t := time.NewTimer(k.renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return l.EpochRevision
		case rev := <-watchDone:
			// K4: the epoch record changed: revoke first, release after
			// in-flight signatures finished.
			k.releaseNow(ctx, "epoch changed")
			return rev
		case <-t.C:
		}
		sent := k.now()
		// A renewal gets one renew interval (lease mode's window counts this
		// timeout). It is asked even after the local deadline passed (a
		// pause, a slow coordinator): it then either finds the key gone
		// (K3, acquire anew) or renews it, with a deadline counted from
		// now; never with a context that has already expired, which would
		// leave the keeper retrying without asking.
		rctx, cancel := context.WithTimeout(ctx, k.renew)
		nl, err := k.coord.Renew(rctx, l, k.reported())
		cancel()
		k.noteAnswer(err)
		switch {
		case err == nil:
			l = nl
			k.extend(nl, sent.Add(k.ttl-k.margin)) // K2
			t.Reset(k.renew)
		case fencing.CodeOf(err) == fencing.CodeStaleEpoch || fencing.CodeOf(err) == fencing.CodeFenced:
			// K3: the lease is no longer valid. Release it anyway: after a
			// revoke its key still blocks the drain until it expires.
			k.lg.Warn("renew refused; lease lost", "error", err)
			k.releaseNow(ctx, "renew refused")
			return l.EpochRevision
		case ctx.Err() != nil:
			return l.EpochRevision
		default:
			// K5: keep the deadline (strict) or suspend (lease); try again soon.
			if k.suspend(err) {
				k.lg.Warn("renew failed; signing is suspended until a renewal succeeds (lease mode)", "error", err)
			} else {
				k.lg.Warn("renew failed; signing continues until the deadline", "error", err)
			}
			t.Reset(min(time.Second, k.renew))
		}
	}
}

// watch long-polls l's epoch and returns when its record changed.
func (k *LeaseKeeper) watch(ctx context.Context, l fencing.Lease) int64 {
	for ctx.Err() == nil {
		_, rev, err := k.coord.WatchEpoch(ctx, l.Validator, l.EpochRevision, 30*time.Second)
		k.noteAnswer(err)
		if err != nil {
			if ctx.Err() == nil {
				// Renewals still bound the lease; the watch only makes the
				// cooperative release fast.
				k.lg.Warn("epoch watch failed; retrying", "error", err)
				select {
				case <-time.After(500 * time.Millisecond):
				case <-ctx.Done():
				}
			}
			continue
		}
		if rev > l.EpochRevision {
			return rev
		}
	}
	return l.EpochRevision
}

// releaseNow is K4: stop new signatures, wait for the one in flight, release.
func (k *LeaseKeeper) releaseNow(ctx context.Context, why string) {
	k.revoked.Store(true)
	k.signing.Lock()
	defer k.signing.Unlock()
	k.mu.Lock()
	l := k.lease
	k.mu.Unlock()
	if l == nil {
		return
	}
	k.set(nil, nil, time.Time{})
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Under the signing lock: the reported watermark includes every signature.
	if err := k.coord.Release(rctx, *l, k.reported()); err != nil {
		k.lg.Warn("release failed; the lease will expire", "epoch", l.Epoch, "error", err)
		return
	}
	k.lg.Info("lease released", "epoch", l.Epoch, "why", why)
}

// reported is the watermark to send with a renewal or release (lease mode),
// or nil. It is read under the gate's lock only in releaseNow; a renewal may
// race a signature and report one step behind, which the next renewal or the
// release catches up.
func (k *LeaseKeeper) reported() *fencing.Watermark {
	if k.report == nil {
		return nil
	}
	return k.report()
}

func wmText(w *fencing.Watermark) string {
	if w == nil {
		return "none"
	}
	return w.HRS.String()
}

type backoff struct{ min, max, cur time.Duration }

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{min: lo, max: hi, cur: lo} }
func (b *backoff) reset()                      { b.cur = b.min }
func (b *backoff) wait(ctx context.Context) {
	select {
	case <-time.After(b.cur):
	case <-ctx.Done():
	}
	b.cur = min(2*b.cur, b.max)
}
