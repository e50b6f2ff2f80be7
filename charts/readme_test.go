package charts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	yaml3 "go.yaml.in/yaml/v3"
)

// TestChartREADMEIsCurrent: charts/fencing/README.md is README.md.gotmpl
// with the table of values generated from the "# --" comments of
// values.yaml; go test ./charts -run TestChartREADMEIsCurrent -update
// rewrites it. It also fails when a value has no "# --" comment.
func TestChartREADMEIsCurrent(t *testing.T) {
	got, err := chartREADME("fencing")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("fencing", "README.md")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./charts -run TestChartREADMEIsCurrent -update)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s is stale: run go test ./charts -run TestChartREADMEIsCurrent -update and commit it", path)
	}
}

// chartREADME renders <chart>/README.md.gotmpl with .Values, the markdown
// table of every documented value in <chart>/values.yaml.
func chartREADME(chart string) ([]byte, error) {
	values, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return nil, err
	}
	docs, err := valueDocs(values)
	if err != nil {
		return nil, fmt.Errorf("%s/values.yaml: %w", chart, err)
	}
	var table strings.Builder
	table.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	// Descriptions are markdown: escape the table's separator and the
	// angle brackets of placeholders such as <fullname>, which would
	// otherwise be taken for HTML tags.
	escape := strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;")
	for _, d := range docs {
		fmt.Fprintf(&table, "| `%s` | %s | %s | %s |\n", d.key, d.typ, d.def, escape.Replace(d.description))
	}
	tmpl, err := template.ParseFiles(filepath.Join(chart, "README.md.gotmpl"))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, map[string]string{"Values": strings.TrimSuffix(table.String(), "\n")}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// valueDoc is one row of the values table.
type valueDoc struct {
	key, typ, def, description string
}

// valueDocs walks values.yaml in file order. Every key needs a comment that
// starts with "# --" (helm-docs' convention; lines before it, such as a
// commented-out example of the previous value, are not part of it). Mappings
// with entries are sections: a row, then their keys; everything else is a
// value with its default.
func valueDocs(values []byte) ([]valueDoc, error) {
	var root yaml3.Node
	if err := yaml3.Unmarshal(values, &root); err != nil {
		return nil, err
	}
	if len(root.Content) != 1 || root.Content[0].Kind != yaml3.MappingNode {
		return nil, fmt.Errorf("want a mapping at the top")
	}
	var docs []valueDoc
	var problems []string
	var walk func(prefix string, m *yaml3.Node)
	walk = func(prefix string, m *yaml3.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			desc, ok := description(k.HeadComment)
			if !ok {
				problems = append(problems, fmt.Sprintf("line %d: %s has no \"# --\" comment", k.Line, key))
			}
			if v.Kind == yaml3.MappingNode && len(v.Content) > 0 {
				docs = append(docs, valueDoc{key: key, typ: "object", def: "", description: desc})
				walk(key+".", v)
				continue
			}
			typ, def, err := typeAndDefault(v)
			if err != nil {
				problems = append(problems, fmt.Sprintf("line %d: %s: %v", k.Line, key, err))
			}
			docs = append(docs, valueDoc{key: key, typ: typ, def: def, description: desc})
		}
	}
	walk("", root.Content[0])
	if problems != nil {
		return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return docs, nil
}

// description is the text of the last "# --" comment block in c, on one line.
func description(c string) (string, bool) {
	i := strings.LastIndex(c, "# --")
	if i < 0 {
		return "", false
	}
	var words []string
	for _, line := range strings.Split(c[i+len("# --"):], "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if line != "" {
			words = append(words, line)
		}
	}
	return strings.Join(words, " "), len(words) > 0
}

// typeAndDefault names the YAML type of v and renders its value as JSON in
// backticks.
func typeAndDefault(v *yaml3.Node) (typ, def string, err error) {
	var val any
	if err := v.Decode(&val); err != nil {
		return "", "", err
	}
	b, err := json.Marshal(val)
	if err != nil {
		return "", "", err
	}
	switch val.(type) {
	case string:
		typ = "string"
	case int, int64, uint64:
		typ = "int"
	case float64:
		typ = "float"
	case bool:
		typ = "bool"
	case []any:
		typ = "list"
	case map[string]any:
		typ = "object"
	case nil:
		typ = "null"
	default:
		return "", "", fmt.Errorf("unexpected value %T", val)
	}
	return typ, "`" + string(b) + "`", nil
}

// The generator refuses undocumented values and keeps only the "# --" part
// of a comment.
func TestValueDocs(t *testing.T) {
	docs, err := valueDocs([]byte(`# -- A section.
a:
  # -- Its value,
  # on two lines.
  b: 1
  # - commented example of b
  # -- The list.
  c: [x]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []valueDoc{
		{key: "a", typ: "object", description: "A section."},
		{key: "a.b", typ: "int", def: "`1`", description: "Its value, on two lines."},
		{key: "a.c", typ: "list", def: "`[\"x\"]`", description: "The list."},
	}
	if fmt.Sprint(docs) != fmt.Sprint(want) {
		t.Errorf("valueDocs = %v, want %v", docs, want)
	}
	if _, err := valueDocs([]byte("# -- Documented.\na: 1\n# not documented\nb: 2\n")); err == nil || !strings.Contains(err.Error(), `b has no "# --" comment`) {
		t.Errorf("valueDocs of an undocumented value: %v, want an error naming b", err)
	}
}
