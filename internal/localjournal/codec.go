package localjournal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// The on-disk format; the package doc describes it.
const (
	formatName    = "fencing-local-journal"
	formatVersion = 1
	kindSegment   = "segment"
	kindCheckpt   = "checkpoint"

	// MaxLine bounds one line, newline included. A record is about 300
	// bytes; the writer refuses anything longer, the reader calls it corrupt.
	MaxLine = 2048

	crcPrefix = `,"crc":"`
	crcSuffix = `"}`
	crcLen    = len(crcPrefix) + 8 + len(crcSuffix)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one signature in the journal: the entry and its sequence number,
// which counts every record of the journal from 1 without gaps.
type Record struct {
	Seq uint64
	fencing.JournalEntry
}

// header is the first line of every file. A segment has FirstSeq; a
// checkpoint has NextSeq and Records.
type header struct {
	Format   string `json:"format"`
	Version  int    `json:"version"`
	Kind     string `json:"kind"`
	Sidecar  string `json:"sidecar"`
	FirstSeq uint64 `json:"first_seq,omitempty"`
	NextSeq  uint64 `json:"next_seq,omitempty"`
	Records  int    `json:"records,omitempty"`
}

// appendLine appends v (a header) as one line: its JSON object with a last
// member "crc", the CRC-32C of the bytes before `,"crc"`, and a newline.
func appendLine(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	return sealLine(append(dst, b[:len(b)-1]...), start) // without the closing brace
}

// sealLine ends the line begun at dst[start:] with its crc member, the
// closing brace and the newline.
func sealLine(dst []byte, start int) ([]byte, error) {
	sum := crc32.Checksum(dst[start:], castagnoli)
	dst = append(dst, crcPrefix...)
	dst = hex.AppendEncode(dst, []byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
	dst = append(dst, crcSuffix...)
	dst = append(dst, '\n')
	if n := len(dst) - start; n > MaxLine {
		return dst[:start], fmt.Errorf("line of %d bytes exceeds %d", n, MaxLine)
	}
	return dst, nil
}

// The members of a record line, in order.
const (
	keySeq       = `{"seq":`
	keyValidator = `,"validator":"`
	keyHeight    = `","hrs":{"height":`
	keyRound     = `,"round":`
	keyStep      = `,"step":"`
	keyDigest    = `"},"digest":"0x`
	keyEpoch     = `","epoch":`
	keySidecar   = `,"sidecar":"`
	keyAt        = `","at":"`
	keyEnd       = `"`
)

// appendRecord appends r's line. It is the only way a record is written;
// r must have passed validateEntry (its names then need no JSON escaping).
func appendRecord(dst []byte, r Record) ([]byte, error) {
	if !plain(string(r.Validator)) || !plain(r.Sidecar) || !plain(string(r.HRS.Step)) {
		return dst, errors.New("a name holds a character that needs escaping: validate the entry first")
	}
	start := len(dst)
	dst = strconv.AppendUint(append(dst, keySeq...), r.Seq, 10)
	dst = append(append(dst, keyValidator...), r.Validator...)
	dst = strconv.AppendUint(append(dst, keyHeight...), r.HRS.Height, 10)
	dst = strconv.AppendUint(append(dst, keyRound...), r.HRS.Round, 10)
	dst = append(append(dst, keyStep...), r.HRS.Step...)
	dst = hex.AppendEncode(append(dst, keyDigest...), r.Digest[:])
	dst = strconv.AppendUint(append(dst, keyEpoch...), r.Epoch, 10)
	dst = append(append(dst, keySidecar...), r.Sidecar...)
	dst = r.At.UTC().AppendFormat(append(dst, keyAt...), time.RFC3339Nano)
	dst = append(dst, keyEnd...)
	return sealLine(dst, start)
}

// plain reports whether s is printable ASCII without a quote or backslash:
// a JSON string that needs no escaping.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// checkLine verifies line's checksum (line without its newline).
func checkLine(line []byte) error {
	n := len(line)
	if n < crcLen+2 || line[0] != '{' || !bytes.Equal(line[n-crcLen:n-crcLen+len(crcPrefix)], []byte(crcPrefix)) || !bytes.HasSuffix(line, []byte(crcSuffix)) {
		return errors.New(`not a journal line (a JSON object ending in "crc":"<8 hex digits>")`)
	}
	var want [4]byte
	if _, err := hex.Decode(want[:], line[n-crcLen+len(crcPrefix):n-len(crcSuffix)]); err != nil {
		return fmt.Errorf("crc is not hex: %v", err)
	}
	sum := crc32.Checksum(line[:n-crcLen], castagnoli)
	if got := [4]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)}; got != want {
		return fmt.Errorf("checksum mismatch (crc %x, content %x): the line was changed after it was written", want, got)
	}
	return nil
}

// errNotCanonical is a line that is not exactly what the writer writes.
var errNotCanonical = errors.New("not in the form the sidecar writes (edited by hand?)")

// canonical fails unless line (without its newline) is exactly what
// appendLine writes for v, so that a hand-edited header is never read.
func canonical(line []byte, v any) error {
	again, err := appendLine(nil, v)
	if err != nil {
		return err
	}
	if !bytes.Equal(again[:len(again)-1], line) {
		return errNotCanonical
	}
	return nil
}

// recordParser reads the members of a record line in the writer's order.
type recordParser struct {
	b   []byte
	i   int
	err error
}

func (p *recordParser) key(k string) {
	if p.err == nil {
		if !bytes.HasPrefix(p.b[p.i:], []byte(k)) {
			p.err = fmt.Errorf("not a record: want %s at byte %d", k, p.i+1)
			return
		}
		p.i += len(k)
	}
}

func (p *recordParser) uint() uint64 {
	if p.err != nil {
		return 0
	}
	j := p.i
	for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
		j++
	}
	v, err := strconv.ParseUint(string(p.b[p.i:j]), 10, 64)
	if err != nil {
		p.err = fmt.Errorf("not a record: want a number at byte %d", p.i+1)
	}
	p.i = j
	return v
}

// text returns the bytes up to the next quote (names never hold one).
func (p *recordParser) text() []byte {
	if p.err != nil {
		return nil
	}
	j := bytes.IndexByte(p.b[p.i:], '"')
	if j < 0 {
		p.err = fmt.Errorf("not a record: unterminated string at byte %d", p.i+1)
		return nil
	}
	t := p.b[p.i : p.i+j]
	p.i += j
	return t
}

// decodeRecord parses one record line (without its newline) and checks its
// fields. known holds names already validated (one copy of each is kept);
// the caller owns it.
func decodeRecord(line []byte, known map[string]string) (Record, error) {
	if err := checkLine(line); err != nil {
		return Record{}, err
	}
	p := &recordParser{b: line[:len(line)-crcLen]}
	var r Record
	p.key(keySeq)
	r.Seq = p.uint()
	p.key(keyValidator)
	r.Validator = fencing.ValidatorID(name(known, p.text()))
	p.key(keyHeight)
	r.HRS.Height = p.uint()
	p.key(keyRound)
	r.HRS.Round = p.uint()
	p.key(keyStep)
	r.HRS.Step = fencing.Step(name(known, p.text()))
	p.key(keyDigest)
	if d := p.text(); p.err == nil {
		if len(d) != 2*len(r.Digest) {
			p.err = errors.New("not a record: digest is not 64 hex digits")
		} else if _, err := hex.Decode(r.Digest[:], d); err != nil {
			p.err = fmt.Errorf("not a record: digest: %v", err)
		}
	}
	p.key(keyEpoch)
	r.Epoch = p.uint()
	p.key(keySidecar)
	r.Sidecar = name(known, p.text())
	p.key(keyAt)
	if at := p.text(); p.err == nil {
		var err error
		if r.At, err = time.Parse(time.RFC3339Nano, string(at)); err != nil {
			p.err = fmt.Errorf("not a record: at: %v", err)
		}
	}
	p.key(keyEnd)
	if p.err == nil && p.i != len(p.b) {
		p.err = fmt.Errorf("not a record: unexpected data at byte %d", p.i+1)
	}
	if p.err != nil {
		return Record{}, p.err
	}
	if err := validateEntry(r.JournalEntry, known); err != nil {
		return Record{}, err
	}
	if r.Seq == 0 {
		return Record{}, errors.New("seq 0: sequence numbers start at 1")
	}
	again, err := appendRecord(make([]byte, 0, len(line)+1), r)
	if err != nil || !bytes.Equal(again[:len(again)-1], line) {
		return Record{}, errNotCanonical
	}
	for _, s := range []string{string(r.Validator), r.Sidecar, string(r.HRS.Step)} {
		if _, ok := known[s]; !ok && known != nil && len(known) < maxKnown {
			known[s] = s
		}
	}
	return r, nil
}

// maxKnown bounds the names a reader remembers (validators and sidecars are
// few; a corrupt journal must not grow the map without bound).
const maxKnown = 4096

// name returns b as a string, the remembered copy when there is one.
func name(known map[string]string, b []byte) string {
	if s, ok := known[string(b)]; ok {
		return s
	}
	return string(b)
}

// validateEntry is the field rule for every record, read or written. Names
// in known passed it before.
func validateEntry(e fencing.JournalEntry, known map[string]string) error {
	var problems []string
	if _, ok := known[string(e.Validator)]; !ok {
		if id, err := fencing.ParseValidatorID(string(e.Validator)); err != nil {
			problems = append(problems, "validator: "+message(err))
		} else if id != e.Validator {
			problems = append(problems, fmt.Sprintf("validator %s is not in its canonical form %s", e.Validator, id))
		}
	}
	if err := e.HRS.Validate(); err != nil {
		problems = append(problems, "step: "+message(err))
	}
	if e.Epoch == 0 {
		problems = append(problems, "epoch must be at least 1")
	}
	if _, ok := known[e.Sidecar]; !ok {
		if err := fencing.ValidateSidecar(e.Sidecar); err != nil {
			problems = append(problems, "sidecar: "+message(err))
		}
	}
	if e.At.IsZero() || e.At.Year() < 1 || e.At.Year() > 9999 {
		problems = append(problems, "at (the signing time) is missing or not between the years 1 and 9999")
	}
	if len(problems) > 0 {
		return fmt.Errorf("bad record: %s", strings.Join(problems, "; "))
	}
	return nil
}

// decodeHeader parses a file's first line and checks that it is a header
// of this format and version, of the kind wanted.
func decodeHeader(line []byte, kind string) (header, error) {
	var probe struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
		Kind    string `json:"kind"`
	}
	if json.Unmarshal(line, &probe) != nil || probe.Format != formatName {
		if bytes.Contains(line, []byte(`"validator"`)) && !bytes.Contains(line, []byte(`"format"`)) {
			return header{}, errors.New("no format header: this is a journal entry of the old one-file-per-validator format, which this version cannot read")
		}
		return header{}, fmt.Errorf("not a %s header (the first line must name format %q)", formatName, formatName)
	}
	if probe.Version != formatVersion {
		return header{}, fmt.Errorf("format version %d; this version of the sidecar reads version %d only", probe.Version, formatVersion)
	}
	if probe.Kind != kind {
		return header{}, fmt.Errorf("a %s header where a %s header belongs", probe.Kind, kind)
	}
	if err := checkLine(line); err != nil {
		return header{}, err
	}
	var h header
	if err := json.Unmarshal(line, &h); err != nil {
		return header{}, fmt.Errorf("bad header: %v", err)
	}
	if err := fencing.ValidateSidecar(h.Sidecar); err != nil {
		return header{}, fmt.Errorf("bad header: sidecar: %s", message(err))
	}
	switch {
	case kind == kindSegment && (h.FirstSeq == 0 || h.NextSeq != 0 || h.Records != 0):
		return header{}, errors.New("bad segment header: it needs first_seq ≥ 1 and nothing else")
	case kind == kindCheckpt && (h.NextSeq < 2 || h.Records < 1 || h.FirstSeq != 0):
		return header{}, errors.New("bad checkpoint header: it needs next_seq ≥ 2 and records ≥ 1")
	}
	if err := canonical(line, h); err != nil {
		return header{}, err
	}
	return h, nil
}

// message is the sentence of a fencing error without its code word.
func message(err error) string {
	var fe *fencing.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return err.Error()
}
