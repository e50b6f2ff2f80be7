// Package readiness: BUILD-TIME STUB of branch h-cli. DELETE THIS FILE when
// branch h-readiness (the real library) is merged: it declares the subset
// of that library's API fencectl readiness uses (Options, Check, Report,
// Finding, Severity, the exit codes, the defaults) so that internal/cli
// compiles before the merge, and nothing else. Check here always fails
// with ExitNotChecked's meaning: it checks nothing.
package readiness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Defaults of Options (as in h-readiness).
const (
	DefaultNamespace            = "validators"
	DefaultCoordinatorNamespace = "fencing"
	DefaultSafetyMargin         = 2 * time.Second
)

// Severity grades a finding (as in h-readiness).
type Severity int

// Severities, from good to bad.
const (
	OK Severity = iota
	Warn
	Critical
)

// Finding is one result (as in h-readiness).
type Finding struct {
	Severity Severity `json:"severity"`
	Check    string   `json:"check"`
	Cluster  string   `json:"cluster"`
	Subject  string   `json:"subject"`
	Detail   string   `json:"detail"`
}

// Report is the result of one readiness check (as in h-readiness).
type Report struct {
	Contexts []string  `json:"contexts"`
	At       time.Time `json:"at"`
	Findings []Finding `json:"findings"`
}

// Exit codes of fencectl readiness (as in h-readiness).
const (
	ExitOK         = 0
	ExitWarn       = 1
	ExitCritical   = 2
	ExitNotChecked = 3
)

// Options say what to check (the fields fencectl sets, as in h-readiness).
type Options struct {
	Kubeconfig           string
	Contexts             []string
	Namespace            string
	CoordinatorNamespace string
	SafetyMargin         time.Duration
	Now                  func() time.Time
}

// Check is the stub's: it checks nothing and says so.
func Check(ctx context.Context, o Options) (Report, error) {
	return Report{Contexts: o.Contexts}, errors.New("readiness: this fencectl was built from branch h-cli with the readiness library's stub (internal/readiness/stub_hcli.go); build it with branch h-readiness merged")
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

// ExitCode is the exit status for r.
func (r Report) ExitCode() int {
	switch {
	case len(r.Findings) == 0:
		return ExitNotChecked
	case r.Count(Critical) > 0:
		return ExitCritical
	case r.Count(Warn) > 0:
		return ExitWarn
	}
	return ExitOK
}

// Summary is one line for the history.
func (r Report) Summary() string {
	return fmt.Sprintf("readiness %s: %d critical, %d warn, %d ok", strings.Join(r.Contexts, " -> "), r.Count(Critical), r.Count(Warn), r.Count(OK))
}

// WriteTable writes the findings.
func (r Report) WriteTable(w io.Writer) error {
	for _, f := range r.Findings {
		if _, err := fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", f.Severity, f.Check, f.Cluster, f.Subject, f.Detail); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w, r.Summary())
	return err
}
