package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// testKey writes a fresh hex key file (mode 0600) and returns its path and
// address.
func testKey(t testing.TB) (string, string) {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%x\n", crypto.FromECDSA(k))), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, crypto.PubkeyToAddress(k.PublicKey).Hex()
}

// startSigner builds a Signer for the keys against coordinator c and runs its
// keepers until the test ends.
func startSigner(t testing.TB, c *fencetest.Coordinator, holder, name string, mode Mode, keys ...string) *Signer {
	t.Helper()
	cfg := Config{
		Holder: holder, Name: name, Keys: keys, StateDir: t.TempDir(), Mode: string(mode),
		LeaseTTL: 3 * time.Second, RenewInterval: time.Second, SafetyMargin: 500 * time.Millisecond,
	}
	s, err := NewSigner(cfg, c.Client, prometheus.NewRegistry(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// waitHeld waits until every validator of s holds a lease.
func waitHeld(t testing.TB, s *Signer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, v := range s.Validators() {
		for {
			if held, _, _ := v.Keeper.Status(); held {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds no lease after 10s", v.ID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Behaviour 2: two sidecars for one validator (holders A and B), each
// hammered by 64 goroutines asking for the same HRS sequence with different
// digests, while an operator bumps A -> B -> A -> B mid-stream: no HRS has two
// digests among all returned signatures, every signature is the key's, and
// each new epoch's holder signs only above everything signed before it.
func TestTwoHoldersHammer(t *testing.T) {
	for _, mode := range []Mode{ModeStrict, ModeLease} {
		t.Run(string(mode), func(t *testing.T) { hammer(t, mode) })
	}
}

type signed struct {
	sidecar string
	epoch   uint64
	hrs     fencing.HRS
	digest  fencing.Digest
	sig     []byte
}

func hammer(t *testing.T, mode Mode) {
	c := fencetest.Start(t, fencetest.Options{})
	key, addr := testKey(t)
	c.AddValidator(t, addr, "region-a")
	signers := map[string]*Signer{
		"a": startSigner(t, c, "region-a", "a-0", mode, key),
		"b": startSigner(t, c, "region-b", "b-0", mode, key),
	}
	waitHeld(t, signers["a"])

	// The chain's height advances on its own; workers ask for heights up to
	// 60 behind the tip, each with a digest of its own, as competing
	// validators would. It stops 60 heights after the last bump.
	var tip, stopAt atomic.Uint64
	tip.Store(1)
	stopAt.Store(1 << 62)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for tip.Load() < stopAt.Load() && ctx.Err() == nil {
			time.Sleep(4 * time.Millisecond)
			tip.Add(1)
		}
	}()
	var mu sync.Mutex
	var got []signed
	refusals := map[fencing.Code]int{}
	var wg sync.WaitGroup
	for name, s := range signers {
		for w := range 64 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), uint64(len(name))))
				for ctx.Err() == nil {
					top := tip.Load()
					if top >= stopAt.Load() {
						return
					}
					h := top - min(top-1, r.Uint64N(60))
					hrs := fencing.HRS{Height: h, Round: r.Uint64N(2), Step: []fencing.Step{fencing.StepPrepare, fencing.StepCommit}[r.IntN(2)]}
					d := digestOf(name, w, hrs)
					res, err := s.SignHRS(ctx, fencing.ValidatorID(addr), hrs, d)
					mu.Lock()
					if err == nil {
						got = append(got, signed{name, res.Epoch, hrs, d, res.Signature})
					} else if ctx.Err() == nil {
						refusals[fencing.CodeOf(err)]++
					}
					mu.Unlock()
					if err != nil {
						time.Sleep(time.Millisecond) // a refused validator does not spin
					}
				}
			})
		}
	}
	for _, to := range []string{"region-b", "region-a", "region-b"} {
		start := tip.Load()
		for tip.Load() < start+60 {
			time.Sleep(5 * time.Millisecond)
		}
		c.Bump(t, addr, to)
	}
	stopAt.Store(tip.Load() + 60)
	wg.Wait()

	byHRS := map[fencing.HRS]fencing.Digest{}
	lo, hi := map[uint64]fencing.HRS{}, map[uint64]fencing.HRS{}
	for _, g := range got {
		if d, ok := byHRS[g.hrs]; ok && d != g.digest {
			t.Fatalf("HRS %s signed with two digests (%s and %s)", g.hrs, d, g.digest)
		}
		byHRS[g.hrs] = g.digest
		pub, err := crypto.SigToPub(g.digest[:], g.sig)
		if err != nil || crypto.PubkeyToAddress(*pub).Hex() != addr {
			t.Fatalf("signature at %s does not recover to %s: %v", g.hrs, addr, err)
		}
		if l, ok := lo[g.epoch]; !ok || g.hrs.Compare(l) < 0 {
			lo[g.epoch] = g.hrs
		}
		if h, ok := hi[g.epoch]; !ok || g.hrs.Compare(h) > 0 {
			hi[g.epoch] = g.hrs
		}
	}
	for e := uint64(1); e <= 4; e++ {
		if _, ok := lo[e]; !ok {
			t.Fatalf("nothing signed in epoch %d; the test needs every holder to sign (refusals %v)", e, refusals)
		}
		if e > 1 && lo[e].Compare(hi[e-1]) <= 0 {
			t.Fatalf("epoch %d signed %s, at or below epoch %d's highest signature %s", e, lo[e], e-1, hi[e-1])
		}
	}
	if refusals[fencing.CodeInternal] > 0 {
		t.Fatalf("refusals without a code word: %v", refusals)
	}
	t.Logf("%s: %d signatures over 4 epochs, ranges %v .. %v; refusals %v", mode, len(got), lo, hi, refusals)
}

func digestOf(sidecar string, worker int, h fencing.HRS) fencing.Digest {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h.Height)
	return sha256.Sum256(fmt.Appendf(nil, "%s/%d/%s/%x", sidecar, worker, h, b))
}

// Many validators signing through one strict-mode sidecar at once: their
// journal writes share requests (the batcher) and every signature is in the
// quorum journal.
func TestManyValidatorsOneSidecar(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	var keys, addrs []string
	for range 16 {
		k, a := testKey(t)
		c.AddValidator(t, a, "region-a")
		keys, addrs = append(keys, k), append(addrs, a)
	}
	s := startSigner(t, c, "region-a", "a-0", ModeStrict, keys...)
	waitHeld(t, s)
	var wg sync.WaitGroup
	var failures atomic.Int32
	for _, a := range addrs {
		wg.Go(func() {
			for h := uint64(1); h <= 20; h++ {
				hrs := fencing.HRS{Height: h, Step: fencing.StepCommit}
				res, err := s.SignHRS(context.Background(), fencing.ValidatorID(a), hrs, digestOf(a, 0, hrs))
				if err != nil || len(res.Signature) != 65 {
					failures.Add(1)
					t.Errorf("SignHRS(%s, %s) = %v", a, hrs, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	entries, err := c.Client.JournalEntries(context.Background(), "")
	if err != nil || len(entries) != 16*20 {
		t.Fatalf("quorum journal has %d entries, %v; want %d", len(entries), err, 16*20)
	}
}
