package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Gate fences a validator client that signs inside its own process with the
// validator key and offers no signing seam (Besu's node key, a geth
// keystore, GoQuorum's QBFT): it fences the process instead of each
// signature. The client runs as a child of the sidecar in a process group of
// its own, either as a follower (the standby arguments: no key, no sealing,
// a node identity of its own) or as the validator (the key file written,
// mode 0400, on a memory-backed volume). It is the validator only while the
// lease keeper holds a usable lease, and only after its chain head reached
// the floor: the quorum watermark the lease came with or the local one,
// whichever is higher. docs/gate.md says what this guarantees and what not.
//
//	| #  | from        | event                                                     | to          |
//	|----|-------------|-----------------------------------------------------------|-------------|
//	| G1 | follower    | lease usable: held, not revoked or suspended, kill time ahead | catching-up: the gate takes the keeper's signing lock |
//	| G2 | catching-up | follower's head (eth_blockNumber) >= floor                | validator: follower stopped (SIGTERM, then SIGKILL) and gone, key file written, client started with the validator arguments |
//	| G3 | catching-up | lease not usable (or G2 failed before the start)          | follower: key file removed if written, signing lock released |
//	| G4 | validator   | revoke or refused renewal (K3, K4), failed renewal (K5), kill time (deadline - kill-before), local journal error, head below the floor, no head for head-stale, client exited, the watchdog not reachable, sidecar stopping | killing: a last head poll if time allows, SIGKILL to the process group |
//	| G5 | killing     | process group gone and key file removed                   | follower: signing lock released, so K4 may report the lease released; follower started |
//	| G6 | killing     | group not gone within kill-wait, or key file not removable | failed: the signing lock is never released and the key never written again; Run returns ErrGateFailed |
//
// The signing lock is the one every sidecar signature holds
// (LeaseKeeper.signing): K4 and K3 take it before they release the lease, so
// the coordinator hears "released" only after G5, when the client is dead
// and the key file gone. In the failed state the lease is never released: it
// expires after its TTL, and the sidecar exits (in a container whose
// entrypoint it is, that kills every process left in it).
//
// The validator runs under a watchdog, its parent and the leader of its
// process group (gatewatchdog_linux.go): it kills the group by itself at
// deadline - kill-before/2 unless the gate moved that time later after a
// renewal, so a sidecar that is stopped or wedged still cannot leave the
// client signing past its lease.
//
// While the client is the validator, the gate polls its head
// (eth_getBlockByNumber "latest") and appends each higher head to the local
// journal as (height, 0, block) with the block hash: that local watermark is
// what the keeper reports with each renewal and the release (lease mode), so
// the next holder's grant carries the height this one reached.
type Gate struct {
	id      fencing.ValidatorID
	sidecar string
	lease   gateLease
	journal headJournal
	chain   headSource
	launch  launcher
	key     keyRelease
	o       gateOptions
	lg      hclog.Logger
	m       *gateMetrics

	// Run's goroutine only.
	state     GateState
	proc      clientProcess
	procStart time.Time
	lease0    fencing.Lease // the lease G1 took the signing lock under
	floor     uint64        // height the follower must reach (G2) and the validator must not go below
	notBefore time.Time     // no G1 before this (a validator that exited soon after its start)
	restarts  *backoff      // follower restarts
	crashes   *backoff      // validator exits
}

// GateState is where the gate's state machine is.
type GateState int

// The gate's states (Gate).
const (
	GateFollower GateState = iota
	GateCatchingUp
	GateValidator
	GateKilling
	GateFailed
)

var gateStateNames = [...]string{"follower", "catching-up", "validator", "killing", "failed"}

func (s GateState) String() string {
	if int(s) < len(gateStateNames) {
		return gateStateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ErrGateFailed: the gate could not confirm that the validator client's
// process group is gone, or could not remove the key file (G6).
var ErrGateFailed = errors.New("process gate failed closed")

// gateRole is the command line the client runs with.
type gateRole string

const (
	roleFollower  gateRole = "follower"
	roleValidator gateRole = "validator"
)

// gateLease is the lease as the gate uses it; keeperLease adapts a
// LeaseKeeper.
type gateLease interface {
	// window returns the lease, the quorum watermark it came with and its
	// local deadline while it may be used, or why not.
	window() (fencing.Lease, *fencing.Watermark, time.Time, error)
	lockSigning()
	unlockSigning()
}

// headJournal records the heads the validator client reached; the local
// journal is one.
type headJournal interface {
	Watermark() *fencing.Watermark
	Append(fencing.JournalEntry) error
}

// headSource is the client's JSON-RPC.
type headSource interface {
	blockNumber(ctx context.Context) (uint64, error)
	latest(ctx context.Context) (uint64, common.Hash, error)
}

// launcher starts the client in a process group of its own; a validator
// under a watchdog that kills the group at killAt unless extended.
type launcher interface {
	launch(role gateRole, killAt time.Time) (clientProcess, error)
}

// clientProcess is one run of the client: its process group.
type clientProcess interface {
	pid() int
	// exited is closed when the group's leader exited.
	exited() <-chan struct{}
	// signal sends sig to every process of the group.
	signal(sig syscall.Signal) error
	// extend moves the watchdog's kill time later (a validator's).
	extend(killAt time.Time) error
	// gone reports whether no process of the group is left that can run.
	gone() (bool, error)
	// release lets the group's id go once it is gone; the group is never
	// signalled after it.
	release()
}

// keyRelease writes and removes the key file the client reads.
type keyRelease interface {
	write() error
	// remove removes the file and confirms it is absent (no error when it
	// was never written).
	remove() error
	path() string
}

var (
	_ gateLease   = keeperLease{}
	_ headJournal = (*LocalJournal)(nil)
)

// keeperLease is a LeaseKeeper as the gate sees it.
type keeperLease struct{ k *LeaseKeeper }

// window reads the deadline before current(): a renewal in between only
// moves the deadline later, so the one returned is never later than the
// lease's (K2 extends it; a lease lost and acquired again has a later one).
func (a keeperLease) window() (fencing.Lease, *fencing.Watermark, time.Time, error) {
	a.k.mu.Lock()
	deadline := a.k.deadline
	a.k.mu.Unlock()
	l, floor, err := a.k.current()
	return l, floor, deadline, err
}

func (a keeperLease) lockSigning()   { a.k.signing.Lock() }
func (a keeperLease) unlockSigning() { a.k.signing.Unlock() }

// gateOptions are the gate's timings.
type gateOptions struct {
	KillBefore  time.Duration // kill this long before the local deadline
	Poll        time.Duration // head polls
	Check       time.Duration // lease checks (in process, cheap)
	StopTimeout time.Duration // a follower's graceful stop before SIGKILL
	KillWait    time.Duration // after SIGKILL, for the group to be gone (G6 after)
	HeadStale   time.Duration // a validator without a head answer this long is killed
	RPCTimeout  time.Duration // one head request
}

func (o gateOptions) withDefaults() gateOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.KillBefore, time.Second)
	def(&o.Poll, 500*time.Millisecond)
	def(&o.Check, 20*time.Millisecond)
	def(&o.StopTimeout, time.Minute)
	def(&o.KillWait, 10*time.Second)
	def(&o.HeadStale, time.Minute)
	def(&o.RPCTimeout, 2*time.Second)
	return o
}

// newGate builds a gate for validator id of sidecar from its parts.
func newGate(id fencing.ValidatorID, sidecar string, lease gateLease, j headJournal, chain headSource, l launcher, key keyRelease, o gateOptions, reg prometheus.Registerer, lg hclog.Logger) (*Gate, error) {
	m, err := newGateMetrics(reg, id)
	if err != nil {
		return nil, err
	}
	return &Gate{
		id: id, sidecar: sidecar, lease: lease, journal: j, chain: chain, launch: l, key: key, o: o.withDefaults(),
		lg: lg.With("validator", id), m: m,
		restarts: newBackoff(time.Second, 30*time.Second), crashes: newBackoff(time.Second, 30*time.Second),
	}, nil
}

// Run drives the gate until ctx ends: it kills a validator client (G4, G5)
// or stops a follower, and returns nil once no process is left. It returns
// ErrGateFailed (G6) without releasing the signing lock, and any other error
// (a key file it cannot remove at start, a local journal that failed) after
// the client is gone and the lock released.
func (g *Gate) Run(ctx context.Context) error {
	// A key file left by an earlier run (the sidecar was killed) goes
	// before anything starts; one that cannot be removed stops the start.
	if err := g.key.remove(); err != nil {
		g.to(GateFailed)
		return fmt.Errorf("%w: the key file %s left by an earlier run cannot be removed: %v", ErrGateFailed, g.key.path(), err)
	}
	g.to(GateFollower)
	for {
		var err error
		switch g.state {
		case GateFollower:
			err = g.follow(ctx)
		case GateCatchingUp:
			err = g.catchUp(ctx)
		case GateValidator:
			err = g.validate(ctx)
		}
		if err != nil || ctx.Err() != nil {
			if g.state != GateFailed {
				g.stopFollower()
			}
			return err
		}
	}
}

func (g *Gate) to(s GateState) {
	g.lg.Debug("gate state", "from", g.state, "to", s)
	g.state = s
	g.m.setState(s)
}

// usable returns the lease and the time to kill a validator by, or false.
func (g *Gate) usable() (fencing.Lease, *fencing.Watermark, time.Time, error) {
	l, floor, deadline, err := g.lease.window()
	if err != nil {
		return l, nil, time.Time{}, err
	}
	killAt := deadline.Add(-g.o.KillBefore)
	if !time.Now().Before(killAt) {
		return l, nil, killAt, fencing.Errorf(fencing.CodeFenced, "less than --gate-kill-before (%s) left before the lease deadline", g.o.KillBefore)
	}
	return l, floor, killAt, nil
}

// follow keeps a follower running and waits for a usable lease (G1).
func (g *Gate) follow(ctx context.Context) error {
	tick := time.NewTicker(g.o.Check)
	defer tick.Stop()
	for {
		if err := g.ensureFollower(ctx); err != nil {
			return err
		}
		if time.Now().After(g.notBefore) {
			if _, _, _, err := g.usable(); err == nil {
				// G1: under the signing lock, as a signature: K4 now waits
				// for this gate before it releases the lease.
				g.lease.lockSigning()
				l, floor, _, err := g.usable()
				if err != nil {
					g.lease.unlockSigning()
					continue
				}
				g.lease0, g.floor = l, floorHeight(floor, g.journal.Watermark())
				g.m.floor.Set(float64(g.floor))
				g.lg.Info("lease usable: catching up before the key is released", "epoch", l.Epoch, "floor", g.floor)
				g.to(GateCatchingUp)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// floorHeight is the height a new validator run must start at: the
// quorum watermark the lease came with, or the local one if higher.
func floorHeight(ws ...*fencing.Watermark) uint64 {
	var h uint64
	for _, w := range ws {
		if w != nil {
			h = max(h, w.Height)
		}
	}
	return h
}

// ensureFollower starts the follower if none runs, and again (with a
// backoff) after it exited.
func (g *Gate) ensureFollower(ctx context.Context) error {
	if g.proc != nil {
		select {
		case <-g.proc.exited():
			g.lg.Warn("follower exited; starting it again", "pid", g.proc.pid())
			if time.Since(g.procStart) > g.restarts.max {
				g.restarts.reset()
			}
			if err := g.reap(syscall.SIGKILL); err != nil {
				return err
			}
			g.restarts.wait(ctx)
		default:
			return nil
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	p, err := g.launch.launch(roleFollower, time.Time{})
	if err != nil {
		g.lg.Error("starting the follower failed; trying again", "error", err)
		g.restarts.wait(ctx)
		return nil
	}
	g.proc, g.procStart = p, time.Now()
	g.lg.Info("client started", "role", roleFollower, "pid", p.pid())
	return nil
}

// catchUp waits until the follower's head reached the floor (G2) while the
// lease stays usable (G3 otherwise).
func (g *Gate) catchUp(ctx context.Context) error {
	check := time.NewTicker(g.o.Check)
	defer check.Stop()
	poll := time.NewTimer(0)
	defer poll.Stop()
	var logged time.Time
	for {
		select {
		case <-ctx.Done():
			g.release("sidecar stopping")
			return nil
		case <-check.C:
			if _, _, _, err := g.usable(); err != nil {
				g.release(fmt.Sprintf("lease not usable: %v", err)) // G3
				return nil
			}
			if err := g.ensureFollower(ctx); err != nil {
				return err
			}
			continue
		case <-poll.C:
		}
		poll.Reset(g.o.Poll)
		rctx, cancel := context.WithTimeout(ctx, g.o.RPCTimeout)
		head, err := g.chain.blockNumber(rctx)
		cancel()
		if err != nil {
			g.lg.Debug("follower head unknown", "error", err)
			continue
		}
		g.m.head.Set(float64(head))
		if head < g.floor {
			if time.Since(logged) > 10*time.Second {
				g.lg.Info("waiting for the follower to reach the floor before releasing the key", "head", head, "floor", g.floor)
				logged = time.Now()
			}
			continue
		}
		return g.startValidator(ctx, head)
	}
}

// release is G3: back to follower without having started the validator.
func (g *Gate) release(why string) {
	g.lg.Info("not starting the validator", "why", why)
	g.lease.unlockSigning()
	g.to(GateFollower)
}

// startValidator is G2.
func (g *Gate) startValidator(ctx context.Context, head uint64) error {
	g.lg.Info("follower reached the floor; stopping it", "head", head, "floor", g.floor)
	if err := g.reap(syscall.SIGTERM); err != nil {
		return err
	}
	if _, _, _, err := g.usable(); err != nil || ctx.Err() != nil {
		g.release(fmt.Sprintf("lease lost while the follower stopped: %v", err))
		return nil
	}
	if err := g.key.write(); err != nil {
		g.lg.Error("writing the key file failed", "path", g.key.path(), "error", err)
		if rerr := g.key.remove(); rerr != nil {
			return g.fail(fmt.Errorf("remove the key file after a failed write: %w", rerr))
		}
		g.notBefore = time.Now().Add(g.crashes.next())
		g.release("the key file could not be written")
		return nil
	}
	_, _, killAt, err := g.usable()
	if err == nil {
		var p clientProcess
		if p, err = g.launch.launch(roleValidator, g.watchdogAt(killAt)); err == nil {
			g.proc, g.procStart = p, time.Now()
			g.lg.Info("client started", "role", roleValidator, "pid", p.pid(), "epoch", g.lease0.Epoch, "head", head, "floor", g.floor, "kill_in", time.Until(killAt).Round(time.Millisecond))
			g.to(GateValidator)
			return nil
		}
		g.lg.Error("starting the validator failed", "error", err)
		g.notBefore = time.Now().Add(g.crashes.next())
	}
	if rerr := g.key.remove(); rerr != nil {
		return g.fail(fmt.Errorf("remove the key file of a validator that did not start: %w", rerr))
	}
	g.release(fmt.Sprintf("validator not started: %v", err))
	return nil
}

// watchdogAt is the watchdog's kill time for the gate's kill time killAt:
// half of kill-before later, so that the gate kills first while it works.
func (g *Gate) watchdogAt(killAt time.Time) time.Time { return killAt.Add(g.o.KillBefore / 2) }

// validate watches a running validator until something ends it (G4).
func (g *Gate) validate(ctx context.Context) error {
	check := time.NewTicker(g.o.Check)
	defer check.Stop()
	poll := time.NewTicker(g.o.Poll)
	defer poll.Stop()
	lastHead := g.procStart
	var extended time.Time // the last deadline the watchdog was given
	for {
		var reason, detail string
		select {
		case <-ctx.Done():
			reason, detail = "stopping", "the sidecar is stopping"
		case <-g.proc.exited():
			reason, detail = "exited", "the validator client exited"
		case <-check.C:
			if _, _, deadline, err := g.lease.window(); err != nil {
				reason, detail = leaseReason(err), err.Error()
			} else if !time.Now().Before(deadline.Add(-g.o.KillBefore)) {
				reason, detail = "deadline", fmt.Sprintf("no renewal moved the lease's local deadline, %s away (--gate-kill-before %s)", time.Until(deadline).Round(time.Millisecond), g.o.KillBefore)
			} else if time.Since(lastHead) > g.o.HeadStale {
				reason, detail = "head-stale", fmt.Sprintf("the client's RPC answered no head for %s", g.o.HeadStale)
			} else if deadline.After(extended) {
				if err := g.proc.extend(g.watchdogAt(deadline.Add(-g.o.KillBefore))); err != nil {
					reason, detail = "watchdog", err.Error()
				}
				extended = deadline
			}
		case <-poll.C:
			ok, err := g.pollHead(ctx, g.o.RPCTimeout)
			switch {
			case errors.Is(err, errBelowFloor):
				reason, detail = "head-below-floor", err.Error()
			case err != nil:
				reason, detail = "journal", err.Error()
			case ok:
				lastHead = time.Now()
			}
		}
		if reason != "" {
			return g.kill(ctx, reason, detail)
		}
	}
}

// errBelowFloor: a validator whose head is below the floor could seal old
// heights (the client restarted from older state).
var errBelowFloor = errors.New("head below the floor")

// pollHead reads the validator's head and journals it when higher than the
// local watermark. ok says whether a head was read; an error is a reason to
// kill: the head is below the floor (errBelowFloor), or the journal failed.
func (g *Gate) pollHead(ctx context.Context, timeout time.Duration) (ok bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	head, hash, err := g.chain.latest(rctx)
	cancel()
	if err != nil {
		g.lg.Debug("validator head unknown", "error", err)
		return false, nil
	}
	g.m.head.Set(float64(head))
	if head < g.floor {
		return true, fmt.Errorf("%w: the validator's head %d is below the floor %d", errBelowFloor, head, g.floor)
	}
	if wm := g.journal.Watermark(); wm != nil && head <= wm.Height {
		return true, nil
	}
	e := fencing.JournalEntry{Validator: g.id, HRS: fencing.HRS{Height: head, Step: fencing.StepBlock}, Digest: fencing.Digest(hash), Epoch: g.lease0.Epoch, Sidecar: g.sidecar, At: time.Now().UTC()}
	if err := g.journal.Append(e); err != nil {
		return true, fmt.Errorf("local journal: %w", err)
	}
	return true, nil
}

func leaseReason(err error) string {
	if fencing.CodeOf(err) == fencing.CodeStaleEpoch {
		return "revoked"
	}
	return "lease"
}

// kill is G4, then G5 or G6. While the client is alive and the lease's
// deadline leaves time, a last head poll goes first: the watermark then
// includes what the client reached up to one round trip before SIGKILL.
// After a local journal error it returns that error once the client is gone
// and the lock released: no validator starts again before a restart.
func (g *Gate) kill(ctx context.Context, reason, detail string) error {
	g.to(GateKilling)
	var journalErr error
	if reason == "journal" {
		journalErr = errors.New(detail)
	}
	if reason != "exited" && reason != "journal" {
		timeout := min(g.o.RPCTimeout, 250*time.Millisecond)
		if _, _, deadline, _ := g.lease.window(); time.Until(deadline.Add(-g.o.KillBefore)) > timeout {
			if _, err := g.pollHead(context.WithoutCancel(ctx), timeout); err != nil && !errors.Is(err, errBelowFloor) {
				journalErr = err
			}
		}
	}
	pid, ran := g.proc.pid(), time.Since(g.procStart)
	start := time.Now()
	if err := g.reap(syscall.SIGKILL); err != nil {
		_ = g.key.remove() // G6 anyway; a removed key is still better
		return err
	}
	if err := g.key.remove(); err != nil {
		return g.fail(fmt.Errorf("the key file %s cannot be removed: %w", g.key.path(), err))
	}
	g.m.kills.WithLabelValues(reason).Inc()
	g.lg.Info("validator killed; key file removed", "reason", reason, "detail", detail, "pid", pid, "ran", ran.Round(time.Millisecond), "kill_took", time.Since(start).Round(time.Microsecond), "watermark", wmText(g.journal.Watermark()))
	if reason == "exited" && ran < g.crashes.max {
		g.notBefore = time.Now().Add(g.crashes.next())
	} else {
		g.crashes.reset()
	}
	// G5: only now may K4 release the lease.
	g.lease.unlockSigning()
	g.to(GateFollower)
	if journalErr != nil {
		return fmt.Errorf("the local journal failed, so no validator starts again until the sidecar restarts: %w", journalErr)
	}
	return nil
}

// reap signals the current process group and waits until it is gone:
// SIGTERM gets StopTimeout and then SIGKILL; SIGKILL gets KillWait, after
// which the gate fails closed (G6).
func (g *Gate) reap(sig syscall.Signal) error {
	p := g.proc
	if p == nil {
		return nil
	}
	if sig == syscall.SIGTERM {
		_ = p.signal(syscall.SIGTERM)
		if g.waitGone(p, g.o.StopTimeout) {
			p.release()
			g.proc = nil
			return nil
		}
		g.lg.Warn("client did not stop within the stop timeout; killing it", "pid", p.pid(), "timeout", g.o.StopTimeout)
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		g.lg.Warn("SIGKILL", "pid", p.pid(), "error", err)
	}
	if !g.waitGone(p, g.o.KillWait) {
		return g.fail(fmt.Errorf("process group %d is not gone %s after SIGKILL", p.pid(), g.o.KillWait))
	}
	p.release()
	g.proc = nil
	return nil
}

func (g *Gate) waitGone(p clientProcess, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		gone, err := p.gone()
		if gone {
			return true
		}
		if time.Now().After(deadline) {
			if err != nil {
				g.lg.Error("process group not confirmed gone", "pid", p.pid(), "error", err)
			}
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fail is G6: the signing lock stays taken, nothing starts again.
func (g *Gate) fail(err error) error {
	g.to(GateFailed)
	g.proc = nil
	g.lg.Error("gate failed closed: the lease is not released (it expires after its TTL) and the key is not written again; restart the sidecar once the cause is fixed", "error", err)
	return fmt.Errorf("%w: %v", ErrGateFailed, err)
}

// stopFollower stops a follower at shutdown (SIGTERM, then SIGKILL).
func (g *Gate) stopFollower() {
	if g.proc != nil && g.state != GateValidator {
		if err := g.reap(syscall.SIGTERM); err != nil {
			g.lg.Error("follower not stopped", "error", err)
		}
	}
}

// next returns the current delay and doubles it for the next time.
func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	return d
}

// parseCommand reads a command line for --gate-exec and the role
// arguments: words separated by white space, or a JSON array of strings
// for words that contain spaces. No shell quoting, globbing or variables.
func parseCommand(s string) ([]string, error) {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "[") {
		return strings.Fields(t), nil
	}
	var words []string
	dec := json.NewDecoder(strings.NewReader(t))
	if err := dec.Decode(&words); err != nil {
		return nil, fmt.Errorf("not a JSON array of strings: %v", err)
	}
	if dec.More() {
		return nil, errors.New("text after the JSON array")
	}
	for i, w := range words {
		if strings.ContainsRune(w, 0) {
			return nil, fmt.Errorf("word %d contains a NUL byte", i+1)
		}
	}
	return words, nil
}

// gateMetrics are the gate's series (see the package doc).
type gateMetrics struct {
	state *prometheus.GaugeVec
	head  prometheus.Gauge
	floor prometheus.Gauge
	kills *prometheus.CounterVec
}

func newGateMetrics(reg prometheus.Registerer, id fencing.ValidatorID) (*gateMetrics, error) {
	labels := prometheus.Labels{"validator": string(id)}
	m := &gateMetrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fencing_sidecar_gate_state", Help: "1 for the process gate's current state: follower, catching-up, validator, killing or failed.", ConstLabels: labels,
		}, []string{"state"}),
		head: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fencing_sidecar_gate_head", Help: "The client's last head as the gate read it (eth_blockNumber or the latest block).", ConstLabels: labels,
		}),
		floor: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fencing_sidecar_gate_floor", Help: "The height the client's head must reach before the key is released.", ConstLabels: labels,
		}),
		kills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fencing_sidecar_gate_kills_total", Help: "Validator clients killed, by reason.", ConstLabels: labels,
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.state, m.head, m.floor, m.kills} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *gateMetrics) setState(s GateState) {
	for i, name := range gateStateNames {
		v := 0.0
		if GateState(i) == s {
			v = 1
		}
		m.state.WithLabelValues(name).Set(v)
	}
}

// rpcHead reads the client's head over its JSON-RPC.
type rpcHead struct{ c *rpc.Client }

var _ headSource = (*rpcHead)(nil)

func newRPCHead(url string) (*rpcHead, error) {
	c, err := rpc.DialOptions(context.Background(), url)
	if err != nil {
		return nil, fmt.Errorf("--gate-rpc %s: %w", url, err)
	}
	return &rpcHead{c: c}, nil
}

func (h *rpcHead) blockNumber(ctx context.Context) (uint64, error) {
	var n hexutil.Uint64
	err := h.c.CallContext(ctx, &n, "eth_blockNumber")
	return uint64(n), err
}

func (h *rpcHead) latest(ctx context.Context) (uint64, common.Hash, error) {
	var b *struct {
		Number *hexutil.Uint64 `json:"number"`
		Hash   *common.Hash    `json:"hash"`
	}
	if err := h.c.CallContext(ctx, &b, "eth_getBlockByNumber", "latest", false); err != nil {
		return 0, common.Hash{}, err
	}
	if b == nil || b.Number == nil || b.Hash == nil {
		return 0, common.Hash{}, errors.New("eth_getBlockByNumber(latest) answered no block number and hash")
	}
	return uint64(*b.Number), *b.Hash, nil
}

// NewGate builds the process gate of cfg (--gate-exec) for s's validator
// (gate mode has exactly one); Run drives it.
func NewGate(cfg Config, s *Signer, reg prometheus.Registerer, lg hclog.Logger) (*Gate, error) {
	v := s.list[0]
	words := func(s string) []string {
		w, _ := parseCommand(s) // Validate refused what does not parse
		return w
	}
	key, err := newKeyFile(cfg.GateKeyFile, cfg.GateKeyFormat, v.key, cfg.GatePasswordFile)
	if err != nil {
		return nil, err
	}
	l, err := newGroupLauncher(words(cfg.GateExec), words(cfg.GateValidatorArgs), words(cfg.GateStandbyArgs), watchdogOptions{logJSON: cfg.LogJSON, keyFile: cfg.GateKeyFile})
	if err != nil {
		return nil, err
	}
	chain, err := newRPCHead(cfg.GateRPC)
	if err != nil {
		return nil, err
	}
	o := gateOptions{KillBefore: cfg.GateKillBefore, Poll: cfg.GatePoll, StopTimeout: cfg.GateStopTimeout, HeadStale: cfg.GateHeadStale}
	return newGate(v.id, cfg.Name, keeperLease{v.keeper}, v.journal, chain, l, key, o, reg, lg)
}

// gateProblems checks the --gate-* settings (Config.Validate).
func (c *Config) gateProblems() []error {
	if c.GateExec == "" {
		var set []string
		for flag, v := range map[string]string{"--gate-key-file": c.GateKeyFile, "--gate-rpc": c.GateRPC, "--gate-password-file": c.GatePasswordFile, "--gate-validator-args": c.GateValidatorArgs, "--gate-standby-args": c.GateStandbyArgs} {
			if v != "" {
				set = append(set, flag)
			}
		}
		if len(set) > 0 {
			slices.Sort(set)
			return []error{fmt.Errorf("%s only apply with --gate-exec (the validator client's command line)", strings.Join(set, ", "))}
		}
		return nil
	}
	var errs []error
	for flag, v := range map[string]string{"--gate-exec": c.GateExec, "--gate-validator-args": c.GateValidatorArgs, "--gate-standby-args": c.GateStandbyArgs} {
		if w, err := parseCommand(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", flag, err))
		} else if flag == "--gate-exec" && len(w) == 0 {
			errs = append(errs, errors.New("--gate-exec names no program"))
		}
	}
	if c.Mode != string(ModeLease) {
		errs = append(errs, fmt.Errorf("--gate-exec needs --mode lease (not %q): the client signs in its own process, so nothing can be journaled per signature; the gate reports the client's head as the watermark with each renewal", c.Mode))
	}
	if len(c.Keys) != 1 {
		errs = append(errs, fmt.Errorf("--gate-exec runs one validator client, for one --key (got %d)", len(c.Keys)))
	}
	if c.BareDigest {
		errs = append(errs, errors.New("--bare-digest and --gate-exec exclude each other: in gate mode the sidecar serves no signing API"))
	}
	if !filepath.IsAbs(c.GateKeyFile) {
		errs = append(errs, fmt.Errorf("--gate-key-file %q must be an absolute path on a memory-backed volume (where the client reads its key)", c.GateKeyFile))
	}
	switch c.GateKeyFormat {
	case KeyFormatHex:
	case KeyFormatKeystore:
		if c.GatePasswordFile == "" {
			errs = append(errs, errors.New("--gate-key-format keystore needs --gate-password-file (the client decrypts the keystore with it)"))
		}
	default:
		errs = append(errs, fmt.Errorf("--gate-key-format %q must be %s (Besu --node-private-key-file) or %s (geth --keystore)", c.GateKeyFormat, KeyFormatHex, KeyFormatKeystore))
	}
	if u, err := url.Parse(c.GateRPC); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--gate-rpc %q must be the client's http(s)://host:port JSON-RPC URL", c.GateRPC))
	}
	if c.GateKillBefore <= 0 || c.GatePoll <= 0 || c.GateStopTimeout <= 0 || c.GateHeadStale <= c.GatePoll {
		errs = append(errs, fmt.Errorf("--gate-kill-before (%s), --gate-poll (%s) and --gate-stop-timeout (%s) must be positive and --gate-head-stale (%s) above --gate-poll", c.GateKillBefore, c.GatePoll, c.GateStopTimeout, c.GateHeadStale))
	} else if c.RenewInterval+c.SafetyMargin+c.GateKillBefore >= c.LeaseTTL {
		errs = append(errs, fmt.Errorf("lease TTL (%s) must exceed renew interval (%s) plus safety margin (%s) plus --gate-kill-before (%s), or the gate kills the validator between renewals", c.LeaseTTL, c.RenewInterval, c.SafetyMargin, c.GateKillBefore))
	}
	return errs
}
