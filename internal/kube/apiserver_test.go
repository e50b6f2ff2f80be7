package kube_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/kube"
	"github.com/validator-fencing/fencing/internal/kubetest"
)

const (
	audience  = "fencing-coordinator"
	validator = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
)

// TestAgainstAPIServer runs the package's Kubernetes calls against a real
// kube-apiserver with RBAC: TokenReview round trips with real ServiceAccount
// tokens, Events, and StatefulSet scaling through kubeconfig contexts.
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver; skipped with -short")
	}
	s := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := s.Client

	for _, ns := range []string{"fencing", "validators"} {
		mustCreate(t, errOf(admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})))
	}
	for _, sa := range []struct{ ns, name string }{{"fencing", "fence-coordinator"}, {"validators", "besu-validator-1"}, {"validators", "besu-validator-2"}} {
		mustCreate(t, errOf(admin.CoreV1().ServiceAccounts(sa.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa.name}}, metav1.CreateOptions{})))
	}
	// The coordinator talks to the API server as its own ServiceAccount, so
	// RBAC decides what it may do, as in a cluster.
	coordinator := clientFor(t, s.ServiceAccountConfig("fencing", "fence-coordinator"))

	t.Run("TokenReview", func(t *testing.T) {
		bindings, err := kube.ParseBindings("validators/besu-validator-1=region-a:" + strings.ToLower(validator))
		if err != nil {
			t.Fatal(err)
		}
		a := kube.NewTokenReviewAuthenticator(coordinator, audience, bindings, kube.WithCacheTTL(0))
		token1 := kubetest.Token(ctx, t, admin, "validators", "besu-validator-1", audience, true)

		// Without RBAC the coordinator may not review tokens: unavailable,
		// and the message says why.
		_, err = a.Authenticate(ctx, token1)
		if fencing.CodeOf(err) != fencing.CodeUnavailable || !strings.Contains(err.Error(), "forbidden by the API server (RBAC)") {
			t.Fatalf("Authenticate() without RBAC = %v, want unavailable naming RBAC", err)
		}

		grantClusterRole(ctx, t, admin, "fencing-tokenreview", "fencing", "fence-coordinator",
			rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}})
		kubetest.Eventually(t, "RBAC for tokenreviews", 15*time.Second, func() error { _, err := a.Authenticate(ctx, token1); return err })

		tests := []struct {
			name     string
			token    string
			want     fencing.Identity
			wantCode fencing.Code
			wantMsg  string
		}{
			{name: "bound ServiceAccount", token: token1,
				want: fencing.Identity{Subject: "system:serviceaccount:validators:besu-validator-1", Holder: "region-a", Sidecar: "besu-validator-1-0", Validators: []fencing.ValidatorID{validator}}},
			{name: "token not bound to a pod", token: kubetest.Token(ctx, t, admin, "validators", "besu-validator-1", audience, false),
				wantCode: fencing.CodeForbidden, wantMsg: "is not bound to a pod"},
			{name: "another ServiceAccount", token: kubetest.Token(ctx, t, admin, "validators", "besu-validator-2", audience, true),
				wantCode: fencing.CodeForbidden, wantMsg: "ServiceAccount validators/besu-validator-2 is authenticated but not bound to a holder"},
			{name: "wrong audience", token: kubetest.Token(ctx, t, admin, "validators", "besu-validator-1", "some-other-service", true),
				wantCode: fencing.CodeUnauthorized, wantMsg: `wrong audience: the token was issued for ["some-other-service"], the coordinator accepts only "fencing-coordinator"`},
			{name: "API audience", token: kubetest.Token(ctx, t, admin, "validators", "besu-validator-1", "", true),
				wantCode: fencing.CodeUnauthorized, wantMsg: "wrong audience"},
			{name: "forged token", token: token1[:len(token1)-4] + "AAAA",
				wantCode: fencing.CodeUnauthorized, wantMsg: "the API server did not authenticate the token"},
			{name: "no token", token: "", wantCode: fencing.CodeUnauthorized, wantMsg: "no bearer token"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := a.Authenticate(ctx, tt.token)
				if tt.wantCode == "" {
					if err != nil {
						t.Fatalf("Authenticate() error = %v", err)
					}
					if got.Subject != tt.want.Subject || got.Holder != tt.want.Holder || got.Sidecar != tt.want.Sidecar || !slices.Equal(got.Validators, tt.want.Validators) {
						t.Errorf("Authenticate() = %+v, want %+v", got, tt.want)
					}
					if err := got.Permits("region-a", tt.want.Sidecar, validator); err != nil {
						t.Errorf("identity does not permit its own validator: %v", err)
					}
					return
				}
				if fencing.CodeOf(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("Authenticate() = %+v, %v; want %s containing %q", got, err, tt.wantCode, tt.wantMsg)
				}
			})
		}

		// A token whose ServiceAccount was deleted is refused (after the
		// cache, which is off here).
		token2 := kubetest.Token(ctx, t, admin, "validators", "besu-validator-2", audience, true)
		if err := admin.CoreV1().ServiceAccounts("validators").Delete(ctx, "besu-validator-2", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		kubetest.Eventually(t, "deleted ServiceAccount refused", 15*time.Second, func() error {
			if _, err := a.Authenticate(ctx, token2); fencing.CodeOf(err) != fencing.CodeUnauthorized {
				return err
			}
			return nil
		})
	})

	t.Run("OperatorRBAC", func(t *testing.T) {
		ops := kube.NewOperatorAuthorizer(coordinator, "fencing", nil)
		mustCreate(t, errOf(admin.CoreV1().ServiceAccounts("fencing").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "alice"}}, metav1.CreateOptions{})))
		alice := kubetest.Token(ctx, t, admin, "fencing", "alice", "", false)

		grantClusterRole(ctx, t, admin, "fencing-review-operators", "fencing", "fence-coordinator",
			rbacv1.PolicyRule{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}})
		// Until RBAC lets the coordinator ask, and then until a Role lets
		// alice bump, she is refused; the refusal names the rule to add.
		kubetest.Eventually(t, "coordinator may review operators", 20*time.Second, func() error {
			_, err := ops.Authorize(ctx, alice, "bump", "validators", validator)
			if fencing.CodeOf(err) == fencing.CodeForbidden && strings.Contains(err.Error(), "verbs [bump]") {
				return nil
			}
			return fmt.Errorf("Authorize = %v, want forbidden naming the rule", err)
		})
		grantRole(ctx, t, admin, "fencing", "fencing-bumper", "alice",
			rbacv1.PolicyRule{APIGroups: []string{kube.OperatorAPIGroup}, Resources: []string{"validators"}, Verbs: []string{"bump", "get", "list"}})
		kubetest.Eventually(t, "alice may bump", 20*time.Second, func() error {
			_, err := ops.Authorize(ctx, alice, "bump", "validators", validator)
			return err
		})
		if p, err := ops.Authorize(ctx, alice, "bump", "validators", validator); err != nil || p != "system:serviceaccount:fencing:alice" {
			t.Fatalf("Authorize(bump) = %q, %v; want alice's user name", p, err)
		}
		for _, tc := range []struct{ verb, resource string }{{"freeze", "validators"}, {"create", "audits"}, {"delete", "validators"}} {
			if _, err := ops.Authorize(ctx, alice, tc.verb, tc.resource, validator); fencing.CodeOf(err) != fencing.CodeForbidden {
				t.Errorf("Authorize(%s %s) = %v, want forbidden", tc.verb, tc.resource, err)
			}
		}
		if _, err := ops.Authorize(ctx, alice[:len(alice)-4]+"AAAA", "bump", "validators", validator); fencing.CodeOf(err) != fencing.CodeUnauthorized {
			t.Errorf("Authorize(forged token) = %v, want unauthorized", err)
		}
	})

	t.Run("Events", func(t *testing.T) {
		pod := kube.ObjectRef{APIVersion: "v1", Kind: "Pod", Name: "fence-coordinator-5d8f7-x2k9p", UID: "2d4c6a1e-0000-4000-8000-000000000001"}

		// Without RBAC the Event is refused; Record logs and does not block.
		denied := kube.NewEventRecorder(coordinator, "fencing", kube.WithRegarding(pod))
		denied.Record(ctx, grant())
		denied.Close(ctx)

		grantRole(ctx, t, admin, "fencing", "fencing-events", "fence-coordinator",
			rbacv1.PolicyRule{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create"}})
		kubetest.Eventually(t, "RBAC for events", 15*time.Second, func() error {
			_, err := coordinator.EventsV1().Events("fencing").Create(ctx, probeEvent(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		})

		r := kube.NewEventRecorder(coordinator, "fencing", kube.WithRegarding(pod))
		r.Record(ctx, grant())
		r.Close(ctx)

		sel := kube.LabelValidator + "=" + validator
		var list []string
		kubetest.Eventually(t, "the grant Event", 15*time.Second, func() error {
			l, err := admin.EventsV1().Events("fencing").List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				return err
			}
			list = list[:0]
			for _, e := range l.Items {
				list = append(list, e.Reason+"|"+e.Action+"|"+e.Type+"|"+e.Regarding.Name+"|"+e.Note)
			}
			if len(l.Items) != 1 {
				return fmt.Errorf("%d events with %s, want 1 (the one without RBAC must not exist): %q", len(l.Items), sel, list)
			}
			return nil
		})
		want := "grant_committed|Grant|Normal|" + pod.Name + "|validator " + validator +
			": epoch 3 fenced on region-a -> epoch 4 active on region-b; by alice: region A lost (bump b-1)"
		if list[0] != want {
			t.Errorf("event = %q, want %q", list[0], want)
		}
		// kubectl get events (core/v1) shows the same Event.
		core, err := admin.CoreV1().Events("fencing").List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil || len(core.Items) != 1 || core.Items[0].Reason != "grant_committed" || core.Items[0].InvolvedObject.UID != "2d4c6a1e-0000-4000-8000-000000000001" {
			t.Errorf("core/v1 events = %+v, %v; want the grant on the Pod", core, err)
		}
	})

	t.Run("ScaleStatefulSet", func(t *testing.T) {
		for _, name := range []string{"besu-a", "besu-b"} {
			mustCreate(t, errOf(admin.AppsV1().StatefulSets("validators").Create(ctx, statefulSet(name, map[string]int32{"besu-a": 1, "besu-b": 0}[name]), metav1.CreateOptions{})))
		}
		kc := s.Kubeconfig(t, "validators", "region-a", "region-b")
		from, err := kube.ClientForContext(kc, "region-a")
		if err != nil {
			t.Fatal(err)
		}
		to, err := kube.ClientForContext(kc, "region-b")
		if err != nil {
			t.Fatal(err)
		}
		// fencectl bump --scale: the old holder to zero before the grant, the
		// new one up after it.
		steps := []struct {
			client       kubernetes.Interface
			name         string
			replicas     int32
			wantPrevious int32
		}{
			{from, "besu-a", 0, 1},
			{to, "besu-b", 1, 0},
			{to, "besu-b", 1, 1}, // idempotent on resume
		}
		for _, st := range steps {
			prev, err := kube.ScaleStatefulSet(ctx, st.client, "validators", st.name, st.replicas)
			if err != nil || prev != st.wantPrevious {
				t.Fatalf("ScaleStatefulSet(%s, %d) = %d, %v; want %d", st.name, st.replicas, prev, err, st.wantPrevious)
			}
			got, err := admin.AppsV1().StatefulSets("validators").Get(ctx, st.name, metav1.GetOptions{})
			if err != nil || *got.Spec.Replicas != st.replicas {
				t.Fatalf("after ScaleStatefulSet(%s, %d): spec.replicas = %v, %v", st.name, st.replicas, got.Spec.Replicas, err)
			}
		}

		if _, err := kube.ScaleStatefulSet(ctx, from, "validators", "missing", 0); fencing.CodeOf(err) != fencing.CodeNotFound ||
			!strings.Contains(err.Error(), `scale statefulset validators/missing to 0: not found`) {
			t.Errorf("ScaleStatefulSet(missing) = %v, want not_found", err)
		}
		// The coordinator's ServiceAccount has no rights on StatefulSets.
		if _, err := kube.ScaleStatefulSet(ctx, coordinator, "validators", "besu-a", 1); fencing.CodeOf(err) != fencing.CodeForbidden ||
			!strings.Contains(err.Error(), "statefulsets/scale") {
			t.Errorf("ScaleStatefulSet(as coordinator) = %v, want forbidden naming statefulsets/scale", err)
		}
	})
}

func grant() fencing.Event {
	return fencing.Event{
		Kind: fencing.EventGrant, Validator: validator, At: time.Now(), BumpID: "b-1",
		From: &fencing.Epoch{Epoch: 3, State: fencing.StateFenced, Holder: "region-a"},
		To:   &fencing.Epoch{Epoch: 4, State: fencing.StateActive, Holder: "region-b", By: "alice", Reason: "region A lost"},
	}
}

func grantClusterRole(ctx context.Context, t *testing.T, c kubernetes.Interface, name, ns, sa string, rule rbacv1.PolicyRule) {
	t.Helper()
	mustCreate(t, errOf(c.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{rule}}, metav1.CreateOptions{})))
	mustCreate(t, errOf(c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{})))
}

func grantRole(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name, sa string, rule rbacv1.PolicyRule) {
	t.Helper()
	mustCreate(t, errOf(c.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{rule}}, metav1.CreateOptions{})))
	mustCreate(t, errOf(c.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{})))
}

func probeEvent() *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "rbac-probe", Namespace: "fencing"},
		EventTime:           metav1.NowMicro(),
		ReportingController: kube.ReportingController,
		ReportingInstance:   "probe",
		Action:              "Probe",
		Reason:              "Probe",
		Type:                corev1.EventTypeNormal,
		Regarding:           corev1.ObjectReference{Kind: "Pod", Namespace: "fencing", Name: "probe"},
	}
}

func statefulSet(name string, replicas int32) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(replicas),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "besu", Image: "hyperledger/besu:25.10.0"}}},
			},
		},
	}
}

func clientFor(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// errOf drops the object of a client call.
func errOf[T any](_ T, err error) error { return err }

func mustCreate(t *testing.T, err error) {
	t.Helper()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
