package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/drill"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// waitSigned waits until v's sidecar in region returned n signatures counted
// from record index from.
func waitSigned(t *testing.T, c *cluster, v *validator, region string, from, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range n {
		if _, err := c.rec.WaitFor(ctx, from, func(r drill.Record) bool {
			return r.Validator == v.id && r.Region == region && r.Outcome == drill.Signed
		}); err != nil {
			t.Fatalf("%s's sidecar in %s did not sign within 30s", v.id, region)
		}
		from = c.rec.Len()
	}
}

// oneShot is a validator request outside the workload loop.
func oneShot(c *cluster, v *validator, p *proc, d *drill.Driver, hrs fencing.HRS, timeout time.Duration) drill.Record {
	one := &drill.Driver{Validator: v.id, Region: p.region, Sidecar: p.name, URL: p.URL, Rec: c.rec, Timeout: timeout}
	return one.Sign(context.Background(), nil, hrs, d.Digest(hrs))
}

// checkRun stops the workload and runs the invariant checker.
func checkRun(t *testing.T, c *cluster) *drill.CheckReport {
	t.Helper()
	c.stopWorkload()
	in := c.collect()
	rep := drill.Check(in)
	for i, v := range rep.Violations {
		if i < 10 {
			t.Errorf("VIOLATION %s", v)
			for _, l := range drill.Around(in, v.Validator, v.At, 2*time.Second) {
				t.Log("    " + l)
			}
		}
	}
	if !rep.OK() {
		for _, l := range c.log {
			t.Log(l)
		}
	}
	t.Logf("%s", rep.Summary())
	return rep
}

// TestPausedSidecarIsFenced is issue 3, behaviour 3: the active sidecar's
// process is stopped (SIGSTOP) for longer than the lease TTL while the
// operator bumps to region-b; once continued, the first request it handles,
// one its validator sent while it was stopped, and the next one are refused
// with fenced or stale_epoch, in strict and in lease mode.
func TestPausedSidecarIsFenced(t *testing.T) {
	for _, mode := range []string{"strict", "lease"} {
		t.Run(mode, func(t *testing.T) {
			c := newCluster(t, clusterOptions{Validators: 1, Mode: mode, Seed: 3})
			v := c.vals[0]
			a, da := c.sidecar(v, regionA), c.driver(v, regionA)
			waitSigned(t, c, v, regionA, 0, 5)

			da.Pause() // nothing of A's in flight
			a.pause()
			stopped := time.Now()
			c.logf("SIGSTOP %s (active)", a.name)
			// Sent while A is stopped: the first request A handles after it
			// continues.
			queued := make(chan drill.Record, 1)
			go func() {
				cur, _ := v.chain.Current()
				queued <- oneShot(c, v, a, da, cur, time.Minute)
			}()
			mark := c.rec.Len()
			res := c.bump(regionA, regionB, nil)
			if res.Code == -2 {
				t.Fatalf("bump to region-b while %s is stopped: %s", a.name, res.Err)
			}
			c.logf("bump region-a -> region-b done after %s (A could not release: its lease expired)", res.Took.Round(time.Millisecond))
			waitSigned(t, c, v, regionB, mark, 1)
			if d := c.o.TTL + time.Second - time.Since(stopped); d > 0 {
				time.Sleep(d)
			}
			a.resume()
			c.logf("SIGCONT %s after %s stopped (TTL %s)", a.name, time.Since(stopped).Round(time.Millisecond), c.o.TTL)

			first := <-queued
			cur, _ := v.chain.Current()
			second := oneShot(c, v, a, da, cur, 10*time.Second)
			for _, r := range []drill.Record{first, second} {
				if r.Outcome != drill.Refused || (r.Code != fencing.CodeFenced && r.Code != fencing.CodeStaleEpoch) {
					t.Errorf("%s after SIGCONT: sign(%s) = %s, want refused with fenced or stale_epoch", a.name, r.HRS, r)
				} else {
					t.Logf("%s after SIGCONT: %s", a.name, r)
				}
			}
			da.Resume()
			time.Sleep(time.Second)
			rep := checkRun(t, c)
			if rep.Signed == 0 || rep.Audit.DuplicateCount() != 0 {
				t.Errorf("signed %d, audit duplicates %d; want signatures and no duplicate", rep.Signed, rep.Audit.DuplicateCount())
			}
			coop, part := handovers(c.collect().Events)
			t.Logf("handover with the active sidecar stopped: %s (TTL %s); cooperative ones: %s", stats(part), c.o.TTL, stats(coop))
		})
	}
}

// TestKilledSidecarKeepsWatermark is issue 3, behaviour 4: the active
// sidecar is killed with kill -9 again and again, half the time exactly
// between its quorum journal commit and its reply (the proxy holds back the
// coordinator's answer and kills it), half the time at a random moment with
// requests in flight. After each restart its validator asks again for the
// slots whose answer was lost, with a different digest (it rebuilt its
// block): no slot is ever signed with two digests, every signature returned
// before a kill is in the local journal, and neither the local journal's
// top nor the quorum watermark moves back.
func TestKilledSidecarKeepsWatermark(t *testing.T) {
	kills := 10
	if testing.Short() {
		kills = 4
	}
	c := newCluster(t, clusterOptions{Validators: 1, Mode: "strict", Interval: 40 * time.Millisecond, Seed: 4})
	v := c.vals[0]
	a, da := c.sidecar(v, regionA), c.driver(v, regionA)
	rnd := rand.New(rand.NewPCG(4, 4))
	waitSigned(t, c, v, regionA, 0, 5)
	hits := 0
	noted := map[fencing.HRS]bool{}
	for k := range kills {
		mark := c.rec.Len()
		atJournal := k%2 == 0
		if atJournal {
			if c.killAtJournal(a, 5*time.Second) {
				hits++
			}
		} else {
			time.Sleep(time.Duration(20+rnd.IntN(300)) * time.Millisecond)
			a.kill()
		}
		da.Pause()
		lj, err := audit.LoadLocalJournal(a.stateDir)
		if err != nil {
			t.Fatalf("kill %d: local journal of %s: %v", k, a.name, err)
		}
		topBefore := localTop(lj)
		qBefore := c.quorumWatermark(t, v)
		inJournal := map[fencing.HRS]fencing.Digest{}
		for _, e := range lj.Entries {
			inJournal[e.HRS] = e.Digest
		}
		var lost []fencing.HRS
		for i, r := range c.rec.Records() {
			if r.Sidecar != a.name {
				continue
			}
			// invariant 6: what was returned had been fsynced, locally or
			// (a re-sign decided by the quorum floor) in the quorum journal.
			if r.Outcome == drill.Signed && inJournal[r.HRS] != r.Digest && !noted[r.HRS] {
				if e, ok := c.quorumEntry(t, v, r.HRS); ok && e.Digest == r.Digest {
					noted[r.HRS] = true
					c.logf("NOTE kill %d: %s returned %s (digest already in the quorum journal) without a local journal line", k, a.name, r.HRS)
				} else {
					t.Errorf("kill %d: %s returned a signature at %s that is in neither its local nor the quorum journal", k, a.name, r.HRS)
				}
			}
			if r.Outcome == drill.NoAnswer && i >= mark { // ended after the kill began
				lost = append(lost, r.HRS)
			}
		}
		// The validator restarts too and proposes other blocks.
		da.SetSalt(fmt.Sprintf("restart-%d", k))
		if err := a.start(); err != nil {
			t.Fatal(err)
		}
		if err := a.waitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		lj2, err := audit.LoadLocalJournal(a.stateDir)
		if err != nil {
			t.Fatal(err)
		}
		if top := localTop(lj2); top.Compare(topBefore) < 0 {
			t.Errorf("kill %d: local watermark of %s went back from %s to %s", k, a.name, topBefore, top)
		}
		if q := c.quorumWatermark(t, v); q.Compare(qBefore) < 0 {
			t.Errorf("kill %d: quorum watermark went back from %s to %s", k, qBefore, q)
		}
		// Ask again for each lost slot with the new digest. A slot the
		// quorum journal holds with another digest must be refused.
		journaled := map[fencing.HRS]fencing.Digest{}
		for _, h := range lost {
			if e, ok := c.quorumEntry(t, v, h); ok {
				journaled[h] = e.Digest
			}
		}
		for _, h := range lost {
			r := oneShot(c, v, a, da, h, 5*time.Second)
			switch d, ok := journaled[h]; {
			case ok && d != r.Digest && (r.Outcome != drill.Refused || r.Code != fencing.CodeWatermark):
				t.Errorf("kill %d: %s was journaled before the kill; asking again with another digest = %s, want refused with watermark", k, h, r)
			case r.Outcome == drill.Refused && r.Code == "":
				t.Errorf("kill %d: refusal without a code word: %s", k, r)
			}
		}
		c.logf("kill %d (%s): %d answers lost, local top %s, quorum watermark %s; re-asked with new digests", k, map[bool]string{true: "at journal", false: "random"}[atJournal], len(lost), topBefore, qBefore)
		da.Resume()
		waitSigned(t, c, v, regionA, c.rec.Len(), 3)
	}
	if hits == 0 {
		t.Error("the journal hook never fired: no kill landed between journal and reply")
	}
	// The next holder starts above everything A journaled.
	if res := c.bump(regionA, regionB, nil); res.Code == -2 {
		t.Fatal(res.Err)
	}
	waitSigned(t, c, v, regionB, c.rec.Len(), 5)
	rep := checkRun(t, c)
	t.Logf("%d kills (%d between journal and reply); %d re-signature(s) answered from the quorum floor without a local journal line", kills, hits, len(noted))
	if rep.Audit.DuplicateCount() != 0 {
		t.Errorf("journal audit: %d duplicates", rep.Audit.DuplicateCount())
	}
}

// localTop is the highest HRS in a local journal.
func localTop(lj audit.LocalJournal) fencing.HRS {
	var top fencing.HRS
	for _, e := range lj.Entries {
		if top.Step == "" || e.HRS.Compare(top) > 0 {
			top = e.HRS
		}
	}
	return top
}

// quorumWatermark reads v's quorum watermark from etcd.
func (c *cluster) quorumWatermark(t *testing.T, v *validator) fencing.HRS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.etcdCli.Get(ctx, prefix+"validators/"+v.id+"/watermark")
	if err != nil {
		t.Fatalf("read the quorum watermark: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return fencing.HRS{}
	}
	var wm fencing.Watermark
	if err := json.Unmarshal(resp.Kvs[0].Value, &wm); err != nil {
		t.Fatal(err)
	}
	return wm.HRS
}

// quorumEntry reads v's quorum journal entry at h.
func (c *cluster) quorumEntry(t *testing.T, v *validator, h fencing.HRS) (fencing.JournalEntry, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.etcdCli.Get(ctx, prefix+"validators/"+v.id+"/journal/"+h.JournalPath())
	if err != nil {
		t.Fatalf("read the quorum journal: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return fencing.JournalEntry{}, false
	}
	var e fencing.JournalEntry
	if err := json.Unmarshal(resp.Kvs[0].Value, &e); err != nil {
		t.Fatal(err)
	}
	return e, true
}
