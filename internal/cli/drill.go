package cli

import (
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/validator-fencing/fencing/internal/drill"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// DrillReport is what `fencectl drill --output json` prints: the drill's
// result and the evidence report read before it shut down.
type DrillReport struct {
	*drill.Result
	Evidence Evidence `json:"evidence"`
	Passed   bool     `json:"passed"`
}

func drillCommand() command {
	var o drill.Options
	return command{
		name: "drill",
		usage: `fencectl drill [--validators N] [--lease-ttl D] [--partition] [--dir DIR]

A local failover drill on an embedded etcd, in this process: a coordinator,
an active sidecar (region-a) and a standby sidecar (region-b) for each of N
validators, and a signing workload that asks both regions to sign every
height/round/step with different digests. It bumps every validator to
region-b, prints the timeline (revoke, each lease drained, grant, first
standby signature), audits the quorum and local journals, checks that no slot
was signed twice, and prints the evidence report and the measured times.

  cooperative (default)  the active sidecars see the revoke and release;
                         target: handover <= 2s
  --partition            the active sidecars are cut off from the
                         coordinator first; the handover waits for their
                         leases to expire: target <= lease TTL + 2s

Exit codes: 0 passed, 1 a finding or a missed target, 3 the drill could not
run. --output json prints the whole result and the evidence as one document.
`,
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&o.Validators, "validators", 4, "validators to fail over")
			fs.DurationVar(&o.LeaseTTL, "lease-ttl", 15*time.Second, "sidecar lease TTL (whole seconds)")
			fs.BoolVar(&o.Partition, "partition", false, "cut the active sidecars off the coordinator before the bump (TTL-bound handover)")
			fs.StringVar(&o.Dir, "dir", "", "keep etcd data, keys, journals and logs here (default: a temporary directory, removed)")
		},
		run: func(e *env, args []string) int {
			if len(args) > 0 {
				return e.usageError(errors.New("drill takes no arguments"))
			}
			if o.Validators < 1 || o.Validators > 64 {
				return e.usageError(fmt.Errorf("--validators %d must be between 1 and 64", o.Validators))
			}
			if o.LeaseTTL%time.Second != 0 || o.LeaseTTL < 2*time.Second || o.LeaseTTL > 300*time.Second {
				return e.usageError(fmt.Errorf("--lease-ttl %s must be whole seconds between 2s and 300s", o.LeaseTTL))
			}
			o.Operator = e.getenv("FENCE_OPERATOR")
			if o.Operator == "" {
				o.Operator = "drill"
			}
			kind := "cooperative"
			if o.Partition {
				kind = "partitioned"
			}
			o.Progress = e.stdout
			if e.output == "json" {
				o.Progress = e.stderr
			}
			fmt.Fprintf(o.Progress, "FAILOVER DRILL: %s handover of %d validators, strict mode, lease TTL %s, embedded etcd\n\n", kind, o.Validators, o.LeaseTTL)
			res, err := drill.Run(e.ctx, o)
			if err != nil {
				fmt.Fprintf(e.stderr, "fencectl: drill could not complete: %v\n", err)
				if res != nil && res.Dir != "" {
					fmt.Fprintf(e.stderr, "fencectl: logs in %s/drill.log\n", res.Dir)
				}
				return ExitUnavailable
			}
			rep := DrillReport{Result: res, Passed: res.Clean(), Evidence: drillEvidence(res)}
			if e.output == "json" {
				if code := e.json(rep); code != ExitOK {
					return code
				}
			} else {
				writeDrill(e, rep)
			}
			if !rep.Passed {
				return ExitRefused
			}
			return ExitOK
		},
	}
}

// drillEvidence is the evidence report of the drill's coordinator.
func drillEvidence(r *drill.Result) Evidence {
	ev := Evidence{GeneratedAt: r.Finished.UTC(), Coordinator: []string{r.Coordinator}, Since: r.Started.UTC(), Audits: []fencing.Event{}}
	byValidator := map[fencing.ValidatorID][]fencing.Event{}
	for _, x := range r.Events {
		if x.Kind == fencing.EventAudit {
			ev.Audits = append(ev.Audits, x)
			continue
		}
		byValidator[x.Validator] = append(byValidator[x.Validator], x)
	}
	for _, s := range r.Statuses {
		ve := ValidatorEvidence{Status: s, Events: byValidator[s.ID]}
		if ve.Events == nil {
			ve.Events = []fencing.Event{}
		}
		ev.Validators = append(ev.Validators, ve)
	}
	return ev
}

func writeDrill(e *env, rep DrillReport) {
	r := rep.Result
	w := e.stdout
	fmt.Fprintf(w, "\n== bump timeline per validator\n")
	for _, h := range r.Handovers {
		printTimeline(e, h.Validator, h.Bump)
		start := h.RevokeAt
		if len(h.Bump.Timeline) > 0 {
			start = h.Bump.Timeline[0].At
		}
		fmt.Fprintf(w, "  %s  +%.3fs  first standby signature: %s after the bump call, %s after the last active one\n\n",
			ts(h.FirstStandby), h.FirstStandby.Sub(start).Seconds(), h.BumpToStandby.Round(time.Millisecond), h.SigningGap.Round(time.Millisecond))
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
	writeEvidence(e, rep.Evidence)
	fmt.Fprintln(w)
	if rep.Passed {
		fmt.Fprintf(w, "DRILL PASSED: %d validators failed over from region-a to region-b; slowest handover %s (target %s); no duplicate signature\n", r.Validators, r.MaxHandover.Round(time.Millisecond), r.Target)
	} else {
		fmt.Fprintf(w, "DRILL FAILED: %d violation(s), %d duplicate(s), handover target %s\n", len(r.Check.Violations), r.Check.Audit.DuplicateCount(), met)
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
