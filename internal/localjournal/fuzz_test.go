package localjournal

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// FuzzJournal: a segment (named after the first_seq of its header when it
// has one) and an optional checkpoint. Seeds in testdata/fuzz/FuzzJournal:
// whole journals, a torn tail, a torn batch, corruption, rule violations,
// a compacted journal, the old format, another version.
//
//   - nothing panics;
//   - every record read is byte for byte the writer's line for it;
//   - the sidecar and the audit apply one set of rules: Open refuses
//     exactly when ReadAll reports an error (or another sidecar's journal);
//   - after Open, the watermarks are those of the records the audit read,
//     and appending then reading again gives those records plus the new one,
//     with nothing torn.
func FuzzJournal(f *testing.F) {
	f.Fuzz(func(t *testing.T, seg, cp []byte) {
		dir := t.TempDir()
		first := uint64(1)
		if i := bytes.IndexByte(seg, '\n'); i > 0 {
			var h header
			if json.Unmarshal(seg[:i], &h) == nil && h.FirstSeq > 0 {
				first = h.FirstSeq
			}
		}
		write := func(name string, b []byte) {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write(segmentName(first), seg)
		if len(cp) > 0 {
			write(checkpointName, cp)
		}
		c, rerr := ReadAll(dir)
		files := map[string][]byte{filepath.Join(dir, segmentName(first)): seg, filepath.Join(dir, checkpointName): cp}
		for i, r := range c.Records {
			line, err := appendRecord(nil, r)
			if err != nil {
				t.Fatalf("record %d read from %s does not encode: %v", i, c.Pos[i], err)
			}
			b := files[c.Pos[i].File]
			s := lineStart(b, c.Pos[i].Line)
			if s < 0 || !bytes.HasPrefix(b[s:], line) {
				t.Fatalf("record %d at %s is not the writer's line %q", i, c.Pos[i], line)
			}
		}
		j, oerr := Open(dir, Options{Sidecar: testSidecar})
		ours := c.Sidecar == "" || c.Sidecar == testSidecar
		if (oerr == nil) != (rerr == nil && ours) {
			t.Fatalf("Open = %v but ReadAll = %v (sidecar %q): the two read by different rules", oerr, rerr, c.Sidecar)
		}
		if oerr != nil {
			return
		}
		defer j.Close()
		want := map[fencing.ValidatorID]Record{}
		for _, r := range c.Records {
			if w, ok := want[r.Validator]; !ok || r.HRS.Compare(w.HRS) > 0 {
				want[r.Validator] = r
			}
		}
		for v, w := range want {
			if got, ok := j.Top(v); !ok || !sameRecord(got, w) {
				t.Fatalf("Top(%s) = %+v, want %+v", v, got, w)
			}
		}
		if (j.Opened().Torn == nil) != (c.Torn == nil) {
			t.Fatalf("Open cut %v, ReadAll saw %v", j.Opened().Torn, c.Torn)
		}
		h := uint64(1)
		if top, ok := j.Top("fuzz-v"); ok {
			h = top.HRS.Height + 1
		}
		if err := j.Append(ent("fuzz-v", h, 1)); err != nil {
			t.Fatalf("Append after Open = %v", err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		again, err := ReadAll(dir)
		if err != nil || again.Torn != nil || len(again.Records) == 0 || again.Records[len(again.Records)-1].Validator != "fuzz-v" {
			t.Fatalf("ReadAll after an append = %d records, torn %v, %v; want the new one last and nothing torn", len(again.Records), again.Torn, err)
		}
		for v, w := range want {
			if got, _ := topOf(again.Records, v); got.HRS.Compare(w.HRS) < 0 {
				t.Fatalf("%s's watermark as the audit reads it went back from %s to %s", v, w.HRS, got.HRS)
			}
		}
	})
}

// lineStart is the offset of line n (1-based) of b, or -1.
func lineStart(b []byte, n int) int {
	s := 0
	for range n - 1 {
		k := bytes.IndexByte(b[s:], '\n')
		if k < 0 {
			return -1
		}
		s += k + 1
	}
	return s
}

// topOf is validator's highest record in rs.
func topOf(rs []Record, validator fencing.ValidatorID) (Record, bool) {
	var top Record
	found := false
	for _, r := range rs {
		if r.Validator == validator && (!found || r.HRS.Compare(top.HRS) > 0) {
			top, found = r, true
		}
	}
	return top, found
}
