package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// startWait is how long the request that starts a bump waits for the grant
// before fencectl follows the bump's progress stream: a cooperative
// handover is granted well within it.
const startWait = time.Second

// maxFirstSignatureWait is the longest first-signature wait the progress
// stream accepts.
const maxFirstSignatureWait = time.Minute

const bumpLong = `Moves validators to holder H2 as one resumable operation in the coordinator:
revoke the epoch, wait until every lease of it is released (a sidecar that
sees the revoke releases at once) or expired in etcd (a partitioned sidecar:
at most its lease TTL), then grant epoch N+1 to H2.

Before anything changes the coordinator checks the bump (the preflight):
H2 must be a known holder (a typo is refused as not_found, with the known
ones), no other bump may be in progress, and a sidecar of H2 must have
reported ready for the validator (otherwise it is refused as not_ready; with
--force it goes ahead and the validator stays offline until one is ready).
--dry-run prints the plan and these checks and changes nothing; it exits 1
when the bump would be refused.

While it runs, each step is printed as it commits (revoke_committed or
bump_started, lease_released or lease_expired per lease, fenced,
grant_committed, first_signature), with a countdown of the leases still
live and the time etcd gives each. If --timeout passes first, the bump goes
on in the coordinator: fencectl exits 4 and prints how to re-attach with
--follow BUMP-ID VALIDATOR.

A bump of several validators (--from, or more than one named) asks for
confirmation on a terminal and needs --yes elsewhere.

With --scale (Kubernetes), the old holder's validator StatefulSet is scaled
to 0 after the revoke and before the grant, and the new holder's is scaled
up after the grant:
  --scale --from-context ctx-a --to-context ctx-b --namespace besu --statefulset validator`

const bumpExample = `  fencectl bump --from region-a --to region-b --reason "INC-42 region A lost" --dry-run
  fencectl bump --from region-a --to region-b --reason "INC-42 region A lost" --comment alice \
    --timeout 5m --first-signature-wait 30s --yes -o json > bump.json
  fencectl bump 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 --to region-b --reason "CHG-9 move"
  fencectl bump --follow 3f1c0d7e9a2b4c6d8e0f1a2b3c4d5e6f 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4`

func (a *app) bumpCmd() *cobra.Command {
	var from, to, reason, follow string
	var expected uint64
	var force, dryRun, yes bool
	var o bumpFlags
	var sc scaleOptions
	cmd := &cobra.Command{
		Use:               "bump (VALIDATOR...|--from H) --to H2 --reason R",
		Short:             "Move validators to another holder: revoke, drain, grant, with the progress as it happens",
		Long:              bumpLong,
		Example:           bumpExample,
		ValidArgsFunction: a.completeValidators,
		RunE: func(cmd *cobra.Command, args []string) error {
			if follow != "" {
				for _, f := range []string{"to", "from", "dry-run", "force", "expected-epoch", "scale", "yes"} {
					if cmd.Flags().Changed(f) {
						return usageError("--follow re-attaches to a bump under way: --%s does not apply", f)
					}
				}
				if err := o.validate(); err != nil {
					return err
				}
				return a.followBump(cmd.Context(), follow, args, o)
			}
			if to == "" {
				return usageError("--to is required: the holder that signs after the bump")
			}
			if err := validateHolder("--to", to); err != nil {
				return err
			}
			if err := requireReason(reason); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			if err := sc.validate(); err != nil {
				return err
			}
			if sc.enabled && dryRun {
				return usageError("--dry-run with --scale: the dry run checks the bump only; run it without --scale")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			// Frozen validators without a bump are bumped too; those with one
			// are already on their way.
			ids, err := targets(cmd.Context(), c, args, from, "--from", func(s fencing.Status) bool { return s.Bump == nil })
			if err != nil {
				return err
			}
			if expected != 0 && len(ids) != 1 {
				return usageError("--expected-epoch applies to exactly one validator")
			}
			req := api.BumpRequest{ExpectedEpoch: expected, To: to, Operator: a.operator(), Reason: reason, Force: force}
			if dryRun {
				return a.planBumps(cmd.Context(), c, ids, req)
			}
			if from != "" || len(ids) > 1 {
				if err := a.confirmBump(cmd.Context(), c, ids, req, yes); err != nil {
					return err
				}
			}
			b := a.newBumpRun(c, "bump", req, o)
			if sc.enabled {
				return a.bumpWithScale(cmd.Context(), b, ids, &sc)
			}
			return b.all(cmd.Context(), ids)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "bump every validator held by H (without a bump under way)")
	f.StringVar(&to, "to", "", "the new holder, e.g. region-b (required)")
	f.StringVar(&reason, "reason", "", "why, e.g. an incident number (required)")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan and the coordinator's checks; change nothing")
	f.BoolVar(&force, "force", false, "bump although no sidecar of --to reported ready (the validator stays offline until one does)")
	f.BoolVar(&yes, "yes", false, "do not ask before bumping several validators (needed off a terminal)")
	f.StringVar(&follow, "follow", "", "re-attach to bump BUMP-ID of the one VALIDATOR named and show its progress")
	f.Uint64Var(&expected, "expected-epoch", 0, "refuse unless the current epoch is N (one validator only)")
	o.flags(cmd)
	sc.flags(cmd)
	for _, h := range []string{"from", "to"} {
		_ = cmd.RegisterFlagCompletionFunc(h, a.completeHolders)
	}
	return cmd
}

// bumpFlags are how long bump and unfreeze wait.
type bumpFlags struct {
	timeout   time.Duration
	firstWait time.Duration
}

func (o *bumpFlags) flags(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for the grant; after it the bump goes on in the coordinator (exit 4)")
	cmd.Flags().DurationVar(&o.firstWait, "first-signature-wait", 0, "after the grant, wait up to this long (at most 1m) for the new holder's first signature and show it (strict mode)")
}

func (o bumpFlags) validate() error {
	var errs []string
	if o.timeout <= 0 || o.timeout > 10*time.Minute {
		errs = append(errs, fmt.Sprintf("--timeout %s must be between 0 and 10m", o.timeout))
	}
	if o.firstWait < 0 || o.firstWait > maxFirstSignatureWait {
		errs = append(errs, fmt.Sprintf("--first-signature-wait %s must be between 0 and %s", o.firstWait, maxFirstSignatureWait))
	}
	if len(errs) > 0 {
		return usageError("%s", strings.Join(errs, "; "))
	}
	return nil
}

// wouldRefuse lists the checks of p that make the coordinator refuse the
// bump (with force, a standby that is not ready does not).
func wouldRefuse(p api.BumpPlan, force bool) []string {
	var out []string
	for _, c := range p.Checks {
		if !c.OK && !(force && c.Name == "standby ready") {
			out = append(out, c.Name)
		}
	}
	return out
}

// plans asks the coordinator for the plan of each bump; a validator whose
// plan cannot be had is reported and left out.
func (a *app) plans(ctx context.Context, c *api.Client, ids []fencing.ValidatorID, req api.BumpRequest, worst *int) []api.BumpPlan {
	out := []api.BumpPlan{}
	for _, id := range ids {
		p, err := c.PlanBump(ctx, id, req)
		if err != nil {
			a.report(worst, "bump --dry-run "+string(id), err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// planBumps is --dry-run: the plans and checks; exit 1 when a bump would
// be refused.
func (a *app) planBumps(ctx context.Context, c *api.Client, ids []fencing.ValidatorID, req api.BumpRequest) error {
	worst := ExitOK
	ps := a.plans(ctx, c, ids, req, &worst)
	var refused []string
	for _, p := range ps {
		if r := wouldRefuse(p, req.Force); len(r) > 0 {
			refused = append(refused, fmt.Sprintf("%s (%s)", p.Validator, strings.Join(r, ", ")))
		}
	}
	err := a.print(ps, func(w io.Writer) error {
		for _, p := range ps {
			writePlan(w, p)
		}
		fmt.Fprintln(w, "dry run: nothing changed.")
		if len(refused) > 0 {
			fmt.Fprintf(w, "the coordinator would refuse: %s\n", strings.Join(refused, "; "))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(refused) > 0 {
		worst = max(worst, ExitRefused)
	}
	return exitWith(worst)
}

func writePlan(w io.Writer, p api.BumpPlan) {
	fmt.Fprintf(w, "%s: epoch %d %s on %s -> %s\n", p.Validator, p.From.Epoch, p.From.State, p.From.Holder, p.To)
	for _, c := range p.Checks {
		verdict := "ok  "
		if !c.OK {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "  check   %s  %-20s %s\n", verdict, c.Name, c.Detail)
	}
	for _, l := range p.Leases {
		fmt.Fprintf(w, "  lease   %s@%s: released at once when it sees the revoke, else etcd expires it in %s\n", l.Sidecar, l.Holder, l.ExpiresIn.Round(time.Second))
	}
	for _, s := range p.Standbys {
		state := "ready"
		if !s.Ready() {
			state = "not ready: " + strings.Join(s.Problems, "; ")
		}
		fmt.Fprintf(w, "  standby %s@%s %s (reported %s)\n", s.Sidecar, s.Holder, state, ts(s.ReportedAt))
	}
	for i, s := range p.Steps {
		fmt.Fprintf(w, "  step    %d. %s\n", i+1, s)
	}
}

// confirmBump asks before a bump of several validators, showing each plan.
func (a *app) confirmBump(ctx context.Context, c *api.Client, ids []fencing.ValidatorID, req api.BumpRequest, yes bool) error {
	what := fmt.Sprintf("a bump of %s", plural(len(ids), "validator", "validators"))
	if !yes && a.interactive() {
		worst := ExitOK
		for _, p := range a.plans(ctx, c, ids, req, &worst) {
			writePlan(a.Stderr, p)
		}
	}
	return a.confirm(yes, what, fmt.Sprintf("Bump %s to %s?", plural(len(ids), "validator", "validators"), req.To))
}

// bumpRun starts bumps (or unfreezes) and follows each to its end.
type bumpRun struct {
	a    *app
	c    *api.Client
	op   string // "bump" or "unfreeze": the endpoint
	req  api.BumpRequest
	opts bumpFlags
	view *progressView
}

func (a *app) newBumpRun(c *api.Client, op string, req api.BumpRequest, o bumpFlags) *bumpRun {
	return &bumpRun{a: a, c: c, op: op, req: req, opts: o}
}

type bumpOutcome struct {
	res fencing.BumpResult
	err error
}

// all starts a bump of each of ids at once and follows them until each is
// granted or --timeout passes.
func (b *bumpRun) all(ctx context.Context, ids []fencing.ValidatorID) error {
	return b.each(ctx, ids, b.one)
}

// each runs do for every id in parallel (at most 16 at once) under
// --timeout, with one progress view, then prints the results.
func (b *bumpRun) each(ctx context.Context, ids []fencing.ValidatorID, do func(context.Context, fencing.ValidatorID) (fencing.BumpResult, error)) error {
	ctx, cancel := context.WithTimeout(ctx, b.opts.timeout)
	defer cancel()
	b.view = newProgressView(b.a.progressOut(), b.a.IsTerminal(b.a.progressOut()))
	out := make([]bumpOutcome, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := do(ctx, id)
			out[i] = bumpOutcome{res, err}
		})
	}
	wg.Wait()
	b.view.close()
	worst := ExitOK
	results := []fencing.BumpResult{}
	for i, o := range out {
		if o.err != nil && fencing.CodeOf(o.err) != fencing.CodeInProgress {
			b.a.report(&worst, b.op+" "+string(ids[i]), o.err)
			continue
		}
		if !o.res.Done {
			worst = max(worst, ExitInProgress)
		}
		results = append(results, o.res)
	}
	if b.a.g.output != "table" {
		if err := b.a.print(results, nil); err != nil {
			return err
		}
	}
	return exitWith(worst)
}

// one starts the bump of id with a short wait, then follows its progress.
func (b *bumpRun) one(ctx context.Context, id fencing.ValidatorID) (fencing.BumpResult, error) {
	req := b.req
	req.ID = newBumpID() // a retry on another replica finds this bump
	req.Wait = api.Duration{Duration: min(startWait, b.opts.timeout)}
	var res fencing.BumpResult
	var err error
	if b.op == "unfreeze" {
		res, err = b.c.Unfreeze(ctx, id, req)
	} else {
		res, err = b.c.Bump(ctx, id, req)
	}
	if err != nil && fencing.CodeOf(err) != fencing.CodeInProgress {
		return res, err
	}
	tr := b.view.track(id, b.op, res.Bump)
	tr.steps(res.Timeline)
	if err == nil && res.Done && b.opts.firstWait == 0 {
		tr.done(res)
		return res, nil
	}
	return b.follow(ctx, tr, id, res)
}

// errFollowed ends a progress stream once the bump is done.
var errFollowed = errors.New("bump done")

// follow reads id's bump progress stream until the bump is done, attaching
// again when the stream breaks (a coordinator replica went away), until ctx
// ends (--timeout: an in_progress error with what is known so far).
func (b *bumpRun) follow(ctx context.Context, tr *tracker, id fencing.ValidatorID, res fencing.BumpResult) (fencing.BumpResult, error) {
	for {
		err := b.c.BumpProgress(ctx, id, res.Bump.ID, b.opts.firstWait, func(p api.BumpProgress) error {
			switch {
			case p.Error != nil:
				return &fencing.Error{Code: p.Error.Code, Message: p.Error.Message}
			case p.Done != nil:
				res = *p.Done
				tr.done(res)
				return errFollowed
			case p.Step != nil:
				tr.steps([]fencing.TimelineEntry{*p.Step})
			case p.Draining != nil:
				tr.draining(p.Draining)
			}
			return nil
		})
		switch code := fencing.CodeOf(err); {
		case errors.Is(err, errFollowed):
			return res, nil
		case ctx.Err() != nil:
			res.Timeline = tr.timeline
			tr.pending(res, fmt.Sprintf(" after --timeout %s", b.opts.timeout))
			return res, fencing.Errorf(fencing.CodeInProgress, "%s %s: not granted within --timeout %s", b.op, id, b.opts.timeout)
		case err != nil && code != fencing.CodeUnavailable && code != fencing.CodeNoQuorum:
			return res, err
		}
		// The stream ended or broke before the end: attach again.
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// followBump is bump --follow BUMP-ID VALIDATOR.
func (a *app) followBump(ctx context.Context, bumpID string, args []string, o bumpFlags) error {
	if len(args) != 1 {
		return usageError("bump --follow BUMP-ID takes exactly one VALIDATOR (fencectl status shows each bump's ID)")
	}
	ids, err := parseIDs(args)
	if err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	st, err := c.Status(ctx, ids[0])
	if err != nil {
		return apiError("status "+string(ids[0]), err)
	}
	res := fencing.BumpResult{Bump: fencing.Bump{ID: bumpID}, Epoch: st.Epoch}
	if st.Bump != nil && st.Bump.ID == bumpID {
		res.Bump = *st.Bump
	}
	b := a.newBumpRun(c, "bump", api.BumpRequest{}, o)
	return b.each(ctx, ids, func(ctx context.Context, id fencing.ValidatorID) (fencing.BumpResult, error) {
		return b.follow(ctx, b.view.track(id, "bump", res.Bump), id, res)
	})
}

func newBumpID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WriteTimeline writes a bump's timeline as bump prints it while it
// happens: the bump, each step, and how it ended.
func WriteTimeline(w io.Writer, id fencing.ValidatorID, r fencing.BumpResult) {
	v := newProgressView(w, false)
	t := v.track(id, "bump", r.Bump)
	t.steps(r.Timeline)
	if r.Done {
		t.done(r)
	} else {
		t.pending(r, "")
	}
	v.close()
}
