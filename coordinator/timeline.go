package coordinator

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// waitBump waits until b is granted or ctx ends, then assembles its timeline
// from the history and the drained leases. firstWait > 0 then waits up to
// that long (within ctx) for the new holder's first journaled signature and
// adds it to the timeline.
func waitBump(ctx context.Context, st *store.Store, id fencing.ValidatorID, b fencing.Bump, firstWait time.Duration) (fencing.BumpResult, error) {
	res := fencing.BumpResult{Bump: b}
	var rev int64
	for ctx.Err() == nil {
		ep, r, err := st.WatchEpoch(ctx, id, rev, time.Minute)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return res, err
		}
		res.Epoch, rev = ep, r
		if ep.Epoch > b.FromEpoch {
			break
		}
	}
	// The request's own context may be over: read the rest within a bound
	// of its own.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if res.Epoch.Epoch == 0 {
		// Stopped waiting before the first read: report the current state.
		cur, err := st.Status(tctx, id)
		if err != nil {
			return res, err
		}
		res.Epoch = cur.Epoch
	}
	res.Done = res.Epoch.Epoch > b.FromEpoch
	var first *fencing.TimelineEntry
	if res.Done && firstWait > 0 {
		first = firstSignature(ctx, st, id, res.Epoch.Epoch, firstWait)
	}
	tl, err := timeline(tctx, st, id, b)
	if first != nil {
		tl = append(tl, *first)
	}
	res.Timeline = tl
	return res, err
}

// firstSignature is the timeline entry of the new holder's first signature
// under epoch (strict mode; in lease mode the watermark moves only with
// renewals), or nil if none was seen within wait.
func firstSignature(ctx context.Context, st *store.Store, id fencing.ValidatorID, epoch uint64, wait time.Duration) *fencing.TimelineEntry {
	wm, at := st.WatchWatermark(ctx, id, epoch, wait)
	if wm == nil {
		return nil
	}
	return &fencing.TimelineEntry{At: at, Step: "first_signature", Detail: wm.HRS.String() + " by " + wm.Sidecar + " (epoch " + u64(wm.Epoch) + ")"}
}

// timeline assembles b's timeline so far from the history and how the
// leases of its epoch ended, in time order.
func timeline(ctx context.Context, st *store.Store, id fencing.ValidatorID, b fencing.Bump) ([]fencing.TimelineEntry, error) {
	evs, err := st.Events(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	var tl []fencing.TimelineEntry
	for _, ev := range evs {
		if ev.BumpID != b.ID {
			continue
		}
		te := fencing.TimelineEntry{At: ev.At, Step: string(ev.Kind)}
		switch ev.Kind {
		case fencing.EventGrant:
			te.Detail = "epoch " + u64(ev.To.Epoch) + " active on " + ev.To.Holder
		case fencing.EventFreeze, fencing.EventBumpStarted:
			te.Detail = "epoch " + u64(ev.From.Epoch) + " on " + ev.From.Holder + ", " + ev.Detail
		case fencing.EventFenced:
			te.Detail = "epoch " + u64(ev.From.Epoch) + " fenced"
		}
		tl = append(tl, te)
	}
	ends, err := st.LeaseEnds(ctx, id, b.FromEpoch)
	if err != nil {
		return tl, err
	}
	for _, d := range ends {
		tl = append(tl, fencing.TimelineEntry{At: d.At, Step: "lease_" + d.How, Detail: d.Sidecar + " (" + d.Holder + ")"})
	}
	sort.SliceStable(tl, func(i, j int) bool { return tl[i].At.Before(tl[j].At) })
	return tl, nil
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }
