// Package charts holds the tests of the Helm charts in this directory: the
// fencing chart (charts/fencing) and the worked Besu validator example
// (charts/examples/besu-validator), whose rendered output is committed in
// docs/examples.
//
// The tests run helm at the pinned version through hack/helm.sh (installed
// with go install into a cache the first time), lint and render the charts,
// check that values.schema.json rejects misspelt values, compare the rendered
// example with docs/examples (go test ./charts -update rewrites it), and apply
// everything to a real kube-apiserver (internal/kubetest) with server-side
// apply and strict field validation, then exercise the chart's RBAC, the
// sidecar token audience and StatefulSet scaling on what was applied.
package charts
