package charts

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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
	return a
}

// The renders every test below uses; the Besu ones are the worked example
// whose output is committed in docs/examples.
var (
	renderDefault  = render{name: "default values", chart: fencingChart, release: "fencing", namespace: "fencing"}
	renderAll      = render{name: "all features", chart: fencingChart, release: "fencing-all", namespace: "fencing-all", values: []string{"testdata/all-features.yaml"}}
	renderRegionA  = render{name: "coordinator region A", chart: fencingChart, release: "fencing", namespace: "fencing", values: []string{"examples/fencing-region-a.yaml"}}
	renderRegionB  = render{name: "coordinator region B", chart: fencingChart, release: "fencing", namespace: "fencing", values: []string{"examples/fencing-region-b.yaml"}}
	renderBesuA    = render{name: "besu region A", chart: besuChart, release: "besu-validator-1", namespace: "validators", values: []string{besuChart + "/values-region-a.yaml"}}
	renderBesuB    = render{name: "besu region B", chart: besuChart, release: "besu-validator-1", namespace: "validators", values: []string{besuChart + "/values-region-b.yaml"}}
	allRenders     = []render{renderDefault, renderAll, renderRegionA, renderRegionB, renderBesuA, renderBesuB}
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

func TestTemplate(t *testing.T) {
	coordinatorKinds := []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"}
	monitoring := []string{"PodMonitor", "PrometheusRule", "ServiceMonitor"}
	tests := []struct {
		render    render
		wantKinds []string
	}{
		{renderDefault, coordinatorKinds},
		{renderAll, slices.Concat(coordinatorKinds, monitoring)},
		{renderRegionA, slices.Concat(coordinatorKinds, monitoring)},
		{renderBesuA, []string{"Service", "ServiceAccount", "StatefulSet"}},
		{renderBesuB, []string{"Service", "ServiceAccount", "StatefulSet"}},
	}
	for _, tt := range tests {
		t.Run(tt.render.name, func(t *testing.T) {
			objs := renderObjects(t, tt.render)
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.GetKind())
				if ns := o.GetNamespace(); ns != "" && ns != tt.render.namespace {
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

// The RBAC is exactly: create tokenreviews, create events.events.k8s.io.
func TestLeastPrivilegeRBAC(t *testing.T) {
	objs := renderObjects(t, renderDefault)
	rules := func(kind string) string {
		o := find(t, objs, kind, "")
		r, _, _ := unstructured.NestedSlice(o.Object, "rules")
		b, _ := json.Marshal(r)
		return string(b)
	}
	if got, want := rules("ClusterRole"), `[{"apiGroups":["authentication.k8s.io"],"resources":["tokenreviews"],"verbs":["create"]}]`; got != want {
		t.Errorf("ClusterRole rules = %s, want %s", got, want)
	}
	if got, want := rules("Role"), `[{"apiGroups":["events.k8s.io"],"resources":["events"],"verbs":["create"]}]`; got != want {
		t.Errorf("Role rules = %s, want %s", got, want)
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
		"--auth-audience=fencing-coordinator",
		"--auth-bindings=validators/besu-validator-1=region-a:0x5B38Da6a701c568545dCfcB03FcB875f56beddC4",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("coordinator args %q lack %q", args, want)
		}
	}
	checkSecurityContext(t, c)
	if v, _, _ := unstructured.NestedBool(d.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot"); !v {
		t.Error("coordinator Pod securityContext.runAsNonRoot is not true")
	}
	if _, ok, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "affinity", "podAntiAffinity"); !ok {
		t.Error("coordinator has no pod anti-affinity")
	}
	if mode, _, _ := unstructured.NestedInt64(volume(t, d, "etcd-tls"), "secret", "defaultMode"); mode != 0o440 {
		t.Errorf("etcd TLS Secret mode = %o, want 440", mode)
	}
}

func TestSidecarInjection(t *testing.T) {
	s := find(t, renderObjects(t, renderBesuA), "StatefulSet", "besu-validator-1")
	c := container(t, s, "fence-sidecar")
	if cmd := stringSlice(c, "command"); !slices.Equal(cmd, []string{"/usr/local/bin/fence-sidecar"}) {
		t.Errorf("sidecar command = %q, want fence-sidecar", cmd)
	}
	args := stringSlice(c, "args")
	want := []string{
		"--coordinator=https://fencing.fencing.svc:7600",
		"--coordinator-ca=/etc/fencing/coordinator-ca/ca.crt",
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
	mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
	readOnly := map[string]bool{}
	for _, m := range mounts {
		mm := m.(map[string]any)
		ro, _ := mm["readOnly"].(bool)
		readOnly[mm["name"].(string)] = ro
	}
	if !readOnly["fencing-key"] || !readOnly["fencing-token"] {
		t.Errorf("key and token must be mounted read-only: %v", readOnly)
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

	// Native sidecar and emptyDir state.
	r := renderBesuA
	r.set = []string{"fencing.sidecar.nativeSidecar=true", "fencing.sidecar.state.emptyDir=true"}
	s = find(t, renderObjects(t, r), "StatefulSet", "besu-validator-1")
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
			alerts = append(alerts, rm["alert"].(string))
			exprs[rm["alert"].(string)] = rm["expr"].(string)
			if u, _, _ := unstructured.NestedString(rm, "annotations", "runbook_url"); !strings.HasPrefix(u, "https://runbooks.example.com/fencing#") {
				t.Errorf("%s runbook_url = %q", rm["alert"], u)
			}
		}
	}
	want := []string{"FencingActiveRegionLostLease", "FencingLeasesHeldByTwoHolders", "FencingStandbyHoldsLease", "FencingEpochStuckRevoking", "FencingJournalFailures", "FencingAuditDuplicates", "FencingLeaseTimeLow"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts = %v, want %v", alerts, want)
	}
	for alert, metric := range map[string]string{
		"FencingActiveRegionLostLease":  `fencing_epoch_state{state="active"}`,
		"FencingLeasesHeldByTwoHolders": "fencing_leases_live",
		"FencingStandbyHoldsLease":      `fencing_leases_live{holder=~"region-b"}`,
		"FencingEpochStuckRevoking":     `fencing_epoch_state{state="revoking"}`,
		"FencingJournalFailures":        `fencing_signatures_total{result="journal"}`,
		"FencingAuditDuplicates":        "fencing_audit_duplicates",
		"FencingLeaseTimeLow":           "fencing_lease_seconds_remaining < 5",
	} {
		if !strings.Contains(exprs[alert], metric) {
			t.Errorf("%s expr %q does not use %s", alert, exprs[alert], metric)
		}
	}
	// Without standby holders that alert is left out.
	pr = find(t, renderObjects(t, render{name: "rules", chart: fencingChart, release: "f", namespace: "f", set: []string{"metrics.prometheusRule.enabled=true"}}), "PrometheusRule", "")
	if b, _ := json.Marshal(pr.Object); strings.Contains(string(b), "FencingStandbyHoldsLease") {
		t.Error("FencingStandbyHoldsLease rendered without standbyHolders")
	}
}

func TestSchemaRejectsMisspeltValues(t *testing.T) {
	tests := []struct {
		name    string
		render  render
		set     []string
		wantErr string
	}{
		{name: "misspelt top-level key", render: renderDefault, set: []string{"coordinater.replicas=3"},
			wantErr: "additional properties 'coordinater' not allowed"},
		{name: "misspelt nested key", render: renderDefault, set: []string{"coordinator.replica=3"},
			wantErr: "at '/coordinator': additional properties 'replica' not allowed"},
		{name: "misspelt sidecar key", render: renderDefault, set: []string{"sidecar.leaseTtl=10s"},
			wantErr: "at '/sidecar': additional properties 'leaseTtl' not allowed"},
		{name: "unknown mode", render: renderDefault, set: []string{"sidecar.mode=loose"},
			wantErr: "at '/sidecar/mode': value must be one of 'strict', 'lease'"},
		{name: "endpoint without scheme", render: renderDefault, set: []string{"etcd.endpoints={etcd:2379}"},
			wantErr: "at '/etcd/endpoints/0'"},
		{name: "bad holder in binding", render: renderDefault, set: []string{"auth.bindings[0].namespace=v", "auth.bindings[0].serviceAccount=s", "auth.bindings[0].holder=Region_A"},
			wantErr: "at '/auth/bindings/0/holder'"},
		{name: "binding field misspelt", render: renderDefault, set: []string{"auth.bindings[0].namespace=v", "auth.bindings[0].serviceaccount=s", "auth.bindings[0].holder=a"},
			wantErr: "additional properties 'serviceaccount' not allowed"},
		{name: "bad duration", render: renderDefault, set: []string{"metrics.prometheusRule.revokingFor=5 minutes"},
			wantErr: "at '/metrics/prometheusRule/revokingFor'"},
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

func TestSidecarTemplateRequiresSettings(t *testing.T) {
	tests := []struct {
		set     string
		wantErr string
	}{
		{"fencing.sidecar.holder=", "sidecar.holder must name this cluster's failure domain"},
		{"fencing.sidecar.validators=null", "sidecar.validators must list the validator IDs"},
		{"fencing.sidecar.coordinatorURLs=null", "sidecar.coordinatorURLs must list this region's coordinator URL"},
		{"fencing.sidecar.validators={a,b}", "at '/sidecar/validators': maxItems: got 2, want 1"},
		{"fencing.sidecar.keySecret.name=", "sidecar.keySecret.name must name the Secret"},
	}
	for _, tt := range tests {
		t.Run(tt.set, func(t *testing.T) {
			r := renderBesuA
			r.set = []string{tt.set}
			_, err := helm(t, r.args("template")...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("helm template --set %s error = %v, want %q", tt.set, err, tt.wantErr)
			}
		})
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

// The rendered examples in docs/examples are what the charts render now.
func TestCommittedExamplesAreCurrent(t *testing.T) {
	for file, r := range committedFiles {
		t.Run(file, func(t *testing.T) {
			out, err := helm(t, r.args("template")...)
			if err != nil {
				t.Fatal(err)
			}
			got := exampleHeader(r) + out
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

func exampleHeader(r render) string {
	return "# Rendered from charts/" + r.chart + " by `go test ./charts -run TestCommittedExamplesAreCurrent -update`; do not edit.\n" +
		"#   helm template " + strings.Join(r.args("template")[1:], " ") + "\n" +
		"# (paths relative to charts/)\n"
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
	vs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
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
