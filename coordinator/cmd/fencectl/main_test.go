package main

import (
	"os/exec"
	"strings"
	"testing"
)

// fencectl is an operator's CLI: it talks to coordinators over HTTPS and
// never embeds etcd. The failover drill, which does, is fence-drill
// (internal/drill/cmd/fence-drill). This keeps etcd's server, and its
// weight, out of the binary.
func TestLinksNoEtcdServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the dependency graph")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	var server []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "go.etcd.io/etcd/server/") {
			server = append(server, p)
		}
	}
	if len(server) > 0 {
		t.Errorf("fencectl links %d package(s) of etcd's server, e.g. %s: an import brought it in (go mod why -m, or go list -deps -f '{{.ImportPath}}: {{.Imports}}')", len(server), server[0])
	}
	if !strings.Contains(string(out), "github.com/validator-fencing/fencing/internal/cli") {
		t.Fatalf("go list -deps did not list fencectl's own packages:\n%.500s", out)
	}
}
