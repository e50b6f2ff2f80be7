package readiness

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Names the chart renders (charts/fencing/templates/_sidecar.tpl,
// _helpers.tpl).
const (
	sidecarContainer   = "fence-sidecar"
	keyVolume          = "fencing-key"
	sidecarLabel       = "fencing.validator-fencing.io/sidecar"
	holderLabel        = "fencing.validator-fencing.io/holder"
	chartLabel         = "helm.sh/chart"
	versionLabel       = "app.kubernetes.io/version"
	coordinatorLabels  = "app.kubernetes.io/component=coordinator,app.kubernetes.io/part-of=fencing"
	zoneLabel          = "topology.kubernetes.io/zone"
	keyAddressAnnotate = "fencing.validator-fencing.io/key-address"
)

// state is what was read from one cluster.
type state struct {
	cluster *cluster
	active  bool
	down    error // the API server did not answer: nothing else was read

	apiClock   *clockSample
	coordClock *clockSample

	workloads   []*workload // StatefulSets whose Pods run fence-sidecar, by name
	strayPods   []corev1.Pod
	workloadErr string // why they could not be read ("" when they were)

	coordinators []*coordinator
	coordErr     string

	etcd    *api.EtcdStatus
	etcdErr error

	objects map[objectRef]objectResult
}

// workload is a validator StatefulSet with the sidecar in its Pod template.
type workload struct {
	set     *appsv1.StatefulSet
	sidecar corev1.Container
	args    flags
	pods    []corev1.Pod
}

func (w *workload) name() string { return w.set.Name }

// validator is the canonical --validator, or the raw value when it is not
// a valid ID.
func (w *workload) validator() string {
	v := w.args.get("validator")
	if c, err := fencing.ParseValidatorID(v); err == nil {
		return string(c)
	}
	return v
}

// keySecret is the Secret the chart mounts as the key volume.
func (w *workload) keySecret() string {
	for _, v := range w.set.Spec.Template.Spec.Volumes {
		if v.Name == keyVolume && v.Secret != nil {
			return v.Secret.SecretName
		}
	}
	return ""
}

// coordinator is a fence-coordinator Deployment and its Pods.
type coordinator struct {
	dep  *appsv1.Deployment
	pods []corev1.Pod
	args flags
}

// load reads the validator StatefulSets, their Pods and the coordinator
// Deployments of s's cluster; a read that fails is noted and its checks
// report "not checked".
func (s *state) load(ctx context.Context, o Options) {
	c := s.cluster.client
	sets, err := c.AppsV1().StatefulSets(o.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		s.workloadErr = readErr("listing StatefulSets in namespace "+o.Namespace, err)
	} else if pods, err := c.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{}); err != nil {
		s.workloadErr = readErr("listing Pods in namespace "+o.Namespace, err)
	} else {
		s.workloads, s.strayPods = workloadsOf(sets.Items, pods.Items)
	}

	deps, err := c.AppsV1().Deployments(o.CoordinatorNamespace).List(ctx, metav1.ListOptions{LabelSelector: coordinatorLabels})
	if err != nil {
		s.coordErr = readErr("listing Deployments in namespace "+o.CoordinatorNamespace, err)
		return
	}
	pods, err := c.CoreV1().Pods(o.CoordinatorNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		s.coordErr = readErr("listing Pods in namespace "+o.CoordinatorNamespace, err)
		return
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		co := &coordinator{dep: d}
		if len(d.Spec.Template.Spec.Containers) > 0 {
			co.args = parseFlags(d.Spec.Template.Spec.Containers[0].Args)
		}
		co.pods = selected(d.Spec.Selector, pods.Items)
		s.coordinators = append(s.coordinators, co)
	}
	sort.Slice(s.coordinators, func(i, j int) bool { return s.coordinators[i].dep.Name < s.coordinators[j].dep.Name })
}

// workloadsOf keeps the StatefulSets that run fence-sidecar, with their
// Pods; sidecar Pods no StatefulSet selects are returned as strays.
func workloadsOf(sets []appsv1.StatefulSet, pods []corev1.Pod) (ws []*workload, strays []corev1.Pod) {
	owned := map[string]bool{}
	for i := range sets {
		ss := &sets[i]
		sc, ok := findContainer(ss.Spec.Template.Spec, sidecarContainer)
		if !ok {
			continue
		}
		w := &workload{set: ss, sidecar: sc, args: parseFlags(sc.Args), pods: selected(ss.Spec.Selector, pods)}
		for _, p := range w.pods {
			owned[p.Name] = true
		}
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].name() < ws[j].name() })
	for _, p := range pods {
		if p.Labels[sidecarLabel] == "true" && !owned[p.Name] {
			strays = append(strays, p)
		}
	}
	return ws, strays
}

// findContainer finds a container by name among the containers and the
// init containers (a native sidecar is an init container).
func findContainer(spec corev1.PodSpec, name string) (corev1.Container, bool) {
	for _, list := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for _, c := range list {
			if c.Name == name {
				return c, true
			}
		}
	}
	return corev1.Container{}, false
}

// selected returns the pods sel selects; a selector that does not parse or
// selects everything selects nothing.
func selected(sel *metav1.LabelSelector, pods []corev1.Pod) []corev1.Pod {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return nil
	}
	var out []corev1.Pod
	for _, p := range pods {
		if s.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// flags are command-line arguments as --name=value (the chart's form);
// a bare --name is "true" and anything else is kept under "" in order.
type flags map[string]string

func parseFlags(args []string) flags {
	f := flags{}
	var rest []string
	for _, a := range args {
		name, ok := strings.CutPrefix(a, "--")
		if !ok || name == "" {
			rest = append(rest, a)
			continue
		}
		k, v, hasValue := strings.Cut(name, "=")
		if k == "" { // "--=x" names no flag
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			v = "true"
		}
		if prev, dup := f[k]; dup {
			v = prev + "," + v // a repeated flag (e.g. --key) keeps every value
		}
		f[k] = v
	}
	if len(rest) > 0 {
		f[""] = strings.Join(rest, " ")
	}
	return f
}

func (f flags) get(k string) string { return f[k] }

// describe names a flag in a finding.
func flagName(k string) string {
	if k == "" {
		return "positional arguments"
	}
	return "--" + k
}

// objectRef names a Secret or ConfigMap a Pod template needs.
type objectRef struct {
	resource  string // "secrets" or "configmaps"
	namespace string
	name      string
}

func (o objectRef) kind() string {
	if o.resource == "secrets" {
		return "Secret"
	}
	return "ConfigMap"
}

func (o objectRef) String() string { return fmt.Sprintf("%s %s/%s", o.kind(), o.namespace, o.name) }

// objectResult is what a metadata-only get of an object said.
type objectResult struct {
	meta *metav1.PartialObjectMetadata
	err  error
}

// object gets the metadata of ref once per cluster.
func (s *state) object(ctx context.Context, ref objectRef) objectResult {
	if r, ok := s.objects[ref]; ok {
		return r
	}
	m, err := s.cluster.meta(ctx, ref.resource, ref.namespace, ref.name)
	r := objectResult{meta: m, err: err}
	s.objects[ref] = r
	return r
}
