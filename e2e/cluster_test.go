package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/drill"
	"github.com/validator-fencing/fencing/internal/drill/faultproxy"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Regions of the topology.
const (
	regionA  = drill.RegionA
	regionB  = drill.RegionB
	regionC  = "region-c" // the etcd witness
	operator = "operator" // this process and fencectl: outside every region
	prefix   = "/fencing/"
)

var holders = []string{regionA, regionB}

// clusterOptions shape a topology.
type clusterOptions struct {
	// SidecarArgs, when set, adds flags to each sidecar's command line
	// (gate_test.go: the process gate's); it is called at every start.
	SidecarArgs func(v *validator, region string) []string

	Validators int
	Mode       string        // strict or lease
	TTL        time.Duration // sidecar lease TTL
	Margin     time.Duration // sidecar safety margin
	Interval   time.Duration // consensus step of the workload
	Seed       uint64
	// NoWorkload starts no drill workload: a real client (geth in
	// clique_test.go) is the only one asking the sidecars for signatures.
	NoWorkload bool
}

// cluster is a running hot-warm topology of separate processes.
type cluster struct {
	t    *testing.T
	o    clusterOptions
	dir  string
	net  *faultproxy.Network
	pids *faultproxy.PIDTable

	etcd     map[string]*proc // by region
	coord    map[string]*proc // by region
	sidecars []*proc          // validator i: [2i] region-a, [2i+1] region-b
	vals     []*validator

	etcdCli *clientv3.Client
	obs     *drill.Observer
	rec     *drill.Recorder
	drivers []*drill.Driver // like sidecars

	cancel  context.CancelFunc // of observer and workload
	wg      sync.WaitGroup
	closing atomic.Bool

	mu         sync.Mutex
	unexpected []string        // processes that exited without being killed
	armed      map[string]bool // sidecars to kill -9 at their next journal answer
	fired      chan string
	log        []string // what the harness did, with times
}

type validator struct {
	idx     int
	id      string
	key     *ecdsa.PrivateKey
	keyFile string
	chain   *drill.Chain
}

// newCluster starts the topology; everything stops when the test ends.
func newCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	if o.Validators == 0 {
		o.Validators = 1
	}
	if o.Mode == "" {
		o.Mode = "strict"
	}
	if o.TTL == 0 {
		o.TTL = 3 * time.Second
	}
	if o.Margin == 0 {
		o.Margin = time.Second
	}
	if o.Interval == 0 {
		o.Interval = 80 * time.Millisecond
	}
	c := &cluster{t: t, o: o, dir: t.TempDir(), etcd: map[string]*proc{}, coord: map[string]*proc{}, armed: map[string]bool{}, fired: make(chan string, 16)}
	c.pids = faultproxy.NewPIDTable()
	c.pids.Register(os.Getpid(), faultproxy.Source{Name: "e2e", Region: operator})
	c.net = faultproxy.NewNetwork(c.pids.Classify)
	c.net.SetHook(c.journalHook)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	t.Cleanup(c.close)

	// etcd: one member per region, each behind a client and a peer proxy.
	var initial []string
	for _, r := range []string{regionA, regionB, regionC} {
		name := "etcd-" + r[len(r)-1:]
		cp, err := c.net.Listen(name+"/client", r, "127.0.0.1:0", "")
		if err != nil {
			t.Fatal(err)
		}
		pp, err := c.net.Listen(name+"/peer", r, "127.0.0.1:0", "")
		if err != nil {
			t.Fatal(err)
		}
		c.etcd[r] = &proc{c: c, name: name, region: r, kind: "etcd", proxies: []*faultproxy.Proxy{cp, pp}}
		initial = append(initial, name+"="+pp.URL())
	}
	for _, p := range c.etcd {
		dir := filepath.Join(c.dir, p.name)
		p.args = func() []string {
			return []string{"--name", p.name, "--data-dir", dir, "--advertise-client", p.proxies[0].URL(), "--advertise-peer", p.proxies[1].URL(),
				"--initial-cluster", strings.Join(initial, ",")}
		}
	}
	c.parallel(func(p *proc) error { return p.start() }, c.etcdProcs()...)
	c.parallel(func(p *proc) error { return p.waitReady(60 * time.Second) }, c.etcdProcs()...)
	var err error
	c.etcdCli, err = clientv3.New(clientv3.Config{
		Endpoints: c.etcdURLs(regionA), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.obs = drill.NewObserver(c.etcdCli, prefix)
	from, err := c.obs.Now(ctx) // before any validator is registered
	if err != nil {
		t.Fatal(err)
	}
	c.wg.Go(func() { c.obs.Run(ctx, from) })

	// Coordinators in A and B, each pointed at every member (its own first).
	for _, r := range holders {
		px, err := c.net.Listen("coord-"+r[len(r)-1:]+"/api", r, "127.0.0.1:0", "")
		if err != nil {
			t.Fatal(err)
		}
		p := &proc{c: c, name: "coord-" + r[len(r)-1:], region: r, kind: "coordinator", proxies: []*faultproxy.Proxy{px}}
		eps := strings.Join(c.etcdURLs(r), ",")
		p.args = func() []string {
			return []string{"--listen", "127.0.0.1:0", "--etcd-endpoints", eps, "--etcd-timeout", "2s", "--reconcile-interval", "200ms", "--session-ttl", "2s"}
		}
		c.coord[r] = p
	}
	c.parallel(func(p *proc) error { return p.start() }, c.coord[regionA], c.coord[regionB])
	c.parallel(func(p *proc) error { return p.waitHealthy(30 * time.Second) }, c.coord[regionA], c.coord[regionB])

	// Validators: keys derived from the seed, registered on region-a.
	c.rec = drill.NewRecorder()
	for i := range o.Validators {
		var seed [16]byte
		binary.BigEndian.PutUint64(seed[:], o.Seed)
		binary.BigEndian.PutUint64(seed[8:], uint64(i))
		k, err := crypto.ToECDSA(crypto.Keccak256(seed[:], []byte("e2e validator key")))
		if err != nil {
			t.Fatal(err)
		}
		v := &validator{idx: i, id: crypto.PubkeyToAddress(k.PublicKey).Hex(), key: k, keyFile: filepath.Join(c.dir, fmt.Sprintf("v%d.key", i)), chain: drill.NewChain(1, o.Seed+uint64(i))}
		if err := os.WriteFile(v.keyFile, fmt.Appendf(nil, "%x\n", crypto.FromECDSA(k)), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err = c.api().AddValidator(ctx, api.AddValidatorRequest{Validator: fencing.ValidatorID(v.id), Holder: regionA, Operator: "e2e", Reason: "e2e onboarding"})
		cancel()
		if err != nil {
			t.Fatalf("AddValidator(%s) = %v", v.id, err)
		}
		c.vals = append(c.vals, v)
	}

	// Sidecars: vN-a active, vN-b standby; each lists its own region's
	// coordinator first.
	for _, v := range c.vals {
		for _, r := range holders {
			other := regionB
			if r == regionB {
				other = regionA
			}
			name := fmt.Sprintf("v%d-%s", v.idx, r[len(r)-1:])
			p := &proc{c: c, name: name, region: r, kind: "sidecar", validator: v, stateDir: filepath.Join(c.dir, name), margin: o.Margin}
			coords := c.coord[r].proxies[0].URL() + "," + c.coord[other].proxies[0].URL()
			p.args = func() []string {
				p.mu.Lock()
				margin := p.margin
				p.mu.Unlock()
				args := []string{"--coordinator", coords, "--holder", r, "--name", name, "--key", v.keyFile, "--listen", "127.0.0.1:0",
					"--state-dir", p.stateDir, "--mode", o.Mode, "--lease-ttl", o.TTL.String(), "--safety-margin", margin.String(), "--log-level", "debug"}
				if o.SidecarArgs != nil {
					args = append(args, o.SidecarArgs(v, r)...)
				}
				return args
			}
			c.sidecars = append(c.sidecars, p)
		}
	}
	c.parallel(func(p *proc) error { return p.start() }, c.sidecars...)
	for _, v := range c.vals {
		if err := c.sidecar(v, regionA).waitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}

	// The workload: both regions' validators ask for every HRS.
	for _, v := range c.vals {
		if o.NoWorkload {
			break
		}
		c.wg.Go(func() { v.chain.Run(ctx, o.Interval) })
		for j, r := range holders {
			p := c.sidecar(v, r)
			d := &drill.Driver{Validator: v.id, Region: r, Sidecar: p.name, URL: p.URL, Chain: v.chain, Rec: c.rec, Seed: o.Seed*1000 + uint64(2*v.idx+j), Replay: 0.04, Retry: 0.04}
			c.drivers = append(c.drivers, d)
			c.wg.Go(func() { d.Run(ctx) })
		}
	}
	c.logf("topology up: 3 etcd members, 2 coordinators, %d sidecars (%s mode, TTL %s, margin %s)", len(c.sidecars), o.Mode, o.TTL, o.Margin)
	return c
}

func (c *cluster) etcdProcs() []*proc {
	return []*proc{c.etcd[regionA], c.etcd[regionB], c.etcd[regionC]}
}

// etcdURLs lists the members' client proxies, first's own first.
func (c *cluster) etcdURLs(first string) []string {
	urls := []string{c.etcd[first].proxies[0].URL()}
	for _, r := range []string{regionA, regionB, regionC} {
		if r != first {
			urls = append(urls, c.etcd[r].proxies[0].URL())
		}
	}
	return urls
}

func (c *cluster) sidecar(v *validator, region string) *proc {
	if region == regionA {
		return c.sidecars[2*v.idx]
	}
	return c.sidecars[2*v.idx+1]
}

func (c *cluster) driver(v *validator, region string) *drill.Driver {
	if region == regionA {
		return c.drivers[2*v.idx]
	}
	return c.drivers[2*v.idx+1]
}

func (c *cluster) all() []*proc {
	out := append(c.etcdProcs(), c.coord[regionA], c.coord[regionB])
	return append(out, c.sidecars...)
}

// parallel runs f on every proc at once and fails the test on any error.
func (c *cluster) parallel(f func(*proc) error, ps ...*proc) {
	c.t.Helper()
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() { errs[i] = f(p) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) logf(format string, args ...any) {
	line := time.Now().Format("15:04:05.000") + "  " + fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.log = append(c.log, line)
	c.mu.Unlock()
	if testing.Verbose() {
		fmt.Println("e2e: " + line)
	}
}

// coordinatorURLs orders the coordinators for an operator: reachable and
// running ones first. (api.Client spends its whole timeout on a blackholed
// first URL, so the operator picks, as a person would.)
func (c *cluster) coordinatorURLs() []string {
	iso := c.net.Isolated()
	var good, bad []string
	for _, r := range holders {
		p := c.coord[r]
		if _, cut := iso[r]; cut || !p.running() {
			bad = append(bad, p.proxies[0].URL())
		} else {
			good = append(good, p.proxies[0].URL())
		}
	}
	return append(good, bad...)
}

// api is an operator client.
func (c *cluster) api() *api.Client {
	cl, err := api.NewClient(c.coordinatorURLs(), api.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// fencectl runs the CLI as an operator would and returns its exit code and
// output.
func (c *cluster) fencectl(ctx context.Context, args ...string) (int, string, string) {
	full := append([]string{"--coordinator", strings.Join(c.coordinatorURLs(), ","), "--request-timeout", "10s"}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "fencectl"), full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return -1, "", err.Error()
	}
	c.pids.Register(cmd.Process.Pid, faultproxy.Source{Name: "fencectl", Region: operator})
	err := cmd.Wait()
	c.pids.Forget(cmd.Process.Pid)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return code, out.String(), errb.String()
}

// bumpResult is one operator bump as measured.
type bumpResult struct {
	From, To string
	Code     int
	Took     time.Duration // until every validator was active on To
	Results  []fencing.BumpResult
	Err      string
}

// bump moves every validator held by from to to with fencectl, and waits
// until the observer saw all of them active on to. onRevoke, if set, runs
// once the first revoke committed (to kill a coordinator mid-bump).
func (c *cluster) bump(from, to string, onRevoke func()) bumpResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res := bumpResult{From: from, To: to}
	done := make(chan struct{})
	if onRevoke != nil {
		go func() {
			err := c.obs.WaitUntil(ctx, func(l map[string]drill.EpochChange) bool {
				for _, v := range c.vals {
					if e := l[v.id]; e.Epoch.Holder == from && e.Epoch.State != fencing.StateActive {
						return true
					}
				}
				return false
			})
			select {
			case <-done:
			default:
				if err == nil {
					onRevoke()
				}
			}
		}()
	}
	allOn := func(l map[string]drill.EpochChange) bool {
		for _, v := range c.vals {
			if e := l[v.id]; e.Epoch.State != fencing.StateActive || e.Epoch.Holder != to {
				return false
			}
		}
		return true
	}
	var err error
	for attempt := 0; ; attempt++ {
		// A person re-runs the bump when fencectl says the coordinator was
		// lost: validators already moved or with a bump under way are
		// skipped by --from.
		code, out, errOut := c.fencectl(ctx, "--output", "json", "bump", "--from", from, "--to", to, "--comment", "e2e", "--yes", "--reason", fmt.Sprintf("e2e failover %s -> %s", from, to), "--timeout", "20s")
		if attempt == 0 {
			close(done)
			res.Code = code
			if code == 0 || code == 4 {
				_ = json.Unmarshal([]byte(out), &res.Results)
			}
			if code != 0 {
				res.Err = strings.TrimSpace(errOut)
			}
		}
		wait := 3 * time.Second // fencectl failed: look again soon
		if code == 0 || code == 4 {
			wait = 25 * time.Second
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		err = c.obs.WaitUntil(wctx, allOn)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		c.logf("operator: bump %s -> %s not done after attempt %d (fencectl exit %d); running it again", from, to, attempt+1, code)
	}
	res.Took = time.Since(start)
	if err != nil {
		res.Err = strings.TrimSpace(res.Err + "; not every validator active on " + to + " within 90s")
		res.Code = -2
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, status, serr := c.fencectl(sctx, "status")
		cancel()
		c.logf("stuck bump %s -> %s; fencectl status:\n%s%s", from, to, status, serr)
		for _, r := range holders {
			c.logf("%s log tail:%s", c.coord[r].name, c.coord[r].logTail(40))
		}
	}
	return res
}

// holder is the region holding v's epoch now, as etcd says.
func (c *cluster) holder(v *validator) string {
	if e, ok := c.obs.Latest(v.id); ok {
		return e.Epoch.Holder
	}
	return regionA
}

// journalHook kills an armed sidecar the moment the coordinator answers its
// journal request: the entry is committed in etcd, the sidecar never hears
// so and never replies to its validator.
func (c *cluster) journalHook(src faultproxy.Source, request string) bool {
	if !strings.HasPrefix(request, "POST /v1/journal") {
		return false
	}
	c.mu.Lock()
	armed := c.armed[src.Name]
	delete(c.armed, src.Name)
	c.mu.Unlock()
	if !armed {
		return false
	}
	for _, p := range c.sidecars {
		if p.name == src.Name {
			p.signal(syscall.SIGKILL, true)
		}
	}
	select {
	case c.fired <- src.Name:
	default:
	}
	return true
}

// killAtJournal arms the hook for p and waits (up to wait) until it fired;
// false means p journaled nothing meanwhile (it was killed anyway).
func (c *cluster) killAtJournal(p *proc, wait time.Duration) bool {
	c.mu.Lock()
	c.armed[p.name] = true
	c.mu.Unlock()
	timeout := time.After(wait)
	for {
		select {
		case name := <-c.fired:
			if name == p.name {
				p.waitExit()
				return true
			}
		case <-timeout:
			c.mu.Lock()
			delete(c.armed, p.name)
			c.mu.Unlock()
			p.kill()
			return false
		}
	}
}

// collect gathers everything the checker needs.
func (c *cluster) collect() drill.CheckInput {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := drill.CheckInput{Mode: c.o.Mode, Records: c.rec.Records(), Addresses: map[string]common.Address{}, Epochs: c.obs.Epochs(), Watermarks: c.obs.Watermarks(), Local: map[string]audit.LocalJournal{}}
	for _, v := range c.vals {
		in.Addresses[v.id] = crypto.PubkeyToAddress(v.key.PublicKey)
	}
	var err error
	for attempt := 0; ; attempt++ {
		if in.Journal, err = drill.ReadJournal(ctx, c.etcdCli, prefix); err == nil {
			if in.Events, err = c.api().Events(ctx, "", 0); err == nil {
				break
			}
		}
		if attempt == 5 {
			c.t.Fatalf("read the journal and history: %v", err)
		}
		time.Sleep(time.Second)
	}
	for _, p := range c.sidecars {
		lj, err := audit.LoadLocalJournal(p.stateDir)
		if err != nil {
			c.t.Errorf("local journal of %s: %v", p.name, err)
		}
		in.Local[p.name] = lj
	}
	return in
}

// settle ends every fault: heal the network, continue paused processes,
// restart dead ones, and wait until every validator's holder signs again.
func (c *cluster) settle() {
	c.t.Helper()
	c.net.Heal()
	for _, p := range c.all() {
		p.signal(syscall.SIGCONT, false)
		if !p.running() {
			if err := p.start(); err != nil {
				c.t.Errorf("restart %s: %v", p.name, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mark := c.rec.Len()
	for _, v := range c.vals {
		h := c.holder(v)
		if _, err := c.rec.WaitFor(ctx, mark, func(r drill.Record) bool { return r.Validator == v.id && r.Region == h && r.Outcome == drill.Signed }); err != nil {
			answers := map[string]int{}
			for _, r := range c.rec.Records()[mark:] {
				if r.Validator == v.id {
					answers[r.Region+" "+string(r.Outcome)+" "+string(r.Code)]++
				}
			}
			c.t.Errorf("after the faults ended, %s's holder %s did not sign within 60s; answers since: %v; %s log tail:%s",
				v.id, h, answers, c.sidecar(v, h).name, c.sidecar(v, h).logTail(25))
		}
	}
}

// stopWorkload stops the validators and the observer.
func (c *cluster) stopWorkload() {
	c.cancel()
	c.wg.Wait()
}

// close kills every process and closes every proxy.
func (c *cluster) close() {
	c.closing.Store(true)
	c.stopWorkload()
	if c.etcdCli != nil {
		_ = c.etcdCli.Close()
	}
	for _, p := range c.all() {
		if p != nil {
			p.kill()
		}
	}
	for _, p := range c.all() {
		if p == nil {
			continue
		}
		for _, px := range p.proxies {
			px.Close()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.unexpected {
		c.t.Errorf("process exited without being killed: %s", u)
	}
}

// proc is one child process, restartable.
type proc struct {
	c         *cluster
	name      string
	region    string
	kind      string // etcd, coordinator, sidecar
	args      func() []string
	proxies   []*faultproxy.Proxy // etcd: client, peer; coordinator: API
	validator *validator
	stateDir  string

	mu        sync.Mutex
	margin    time.Duration // sidecar: --safety-margin (a skewed clock)
	cmd       *exec.Cmd
	addr      string
	starts    int
	killing   bool
	reaped    bool // cmd was waited for: its pid may belong to another program now
	exited    chan struct{}
	listening chan struct{}
	ready     chan struct{}
}

var (
	listenRE = regexp.MustCompile(`listening: addr=([0-9.]+:[0-9]+)`)
	etcdRE   = regexp.MustCompile(`^listening client=([0-9.]+:[0-9]+) peer=([0-9.]+:[0-9]+)`)
)

func (p *proc) binary() string {
	switch p.kind {
	case "etcd":
		return "fence-etcd"
	case "coordinator":
		return "fence-coordinator"
	}
	return "fence-sidecar"
}

// start starts the process and waits until it listens.
func (p *proc) start() error {
	p.mu.Lock()
	p.starts++
	f, err := os.OpenFile(filepath.Join(p.c.dir, p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	args := p.args
	p.mu.Unlock()
	argv := args()
	fmt.Fprintf(f, "=== %s start %d at %s: %s %s\n", p.name, p.starts, time.Now().Format(time.RFC3339Nano), p.binary(), strings.Join(argv, " "))
	listening, ready, exited := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var onceL, onceR sync.Once
	lw := &lineWriter{f: f, onLine: func(line string) {
		if m := listenRE.FindStringSubmatch(line); m != nil {
			onceL.Do(func() {
				p.mu.Lock()
				p.addr = m[1]
				p.mu.Unlock()
				if len(p.proxies) > 0 {
					p.proxies[0].SetTarget(m[1])
				}
				close(listening)
			})
		}
		if m := etcdRE.FindStringSubmatch(line); m != nil {
			onceL.Do(func() {
				p.mu.Lock()
				p.addr = m[1]
				p.mu.Unlock()
				p.proxies[0].SetTarget(m[1])
				p.proxies[1].SetTarget(m[2])
				close(listening)
			})
		}
		if line == "ready" {
			onceR.Do(func() { close(ready) })
		}
	}}
	cmd := exec.Command(filepath.Join(bin, p.binary()), argv...)
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	pid := cmd.Process.Pid
	p.c.pids.Register(pid, faultproxy.Source{Name: p.name, Region: p.region})
	p.mu.Lock()
	p.cmd, p.exited, p.listening, p.ready, p.killing, p.reaped = cmd, exited, listening, ready, false, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.reaped = true
		expected := p.killing || p.c.closing.Load()
		p.mu.Unlock()
		lw.flush()
		f.Close()
		p.c.pids.Forget(pid)
		if !expected {
			p.c.mu.Lock()
			p.c.unexpected = append(p.c.unexpected, fmt.Sprintf("%s (%v); see %s", p.name, err, filepath.Join(p.c.dir, p.name+".log")))
			p.c.mu.Unlock()
		}
		close(exited)
	}()
	select {
	case <-listening:
		return nil
	case <-exited:
		return fmt.Errorf("%s exited before listening: %s", p.name, p.logTail(10))
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not listen within 30s: %s", p.name, p.logTail(10))
	}
}

// waitReady waits for an etcd member's "ready" line.
func (p *proc) waitReady(d time.Duration) error {
	p.mu.Lock()
	ready, exited := p.ready, p.exited
	p.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-exited:
		return fmt.Errorf("%s exited: %s", p.name, p.logTail(10))
	case <-time.After(d):
		return fmt.Errorf("%s not ready within %s: %s", p.name, d, p.logTail(10))
	}
}

// waitHealthy polls /readyz (a coordinator that reaches etcd, a sidecar
// that holds its lease).
func (p *proc) waitHealthy(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if u := p.URL(); u != "" {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+"/readyz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					cancel()
					return nil
				}
			}
			cancel()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s: %s", p.name, d, p.logTail(10))
}

// URL is the process's own base URL ("" when it is not running).
func (p *proc) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addr == "" || p.exited == nil {
		return ""
	}
	select {
	case <-p.exited:
		return ""
	default:
	}
	return "http://" + p.addr
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// signal sends sig to the process group; kill marks the exit as expected.
// A process already waited for is not signalled: its pid, and so its group
// id, may have been reused by another program.
func (p *proc) signal(sig syscall.Signal, kill bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil || p.reaped {
		return
	}
	if kill {
		p.killing = true
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// kill is kill -9 of the process group, waiting for the exit.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL, true)
	p.waitExit()
}

func (p *proc) waitExit() {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		p.c.t.Errorf("%s did not exit within 10s of SIGKILL", p.name)
	}
}

// pause stops the process (SIGSTOP) and returns once every thread of it is
// stopped: the signal is delivered asynchronously, and a request sent in
// between would be answered by a process the test believes stopped.
func (p *proc) pause() {
	p.signal(syscall.SIGSTOP, false)
	p.mu.Lock()
	pid := 0
	if p.cmd != nil && p.cmd.Process != nil {
		pid = p.cmd.Process.Pid
	}
	p.mu.Unlock()
	if pid == 0 {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for !allThreadsStopped(pid) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// allThreadsStopped reports whether every thread of pid is in state T (or
// the process is gone).
func allThreadsStopped(pid int) bool {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		// The state follows the command name in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}
func (p *proc) resume() { p.signal(syscall.SIGCONT, false) }

// logTail is the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(p.c.dir, p.name+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n    " + strings.Join(lines, "\n    ")
}

// lineWriter copies a process's output to its log file and hands each
// complete line to onLine.
type lineWriter struct {
	mu     sync.Mutex
	f      *os.File
	buf    []byte
	onLine func(string)
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.f.Write(b)
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		w.onLine(line)
	}
	if len(w.buf) > 64<<10 {
		w.buf = w.buf[:0]
	}
	return len(b), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.onLine(string(w.buf))
		w.buf = nil
	}
}
