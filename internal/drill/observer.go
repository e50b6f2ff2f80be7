package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// EpochChange is one committed write of a validator's epoch record, as a
// watch on etcd delivered it. Observed is when this process received it,
// which is after the commit: "a request sent after Observed" was sent after
// the commit, whatever the clocks of the coordinators say.
type EpochChange struct {
	Validator string        `json:"validator"`
	Epoch     fencing.Epoch `json:"epoch"`
	Revision  int64         `json:"revision"`
	Observed  time.Time     `json:"observed"`
}

// WatermarkChange is one committed write of a quorum watermark.
type WatermarkChange struct {
	Validator string            `json:"validator"`
	Watermark fencing.Watermark `json:"watermark"`
	Revision  int64             `json:"revision"`
	Observed  time.Time         `json:"observed"`
}

// JournalPut is one quorum journal entry and the revision that committed it.
type JournalPut struct {
	Entry    fencing.JournalEntry `json:"entry"`
	Revision int64                `json:"revision"`
}

// Observer watches the fencing keys in etcd directly (not through a
// coordinator) and keeps every epoch and watermark change with the time it
// arrived. It is the independent witness the invariant checker compares the
// workload's answers with.
type Observer struct {
	cli    *clientv3.Client
	prefix string

	mu         sync.Mutex
	epochs     []EpochChange
	watermarks []WatermarkChange
	lastRev    int64
	changed    chan struct{}
	errs       int
}

// NewObserver watches below prefix (e.g. "/fencing/") with cli.
func NewObserver(cli *clientv3.Client, prefix string) *Observer {
	return &Observer{cli: cli, prefix: prefix, changed: make(chan struct{})}
}

// Now returns the revision to start Run from so that it sees everything
// committed after this call. Read it before anything to observe is written:
// a Run started "from now" in its own goroutine could miss the first writes.
func (o *Observer) Now(ctx context.Context) (int64, error) {
	resp, err := o.cli.Get(ctx, o.prefix+"validators/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read the etcd revision: %w", err)
	}
	return resp.Header.Revision + 1, nil
}

// Run watches from revision from (see Now) until ctx ends, resuming after
// errors where it stopped, so no revision is missed.
func (o *Observer) Run(ctx context.Context, from int64) {
	vprefix := o.prefix + "validators/"
	o.mu.Lock()
	o.lastRev = from - 1
	o.mu.Unlock()
	for ctx.Err() == nil {
		o.mu.Lock()
		next := o.lastRev + 1
		o.mu.Unlock()
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(next)}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range o.cli.Watch(wctx, vprefix, opts...) {
			if err := wr.Err(); err != nil {
				o.mu.Lock()
				o.errs++
				o.mu.Unlock()
				break
			}
			now := time.Now()
			o.mu.Lock()
			for _, ev := range wr.Events {
				o.lockedApply(ev, now)
			}
			if len(wr.Events) > 0 {
				o.lastRev = max(o.lastRev, wr.Events[len(wr.Events)-1].Kv.ModRevision)
			}
			close(o.changed)
			o.changed = make(chan struct{})
			o.mu.Unlock()
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (o *Observer) lockedApply(ev *clientv3.Event, now time.Time) {
	if ev.Type != clientv3.EventTypePut {
		return
	}
	k, ok := store.ParseValidatorKey(o.prefix, string(ev.Kv.Key))
	if !ok {
		return
	}
	id := string(k.Validator)
	switch k.Kind {
	case store.KeyEpoch:
		var ep fencing.Epoch
		if json.Unmarshal(ev.Kv.Value, &ep) == nil {
			o.epochs = append(o.epochs, EpochChange{Validator: id, Epoch: ep, Revision: ev.Kv.ModRevision, Observed: now})
		}
	case store.KeyWatermark:
		var wm fencing.Watermark
		if json.Unmarshal(ev.Kv.Value, &wm) == nil {
			o.watermarks = append(o.watermarks, WatermarkChange{Validator: id, Watermark: wm, Revision: ev.Kv.ModRevision, Observed: now})
		}
	}
}

// Epochs returns every epoch change so far, in commit order.
func (o *Observer) Epochs() []EpochChange {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]EpochChange(nil), o.epochs...)
}

// Watermarks returns every watermark change so far, in commit order.
func (o *Observer) Watermarks() []WatermarkChange {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]WatermarkChange(nil), o.watermarks...)
}

// WatchErrors counts watches that ended with an error and were resumed.
func (o *Observer) WatchErrors() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.errs
}

// Latest returns the newest epoch record of validator.
func (o *Observer) Latest(validator string) (EpochChange, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.epochs) - 1; i >= 0; i-- {
		if o.epochs[i].Validator == validator {
			return o.epochs[i], true
		}
	}
	return EpochChange{}, false
}

// WaitUntil waits until pred holds for the epoch changes seen so far.
func (o *Observer) WaitUntil(ctx context.Context, pred func(latest map[string]EpochChange) bool) error {
	for {
		o.mu.Lock()
		latest := map[string]EpochChange{}
		for _, e := range o.epochs {
			latest[e.Validator] = e
		}
		ch := o.changed
		o.mu.Unlock()
		if pred(latest) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Grants counts epoch changes that granted an epoch above 1 (failover
// rounds).
func Grants(epochs []EpochChange) int {
	n := 0
	for _, e := range epochs {
		if e.Epoch.State == fencing.StateActive && e.Epoch.Epoch > 1 {
			n++
		}
	}
	return n
}

// ReadJournal reads the whole quorum journal below prefix with the revision
// that committed each entry.
func ReadJournal(ctx context.Context, cli *clientv3.Client, prefix string) ([]JournalPut, error) {
	resp, err := cli.Get(ctx, prefix+"validators/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []JournalPut
	for _, kv := range resp.Kvs {
		if k, ok := store.ParseValidatorKey(prefix, string(kv.Key)); !ok || k.Kind != store.KeyJournal {
			continue
		}
		var e fencing.JournalEntry
		if json.Unmarshal(kv.Value, &e) != nil {
			continue
		}
		out = append(out, JournalPut{Entry: e, Revision: kv.ModRevision})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, nil
}
