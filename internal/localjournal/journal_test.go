package localjournal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Two validators interleaved in one journal: each keeps its own order and
// watermark, across a restart, and the audit reads every record in order.
func TestTwoValidatorsInterleaved(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	// B is far ahead of A: the order rule is per validator.
	mustAppend(t, j, ent(valA, 1, 1), ent(valB, 100, 1), ent(valA, 2, 2), ent(valB, 101, 2), ent(valA, 5, 5))
	if err := j.Append(ent(valA, 5, 9)); err == nil {
		t.Fatal("Append of A at its own top with another digest succeeded")
	}
	if err := j.Append(ent(valA, 3, 3)); err == nil {
		t.Fatal("Append of A below its top succeeded")
	}
	if err := j.Err(); err != nil {
		t.Fatalf("a refused entry broke the journal: %v", err)
	}
	closeJ(t, j)

	j = open(t, dir, Options{})
	defer closeJ(t, j)
	for _, c := range []struct {
		v string
		h uint64
	}{{valA, 5}, {valB, 101}} {
		if top, ok := j.Top(fencing.ValidatorID(c.v)); !ok || top.HRS.Height != c.h {
			t.Errorf("Top(%s) after restart = %+v, %t; want height %d", c.v, top, ok, c.h)
		}
	}
	if d, ok := j.Signed(valA, hrs(2)); !ok || d != ent(valA, 2, 2).Digest {
		t.Errorf("Signed(A, 2) = %x, %t; want its digest", d, ok)
	}
	if _, ok := j.Signed(valB, hrs(2)); ok {
		t.Error("Signed(B, 2) found A's record")
	}
	c, err := ReadAll(dir)
	if err != nil {
		t.Fatalf("ReadAll = %v", err)
	}
	if got := heights(c.Records, valA); !equalU(got, []uint64{1, 2, 5}) {
		t.Errorf("A's heights = %v", got)
	}
	if got := heights(c.Records, valB); !equalU(got, []uint64{100, 101}) {
		t.Errorf("B's heights = %v", got)
	}
	for i, r := range c.Records {
		if r.Seq != uint64(i+1) || c.Pos[i].Line != i+2 {
			t.Errorf("record %d: seq %d at %s, want seq %d at line %d", i, r.Seq, c.Pos[i], i+1, i+2)
		}
	}
}

// The writer refuses entries that break a rule, alone, without breaking.
func TestAppendRefusesBadEntries(t *testing.T) {
	j := open(t, t.TempDir(), Options{})
	defer closeJ(t, j)
	bad := func(f func(*fencing.JournalEntry)) fencing.JournalEntry {
		e := ent(valA, 10, 1)
		f(&e)
		return e
	}
	for _, c := range []struct {
		name string
		e    fencing.JournalEntry
		want string
	}{
		{"no validator", bad(func(e *fencing.JournalEntry) { e.Validator = "" }), "validator"},
		{"bad step", bad(func(e *fencing.JournalEntry) { e.HRS.Step = "vote" }), "step"},
		{"epoch 0", bad(func(e *fencing.JournalEntry) { e.Epoch = 0 }), "epoch"},
		{"no time", bad(func(e *fencing.JournalEntry) { e.At = time.Time{} }), "at"},
		{"another sidecar", bad(func(e *fencing.JournalEntry) { e.Sidecar = "validator-1" }), "sidecar"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := j.Append(c.e); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Append = %v, want a refusal naming %s", err, c.want)
			}
		})
	}
	mustAppend(t, j, ent(valA, 10, 1))
}

// A failed sync breaks the journal: the record's Append fails, every later
// one too, and the watermark does not move (fail closed).
func TestFailedSyncBreaksTheJournal(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	mustAppend(t, j, ent(valA, 1, 1))
	j.syncFile = func(*os.File) error { return errors.New("EIO") }
	if err := j.Append(ent(valA, 2, 2)); err == nil {
		t.Fatal("Append with a failing sync succeeded")
	}
	j.syncFile = fdatasync
	if err := j.Append(ent(valA, 3, 3)); err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("Append after a failed sync = %v, want the sync's error", err)
	}
	if top, _ := j.Top(valA); top.HRS.Height != 1 {
		t.Fatalf("Top after a failed sync = %s, want 1 (the failed record was never acknowledged)", top.HRS)
	}
	closeJ(t, j)
	// The failed record reached the file: after a restart it counts, which
	// only makes the watermark stricter.
	j = open(t, dir, Options{})
	defer closeJ(t, j)
	if top, _ := j.Top(valA); top.HRS.Height != 2 {
		t.Fatalf("Top after restart = %s, want 2", top.HRS)
	}
}

// Concurrent appends of different validators share syncs, and each is
// answered only after a sync that covers it.
func TestGroupSync(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	var mu sync.Mutex
	syncs := 0
	j.syncFile = func(f *os.File) error {
		mu.Lock()
		syncs++
		mu.Unlock()
		return fdatasync(f)
	}
	const validators, each = 32, 20
	var wg sync.WaitGroup
	for v := range validators {
		wg.Go(func() {
			for h := range uint64(each) {
				e := ent(valB, h+1, byte(v))
				e.Validator = fencing.ValidatorID(fmt.Sprintf("v-%02d", v))
				if err := j.Append(e); err != nil {
					t.Error(err)
					return
				}
				if top, _ := j.Top(e.Validator); top.HRS != e.HRS {
					t.Errorf("Top(%s) right after Append = %s, want %s", e.Validator, top.HRS, e.HRS)
				}
			}
		})
	}
	wg.Wait()
	closeJ(t, j)
	c, err := ReadAll(dir)
	if err != nil || len(c.Records) != validators*each {
		t.Fatalf("ReadAll = %d records, %v; want %d", len(c.Records), err, validators*each)
	}
	t.Logf("%d appends, %d syncs", validators*each, syncs)
	if syncs >= validators*each {
		t.Errorf("%d syncs for %d concurrent appends: no sync was shared", syncs, validators*each)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Options{{}, {Sidecar: "Bad Name"}, {Sidecar: testSidecar, SegmentSize: 100}, {Sidecar: testSidecar, RetainSegments: 1}} {
		if _, err := Open(filepath.Join(t.TempDir(), "j"), o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}
