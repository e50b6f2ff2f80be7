package localjournal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
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

// recordLine is a record as written, members in this order.
type recordLine struct {
	Seq       uint64         `json:"seq"`
	Validator string         `json:"validator"`
	HRS       fencing.HRS    `json:"hrs"`
	Digest    fencing.Digest `json:"digest"`
	Epoch     uint64         `json:"epoch"`
	Sidecar   string         `json:"sidecar"`
	At        time.Time      `json:"at"`
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

// appendLine appends v as one line: its JSON object with a last member
// "crc", the CRC-32C of the bytes before `,"crc"`, and a newline.
func appendLine(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, b[:len(b)-1]...) // without the closing brace
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

// appendRecord appends r's line. It is the only way a record is written.
func appendRecord(dst []byte, r Record) ([]byte, error) {
	return appendLine(dst, recordLine{
		Seq: r.Seq, Validator: r.Validator, HRS: r.HRS, Digest: r.Digest,
		Epoch: r.Epoch, Sidecar: r.Sidecar, At: r.At.UTC(),
	})
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

// canonical fails unless line (without its newline) is exactly what the
// writer writes for v, so that a hand-edited line is never read as a record.
func canonical(line []byte, v any) error {
	again, err := appendLine(nil, v)
	if err != nil {
		return err
	}
	if !bytes.Equal(again[:len(again)-1], line) {
		return errors.New("not in the form the sidecar writes (edited by hand?)")
	}
	return nil
}

// decodeRecord parses one record line (without its newline) and checks its
// fields; interned keeps one copy of each validator name and step.
func decodeRecord(line []byte, interned map[string]string) (Record, error) {
	if err := checkLine(line); err != nil {
		return Record{}, err
	}
	var l recordLine
	if err := json.Unmarshal(line, &l); err != nil {
		return Record{}, fmt.Errorf("not a record: %v", err)
	}
	r := Record{Seq: l.Seq, JournalEntry: fencing.JournalEntry{
		Validator: intern(interned, l.Validator), HRS: l.HRS, Digest: l.Digest,
		Epoch: l.Epoch, Sidecar: intern(interned, l.Sidecar), At: l.At,
	}}
	r.HRS.Step = fencing.Step(intern(interned, string(r.HRS.Step)))
	if err := validateEntry(r.JournalEntry); err != nil {
		return Record{}, err
	}
	if r.Seq == 0 {
		return Record{}, errors.New("seq 0: sequence numbers start at 1")
	}
	if err := canonical(line, recordLine{Seq: r.Seq, Validator: r.Validator, HRS: r.HRS, Digest: r.Digest, Epoch: r.Epoch, Sidecar: r.Sidecar, At: r.At.UTC()}); err != nil {
		return Record{}, err
	}
	return r, nil
}

func intern(m map[string]string, s string) string {
	if m == nil {
		return s
	}
	if v, ok := m[s]; ok {
		return v
	}
	if len(m) < 1024 { // validators and sidecars are few; never grow without bound
		m[s] = s
	}
	return s
}

// validateEntry is the field rule for every record, read or written.
func validateEntry(e fencing.JournalEntry) error {
	var problems []string
	if err := fencing.ValidateValidatorID(e.Validator); err != nil {
		problems = append(problems, "validator: "+message(err))
	}
	if err := e.HRS.Validate(); err != nil {
		problems = append(problems, "step: "+message(err))
	}
	if e.Epoch == 0 {
		problems = append(problems, "epoch must be at least 1")
	}
	if err := fencing.ValidateSidecar(e.Sidecar); err != nil {
		problems = append(problems, "sidecar: "+message(err))
	}
	if e.At.IsZero() {
		problems = append(problems, "at (the signing time) is missing")
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
