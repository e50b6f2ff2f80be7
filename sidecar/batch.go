package sidecar

import (
	"context"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// journalBatcher sends the strict-mode journal writes of this sidecar's
// validators to the coordinator: while one request is in flight, writes
// queue, and the next request carries all of them (POST /v1/journal/batch),
// which the coordinator commits with group commit. One validator has at most
// one write in flight (its gate holds the signing lock), so a batch never
// orders two writes of one validator. At concurrency 1 it is one request.
type journalBatcher struct {
	coord Coordinator
	queue chan *pendingWrite
}

type pendingWrite struct {
	ctx   context.Context
	req   fencing.JournalRequest
	entry fencing.JournalEntry
	err   error
	done  chan struct{}
}

func newJournalBatcher(c Coordinator) *journalBatcher {
	return &journalBatcher{coord: c, queue: make(chan *pendingWrite, api.MaxJournalBatch)}
}

// journal commits r through the next batch. ctx bounds the wait: a write
// abandoned by its caller may still commit, and the caller does not sign.
func (b *journalBatcher) journal(ctx context.Context, r fencing.JournalRequest) (fencing.JournalEntry, error) {
	p := &pendingWrite{ctx: ctx, req: r, done: make(chan struct{})}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return fencing.JournalEntry{}, ctx.Err()
	}
	select {
	case <-p.done:
		return p.entry, p.err
	case <-ctx.Done():
		return fencing.JournalEntry{}, ctx.Err()
	}
}

// run sends batches until ctx ends.
func (b *journalBatcher) run(ctx context.Context) {
	for {
		var batch []*pendingWrite
		select {
		case p := <-b.queue:
			batch = append(batch, p)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < api.MaxJournalBatch {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
			default:
				break more
			}
		}
		b.send(batch)
	}
}

func (b *journalBatcher) send(batch []*pendingWrite) {
	// The request lives as long as its longest-waiting caller.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for _, p := range batch {
			select {
			case <-p.ctx.Done():
			case <-ctx.Done():
				return
			}
		}
		cancel()
	}()
	reqs := make([]fencing.JournalRequest, len(batch))
	for i, p := range batch {
		reqs[i] = p.req
	}
	var entries []fencing.JournalEntry
	var errs []error
	var err error
	if len(batch) == 1 {
		entries, errs = make([]fencing.JournalEntry, 1), make([]error, 1)
		entries[0], errs[0] = b.coord.JournalSignature(ctx, reqs[0])
	} else {
		entries, errs, err = b.coord.JournalBatch(ctx, reqs)
	}
	for i, p := range batch {
		if err != nil {
			p.err = err
		} else {
			p.entry, p.err = entries[i], errs[i]
		}
		close(p.done)
	}
}
