package cli

import (
	"errors"
	"flag"
	"fmt"

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

func (s *scaleOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&s.enabled, "scale", false, "scale the validator StatefulSets: old holder's to 0 before the grant, new holder's up after it")
	fs.StringVar(&s.kubeconfig, "kubeconfig", "", "kubeconfig with both contexts (default $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&s.fromContext, "from-context", "", "kubeconfig context of the old holder's cluster")
	fs.StringVar(&s.toContext, "to-context", "", "kubeconfig context of the new holder's cluster")
	fs.StringVar(&s.namespace, "namespace", "", "namespace of the validator StatefulSet (same in both clusters)")
	fs.StringVar(&s.statefulset, "statefulset", "", "name of the validator StatefulSet (same in both clusters)")
	fs.StringVar(&s.toNamespace, "to-namespace", "", "namespace of the new holder's StatefulSet (default: --namespace)")
	fs.StringVar(&s.toSet, "to-statefulset", "", "name of the new holder's StatefulSet (default: --statefulset)")
	fs.IntVar(&s.replicas, "replicas", 0, "replicas for the new holder's StatefulSet (default: what the old one had)")
}

func (s *scaleOptions) validate() error {
	if !s.enabled {
		if s.fromContext != "" || s.toContext != "" || s.statefulset != "" {
			return errors.New("--from-context, --to-context and --statefulset need --scale")
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
	return flagenv.Problems(errs)
}

// bumpWithScale: revoke every validator, scale the old StatefulSet to 0 (its
// sidecars release their leases as they stop), bump (drain and grant), then
// scale the new StatefulSet up. The revoke comes first so that nothing the
// old pods do while stopping can sign.
func (e *env) bumpWithScale(c *api.Client, ids []fencing.ValidatorID, req api.BumpRequest, s *scaleOptions) int {
	fromCli, err := kube.ClientForContext(s.kubeconfig, s.fromContext)
	if err != nil {
		return e.fail("scale", err)
	}
	toCli, err := kube.ClientForContext(s.kubeconfig, s.toContext)
	if err != nil {
		return e.fail("scale", err)
	}
	for _, id := range ids {
		_, err := c.Freeze(e.ctx, id, api.FreezeRequest{ExpectedEpoch: req.ExpectedEpoch, Operator: req.Operator, Reason: req.Reason})
		if err != nil && fencing.CodeOf(err) != fencing.CodeConflict {
			return e.fail("freeze "+string(id), err)
		}
		fmt.Fprintf(e.stderr, "%s: revoke committed (or already revoked)\n", id)
	}
	prev, err := kube.ScaleStatefulSet(e.ctx, fromCli, s.namespace, s.statefulset, 0)
	if err != nil {
		return e.fail("scale down "+s.fromContext+"/"+s.namespace+"/"+s.statefulset, err)
	}
	fmt.Fprintf(e.stderr, "scaled %s/%s/%s from %d to 0 replicas\n", s.fromContext, s.namespace, s.statefulset, prev)
	req.ExpectedEpoch = 0 // the epoch was checked by the freeze above
	code := e.bumpAll(c, ids, req)
	if code != ExitOK {
		fmt.Fprintf(e.stderr, "not scaling up %s: the bump did not finish; re-run after fencectl status shows the new epoch active\n", s.toContext)
		return code
	}
	want := int32(s.replicas)
	if want == 0 {
		want = prev
	}
	was, err := kube.ScaleStatefulSet(e.ctx, toCli, s.toNamespace, s.toSet, want)
	if err != nil {
		return e.fail("scale up "+s.toContext+"/"+s.toNamespace+"/"+s.toSet, err)
	}
	fmt.Fprintf(e.stderr, "scaled %s/%s/%s from %d to %d replicas\n", s.toContext, s.toNamespace, s.toSet, was, want)
	return ExitOK
}
