// Package archtest checks the package map of docs/architecture.md against
// the code: every package has a row, and every package imports only the
// project packages its row allows.
package archtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/validator-fencing/fencing/"

// packageMap reads the "Package map" table: `path` | owns | may import.
func packageMap(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Package map")
	if !ok {
		t.Fatal(`docs/architecture.md has no "## Package map" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|[^|]*\\|([^|]*)\\|")
	tick := regexp.MustCompile("`([^`]+)`")
	out := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		var allowed []string
		for _, a := range tick.FindAllStringSubmatch(m[2], -1) {
			allowed = append(allowed, a[1])
		}
		out[m[1]] = allowed
	}
	if len(out) == 0 {
		t.Fatal("the package map has no rows")
	}
	return out
}

func TestPackageMapMatchesTheCode(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports ","}}`, "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	want := packageMap(t)
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, imports, _ := strings.Cut(line, " ")
		pkg := strings.TrimPrefix(path, module)
		if pkg == "internal/archtest" {
			continue
		}
		seen[pkg] = true
		allowed, ok := want[pkg]
		if !ok {
			t.Errorf("package %s has no row in the package map of docs/architecture.md", pkg)
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			dep, ok := strings.CutPrefix(imp, module)
			if ok && !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which its row in the package map does not allow (it allows %v)", pkg, dep, allowed)
			}
		}
	}
	for pkg := range want {
		if !seen[pkg] {
			t.Errorf("the package map names %s, which is not a package of the module", pkg)
		}
	}
}
