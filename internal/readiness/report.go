package readiness

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Severity grades a finding. The zero value is OK.
type Severity int

// Severities, from good to bad.
const (
	// OK: checked and as it should be.
	OK Severity = iota
	// Warn: a drift or a risk that does not by itself stop a failover, or
	// something that could not be checked (never reported as OK).
	Warn
	// Critical: a failover to the standby would fail or be unsafe now.
	Critical
)

var severityWords = [...]string{OK: "ok", Warn: "warn", Critical: "critical"}

// String is the severity as a word: ok, warn or critical.
func (s Severity) String() string {
	if s < OK || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityWords[s]
}

// MarshalText writes the severity as its word.
func (s Severity) MarshalText() ([]byte, error) {
	if s < OK || s > Critical {
		return nil, fmt.Errorf("severity %d is not ok (0), warn (1) or critical (2)", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads ok, warn or critical.
func (s *Severity) UnmarshalText(b []byte) error {
	for i, w := range severityWords {
		if string(b) == w {
			*s = Severity(i)
			return nil
		}
	}
	return fmt.Errorf("severity %q must be ok, warn or critical", string(b))
}

// Finding is one result: what was checked (Check), where (Cluster: a
// context name, "<active> vs <standby>" for a comparison, or "etcd"), on
// what (Subject) and what was found (Detail, a sentence that says what to
// fix when it is not OK).
type Finding struct {
	Severity Severity `json:"severity"`
	Check    string   `json:"check"`
	Cluster  string   `json:"cluster"`
	Subject  string   `json:"subject"`
	Detail   string   `json:"detail"`
}

// Report is the result of one readiness check.
type Report struct {
	// Contexts are the kubeconfig contexts checked: active, then standby.
	Contexts []string `json:"contexts"`
	// At is when the check started (Options.Now).
	At time.Time `json:"at"`
	// Findings, grouped by check in the order of the package doc's table.
	Findings []Finding `json:"findings"`
}

// Exit codes of fencectl readiness (ExitCode).
const (
	ExitOK         = 0 // every finding OK
	ExitWarn       = 1 // the worst finding is a warning
	ExitCritical   = 2 // at least one critical finding
	ExitNotChecked = 3 // nothing could be checked (Check returned an error)
)

// Worst is the most severe finding's severity; OK for no findings.
func (r Report) Worst() Severity {
	w := OK
	for _, f := range r.Findings {
		w = max(w, f.Severity)
	}
	return w
}

// Count is the number of findings of severity s.
func (r Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// ExitCode is the exit status for r: ExitOK when every finding is OK,
// ExitWarn when the worst is a warning, ExitCritical when any is critical,
// and ExitNotChecked for a report with no findings at all (what a failed
// Check returns).
func (r Report) ExitCode() int {
	if len(r.Findings) == 0 {
		return ExitNotChecked
	}
	switch r.Worst() {
	case OK:
		return ExitOK
	case Warn:
		return ExitWarn
	}
	return ExitCritical
}

// Summary is one line for the history (fencectl records it as the detail
// of a readiness audit, with the number of critical findings): the
// contexts, the worst severity, the counts, and the first critical (else
// warning) finding.
func (r Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "readiness %s: ", strings.Join(r.Contexts, " -> "))
	if len(r.Findings) == 0 {
		b.WriteString("nothing checked")
		return b.String()
	}
	fmt.Fprintf(&b, "%s (%d critical, %d warn, %d ok)", r.Worst(), r.Count(Critical), r.Count(Warn), r.Count(OK))
	for _, s := range []Severity{Critical, Warn} {
		for _, f := range r.Findings {
			if f.Severity == s {
				fmt.Fprintf(&b, "; first %s: %s %s %s: %s", s, f.Check, f.Cluster, f.Subject, f.Detail)
				return b.String()
			}
		}
	}
	return b.String()
}

// MarshalJSON writes the report with its worst severity and exit code, for
// scripts that read the JSON rather than the exit status.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report // without this method
	findings := r.Findings
	if findings == nil {
		findings = []Finding{}
	}
	p := plain(r)
	p.Findings = findings
	return json.Marshal(struct {
		plain
		Worst    Severity `json:"worst"`
		ExitCode int      `json:"exit_code"`
	}{p, r.Worst(), r.ExitCode()})
}

// WriteTable writes the findings as an aligned table (severity, check,
// cluster, subject, detail) and the summary counts.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tCHECK\tCLUSTER\tSUBJECT\tDETAIL")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Severity, f.Check, f.Cluster, oneLine(f.Subject), oneLine(f.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s: %d critical, %d warn, %d ok (exit %d)\n", r.Worst(), r.Count(Critical), r.Count(Warn), r.Count(OK), r.ExitCode())
	return err
}

// oneLine keeps a cell on its row: tabs and newlines would break the table.
func oneLine(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}
