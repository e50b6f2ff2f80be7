package sidecar

import (
	"context"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/groupcommit"
)

// journalBatcher sends the strict-mode journal writes of this sidecar's
// validators to the coordinator: while one request is in flight, writes
// queue, and the next request carries all of them (POST /v1/journal/batch),
// which the coordinator commits with group commit. One validator has at most
// one write in flight (its gate holds the signing lock), so a batch never
// orders two writes of one validator. At concurrency 1 it is one request.
type journalBatcher struct {
	coord Coordinator
	queue *groupcommit.Queue[fencing.JournalRequest, fencing.JournalEntry]
}

type pendingWrite = groupcommit.Item[fencing.JournalRequest, fencing.JournalEntry]

func newJournalBatcher(c Coordinator) *journalBatcher {
	return &journalBatcher{coord: c, queue: groupcommit.New[fencing.JournalRequest, fencing.JournalEntry](api.MaxJournalBatch)}
}

// journal commits r through the next batch. If ctx ends first the write may
// still commit, and the caller does not sign.
func (b *journalBatcher) journal(ctx context.Context, r fencing.JournalRequest) (fencing.JournalEntry, error) {
	return b.queue.Do(ctx, r)
}

// run sends batches until ctx ends.
func (b *journalBatcher) run(ctx context.Context) {
	for {
		p, ok := b.queue.Next(ctx)
		if !ok {
			return
		}
		batch := []*pendingWrite{p}
		for len(batch) < api.MaxJournalBatch {
			p, ok := b.queue.TryNext()
			if !ok {
				break
			}
			batch = append(batch, p)
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
			case <-p.Ctx.Done():
			case <-ctx.Done():
				return
			}
		}
		cancel()
	}()
	if len(batch) == 1 {
		batch[0].Finish(b.coord.JournalSignature(ctx, batch[0].Req))
		return
	}
	reqs := make([]fencing.JournalRequest, len(batch))
	for i, p := range batch {
		reqs[i] = p.Req
	}
	entries, errs, err := b.coord.JournalBatch(ctx, reqs)
	for i, p := range batch {
		if err != nil {
			p.Finish(fencing.JournalEntry{}, err)
		} else {
			p.Finish(entries[i], errs[i])
		}
	}
}
