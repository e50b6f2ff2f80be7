// Package groupcommit is the queue under every group commit here (the
// coordinator's journal transactions, the sidecar's journal requests):
// callers submit and wait, one committer takes whatever has queued while the
// previous commit was in flight and finishes each item with its own answer.
package groupcommit

import "context"

// Item is one submitted request waiting for its answer.
type Item[Req, Res any] struct {
	// Ctx is the submitter's context; a committer may use it to bound the
	// work done for this item.
	Ctx  context.Context
	Req  Req
	res  Res
	err  error
	done chan struct{}
}

// Finish answers the item; call it exactly once.
func (it *Item[Req, Res]) Finish(res Res, err error) {
	it.res, it.err = res, err
	close(it.done)
}

// Queue holds submitted items until the committer takes them.
type Queue[Req, Res any] struct{ ch chan *Item[Req, Res] }

// New returns a queue holding at most capacity waiting items.
func New[Req, Res any](capacity int) *Queue[Req, Res] {
	return &Queue[Req, Res]{ch: make(chan *Item[Req, Res], capacity)}
}

// Do submits req and waits for its answer or for ctx to end. An item whose
// caller gave up may still be committed; the caller must treat ctx's error
// as "unknown", never as success.
func (q *Queue[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	var zero Res
	it := &Item[Req, Res]{Ctx: ctx, Req: req, done: make(chan struct{})}
	select {
	case q.ch <- it:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case <-it.done:
		return it.res, it.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// DoAll submits every request of reqs at once and waits for all their
// answers: res[i] and errs[i] answer reqs[i]. One caller's requests reach
// the committer together, so a committer that takes what has queued commits
// them in one group, and the caller needs no goroutine per request. Those
// not answered when ctx ends get ctx's error, with Do's meaning: unknown.
func (q *Queue[Req, Res]) DoAll(ctx context.Context, reqs []Req) (res []Res, errs []error) {
	res, errs = make([]Res, len(reqs)), make([]error, len(reqs))
	items := make([]Item[Req, Res], len(reqs))
	sent := 0
submit:
	for i := range items {
		items[i] = Item[Req, Res]{Ctx: ctx, Req: reqs[i], done: make(chan struct{})}
		select {
		case q.ch <- &items[i]:
			sent++
		case <-ctx.Done():
			break submit
		}
	}
	for i := range items {
		if i >= sent {
			errs[i] = ctx.Err()
			continue
		}
		select {
		case <-items[i].done:
			res[i], errs[i] = items[i].res, items[i].err
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}
	return res, errs
}

// Next waits for the next item, or returns false when ctx ends.
func (q *Queue[Req, Res]) Next(ctx context.Context) (*Item[Req, Res], bool) {
	select {
	case it := <-q.ch:
		return it, true
	case <-ctx.Done():
		return nil, false
	}
}

// Waiting is the channel Next receives from, for a committer that waits
// for other events too.
func (q *Queue[Req, Res]) Waiting() <-chan *Item[Req, Res] { return q.ch }

// TryNext returns an item already waiting, without blocking.
func (q *Queue[Req, Res]) TryNext() (*Item[Req, Res], bool) {
	select {
	case it := <-q.ch:
		return it, true
	default:
		return nil, false
	}
}
