package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// targets resolves the validators a command acts on: the arguments, or
// every validator whose current holder is holder and that keep says to act
// on.
func targets(ctx context.Context, c *api.Client, args []string, holder, flagName string, keep func(fencing.Status) bool) ([]fencing.ValidatorID, error) {
	switch {
	case len(args) > 0 && holder != "":
		return nil, usageError("name validators or give %s, not both", flagName)
	case len(args) > 0:
		return parseIDs(args)
	case holder == "":
		return nil, usageError("name at least one VALIDATOR or give %s H", flagName)
	}
	if err := validateHolder(flagName, holder); err != nil {
		return nil, err
	}
	sts, err := c.Statuses(ctx)
	if err != nil {
		return nil, apiError("select validators", err)
	}
	var ids []fencing.ValidatorID
	for _, s := range sts {
		if s.Epoch.Holder == holder && keep(s) {
			ids = append(ids, s.ID)
		}
	}
	if len(ids) == 0 {
		return nil, apiError("select validators", fencing.Errorf(fencing.CodeNotFound, "no validator held by %s is in a state this command acts on (see fencectl status)", holder))
	}
	return ids, nil
}

// report prints a failure of one validator of several and keeps the worst
// exit code.
func (a *app) report(worst *int, what string, err error) {
	fmt.Fprintf(a.Stderr, "fencectl: %s: %v\n", what, err)
	*worst = max(*worst, exitCode(err))
}

func (a *app) freezeCmd() *cobra.Command {
	var holder, reason string
	var expected uint64
	cmd := &cobra.Command{
		Use:   "freeze (VALIDATOR...|--holder H) --reason R",
		Short: "Revoke the active epoch: nobody signs until a bump or unfreeze",
		Long: `Revokes the active epoch of each validator named, or of every active
validator held by --holder H: from the commit on, no lease is granted or
renewed under it and no signature is journaled. Sidecars that see the revoke
release their leases at once; a partitioned one stops at its local deadline,
before its lease expires in etcd. The validator stays frozen (revoking, then
fenced) until a bump grants the next epoch or unfreeze grants it back.`,
		Example: `  fencectl freeze 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 --reason "INC-42 stuck height" --comment alice
  fencectl freeze --holder region-a --reason "INC-42 region A degraded"`,
		ValidArgsFunction: a.completeValidators,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireReason(reason); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ids, err := targets(cmd.Context(), c, args, holder, "--holder", func(s fencing.Status) bool { return s.Epoch.State == fencing.StateActive })
			if err != nil {
				return err
			}
			if expected != 0 && len(ids) != 1 {
				return usageError("--expected-epoch applies to exactly one validator")
			}
			worst := ExitOK
			out := []api.EpochResponse{}
			for _, id := range ids {
				ep, err := c.Freeze(cmd.Context(), id, api.FreezeRequest{ExpectedEpoch: expected, Operator: a.operator(), Reason: reason})
				if err != nil {
					a.report(&worst, "freeze "+string(id), err)
					continue
				}
				out = append(out, api.EpochResponse{Epoch: ep})
				if a.g.output == "table" {
					fmt.Fprintf(a.Stdout, "%s: revoke committed at %s: epoch %d %s (was active on %s)\n", id, ts(ep.UpdatedAt), ep.Epoch, ep.State, ep.Holder)
				}
			}
			if a.g.output != "table" {
				if err := a.print(out, nil); err != nil {
					return err
				}
			}
			return exitWith(worst)
		},
	}
	cmd.Flags().StringVar(&holder, "holder", "", "freeze every active validator held by H")
	cmd.Flags().StringVar(&reason, "reason", "", "why, e.g. an incident number (required)")
	cmd.Flags().Uint64Var(&expected, "expected-epoch", 0, "refuse unless the current epoch is N (one validator only)")
	_ = cmd.RegisterFlagCompletionFunc("holder", a.completeHolders)
	return cmd
}

func (a *app) unfreezeCmd() *cobra.Command {
	var reason string
	var force bool
	var o bumpFlags
	cmd := &cobra.Command{
		Use:   "unfreeze VALIDATOR... --reason R",
		Short: "Grant a frozen validator's next epoch back to the holder it had",
		Long: `Grants each frozen (revoking or fenced) validator's next epoch back to the
holder it had: the same as a bump to that holder. It waits for the old
epoch's leases to end like a bump, showing each step as it commits, and
exits 4 if --timeout passes first (the unfreeze continues in the
coordinator). Refused for an active validator, and, like a bump, unless a
sidecar of that holder reported ready (--force grants it anyway; the
validator then stays offline until one is ready).`,
		Example:           `  fencectl unfreeze "$V" --reason "INC-42 resume after abandoning 13/0/block" --comment alice`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeValidators,
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			if err := requireReason(reason); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			b := a.newBumpRun(c, "unfreeze", api.BumpRequest{Operator: a.operator(), Reason: reason, Force: force}, o)
			return b.all(cmd.Context(), ids)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, e.g. an incident number (required)")
	cmd.Flags().BoolVar(&force, "force", false, "grant back although no sidecar of the holder reported ready (the validator stays offline until one does)")
	o.flags(cmd)
	return cmd
}

func (a *app) abandonCmd() *cobra.Command {
	var height, round uint64
	var step, reason string
	var yes bool
	cmd := &cobra.Command{
		Use:   "abandon VALIDATOR --height N [--round R] --step S --reason R",
		Short: "Declare that the signature at the watermark never reached the chain",
		Long: `The stuck height's way out (docs/runbook.md, "Stuck height after a
non-cooperative failover"): records an operator's decision that the
signature at HRS height/round/step, the validator's watermark, signed under
an earlier epoch, never reached the chain, so that the validator may sign
that HRS again, with any digest, and nothing below it.

Abandoning is safe only if that signature never reached any node and never
will: if it did and appears later, the key has signed twice. The coordinator
refuses unless the validator is fenced (freeze it first), the HRS is its
watermark, and the signature was made under an earlier epoch.

On a terminal it shows the validator's state and watermark and asks; off a
terminal it needs --yes. Steps: round-change, proposal, prepare, commit,
block.`,
		Example: `  fencectl freeze "$V" --reason "INC-42 stuck at 13" --comment alice
  fencectl status "$V" --watch          # until fenced, then Ctrl-C
  fencectl abandon "$V" --height 13 --step block --reason "INC-42 13/0/block never published" --comment alice
  fencectl unfreeze "$V" --reason "INC-42 resume" --comment alice`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeValidators,
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			id := ids[0]
			if !cmd.Flags().Changed("height") {
				return usageError("--height is required: the watermark's height (fencectl status shows it)")
			}
			st, err := fencing.ParseStep(step)
			if err != nil {
				return usageError("--step: %s", fencingMessage(err))
			}
			if err := requireReason(reason); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			hrs := fencing.HRS{Height: height, Round: round, Step: st}
			if !yes && a.interactive() {
				cur, err := c.Status(cmd.Context(), id)
				if err != nil {
					return apiError("status "+string(id), err)
				}
				wm := "none"
				if cur.Watermark != nil {
					wm = fmt.Sprintf("%s signed under epoch %d by %s (digest %s)", cur.Watermark.HRS, cur.Watermark.Epoch, cur.Watermark.Sidecar, cur.Watermark.Digest)
				}
				fmt.Fprintf(a.Stderr, "%s is %s (epoch %d on %s); its watermark: %s.\n", id, cur.Epoch.State, cur.Epoch.Epoch, cur.Epoch.Holder, wm)
				fmt.Fprintf(a.Stderr, "abandon %s: %s may then be signed again with any digest. Safe only if that signature never reached any node and never will.\n", hrs, id)
			}
			if err := a.confirm(yes, "abandon", fmt.Sprintf("Abandon %s of %s?", hrs, id)); err != nil {
				return err
			}
			wm, err := c.Abandon(cmd.Context(), id, api.AbandonRequest{Height: height, Round: round, Step: st, Operator: a.operator(), Reason: reason})
			if err != nil {
				return apiError("abandon "+string(id)+" "+hrs.String(), err)
			}
			return a.print(wm, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s: abandoned %s (signed under epoch %d by %s); it may be signed again, nothing below it. Unfreeze to resume: fencectl unfreeze %s --reason ...\n", id, wm.HRS, wm.Epoch, wm.Sidecar, id)
				return err
			})
		},
	}
	cmd.Flags().Uint64Var(&height, "height", 0, "height of the HRS to abandon: the watermark's (required)")
	cmd.Flags().Uint64Var(&round, "round", 0, "round of the HRS (0 for Clique)")
	cmd.Flags().StringVar(&step, "step", "", "step of the HRS: round-change, proposal, prepare, commit or block (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, with the evidence that the signature never reached the chain (required)")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask (needed off a terminal)")
	_ = cmd.RegisterFlagCompletionFunc("step", cobra.FixedCompletions([]string{"round-change", "proposal", "prepare", "commit", "block"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
