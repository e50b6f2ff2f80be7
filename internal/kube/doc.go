// Package kube is the Kubernetes side of validator fencing: sidecars prove who
// they are with a projected ServiceAccount token, the coordinator records
// epoch transitions as Kubernetes Events, and fencectl scales validator
// StatefulSets around a bump.
//
// # Authentication (TokenReviewAuthenticator)
//
// A sidecar sends its projected ServiceAccount token (audience chosen for the
// coordinator, for example "fencing-coordinator") as a bearer token. The
// coordinator asks the API server with a TokenReview whose spec.audiences is
// exactly that audience, and accepts the caller only when
//
//  1. the API server authenticated the token for that audience (a token for
//     another audience, expired, or for a deleted Pod is refused as
//     unauthorized, with the reason),
//  2. the user is a ServiceAccount (system:serviceaccount:<ns>:<name>), and
//  3. a Binding names that ServiceAccount; the Binding gives the holder and the
//     validators the sidecar may lease (fencing.Identity).
//
// Anything else is refused as forbidden. When the API server cannot be asked
// (unreachable, timeout, or the coordinator itself lacks RBAC to create
// TokenReviews) the result is unavailable: the sidecar retries and, meanwhile,
// does not sign. Successful reviews are cached for a short time (30 s by
// default, never past the token's own expiry) under the SHA-256 of the
// token; the token itself is never logged or kept.
//
// # Binding syntax
//
// Inline (flag --auth-bindings, env FENCE_AUTH_BINDINGS), entries separated by
// ';' or newlines:
//
//	<namespace>/<serviceaccount>=<holder>[:<validator>,<validator>...]
//	validators/besu-validator-1=region-a:0x5B38Da6a701c568545dCfcB03FcB875f56beddC4;validators/besu-validator-2=region-a
//
// An entry without validators may lease any validator of its holder. The file
// form (ParseBindingsFile, YAML or JSON, unknown fields rejected) is
//
//	bindings:
//	  - namespace: validators
//	    serviceAccount: besu-validator-1
//	    holder: region-a
//	    validators: ["0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"]
//
// # Events (EventRecorder)
//
// Epoch transitions (revoke_committed, fenced, grant_committed) become
// events.k8s.io/v1 Events in the coordinator's namespace. Their regarding
// object is the coordinator's own Pod (WithRegarding; the Helm chart passes
// POD_NAME and POD_UID through the downward API), so `kubectl describe pod`
// on a coordinator and `kubectl get events -l
// fencing.validator-fencing.io/validator=<id>` both show them. Reason is the
// event kind, action is Revoke, Fence or Grant, type is Warning for
// revoke_committed and fenced (nobody may sign until a grant) and Normal for
// grant_committed; the note carries from/to epoch and holder, the operator and
// the reason. The only RBAC this needs is create on events.events.k8s.io in
// that namespace. Record never blocks: events are queued (bounded) and
// created by one goroutine with a short timeout; failures are logged.
//
// # Scaling (ScaleStatefulSet, ClientForContext)
//
// fencectl bump --scale builds one client per kubeconfig context and uses the
// StatefulSet scale subresource: the old holder's StatefulSet goes to zero
// before the grant, the new holder's comes up after it. Errors carry the
// fencing code words not_found, forbidden and unavailable.
package kube
