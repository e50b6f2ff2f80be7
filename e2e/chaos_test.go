package e2e

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"github.com/validator-fencing/fencing/sidecar"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/validator-fencing/fencing/internal/drill"
	"github.com/validator-fencing/fencing/internal/drill/faultproxy"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// minRounds is how many failover rounds (grants) a full run must reach.
const minRounds = 200

// fault is one entry of the seeded schedule.
type fault struct {
	At     time.Duration // from the start of the run
	Lane   string        // faults of one lane never overlap
	Kind   string
	Target string        // a region, a validator index, or the operator
	Mode   string        // partition: drop/blackhole; skew: slow/fast; kill: active/standby; timing: which requests
	For    time.Duration // how long the fault lasts (down time for kills)
	By     time.Duration // timing: how late the messages arrive
}

func (f fault) String() string {
	s := fmt.Sprintf("+%7.2fs  %-8s %-24s %-9s", f.At.Seconds(), f.Lane, f.Kind, f.Target)
	if f.Mode != "" {
		s += " " + f.Mode
	}
	if f.By > 0 {
		s += fmt.Sprintf(" %.2fs late", f.By.Seconds())
	}
	if f.For > 0 {
		s += fmt.Sprintf(" for %.2fs", f.For.Seconds())
	}
	return s
}

// The fault kinds.
const (
	fPartition       = "partition-region"
	fKillEtcd        = "kill-9-etcd-member"
	fPauseEtcd       = "sigstop-etcd-member"
	fKillCoord       = "kill-9-coordinator"
	fKillCoordBump   = "kill-9-coordinator-mid-bump"
	fPauseSidecar    = "sigstop-active-sidecar"
	fKillSidecar     = "kill-9-sidecar"
	fKillAtJournal   = "kill-9-sidecar-at-journal"
	fSkewSidecar     = "clock-skew-sidecar"
	fStallEtcd       = "stall-etcd-member"
	fLateRequest     = "late-sidecar-request"
	fLateAnswer      = "late-coordinator-answer"
	fDupRequest      = "duplicate-sidecar-request"
	fReorderRequest  = "reorder-sidecar-requests"
	fDupBump         = "duplicate-operator-bump"
	fOperatorBumpKey = "operator-bump"
)

// lanes of the schedule; FENCE_E2E_LANES runs a subset.
var lanes = []string{"network", "coord", "sidecar", "timing"}

// sidecarRequests are the request lines (prefixes) a timing fault on a
// sidecar's traffic to the coordinators picks from; "any" is every request.
var sidecarRequests = map[string]string{
	"acquire": "POST /v1/leases ",
	"renew":   "POST /v1/leases/renew ",
	"release": "POST /v1/leases/release ",
	"journal": "POST /v1/journal",
	"watch":   "GET /v1/validators/",
	"any":     "",
}

// schedule draws the faults of a run from seed: four lanes (network and
// etcd, coordinators, sidecars, message timing) whose faults may overlap
// each other but not themselves, so that a quorum always comes back. The
// timing lane is drawn last, so the other lanes of a seed are what they were
// before it existed.
func schedule(seed uint64, dur, ttl time.Duration, validators int) []fault {
	rnd := rand.New(rand.NewPCG(seed, 0x7363686564))
	u := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rnd.Int64N(int64(hi-lo)+1)) }
	pick := func(xs ...string) string { return xs[rnd.IntN(len(xs))] }
	v := func() string { return "v" + strconv.Itoa(rnd.IntN(validators)) }
	var out []fault
	for t := u(2*time.Second, 4*time.Second); t < dur; {
		var f fault
		switch n := rnd.IntN(6); {
		case n < 3:
			f = fault{Lane: "network", Kind: fPartition, Target: pick(regionA, regionB, regionC), Mode: pick("drop", "blackhole"), For: u(ttl, 3*ttl)}
		case n < 5:
			f = fault{Lane: "network", Kind: fKillEtcd, Target: pick(regionA, regionB, regionC), For: u(500*time.Millisecond, 3*time.Second)}
		default:
			f = fault{Lane: "network", Kind: fPauseEtcd, Target: pick(regionA, regionB, regionC), For: u(time.Second, 3*time.Second)}
		}
		f.At = t
		out = append(out, f)
		t += f.For + u(2*time.Second, 5*time.Second)
	}
	for t := u(3*time.Second, 6*time.Second); t < dur; {
		f := fault{At: t, Lane: "coord", Kind: fKillCoord, Target: pick(regionA, regionB), For: u(300*time.Millisecond, 3*time.Second)}
		if rnd.IntN(2) == 0 {
			f = fault{At: t, Lane: "coord", Kind: fKillCoordBump, For: u(500*time.Millisecond, 2*time.Second)}
		}
		out = append(out, f)
		t += f.For + u(5*time.Second, 10*time.Second)
	}
	for t := u(time.Second, 3*time.Second); t < dur; {
		var f fault
		switch n := rnd.IntN(7); {
		case n < 2:
			f = fault{Lane: "sidecar", Kind: fPauseSidecar, Target: v(), For: ttl + u(500*time.Millisecond, 2*time.Second)}
		case n < 4:
			f = fault{Lane: "sidecar", Kind: fKillSidecar, Target: v(), Mode: pick("active", "active", "standby"), For: u(200*time.Millisecond, 2*time.Second)}
		case n < 6:
			f = fault{Lane: "sidecar", Kind: fKillAtJournal, Target: v(), For: u(200*time.Millisecond, time.Second)}
		default:
			f = fault{Lane: "sidecar", Kind: fSkewSidecar, Target: v(), Mode: pick("slow", "fast"), For: u(5*time.Second, 15*time.Second)}
		}
		f.At = t
		out = append(out, f)
		t += f.For + u(500*time.Millisecond, 3*time.Second)
	}
	// Message timing: the coordinators' etcd calls reach a member after they
	// gave up (a Txn that commits after the retry that replaced it), or its
	// answers come back after they gave up (committed, reported failed); a
	// sidecar's request or its answer arrives late; a request is executed
	// twice (the copy late); a request is executed after a later one; an
	// operator's bump arrives twice.
	for t := u(2*time.Second, 5*time.Second); t < dur; {
		var f fault
		switch n := rnd.IntN(10); {
		case n < 3:
			f = fault{Kind: fStallEtcd, Target: pick(regionA, regionB, regionC), Mode: pick("calls", "calls", "answers"), By: u(2100*time.Millisecond, 4*time.Second), For: u(time.Second, 4*time.Second)}
		case n < 5:
			f = fault{Kind: fLateRequest, Target: v(), Mode: pick("acquire", "renew", "release", "journal", "watch", "any"), By: u(300*time.Millisecond, 6*time.Second), For: u(2*time.Second, 8*time.Second)}
		case n < 6:
			f = fault{Kind: fLateAnswer, Target: v(), Mode: pick("acquire", "renew", "release", "journal", "watch", "any"), By: u(300*time.Millisecond, 6*time.Second), For: u(2*time.Second, 8*time.Second)}
		case n < 8:
			f = fault{Kind: fDupRequest, Target: v(), Mode: pick("acquire", "renew", "release", "journal"), By: u(0, 2*ttl), For: u(2*time.Second, 8*time.Second)}
		case n < 9:
			f = fault{Kind: fReorderRequest, Target: v(), Mode: pick("acquire", "renew", "release", "journal"), For: u(6*time.Second, 12*time.Second)}
		default:
			f = fault{Kind: fDupBump, Target: operator, By: u(0, 2*ttl), For: u(2*time.Second, 6*time.Second)}
		}
		f.Lane, f.At = "timing", t
		out = append(out, f)
		t += f.For + f.By + u(time.Second, 4*time.Second)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

// chaosSeed is FENCE_E2E_SEED or a fresh random seed.
func chaosSeed(t *testing.T) uint64 {
	if s := os.Getenv("FENCE_E2E_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FENCE_E2E_SEED=%q: want an unsigned integer", s)
		}
		return n
	}
	var b [8]byte
	_, _ = crand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) % 1_000_000_000
}

// TestScheduleReplays: a seed draws the same schedule every time, the
// faults of a lane follow each other without overlapping, and the timing
// lane draws every kind of timing fault.
func TestScheduleReplays(t *testing.T) {
	const dur, ttl = 330 * time.Second, 3 * time.Second
	if a, b := schedule(42, dur, ttl, 4), schedule(42, dur, ttl, 4); !slices.Equal(a, b) {
		t.Fatalf("schedule(42) drew %d faults, then %d different ones", len(a), len(b))
	}
	kinds := map[string]int{}
	for seed := range uint64(3) {
		end := map[string]time.Duration{}
		for _, f := range schedule(seed, dur, ttl, 4) {
			if f.At < end[f.Lane] {
				t.Errorf("seed %d: %s starts before the previous fault of its lane ends (%s)", seed, f, end[f.Lane])
			}
			end[f.Lane] = f.At + f.For + f.By
			kinds[f.Kind]++
		}
	}
	for _, k := range []string{fStallEtcd, fLateRequest, fLateAnswer, fDupRequest, fReorderRequest, fDupBump} {
		if kinds[k] == 0 {
			t.Errorf("no %s in three 330s schedules", k)
		}
	}
}

// chaosLanes is FENCE_E2E_LANES (comma-separated) or every lane.
func chaosLanes(t *testing.T) []string {
	s := os.Getenv("FENCE_E2E_LANES")
	if s == "" {
		return lanes
	}
	var out []string
	for l := range strings.SplitSeq(s, ",") {
		if l = strings.TrimSpace(l); !slices.Contains(lanes, l) {
			t.Fatalf("FENCE_E2E_LANES=%q: lane %q unknown; use a comma-separated list of %s", s, l, strings.Join(lanes, ", "))
		}
		out = append(out, l)
	}
	return out
}

// chaosRun is the state of one TestChaos run.
type chaosRun struct {
	c        *cluster
	start    time.Time
	faults   []fault
	rnd      *rand.Rand
	until    func() bool // false once the run should wind down
	midBump  atomic.Int32
	mu       sync.Mutex
	executed map[string]int
	bumps    []bumpResult
}

// TestChaos runs the hot-warm topology in strict mode under the seeded fault
// schedule while an operator bumps every validator back and forth, then
// checks the invariants over everything the validators received. Without
// -short it runs until at least 200 failover rounds and 150s (at most 330s);
// FENCE_E2E_DURATION sets the duration instead (make soak).
func TestChaos(t *testing.T) {
	minDur, maxDur, need := 150*time.Second, 330*time.Second, minRounds
	if testing.Short() {
		minDur, maxDur, need = 40*time.Second, 40*time.Second, 0
	}
	runChaos(t, "strict", minDur, maxDur, need)
}

// TestChaosLeaseMode is the same in lease mode (no per-signature journal),
// shorter: its guarantee rests on the lease deadline, so the checker asks
// that nothing is requested from the old holder after the next grant (and,
// as always, that no slot has two digests).
func TestChaosLeaseMode(t *testing.T) {
	d := 60 * time.Second
	if testing.Short() {
		d = 20 * time.Second
	}
	runChaos(t, "lease", d, d, 0)
}

func runChaos(t *testing.T, mode string, minDur, maxDur time.Duration, needRounds int) {
	seed := chaosSeed(t)
	const ttl = 3 * time.Second
	if s := os.Getenv("FENCE_E2E_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("FENCE_E2E_DURATION=%q: %v", s, err)
		}
		minDur, maxDur, needRounds = d, d, 0
	}
	validators := 4
	run := chaosLanes(t)
	var faults []fault
	for _, f := range schedule(seed, maxDur, ttl, validators) {
		if slices.Contains(run, f.Lane) {
			faults = append(faults, f)
		}
	}
	fmt.Printf("e2e: %s seed %d (FENCE_E2E_SEED=%d reproduces the schedule), %s mode, %d validators, run %s..%s, %d faults scheduled in lanes %s\n", t.Name(), seed, seed, mode, validators, minDur, maxDur, len(faults), strings.Join(run, ","))
	c := newCluster(t, clusterOptions{Validators: validators, Mode: mode, TTL: ttl, Margin: 1500 * time.Millisecond, Seed: seed})
	r := &chaosRun{c: c, start: time.Now(), faults: faults, rnd: rand.New(rand.NewPCG(seed, 0x6f70)), executed: map[string]int{}}
	r.until = func() bool {
		el := time.Since(r.start)
		if el >= maxDur {
			return false
		}
		return el < minDur || drill.Grants(c.obs.Epochs()) < needRounds
	}
	printSchedule := func() {
		fmt.Printf("e2e: schedule of seed %d:\n", seed)
		for _, f := range faults {
			fmt.Println("    " + f.String())
		}
	}
	if testing.Verbose() {
		printSchedule()
	}

	var running sync.WaitGroup
	for _, lane := range run {
		running.Go(func() { r.runLane(lane) })
	}
	running.Go(r.operate)
	running.Wait()
	c.logf("faults over after %s; settling", time.Since(r.start).Round(time.Millisecond))
	c.settle()
	time.Sleep(2 * time.Second)
	c.stopWorkload()

	in := c.collect()
	rep := drill.Check(in)
	rounds := drill.Grants(in.Epochs)
	r.report(t.Name(), seed, in, rep, rounds)

	// The checker must be able to fail: plant a double signature made from a
	// real one and expect it to be caught.
	if !plantedDoubleSignCaught(t, c, in) {
		t.Error("self-check: a planted double signature was not reported by the checker")
	}
	if !rep.OK() {
		printSchedule()
		fmt.Println("e2e: harness log:")
		for _, l := range c.log {
			fmt.Println("    " + l)
		}
		for i, v := range rep.Violations {
			if i == 10 {
				fmt.Printf("e2e: ... and %d more violations\n", len(rep.Violations)-10)
				break
			}
			fmt.Printf("e2e: VIOLATION %s\n", v)
			for _, l := range drill.Around(in, v.Validator, v.At, 3*time.Second) {
				fmt.Println("      " + l)
			}
		}
		t.Fatalf("seed %d: %d invariant violation(s); rerun with FENCE_E2E_SEED=%d", seed, len(rep.Violations), seed)
	}
	if rep.Audit.DuplicateCount() != 0 {
		t.Fatalf("seed %d: journal audit found %d duplicates", seed, rep.Audit.DuplicateCount())
	}
	if rounds < needRounds {
		t.Fatalf("seed %d: only %d failover rounds in %s, want at least %d (failovers too slow or stuck?)", seed, rounds, time.Since(r.start).Round(time.Second), needRounds)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	stuck := false
	for _, b := range r.bumps {
		if b.Code == -2 {
			stuck = true
			t.Errorf("seed %d: bump %s -> %s did not complete: %s", seed, b.From, b.To, b.Err)
		}
	}
	if stuck {
		fmt.Println("e2e: harness log:")
		for _, l := range c.log {
			fmt.Println("    " + l)
		}
	}
}

// runLane executes the faults of lane in order until the run winds down.
func (r *chaosRun) runLane(lane string) {
	for _, f := range r.faults {
		if f.Lane != lane {
			continue
		}
		if wait := time.Until(r.start.Add(f.At)); wait > 0 {
			for wait > 0 && r.until() {
				time.Sleep(min(wait, 200*time.Millisecond))
				wait = time.Until(r.start.Add(f.At))
			}
		}
		if !r.until() {
			return
		}
		r.exec(f)
	}
}

func (r *chaosRun) count(kind string) {
	r.mu.Lock()
	r.executed[kind]++
	r.mu.Unlock()
}

// exec injects one fault and ends it.
func (r *chaosRun) exec(f fault) {
	c := r.c
	switch f.Kind {
	case fPartition:
		mode := faultproxy.Drop
		if f.Mode == "blackhole" {
			mode = faultproxy.Blackhole
		}
		c.logf("fault: isolate %s (%s) for %s", f.Target, f.Mode, f.For)
		c.net.Isolate(f.Target, mode)
		time.Sleep(f.For)
		c.net.Heal()
		c.logf("fault: healed %s", f.Target)
	case fKillEtcd:
		p := c.etcd[f.Target]
		c.logf("fault: kill -9 %s, down %s", p.name, f.For)
		p.kill()
		time.Sleep(f.For)
		if err := p.start(); err != nil {
			c.t.Errorf("restart %s: %v", p.name, err)
		} else if err := p.waitReady(60 * time.Second); err != nil {
			c.t.Errorf("restarted %s: %v", p.name, err)
		}
		c.logf("fault: %s back", p.name)
	case fPauseEtcd:
		p := c.etcd[f.Target]
		c.logf("fault: SIGSTOP %s for %s", p.name, f.For)
		p.pause()
		time.Sleep(f.For)
		p.resume()
	case fKillCoord:
		p := c.coord[f.Target]
		c.logf("fault: kill -9 %s, down %s", p.name, f.For)
		p.kill()
		time.Sleep(f.For)
		if err := p.start(); err != nil {
			c.t.Errorf("restart %s: %v", p.name, err)
		}
	case fKillCoordBump:
		// The operator kills the coordinator it bumps through, once the
		// revoke committed.
		r.midBump.Add(1)
		c.logf("fault: the next bump loses its coordinator after the revoke")
		return // counted when the operator does it
	case fPauseSidecar:
		v := r.validator(f.Target)
		p := c.sidecar(v, c.holder(v))
		c.logf("fault: SIGSTOP %s (active) for %s (TTL %s)", p.name, f.For, c.o.TTL)
		p.pause()
		time.Sleep(f.For)
		p.resume()
		c.logf("fault: SIGCONT %s", p.name)
	case fKillSidecar:
		v := r.validator(f.Target)
		h := c.holder(v)
		if f.Mode == "standby" {
			h = other(h)
		}
		p := c.sidecar(v, h)
		c.logf("fault: kill -9 %s (%s) with requests in flight, down %s", p.name, f.Mode, f.For)
		p.kill()
		time.Sleep(f.For)
		if err := p.start(); err != nil {
			c.t.Errorf("restart %s: %v", p.name, err)
		}
	case fKillAtJournal:
		v := r.validator(f.Target)
		p := c.sidecar(v, c.holder(v))
		wait := 3 * time.Second
		if c.o.Mode == "lease" { // nothing is journaled: a plain kill
			wait = 100 * time.Millisecond
		}
		fired := c.killAtJournal(p, wait)
		c.logf("fault: kill -9 %s between its quorum journal commit and its reply (hit=%t), down %s", p.name, fired, f.For)
		time.Sleep(f.For)
		if err := p.start(); err != nil {
			c.t.Errorf("restart %s: %v", p.name, err)
		}
	case fSkewSidecar:
		v := r.validator(f.Target)
		p := c.sidecar(v, c.holder(v))
		// A clock running slow by factor rho stretches the local deadline
		// to (TTL - margin)/rho: the same as a correct clock with margin
		// TTL - (TTL - margin)/rho. With TTL 3s and the suite's margin
		// 1.5s: slow rho = 0.75 (margin 1s, the floor for a 3s lease),
		// fast rho = 1.36 (margin 1.9s); both within the bound margin/TTL
		// = 50% documented for --safety-margin 1.5s.
		m := sidecar.MinSafetyMargin(c.o.TTL)
		if f.Mode == "fast" {
			m = 1900 * time.Millisecond
		}
		c.logf("fault: restart %s with a %s clock (safety margin %s) for %s", p.name, f.Mode, m, f.For)
		p.mu.Lock()
		p.margin = m
		p.mu.Unlock()
		p.kill()
		if err := p.start(); err != nil {
			c.t.Errorf("restart %s: %v", p.name, err)
		}
		time.Sleep(f.For)
		p.mu.Lock()
		p.margin = c.o.Margin
		p.mu.Unlock()
		p.kill()
		if err := p.start(); err != nil {
			c.t.Errorf("restart %s: %v", p.name, err)
		}
	case fStallEtcd:
		p := c.etcd[f.Target]
		m := faultproxy.Match{From: []string{c.coord[regionA].name, c.coord[regionB].name}, To: []string{p.proxies[0].Name}}
		dir, what := faultproxy.Request, fmt.Sprintf("the coordinators' etcd calls reach %s", p.name)
		if f.Mode == "answers" {
			dir, what = faultproxy.Response, fmt.Sprintf("%s's answers reach the coordinators", p.name)
		}
		r.during(f, fmt.Sprintf("%s %s late (after their --etcd-timeout)", what, f.By), func() (*faultproxy.Fault, error) {
			return c.net.Delay(dir, m, f.By)
		})
	case fLateRequest, fLateAnswer:
		dir, what := faultproxy.Request, "requests"
		if f.Kind == fLateAnswer {
			dir, what = faultproxy.Response, "answers to requests"
		}
		r.during(f, fmt.Sprintf("%s %s of %s arrive %s late", f.Mode, what, strings.Join(r.sidecarNames(f.Target), ","), f.By), func() (*faultproxy.Fault, error) {
			return c.net.Delay(dir, r.sidecarMatch(f), f.By)
		})
	case fDupRequest:
		r.during(f, fmt.Sprintf("the next %s request of %s is executed twice, the copy %s late", f.Mode, strings.Join(r.sidecarNames(f.Target), ","), f.By), func() (*faultproxy.Fault, error) {
			return c.net.Duplicate(r.sidecarMatch(f), f.By, 1)
		})
	case fReorderRequest:
		r.during(f, fmt.Sprintf("the next %s request of %s is held until a later one was answered", f.Mode, strings.Join(r.sidecarNames(f.Target), ",")), func() (*faultproxy.Fault, error) {
			return c.net.Reorder(r.sidecarMatch(f), f.For)
		})
	case fDupBump:
		m := faultproxy.Match{From: []string{"fencectl"}, To: r.coordinatorProxies(), Request: "POST /v1/validators/"}
		r.during(f, fmt.Sprintf("the operator's next bump request is executed twice, the copy %s late", f.By), func() (*faultproxy.Fault, error) {
			return c.net.Duplicate(m, f.By, 1)
		})
	}
	r.count(f.Kind)
}

// during installs a timing fault, keeps it for f.For or until it is used
// up, and stops it (bytes it delayed keep their delivery time).
func (r *chaosRun) during(f fault, what string, install func() (*faultproxy.Fault, error)) {
	c := r.c
	tf, err := install()
	if err != nil {
		c.t.Errorf("%s: %v", f, err)
		return
	}
	c.logf("fault: %s, for up to %s", what, f.For)
	t := time.NewTimer(f.For)
	select {
	case <-tf.Done():
	case <-t.C:
	}
	t.Stop()
	tf.Stop()
	detail := ""
	if f.Kind == fReorderRequest {
		detail = fmt.Sprintf(", overtaken by a later request: %t", tf.Overtaken())
	}
	c.logf("fault: over: %s (%d hits%s)", tf, tf.Hits(), detail)
}

// sidecarNames are the two sidecars of validator target.
func (r *chaosRun) sidecarNames(target string) []string {
	v := r.validator(target)
	return []string{r.c.sidecar(v, regionA).name, r.c.sidecar(v, regionB).name}
}

// sidecarMatch selects the requests f.Mode of f.Target's sidecars to the
// coordinators.
func (r *chaosRun) sidecarMatch(f fault) faultproxy.Match {
	return faultproxy.Match{From: r.sidecarNames(f.Target), To: r.coordinatorProxies(), Request: sidecarRequests[f.Mode]}
}

func (r *chaosRun) coordinatorProxies() []string {
	return []string{r.c.coord[regionA].proxies[0].Name, r.c.coord[regionB].proxies[0].Name}
}

func (r *chaosRun) validator(target string) *validator {
	i, _ := strconv.Atoi(strings.TrimPrefix(target, "v"))
	return r.c.vals[i%len(r.c.vals)]
}

func other(region string) string {
	if region == regionA {
		return regionB
	}
	return regionA
}

// operate is the operator: bump every validator to the other region, again
// and again, while the faults go on.
func (r *chaosRun) operate() {
	c := r.c
	for r.until() {
		time.Sleep(300*time.Millisecond + time.Duration(r.rnd.Int64N(int64(1200*time.Millisecond))))
		count := map[string]int{}
		for _, v := range c.vals {
			count[c.holder(v)]++
		}
		from := regionA
		if count[regionB] > count[regionA] {
			from = regionB
		}
		var onRevoke func()
		if r.midBump.Load() > 0 {
			r.midBump.Add(-1)
			urls := c.coordinatorURLs()
			for _, reg := range holders {
				p := c.coord[reg]
				if p.proxies[0].URL() == urls[0] {
					onRevoke = func() {
						c.logf("fault: kill -9 %s in the middle of the bump (revoke committed, grant pending)", p.name)
						p.kill()
						r.count(fKillCoordBump)
						go func() {
							time.Sleep(time.Second)
							if err := p.start(); err != nil {
								c.t.Errorf("restart %s: %v", p.name, err)
							}
						}()
					}
				}
			}
		}
		res := c.bump(from, other(from), onRevoke)
		c.logf("operator: bump %s -> %s: fencectl exit %d, all granted after %s %s", res.From, res.To, res.Code, res.Took.Round(time.Millisecond), res.Err)
		r.mu.Lock()
		r.bumps = append(r.bumps, res)
		r.mu.Unlock()
		r.count(fOperatorBumpKey)
	}
}

// report prints what the run did and measured.
func (r *chaosRun) report(name string, seed uint64, in drill.CheckInput, rep *drill.CheckReport, rounds int) {
	c := r.c
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "e2e: %s seed %d (%s mode): %s, %d failover rounds (grants), %d operator bumps\n", name, seed, c.o.Mode, time.Since(r.start).Round(time.Second), rounds, r.executed[fOperatorBumpKey])
	kinds := make([]string, 0, len(r.executed))
	total := 0
	for k, n := range r.executed {
		if k != fOperatorBumpKey {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			total += n
		}
	}
	sort.Strings(kinds)
	fmt.Fprintf(&b, "    faults injected: %d (%s)\n", total, strings.Join(kinds, ", "))
	codes := map[int]int{}
	for _, x := range r.bumps {
		codes[x.Code]++
	}
	fmt.Fprintf(&b, "    fencectl bump exit codes: %v (0 granted, 3 coordinator lost, 4 still draining at --timeout; the bump resumes)\n", codes)
	fmt.Fprintf(&b, "    workload: %s\n", rep.Summary())
	var lat []time.Duration
	for _, x := range in.Records {
		if x.Outcome == drill.Signed {
			lat = append(lat, x.Done.Sub(x.Sent))
		}
	}
	fmt.Fprintf(&b, "    sign latency through the sidecar (%s mode, everything on 2 shared cores): %s\n", c.o.Mode, stats(lat))
	fmt.Fprintf(&b, "    journal audit: %s; %d entries; %d after-revoke dates explained by revisions\n", rep.Audit.Verdict(), rep.Audit.Signatures, rep.AuditLateExplained)
	coop, part := handovers(in.Events)
	fmt.Fprintf(&b, "    handover revoke->grant, cooperative: %s\n", stats(coop))
	fmt.Fprintf(&b, "    handover revoke->grant, a lease expired (partition, pause, kill): %s (TTL %s)\n", stats(part), c.o.TTL)
	fmt.Fprintf(&b, "    proxies: %d connections, %d refused, %d held (blackhole), %d cut; %d chunks delayed, %d requests duplicated, %d reordered; observer watch restarts %d\n",
		c.net.Accepted.Load(), c.net.Refused.Load(), c.net.Held.Load(), c.net.Cut.Load(), c.net.Delayed.Load(), c.net.Duplicated.Load(), c.net.Reordered.Load(), c.obs.WatchErrors())
	fmt.Print(b.String())
}

// handovers splits the revoke-to-grant times of every bump by whether a
// lease had to expire.
func handovers(events []fencing.Event) (coop, part []time.Duration) {
	type bump struct {
		revoke, grant time.Time
		expired       bool
	}
	bs := map[string]*bump{}
	get := func(id string) *bump {
		if bs[id] == nil {
			bs[id] = &bump{}
		}
		return bs[id]
	}
	for _, ev := range events {
		if ev.BumpID == "" {
			continue
		}
		b := get(string(ev.Validator) + "/" + ev.BumpID)
		switch ev.Kind {
		case fencing.EventFreeze, fencing.EventBumpStarted:
			b.revoke = ev.At
		case fencing.EventGrant:
			b.grant = ev.At
		case fencing.EventFenced:
			b.expired = strings.Contains(ev.Detail, fencing.DrainExpired)
		}
	}
	for _, b := range bs {
		if b.revoke.IsZero() || b.grant.IsZero() {
			continue
		}
		if b.expired {
			part = append(part, b.grant.Sub(b.revoke))
		} else {
			coop = append(coop, b.grant.Sub(b.revoke))
		}
	}
	return coop, part
}

func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(time.Millisecond)
	}
	return fmt.Sprintf("n=%d median %s p95 %s max %s", len(ds), q(0.5), q(0.95), ds[len(ds)-1].Round(time.Millisecond))
}

// plantedDoubleSignCaught copies a real signature's slot, signs another
// digest there with the validator's key, and runs the checker.
func plantedDoubleSignCaught(t *testing.T, c *cluster, in drill.CheckInput) bool {
	t.Helper()
	for _, rec := range in.Records {
		if rec.Outcome != drill.Signed {
			continue
		}
		var v *validator
		for _, x := range c.vals {
			if x.id == rec.Validator {
				v = x
			}
		}
		forged := rec
		forged.Region = other(rec.Region)
		forged.Digest = drill.DigestFor(rec.Validator, forged.Region, "planted", rec.HRS)
		sig, err := crypto.Sign(forged.Digest[:], v.key)
		if err != nil {
			t.Fatal(err)
		}
		forged.Signature = sig
		planted := in
		planted.Records = append(append([]drill.Record(nil), in.Records...), forged)
		for _, x := range drill.Check(planted).Violations {
			if x.Kind == drill.KindDoubleSign && x.HRS == rec.HRS {
				return true
			}
		}
		return false
	}
	t.Error("self-check: no signature at all to plant a double signature next to")
	return false
}
