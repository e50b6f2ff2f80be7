package localjournal

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// File names in the journal directory.
const (
	checkpointName = "checkpoint"
	segmentExt     = ".seg"
	tmpExt         = ".tmp"
	oldFormatExt   = ".jsonl"
)

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentExt) }

// Pos is where a record was read: a file and its line (1 is the header).
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return p.File + ":" + strconv.Itoa(p.Line) }

// CorruptError is a line that breaks the format or the rules and is not a
// torn tail: the sidecar refuses to start on it, the audit reports it.
type CorruptError struct {
	File string
	Line int
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Torn is the end of the last segment that a crash in the middle of a
// write leaves: from the first line that is not a whole record, when that
// line is unterminated or holds a NUL byte, to the last byte that is not
// NUL. No signature of it ever left the sidecar (none was fsynced).
type Torn struct {
	Pos
	Offset int64 // where it starts, which is where the next record goes
	Bytes  int64 // up to its last byte that is not NUL
}

func (t *Torn) String() string {
	return fmt.Sprintf("%s: last record is torn (%d bytes, a write cut short by a crash); it was never acknowledged and is not counted", t.Pos, t.Bytes)
}

// listing is what a journal directory holds.
type listing struct {
	segments   []segmentFile // by first seq
	checkpoint string        // path, or "" when there is none
	temps      []string      // unfinished files of a crashed rotation
	old        []string      // files of the old format
}

type segmentFile struct {
	path  string
	first uint64
}

func list(dir string) (listing, error) {
	var ls listing
	des, err := os.ReadDir(dir)
	if err != nil {
		return ls, fmt.Errorf("local journal: %w", err)
	}
	for _, de := range des {
		name, path := de.Name(), filepath.Join(dir, de.Name())
		switch {
		case name == checkpointName:
			ls.checkpoint = path
		case strings.HasSuffix(name, tmpExt):
			ls.temps = append(ls.temps, path)
		case strings.HasSuffix(name, oldFormatExt):
			ls.old = append(ls.old, path)
		case strings.HasSuffix(name, segmentExt) && len(name) == 20+len(segmentExt):
			first, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
			if err != nil || first == 0 {
				return ls, fmt.Errorf("local journal: %s is named like a segment but does not start at a sequence number ≥ 1", path)
			}
			ls.segments = append(ls.segments, segmentFile{path: path, first: first})
		}
	}
	slices.SortFunc(ls.segments, func(a, b segmentFile) int { return cmp.Compare(a.first, b.first) })
	return ls, nil
}

// oldFormatError explains a file of the format before segments.
func oldFormatError(path string) error {
	return fmt.Errorf("%s is a local journal of the old one-file-per-validator format, which this version neither reads nor converts: audit it with the fencectl release that wrote it, then move it out of %s (keep it as evidence); the new journal starts empty and the quorum watermark still applies", path, filepath.Dir(path))
}

// rawLine is one line of a file as read, before it is decoded.
type rawLine struct {
	b          []byte // without its newline; at most MaxLine bytes are kept
	n          int64  // its length in the file, newline included
	terminated bool   // it ends in a newline
	nul        bool   // it holds a NUL byte
	data       bool   // it holds a byte that is not NUL
	long       bool   // it is longer than MaxLine
}

// lineReader reads a file line by line and remembers where the last byte
// that is not NUL was, so that preallocated space is told from data.
type lineReader struct {
	br      *bufio.Reader
	off     int64 // offset of the next byte
	line    int   // number of the last line read
	dataEnd int64 // one past the last byte that is not NUL
	buf     []byte
}

func newLineReader(f io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(f, 64<<10), buf: make([]byte, 0, MaxLine)}
}

// next returns the next line, or io.EOF at the end of the file.
func (r *lineReader) next() (rawLine, error) {
	l := rawLine{b: r.buf[:0]}
	for {
		chunk, err := r.br.ReadSlice('\n')
		if i := lastData(chunk); i >= 0 {
			l.data = true
			r.dataEnd = r.off + l.n + int64(i) + 1
		}
		if !l.nul && slices.Contains(chunk, 0) {
			l.nul = true
		}
		l.n += int64(len(chunk))
		if !l.long && len(l.b)+len(chunk) <= MaxLine {
			l.b = append(l.b, chunk...)
		} else {
			l.long = true
		}
		switch {
		case err == nil:
			l.terminated = true
			if !l.long {
				l.b = l.b[:len(l.b)-1]
			}
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if l.n == 0 {
				return l, io.EOF
			}
		default:
			return l, err
		}
		r.off += l.n
		r.line++
		return l, nil
	}
}

// lastData is the index of the last byte of b that is not NUL, or -1.
func lastData(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return i
		}
	}
	return -1
}

// drain reads the rest of the file (to find dataEnd).
func (r *lineReader) drain() error {
	for {
		if _, err := r.next(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// checkpoint is the watermark of every validator at the time of the last
// rotation: the highest record of each, all with Seq below NextSeq.
type checkpoint struct {
	path    string
	sidecar string
	nextSeq uint64
	records []Record                       // by validator name
	tops    map[fencing.ValidatorID]Record // the same, by validator
}

// readCheckpoint reads a checkpoint file. It is written whole and renamed
// into place, so anything but a whole valid file is corruption.
func readCheckpoint(path string, interned map[string]string) (*checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("local journal checkpoint: %w", err)
	}
	defer f.Close()
	lr := newLineReader(f)
	bad := func(err error) (*checkpoint, error) {
		return nil, &CorruptError{File: path, Line: lr.line, Err: err}
	}
	l, err := lr.next()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("local journal checkpoint: %w", err)
	}
	if !l.terminated || l.long {
		return bad(errors.New("no header line"))
	}
	h, err := decodeHeader(l.b, kindCheckpt)
	if err != nil {
		return bad(err)
	}
	cp := &checkpoint{path: path, sidecar: h.Sidecar, nextSeq: h.NextSeq, tops: map[fencing.ValidatorID]Record{}}
	for range h.Records {
		l, err := lr.next()
		if errors.Is(err, io.EOF) {
			return bad(fmt.Errorf("the header promises %d records, the file ends after %d", h.Records, len(cp.records)))
		}
		if err != nil {
			return nil, fmt.Errorf("local journal checkpoint: %w", err)
		}
		if !l.terminated || l.long || l.nul {
			return bad(errors.New("not a whole line"))
		}
		rec, err := decodeRecord(l.b, interned)
		switch {
		case err != nil:
			return bad(err)
		case rec.Sidecar != cp.sidecar:
			return bad(fmt.Errorf("record of sidecar %q in the checkpoint of sidecar %q", rec.Sidecar, cp.sidecar))
		case rec.Seq >= cp.nextSeq:
			return bad(fmt.Errorf("record seq %d is not below the checkpoint's next_seq %d", rec.Seq, cp.nextSeq))
		case len(cp.records) > 0 && rec.Validator <= cp.records[len(cp.records)-1].Validator:
			return bad(errors.New("records are not one per validator in name order"))
		}
		cp.records = append(cp.records, rec)
		cp.tops[rec.Validator] = rec
	}
	if _, err := lr.next(); !errors.Is(err, io.EOF) {
		return bad(errors.New("data after the last record the header promises"))
	}
	return cp, nil
}

// replay applies the rules that span records: each record belongs to the
// journal's sidecar, every validator's HRS strictly increase, and the
// checkpoint holds the highest record of everything it covers.
type replay struct {
	sidecar string
	cp      *checkpoint
	top     map[fencing.ValidatorID]Record // highest record of each validator read so far
}

func (p *replay) add(r Record) error {
	if r.Sidecar != p.sidecar {
		return fmt.Errorf("record of sidecar %q in the journal of sidecar %q (state directories mixed up?)", r.Sidecar, p.sidecar)
	}
	prev, seen := p.top[r.Validator]
	var c Record
	covered, inCP := false, false
	if p.cp != nil {
		c, inCP = p.cp.tops[r.Validator]
		covered = r.Seq < p.cp.nextSeq
	}
	switch {
	case seen && r.HRS.Compare(prev.HRS) <= 0:
		return fmt.Errorf("out of order: %s at %s is not above its record at %s (seq %d)", r.Validator, r.HRS, prev.HRS, prev.Seq)
	case covered && (!inCP || r.HRS.Compare(c.HRS) > 0 || (r.HRS == c.HRS && !sameRecord(r, c))):
		return fmt.Errorf("the checkpoint %s covers this record (seq %d < %d) but does not hold %s's watermark at or above %s: the checkpoint is older than its segments (restored from a backup?)", p.cp.path, r.Seq, p.cp.nextSeq, r.Validator, r.HRS)
	case !covered && inCP && r.HRS.Compare(c.HRS) <= 0:
		return fmt.Errorf("out of order: %s at %s is not above its checkpointed watermark %s (seq %d)", r.Validator, r.HRS, c.HRS, c.Seq)
	}
	p.top[r.Validator] = r
	return nil
}

// sameRecord reports whether a and b are one record (At by instant).
func sameRecord(a, b Record) bool {
	return a.Seq == b.Seq && a.Validator == b.Validator && a.HRS == b.HRS && a.Digest == b.Digest &&
		a.Epoch == b.Epoch && a.Sidecar == b.Sidecar && a.At.Equal(b.At)
}

// tops is every validator's highest record: the checkpoint's, raised by
// the records read.
func (p *replay) tops() map[fencing.ValidatorID]Record {
	out := map[fencing.ValidatorID]Record{}
	if p.cp != nil {
		for v, r := range p.cp.tops {
			out[v] = r
		}
	}
	for v, r := range p.top {
		if c, ok := out[v]; !ok || r.HRS.Compare(c.HRS) > 0 {
			out[v] = r
		}
	}
	return out
}

// reader reads a journal directory with every rule. The sidecar reads the
// tail and stops at the first error; the audit reads everything and goes on
// to collect all the evidence it can.
type reader struct {
	keepGoing bool
	visit     func(Record, Pos) // every record read from a segment
	interned  map[string]string
	errs      []error
	replay    replay
	next      uint64 // seq the next record must have
	last      *segmentRead
	files     []string
	records   int
	bytes     int64
}

// segmentRead is what reading one segment found.
type segmentRead struct {
	path  string
	first uint64
	end   int64 // one past its last whole record
	size  int64 // its length on disk (preallocated)
	torn  *Torn
}

func (r *reader) fail(err error) bool {
	r.errs = append(r.errs, err)
	return r.keepGoing
}

func (r *reader) err() error { return errors.Join(r.errs...) }

// run reads ls: its checkpoint, then its segments from the one holding the
// first record the checkpoint does not cover (tail) or from the oldest.
// sidecar is the journal's owner, or "" to take it from the first header.
func (r *reader) run(ls listing, sidecar string, tail bool) {
	r.interned = map[string]string{}
	r.replay = replay{sidecar: sidecar, top: map[fencing.ValidatorID]Record{}}
	for _, p := range ls.old {
		if !r.fail(oldFormatError(p)) {
			return
		}
	}
	cover := uint64(1) // seq of the first record the checkpoint does not cover
	if ls.checkpoint != "" {
		r.files = append(r.files, ls.checkpoint)
		cp, err := readCheckpoint(ls.checkpoint, r.interned)
		switch {
		case err != nil:
			if !r.fail(err) {
				return
			}
		case r.replay.sidecar != "" && cp.sidecar != r.replay.sidecar:
			if !r.fail(fmt.Errorf("%s belongs to sidecar %q, not %q: state directories must never be shared or swapped, and --name must stay the same across restarts", ls.checkpoint, cp.sidecar, r.replay.sidecar)) {
				return
			}
		default:
			r.replay.cp, r.replay.sidecar, cover = cp, cp.sidecar, cp.nextSeq
		}
	}
	segs := ls.segments
	if cp := r.replay.cp; cp != nil && !slices.ContainsFunc(segs, func(s segmentFile) bool { return s.first == cover }) {
		if !r.fail(fmt.Errorf("the segment %s that follows the checkpoint %s is missing: acknowledged records may be lost (deleted by hand, or an incomplete restore?)", segmentName(cover), cp.path)) {
			return
		}
	}
	if tail && len(segs) > 0 {
		i := len(segs) - 1
		for i > 0 && segs[i].first > cover {
			i--
		}
		segs = segs[i:]
	}
	r.next = cover
	for i, s := range segs {
		switch {
		case i == 0 && s.first > cover:
			if !r.fail(fmt.Errorf("records %d to %d are missing: the oldest segment %s starts at %d and no checkpoint covers the records before it (segments deleted by hand?)", cover, s.first-1, s.path, s.first)) {
				return
			}
		case i > 0 && s.first != r.next:
			if !r.fail(fmt.Errorf("segment %s starts at record %d but the segment before it ends at %d: records are missing or segments overlap", s.path, s.first, r.next-1)) {
				return
			}
		}
		r.next = s.first
		if !r.readSegment(s, i == len(segs)-1) {
			return
		}
	}
}

// readSegment reads one segment; last says whether a torn tail may end it.
// It returns false when reading must stop.
func (r *reader) readSegment(s segmentFile, last bool) bool {
	r.files = append(r.files, s.path)
	f, err := os.Open(s.path)
	if err != nil {
		return r.fail(fmt.Errorf("local journal: %w", err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return r.fail(fmt.Errorf("local journal: %w", err))
	}
	lr := newLineReader(f)
	defer func() { r.bytes += lr.off }()
	corrupt := func(err error) bool { return r.fail(&CorruptError{File: s.path, Line: lr.line, Err: err}) }
	l, err := lr.next()
	if err != nil && !errors.Is(err, io.EOF) {
		return r.fail(fmt.Errorf("local journal: %w", err))
	}
	if !l.terminated || l.long {
		return corrupt(errors.New("no header line"))
	}
	h, err := decodeHeader(l.b, kindSegment)
	switch {
	case err != nil:
		return corrupt(err)
	case h.FirstSeq != s.first:
		return corrupt(fmt.Errorf("header says first_seq %d but the file name says %d", h.FirstSeq, s.first))
	case r.replay.sidecar == "":
		r.replay.sidecar = h.Sidecar
	case h.Sidecar != r.replay.sidecar:
		return corrupt(fmt.Errorf("segment of sidecar %q in the journal of sidecar %q: state directories must never be shared or swapped, and --name must stay the same across restarts", h.Sidecar, r.replay.sidecar))
	}
	seg := &segmentRead{path: s.path, first: s.first, size: fi.Size(), end: lr.off}
	r.last = seg
	resync := false // after a corrupt line (audit), take the next record's seq
	for {
		start, line := lr.off, lr.line+1
		l, err := lr.next()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return r.fail(fmt.Errorf("local journal: %w", err))
		}
		if !l.data && !l.terminated { // preallocated space up to the end
			return true
		}
		if l.terminated && !l.nul && !l.long {
			rec, err := decodeRecord(l.b, r.interned)
			if err == nil && rec.Seq != r.next && !resync {
				err = fmt.Errorf("record seq %d where %d belongs: records are missing or repeated", rec.Seq, r.next)
			}
			if err == nil {
				err = r.replay.add(rec)
			}
			if err != nil {
				if !corrupt(err) {
					return false
				}
				resync = true
				continue
			}
			resync = false
			r.next = rec.Seq + 1
			r.records++
			seg.end = lr.off
			if r.visit != nil {
				r.visit(rec, Pos{File: s.path, Line: line})
			}
			continue
		}
		if l.terminated && !l.nul { // a whole line that is too long
			if !corrupt(fmt.Errorf("line longer than %d bytes", MaxLine)) {
				return false
			}
			resync = true
			continue
		}
		// Unterminated or holding a NUL: a write a crash cut short.
		if err := lr.drain(); err != nil {
			return r.fail(fmt.Errorf("local journal: %w", err))
		}
		torn := &Torn{Pos: Pos{File: s.path, Line: line}, Offset: start, Bytes: lr.dataEnd - start}
		if !last {
			return r.fail(&CorruptError{File: s.path, Line: line, Err: fmt.Errorf("torn record (%d bytes) in a segment that is not the last: the segments after it hold acknowledged records, so this is damage, not a crash", torn.Bytes)})
		}
		seg.torn = torn
		return true
	}
}

// Contents is every retained record of a journal, as the audit reads it.
type Contents struct {
	Sidecar string
	// Records in journal order: first those held only by the checkpoint
	// (their segments were deleted), then those of the segments.
	Records []Record
	Pos     []Pos
	// Files read, and the torn tail of the last segment if there is one.
	Files []string
	Torn  *Torn
}

// ReadAll reads every retained record of the journal in dir with the rules
// the sidecar applies, without changing anything. It goes past errors to
// collect all the evidence it can: the error joins a *CorruptError for each
// line that breaks the rules and an error for anything else (old-format
// files, missing records); Contents holds every record that passed.
func ReadAll(dir string) (Contents, error) {
	var c Contents
	ls, err := list(dir)
	if err != nil {
		return c, err
	}
	r := &reader{keepGoing: true, visit: func(rec Record, p Pos) {
		c.Records = append(c.Records, rec)
		c.Pos = append(c.Pos, p)
	}}
	r.run(ls, "", false)
	c.Sidecar, c.Files = r.replay.sidecar, r.files
	if r.last != nil {
		c.Torn = r.last.torn
	}
	if cp := r.replay.cp; cp != nil {
		first := r.next // no segment: the checkpoint holds everything left
		if len(ls.segments) > 0 {
			first = ls.segments[0].first
		}
		var recs []Record
		var pos []Pos
		for i, rec := range cp.records {
			if rec.Seq < first {
				recs = append(recs, rec)
				pos = append(pos, Pos{File: cp.path, Line: i + 2})
			}
		}
		c.Records, c.Pos = append(recs, c.Records...), append(pos, c.Pos...)
	}
	return c, r.err()
}
