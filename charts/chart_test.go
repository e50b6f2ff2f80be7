package charts

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite docs/examples from the rendered charts")

const (
	fencingChart = "fencing"
	besuChart    = "examples/besu-validator"
	helmVersion  = "v3.22.0"
)

// helm runs hack/helm.sh (helm at the pinned version, installed on first
// use) in this directory and returns its stdout; stderr is in the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if testing.Short() && os.Getenv("FENCE_HELM") == "" && !helmCached() {
		t.Skipf("helm %s is not installed yet and installing takes minutes; skipped with -short (run hack/helm.sh version once)", helmVersion)
	}
	cmd := exec.Command("bash", append([]string{"../hack/helm.sh"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func helmCached() bool {
	cache := os.Getenv("FENCE_HELM_CACHE")
	if cache == "" {
		out, err := exec.Command("go", "env", "GOCACHE").Output()
		if err != nil {
			return false
		}
		cache = filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "fencing-helm")
	}
	_, err := os.Stat(filepath.Join(cache, helmVersion, "helm"))
	return err == nil
}

// render is helm template with the given release, namespace and values.
type render struct {
	name      string
	chart     string
	release   string
	namespace string
	values    []string // -f files
	set       []string // --set
	// apiVersions are --api-versions for helm template (helm lint has no
	// such flag), e.g. cert-manager.io/v1 to render the cert-manager path.
	apiVersions []string
}

func (r render) args(verb string) []string {
	var a []string
	switch verb {
	case "template":
		a = []string{"template", r.release, r.chart, "--namespace", r.namespace}
	case "lint":
		a = []string{"lint", "--strict", r.chart, "--namespace", r.namespace}
	}
	for _, f := range r.values {
		a = append(a, "-f", f)
	}
	for _, s := range r.set {
		a = append(a, "--set", s)
	}
	if verb == "template" {
		for _, v := range r.apiVersions {
			a = append(a, "--api-versions", v)
		}
	}
	return a
}

// The renders every test below uses; the region and Besu ones are the
// worked example whose output is committed in docs/examples. The default
// values alone do not render (TestDefaultValuesSayWhatToSet): minimal adds
// only what the chart refuses to guess.
var (
	renderDefault = render{name: "default values", chart: fencingChart, release: "fencing", namespace: "fencing"}
	renderMinimal = render{name: "minimal values", chart: fencingChart, release: "fencing", namespace: "fencing", values: []string{"testdata/minimal.yaml"}}
	renderAll     = render{name: "all features", chart: fencingChart, release: "fencing-all", namespace: "fencing-all", values: []string{"testdata/all-features.yaml"}, apiVersions: []string{"cert-manager.io/v1"}}
	renderRegionA = render{name: "coordinator region A", chart: fencingChart, release: "fencing", namespace: "fencing", values: []string{"examples/fencing-region-a.yaml"}}
	renderRegionB = render{name: "coordinator region B", chart: fencingChart, release: "fencing", namespace: "fencing", values: []string{"examples/fencing-region-b.yaml"}}
	renderBesuA   = render{name: "besu region A", chart: besuChart, release: "besu-validator-1", namespace: "validators", values: []string{besuChart + "/values-region-a.yaml"}}
	renderBesuB   = render{name: "besu region B", chart: besuChart, release: "besu-validator-1", namespace: "validators", values: []string{besuChart + "/values-region-b.yaml"}}
	// A validator with a signing seam and fence-sidecar in a container of
	// its own (the fencing.sidecar named template).
	renderSidecar  = render{name: "sidecar container", chart: "testdata/sidecar-container", release: "validator-1", namespace: "validators"}
	allRenders     = []render{renderDefault, renderMinimal, renderAll, renderRegionA, renderRegionB, renderBesuA, renderBesuB, renderSidecar}
	committedFiles = map[string]render{
		"fencing-region-a.yaml":        renderRegionA,
		"fencing-region-b.yaml":        renderRegionB,
		"besu-validator-region-a.yaml": renderBesuA,
		"besu-validator-region-b.yaml": renderBesuB,
	}
)

func TestLint(t *testing.T) {
	for _, r := range allRenders {
		t.Run(r.name, func(t *testing.T) {
			out, err := helm(t, r.args("lint")...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
				t.Errorf("helm lint output:\n%s", out)
			}
		})
	}
}

// object is one rendered manifest.
type object struct {
	*unstructured.Unstructured
	source string
}

func (o object) String() string { return o.GetKind() + "/" + o.GetName() }

// parseManifests splits helm template output into objects.
func parseManifests(t *testing.T, out string) []object {
	t.Helper()
	var objs []object
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if string(j) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatalf("rendered object: %v\n%s", err, doc)
		}
		src := ""
		if m := regexp.MustCompile(`# Source: (\S+)`).FindSubmatch(doc); m != nil {
			src = string(m[1])
		}
		objs = append(objs, object{u, src})
	}
}

func renderObjects(t *testing.T, r render) []object {
	t.Helper()
	out, err := helm(t, r.args("template")...)
	if err != nil {
		t.Fatal(err)
	}
	return parseManifests(t, out)
}

func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	t.Fatalf("no %s/%s in %v", kind, name, objs)
	return object{}
}

// The default values fail at render time (helm install and template) and
// say every value to set, instead of installing a coordinator that exits 2
// and crash-loops. helm lint turns fail into an [INFO] line (TestLint lints
// the defaults).
func TestDefaultValuesSayWhatToSet(t *testing.T) {
	want := []string{
		"The fencing chart needs these values:",
		"etcd.endpoints is empty: list the client URLs of your etcd members",
		"etcd.tls.secretName is empty: name the Secret",
		"auth.bindings is empty: the coordinator refuses to start without them",
	}
	out, err := helm(t, renderDefault.args("template")...)
	if err == nil {
		t.Fatalf("helm template of the default values succeeded, want it to fail and say what to set:\n%.600s", out)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("helm template error lacks %q:\n%v", w, err)
		}
	}
	// Each problem alone is reported, and the other values then render.
	tests := []struct {
		set     []string
		wantErr string
	}{
		{[]string{"etcd.endpoints=null"}, "etcd.endpoints is empty"},
		{[]string{"etcd.tls.secretName="}, "etcd.tls.secretName is empty"},
		{[]string{"auth.bindings=null"}, "auth.bindings is empty"},
		{[]string{"operatorAuth.modes={token}"}, "operatorAuth.modes has token but operatorAuth.tokenSecret.name is empty"},
		{[]string{"operatorAuth.modes={mtls}", "tests.enabled=false"}, "operatorAuth.modes has mtls but operatorAuth.clientCA.secretName is empty"},
		{[]string{"operatorAuth.modes={mtls}", "operatorAuth.clientCA.secretName=ca", "coordinator.tls.enabled=false", "tests.enabled=false"}, "operatorAuth.modes has mtls, which needs coordinator.tls.enabled=true"},
		{[]string{"operatorAuth.modes={mtls}", "operatorAuth.clientCA.secretName=ca"}, "tests.enabled needs operatorAuth.modes to include kubernetes or token"},
		{[]string{"operatorAuth.modes=null"}, "operatorAuth.modes is empty"},
		{[]string{"coordinator.tls.certificate=secret"}, "coordinator.tls.certificate is secret but coordinator.tls.secretName is empty"},
		{[]string{"coordinator.tls.certificate=secret", "coordinator.tls.secretName=mine"}, "coordinator.tls.caBundle.pem is empty"},
		{[]string{"coordinator.tls.certificate=certManager", "coordinator.tls.certManager.issuerRef.name=corp-ca"}, "coordinator.tls.caBundle.pem is empty"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.set, ","), func(t *testing.T) {
			r := renderMinimal
			r.set = tt.set
			_, err := helm(t, r.args("template")...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("helm template --set %v error = %v, want %q", tt.set, err, tt.wantErr)
			}
		})
	}
}

func TestTemplate(t *testing.T) {
	coordinatorKinds := []string{
		"ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy",
		"Pod", "PodDisruptionBudget", "Role", "RoleBinding", "RoleBinding", "Secret", "Secret", "Service", "ServiceAccount", "ServiceAccount",
	}
	tests := []struct {
		render    render
		wantKinds []string
	}{
		{renderMinimal, coordinatorKinds},
		// cert-manager: an Issuer and a Certificate instead of the serving
		// Secret; CA bundles in fencing-all, validators, validators-b and
		// monitoring; RoleBindings for events, test, operators and viewers.
		{renderAll, []string{
			"Certificate", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding",
			"ConfigMap", "ConfigMap", "ConfigMap", "ConfigMap", "ConfigMap", "Deployment", "Issuer", "NetworkPolicy",
			"Pod", "PodDisruptionBudget", "PodMonitor", "PrometheusRule", "Role", "RoleBinding", "RoleBinding", "RoleBinding", "RoleBinding",
			"Secret", "Service", "ServiceAccount", "ServiceAccount", "ServiceMonitor",
		}},
		{renderRegionA, slices.Concat(coordinatorKinds, []string{"PodMonitor", "PrometheusRule", "RoleBinding", "RoleBinding", "ServiceMonitor"})},
		{renderBesuA, []string{"Service", "ServiceAccount", "StatefulSet"}},
		{renderBesuB, []string{"Service", "ServiceAccount", "StatefulSet"}},
	}
	for _, tt := range tests {
		t.Run(tt.render.name, func(t *testing.T) {
			objs := renderObjects(t, tt.render)
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.GetKind())
				ns := o.GetNamespace()
				if ns != "" && ns != tt.render.namespace && o.GetKind() != "ConfigMap" {
					t.Errorf("%v is in namespace %q, want %q", o, ns, tt.render.namespace)
				}
			}
			slices.Sort(kinds)
			slices.Sort(tt.wantKinds)
			if !slices.Equal(kinds, tt.wantKinds) {
				t.Errorf("rendered kinds = %v, want %v", kinds, tt.wantKinds)
			}
		})
	}
}

// Release names, namespaces and subjects such as "off", "on", "yes" and "no"
// are valid Kubernetes names but YAML 1.1 booleans: the chart quotes them,
// so they stay strings (helm install refused release "off" before).
func TestYAMLBooleanNames(t *testing.T) {
	r := render{name: "boolean names", chart: fencingChart, release: "off", namespace: "on", set: []string{
		"etcd.endpoints={https://etcd:2379}", "etcd.tls.enabled=false",
		"auth.bindings[0].namespace=yes", "auth.bindings[0].serviceAccount=no", "auth.bindings[0].holder=n",
		"operatorAuth.operators[0].kind=User", "operatorAuth.operators[0].name=y",
	}}
	out, err := helm(t, r.args("template")...)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		// Strict typing: a label or namespace that YAML read as a bool does
		// not decode into these strings.
		var o struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Namespace string            `json:"namespace"`
				Labels    map[string]string `json:"labels"`
			} `json:"metadata"`
			Subjects []struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"subjects"`
		}
		// As helm's and kubectl's decoders do: YAML to JSON without a
		// target type, then JSON into the typed fields.
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(j, &o); err != nil {
			t.Errorf("%v in:\n%.300s", err, doc)
		}
	}
}

// The coordinator's own RBAC is exactly: create tokenreviews and
// subjectaccessreviews (cluster-scoped), create events.events.k8s.io (in its
// namespace). The operator and viewer ClusterRoles grant the verbs the
// coordinator asks SubjectAccessReviews for.
func TestLeastPrivilegeRBAC(t *testing.T) {
	objs := renderObjects(t, renderMinimal)
	rules := func(kind, name string) string {
		o := find(t, objs, kind, name)
		r, _, _ := unstructured.NestedSlice(o.Object, "rules")
		b, _ := json.Marshal(r)
		return string(b)
	}
	const group = `"apiGroups":["fencing.validator-fencing.io"]`
	for _, tt := range []struct{ kind, name, want string }{
		{"ClusterRole", "fencing-fencing-reviews", `[{"apiGroups":["authentication.k8s.io"],"resources":["tokenreviews"],"verbs":["create"]},{"apiGroups":["authorization.k8s.io"],"resources":["subjectaccessreviews"],"verbs":["create"]}]`},
		{"Role", "fencing-events", `[{"apiGroups":["events.k8s.io"],"resources":["events"],"verbs":["create"]}]`},
		{"ClusterRole", "fencing-operator", `[{` + group + `,"resources":["validators"],"verbs":["get","list","create","delete","freeze","unfreeze","bump","abandon"]},{` + group + `,"resources":["audits"],"verbs":["create"]},{` + group + `,"resources":["events"],"verbs":["list"]},{` + group + `,"resources":["holders"],"verbs":["list","create"]},{` + group + `,"resources":["etcd"],"verbs":["get"]}]`},
		{"ClusterRole", "fencing-viewer", `[{` + group + `,"resources":["validators"],"verbs":["get","list"]},{` + group + `,"resources":["events"],"verbs":["list"]},{` + group + `,"resources":["holders"],"verbs":["list"]},{` + group + `,"resources":["etcd"],"verbs":["get"]}]`},
	} {
		if got := rules(tt.kind, tt.name); got != tt.want {
			t.Errorf("%s %s rules =\n%s\nwant\n%s", tt.kind, tt.name, got, tt.want)
		}
	}
	// Without kubernetes operator auth: no SubjectAccessReviews, no operator roles.
	r := renderMinimal
	r.set = []string{"operatorAuth.modes={token}", "operatorAuth.tokenSecret.name=op"}
	objs = renderObjects(t, r)
	if got, want := rules("ClusterRole", "fencing-fencing-reviews"), `[{"apiGroups":["authentication.k8s.io"],"resources":["tokenreviews"],"verbs":["create"]}]`; got != want {
		t.Errorf("token-only ClusterRole rules = %s, want %s", got, want)
	}
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" && o.GetName() != "fencing-fencing-reviews" {
			t.Errorf("token-only operator auth rendered %v", o)
		}
	}
}

func TestCoordinatorDeployment(t *testing.T) {
	d := find(t, renderObjects(t, renderRegionA), "Deployment", "fencing")
	c := container(t, d, "fence-coordinator")
	if cmd := stringSlice(c, "command"); !slices.Equal(cmd, []string{"/usr/local/bin/fence-coordinator"}) {
		t.Errorf("coordinator command = %q, want fence-coordinator", cmd)
	}
	args := strings.Join(stringSlice(c, "args"), " ")
	for _, want := range []string{
		"--listen=:7600",
		"--etcd-endpoints=https://etcd-a.fencing.example.com:2379,https://etcd-b.fencing.example.com:2379,https://etcd-witness.fencing.example.com:2379",
		"--etcd-cacert=/etc/fencing/etcd-tls/ca.crt --etcd-cert=/etc/fencing/etcd-tls/tls.crt --etcd-key=/etc/fencing/etcd-tls/tls.key",
		"--log-json",
		"--tls-cert=/etc/fencing/tls/tls.crt --tls-key=/etc/fencing/tls/tls.key",
		"--events-namespace=fencing",
		"--journal-retention=200000",
		"--auth-audience=fencing-coordinator",
		"--auth-bindings=validators/besu-validator-1=region-a:0x5B38Da6a701c568545dCfcB03FcB875f56beddC4",
		"--operator-auth=kubernetes --operator-namespace=$(POD_NAMESPACE)",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("coordinator args %q lack %q", args, want)
		}
	}
	if env := envFieldRef(c, "POD_NAMESPACE"); env != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE comes from %q, want the downward API metadata.namespace", env)
	}
	checkSecurityContext(t, c)
	if v, _, _ := unstructured.NestedBool(d.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot"); !v {
		t.Error("coordinator Pod securityContext.runAsNonRoot is not true")
	}
	if _, ok, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "affinity", "podAntiAffinity"); !ok {
		t.Error("coordinator has no pod anti-affinity")
	}
	spread, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "topologySpreadConstraints")
	if b, _ := json.Marshal(spread); string(b) != `[{"labelSelector":{"matchLabels":{"app.kubernetes.io/component":"coordinator","app.kubernetes.io/instance":"fencing","app.kubernetes.io/name":"fencing"}},"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"ScheduleAnyway"}]` {
		t.Errorf("default topology spread = %s, want the replicas spread over zones", b)
	}
	if mode, _, _ := unstructured.NestedInt64(volume(t, d, "etcd-tls"), "secret", "defaultMode"); mode != 0o440 {
		t.Errorf("etcd TLS Secret mode = %o, want 440", mode)
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if got, _, _ := unstructured.NestedString(c, probe, "httpGet", "scheme"); got != "HTTPS" {
			t.Errorf("coordinator %s scheme = %q, want HTTPS", probe, got)
		}
	}

	// Every optional setting.
	d = find(t, renderObjects(t, renderAll), "Deployment", "fencing-all")
	c = container(t, d, "fence-coordinator")
	args = strings.Join(stringSlice(c, "args"), " ")
	for _, want := range []string{
		"--operator-auth=kubernetes,token,mtls --operator-namespace=$(POD_NAMESPACE)",
		"--operator-token-file=/etc/fencing/operator-token/token",
		"--client-ca=/etc/fencing/client-ca/ca.crt",
		"--etcd-prefix=/fencing/",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("all-features coordinator args %q lack %q", args, want)
		}
	}
	pull, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "imagePullSecrets")
	if b, _ := json.Marshal(pull); string(b) != `[{"name":"registry"}]` {
		t.Errorf("imagePullSecrets = %s, want [{name: registry}]", b)
	}
	if _, ok, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution"); !ok {
		t.Error("antiAffinity hard did not render a required anti-affinity")
	}
	spread, _, _ = unstructured.NestedSlice(d.Object, "spec", "template", "spec", "topologySpreadConstraints")
	if len(spread) != 2 {
		t.Fatalf("topologySpreadConstraints = %v, want the 2 configured", spread)
	}
	if keys, _, _ := unstructured.NestedStringSlice(spread[1].(map[string]any), "matchLabelKeys"); !slices.Equal(keys, []string{"pod-template-hash"}) {
		t.Errorf("second spread constraint lost matchLabelKeys: %v", spread[1])
	}
	if p, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "securityContext", "fsGroupChangePolicy"); p != "OnRootMismatch" {
		t.Errorf("podSecurityContext.fsGroupChangePolicy = %q, want the configured OnRootMismatch", p)
	}

	// affinity replaces the anti-affinity preset.
	r := renderMinimal
	r.set = []string{"coordinator.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
		"coordinator.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists"}
	d = find(t, renderObjects(t, r), "Deployment", "fencing")
	aff, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "affinity")
	if _, ok := aff["podAntiAffinity"]; ok || aff["nodeAffinity"] == nil {
		t.Errorf("affinity = %v, want only the configured nodeAffinity", aff)
	}
}

// TLS is on by default: the chart generates a CA and a serving certificate
// for the Service's names, publishes the CA to the sidecars' namespaces, and
// the coordinator serves with it. With cert-manager it issues a Certificate
// from the chart's CA instead.
func TestServingCertificate(t *testing.T) {
	t.Run("generated", func(t *testing.T) {
		objs := renderObjects(t, renderMinimal)
		ca := parseCert(t, secretData(t, find(t, objs, "Secret", "fencing-ca"), "tls.crt"))
		if !ca.IsCA {
			t.Errorf("fencing-ca holds a certificate that is not a CA: %v", ca.Subject)
		}
		leafSecret := find(t, objs, "Secret", "fencing-tls")
		if typ, _, _ := unstructured.NestedString(leafSecret.Object, "type"); typ != "kubernetes.io/tls" {
			t.Errorf("serving Secret type = %q, want kubernetes.io/tls", typ)
		}
		leaf := parseCert(t, secretData(t, leafSecret, "tls.crt"))
		if got := secretData(t, leafSecret, "ca.crt"); !bytes.Equal(got, secretData(t, find(t, objs, "Secret", "fencing-ca"), "tls.crt")) {
			t.Error("serving Secret's ca.crt is not the chart's CA")
		}
		for _, name := range []string{"fencing.fencing.svc", "fencing.fencing.svc.cluster.local", "fencing", "localhost"} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool(ca)}); err != nil {
				t.Errorf("serving certificate does not verify for %s with the chart's CA: %v", name, err)
			}
		}
		if !slices.ContainsFunc(leaf.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
			t.Errorf("serving certificate IPs = %v, want 127.0.0.1 (kubectl port-forward)", leaf.IPAddresses)
		}
		// The CA bundle goes to the release namespace and every namespace
		// of auth.bindings, where the sidecars mount it.
		var namespaces []string
		for _, o := range objs {
			if o.GetKind() == "ConfigMap" && o.GetName() == "fencing-coordinator-ca" {
				namespaces = append(namespaces, o.GetNamespace())
				pem, _, _ := unstructured.NestedString(o.Object, "data", "ca.crt")
				if !ca.Equal(parseCert(t, []byte(pem))) {
					t.Errorf("CA bundle in %s is not the chart's CA", o.GetNamespace())
				}
			}
		}
		if !slices.Equal(namespaces, []string{"fencing", "validators"}) {
			t.Errorf("CA bundle namespaces = %v, want [fencing validators]", namespaces)
		}
		d := find(t, objs, "Deployment", "fencing")
		if name, _, _ := unstructured.NestedString(volume(t, d, "tls"), "secret", "secretName"); name != "fencing-tls" {
			t.Errorf("coordinator serves from Secret %q, want fencing-tls", name)
		}
	})

	t.Run("cert-manager", func(t *testing.T) {
		objs := renderObjects(t, renderAll)
		issuer := find(t, objs, "Issuer", "fencing-all-ca")
		if s, _, _ := unstructured.NestedString(issuer.Object, "spec", "ca", "secretName"); s != "fencing-all-ca" {
			t.Errorf("Issuer uses Secret %q, want the chart's CA fencing-all-ca", s)
		}
		cert := find(t, objs, "Certificate", "fencing-all")
		names, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		want := []string{"fencing-all", "fencing-all.fencing-all", "fencing-all.fencing-all.svc", "fencing-all.fencing-all.svc.cluster.local", "localhost", "fencing.region-a.example.com"}
		if !slices.Equal(names, want) {
			t.Errorf("Certificate dnsNames = %v, want %v", names, want)
		}
		if s, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); s != "fencing-all-tls" {
			t.Errorf("Certificate secretName = %q, want fencing-all-tls", s)
		}
		for _, o := range objs {
			if o.GetKind() == "Secret" && o.GetName() == "fencing-all-tls" {
				t.Error("with cert-manager the chart must not render the serving Secret")
			}
		}
		var namespaces []string
		for _, o := range objs {
			if o.GetKind() == "ConfigMap" && o.GetName() == "fencing-coordinator-ca" {
				namespaces = append(namespaces, o.GetNamespace())
			}
		}
		if !slices.Equal(namespaces, []string{"fencing-all", "validators", "validators-b", "monitoring"}) {
			t.Errorf("CA bundle namespaces = %v", namespaces)
		}
	})

	t.Run("your own issuer and CA", func(t *testing.T) {
		caPEM := string(secretData(t, find(t, renderObjects(t, renderMinimal), "Secret", "fencing-ca"), "tls.crt"))
		r := renderMinimal
		r.set = []string{"coordinator.tls.certificate=certManager", "coordinator.tls.certManager.issuerRef.name=corp-ca", "coordinator.tls.certManager.issuerRef.kind=ClusterIssuer"}
		r.values = append(slices.Clone(r.values), writeValues(t, map[string]any{"coordinator": map[string]any{"tls": map[string]any{"caBundle": map[string]any{"pem": caPEM}}}}))
		objs := renderObjects(t, r)
		cert := find(t, objs, "Certificate", "fencing")
		ref, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef")
		if ref["name"] != "corp-ca" || ref["kind"] != "ClusterIssuer" {
			t.Errorf("issuerRef = %v, want ClusterIssuer corp-ca", ref)
		}
		for _, o := range objs {
			if o.GetKind() == "Issuer" || o.GetKind() == "Secret" {
				t.Errorf("with your own issuer the chart must not render %v", o)
			}
		}
		got, _, _ := unstructured.NestedString(find(t, objs, "ConfigMap", "fencing-coordinator-ca").Object, "data", "ca.crt")
		if strings.TrimSpace(got) != strings.TrimSpace(caPEM) {
			t.Errorf("CA bundle = %q, want caBundle.pem", got)
		}
	})

	t.Run("TLS off", func(t *testing.T) {
		r := renderMinimal
		r.set = []string{"coordinator.tls.enabled=false"}
		objs := renderObjects(t, r)
		c := container(t, find(t, objs, "Deployment", "fencing"), "fence-coordinator")
		if args := strings.Join(stringSlice(c, "args"), " "); strings.Contains(args, "--tls-") {
			t.Errorf("tls.enabled=false still passes %q", args)
		}
		if got, _, _ := unstructured.NestedString(c, "readinessProbe", "httpGet", "scheme"); got != "HTTP" {
			t.Errorf("tls.enabled=false readiness probe scheme = %q, want HTTP", got)
		}
		for _, o := range objs {
			if o.GetKind() == "Secret" || o.GetKind() == "ConfigMap" {
				t.Errorf("tls.enabled=false rendered %v", o)
			}
		}
	})
}

func TestSidecarInjection(t *testing.T) {
	s := find(t, renderObjects(t, renderSidecar), "StatefulSet", "validator-1")
	c := container(t, s, "fence-sidecar")
	if cmd := stringSlice(c, "command"); !slices.Equal(cmd, []string{"/usr/local/bin/fence-sidecar"}) {
		t.Errorf("sidecar command = %q, want fence-sidecar", cmd)
	}
	args := stringSlice(c, "args")
	want := []string{
		"--coordinator=https://fencing.fencing.svc:7600",
		"--coordinator-ca=/etc/fencing/coordinator-ca/ca.crt",
		"--name=$(POD_NAME)",
		"--holder=region-a",
		"--validator=0x5B38Da6a701c568545dCfcB03FcB875f56beddC4",
		"--key=/etc/fencing/key/key",
		"--password-file=/etc/fencing/key/password",
		"--listen=127.0.0.1:8550",
		"--metrics-listen=:9464",
		"--state-dir=/var/lib/fencing",
		"--mode=strict",
		"--lease-ttl=15s",
		"--token-file=/var/run/secrets/fencing/token",
	}
	if !slices.Equal(args, want) {
		t.Errorf("sidecar args =\n%q\nwant\n%q", args, want)
	}
	if env := envFieldRef(c, "POD_NAME"); env != "metadata.name" {
		t.Errorf("POD_NAME comes from %q, want the downward API metadata.name", env)
	}
	checkSecurityContext(t, c)
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got, _, _ := unstructured.NestedString(c, probe, "httpGet", "path"); got != path {
			t.Errorf("sidecar %s path = %q, want %q", probe, got, path)
		}
	}
	if _, ok, _ := unstructured.NestedMap(c, "resources", "requests"); !ok {
		t.Error("sidecar has no resource requests")
	}
	key := volume(t, s, "fencing-key")
	if mode, _, _ := unstructured.NestedInt64(key, "secret", "defaultMode"); mode != 0o400 {
		t.Errorf("key Secret defaultMode = %o, want 400", mode)
	}
	if cm, _, _ := unstructured.NestedString(volume(t, s, "fencing-coordinator-ca"), "configMap", "name"); cm != "fencing-coordinator-ca" {
		t.Errorf("coordinator CA volume is ConfigMap %q, want fencing-coordinator-ca (what the coordinator chart publishes)", cm)
	}
	mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
	readOnly := map[string]bool{}
	for _, m := range mounts {
		mm := m.(map[string]any)
		ro, _ := mm["readOnly"].(bool)
		readOnly[mm["name"].(string)] = ro
	}
	if !readOnly["fencing-key"] || !readOnly["fencing-token"] || !readOnly["fencing-coordinator-ca"] {
		t.Errorf("key, token and CA must be mounted read-only: %v", readOnly)
	}
	if _, ok := readOnly["fencing-state"]; !ok {
		t.Error("no state volume mounted")
	}
	tok := volume(t, s, "fencing-token")
	srcs, _, _ := unstructured.NestedSlice(tok, "projected", "sources")
	if len(srcs) != 1 {
		t.Fatalf("token sources = %v", srcs)
	}
	aud, _, _ := unstructured.NestedString(srcs[0].(map[string]any), "serviceAccountToken", "audience")
	if aud != "fencing-coordinator" {
		t.Errorf("projected token audience = %q, want fencing-coordinator", aud)
	}
	claims, _, _ := unstructured.NestedSlice(s.Object, "spec", "volumeClaimTemplates")
	var names []string
	for _, c := range claims {
		n, _, _ := unstructured.NestedString(c.(map[string]any), "metadata", "name")
		names = append(names, n)
	}
	if !slices.Equal(names, []string{"data", "fencing-state"}) {
		t.Errorf("volumeClaimTemplates = %v, want [data fencing-state]", names)
	}
	labels, _, _ := unstructured.NestedStringMap(s.Object, "spec", "template", "metadata", "labels")
	if labels["fencing.validator-fencing.io/sidecar"] != "true" || labels["fencing.validator-fencing.io/holder"] != "region-a" {
		t.Errorf("pod labels %v lack the sidecar labels", labels)
	}

	// Native sidecar, emptyDir state, a CA Secret instead of the ConfigMap.
	r := renderSidecar
	r.set = []string{"fencing.sidecar.nativeSidecar=true", "fencing.sidecar.state.emptyDir=true",
		"fencing.sidecar.coordinatorCA.configMapName=", "fencing.sidecar.coordinatorCA.secretName=corp-ca"}
	s = find(t, renderObjects(t, r), "StatefulSet", "validator-1")
	if p, _, _ := unstructured.NestedString(container(t, s, "fence-sidecar"), "restartPolicy"); p != "Always" {
		t.Errorf("native sidecar restartPolicy = %q, want Always", p)
	}
	if _, ok, _ := unstructured.NestedMap(volume(t, s, "fencing-state"), "emptyDir"); !ok {
		t.Error("state.emptyDir=true did not add an emptyDir volume")
	}
	claims, _, _ = unstructured.NestedSlice(s.Object, "spec", "volumeClaimTemplates")
	if len(claims) != 1 {
		t.Errorf("with state.emptyDir the state claim must go: %v", claims)
	}
	if sec, _, _ := unstructured.NestedString(volume(t, s, "fencing-coordinator-ca"), "secret", "secretName"); sec != "corp-ca" {
		t.Errorf("coordinatorCA.secretName=corp-ca mounted %q", sec)
	}

	// Plain HTTP only when asked for by name.
	r = renderSidecar
	r.set = []string{"fencing.sidecar.coordinatorURLs={http://fencing.fencing.svc:7600}", "fencing.sidecar.allowPlainHTTP=true"}
	s = find(t, renderObjects(t, r), "StatefulSet", "validator-1")
	if args := stringSlice(container(t, s, "fence-sidecar"), "args"); args[0] != "--coordinator=http://fencing.fencing.svc:7600" {
		t.Errorf("allowPlainHTTP args = %q", args)
	}
}

func TestSidecarTemplateRequiresSettings(t *testing.T) {
	tests := []struct {
		set     []string
		wantErr string
	}{
		{[]string{"fencing.sidecar.holder="}, "sidecar.holder must name this cluster's failure domain"},
		{[]string{"fencing.sidecar.validators=null"}, "sidecar.validators must list the validator IDs"},
		{[]string{"fencing.sidecar.coordinatorURLs=null"}, "sidecar.coordinatorURLs must list this region's coordinator URL"},
		{[]string{"fencing.sidecar.validators={a,b}"}, "at '/sidecar/validators': maxItems: got 2, want 1"},
		{[]string{"fencing.sidecar.keySecret.name="}, "sidecar.keySecret.name must name the Secret"},
		// A strict-mode sidecar never talks to a coordinator it cannot
		// authenticate in the default configuration.
		{[]string{"fencing.sidecar.coordinatorURLs={http://fencing.fencing.svc:7600}"}, "sidecar.coordinatorURLs has http://fencing.fencing.svc:7600: the sidecar sends its token to the coordinator and trusts its answers, so use https://"},
		{[]string{"fencing.sidecar.coordinatorCA.secretName=x"}, "sidecar.coordinatorCA: set configMapName or secretName, not both"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.set, ","), func(t *testing.T) {
			r := renderBesuA
			r.set = tt.set
			_, err := helm(t, r.args("template")...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("helm template --set %v error = %v, want %q", tt.set, err, tt.wantErr)
			}
		})
	}
}

func TestPrometheusRule(t *testing.T) {
	objs := renderObjects(t, renderAll)
	pr := find(t, objs, "PrometheusRule", "")
	groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
	var alerts []string
	exprs := map[string]string{}
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			rm := r.(map[string]any)
			name := rm["alert"].(string)
			alerts = append(alerts, name)
			exprs[name] = rm["expr"].(string)
			checkPromQL(t, "alert "+name, exprs[name])
			if u, _, _ := unstructured.NestedString(rm, "annotations", "runbook_url"); u != "https://runbooks.example.com/fencing#"+strings.ToLower(name) {
				t.Errorf("%s runbook_url = %q, want the runbook base URL and #%s", name, u, strings.ToLower(name))
			}
			for _, a := range []string{"summary", "description"} {
				if v, _, _ := unstructured.NestedString(rm, "annotations", a); v == "" {
					t.Errorf("%s has no %s", name, a)
				}
			}
			if sev, _, _ := unstructured.NestedString(rm, "labels", "severity"); sev != "critical" && sev != "warning" {
				t.Errorf("%s severity = %q", name, sev)
			}
		}
	}
	want := []string{"FencingActiveRegionLostLease", "FencingLeasesHeldByTwoHolders", "FencingStandbyHoldsLease", "FencingEpochStuckRevoking",
		"FencingJournalFailures", "FencingAuditDuplicates", "FencingLeaseTimeLow", "FencingEtcdDown", "FencingCoordinatorDown"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts = %v, want %v", alerts, want)
	}
	for alert, metric := range map[string]string{
		"FencingActiveRegionLostLease":  `fencing_validator_epoch_state{state="active"}`,
		"FencingLeasesHeldByTwoHolders": "fencing_validator_leases",
		"FencingStandbyHoldsLease":      `fencing_validator_leases{holder=~"region-b"}`,
		"FencingEpochStuckRevoking":     `fencing_validator_epoch_state{state="revoking"}`,
		"FencingJournalFailures":        `fencing_sidecar_signatures_total{result="journal"}`,
		"FencingAuditDuplicates":        "fencing_audit_duplicates",
		"FencingLeaseTimeLow":           "fencing_sidecar_lease_seconds_remaining < 5",
		"FencingEtcdDown":               "fencing_etcd_up == 0",
		"FencingCoordinatorDown":        `absent(up{job="fencing-all", namespace="fencing-all"} == 1)`,
	} {
		if !strings.Contains(exprs[alert], metric) {
			t.Errorf("%s expr %q does not use %s", alert, exprs[alert], metric)
		}
	}
	// The default runbook is docs/runbook.md; without standby holders that
	// alert is left out, and without a ServiceMonitor (nor coordinatorJob)
	// FencingCoordinatorDown would always fire, so it is left out too.
	r := renderMinimal
	r.set = []string{"metrics.prometheusRule.enabled=true"}
	pr = find(t, renderObjects(t, r), "PrometheusRule", "")
	b, _ := json.Marshal(pr.Object)
	for _, gone := range []string{"FencingStandbyHoldsLease", "FencingCoordinatorDown"} {
		if strings.Contains(string(b), gone) {
			t.Errorf("%s rendered without what it needs", gone)
		}
	}
	if !strings.Contains(string(b), `"runbook_url":"https://github.com/validator-fencing/fencing/blob/main/docs/runbook.md#fencingetcddown"`) {
		t.Errorf("default runbook_url does not point at docs/runbook.md: %s", b)
	}
	r.set = append(r.set, "metrics.prometheusRule.coordinatorJob=fence-coordinator")
	pr = find(t, renderObjects(t, r), "PrometheusRule", "")
	if b, _ := json.Marshal(pr.Object); !strings.Contains(string(b), `absent(up{job=\"fence-coordinator\"`) {
		t.Errorf("coordinatorJob did not set the absent() job: %s", b)
	}
}

func TestSchemaRejectsMisspeltValues(t *testing.T) {
	tests := []struct {
		name    string
		render  render
		set     []string
		wantErr string
	}{
		{name: "misspelt top-level key", render: renderMinimal, set: []string{"coordinater.replicas=3"},
			wantErr: "additional properties 'coordinater' not allowed"},
		{name: "misspelt nested key", render: renderMinimal, set: []string{"coordinator.replica=3"},
			wantErr: "at '/coordinator': additional properties 'replica' not allowed"},
		{name: "misspelt sidecar key", render: renderMinimal, set: []string{"sidecar.leaseTtl=10s"},
			wantErr: "at '/sidecar': additional properties 'leaseTtl' not allowed"},
		{name: "unknown mode", render: renderMinimal, set: []string{"sidecar.mode=loose"},
			wantErr: "at '/sidecar/mode': value must be one of 'strict', 'lease'"},
		{name: "endpoint without scheme", render: renderMinimal, set: []string{"etcd.endpoints={etcd:2379}"},
			wantErr: "at '/etcd/endpoints/0'"},
		{name: "bad holder in binding", render: renderMinimal, set: []string{"auth.bindings[0].holder=Region_A"},
			wantErr: "at '/auth/bindings/0/holder'"},
		{name: "binding field misspelt", render: renderMinimal, set: []string{"auth.bindings[0].serviceaccount=s"},
			wantErr: "additional properties 'serviceaccount' not allowed"},
		{name: "bad duration", render: renderMinimal, set: []string{"metrics.prometheusRule.revokingFor=5 minutes"},
			wantErr: "at '/metrics/prometheusRule/revokingFor'"},
		{name: "imagePullSecrets as strings", render: renderMinimal, set: []string{"imagePullSecrets={registry}"},
			wantErr: "at '/imagePullSecrets/0'"},
		{name: "operator auth none", render: renderMinimal, set: []string{"operatorAuth.modes={none}"},
			wantErr: "at '/operatorAuth/modes/0': value must be one of 'kubernetes', 'token', 'mtls'"},
		{name: "unknown certificate source", render: renderMinimal, set: []string{"coordinator.tls.certificate=self"},
			wantErr: "at '/coordinator/tls/certificate'"},
		{name: "caBundle.pem not PEM", render: renderMinimal, set: []string{"coordinator.tls.caBundle.pem=abc"},
			wantErr: "at '/coordinator/tls/caBundle/pem'"},
		{name: "misspelt security context field", render: renderMinimal, set: []string{"coordinator.securityContext.readOnlyRootFileSystem=true"},
			wantErr: "additional properties 'readOnlyRootFileSystem' not allowed"},
		{name: "misspelt key through the parent chart", render: renderBesuA, set: []string{"fencing.sidecar.holdr=region-a"},
			wantErr: "at '/sidecar': additional properties 'holdr' not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.render
			r.set = tt.set
			out, err := helm(t, r.args("template")...)
			if err == nil {
				t.Fatalf("helm template --set %v succeeded, want a schema error; output:\n%.400s", tt.set, out)
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("helm template --set %v error:\n%v\nwant it to contain %q", tt.set, err, tt.wantErr)
			}
		})
	}
}

// The helm test Pod: fencectl status against the Service over TLS with the
// CA bundle and a token of its own ServiceAccount (bound to the viewer
// ClusterRole), and a lease check per holder of auth.bindings.
func TestHelmTestPod(t *testing.T) {
	objs := renderObjects(t, renderAll)
	pod := find(t, objs, "Pod", "fencing-all-test")
	if hook := pod.GetAnnotations()["helm.sh/hook"]; hook != "test" {
		t.Errorf("test Pod hook = %q, want test", hook)
	}
	cs, _, _ := unstructured.NestedSlice(pod.Object, "spec", "containers")
	got := map[string][]string{}
	for _, c := range cs {
		cm := c.(map[string]any)
		got[cm["name"].(string)] = stringSlice(cm, "args")
		if cmd := stringSlice(cm, "command"); !slices.Equal(cmd, []string{"/usr/local/bin/fencectl"}) {
			t.Errorf("test container %s command = %q, want fencectl", cm["name"], cmd)
		}
		checkSecurityContext(t, cm)
	}
	global := []string{"--coordinator=https://fencing-all.fencing-all.svc:7600", "--ca-file=/etc/fencing/coordinator-ca/ca.crt", "--token-file=/var/run/secrets/fencing/token", "status"}
	want := map[string][]string{
		"coordinator":     global,
		"leases-region-a": slices.Concat(global, []string{"--check-holder=region-a", "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"}),
		"leases-region-b": slices.Concat(global, []string{"--check-holder=region-b", "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"}),
	}
	if len(got) != len(want) {
		t.Errorf("test containers = %v, want %v", got, want)
	}
	for name, args := range want {
		if !slices.Equal(got[name], args) {
			t.Errorf("test container %s args = %q, want %q", name, got[name], args)
		}
	}
	srcs, _, _ := unstructured.NestedSlice(volume(t, pod, "token"), "projected", "sources")
	if len(srcs) != 1 {
		t.Fatalf("test token sources = %v", srcs)
	}
	if aud, ok, _ := unstructured.NestedString(srcs[0].(map[string]any), "serviceAccountToken", "audience"); ok {
		t.Errorf("test token audience = %q, want the API server's (like kubectl create token)", aud)
	}
	if cm, _, _ := unstructured.NestedString(volume(t, pod, "coordinator-ca"), "configMap", "name"); cm != "fencing-coordinator-ca" {
		t.Errorf("test CA from ConfigMap %q", cm)
	}
	rb := find(t, objs, "RoleBinding", "fencing-all-test")
	if role, _, _ := unstructured.NestedString(rb.Object, "roleRef", "name"); role != "fencing-all-viewer" {
		t.Errorf("test ServiceAccount bound to %q, want fencing-all-viewer", role)
	}
	// The NetworkPolicy lets the test Pod in when ingress is restricted.
	np := find(t, objs, "NetworkPolicy", "fencing-all")
	from, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
	if b, _ := json.Marshal(from); !strings.Contains(string(b), `"app.kubernetes.io/component":"test"`) {
		t.Errorf("NetworkPolicy ingress %s does not admit the test Pod", b)
	}

	// The token mode: the operator token Secret instead of a projected token.
	r := renderMinimal
	r.set = []string{"operatorAuth.modes={token}", "operatorAuth.tokenSecret.name=op", "tests.checkLeases=false"}
	objs = renderObjects(t, r)
	pod = find(t, objs, "Pod", "fencing-test")
	if s, _, _ := unstructured.NestedString(volume(t, pod, "token"), "secret", "secretName"); s != "op" {
		t.Errorf("token mode test token from Secret %q, want op", s)
	}
	if cs, _, _ := unstructured.NestedSlice(pod.Object, "spec", "containers"); len(cs) != 1 {
		t.Errorf("checkLeases=false: %d test containers, want 1", len(cs))
	}

	r.set = []string{"tests.enabled=false"}
	for _, o := range renderObjects(t, r) {
		if o.GetKind() == "Pod" || strings.HasSuffix(o.GetName(), "-test") {
			t.Errorf("tests.enabled=false rendered %v", o)
		}
	}
}

func TestDefaultTagIsAppVersion(t *testing.T) {
	chart, err := os.ReadFile("fencing/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil {
		t.Fatal(err)
	}
	helpers, err := os.ReadFile("fencing/templates/_helpers.tpl")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)define "fencing.defaultTag" -}}\s*(\S+)\s*{{-`).FindSubmatch(helpers)
	if m == nil || string(m[1]) != meta.AppVersion {
		t.Errorf("fencing.defaultTag = %q, want the appVersion %q", m, meta.AppVersion)
	}
}

// The rendered examples in docs/examples are what the charts render now,
// except for the certificates and keys the chart generates on every helm
// template (redactGenerated).
func TestCommittedExamplesAreCurrent(t *testing.T) {
	for file, r := range committedFiles {
		t.Run(file, func(t *testing.T) {
			out, err := helm(t, r.args("template")...)
			if err != nil {
				t.Fatal(err)
			}
			got := exampleHeader(r) + redactGenerated(out)
			path := filepath.Join("..", "docs", "examples", file)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./charts -run TestCommittedExamplesAreCurrent -update)", err)
			}
			if string(want) != got {
				t.Errorf("%s is stale: run go test ./charts -run TestCommittedExamplesAreCurrent -update and commit it", path)
			}
		})
	}
}

// generated is what helm template prints anew on every run: the base64
// certificates and keys of the chart's Secrets and the PEM of its CA bundle.
const generated = "<generated at install, kept across upgrades>"

var (
	generatedData = regexp.MustCompile(`(?m)^(\s+(?:tls\.crt|tls\.key|ca\.crt): )[A-Za-z0-9+/]{64,}={0,2}$`)
	generatedPEM  = regexp.MustCompile(`(?m)^(\s+)-----BEGIN CERTIFICATE-----\n(?:\s+[A-Za-z0-9+/=]+\n)+\s+-----END CERTIFICATE-----$`)
)

// redactGenerated replaces generated certificates and keys, so that the
// committed examples are stable and publish no private key anyone could
// deploy.
func redactGenerated(out string) string {
	out = generatedData.ReplaceAllString(out, `${1}"`+generated+`"`)
	return generatedPEM.ReplaceAllString(out, "${1}"+generated)
}

func exampleHeader(r render) string {
	return "# Rendered from charts/" + r.chart + " by `go test ./charts -run TestCommittedExamplesAreCurrent -update`; do not edit.\n" +
		"#   helm template " + strings.Join(r.args("template")[1:], " ") + "\n" +
		"# (paths relative to charts/). Certificates and keys that helm generates at install\n" +
		"# are shown as " + generated + ".\n"
}

func container(t *testing.T, o object, name string) map[string]any {
	t.Helper()
	for _, field := range []string{"containers", "initContainers"} {
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", field)
		for _, c := range cs {
			if m := c.(map[string]any); m["name"] == name {
				return m
			}
		}
	}
	t.Fatalf("%v has no container %s", o, name)
	return nil
}

func volume(t *testing.T, o object, name string) map[string]any {
	t.Helper()
	path := []string{"spec", "template", "spec", "volumes"}
	if o.GetKind() == "Pod" {
		path = []string{"spec", "volumes"}
	}
	vs, _, _ := unstructured.NestedSlice(o.Object, path...)
	for _, v := range vs {
		if m := v.(map[string]any); m["name"] == name {
			return m
		}
	}
	t.Fatalf("%v has no volume %s", o, name)
	return nil
}

func stringSlice(m map[string]any, field string) []string {
	s, _, _ := unstructured.NestedStringSlice(m, field)
	return s
}

func checkSecurityContext(t *testing.T, c map[string]any) {
	t.Helper()
	sc, _, _ := unstructured.NestedMap(c, "securityContext")
	for field, want := range map[string]any{"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "runAsUser": int64(65532)} {
		if sc[field] != want {
			t.Errorf("container %s securityContext.%s = %v, want %v", c["name"], field, sc[field], want)
		}
	}
	if drop, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "drop"); !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("container %s drops capabilities %v, want [ALL]", c["name"], drop)
	}
}

// envFieldRef returns the downward API field an environment variable of
// container c comes from.
func envFieldRef(c map[string]any, name string) string {
	env, _, _ := unstructured.NestedSlice(c, "env")
	for _, e := range env {
		em := e.(map[string]any)
		if em["name"] == name {
			p, _, _ := unstructured.NestedString(em, "valueFrom", "fieldRef", "fieldPath")
			return p
		}
	}
	return ""
}

// secretData decodes one key of a rendered Secret's data.
func secretData(t *testing.T, o object, key string) []byte {
	t.Helper()
	v, ok, _ := unstructured.NestedString(o.Object, "data", key)
	if !ok {
		t.Fatalf("%v has no data[%q]", o, key)
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		t.Fatalf("%v data[%q] is not base64: %v", o, key, err)
	}
	return b
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %.80q", pemBytes)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// writeValues writes a values file (for values that --set cannot carry,
// such as multi-line PEM) and returns its absolute path.
func writeValues(t *testing.T, v map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
