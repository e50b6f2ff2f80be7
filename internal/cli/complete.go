package cli

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// completionTimeout bounds the coordinator call behind a shell completion:
// a slow coordinator must not hang the shell.
const completionTimeout = 2 * time.Second

// completeValidators completes validator arguments with the registered
// validators not named yet. Completion runs without the commands' pre-run,
// so it reads the FENCE_* variables itself.
func (a *app) completeValidators(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if a.resolveGlobals(cmd) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	sts, err := c.Statuses(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, s := range sts {
		id := string(s.ID)
		if strings.HasPrefix(strings.ToLower(id), strings.ToLower(toComplete)) && !slices.Contains(args, id) {
			out = append(out, id+"\t"+string(s.Epoch.State)+" on "+s.Epoch.Holder)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeHolders completes a holder flag with the known holders.
func (a *app) completeHolders(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if a.resolveGlobals(cmd) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	hs, err := c.Holders(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, h := range hs {
		if strings.HasPrefix(h.Holder, toComplete) {
			out = append(out, h.Holder)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
