package coordinator

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// reconciler runs store.Reconcile for every validator that needs it: on
// kick (the request that started a bump or a freeze), and on a periodic scan
// that resumes bumps whose coordinator died. A per-validator lock on this
// replica's etcd session (store.Locks) keeps replicas from duplicating work;
// when a replica dies its session expires and the next scan elsewhere takes
// over. The lock is only an optimisation: every step Reconcile takes is a
// compare-and-swap transaction (docs/architecture.md, the epoch state
// machine).
type reconciler struct {
	st       *store.Store
	locks    *store.Locks
	lg       hclog.Logger
	interval time.Duration
	kicks    chan fencing.ValidatorID

	mu      sync.Mutex
	running map[fencing.ValidatorID]bool
}

// newReconciler scans every interval and holds its locks on a session of
// sessionTTL seconds.
func newReconciler(st *store.Store, lg hclog.Logger, interval time.Duration, sessionTTL int) *reconciler {
	return &reconciler{st: st, locks: st.NewLocks(sessionTTL), lg: lg, interval: interval, kicks: make(chan fencing.ValidatorID, 64), running: map[fencing.ValidatorID]bool{}}
}

// kick asks for id to be reconciled now.
func (r *reconciler) kick(id fencing.ValidatorID) {
	select {
	case r.kicks <- id:
	default:
	}
}

// run reconciles until ctx ends.
func (r *reconciler) run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	defer r.locks.Close()
	for {
		r.scan(ctx)
		select {
		case <-ctx.Done():
			return
		case id := <-r.kicks:
			r.start(ctx, id)
		case <-t.C:
		}
	}
}

func (r *reconciler) scan(ctx context.Context) {
	sts, err := r.st.Statuses(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.lg.Warn("reconcile scan failed", "error", err)
		}
		return
	}
	for _, st := range sts {
		if st.Epoch.State == fencing.StateRevoking || st.Bump != nil {
			r.start(ctx, st.ID)
		}
	}
}

func (r *reconciler) start(ctx context.Context, id fencing.ValidatorID) {
	r.mu.Lock()
	if r.running[id] {
		r.mu.Unlock()
		return
	}
	r.running[id] = true
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			delete(r.running, id)
			r.mu.Unlock()
		}()
		if err := r.reconcileLocked(ctx, id); err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrLocked) {
			r.lg.Warn("reconcile failed; will retry", "validator", id, "error", err)
		}
	}()
}

// reconcileLocked runs Reconcile under the validator's bump lock.
func (r *reconciler) reconcileLocked(ctx context.Context, id fencing.ValidatorID) error {
	unlock, lost, err := r.locks.TryLock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	// Losing the session loses the lock: stop rather than work unlocked.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lost:
			cancel()
		case <-wctx.Done():
		}
	}()
	_, err = r.st.Reconcile(wctx, id)
	return err
}
