package localjournal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// small makes a segment hold about 25 records.
var small = Options{SegmentSize: minSegmentSize, RetainSegments: 2}

// compacted builds a journal through many rotations: "early" signs three
// times at the start only, A and B 300 times each, interleaved. After each
// append the checkpoint may only have moved forward.
func compacted(t *testing.T, o Options) (string, map[fencing.ValidatorID]Record) {
	t.Helper()
	dir := t.TempDir()
	j := open(t, dir, o)
	var last map[fencing.ValidatorID]Record
	watch := func() {
		cp, err := readCheckpoint(filepath.Join(dir, checkpointName), nil)
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		for v, r := range last {
			if now, ok := cp.tops[v]; !ok || now.HRS.Compare(r.HRS) < 0 {
				t.Fatalf("the checkpoint moved %s's watermark back from %s to %+v", v, r.HRS, now)
			}
		}
		last = cp.tops
	}
	mustAppend(t, j, ent("early", 1, 1), ent("early", 2, 2), ent("early", 3, 3))
	for h := uint64(1); h <= 300; h++ {
		mustAppend(t, j, ent(valA, h, 1), ent(valB, h, 2))
		watch()
	}
	tops := map[fencing.ValidatorID]Record{}
	for _, v := range []string{"early", valA, valB} {
		tops[fencing.ValidatorID(v)], _ = j.Top(fencing.ValidatorID(v))
	}
	closeJ(t, j)
	return dir, tops
}

// Invariant 6 across compaction: after a restart the watermarks are the
// same, including one held only by the checkpoint; the start reads the
// checkpoint and at most two segments; the audit reads every retained
// record once.
func TestRestartAfterCompaction(t *testing.T) {
	dir, tops := compacted(t, small)
	segs := segments(t, dir)
	if len(segs) != small.RetainSegments {
		t.Fatalf("%d segments on disk, want %d (the rest deleted)", len(segs), small.RetainSegments)
	}
	j := open(t, dir, small)
	defer closeJ(t, j)
	for v, want := range tops {
		if got, ok := j.Top(v); !ok || !sameRecord(got, want) {
			t.Errorf("Top(%s) after restart = %+v, want %+v", v, got, want)
		}
	}
	cpInfo, err := os.Stat(filepath.Join(dir, checkpointName))
	if err != nil {
		t.Fatal(err)
	}
	if info := j.Opened(); info.Bytes > 2*small.SegmentSize+cpInfo.Size() || info.Records > 60 {
		t.Errorf("Open read %d bytes, %d records; want at most the checkpoint and two segments", info.Bytes, info.Records)
	}
	if d, ok := j.Signed("early", hrs(3)); !ok || d != ent("early", 3, 3).Digest {
		t.Errorf("Signed(early, 3) = %x, %t; want its digest from the checkpoint", d, ok)
	}
	for _, e := range []struct {
		h uint64
		d byte
	}{{3, 9}, {2, 2}, {1, 7}} {
		if err := j.Append(ent("early", e.h, e.d)); err == nil {
			t.Errorf("Append(early, %d) below or at its checkpointed watermark succeeded", e.h)
		}
	}
	mustAppend(t, j, ent("early", 4, 4))

	c, err := ReadAll(dir)
	if err != nil {
		t.Fatalf("ReadAll = %v", err)
	}
	var prev uint64
	for i, r := range c.Records {
		if r.Seq <= prev {
			t.Fatalf("record %d: seq %d after %d", i, r.Seq, prev)
		}
		prev = r.Seq
	}
	if got := heights(c.Records, "early"); !equalU(got, []uint64{3, 4}) || c.Pos[0].File != filepath.Join(dir, checkpointName) {
		t.Errorf("early's heights = %v (first from %s), want 3 (from the checkpoint) and 4", got, c.Pos[0])
	}
	if got := heights(c.Records, valA); got[len(got)-1] != 300 {
		t.Errorf("A's last height = %d, want 300", got[len(got)-1])
	}
}

// The images a crash or an operator can leave around a rotation.
func TestCompactionImages(t *testing.T) {
	o := Options{SegmentSize: minSegmentSize, RetainSegments: 3}
	dir, tops := compacted(t, o)
	segs := segments(t, dir)
	cp := filepath.Join(dir, checkpointName)

	t.Run("unfinished files of a crashed rotation are removed", func(t *testing.T) {
		d := copyDir(t, dir)
		for _, n := range []string{checkpointName + tmpExt, segmentName(999) + tmpExt} {
			if err := os.WriteFile(filepath.Join(d, n), []byte("half"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		j := open(t, d, o)
		closeJ(t, j)
		if m, _ := filepath.Glob(filepath.Join(d, "*"+tmpExt)); len(m) != 0 {
			t.Errorf("left over: %v", m)
		}
	})
	t.Run("a crash after the new segment, before the checkpoint", func(t *testing.T) {
		d := copyDir(t, dir)
		c, _ := readCheckpoint(filepath.Join(d, checkpointName), nil)
		// The next rotation's segment exists, empty; the checkpoint is the old one.
		j := &Journal{dir: d, o: Options{Sidecar: testSidecar, SegmentSize: minSegmentSize}, next: lastSeq(t, d) + 1}
		if err := j.newSegment(); err != nil {
			t.Fatal(err)
		}
		_ = j.seg.Close()
		j2 := open(t, d, o)
		defer closeJ(t, j2)
		if got, _ := j2.Top(valA); !sameRecord(got, tops[valA]) {
			t.Errorf("Top(A) = %+v, want %+v", got, tops[valA])
		}
		if n := len(j2.Opened().Files); n != 3 || c.nextSeq == j.next {
			t.Errorf("Open read %v, want the checkpoint and two segments", j2.Opened().Files)
		}
		mustAppend(t, j2, ent(valA, 301, 1))
	})
	t.Run("a checkpoint restored from an older copy", func(t *testing.T) {
		d := copyDir(t, dir)
		old := oldCheckpoint(t, o)
		if err := os.WriteFile(filepath.Join(d, checkpointName), old, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(d, Options{Sidecar: testSidecar}); err == nil || !strings.Contains(err.Error(), "is missing") {
			t.Fatalf("Open = %v, want a refusal", err)
		}
		if _, err := ReadAll(d); err == nil {
			t.Fatal("ReadAll found nothing wrong")
		}
	})
	t.Run("the segment after the checkpoint deleted", func(t *testing.T) {
		d := copyDir(t, dir)
		if err := os.Remove(filepath.Join(d, filepath.Base(segs[len(segs)-1]))); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(d, Options{Sidecar: testSidecar}); err == nil || !strings.Contains(err.Error(), "acknowledged records may be lost") {
			t.Fatalf("Open = %v, want a refusal", err)
		}
	})
	t.Run("the checkpoint deleted", func(t *testing.T) {
		d := copyDir(t, dir)
		if err := os.Remove(filepath.Join(d, checkpointName)); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(d, Options{Sidecar: testSidecar}); err == nil || !strings.Contains(err.Error(), "no checkpoint covers") {
			t.Fatalf("Open = %v, want a refusal", err)
		}
	})
	t.Run("a middle segment deleted", func(t *testing.T) {
		d := copyDir(t, dir)
		if err := os.Remove(filepath.Join(d, filepath.Base(segs[1]))); err != nil {
			t.Fatal(err)
		}
		// The sidecar reads only what follows the checkpoint; the audit sees the gap.
		closeJ(t, open(t, d, o))
		if _, err := ReadAll(d); err == nil || !strings.Contains(err.Error(), "records are missing") {
			t.Fatalf("ReadAll = %v, want the gap", err)
		}
	})
	t.Run("a corrupt checkpoint", func(t *testing.T) {
		d := copyDir(t, dir)
		b, _ := os.ReadFile(cp)
		b[len(b)/2] ^= 0x01
		if err := os.WriteFile(filepath.Join(d, checkpointName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		var ce *CorruptError
		if _, err := Open(d, Options{Sidecar: testSidecar}); !errors.As(err, &ce) {
			t.Fatalf("Open = %v, want a refusal naming the line", err)
		}
	})
}

// oldCheckpoint is the checkpoint of the first rotation of compacted.
func oldCheckpoint(t *testing.T, o Options) []byte {
	t.Helper()
	dir := t.TempDir()
	j := open(t, dir, o)
	defer closeJ(t, j)
	for h := uint64(1); ; h++ {
		mustAppend(t, j, ent(valA, h, 1))
		if b, err := os.ReadFile(filepath.Join(dir, checkpointName)); err == nil {
			return b
		}
	}
}

// lastSeq is the seq of the last record in dir.
func lastSeq(t *testing.T, dir string) uint64 {
	t.Helper()
	c, err := ReadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c.Records[len(c.Records)-1].Seq
}
