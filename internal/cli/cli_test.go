package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/cli"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// run runs fencectl against url and returns its exit code and output.
func run(url string, env map[string]string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "FENCE_COORDINATOR" {
			return url
		}
		return env[k]
	}
	code := cli.Main(context.Background(), args, &out, &errOut, getenv)
	return code, out.String(), errOut.String()
}

func TestCommands(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	env := map[string]string{"FENCE_OPERATOR": "alice"}
	steps := []struct {
		name     string
		args     []string
		code     int
		contains string // in stdout, or in stderr for a non-zero code
	}{
		{"add", []string{"validator", "add", "val-1", "--holder", "region-a", "--reason", "onboard"}, cli.ExitOK, "epoch 1 active on region-a"},
		{"add second", []string{"validator", "add", "val-2", "--holder=region-a", "--reason", "onboard"}, cli.ExitOK, "registered val-2"},
		{"add again", []string{"validator", "add", "val-1", "--holder", "region-a", "--reason", "x"}, cli.ExitRefused, "already registered"},
		{"add without reason", []string{"validator", "add", "val-3", "--holder", "region-a"}, cli.ExitUsage, "--reason required"},
		{"add bad holder", []string{"validator", "add", "val-3", "--holder", "Region A", "--reason", "x"}, cli.ExitUsage, "DNS label"},
		{"status", []string{"status"}, cli.ExitOK, "val-2"},
		{"status unknown", []string{"status", "nope"}, cli.ExitRefused, "not registered"},
		{"freeze wrong epoch", []string{"freeze", "val-2", "--expected-epoch", "5", "--reason", "x"}, cli.ExitRefused, "expected epoch 5"},
		{"freeze", []string{"freeze", "val-2", "--reason", "INC-1"}, cli.ExitOK, "revoke committed"},
		{"bump by holder", []string{"bump", "--from", "region-a", "--to", "region-b", "--force", "--reason", "INC-1 failover"}, cli.ExitOK, "grant_committed"},
		{"bump nothing left", []string{"bump", "--from", "region-a", "--to", "region-b", "--force", "--reason", "again"}, cli.ExitRefused, "no validator held by region-a"},
		{"bump both selectors", []string{"bump", "val-1", "--from", "region-b", "--to", "region-a", "--reason", "x"}, cli.ExitUsage, "not both"},
		{"bump without to", []string{"bump", "val-1", "--reason", "x"}, cli.ExitUsage, "--to is required"},
		{"history", []string{"history", "val-1"}, cli.ExitOK, "grant_committed"},
		{"history bad limit", []string{"history", "--limit", "-1"}, cli.ExitUsage, "--limit"},
		{"evidence", []string{"evidence", "val-1"}, cli.ExitOK, "drained leases"},
		{"unknown command", []string{"promote"}, cli.ExitUsage, "unknown command"},
		{"bad output", []string{"status", "--output", "yaml"}, cli.ExitUsage, "table or json"},
		{"bad flag", []string{"status", "--bogus"}, cli.ExitUsage, "bogus"},
	}
	for _, s := range steps {
		code, out, errOut := run(c.URL, env, s.args...)
		where := out
		if s.code != cli.ExitOK {
			where = errOut
		}
		if code != s.code || !strings.Contains(where, s.contains) {
			t.Fatalf("%s: fencectl %s = exit %d\nstdout: %s\nstderr: %s\nwant exit %d and %q", s.name, strings.Join(s.args, " "), code, out, errOut, s.code, s.contains)
		}
	}
	sts, err := c.Client.Statuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Epoch.Epoch != 2 || st.Epoch.Holder != "region-b" || st.Epoch.State != fencing.StateActive {
			t.Fatalf("%s after the bump: %+v, want epoch 2 active on region-b", st.ID, st.Epoch)
		}
	}
}

func TestJSONOutput(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")
	code, out, errOut := run(c.URL, nil, "bump", "val-1", "--to", "region-b", "--force", "--operator", "bob", "--reason", "r", "--output", "json")
	var res []fencing.BumpResult
	if code != cli.ExitOK || json.Unmarshal([]byte(out), &res) != nil || len(res) != 1 || !res[0].Done || len(res[0].Timeline) < 3 {
		t.Fatalf("bump --output json = exit %d, %q (stderr %q)", code, out, errOut)
	}
	for _, args := range [][]string{{"status"}, {"history"}, {"evidence"}} {
		code, out, _ := run(c.URL, nil, append(args, "--output", "json")...)
		if code != cli.ExitOK || !json.Valid([]byte(out)) {
			t.Fatalf("%s --output json = exit %d, not JSON: %q", args[0], code, out)
		}
	}
	code, out, _ = run(c.URL, nil, "--output", "json", "status")
	var st api.StatusResponse
	if code != cli.ExitOK || json.Unmarshal([]byte(out), &st) != nil || len(st.Validators) != 1 {
		t.Fatalf("global --output before the command = exit %d, %q", code, out)
	}
}

func TestUnavailable(t *testing.T) {
	code, _, errOut := run("http://127.0.0.1:1", nil, "status")
	if code != cli.ExitUnavailable || !strings.Contains(errOut, "unreachable") {
		t.Fatalf("status against nothing = exit %d, %q; want %d", code, errOut, cli.ExitUnavailable)
	}
	code, _, errOut = run("ftp://x", nil, "status")
	if code != cli.ExitUsage {
		t.Fatalf("status with a bad URL = exit %d, %q; want %d", code, errOut, cli.ExitUsage)
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := run("", nil, "--help")
	if code != cli.ExitOK || !strings.Contains(out, "Exit codes") {
		t.Fatalf("--help = exit %d, %q", code, out)
	}
	code, out, _ = run("", nil, "bump", "--help")
	if code != cli.ExitOK || !strings.Contains(out, "--timeout") || !strings.Contains(out, "expired") {
		t.Fatalf("bump --help = exit %d, %q", code, out)
	}
}
