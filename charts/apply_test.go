package charts

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
// kube-apiserver with server-side apply and strict field validation (each
// object first as a dry run, then for real), and then uses what was applied
// the way the coordinator and fencectl will: the chart's ServiceAccount and
// RBAC review a sidecar's projected token (audience and bindings taken from
// the rendered Deployment and StatefulSet) and record an Event, the operator
// and viewer ClusterRoles answer the SubjectAccessReviews the coordinator
// asks, and the two regions' Besu StatefulSets are scaled as by fencectl bump
// --scale. Finally helm itself installs and upgrades the chart, to show that
// the generated CA and certificate are kept across upgrades.
//
// One API server stands in for the two clusters: region A's validators live
// in namespace validators, region B's in validators-b.
func TestAppliesToAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver; skipped with -short")
	}
	renderBesuBOther := renderBesuB
	renderBesuBOther.namespace = "validators-b"
	renderMinimalOther := renderMinimal
	renderMinimalOther.release, renderMinimalOther.namespace = "minimal", "fencing-min"
	renders := []render{renderMinimalOther, renderRegionA, renderAll, renderBesuA, renderBesuBOther}
	manifests := map[string][]object{}
	for _, r := range renders {
		manifests[r.name] = renderObjects(t, r) // before the API server: fails fast on helm errors
	}

	s := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a := newApplier(t, s.Config)
	for _, ns := range []string{"fencing", "fencing-all", "fencing-min", "fencing-helm", "validators", "validators-b", "monitoring"} {
		if _, err := s.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a.installCRDs(ctx, t, "monitoring.coreos.com", monitoringCRDs())
	a.installCRDs(ctx, t, "cert-manager.io", certManagerCRDs())

	for _, r := range renders {
		t.Run("apply "+r.name, func(t *testing.T) {
			for _, o := range manifests[r.name] {
				for _, dryRun := range []bool{true, false} {
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
			{authzv1.ResourceAttributes{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"}, true},
			{authzv1.ResourceAttributes{Namespace: "fencing", Group: "fencing.validator-fencing.io", Resource: "validators", Verb: "bump"}, false},
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

	// The SubjectAccessReviews the coordinator asks for operators (in its
	// namespace, --operator-namespace) against the chart's ClusterRoles, as
	// bound by operatorAuth.operators/viewers and the test ServiceAccount's
	// RoleBinding in the all-features release.
	t.Run("operator and viewer roles", func(t *testing.T) {
		type who struct {
			user   string
			groups []string
		}
		alice := who{"alice", []string{"system:authenticated"}}
		sre := who{"bob", []string{"sre", "system:authenticated"}}
		runner := who{"system:serviceaccount:ops:drill-runner", []string{"system:serviceaccounts", "system:serviceaccounts:ops", "system:authenticated"}}
		test := who{"system:serviceaccount:fencing-all:fencing-all-test", []string{"system:serviceaccounts", "system:serviceaccounts:fencing-all", "system:authenticated"}}
		stranger := who{"mallory", []string{"system:authenticated"}}
		const ns = "fencing-all"
		tests := []struct {
			who            who
			resource, verb string
			namespace      string
			want           bool
		}{
			{alice, "validators", "bump", ns, true},
			{alice, "validators", "freeze", ns, true},
			{alice, "validators", "unfreeze", ns, true},
			{alice, "validators", "abandon", ns, true},
			{alice, "validators", "create", ns, true},
			{alice, "validators", "delete", ns, true},
			{alice, "audits", "create", ns, true},
			{alice, "events", "list", ns, true},
			{alice, "validators", "bump", "fencing", false}, // another coordinator's namespace
			{runner, "validators", "freeze", ns, true},
			{sre, "validators", "get", ns, true},
			{sre, "validators", "list", ns, true},
			{sre, "events", "list", ns, true},
			{sre, "validators", "freeze", ns, false},
			{sre, "validators", "bump", ns, false},
			{sre, "validators", "create", ns, false},
			{sre, "audits", "create", ns, false},
			{test, "validators", "list", ns, true},
			{test, "validators", "bump", ns, false},
			{stranger, "validators", "get", ns, false},
		}
		for _, tt := range tests {
			name := fmt.Sprintf("%s %s %s in %s", tt.who.user, tt.verb, tt.resource, tt.namespace)
			t.Run(name, func(t *testing.T) {
				attr := authzv1.ResourceAttributes{Namespace: tt.namespace, Group: "fencing.validator-fencing.io", Resource: tt.resource, Verb: tt.verb}
				var sar *authzv1.SubjectAccessReview
				// RBAC reaches the authorizer's cache asynchronously: wait
				// for the allowed answers; the refusals are checked after.
				kubetest.Eventually(t, "SubjectAccessReview", 20*time.Second, func() error {
					var err error
					sar, err = s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
						User: tt.who.user, Groups: tt.who.groups, ResourceAttributes: &attr,
					}}, metav1.CreateOptions{})
					if err != nil {
						return err
					}
					if tt.want && !sar.Status.Allowed {
						return fmt.Errorf("not allowed yet: %s", sar.Status.Reason)
					}
					return nil
				})
				if sar.Status.Allowed != tt.want {
					t.Errorf("%s: allowed = %v, want %v (%s)", name, sar.Status.Allowed, tt.want, sar.Status.Reason)
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
		v := fencing.ValidatorID("0x5B38Da6a701c568545dCfcB03FcB875f56beddC4")
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
			l, err := s.Client.EventsV1().Events("fencing").List(ctx, metav1.ListOptions{LabelSelector: kube.LabelValidator + "=" + string(v)})
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
		code := cli.Main(ctx, []string{"bump", "val-1", "--to", "region-b", "--force", "--comment", "alice", "--reason", "drill",
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

	t.Run("helm install and upgrade keep the generated certificates", func(t *testing.T) {
		helmKeepsGeneratedCertificates(ctx, t, s, a)
	})
}

// helmKeepsGeneratedCertificates installs the chart with helm on the real
// API server and upgrades it: the CA and serving certificate the chart
// generated at install are looked up and kept; a new DNS name re-issues the
// serving certificate from the same CA and restarts the coordinator. helm
// template cannot look anything up and prints a new CA every time. With
// cert-manager's API served, certificate=auto issues a Certificate.
func helmKeepsGeneratedCertificates(ctx context.Context, t *testing.T, s *kubetest.APIServer, a *applier) {
	kc := s.Kubeconfig(t, "", "test")
	const ns = "fencing-helm"
	values := writeValues(t, map[string]any{
		"etcd": map[string]any{"endpoints": []string{"https://etcd-a:2379"}, "tls": map[string]any{"secretName": "etcd-client"}},
		"auth": map[string]any{"bindings": []any{map[string]any{"namespace": ns, "serviceAccount": "validator-1", "holder": "region-a", "validators": []string{"val-1"}}}},
	})
	release := func(verb, name string, set ...string) string {
		t.Helper()
		args := []string{verb, name, fencingChart, "--kubeconfig", kc, "--namespace", ns, "-f", values,
			"--set", "coordinator.tls.caBundle.configMapName=" + name + "-ca"}
		for _, v := range set {
			if strings.HasPrefix(v, "--") {
				args = append(args, v) // a flag, e.g. --dry-run=server
			} else {
				args = append(args, "--set", v)
			}
		}
		out, err := helm(t, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	secret := func(name, key string) []byte {
		t.Helper()
		sec, err := s.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sec.Data[key]
	}
	annotation := func() string {
		t.Helper()
		d, err := s.Client.AppsV1().Deployments(ns).Get(ctx, "keep-fencing", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations["checksum/tls-dns-names"]
	}

	notes := release("install", "keep", "coordinator.tls.certificate=generated")
	for _, want := range []string{
		"serving certificate: generated (Secret keep-fencing-tls)",
		"The CA was generated by this chart and is kept across upgrades (Secret keep-fencing-ca)",
		"fencectl --coordinator https://localhost:7600 --ca-file fencing-ca.crt --token-file fencing-token status",
		"helm test keep -n fencing-helm",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("helm install NOTES lack %q:\n%s", want, notes)
		}
	}
	ca, caKey, leaf, sum := secret("keep-fencing-ca", "tls.crt"), secret("keep-fencing-ca", "tls.key"), secret("keep-fencing-tls", "tls.crt"), annotation()
	cm, err := s.Client.CoreV1().ConfigMaps(ns).Get(ctx, "keep-ca", metav1.GetOptions{})
	if err != nil || strings.TrimSpace(cm.Data["ca.crt"]) != strings.TrimSpace(string(ca)) {
		t.Fatalf("CA bundle ConfigMap = %v, %v; want the generated CA", cm.Data, err)
	}

	release("upgrade", "keep", "coordinator.tls.certificate=generated")
	if !bytes.Equal(secret("keep-fencing-ca", "tls.crt"), ca) || !bytes.Equal(secret("keep-fencing-ca", "tls.key"), caKey) {
		t.Error("helm upgrade replaced the generated CA")
	}
	if !bytes.Equal(secret("keep-fencing-tls", "tls.crt"), leaf) {
		t.Error("helm upgrade replaced the serving certificate although its names did not change")
	}
	if annotation() != sum {
		t.Error("helm upgrade without changes restarts the coordinator")
	}

	release("upgrade", "keep", "coordinator.tls.certificate=generated", "coordinator.tls.extraDNSNames={fencing.region-a.example.com}")
	if !bytes.Equal(secret("keep-fencing-ca", "tls.crt"), ca) {
		t.Error("a new DNS name replaced the CA (every sidecar would need the new one)")
	}
	newLeaf := secret("keep-fencing-tls", "tls.crt")
	if bytes.Equal(newLeaf, leaf) {
		t.Error("a new DNS name did not re-issue the serving certificate")
	}
	caCert := parseCert(t, ca)
	if _, err := parseCert(t, newLeaf).Verify(x509.VerifyOptions{DNSName: "fencing.region-a.example.com", Roots: pool(caCert)}); err != nil {
		t.Errorf("re-issued certificate: %v", err)
	}
	if annotation() == sum {
		t.Error("the coordinator is not restarted to serve the re-issued certificate")
	}

	// helm template has no cluster to look the CA up in.
	var cas [][]byte
	for range 2 {
		out, err := helm(t, "template", "keep", fencingChart, "--namespace", ns, "-f", values, "--set", "coordinator.tls.certificate=generated")
		if err != nil {
			t.Fatal(err)
		}
		cas = append(cas, secretData(t, find(t, parseManifests(t, out), "Secret", "keep-fencing-ca"), "tls.crt"))
	}
	if bytes.Equal(cas[0], cas[1]) || bytes.Equal(cas[0], ca) {
		t.Error("helm template printed the same CA twice; docs/kubernetes.md says it cannot look it up")
	}

	// TLS off is never silent.
	notes = release("install", "off", "--dry-run=server", "coordinator.tls.enabled=false")
	if !strings.Contains(notes, "WARNING: coordinator.tls.enabled is false.") {
		t.Errorf("helm install with TLS off does not warn:\n%s", notes)
	}

	// certificate=auto with cert-manager's API served.
	release("install", "auto")
	if _, err := a.dyn.Resource(schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}).Namespace(ns).Get(ctx, "auto-fencing", metav1.GetOptions{}); err != nil {
		t.Errorf("certificate=auto with cert-manager.io/v1 served: no Certificate auto-fencing: %v", err)
	}
	if _, err := s.Client.CoreV1().Secrets(ns).Get(ctx, "auto-fencing-tls", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("with cert-manager the chart must leave the serving Secret to it: %v", err)
	}
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

// crd is a CustomResourceDefinition to install: its kind, plural and the
// schema of its spec.
type crd struct {
	kind, plural string
	spec         map[string]any
}

// Schema helpers for the CRDs below.
var (
	crdString  = map[string]any{"type": "string"}
	crdInt     = map[string]any{"type": "integer"}
	crdBool    = map[string]any{"type": "boolean"}
	crdStrMap  = map[string]any{"type": "object", "additionalProperties": crdString}
	crdStrList = map[string]any{"type": "array", "items": crdString}
)

func crdObj(props map[string]any) map[string]any {
	return map[string]any{"type": "object", "properties": props}
}

func crdList(items map[string]any) map[string]any {
	return map[string]any{"type": "array", "items": items}
}

// monitoringCRDs are the Prometheus Operator kinds the chart renders, with
// structural schemas that cover exactly the fields the chart uses (names as
// in the Prometheus Operator's monitoring.coreos.com/v1 CRDs), so strict
// validation rejects a misspelt field there too.
func monitoringCRDs() []crd {
	selector := crdObj(map[string]any{"matchLabels": crdStrMap, "matchExpressions": crdList(crdObj(map[string]any{"key": crdString, "operator": crdString, "values": crdStrList}))})
	nsSelector := crdObj(map[string]any{"any": crdBool, "matchNames": crdStrList})
	relabel := crdList(crdObj(map[string]any{"sourceLabels": crdStrList, "targetLabel": crdString, "regex": crdString, "replacement": crdString, "action": crdString, "separator": crdString}))
	keyRef := crdObj(map[string]any{"name": crdString, "key": crdString})
	tlsConfig := crdObj(map[string]any{"serverName": crdString, "ca": crdObj(map[string]any{"secret": keyRef, "configMap": keyRef}), "insecureSkipVerify": crdBool})
	endpoint := crdObj(map[string]any{"port": crdString, "path": crdString, "interval": crdString, "scheme": crdString, "tlsConfig": tlsConfig, "relabelings": relabel})
	rule := crdObj(map[string]any{
		"alert": crdString, "record": crdString, "for": crdString, "labels": crdStrMap, "annotations": crdStrMap,
		"expr": map[string]any{"x-kubernetes-int-or-string": true},
	})
	return []crd{
		{"ServiceMonitor", "servicemonitors", crdObj(map[string]any{"selector": selector, "namespaceSelector": nsSelector, "endpoints": crdList(endpoint)})},
		{"PodMonitor", "podmonitors", crdObj(map[string]any{"selector": selector, "namespaceSelector": nsSelector, "podMetricsEndpoints": crdList(endpoint)})},
		{"PrometheusRule", "prometheusrules", crdObj(map[string]any{"groups": crdList(crdObj(map[string]any{"name": crdString, "interval": crdString, "rules": crdList(rule)}))})},
	}
}

// certManagerCRDs are the cert-manager kinds the chart renders, with the
// fields it uses (names as in cert-manager's cert-manager.io/v1 CRDs).
func certManagerCRDs() []crd {
	issuerRef := crdObj(map[string]any{"name": crdString, "kind": crdString, "group": crdString})
	return []crd{
		{"Certificate", "certificates", crdObj(map[string]any{
			"secretName": crdString, "commonName": crdString, "dnsNames": crdStrList, "ipAddresses": crdStrList,
			"duration": crdString, "renewBefore": crdString, "usages": crdStrList, "issuerRef": issuerRef,
			"privateKey": crdObj(map[string]any{"algorithm": crdString, "size": crdInt, "rotationPolicy": crdString, "encoding": crdString}),
		})},
		{"Issuer", "issuers", crdObj(map[string]any{"ca": crdObj(map[string]any{"secretName": crdString}), "selfSigned": crdObj(map[string]any{})})},
	}
}

// installCRDs creates namespaced CRDs of group (version v1) and waits until
// the API server serves them.
func (a *applier) installCRDs(ctx context.Context, t *testing.T, group string, crds []crd) {
	t.Helper()
	crdRes := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, c := range crds {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1",
			"kind":       "CustomResourceDefinition",
			"metadata":   map[string]any{"name": c.plural + "." + group},
			"spec": map[string]any{
				"group": group,
				"scope": "Namespaced",
				"names": map[string]any{"kind": c.kind, "listKind": c.kind + "List", "plural": c.plural, "singular": strings.ToLower(c.kind)},
				"versions": []any{map[string]any{
					"name": "v1", "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": crdObj(map[string]any{
						"apiVersion": crdString, "kind": crdString, "metadata": map[string]any{"type": "object"}, "spec": c.spec,
					})},
				}},
			},
		}}
		if _, err := a.dyn.Resource(crdRes).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", c.kind, err)
		}
	}
	kubetest.Eventually(t, group+" CRDs served", 20*time.Second, func() error {
		a.mapper.Reset()
		for _, c := range crds {
			if _, err := a.mapper.RESTMapping(schema.GroupKind{Group: group, Kind: c.kind}, "v1"); err != nil {
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
