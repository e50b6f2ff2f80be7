package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// redrawEvery is how often a terminal's countdown line is redrawn; off a
// terminal the countdown is printed at most once per plainEvery.
const (
	redrawEvery = 200 * time.Millisecond
	plainEvery  = time.Second
)

// progressView prints the bumps under way: one line per step as it
// commits, and the leases still draining with the time etcd gives each. On
// a terminal the draining leases are one line redrawn in place (a
// countdown); elsewhere a line at most once a second. It is safe for
// concurrent use by the trackers of several validators.
type progressView struct {
	w      io.Writer
	redraw bool

	mu        sync.Mutex
	drains    map[fencing.ValidatorID]drain
	shown     bool // the countdown line is on screen
	lastPlain time.Time

	quit, stopped chan struct{}
}

// drain is what the last progress line of a validator said was still live,
// and when it arrived.
type drain struct {
	leases []api.LiveLease
	at     time.Time
}

func newProgressView(w io.Writer, redraw bool) *progressView {
	v := &progressView{w: w, redraw: redraw, drains: map[fencing.ValidatorID]drain{}, quit: make(chan struct{}), stopped: make(chan struct{})}
	if !redraw {
		close(v.stopped)
		return v
	}
	go func() {
		defer close(v.stopped)
		t := time.NewTicker(redrawEvery)
		defer t.Stop()
		for {
			select {
			case <-v.quit:
				return
			case <-t.C:
				v.mu.Lock()
				v.lockedDraw()
				v.mu.Unlock()
			}
		}
	}()
	return v
}

// close stops the countdown and clears its line.
func (v *progressView) close() {
	close(v.quit)
	<-v.stopped
	v.mu.Lock()
	v.lockedClear()
	v.mu.Unlock()
}

// line prints a permanent line above the countdown.
func (v *progressView) line(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lockedClear()
	fmt.Fprintf(v.w, format, args...)
	v.lockedDraw()
}

func (v *progressView) setDraining(id fencing.ValidatorID, leases []api.LiveLease) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := time.Now()
	v.drains[id] = drain{leases: leases, at: now}
	if v.redraw {
		v.lockedDraw()
		return
	}
	if now.Sub(v.lastPlain) >= plainEvery {
		v.lastPlain = now
		fmt.Fprintf(v.w, "%s\n", v.lockedCountdown(now))
	}
}

func (v *progressView) settle(id fencing.ValidatorID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.drains, id)
	v.lockedDraw()
}

func (v *progressView) lockedDraw() {
	if !v.redraw {
		return
	}
	if len(v.drains) == 0 {
		v.lockedClear()
		return
	}
	fmt.Fprintf(v.w, "\r\033[K%s", v.lockedCountdown(time.Now()))
	v.shown = true
}

func (v *progressView) lockedClear() {
	if v.shown {
		fmt.Fprint(v.w, "\r\033[K")
		v.shown = false
	}
}

// lockedCountdown says which leases are still live and how long etcd gives
// each, counted down from when the coordinator said so. It stays short
// enough for one terminal line: past two leases it names the last to
// expire.
func (v *progressView) lockedCountdown(now time.Time) string {
	type live struct {
		name string
		left time.Duration
	}
	var all []live
	for id, d := range v.drains {
		for _, l := range d.leases {
			all = append(all, live{fmt.Sprintf("%s %s@%s", id, l.Sidecar, l.Holder), max(l.ExpiresIn.Duration-now.Sub(d.at), 0)})
		}
	}
	slices.SortFunc(all, func(a, b live) int { return strings.Compare(a.name, b.name) })
	if len(all) > 2 {
		last := slices.MaxFunc(all, func(a, b live) int { return int(a.left - b.left) })
		return fmt.Sprintf("waiting for %d leases of %s to end: the last, %s, expires in %.1fs", len(all), plural(len(v.drains), "validator", "validators"), last.name, last.left.Seconds())
	}
	parts := make([]string, len(all))
	for i, l := range all {
		parts[i] = fmt.Sprintf("%s expires in %.1fs", l.name, l.left.Seconds())
	}
	return fmt.Sprintf("waiting for %s to end: %s", plural(len(all), "lease", "leases"), strings.Join(parts, "; "))
}

// tracker prints one validator's bump.
type tracker struct {
	v        *progressView
	id       fencing.ValidatorID
	op       string
	header   bool
	start    time.Time
	seen     map[fencing.TimelineEntry]bool
	timeline []fencing.TimelineEntry
}

// track starts printing id's bump b (its header once b is known).
func (v *progressView) track(id fencing.ValidatorID, op string, b fencing.Bump) *tracker {
	t := &tracker{v: v, id: id, op: op, seen: map[fencing.TimelineEntry]bool{}}
	t.printHeader(b)
	return t
}

func (t *tracker) printHeader(b fencing.Bump) {
	if t.header || b.FromEpoch == 0 {
		return
	}
	t.header = true
	comment := ""
	if b.Comment != "" {
		comment = " (" + b.Comment + ")"
	}
	t.v.line("%s: %s %s: epoch %d on %s -> %s, by %s%s: %s\n", t.id, t.op, b.ID, b.FromEpoch, b.FromHold, b.To, b.By, comment, b.Reason)
}

// steps prints each entry of tl not printed yet.
func (t *tracker) steps(tl []fencing.TimelineEntry) {
	for _, te := range tl {
		if t.seen[te] {
			continue
		}
		t.seen[te] = true
		t.timeline = append(t.timeline, te)
		if t.start.IsZero() {
			t.start = te.At
		}
		t.v.settle(t.id)
		t.v.line("%s  %s  +%.3fs  %-17s %s\n", t.id, ts(te.At), te.At.Sub(t.start).Seconds(), te.Step, te.Detail)
	}
}

func (t *tracker) draining(leases []api.LiveLease) { t.v.setDraining(t.id, leases) }

// done prints the end of a granted bump.
func (t *tracker) done(r fencing.BumpResult) {
	t.printHeader(r.Bump)
	t.steps(r.Timeline)
	t.v.settle(t.id)
	took := ""
	if !t.start.IsZero() {
		took = fmt.Sprintf("; handover took %.3fs", r.Epoch.UpdatedAt.Sub(t.start).Seconds())
	}
	t.v.line("%s: granted: epoch %d %s on %s%s\n", t.id, r.Epoch.Epoch, r.Epoch.State, r.Epoch.Holder, took)
}

// pending prints the end of a wait for a bump still under way.
func (t *tracker) pending(r fencing.BumpResult, after string) {
	t.v.settle(t.id)
	state := "not granted"
	if r.Epoch.State != "" {
		state = string(r.Epoch.State)
	}
	t.v.line("%s: still %s%s: the bump goes on in the coordinator; follow it: fencectl bump --follow %s %s\n", t.id, state, after, r.Bump.ID, t.id)
}
