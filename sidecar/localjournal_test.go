package sidecar

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/localjournal"
)

func entry(h uint64, d byte) fencing.JournalEntry {
	return fencing.JournalEntry{Validator: "val-1", HRS: fencing.HRS{Height: h, Step: fencing.StepCommit}, Digest: fencing.Digest{d}, Epoch: 1, Sidecar: "a-0", At: time.Now().UTC()}
}

func openOne(t *testing.T, dir string) *LocalJournal {
	t.Helper()
	js, err := OpenLocalJournals(dir, "a-0", []fencing.ValidatorID{"val-1"})
	if err != nil {
		t.Fatalf("OpenLocalJournals = %v", err)
	}
	return js[0]
}

// Invariants 5 and 6 at the gate: what Check allows, before and after a
// restart, with and without the quorum floor.
func TestLocalJournal(t *testing.T) {
	dir := t.TempDir()
	j := openOne(t, dir)
	for _, h := range []uint64{1, 2, 5} {
		if err := j.Append(entry(h, byte(h))); err != nil {
			t.Fatal(err)
		}
	}
	checks := []struct {
		name   string
		h      uint64
		d      byte
		floor  *fencing.Watermark
		again  bool
		refuse bool
	}{
		{"above", 6, 6, nil, false, false},
		{"same digest again", 5, 5, nil, true, false},
		{"old HRS same digest", 2, 2, nil, true, false},
		{"same HRS other digest", 5, 9, nil, false, true},
		{"below watermark", 4, 4, nil, false, true},
		{"below the quorum floor", 7, 7, &fencing.Watermark{HRS: fencing.HRS{Height: 8, Step: fencing.StepCommit}}, false, true},
		{"the floor itself, its digest", 8, 8, &fencing.Watermark{HRS: fencing.HRS{Height: 8, Step: fencing.StepCommit}, Digest: fencing.Digest{8}}, false, false},
		{"the floor itself, other digest", 8, 9, &fencing.Watermark{HRS: fencing.HRS{Height: 8, Step: fencing.StepCommit}, Digest: fencing.Digest{8}}, false, true},
	}
	run := func(t *testing.T, j *LocalJournal) {
		for _, c := range checks {
			e := entry(c.h, c.d)
			again, err := j.Check(e.HRS, e.Digest, c.floor)
			if again != c.again || (err != nil) != c.refuse || (err != nil && fencing.CodeOf(err) != fencing.CodeWatermark) {
				t.Errorf("%s: Check(%d) = %t, %v; want again=%t refuse=%t", c.name, c.h, again, err, c.again, c.refuse)
			}
		}
	}
	run(t, j)
	if wm := j.Watermark(); wm == nil || wm.Height != 5 || wm.Digest != (fencing.Digest{5}) || wm.Sidecar != "a-0" {
		t.Fatalf("Watermark() = %+v, want height 5", wm)
	}
	if err := j.Append(fencing.JournalEntry{Validator: "val-2", HRS: fencing.HRS{Height: 9, Step: fencing.StepCommit}, Epoch: 1, Sidecar: "a-0", At: time.Now()}); err == nil {
		t.Error("the view of val-1 recorded a signature of val-2")
	}
	_ = j.Close()
	t.Run("after a restart", func(t *testing.T) {
		j := openOne(t, dir)
		defer j.Close()
		run(t, j)
	})
}

// The sidecar refuses to start on a damaged journal and says what to do;
// the files are left as they were.
func TestLocalJournalRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	j := openOne(t, dir)
	for h := range uint64(3) {
		if err := j.Append(entry(h+1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	_ = j.Close()
	seg := filepath.Join(dir, "journal", "00000000000000000001.seg")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), `"height":2`) + len(`"height":`)
	b[i] = '1' // a bit flip in the middle
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenLocalJournals(dir, "a-0", []fencing.ValidatorID{"val-1"})
	if err == nil || !strings.Contains(err.Error(), seg+":3") || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "never delete") {
		t.Fatalf("OpenLocalJournals = %v, want a refusal naming %s:3", err, seg)
	}
	if after, _ := os.ReadFile(seg); string(after) != string(b) {
		t.Fatal("the refused journal was changed")
	}
	// A journal of the old format is refused with a clear message.
	old := t.TempDir()
	_ = os.MkdirAll(filepath.Join(old, "journal"), 0o700)
	if err := os.WriteFile(filepath.Join(old, "journal", "val-1.jsonl"), []byte(`{"validator":"val-1"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocalJournals(old, "a-0", []fencing.ValidatorID{"val-1"}); err == nil || !strings.Contains(err.Error(), "old one-file-per-validator format") {
		t.Fatalf("OpenLocalJournals(old format) = %v, want a refusal saying so", err)
	}
}

// Once the journal cannot write, every check refuses (fail closed) instead
// of signing without a record.
func TestLocalJournalFailsClosed(t *testing.T) {
	js, err := OpenLocalJournals(t.TempDir(), "a-0", []fencing.ValidatorID{"val-1", "val-2"})
	if err != nil {
		t.Fatal(err)
	}
	_ = js[1].Close()
	e := entry(1, 1)
	if _, err := js[0].Check(e.HRS, e.Digest, nil); err != nil {
		t.Fatalf("Check with the journal still open for val-1 = %v", err)
	}
	_ = js[0].Close() // the last view: the journal is closed
	if err := js[0].Append(e); err == nil {
		t.Fatal("Append to a closed journal succeeded")
	}
	if _, err := js[0].Check(e.HRS, e.Digest, nil); fencing.CodeOf(err) != fencing.CodeWatermark {
		t.Fatalf("Check on a closed journal = %v, want a watermark refusal", err)
	}
}

// The hammer of invariant 5 across restarts and compactions: many
// goroutines per validator, many validators, requests around each
// validator's watermark with one of two digests, without the gate's
// per-validator lock. No HRS is ever acknowledged with two digests, and
// after the last restart every validator's watermark is its highest
// acknowledged signature.
func TestLocalJournalHammer(t *testing.T) {
	const validators, workers = 8, 4
	rounds, attempts := 4, 150
	if testing.Short() {
		rounds, attempts = 2, 50
	}
	dir := t.TempDir()
	ids := make([]fencing.ValidatorID, validators)
	for v := range ids {
		ids[v] = fencing.ValidatorID(fmt.Sprintf("val-%d", v))
	}
	o := localjournal.Options{Sidecar: "a-0", SegmentSize: 8 << 10, RetainSegments: 2}
	type slot struct {
		v   int
		hrs fencing.HRS
	}
	var mu sync.Mutex
	acked := map[slot]fencing.Digest{}
	top := make([]fencing.HRS, validators)
	steps := []fencing.Step{fencing.StepPrepare, fencing.StepCommit}
	var appended int
	for round := range rounds {
		js, err := openLocalJournals(dir, ids, o)
		if err != nil {
			t.Fatalf("round %d: open = %v", round, err)
		}
		for v := range validators {
			if wm := js[v].Watermark(); (wm == nil) != (top[v].Step == "") || (wm != nil && wm.HRS != top[v]) {
				t.Fatalf("round %d: %s's watermark after the restart = %+v, want %s", round, ids[v], wm, top[v])
			}
		}
		var wg sync.WaitGroup
		for v := range validators {
			for w := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(round), uint64(v*workers+w)))
					for range attempts {
						base := uint64(1)
						if wm := js[v].Watermark(); wm != nil {
							base = wm.Height
						}
						h := fencing.HRS{Height: max(1, base+uint64(rng.IntN(4))-1), Step: steps[rng.IntN(2)]}
						d := fencing.Digest{byte(rng.IntN(2)), byte(h.Height)}
						again, err := js[v].Check(h, d, nil)
						if err == nil && !again {
							err = js[v].Append(fencing.JournalEntry{Validator: ids[v], HRS: h, Digest: d, Epoch: uint64(round + 1), Sidecar: "a-0", At: time.Now()})
						}
						if err != nil {
							continue
						}
						mu.Lock()
						if prev, ok := acked[slot{v, h}]; ok && prev != d {
							t.Errorf("%s at %s signed with %x and %x", ids[v], h, prev[:2], d[:2])
						}
						acked[slot{v, h}] = d
						if !again {
							appended++
						}
						if h.Compare(top[v]) > 0 || top[v].Step == "" {
							top[v] = h
						}
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		for _, j := range js {
			_ = j.Close()
		}
	}
	c, err := localjournal.ReadAll(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatalf("ReadAll = %v", err)
	}
	for _, r := range c.Records {
		var v int
		_, _ = fmt.Sscanf(string(r.Validator), "val-%d", &v)
		if d, ok := acked[slot{v, r.HRS}]; !ok || d != r.Digest {
			t.Errorf("the journal holds %s at %s with %x, acknowledged %x (%t)", r.Validator, r.HRS, r.Digest[:2], d[:2], ok)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "journal", "*.seg"))
	t.Logf("%d signatures recorded over %d restarts; %d retained records in %d segments", appended, rounds-1, len(c.Records), len(segs))
	if len(c.Records) >= appended {
		t.Errorf("no compaction happened (%d records retained of %d)", len(c.Records), appended)
	}
}
