// Package charts holds the tests of the Helm charts in this directory: the
// fencing chart (charts/fencing) and the worked Besu validator example
// (charts/examples/besu-validator), whose rendered output is committed in
// docs/examples.
//
// The tests run helm at the pinned version through hack/helm.sh (installed
// with go install into a cache the first time), lint and render the charts,
// check that the default values fail at render time naming every value to
// set, that values.schema.json rejects misspelt values, that the generated CA
// and serving certificate verify for the Service's names, that every alert
// and Grafana panel queries only series the binaries export (exportedSeries),
// and that the rendered examples in docs/examples and the chart's README
// (generated from the "# --" comments of values.yaml) are current; go test
// ./charts -update rewrites both. On a real kube-apiserver they apply
// everything with server-side apply and strict field validation, exercise the
// chart's RBAC (TokenReviews, and the SubjectAccessReviews the coordinator
// asks for operators), the sidecar token audience and StatefulSet scaling on
// what was applied, and install and upgrade the chart with helm to show that
// the generated CA is kept.
package charts
