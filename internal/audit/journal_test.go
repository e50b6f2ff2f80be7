package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/localjournal"
)

const valA = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf" // EIP-55 form

func dg(b byte) fencing.Digest { return fencing.Digest{b} }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func entry(validator fencing.ValidatorID, h, r uint64, step fencing.Step, d byte, epoch uint64, sidecar string, at time.Time) fencing.JournalEntry {
	return fencing.JournalEntry{Validator: validator, HRS: fencing.HRS{Height: h, Round: r, Step: step}, Digest: dg(d), Epoch: epoch, Sidecar: sidecar, At: at}
}

func revokeEvent(validator string, epoch uint64, at time.Time, rev int64) fencing.Event {
	return fencing.Event{Kind: fencing.EventFreeze, Validator: fencing.ValidatorID(validator), At: at, Revision: rev,
		From: &fencing.Epoch{Epoch: epoch, State: fencing.StateActive, Holder: "region-a"},
		To:   &fencing.Epoch{Epoch: epoch, State: fencing.StateRevoking, Holder: "region-a"}}
}

func TestAuditJournal(t *testing.T) {
	type late struct {
		epoch  uint64
		height uint64
	}
	tests := []struct {
		name      string
		events    []fencing.Event
		sets      []JournalSet
		wantDups  []fencing.HRS
		wantLate  []late
		wantExit  int
		wantWarns int
	}{
		{
			name: "clean: idempotent re-sign of one HRS with one digest",
			sets: []JournalSet{{Source: "quorum journal", Entries: []fencing.JournalEntry{
				entry(valA, 10, 0, fencing.StepCommit, 1, 1, "validator-0", t0),
				entry(valA, 10, 0, fencing.StepCommit, 1, 1, "validator-0", t0.Add(time.Second)),
				entry(valA, 10, 1, fencing.StepCommit, 2, 1, "validator-0", t0.Add(2*time.Second)),
			}}},
			wantExit: ExitClean,
		},
		{
			name: "same HRS, two digests, across regions and sources",
			sets: []JournalSet{
				{Source: "quorum journal", Entries: []fencing.JournalEntry{entry(valA, 10, 0, fencing.StepCommit, 1, 1, "validator-0", t0)}},
				{Source: "local journal", Entries: []fencing.JournalEntry{entry(valA, 10, 0, fencing.StepCommit, 2, 2, "validator-0.b", t0)},
					Lines: []string{"/state/journal/a.jsonl:3"}},
			},
			wantDups: []fencing.HRS{{Height: 10, Round: 0, Step: fencing.StepCommit}},
			wantExit: ExitDuplicates,
		},
		{
			name:   "entry under epoch 1 written after epoch 1's revoke",
			events: []fencing.Event{revokeEvent(valA, 1, t0.Add(time.Minute), 42), {Kind: fencing.EventGrant, Validator: valA, At: t0.Add(2 * time.Minute)}},
			sets: []JournalSet{{Source: "quorum journal", Entries: []fencing.JournalEntry{
				entry(valA, 10, 0, fencing.StepCommit, 1, 1, "validator-0", t0),                      // before: fine
				entry(valA, 11, 0, fencing.StepCommit, 2, 1, "validator-0", t0.Add(61*time.Second)),  // after: late
				entry(valA, 12, 0, fencing.StepCommit, 3, 2, "validator-0.b", t0.Add(3*time.Minute)), // new epoch: fine
			}}},
			wantLate: []late{{epoch: 1, height: 11}},
			wantExit: ExitDuplicates,
		},
		{
			name: "earliest revoke by revision wins when a bump was resumed",
			events: []fencing.Event{
				revokeEvent(valA, 1, t0.Add(2*time.Minute), 50),
				revokeEvent(valA, 1, t0.Add(time.Minute), 40),
			},
			sets: []JournalSet{{Source: "quorum journal", Entries: []fencing.JournalEntry{
				entry(valA, 11, 0, fencing.StepCommit, 2, 1, "validator-0", t0.Add(90*time.Second)),
			}}},
			wantLate: []late{{epoch: 1, height: 11}},
			wantExit: ExitDuplicates,
		},
		{
			name:      "revoke without epoch is a warning",
			events:    []fencing.Event{{Kind: fencing.EventFreeze, Validator: valA, At: t0, Revision: 7}},
			sets:      []JournalSet{{Source: "quorum journal", Entries: []fencing.JournalEntry{entry(valA, 1, 0, fencing.StepBlock, 1, 1, "v", t0.Add(time.Hour))}}},
			wantExit:  ExitClean,
			wantWarns: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := AuditJournal(tc.events, tc.sets...)
			var gotDups []fencing.HRS
			for _, d := range r.Duplicates {
				if d.Validator != valA {
					t.Errorf("validator %q, want canonical %q", d.Validator, valA)
				}
				gotDups = append(gotDups, fencing.HRS{Height: d.Height, Round: d.Round, Step: d.Step})
			}
			if !slices.Equal(gotDups, tc.wantDups) {
				t.Errorf("duplicates = %v, want %v", gotDups, tc.wantDups)
			}
			var gotLate []late
			for _, l := range r.AfterRevoke {
				gotLate = append(gotLate, late{l.Epoch, l.HRS.Height})
				if !l.EntryAt.After(l.RevokeAt) || l.After == "" || l.RevokeRevision == 0 {
					t.Errorf("late entry %+v lacks both times or the revision", l)
				}
			}
			if !slices.Equal(gotLate, tc.wantLate) {
				t.Errorf("after revoke = %v, want %v", gotLate, tc.wantLate)
			}
			if r.ExitCode() != tc.wantExit {
				t.Errorf("ExitCode() = %d, want %d", r.ExitCode(), tc.wantExit)
			}
			if len(r.Warnings) != tc.wantWarns {
				t.Errorf("warnings = %v, want %d", r.Warnings, tc.wantWarns)
			}
		})
	}
}

// The late-write check uses the earliest revoke by revision: check the
// reported revision explicitly.
func TestAuditJournalRevokeRevision(t *testing.T) {
	r := AuditJournal([]fencing.Event{revokeEvent(valA, 1, t0.Add(2*time.Minute), 50), revokeEvent(valA, 1, t0.Add(time.Minute), 40)},
		JournalSet{Source: "q", Entries: []fencing.JournalEntry{entry(valA, 11, 0, fencing.StepCommit, 2, 1, "v", t0.Add(90*time.Second))}})
	if len(r.AfterRevoke) != 1 || r.AfterRevoke[0].RevokeRevision != 40 || r.AfterRevoke[0].After != "30s" {
		t.Fatalf("after revoke = %+v, want revision 40, 30s after", r.AfterRevoke)
	}
}

// writeLocal writes entries into dir/journal with the sidecar's own writer
// and returns the path of its segment.
func writeLocal(t *testing.T, dir, sidecar string, entries ...fencing.JournalEntry) string {
	t.Helper()
	j, err := localjournal.Open(filepath.Join(dir, "journal"), localjournal.Options{Sidecar: sidecar})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := j.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "journal", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	return segs[0]
}

// damage rewrites the segment at path: f gets its written part (without
// the NUL padding) and returns the new one.
func damage(t *testing.T, path string, f func(b []byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.TrimRight(b, "\x00")
	if err := os.WriteFile(path, f(bytes.Clone(data)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// flipIn changes one byte of line n (1 is the header) of b.
func flipIn(b []byte, n int) []byte {
	start := 0
	for range n - 1 {
		start += bytes.IndexByte(b[start:], '\n') + 1
	}
	b[start+10] ^= 0x01
	return b
}

func TestReadLocalJournal(t *testing.T) {
	e1 := entry(valA, 1, 0, fencing.StepBlock, 1, 1, "validator-0", t0)
	e2 := entry(valA, 2, 0, fencing.StepBlock, 2, 1, "validator-0", t0.Add(time.Second))
	tests := []struct {
		name        string
		damage      func([]byte) []byte
		wantEntries int
		wantWarn    string
		wantErrLine int // 0: no error
	}{
		{name: "complete", wantEntries: 2},
		{name: "torn last record is a warning", damage: func(b []byte) []byte { return append(b, `{"seq":3,"validator":"0x7E`...) }, wantEntries: 2, wantWarn: ":4: last record is torn"},
		{name: "corrupt middle line is an error", damage: func(b []byte) []byte { return flipIn(b, 2) }, wantEntries: 1, wantErrLine: 2},
		{name: "corrupt whole last line is an error", damage: func(b []byte) []byte { return flipIn(b, 3) }, wantEntries: 1, wantErrLine: 3},
		{name: "a blank line is an error", damage: func(b []byte) []byte { return append(b, '\n') }, wantEntries: 2, wantErrLine: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeLocal(t, dir, "validator-0", e1, e2)
			if tc.damage != nil {
				damage(t, path, tc.damage)
			}
			lj, err := LoadLocalJournal(dir)
			if len(lj.Entries) != tc.wantEntries {
				t.Errorf("entries = %d, want %d", len(lj.Entries), tc.wantEntries)
			}
			if tc.wantErrLine == 0 && err != nil {
				t.Fatalf("LoadLocalJournal = %v", err)
			}
			if tc.wantErrLine > 0 {
				var ce *CorruptLineError
				if !errors.As(err, &ce) || ce.File != path || ce.Line != tc.wantErrLine {
					t.Fatalf("LoadLocalJournal error = %v, want %s:%d", err, path, tc.wantErrLine)
				}
			}
			joined := strings.Join(lj.Warnings, "\n")
			if tc.wantWarn != "" && !strings.Contains(joined, path+tc.wantWarn) {
				t.Errorf("warnings %q, want %q", joined, tc.wantWarn)
			}
			if tc.wantWarn == "" && len(lj.Warnings) > 0 {
				t.Errorf("unexpected warnings %v", lj.Warnings)
			}
			for i, l := range lj.Lines {
				if !strings.HasPrefix(l, path+":") {
					t.Errorf("line %d source %q, want %s:N", i, l, path)
				}
			}
			entries, err2 := ReadLocalJournal(dir)
			if len(entries) != len(lj.Entries) || (err == nil) != (err2 == nil) {
				t.Errorf("ReadLocalJournal = %d, %v; want %d, %v", len(entries), err2, len(lj.Entries), err)
			}
		})
	}
}

func TestReadLocalJournalFilesAndDirs(t *testing.T) {
	dir := t.TempDir()
	writeLocal(t, dir, "validator-0", entry(valA, 1, 0, fencing.StepBlock, 1, 1, "validator-0", t0), entry("validator-b", 3, 0, fencing.StepBlock, 3, 1, "validator-0", t0))
	entries, err := ReadLocalJournal(dir)
	if err != nil || len(entries) != 2 {
		t.Fatalf("ReadLocalJournal(state dir) = %d, %v", len(entries), err)
	}
	// The journal directory itself is accepted too.
	if entries, err := ReadLocalJournal(filepath.Join(dir, "journal")); err != nil || len(entries) != 2 {
		t.Errorf("ReadLocalJournal(journal dir) = %d, %v", len(entries), err)
	}
	if _, err := ReadLocalJournal(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir: no error")
	}
	empty, err := LoadLocalJournal(t.TempDir())
	if err != nil || len(empty.Warnings) != 1 || !strings.Contains(empty.Warnings[0], "no local journal") {
		t.Errorf("LoadLocalJournal(empty) = %+v, %v; want a warning", empty, err)
	}
	// A file of the format before segments is refused, not misread.
	old := t.TempDir()
	_ = os.MkdirAll(filepath.Join(old, "journal"), 0o755)
	if err := os.WriteFile(filepath.Join(old, "journal", "x.jsonl"), []byte(`{"validator":"v"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLocalJournal(old); err == nil || !strings.Contains(err.Error(), "old one-file-per-validator format") {
		t.Errorf("ReadLocalJournal(old format) = %v, want a refusal saying so", err)
	}
}

type fakeJournal struct {
	entries []fencing.JournalEntry
	events  []fencing.Event
	err     error
}

func (f *fakeJournal) Journal(context.Context) ([]fencing.JournalEntry, []fencing.Event, error) {
	return f.entries, f.events, f.err
}

var _ JournalSource = (*fakeJournal)(nil)

func TestRunJournalAudit(t *testing.T) {
	dir := t.TempDir()
	path := writeLocal(t, dir, "validator-0.b",
		entry(valA, 4, 0, fencing.StepCommit, 8, 2, "validator-0.b", t0),
		entry(valA, 5, 0, fencing.StepCommit, 9, 2, "validator-0.b", t0),
		entry(valA, 6, 0, fencing.StepCommit, 9, 2, "validator-0.b", t0))
	damage(t, path, func(b []byte) []byte { return append(flipIn(b, 2), `{"seq":4,"vali`...) })
	src := &fakeJournal{entries: []fencing.JournalEntry{entry(valA, 5, 0, fencing.StepCommit, 1, 1, "validator-0", t0)}}
	r := RunJournalAudit(context.Background(), src, dir)
	if len(r.Duplicates) != 1 || r.ExitCode() != ExitDuplicates {
		t.Fatalf("report = %+v, want one duplicate", r)
	}
	srcs := append(slices.Clone(r.Duplicates[0].Variants[0].Sources), r.Duplicates[0].Variants[1].Sources...)
	slices.Sort(srcs)
	if !slices.Equal(srcs, []string{path + ":3", "quorum journal"}) {
		t.Errorf("sources = %v", srcs)
	}
	if len(r.Unaudited) != 1 || r.Unaudited[0].Endpoint != path+":2" {
		t.Errorf("unaudited = %+v, want %s:2", r.Unaudited, path)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "torn") {
		t.Errorf("warnings = %v", r.Warnings)
	}

	// A coordinator that cannot be read makes the run incomplete.
	r = RunJournalAudit(context.Background(), &fakeJournal{err: errors.New("coordinator unreachable")}, "")
	if r.ExitCode() != ExitIncomplete || len(r.Unaudited) != 1 {
		t.Errorf("report = %+v, want incomplete", r)
	}
}

// Lateness by commit revision for quorum entries and against the fenced
// event for local lines: a signature in flight at the revoke is not late.
func TestAuditJournalLateness(t *testing.T) {
	revoke := revokeEvent(valA, 1, t0, 40)
	fenced := fencing.Event{Kind: fencing.EventFenced, Validator: valA, At: t0.Add(time.Second), Revision: 45,
		From: &fencing.Epoch{Epoch: 1, State: fencing.StateRevoking, Holder: "region-a"}}
	quorum := func(h uint64, at time.Time, rev int64) fencing.JournalEntry {
		e := entry(valA, h, 0, fencing.StepCommit, byte(h), 1, "a-0", at)
		e.Revision = rev
		return e
	}
	cases := []struct {
		name      string
		e         fencing.JournalEntry
		wantLate  bool
		wantBasis string
	}{
		{"quorum, stamped after but committed before the revoke", quorum(1, t0.Add(time.Millisecond), 39), false, ""},
		{"quorum, committed after the revoke", quorum(2, t0.Add(-time.Millisecond), 41), true, "revision"},
		{"local, in flight at the revoke", entry(valA, 3, 0, fencing.StepCommit, 3, 1, "a-0", t0.Add(20*time.Millisecond)), false, ""},
		{"local, after every lease was gone", entry(valA, 4, 0, fencing.StepCommit, 4, 1, "a-0", t0.Add(2*time.Second)), true, "after_fenced"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := AuditJournal([]fencing.Event{revoke, fenced}, JournalSet{Source: "s", Entries: []fencing.JournalEntry{c.e}})
			if got := len(r.AfterRevoke) == 1; got != c.wantLate || (got && r.AfterRevoke[0].Basis != c.wantBasis) {
				t.Fatalf("AfterRevoke = %+v, want late=%t basis %q", r.AfterRevoke, c.wantLate, c.wantBasis)
			}
		})
	}
}
