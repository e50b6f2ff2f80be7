package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// ClientForContext builds a client for context of the kubeconfig file at
// path. An empty path means the usual loading rules ($KUBECONFIG, then
// ~/.kube/config); an empty context means the kubeconfig's current context.
// A missing file or context is a bad_request error that lists the contexts
// the file has. Requests time out after 30 s.
func ClientForContext(kubeconfig, contextName string) (kubernetes.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	where := "kubeconfig"
	if kubeconfig != "" {
		where = "kubeconfig " + kubeconfig
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "load %s: %v", where, err)
	}
	if contextName == "" {
		contextName = raw.CurrentContext
		if contextName == "" {
			return nil, fencing.Errorf(fencing.CodeBadRequest, "%s has no current context; name one (have: %s)", where, contextNames(raw.Contexts))
		}
	}
	if _, ok := raw.Contexts[contextName]; !ok {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "context %q is not in %s (have: %s)", contextName, where, contextNames(raw.Contexts))
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, contextName, &clientcmd.ConfigOverrides{}, rules).ClientConfig()
	if err != nil {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "context %q of %s: %v", contextName, where, err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	cfg.UserAgent = "fencectl"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "context %q of %s: %v", contextName, where, err)
	}
	return client, nil
}

func contextNames[V any](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// ScaleStatefulSet sets the replicas of StatefulSet namespace/name through
// its scale subresource and returns the replicas it had before. Setting the
// value it already has is a no-op. Errors are *fencing.Error: not_found (no
// such StatefulSet), forbidden (RBAC: the kubeconfig user needs get and
// update on statefulsets/scale), unauthorized, unavailable (API server down or
// timing out), each naming the StatefulSet.
func ScaleStatefulSet(ctx context.Context, client kubernetes.Interface, namespace, name string, replicas int32) (previous int32, err error) {
	if replicas < 0 {
		return 0, fencing.Errorf(fencing.CodeBadRequest, "scale statefulset %s/%s: replicas must not be negative, got %d", namespace, name, replicas)
	}
	action := fmt.Sprintf("scale statefulset %s/%s to %d", namespace, name, replicas)
	sts := client.AppsV1().StatefulSets(namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale, err := sts.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		previous = scale.Spec.Replicas
		if previous == replicas {
			return nil
		}
		scale.Spec.Replicas = replicas
		_, err = sts.UpdateScale(ctx, name, scale, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return 0, classify(err, action)
	}
	return previous, nil
}

// WaitStatefulSetReplicas waits until StatefulSet namespace/name reports
// exactly want replicas in its status (after a scale to zero: until its last
// Pod is gone), polling every interval. It returns the replicas last seen and
// a *fencing.Error when ctx ends first or the API server refuses.
func WaitStatefulSetReplicas(ctx context.Context, client kubernetes.Interface, namespace, name string, want int32, interval time.Duration) (int32, error) {
	var last int32 = -1
	var apiErr error
	err := wait.PollUntilContextCancel(ctx, interval, true, func(ctx context.Context) (bool, error) {
		s, err := client.AppsV1().StatefulSets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			apiErr = err
			if classify(err, "").Code == fencing.CodeUnavailable {
				return false, nil // keep polling through a transient outage
			}
			return false, err
		}
		apiErr = nil
		last = s.Status.Replicas
		return last == want && s.Status.ObservedGeneration >= s.Generation, nil
	})
	if err == nil {
		return last, nil
	}
	action := fmt.Sprintf("wait for statefulset %s/%s to have %d replicas", namespace, name, want)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		if apiErr != nil {
			return last, classify(apiErr, action)
		}
		return last, fencing.Errorf(fencing.CodeUnavailable, "%s: gave up with %d replicas still reported: %v", action, last, err)
	}
	return last, classify(err, action)
}
