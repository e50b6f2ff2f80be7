package store

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// LeaseEnds returns how each lease of epoch that ended did (released or
// expired, and when), sorted by time.
func (s *Store) LeaseEnds(ctx context.Context, id fencing.ValidatorID, epoch uint64) ([]fencing.Drained, error) {
	_, drained, err := s.leaseHistory(ctx, id, epoch)
	if err != nil {
		return nil, err
	}
	out := make([]fencing.Drained, 0, len(drained))
	for _, d := range drained {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}

// WatchWatermark waits up to wait (and while ctx lasts) until id's quorum
// watermark was signed under epoch or later, and returns it with the time
// its journal entry says it was signed (the watermark's own time when it has
// no entry: lease mode). It returns nil when none was seen.
func (s *Store) WatchWatermark(ctx context.Context, id fencing.ValidatorID, epoch uint64, wait time.Duration) (*fencing.Watermark, time.Time) {
	wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), wait)
	defer cancel()
	resp, err := s.get(wctx, "watermark_read", s.watermarkKey(id))
	if err != nil {
		return nil, time.Time{}
	}
	of := func(v []byte) *fencing.Watermark {
		var wm fencing.Watermark
		if json.Unmarshal(v, &wm) != nil || wm.Epoch < epoch {
			return nil
		}
		return &wm
	}
	var wm *fencing.Watermark
	if len(resp.Kvs) > 0 {
		wm = of(resp.Kvs[0].Value)
	}
	if wm == nil {
	watch:
		for wr := range s.cli.Watch(wctx, s.watermarkKey(id), clientv3.WithRev(resp.Header.Revision+1)) {
			for _, ev := range wr.Events {
				if wm = of(ev.Kv.Value); wm != nil {
					break watch
				}
			}
		}
	}
	if wm == nil {
		return nil, time.Time{}
	}
	at := s.now().UTC()
	// The journal entry says when it was signed (the watermark may have been
	// written before this call looked).
	if r, err := s.get(wctx, "journal_read", s.journalKey(id, wm.HRS)); err == nil && len(r.Kvs) > 0 {
		var e fencing.JournalEntry
		if json.Unmarshal(r.Kvs[0].Value, &e) == nil && !e.At.IsZero() {
			at = e.At
		}
	}
	return wm, at
}

// Locks are per-validator mutexes (etcd's concurrency.Mutex) held on one
// session of this process: the coordinator's reconciler takes a validator's
// lock before driving its bump, so that replicas do not duplicate the work.
// A lock is only an optimisation: every step it guards is a
// compare-and-swap transaction. When the process dies its session expires
// and the locks with it.
type Locks struct {
	s   *Store
	ttl int

	mu   sync.Mutex
	sess *concurrency.Session
}

// ErrLocked is TryLock's answer when another process holds the lock.
var ErrLocked = concurrency.ErrLocked

// NewLocks returns locks held on a session of sessionTTL seconds.
func (s *Store) NewLocks(sessionTTL int) *Locks {
	return &Locks{s: s, ttl: sessionTTL}
}

// TryLock takes id's bump lock without waiting. lost closes when the
// session (and with it the lock) is lost; unlock releases it.
func (l *Locks) TryLock(ctx context.Context, id fencing.ValidatorID) (unlock func(), lost <-chan struct{}, err error) {
	sess, err := l.session()
	if err != nil {
		return nil, nil, err
	}
	m := concurrency.NewMutex(sess, l.s.bumpLockKey(id))
	lctx, cancel := context.WithTimeout(ctx, l.s.timeout)
	err = m.TryLock(lctx)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.s.timeout)
		_ = m.Unlock(uctx)
		cancel()
	}, sess.Done(), nil
}

func (l *Locks) session() (*concurrency.Session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil {
		select {
		case <-l.sess.Done():
			l.sess = nil
		default:
			return l.sess, nil
		}
	}
	// Grant the session's lease with a bounded request; NewSession itself
	// would wait on etcd without a deadline.
	leaseID, err := l.s.grantLease(context.Background(), int64(l.ttl))
	if err != nil {
		return nil, err
	}
	sess, err := concurrency.NewSession(l.s.cli, concurrency.WithLease(leaseID))
	if err != nil {
		return nil, fencing.Errorf(fencing.CodeNoQuorum, "etcd: cannot open a session for the bump locks: %v", err)
	}
	l.sess = sess
	return sess, nil
}

// Close ends the session; every lock held on it is released.
func (l *Locks) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil {
		_ = l.sess.Close()
		l.sess = nil
	}
}
