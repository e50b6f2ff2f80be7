package charts

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// exportedSeries is every series the binaries export, with its labels (the
// "# Metrics" sections of the coordinator and sidecar package docs). Alerts
// and dashboard panels may query nothing else. Histograms also have
// _bucket (with le), _sum and _count.
var exportedSeries = map[string]series{
	// fence-coordinator
	"fencing_validator_epoch":               {labels: []string{"validator"}},
	"fencing_validator_epoch_state":         {labels: []string{"validator", "state"}},
	"fencing_validator_leases":              {labels: []string{"validator", "holder"}},
	"fencing_bump_in_progress":              {labels: []string{"validator"}},
	"fencing_bump_duration_seconds":         {histogram: true},
	"fencing_transitions_total":             {labels: []string{"kind", "result"}},
	"fencing_coordinator_requests_total":    {labels: []string{"op", "result"}},
	"fencing_audit_duplicates":              {labels: []string{"kind"}},
	"fencing_etcd_up":                       {},
	"fencing_etcd_request_duration_seconds": {labels: []string{"op"}, histogram: true},
	"fencing_build_info":                    {labels: []string{"binary", "version", "goversion"}},
	// fence-sidecar
	"fencing_sidecar_lease_held":               {labels: []string{"validator"}, sidecar: true},
	"fencing_sidecar_lease_epoch":              {labels: []string{"validator"}, sidecar: true},
	"fencing_sidecar_lease_seconds_remaining":  {labels: []string{"validator"}, sidecar: true},
	"fencing_sidecar_signatures_total":         {labels: []string{"validator", "result"}, sidecar: true},
	"fencing_sidecar_sign_duration_seconds":    {histogram: true, sidecar: true},
	"fencing_sidecar_journal_duration_seconds": {histogram: true, sidecar: true},
	"fencing_sidecar_ready":                    {labels: []string{"validator"}, sidecar: true},
	"fencing_sidecar_gate_state":               {labels: []string{"validator", "state"}, sidecar: true},
	"fencing_sidecar_gate_head":                {labels: []string{"validator"}, sidecar: true},
	"fencing_sidecar_gate_floor":               {labels: []string{"validator"}, sidecar: true},
	"fencing_sidecar_gate_kills_total":         {labels: []string{"validator", "reason"}, sidecar: true},
	// Prometheus's own scrape health, for FencingCoordinatorDown.
	"up": {},
}

type series struct {
	labels    []string
	histogram bool
	sidecar   bool // scraped by the PodMonitor, which adds the holder label
}

// targetLabels are added by Prometheus and the Prometheus Operator to every
// scraped series.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "service", "endpoint"}

var (
	promMatchers = regexp.MustCompile(`\{([^}]*)\}`)
	promLabel    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promIdent    = regexp.MustCompile(`\$?[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
)

// checkPromQL fails t with every problem promQLProblems finds in expr.
func checkPromQL(t *testing.T, where, expr string) {
	t.Helper()
	for _, p := range promQLProblems(expr) {
		t.Errorf("%s: %q %s", where, expr, p)
	}
}

// promQLProblems reports unless expr names at least one metric, every metric
// it names is exported (exportedSeries), and every label it matches or
// groups by belongs to one of those metrics or is a target label. It is a
// lexer, not a PromQL parser: enough for the chart's own expressions.
func promQLProblems(expr string) []string {
	var labels, problems []string
	rest := promMatchers.ReplaceAllStringFunc(expr, func(m string) string {
		for _, l := range promLabel.FindAllStringSubmatch(promString.ReplaceAllString(m, `""`), -1) {
			labels = append(labels, l[1])
		}
		return " "
	})
	rest = promGrouping.ReplaceAllStringFunc(rest, func(m string) string {
		inner := promGrouping.FindStringSubmatch(m)[1]
		for _, l := range strings.Split(inner, ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		return " "
	})
	rest = promRange.ReplaceAllString(promString.ReplaceAllString(rest, " "), " ")
	allowed := slices.Clone(targetLabels)
	var metrics []string
	for _, m := range promIdent.FindAllStringSubmatch(rest, -1) {
		name := m[0]
		if m[1] != "" || strings.HasPrefix(name, "$") || slices.Contains(promKeywords, name) {
			continue // a function call, a Grafana variable or an operator
		}
		s, ok := lookupSeries(name)
		if !ok {
			problems = append(problems, "names "+name+", which no binary exports")
			continue
		}
		metrics = append(metrics, name)
		allowed = append(allowed, s.labels...)
		if s.sidecar {
			allowed = append(allowed, "holder")
		}
	}
	if len(metrics) == 0 && len(problems) == 0 {
		problems = append(problems, "names no metric")
	}
	for _, l := range labels {
		if !slices.Contains(allowed, l) {
			problems = append(problems, fmt.Sprintf("uses label %s, which none of %v has", l, metrics))
		}
	}
	return problems
}

// lookupSeries finds name in exportedSeries, also as a histogram's _bucket
// (which adds le), _sum or _count.
func lookupSeries(name string) (series, bool) {
	if s, ok := exportedSeries[name]; ok && !s.histogram {
		return s, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if s, ok := exportedSeries[base]; found && ok && s.histogram {
			if suffix == "_bucket" {
				s.labels = append(slices.Clone(s.labels), "le")
			}
			return s, true
		}
	}
	return series{}, false
}

func TestCheckPromQL(t *testing.T) {
	// The checker can fail: each of these must be reported.
	for _, bad := range []string{
		`fencing_epoch{validator="x"}`,                              // the old name
		`fencing_validator_epoch{holder="region-a"}`,                // a label the series lacks
		`sum by (region) (fencing_validator_leases)`,                // grouping by a missing label
		`fencing_bump_duration_seconds`,                             // a histogram without suffix
		`rate(fencing_sidecar_ready_bucket[5m])`,                    // not a histogram
		`histogram_quantile(0.9, rate(fencing_etcd_up_bucket[5m]))`, // not a histogram
		`vector(1)`, // no metric at all
	} {
		if p := promQLProblems(bad); len(p) == 0 {
			t.Errorf("promQLProblems(%q) = none, want a problem", bad)
		}
	}
	for _, good := range []string{
		`max by (validator, state) (fencing_validator_epoch_state{validator=~"$validator"}) == 1`,
		`histogram_quantile(0.99, sum by (le, op) (rate(fencing_etcd_request_duration_seconds_bucket[$__rate_interval])))`,
		`absent(up{job="fencing", namespace="fencing"} == 1)`,
		`fencing_sidecar_lease_seconds_remaining < 5 and fencing_sidecar_lease_held == 1`,
	} {
		checkPromQL(t, "good", good)
	}
}

// grafanaDashboard is the part of a Grafana dashboard the test reads.
type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // collapsed rows
}

// The dashboard parses, every panel queries the ${datasource} variable, and
// every query names only exported metrics and their labels; it covers
// epochs and holders, leases and their time left, signatures by result,
// journal latency and bumps.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("fencing/dashboards/fencing.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("fencing/dashboards/fencing.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: both must be set", d.UID, d.Title)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
		if v.Type != "query" {
			continue
		}
		// Grafana's label_values(metric, label) is not PromQL.
		m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s query %q: want label_values(metric, label)", v.Name, v.Definition)
			continue
		}
		checkPromQL(t, "variable "+v.Name, fmt.Sprintf("count by (%s) (%s)", m[2], m[1]))
	}
	if !slices.Contains(vars, "datasource") {
		t.Errorf("dashboard variables %v lack datasource", vars)
	}
	var panels []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q gridPos %+v does not fit the 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q datasource %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, q := range p.Targets {
			checkPromQL(t, "panel "+p.Title, q.Expr)
			for name := range exportedSeries {
				if regexp.MustCompile(`\b` + name + `(_bucket|_sum|_count)?\b`).MatchString(q.Expr) {
					used[name] = true
				}
			}
		}
	}
	for _, want := range []string{
		"fencing_validator_epoch", "fencing_validator_epoch_state", "fencing_validator_leases", // epoch and holder
		"fencing_sidecar_lease_held", "fencing_sidecar_lease_seconds_remaining", // leases and time left
		"fencing_sidecar_signatures_total",                          // signatures by result
		"fencing_sidecar_journal_duration_seconds",                  // journal latency
		"fencing_bump_in_progress", "fencing_bump_duration_seconds", // bumps and their durations
		"fencing_etcd_up",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}

	// The ConfigMap carries the file unchanged, with the Grafana sidecar's
	// label.
	cm := find(t, renderObjects(t, renderAll), "ConfigMap", "fencing-all-dashboard")
	if cm.GetNamespace() != "monitoring" || cm.GetLabels()["grafana_dashboard"] != "1" || cm.GetAnnotations()["grafana_folder"] != "Fencing" {
		t.Errorf("dashboard ConfigMap %s/%s labels %v annotations %v", cm.GetNamespace(), cm.GetName(), cm.GetLabels(), cm.GetAnnotations())
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "fencing.json")
	if strings.TrimSpace(data) != strings.TrimSpace(string(raw)) {
		t.Error("the dashboard ConfigMap does not hold fencing/dashboards/fencing.json")
	}
}
