package readiness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// objects is every object of w, for the fake clientset.
func (w *world) objects() []runtime.Object {
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.validatorsNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.fencingNS}},
	}
	for _, o := range w.nodes {
		objs = append(objs, o)
	}
	for _, o := range w.secrets {
		objs = append(objs, o)
	}
	for _, o := range w.configMaps {
		objs = append(objs, o)
	}
	for _, o := range w.accounts {
		objs = append(objs, o)
	}
	for _, o := range w.services {
		objs = append(objs, o)
	}
	for _, o := range w.sets {
		objs = append(objs, o)
	}
	for _, o := range w.deps {
		objs = append(objs, o)
	}
	for _, o := range w.pods {
		objs = append(objs, o)
	}
	return objs
}

// fakeCluster is w on the fake clientset. Its probe asks the fake's
// discovery (so reactors can fail it) and stamps the clock at now; its
// metadata reads go through typed gets, which the fake serves (there is no
// key material in these tests).
func fakeCluster(name string, w *world, now func() time.Time) (*cluster, *fake.Clientset) {
	c := fake.NewSimpleClientset(w.objects()...)
	cl := &cluster{name: name, client: c}
	cl.probe = func(ctx context.Context) (clockSample, error) {
		if _, err := c.Discovery().ServerVersion(); err != nil {
			return clockSample{}, err
		}
		t := now()
		return dateSample(t.UTC().Format(http.TimeFormat), t, t), nil
	}
	cl.meta = func(ctx context.Context, resource, ns, n string) (*metav1.PartialObjectMetadata, error) {
		var om metav1.ObjectMeta
		switch resource {
		case "secrets":
			s, err := c.CoreV1().Secrets(ns).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			om = s.ObjectMeta
		case "configmaps":
			m, err := c.CoreV1().ConfigMaps(ns).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			om = m.ObjectMeta
		default:
			return nil, fmt.Errorf("no resource %s", resource)
		}
		return &metav1.PartialObjectMetadata{ObjectMeta: om}, nil
	}
	return cl, c
}

func fakeOptions() Options {
	o := Options{Contexts: []string{"region-a", "region-b"}}
	o.defaults()
	return o
}

// etcdNotChecked are the findings of a run without coordinators.
var etcdNotChecked = []want{
	{Warn, CheckEtcd, "region-a", "coordinator"},
	{Warn, CheckEtcd, "region-b", "coordinator"},
	{Warn, CheckEtcd, "etcd", "members"},
}

func runFake(t *testing.T, plant func(a, b *world), react func(a, b *fake.Clientset)) Report {
	t.Helper()
	a, b := newWorld(t, "region-a", true, ""), newWorld(t, "region-b", false, "")
	if plant != nil {
		plant(a, b)
	}
	ca, fa := fakeCluster("region-a", a, time.Now)
	cb, fb := fakeCluster("region-b", b, time.Now)
	if react != nil {
		react(fa, fb)
	}
	rep, err := run(context.Background(), fakeOptions(), []*cluster{ca, cb})
	if err != nil {
		t.Fatalf("run() = %v", err)
	}
	return rep
}

// The fake clientset serves the same renders as the real API servers: with
// no coordinator to ask, only etcd is not checked.
func TestFakeClean(t *testing.T) {
	rep := runFake(t, nil, nil)
	expectOnly(t, rep, etcdNotChecked...)
	if rep.ExitCode() != ExitWarn {
		t.Errorf("ExitCode() = %d, want %d: etcd not checked is a warning, never OK", rep.ExitCode(), ExitWarn)
	}
}

func forbidden(resource string) error {
	return apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "", errors.New(`User "bob" cannot list resource`))
}

// What the kubeconfig user may not read is reported as not checked (a
// warning), and what depends on it is not compared.
func TestFakeForbidden(t *testing.T) {
	rep := runFake(t, nil, func(a, b *fake.Clientset) {
		b.PrependReactor("list", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
			return act.GetNamespace() == DefaultNamespace, nil, forbidden("pods")
		})
		b.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, forbidden("nodes")
		})
		b.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, forbidden("secrets")
		})
	})
	expectOnly(t, rep, append(etcdNotChecked,
		want{Warn, CheckSidecar, "region-b", "namespace validators"},
		want{Warn, CheckCoordinator, "region-b", "fencing spread"},
		want{Warn, CheckSecrets, "region-b", "Secret fencing/fencing-etcd-client"},
		want{Warn, CheckSecrets, "region-b", "Secret fencing/fencing-tls"},
	)...)
	for _, f := range rep.Findings {
		if f.Cluster == "region-b" && f.Severity == Warn && f.Check != CheckEtcd && !strings.Contains(f.Detail, "forbidden") {
			t.Errorf("%s %s: %q does not say it was forbidden", f.Check, f.Subject, f.Detail)
		}
		if f.Check == CheckCoordinator && f.Cluster == "region-b" && f.Severity == Warn && !strings.Contains(f.Detail, "spread over topology.kubernetes.io/zone (maxSkew 1, ScheduleAnyway)") {
			t.Errorf("with nodes forbidden the spread finding should say what the Deployment asks for: %q", f.Detail)
		}
	}
}

func connectionRefused() error {
	return &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/version", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
}

// A cluster that does not answer is one critical finding, and nothing of
// it is compared.
func TestFakeUnreachable(t *testing.T) {
	rep := runFake(t, nil, func(a, b *fake.Clientset) {
		b.PrependReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, connectionRefused()
		})
	})
	expectOnly(t, rep, append(etcdNotChecked, want{Critical, CheckAPIServer, "region-b", "api-server"})...)
	for _, f := range rep.Findings {
		if f.Cluster == "region-b" && f.Check != CheckAPIServer && f.Check != CheckEtcd || strings.Contains(f.Cluster, " vs ") {
			t.Errorf("region-b did not answer, yet: %+v", f)
		}
	}
	if rep.ExitCode() != ExitCritical {
		t.Errorf("ExitCode() = %d, want %d", rep.ExitCode(), ExitCritical)
	}
}

// Each planted state of the two clusters and the finding it must produce.
func TestFakeFindings(t *testing.T) {
	sidecar := func(w *world, edit func(st *corev1.ContainerStatus)) {
		p := w.pods[0]
		for i := range p.Status.ContainerStatuses {
			if p.Status.ContainerStatuses[i].Name == sidecarContainer {
				edit(&p.Status.ContainerStatuses[i])
			}
		}
	}
	tests := []struct {
		name  string
		plant func(a, b *world)
		want  []want
	}{
		{"active holds no lease", func(a, b *world) { sidecar(a, func(st *corev1.ContainerStatus) { st.Ready = false }) },
			[]want{{Critical, CheckSidecar, "region-a", "besu-validator-1-0"}}},
		{"standby holds a lease", func(a, b *world) { sidecar(b, func(st *corev1.ContainerStatus) { st.Ready = true }) },
			[]want{{Critical, CheckSidecar, "region-b", "besu-validator-1-0"}}},
		{"standby terminated", func(a, b *world) {
			sidecar(b, func(st *corev1.ContainerStatus) {
				st.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2}}
			})
		}, []want{{Critical, CheckSidecar, "region-b", "besu-validator-1-0"}}},
		{"standby restarts", func(a, b *world) { sidecar(b, func(st *corev1.ContainerStatus) { st.RestartCount = 4 }) },
			[]want{{Warn, CheckSidecar, "region-b", "besu-validator-1-0"}}},
		{"active scaled to zero", func(a, b *world) { a.sets[0].Spec.Replicas = ptrTo(int32(0)); a.pods = a.pods[1:] },
			[]want{{Critical, CheckSidecar, "region-a", "besu-validator-1"}}},
		{"standby without its Pod", func(a, b *world) { b.pods = b.pods[1:] },
			[]want{{Critical, CheckSidecar, "region-b", "besu-validator-1"}}},
		{"no StatefulSet in the standby", func(a, b *world) { b.sets = nil; b.pods = b.pods[1:] }, []want{
			{Critical, CheckSidecar, "region-b", "namespace validators"},
			{Critical, CheckSidecar, "region-b", "besu-validator-1"},
		}},
		{"a sidecar Pod of no StatefulSet", func(a, b *world) { b.pods[0].Labels = map[string]string{sidecarLabel: "true"} }, []want{
			{Warn, CheckSidecar, "region-b", "pod besu-validator-1-0"},
			{Critical, CheckSidecar, "region-b", "besu-validator-1 (0x"}, // its StatefulSet now has no Pod
		}},
		{"one holder in both", func(a, b *world) {
			b.sidecarArgs(func(args []string) []string { return setArg(args, "holder", "region-a") })
		}, []want{
			{Critical, CheckValues, "region-a vs region-b", "besu-validator-1 --holder"},
			{Warn, CheckValues, "region-b", holderLabel},
		}},
		{"validator as a name", func(a, b *world) {
			for _, w := range []*world{a, b} {
				w.sidecarArgs(func(args []string) []string { return setArg(args, "validator", "besu-1") })
			}
		}, []want{{Warn, CheckKeyAddress, "region-a vs region-b", "besu-validator-1"}}},
		{"chart version drift", func(a, b *world) { b.sets[0].Labels[chartLabel] = "besu-validator-0.2.0" },
			[]want{{Warn, CheckValues, "region-a vs region-b", "label helm.sh/chart"}}},
		{"sidecar env drift", func(a, b *world) {
			editContainer(&b.sets[0].Spec.Template.Spec, sidecarContainer, func(c *corev1.Container) {
				c.Env = append(c.Env, corev1.EnvVar{Name: "FENCE_LOG_LEVEL", Value: "debug"})
			})
		}, []want{{Warn, CheckValues, "region-a vs region-b", "env FENCE_LOG_LEVEL"}}},
		{"etcd endpoints drift", func(a, b *world) {
			editContainer(&b.deps[0].Spec.Template.Spec, "fence-coordinator", func(c *corev1.Container) {
				c.Args = setArg(c.Args, "etcd-endpoints", "https://etcd-b.fencing.example.com:2379")
			})
		}, []want{{Warn, CheckValues, "region-a vs region-b", "fencing --etcd-endpoints"}}},
		{"missing image pull Secret", func(a, b *world) {
			b.sets[0].Spec.Template.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
		}, []want{{Warn, CheckSecrets, "region-b", "Secret validators/registry"}}},
		{"missing CA bundle", func(a, b *world) {
			b.configMaps = b.configMaps[:0]
		}, []want{
			{Critical, CheckSecrets, "region-b", "ConfigMap validators/fencing-coordinator-ca"},
			{Critical, CheckSecrets, "region-b", "ConfigMap validators/besu-genesis"},
		}},
		{"operator token Secret missing", func(a, b *world) {
			spec := &b.deps[0].Spec.Template.Spec
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "operator-token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "fencing-operator-token"}}})
		}, []want{{Critical, CheckSecrets, "region-b", "Secret fencing/fencing-operator-token"}}},
		{"optional Secret missing", func(a, b *world) {
			spec := &b.deps[0].Spec.Template.Spec
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "extra", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "extra", Optional: ptrTo(true)}}})
		}, nil},
		{"no coordinator Ready", func(a, b *world) {
			for _, p := range b.pods[1:] {
				p.Status.Conditions = nil
			}
		}, []want{{Critical, CheckCoordinator, "region-b", "fencing replicas"}}},
		{"one coordinator replica Ready", func(a, b *world) { b.pods[2].Status.Conditions = nil }, []want{
			{Warn, CheckCoordinator, "region-b", "fencing replicas"},
			{Warn, CheckCoordinator, "region-b", "fencing spread"},
		}},
		{"nodes without zones", func(a, b *world) {
			for _, n := range b.nodes {
				n.Labels = nil
			}
		}, []want{{Warn, CheckCoordinator, "region-b", "fencing spread"}}},
		{"no coordinator", func(a, b *world) { b.deps = nil; b.pods = b.pods[:1] },
			[]want{{Critical, CheckCoordinator, "region-b", "namespace fencing"}}},
		{"coordinator image drift", func(a, b *world) {
			editContainer(&b.deps[0].Spec.Template.Spec, "fence-coordinator", func(c *corev1.Container) { c.Image += "-rc1" })
		}, []want{{Warn, CheckImages, "region-a vs region-b", "fencing/fence-coordinator"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expectOnly(t, runFake(t, tt.plant, nil), append(etcdNotChecked, tt.want...)...)
		})
	}
}

// writeKubeconfig writes a kubeconfig whose contexts point at servers.
func writeKubeconfig(t *testing.T, servers map[string]string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for name, server := range servers {
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "not-a-real-token"}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedPort is a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestCheckUnknownContext(t *testing.T) {
	kc := writeKubeconfig(t, map[string]string{"region-a": "https://" + closedPort(t)})
	rep, err := Check(context.Background(), Options{Kubeconfig: kc, Contexts: []string{"region-a", "region-x"}})
	if fencing.CodeOf(err) != fencing.CodeBadRequest || !strings.Contains(err.Error(), `"region-x"`) || !strings.Contains(err.Error(), "have: region-a") {
		t.Fatalf("Check(unknown context) = %v, want bad_request naming it and the contexts there are", err)
	}
	if rep.ExitCode() != ExitNotChecked {
		t.Errorf("ExitCode() after an error = %d, want %d", rep.ExitCode(), ExitNotChecked)
	}
	t.Logf("unknown context: %v", err)
}

func TestCheckMissingKubeconfig(t *testing.T) {
	_, err := Check(context.Background(), Options{Kubeconfig: filepath.Join(t.TempDir(), "nope"), Contexts: []string{"a", "b"}})
	if fencing.CodeOf(err) != fencing.CodeBadRequest {
		t.Fatalf("Check(missing kubeconfig) = %v, want bad_request", err)
	}
}

func TestCheckBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Contexts: []string{"a"}},
		{Contexts: []string{"a", "b", "c"}},
		{Contexts: []string{"a", "a"}},
		{Contexts: []string{"a", ""}},
		{Contexts: []string{"a", "b"}, SafetyMargin: -time.Second},
	} {
		if _, err := Check(context.Background(), o); fencing.CodeOf(err) != fencing.CodeBadRequest {
			t.Errorf("Check(%+v) = %v, want bad_request", o, err)
		}
	}
}

// A context whose API server does not answer, through the real client:
// a critical finding per cluster, not an error.
func TestCheckUnreachableContext(t *testing.T) {
	kc := writeKubeconfig(t, map[string]string{"region-a": "https://" + closedPort(t), "region-b": "https://" + closedPort(t)})
	rep, err := Check(context.Background(), Options{Kubeconfig: kc, Contexts: []string{"region-a", "region-b"}})
	if err != nil {
		t.Fatalf("Check(unreachable) = %v, want a report", err)
	}
	expectOnly(t, rep, append(etcdNotChecked,
		want{Critical, CheckAPIServer, "region-a", "api-server"},
		want{Critical, CheckAPIServer, "region-b", "api-server"})...)
	if rep.ExitCode() != ExitCritical {
		t.Errorf("ExitCode() = %d, want %d", rep.ExitCode(), ExitCritical)
	}
	t.Logf("unreachable: %s", rep.Summary())
}

func TestCheckCancelled(t *testing.T) {
	kc := writeKubeconfig(t, map[string]string{"region-a": "https://" + closedPort(t), "region-b": "https://" + closedPort(t)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Check(ctx, Options{Kubeconfig: kc, Contexts: []string{"region-a", "region-b"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Check(cancelled) = %v, want context.Canceled", err)
	}
}

func TestSeverityText(t *testing.T) {
	for _, s := range []Severity{OK, Warn, Critical} {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Severity
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("UnmarshalText(%s) = %v, %v, want %v", b, back, err, s)
		}
	}
	if _, err := Severity(7).MarshalText(); err == nil {
		t.Error("MarshalText(7) = nil error")
	}
	var s Severity
	if err := s.UnmarshalText([]byte("fatal")); err == nil || !strings.Contains(err.Error(), "ok, warn or critical") {
		t.Errorf("UnmarshalText(fatal) = %v", err)
	}
}

func TestReportOutputs(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	rep := Report{Contexts: []string{"region-a", "region-b"}, At: at, Findings: []Finding{
		{OK, CheckAPIServer, "region-a", "api-server", "answered"},
		{Warn, CheckImages, "region-a vs region-b", "besu/fence-sidecar", "0.1.0 in region-a,\n0.1.1\tin region-b"},
		{Critical, CheckSecrets, "region-b", "Secret validators/key", "missing"},
	}}
	if rep.Worst() != Critical || rep.ExitCode() != ExitCritical || rep.Count(Warn) != 1 {
		t.Errorf("Worst() = %v, ExitCode() = %d, Count(Warn) = %d", rep.Worst(), rep.ExitCode(), rep.Count(Warn))
	}
	wantSummary := "readiness region-a -> region-b: critical (1 critical, 1 warn, 1 ok); first critical: secrets region-b Secret validators/key: missing"
	if got := rep.Summary(); got != wantSummary {
		t.Errorf("Summary() = %q, want %q", got, wantSummary)
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "SEVERITY") || !strings.HasPrefix(lines[2], "warn") || lines[4] != "critical: 1 critical, 1 warn, 1 ok (exit 2)" {
		t.Errorf("WriteTable() =\n%s", b.String())
	}
	j, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Report
		Worst    Severity `json:"worst"`
		ExitCode int      `json:"exit_code"`
	}
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if back.Worst != Critical || back.ExitCode != 2 || len(back.Findings) != 3 || back.Findings[2].Severity != Critical || !back.At.Equal(at) {
		t.Errorf("JSON %s read back as %+v", j, back)
	}
	if !bytes.Contains(j, []byte(`"severity":"warn"`)) {
		t.Errorf("JSON %s: severity not a word", j)
	}
	empty, _ := json.Marshal(Report{Contexts: []string{"a", "b"}})
	if !bytes.Contains(empty, []byte(`"findings":[]`)) || !bytes.Contains(empty, []byte(`"exit_code":3`)) {
		t.Errorf("empty report JSON = %s", empty)
	}
	if (Report{}).Summary() != "readiness : nothing checked" {
		t.Errorf("Summary() of nothing = %q", (Report{}).Summary())
	}
	if (Report{Findings: []Finding{{Severity: OK}}}).ExitCode() != ExitOK || (Report{Findings: []Finding{{Severity: Warn}}}).ExitCode() != ExitWarn {
		t.Error("ExitCode() of an OK or a warning report is wrong")
	}
}
