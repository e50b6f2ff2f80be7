package localjournal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/groupcommit"
)

// Defaults of Options.
const (
	DefaultSegmentSize    = 8 << 20 // about 28,000 records
	DefaultRetainSegments = 16      // 128 MiB of evidence for the audit
	DefaultRemember       = 1 << 16 // recent signatures kept for idempotent re-signing

	minSegmentSize = 4 * MaxLine
	maxBatch       = 1024 // appends written and synced together at most
)

// Options configure a Journal.
type Options struct {
	// Sidecar is the name of the sidecar that owns the journal (required).
	// Every header and record carries it; a journal of another name is
	// refused.
	Sidecar string
	// SegmentSize is the preallocated size of each segment file.
	SegmentSize int64
	// RetainSegments is how many segments are kept, the one being written
	// included; older ones are deleted once a checkpoint covers them.
	RetainSegments int
	// Remember is how many recent signatures (beside each validator's
	// highest) are kept in memory so that one may be signed again with the
	// same digest.
	Remember int
}

func (o Options) withDefaults() (Options, error) {
	if err := fencing.ValidateSidecar(o.Sidecar); err != nil {
		return o, fmt.Errorf("local journal: %s", message(err))
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.RetainSegments == 0 {
		o.RetainSegments = DefaultRetainSegments
	}
	if o.Remember == 0 {
		o.Remember = DefaultRemember
	}
	var problems []string
	if o.SegmentSize < minSegmentSize {
		problems = append(problems, fmt.Sprintf("segment size %d must be at least %d bytes", o.SegmentSize, minSegmentSize))
	}
	if o.RetainSegments < 2 {
		problems = append(problems, fmt.Sprintf("retained segments (%d) must be at least 2", o.RetainSegments))
	}
	if o.Remember < 1 {
		problems = append(problems, fmt.Sprintf("remembered signatures (%d) must be at least 1", o.Remember))
	}
	if len(problems) > 0 {
		return o, fmt.Errorf("local journal: %s", strings.Join(problems, "; "))
	}
	return o, nil
}

// ErrClosed is returned by a journal after Close.
var ErrClosed = errors.New("local journal is closed")

// Journal is the sidecar's local signing record, shared by all its
// validators. Append returns once the record is durable; concurrent appends
// (of different validators) are written together and share one fdatasync.
type Journal struct {
	dir    string
	o      Options
	queue  *groupcommit.Queue[fencing.JournalEntry, struct{}]
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	opened OpenInfo

	// Owned by the committer goroutine (run) once Open returns.
	seg      *os.File
	off      int64 // where the next record goes in seg
	capacity int64 // seg's preallocated size
	next     uint64
	written  map[fencing.ValidatorID]Record // highest record written of each validator
	known    map[string]string              // names that passed validateEntry
	segments []uint64                       // first seq of each segment on disk, oldest first
	buf      []byte
	syncFile func(*os.File) error // fdatasync; tests replace it to inject faults

	mu     sync.Mutex // guards the durable state below
	tops   map[fencing.ValidatorID]Record
	recent recentSet
	broken error
}

// OpenInfo says what Open read: its cost is bounded by the checkpoint and
// the segments after it, whatever the journal's history.
type OpenInfo struct {
	Files   []string
	Records int
	Bytes   int64
	// Torn is the torn tail Open cut off, if any.
	Torn *Torn
}

// Open reads the journal in dir (creating it if needed) and starts its
// committer. It reads the checkpoint and the segments not covered by it,
// with every rule of the package doc, and refuses on anything but a torn
// last record, which it cuts off (overwrites with NUL bytes).
func Open(dir string, o Options) (*Journal, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local journal: %w", err)
	}
	ls, err := list(dir)
	if err != nil {
		return nil, err
	}
	if len(ls.old) > 0 {
		return nil, fmt.Errorf("%w; refusing to start", oldFormatError(ls.old[0]))
	}
	j := &Journal{dir: dir, o: o, recent: newRecentSet(o.Remember), syncFile: fdatasync}
	r := &reader{visit: func(rec Record, _ Pos) { j.recent.add(rec) }}
	r.run(ls, o.Sidecar, true)
	if err := r.err(); err != nil {
		return nil, fmt.Errorf("%w: refusing to start; restore the journal or audit it with fencectl audit journal --state-dir, never delete it to get going", err)
	}
	for _, p := range ls.temps { // unfinished files of a crashed rotation
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("local journal: %w", err)
		}
	}
	j.next, j.written, j.tops, j.known = r.next, r.replay.tops(), r.replay.tops(), r.interned
	for _, s := range ls.segments {
		j.segments = append(j.segments, s.first)
	}
	j.opened = OpenInfo{Files: r.files, Records: r.records, Bytes: r.bytes}
	if r.last == nil {
		err = j.newSegment()
	} else {
		err = j.reopen(r.last)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		if j.seg != nil {
			_ = j.seg.Close()
		}
		return nil, err
	}
	j.queue = groupcommit.New[fencing.JournalEntry, struct{}](maxBatch)
	j.ctx, j.cancel = context.WithCancel(context.Background())
	j.done = make(chan struct{})
	go j.run()
	return j, nil
}

// reopen continues the last segment after its last whole record, cutting
// off a torn tail first.
func (j *Journal) reopen(s *segmentRead) error {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("local journal: %w", err)
	}
	// A segment shorter than SegmentSize (not preallocated) grows as written.
	j.seg, j.off, j.capacity = f, s.end, max(s.size, j.o.SegmentSize)
	if t := s.torn; t != nil {
		if _, err := f.WriteAt(make([]byte, t.Bytes), t.Offset); err != nil {
			return fmt.Errorf("local journal: cut the torn tail at %s: %w", t.Pos, err)
		}
		if err := j.syncFile(f); err != nil {
			return fmt.Errorf("local journal: cut the torn tail at %s: %w", t.Pos, err)
		}
		j.opened.Torn = t
	}
	return nil
}

// Opened says what Open read and whether it cut a torn tail.
func (j *Journal) Opened() OpenInfo { return j.opened }

// Append writes e as the journal's next record and returns once it is
// durable. An entry that breaks a rule (bad fields, another sidecar, an HRS
// not above the validator's last record) is refused alone; a failed write
// or sync breaks the journal, and every later call fails until it is
// opened again (fail closed: the watermark is never reset).
func (j *Journal) Append(e fencing.JournalEntry) error {
	if err := j.Err(); err != nil {
		return err
	}
	if _, err := j.queue.Do(j.ctx, e); err != nil {
		if j.ctx.Err() != nil {
			return ErrClosed
		}
		return err
	}
	return nil
}

// Err is the error that broke the journal, or ErrClosed, or nil.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.broken
}

// Top is the highest durable record of validator.
func (j *Journal) Top(validator fencing.ValidatorID) (Record, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.tops[validator]
	return r, ok
}

// Signed returns the digest validator signed at hrs, if the journal holds
// it durably and remembers it: the validator's highest record always, older
// ones among the last Options.Remember.
func (j *Journal) Signed(validator fencing.ValidatorID, hrs fencing.HRS) (fencing.Digest, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if t, ok := j.tops[validator]; ok && t.HRS == hrs {
		return t.Digest, true
	}
	d, ok := j.recent.m[recentKey{validator, hrs}]
	return d, ok
}

// Close stops the committer and closes the files; later calls fail.
func (j *Journal) Close() error {
	j.cancel()
	<-j.done
	j.mu.Lock()
	if j.broken == nil {
		j.broken = ErrClosed
	}
	j.mu.Unlock()
	return j.seg.Close()
}

type pendingAppend = groupcommit.Item[fencing.JournalEntry, struct{}]

// run is the committer: it takes every append that queued while the last
// write was in flight, writes them at once and syncs once.
func (j *Journal) run() {
	defer close(j.done)
	batch := make([]*pendingAppend, 0, maxBatch)
	for {
		it, ok := j.queue.Next(j.ctx)
		if !ok {
			return
		}
		batch = append(batch[:0], it)
		for len(batch) < maxBatch {
			more, ok := j.queue.TryNext()
			if !ok {
				break
			}
			batch = append(batch, more)
		}
		j.commit(batch)
	}
}

// commit writes batch and syncs it. Each item is answered only after the
// sync that covers it returned: a record is durable before its signature
// can leave (invariant 6).
func (j *Journal) commit(batch []*pendingAppend) {
	if err := j.Err(); err != nil {
		for _, it := range batch {
			it.Finish(struct{}{}, err)
		}
		return
	}
	recs := make([]Record, 0, len(batch))
	ok := make([]*pendingAppend, 0, len(batch))
	buf := j.buf[:0]
	var err error
	i := 0
	for ; i < len(batch); i++ {
		rec := Record{Seq: j.next, JournalEntry: batch[i].Req}
		line, cerr := j.encode(buf, rec)
		if cerr != nil {
			batch[i].Finish(struct{}{}, cerr)
			continue
		}
		if j.off+int64(len(line)) > j.capacity {
			if err = j.write(buf); err != nil {
				break
			}
			if err = j.rotate(); err != nil {
				break
			}
			line, _ = j.encode(buf[:0], rec)
		}
		buf = line
		j.next++
		j.written[rec.Validator] = rec
		recs = append(recs, rec)
		ok = append(ok, batch[i])
	}
	if err == nil {
		err = j.write(buf)
	}
	if err == nil && len(recs) > 0 {
		if serr := j.syncFile(j.seg); serr != nil {
			err = fmt.Errorf("local journal: fdatasync %s: %w", j.seg.Name(), serr)
		}
	}
	j.buf = buf[:0]
	j.mu.Lock()
	if err != nil {
		j.broken = fmt.Errorf("%w (the journal refuses every signature until the sidecar restarts and rereads it)", err)
		err = j.broken
	} else {
		for _, r := range recs {
			j.tops[r.Validator] = r
			j.recent.add(r)
		}
	}
	j.mu.Unlock()
	for _, it := range append(ok, batch[i:]...) { // batch[i:] is empty unless err
		it.Finish(struct{}{}, err)
	}
}

// encode appends rec's line to buf after checking the rules the reader
// applies to it.
func (j *Journal) encode(buf []byte, rec Record) ([]byte, error) {
	if err := validateEntry(rec.JournalEntry, j.known); err != nil {
		return buf, fmt.Errorf("local journal: %w", err)
	}
	if rec.Sidecar != j.o.Sidecar {
		return buf, fmt.Errorf("local journal: an entry of sidecar %q in the journal of %q", rec.Sidecar, j.o.Sidecar)
	}
	if prev, ok := j.written[rec.Validator]; ok && rec.HRS.Compare(prev.HRS) <= 0 {
		return buf, fmt.Errorf("local journal: %s at %s is not above its last record at %s", rec.Validator, rec.HRS, prev.HRS)
	}
	line, err := appendRecord(buf, rec)
	if err != nil {
		return buf, fmt.Errorf("local journal: %w", err)
	}
	for _, s := range []string{string(rec.Validator), rec.Sidecar} {
		if _, ok := j.known[s]; !ok && len(j.known) < maxKnown {
			j.known[s] = s
		}
	}
	return line, nil
}

func (j *Journal) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := j.seg.WriteAt(b, j.off)
	j.off += int64(n)
	if err != nil {
		return fmt.Errorf("local journal: write %s: %w", j.seg.Name(), err)
	}
	return nil
}

// rotate closes the full segment and starts the next one. The order is what
// makes deleting old segments safe:
//
//  1. the full segment is synced: every record written so far is durable;
//  2. the next segment is created (preallocated, header synced, renamed into
//     place, directory synced), so that the segment a checkpoint points to
//     always exists;
//  3. a checkpoint holding every validator's highest record (all durable
//     now), covering every record before the new segment, is written,
//     synced and renamed into place;
//  4. only then are segments beyond RetainSegments deleted: the checkpoint
//     of step 3 holds their watermarks.
func (j *Journal) rotate() error {
	if err := j.syncFile(j.seg); err != nil { // 1
		return fmt.Errorf("local journal: fdatasync %s: %w", j.seg.Name(), err)
	}
	old := j.seg
	if err := j.newSegment(); err != nil { // 2
		return err
	}
	_ = old.Close()
	if err := j.writeCheckpoint(); err != nil { // 3
		return err
	}
	var removed bool
	for len(j.segments) > j.o.RetainSegments { // 4
		if err := os.Remove(filepath.Join(j.dir, segmentName(j.segments[0]))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("local journal: delete an old segment: %w", err)
		}
		j.segments, removed = j.segments[1:], true
	}
	if removed {
		return syncDir(j.dir)
	}
	return nil
}

// writeCheckpoint replaces the checkpoint with every validator's highest
// written record, covering the records before j.next.
func (j *Journal) writeCheckpoint() error {
	recs := make([]Record, 0, len(j.written))
	for _, r := range j.written {
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b Record) int {
		switch {
		case a.Validator < b.Validator:
			return -1
		case a.Validator > b.Validator:
			return 1
		}
		return 0
	})
	b, err := appendLine(nil, header{Format: formatName, Version: formatVersion, Kind: kindCheckpt, Sidecar: j.o.Sidecar, NextSeq: j.next, Records: len(recs)})
	for _, r := range recs {
		if err == nil {
			b, err = appendRecord(b, r)
		}
	}
	if err != nil {
		return fmt.Errorf("local journal: checkpoint: %w", err)
	}
	path := filepath.Join(j.dir, checkpointName)
	if err := writeFileSynced(path+tmpExt, b, 0); err != nil {
		return fmt.Errorf("local journal: checkpoint: %w", err)
	}
	if err := os.Rename(path+tmpExt, path); err != nil {
		return fmt.Errorf("local journal: checkpoint: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		return fmt.Errorf("local journal: checkpoint: %w", err)
	}
	return nil
}

// newSegment creates the segment starting at j.next (preallocated with NUL
// bytes, header synced, renamed into place, directory synced) and makes it
// the one written.
func (j *Journal) newSegment() error {
	h, err := appendLine(nil, header{Format: formatName, Version: formatVersion, Kind: kindSegment, Sidecar: j.o.Sidecar, FirstSeq: j.next})
	if err != nil {
		return fmt.Errorf("local journal: segment header: %w", err)
	}
	path := filepath.Join(j.dir, segmentName(j.next))
	if err := writeFileSynced(path+tmpExt, h, j.o.SegmentSize); err != nil {
		return fmt.Errorf("local journal: create segment: %w", err)
	}
	if err := os.Rename(path+tmpExt, path); err != nil {
		return fmt.Errorf("local journal: create segment: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		return fmt.Errorf("local journal: create segment: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("local journal: %w", err)
	}
	j.seg, j.off, j.capacity = f, int64(len(h)), max(j.o.SegmentSize, int64(len(h)))
	j.segments = append(j.segments, j.next)
	return nil
}

// writeFileSynced writes b to a new file at path, followed by NUL bytes up
// to size, and fsyncs it. Writing the NUL bytes (rather than leaving a hole
// or an unwritten extent) means later writes change no block allocation,
// so an fdatasync flushes only data.
func writeFileSynced(path string, b []byte, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if pad := size - int64(len(b)); err == nil && pad > 0 {
		_, err = io.CopyN(f, zeroReader{}, pad)
	}
	return errors.Join(err, f.Sync(), f.Close())
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// recentSet remembers the last signatures for idempotent re-signing.
type recentSet struct {
	m    map[recentKey]fencing.Digest
	ring []recentKey
	head int
}

type recentKey struct {
	validator fencing.ValidatorID
	hrs       fencing.HRS
}

func newRecentSet(n int) recentSet {
	return recentSet{m: make(map[recentKey]fencing.Digest), ring: make([]recentKey, 0, n)}
}

func (s *recentSet) add(r Record) {
	k := recentKey{r.Validator, r.HRS}
	if _, ok := s.m[k]; !ok {
		if len(s.ring) < cap(s.ring) {
			s.ring = append(s.ring, k)
		} else {
			delete(s.m, s.ring[s.head])
			s.ring[s.head] = k
			s.head = (s.head + 1) % len(s.ring)
		}
	}
	s.m[k] = r.Digest
}
