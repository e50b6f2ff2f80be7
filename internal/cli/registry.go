package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// validatorCmd is "validator add|remove": the registry of validators.
func (a *app) validatorCmd() *cobra.Command {
	return group("validator", "Register or remove validators",
		"A validator is one signing identity (an address 0x..., stored in EIP-55 form, or a\nname). It is registered with epoch 1 active on its first holder.",
		a.validatorAddCmd(), a.validatorRemoveCmd())
}

func (a *app) validatorAddCmd() *cobra.Command {
	var holder, reason string
	cmd := &cobra.Command{
		Use:   "add VALIDATOR --holder H --reason R",
		Short: "Register a validator: epoch 1 active on holder H",
		Long: `Registers VALIDATOR (an address 0x... or a name) with epoch 1 active on
holder H: H's sidecars may take its lease and sign from then on.`,
		Example: `  fencectl validator add 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 --holder region-a --reason "CHG-7 onboard"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			if holder == "" {
				return usageError("--holder is required: the failure domain that signs first (e.g. --holder region-a)")
			}
			if err := validateHolder("--holder", holder); err != nil {
				return err
			}
			if err := requireReason(reason); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ep, err := c.AddValidator(cmd.Context(), api.AddValidatorRequest{Validator: ids[0], Holder: holder, Operator: a.operator(), Reason: reason})
			if err != nil {
				return apiError("validator add "+string(ids[0]), err)
			}
			return a.print(api.EpochResponse{Epoch: ep}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "registered %s: epoch %d %s on %s\n", ids[0], ep.Epoch, ep.State, ep.Holder)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&holder, "holder", "", "the failure domain that may sign first, e.g. region-a (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, e.g. a change number (required)")
	_ = cmd.RegisterFlagCompletionFunc("holder", a.completeHolders)
	return cmd
}

// Removed is what validator remove prints with -o json or yaml.
type Removed struct {
	Validator fencing.ValidatorID `json:"validator"`
	Removed   bool                `json:"removed"`
}

func (a *app) validatorRemoveCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "remove VALIDATOR --reason R",
		Short: "Remove a fenced validator from the registry",
		Long: `Removes VALIDATOR from the registry. Only a fenced validator with no bump in
progress can be removed (freeze it first and wait until status shows fenced):
nobody can sign for it then. Its history stays.`,
		Example: `  fencectl freeze 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 --reason "CHG-9 decommission"
  fencectl status 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 --watch   # until fenced
  fencectl validator remove 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 --reason "CHG-9 decommission"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeValidators,
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			if err := requireReason(reason); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RemoveValidator(cmd.Context(), ids[0], api.ChangeRequest{Operator: a.operator(), Reason: reason}); err != nil {
				return apiError("validator remove "+string(ids[0]), err)
			}
			return a.print(Removed{Validator: ids[0], Removed: true}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "removed %s from the registry; its history stays (fencectl history %s)\n", ids[0], ids[0])
				return err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, e.g. a change number (required)")
	return cmd
}

// holderCmd is "holder add|list": the failure domains a bump may target.
func (a *app) holderCmd() *cobra.Command {
	return group("holder", "Register or list holders (failure domains a bump may target)",
		"A holder is a failure domain allowed to sign (region-a). A bump's --to must be a\nknown holder: one whose sidecars reported in, or one an operator registered.",
		a.holderAddCmd(), a.holderListCmd())
}

func (a *app) holderAddCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "add H --reason R",
		Short: "Register holder H so that a bump may target it",
		Long: `Registers holder H (a DNS label such as region-b). A holder is also known once
one of its sidecars reports in. Never register one during an incident to make
a bump pass: a typo in --to is what the "holder known" check catches.`,
		Example: `  fencectl holder add region-b --reason "CHG-7 standby region"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			holder := args[0]
			if err := validateHolder("holder", holder); err != nil {
				return err
			}
			if err := requireReason(reason); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RegisterHolder(cmd.Context(), api.ChangeRequest{Holder: holder, Operator: a.operator(), Reason: reason}); err != nil {
				return apiError("holder add "+holder, err)
			}
			rec := fencing.HolderRecord{Holder: holder}
			if hs, err := c.Holders(cmd.Context()); err == nil {
				for _, h := range hs {
					if h.Holder == holder {
						rec = h
					}
				}
			}
			return a.print(rec, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "registered holder %s\n", holder)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, e.g. a change number (required)")
	return cmd
}

func (a *app) holderListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the known holders",
		Long:    "Lists every known holder: registered by an operator (who, when, why) or learnt\nfrom a validator or a sidecar.",
		Example: `  fencectl holder list -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			hs, err := c.Holders(cmd.Context())
			if err != nil {
				return apiError("holder list", err)
			}
			if hs == nil {
				hs = []fencing.HolderRecord{}
			}
			return a.print(api.HoldersResponse{Holders: hs}, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "HOLDER\tREGISTERED\tBY\tREASON\tLEARNT FROM")
				for _, h := range hs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Holder, ts(h.RegisteredAt), orDash(h.By), orDash(h.Reason), orDash(h.LearntFrom))
				}
				return tw.Flush()
			})
		},
	}
}
