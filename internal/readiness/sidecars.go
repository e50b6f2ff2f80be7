package readiness

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	corev1 "k8s.io/api/core/v1"
)

// checkSidecars reports, per validator StatefulSet and cluster, whether
// its Pods run fence-sidecar as the cluster's role wants: leased (the
// container is ready) in the active cluster, running without a lease (not
// ready) in the standby. The sidecar's readiness probe is /readyz, which
// answers only while it holds a lease; its fencing_sidecar_ready metric
// (could sign if granted) is not visible through the API server, so a
// standby's key and coordinator connection are inferred from the container
// running, not crash-looping.
func (r *runner) checkSidecars() {
	for _, s := range r.states {
		name := s.cluster.name
		switch {
		case s.down != nil:
			continue
		case s.workloadErr != "":
			r.add(Warn, CheckSidecar, name, "namespace "+r.o.Namespace, s.workloadErr)
			continue
		case len(s.workloads) == 0:
			r.add(Critical, CheckSidecar, name, "namespace "+r.o.Namespace, fmt.Sprintf("no StatefulSet runs a %s container here; install the validator charts in this cluster (or set the namespace)", sidecarContainer))
		}
		for _, w := range s.workloads {
			r.sidecarPods(s, w)
		}
		for _, p := range s.strayPods {
			r.add(Warn, CheckSidecar, name, "pod "+p.Name, "runs fence-sidecar but no StatefulSet of the namespace selects it: it is not compared with the other cluster")
		}
	}
	if !r.bothUp() || r.states[0].workloadErr != "" || r.states[1].workloadErr != "" {
		return
	}
	act, sb := r.states[0], r.states[1]
	for _, w := range act.workloads {
		if sb.workload(w.name()) == nil {
			r.add(Critical, CheckSidecar, sb.cluster.name, w.name(), fmt.Sprintf("runs in %s but has no StatefulSet here: there is nothing to fail over to; install it in the standby cluster", act.cluster.name))
		}
	}
	for _, w := range sb.workloads {
		if act.workload(w.name()) == nil {
			r.add(Warn, CheckSidecar, act.cluster.name, w.name(), fmt.Sprintf("exists only in the standby cluster %s; remove it there or install it here", sb.cluster.name))
		}
	}
}

func (s *state) workload(name string) *workload {
	for _, w := range s.workloads {
		if w.name() == name {
			return w
		}
	}
	return nil
}

// sidecarPods reports the Pods of one StatefulSet in one cluster.
func (r *runner) sidecarPods(s *state, w *workload) {
	name := s.cluster.name
	subject := w.name() + " (" + w.validator() + ")"
	replicas := int32(1)
	if w.set.Spec.Replicas != nil {
		replicas = *w.set.Spec.Replicas
	}
	if len(w.pods) == 0 {
		switch {
		case s.active:
			r.add(Critical, CheckSidecar, name, subject, fmt.Sprintf("no Pod runs: the active validator is not signing (StatefulSet replicas %d)", replicas))
		case replicas == 0:
			r.add(Warn, CheckSidecar, name, subject, "scaled to 0: nothing runs to show that the standby can start (image, key Secret, coordinator connection); fencectl bump --scale starts it only after the grant")
		default:
			r.add(Critical, CheckSidecar, name, subject, fmt.Sprintf("the StatefulSet wants %d replicas but no Pod exists: the standby cannot take over", replicas))
		}
		return
	}
	for _, p := range w.pods {
		sub := w.name() + "/" + p.Name + " (" + w.validator() + ")"
		st := containerStatus(p, sidecarContainer)
		if why := notRunning(p, st); why != "" {
			r.add(Critical, CheckSidecar, name, sub, fmt.Sprintf("the %s sidecar is not running: %s", s.role(), why))
			continue
		}
		switch {
		case s.active && st.Ready:
			r.add(OK, CheckSidecar, name, sub, "leased: the sidecar container is ready (its /readyz answers only while it holds a lease)")
		case s.active:
			r.add(Critical, CheckSidecar, name, sub, "the sidecar runs but holds no lease (container not ready): the active validator is not signing; see fencectl status and the sidecar's log")
		case st.Ready:
			r.add(Critical, CheckSidecar, name, sub, "the standby sidecar holds a lease (container ready): a standby must hold none; see fencectl status, and after a failover give the contexts in the new order")
		default:
			r.add(OK, CheckSidecar, name, sub, "running without a lease, as a standby should (container not ready: /readyz answers only while it holds a lease)")
		}
		if st.RestartCount >= 3 {
			r.add(Warn, CheckSidecar, name, sub, fmt.Sprintf("the sidecar container restarted %d times; see its previous log (kubectl logs --previous -c %s)", st.RestartCount, sidecarContainer))
		}
	}
}

// containerStatus finds name's status among the containers and init
// containers of p.
func containerStatus(p corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// notRunning says why the container of st in p is not running, or "".
func notRunning(p corev1.Pod, st *corev1.ContainerStatus) string {
	if p.DeletionTimestamp != nil {
		return "the Pod is being deleted"
	}
	if st == nil {
		why := fmt.Sprintf("the Pod is %s and reports no status for the container", orWord(string(p.Status.Phase), "without a phase"))
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
				why += fmt.Sprintf(" (not scheduled: %s %s)", c.Reason, c.Message)
			}
		}
		return why
	}
	switch {
	case st.State.Running != nil:
		return ""
	case st.State.Waiting != nil:
		return strings.TrimSpace(fmt.Sprintf("waiting, %s %s", st.State.Waiting.Reason, st.State.Waiting.Message))
	case st.State.Terminated != nil:
		return strings.TrimSpace(fmt.Sprintf("terminated, %s (exit code %d) %s", st.State.Terminated.Reason, st.State.Terminated.ExitCode, st.State.Terminated.Message))
	}
	return "its state is unknown"
}

func orWord(s, word string) string {
	if s == "" {
		return word
	}
	return s
}

// checkKeyAddresses compares, per validator StatefulSet, the key address
// both clusters sign with, as far as it can be known without reading a key:
// the sidecar's --validator (an address, as the chart renders it) and, when
// the key Secret carries it, the annotation
// fencing.validator-fencing.io/key-address (read as metadata only).
func (r *runner) checkKeyAddresses(ctx context.Context) {
	if !r.bothUp() {
		return
	}
	act, sb := r.states[0], r.states[1]
	pair := r.pair()
	for _, wa := range act.workloads {
		wb := sb.workload(wa.name())
		if wb == nil {
			continue
		}
		va, vb := wa.validator(), wb.validator()
		switch {
		case va == "" || vb == "":
			r.add(Critical, CheckKeyAddress, pair, wa.name(), fmt.Sprintf("the sidecar has no --validator in %s; set sidecar.validators in the validator chart", pick(va == "", act, sb).cluster.name))
			continue
		case va != vb:
			r.add(Critical, CheckKeyAddress, pair, wa.name(), fmt.Sprintf("%s signs as %s, %s as %s: a failover would move the lease to another key; give both the same sidecar.validators and key Secret", act.cluster.name, va, sb.cluster.name, vb))
			continue
		}
		annA, errA := r.keyAnnotation(ctx, act, wa)
		annB, errB := r.keyAnnotation(ctx, sb, wb)
		var bad []string
		for _, a := range []struct {
			s   *state
			ann string
		}{{act, annA}, {sb, annB}} {
			if a.ann != "" && a.ann != va {
				bad = append(bad, fmt.Sprintf("the key Secret in %s is annotated %s=%s but the sidecar signs as %s", a.s.cluster.name, keyAddressAnnotate, a.ann, va))
			}
		}
		switch {
		case len(bad) > 0:
			r.add(Critical, CheckKeyAddress, pair, wa.name(), strings.Join(bad, "; ")+"; put the right key in the Secret, or fix the annotation")
		case annA != "" && annB != "":
			r.add(OK, CheckKeyAddress, pair, wa.name(), fmt.Sprintf("%s in both: the sidecars' --validator and the key Secrets' %s agree", va, keyAddressAnnotate))
		case common.IsHexAddress(va):
			detail := fmt.Sprintf("%s in both (the sidecars' --validator); the keys themselves are never read: annotate the key Secrets with %s to compare them too", va, keyAddressAnnotate)
			if errA != "" || errB != "" {
				detail += "; " + strings.Trim(errA+" "+errB, " ")
			}
			r.add(OK, CheckKeyAddress, pair, wa.name(), detail)
		default:
			r.add(Warn, CheckKeyAddress, pair, wa.name(), fmt.Sprintf("both sign as %q, a name rather than an address, so which key each holds cannot be compared without reading it; annotate the key Secrets with %s=<address>", va, keyAddressAnnotate))
		}
	}
}

func pick(first bool, a, b *state) *state {
	if first {
		return a
	}
	return b
}

// keyAnnotation is the canonical address the key Secret of w is annotated
// with ("" when it has none) and, when its metadata could not be read, why.
func (r *runner) keyAnnotation(ctx context.Context, s *state, w *workload) (addr, why string) {
	name := w.keySecret()
	if name == "" {
		return "", ""
	}
	res := s.object(ctx, objectRef{resource: "secrets", namespace: w.set.Namespace, name: name})
	if res.err != nil {
		return "", fmt.Sprintf("the key Secret's annotation in %s: %s", s.cluster.name, readErr("reading the metadata of Secret "+name, res.err))
	}
	a := strings.TrimSpace(res.meta.Annotations[keyAddressAnnotate])
	if common.IsHexAddress(a) {
		return common.HexToAddress(a).Hex(), ""
	}
	return a, ""
}

// checkImages compares the images of every container of each validator
// StatefulSet and coordinator Deployment present in both clusters.
func (r *runner) checkImages() {
	if !r.bothUp() {
		return
	}
	act, sb := r.states[0], r.states[1]
	for _, wa := range act.workloads {
		if wb := sb.workload(wa.name()); wb != nil {
			r.compareImages(wa.name(), images(wa.set.Spec.Template.Spec), images(wb.set.Spec.Template.Spec))
		}
	}
	for _, ca := range act.coordinators {
		if cb := sb.coordinatorNamed(ca.dep.Name); cb != nil {
			r.compareImages(ca.dep.Name, images(ca.dep.Spec.Template.Spec), images(cb.dep.Spec.Template.Spec))
		}
	}
}

func (r *runner) compareImages(owner string, a, b map[string]string) {
	act, sb := r.states[0].cluster.name, r.states[1].cluster.name
	for _, c := range sortedKeys(a, b) {
		ia, ib := a[c], b[c]
		sub := owner + "/" + c
		switch {
		case ia == ib:
			r.add(OK, CheckImages, r.pair(), sub, ia+" in both")
		case ia == "" || ib == "":
			r.add(Warn, CheckImages, r.pair(), sub, fmt.Sprintf("only in %s (%s)", pickName(ia != "", act, sb), ia+ib))
		default:
			r.add(Warn, CheckImages, r.pair(), sub, fmt.Sprintf("%s in %s, %s in %s: upgrade both to one version", ia, act, ib, sb))
		}
	}
}

func pickName(first bool, a, b string) string {
	if first {
		return a
	}
	return b
}

// images maps container names (init containers too) to their images, and
// "volume/" and the name of each image volume to its reference (the gate's
// fence-sidecar comes from one: docs/gate.md).
func images(spec corev1.PodSpec) map[string]string {
	m := map[string]string{}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			m[c.Name] = c.Image
		}
	}
	for _, v := range spec.Volumes {
		if v.Image != nil {
			m["volume/"+v.Name] = v.Image.Reference
		}
	}
	return m
}

// sortedKeys is the sorted union of the keys of maps.
func sortedKeys(ms ...map[string]string) []string {
	seen := map[string]bool{}
	for _, m := range ms {
		for k := range maps.Keys(m) {
			seen[k] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
