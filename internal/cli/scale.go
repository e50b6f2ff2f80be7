package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/flagenv"
	"github.com/validator-fencing/fencing/internal/kube"
)

// scaleOptions are bump's Kubernetes flags.
type scaleOptions struct {
	enabled     bool
	kubeconfig  string
	fromContext string
	toContext   string
	namespace   string
	statefulset string
	toNamespace string
	toSet       string
	replicas    int
}

func (s *scaleOptions) flags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&s.enabled, "scale", false, "scale the validator StatefulSets: old holder's to 0 before the grant, new holder's up after it")
	fs.StringVar(&s.kubeconfig, "kubeconfig", "", "with --scale: kubeconfig with both contexts (default $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&s.fromContext, "from-context", "", "with --scale: kubeconfig context of the old holder's cluster")
	fs.StringVar(&s.toContext, "to-context", "", "with --scale: kubeconfig context of the new holder's cluster")
	fs.StringVar(&s.namespace, "namespace", "", "with --scale: namespace of the validator StatefulSet (same in both clusters)")
	fs.StringVar(&s.statefulset, "statefulset", "", "with --scale: name of the validator StatefulSet (same in both clusters)")
	fs.StringVar(&s.toNamespace, "to-namespace", "", "with --scale: namespace of the new holder's StatefulSet (default: --namespace)")
	fs.StringVar(&s.toSet, "to-statefulset", "", "with --scale: name of the new holder's StatefulSet (default: --statefulset)")
	fs.IntVar(&s.replicas, "replicas", 0, "with --scale: replicas for the new holder's StatefulSet (default: what the old one had)")
}

func (s *scaleOptions) validate() error {
	if !s.enabled {
		if s.fromContext != "" || s.toContext != "" || s.statefulset != "" || s.namespace != "" {
			return usageError("--from-context, --to-context, --namespace and --statefulset need --scale")
		}
		return nil
	}
	var errs []error
	for _, f := range []struct{ name, v string }{{"--from-context", s.fromContext}, {"--to-context", s.toContext}, {"--namespace", s.namespace}, {"--statefulset", s.statefulset}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("--scale needs %s", f.name))
		}
	}
	if s.replicas < 0 {
		errs = append(errs, errors.New("--replicas must be >= 0"))
	}
	if s.toNamespace == "" {
		s.toNamespace = s.namespace
	}
	if s.toSet == "" {
		s.toSet = s.statefulset
	}
	if err := flagenv.Problems(errs); err != nil {
		return &exitError{code: ExitUsage, err: err}
	}
	return nil
}

// bumpWithScale: revoke every validator, scale the old StatefulSet to 0 (its
// sidecars release their leases as they stop), bump (drain and grant), then
// scale the new StatefulSet up. The revoke comes first so that nothing the
// old pods do while stopping can sign.
func (a *app) bumpWithScale(ctx context.Context, b *bumpRun, ids []fencing.ValidatorID, s *scaleOptions) error {
	fromCli, err := kube.ClientForContext(s.kubeconfig, s.fromContext)
	if err != nil {
		return apiError("scale", err)
	}
	toCli, err := kube.ClientForContext(s.kubeconfig, s.toContext)
	if err != nil {
		return apiError("scale", err)
	}
	for _, id := range ids {
		_, err := b.c.Freeze(ctx, id, api.FreezeRequest{ExpectedEpoch: b.req.ExpectedEpoch, Operator: b.req.Operator, Reason: b.req.Reason})
		if err != nil && fencing.CodeOf(err) != fencing.CodeConflict {
			return apiError("freeze "+string(id), err)
		}
		fmt.Fprintf(a.Stderr, "%s: revoke committed (or already revoked)\n", id)
	}
	prev, err := kube.ScaleStatefulSet(ctx, fromCli, s.namespace, s.statefulset, 0)
	if err != nil {
		return apiError("scale down "+s.fromContext+"/"+s.namespace+"/"+s.statefulset, err)
	}
	fmt.Fprintf(a.Stderr, "scaled %s/%s/%s from %d to 0 replicas\n", s.fromContext, s.namespace, s.statefulset, prev)
	b.req.ExpectedEpoch = 0 // the epoch was checked by the freeze above
	if err := b.all(ctx, ids); err != nil {
		fmt.Fprintf(a.Stderr, "not scaling up %s: the bump did not finish; re-run after fencectl status shows the new epoch active\n", s.toContext)
		return err
	}
	want := int32(s.replicas)
	if want == 0 {
		want = prev
	}
	was, err := kube.ScaleStatefulSet(ctx, toCli, s.toNamespace, s.toSet, want)
	if err != nil {
		return apiError("scale up "+s.toContext+"/"+s.toNamespace+"/"+s.toSet, err)
	}
	fmt.Fprintf(a.Stderr, "scaled %s/%s/%s from %d to %d replicas\n", s.toContext, s.toNamespace, s.toSet, was, want)
	return nil
}
