package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/consensus"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// The Clique tests put a validator client that this project did not write
// in front of the sidecar: geth v1.13.15 seals through `--signer
// <sidecar URL>` (Clef's account_signData, application/x-clique-header), the
// sidecars and coordinators are the real binaries of the e2e topology
// (cluster_test.go) without the drill workload, and `fencectl audit chain`
// reads what the geth nodes serve. docs/clients.md says what they show.

// isFenceRefusal reports whether a seal error is the sidecar refusing a
// signer that does not hold the validator's lease.
func isFenceRefusal(err string) bool {
	return strings.HasPrefix(err, string(fencing.CodeFenced)+":") || strings.HasPrefix(err, string(fencing.CodeStaleEpoch)+":")
}

// singleSwitch checks that the builders (one per block, in height order)
// are only from in some prefix and only to after it, with at least minTo
// blocks of to: the validator's sealing moved once and never back.
func singleSwitch(t *testing.T, builders []string, from, to string, minTo int) {
	t.Helper()
	n := 0
	for i, b := range builders {
		switch {
		case b == to:
			n++
		case b == from && n == 0:
		default:
			t.Fatalf("block %d of the range was built by %q after %d block(s) of %s: builders %v", i, b, n, to, builders)
		}
	}
	if n < minTo {
		t.Fatalf("%d block(s) built by %s, want at least %d: builders %v", n, to, minTo, builders)
	}
}

// checkJournaled checks every block from..to of n's chain that one of the
// fenced nodes built (vanity → its sidecar's name): v's quorum journal holds
// (number, 0, block) with the block's EIP-225 seal hash, written by that
// sidecar. What reached the chain is exactly what was journaled. It returns
// how many blocks were checked.
func checkJournaled(t *testing.T, c *cluster, v *validator, n *gethNode, from, to uint64, sidecars map[string]string) int {
	t.Helper()
	checked := 0
	for number := from; number <= to; number++ {
		h, err := n.header(number)
		if err != nil {
			t.Fatal(err)
		}
		sidecar, fenced := sidecars[builder(h)]
		if !fenced {
			continue
		}
		seal, err := consensus.CliqueSealHash(h)
		if err != nil {
			t.Fatal(err)
		}
		hrs := fencing.HRS{Height: number, Round: 0, Step: fencing.StepBlock}
		e, ok := c.quorumEntry(t, v, hrs)
		switch {
		case !ok:
			t.Errorf("block %d (built by %s) is not in the quorum journal", number, builder(h))
		case e.Digest != fencing.Digest(seal) || e.Sidecar != sidecar:
			t.Errorf("block %d: quorum journal has digest %s from %s, the chain has seal hash %s built by %s (sidecar %s)", number, e.Digest, e.Sidecar, seal, builder(h), sidecar)
		}
		checked++
	}
	return checked
}

// refusals reads a sidecar's fencing_sidecar_signatures_total for one refusal code.
func refusals(t *testing.T, p *proc, code fencing.Code) int {
	t.Helper()
	resp, err := http.Get(p.URL() + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", p.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^fencing_sidecar_signatures_total\{[^}]*result="` + regexp.QuoteMeta(string(code)) + `"[^}]*\} ([0-9.e+]+)$`)
	total := 0
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		f, _ := strconv.ParseFloat(m[1], 64)
		total += int(f)
	}
	return total
}

// startCliquePair starts one validator key fenced across two regions:
// geth-a and geth-b peered, both mining a one-signer Clique chain (1 s
// period) through their own region's sidecar, with transactions flowing
// from a funded account (seed picks the cluster's and the account's keys).
func startCliquePair(t *testing.T, seed uint64) cliquePair {
	t.Helper()
	gethBinary(t)
	c := newCluster(t, clusterOptions{Validators: 1, NoWorkload: true, Seed: seed})
	p := cliquePair{c: c, v: c.vals[0]}
	p.signer = crypto.PubkeyToAddress(p.v.key.PublicKey)
	funder := testKey(t, seed, "e2e funded account")
	genesis := cliqueGenesis(t, t.TempDir(), 1, []common.Address{p.signer}, crypto.PubkeyToAddress(funder.PublicKey))
	p.sa, p.sb = c.sidecar(p.v, regionA), c.sidecar(p.v, regionB)
	p.a = startGeth(t, gethOptions{Name: "geth-a", Genesis: genesis, Etherbase: p.signer, Signer: p.sa.URL()})
	p.b = startGeth(t, gethOptions{Name: "geth-b", Genesis: genesis, Etherbase: p.signer, Signer: p.sb.URL()})
	p.b.peer(t, p.a)
	p.load = startTxLoad(funder, 300*time.Millisecond, p.a, p.b)
	t.Cleanup(p.load.stop)
	c.logf("geth-a and geth-b mining as %s through %s and %s", p.signer, p.sa.name, p.sb.name)
	return p
}

// cliquePair is what startCliquePair started.
type cliquePair struct {
	c      *cluster
	v      *validator
	signer common.Address
	sa, sb *proc
	a, b   *gethNode
	load   *txLoad
}

// TestCliqueFencedFailover: one validator key, two regions. geth-a and
// geth-b are peered and both mine Clique with the same etherbase, each
// through its own region's sidecar. geth-a seals and geth-b's seals are
// refused; `fencectl bump` moves sealing to geth-b while the chain goes on
// (geth-a is refused from then on); every block the validator sealed is in
// the quorum journal with its seal hash, and `fencectl audit chain --rpc A
// --rpc B` is clean.
func TestCliqueFencedFailover(t *testing.T) {
	start := time.Now()
	p := startCliquePair(t, 21)
	c, v, sa, sb, a, b, load := p.c, p.v, p.sa, p.sb, p.a, p.b, p.load

	// Region A seals; region B's seal attempts are refused.
	b.waitHead(t, 5, 2*time.Minute)
	f := b.waitFailure(t, 0, time.Minute, "fenced or stale_epoch", isFenceRefusal)
	c.logf("geth-b seal refused while region-a holds: %s", f.Err)
	before, _ := b.head()
	bs, err := b.builders(1, before)
	if err != nil {
		t.Fatal(err)
	}
	singleSwitch(t, bs, "geth-a", "geth-a", 5)

	// The bump, with the chain going on.
	_, aMark := a.failures(0)
	res := c.bump(regionA, regionB, nil)
	if res.Code == -2 {
		t.Fatalf("bump region-a -> region-b: %s", res.Err)
	}
	atBump, _ := b.head()
	c.logf("bump region-a -> region-b done in %s at height %d (fencectl exit %d)", res.Took.Round(time.Millisecond), atBump, res.Code)
	end := a.waitHead(t, atBump+6, 2*time.Minute)
	f = a.waitFailure(t, aMark, time.Minute, "fenced or stale_epoch", isFenceRefusal)
	c.logf("geth-a seal refused after the bump: %s", f.Err)
	load.stop()

	bs, err = a.builders(1, end)
	if err != nil {
		t.Fatal(err)
	}
	singleSwitch(t, bs, "geth-a", "geth-b", 3)
	n := checkJournaled(t, c, v, a, 1, end, map[string]string{"geth-a": sa.name, "geth-b": sb.name})

	code, rep, errOut := auditChain(t, c, a, b)
	if code != audit.ExitClean || rep.DuplicateCount() != 0 || len(rep.Unaudited) != 0 {
		t.Fatalf("fencectl audit chain --rpc geth-a --rpc geth-b = exit %d, %d duplicate(s), unaudited %v; want 0, clean\n%s", code, rep.DuplicateCount(), rep.Unaudited, errOut)
	}
	if rep.To == nil || *rep.To < end || rep.Headers < 2*int64(end) {
		t.Fatalf("audit covered %d headers up to %v, want both chains up to %d", rep.Headers, rep.To, end)
	}
	rep2 := checkRun(t, c)
	if !rep2.OK() {
		t.Fatal("the journal checker found violations (above)")
	}
	t.Logf("%d blocks, builders %v; %d journaled seals match the chain; audit clean over %d headers; bump took %s; test took %s",
		end, bs, n, rep.Headers, res.Took.Round(time.Millisecond), time.Since(start).Round(time.Second))
}

// TestCliqueMultiSignerPartitionedBump: three Clique signers; S1 is fenced
// across regions (geth-a1 through region-a's sidecar, geth-b1 through
// region-b's), S2 and S3 seal from their own keystores. Region A's sidecar
// and geth node are cut off (SIGSTOP) and the validator is bumped to region
// B while S2 and S3 keep the chain going; geth-b1 then seals for S1. When
// region A comes back, its sidecar refuses geth-a1's seals; the audit over
// all four nodes is clean.
func TestCliqueMultiSignerPartitionedBump(t *testing.T) {
	gethBinary(t)
	start := time.Now()
	c := newCluster(t, clusterOptions{Validators: 1, NoWorkload: true, Seed: 22})
	v := c.vals[0]
	s1 := crypto.PubkeyToAddress(v.key.PublicKey)
	k2, k3 := testKey(t, 22, "e2e signer 2"), testKey(t, 22, "e2e signer 3")
	s2, s3 := crypto.PubkeyToAddress(k2.PublicKey), crypto.PubkeyToAddress(k3.PublicKey)
	funder := testKey(t, 22, "e2e funded account")
	genesis := cliqueGenesis(t, t.TempDir(), 1, []common.Address{s1, s2, s3}, crypto.PubkeyToAddress(funder.PublicKey))
	sa, sb := c.sidecar(v, regionA), c.sidecar(v, regionB)
	a1 := startGeth(t, gethOptions{Name: "geth-a1", Genesis: genesis, Etherbase: s1, Signer: sa.URL()})
	b1 := startGeth(t, gethOptions{Name: "geth-b1", Genesis: genesis, Etherbase: s1, Signer: sb.URL()})
	n2 := startGeth(t, gethOptions{Name: "geth-s2", Genesis: genesis, Etherbase: s2, Key: k2})
	n3 := startGeth(t, gethOptions{Name: "geth-s3", Genesis: genesis, Etherbase: s3, Key: k3})
	b1.peer(t, a1)
	n2.peer(t, a1, b1)
	n3.peer(t, a1, b1, n2)
	c.logf("4 geth nodes: S1 %s on geth-a1 (%s) and geth-b1 (%s), S2 %s, S3 %s", s1, sa.name, sb.name, s2, s3)

	// S1 seals in region A; geth-b1 is refused.
	waitCond(t, 3*time.Minute, "two blocks sealed by geth-a1", func() (bool, error) {
		h, err := n2.head()
		if err != nil || h < 4 {
			return false, err
		}
		bs, err := n2.builders(1, h)
		return strings.Count(strings.Join(bs, " "), "geth-a1") >= 2, err
	})
	f := b1.waitFailure(t, 0, time.Minute, "fenced or stale_epoch", isFenceRefusal)
	c.logf("geth-b1 seal refused while region-a holds: %s", f.Err)

	// Region A is cut off: its sidecar and its geth node stop.
	sa.pause()
	a1.pause()
	cut, _ := n2.head()
	c.logf("SIGSTOP %s and geth-a1 at height %d", sa.name, cut)
	res := c.bump(regionA, regionB, nil)
	if res.Code == -2 {
		t.Fatalf("bump region-a -> region-b with region A stopped: %s", res.Err)
	}
	c.logf("bump done in %s (fencectl exit %d): region A's lease expired", res.Took.Round(time.Millisecond), res.Code)
	var resumeAt uint64
	waitCond(t, 3*time.Minute, "the chain 8 blocks past the cut with two blocks sealed by geth-b1", func() (bool, error) {
		h, err := n2.head()
		if err != nil || h < cut+8 {
			return false, err
		}
		bs, err := n2.builders(cut+1, h)
		resumeAt = h
		return strings.Count(strings.Join(bs, " "), "geth-b1") >= 2, err
	})

	// Region A comes back: it follows the chain and its sidecar refuses.
	_, aMark := a1.failures(0)
	sa.resume()
	a1.resume()
	c.logf("SIGCONT %s and geth-a1 at height %d", sa.name, resumeAt)
	f = a1.waitFailure(t, aMark, 2*time.Minute, "fenced or stale_epoch", isFenceRefusal)
	c.logf("geth-a1 seal refused after region A came back: %s", f.Err)
	end := a1.waitHead(t, resumeAt+2, 2*time.Minute)
	for _, n := range []*gethNode{b1, n2, n3} {
		n.waitHead(t, end, time.Minute)
	}

	bs, err := n2.builders(1, end)
	if err != nil {
		t.Fatal(err)
	}
	var s1Blocks []string
	for _, b := range bs {
		if b == "geth-a1" || b == "geth-b1" {
			s1Blocks = append(s1Blocks, b)
		}
	}
	singleSwitch(t, s1Blocks, "geth-a1", "geth-b1", 2)
	n := checkJournaled(t, c, v, n2, 1, end, map[string]string{"geth-a1": sa.name, "geth-b1": sb.name})

	code, rep, errOut := auditChain(t, c, a1, b1, n2, n3)
	if code != audit.ExitClean || rep.DuplicateCount() != 0 || len(rep.Unaudited) != 0 {
		t.Fatalf("fencectl audit chain over 4 nodes = exit %d, %d duplicate(s), unaudited %v; want 0, clean\n%s", code, rep.DuplicateCount(), rep.Unaudited, errOut)
	}
	if rep.To == nil || *rep.To < end {
		t.Fatalf("audit covered heights up to %v, want %d", rep.To, end)
	}
	rep2 := checkRun(t, c)
	if !rep2.OK() {
		t.Fatal("the journal checker found violations (above)")
	}
	t.Logf("%d blocks, builders %v; %d S1 seals journaled and on chain; audit clean over %d headers (warnings %v); bump took %s; test took %s",
		end, bs, n, rep.Headers, rep.Warnings, res.Took.Round(time.Millisecond), time.Since(start).Round(time.Second))
}

// TestCliqueWithoutFenceForks is the control: the same key seals on two
// isolated geth nodes from plain keystores, as when a standby is started by
// hand without the fence. Each node builds its own chain from the same
// genesis, so the key signs two blocks at every height, and `fencectl audit
// chain` must find it: exit 1, naming the signer and each height.
func TestCliqueWithoutFenceForks(t *testing.T) {
	gethBinary(t)
	start := time.Now()
	key := testKey(t, 23, "e2e control signer")
	signer := crypto.PubkeyToAddress(key.PublicKey)
	funder := testKey(t, 23, "e2e funded account")
	genesis := cliqueGenesis(t, t.TempDir(), 1, []common.Address{signer}, crypto.PubkeyToAddress(funder.PublicKey))
	x := startGeth(t, gethOptions{Name: "geth-x", Genesis: genesis, Etherbase: signer, Key: key})
	y := startGeth(t, gethOptions{Name: "geth-y", Genesis: genesis, Etherbase: signer, Key: key})
	x.waitHead(t, 4, 2*time.Minute)
	y.waitHead(t, 4, 2*time.Minute)

	code, rep, errOut := auditChain(t, nil, x, y)
	if code != audit.ExitDuplicates {
		t.Fatalf("fencectl audit chain over two forks = exit %d, want %d (duplicates)\n%s", code, audit.ExitDuplicates, errOut)
	}
	heights := map[uint64]bool{}
	var listed []uint64
	for _, d := range rep.Duplicates {
		if !strings.EqualFold(d.Validator, signer.Hex()) {
			t.Errorf("duplicate at height %d names %s, want the signer %s", d.Height, d.Validator, signer)
		}
		if len(d.Variants) != 2 {
			t.Errorf("duplicate at height %d has %d variants, want 2 (one per node)", d.Height, len(d.Variants))
		}
		heights[d.Height] = true
		listed = append(listed, d.Height)
	}
	for h := uint64(1); h <= 4; h++ {
		if !heights[h] {
			t.Errorf("the audit does not report height %d as signed twice by %s; it reports heights %v", h, signer, listed)
		}
	}
	t.Logf("audit exit %d: %d duplicate(s) of %s at heights %v over %d headers; test took %s", code, rep.DuplicateCount(), signer, listed, rep.Headers, time.Since(start).Round(time.Second))
}

// TestCliqueSingleSignerStuckAfterFailover shows the state a non-cooperative
// failover leaves a single-signer Clique chain in. Region A's sidecar
// journals geth-a's seal for height h+1 in etcd and dies (kill -9) before
// its answer reaches geth-a, and geth-a dies too: block h+1 is never
// published. After the bump, region B holds the lease with the quorum
// watermark (h+1, 0, block) carrying A's digest; geth-b builds its own block
// h+1, whose seal hash differs, so the sidecar refuses it with `watermark`
// naming h+1 every time geth-b tries, and the chain halts at h. The
// operator's recorded decision to abandon that HRS (fencectl abandon, refused
// while region B holds the epoch) and an unfreeze let it go on at h+1;
// docs/clients.md describes it per consensus.
func TestCliqueSingleSignerStuckAfterFailover(t *testing.T) {
	start := time.Now()
	p := startCliquePair(t, 24)
	c, v, sa, sb, a, b := p.c, p.v, p.sa, p.sb, p.a, p.b
	b.waitHead(t, 3, 2*time.Minute)

	// Region A dies between the quorum journal commit of h+1 and the answer.
	if !c.killAtJournal(sa, time.Minute) {
		t.Fatalf("%s journaled no seal within a minute", sa.name)
	}
	a.kill()
	wm := c.quorumWatermark(t, v)
	if wm.Step != fencing.StepBlock || wm.Round != 0 || wm.Height < 2 {
		t.Fatalf("quorum watermark after the kill = %s, want (h+1)/0/block", wm)
	}
	h := wm.Height - 1
	journaled, ok := c.quorumEntry(t, v, wm)
	if !ok || journaled.Sidecar != sa.name {
		t.Fatalf("quorum journal at %s = %+v (found %v), want %s's entry", wm, journaled, ok, sa.name)
	}
	b.waitHead(t, h, time.Minute)
	c.logf("%s killed after journaling %s (digest %s, epoch %d), geth-a killed; chain head %d", sa.name, wm, journaled.Digest, journaled.Epoch, h)

	_, bMark := b.failures(0)
	res := c.bump(regionA, regionB, nil)
	if res.Code == -2 {
		t.Fatalf("bump region-a -> region-b with region A dead: %s", res.Err)
	}
	c.logf("bump done in %s (fencectl exit %d)", res.Took.Round(time.Millisecond), res.Code)

	// geth-b is refused at h+1 again and again with the same watermark.
	want := fmt.Sprintf("%s: %s was already signed with a different digest", fencing.CodeWatermark, wm)
	var stuck []sealFailure
	waitCond(t, 2*time.Minute, fmt.Sprintf("three of geth-b's seals refused with %q", want), func() (bool, error) {
		fs, _ := b.failures(bMark)
		stuck = stuck[:0]
		for _, f := range fs {
			if strings.HasPrefix(f.Err, want) {
				stuck = append(stuck, f)
			}
		}
		return len(stuck) >= 3, nil
	})
	// Before region-b's sidecar has the lease its refusals are fenced; from
	// the first watermark refusal on, every one is that refusal.
	fs, _ := b.failures(bMark)
	seen := false
	for _, f := range fs {
		is := strings.HasPrefix(f.Err, want)
		seen = seen || is
		if !is && (seen || !isFenceRefusal(f.Err)) {
			t.Errorf("geth-b seal failed with %q after the bump; want fenced/stale_epoch until region-b's lease, then only %q", f.Err, want)
		}
	}
	if head, err := b.head(); err != nil || head != h {
		t.Fatalf("geth-b head = %d (%v), want %d: the chain must halt at h", head, err, h)
	}
	if got := c.quorumWatermark(t, v); got != wm {
		t.Fatalf("quorum watermark moved from %s to %s", wm, got)
	}
	if n := refusals(t, sb, fencing.CodeWatermark); n < len(stuck) {
		t.Fatalf("%s counts %d watermark refusals, geth-b logged %d", sb.name, n, len(stuck))
	}
	st, err := c.api().Status(context.Background(), fencing.ValidatorID(v.id))
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch.Holder != regionB || st.Epoch.State != fencing.StateActive || st.Watermark == nil || st.Watermark.HRS != wm || st.Watermark.Sidecar != sa.name {
		t.Fatalf("status = %+v, watermark %+v; want active on %s with watermark %s from %s", st.Epoch, st.Watermark, regionB, wm, sa.name)
	}
	if rep := checkRun(t, c); !rep.OK() {
		t.Fatal("the journal checker found violations (above)")
	}
	t.Logf("STUCK: chain head %d; region-b holds epoch %d; quorum watermark %s (digest %s, epoch %d, %s); geth-b refused %d times (%s .. %s): %q; test took %s",
		h, st.Epoch.Epoch, wm, journaled.Digest, journaled.Epoch, sa.name, len(stuck), stuck[0].At.Format("15:04:05.000"), stuck[len(stuck)-1].At.Format("15:04:05.000"), want, time.Since(start).Round(time.Second))
	if !strings.Contains(stuck[0].Err, "by "+sa.name+" under epoch 1") {
		t.Errorf("geth-b's refusal %q does not say who signed the stuck height", stuck[0].Err)
	}

	// The way out (docs/runbook.md, stuck height): region A's block h+1
	// reached no node (geth-a was killed before publishing it; geth-b's
	// head is h), so an operator records the decision to abandon it, while
	// the validator is frozen, and gives the epoch back to region-b.
	ctx := context.Background()
	id := fencing.ValidatorID(v.id)
	abandon := api.AbandonRequest{Height: wm.Height, Round: wm.Round, Step: wm.Step, Operator: "e2e", Reason: "INC-7: block h+1 never published (geth-a died; geth-b head h)"}
	if _, err := c.api().Abandon(ctx, id, abandon); fencing.CodeOf(err) != fencing.CodeConflict {
		t.Fatalf("abandon while region-b holds the epoch = %v, want conflict", err)
	}
	if _, err := c.api().Freeze(ctx, id, api.FreezeRequest{Operator: "e2e", Reason: "stuck height"}); err != nil {
		t.Fatal(err)
	}
	waitCond(t, time.Minute, "the validator fenced", func() (bool, error) {
		st, err := c.api().Status(ctx, id)
		return err == nil && st.Epoch.State == fencing.StateFenced, nil
	})
	if _, err := c.api().Abandon(ctx, id, abandon); err != nil {
		t.Fatalf("abandon while fenced = %v", err)
	}
	if res, err := c.api().Unfreeze(ctx, id, api.BumpRequest{Operator: "e2e", Reason: "resume after abandoning the stuck height", Wait: api.Duration{Duration: time.Minute}}); err != nil || !res.Done {
		t.Fatalf("unfreeze = %+v, %v", res, err)
	}
	after := b.waitHead(t, h+2, 2*time.Minute)
	evs, err := c.api().Events(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var decision *fencing.Event
	for i := range evs {
		if evs[i].Kind == fencing.EventAbandoned {
			decision = &evs[i]
		}
	}
	if decision == nil || decision.Reason != abandon.Reason || decision.Sidecar != sa.name {
		t.Fatalf("history has no hrs_abandoned event with the reason and %s: %+v", sa.name, decision)
	}
	if code, rep, errOut := auditChain(t, c, b); code != 0 {
		t.Fatalf("chain audit after the abandon = exit %d: %+v\n%s", code, rep, errOut)
	}
	t.Logf("RESUMED: %s abandoned by %s (%q); geth-b sealed h+1 itself; head %d; chain audit clean", wm, decision.By, decision.Reason, after)
}

// TestCliqueRecommitBelowPeriodHalts: geth re-seals the height it is
// working on at every recommit (--miner.recommit, default 2s) when new
// transactions arrived, dropping the block it already had signed but not yet
// published. The sidecar cannot know that the first signature never left
// geth, and refuses the second digest at the same height. With a 3 s block
// period and the default recommit, the holder's own sidecar refuses it at one
// height again and again, and a single-signer chain halts with no failover at
// all; with --miner.recommit above the period (5 s) the same chain runs.
// docs/clients.md makes this a wiring requirement.
func TestCliqueRecommitBelowPeriodHalts(t *testing.T) {
	gethBinary(t)
	start := time.Now()
	c := newCluster(t, clusterOptions{Validators: 2, NoWorkload: true, Seed: 25})
	funder := testKey(t, 25, "e2e funded account")
	chain := func(v *validator, name string, args ...string) *gethNode {
		signer := crypto.PubkeyToAddress(v.key.PublicKey)
		genesis := cliqueGenesis(t, t.TempDir(), 3, []common.Address{signer}, crypto.PubkeyToAddress(funder.PublicKey))
		n := startGeth(t, gethOptions{Name: name, Genesis: genesis, Etherbase: signer, Signer: c.sidecar(v, regionA).URL(), Args: args})
		load := startTxLoad(funder, 300*time.Millisecond, n)
		t.Cleanup(load.stop)
		return n
	}
	short := chain(c.vals[0], "geth-recommit-2s")
	long := chain(c.vals[1], "geth-recommit-5s", "--miner.recommit", "5s")

	var refusals []sealFailure
	waitCond(t, 2*time.Minute, "three refusals of geth-recommit-2s's re-seals of one height", func() (bool, error) {
		refusals, _ = short.failures(0)
		return len(refusals) >= 3, nil
	})
	m := regexp.MustCompile(`^watermark: ([0-9]+)/0/block was already signed with a different digest`).FindStringSubmatch(refusals[0].Err)
	if m == nil {
		t.Fatalf("geth-recommit-2s's first seal failure = %q, want a watermark refusal of its own re-seal", refusals[0].Err)
	}
	for _, f := range refusals {
		if f.Err != refusals[0].Err {
			t.Fatalf("geth-recommit-2s seal failures differ: %q then %q", refusals[0].Err, f.Err)
		}
	}
	h, _ := strconv.ParseUint(m[1], 10, 64)
	if head, err := short.head(); err != nil || head != h-1 {
		t.Fatalf("geth-recommit-2s head = %d (%v), want %d: the chain halts below the refused height", head, err, h-1)
	}
	hrs := fencing.HRS{Height: h, Round: 0, Step: fencing.StepBlock}
	if e, ok := c.quorumEntry(t, c.vals[0], hrs); !ok || e.Sidecar != c.sidecar(c.vals[0], regionA).name {
		t.Fatalf("quorum journal at %s = %+v (found %v), want the holder's first seal", hrs, e, ok)
	}

	long.waitHead(t, 6, 2*time.Minute)
	if fs, _ := long.failures(0); len(fs) != 0 {
		t.Fatalf("geth-recommit-5s: %d seal failure(s), first %q; want none with the recommit above the period", len(fs), fs[0].Err)
	}
	t.Logf("3 s period: default recommit halts at height %d (%d refusals %q); --miner.recommit 5s runs; test took %s",
		h, len(refusals), refusals[0].Err, time.Since(start).Round(time.Second))
}
