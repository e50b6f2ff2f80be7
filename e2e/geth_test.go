package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/consensus"
)

// Real geth v1.13.15 nodes for the Clique tests (clique_test.go): the last
// geth release that seals Clique blocks, through an external Clef signer
// (`--signer URL`) or its own keystore.

// envGeth names the environment variable holding the geth binary.
const envGeth = "FENCE_GETH"

// gethVersion is what hack/geth.sh builds.
const gethVersion = "v1.13.15"

// cliqueChainID is the chain ID of every test chain.
const cliqueChainID = 1337

var (
	gethOnce sync.Once
	gethPath string
	gethErr  error
)

// gethBinary returns geth v1.13.15. FENCE_GETH wins (and must be an
// executable). Without it, -short skips the test; a full run asks
// hack/geth.sh, which prints its cached build or builds it (about 5 minutes
// once on 2 cores), and a failed build fails the test: a full `go test` must
// not pass by quietly leaving the real-client tests out.
func gethBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envGeth); p != "" {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			t.Fatalf("%s=%s is not an executable file; unset it or point it at the output of hack/geth.sh", envGeth, p)
		}
		return p
	}
	if testing.Short() {
		t.Skipf("geth %s: %s is unset and -short is given; run with %s=$(hack/geth.sh), or without -short to let the test build it (about 5 minutes once, then cached)", gethVersion, envGeth, envGeth)
	}
	gethOnce.Do(func() {
		var out, errb bytes.Buffer
		cmd := exec.Command("bash", filepath.Join("..", "hack", "geth.sh"))
		cmd.Stdout = &out
		cmd.Stderr = io.MultiWriter(&errb, os.Stderr) // the build's progress shows up under go test
		if err := cmd.Run(); err != nil {
			gethErr = fmt.Errorf("%v\n%s", err, errb.String())
			return
		}
		gethPath = strings.TrimSpace(out.String())
	})
	if gethErr != nil {
		t.Fatalf("geth %s: hack/geth.sh failed (run it by hand to see why, or set %s to a geth %s binary): %v", gethVersion, envGeth, gethVersion, gethErr)
	}
	return gethPath
}

// testKey derives a key from a seed and a label, like the cluster's
// validator keys.
func testKey(t *testing.T, seed uint64, label string) *ecdsa.PrivateKey {
	t.Helper()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	k, err := crypto.ToECDSA(crypto.Keccak256(b[:], []byte(label)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// cliqueGenesis writes a genesis file for a Clique chain (a block every
// period seconds, London without Shanghai, which Clique does not support)
// with signers and one funded account, and returns its path. extraData is 32 bytes of vanity,
// the signers in ascending order and 65 bytes for the seal (EIP-225).
func cliqueGenesis(t *testing.T, dir string, period int, signers []common.Address, funded common.Address) string {
	t.Helper()
	sorted := slices.Clone(signers)
	slices.SortFunc(sorted, func(a, b common.Address) int { return bytes.Compare(a[:], b[:]) })
	extra := make([]byte, 32, 32+20*len(sorted)+65)
	for _, s := range sorted {
		extra = append(extra, s[:]...)
	}
	extra = append(extra, make([]byte, 65)...)
	genesis := map[string]any{
		"config": map[string]any{
			"chainId": cliqueChainID, "homesteadBlock": 0, "eip150Block": 0, "eip155Block": 0, "eip158Block": 0,
			"byzantiumBlock": 0, "constantinopleBlock": 0, "petersburgBlock": 0, "istanbulBlock": 0,
			"berlinBlock": 0, "londonBlock": 0,
			"clique": map[string]any{"period": period, "epoch": 30000},
		},
		"difficulty": "0x1",
		"gasLimit":   "0x1c9c380",
		"extraData":  hexutil.Encode(extra),
		"alloc":      map[string]any{funded.Hex(): map[string]string{"balance": "0xd3c21bcecceda1000000"}},
	}
	b, err := json.MarshalIndent(genesis, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "genesis.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// gethOptions say how a node seals.
type gethOptions struct {
	Name      string // also the node's vanity (--miner.extradata): every header names the node that built it
	Genesis   string
	Etherbase common.Address
	Signer    string            // a sidecar's base URL (geth --signer), or
	Key       *ecdsa.PrivateKey // a plain keystore, unlocked
	Args      []string          // more geth flags
}

// gethNode is one running geth process.
type gethNode struct {
	t    *testing.T
	name string
	dir  string
	log  string
	cmd  *exec.Cmd
	url  string // HTTP JSON-RPC
	rpc  *rpc.Client

	exited chan struct{}
	mu     sync.Mutex
	fails  []sealFailure // "Block sealing failed", in order
	sealed []uint64      // "Successfully sealed new block" numbers, in order
	paused bool
	reaped bool // cmd was waited for: its pid may belong to another program now
}

// sealFailure is one seal geth gave up, with the error its signer returned.
type sealFailure struct {
	At  time.Time
	Err string
}

var (
	gethHTTPRE   = regexp.MustCompile(`HTTP server started\s+endpoint=(\S+)\s+auth=false`)
	gethFailRE   = regexp.MustCompile(`Block sealing failed\s+err=(.*)$`)
	gethSealedRE = regexp.MustCompile(`Successfully sealed new block\s+number=([0-9,]+)`)
)

// startGeth initialises a data directory from the genesis and starts geth
// mining with o's etherbase, HTTP JSON-RPC on a free 127.0.0.1 port, no
// discovery (peers are added with admin_addPeer). The node is killed when the
// test ends; its log is printed if the test failed.
func startGeth(t *testing.T, o gethOptions) *gethNode {
	t.Helper()
	bin := gethBinary(t)
	dir := filepath.Join(t.TempDir(), o.Name)
	n := &gethNode{t: t, name: o.Name, dir: dir, log: dir + ".log", exited: make(chan struct{})}
	if out, err := exec.Command(bin, "--datadir", dir, "init", o.Genesis).CombinedOutput(); err != nil {
		t.Fatalf("geth init %s: %v\n%s", o.Name, err, out)
	}
	args := []string{
		"--datadir", dir, "--networkid", strconv.Itoa(cliqueChainID), "--syncmode", "full",
		"--port", "0", "--nodiscover", "--nat", "none", "--ipcdisable", "--authrpc.port", "0",
		"--http", "--http.addr", "127.0.0.1", "--http.port", "0", "--http.api", "eth,net,admin,clique,txpool",
		"--cache", "128", "--verbosity", "3",
		"--mine", "--miner.etherbase", o.Etherbase.Hex(), "--miner.extradata", o.Name,
	}
	switch {
	case o.Signer != "":
		args = append(args, "--signer", o.Signer)
	case o.Key != nil:
		password := filepath.Join(filepath.Dir(dir), o.Name+".password")
		if err := os.WriteFile(password, []byte("e2e\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ks := keystore.NewKeyStore(filepath.Join(dir, "keystore"), keystore.LightScryptN, keystore.LightScryptP)
		if _, err := ks.ImportECDSA(o.Key, "e2e"); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--unlock", o.Etherbase.Hex(), "--password", password, "--allow-insecure-unlock")
	default:
		t.Fatalf("geth %s: give a sidecar URL or a key", o.Name)
	}
	args = append(args, o.Args...)
	f, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s: %s %s\n", o.Name, bin, strings.Join(args, " "))
	listening := make(chan string, 1)
	lw := &lineWriter{f: f, onLine: func(line string) { n.onLine(line, listening) }}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = lw, lw
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start geth %s: %v", o.Name, err)
	}
	go func() {
		_ = n.cmd.Wait()
		n.mu.Lock()
		n.reaped = true
		n.mu.Unlock()
		lw.flush()
		f.Close()
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("geth %s log tail:%s", n.name, n.logTail(25))
		}
	})
	select {
	case addr := <-listening:
		n.url = "http://" + addr
	case <-n.exited:
		t.Fatalf("geth %s exited before serving JSON-RPC:%s", o.Name, n.logTail(20))
	case <-time.After(2 * time.Minute):
		t.Fatalf("geth %s did not serve JSON-RPC within 2m:%s", o.Name, n.logTail(20))
	}
	if n.rpc, err = rpc.Dial(n.url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.rpc.Close)
	return n
}

func (n *gethNode) onLine(line string, listening chan<- string) {
	if m := gethHTTPRE.FindStringSubmatch(line); m != nil {
		select {
		case listening <- m[1]:
		default:
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if m := gethFailRE.FindStringSubmatch(line); m != nil {
		msg := strings.TrimSpace(m[1])
		if u, err := strconv.Unquote(msg); err == nil {
			msg = u
		}
		n.fails = append(n.fails, sealFailure{At: time.Now(), Err: msg})
	}
	if m := gethSealedRE.FindStringSubmatch(line); m != nil {
		if h, err := strconv.ParseUint(strings.ReplaceAll(m[1], ",", ""), 10, 64); err == nil {
			n.sealed = append(n.sealed, h)
		}
	}
}

// failures returns the seals geth gave up since index from, and the index
// to continue from.
func (n *gethNode) failures(from int) ([]sealFailure, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.fails[min(from, len(n.fails)):]), len(n.fails)
}

// call is one JSON-RPC call with a short deadline (a paused node must not
// hang the test).
func (n *gethNode) call(result any, method string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.rpc.CallContext(ctx, result, method, args...); err != nil {
		return fmt.Errorf("geth %s: %s: %w", n.name, method, err)
	}
	return nil
}

// head is the node's current block number.
func (n *gethNode) head() (uint64, error) {
	var h hexutil.Uint64
	err := n.call(&h, "eth_blockNumber")
	return uint64(h), err
}

// header is block number's header as n serves it, checked against the hash
// n reports (the audit's decoder).
func (n *gethNode) header(number uint64) (*types.Header, error) {
	var raw json.RawMessage
	if err := n.call(&raw, "eth_getBlockByNumber", hexutil.Uint64(number), false); err != nil {
		return nil, err
	}
	h, _, err := consensus.DecodeHeaderJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("geth %s, block %d: %w", n.name, number, err)
	}
	return h, nil
}

// builder is the node that built a block: its vanity (--miner.extradata).
func builder(h *types.Header) string {
	v := h.Extra
	if len(v) > 32 {
		v = v[:32]
	}
	return string(bytes.TrimRight(v, "\x00"))
}

// builders lists who built each block from..to on this node's chain.
func (n *gethNode) builders(from, to uint64) ([]string, error) {
	var out []string
	for number := from; number <= to; number++ {
		h, err := n.header(number)
		if err != nil {
			return nil, err
		}
		out = append(out, builder(h))
	}
	return out, nil
}

// peer connects n to each of others (admin_addPeer) and waits until every
// node counts the connection.
func (n *gethNode) peer(t *testing.T, others ...*gethNode) {
	t.Helper()
	for _, o := range others {
		var info struct {
			Enode string `json:"enode"`
		}
		if err := o.call(&info, "admin_nodeInfo"); err != nil {
			t.Fatal(err)
		}
		var ok bool
		if err := n.call(&ok, "admin_addPeer", info.Enode); err != nil || !ok {
			t.Fatalf("admin_addPeer(%s) on %s = %v, %v", o.name, n.name, ok, err)
		}
	}
	waitCond(t, time.Minute, fmt.Sprintf("geth %s connected to %d peers", n.name, len(others)), func() (bool, error) {
		var peers []json.RawMessage
		if err := n.call(&peers, "admin_peers"); err != nil {
			return false, err
		}
		return len(peers) >= len(others), nil
	})
}

// waitHead waits until n's head is at least h and returns it.
func (n *gethNode) waitHead(t *testing.T, h uint64, within time.Duration) uint64 {
	t.Helper()
	var cur uint64
	waitCond(t, within, fmt.Sprintf("geth %s at height %d", n.name, h), func() (bool, error) {
		var err error
		cur, err = n.head()
		return cur >= h, err
	})
	return cur
}

// waitFailure waits until geth gave up a seal, after index from, with an
// error that ok accepts, and returns it.
func (n *gethNode) waitFailure(t *testing.T, from int, within time.Duration, what string, ok func(string) bool) sealFailure {
	t.Helper()
	var got sealFailure
	waitCond(t, within, fmt.Sprintf("geth %s: a seal refused with %s", n.name, what), func() (bool, error) {
		fs, _ := n.failures(from)
		for _, f := range fs {
			if ok(f.Err) {
				got = f
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

// signal sends sig to the node's process group unless the node was
// already waited for (its pid, and so its group id, may have been reused).
func (n *gethNode) signal(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && n.cmd.Process != nil && !n.reaped {
		_ = syscall.Kill(-n.cmd.Process.Pid, sig)
	}
}

func (n *gethNode) pause() {
	n.signal(syscall.SIGSTOP)
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
}

func (n *gethNode) resume() {
	n.signal(syscall.SIGCONT)
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

// up is false while the node is stopped or after it exited.
func (n *gethNode) up() bool {
	n.mu.Lock()
	paused := n.paused
	n.mu.Unlock()
	select {
	case <-n.exited:
		return false
	default:
		return !paused
	}
}

// kill is kill -9 of the node's process group, waiting for the exit.
func (n *gethNode) kill() {
	n.signal(syscall.SIGKILL)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		n.t.Errorf("geth %s did not exit within 10s of SIGKILL", n.name)
	}
}

func (n *gethNode) logTail(lines int) string {
	b, _ := os.ReadFile(n.log)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return "\n    " + strings.Join(ls, "\n    ")
}

// waitCond polls cond every 100ms until it holds; a deadline of within ends
// the test with what was awaited and the last error.
func waitCond(t *testing.T, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s (last error: %v)", within, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// txLoad sends a value transfer to every running node every interval, the
// way a live chain keeps bringing transactions: geth re-tries a seal it gave
// up only on a new head or, with new transactions, at its next recommit
// (--miner.recommit, 2s), so on a single-signer chain the transactions are
// what makes the new holder try again after a bump.
type txLoad struct {
	key    *ecdsa.PrivateKey
	nodes  []*gethNode
	cancel context.CancelFunc
	done   chan struct{}
}

func startTxLoad(key *ecdsa.PrivateKey, interval time.Duration, nodes ...*gethNode) *txLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &txLoad{key: key, nodes: nodes, cancel: cancel, done: make(chan struct{})}
	go l.run(ctx, interval)
	return l
}

func (l *txLoad) run(ctx context.Context, interval time.Duration) {
	defer close(l.done)
	signer := types.NewEIP155Signer(big.NewInt(cliqueChainID))
	to := common.HexToAddress("0x000000000000000000000000000000000000dEaD")
	var nonce uint64
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tx, err := types.SignTx(types.NewTx(&types.LegacyTx{Nonce: nonce, To: &to, Value: big.NewInt(1), Gas: 21000, GasPrice: big.NewInt(2e9)}), signer, l.key)
		if err != nil {
			return
		}
		raw, err := tx.MarshalBinary()
		if err != nil {
			return
		}
		accepted := false
		for _, n := range l.nodes {
			if !n.up() {
				continue
			}
			var h common.Hash
			if err := n.call(&h, "eth_sendRawTransaction", hexutil.Bytes(raw)); err == nil || strings.Contains(err.Error(), "already known") {
				accepted = true
			}
		}
		if accepted {
			nonce++
		}
	}
}

func (l *txLoad) stop() {
	l.cancel()
	<-l.done
}

// auditChain runs `fencectl audit chain --rpc … --output json` as an
// operator would, with the cluster's coordinators (c nil: none, as when the
// fence is not deployed; the report is then not recorded anywhere).
func auditChain(t *testing.T, c *cluster, nodes ...*gethNode) (int, *audit.Report, string) {
	t.Helper()
	args := []string{"audit", "chain", "--output", "json", "--timeout", "10s"}
	for _, n := range nodes {
		args = append(args, "--rpc", n.url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var code int
	var out, errOut string
	if c != nil {
		code, out, errOut = c.fencectl(ctx, args...)
	} else {
		// No fence: nothing listens on port 1, so the best-effort record of
		// the result is refused at once.
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "fencectl"), append([]string{"--coordinator", "http://127.0.0.1:1", "--request-timeout", "2s"}, args...)...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		out, errOut = o.String(), e.String()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("fencectl audit chain: %v", err)
		}
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("fencectl audit chain exited %d with output that is not a JSON report (%v):\n%s\n%s", code, err, out, errOut)
	}
	return code, &rep, errOut
}
