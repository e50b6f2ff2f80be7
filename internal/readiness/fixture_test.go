package readiness

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// The objects of one cluster as the charts render them for its region
// (docs/examples), plus what an operator creates by hand (namespaces, the
// key Secret, the etcd client Secret, the genesis ConfigMap) and what the
// controllers and kubelet would (Nodes, Pods with their status: no
// controller runs in the test API server).
type world struct {
	region       string
	validatorsNS string
	fencingNS    string
	nodes        []*corev1.Node
	secrets      []*corev1.Secret
	configMaps   []*corev1.ConfigMap
	accounts     []*corev1.ServiceAccount
	services     []*corev1.Service
	sets         []*appsv1.StatefulSet
	deps         []*appsv1.Deployment
	pods         []*corev1.Pod
}

const (
	exampleValidator = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
	otherValidator   = "0xAb8483F64d9C6d1EcF9b849Ae677dD3315835cb2"
	placeholder      = `"<generated at install, kept across upgrades>"`
)

// examplesDir is docs/examples of this repository.
func examplesDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the test's source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "examples")
}

// newWorld renders region's cluster. suffix makes names unique per subtest
// on a shared API server (namespaces and nodes); active decides the
// standby's replicas and Pod states.
func newWorld(t testing.TB, region string, active bool, suffix string) *world {
	t.Helper()
	w := &world{region: region, validatorsNS: "validators" + suffix, fencingNS: "fencing" + suffix}
	for _, f := range []string{"fencing-" + region + ".yaml", "besu-validator-" + region + ".yaml"} {
		w.addRendered(t, filepath.Join(examplesDir(t), f))
	}
	// What docs/kubernetes.md has the operator create by hand. The key
	// Secret holds no key: this check never reads it.
	w.secrets = append(w.secrets,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "fencing-etcd-client", Namespace: w.fencingNS}, Data: map[string][]byte{"ca.crt": []byte("test"), "tls.crt": []byte("test"), "tls.key": []byte("test")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "besu-validator-1-key", Namespace: w.validatorsNS}, Data: map[string][]byte{"key": []byte("not a key"), "password": []byte("not a password")}},
	)
	w.configMaps = append(w.configMaps, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "besu-genesis", Namespace: w.validatorsNS}, Data: map[string]string{"genesis.json": "{}"}})
	for i := 1; i <= 2; i++ {
		w.nodes = append(w.nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:   fmt.Sprintf("%s-node-%d%s", region, i, suffix),
			Labels: map[string]string{zoneLabel: fmt.Sprintf("%s-zone-%d", region, i)},
		}})
	}
	// The standby runs its validator Pods (hot-warm): without a lease they
	// do not sign.
	for _, s := range w.sets {
		s.Spec.Replicas = ptrTo(int32(1))
		w.pods = append(w.pods, podOf(s, 0, w.nodes[0].Name, active))
	}
	for _, d := range w.deps {
		for i := range int(*d.Spec.Replicas) {
			w.pods = append(w.pods, coordinatorPod(d, i, w.nodes[i%len(w.nodes)].Name))
		}
	}
	return w
}

func ptrTo[T any](v T) *T { return &v }

// testCert is a throwaway self-signed certificate and its key, base64 PEM.
var testCert = sync.OnceValues(func() ([2]string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return [2]string{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fencing test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return [2]string{}, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return [2]string{}, err
	}
	b64 := func(typ string, b []byte) string {
		return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}))
	}
	return [2]string{b64("CERTIFICATE", der), b64("EC PRIVATE KEY", kder)}, nil
})

// withTestCertificate fills the rendered TLS Secrets' placeholders with
// testCert (the API server warns about data that is no PEM).
func withTestCertificate(t testing.TB, doc string) string {
	t.Helper()
	c, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		v := c[0]
		if strings.Contains(l, "tls.key:") {
			v = c[1]
		}
		lines[i] = strings.ReplaceAll(l, placeholder, `"`+v+`"`)
	}
	return strings.Join(lines, "\n")
}

// addRendered decodes the committed helm output at path, keeping the kinds
// the check reads (and those it does not need dropped: RBAC, policies,
// monitoring resources and the helm test Pod).
func (w *world) addRendered(t testing.TB, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch tm.Kind {
		case "Secret":
			// helm generates the CA and certificate at install.
			doc = []byte(withTestCertificate(t, string(doc)))
		case "ServiceAccount", "Service", "StatefulSet", "Deployment", "ConfigMap":
		default:
			continue
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(j, nil, nil)
		if err != nil {
			t.Fatalf("%s: decode %s: %v", path, tm.Kind, err)
		}
		switch o := obj.(type) {
		case *corev1.Secret:
			o.Namespace = w.ns(o.Namespace)
			w.secrets = append(w.secrets, o)
		case *corev1.ConfigMap:
			o.Namespace = w.ns(o.Namespace)
			w.configMaps = append(w.configMaps, o)
		case *corev1.ServiceAccount:
			o.Namespace = w.ns(o.Namespace)
			w.accounts = append(w.accounts, o)
		case *corev1.Service:
			o.Namespace = w.ns(o.Namespace)
			w.services = append(w.services, o)
		case *appsv1.StatefulSet:
			o.Namespace = w.ns(o.Namespace)
			w.sets = append(w.sets, o)
		case *appsv1.Deployment:
			o.Namespace = w.ns(o.Namespace)
			w.deps = append(w.deps, o)
		}
	}
}

// ns maps the rendered namespaces to this world's.
func (w *world) ns(rendered string) string {
	switch rendered {
	case "validators":
		return w.validatorsNS
	case "fencing":
		return w.fencingNS
	}
	return rendered
}

// podOf is Pod i of s as the StatefulSet controller would create it (claim
// volumes included) and as the kubelet would report it: every container
// running; the sidecar ready only where it holds a lease (leased).
func podOf(s *appsv1.StatefulSet, i int, node string, leased bool) *corev1.Pod {
	name := fmt.Sprintf("%s-%d", s.Name, i)
	spec := *s.Spec.Template.Spec.DeepCopy()
	spec.NodeName = node
	for _, c := range s.Spec.VolumeClaimTemplates {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: c.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name + "-" + name},
		}})
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Namespace, Labels: s.Spec.Template.Labels},
		Spec:       spec,
	}
	p.Status = runningStatus(spec, func(c string) bool { return c != sidecarContainer || leased })
	return p
}

// coordinatorPod is replica i of d on node, Ready.
func coordinatorPod(d *appsv1.Deployment, i int, node string) *corev1.Pod {
	spec := *d.Spec.Template.Spec.DeepCopy()
	spec.NodeName = node
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-7d9f8-%d", d.Name, i), Namespace: d.Namespace, Labels: d.Spec.Template.Labels},
		Spec:       spec,
	}
	p.Status = runningStatus(spec, func(string) bool { return true })
	return p
}

// runningStatus is the status of a Pod whose containers all run; ready says
// which are ready.
func runningStatus(spec corev1.PodSpec, ready func(container string) bool) corev1.PodStatus {
	started := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	st := corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started}
	all := true
	for _, c := range spec.Containers {
		r := ready(c.Name)
		all = all && r
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "docker-pullable://" + c.Image, Ready: r, Started: ptrTo(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		})
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: started}
	}
	st.Conditions = []corev1.PodCondition{cond(corev1.PodScheduled, true), cond(corev1.PodInitialized, true), cond(corev1.ContainersReady, all), cond(corev1.PodReady, all)}
	return st
}

// sidecarArgs edits the sidecar's args of every StatefulSet and its Pods.
func (w *world) sidecarArgs(edit func(args []string) []string) {
	for _, s := range w.sets {
		editContainer(&s.Spec.Template.Spec, sidecarContainer, func(c *corev1.Container) { c.Args = edit(c.Args) })
	}
	for _, p := range w.pods {
		editContainer(&p.Spec, sidecarContainer, func(c *corev1.Container) { c.Args = edit(c.Args) })
	}
}

func editContainer(spec *corev1.PodSpec, name string, edit func(*corev1.Container)) {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			edit(&spec.Containers[i])
		}
	}
}

// setArg replaces --name=... in args.
func setArg(args []string, name, value string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if strings.HasPrefix(a, "--"+name+"=") {
			a = "--" + name + "=" + value
		}
		out = append(out, a)
	}
	return out
}

// pod finds a Pod by name prefix.
func (w *world) pod(t testing.TB, prefix string) *corev1.Pod {
	t.Helper()
	for _, p := range w.pods {
		if strings.HasPrefix(p.Name, prefix) {
			return p
		}
	}
	t.Fatalf("no Pod %s* in %s", prefix, w.region)
	return nil
}

// apply creates everything in w through client: namespaces first, Pods
// created and then given their status through the status subresource, as
// the kubelet does.
func (w *world) apply(ctx context.Context, t testing.TB, c kubernetes.Interface) {
	t.Helper()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s in %s: %v", what, w.region, err)
		}
	}
	for _, ns := range []string{w.validatorsNS, w.fencingNS} {
		_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		must("namespace "+ns, err)
	}
	for _, n := range w.nodes {
		_, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		must("node "+n.Name, err)
	}
	for _, o := range w.secrets {
		_, err := c.CoreV1().Secrets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		must("secret "+o.Name, err)
	}
	for _, o := range w.configMaps {
		_, err := c.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		must("configmap "+o.Name, err)
	}
	for _, o := range w.accounts {
		_, err := c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		must("serviceaccount "+o.Name, err)
	}
	for _, o := range w.services {
		_, err := c.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		must("service "+o.Name, err)
	}
	for _, o := range w.sets {
		_, err := c.AppsV1().StatefulSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		must("statefulset "+o.Name, err)
	}
	for _, o := range w.deps {
		_, err := c.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		must("deployment "+o.Name, err)
	}
	for _, p := range w.pods {
		status := p.Status
		created, err := c.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		must("pod "+p.Name, err)
		created.Status = status
		_, err = c.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
		must("pod status "+p.Name, err)
	}
}
