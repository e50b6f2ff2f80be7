package charts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"

	"github.com/validator-fencing/fencing/internal/cli"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/kube"
	"github.com/validator-fencing/fencing/internal/kubetest"
)

// TestAppliesToAPIServer applies the rendered charts to a real
// kube-apiserver with server-side apply and strict field validation (first as
// a dry run, then for real), and then uses what was applied the way the
// coordinator and fencectl will: the chart's ServiceAccount and RBAC review a
// sidecar's projected token (audience and bindings taken from the rendered
// Deployment and StatefulSet) and record an Event, and the two regions' Besu
// StatefulSets are scaled as by fencectl bump --scale.
//
// One API server stands in for the two clusters: region A's validators live
// in namespace validators, region B's in validators-b.
func TestAppliesToAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver; skipped with -short")
	}
	renderBesuBOther := renderBesuB
	renderBesuBOther.namespace = "validators-b"
	renders := []render{renderRegionA, renderAll, renderBesuA, renderBesuBOther}
	manifests := map[string][]object{}
	for _, r := range renders {
		manifests[r.name] = renderObjects(t, r) // before the API server: fails fast on helm errors
	}

	s := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := newApplier(t, s.Config)
	for _, ns := range []string{"fencing", "fencing-all", "validators", "validators-b"} {
		if _, err := s.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a.installMonitoringCRDs(ctx, t)

	for _, r := range renders {
		t.Run("apply "+r.name, func(t *testing.T) {
			for _, dryRun := range []bool{true, false} {
				for _, o := range manifests[r.name] {
					if err := a.apply(ctx, o, dryRun); err != nil {
						t.Errorf("apply (dry run %v) %v from %s: %v", dryRun, o, o.source, err)
					}
				}
			}
		})
	}
	if t.Failed() {
		t.FailNow()
	}
	// The validation above can fail: a misspelt field in a core kind and in a
	// monitoring kind is refused.
	t.Run("strict validation rejects unknown fields", func(t *testing.T) {
		tests := []struct {
			kind  string
			path  []string
			field string
		}{
			{"Deployment", []string{"spec", "template", "spec"}, "serviceAcountName"},
			{"PrometheusRule", []string{"spec"}, "group"},
			{"NetworkPolicy", []string{"spec"}, "egres"},
		}
		for _, tt := range tests {
			t.Run(tt.kind, func(t *testing.T) {
				o := find(t, manifests[renderAll.name], tt.kind, "")
				broken := object{o.DeepCopy(), o.source}
				if err := unstructured.SetNestedField(broken.Object, "x", append(tt.path, tt.field)...); err != nil {
					t.Fatal(err)
				}
				err := a.apply(ctx, broken, true)
				if err == nil || !strings.Contains(err.Error(), tt.field) {
					t.Errorf("apply with %s.%s = %v, want an unknown-field error", strings.Join(tt.path, "."), tt.field, err)
				}
			})
		}
	})

	coordinatorSA := "system:serviceaccount:fencing:fencing"
	t.Run("RBAC is least privilege", func(t *testing.T) {
		tests := []struct {
			attr authzv1.ResourceAttributes
			want bool
		}{
			{authzv1.ResourceAttributes{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"}, true},
			{authzv1.ResourceAttributes{Namespace: "fencing", Group: "events.k8s.io", Resource: "events", Verb: "create"}, true},
			{authzv1.ResourceAttributes{Namespace: "fencing", Group: "events.k8s.io", Resource: "events", Verb: "update"}, false},
			{authzv1.ResourceAttributes{Namespace: "validators", Group: "events.k8s.io", Resource: "events", Verb: "create"}, false},
			{authzv1.ResourceAttributes{Namespace: "fencing", Resource: "events", Verb: "create"}, false},
			{authzv1.ResourceAttributes{Namespace: "fencing", Resource: "secrets", Verb: "get"}, false},
			{authzv1.ResourceAttributes{Namespace: "fencing", Resource: "pods", Verb: "list"}, false},
			{authzv1.ResourceAttributes{Namespace: "fencing", Resource: "serviceaccounts", Subresource: "token", Verb: "create"}, false},
			{authzv1.ResourceAttributes{Namespace: "validators", Group: "apps", Resource: "statefulsets", Subresource: "scale", Verb: "update"}, false},
			{authzv1.ResourceAttributes{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"}, false},
		}
		for _, tt := range tests {
			name := fmt.Sprintf("%s %s/%s/%s in %q", tt.attr.Verb, tt.attr.Group, tt.attr.Resource, tt.attr.Subresource, tt.attr.Namespace)
			t.Run(name, func(t *testing.T) {
				attr := tt.attr
				sar, err := s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
					User: coordinatorSA, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:fencing", "system:authenticated"}, ResourceAttributes: &attr,
				}}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if sar.Status.Allowed != tt.want {
					t.Errorf("%s may %s: allowed = %v, want %v (%s)", coordinatorSA, name, sar.Status.Allowed, tt.want, sar.Status.Reason)
				}
			})
		}
	})

	// What the chart rendered: the coordinator's audience and bindings, the
	// sidecar's token audience and ServiceAccount.
	deploy := find(t, manifests[renderRegionA.name], "Deployment", "fencing")
	flags := map[string]string{}
	for _, arg := range stringSlice(container(t, deploy, "fence-coordinator"), "args") {
		k, v, _ := strings.Cut(arg, "=")
		flags[k] = v
	}
	bindings, err := kube.ParseBindings(flags["--auth-bindings"])
	if err != nil {
		t.Fatalf("the chart's --auth-bindings do not parse: %v", err)
	}
	sts := find(t, manifests[renderBesuA.name], "StatefulSet", "besu-validator-1")
	srcs, _, _ := unstructured.NestedSlice(volume(t, sts, "fencing-token"), "projected", "sources")
	sidecarAudience, _, _ := unstructured.NestedString(srcs[0].(map[string]any), "serviceAccountToken", "audience")
	sidecarSA, _, _ := unstructured.NestedString(sts.Object, "spec", "template", "spec", "serviceAccountName")

	coordinator := clientFor(t, s.ServiceAccountConfig("fencing", "fencing"))

	t.Run("sidecar token review with the chart's RBAC and bindings", func(t *testing.T) {
		auth := kube.NewTokenReviewAuthenticator(coordinator, flags["--auth-audience"], bindings, kube.WithCacheTTL(0))
		tests := []struct {
			name      string
			namespace string
			sa        string
			audience  string
			wantCode  fencing.Code
			wantHold  string
		}{
			// What the kubelet projects into the region A validator Pod.
			{name: "region A validator", namespace: "validators", sa: sidecarSA, audience: sidecarAudience, wantHold: "region-a"},
			// Region B's validator (same names, another cluster) is not bound here.
			{name: "region B validator", namespace: "validators-b", sa: sidecarSA, audience: sidecarAudience, wantCode: fencing.CodeForbidden},
			// The coordinator's own ServiceAccount is not a sidecar.
			{name: "coordinator ServiceAccount", namespace: "fencing", sa: "fencing", audience: sidecarAudience, wantCode: fencing.CodeForbidden},
			// A token for the Kubernetes API is not a fencing token.
			{name: "API audience", namespace: "validators", sa: sidecarSA, audience: kubetest.Issuer, wantCode: fencing.CodeUnauthorized},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tok := kubetest.Token(ctx, t, s.Client, tt.namespace, tt.sa, tt.audience, true)
				var id fencing.Identity
				var err error
				// RBAC reaches the authorizer's cache asynchronously.
				kubetest.Eventually(t, "TokenReview allowed", 20*time.Second, func() error {
					id, err = auth.Authenticate(ctx, tok)
					if fencing.CodeOf(err) == fencing.CodeUnavailable {
						return err
					}
					return nil
				})
				if tt.wantCode != "" {
					if fencing.CodeOf(err) != tt.wantCode {
						t.Errorf("Authenticate(%s/%s token for %q) = %+v, %v; want %s", tt.namespace, tt.sa, tt.audience, id, err, tt.wantCode)
					}
					return
				}
				if err != nil || id.Holder != tt.wantHold {
					t.Fatalf("Authenticate(%s/%s token for %q) = %+v, %v; want holder %s", tt.namespace, tt.sa, tt.audience, id, err, tt.wantHold)
				}
				if err := id.Permits("region-a", tt.sa+"-0", "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"); err != nil {
					t.Errorf("identity %+v does not permit its validator: %v", id, err)
				}
				if err := id.Permits("region-b", tt.sa+"-0", "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"); err == nil {
					t.Errorf("identity %+v permits region-b", id)
				}
			})
		}
	})

	t.Run("epoch transitions leave Events", func(t *testing.T) {
		rec := kube.NewEventRecorder(coordinator, "fencing", kube.WithRegarding(kube.ObjectRef{APIVersion: "v1", Kind: "Pod", Name: "fencing-6b7c9-qx2lp"}))
		from := fencing.Epoch{Epoch: 1, State: fencing.StateActive, Holder: "region-a"}
		revoking := from
		revoking.State, revoking.By, revoking.Reason = fencing.StateRevoking, "alice", "drill"
		fenced := revoking
		fenced.State = fencing.StateFenced
		granted := fencing.Epoch{Epoch: 2, State: fencing.StateActive, Holder: "region-b", By: "alice", Reason: "drill"}
		v := "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
		for _, ev := range []fencing.Event{
			{Kind: fencing.EventFreeze, Validator: v, From: &from, To: &revoking},
			{Kind: fencing.EventFenced, Validator: v, From: &revoking, To: &fenced},
			{Kind: fencing.EventGrant, Validator: v, From: &fenced, To: &granted},
		} {
			rec.Record(ctx, ev)
		}
		// RBAC may not have reached the authorizer when the first create
		// runs; record again until all three kinds are there.
		kubetest.Eventually(t, "three Events", 20*time.Second, func() error {
			l, err := s.Client.EventsV1().Events("fencing").List(ctx, metav1.ListOptions{LabelSelector: kube.LabelValidator + "=" + v})
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, e := range l.Items {
				seen[e.Reason] = true
			}
			if len(seen) == 3 {
				return nil
			}
			rec.Record(ctx, fencing.Event{Kind: fencing.EventGrant, Validator: v, From: &fenced, To: &granted})
			return fmt.Errorf("event reasons %v, want revoke_committed, fenced, grant_committed", seen)
		})
		rec.Close(ctx)
	})

	// The real fencectl bump --scale against a real coordinator: revoke, the
	// old holder's StatefulSet to 0, drain and grant, the new one back up.
	t.Run("fencectl bump --scale", func(t *testing.T) {
		c := fencetest.Start(t, fencetest.Options{})
		c.AddValidator(t, "val-1", "region-a")
		kc := s.Kubeconfig(t, "", "region-a", "region-b")
		var out, errOut bytes.Buffer
		code := cli.Main(ctx, []string{"bump", "val-1", "--to", "region-b", "--operator", "alice", "--reason", "drill",
			"--scale", "--kubeconfig", kc, "--from-context", "region-a", "--to-context", "region-b",
			"--namespace", "validators", "--statefulset", "besu-validator-1", "--to-namespace", "validators-b"},
			&out, &errOut, func(k string) string {
				if k == "FENCE_COORDINATOR" {
					return c.URL
				}
				return ""
			})
		if code != cli.ExitOK || !strings.Contains(out.String(), "grant_committed") {
			t.Fatalf("fencectl bump --scale = exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
		}
		for _, want := range []string{"scaled region-a/validators/besu-validator-1 from 1 to 0", "scaled region-b/validators-b/besu-validator-1 from 0 to 1"} {
			if !strings.Contains(errOut.String(), want) {
				t.Errorf("fencectl bump --scale did not report %q:\n%s", want, errOut.String())
			}
		}
		for ns, want := range map[string]int32{"validators": 0, "validators-b": 1} {
			got, err := s.Client.AppsV1().StatefulSets(ns).Get(ctx, "besu-validator-1", metav1.GetOptions{})
			if err != nil || *got.Spec.Replicas != want {
				t.Errorf("%s/besu-validator-1 replicas = %v, %v; want %d", ns, got.Spec.Replicas, err, want)
			}
		}
		st, err := c.Client.Status(ctx, "val-1")
		if err != nil || st.Epoch.Epoch != 2 || st.Epoch.Holder != "region-b" {
			t.Fatalf("val-1 after bump --scale = %+v, %v; want epoch 2 on region-b", st.Epoch, err)
		}
	})
}

// applier does server-side apply of unstructured objects.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}
}

// apply server-side applies o with strict field validation, so an unknown or
// misspelt field is an error rather than silently dropped.
func (a *applier) apply(ctx context.Context, o object, dryRun bool) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	data, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: "fencing-chart-test", FieldValidation: "Strict", Force: ptr.To(true)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts)
	return err
}

// installMonitoringCRDs installs the Prometheus Operator kinds the chart
// renders, with structural schemas that cover exactly the fields the chart
// uses (names as in the Prometheus Operator's monitoring.coreos.com/v1 CRDs),
// so strict validation rejects a misspelt field there too.
func (a *applier) installMonitoringCRDs(ctx context.Context, t *testing.T) {
	t.Helper()
	str := map[string]any{"type": "string"}
	strMap := map[string]any{"type": "object", "additionalProperties": str}
	strList := map[string]any{"type": "array", "items": str}
	obj := func(props map[string]any) map[string]any {
		return map[string]any{"type": "object", "properties": props}
	}
	list := func(items map[string]any) map[string]any { return map[string]any{"type": "array", "items": items} }
	selector := obj(map[string]any{"matchLabels": strMap, "matchExpressions": list(obj(map[string]any{"key": str, "operator": str, "values": strList}))})
	nsSelector := obj(map[string]any{"any": map[string]any{"type": "boolean"}, "matchNames": strList})
	relabel := list(obj(map[string]any{"sourceLabels": strList, "targetLabel": str, "regex": str, "replacement": str, "action": str, "separator": str}))
	secretKey := obj(map[string]any{"secret": obj(map[string]any{"name": str, "key": str})})
	tlsConfig := obj(map[string]any{"serverName": str, "ca": secretKey, "insecureSkipVerify": map[string]any{"type": "boolean"}})
	endpoint := obj(map[string]any{"port": str, "path": str, "interval": str, "scheme": str, "tlsConfig": tlsConfig, "relabelings": relabel})
	rule := obj(map[string]any{
		"alert": str, "record": str, "for": str, "labels": strMap, "annotations": strMap,
		"expr": map[string]any{"x-kubernetes-int-or-string": true},
	})
	crds := []struct {
		kind, plural string
		spec         map[string]any
	}{
		{"ServiceMonitor", "servicemonitors", obj(map[string]any{"selector": selector, "namespaceSelector": nsSelector, "endpoints": list(endpoint)})},
		{"PodMonitor", "podmonitors", obj(map[string]any{"selector": selector, "namespaceSelector": nsSelector, "podMetricsEndpoints": list(endpoint)})},
		{"PrometheusRule", "prometheusrules", obj(map[string]any{"groups": list(obj(map[string]any{"name": str, "interval": str, "rules": list(rule)}))})},
	}
	crdRes := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, c := range crds {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1",
			"kind":       "CustomResourceDefinition",
			"metadata":   map[string]any{"name": c.plural + ".monitoring.coreos.com"},
			"spec": map[string]any{
				"group": "monitoring.coreos.com",
				"scope": "Namespaced",
				"names": map[string]any{"kind": c.kind, "listKind": c.kind + "List", "plural": c.plural, "singular": strings.ToLower(c.kind)},
				"versions": []any{map[string]any{
					"name": "v1", "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": obj(map[string]any{
						"apiVersion": str, "kind": str, "metadata": map[string]any{"type": "object"}, "spec": c.spec,
					})},
				}},
			},
		}}
		if _, err := a.dyn.Resource(crdRes).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", c.kind, err)
		}
	}
	kubetest.Eventually(t, "monitoring CRDs served", 20*time.Second, func() error {
		a.mapper.Reset()
		for _, c := range crds {
			if _, err := a.mapper.RESTMapping(schema.GroupKind{Group: "monitoring.coreos.com", Kind: c.kind}, "v1"); err != nil {
				return err
			}
		}
		return nil
	})
}

func clientFor(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
