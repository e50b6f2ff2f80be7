package sidecar

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/flagenv"
)

// trace is the ordered record of what the gate did to its fakes, with times.
type trace struct {
	mu sync.Mutex
	ev []traced
}

type traced struct {
	what string
	at   time.Time
}

func (tr *trace) add(format string, args ...any) {
	tr.mu.Lock()
	tr.ev = append(tr.ev, traced{fmt.Sprintf(format, args...), time.Now()})
	tr.mu.Unlock()
}

// at returns the index and time of the first event named what after index
// from, or -1.
func (tr *trace) at(what string, from int) (int, time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for i := max(from, 0); i < len(tr.ev); i++ {
		if tr.ev[i].what == what {
			return i, tr.ev[i].at
		}
	}
	return -1, time.Time{}
}

func (tr *trace) len() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.ev)
}

func (tr *trace) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var b strings.Builder
	for _, e := range tr.ev {
		fmt.Fprintf(&b, "\n    %s  %s", e.at.Format("15:04:05.000"), e.what)
	}
	return b.String()
}

// inOrder fails the test unless the events occur in this order.
func (tr *trace) inOrder(t *testing.T, events ...string) {
	t.Helper()
	i := -1
	for _, e := range events {
		j, _ := tr.at(e, i+1)
		if j < 0 {
			t.Fatalf("event %q not found after %v in the trace:%s", e, events[:slices.Index(events, e)], tr)
		}
		i = j
	}
}

// fakeLease is the keeper's lease as the gate sees it, set by the test.
type fakeLease struct {
	tr       *trace
	signing  sync.Mutex
	mu       sync.Mutex
	err      error
	deadline time.Time
	floor    *fencing.Watermark
	calls    int
}

func (f *fakeLease) window() (fencing.Lease, *fencing.Watermark, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return fencing.Lease{Validator: "val-1", Epoch: 7, Holder: "region-a", Sidecar: "a-0"}, f.floor, f.deadline, f.err
}

func (f *fakeLease) windowCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeLease) set(err error, deadline time.Time) {
	f.mu.Lock()
	f.err, f.deadline = err, deadline
	f.mu.Unlock()
}

func (f *fakeLease) lockSigning() {
	f.signing.Lock()
	f.tr.add("lock")
}

func (f *fakeLease) unlockSigning() {
	f.tr.add("unlock")
	f.signing.Unlock()
}

// revoke is K4: the epoch changed; the release waits for the signing lock.
// The returned channel is closed once "released" is in the trace.
func (f *fakeLease) revoke() <-chan struct{} {
	f.set(fencing.Errorf(fencing.CodeStaleEpoch, "epoch 7 of val-1 is being revoked"), time.Now().Add(time.Hour))
	done := make(chan struct{})
	go func() {
		f.signing.Lock()
		f.tr.add("released")
		f.signing.Unlock()
		close(done)
	}()
	return done
}

// fakeLauncher starts fakeProcs.
type fakeLauncher struct {
	tr *trace
	mu sync.Mutex
	n  int
	// unkillable: the validator's group survives SIGKILL (G6).
	unkillable bool
	// dieLater: a validator's group is gone only once this is closed.
	dieLater chan struct{}
	procs    []*fakeProc
	// extendErr: the watchdog's pipe fails.
	extendErr error
}

type fakeProc struct {
	tr    *trace
	l     *fakeLauncher
	n     int
	role  gateRole
	done  chan struct{}
	mu    sync.Mutex
	alive bool
	// killAt: the watchdog's kill time, from the launch and each extend.
	killAt time.Time
}

func (l *fakeLauncher) launch(role gateRole, killAt time.Time) (clientProcess, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	p := &fakeProc{tr: l.tr, l: l, n: l.n, role: role, done: make(chan struct{}), alive: true, killAt: killAt}
	l.procs = append(l.procs, p)
	l.tr.add("start %s", role)
	return p, nil
}

// last returns the last process started in role.
func (l *fakeLauncher) last(role gateRole) *fakeProc {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.procs) - 1; i >= 0; i-- {
		if l.procs[i].role == role {
			return l.procs[i]
		}
	}
	return nil
}

func (p *fakeProc) pid() int                { return 1000 + p.n }
func (p *fakeProc) exited() <-chan struct{} { return p.done }

func (p *fakeProc) signal(sig syscall.Signal) error {
	p.tr.add("%s %s", sigName(sig), p.role)
	if sig == syscall.SIGKILL && p.role == roleValidator && p.l.unkillable {
		return nil
	}
	if sig == syscall.SIGKILL && p.role == roleValidator && p.l.dieLater != nil {
		go func() { <-p.l.dieLater; p.exit() }()
		return nil
	}
	p.exit()
	return nil
}

// exit ends the process as if it exited by itself.
func (p *fakeProc) exit() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.alive {
		p.alive = false
		p.tr.add("gone %s", p.role)
		close(p.done)
	}
}

func (p *fakeProc) release() { p.tr.add("reaped %s", p.role) }

func (p *fakeProc) extend(killAt time.Time) error {
	p.l.mu.Lock()
	err := p.l.extendErr
	p.l.mu.Unlock()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if killAt.After(p.killAt) {
		p.killAt = killAt
	}
	return nil
}

func (p *fakeProc) watchdogAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killAt
}

func (p *fakeProc) gone() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.alive, nil
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

// fakeChain is the client's head; the follower and the validator share it
// (they share the data directory).
type fakeChain struct {
	mu    sync.Mutex
	head  uint64
	polls int
}

func (c *fakeChain) setHead(h uint64) {
	c.mu.Lock()
	c.head = h
	c.mu.Unlock()
}

func (c *fakeChain) blockNumber(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.polls++
	return c.head, nil
}

func (c *fakeChain) latest(ctx context.Context) (uint64, common.Hash, error) {
	h, err := c.blockNumber(ctx)
	return h, common.BigToHash(common.Big1.SetUint64(h + 1000)), err
}

func (c *fakeChain) pollCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.polls
}

// fakeKey is the key file.
type fakeKey struct {
	tr        *trace
	mu        sync.Mutex
	exists    bool
	removeErr error
}

func (k *fakeKey) path() string { return "/run/fence/key" }

func (k *fakeKey) write() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.exists = true
	k.tr.add("key written")
	return nil
}

func (k *fakeKey) remove() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.removeErr != nil {
		return k.removeErr
	}
	if k.exists {
		k.exists = false
		k.tr.add("key removed")
	}
	return nil
}

func (k *fakeKey) present() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.exists
}

// failingJournal refuses every append, as a full or broken disk.
type failingJournal struct{ *LocalJournal }

func (failingJournal) Append(fencing.JournalEntry) error {
	return errors.New("write journal/val-1.jsonl: no space left on device")
}

// metricValue reads a gauge or counter.
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

type gateRig struct {
	t       *testing.T
	tr      *trace
	lease   *fakeLease
	l       *fakeLauncher
	chain   *fakeChain
	key     *fakeKey
	journal *LocalJournal
	g       *Gate
	cancel  context.CancelFunc
	done    chan error
}

type gateRigOptions struct {
	floor      uint64
	head       uint64
	poll       time.Duration // head polls; default 10ms
	deadline   time.Duration // from now; default an hour
	killBefore time.Duration // default 300ms
	journal    func(*LocalJournal) headJournal
	setup      func(*gateRig)
}

// newGateRig runs a gate over fakes until the test ends.
func newGateRig(t *testing.T, o gateRigOptions) *gateRig {
	t.Helper()
	tr := &trace{}
	r := &gateRig{t: t, tr: tr, lease: &fakeLease{tr: tr}, l: &fakeLauncher{tr: tr}, chain: &fakeChain{head: o.head}, key: &fakeKey{tr: tr}, done: make(chan error, 1)}
	if o.deadline == 0 {
		o.deadline = time.Hour
	}
	if o.killBefore == 0 {
		o.killBefore = 300 * time.Millisecond
	}
	r.lease.deadline = time.Now().Add(o.deadline)
	if o.floor > 0 {
		r.lease.floor = &fencing.Watermark{HRS: fencing.HRS{Height: o.floor, Step: fencing.StepBlock}}
	}
	js, err := OpenLocalJournals(t.TempDir(), "a-0", []fencing.ValidatorID{"val-1"})
	if err != nil {
		t.Fatal(err)
	}
	r.journal = js[0]
	t.Cleanup(func() { r.journal.Close() })
	var j headJournal = r.journal
	if o.journal != nil {
		j = o.journal(r.journal)
	}
	if o.setup != nil {
		o.setup(r)
	}
	if o.poll == 0 {
		o.poll = 10 * time.Millisecond
	}
	opts := gateOptions{KillBefore: o.killBefore, Poll: o.poll, Check: 2 * time.Millisecond, StopTimeout: 200 * time.Millisecond, KillWait: 300 * time.Millisecond, HeadStale: 5 * time.Second, RPCTimeout: 100 * time.Millisecond}
	if r.g, err = newGate("val-1", "a-0", r.lease, j, r.chain, r.l, r.key, opts, prometheus.NewRegistry(), hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("gate did not stop within 10s of its context ending")
		}
		if t.Failed() {
			t.Logf("trace:%s", tr)
		}
	})
	return r
}

// state is the gate's current state as its metric says.
func (r *gateRig) state() GateState {
	for i, name := range gateStateNames {
		if metricValue(r.g.m.state.WithLabelValues(name)) == 1 {
			return GateState(i)
		}
	}
	return -1
}

func (r *gateRig) waitState(s GateState) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("gate state %s", s), func() bool { return r.state() == s })
}

func (r *gateRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("waited 10s for %s; gate state %s; trace:%s", what, r.state(), r.tr)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitRun waits for Run to return.
func (r *gateRig) waitRun() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		r.t.Fatalf("Run did not return within 10s; trace:%s", r.tr)
		return nil
	}
}

// toValidator brings the gate from follower to validator (G1, G2).
func (r *gateRig) toValidator() {
	r.t.Helper()
	r.waitState(GateValidator)
}

func (r *gateRig) kills(reason string) float64 {
	return metricValue(r.g.m.kills.WithLabelValues(reason))
}

// G1, G2: the key is written and the validator started only once the
// follower's head reached the floor the lease came with, after the follower
// stopped.
func TestGateStartsTheValidatorOnlyAtTheFloor(t *testing.T) {
	r := newGateRig(t, gateRigOptions{floor: 10, head: 5})
	r.waitState(GateCatchingUp)
	polls := r.chain.pollCount()
	r.waitFor("three more head polls below the floor", func() bool { return r.chain.pollCount() >= polls+3 })
	if r.key.present() || r.l.last(roleValidator) != nil {
		t.Fatalf("head 5 below floor 10: key written %v, validator started %v, want neither; trace:%s", r.key.present(), r.l.last(roleValidator) != nil, r.tr)
	}
	if got := metricValue(r.g.m.floor); got != 10 {
		t.Errorf("fencing_sidecar_gate_floor = %v, want 10", got)
	}
	r.chain.setHead(10)
	r.toValidator()
	r.tr.inOrder(t, "start follower", "lock", "SIGTERM follower", "gone follower", "key written", "start validator")
}

// G4, G5: on revoke the validator's group is killed and gone and the key
// file removed before the signing lock lets K4 release the lease; the last
// head poll before SIGKILL is in the reported watermark.
func TestGateKillsBeforeTheLeaseIsReleased(t *testing.T) {
	// No regular head poll in the test's time: only the last poll before
	// SIGKILL can journal head 8.
	r := newGateRig(t, gateRigOptions{head: 3, poll: time.Hour})
	r.toValidator()
	r.chain.setHead(8)
	mark := r.tr.len()
	released := r.lease.revoke()
	<-released
	r.tr.inOrder(t, "SIGKILL validator", "gone validator", "reaped validator", "key removed", "unlock", "released")
	if i, _ := r.tr.at("SIGKILL validator", mark); i < 0 {
		t.Fatal("no SIGKILL after the revoke")
	}
	if w := r.journal.Watermark(); w == nil || w.Height != 8 {
		t.Errorf("watermark after the revoke = %s, want 8/0/block (the last poll before the kill)", wmText(w))
	}
	if got := r.kills("revoked"); got != 1 {
		t.Errorf(`fencing_sidecar_gate_kills_total{reason="revoked"} = %v, want 1`, got)
	}
	r.waitState(GateFollower)
	r.waitFor("the follower started again", func() bool { i, _ := r.tr.at("start follower", mark); return i >= 0 })
	if r.key.present() {
		t.Error("key file present after the revoke")
	}
}

// G4 at the kill time: with no renewal, the validator is killed
// --gate-kill-before ahead of the local deadline, while the lease is still
// valid, and not started again.
func TestGateKillsBeforeTheDeadline(t *testing.T) {
	const killBefore = 2 * time.Second
	r := newGateRig(t, gateRigOptions{deadline: 4 * time.Second, killBefore: killBefore})
	deadline := r.lease.deadline
	r.toValidator()
	r.waitFor("the kill", func() bool { i, _ := r.tr.at("key removed", 0); return i >= 0 })
	_, killed := r.tr.at("SIGKILL validator", 0)
	if !killed.Before(deadline) {
		t.Fatalf("validator killed at %s, %s after the deadline", killed.Format("15:04:05.000"), killed.Sub(deadline))
	}
	t.Logf("killed %s before the deadline (--gate-kill-before %s)", deadline.Sub(killed).Round(time.Millisecond), killBefore)
	if got := r.kills("deadline"); got != 1 {
		t.Errorf(`fencing_sidecar_gate_kills_total{reason="deadline"} = %v, want 1`, got)
	}
	r.waitState(GateFollower)
	polls, calls := r.chain.pollCount(), r.lease.windowCalls()
	r.waitFor("ten more lease checks", func() bool { return r.lease.windowCalls() >= calls+10 })
	if r.state() != GateFollower || r.l.last(roleValidator).n != 2 || r.chain.pollCount() != polls {
		t.Errorf("after the kill at the deadline: state %s, want follower and no catch-up", r.state())
	}
}

// The validator's watchdog gets the kill time deadline - kill-before/2 at
// the start and after each renewal that moved the deadline (after the
// gate's own kill time, before the deadline); a watchdog the gate cannot
// reach is a reason to kill.
func TestGateMovesTheWatchdogWithTheDeadline(t *testing.T) {
	const killBefore = 300 * time.Millisecond
	r := newGateRig(t, gateRigOptions{killBefore: killBefore})
	first := r.lease.deadline
	r.toValidator()
	v := r.l.last(roleValidator)
	if got, want := v.watchdogAt(), first.Add(-killBefore/2); !got.Equal(want) {
		t.Fatalf("watchdog kill time at the start = %s, want deadline - kill-before/2 = %s", got, want)
	}
	renewed := first.Add(10 * time.Second)
	r.lease.set(nil, renewed)
	r.waitFor("the watchdog's kill time moved with the renewal", func() bool { return v.watchdogAt().Equal(renewed.Add(-killBefore / 2)) })
	if r.state() != GateValidator {
		t.Fatalf("state %s after a renewal, want validator", r.state())
	}
	r.l.mu.Lock()
	r.l.extendErr = errors.New("write |1: broken pipe")
	r.l.mu.Unlock()
	r.lease.set(nil, renewed.Add(10*time.Second))
	r.waitFor("the kill", func() bool { i, _ := r.tr.at("key removed", 0); return i >= 0 })
	if got := r.kills("watchdog"); got != 1 {
		t.Errorf(`fencing_sidecar_gate_kills_total{reason="watchdog"} = %v, want 1`, got)
	}
}

// G4 on K5: a failed renewal (lease mode suspends signing) kills the
// validator at once; once a renewal succeeds again, the gate catches up and
// starts it again.
func TestGateKillsAtTheFirstFailedRenewal(t *testing.T) {
	r := newGateRig(t, gateRigOptions{head: 4})
	r.toValidator()
	r.lease.set(fencing.Errorf(fencing.CodeFenced, "lease mode: signing for val-1 is suspended since its last renewal failed"), time.Now().Add(time.Hour))
	r.waitFor("the kill", func() bool { i, _ := r.tr.at("key removed", 0); return i >= 0 })
	if got := r.kills("lease"); got != 1 {
		t.Errorf(`fencing_sidecar_gate_kills_total{reason="lease"} = %v, want 1`, got)
	}
	r.waitState(GateFollower)
	mark := r.tr.len()
	r.lease.set(nil, time.Now().Add(time.Hour))
	r.toValidator()
	r.tr.inOrder(t, "SIGKILL validator", "key removed", "unlock", "start follower", "lock", "key written", "start validator")
	if i, _ := r.tr.at("start validator", mark); i < 0 {
		t.Error("the validator did not start again after the renewal succeeded")
	}
}

// G6: a group that survives SIGKILL, or a key file that cannot be removed,
// leaves the gate failed: the lease is never reported released, no process
// starts again, Run returns ErrGateFailed.
func TestGateFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*gateRig)
	}{
		{"group survives SIGKILL", func(r *gateRig) { r.l.unkillable = true }},
		{"key file stays", func(r *gateRig) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newGateRig(t, gateRigOptions{head: 1, setup: tc.setup})
			r.toValidator()
			if tc.name == "key file stays" {
				r.key.mu.Lock()
				r.key.removeErr = errors.New("unlinkat /run/fence/key: read-only file system")
				r.key.mu.Unlock()
			}
			mark := r.tr.len()
			released := r.lease.revoke()
			if err := r.waitRun(); !errors.Is(err, ErrGateFailed) {
				t.Fatalf("Run() = %v, want ErrGateFailed", err)
			}
			if r.state() != GateFailed {
				t.Errorf("state %s, want failed", r.state())
			}
			select {
			case <-released:
				t.Fatal("the lease was released by a failed gate")
			default:
			}
			if i, _ := r.tr.at("unlock", mark); i >= 0 {
				t.Error("a failed gate released the signing lock")
			}
			for _, ev := range []string{"start follower", "start validator", "key written"} {
				if i, _ := r.tr.at(ev, mark); i >= 0 {
					t.Errorf("%q after the failure", ev)
				}
			}
		})
	}
}

// A validator that exits by itself is reaped (G4, G5) and started again
// only through the catch-up, whose floor is now its own journaled head.
func TestGateRestartsACrashedValidatorAboveItsOwnHead(t *testing.T) {
	r := newGateRig(t, gateRigOptions{floor: 3, head: 3})
	r.toValidator()
	r.chain.setHead(9)
	r.waitFor("head 9 journaled", func() bool { w := r.journal.Watermark(); return w != nil && w.Height == 9 })
	mark := r.tr.len()
	r.chain.setHead(6) // the client comes back from older state
	r.l.last(roleValidator).exit()
	r.waitState(GateCatchingUp)
	if got := metricValue(r.g.m.floor); got != 9 {
		t.Fatalf("floor after the crash = %v, want 9 (its own journaled head, above the grant's 3)", got)
	}
	polls := r.chain.pollCount()
	r.waitFor("three head polls below the floor", func() bool { return r.chain.pollCount() >= polls+3 })
	if i, _ := r.tr.at("start validator", mark); i >= 0 || r.key.present() {
		t.Fatalf("validator restarted at head 6 below its own head 9; trace:%s", r.tr)
	}
	r.chain.setHead(9)
	r.toValidator()
	r.tr.inOrder(t, "gone validator", "key removed", "unlock", "start follower", "lock", "key written", "start validator")
	if got := r.kills("exited"); got != 1 {
		t.Errorf(`fencing_sidecar_gate_kills_total{reason="exited"} = %v, want 1`, got)
	}
}

// A head below the floor (the client restarted from older state) is a
// doubt: the validator is killed.
func TestGateKillsAValidatorBelowTheFloor(t *testing.T) {
	r := newGateRig(t, gateRigOptions{floor: 10, head: 10})
	r.toValidator()
	r.chain.setHead(4)
	r.waitFor("the kill", func() bool { i, _ := r.tr.at("key removed", 0); return i >= 0 })
	if got := r.kills("head-below-floor"); got != 1 {
		t.Errorf(`fencing_sidecar_gate_kills_total{reason="head-below-floor"} = %v, want 1`, got)
	}
	r.waitState(GateCatchingUp)
}

// A local journal that cannot record a head kills the validator, releases
// the lock once it is gone, and ends Run with the error: no validator
// starts before the sidecar restarts.
func TestGateJournalErrorKills(t *testing.T) {
	r := newGateRig(t, gateRigOptions{head: 2, journal: func(j *LocalJournal) headJournal { return failingJournal{j} }})
	err := r.waitRun()
	if err == nil || errors.Is(err, ErrGateFailed) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Run() = %v, want the journal error (not ErrGateFailed)", err)
	}
	r.tr.inOrder(t, "start validator", "SIGKILL validator", "gone validator", "key removed", "unlock")
	if !r.lease.signing.TryLock() {
		t.Fatal("signing lock still held after a clean kill")
	}
	r.lease.signing.Unlock()
	if got := r.kills("journal"); got != 1 {
		t.Errorf(`fencing_sidecar_gate_kills_total{reason="journal"} = %v, want 1`, got)
	}
}

// A key file left by an earlier run is removed before anything starts;
// one that cannot be removed stops the gate before anything starts.
func TestGateRemovesALeftoverKeyFirst(t *testing.T) {
	t.Run("removed", func(t *testing.T) {
		r := newGateRig(t, gateRigOptions{deadline: -time.Second, setup: func(r *gateRig) { r.key.exists = true }})
		r.waitFor("the follower", func() bool { i, _ := r.tr.at("start follower", 0); return i >= 0 })
		r.tr.inOrder(t, "key removed", "start follower")
	})
	t.Run("stays", func(t *testing.T) {
		r := newGateRig(t, gateRigOptions{setup: func(r *gateRig) {
			r.key.exists, r.key.removeErr = true, errors.New("unlinkat /run/fence/key: permission denied")
		}})
		if err := r.waitRun(); !errors.Is(err, ErrGateFailed) {
			t.Fatalf("Run() = %v, want ErrGateFailed", err)
		}
		if r.tr.len() != 0 {
			t.Errorf("something happened before the failure:%s", r.tr)
		}
	})
}

// Stopping the sidecar kills a validator (and then releases) or stops a
// follower gracefully.
func TestGateStops(t *testing.T) {
	r := newGateRig(t, gateRigOptions{head: 1})
	r.toValidator()
	r.cancel()
	if err := r.waitRun(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	r.tr.inOrder(t, "start validator", "SIGKILL validator", "gone validator", "key removed", "unlock")
	if i, _ := r.tr.at("start follower", 3); i >= 0 {
		t.Errorf("a follower was started while stopping:%s", r.tr)
	}

	f := newGateRig(t, gateRigOptions{deadline: -time.Second})
	f.waitFor("the follower", func() bool { i, _ := f.tr.at("start follower", 0); return i >= 0 })
	f.cancel()
	if err := f.waitRun(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	f.tr.inOrder(t, "start follower", "SIGTERM follower", "gone follower")
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"geth --datadir /data  --mine", []string{"geth", "--datadir", "/data", "--mine"}, false},
		{"  ", nil, false},
		{`["besu", "--identity", "node a", ""]`, []string{"besu", "--identity", "node a", ""}, false},
		{`["besu", 1]`, nil, true},
		{`["besu"] x`, nil, true},
		{`["be\u0000su"]`, nil, true},
		{`[`, nil, true},
	} {
		got, err := parseCommand(tc.in)
		if (err != nil) != tc.err || (!tc.err && !slices.Equal(got, tc.want)) {
			t.Errorf("parseCommand(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// FuzzGateCommand: parseCommand never panics; white-space words never
// contain white space and parse again to themselves; a JSON array parses to
// what encoding/json reads.
func FuzzGateCommand(f *testing.F) {
	for _, s := range []string{"geth --datadir /data", `["besu","--identity","a b"]`, `[`, `["a"] ["b"]`, "\t\n", `["\u0000"]`, `[1]`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := parseCommand(s)
		if err != nil {
			if !strings.HasPrefix(strings.TrimSpace(s), "[") {
				t.Fatalf("parseCommand(%q) = %v for words", s, err)
			}
			return
		}
		if strings.HasPrefix(strings.TrimSpace(s), "[") {
			for _, w := range words {
				if strings.ContainsRune(w, 0) {
					t.Fatalf("parseCommand(%q) kept a NUL byte", s)
				}
			}
			return
		}
		again, err := parseCommand(strings.Join(words, " "))
		if err != nil || !slices.Equal(again, words) {
			t.Fatalf("parseCommand(%q) = %q, which parses again to %q, %v", s, words, again, err)
		}
		for _, w := range words {
			if w == "" || strings.ContainsFunc(w, func(r rune) bool { return strings.ContainsRune(" \t\n\v\f\r\u0085\u00a0", r) }) {
				t.Fatalf("parseCommand(%q) word %q is empty or has white space", s, w)
			}
		}
	})
}

// gateOver builds a gate for s's validator with fakes for the process, the
// chain and the key file, and the real keeper and local journal.
func gateOver(t *testing.T, s *Signer, tr *trace, l *fakeLauncher, chain *fakeChain) (*Gate, *fakeKey) {
	t.Helper()
	v := s.list[0]
	key := &fakeKey{tr: tr}
	opts := gateOptions{KillBefore: 500 * time.Millisecond, Poll: 10 * time.Millisecond, Check: 2 * time.Millisecond, StopTimeout: time.Second, KillWait: 10 * time.Second, HeadStale: 5 * time.Second, RPCTimeout: 100 * time.Millisecond}
	g, err := newGate(v.id, s.sidecar, keeperLease{v.keeper}, v.journal, chain, l, key, opts, prometheus.NewRegistry(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gate Run() = %v", err)
		}
	})
	return g, key
}

// The gate with the real lease keeper and a real coordinator on etcd: a
// bump is granted to region-b only after region-a's validator process is
// gone (its release waits for the gate), region-b's grant carries the head
// region-a reached, and region-b's gate writes its key only once its own
// head reached it.
func TestGateHandsOverThroughARealCoordinator(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	keyPath, id := testKey(t)
	c.AddValidator(t, id, "region-a")
	aTrace, bTrace := &trace{}, &trace{}
	la := &fakeLauncher{tr: aTrace, dieLater: make(chan struct{})}
	lb := &fakeLauncher{tr: bTrace}
	chainA, chainB := &fakeChain{head: 0}, &fakeChain{head: 0}
	sa := startSigner(t, c, "region-a", "sidecar-a", ModeLease, keyPath)
	sb := startSigner(t, c, "region-b", "sidecar-b", ModeLease, keyPath)
	ga, _ := gateOver(t, sa, aTrace, la, chainA)
	gb, keyB := gateOver(t, sb, bTrace, lb, chainB)
	waitGate := func(g *Gate, s GateState) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for metricValue(g.m.state.WithLabelValues(s.String())) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("gate of %s not %s within 20s; A:%s\nB:%s", g.sidecar, s, aTrace, bTrace)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitGate(ga, GateValidator)
	chainA.setHead(20)
	chainB.setHead(12) // region-b's follower lags
	for w := sa.list[0].journal.Watermark(); w == nil || w.Height != 20; w = sa.list[0].journal.Watermark() {
		time.Sleep(2 * time.Millisecond)
	}

	bumped := make(chan error, 1)
	go func() {
		_, err := c.Client.Bump(context.Background(), fencing.ValidatorID(id), api.BumpRequest{To: "region-b", Operator: "test", Reason: "test", Wait: api.Duration{Duration: 30 * time.Second}})
		bumped <- err
	}()
	for i, _ := aTrace.at("SIGKILL validator", 0); i < 0; i, _ = aTrace.at("SIGKILL validator", 0) {
		time.Sleep(time.Millisecond)
	}
	// Region-a's validator was sent SIGKILL but its group is not gone: the
	// lease is not released, so the epoch is not granted to region-b.
	st, err := c.Client.Status(context.Background(), fencing.ValidatorID(id))
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch.State != fencing.StateRevoking || len(st.Leases) != 1 {
		t.Fatalf("while region-a's client is not gone: epoch %+v with %d leases, want revoking with region-a's lease", st.Epoch, len(st.Leases))
	}
	close(la.dieLater)
	if err := <-bumped; err != nil {
		t.Fatal(err)
	}
	_, gone := aTrace.at("gone validator", 0)
	_, removed := aTrace.at("key removed", 0)
	waitGate(gb, GateCatchingUp)
	if got := metricValue(gb.m.floor); got != 20 {
		t.Fatalf("region-b's floor = %v, want 20 (region-a's last head, reported with its release)", got)
	}
	for calls := chainB.pollCount(); chainB.pollCount() < calls+3; {
		time.Sleep(time.Millisecond)
	}
	if keyB.present() || lb.last(roleValidator) != nil {
		t.Fatalf("region-b released its key at head 12 below the floor 20:%s", bTrace)
	}
	chainB.setHead(20)
	waitGate(gb, GateValidator)
	_, written := bTrace.at("key written", 0)
	_, startedB := bTrace.at("start validator", 0)
	if !gone.Before(written) || !removed.Before(written) {
		t.Errorf("region-b wrote its key at %s, region-a's group was gone at %s and its key removed at %s", written.Format("15:04:05.000"), gone.Format("15:04:05.000"), removed.Format("15:04:05.000"))
	}
	t.Logf("region-a gone %s; region-b's key written %s later, validator started %s later", gone.Format("15:04:05.000"), written.Sub(gone).Round(time.Millisecond), startedB.Sub(gone).Round(time.Millisecond))
}

// gateConfig is a valid gate-mode configuration.
func gateConfig(t *testing.T) Config {
	key, _ := testKey(t)
	return Config{
		Coordinator: []string{"http://127.0.0.1:7600"}, Holder: "region-a", Name: "a-0", Keys: []string{key},
		Listen: "127.0.0.1:7700", StateDir: "/var/lib/fence", Mode: string(ModeLease), LogLevel: "info",
		LeaseTTL: 15 * time.Second, SafetyMargin: 2 * time.Second,
		GateExec: "besu --data-path=/data", GateKeyFile: "/run/fence/key", GateKeyFormat: KeyFormatHex, GateRPC: "http://127.0.0.1:8545",
		GateKillBefore: time.Second, GatePoll: 500 * time.Millisecond, GateStopTimeout: time.Minute, GateHeadStale: time.Minute,
	}
}

func TestGateConfigProblems(t *testing.T) {
	if err := func() error { c := gateConfig(t); return c.Validate() }(); err != nil {
		t.Fatalf("Validate() of a valid gate configuration = %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"strict mode", func(c *Config) { c.Mode = string(ModeStrict) }, []string{"--gate-exec needs --mode lease"}},
		{"two keys", func(c *Config) { c.Keys = append(c.Keys, c.Keys[0]) }, []string{"one --key (got 2)"}},
		{"bare digest", func(c *Config) { c.BareDigest = true }, []string{"--bare-digest and --gate-exec"}},
		{"relative key file", func(c *Config) { c.GateKeyFile = "key" }, []string{`--gate-key-file "key" must be an absolute path`}},
		{"keystore without password", func(c *Config) { c.GateKeyFormat = KeyFormatKeystore }, []string{"needs --gate-password-file"}},
		{"unknown format", func(c *Config) { c.GateKeyFormat = "pem" }, []string{`--gate-key-format "pem" must be hex`}},
		{"no rpc", func(c *Config) { c.GateRPC = "" }, []string{"--gate-rpc"}},
		{"bad exec", func(c *Config) { c.GateExec = `["besu"` }, []string{"--gate-exec: not a JSON array"}},
		{"empty exec array", func(c *Config) { c.GateExec = `[]` }, []string{"--gate-exec names no program"}},
		{"kill before too long", func(c *Config) { c.GateKillBefore = 8 * time.Second }, []string{"plus --gate-kill-before (8s)"}},
		{"head stale below poll", func(c *Config) { c.GateHeadStale = 100 * time.Millisecond }, []string{"--gate-head-stale (100ms) above --gate-poll"}},
		{"gate flags without exec", func(c *Config) { c.GateExec = "" }, []string{"--gate-key-file, --gate-rpc only apply with --gate-exec"}},
		{"everything at once", func(c *Config) { c.Mode, c.GateKeyFormat, c.GateRPC = "strict", "pem", "ftp://x" }, []string{"--mode lease", "--gate-key-format", "--gate-rpc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := gateConfig(t)
			tc.change(&c)
			err := c.Validate()
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// The Besu example chart (charts/examples/besu-validator, as rendered in
// docs/examples/besu-validator-region-a.yaml, which the chart's tests keep
// current) gives fence-sidecar a configuration it accepts, with Besu's
// command line as the gate's.
func TestBesuGateExampleIsValid(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "examples", "besu-validator-region-a.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var o struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Command []string `json:"command"`
							Args    []string `json:"args"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if o.Kind == "StatefulSet" {
			c := o.Spec.Template.Spec.Containers[0]
			if len(c.Command) != 1 || filepath.Base(c.Command[0]) != "fence-sidecar" {
				t.Fatalf("the container's command is %q, want fence-sidecar as the entrypoint", c.Command)
			}
			args = c.Args
		}
	}
	// The key Secret's path, here a hex key file of the test (Validate reads
	// it, without a password), and the Pod name the kubelet expands.
	key, _ := testKey(t)
	var local []string
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--key="):
			a = "--key=" + key
		case strings.HasPrefix(a, "--password-file="):
			continue
		case a == "--name=$(POD_NAME)":
			a = "--name=besu-validator-1-0"
		}
		local = append(local, a)
	}
	args = local
	if len(args) == 0 {
		t.Fatal("no StatefulSet with a container in the example")
	}
	var cfg Config
	fs := flag.NewFlagSet("fence-sidecar", flag.ContinueOnError)
	cfg.Flags(fs)
	if _, err := flagenv.Parse(fs, args, nil); err != nil {
		t.Fatalf("the example's arguments do not parse: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the example's configuration is refused: %v", err)
	}
	argv, _ := parseCommand(cfg.GateExec)
	if len(argv) < 2 || argv[0] != "/opt/besu/bin/besu" || cfg.GateKeyFormat != KeyFormatHex || !strings.HasSuffix(cfg.GateValidatorArgs, "="+cfg.GateKeyFile) {
		t.Errorf("gate: exec %q, format %s, validator args %q, key file %s; want Besu reading the hex key file the gate writes", argv, cfg.GateKeyFormat, cfg.GateValidatorArgs, cfg.GateKeyFile)
	}
}

// TestGateMetricsAreDocumented: the gate registers exactly the
// fencing_sidecar_gate_ series the package doc lists (the chart's tests
// check the rest of the list against a signing sidecar).
func TestGateMetricsAreDocumented(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newGateMetrics(reg, "0x0000000000000000000000000000000000000001")
	if err != nil {
		t.Fatal(err)
	}
	m.setState(GateValidator)
	m.kills.WithLabelValues("exited").Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	b, err := os.ReadFile("config.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "//\tfencing_sidecar_gate_"); ok {
			name, _, _ = strings.Cut(strings.Fields(name)[0], "{")
			doc = append(doc, "fencing_sidecar_gate_"+name)
		}
	}
	slices.Sort(got)
	slices.Sort(doc)
	if len(doc) == 0 || !slices.Equal(got, doc) {
		t.Errorf("the gate registers %v, config.go's package doc lists %v", got, doc)
	}
}
