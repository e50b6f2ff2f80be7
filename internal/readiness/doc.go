// Package readiness is the hot-warm runbook's daily standby readiness check
// (fencectl readiness --context <active> --context <standby>): it compares
// the active and the standby Kubernetes cluster, as the fencing chart and a
// validator chart render them (docs/examples), and reports what a failover
// would run into. docs/readiness.md is the operator's page.
//
// Check reads both clusters through the kubeconfig (internal/kube's
// ClientForContext) and, when given, asks each cluster's coordinator for
// GET /v1/etcd. It only reads; it never changes anything.
//
// # Checks
//
//	check        cluster          what                                                           not OK
//	api-server   each             the API server answers GET /version                            critical: nothing else of that cluster is checked
//	sidecar      each             per validator StatefulSet: its Pods run fence-sidecar;         critical: not running, active not leased, standby leased,
//	                              active: container ready (= holds a lease, /readyz);            StatefulSet missing in the standby, no Pod although replicas > 0;
//	                              standby: running and not ready (no lease)                      warn: standby scaled to 0, 3+ restarts, StatefulSet only in the standby
//	key-address  active vs standby  the sidecars' --validator, and the key Secrets'               critical: they differ; warn: the ID is a name, not an address,
//	                              fencing.validator-fencing.io/key-address annotation if set     and no annotation says which key
//	images       active vs standby  every container image (and image volume) of the validator   warn: they differ
//	                              StatefulSets and the coordinator Deployments
//	values       active vs standby  sidecar flags (--mode, --lease-ttl, --safety-margin, ...),   critical: --mode differs, or both use one --holder;
//	                              environment, key Secret name, chart labels; coordinator flags  warn: any other drift
//	secrets      each             every Secret and ConfigMap the Pod templates need exists        critical: missing; warn: missing image pull Secret, or not readable
//	coordinator  each             Ready replicas; their zones (topology.kubernetes.io/zone of     critical: none Ready; warn: fewer than wanted, one zone, one replica,
//	                              their nodes)                                                   nodes not readable (what the Deployment asks of the scheduler is shown)
//	etcd         each, etcd       the coordinator answers GET /v1/etcd; every voting member      critical: no_quorum, a member down with no tolerance left, split
//	                              answers with one leader and no alarm; 3+ voting members; no    leaders, < 3 members, a domain whose loss takes the quorum, two etcd
//	                              failure domain holds enough members to take the quorum        clusters; warn: not checked, learner, even size, domains unknown
//	clock        each, pair       API servers' Date headers and coordinators' answer times vs    critical: certainly beyond Options.SafetyMargin;
//	                              this machine's clock and each other                           warn: probably beyond it (the Date header has whole seconds)
//
// Anything that could not be checked (forbidden, no coordinator client) is a
// warning that says "not checked", never OK.
//
// # What the API server can show
//
// There is no kubelet to ask: Pods are not scraped, so the sidecar's
// fencing_sidecar_ready{validator} metric (key loaded, coordinator answered)
// is not read. The check uses what the API server shows: the Pod phase, the
// sidecar container's state, restarts and readiness, whose probe is
// /readyz (ready only while it holds a lease). A standby sidecar that runs
// and is not crash-looping has loaded its key (the sidecar exits when it
// cannot); whether it reaches its coordinator is not visible here.
//
// Keys are never read. Secrets and ConfigMaps are fetched as
// PartialObjectMetadata, so the API server sends their names, labels and
// annotations but never their data. The key address compared is the one
// the sidecar is told (--validator) and, when present, the key Secret's
// annotation fencing.validator-fencing.io/key-address.
//
// # Exit codes
//
//	0 (ExitOK)          every finding OK
//	1 (ExitWarn)        the worst finding is a warning
//	2 (ExitCritical)    at least one critical finding
//	3 (ExitNotChecked)  nothing could be checked: Check returned an error
//	                    (bad options, kubeconfig or context not found)
//
// # Permissions
//
// The kubeconfig user needs, in each cluster: list statefulsets and pods in
// the validators' namespace; list deployments and pods in the coordinator's
// namespace; get secrets and configmaps in both (metadata only is asked
// for, but RBAC cannot grant less than get); get nodes (cluster-wide,
// optional: without it the zones are not checked). The coordinator
// operator needs verb get on resource etcd (GET /v1/etcd).
package readiness
