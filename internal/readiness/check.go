package readiness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/kube"
)

// Defaults of Options, as the chart and docs/kubernetes.md install them.
const (
	DefaultNamespace            = "validators"
	DefaultCoordinatorNamespace = "fencing"
	DefaultSafetyMargin         = 2 * time.Second
)

// EtcdSource answers GET /v1/etcd of one coordinator; *api.Client is one.
type EtcdSource interface {
	Etcd(ctx context.Context) (api.EtcdStatus, error)
}

var _ EtcdSource = (*api.Client)(nil)

// Options say what to check.
type Options struct {
	// Kubeconfig is the kubeconfig file; empty means $KUBECONFIG, then
	// ~/.kube/config.
	Kubeconfig string
	// Contexts are exactly two kubeconfig contexts: the active cluster,
	// then the standby.
	Contexts []string
	// Namespace of the validator StatefulSets; default "validators".
	Namespace string
	// CoordinatorNamespace is where fence-coordinator runs; default
	// "fencing".
	CoordinatorNamespace string
	// SafetyMargin: clocks must agree within it; default 2s.
	SafetyMargin time.Duration
	// Now is this machine's clock; default time.Now.
	Now func() time.Time
	// Coordinators, by context name, reach that cluster's coordinator
	// Service (fencectl's --coordinator client); the etcd check asks them
	// GET /v1/etcd. A context without one is reported as not checked. The
	// API server's service proxy is not used: it removes the caller's
	// bearer token, so the coordinator could not authenticate the operator.
	Coordinators map[string]EtcdSource
	// EtcdDomains maps etcd member names to failure domains (e.g.
	// "etcd-a": "region-a", "etcd-w": "witness"). Without a member's
	// domain the spread is checked on its peer URL's host, which can prove
	// a bad spread but not a good one (reported as a warning).
	EtcdDomains map[string]string
}

// Check compares the active and the standby cluster and reports what a
// failover would run into. It returns an error only when nothing could be
// checked: the options are wrong, the kubeconfig or a context cannot be
// loaded, or ctx ended. A cluster that does not answer is a critical
// finding, not an error.
func Check(ctx context.Context, o Options) (Report, error) {
	if err := o.validate(); err != nil {
		return Report{Contexts: o.Contexts}, err
	}
	o.defaults()
	clusters := make([]*cluster, len(o.Contexts))
	for i, name := range o.Contexts {
		c, err := kube.ClientForContext(o.Kubeconfig, name)
		if err != nil {
			return Report{Contexts: o.Contexts, At: o.Now()}, err
		}
		clusters[i] = newCluster(name, c, o.Now)
	}
	return run(ctx, o, clusters)
}

func (o *Options) validate() error {
	var errs []string
	if len(o.Contexts) != 2 {
		errs = append(errs, fmt.Sprintf("give exactly two contexts, the active cluster's and then the standby's (got %d: %q)", len(o.Contexts), o.Contexts))
	} else if o.Contexts[0] == o.Contexts[1] {
		errs = append(errs, fmt.Sprintf("the active and the standby context are both %q; name two different clusters", o.Contexts[0]))
	}
	for _, c := range o.Contexts {
		if strings.TrimSpace(c) == "" {
			errs = append(errs, "a context name is empty")
		}
	}
	if o.SafetyMargin < 0 {
		errs = append(errs, fmt.Sprintf("the safety margin (%v) must not be negative", o.SafetyMargin))
	}
	if len(errs) > 0 {
		return fencing.Errorf(fencing.CodeBadRequest, "readiness: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (o *Options) defaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.CoordinatorNamespace == "" {
		o.CoordinatorNamespace = DefaultCoordinatorNamespace
	}
	if o.SafetyMargin == 0 {
		o.SafetyMargin = DefaultSafetyMargin
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// cluster is one context's API server. probe and meta are the two reads
// that need the raw REST client (the Date header, metadata-only gets); the
// fake clientset has none, so unit tests set their own.
type cluster struct {
	name   string
	client kubernetes.Interface
	// probe asks the API server for /version and returns the clock sample
	// of its Date header; an error means the cluster cannot be checked.
	probe func(ctx context.Context) (clockSample, error)
	// meta gets the metadata of a Secret or ConfigMap ("secrets",
	// "configmaps") and never its data: Secrets hold keys.
	meta func(ctx context.Context, resource, namespace, name string) (*metav1.PartialObjectMetadata, error)
}

// newCluster wires probe and meta to client's REST client.
func newCluster(name string, client kubernetes.Interface, now func() time.Time) *cluster {
	c := &cluster{name: name, client: client}
	rc, _ := client.CoreV1().RESTClient().(*rest.RESTClient)
	if rc == nil || rc.Client == nil {
		noREST := fmt.Errorf("context %q has no REST client", name)
		c.probe = func(context.Context) (clockSample, error) { return clockSample{}, noREST }
		c.meta = func(context.Context, string, string, string) (*metav1.PartialObjectMetadata, error) {
			return nil, noREST
		}
		return c
	}
	c.probe = func(ctx context.Context) (clockSample, error) { return probeVersion(ctx, rc, now) }
	c.meta = func(ctx context.Context, resource, ns, n string) (*metav1.PartialObjectMetadata, error) {
		return metadataOnly(ctx, rc, resource, ns, n)
	}
	return c
}

// probeVersion GETs /version with the context's credentials and reads the
// Date header: the API server's clock, to the second, stamped between the
// local send and receive times.
func probeVersion(ctx context.Context, rc *rest.RESTClient, now func() time.Time) (clockSample, error) {
	u := rc.Get().AbsPath("/version").URL()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return clockSample{}, err
	}
	sent := now()
	resp, err := rc.Client.Do(req)
	received := now()
	if err != nil {
		return clockSample{}, fmt.Errorf("cannot reach the API server at %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return clockSample{}, fmt.Errorf("the API server at %s answered GET /version with %s; check the context's credentials", u.Host, resp.Status)
	}
	return dateSample(resp.Header.Get("Date"), sent, received), nil
}

// metadataOnly asks for the object as PartialObjectMetadata: the API server
// then sends no data, so no key material ever reaches this process.
func metadataOnly(ctx context.Context, rc *rest.RESTClient, resource, ns, name string) (*metav1.PartialObjectMetadata, error) {
	raw, err := rc.Get().Namespace(ns).Resource(resource).Name(name).
		SetHeader("Accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1").
		DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var m metav1.PartialObjectMetadata
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("metadata of %s %s/%s: %w", resource, ns, name, err)
	}
	if m.Kind != "PartialObjectMetadata" {
		return nil, fmt.Errorf("the API server answered %s %s/%s with a %q, not metadata only", resource, ns, name, m.Kind)
	}
	return &m, nil
}

// run checks clusters (active, standby) with defaulted o.
func run(ctx context.Context, o Options, clusters []*cluster) (Report, error) {
	r := &runner{o: o, rep: Report{Contexts: o.Contexts, At: o.Now()}}
	for i, c := range clusters {
		s := &state{cluster: c, active: i == 0, objects: map[objectRef]objectResult{}}
		r.states = append(r.states, s)
		sample, err := c.probe(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return Report{Contexts: o.Contexts, At: r.rep.At}, fmt.Errorf("readiness: %w", ctx.Err())
			}
			s.down = err
			r.add(Critical, CheckAPIServer, c.name, "api-server", fmt.Sprintf("cannot check this cluster: %v", err))
			continue
		}
		s.apiClock = &sample
		r.add(OK, CheckAPIServer, c.name, "api-server", "answered")
		s.load(ctx, o)
	}
	r.checkSidecars()
	r.checkKeyAddresses(ctx)
	r.checkImages()
	r.checkValues()
	r.checkSecrets(ctx)
	r.checkCoordinators(ctx)
	r.checkEtcd(ctx)
	r.checkClocks()
	if err := ctx.Err(); err != nil {
		return Report{Contexts: o.Contexts, At: r.rep.At}, fmt.Errorf("readiness: %w", err)
	}
	r.rep.Findings = sortFindings(r.rep.Findings)
	return r.rep, nil
}

// Check names, in the order of the report.
const (
	CheckAPIServer   = "api-server"
	CheckSidecar     = "sidecar"
	CheckKeyAddress  = "key-address"
	CheckImages      = "images"
	CheckValues      = "values"
	CheckSecrets     = "secrets"
	CheckCoordinator = "coordinator"
	CheckEtcd        = "etcd"
	CheckClock       = "clock"
)

var checkOrder = []string{CheckAPIServer, CheckSidecar, CheckKeyAddress, CheckImages, CheckValues, CheckSecrets, CheckCoordinator, CheckEtcd, CheckClock}

func sortFindings(fs []Finding) []Finding {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return slices.Index(checkOrder, a.Check) - slices.Index(checkOrder, b.Check)
	})
	return fs
}

// runner accumulates findings over the clusters' states.
type runner struct {
	o      Options
	rep    Report
	states []*state // active, standby
}

func (r *runner) add(sev Severity, check, cluster, subject, detail string) {
	r.rep.Findings = append(r.rep.Findings, Finding{Severity: sev, Check: check, Cluster: cluster, Subject: subject, Detail: detail})
}

// pair names a comparison of the two clusters.
func (r *runner) pair() string {
	return r.states[0].cluster.name + " vs " + r.states[1].cluster.name
}

// bothUp reports whether both clusters answered (comparisons need both).
func (r *runner) bothUp() bool { return r.states[0].down == nil && r.states[1].down == nil }

// role is "active" or "standby".
func (s *state) role() string {
	if s.active {
		return "active"
	}
	return "standby"
}

// readErr says why a read failed in words an operator acts on: forbidden
// names the missing permission, anything else is passed on.
func readErr(what string, err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("not checked: %s is forbidden to this kubeconfig user (RBAC; see docs/readiness.md for the permissions)", what)
	case apierrors.IsUnauthorized(err):
		return fmt.Sprintf("not checked: the API server did not accept this kubeconfig user's credentials for %s", what)
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return fmt.Sprintf("not checked: %s failed: %s", what, st.Status().Message)
	}
	return fmt.Sprintf("not checked: %s failed: %v", what, err)
}
