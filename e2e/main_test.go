package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// bin is the directory holding the binaries built for this run.
var bin string

// TestMain builds fence-coordinator, fencectl, fence-sidecar and fence-etcd
// once per run, into a temporary directory removed afterwards.
func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "fence-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	bin = dir
	code := func() int {
		if os.Getenv("FENCE_E2E_KEEP") == "" {
			defer os.RemoveAll(dir)
		}
		start := time.Now()
		// The go command sets GOROOT for the tests it runs.
		goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator),
			"./coordinator/cmd/fence-coordinator", "./coordinator/cmd/fencectl", "./sidecar/cmd/fence-sidecar", "./e2e/cmd/fence-etcd")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building the binaries failed: %v\n%s", err, out)
			return 1
		}
		if testing.Verbose() {
			fmt.Printf("e2e: built the binaries in %s\n", time.Since(start).Round(time.Millisecond))
		}
		return m.Run()
	}()
	os.Exit(code)
}
