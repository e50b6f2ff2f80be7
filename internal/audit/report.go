package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/validator-fencing/fencing/internal/consensus"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Exit codes of an audit run (docs/audit.md).
const (
	ExitClean      = 0 // everything was audited and nothing was found
	ExitDuplicates = 1 // duplicates or writes after a revoke were found
	ExitIncomplete = 2 // nothing was found, but something could not be audited (or bad usage)
)

// Report is the result of one audit run. It is what `--output json` prints,
// and what a caller posts to the coordinator (DuplicateCount feeds
// fencing_audit_duplicates).
type Report struct {
	// Kind is "journal" or "chain".
	Kind string `json:"kind"`
	// Consensus is the format requested for a chain audit; Formats counts
	// the headers verified under each format.
	Consensus consensus.Consensus         `json:"consensus,omitempty"`
	Formats   map[consensus.Consensus]int `json:"formats,omitempty"`
	From      *uint64                     `json:"from,omitempty"`
	To        *uint64                     `json:"to,omitempty"`
	Endpoints []string                    `json:"endpoints,omitempty"`
	// Headers counts verified headers (chain, every endpoint), Signatures
	// the signatures compared.
	Headers    int64 `json:"headers"`
	Signatures int64 `json:"signatures"`
	// Duplicates are equivocations: one validator, one slot, two digests.
	Duplicates []Duplicate `json:"duplicates"`
	// AfterRevoke are journal entries written under an epoch after that
	// epoch's revoke was committed.
	AfterRevoke []LateEntry `json:"after_revoke"`
	// Unaudited lists what could not be checked, and why.
	Unaudited []Unaudited `json:"unaudited"`
	Warnings  []string    `json:"warnings"`
	// Resumed is set when a chain audit continued from a checkpoint.
	Resumed bool `json:"resumed,omitempty"`
}

// Unaudited is a source, or a height range of an endpoint, that was not
// audited.
type Unaudited struct {
	Endpoint string  `json:"endpoint"`
	From     *uint64 `json:"from,omitempty"`
	To       *uint64 `json:"to,omitempty"`
	Reason   string  `json:"reason"`
}

// LateEntry is a journal entry under epoch N dated after N's revoke was
// committed. Entry and revoke times come from different clocks (a sidecar's,
// a coordinator's), so both are reported with their difference; the revoke's
// etcd revision orders it among other events.
type LateEntry struct {
	Validator      string         `json:"validator"`
	Epoch          uint64         `json:"epoch"`
	HRS            fencing.HRS    `json:"hrs"`
	Digest         fencing.Digest `json:"digest"`
	Sidecar        string         `json:"sidecar,omitempty"`
	Source         string         `json:"source"`
	EntryAt        time.Time      `json:"entry_at"`
	EntryRevision  int64          `json:"entry_revision,omitempty"`
	RevokeAt       time.Time      `json:"revoke_at"`
	RevokeRevision int64          `json:"revoke_revision,omitempty"`
	// Basis says how lateness was decided: "revision" (a quorum entry
	// committed at a higher etcd revision than the revoke: exact),
	// "after_fenced" (a local line written after every lease of its epoch
	// was gone; RevokeAt is then the fenced time), or "time" (no revisions
	// or fenced event known: wall clocks, which may disagree).
	Basis string `json:"basis"`
	// After is EntryAt - RevokeAt; a small value may be clock skew between
	// the two writers.
	After string `json:"after"`
}

// DuplicateCount is the number of equivocations found.
func (r *Report) DuplicateCount() int { return len(r.Duplicates) }

// Findings counts duplicates and writes after a revoke.
func (r *Report) Findings() int { return len(r.Duplicates) + len(r.AfterRevoke) }

// Complete reports whether everything asked for was audited.
func (r *Report) Complete() bool { return len(r.Unaudited) == 0 }

// ExitCode maps the report to 0 (clean), 1 (findings; they win over an
// incomplete run because what was found stays found) or 2 (incomplete).
func (r *Report) ExitCode() int {
	switch {
	case r.Findings() > 0:
		return ExitDuplicates
	case !r.Complete():
		return ExitIncomplete
	}
	return ExitClean
}

// Verdict is a one-line summary.
func (r *Report) Verdict() string {
	switch r.ExitCode() {
	case ExitDuplicates:
		return fmt.Sprintf("DUPLICATES FOUND: %d duplicate signature(s), %d journal write(s) after revoke", len(r.Duplicates), len(r.AfterRevoke))
	case ExitIncomplete:
		return fmt.Sprintf("INCOMPLETE: no duplicates in what was audited, but %d part(s) could not be audited", len(r.Unaudited))
	}
	return "CLEAN: no duplicate signatures"
}

// normalize sorts every list and merges adjacent unaudited ranges so that
// output is deterministic.
func (r *Report) normalize() {
	SortDuplicates(r.Duplicates)
	slices.SortFunc(r.AfterRevoke, func(a, b LateEntry) int {
		return cmp.Or(strings.Compare(a.Validator, b.Validator), cmp.Compare(a.Epoch, b.Epoch),
			a.HRS.Compare(b.HRS), strings.Compare(a.Source, b.Source))
	})
	r.Unaudited = mergeUnaudited(r.Unaudited)
	if r.Duplicates == nil {
		r.Duplicates = []Duplicate{}
	}
	if r.AfterRevoke == nil {
		r.AfterRevoke = []LateEntry{}
	}
	if r.Unaudited == nil {
		r.Unaudited = []Unaudited{}
	}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
}

func u64(v uint64) *uint64 { return &v }

// mergeUnaudited sorts by endpoint and start, and joins ranges of one
// endpoint with one reason that touch or overlap.
func mergeUnaudited(in []Unaudited) []Unaudited {
	val := func(p *uint64) uint64 {
		if p == nil {
			return 0
		}
		return *p
	}
	slices.SortStableFunc(in, func(a, b Unaudited) int {
		return cmp.Or(strings.Compare(a.Endpoint, b.Endpoint), cmp.Compare(val(a.From), val(b.From)),
			cmp.Compare(val(a.To), val(b.To)), strings.Compare(a.Reason, b.Reason))
	})
	var out []Unaudited
	for _, u := range in {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Endpoint == u.Endpoint && last.Reason == u.Reason && last.From != nil && u.From != nil &&
				*u.From <= *last.To+1 {
				if *u.To > *last.To {
					last.To = u64(*u.To)
				}
				continue
			}
			if last.Endpoint == u.Endpoint && last.Reason == u.Reason && last.From == nil && u.From == nil {
				continue
			}
		}
		out = append(out, u)
	}
	return out
}

// WriteJSON writes the report as indented JSON evidence.
func (r *Report) WriteJSON(w io.Writer) error {
	r.normalize()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for a person: a verdict, then one table per
// non-empty list.
func (r *Report) WriteTable(w io.Writer) error {
	r.normalize()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	p("%s\n", r.Verdict())
	scope := r.Kind + " audit"
	if r.From != nil && r.To != nil {
		scope += fmt.Sprintf(" of blocks %d..%d", *r.From, *r.To)
	}
	if len(r.Endpoints) > 0 {
		scope += " on " + strings.Join(r.Endpoints, ", ")
	}
	if r.Kind == "journal" {
		p("%s: %d journal entries compared\n", scope, r.Signatures)
	} else {
		p("%s: %d header(s), %d signature(s) compared\n", scope, r.Headers, r.Signatures)
	}
	if len(r.Formats) > 0 {
		var fs []string
		for c, n := range r.Formats {
			fs = append(fs, fmt.Sprintf("%s=%d", c, n))
		}
		slices.Sort(fs)
		p("formats: %s\n", strings.Join(fs, " "))
	}
	if len(r.Duplicates) > 0 {
		p("\nDUPLICATES\nVALIDATOR\tHEIGHT\tROUND\tSTEP\tDIGEST\tSIGNATURE / EPOCH\tSOURCES\n")
		for _, d := range r.Duplicates {
			for i, v := range d.Variants {
				validator, height, round, step := d.Validator, fmt.Sprint(d.Height), fmt.Sprint(v.Round), string(d.Step)
				if i > 0 {
					validator, height, step = "", "", ""
				}
				signed := short(v.Signature.String(), 20)
				if len(v.Signature) == 0 {
					signed = fmt.Sprintf("epoch %d %s", v.Epoch, v.Sidecar)
				}
				p("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", validator, height, round, step, v.Digest, signed, strings.Join(v.Sources, ","))
			}
		}
	}
	if len(r.AfterRevoke) > 0 {
		p("\nJOURNAL WRITES AFTER REVOKE\nVALIDATOR\tEPOCH\tHRS\tSIDECAR\tENTRY AT\tREVOKE AT (REV)\tAFTER\tSOURCE\n")
		for _, l := range r.AfterRevoke {
			p("%s\t%d\t%s\t%s\t%s\t%s (%d)\t%s\t%s\n", l.Validator, l.Epoch, l.HRS, l.Sidecar,
				l.EntryAt.UTC().Format(time.RFC3339Nano), l.RevokeAt.UTC().Format(time.RFC3339Nano), l.RevokeRevision, l.After, l.Source)
		}
	}
	if len(r.Unaudited) > 0 {
		p("\nUNAUDITED\nENDPOINT\tFROM\tTO\tREASON\n")
		for _, u := range r.Unaudited {
			from, to := "-", "-"
			if u.From != nil {
				from = fmt.Sprint(*u.From)
			}
			if u.To != nil {
				to = fmt.Sprint(*u.To)
			}
			p("%s\t%s\t%s\t%s\n", u.Endpoint, from, to, u.Reason)
		}
	}
	if len(r.Warnings) > 0 {
		p("\nWARNINGS\n")
		for _, w := range r.Warnings {
			p("- %s\n", w)
		}
	}
	return tw.Flush()
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
