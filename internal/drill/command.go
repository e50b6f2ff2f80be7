package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/validator-fencing/fencing/internal/cli"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/version"
)

// Exit codes of fence-drill.
const (
	ExitPassed  = 0 // no finding, every handover within its target
	ExitFinding = 1 // a violation, a duplicate or a missed target
	ExitUsage   = 2 // bad flags
	ExitNotRun  = 3 // the drill could not run (a port, the disk, ...)
)

// Report is what fence-drill -o json prints: the drill's result and the
// evidence report of its coordinator, read before it shut down.
type Report struct {
	*Result
	Evidence cli.Evidence `json:"evidence"`
	Passed   bool         `json:"passed"`
}

const commandLong = `A local failover drill in this process, on real components: an embedded
etcd, the coordinator's API on 127.0.0.1, an active sidecar (region-a) and a
standby sidecar (region-b) for each of N validators, and a signing workload
that asks both regions to sign every height/round/step with different
digests. It bumps every validator to region-b, prints the timeline (revoke,
each lease drained, grant, first standby signature), audits the quorum and
local journals, checks that no slot was signed twice, and prints the
evidence report (as fencectl evidence shows it) and the measured times.

  cooperative (default)  the active sidecars see the revoke and release;
                         target: handover <= 2s
  --partition            the active sidecars are cut off from the
                         coordinator first; the handover waits for their
                         leases to expire: target <= lease TTL + 2s

It needs nothing running and changes nothing outside --dir (a temporary
directory by default). docs/drill.md explains it and the fault-injection
suite built on the same parts.

Exit codes: 0 passed, 1 a finding or a missed target, 2 bad usage, 3 the
drill could not run.`

// Main is fence-drill: it runs one drill with the options of args and
// prints its report; it returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o Options
	var output string
	cmd := &cobra.Command{
		Use:   "fence-drill",
		Short: "A local failover drill of validator fencing on embedded etcd",
		Long:  commandLong,
		Example: `  fence-drill                                  # cooperative handover, 4 validators
  fence-drill --partition                      # region-a cut off: TTL-bound handover
  fence-drill --validators 8 --lease-ttl 5s -o json > drill.json
  fence-drill --dir /tmp/drill                 # keep etcd data, keys, journals, drill.log`,
		Version:       version.String(),
		Args:          cobra.NoArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" && output != "yaml" {
				return usage{fmt.Errorf("--output %q must be table, json or yaml", output)}
			}
			if err := o.Validate(); err != nil {
				return usage{err}
			}
			return runCommand(cmd.Context(), o, output, stdout, stderr)
		},
	}
	cmd.SetArgs(append([]string{}, args...))
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetVersionTemplate(version.Line("fence-drill") + "\n")
	f := cmd.Flags()
	f.IntVar(&o.Validators, "validators", 4, "validators to fail over (1-64)")
	f.DurationVar(&o.LeaseTTL, "lease-ttl", 15*time.Second, "sidecar lease TTL (whole seconds, 2s-300s)")
	f.BoolVar(&o.Partition, "partition", false, "cut the active sidecars off the coordinator before the bump (TTL-bound handover)")
	f.StringVar(&o.Dir, "dir", "", "keep etcd data, keys, journals and logs here (default: a temporary directory, removed)")
	f.StringVarP(&output, "output", "o", "table", "output format: table, json or yaml (the whole result and the evidence as one document; progress goes to stderr)")
	err := cmd.ExecuteContext(ctx)
	var ex exit
	var u usage
	switch {
	case err == nil:
		return ExitPassed
	case errors.As(err, &ex):
		return int(ex)
	case errors.As(err, &u):
		fmt.Fprintf(stderr, "fence-drill: %v\n", u.err)
		return ExitUsage
	default: // cobra's own: an unknown flag, an argument
		fmt.Fprintf(stderr, "fence-drill: %v (see fence-drill --help)\n", err)
		return ExitUsage
	}
}

// usage is a bad flag; exit is a drill that ran (or not) and said why.
type usage struct{ err error }

func (u usage) Error() string { return u.err.Error() }

type exit int

func (e exit) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func runCommand(ctx context.Context, o Options, output string, stdout, stderr io.Writer) error {
	o.Operator = "fence-drill"
	kind := "cooperative"
	if o.Partition {
		kind = "partitioned"
	}
	o.Progress = stdout
	if output != "table" {
		o.Progress = stderr
	}
	fmt.Fprintf(o.Progress, "FAILOVER DRILL: %s handover of %d validators, strict mode, lease TTL %s, embedded etcd\n\n", kind, o.withDefaults().Validators, o.withDefaults().LeaseTTL)
	res, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "fence-drill: the drill could not complete: %v\n", err)
		if res != nil && res.Dir != "" {
			fmt.Fprintf(stderr, "fence-drill: logs in %s/drill.log\n", res.Dir)
		}
		return exit(ExitNotRun)
	}
	rep := Report{Result: res, Passed: res.Clean(), Evidence: cli.NewEvidence(res.Finished, []string{res.Coordinator}, res.Started, res.Statuses, res.Events, nil)}
	if err := cli.WriteOutput(stdout, output, rep, func(w io.Writer) error { writeReport(w, rep); return nil }); err != nil {
		fmt.Fprintf(stderr, "fence-drill: write the report: %v\n", err)
		return exit(ExitNotRun)
	}
	if !rep.Passed {
		return exit(ExitFinding)
	}
	return nil
}

func writeReport(w io.Writer, rep Report) {
	r := rep.Result
	fmt.Fprintf(w, "\n== bump timeline per validator\n")
	for _, h := range r.Handovers {
		cli.WriteTimeline(w, fencing.ValidatorID(h.Validator), h.Bump)
		start := h.RevokeAt
		if len(h.Bump.Timeline) > 0 {
			start = h.Bump.Timeline[0].At
		}
		fmt.Fprintf(w, "  first standby signature at %s (+%.3fs): %s after the bump call, %s after the last active one\n\n",
			h.FirstStandby.UTC().Format("2006-01-02T15:04:05.000Z"), h.FirstStandby.Sub(start).Seconds(), h.BumpToStandby.Round(time.Millisecond), h.SigningGap.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "== measured\n")
	hs := make([]time.Duration, 0, len(r.Handovers))
	gaps := make([]time.Duration, 0, len(r.Handovers))
	for _, h := range r.Handovers {
		hs, gaps = append(hs, h.Handover.Duration), append(gaps, h.SigningGap.Duration)
	}
	met := "MET"
	if !r.TargetMet {
		met = "MISSED"
	}
	fmt.Fprintf(w, "%s handover, revoke committed -> grant committed: median %s, slowest %s; target <= %s: %s\n", r.Kind, median(hs), r.MaxHandover.Round(time.Millisecond), r.Target, met)
	fmt.Fprintf(w, "signing gap, last active -> first standby signature: median %s, slowest %s\n", median(gaps), r.MaxSigningGap.Round(time.Millisecond))
	fmt.Fprintf(w, "\n== journal audit (quorum journal and every sidecar's local journal)\n")
	if a := r.Check.Audit; a != nil {
		_ = a.WriteTable(w)
		if n := r.Check.AuditLateExplained; n > 0 {
			fmt.Fprintf(w, "(%d local write(s) dated after a revoke were signatures in flight at the revoke: each one's quorum journal entry committed at a revision before it)\n", n)
		}
	}
	fmt.Fprintf(w, "\n== invariant check over every answer the validators received\n%s\n", r.Check.Summary())
	for _, v := range r.Check.Violations {
		fmt.Fprintf(w, "  VIOLATION %s\n", v)
	}
	fmt.Fprintln(w)
	cli.WriteEvidence(w, rep.Evidence)
	fmt.Fprintln(w)
	if rep.Passed {
		fmt.Fprintf(w, "DRILL PASSED: %d validators failed over from region-a to region-b; slowest handover %s (target %s); no duplicate signature\n", r.Validators, r.MaxHandover.Round(time.Millisecond), r.Target)
	} else {
		dups := 0
		if r.Check.Audit != nil {
			dups = r.Check.Audit.DuplicateCount()
		}
		fmt.Fprintf(w, "DRILL FAILED: %d violation(s), %d duplicate(s), handover target %s\n", len(r.Check.Violations), dups, met)
	}
	if r.Dir != "" {
		fmt.Fprintf(w, "files kept in %s (drill.log, etcd data, sidecar journals)\n", r.Dir)
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(time.Millisecond)
}
