package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/consensus"
	"github.com/validator-fencing/fencing/internal/drill/faultproxy"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// The process gate (sidecar/gate.go, docs/gate.md) with real geth v1.13.15
// sealing Clique from its own keystore: each region's fence-sidecar runs its
// geth, as a follower (no key, no mining) or as the validator (the keystore
// written on /dev/shm, --mine --unlock), and kills it on revoke, before its
// deadline and on any doubt.

// gateNode is one region's geth as its sidecar runs it.
type gateNode struct {
	region   string
	name     string // also the vanity of the blocks it builds (--miner.extradata)
	dataDir  string
	keyDir   string // on /dev/shm: the gate writes the keystore here
	password string
	p2pPort  int
	httpPort int
	nodeKey  *ecdsa.PrivateKey
	peers    []*gateNode // static peers

	once    sync.Once
	initErr error
}

func (n *gateNode) url() string     { return fmt.Sprintf("http://127.0.0.1:%d", n.httpPort) }
func (n *gateNode) keyFile() string { return filepath.Join(n.keyDir, "validator.json") }
func (n *gateNode) enode() string {
	return fmt.Sprintf("enode://%x@127.0.0.1:%d", crypto.FromECDSAPub(&n.nodeKey.PublicKey)[1:], n.p2pPort)
}

// gateTopo is the e2e cluster in lease mode with a geth per region under
// its sidecar's gate, and a watcher of both chains.
type gateTopo struct {
	t     *testing.T
	geth  string
	c     *cluster
	v     *validator
	nodes map[string]*gateNode
	w     *chainWatch
}

type gateTopoOptions struct {
	Peered bool // static peers: each node dials the other
}

// freePort returns a port nothing listens on, below the kernel's ephemeral
// range (32768 and up on Linux), so that no connection's local port takes
// it between this check and geth's bind; taken lists ports already handed
// out.
func freePort(t *testing.T, taken map[int]bool) int {
	t.Helper()
	for range 1000 {
		p := 20000 + mrand.IntN(12000)
		if taken[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		taken[p] = true
		return p
	}
	t.Fatal("no free port between 20000 and 32000")
	return 0
}

func newGateTopo(t *testing.T, o gateTopoOptions) *gateTopo {
	t.Helper()
	g := &gateTopo{t: t, geth: gethBinary(t), nodes: map[string]*gateNode{}}
	taken := map[int]bool{}
	for _, r := range holders {
		keyDir, err := os.MkdirTemp("/dev/shm", "fence-gate-e2e-")
		if err != nil {
			t.Fatalf("a key directory on /dev/shm (tmpfs): %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(keyDir) })
		nk, err := crypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		n := &gateNode{region: r, name: "geth-" + r[len(r)-1:], dataDir: filepath.Join(t.TempDir(), "geth"), keyDir: keyDir, p2pPort: freePort(t, taken), httpPort: freePort(t, taken), nodeKey: nk}
		n.password = filepath.Join(filepath.Dir(n.dataDir), "password")
		g.nodes[r] = n
	}
	if o.Peered {
		g.nodes[regionA].peers = []*gateNode{g.nodes[regionB]}
		g.nodes[regionB].peers = []*gateNode{g.nodes[regionA]}
	}
	// TTL 9s: renewals time out after the renew interval (3s), and in lease
	// mode the first failed renewal kills the validator; on a loaded 2-core
	// machine etcd and the coordinator took over 1s (TTL 3s) often enough to
	// make the gate restart geth for nothing.
	g.c = newCluster(t, clusterOptions{Mode: "lease", TTL: 9 * time.Second, NoWorkload: true, Seed: 7, SidecarArgs: g.sidecarArgs})
	g.v = g.c.vals[0]
	t.Cleanup(g.explainFailure)
	g.w = watchChains(t, crypto.PubkeyToAddress(g.v.key.PublicKey), g.nodes[regionA], g.nodes[regionB])
	return g
}

// sidecarArgs are the gate flags of region's sidecar; the first call
// initialises its geth data directory (the genesis names v as the signer).
func (g *gateTopo) sidecarArgs(v *validator, region string) []string {
	n := g.nodes[region]
	n.once.Do(func() { n.initErr = g.initNode(n, crypto.PubkeyToAddress(v.key.PublicKey)) })
	if n.initErr != nil {
		g.t.Errorf("geth %s: %v", n.name, n.initErr)
		return []string{"--gate-exec", "/nonexistent"}
	}
	addr := crypto.PubkeyToAddress(v.key.PublicKey).Hex()
	exec := []string{g.geth, "--datadir", n.dataDir, "--networkid", strconv.Itoa(cliqueChainID), "--syncmode", "full", "--gcmode", "archive",
		"--port", strconv.Itoa(n.p2pPort), "--nodiscover", "--nat", "none", "--ipcdisable", "--authrpc.port", "0",
		"--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(n.httpPort), "--http.api", "eth,net,admin",
		"--cache", "64", "--verbosity", "3"}
	if len(n.peers) > 0 {
		exec = append(exec, "--config", filepath.Join(filepath.Dir(n.dataDir), "geth.toml"))
	}
	validatorArgs := []string{"--mine", "--miner.etherbase", addr, "--miner.extradata", n.name,
		"--keystore", n.keyDir, "--unlock", addr, "--password", n.password, "--allow-insecure-unlock"}
	j := func(words []string) string { b, _ := json.Marshal(words); return string(b) }
	return []string{
		"--gate-exec", j(exec), "--gate-validator-args", j(validatorArgs),
		"--gate-key-file", n.keyFile(), "--gate-key-format", "keystore", "--gate-password-file", n.password,
		"--gate-rpc", n.url(), "--gate-kill-before", "1s", "--gate-poll", "100ms", "--gate-stop-timeout", "20s", "--gate-head-stale", "20s",
	}
}

// initNode writes the genesis (a block a second, v the only signer), runs
// geth init, and writes the node key, the password and the static peers.
func (g *gateTopo) initNode(n *gateNode, signer common.Address) error {
	extra := append(make([]byte, 32), signer.Bytes()...)
	extra = append(extra, make([]byte, 65)...)
	genesis := map[string]any{
		"config": map[string]any{
			"chainId": cliqueChainID, "homesteadBlock": 0, "eip150Block": 0, "eip155Block": 0, "eip158Block": 0,
			"byzantiumBlock": 0, "constantinopleBlock": 0, "petersburgBlock": 0, "istanbulBlock": 0, "berlinBlock": 0, "londonBlock": 0,
			"clique": map[string]any{"period": 1, "epoch": 30000},
		},
		"difficulty": "0x1", "gasLimit": "0x1c9c380", "extraData": hexutil.Encode(extra), "alloc": map[string]any{},
	}
	dir := filepath.Dir(n.dataDir)
	b, _ := json.Marshal(genesis)
	gen := filepath.Join(dir, "genesis.json")
	if err := os.WriteFile(gen, b, 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(g.geth, "--datadir", n.dataDir, "init", gen).CombinedOutput(); err != nil {
		return fmt.Errorf("geth init: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(n.dataDir, "geth", "nodekey"), fmt.Appendf(nil, "%x", crypto.FromECDSA(n.nodeKey)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(n.password, []byte("e2e-gate\n"), 0o600); err != nil {
		return err
	}
	if len(n.peers) > 0 {
		var enodes []string
		for _, p := range n.peers {
			enodes = append(enodes, strconv.Quote(p.enode()))
		}
		toml := "[Node.P2P]\nStaticNodes = [" + strings.Join(enodes, ", ") + "]\n"
		if err := os.WriteFile(filepath.Join(dir, "geth.toml"), []byte(toml), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// gateCall is one JSON-RPC call to a node with a short deadline.
func gateCall(url string, result any, method string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := rpc.DialContext(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.CallContext(ctx, result, method, args...)
}

func gateHead(n *gateNode) (uint64, error) {
	var h hexutil.Uint64
	err := gateCall(n.url(), &h, "eth_blockNumber")
	return uint64(h), err
}

// seenBlock is one block a node served, as the watcher saw it.
type seenBlock struct {
	Number  uint64
	Hash    common.Hash
	Builder string // the vanity: which geth built it
	Time    uint64 // header timestamp
	Signer  common.Address
	Node    string // first node it was seen on
	Seen    time.Time
}

// chainWatch reads every block both nodes serve, every 100ms, and keeps
// every one it ever saw: a block later replaced by a reorganisation stays
// on record, so a key that sealed two blocks at one height is caught even if
// the audit, which reads canonical chains at the end, could no longer see
// both.
type chainWatch struct {
	signer common.Address
	nodes  []*gateNode
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	blocks map[uint64]map[common.Hash]seenBlock
	next   map[string]uint64 // per node: first height not read yet
}

func watchChains(t *testing.T, signer common.Address, nodes ...*gateNode) *chainWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &chainWatch{signer: signer, nodes: nodes, cancel: cancel, done: make(chan struct{}), blocks: map[uint64]map[common.Hash]seenBlock{}, next: map[string]uint64{}}
	go w.run(ctx)
	t.Cleanup(w.stop)
	return w
}

func (w *chainWatch) stop() {
	w.cancel()
	<-w.done
}

func (w *chainWatch) run(ctx context.Context) {
	defer close(w.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range w.nodes {
			w.poll(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll reads n's blocks from three below the last height read (to see
// replacements) to its head.
func (w *chainWatch) poll(n *gateNode) {
	head, err := gateHead(n)
	if err != nil {
		return
	}
	w.mu.Lock()
	from := w.next[n.name]
	w.mu.Unlock()
	from = max(from, 4) - 3
	for h := from; h <= head && h < from+200; h++ {
		var raw json.RawMessage
		if err := gateCall(n.url(), &raw, "eth_getBlockByNumber", hexutil.Uint64(h), false); err != nil || string(raw) == "null" {
			return
		}
		hdr, hash, err := consensus.DecodeHeaderJSON(raw)
		if err != nil {
			return
		}
		sealed, err := consensus.VerifyHeader(hdr, hash, consensus.ConsensusClique)
		if err != nil {
			return
		}
		vanity := hdr.Extra
		if len(vanity) > 32 {
			vanity = vanity[:32]
		}
		b := seenBlock{Number: h, Hash: hash, Builder: strings.TrimRight(string(vanity), "\x00"), Time: hdr.Time, Signer: sealed.Proposer, Node: n.name, Seen: time.Now()}
		w.mu.Lock()
		if w.blocks[h] == nil {
			w.blocks[h] = map[common.Hash]seenBlock{}
		}
		if _, ok := w.blocks[h][hash]; !ok {
			w.blocks[h][hash] = b
		}
		w.next[n.name] = max(w.next[n.name], h+1)
		w.mu.Unlock()
	}
}

// duplicates lists the heights at which the watched key sealed two
// different blocks.
func (w *chainWatch) duplicates() map[uint64][]seenBlock {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[uint64][]seenBlock{}
	for h, bs := range w.blocks {
		var mine []seenBlock
		for _, b := range bs {
			if b.Signer == w.signer {
				mine = append(mine, b)
			}
		}
		if len(mine) > 1 {
			out[h] = mine
		}
	}
	return out
}

// built returns the blocks builder built, by height.
func (w *chainWatch) built(builder string) []seenBlock {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []seenBlock
	for _, bs := range w.blocks {
		for _, b := range bs {
			if b.Builder == builder {
				out = append(out, b)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}

// gateEvent is a gate log line of a sidecar.
type gateEvent struct {
	At   time.Time
	Msg  string // "client started", "validator killed; key file removed", ...
	KV   map[string]string
	Line string
}

var gateLogRE = regexp.MustCompile(`^(\S+) \[[A-Z]+\]\s+fence-sidecar\.gate: ([^:]+): (.*)$`)
var kvRE = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)

// gateEvents reads the gate's log lines from p's log file.
func gateEvents(t *testing.T, p *proc) []gateEvent {
	t.Helper()
	f, err := os.Open(filepath.Join(p.c.dir, p.name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []gateEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := gateLogRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		at, err := time.Parse("2006-01-02T15:04:05.000Z07:00", m[1])
		if err != nil {
			continue
		}
		e := gateEvent{At: at, Msg: m[2], KV: map[string]string{}, Line: sc.Text()}
		for _, kv := range kvRE.FindAllStringSubmatch(m[3], -1) {
			e.KV[kv[1]] = strings.Trim(kv[2], `"`)
		}
		out = append(out, e)
	}
	return out
}

// gateFind returns the first event of p's gate after after whose message is
// msg and whose keys include kv (pairs), or ok false.
func gateFind(t *testing.T, p *proc, after time.Time, msg string, kv ...string) (gateEvent, bool) {
	t.Helper()
	for _, e := range gateEvents(t, p) {
		if e.At.Before(after) || e.Msg != msg {
			continue
		}
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			if e.KV[kv[i]] != kv[i+1] {
				match = false
			}
		}
		if match {
			return e, true
		}
	}
	return gateEvent{}, false
}

func (g *gateTopo) waitGate(p *proc, after time.Time, within time.Duration, msg string, kv ...string) gateEvent {
	g.t.Helper()
	var e gateEvent
	waitCond(g.t, within, fmt.Sprintf("%s's gate to log %q %v", p.name, msg, kv), func() (bool, error) {
		var ok bool
		e, ok = gateFind(g.t, p, after, msg, kv...)
		return ok, nil
	})
	return e
}

// metric reads one series of p's /metrics (-1 if absent).
func metric(p *proc, name, label string) float64 {
	resp, err := http.Get(p.URL() + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, label) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// gateAudit runs `fencectl audit chain` over both nodes as an operator.
func (g *gateTopo) gateAudit() (int, *audit.Report) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, out, errOut := g.c.fencectl(ctx, "audit", "chain", "--output", "json", "--timeout", "10s", "--consensus", "clique", "--rpc", g.nodes[regionA].url(), "--rpc", g.nodes[regionB].url())
	var rep audit.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		g.t.Fatalf("fencectl audit chain exited %d without a JSON report (%v):\n%s\n%s", code, err, out, errOut)
	}
	return code, &rep
}

// checkHandover checks what every handover must leave: no height sealed
// twice by the key (watcher and audit), the old holder's last block before
// the new holder's first, the old holder's client killed and its key file
// removed before the new holder's client started as validator.
func (g *gateTopo) checkHandover(since time.Time) {
	g.t.Helper()
	killed, ok := gateFind(g.t, g.c.sidecar(g.v, regionA), since, "validator killed; key file removed")
	if !ok {
		g.t.Fatalf("%s's gate did not kill its validator", g.c.sidecar(g.v, regionA).name)
	}
	g.checkHandoverGone(since, killed.At, "killed by its gate ("+killed.KV["reason"]+")")
}

// checkHandoverGone is checkHandover with the time region-a's client was
// gone and how it ended.
func (g *gateTopo) checkHandoverGone(since, goneAt time.Time, how string) {
	t := g.t
	t.Helper()
	a, b := g.nodes[regionA], g.nodes[regionB]
	sa, sb := g.c.sidecar(g.v, regionA), g.c.sidecar(g.v, regionB)
	if d := g.w.duplicates(); len(d) > 0 {
		for h, bs := range d {
			t.Errorf("height %d sealed twice by the key: %+v", h, bs)
		}
	}
	builtA, builtB := g.w.built(a.name), g.w.built(b.name)
	if len(builtA) == 0 || len(builtB) == 0 {
		t.Fatalf("blocks built by %s: %d, by %s: %d; want both", a.name, len(builtA), b.name, len(builtB))
	}
	lastA, firstB := builtA[len(builtA)-1], builtB[0]
	if lastA.Number >= firstB.Number || lastA.Time >= firstB.Time {
		t.Errorf("%s's last block %d (time %d) is not before %s's first %d (time %d)", a.name, lastA.Number, lastA.Time, b.name, firstB.Number, firstB.Time)
	}
	t.Logf("%s's last block %d (time %d), %s's first %d (time %d), %d height(s) apart", a.name, lastA.Number, lastA.Time, b.name, firstB.Number, firstB.Time, firstB.Number-lastA.Number)
	started, ok := gateFind(t, sb, since, "client started", "role", "validator")
	if !ok {
		t.Fatalf("%s's gate did not start its validator", sb.name)
	}
	if !goneAt.Before(started.At) {
		t.Errorf("%s started its validator at %s, before %s's was gone at %s", sb.name, started.At.Format("15:04:05.000"), sa.name, goneAt.Format("15:04:05.000"))
	}
	if w, _ := strconv.ParseUint(started.KV["floor"], 10, 64); w == 0 || w > lastA.Number {
		t.Errorf("%s started at floor %q; want the height %s reached (>0, <= its last block %d)", sb.name, started.KV["floor"], a.name, lastA.Number)
	}
	if _, err := os.Lstat(a.keyFile()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s's key file %s is there after the handover (%v)", a.name, a.keyFile(), err)
	}
	t.Logf("%s gone at %s (%s); %s started as validator at %s (floor %s, head %s), %s later", a.name, goneAt.Format("15:04:05.000"), how, sb.name, started.At.Format("15:04:05.000"), started.KV["floor"], started.KV["head"], started.At.Sub(goneAt).Round(time.Millisecond))
	// Both nodes past the handover, then the operator's audit.
	waitCond(t, time.Minute, "both nodes 3 blocks past the handover", func() (bool, error) {
		for _, n := range []*gateNode{a, b} {
			if h, err := gateHead(n); err != nil || h < firstB.Number+3 {
				return false, err
			}
		}
		return true, nil
	})
	if testing.Verbose() {
		for _, p := range []*proc{sa, sb} {
			for _, e := range gateEvents(t, p) {
				if !e.At.Before(since.Add(-time.Second)) {
					t.Logf("  %s: %s", p.name, e.Line)
				}
			}
		}
	}
	code, rep := g.gateAudit()
	if code != 0 || rep.DuplicateCount() != 0 {
		t.Errorf("fencectl audit chain over both nodes exited %d with %d duplicate(s): %+v", code, rep.DuplicateCount(), rep.Duplicates)
	} else {
		t.Logf("fencectl audit chain --rpc %s --rpc %s: exit 0, %d signatures", a.name, b.name, rep.Signatures)
	}
}

// A cooperative bump with the gate: region-a's client is killed on the
// revoke and its key removed before the release; region-b's follower,
// peered and synced, reaches the watermark at once and becomes the
// validator; the chain goes on.
func TestGateCooperativeBump(t *testing.T) {
	g := newGateTopo(t, gateTopoOptions{Peered: true})
	g.waitFollowing(5)
	start := time.Now()
	res := g.c.bump(regionA, regionB, nil)
	if res.Code == -2 {
		t.Fatalf("bump: %s", res.Err)
	}
	first := g.waitBuilt(regionB)
	sa, sb := g.c.sidecar(g.v, regionA), g.c.sidecar(g.v, regionB)
	killed, _ := gateFind(t, sa, start, "validator killed; key file removed")
	started, _ := gateFind(t, sb, start, "client started", "role", "validator")
	t.Logf("bump with the gate: fencectl bump until active on region-b %s; revoke to region-a's kill %s; to region-b's validator start %s; to region-b's first block (seen) %s",
		res.Took.Round(time.Millisecond), killed.At.Sub(start).Round(time.Millisecond), started.At.Sub(start).Round(time.Millisecond), first.Seen.Sub(start).Round(time.Millisecond))
	if killed.KV["reason"] != "revoked" {
		t.Errorf("region-a's client killed for %q, want revoked (the epoch watch)", killed.KV["reason"])
	}
	g.checkHandover(start)
}

// waitFollowing waits until region-a's geth built n blocks and region-b's
// follower has them.
func (g *gateTopo) waitFollowing(n uint64) {
	g.t.Helper()
	waitCond(g.t, 2*time.Minute, fmt.Sprintf("geth-b following geth-a's chain to height %d", n), func() (bool, error) {
		h, err := gateHead(g.nodes[regionB])
		return h >= n && uint64(len(g.w.built(g.nodes[regionA].name))) >= n, err
	})
}

// waitBuilt waits for the first block region's geth built and returns it.
func (g *gateTopo) waitBuilt(region string) seenBlock {
	g.t.Helper()
	var first seenBlock
	waitCond(g.t, time.Minute, "a block built by "+g.nodes[region].name, func() (bool, error) {
		bs := g.w.built(g.nodes[region].name)
		if len(bs) > 0 {
			first = bs[0]
		}
		return len(bs) > 0, nil
	})
	return first
}

// The partitioned bump: region-a's sidecar is cut off from every
// coordinator, blackholed (renewals hang until they time out) or dropped
// (refused at once); etcd and the coordinators are untouched, and so is
// the p2p link between the geth nodes. Its gate kills geth-a at the kill
// time (no renewal moved the deadline) or at the first failed renewal,
// whichever comes first, before the lease expires in etcd; the operator's
// bump waits out the lease and grants region-b, whose follower is at the
// watermark.
func TestGatePartitionedBump(t *testing.T) {
	for _, mode := range []faultproxy.Mode{faultproxy.Blackhole, faultproxy.Drop} {
		t.Run(mode.String(), func(t *testing.T) { partitionedBump(t, mode) })
	}
}

// cutSidecar cuts sidecar p off from every coordinator and from nothing
// else: p is classified under a region of its own, which is isolated, and
// the coordinators' open connections are closed, so that p's reconnect and
// meet the partition (the others reconnect as before).
func (g *gateTopo) cutSidecar(p *proc, mode faultproxy.Mode) {
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	region := "cut-" + p.name
	g.c.pids.Register(pid, faultproxy.Source{Name: p.name, Region: region})
	g.c.net.Isolate(region, mode)
	for _, r := range holders {
		g.c.coord[r].proxies[0].CutAll()
	}
}

func partitionedBump(t *testing.T, mode faultproxy.Mode) {
	g := newGateTopo(t, gateTopoOptions{Peered: true})
	g.waitFollowing(5)
	sa := g.c.sidecar(g.v, regionA)
	start := time.Now()
	g.cutSidecar(sa, mode)
	g.c.logf("%s cut off from the coordinators (%s)", sa.name, mode)
	killed := g.waitGate(sa, start, 30*time.Second, "validator killed; key file removed")
	res := g.c.bump(regionA, regionB, nil)
	if res.Code == -2 {
		t.Fatalf("bump: %s", res.Err)
	}
	first := g.waitBuilt(regionB)
	sb := g.c.sidecar(g.v, regionB)
	started, _ := gateFind(t, sb, start, "client started", "role", "validator")
	g.c.net.Heal()
	t.Logf("partitioned bump with the gate: cut to region-a's kill %s (reason %s); bump until active on region-b %s; cut to region-b's validator start %s, to its first block (seen) %s",
		killed.At.Sub(start).Round(time.Millisecond), killed.KV["reason"], res.Took.Round(time.Millisecond), started.At.Sub(start).Round(time.Millisecond), first.Seen.Sub(start).Round(time.Millisecond))
	// Whichever comes first: the kill time (no renewal moved the deadline)
	// or the first failed renewal (lease mode suspends the lease).
	if r := killed.KV["reason"]; r != "deadline" && r != "lease" {
		t.Errorf("region-a's client killed for %q, want deadline or lease", r)
	}
	// The coordinator fenced epoch 1 once the lease was gone from etcd.
	var fenced time.Time
	waitCond(t, 30*time.Second, "epoch 1's fenced event in the history", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		evs, err := g.c.api().Events(ctx, fencing.ValidatorID(g.v.id), 0)
		for _, e := range evs {
			if e.Kind == fencing.EventFenced && e.From != nil && e.From.Epoch == 1 {
				fenced = e.At
				t.Logf("epoch 1 fenced: %s", e.Detail)
				return true, nil
			}
		}
		return false, err
	})
	if !killed.At.Before(fenced) {
		t.Errorf("region-a's client killed at %s, after the coordinator fenced its epoch at %s", killed.At.Format("15:04:05.000"), fenced.Format("15:04:05.000"))
	}
	t.Logf("region-a's client killed %s before the coordinator fenced its epoch (TTL %s)", fenced.Sub(killed.At).Round(time.Millisecond), g.c.o.TTL)
	g.checkHandover(start)
	g.noValidatorAfter(sa, killed.At)
}

// noValidatorAfter checks that p's gate started no validator after t0.
func (g *gateTopo) noValidatorAfter(p *proc, t0 time.Time) {
	g.t.Helper()
	if e, ok := gateFind(g.t, p, t0, "client started", "role", "validator"); ok {
		g.t.Errorf("%s started a validator at %s without the lease", p.name, e.At.Format("15:04:05.000"))
	}
	if v := metric(p, "fencing_sidecar_gate_state", `state="follower"`); v != 1 {
		g.t.Errorf("%s's gate state follower = %v, want 1", p.name, v)
	}
}

// keySample is one look at region-b's key file and head.
type keySample struct {
	At     time.Time
	Key    bool
	Head   uint64
	HeadOK bool
}

// sampleKey looks at n's key file, then its head, every 10ms until stop is
// closed. The key file is looked at first: a key seen with a head read
// after it below the floor is a key released below the floor (the head only
// grows).
func sampleKey(n *gateNode, stop <-chan struct{}) <-chan []keySample {
	out := make(chan []keySample, 1)
	go func() {
		var ss []keySample
		for {
			select {
			case <-stop:
				out <- ss
				return
			case <-time.After(10 * time.Millisecond):
			}
			_, err := os.Lstat(n.keyFile())
			s := keySample{At: time.Now(), Key: err == nil}
			s.Head, err = gateHead(n)
			s.HeadOK = err == nil
			ss = append(ss, s)
		}
	}()
	return out
}

// The standby's key is released only once its head reached the watermark:
// region-b's follower is not peered, so it stays at genesis while geth-a
// seals; after the bump region-b's gate catches up and waits, key file
// absent, until the test peers it with geth-a's follower.
func TestGateStandbyWaitsForTheWatermark(t *testing.T) {
	g := newGateTopo(t, gateTopoOptions{Peered: false})
	a, b := g.nodes[regionA], g.nodes[regionB]
	sb := g.c.sidecar(g.v, regionB)
	waitCond(t, 2*time.Minute, "geth-a to build 8 blocks", func() (bool, error) { return len(g.w.built(a.name)) >= 8, nil })
	if h, err := gateHead(b); err != nil || h != 0 {
		t.Fatalf("unpeered geth-b at height %d (%v), want 0", h, err)
	}
	stop := make(chan struct{})
	samples := sampleKey(b, stop)
	start := time.Now()
	res := g.c.bump(regionA, regionB, nil)
	if res.Code == -2 {
		t.Fatalf("bump: %s", res.Err)
	}
	waitCond(t, 30*time.Second, "region-b's gate catching up", func() (bool, error) {
		return metric(sb, "fencing_sidecar_gate_state", `state="catching-up"`) == 1 && metric(sb, "fencing_sidecar_gate_floor", "") > 0, nil
	})
	floor := uint64(metric(sb, "fencing_sidecar_gate_floor", ""))
	var lastA uint64
	waitCond(t, time.Minute, "the watcher to read geth-a's chain up to the floor", func() (bool, error) {
		built := g.w.built(a.name)
		lastA = built[len(built)-1].Number
		return lastA >= floor, nil
	})
	if floor != lastA {
		t.Errorf("region-b's floor %d, want geth-a's last block %d (the head its gate read before the kill)", floor, lastA)
	}
	// Catching up, not released: 50 lease checks' worth of looks.
	for polls := 0; polls < 50; polls++ {
		time.Sleep(10 * time.Millisecond)
		if _, err := os.Lstat(b.keyFile()); err == nil {
			t.Fatalf("region-b's key file written while its head is below the floor %d", floor)
		}
	}
	if metric(sb, "fencing_sidecar_gate_state", `state="catching-up"`) != 1 {
		t.Fatalf("region-b's gate left catching-up at head 0 below floor %d", floor)
	}
	// geth-a runs as a follower now (its gate restarted it without the key).
	waitCond(t, time.Minute, "geth-a's follower serving JSON-RPC", func() (bool, error) { _, err := gateHead(a); return err == nil, err })
	peered := time.Now()
	var ok bool
	if err := gateCall(b.url(), &ok, "admin_addPeer", a.enode()); err != nil || !ok {
		t.Fatalf("admin_addPeer on geth-b = %v, %v", ok, err)
	}
	started := g.waitGate(sb, peered, time.Minute, "client started", "role", "validator")
	reached, _ := gateFind(t, sb, peered, "follower reached the floor; stopping it")
	close(stop)
	ss := <-samples
	below := 0
	for _, s := range ss {
		if s.HeadOK && s.Head < floor {
			if s.Key {
				t.Errorf("%s: region-b's key file present with its head at %d below the floor %d", s.At.Format("15:04:05.000"), s.Head, floor)
			}
			below++
		}
	}
	if below == 0 {
		t.Fatal("no look at region-b's head below the floor")
	}
	if h, _ := strconv.ParseUint(reached.KV["head"], 10, 64); h < floor {
		t.Errorf("region-b's gate saw its follower reach the floor at head %s, below the floor %d", reached.KV["head"], floor)
	}
	t.Logf("follower catch-up: %d blocks; peered to the gate seeing head >= floor %s, to the validator's start %s; %d looks below the floor, key absent in each", floor, reached.At.Sub(peered).Round(time.Millisecond), started.At.Sub(peered).Round(time.Millisecond), below)
	t.Logf("bump until active on region-b %s; the key waited %s for the catch-up", res.Took.Round(time.Millisecond), started.At.Sub(start).Round(time.Millisecond))
	g.waitBuilt(regionB)
	// geth-b lost the added peer when it restarted; peer geth-a to it so
	// that both chains meet for the audit.
	waitCond(t, time.Minute, "geth-a peered with geth-b's validator", func() (bool, error) {
		err := gateCall(a.url(), &ok, "admin_addPeer", b.enode())
		return err == nil && ok, err
	})
	g.checkHandover(start)
}

// A stopped sidecar (SIGSTOP of its process group) can neither kill nor
// renew; its geth runs in a group of its own under the validator's
// watchdog, which nothing moves on any more: the watchdog kills geth-a and
// removes the key file before the lease's local deadline. The bump waits
// out region-a's lease and grants region-b: no height is sealed twice.
// Once the sidecar runs again it finds its client gone and starts no
// validator without the lease.
func TestGateStoppedSidecarWatchdogKills(t *testing.T) {
	g := newGateTopo(t, gateTopoOptions{Peered: true})
	g.waitFollowing(5)
	sa := g.c.sidecar(g.v, regionA)
	watchdog, geth := validatorPIDs(t, sa)
	start := time.Now()
	sa.pause()
	g.c.logf("SIGSTOP %s (its geth and the watchdog keep running)", sa.name)
	res := g.c.bump(regionA, regionB, nil)
	if res.Code == -2 {
		t.Fatalf("bump: %s", res.Err)
	}
	fired := g.waitGate(sa, start, time.Minute, "watchdog killed the validator client")
	waitDead(t, "after the watchdog logged its kill", geth, watchdog) // it logs, then kills
	t.Logf("%s stopped; its watchdog killed geth-a %s later (%s)", sa.name, fired.At.Sub(start).Round(time.Millisecond), fired.KV["why"])
	g.waitBuilt(regionB)
	// Running again, the sidecar finds its validator gone and starts its
	// follower, which the handover's check needs (both chains meet).
	resumed := time.Now()
	sa.resume()
	killed := g.waitGate(sa, resumed, 30*time.Second, "validator killed; key file removed")
	t.Logf("SIGCONT to the gate's kill: %s (reason %s)", killed.At.Sub(resumed).Round(time.Millisecond), killed.KV["reason"])
	g.waitGate(sa, resumed, 30*time.Second, "client started", "role", "follower")
	g.checkHandoverGone(start, fired.At, "killed by its watchdog")
	// Long enough for region-a's keeper to try and fail again: B's blocks go on.
	n := len(g.w.built(g.nodes[regionB].name))
	waitCond(t, time.Minute, "5 more blocks of geth-b", func() (bool, error) { return len(g.w.built(g.nodes[regionB].name)) >= n+5, nil })
	g.noValidatorAfter(sa, resumed)
}

// validatorPIDs returns the pids of p's first validator run: its watchdog
// (the gate's "client started" pid) and the watchdog's child, geth.
func validatorPIDs(t *testing.T, p *proc) (watchdog, geth int) {
	t.Helper()
	started, ok := gateFind(t, p, time.Time{}, "client started", "role", "validator")
	if !ok {
		t.Fatalf("%s's validator start not in its log", p.name)
	}
	watchdog, _ = strconv.Atoi(started.KV["pid"])
	return watchdog, childOf(t, watchdog)
}

// childOf returns the pid of the one child of pid (the watchdog's client).
func childOf(t *testing.T, pid int) int {
	t.Helper()
	var child int
	waitCond(t, 10*time.Second, fmt.Sprintf("the child of %d", pid), func() (bool, error) {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return false, err
		}
		for _, e := range ents {
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			i := bytes.LastIndexByte(b, ')')
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				child, _ = strconv.Atoi(e.Name())
				return true, nil
			}
		}
		return false, nil
	})
	return child
}

// waitDead waits until geth and its watchdog are dead (gone or zombies)
// and returns when that was seen.
func waitDead(t *testing.T, when string, geth, watchdog int) time.Time {
	t.Helper()
	var gone time.Time
	waitCond(t, 10*time.Second, fmt.Sprintf("geth-a (pid %d) and its watchdog (pid %d) dead %s", geth, watchdog, when), func() (bool, error) {
		if !alive(geth) && !alive(watchdog) {
			gone = time.Now()
			return true, nil
		}
		return false, nil
	})
	return gone
}

// alive says whether pid runs (exists and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// The sidecar killed with kill -9 (the OOM killer) takes its client along:
// the kernel kills the watchdog (PR_SET_PDEATHSIG of the sidecar's thread)
// and geth with it (the watchdog's). The key file may stay on the memory
// volume (the watchdog removes it only when it sees the pipe close before
// its own SIGKILL) until the sidecar starts again, which removes it before
// anything else.
func TestGateKilledSidecarTakesItsClient(t *testing.T) {
	g := newGateTopo(t, gateTopoOptions{Peered: true})
	g.waitFollowing(5)
	sa, a := g.c.sidecar(g.v, regionA), g.nodes[regionA]
	watchdog, geth := validatorPIDs(t, sa)
	start := time.Now()
	sa.kill()
	gone := waitDead(t, "with their sidecar", geth, watchdog)
	t.Logf("kill -9 of %s to geth-a gone: %s", sa.name, gone.Sub(start).Round(time.Millisecond))
	if _, err := os.Lstat(a.keyFile()); err == nil {
		t.Logf("region-a's key file left on the memory volume after kill -9 of its sidecar")
	}
	res := g.c.bump(regionA, regionB, nil)
	if res.Code == -2 {
		t.Fatalf("bump: %s", res.Err)
	}
	g.waitBuilt(regionB)
	restarted := time.Now()
	if err := sa.start(); err != nil {
		t.Fatal(err)
	}
	g.waitGate(sa, restarted, 30*time.Second, "client started", "role", "follower")
	if _, err := os.Lstat(a.keyFile()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("region-a's key file there after its sidecar started again (%v)", err)
	}
	g.checkHandoverGone(start, gone, "died with its sidecar (PR_SET_PDEATHSIG)")
	g.noValidatorAfter(sa, restarted)
}

// explainFailure logs the gates' lines, the heads and the sidecars' log
// tails when the test has failed.
func (g *gateTopo) explainFailure() {
	if !g.t.Failed() {
		return
	}
	for _, r := range holders {
		p, n := g.c.sidecar(g.v, r), g.nodes[r]
		h, err := gateHead(n)
		g.t.Logf("%s: head %d (%v)", n.name, h, err)
		for _, e := range gateEvents(g.t, p) {
			g.t.Logf("  %s", e.Line)
		}
		g.t.Logf("%s log tail:%s", p.name, p.logTail(30))
	}
	for _, p := range append(g.c.etcdProcs(), g.c.coord[regionA], g.c.coord[regionB]) {
		g.t.Logf("%s log tail:%s", p.name, p.logTail(15))
	}
}
