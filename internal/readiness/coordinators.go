package readiness

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func (s *state) coordinatorNamed(name string) *coordinator {
	for _, c := range s.coordinators {
		if c.dep.Name == name {
			return c
		}
	}
	return nil
}

// checkCoordinators reports, per cluster, the fence-coordinator
// Deployments (labels app.kubernetes.io/component=coordinator and
// part-of=fencing, as the chart renders them): how many replicas are Ready,
// and over which zones (topology.kubernetes.io/zone of their nodes). When
// nodes cannot be read, what the Deployment asks of the scheduler (topology
// spread constraints, pod anti-affinity) is reported as a warning instead.
func (r *runner) checkCoordinators(ctx context.Context) {
	for _, s := range r.states {
		name := s.cluster.name
		switch {
		case s.down != nil:
			continue
		case s.coordErr != "":
			r.add(Warn, CheckCoordinator, name, "namespace "+r.o.CoordinatorNamespace, s.coordErr)
			continue
		case len(s.coordinators) == 0:
			r.add(Critical, CheckCoordinator, name, "namespace "+r.o.CoordinatorNamespace, fmt.Sprintf("no fence-coordinator Deployment (labels %s): this cluster's sidecars cannot get a lease; install the fencing chart here (or set the coordinator namespace)", coordinatorLabels))
			continue
		}
		nodes := map[string]*corev1.Node{}
		var nodeErr string
		for _, c := range s.coordinators {
			want := int32(1)
			if c.dep.Spec.Replicas != nil {
				want = *c.dep.Spec.Replicas
			}
			var ready []corev1.Pod
			var notReady []string
			for _, p := range c.pods {
				if podReady(p) {
					ready = append(ready, p)
				} else {
					notReady = append(notReady, p.Name)
				}
			}
			sub := c.dep.Name + " replicas"
			switch {
			case len(ready) == 0:
				r.add(Critical, CheckCoordinator, name, sub, fmt.Sprintf("no replica is Ready (%d wanted, Pods not ready: %s): this cluster's sidecars cannot renew or get a lease", want, listOr(notReady, "none")))
			case int32(len(ready)) < want:
				r.add(Warn, CheckCoordinator, name, sub, fmt.Sprintf("%d of %d replicas Ready (not ready: %s)", len(ready), want, listOr(notReady, "none created")))
			default:
				r.add(OK, CheckCoordinator, name, sub, fmt.Sprintf("%d of %d replicas Ready", len(ready), want))
			}
			if len(ready) == 0 {
				continue
			}
			zones := map[string][]string{} // zone -> ready pods
			var unzoned []string
			for _, p := range ready {
				if nodeErr == "" && p.Spec.NodeName != "" && nodes[p.Spec.NodeName] == nil {
					n, err := s.cluster.client.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
					if err != nil {
						nodeErr = readErr("getting node "+p.Spec.NodeName, err)
					} else {
						nodes[n.Name] = n
					}
				}
				n := nodes[p.Spec.NodeName]
				if n == nil || n.Labels[zoneLabel] == "" {
					unzoned = append(unzoned, p.Name)
					continue
				}
				zones[n.Labels[zoneLabel]] = append(zones[n.Labels[zoneLabel]], p.Name)
			}
			sub = c.dep.Name + " spread"
			asks := schedulerSpread(c.dep)
			switch {
			case nodeErr != "":
				r.add(Warn, CheckCoordinator, name, sub, fmt.Sprintf("zones %s; the Deployment asks for %s", nodeErr, asks))
			case len(unzoned) > 0:
				r.add(Warn, CheckCoordinator, name, sub, fmt.Sprintf("the nodes of %s carry no %s label, so the zones are unknown; the Deployment asks for %s", strings.Join(unzoned, ", "), zoneLabel, asks))
			case len(ready) == 1:
				r.add(Warn, CheckCoordinator, name, sub, fmt.Sprintf("one Ready replica, in zone %s: losing its node or zone stops this cluster's coordinator; run 2 or more replicas", slices.Collect(maps.Keys(zones))[0]))
			case len(zones) == 1:
				z := slices.Collect(maps.Keys(zones))[0]
				r.add(Warn, CheckCoordinator, name, sub, fmt.Sprintf("all %d Ready replicas run in zone %s: losing it stops this cluster's coordinator; spread them (coordinator.topologySpreadConstraints with whenUnsatisfiable: DoNotSchedule, or more zones)", len(ready), z))
			default:
				r.add(OK, CheckCoordinator, name, sub, fmt.Sprintf("%d Ready replicas over zones %s", len(ready), zoneList(zones)))
			}
		}
	}
}

func podReady(p corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func listOr(l []string, none string) string {
	if len(l) == 0 {
		return none
	}
	return strings.Join(l, ", ")
}

// zoneList is "a (pod-1), b (pod-2)".
func zoneList(zones map[string][]string) string {
	var out []string
	for _, z := range slices.Sorted(maps.Keys(zones)) {
		out = append(out, fmt.Sprintf("%s (%s)", z, strings.Join(zones[z], ", ")))
	}
	return strings.Join(out, ", ")
}

// schedulerSpread says what d's Pod template asks of the scheduler to
// spread its replicas.
func schedulerSpread(d *appsv1.Deployment) string {
	spec := d.Spec.Template.Spec
	var asks []string
	for _, c := range spec.TopologySpreadConstraints {
		asks = append(asks, fmt.Sprintf("spread over %s (maxSkew %d, %s)", c.TopologyKey, c.MaxSkew, c.WhenUnsatisfiable))
	}
	if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			asks = append(asks, "anti-affinity on "+t.TopologyKey+" (required)")
		}
		for _, t := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			asks = append(asks, "anti-affinity on "+t.PodAffinityTerm.TopologyKey+" (preferred)")
		}
	}
	if len(asks) == 0 {
		return "no spread at all (no topology spread constraints or pod anti-affinity)"
	}
	return strings.Join(asks, ", ")
}
