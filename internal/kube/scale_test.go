package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/validator-fencing/fencing/internal/fencing"
)

func forbidden(resource string) error {
	return apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: resource}, "besu",
		errors.New(`User "alice" cannot update resource "statefulsets/scale" in API group "apps" in the namespace "validators"`))
}

// fakeScale serves the statefulsets/scale subresource of the fake clientset,
// which its object tracker does not: replicas by name; errs injects an error
// per verb ("get", "update"), conflicts fails that many updates with a
// conflict first.
type fakeScale struct {
	mu        sync.Mutex
	replicas  map[string]int32
	errs      map[string]error
	conflicts int
	updates   []int32
}

func (f *fakeScale) client() *fake.Clientset {
	c := fake.NewClientset()
	react := func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "scale" {
			return false, nil, nil
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.errs[action.GetVerb()]; err != nil {
			return true, nil, err
		}
		switch a := action.(type) {
		case k8stesting.GetAction:
			n, ok := f.replicas[a.GetName()]
			if !ok {
				return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: "statefulsets"}, a.GetName())
			}
			return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: a.GetName(), Namespace: a.GetNamespace()},
				Spec: autoscalingv1.ScaleSpec{Replicas: n}}, nil
		case k8stesting.UpdateAction:
			s := a.GetObject().(*autoscalingv1.Scale)
			if f.conflicts > 0 {
				f.conflicts--
				return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "statefulsets"}, s.Name, errors.New("the object has been modified"))
			}
			f.replicas[s.Name] = s.Spec.Replicas
			f.updates = append(f.updates, s.Spec.Replicas)
			return true, s, nil
		}
		return false, nil, nil
	}
	c.PrependReactor("get", "statefulsets", react)
	c.PrependReactor("update", "statefulsets", react)
	return c
}

func TestScaleStatefulSet(t *testing.T) {
	tests := []struct {
		name        string
		stsName     string
		replicas    int32
		errs        map[string]error
		conflicts   int
		wantPrev    int32
		wantUpdates []int32
		wantCode    fencing.Code
		wantMsg     string
	}{
		{name: "scale down", stsName: "besu", replicas: 0, wantPrev: 1, wantUpdates: []int32{0}},
		{name: "already there", stsName: "besu", replicas: 1, wantPrev: 1},
		{name: "conflict is retried", stsName: "besu", replicas: 3, conflicts: 2, wantPrev: 1, wantUpdates: []int32{3}},
		{name: "not found", stsName: "nope", replicas: 0, wantCode: fencing.CodeNotFound,
			wantMsg: `scale statefulset validators/nope to 0: not found: statefulsets.apps "nope" not found`},
		{name: "forbidden", stsName: "besu", replicas: 0, errs: map[string]error{"update": forbidden("statefulsets/scale")},
			wantCode: fencing.CodeForbidden, wantMsg: "forbidden by the API server (RBAC)"},
		{name: "API server down", stsName: "besu", replicas: 0, errs: map[string]error{"get": connRefused()},
			wantCode: fencing.CodeUnavailable, wantMsg: "cannot reach the Kubernetes API server"},
		{name: "API server overloaded", stsName: "besu", replicas: 0, errs: map[string]error{"get": apierrors.NewServiceUnavailable("etcd leader changed")},
			wantCode: fencing.CodeUnavailable, wantMsg: "failed to answer"},
		{name: "negative", stsName: "besu", replicas: -1, wantCode: fencing.CodeBadRequest, wantMsg: "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeScale{replicas: map[string]int32{"besu": 1}, errs: tt.errs, conflicts: tt.conflicts}
			prev, err := ScaleStatefulSet(context.Background(), f.client(), "validators", tt.stsName, tt.replicas)
			if tt.wantCode != "" {
				if code := fencing.CodeOf(err); code != tt.wantCode || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("ScaleStatefulSet() = %d, %v; want code %s and %q", prev, err, tt.wantCode, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ScaleStatefulSet() error = %v", err)
			}
			if prev != tt.wantPrev {
				t.Errorf("ScaleStatefulSet() previous = %d, want %d", prev, tt.wantPrev)
			}
			if len(f.updates) != len(tt.wantUpdates) || (len(f.updates) > 0 && f.updates[0] != tt.wantUpdates[0]) {
				t.Errorf("updates = %v, want %v", f.updates, tt.wantUpdates)
			}
		})
	}
}

func TestWaitStatefulSetReplicas(t *testing.T) {
	sts := func(status int32) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "besu", Namespace: "validators", Generation: 2},
			Status:     appsv1.StatefulSetStatus{Replicas: status, ObservedGeneration: 2},
		}
	}
	t.Run("reaches zero", func(t *testing.T) {
		c := fake.NewClientset(sts(1))
		go func() {
			time.Sleep(50 * time.Millisecond)
			_, _ = c.AppsV1().StatefulSets("validators").UpdateStatus(context.Background(), sts(0), metav1.UpdateOptions{})
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := WaitStatefulSetReplicas(ctx, c, "validators", "besu", 0, 10*time.Millisecond)
		if err != nil || got != 0 {
			t.Errorf("WaitStatefulSetReplicas() = %d, %v; want 0, nil", got, err)
		}
	})
	t.Run("gives up", func(t *testing.T) {
		c := fake.NewClientset(sts(1))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		got, err := WaitStatefulSetReplicas(ctx, c, "validators", "besu", 0, 10*time.Millisecond)
		if fencing.CodeOf(err) != fencing.CodeUnavailable || got != 1 || !strings.Contains(err.Error(), "1 replicas still reported") {
			t.Errorf("WaitStatefulSetReplicas() = %d, %v; want 1 and an unavailable error", got, err)
		}
	})
	t.Run("not found is final", func(t *testing.T) {
		c := fake.NewClientset()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err := WaitStatefulSetReplicas(ctx, c, "validators", "besu", 0, 10*time.Millisecond)
		if fencing.CodeOf(err) != fencing.CodeNotFound || time.Since(start) > time.Second {
			t.Errorf("WaitStatefulSetReplicas() = %v after %v; want not_found at once", err, time.Since(start))
		}
	})
}

func writeKubeconfig(t *testing.T, server string, contexts ...string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	for _, n := range contexts {
		cfg.Contexts[n] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	}
	if len(contexts) > 0 {
		cfg.CurrentContext = contexts[0]
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientForContext(t *testing.T) {
	// Nothing listens on port 1: the API server is "down".
	kc := writeKubeconfig(t, "http://127.0.0.1:1", "region-a", "region-b")
	empty := writeKubeconfig(t, "http://127.0.0.1:1")
	t.Setenv("KUBECONFIG", kc)

	tests := []struct {
		name       string
		kubeconfig string
		context    string
		wantMsg    string // empty: a client is returned
	}{
		{name: "named context", kubeconfig: kc, context: "region-b"},
		{name: "current context", kubeconfig: kc},
		{name: "from KUBECONFIG", context: "region-a"},
		{name: "unknown context", kubeconfig: kc, context: "region-c", wantMsg: `context "region-c" is not in kubeconfig ` + kc + ` (have: region-a, region-b)`},
		{name: "no current context", kubeconfig: empty, wantMsg: "has no current context; name one (have: none)"},
		{name: "missing file", kubeconfig: filepath.Join(t.TempDir(), "nope"), wantMsg: "load kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ClientForContext(tt.kubeconfig, tt.context)
			if tt.wantMsg != "" {
				if fencing.CodeOf(err) != fencing.CodeBadRequest || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("ClientForContext(%q, %q) error = %v, want bad_request containing %q", tt.kubeconfig, tt.context, err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ClientForContext(%q, %q) error = %v", tt.kubeconfig, tt.context, err)
			}
			// A real transport to a closed port: the API server is down.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = ScaleStatefulSet(ctx, c, "validators", "besu", 0)
			if fencing.CodeOf(err) != fencing.CodeUnavailable || !strings.Contains(err.Error(), "cannot reach the Kubernetes API server") {
				t.Errorf("ScaleStatefulSet() against a closed port: %v, want unavailable", err)
			}
		})
	}
	if _, err := os.Stat(kc); err != nil {
		t.Fatal(err)
	}
}
