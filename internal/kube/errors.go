package kube

import (
	"context"
	"errors"
	"net"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// classify turns an error of a client-go call into a *fencing.Error whose
// code says who has to act: not_found and forbidden name something an
// operator fixes in the cluster, unavailable means the API server could not be
// asked (down, unreachable, timing out, overloaded) and the call may be
// retried. action says what was attempted, e.g. "scale statefulset
// validators/besu" or "review the sidecar's token".
func classify(err error, action string) *fencing.Error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fencing.Errorf(fencing.CodeNotFound, "%s: not found: %s", action, apiMessage(err))
	case apierrors.IsForbidden(err):
		return fencing.Errorf(fencing.CodeForbidden, "%s: forbidden by the API server (RBAC): %s", action, apiMessage(err))
	case apierrors.IsUnauthorized(err):
		return fencing.Errorf(fencing.CodeUnauthorized, "%s: the API server did not accept our credentials (check the kubeconfig user or the ServiceAccount token): %s", action, apiMessage(err))
	case isUnreachable(err):
		return fencing.Errorf(fencing.CodeUnavailable, "%s: cannot reach the Kubernetes API server: %v", action, err)
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err), apierrors.IsUnexpectedServerError(err):
		return fencing.Errorf(fencing.CodeUnavailable, "%s: the Kubernetes API server failed to answer: %s", action, apiMessage(err))
	case apierrors.IsConflict(err):
		return fencing.Errorf(fencing.CodeConflict, "%s: %s", action, apiMessage(err))
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return fencing.Errorf(fencing.CodeBadRequest, "%s: rejected by the API server: %s", action, apiMessage(err))
	}
	return fencing.Errorf(fencing.CodeInternal, "%s: %v", action, err)
}

// isUnreachable reports a transport failure: connection refused or reset, a
// DNS failure, a dial or request timeout, or a cancelled context.
func isUnreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	if utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue)
}

// apiMessage is the API server's own sentence for a status error.
func apiMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Message != "" {
		return se.Status().Message
	}
	return err.Error()
}
