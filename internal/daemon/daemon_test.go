package daemon_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/validator-fencing/fencing/coordinator"
	"github.com/validator-fencing/fencing/internal/daemon"
	"github.com/validator-fencing/fencing/internal/version"
	"github.com/validator-fencing/fencing/sidecar"
)

// mainOf runs daemon.Main for cfg with args and reports its exit code, its
// output and whether it got as far as run (where the daemons listen).
func mainOf(t *testing.T, name string, cfg daemon.Config, args ...string) (code int, stdout, stderr string, ran bool) {
	t.Helper()
	var out, errb bytes.Buffer
	code = daemon.Main(name, "usage of "+name+"\n", args, &out, &errb, cfg, func(context.Context, hclog.Logger) error {
		ran = true
		return nil
	})
	return code, out.String(), errb.String(), ran
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
	return p
}

func TestVersion(t *testing.T) {
	for name, cfg := range map[string]daemon.Config{"fence-coordinator": &coordinator.Config{}, "fence-sidecar": &sidecar.Config{}} {
		code, out, errOut, ran := mainOf(t, name, cfg, "--version")
		if code != 0 || out != version.Line(name)+"\n" || ran {
			t.Errorf("%s --version = exit %d, %q, %q, ran %t; want 0 and %q without running", name, code, out, errOut, ran, version.Line(name))
		}
	}
	// Only the command line asks: FENCE_VERSION is not --version.
	t.Setenv("FENCE_VERSION", "true")
	code, out, _, _ := mainOf(t, "fence-coordinator", &coordinator.Config{}, "--embedded-etcd", t.TempDir())
	if code != 0 || strings.Contains(out, version.String()) {
		t.Errorf("with FENCE_VERSION=true: exit %d, %q; want a normal start", code, out)
	}
}

// A short or exposed operator token and a key file open to others are
// configuration errors: exit 2 before anything listens.
func TestSecretsCheckedBeforeListening(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "token", "0123456789abcdef0123", 0o600)
	var key [32]byte
	_, _ = rand.Read(key[:])
	keyHex := hex.EncodeToString(key[:])
	sidecarArgs := func(keyFile string, extra ...string) []string {
		return append([]string{"--coordinator", "http://127.0.0.1:7600", "--holder", "region-a", "--name", "a-0", "--key", keyFile, "--state-dir", filepath.Join(dir, "state")}, extra...)
	}
	for _, tc := range []struct {
		name string
		bin  string
		cfg  daemon.Config
		args []string
		code int
		want string
	}{
		{"short operator token", "fence-coordinator", &coordinator.Config{}, []string{"--embedded-etcd", dir, "--operator-token-file", writeFile(t, dir, "short", "abc", 0o600)}, 2, "at least 16"},
		{"operator token readable by others", "fence-coordinator", &coordinator.Config{}, []string{"--embedded-etcd", dir, "--operator-token-file", writeFile(t, dir, "open", "0123456789abcdef0123", 0o644)}, 2, "readable by others"},
		{"good operator token", "fence-coordinator", &coordinator.Config{}, []string{"--embedded-etcd", dir, "--operator-token-file", good}, 0, ""},
		{"key file open to others", "fence-sidecar", &sidecar.Config{}, sidecarArgs(writeFile(t, dir, "k1", keyHex, 0o644)), 2, "accessible to others"},
		{"key file missing", "fence-sidecar", &sidecar.Config{}, sidecarArgs(filepath.Join(dir, "nope")), 2, "no such file"},
		{"client key writable by the group", "fence-sidecar", &sidecar.Config{}, sidecarArgs(writeFile(t, dir, "k2", keyHex, 0o600), "--client-cert", "c.pem", "--client-key", writeFile(t, dir, "ck", "x", 0o660)), 2, "--client-key file"},
		{"good key file", "fence-sidecar", &sidecar.Config{}, sidecarArgs(writeFile(t, dir, "k3", keyHex, 0o600)), 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut, ran := mainOf(t, tc.bin, tc.cfg, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) || ran != (tc.code == 0) || strings.Contains(errOut, keyHex) || strings.Contains(errOut, "0123456789abcdef") {
				t.Errorf("%s %v = exit %d, %q, ran %t; want %d and %q (no secret shown)", tc.bin, tc.args, code, errOut, ran, tc.code, tc.want)
			}
		})
	}
}
