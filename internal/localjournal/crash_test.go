package localjournal

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Invariant 6 at a crash between write and sync: the record's Append has
// not returned (its signature cannot have left), and every image a crash
// can leave of the unsynced bytes opens with the acknowledged watermark
// intact; a torn part is cut and the HRS may be signed again.
func TestCrashBetweenWriteAndSync(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	mustAppend(t, j, ent(valA, 1, 1), ent(valA, 2, 2)) // acknowledged
	entered, release := make(chan struct{}), make(chan struct{})
	j.syncFile = func(f *os.File) error {
		close(entered)
		<-release
		return fdatasync(f)
	}
	res := make(chan error, 1)
	go func() { res <- j.Append(ent(valA, 3, 3)) }()
	select { // record 3 is written, its sync has not returned
	case <-entered:
	case err := <-res:
		t.Fatalf("Append returned (%v) without a sync", err)
	}
	select {
	case err := <-res:
		t.Fatalf("Append returned (%v) before the sync covering it", err)
	default:
	}
	if top, _ := j.Top(valA); top.HRS.Height != 2 {
		t.Fatalf("Top before the sync returned = %s, want 2 (only durable records count)", top.HRS)
	}
	seg := segments(t, dir)[0]
	full, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	s, e := lineAt(t, full, 4) // header, 1, 2, then 3
	zero := func(from, to int) func([]byte) {
		return func(b []byte) { clear(b[from:to]) }
	}
	images := []struct {
		name     string
		mutate   func([]byte)
		wantTop  uint64
		wantTorn bool
	}{
		{"nothing of it reached the disk", zero(s, e), 2, false},
		{"a prefix reached the disk", zero(s+40, e), 2, true},
		{"a sector in its middle did not", zero(s+20, s+60), 2, true},
		{"all but its newline", zero(e-1, e), 2, true},
		{"all of it", func([]byte) {}, 3, false},
	}
	for _, img := range images {
		t.Run(img.name, func(t *testing.T) {
			d := copyDir(t, dir)
			b := bytes.Clone(full)
			img.mutate(b)
			if err := os.WriteFile(filepath.Join(d, filepath.Base(seg)), b, 0o600); err != nil {
				t.Fatal(err)
			}
			j2 := open(t, d, Options{})
			if top, _ := j2.Top(valA); top.HRS.Height != img.wantTop {
				t.Fatalf("Top after the crash = %s, want height %d", top.HRS, img.wantTop)
			}
			if got := j2.Opened().Torn != nil; got != img.wantTorn {
				t.Fatalf("torn tail cut = %v, want %t", j2.Opened().Torn, img.wantTorn)
			}
			// The never-acknowledged HRS may be signed again, with another digest.
			err := j2.Append(ent(valA, 3, 9))
			if (err == nil) != (img.wantTop == 2) {
				t.Fatalf("Append(3, another digest) = %v, want success iff 3 was not on disk", err)
			}
			mustAppend(t, j2, ent(valA, 4, 4))
			closeJ(t, j2)
			c, err := ReadAll(d)
			if err != nil || c.Torn != nil || !equalU(heights(c.Records, valA), []uint64{1, 2, 3, 4}) {
				t.Fatalf("ReadAll after the restart = %v, torn %v, %v; want 1 2 3 4 and nothing torn", heights(c.Records, valA), c.Torn, err)
			}
		})
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("Append after its sync = %v", err)
	}
	closeJ(t, j)
}

// A crash in the middle of a batch (several records, one write, one sync)
// can leave a sector unwritten with whole records after it: everything
// from the first torn line on was written after it, so no sync covering it
// returned, and it is all cut.
func TestTornBatchIsCutWhole(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	mustAppend(t, j, ent(valA, 1, 1), ent(valA, 2, 2), ent(valB, 3, 3), ent(valA, 4, 4))
	closeJ(t, j)
	seg := segments(t, dir)[0]
	b, _ := os.ReadFile(seg)
	s, _ := lineAt(t, b, 4) // valB's record 3; valA's 4 follows whole
	clear(b[s+30 : s+50])
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := ReadAll(dir)
	if err != nil || c.Torn == nil || c.Torn.Line != 4 || len(c.Records) != 2 {
		t.Fatalf("ReadAll = %d records, torn %v, %v; want 2 records and a torn tail at line 4", len(c.Records), c.Torn, err)
	}
	if !strings.Contains(c.Torn.String(), seg+":4: last record is torn") {
		t.Errorf("torn = %q", c.Torn)
	}
	j = open(t, dir, Options{})
	defer closeJ(t, j)
	if _, ok := j.Top(valB); ok {
		t.Error("valB's torn record counted")
	}
	if top, _ := j.Top(valA); top.HRS.Height != 2 {
		t.Errorf("Top(A) = %s, want 2", top.HRS)
	}
	if after := written(t, seg); bytes.Count(after, []byte("\n")) != 3 {
		t.Errorf("the torn tail was not cut: %d lines remain", bytes.Count(after, []byte("\n")))
	}
}

// Corruption anywhere but a torn tail refuses to start, names the line,
// and leaves the files as they were; the audit reports the same line and
// keeps the other records.
func TestCorruptionRefused(t *testing.T) {
	build := func(t *testing.T) (string, string, []byte) {
		dir := t.TempDir()
		j := open(t, dir, Options{})
		mustAppend(t, j, ent(valA, 1, 1), ent(valA, 2, 2), ent(valA, 3, 3))
		closeJ(t, j)
		seg := segments(t, dir)[0]
		b, _ := os.ReadFile(seg)
		return dir, seg, b
	}
	cases := []struct {
		name     string
		mutate   func(t *testing.T, b []byte) []byte
		wantLine int
		want     string
	}{
		{"a digit of the middle record", func(t *testing.T, b []byte) []byte {
			s, _ := lineAt(t, b, 3)
			i := s + bytes.Index(b[s:], []byte(`"height":2`)) + len(`"height":`)
			b[i] = '1' // height 2 -> 1: still valid JSON
			return b
		}, 3, "checksum mismatch"},
		{"the last record, whole", func(t *testing.T, b []byte) []byte {
			s, _ := lineAt(t, b, 4)
			b[s+10] ^= 0x01
			return b
		}, 4, "checksum"},
		{"a blank line", func(t *testing.T, b []byte) []byte {
			s, _ := lineAt(t, b, 3)
			return append(append(bytes.Clone(b[:s]), '\n'), b[s:]...)
		}, 3, "not a journal line"},
		{"an edit with its checksum redone", func(t *testing.T, b []byte) []byte {
			s, e := lineAt(t, b, 3)
			body := bytes.Replace(b[s:e-crcLen-1], []byte(`"epoch":1`), []byte(`"epoch":01`), 1)
			return append(append(bytes.Clone(b[:s]), withCRC(body)...), b[e:]...)
		}, 3, "not in the form the sidecar writes"},
		{"a whole line that is too long", func(t *testing.T, b []byte) []byte {
			s, _ := lineAt(t, b, 3)
			return append(append(bytes.Clone(b[:s]), append(bytes.Repeat([]byte("x"), MaxLine+10), '\n')...), b[s:]...)
		}, 3, "longer than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, seg, b := build(t)
			b = c.mutate(t, b)
			if err := os.WriteFile(seg, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir, Options{Sidecar: testSidecar})
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Line != c.wantLine || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "refusing to start") {
				t.Fatalf("Open = %v, want a refusal at line %d saying %q", err, c.wantLine, c.want)
			}
			if after, _ := os.ReadFile(seg); !bytes.Equal(after, b) {
				t.Fatal("the refused segment was changed")
			}
			got, err := ReadAll(dir)
			if !errors.As(err, &ce) || ce.File != seg || ce.Line != c.wantLine {
				t.Fatalf("ReadAll error = %v, want %s:%d", err, seg, c.wantLine)
			}
			if len(got.Records) < 2 {
				t.Errorf("ReadAll kept %d records, want the others", len(got.Records))
			}
		})
	}
}

// withCRC completes a line body (a JSON object without its closing brace)
// with its checksum, as a careful hand edit would.
func withCRC(body []byte) []byte {
	return fmt.Appendf(bytes.Clone(body), `,"crc":"%08x"}`+"\n", crc32.Checksum(body, castagnoli))
}

// Records that pass their checksum but break a rule across records are
// refused: out of order, another sidecar, a gap in seq, a segment of
// another sidecar, another format version, the old format.
func TestRuleViolationsRefused(t *testing.T) {
	hdr := func(sidecar string, first uint64) []byte {
		b, _ := appendLine(nil, header{Format: formatName, Version: formatVersion, Kind: kindSegment, Sidecar: sidecar, FirstSeq: first})
		return b
	}
	rec := func(seq uint64, v string, h uint64, sidecar string) []byte {
		e := ent(v, h, byte(h))
		e.Sidecar = sidecar
		b, err := appendRecord(nil, Record{Seq: seq, JournalEntry: e})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	v2, _ := appendLine(nil, header{Format: formatName, Version: 2, Kind: kindSegment, Sidecar: testSidecar, FirstSeq: 1})
	cases := []struct {
		name, file string
		content    []byte
		want       string
		auditOK    bool // a journal consistent in itself, of another sidecar
	}{
		{"out of order", segmentName(1), join(hdr(testSidecar, 1), rec(1, valA, 5, testSidecar), rec(2, valB, 1, testSidecar), rec(3, valA, 4, testSidecar)), "out of order", false},
		{"same HRS twice", segmentName(1), join(hdr(testSidecar, 1), rec(1, valA, 5, testSidecar), rec(2, valA, 5, testSidecar)), "out of order", false},
		{"record of another sidecar", segmentName(1), join(hdr(testSidecar, 1), rec(1, valA, 5, "validator-9")), "record of sidecar", false},
		{"segment of another sidecar", segmentName(1), join(hdr("validator-9", 1), rec(1, valA, 5, "validator-9")), "segment of sidecar", true},
		{"gap in seq", segmentName(1), join(hdr(testSidecar, 1), rec(1, valA, 5, testSidecar), rec(3, valA, 6, testSidecar)), "seq 3 where 2 belongs", false},
		{"name and header disagree", segmentName(1), hdr(testSidecar, 7), "file name says 1", false},
		{"records missing before the oldest segment", segmentName(5), join(hdr(testSidecar, 5), rec(5, valA, 5, testSidecar)), "records 1 to 4 are missing", false},
		{"another format version", segmentName(1), v2, "format version 2", false},
		{"old format", valA + ".jsonl", []byte(`{"validator":"` + valA + `","hrs":{"height":1,"round":0,"step":"commit"}}` + "\n"), "old one-file-per-validator format", false},
		{"old format renamed", segmentName(1), []byte(`{"validator":"` + valA + `","hrs":{"height":1,"round":0,"step":"commit"}}` + "\n"), "old one-file-per-validator format", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, c.file), c.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(dir, Options{Sidecar: testSidecar}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open = %v, want a refusal saying %q", err, c.want)
			}
			if _, err := ReadAll(dir); c.auditOK != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("ReadAll = %v, want an error saying %q: %t", err, c.want, !c.auditOK)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, c.file)); !bytes.Equal(after, c.content) {
				t.Fatal("the refused file was changed")
			}
		})
	}
	// The sidecar opening another sidecar's journal is refused too.
	dir := t.TempDir()
	closeJ(t, open(t, dir, Options{Sidecar: "validator-9"}))
	if _, err := Open(dir, Options{Sidecar: testSidecar}); err == nil || !strings.Contains(err.Error(), "--name must stay the same") {
		t.Fatalf("Open of another sidecar's journal = %v, want a refusal", err)
	}
}
