package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/readiness"
)

func (a *app) readinessCmd() *cobra.Command {
	var o readiness.Options
	cmd := &cobra.Command{
		Use:   "readiness --context ACTIVE --context STANDBY",
		Short: "Compare the active and the standby cluster: what a failover would run into",
		Long: `Compares the active cluster (the first --context) with the standby (the
second) through the kubeconfig: the validators' sidecars (the active ones
leased, the standby ones running and not leased), key addresses, images,
chart values, Secrets, coordinators, etcd and clocks. It only reads.
docs/runbook.md's step 5 runs it before a failover, and the quarterly drill
daily. The result is recorded in the coordinator's history as an audit of
kind readiness (when a coordinator is reachable).

Exit codes: 0 OK, 1 warnings (read each), 2 critical (a failover would fail
or be unsafe now), 3 could not check (kubeconfig, context or access).`,
		Example: `  fencectl readiness --context region-a --context region-b --namespace validators
  fencectl readiness --context region-a --context region-b -o json > readiness.json; echo "exit $?"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Now = time.Now
			rep, err := a.Readiness(cmd.Context(), o)
			if err != nil {
				return &exitError{code: readiness.ExitNotChecked, err: fmt.Errorf("readiness: could not check: %w", err)}
			}
			if err := a.print(rep, rep.WriteTable); err != nil {
				return err
			}
			a.recordReadiness(cmd.Context(), rep)
			return exitWith(rep.ExitCode())
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Contexts, "context", nil, "kubeconfig context: give the active cluster's, then the standby's (required, twice)")
	f.StringVar(&o.Namespace, "namespace", readiness.DefaultNamespace, "namespace of the validator StatefulSets (in both clusters)")
	f.StringVar(&o.CoordinatorNamespace, "coordinator-namespace", readiness.DefaultCoordinatorNamespace, "namespace of fence-coordinator (in both clusters)")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig with both contexts (default $KUBECONFIG, then ~/.kube/config)")
	f.DurationVar(&o.SafetyMargin, "safety-margin", readiness.DefaultSafetyMargin, "clocks must agree within this (the sidecars' --safety-margin)")
	return cmd
}

// recordReadiness records rep as an audit of kind readiness: its critical
// findings count as the audit's duplicates, its summary is the detail.
func (a *app) recordReadiness(ctx context.Context, rep readiness.Report) {
	c, err := a.client()
	if err != nil {
		if a.coordinatorGiven() {
			fmt.Fprintf(a.Stderr, "fencectl: readiness result not recorded with the coordinator: %v\n", err)
		}
		return
	}
	a.record(ctx, c, api.AuditReport{Kind: "readiness", Duplicates: rep.Count(readiness.Critical), Detail: rep.Summary()})
}
