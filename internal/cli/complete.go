package cli

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/validator-fencing/fencing/internal/api"
)

// completionTimeout bounds the coordinator call behind a shell completion:
// a slow coordinator must not hang the shell.
const completionTimeout = 2 * time.Second

// complete answers a shell completion with what list reads from the
// coordinator; any error completes nothing. Completion runs without the
// commands' pre-run, so it reads the FENCE_* variables itself.
func (a *app) complete(cmd *cobra.Command, list func(context.Context, *api.Client) ([]string, error)) ([]string, cobra.ShellCompDirective) {
	if a.resolveGlobals(cmd) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	out, err := list(ctx, c)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeValidators completes validator arguments with the registered
// validators not named yet.
func (a *app) completeValidators(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return a.complete(cmd, func(ctx context.Context, c *api.Client) ([]string, error) {
		sts, err := c.Statuses(ctx)
		var out []string
		for _, s := range sts {
			id := string(s.ID)
			if strings.HasPrefix(strings.ToLower(id), strings.ToLower(toComplete)) && !slices.Contains(args, id) {
				out = append(out, id+"\t"+string(s.Epoch.State)+" on "+s.Epoch.Holder)
			}
		}
		return out, err
	})
}

// completeHolders completes a holder flag with the known holders.
func (a *app) completeHolders(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return a.complete(cmd, func(ctx context.Context, c *api.Client) ([]string, error) {
		hs, err := c.Holders(ctx)
		var out []string
		for _, h := range hs {
			if strings.HasPrefix(h.Holder, toComplete) {
				out = append(out, h.Holder)
			}
		}
		return out, err
	})
}
