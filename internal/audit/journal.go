package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/localjournal"
)

// JournalSource reads the quorum journal and the event history, for example
// the coordinator's HTTP client. It is defined here, where it is used.
type JournalSource interface {
	Journal(ctx context.Context) ([]fencing.JournalEntry, []fencing.Event, error)
}

// JournalSet is the entries of one source. Source names it in evidence
// ("quorum journal", a file name); an entry read from a file carries its own
// file:line in Lines.
type JournalSet struct {
	Source  string
	Entries []fencing.JournalEntry
	// Lines, when set, has one "file:line" per entry.
	Lines []string
}

// AuditJournal reports every (validator, HRS) signed with two different
// digests across all sets, and every entry written under epoch N after the
// revoke of N was committed (an EventFreeze event for that validator whose
// To.Epoch is N). The detector compares exact HRS: re-signing one HRS with
// one digest is allowed (invariant 5).
func AuditJournal(events []fencing.Event, sets ...JournalSet) *Report {
	r := &Report{Kind: "journal"}
	d := NewDetector()
	revokes := map[string]map[uint64]fencing.Event{} // validator -> epoch -> earliest revoke
	fenced := map[string]map[uint64]fencing.Event{}  // validator -> epoch -> when every lease was gone
	for _, ev := range events {
		if ev.Kind == fencing.EventFenced && ev.From != nil {
			v := string(ev.Validator)
			if fenced[v] == nil {
				fenced[v] = map[uint64]fencing.Event{}
			}
			if prev, ok := fenced[v][ev.From.Epoch]; !ok || earlierEvent(ev, prev) {
				fenced[v][ev.From.Epoch] = ev
			}
			continue
		}
		if ev.Kind != fencing.EventFreeze {
			continue
		}
		if ev.To == nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("revoke event of %s at revision %d carries no epoch; writes after it cannot be checked", ev.Validator, ev.Revision))
			continue
		}
		v := string(ev.Validator)
		n := ev.To.Epoch
		if revokes[v] == nil {
			revokes[v] = map[uint64]fencing.Event{}
		}
		if prev, ok := revokes[v][n]; !ok || earlierEvent(ev, prev) {
			revokes[v][n] = ev
		}
	}
	for _, set := range sets {
		for i, e := range set.Entries {
			src := set.Source
			if i < len(set.Lines) {
				src = set.Lines[i]
			}
			v := string(e.Validator)
			r.Signatures++
			d.Add(Signature{
				Validator: v, HRS: e.HRS, Digest: e.Digest,
				Epoch: e.Epoch, Sidecar: e.Sidecar, At: e.At, Source: src,
			})
			rev, ok := revokes[v][e.Epoch]
			if !ok {
				continue
			}
			if ref, basis, late := lateness(e, rev, fenced[v][e.Epoch]); late {
				r.AfterRevoke = append(r.AfterRevoke, LateEntry{
					Validator: v, Epoch: e.Epoch, HRS: e.HRS, Digest: e.Digest, Sidecar: e.Sidecar,
					Source: src, EntryAt: e.At, EntryRevision: e.Revision, RevokeAt: ref.At, RevokeRevision: ref.Revision,
					After: e.At.Sub(ref.At).String(), Basis: basis,
				})
			}
		}
	}
	r.Duplicates = d.Drain()
	r.normalize()
	return r
}

// lateness decides whether e was written under its epoch after the epoch
// was revoked, and against which event:
//   - a quorum entry (with its commit revision) is late only if etcd
//     committed it after the revoke: exact, whatever the clocks say. An entry
//     in flight at the revoke is stamped after it but committed before;
//   - a local journal line is written after its quorum commit (strict) or
//     with no quorum write at all (lease), so a line stamped after the revoke
//     is expected while the revoke reaches the sidecar. It is late only if
//     stamped after the epoch was fenced (every lease gone);
//   - without a revision or a fenced event, wall clocks decide.
func lateness(e fencing.JournalEntry, revoke, fenced fencing.Event) (fencing.Event, string, bool) {
	switch {
	case e.Revision > 0 && revoke.Revision > 0:
		return revoke, "revision", e.Revision > revoke.Revision
	case e.Revision == 0 && fenced.Kind == fencing.EventFenced:
		return fenced, "after_fenced", e.At.After(fenced.At)
	default:
		return revoke, "time", e.At.After(revoke.At)
	}
}

// earlierEvent orders two events: by etcd revision when both have one (it is
// the order the cluster committed them), by time otherwise.
func earlierEvent(a, b fencing.Event) bool {
	if a.Revision > 0 && b.Revision > 0 {
		return a.Revision < b.Revision
	}
	return a.At.Before(b.At)
}

// LocalJournal is what LoadLocalJournal read.
type LocalJournal struct {
	// Entries in journal order (internal/localjournal.ReadAll).
	Entries []fencing.JournalEntry
	// Lines has "file:line" for each entry.
	Lines []string
	// Files read, and Warnings such as a torn last record.
	Files    []string
	Warnings []string
}

// CorruptLineError is a line of a local journal file that breaks the
// journal's rules and is not a torn last record.
type CorruptLineError = localjournal.CorruptError

// ReadLocalJournal reads a sidecar's local journal: <dir>/journal, or dir
// itself when it has no journal subdirectory, with the rules the sidecar
// applies (internal/localjournal's package doc). A torn last record (a
// write a crash cut short, never acknowledged) is skipped and reported by
// LoadLocalJournal as a warning. Every other violation is an error: a
// *CorruptLineError naming file:line for a bad line, or an error saying
// what is wrong (records missing, a file of the old format); the entries
// that passed are returned with it.
func ReadLocalJournal(dir string) ([]fencing.JournalEntry, error) {
	lj, err := LoadLocalJournal(dir)
	return lj.Entries, err
}

// LoadLocalJournal is ReadLocalJournal with the warnings and the file:line of
// each entry. It reads past errors to keep every entry it can
// (errors.Join of everything found).
func LoadLocalJournal(dir string) (LocalJournal, error) {
	var lj LocalJournal
	jdir := filepath.Join(dir, "journal")
	if fi, err := os.Stat(jdir); err != nil || !fi.IsDir() {
		if fi, err := os.Stat(dir); err != nil {
			return lj, fmt.Errorf("local journal: %w", err)
		} else if !fi.IsDir() {
			return lj, fmt.Errorf("local journal: %s is not a directory", dir)
		}
		jdir = dir
	}
	c, err := localjournal.ReadAll(jdir)
	for i, r := range c.Records {
		lj.Entries = append(lj.Entries, r.JournalEntry)
		lj.Lines = append(lj.Lines, c.Pos[i].String())
	}
	lj.Files = c.Files
	if c.Torn != nil {
		lj.Warnings = append(lj.Warnings, c.Torn.String())
	}
	if len(c.Files) == 0 && err == nil {
		lj.Warnings = append(lj.Warnings, fmt.Sprintf("no local journal in %s (no segment or checkpoint files)", jdir))
	}
	return lj, err
}

// RunJournalAudit gathers the quorum journal from src (when not nil) and the
// local journal under stateDir (when not empty) and audits them together. A
// source that cannot be read is reported as unaudited.
func RunJournalAudit(ctx context.Context, src JournalSource, stateDir string) *Report {
	var (
		sets   []JournalSet
		events []fencing.Event
		unaud  []Unaudited
		warns  []string
	)
	if src != nil {
		entries, evs, err := src.Journal(ctx)
		if err != nil {
			unaud = append(unaud, Unaudited{Endpoint: "quorum journal", Reason: err.Error()})
		} else {
			sets = append(sets, JournalSet{Source: "quorum journal", Entries: entries})
			events = evs
		}
	}
	if stateDir != "" {
		lj, err := LoadLocalJournal(stateDir)
		warns = append(warns, lj.Warnings...)
		if err != nil {
			var ce *CorruptLineError
			for _, e := range flatten(err) {
				if errors.As(e, &ce) {
					unaud = append(unaud, Unaudited{Endpoint: fmt.Sprintf("%s:%d", ce.File, ce.Line), Reason: ce.Err.Error()})
				} else {
					unaud = append(unaud, Unaudited{Endpoint: stateDir, Reason: e.Error()})
				}
			}
		}
		sets = append(sets, JournalSet{Source: "local journal", Entries: lj.Entries, Lines: lj.Lines})
	}
	r := AuditJournal(events, sets...)
	r.Unaudited = append(r.Unaudited, unaud...)
	r.Warnings = append(warns, r.Warnings...)
	r.normalize()
	return r
}

// flatten unwraps errors.Join trees.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
