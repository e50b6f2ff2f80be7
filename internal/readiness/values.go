package readiness

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Sidecar flags that differ between the clusters by design: the holder is
// each cluster's failure domain (checked to differ), the name is the Pod's,
// the validator is the key-address check's and the coordinator URL names
// the region's own coordinator.
var sidecarFlagsPerCluster = []string{"holder", "name", "validator", "coordinator"}

// Sidecar flags whose drift changes the safety guarantee at a failover
// (docs/architecture.md, "The guarantees and their exact bounds").
var sidecarFlagsCritical = []string{"mode"}

// coordinatorFlagsPerCluster: the bindings name each cluster's holder.
var coordinatorFlagsPerCluster = []string{"auth-bindings"}

// checkValues compares what the charts rendered in both clusters: the
// sidecar's flags and environment, its key Secret's name, the holder, and
// the chart labels of each validator StatefulSet; the coordinator
// Deployments' flags and chart labels.
func (r *runner) checkValues() {
	if !r.bothUp() {
		return
	}
	act, sb := r.states[0], r.states[1]
	for _, wa := range act.workloads {
		wb := sb.workload(wa.name())
		if wb == nil {
			continue
		}
		n := len(r.rep.Findings)
		ha, hb := wa.args.get("holder"), wb.args.get("holder")
		if ha == hb {
			r.add(Critical, CheckValues, r.pair(), wa.name()+" --holder", fmt.Sprintf("both clusters lease as holder %q: each cluster's sidecars must name its own failure domain (sidecar.holder)", ha))
		}
		for _, pw := range []struct {
			s *state
			w *workload
		}{{act, wa}, {sb, wb}} {
			if l := pw.w.set.Spec.Template.Labels[holderLabel]; l != pw.w.args.get("holder") {
				r.add(Warn, CheckValues, pw.s.cluster.name, pw.w.name()+" "+holderLabel, fmt.Sprintf("the Pod label says holder %q but the sidecar runs with --holder=%s; render the Pod labels with fencing.sidecar.podLabels", l, pw.w.args.get("holder")))
			}
		}
		r.compareFlags(wa.name(), wa.args, wb.args, sidecarFlagsPerCluster, sidecarFlagsCritical)
		r.compareSettings(wa.name(), "env", envOf(wa.sidecar), envOf(wb.sidecar))
		r.compareSettings(wa.name(), "", map[string]string{"key Secret": wa.keySecret()}, map[string]string{"key Secret": wb.keySecret()})
		r.compareSettings(wa.name(), "label", chartLabels(wa.set.Labels), chartLabels(wb.set.Labels))
		if len(r.rep.Findings) == n {
			r.add(OK, CheckValues, r.pair(), wa.name(), fmt.Sprintf("sidecar flags, environment, key Secret and chart labels agree; holders %s and %s", ha, hb))
		}
	}
	for _, ca := range act.coordinators {
		cb := sb.coordinatorNamed(ca.dep.Name)
		if cb == nil {
			continue
		}
		n := len(r.rep.Findings)
		ea, eb := endpointSet(ca.args.get("etcd-endpoints")), endpointSet(cb.args.get("etcd-endpoints"))
		if ea != eb {
			r.add(Warn, CheckValues, r.pair(), ca.dep.Name+" --etcd-endpoints", fmt.Sprintf("%s in %s, %s in %s: both regions must use one etcd cluster (the etcd check compares the cluster IDs)", ea, act.cluster.name, eb, sb.cluster.name))
		}
		r.compareFlags(ca.dep.Name, ca.args, cb.args, append([]string{"etcd-endpoints"}, coordinatorFlagsPerCluster...), nil)
		r.compareSettings(ca.dep.Name, "label", chartLabels(ca.dep.Labels), chartLabels(cb.dep.Labels))
		if len(r.rep.Findings) == n {
			r.add(OK, CheckValues, r.pair(), ca.dep.Name, "coordinator flags, etcd endpoints and chart labels agree")
		}
	}
}

// compareFlags reports each flag whose value differs, except those in
// skip; a drift of a flag in critical is critical.
func (r *runner) compareFlags(owner string, a, b flags, skip, critical []string) {
	act, sb := r.states[0].cluster.name, r.states[1].cluster.name
	for _, k := range sortedKeys(a, b) {
		if slices.Contains(skip, k) || a[k] == b[k] {
			continue
		}
		sev := Warn
		if slices.Contains(critical, k) {
			sev = Critical
		}
		r.add(sev, CheckValues, r.pair(), owner+" "+flagName(k), fmt.Sprintf("%s in %s, %s in %s: render both from the same chart values", shown(a, k), act, shown(b, k), sb))
	}
}

// compareSettings reports each named setting whose value differs.
func (r *runner) compareSettings(owner, what string, a, b map[string]string) {
	act, sb := r.states[0].cluster.name, r.states[1].cluster.name
	for _, k := range sortedKeys(a, b) {
		if a[k] == b[k] {
			continue
		}
		r.add(Warn, CheckValues, r.pair(), strings.TrimSpace(owner+" "+what+" "+k), fmt.Sprintf("%s in %s, %s in %s: render both from the same chart values", shown(a, k), act, shown(b, k), sb))
	}
}

// shown quotes a value, or says it is not set.
func shown[M ~map[string]string](m M, k string) string {
	if v, ok := m[k]; ok {
		return fmt.Sprintf("%q", v)
	}
	return "not set"
}

// envOf is a container's environment: literal values, and for references
// what they refer to (never the referenced value).
func envOf(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		switch vf := e.ValueFrom; {
		case vf == nil:
			m[e.Name] = e.Value
		case vf.FieldRef != nil:
			m[e.Name] = "fieldRef " + vf.FieldRef.FieldPath
		case vf.SecretKeyRef != nil:
			m[e.Name] = "secret " + vf.SecretKeyRef.Name + "/" + vf.SecretKeyRef.Key
		case vf.ConfigMapKeyRef != nil:
			m[e.Name] = "configMap " + vf.ConfigMapKeyRef.Name + "/" + vf.ConfigMapKeyRef.Key
		case vf.ResourceFieldRef != nil:
			m[e.Name] = "resourceFieldRef " + vf.ResourceFieldRef.Resource
		}
	}
	return m
}

// chartLabels are the labels that say which chart and version rendered an
// object.
func chartLabels(l map[string]string) map[string]string {
	m := map[string]string{}
	for _, k := range []string{chartLabel, versionLabel} {
		if v, ok := l[k]; ok {
			m[k] = v
		}
	}
	return m
}

// endpointSet is a comma-separated list, sorted, so that the order of the
// endpoints does not count as drift.
func endpointSet(v string) string {
	eps := strings.Split(v, ",")
	for i := range eps {
		eps[i] = strings.TrimSpace(eps[i])
	}
	slices.Sort(eps)
	return strings.Join(slices.Compact(eps), ",")
}
