package audit

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/validator-fencing/fencing/internal/consensus"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// wantDup is an expected duplicate: validator, height, step, and whether
// the two seals were in different rounds.
type wantDup struct {
	validator  common.Address
	height     uint64
	step       fencing.Step
	crossRound bool
}

func gotDups(r *Report) []wantDup {
	var out []wantDup
	for _, d := range r.Duplicates {
		out = append(out, wantDup{common.HexToAddress(d.Validator), d.Height, d.Step, d.CrossRound})
	}
	return out
}

func sortWant(w []wantDup) []wantDup {
	slices.SortFunc(w, func(a, b wantDup) int {
		if c := strings.Compare(a.validator.Hex(), b.validator.Hex()); c != 0 {
			return c
		}
		return int(a.height) - int(b.height)
	})
	return w
}

// TestChainCliqueEquivocation serves two Clique chains that share blocks
// 1..10 and then fork. In the fork, signer A seals both branches at height 12
// and signer B at height 17; every other forked height is sealed by different
// signers on the two branches (a fork, not an equivocation). The audit must
// report exactly A@12 and B@17.
func TestChainCliqueEquivocation(t *testing.T) {
	keys := []*ecdsa.PrivateKey{testKey(t, 1), testKey(t, 2), testKey(t, 3)}
	a, b := newChainService(), newChainService()
	var pa, pb common.Hash
	for n := uint64(1); n <= 20; n++ {
		signerA := keys[n%3]
		h, hash := cliqueHeader(t, n, pa, 0, signerA)
		a.put(n, headerJSON(h, hash))
		pa = hash
		if n <= 10 {
			b.put(n, headerJSON(h, hash))
			pb = hash
			continue
		}
		signerB := keys[(n+1)%3] // a different signer: fork only
		switch n {
		case 12:
			signerB = keys[12%3]
		case 17:
			signerB = keys[17%3]
		}
		hb, hashB := cliqueHeader(t, n, pb, 1, signerB)
		b.put(n, headerJSON(hb, hashB))
		pb = hashB
	}
	cfg := fastConfig(serve(t, a), serve(t, b))
	r, err := AuditChain(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := sortWant([]wantDup{
		{addr(keys[12%3]), 12, fencing.StepBlock, false},
		{addr(keys[17%3]), 17, fencing.StepBlock, false},
	})
	if got := gotDups(r); !slices.Equal(got, want) {
		t.Fatalf("duplicates = %+v, want %+v", got, want)
	}
	if r.ExitCode() != ExitDuplicates || len(r.Unaudited) != 0 {
		t.Errorf("exit %d, unaudited %+v; want 1 and none", r.ExitCode(), r.Unaudited)
	}
	if r.Headers != 40 || r.Formats[consensus.ConsensusClique] != 40 {
		t.Errorf("headers = %d formats = %v, want 40 clique", r.Headers, r.Formats)
	}
	// The evidence names both hashes, both signatures and the endpoint of each.
	for _, d := range r.Duplicates {
		if len(d.Variants) != 2 {
			t.Fatalf("variants = %+v", d.Variants)
		}
		for _, v := range d.Variants {
			if len(v.Signature) != 65 || v.SignedHash == nil || len(v.Sources) != 1 {
				t.Errorf("evidence %+v lacks signature, signed hash or source", v)
			}
		}
		if d.Variants[0].Sources[0] == d.Variants[1].Sources[0] {
			t.Errorf("both variants from %s", d.Variants[0].Sources[0])
		}
	}
	forks := 0
	for _, w := range r.Warnings {
		if strings.HasPrefix(w, "endpoints disagree") {
			forks++
		}
	}
	if forks != 10 {
		t.Errorf("%d fork warnings, want 10 (heights 11..20): %v", forks, r.Warnings)
	}
}

// TestChainBFTEquivocation serves two QBFT (and IBFT 2.0) chains that fork
// at height 15. At 15 both branches are committed in round 0 by sets that
// share V0 and V1; at 16 the second branch is committed in round 1 by a set
// sharing V2 and V3 with the first; at 17..20 the second branch is committed
// by V3 alone and the first by V0..V2.
func TestChainBFTEquivocation(t *testing.T) {
	for _, c := range []consensus.Consensus{consensus.ConsensusQBFT, consensus.ConsensusIBFT2} {
		t.Run(string(c), func(t *testing.T) {
			keys := []*ecdsa.PrivateKey{testKey(t, 10), testKey(t, 11), testKey(t, 12), testKey(t, 13)}
			vals := []common.Address{addr(keys[0]), addr(keys[1]), addr(keys[2]), addr(keys[3])}
			pick := func(idx ...int) []*ecdsa.PrivateKey {
				var out []*ecdsa.PrivateKey
				for _, i := range idx {
					out = append(out, keys[i])
				}
				return out
			}
			a, b := newChainService(), newChainService()
			var pa, pb common.Hash
			for n := uint64(1); n <= 20; n++ {
				commitA := pick(0, 1, 2)
				if n == 16 {
					commitA = pick(0, 2, 3)
				}
				h, hash := bftHeader(t, c, n, pa, 0, 0, vals, vals[n%4], commitA)
				a.put(n, headerJSON(h, hash))
				pa = hash
				if n < 15 {
					b.put(n, headerJSON(h, hash))
					pb = hash
					continue
				}
				round, commitB := uint64(0), pick(3)
				switch n {
				case 15:
					commitB = pick(0, 1, 3)
				case 16:
					round, commitB = 1, pick(1, 2, 3)
				}
				hb, hashB := bftHeader(t, c, n, pb, 1, round, vals, vals[(n+1)%4], commitB)
				b.put(n, headerJSON(hb, hashB))
				pb = hashB
			}
			urlA, urlB := serve(t, a), serve(t, b)
			for _, force := range []consensus.Consensus{consensus.ConsensusAuto, c} {
				cfg := fastConfig(urlA, urlB)
				cfg.Consensus = force
				r, err := AuditChain(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				want := sortWant([]wantDup{
					{vals[0], 15, fencing.StepCommit, false},
					{vals[1], 15, fencing.StepCommit, false},
					{vals[2], 16, fencing.StepCommit, true},
					{vals[3], 16, fencing.StepCommit, true},
				})
				if got := gotDups(r); !slices.Equal(got, want) {
					t.Fatalf("--consensus %s: duplicates = %+v, want %+v", force, got, want)
				}
				if r.ExitCode() != ExitDuplicates || len(r.Unaudited) != 0 || r.Formats[c] != 40 {
					t.Errorf("exit %d unaudited %+v formats %v", r.ExitCode(), r.Unaudited, r.Formats)
				}
				for _, d := range r.Duplicates {
					if d.Height == 16 {
						rounds := []uint64{d.Variants[0].Round, d.Variants[1].Round}
						slices.Sort(rounds)
						if !slices.Equal(rounds, []uint64{0, 1}) {
							t.Errorf("height 16 rounds = %v, want [0 1]", rounds)
						}
					}
				}
			}
		})
	}
}

// TestChainClean: two endpoints serving the same chain give exit 0 and
// share the recovery work (each header verified, seals counted per endpoint).
func TestChainClean(t *testing.T) {
	keys := []*ecdsa.PrivateKey{testKey(t, 1), testKey(t, 2)}
	svc := newChainService()
	var p common.Hash
	for n := uint64(1); n <= 30; n++ {
		h, hash := cliqueHeader(t, n, p, 0, keys[n%2])
		svc.put(n, headerJSON(h, hash))
		p = hash
	}
	cfg := fastConfig(serve(t, svc), serve(t, svc))
	r, err := AuditChain(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitCode() != ExitClean || r.Headers != 60 || *r.From != 1 || *r.To != 30 {
		t.Fatalf("report = %+v, want clean 60 headers 1..30", r)
	}
}

// faulty endpoints: each must be reported, its range marked unaudited, the
// run must end with exit 2, and the healthy endpoint's headers are still
// audited.
func TestChainFaultyEndpoints(t *testing.T) {
	keys := []*ecdsa.PrivateKey{testKey(t, 1), testKey(t, 2)}
	good := newChainService()
	var p common.Hash
	var hdrs []json.RawMessage
	for n := uint64(1); n <= 16; n++ {
		h, hash := cliqueHeader(t, n, p, 0, keys[n%2])
		raw := headerJSON(h, hash)
		good.put(n, raw)
		hdrs = append(hdrs, raw)
		p = hash
	}
	tamper := func(n uint64, field, value string) json.RawMessage {
		var m map[string]any
		_ = json.Unmarshal(hdrs[n-1], &m)
		m[field] = value
		b, _ := json.Marshal(m)
		return b
	}
	slowDone := make(chan struct{})
	t.Cleanup(func() { close(slowDone) })
	tests := []struct {
		name       string
		url        func() string
		wantReason string
		wantRange  [2]uint64
	}{
		{
			name: "times out",
			url: func() string {
				return serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-slowDone:
					case <-r.Context().Done():
					case <-time.After(5 * time.Second):
					}
				}))
			},
			wantReason: "request failed", wantRange: [2]uint64{1, 16},
		},
		{
			name: "returns garbage",
			url: func() string {
				return serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"jsonrpc":"2.0",garbage<<<`)
				}))
			},
			wantReason: "request failed", wantRange: [2]uint64{1, 16},
		},
		{
			name: "hash does not match the header",
			url: func() string {
				svc := newChainService()
				for n := uint64(1); n <= 16; n++ {
					raw := hdrs[n-1]
					if n == 7 {
						raw = tamper(n, "stateRoot", common.Hash{0xba, 0xd}.Hex())
					}
					svc.put(n, raw)
				}
				return serve(t, svc)
			},
			wantReason: "bad header", wantRange: [2]uint64{7, 7},
		},
		{
			name: "serves another height",
			url: func() string {
				svc := newChainService()
				for n := uint64(1); n <= 16; n++ {
					raw := hdrs[n-1]
					if n == 9 {
						raw = hdrs[9]
					}
					svc.put(n, raw)
				}
				return serve(t, svc)
			},
			wantReason: "bad header", wantRange: [2]uint64{9, 9},
		},
		{
			name: "header is not a block object",
			url: func() string {
				svc := newChainService()
				for n := uint64(1); n <= 16; n++ {
					raw := hdrs[n-1]
					if n == 3 {
						raw = json.RawMessage(`{"number":"0x3","hash":"0x12"}`)
					}
					svc.put(n, raw)
				}
				return serve(t, svc)
			},
			wantReason: "bad header", wantRange: [2]uint64{3, 3},
		},
		{
			name: "lacks a block",
			url: func() string {
				svc := newChainService()
				for n := uint64(1); n <= 16; n++ {
					if n != 5 {
						svc.put(n, hdrs[n-1])
					}
				}
				return serve(t, svc)
			},
			wantReason: "no block", wantRange: [2]uint64{5, 5},
		},
	}
	goodURL := serve(t, good)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := tc.url()
			cfg := fastConfig(goodURL, bad)
			cfg.Timeout = 150 * time.Millisecond
			cfg.To, cfg.HasTo, cfg.From = 16, true, 1
			start := time.Now()
			r, err := AuditChain(context.Background(), cfg)
			if err != nil {
				t.Fatalf("AuditChain = %v", err)
			}
			if time.Since(start) > 20*time.Second {
				t.Errorf("took %s", time.Since(start))
			}
			if r.ExitCode() != ExitIncomplete {
				t.Errorf("exit = %d, want 2; report %+v", r.ExitCode(), r)
			}
			if len(r.Duplicates) != 0 {
				t.Errorf("duplicates = %+v, want none", r.Duplicates)
			}
			var mine []Unaudited
			for _, u := range r.Unaudited {
				if u.Endpoint == goodURL {
					t.Errorf("healthy endpoint unaudited: %+v", u)
				}
				if u.Endpoint == bad {
					mine = append(mine, u)
				}
			}
			if len(mine) == 0 {
				t.Fatalf("unaudited = %+v, want a range of %s", r.Unaudited, bad)
			}
			first, last := *mine[0].From, *mine[len(mine)-1].To
			if first != tc.wantRange[0] || last != tc.wantRange[1] {
				t.Errorf("unaudited %d..%d, want %d..%d (%+v)", first, last, tc.wantRange[0], tc.wantRange[1], mine)
			}
			for _, u := range mine {
				if !strings.Contains(u.Reason, tc.wantReason) {
					t.Errorf("reason %q, want it to mention %q", u.Reason, tc.wantReason)
				}
			}
			// The healthy endpoint was fully audited.
			if r.Headers < 16 {
				t.Errorf("headers = %d, want at least the 16 of the healthy endpoint", r.Headers)
			}
		})
	}
}

// TestChainCheckpointResume interrupts an audit after its first window,
// resumes from the checkpoint, and checks that the result equals an
// uninterrupted run and that the resumed run did not re-read finished
// windows.
func TestChainCheckpointResume(t *testing.T) {
	keys := []*ecdsa.PrivateKey{testKey(t, 1), testKey(t, 2), testKey(t, 3)}
	a, b := newChainService(), newChainService()
	var pa common.Hash
	for n := uint64(1); n <= 64; n++ {
		h, hash := cliqueHeader(t, n, pa, 0, keys[n%3])
		a.put(n, headerJSON(h, hash))
		if n%10 == 0 {
			// Same signer, same parent, other content: a duplicate every 10
			// heights (B's next block still builds on A's chain).
			hb, hashB := cliqueHeader(t, n, pa, 1, keys[n%3])
			b.put(n, headerJSON(hb, hashB))
		} else {
			b.put(n, headerJSON(h, hash))
		}
		pa = hash
	}
	urlA, urlB := serve(t, a), serve(t, b)
	full, err := AuditChain(context.Background(), fastConfig(urlA, urlB))
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Duplicates) != 6 {
		t.Fatalf("uninterrupted run found %d duplicates, want 6", len(full.Duplicates))
	}

	ckpt := filepath.Join(t.TempDir(), "audit.ckpt")
	ctx, cancel := context.WithCancel(context.Background())
	cfg := fastConfig(urlA, urlB)
	cfg.Checkpoint = ckpt
	cfg.Progress = func(p Progress) { cancel() } // stop after the first window
	if _, err := AuditChain(ctx, cfg); err == nil {
		t.Fatal("interrupted run returned no error")
	}
	var cp checkpoint
	b1, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b1, &cp); err != nil {
		t.Fatal(err)
	}
	window := uint64(cfg.Batch * cfg.Concurrency)
	if cp.Next != 1+window { // one window of 16 heights done
		t.Fatalf("checkpoint next = %d, want %d", cp.Next, 1+window)
	}
	callsBefore := a.calls.Load()
	cfg.Progress = nil
	resumed, err := AuditChain(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !resumed.Resumed {
		t.Error("resumed run does not say so")
	}
	if got, want := gotDups(resumed), gotDups(full); !slices.Equal(got, want) {
		t.Errorf("resumed duplicates = %+v, want %+v", got, want)
	}
	if resumed.Headers != full.Headers {
		t.Errorf("resumed headers = %d, want %d", resumed.Headers, full.Headers)
	}
	if calls := a.calls.Load() - callsBefore; calls != int64(64-window) {
		t.Errorf("resumed run read %d headers from A, want %d", calls, 64-window)
	}
	// A checkpoint of another audit is refused.
	other := fastConfig(urlA)
	other.Checkpoint = ckpt
	if _, err := AuditChain(context.Background(), other); err == nil || !strings.Contains(err.Error(), "another audit") {
		t.Errorf("foreign checkpoint: err = %v", err)
	}
}

func TestChainConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  ChainConfig
		want string
	}{
		{"no endpoint", ChainConfig{}, "at least one"},
		{"duplicate endpoint", ChainConfig{Endpoints: []string{"http://a", "http://a"}}, "twice"},
		{"bad consensus", ChainConfig{Endpoints: []string{"http://a"}, Consensus: "pow"}, "consensus"},
		{"to below from", ChainConfig{Endpoints: []string{"http://a"}, From: 5, To: 4, HasTo: true}, "below"},
		{"batch", ChainConfig{Endpoints: []string{"http://a"}, Batch: 5000}, "--batch"},
		{"several at once", ChainConfig{Batch: 5000, Concurrency: 100}, "--concurrency"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if err := (ChainConfig{Endpoints: []string{"http://a"}}).Validate(); err != nil {
		t.Errorf("Validate(minimal) = %v", err)
	}
}

func ExampleAuditChain() {
	r, err := AuditChain(context.Background(), ChainConfig{
		Endpoints: []string{"http://127.0.0.1:1"}, // nothing listens here
		From:      1, To: 10, HasTo: true,
		Timeout: 100 * time.Millisecond, Retries: -1,
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(r.ExitCode(), len(r.Unaudited) > 0)
	// Output: 2 true
}

// A resumed run retries heights that the interrupted run had given up on.
func TestCheckpointRestoreDropsProjectedRanges(t *testing.T) {
	cp := &checkpoint{Next: 10, Unaudited: []Unaudited{
		{Endpoint: "a", From: u64(3), To: u64(3), Reason: "bad header"},
		{Endpoint: "b", From: u64(8), To: u64(20), Reason: "given up"},
		{Endpoint: "c", From: u64(10), To: u64(20), Reason: "given up"},
		{Endpoint: "quorum", Reason: "down"},
	}}
	r := &Report{Formats: map[consensus.Consensus]int{}}
	cp.restore(r)
	var got []string
	for _, u := range r.Unaudited {
		if u.From == nil {
			got = append(got, u.Endpoint)
			continue
		}
		got = append(got, fmt.Sprintf("%s:%d-%d", u.Endpoint, *u.From, *u.To))
	}
	if strings.Join(got, " ") != "a:3-3 b:8-9 quorum" {
		t.Errorf("restored unaudited = %v", got)
	}
}

// An audit whose only endpoint is down stops at once instead of walking
// every window, and reports the whole range.
func TestChainAllEndpointsDown(t *testing.T) {
	down := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	cfg := fastConfig(down)
	cfg.From, cfg.To, cfg.HasTo = 1, 5_000_000, true
	start := time.Now()
	r, err := AuditChain(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
	if r.ExitCode() != ExitIncomplete || len(r.Unaudited) == 0 {
		t.Fatalf("report = %+v", r)
	}
	if first, last := *r.Unaudited[0].From, *r.Unaudited[len(r.Unaudited)-1].To; first != 1 || last != 5_000_000 {
		t.Errorf("unaudited %d..%d, want 1..5000000: %+v", first, last, r.Unaudited)
	}
}
