package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

func statusCommand() command {
	return command{
		name:  "status",
		usage: "fencectl status [VALIDATOR...]: epoch, state, holder, live leases and watermark of each validator.\n",
		run: func(e *env, args []string) int {
			c, err := e.client()
			if err != nil {
				return e.usageError(err)
			}
			var sts []fencing.Status
			if len(args) == 0 {
				if sts, err = c.Statuses(e.ctx); err != nil {
					return e.fail("status", err)
				}
			}
			ids, err := parseIDs(args)
			if err != nil {
				return e.usageError(err)
			}
			for _, id := range ids {
				st, err := c.Status(e.ctx, id)
				if err != nil {
					return e.fail("status "+string(id), err)
				}
				sts = append(sts, st)
			}
			if e.output == "json" {
				return e.json(api.StatusResponse{Validators: sts})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VALIDATOR\tEPOCH\tSTATE\tHOLDER\tLEASES\tWATERMARK\tBUMP\tSINCE")
			for _, s := range sts {
				leases := []string{}
				for _, l := range s.Leases {
					leases = append(leases, fmt.Sprintf("%s@%s/e%d", l.Sidecar, l.Holder, l.Epoch))
				}
				wm := "-"
				if s.Watermark != nil {
					wm = fmt.Sprintf("%s (e%d)", s.Watermark.HRS, s.Watermark.Epoch)
				}
				bump := "-"
				if s.Bump != nil {
					bump = fmt.Sprintf("to %s by %s", s.Bump.To, s.Bump.By)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Epoch.Epoch, s.Epoch.State, s.Epoch.Holder,
					orDash(strings.Join(leases, ",")), wm, bump, ts(s.Epoch.UpdatedAt))
			}
			_ = tw.Flush()
			if len(sts) == 0 {
				fmt.Fprintln(e.stdout, "(no validators registered; add one with fencectl validator add)")
			}
			return ExitOK
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func addCommand() command {
	var holder string
	var ch change
	return command{
		name:  "validator add",
		usage: "fencectl validator add VALIDATOR --holder H --operator O --reason R\n\nRegisters VALIDATOR (an address 0x... or a name) with epoch 1 active on holder H.\n",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&holder, "holder", "", "the failure domain that may sign first, e.g. region-a (required)")
			ch.flags(fs)
		},
		run: func(e *env, args []string) int {
			if len(args) != 1 {
				return e.usageError(errors.New("validator add takes exactly one VALIDATOR"))
			}
			if holder == "" {
				return e.usageError(errors.New("--holder is required (e.g. --holder region-a)"))
			}
			if err := ch.validate(); err != nil {
				return e.usageError(err)
			}
			c, err := e.client()
			if err != nil {
				return e.usageError(err)
			}
			id, err := fencing.ParseValidatorID(args[0])
			if err != nil {
				return e.usageError(err)
			}
			ep, err := c.AddValidator(e.ctx, api.AddValidatorRequest{Validator: id, Holder: holder, Operator: ch.operator, Reason: ch.reason})
			if err != nil {
				return e.fail("validator add", err)
			}
			if e.output == "json" {
				return e.json(api.EpochResponse{Epoch: ep})
			}
			fmt.Fprintf(e.stdout, "registered %s: epoch %d %s on %s\n", args[0], ep.Epoch, ep.State, ep.Holder)
			return ExitOK
		},
	}
}

// targets resolves the validators a command acts on: the arguments, or every
// validator whose current holder is holder and that keep says to act on.
func (e *env) targets(c *api.Client, args []string, holder, flagName string, keep func(fencing.Status) bool) ([]fencing.ValidatorID, error) {
	switch {
	case len(args) > 0 && holder != "":
		return nil, fmt.Errorf("name validators or give %s, not both", flagName)
	case len(args) > 0:
		return parseIDs(args)
	case holder == "":
		return nil, fmt.Errorf("name at least one VALIDATOR or give %s H", flagName)
	}
	sts, err := c.Statuses(e.ctx)
	if err != nil {
		return nil, err
	}
	var ids []fencing.ValidatorID
	for _, s := range sts {
		if s.Epoch.Holder == holder && keep(s) {
			ids = append(ids, s.ID)
		}
	}
	if len(ids) == 0 {
		return nil, fencing.Errorf(fencing.CodeNotFound, "no validator held by %s is in a state this command acts on (see fencectl status)", holder)
	}
	return ids, nil
}

// parseIDs parses validator arguments (where they enter).
func parseIDs(args []string) ([]fencing.ValidatorID, error) {
	ids := make([]fencing.ValidatorID, len(args))
	for i, a := range args {
		id, err := fencing.ParseValidatorID(a)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

func freezeCommand() command {
	var holder string
	var expected uint64
	var ch change
	return command{
		name: "freeze",
		usage: `fencectl freeze (VALIDATOR...|--holder H) --operator O --reason R [--expected-epoch N]

Revokes the active epoch: from the commit on, no lease is granted or renewed
and no signature is journaled under it. The validator stays fenced until a
bump grants a new epoch.
`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&holder, "holder", "", "freeze every validator held by H")
			fs.Uint64Var(&expected, "expected-epoch", 0, "refuse unless the current epoch is N (one validator only)")
			ch.flags(fs)
		},
		run: func(e *env, args []string) int {
			if err := ch.validate(); err != nil {
				return e.usageError(err)
			}
			c, err := e.client()
			if err != nil {
				return e.usageError(err)
			}
			ids, err := e.targets(c, args, holder, "--holder", func(s fencing.Status) bool { return s.Epoch.State == fencing.StateActive })
			if err != nil {
				return e.targetError(err)
			}
			if expected != 0 && len(ids) != 1 {
				return e.usageError(errors.New("--expected-epoch applies to exactly one validator"))
			}
			worst := ExitOK
			var out []api.EpochResponse
			for _, id := range ids {
				ep, err := c.Freeze(e.ctx, id, api.FreezeRequest{ExpectedEpoch: expected, Operator: ch.operator, Reason: ch.reason})
				if err != nil {
					worst = max(worst, e.fail("freeze "+string(id), err))
					continue
				}
				out = append(out, api.EpochResponse{Epoch: ep})
				if e.output == "table" {
					fmt.Fprintf(e.stdout, "%s: revoke committed at %s: epoch %d %s (was active on %s)\n", id, ts(ep.UpdatedAt), ep.Epoch, ep.State, ep.Holder)
				}
			}
			if e.output == "json" {
				e.json(out)
			}
			return worst
		},
	}
}

func (e *env) targetError(err error) int {
	if fencing.CodeOf(err) == fencing.CodeInternal {
		return e.usageError(err)
	}
	return e.fail("select validators", err)
}

func bumpCommand() command {
	var from, to string
	var expected uint64
	var timeout, firstWait time.Duration
	var force bool
	var ch change
	var sc scaleOptions
	return command{
		name: "bump",
		usage: `fencectl bump (VALIDATOR...|--from H) --to H2 --operator O --reason R [--timeout 2m]

Moves validators to holder H2 as one resumable operation: revoke the epoch,
wait until every lease of it is released (sidecars that see the revoke
release at once) or expired (a partitioned sidecar: at most its lease TTL),
then grant epoch N+1 to H2. Prints the timeline of each validator.

If --timeout passes first, the bump continues in the coordinator; fencectl
exits 4 and 'fencectl status' shows its progress.

With --scale (Kubernetes), the old holder's validator StatefulSet is scaled
to 0 after the revoke and before the grant, and the new holder's is scaled up
after the grant:
  --scale --from-context ctx-a --to-context ctx-b --namespace besu --statefulset validator
`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&from, "from", "", "bump every validator held by H")
			fs.StringVar(&to, "to", "", "the new holder, e.g. region-b (required)")
			fs.Uint64Var(&expected, "expected-epoch", 0, "refuse unless the current epoch is N (one validator only)")
			fs.DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the grant (the bump continues after it)")
			fs.DurationVar(&firstWait, "first-signature-wait", 0, "after the grant, wait this long for the new holder's first signature and show it (strict mode)")
			fs.BoolVar(&force, "force", false, "bump although no sidecar of --to reported ready (the validator stays offline until one does)")
			ch.flags(fs)
			sc.flags(fs)
		},
		run: func(e *env, args []string) int {
			if to == "" {
				return e.usageError(errors.New("--to is required: the holder that signs after the bump"))
			}
			if err := ch.validate(); err != nil {
				return e.usageError(err)
			}
			if timeout <= 0 || timeout > 10*time.Minute {
				return e.usageError(fmt.Errorf("--timeout %s must be between 0 and 10m", timeout))
			}
			if err := sc.validate(); err != nil {
				return e.usageError(err)
			}
			c, err := e.client()
			if err != nil {
				return e.usageError(err)
			}
			// Frozen validators without a bump are bumped too; those with one are
			// already on their way.
			ids, err := e.targets(c, args, from, "--from", func(s fencing.Status) bool { return s.Bump == nil })
			if err != nil {
				return e.targetError(err)
			}
			if expected != 0 && len(ids) != 1 {
				return e.usageError(errors.New("--expected-epoch applies to exactly one validator"))
			}
			req := api.BumpRequest{ExpectedEpoch: expected, To: to, Operator: ch.operator, Reason: ch.reason, Force: force,
				Wait: api.Duration{Duration: timeout}, FirstSignatureWait: api.Duration{Duration: firstWait}}
			if sc.enabled {
				return e.bumpWithScale(c, ids, req, &sc)
			}
			return e.bumpAll(c, ids, req)
		},
	}
}

// bumpAll bumps ids in parallel and prints each timeline.
func (e *env) bumpAll(c *api.Client, ids []fencing.ValidatorID, req api.BumpRequest) int {
	type result struct {
		id  fencing.ValidatorID
		res fencing.BumpResult
		err error
	}
	results := make([]result, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			req := req
			req.ID = newBumpID() // a retry on another replica finds this bump
			res, err := c.Bump(e.ctx, id, req)
			results[i] = result{id, res, err}
		})
	}
	wg.Wait()
	worst := ExitOK
	var out []fencing.BumpResult
	for _, r := range results {
		if r.err != nil && fencing.CodeOf(r.err) != fencing.CodeInProgress {
			worst = max(worst, e.fail("bump "+string(r.id), r.err))
			continue
		}
		if r.err != nil {
			worst = max(worst, ExitInProgress)
		}
		out = append(out, r.res)
		if e.output == "table" {
			printTimeline(e, string(r.id), r.res)
		}
	}
	if e.output == "json" {
		e.json(out)
	}
	return worst
}

func printTimeline(e *env, id string, r fencing.BumpResult) {
	b := r.Bump
	fmt.Fprintf(e.stdout, "%s: epoch %d (%s) -> %s  [bump %s by %s: %s]\n", id, b.FromEpoch, b.FromHold, b.To, b.ID, b.By, b.Reason)
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	var start time.Time
	for _, te := range r.Timeline {
		if start.IsZero() {
			start = te.At
		}
		fmt.Fprintf(tw, "  %s\t+%.3fs\t%s\t%s\n", ts(te.At), te.At.Sub(start).Seconds(), te.Step, te.Detail)
	}
	_ = tw.Flush()
	if r.Done {
		fmt.Fprintf(e.stdout, "  granted: epoch %d active on %s; handover took %.3fs\n", r.Epoch.Epoch, r.Epoch.Holder, r.Epoch.UpdatedAt.Sub(start).Seconds())
	} else {
		fmt.Fprintf(e.stdout, "  still %s after the timeout: the bump continues in the coordinator; watch fencectl status %s\n", r.Epoch.State, id)
	}
}

func historyCommand() command {
	var limit int
	return command{
		name:  "history",
		usage: "fencectl history [VALIDATOR] [--limit N]: the append-only event log, oldest first, in commit order.\n",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&limit, "limit", 0, "show only the newest N events")
		},
		run: func(e *env, args []string) int {
			if len(args) > 1 {
				return e.usageError(errors.New("history takes at most one VALIDATOR"))
			}
			if limit < 0 {
				return e.usageError(errors.New("--limit must be >= 0"))
			}
			c, err := e.client()
			if err != nil {
				return e.usageError(err)
			}
			var id fencing.ValidatorID
			if len(args) == 1 {
				if id, err = fencing.ParseValidatorID(args[0]); err != nil {
					return e.usageError(err)
				}
			}
			evs, err := c.Events(e.ctx, id, limit)
			if err != nil {
				return e.fail("history", err)
			}
			if e.output == "json" {
				return e.json(api.EventsResponse{Events: evs})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tREV\tEVENT\tVALIDATOR\tFROM\tTO\tBY\tREASON\tDETAIL")
			for _, ev := range evs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ts(ev.At), ev.Revision, ev.Kind, orDash(string(ev.Validator)),
					epochText(ev.From), epochText(ev.To), orDash(ev.By), orDash(ev.Reason), orDash(ev.Detail))
			}
			_ = tw.Flush()
			return ExitOK
		},
	}
}

func epochText(ep *fencing.Epoch) string {
	if ep == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%s/%s", ep.Epoch, ep.State, ep.Holder)
}

func newBumpID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
