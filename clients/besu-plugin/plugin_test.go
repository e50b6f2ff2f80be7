// Package besuplugin tests the fence Besu plugin (a Java SecurityModule, see
// docs/besu-plugin.md) against a real fence-coordinator (embedded etcd),
// fencectl and fence-sidecar, each a separate process built from this
// repository. The plugin's jar is loaded and called by a Java harness that
// stands in for Besu 26.2.0 as far as the plugin sees it (plugin loading,
// PicoCLI options, SecurityModuleService, the calls of NodeKey); Besu itself
// is not run. build.sh builds the jar and installs Debian's JDK if missing.
package besuplugin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/validator-fencing/fencing/internal/api"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/crypto/ecies"
)

// TestPluginAgainstSidecar: while the sidecar holds the validator's lease the
// plugin returns signatures that Besu's NodeKey accepts (R, S recover to the
// node's public key with recovery id 0 or 1) and ECDH agreements equal to
// devp2p's; after fencectl freeze, and after a bump to another holder, every
// signature is refused with SecurityModuleException (the only exception
// Besu's BFT rounds catch); a bump back to this holder signs again under the
// next epoch; a dead sidecar is a refusal too.
func TestPluginAgainstSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin with javac and runs three processes; skipped with -short")
	}
	r := newRig(t)
	key, keyFile := r.newKey(t)
	addr := crypto.PubkeyToAddress(key.PublicKey).Hex()
	r.fencectl(t, "validator", "add", addr, "--holder", "region-a", "--comment", "test", "--reason", "besu plugin test")
	sc := r.startSidecar(t, "sidecar-a", "region-a", keyFile, "--bare-digest")
	sc.waitReady(t)

	h := r.startHarness(t, sc.url, keyFile)
	if want := hex.EncodeToString(crypto.FromECDSAPub(&key.PublicKey)[1:]); h.pub != want {
		t.Fatalf("getPublicKey() = %s, want %s", h.pub, want)
	}

	t.Run("ECDH as devp2p computes it", func(t *testing.T) {
		peer, err := crypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		// go-ethereum's RLPx handshake: the static shared secret is
		// ecies GenerateShared(remote, 16, 16), the x coordinate as 32 bytes.
		want, err := ecies.ImportECDSA(peer).GenerateShared(ecies.ImportECDSAPublic(&key.PublicKey), 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.call(t, "ecdh "+hex.EncodeToString(crypto.FromECDSAPub(&peer.PublicKey)[1:])); got != "agreed "+hex.EncodeToString(want) {
			t.Fatalf("calculateECDHKeyAgreement(peer) = %q, want agreed %x", got, want)
		}
		offCurve := strings.Repeat("00", 63) + "07"
		if got := h.call(t, "ecdh "+offCurve); !strings.HasPrefix(got, "refused fence plugin: ECDH failed") {
			t.Fatalf("calculateECDHKeyAgreement(point off the curve) = %q, want a SecurityModuleException", got)
		}
	})

	digest := crypto.Keccak256([]byte("a QBFT commit seal hash, say"))
	t.Run("signs while leased", func(t *testing.T) {
		for i := range 3 { // the same bare digest again is signed again: no HRS, no watermark
			h.wantSigned(t, digest, key)
			h.wantSigned(t, crypto.Keccak256([]byte{byte(i)}), key)
		}
		h.waitLog(t, "signing under fencing epoch 1")
	})

	t.Run("refuses after freeze", func(t *testing.T) {
		r.fencectl(t, "freeze", addr, "--comment", "test", "--reason", "besu plugin test")
		// Strict mode: the sidecar confirms the lease in etcd before each
		// signature, so the very next one is refused.
		h.wantRefused(t, digest, "fenced", "stale_epoch")
	})

	t.Run("signs under the next epoch after a bump back", func(t *testing.T) {
		r.fencectl(t, "bump", addr, "--to", "region-a", "--comment", "test", "--reason", "besu plugin test")
		sc.waitReady(t)
		h.wantSigned(t, digest, key)
		h.waitLog(t, "signing under fencing epoch 2 (before: 1)")
	})

	t.Run("refuses after a bump to another holder", func(t *testing.T) {
		r.registerHolder(t, "region-b")
		r.fencectl(t, "bump", addr, "--to", "region-b", "--force", "--comment", "test", "--reason", "besu plugin test")
		h.wantRefused(t, digest, "fenced", "stale_epoch")
		h.wantRefused(t, crypto.Keccak256([]byte("another")), "fenced", "stale_epoch")
	})

	t.Run("refuses when the sidecar is gone", func(t *testing.T) {
		sc.stop(t)
		h.wantRefused(t, digest, "unreachable")
	})
}

// TestPluginRefusesToStart: Besu gets a SecurityModuleException from the
// module supplier, and so does not start, when the sidecar holds another key,
// is unreachable, or the options are wrong; a sidecar without --bare-digest
// refuses every signature with forbidden.
func TestPluginRefusesToStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin with javac and runs processes; skipped with -short")
	}
	r := newRig(t)
	key, keyFile := r.newKey(t)
	_, otherKeyFile := r.newKey(t)
	addr := crypto.PubkeyToAddress(key.PublicKey).Hex()
	r.fencectl(t, "validator", "add", addr, "--holder", "region-a", "--comment", "test", "--reason", "besu plugin test")
	sc := r.startSidecar(t, "sidecar-a", "region-a", keyFile) // no --bare-digest
	sc.waitReady(t)

	badKey := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(badKey, []byte("0x1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"another key", []string{"--plugin-fence-sidecar-url=" + sc.url, "--plugin-fence-key-file=" + otherKeyFile}, []string{"holds no key for validator"}},
		{"no sidecar", []string{"--plugin-fence-sidecar-url=http://127.0.0.1:1", "--plugin-fence-key-file=" + keyFile}, []string{"unreachable"}},
		{"bad key file", []string{"--plugin-fence-sidecar-url=" + sc.url, "--plugin-fence-key-file=" + badKey}, []string{"64 hex digits"}},
		{"every option wrong", []string{"--plugin-fence-sidecar-url=ftp://x", "--plugin-fence-request-timeout-ms=5"}, []string{
			"--plugin-fence-sidecar-url ftp://x must be http://HOST:PORT", "--plugin-fence-key-file is required", "--plugin-fence-request-timeout-ms (5) must be between",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, _ := r.runHarness(t, tc.args...)
			if !strings.HasPrefix(line, "startup-refused ") {
				t.Fatalf("harness %v answered %q, want startup-refused", tc.args, line)
			}
			t.Log(line)
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("startup refusal %q does not say %q", line, w)
				}
			}
		})
	}

	t.Run("sidecar without --bare-digest", func(t *testing.T) {
		h := r.startHarness(t, sc.url, keyFile)
		h.wantRefused(t, crypto.Keccak256([]byte("x")), "forbidden")
	})
}

// BenchmarkPluginSign: one SecurityModule.sign through the plugin, the
// sidecar (strict mode: a lease check through the coordinator in etcd) and
// back, as Besu's consensus thread waits for it (plus the harness's pipe).
func BenchmarkPluginSign(b *testing.B) {
	r := newRig(b)
	key, keyFile := r.newKey(b)
	addr := crypto.PubkeyToAddress(key.PublicKey).Hex()
	r.fencectl(b, "validator", "add", addr, "--holder", "region-a", "--comment", "test", "--reason", "besu plugin benchmark")
	sc := r.startSidecar(b, "sidecar-a", "region-a", keyFile, "--bare-digest")
	sc.waitReady(b)
	h := r.startHarness(b, sc.url, keyFile)
	for i := 0; b.Loop(); i++ {
		if got := h.call(b, fmt.Sprintf("sign %064x", i+1)); !strings.HasPrefix(got, "signed ") {
			b.Fatalf("sign = %q", got)
		}
	}
}

// FuzzPluginJSON: the plugin's JSON reader (Json.java, which reads the
// sidecar's answers) never throws anything but IllegalArgumentException, and
// accepts only what encoding/json also finds valid. Seeds in
// testdata/fuzz/FuzzPluginJSON. One harness process serves every input.
func FuzzPluginJSON(f *testing.F) {
	if testing.Short() {
		f.Skip("builds the plugin with javac; skipped with -short")
	}
	for _, seed := range []string{
		`{"signature":"0x00","epoch":1}`, `["0xab","0xcd"]`, `{"code":"fenced","message":"no lease"}`,
		`{"a":{"b":[1,-2,true,false,null,"\u00e9\n"]}}`, `{"a":1,"a":2}`, `[[[[[[[[[[1]]]]]]]]]]`, `{"epoch":1.5}`, `01`, `"\ud800"`,
	} {
		f.Add([]byte(seed))
	}
	java := buildPlugin(f)
	cmd := exec.Command(java[0], append(append([]string{}, java[1:len(java)-2]...), "--json", java[len(java)-1])...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		f.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	out := bufio.NewScanner(stdout)
	out.Buffer(nil, 1<<20)
	var mu sync.Mutex // one harness, one question at a time
	f.Fuzz(func(t *testing.T, data []byte) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := io.WriteString(in, hex.EncodeToString(data)+"\n"); err != nil || !out.Scan() {
			t.Fatalf("the JSON harness died on %q: %v\n%s", data, err, stderr.String())
		}
		got := out.Text()
		switch {
		case got == "json-ok":
			// Java reads the bytes as UTF-8 (bad sequences become U+FFFD).
			if valid := strings.ToValidUTF8(string(data), "\uFFFD"); !json.Valid([]byte(valid)) {
				t.Fatalf("Json.parse(%q) accepted what encoding/json finds invalid", data)
			}
		case strings.HasPrefix(got, "json-refused "):
		default:
			t.Fatalf("Json.parse(%q) = %s, want json-ok or an IllegalArgumentException", data, got)
		}
	})
}

// rig holds the built binaries, the plugin build and a running coordinator.
type rig struct {
	dir, bin, coordURL string
	java               []string // java -cp ... Harness --plugin-jar JAR
}

var (
	binOnce, javaOnce sync.Once
	binDir            string
	binErr, javaErr   error
	javaCmd           []string
)

// TestMain removes the binaries built for this run.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinaries builds fence-coordinator, fencectl and fence-sidecar once
// per test binary.
func buildBinaries(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "fence-besu-plugin-bin-"); binErr != nil {
			return
		}
		goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go") // the go command sets GOROOT for tests
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		cmd := exec.Command(goBin, "build", "-o", binDir+string(filepath.Separator),
			"./coordinator/cmd/fence-coordinator", "./coordinator/cmd/fencectl", "./sidecar/cmd/fence-sidecar")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// buildPlugin builds the plugin and the harness with build.sh (which
// installs Debian's JDK if missing) once per test binary, and returns the
// command line that starts the harness on the plugin's jar:
// java -cp CLASSPATH Harness --plugin-jar JAR.
func buildPlugin(t testing.TB) []string {
	t.Helper()
	javaOnce.Do(func() {
		var stderr bytes.Buffer
		cmd := exec.Command("bash", "build.sh")
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			javaErr = fmt.Errorf("build.sh: %v\n%s", err, stderr.String())
			return
		}
		dir := strings.TrimSpace(string(out))
		cp, err := os.ReadFile(filepath.Join(dir, "classpath"))
		if err != nil {
			javaErr = err
			return
		}
		javaCmd = []string{"java", "-cp", strings.TrimSpace(string(cp)), "io.github.validatorfencing.besu.harness.Harness",
			"--plugin-jar", filepath.Join(dir, "fence-besu-plugin.jar")}
	})
	if javaErr != nil {
		t.Fatal(javaErr)
	}
	return javaCmd
}

func newRig(t testing.TB) *rig {
	t.Helper()
	r := &rig{dir: t.TempDir(), bin: buildBinaries(t), java: buildPlugin(t)}
	c := r.start(t, "coordinator", filepath.Join(r.bin, "fence-coordinator"),
		"--embedded-etcd", filepath.Join(r.dir, "etcd"), "--listen", "127.0.0.1:0", "--reconcile-interval", "100ms")
	r.coordURL = c.url
	c.waitReady(t)
	return r
}

// newKey writes a new key in Besu's key file format (0x and 64 hex digits),
// which fence-sidecar also reads.
func (r *rig) newKey(t testing.TB) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(r.dir, "key-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "0x%x\n", crypto.FromECDSA(k)); err != nil {
		t.Fatal(err)
	}
	return k, f.Name()
}

func (r *rig) fencectl(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(r.bin, "fencectl"), append([]string{"--coordinator", r.coordURL}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fencectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// registerHolder makes holder known (no sidecar of it runs here).
func (r *rig) registerHolder(t testing.TB, holder string) {
	t.Helper()
	c, err := api.NewClient([]string{r.coordURL}, api.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterHolder(context.Background(), api.ChangeRequest{Holder: holder, Operator: "test", Reason: "besu plugin test"}); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) startSidecar(t testing.TB, name, holder, keyFile string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"--coordinator", r.coordURL, "--holder", holder, "--name", name, "--key", keyFile,
		"--state-dir", filepath.Join(r.dir, name), "--listen", "127.0.0.1:0", "--lease-ttl", "3s", "--safety-margin", "1s"}, extra...)
	return r.start(t, name, filepath.Join(r.bin, "fence-sidecar"), args...)
}

// proc is a started daemon: its URL from its "listening" log line.
type proc struct {
	name, url string
	cmd       *exec.Cmd
	log       *syncBuffer
	exited    chan struct{}
}

var listenRE = regexp.MustCompile(`listening: addr=([0-9.]+:[0-9]+)`)

func (r *rig) start(t testing.TB, name, binary string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(t) })
	m := p.log.waitMatch(listenRE, p.exited, 30*time.Second)
	if m == nil {
		t.Fatalf("%s did not listen within 30s:\n%s", name, p.log.String())
	}
	p.url = "http://" + m[1]
	return p
}

// waitReady waits until /readyz answers 200 (a coordinator that reaches
// etcd, a sidecar that holds its lease).
func (p *proc) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/readyz", nil)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		cancel()
		if err == nil && res.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 30s:\n%s", p.name, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) stop(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// harness is a running Java harness with the plugin's module built.
type harness struct {
	pub    string // the module's public key, 128 hex digits
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr *syncBuffer
}

// runHarness starts the harness with plugin options and returns its first
// line (ready or startup-refused) and the process.
func (r *rig) runHarness(t testing.TB, args ...string) (string, *harness) {
	t.Helper()
	cmd := exec.Command(r.java[0], append(append([]string{}, r.java[1:]...), args...)...)
	h := &harness{stderr: &syncBuffer{}}
	cmd.Stderr = h.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var err error
	if h.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.in.Close()
		if err := cmd.Wait(); err != nil && cmd.ProcessState.ExitCode() != 3 {
			t.Errorf("harness: %v\n%s", err, h.stderr.String())
		}
		if log := h.stderr.String(); testing.Verbose() && log != "" {
			t.Logf("harness stderr:\n%s", log)
		}
	})
	h.out = bufio.NewScanner(stdout)
	if !h.out.Scan() {
		t.Fatalf("harness %v printed nothing:\n%s", args, h.stderr.String())
	}
	return h.out.Text(), h
}

func (r *rig) startHarness(t testing.TB, sidecarURL, keyFile string) *harness {
	t.Helper()
	line, h := r.runHarness(t, "--plugin-fence-sidecar-url="+sidecarURL, "--plugin-fence-key-file="+keyFile)
	pub, ok := strings.CutPrefix(line, "ready ")
	if !ok {
		t.Fatalf("harness started with %q, want ready\n%s", line, h.stderr.String())
	}
	h.pub = pub
	return h
}

// call sends one command line and returns the answer line.
func (h *harness) call(t testing.TB, line string) string {
	t.Helper()
	if _, err := io.WriteString(h.in, line+"\n"); err != nil {
		t.Fatalf("harness: %v\n%s", err, h.stderr.String())
	}
	if !h.out.Scan() {
		t.Fatalf("harness exited after %q:\n%s", line, h.stderr.String())
	}
	return h.out.Text()
}

// wantSigned signs digest through the plugin and checks what Besu's NodeKey
// would: some recovery id in 0..3 recovers R, S to the node's public key
// (AbstractSECP256.normaliseSignature), and S is already in the lower half.
func (h *harness) wantSigned(t testing.TB, digest []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	got := h.call(t, "sign "+hex.EncodeToString(digest))
	f := strings.Fields(got)
	if len(f) != 3 || f[0] != "signed" {
		t.Fatalf("sign(%x) = %q, want signed R S", digest, got)
	}
	rs, err := hex.DecodeString(f[1] + f[2])
	if err != nil || len(rs) != 64 {
		t.Fatalf("sign(%x) = %q, want R and S of 32 bytes each", digest, got)
	}
	halfN := new(big.Int).Rsh(crypto.S256().Params().N, 1)
	if new(big.Int).SetBytes(rs[32:]).Cmp(halfN) > 0 {
		t.Errorf("sign(%x): S is in the upper half; Besu would flip it", digest)
	}
	want := crypto.FromECDSAPub(&key.PublicKey)
	for v := byte(0); v < 2; v++ {
		if pub, err := crypto.Ecrecover(digest, append(bytes.Clone(rs), v)); err == nil && bytes.Equal(pub, want) {
			return
		}
	}
	t.Fatalf("sign(%x) = %q does not recover to %x with recovery id 0 or 1", digest, got, want)
}

// wantRefused checks that signing digest is refused with a
// SecurityModuleException that names one of codes.
func (h *harness) wantRefused(t testing.TB, digest []byte, codes ...string) {
	t.Helper()
	got := h.call(t, "sign "+hex.EncodeToString(digest))
	if !strings.HasPrefix(got, "refused ") {
		t.Fatalf("sign(%x) = %q, want refused (SecurityModuleException) with one of %v", digest, got, codes)
	}
	for _, c := range codes {
		if strings.Contains(got, c) {
			t.Logf("sign(%x) = %q", digest, got)
			return
		}
	}
	t.Fatalf("sign(%x) = %q, want a refusal naming one of %v", digest, got, codes)
}

// waitLog waits until the harness's log (the plugin's slf4j lines) has s.
func (h *harness) waitLog(t testing.TB, s string) {
	t.Helper()
	if h.stderr.waitMatch(regexp.MustCompile(regexp.QuoteMeta(s)), nil, 10*time.Second) == nil {
		t.Fatalf("the plugin did not log %q within 10s:\n%s", s, h.stderr.String())
	}
}

// syncBuffer is a log that can be waited on.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitMatch waits until re matches the log, done closes or d passes.
func (s *syncBuffer) waitMatch(re *regexp.Regexp, done <-chan struct{}, d time.Duration) []string {
	timeout := time.After(d)
	for {
		s.mu.Lock()
		m := re.FindStringSubmatch(s.b.String())
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		s.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-changed:
		case <-done:
			return re.FindStringSubmatch(s.String())
		case <-timeout:
			return nil
		}
	}
}
