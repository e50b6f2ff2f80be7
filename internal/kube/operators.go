package kube

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// OperatorAPIGroup is the API group operators are authorized in: RBAC rules
// name it, its resources (validators, audits, events) and the verbs of the
// operator API (get, list, create, delete, freeze, unfreeze, bump, abandon).
// No such API is served by Kubernetes; the coordinator asks with
// SubjectAccessReview whether RBAC would allow the verb.
const OperatorAPIGroup = "fencing.validator-fencing.io"

// OperatorAuthorizer authenticates an operator's bearer token with
// TokenReview and authorizes each action with SubjectAccessReview, so that
// cluster admins decide with RBAC who may fail over. It keeps nothing: every
// request is reviewed (operator requests are rare).
type OperatorAuthorizer struct {
	client    kubernetes.Interface
	namespace string
	audiences []string
	lg        hclog.Logger
	timeout   time.Duration
}

// NewOperatorAuthorizer authorizes in namespace; audiences, when not empty,
// are the audiences tokens must have been issued for (empty: the API
// server's own, as kubectl's tokens are). Options: WithLogger, WithTimeout.
func NewOperatorAuthorizer(client kubernetes.Interface, namespace string, audiences []string, opts ...Option) *OperatorAuthorizer {
	o := applyOptions(opts)
	return &OperatorAuthorizer{client: client, namespace: namespace, audiences: audiences, lg: o.logger, timeout: o.timeout}
}

// Authorize returns the Kubernetes user name of bearerToken's owner if RBAC
// allows them verb on resource (named name, when not empty) in the
// authorizer's namespace. Errors are *fencing.Error: unauthorized (the token
// is not authenticated), forbidden (RBAC says no; the message names the
// rule to add), unavailable (the API server could not be asked).
func (a *OperatorAuthorizer) Authorize(ctx context.Context, bearerToken, verb, resource, name string) (string, error) {
	if bearerToken == "" {
		return "", fencing.Errorf(fencing.CodeUnauthorized, "the operator API needs a bearer token the Kubernetes API server authenticates (fencectl --token-file, e.g. from kubectl create token)")
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: bearerToken, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fencing.Errorf(fencing.CodeUnavailable, "%s", classify(err, "coordinator cannot review the operator's token").Message)
	}
	if !tr.Status.Authenticated {
		said := ""
		if tr.Status.Error != "" {
			said = " (the API server said: " + tr.Status.Error + ")"
		}
		return "", fencing.Errorf(fencing.CodeUnauthorized, "the Kubernetes API server did not authenticate the operator's token%s", said)
	}
	u := tr.Status.User
	extra := make(map[string]authzv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
		ResourceAttributes: &authzv1.ResourceAttributes{
			Namespace: a.namespace, Verb: verb, Group: OperatorAPIGroup, Resource: resource, Name: name,
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		return "", fencing.Errorf(fencing.CodeUnavailable, "%s", classify(err, "coordinator cannot ask the API server whether the operator may "+verb).Message)
	}
	if !sar.Status.Allowed {
		target := resource
		if name != "" {
			target += "/" + name
		}
		why := ""
		if sar.Status.Reason != "" {
			why = " (" + sar.Status.Reason + ")"
		}
		return "", fencing.Errorf(fencing.CodeForbidden, "%s may not %s %s in namespace %s%s; an admin grants it with a Role or ClusterRole rule: apiGroups [%s], resources [%s], verbs [%s] (the chart's %s ClusterRole has them all)",
			u.Username, verb, target, a.namespace, why, OperatorAPIGroup, resource, verb, "<release>-operator")
	}
	a.lg.Debug("operator authorized", "user", u.Username, "verb", verb, "resource", resource, "name", name)
	return u.Username, nil
}
