package sidecar

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// LocalJournal is a validator's crash-safe local signing record: JSON Lines
// of fencing.JournalEntry at <state-dir>/journal/<validator>.jsonl, appended
// and fsynced before a signature leaves the process (invariant 6). Its last
// line is the local watermark. The audit reads the same files.
//
// A torn last line is what a crash during an append leaves; its signature
// never left (the fsync did not return), so it is cut off at open. Any other
// unreadable line is corrupt state: Open refuses, it never resets.
type LocalJournal struct {
	mu     sync.Mutex // the gate serializes signatures; this guards Watermark readers
	path   string
	f      *os.File
	top    *fencing.JournalEntry
	recent map[fencing.HRS]fencing.JournalEntry
	order  []fencing.HRS
	broken error
}

const (
	recentHRS      = 4096   // signed HRS remembered for idempotent re-signing
	compactAtLines = 100000 // rewrite the file with the last recentHRS entries above this
)

// OpenLocalJournal opens (or creates) validator's journal in stateDir.
func OpenLocalJournal(stateDir, validator string) (*LocalJournal, error) {
	dir := filepath.Join(stateDir, "journal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	j := &LocalJournal{path: filepath.Join(dir, validator+".jsonl"), recent: map[fencing.HRS]fencing.JournalEntry{}}
	entries, goodBytes, torn, err := readJournal(j.path)
	if err != nil {
		return nil, err
	}
	if torn {
		if err := os.Truncate(j.path, goodBytes); err != nil {
			return nil, fmt.Errorf("cut the torn last line of %s: %w", j.path, err)
		}
	}
	for i := range entries {
		if entries[i].Validator != validator {
			return nil, fmt.Errorf("%s line %d is for validator %q, not %q: refusing to start (state files mixed up?)", j.path, i+1, entries[i].Validator, validator)
		}
		if j.top != nil && entries[i].HRS.Compare(j.top.HRS) < 0 {
			return nil, fmt.Errorf("%s line %d: HRS %s is below an earlier line's %s: refusing to start (the file was edited or restored out of order)", j.path, i+1, entries[i].HRS, j.top.HRS)
		}
		j.remember(entries[i])
	}
	if len(entries) > compactAtLines {
		if err := j.compact(); err != nil {
			return nil, err
		}
	}
	if j.f, err = os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("open %s: %w", j.path, err)
	}
	return j, syncDir(dir)
}

// readJournal parses path; torn reports an unterminated last line, which is
// not included (goodBytes is where the good part ends).
func readJournal(path string) (entries []fencing.JournalEntry, goodBytes int64, torn bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("read %s: %w (refusing to start without the signing record)", path, err)
	}
	r := bufio.NewReader(bytes.NewReader(data))
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if err == io.EOF {
			return entries, goodBytes, len(b) > 0, nil
		}
		var e fencing.JournalEntry
		if jerr := json.Unmarshal(b, &e); jerr != nil || e.HRS.Validate() != nil {
			return nil, 0, false, fmt.Errorf("%s line %d is corrupt (%v): refusing to start; restore the file or audit it with fencectl audit journal --state-dir, never delete it to get going", path, line, firstErr(jerr, e.HRS.Validate()))
		}
		entries = append(entries, e)
		goodBytes += int64(len(b))
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (j *LocalJournal) remember(e fencing.JournalEntry) {
	if _, ok := j.recent[e.HRS]; !ok {
		j.order = append(j.order, e.HRS)
		if len(j.order) > recentHRS {
			delete(j.recent, j.order[0])
			j.order = j.order[1:]
		}
	}
	j.recent[e.HRS] = e
	if j.top == nil || e.HRS.Compare(j.top.HRS) >= 0 {
		c := e
		j.top = &c
	}
}

// Watermark is the highest HRS in the journal, or nil.
func (j *LocalJournal) Watermark() *fencing.Watermark {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.top == nil {
		return nil
	}
	return &fencing.Watermark{HRS: j.top.HRS, Digest: j.top.Digest, Epoch: j.top.Epoch, Sidecar: j.top.Sidecar}
}

// Check decides whether hrs may be signed with digest: strictly above both
// the local watermark and floor (the quorum watermark the lease came with),
// or an HRS already signed with this very digest (idempotent re-sign).
func (j *LocalJournal) Check(hrs fencing.HRS, digest fencing.Digest, floor *fencing.Watermark) (again bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.broken != nil {
		return false, fencing.Errorf(fencing.CodeWatermark, "local signing record is unusable since a failed write (%v); restart the sidecar", j.broken)
	}
	if prev, ok := j.recent[hrs]; ok {
		if prev.Digest == digest {
			return true, nil
		}
		return false, &fencing.WatermarkError{Signed: hrs, Requested: hrs, SameHRS: true}
	}
	if j.top != nil && hrs.Compare(j.top.HRS) <= 0 {
		return false, &fencing.WatermarkError{Signed: j.top.HRS, Requested: hrs}
	}
	if floor != nil {
		switch c := hrs.Compare(floor.HRS); {
		case c == 0 && floor.Digest == digest:
			// Signed before under the quorum (this sidecar crashed between
			// journal and reply, or another one signed it): allowed, and
			// recorded here too (again = false).
			return false, nil
		case c == 0:
			return false, &fencing.WatermarkError{Signed: floor.HRS, Requested: hrs, SameHRS: true}
		case c < 0:
			return false, &fencing.WatermarkError{Signed: floor.HRS, Requested: hrs}
		}
	}
	return false, nil
}

// Append records e and fsyncs it. After a failed write the journal refuses
// every later Check (fail closed) until the sidecar restarts and rereads it.
func (j *LocalJournal) Append(e fencing.JournalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.broken != nil {
		return j.broken
	}
	b, err := json.Marshal(e)
	if err == nil {
		b = append(b, '\n')
		if _, err = j.f.Write(b); err == nil {
			err = j.f.Sync()
		}
	}
	if err != nil {
		j.broken = fmt.Errorf("write %s: %w", j.path, err)
		return j.broken
	}
	j.remember(e)
	return nil
}

// compact rewrites the journal with its newest entries (atomic replace).
func (j *LocalJournal) compact() error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("compact %s: %w", j.path, err)
	}
	w := bufio.NewWriter(f)
	for _, h := range j.order {
		b, err := json.Marshal(j.recent[h])
		if err != nil {
			return fmt.Errorf("compact %s: %w", j.path, err)
		}
		_, _ = w.Write(append(b, '\n'))
	}
	if err := errors.Join(w.Flush(), f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("compact %s: %w", j.path, err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fmt.Errorf("compact %s: %w", j.path, err)
	}
	return syncDir(filepath.Dir(j.path))
}

// Close closes the file.
func (j *LocalJournal) Close() error { return j.f.Close() }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
