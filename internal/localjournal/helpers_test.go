package localjournal

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
)

const (
	testSidecar = "validator-0"
	valA        = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
	valB        = "validator-b"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func hrs(h uint64) fencing.HRS { return fencing.HRS{Height: h, Step: fencing.StepCommit} }

// ent is validator's entry at height h with digest d.
func ent(validator string, h uint64, d byte) fencing.JournalEntry {
	return fencing.JournalEntry{Validator: fencing.ValidatorID(validator), HRS: hrs(h), Digest: fencing.Digest{d, byte(h)}, Epoch: 1, Sidecar: testSidecar, At: t0.Add(time.Duration(h) * time.Millisecond)}
}

func open(t testing.TB, dir string, o Options) *Journal {
	t.Helper()
	if o.Sidecar == "" {
		o.Sidecar = testSidecar
	}
	j, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	return j
}

func mustAppend(t testing.TB, j *Journal, es ...fencing.JournalEntry) {
	t.Helper()
	for _, e := range es {
		if err := j.Append(e); err != nil {
			t.Fatalf("Append(%s %s) = %v", e.Validator, e.HRS, err)
		}
	}
}

func closeJ(t testing.TB, j *Journal) {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
}

// segments lists the segment files of dir, oldest first.
func segments(t testing.TB, dir string) []string {
	t.Helper()
	ls, err := list(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range ls.segments {
		out = append(out, s.path)
	}
	return out
}

// written is the part of a segment before its preallocated NUL bytes.
func written(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimRight(b, "\x00")
}

// copyDir copies the journal files of src into a new directory: the image a
// crash would leave if every write so far had reached the disk.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// lineAt returns the byte range of line n (1-based, newline included) of b.
func lineAt(t testing.TB, b []byte, n int) (start, end int) {
	t.Helper()
	for i := 1; i < n; i++ {
		k := bytes.IndexByte(b[start:], '\n')
		if k < 0 {
			t.Fatalf("no line %d", n)
		}
		start += k + 1
	}
	k := bytes.IndexByte(b[start:], '\n')
	if k < 0 {
		return start, len(b)
	}
	return start, start + k + 1
}

// heights is the heights of validator's records in rs.
func heights(rs []Record, validator fencing.ValidatorID) []uint64 {
	var out []uint64
	for _, r := range rs {
		if r.Validator == validator {
			out = append(out, r.HRS.Height)
		}
	}
	return out
}

func equalU(a, b []uint64) bool { return slices.Equal(a, b) }
