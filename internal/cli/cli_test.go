package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"sigs.k8s.io/yaml"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/cli"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/localjournal"
	"github.com/validator-fencing/fencing/internal/readiness"
	"github.com/validator-fencing/fencing/internal/version"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runOpts tune one fencectl run.
type runOpts struct {
	env      map[string]string // FENCE_COORDINATOR is the coordinator's URL unless set here
	stdin    string
	terminal bool // every stream is a terminal
	ready    func(context.Context, readiness.Options) (readiness.Report, error)
	ctx      context.Context
	stdout   *syncBuffer
}

// fencectl runs fencectl against url and returns its exit code and output.
func fencectl(t *testing.T, url string, o runOpts, args ...string) (int, string, string) {
	t.Helper()
	var errOut syncBuffer
	stdout := o.stdout
	if stdout == nil {
		stdout = &syncBuffer{}
	}
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	e := cli.Env{
		Stdin:  strings.NewReader(o.stdin),
		Stdout: stdout, Stderr: &errOut,
		Getenv: func(k string) string {
			if v, ok := o.env[k]; ok {
				return v
			}
			if k == "FENCE_COORDINATOR" {
				return url
			}
			return ""
		},
		IsTerminal: func(any) bool { return o.terminal },
		Readiness:  o.ready,
	}
	code := cli.Run(ctx, args, e)
	return code, stdout.String(), errOut.String()
}

// must runs fencectl and fails the test unless it exits with code.
func must(t *testing.T, url string, code int, args ...string) string {
	t.Helper()
	got, out, errOut := fencectl(t, url, runOpts{}, args...)
	if got != code {
		t.Fatalf("fencectl %s = exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errOut)
	}
	return out
}

// acquire takes a lease for sidecar of holder, as a sidecar would, with
// problems reported (none: ready). A refusal (the holder is not active) is
// fine: the coordinator keeps the report as the sidecar's presence.
func acquire(t *testing.T, c *fencetest.Coordinator, id, holder, sidecar string, ttl int64, problems ...string) (fencing.Lease, error) {
	t.Helper()
	g, err := c.Client.Acquire(context.Background(), api.AcquireRequest{Validator: fencing.MustParseValidatorID(id), Holder: holder, Sidecar: sidecar, TTLSeconds: ttl, Problems: problems})
	return g.Lease, err
}

// etcdState is every key and value under the coordinator's prefix and the
// store's revision: a change of anything changes it.
func etcdState(t *testing.T, c *fencetest.Coordinator) string {
	t.Helper()
	resp, err := c.Etcd.Client(t).Get(context.Background(), "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), "/presence/") {
			continue // sidecars' reports, refreshed by their own requests
		}
		b.WriteString(string(kv.Key) + "=" + string(kv.Value) + "\n")
	}
	return b.String()
}

func status(t *testing.T, c *fencetest.Coordinator, id string) fencing.Status {
	t.Helper()
	st, err := c.Client.Status(context.Background(), fencing.MustParseValidatorID(id))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCommands(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	env := map[string]string{"FENCE_COMMENT": "alice"}
	steps := []struct {
		name     string
		args     []string
		code     int
		contains string // in stdout, or in stderr for a non-zero code
	}{
		{"add", []string{"validator", "add", "val-1", "--holder", "region-a", "--reason", "onboard"}, cli.ExitOK, "epoch 1 active on region-a"},
		{"add second", []string{"validator", "add", "val-2", "--holder=region-a", "--reason", "onboard"}, cli.ExitOK, "registered val-2"},
		{"add again", []string{"validator", "add", "val-1", "--holder", "region-a", "--reason", "x"}, cli.ExitRefused, "already registered"},
		{"add without reason", []string{"validator", "add", "val-3", "--holder", "region-a"}, cli.ExitUsage, "--reason is required"},
		{"add blank reason", []string{"validator", "add", "val-3", "--holder", "region-a", "--reason", "  "}, cli.ExitUsage, "--reason is required"},
		{"add bad holder", []string{"validator", "add", "val-3", "--holder", "Region A", "--reason", "x"}, cli.ExitUsage, "DNS label"},
		{"add bad validator", []string{"validator", "add", "../etc", "--holder", "region-a", "--reason", "x"}, cli.ExitUsage, "validator"},
		{"add two validators", []string{"validator", "add", "a", "b", "--holder", "region-a", "--reason", "x"}, cli.ExitUsage, "accepts 1 arg"},
		{"validator without command", []string{"validator"}, cli.ExitUsage, "needs a command: add, remove"},
		{"validator unknown command", []string{"validator", "rename", "x"}, cli.ExitUsage, `unknown command "rename"`},
		{"holder add", []string{"holder", "add", "region-c", "--reason", "CHG-1 third region"}, cli.ExitOK, "registered holder region-c"},
		{"holder add bad", []string{"holder", "add", "Region C", "--reason", "x"}, cli.ExitUsage, "DNS label"},
		{"holder list", []string{"holder", "list"}, cli.ExitOK, "region-c"},
		{"status", []string{"status"}, cli.ExitOK, "val-2"},
		{"status named", []string{"status", "val-1"}, cli.ExitOK, "region-a"},
		{"status unknown", []string{"status", "nope"}, cli.ExitRefused, "not registered"},
		{"freeze wrong epoch", []string{"freeze", "val-2", "--expected-epoch", "5", "--reason", "x"}, cli.ExitRefused, "expected epoch 5"},
		{"freeze both selectors", []string{"freeze", "val-2", "--holder", "region-a", "--reason", "x"}, cli.ExitUsage, "not both"},
		{"freeze", []string{"freeze", "val-2", "--reason", "INC-1"}, cli.ExitOK, "revoke committed"},
		{"freeze again", []string{"freeze", "val-2", "--reason", "INC-1"}, cli.ExitRefused, "conflict"},
		{"unfreeze", []string{"unfreeze", "val-2", "--reason", "INC-1 back", "--force", "--timeout", "30s"}, cli.ExitOK, "granted: epoch 2 active on region-a"},
		{"unfreeze active", []string{"unfreeze", "val-2", "--reason", "x"}, cli.ExitRefused, "nothing to unfreeze"},
		{"bump by holder", []string{"bump", "--from", "region-a", "--to", "region-b", "--force", "--yes", "--reason", "INC-1 failover"}, cli.ExitOK, "grant_committed"},
		{"bump nothing left", []string{"bump", "--from", "region-a", "--to", "region-b", "--force", "--yes", "--reason", "again"}, cli.ExitRefused, "no validator held by region-a"},
		{"bump both selectors", []string{"bump", "val-1", "--from", "region-b", "--to", "region-a", "--reason", "x"}, cli.ExitUsage, "not both"},
		{"bump without to", []string{"bump", "val-1", "--reason", "x"}, cli.ExitUsage, "--to is required"},
		{"bump to where it is", []string{"bump", "val-1", "--to", "region-b", "--reason", "x"}, cli.ExitUsage, "already active on region-b"},
		{"bump bad timeout", []string{"bump", "val-1", "--to", "region-a", "--reason", "x", "--timeout", "11m"}, cli.ExitUsage, "between 0 and 10m"},
		{"bump bad first wait", []string{"bump", "val-1", "--to", "region-a", "--reason", "x", "--first-signature-wait", "2m"}, cli.ExitUsage, "--first-signature-wait"},
		{"follow with to", []string{"bump", "--follow", "0123456789abcdef", "val-1", "--to", "region-a"}, cli.ExitUsage, "--to does not apply"},
		{"follow unknown bump", []string{"bump", "--follow", "0123456789abcdef", "val-1"}, cli.ExitRefused, "no bump"},
		{"scale flags without scale", []string{"bump", "val-1", "--to", "region-a", "--reason", "x", "--statefulset", "s"}, cli.ExitUsage, "need --scale"},
		{"scale without contexts", []string{"bump", "val-1", "--to", "region-a", "--reason", "x", "--scale"}, cli.ExitUsage, "--scale needs --from-context"},
		{"remove active", []string{"validator", "remove", "val-1", "--reason", "x"}, cli.ExitRefused, "only a fenced validator"},
		{"history", []string{"history", "val-1"}, cli.ExitOK, "grant_committed"},
		{"history limit", []string{"history", "--limit", "1"}, cli.ExitOK, "grant_committed"},
		{"history bad limit", []string{"history", "--limit", "-1"}, cli.ExitUsage, "--limit"},
		{"history two validators", []string{"history", "val-1", "val-2"}, cli.ExitUsage, "accepts at most 1 arg"},
		{"evidence", []string{"evidence", "val-1"}, cli.ExitOK, "drained leases"},
		{"evidence unknown", []string{"evidence", "nope"}, cli.ExitRefused, "not registered"},
		{"evidence bad since", []string{"evidence", "--since", "0s"}, cli.ExitUsage, "--since"},
		{"no command", nil, cli.ExitUsage, "name a command"},
		{"unknown command", []string{"promote"}, cli.ExitUsage, `unknown command "promote"`},
		{"drill is gone", []string{"drill"}, cli.ExitUsage, `unknown command "drill"`},
		{"bad output", []string{"status", "--output", "xml"}, cli.ExitUsage, "table, json or yaml"},
		{"bad flag", []string{"status", "--bogus"}, cli.ExitUsage, "unknown flag: --bogus"},
		{"operator is gone", []string{"freeze", "val-1", "--operator", "bob", "--reason", "x"}, cli.ExitUsage, "put free text in --comment"},
	}
	for _, s := range steps {
		code, out, errOut := fencectl(t, c.URL, runOpts{env: env}, s.args...)
		where := out
		if s.code != cli.ExitOK {
			where = errOut
		}
		if code != s.code || !strings.Contains(where, s.contains) {
			t.Fatalf("%s: fencectl %s = exit %d\nstdout: %s\nstderr: %s\nwant exit %d and %q", s.name, strings.Join(s.args, " "), code, out, errOut, s.code, s.contains)
		}
	}
	for _, id := range []string{"val-1", "val-2"} {
		if st := status(t, c, id); st.Epoch.Holder != "region-b" || st.Epoch.State != fencing.StateActive {
			t.Fatalf("%s after the bump: %+v, want active on region-b", id, st.Epoch)
		}
	}
	// Who acted and the comment are in the history; freeze and remove.
	evs, err := c.Client.Events(context.Background(), "val-2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(evs, func(e fencing.Event) bool { return e.Kind == fencing.EventFreeze && e.Reason == "INC-1" }); i < 0 || evs[i].By != "alice" {
		t.Errorf("freeze event by --comment alice on an open coordinator: %+v", evs)
	}
	must(t, c.URL, cli.ExitOK, "freeze", "val-1", "--reason", "CHG-2 decommission")
	waitFor(t, "val-1 fenced", func() bool { return status(t, c, "val-1").Epoch.State == fencing.StateFenced })
	if out := must(t, c.URL, cli.ExitOK, "validator", "remove", "val-1", "--reason", "CHG-2 decommission"); !strings.Contains(out, "removed val-1") {
		t.Errorf("validator remove printed %q", out)
	}
	if out := must(t, c.URL, cli.ExitOK, "status"); strings.Contains(out, "val-1") {
		t.Errorf("status lists val-1 after its removal:\n%s", out)
	}
}

// waitFor polls cond until it holds, failing the test after 20s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Each refusal of the preflight, with nothing changed, and --dry-run.
func TestBumpPreflight(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")

	t.Run("unknown holder", func(t *testing.T) {
		before := etcdState(t, c)
		code, _, errOut := fencectl(t, c.URL, runOpts{}, "bump", "val-1", "--to", "regoin-b", "--reason", "typo")
		if code != cli.ExitRefused || !strings.Contains(errOut, "not_found") || !strings.Contains(errOut, "region-b") {
			t.Fatalf("bump to an unknown holder = exit %d, %q; want 1, not_found naming the known holders", code, errOut)
		}
		if after := etcdState(t, c); after != before {
			t.Errorf("a refused bump changed etcd:\nbefore %s\nafter %s", before, after)
		}
	})
	t.Run("standby not ready", func(t *testing.T) {
		_, _ = acquire(t, c, "val-1", "region-b", "b-0", 5, "local journal refuses: disk full")
		before := etcdState(t, c)
		code, _, errOut := fencectl(t, c.URL, runOpts{}, "bump", "val-1", "--to", "region-b", "--reason", "INC-2")
		if code != cli.ExitRefused || !strings.Contains(errOut, "not_ready") || !strings.Contains(errOut, "disk full") || !strings.Contains(errOut, "--force") {
			t.Fatalf("bump to a standby that is not ready = exit %d, %q; want 1, not_ready with its problem and --force", code, errOut)
		}
		if after := etcdState(t, c); after != before {
			t.Errorf("a refused bump changed etcd")
		}
	})
	t.Run("dry run changes nothing", func(t *testing.T) {
		if _, err := acquire(t, c, "val-1", "region-a", "a-0", 30); err != nil {
			t.Fatal(err)
		}
		before := etcdState(t, c)
		code, out, errOut := fencectl(t, c.URL, runOpts{}, "bump", "val-1", "--to", "region-b", "--reason", "INC-2", "--dry-run")
		for _, want := range []string{"FAIL  standby ready", "ok    holder known", "a-0@region-a", "revoke epoch 1 on region-a", "grant epoch 2 to region-b", "nothing changed", "would refuse"} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run lacks %q:\n%s", want, out)
			}
		}
		if code != cli.ExitRefused {
			t.Errorf("dry run of a bump the coordinator would refuse = exit %d, want 1 (%s)", code, errOut)
		}
		if after := etcdState(t, c); after != before {
			t.Errorf("--dry-run changed etcd:\nbefore %s\nafter %s", before, after)
		}
		code, out, _ = fencectl(t, c.URL, runOpts{}, "bump", "val-1", "--to", "region-b", "--reason", "INC-2", "--dry-run", "--force", "-o", "json")
		var plans []api.BumpPlan
		if code != cli.ExitOK || json.Unmarshal([]byte(out), &plans) != nil || len(plans) != 1 || len(plans[0].Leases) != 1 {
			t.Errorf("dry run --force -o json = exit %d, %q; want 0 and one plan with the live lease", code, out)
		}
		// A ready standby passes every check.
		_, _ = acquire(t, c, "val-1", "region-b", "b-0", 5)
		if code, out, _ := fencectl(t, c.URL, runOpts{}, "bump", "val-1", "--to", "region-b", "--reason", "INC-2", "--dry-run"); code != cli.ExitOK || !strings.Contains(out, "ok    standby ready") {
			t.Errorf("dry run with a ready standby = exit %d\n%s", code, out)
		}
		if after := etcdState(t, c); after != before {
			t.Errorf("--dry-run changed etcd")
		}
	})
}

// A lease nobody releases: the bump shows the countdown, exits 4 at
// --timeout, and --follow re-attaches until the lease expired and the grant.
func TestBumpProgressAndFollow(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")
	if _, err := acquire(t, c, "val-1", "region-a", "a-0", 4); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := fencectl(t, c.URL, runOpts{}, "bump", "val-1", "--to", "region-b", "--force", "--reason", "INC-3", "--timeout", "1500ms")
	if code != cli.ExitInProgress {
		t.Fatalf("bump with a lease that outlives --timeout = exit %d, want 4\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"revoke_committed", "waiting for 1 lease to end", "val-1 a-0@region-a", "still revoking after --timeout 1.5s", "fencectl bump --follow"} {
		if !strings.Contains(out, want) {
			t.Errorf("bump output lacks %q:\n%s", want, out)
		}
	}
	st := status(t, c, "val-1")
	if st.Bump == nil {
		t.Fatalf("after exit 4 the bump is not under way: %+v", st)
	}
	// Off a terminal the countdown is at most one line a second.
	if n := strings.Count(out, "waiting for"); n > 3 {
		t.Errorf("%d countdown lines in 1.5s off a terminal, want at most one a second:\n%s", n, out)
	}

	// Re-attach, on a terminal: the countdown line is redrawn in place.
	code, out, errOut = fencectl(t, c.URL, runOpts{terminal: true}, "bump", "--follow", st.Bump.ID, "val-1", "-o", "table")
	if code != cli.ExitOK {
		t.Fatalf("bump --follow = exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"lease_expired", "grant_committed", "granted: epoch 2 active on region-b", "\r\033[Kwaiting for 1 lease"} {
		if !strings.Contains(out, want) {
			t.Errorf("bump --follow output lacks %q:\n%q", want, out)
		}
	}
	// --follow of a bump already granted shows its timeline, as JSON too.
	code, out, _ = fencectl(t, c.URL, runOpts{}, "bump", "--follow", st.Bump.ID, "val-1", "-o", "json")
	var res []fencing.BumpResult
	if code != cli.ExitOK || json.Unmarshal([]byte(out), &res) != nil || len(res) != 1 || !res[0].Done || res[0].Bump.ID != st.Bump.ID {
		t.Fatalf("bump --follow of a granted bump -o json = exit %d, %q", code, out)
	}
	steps := map[string]bool{}
	for _, te := range res[0].Timeline {
		steps[te.Step] = true
	}
	for _, s := range []string{"revoke_committed", "lease_expired", "fenced", "grant_committed"} {
		if !steps[s] {
			t.Errorf("timeline lacks %s: %+v", s, res[0].Timeline)
		}
	}
}

// A bump of several validators asks on a terminal and needs --yes off one;
// so does abandon.
func TestConfirmation(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")
	c.AddValidator(t, "val-2", "region-a")
	bump := []string{"bump", "--from", "region-a", "--to", "region-b", "--force", "--reason", "INC-4"}
	before := etcdState(t, c)

	code, _, errOut := fencectl(t, c.URL, runOpts{}, bump...)
	if code != cli.ExitUsage || !strings.Contains(errOut, "needs --yes when not run on a terminal") {
		t.Fatalf("bump --from off a terminal without --yes = exit %d, %q; want 2", code, errOut)
	}
	code, _, errOut = fencectl(t, c.URL, runOpts{}, "bump", "val-1", "val-2", "--to", "region-b", "--force", "--reason", "INC-4")
	if code != cli.ExitUsage {
		t.Fatalf("bump of two named validators off a terminal without --yes = exit %d, %q; want 2", code, errOut)
	}
	code, _, errOut = fencectl(t, c.URL, runOpts{terminal: true, stdin: "n\n"}, bump...)
	if code != cli.ExitRefused || !strings.Contains(errOut, "Bump 2 validators to region-b? [y/N]") || !strings.Contains(errOut, "val-2: epoch 1 active on region-a -> region-b") || !strings.Contains(errOut, "not confirmed") {
		t.Fatalf("bump answered n = exit %d\n%s", code, errOut)
	}
	code, _, errOut = fencectl(t, c.URL, runOpts{terminal: true, stdin: ""}, bump...)
	if code != cli.ExitRefused {
		t.Fatalf("bump with no answer (EOF) = exit %d, %q; want 1", code, errOut)
	}
	if after := etcdState(t, c); after != before {
		t.Fatalf("a bump not confirmed changed etcd")
	}
	code, out, errOut := fencectl(t, c.URL, runOpts{terminal: true, stdin: "y\n"}, bump...)
	if code != cli.ExitOK || strings.Count(out, "granted: epoch 2") != 2 {
		t.Fatalf("bump answered y = exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut := fencectl(t, c.URL, runOpts{}, "bump", "--from", "region-b", "--to", "region-a", "--force", "--yes", "--reason", "back"); code != cli.ExitOK {
		t.Fatalf("bump --from --yes off a terminal = exit %d, %q", code, errOut)
	}
	// One validator named: no question.
	if code, _, errOut := fencectl(t, c.URL, runOpts{}, "bump", "val-1", "--to", "region-b", "--force", "--reason", "one"); code != cli.ExitOK {
		t.Fatalf("bump of one validator off a terminal = exit %d, %q", code, errOut)
	}

	abandon := []string{"abandon", "val-1", "--height", "7", "--step", "commit", "--reason", "INC-4"}
	if code, _, errOut := fencectl(t, c.URL, runOpts{}, abandon...); code != cli.ExitUsage || !strings.Contains(errOut, "abandon needs --yes") {
		t.Fatalf("abandon off a terminal without --yes = exit %d, %q; want 2", code, errOut)
	}
	code, _, errOut = fencectl(t, c.URL, runOpts{terminal: true, stdin: "no\n"}, abandon...)
	if code != cli.ExitRefused || !strings.Contains(errOut, "val-1 is active (epoch 4 on region-b)") || !strings.Contains(errOut, "Abandon 7/0/commit of val-1? [y/N]") {
		t.Fatalf("abandon answered no = exit %d\n%s", code, errOut)
	}
}

// abandon: refused unless fenced; then the watermark is abandoned.
func TestAbandon(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")
	ctx := context.Background()
	l, err := acquire(t, c, "val-1", "region-a", "a-0", 10)
	if err != nil {
		t.Fatal(err)
	}
	hrs := fencing.HRS{Height: 13, Round: 0, Step: fencing.StepBlock}
	if _, err := c.Client.JournalSignature(ctx, fencing.JournalRequest{Lease: l, HRS: hrs, Digest: fencing.Digest{0x13}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Release(ctx, l, nil); err != nil {
		t.Fatal(err)
	}
	c.Bump(t, "val-1", "region-b")
	abandon := []string{"abandon", "val-1", "--height", "13", "--step", "block", "--reason", "INC-5 13/0/block never published", "--yes"}
	if code, _, errOut := fencectl(t, c.URL, runOpts{}, abandon...); code != cli.ExitRefused || !strings.Contains(errOut, "only while the validator is fenced") {
		t.Fatalf("abandon while active = exit %d, %q; want 1", code, errOut)
	}
	must(t, c.URL, cli.ExitOK, "freeze", "val-1", "--reason", "INC-5")
	waitFor(t, "val-1 fenced", func() bool { return status(t, c, "val-1").Epoch.State == fencing.StateFenced })
	if code, _, errOut := fencectl(t, c.URL, runOpts{}, "abandon", "val-1", "--height", "13", "--step", "vote", "--reason", "x", "--yes"); code != cli.ExitUsage || !strings.Contains(errOut, "--step") {
		t.Fatalf("abandon --step vote = exit %d, %q; want 2", code, errOut)
	}
	if code, _, errOut := fencectl(t, c.URL, runOpts{}, "abandon", "val-1", "--step", "block", "--reason", "x", "--yes"); code != cli.ExitUsage || !strings.Contains(errOut, "--height is required") {
		t.Fatalf("abandon without --height = exit %d, %q; want 2", code, errOut)
	}
	code, out, errOut := fencectl(t, c.URL, runOpts{}, append(abandon, "-o", "json")...)
	var wm fencing.Watermark
	if code != cli.ExitOK || json.Unmarshal([]byte(out), &wm) != nil || !wm.Abandoned || wm.HRS != hrs {
		t.Fatalf("abandon = exit %d, %q, %q", code, out, errOut)
	}
	if out := must(t, c.URL, cli.ExitOK, "status", "val-1"); !strings.Contains(out, "13/0/block (e1) abandoned") {
		t.Errorf("status after abandon:\n%s", out)
	}
	must(t, c.URL, cli.ExitOK, "unfreeze", "val-1", "--reason", "INC-5 resume", "--force")
}

func TestCheckHolder(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")
	c.AddValidator(t, "val-2", "region-b")
	check := func(holder string, args ...string) (int, string) {
		code, out, errOut := fencectl(t, c.URL, runOpts{}, append([]string{"status", "--check-holder", holder}, args...)...)
		return code, out + errOut
	}
	// No lease anywhere: each active holder is not signing.
	if code, out := check("region-a"); code != cli.ExitRefused || !strings.Contains(out, "no sidecar of region-a holds a lease") {
		t.Fatalf("region-a with no lease = exit %d\n%s", code, out)
	}
	if _, err := acquire(t, c, "val-1", "region-a", "a-0", 30); err != nil {
		t.Fatal(err)
	}
	if code, out := check("region-a"); code != cli.ExitOK || !strings.Contains(out, "a-0@region-a/e1") {
		t.Fatalf("region-a leased where active, nothing where not = exit %d\n%s", code, out)
	}
	if code, out := check("region-b", "val-1"); code != cli.ExitOK {
		t.Fatalf("region-b on val-1 (not its holder, no lease) = exit %d\n%s", code, out)
	}
	if code, out := check("region-b"); code != cli.ExitRefused || !strings.Contains(out, "val-2") {
		t.Fatalf("region-b active on val-2 without a lease = exit %d\n%s", code, out)
	}
	// A freeze: region-a still holds a lease where it is no longer active.
	must(t, c.URL, cli.ExitOK, "freeze", "val-1", "--reason", "INC-6")
	code, out := check("region-a", "val-1")
	if code != cli.ExitRefused || !strings.Contains(out, "is not its active holder, but holds a lease") {
		t.Fatalf("region-a holding a lease of a revoked epoch = exit %d\n%s", code, out)
	}
	code, jsonOut, _ := fencectl(t, c.URL, runOpts{}, "status", "--check-holder", "region-a", "val-1", "-o", "json")
	var hc cli.HolderCheck
	if code != cli.ExitRefused || json.Unmarshal([]byte(jsonOut), &hc) != nil || hc.OK || len(hc.Validators) != 1 || hc.Validators[0].Active {
		t.Errorf("--check-holder -o json = exit %d, %q", code, jsonOut)
	}
	if code, out := check("Region A"); code != cli.ExitUsage {
		t.Errorf("--check-holder with a bad holder = exit %d\n%s", code, out)
	}
	if code, _, errOut := fencectl(t, c.URL, runOpts{}, "status", "--check-holder", "region-a", "--watch"); code != cli.ExitUsage {
		t.Errorf("--check-holder with --watch = exit %d, %q", code, errOut)
	}
}

// -o json and -o yaml on every command give one document of the same data.
func TestOutputFormats(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-0", "region-a")
	ready := func(context.Context, readiness.Options) (readiness.Report, error) {
		return readiness.Report{Contexts: []string{"a", "b"}, Findings: []readiness.Finding{{Severity: readiness.OK, Check: "api-server", Cluster: "a"}}}, nil
	}
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			id := "val-" + format
			for _, tc := range []struct {
				args []string
				code int
				key  string // a field the document has
			}{
				{[]string{"validator", "add", id, "--holder", "region-a", "--reason", "r"}, 0, "epoch"},
				{[]string{"status"}, 0, "validators"},
				{[]string{"status", id, "--check-holder", "region-b"}, 0, "holder"},
				{[]string{"holder", "add", "region-" + format, "--reason", "r"}, 0, "holder"},
				{[]string{"holder", "list"}, 0, "holders"},
				{[]string{"bump", id, "--to", "region-b", "--force", "--reason", "r", "--dry-run"}, 0, "checks"},
				{[]string{"bump", id, "--to", "region-b", "--force", "--reason", "r"}, 0, "timeline"},
				{[]string{"freeze", id, "--reason", "r"}, 0, "epoch"},
				{[]string{"unfreeze", id, "--reason", "r", "--force"}, 0, "timeline"},
				{[]string{"history", id}, 0, "events"},
				{[]string{"evidence"}, 0, "validators"},
				{[]string{"audit", "journal"}, 0, "duplicates"},
				{[]string{"audit", "chain", "--rpc", "http://127.0.0.1:1", "--to", "2", "--timeout", "200ms", "--retries", "0"}, 2, "unaudited"},
				{[]string{"readiness", "--context", "a", "--context", "b"}, 0, "findings"},
			} {
				code, out, errOut := fencectl(t, c.URL, runOpts{ready: ready}, append(tc.args, "-o", format)...)
				if code != tc.code {
					t.Fatalf("fencectl %s -o %s = exit %d, want %d\n%s\n%s", strings.Join(tc.args, " "), format, code, tc.code, out, errOut)
				}
				doc := []byte(out)
				if format == "yaml" {
					var err error
					if doc, err = yaml.YAMLToJSON(doc); err != nil {
						t.Fatalf("fencectl %s -o yaml is not YAML: %v\n%s", strings.Join(tc.args, " "), err, out)
					}
				}
				if !json.Valid(doc) || !bytes.Contains(doc, []byte(`"`+tc.key+`"`)) {
					t.Fatalf("fencectl %s -o %s: not one document with %q:\n%s", strings.Join(tc.args, " "), format, tc.key, out)
				}
			}
		})
	}
}

// Global flags stand anywhere and come from FENCE_<NAME>; the command line
// wins.
func TestGlobalFlags(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")
	noEnv := map[string]string{"FENCE_COORDINATOR": ""}
	isJSON := func(s string) bool { return json.Valid([]byte(s)) && strings.HasPrefix(s, "{") }
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		json bool
		want string
	}{
		{"before the command", noEnv, []string{"--coordinator", c.URL, "-o", "json", "status"}, true, "val-1"},
		{"after the command", noEnv, []string{"status", "--coordinator=" + c.URL, "--output", "json"}, true, "val-1"},
		{"after the arguments", noEnv, []string{"status", "val-1", "-o", "json", "--coordinator", c.URL}, true, "val-1"},
		{"between group and command", noEnv, []string{"holder", "-o", "json", "--coordinator", c.URL, "list"}, true, "region-b"},
		{"from the environment", map[string]string{"FENCE_OUTPUT": "json"}, []string{"status"}, true, "val-1"},
		{"flag over environment", map[string]string{"FENCE_OUTPUT": "json"}, []string{"status", "-o", "table"}, false, "val-1"},
		{"several coordinators, first down", map[string]string{"FENCE_COORDINATOR": "http://127.0.0.1:1," + c.URL}, []string{"status", "-o", "json"}, true, "val-1"},
	} {
		code, out, errOut := fencectl(t, c.URL, runOpts{env: tc.env}, tc.args...)
		if code != cli.ExitOK || isJSON(out) != tc.json || !strings.Contains(out, tc.want) {
			t.Errorf("%s: fencectl %s = exit %d, json %t (want %t)\n%s\n%s", tc.name, strings.Join(tc.args, " "), code, isJSON(out), tc.json, out, errOut)
		}
	}
	if _, _, errOut := fencectl(t, c.URL, runOpts{env: map[string]string{"FENCE_OPERATOR": "bob"}}, "status"); !strings.Contains(errOut, "FENCE_OPERATOR is no longer read") {
		t.Errorf("FENCE_OPERATOR set: stderr %q, want a note that it is gone", errOut)
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"FENCE_REQUEST_TIMEOUT": "soon"}, []string{"status"}, `environment FENCE_REQUEST_TIMEOUT="soon"`},
		{map[string]string{"FENCE_OUTPUT": "xml"}, []string{"status"}, `--output "xml" must be table, json or yaml`},
		{nil, []string{"status", "--coordinator", "ftp://x"}, "must look like http://host:port"},
		{nil, []string{"status", "--request-timeout", "0s"}, "--request-timeout 0s must be positive"},
		{nil, []string{"status", "--ca-file", "/nonexistent/ca.crt"}, "coordinator CA file"},
	} {
		code, _, errOut := fencectl(t, c.URL, runOpts{env: tc.env}, tc.args...)
		if code != cli.ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("fencectl %s with %v = exit %d, %q; want 2 and %q", strings.Join(tc.args, " "), tc.env, code, errOut, tc.want)
		}
	}
}

// The token file: a configuration error when open to others or short; the
// principal it authenticates is who acted, --comment a comment.
func TestTokenFile(t *testing.T) {
	const token = "0123456789abcdef-operator"
	c := fencetest.Start(t, fencetest.Options{OperatorToken: token})
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		file string
		code int
		want string
	}{
		{"open to others", write("t1", token, 0o644), cli.ExitUsage, "accessible to others"},
		{"group writable", write("t2", token, 0o620), cli.ExitUsage, "writable by its group"},
		{"short", write("t3", "abc\n", 0o600), cli.ExitUsage, "holds 3 characters, fewer than 16"},
		{"missing", filepath.Join(dir, "nope"), cli.ExitUsage, "no such file"},
		{"wrong token", write("t4", "fedcba9876543210-other", 0o600), cli.ExitRefused, "unauthorized"},
		{"Secret mounted with fsGroup", write("t5", token+"\n", 0o440), cli.ExitOK, ""},
	} {
		code, _, errOut := fencectl(t, c.URL, runOpts{}, "status", "--token-file", tc.file)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "0123456789abcdef") {
			t.Errorf("%s: status --token-file = exit %d, %q; want %d and %q, never the token", tc.name, code, errOut, tc.code, tc.want)
		}
	}
	good := write("good", token, 0o600)
	env := map[string]string{"FENCE_TOKEN_FILE": good}
	if code, _, errOut := fencectl(t, c.URL, runOpts{env: env}, "validator", "add", "val-1", "--holder", "region-a", "--reason", "CHG-1", "--comment", "alice"); code != cli.ExitOK {
		t.Fatalf("validator add with FENCE_TOKEN_FILE = exit %d, %q", code, errOut)
	}
	evs, err := c.ClientWithToken(t, token).Events(context.Background(), "val-1", 0)
	if err != nil || len(evs) != 1 || evs[0].By != "operator-token" || evs[0].Comment != "alice" {
		t.Fatalf("history = %+v, %v; want by operator-token with comment alice", evs, err)
	}
}

func TestUnavailable(t *testing.T) {
	code, _, errOut := fencectl(t, "http://127.0.0.1:1", runOpts{}, "status")
	if code != cli.ExitUnavailable || !strings.Contains(errOut, "unreachable") {
		t.Fatalf("status against nothing = exit %d, %q; want %d", code, errOut, cli.ExitUnavailable)
	}
	code, _, errOut = fencectl(t, "http://127.0.0.1:1", runOpts{}, "freeze", "v", "--reason", "x")
	if code != cli.ExitUnavailable {
		t.Fatalf("freeze against nothing = exit %d, %q; want %d", code, errOut, cli.ExitUnavailable)
	}
}

func TestVersionHelpCompletion(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")
	if out := must(t, c.URL, cli.ExitOK, "--version"); out != version.Line("fencectl")+"\n" {
		t.Errorf("--version = %q, want %q", out, version.Line("fencectl"))
	}
	out := must(t, c.URL, cli.ExitOK, "--help")
	for _, want := range []string{"Exit codes", "readiness: 0 OK, 1 warnings, 2 critical, 3 could not check", "FENCE_<NAME>", "--token-file"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	// Every command's help teaches with examples (cobra's completion
	// scripts aside).
	var walk func(cmd *cobra.Command, path []string)
	walk = func(cmd *cobra.Command, path []string) {
		out := must(t, c.URL, cli.ExitOK, append(path, "--help")...)
		if !strings.Contains(out, "Usage:") {
			t.Errorf("fencectl %s --help:\n%s", strings.Join(path, " "), out)
		}
		if !cmd.HasSubCommands() && path[0] != "completion" && !strings.Contains(out, "Examples:") {
			t.Errorf("fencectl %s --help has no examples:\n%s", strings.Join(path, " "), out)
		}
		for _, sub := range cmd.Commands() {
			if !sub.Hidden && sub.Name() != "help" {
				walk(sub, append(slices.Clone(path), sub.Name()))
			}
		}
	}
	for _, cmd := range cli.NewCommand(cli.Env{}).Commands() {
		if !cmd.Hidden && cmd.Name() != "help" {
			walk(cmd, []string{cmd.Name()})
		}
	}
	if out := must(t, c.URL, cli.ExitOK, "bump", "--help"); !strings.Contains(out, "--first-signature-wait") || !strings.Contains(out, "expired") {
		t.Errorf("bump --help:\n%s", out)
	}
	for shell, want := range map[string]string{"bash": "__start_fencectl", "zsh": "#compdef fencectl", "fish": "complete -c fencectl"} {
		if out := must(t, c.URL, cli.ExitOK, "completion", shell); !strings.Contains(out, want) {
			t.Errorf("completion %s lacks %q", shell, want)
		}
	}
	if out := must(t, c.URL, cli.ExitOK, "__complete", "status", ""); !strings.Contains(out, "val-1\tactive on region-a") {
		t.Errorf("completing status's argument:\n%s", out)
	}
	if out := must(t, c.URL, cli.ExitOK, "__complete", "bump", "val-1", "--to", ""); !strings.Contains(out, "region-b") {
		t.Errorf("completing bump --to:\n%s", out)
	}
	if out := must(t, c.URL, cli.ExitOK, "__complete", "status", "-o", ""); !strings.Contains(out, "yaml") {
		t.Errorf("completing -o:\n%s", out)
	}
}

// status --watch redraws on change; history --follow prints each new
// event; both end with exit 0 when interrupted.
func TestWatchAndFollow(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")
	for _, tc := range []struct {
		name   string
		args   []string
		before string // printed before the freeze
		after  string // printed after it
	}{
		{"status --watch", []string{"status", "val-1", "--watch"}, "active", "fenced"},
		{"status --watch -o json", []string{"status", "--watch", "-o", "json"}, `"state":"active"`, `"state":"fenced"`},
		{"history --follow", []string{"history", "--follow"}, "validator_added", "INC-7 history --follow"},
		{"history --follow -o json", []string{"history", "val-1", "--follow", "-o", "json"}, `"kind":"validator_added"`, `"reason":"INC-7 history --follow -o json"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st := status(t, c, "val-1"); st.Epoch.State != fencing.StateActive {
				c.Bump(t, "val-1", "region-a")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &syncBuffer{}
			done := make(chan int, 1)
			go func() {
				code, _, _ := fencectl(t, c.URL, runOpts{ctx: ctx, stdout: out}, tc.args...)
				done <- code
			}()
			waitFor(t, tc.before, func() bool { return strings.Contains(out.String(), tc.before) })
			must(t, c.URL, cli.ExitOK, "freeze", "val-1", "--reason", "INC-7 "+tc.name)
			waitFor(t, tc.after, func() bool { return strings.Contains(out.String(), tc.after) })
			cancel()
			if code := <-done; code != cli.ExitOK {
				t.Errorf("%s ended with exit %d, want 0", tc.name, code)
			}
		})
	}
}

func TestAuditCommands(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	c.AddValidator(t, "val-1", "region-a")
	ctx := context.Background()
	l, err := acquire(t, c, "val-1", "region-a", "a-0", 10)
	if err != nil {
		t.Fatal(err)
	}
	at := fencing.HRS{Height: 5, Round: 0, Step: fencing.StepCommit}
	if _, err := c.Client.JournalSignature(ctx, fencing.JournalRequest{Lease: l, HRS: at, Digest: fencing.Digest{0xaa}}); err != nil {
		t.Fatal(err)
	}
	if out := must(t, c.URL, cli.ExitOK, "audit", "journal"); !strings.Contains(out, "CLEAN") {
		t.Errorf("audit journal:\n%s", out)
	}
	// A sidecar's local journal that signed 5/0/commit with another digest.
	state := t.TempDir()
	writeLocalJournal(t, state, fencing.JournalEntry{Validator: "val-1", HRS: at, Digest: fencing.Digest{0xbb}, Epoch: 1, Sidecar: "b-0", At: time.Now()})
	code, out, errOut := fencectl(t, c.URL, runOpts{}, "audit", "journal", "--state-dir", state, "-o", "json")
	var rep audit.Report
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Duplicates) != 1 || rep.Duplicates[0].Height != 5 {
		t.Fatalf("audit journal with a duplicate = exit %d\n%s\n%s", code, out, errOut)
	}
	// Without a coordinator named, --state-dir audits the local files only.
	code, out, errOut = fencectl(t, "", runOpts{env: map[string]string{"FENCE_COORDINATOR": ""}}, "audit", "journal", "--state-dir", state)
	if code != 0 || strings.Contains(errOut, "not recorded") {
		t.Fatalf("audit journal --state-dir alone = exit %d\n%s\n%s", code, out, errOut)
	}
	// Each result was recorded with the coordinator.
	evs, err := c.Client.Events(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var audits []string
	for _, e := range evs {
		if e.Kind == fencing.EventAudit {
			audits = append(audits, e.Detail)
		}
	}
	if len(audits) != 2 || !strings.HasPrefix(audits[1], "1 duplicates") {
		t.Errorf("audit events = %q, want the clean run and the one with 1 duplicate", audits)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit"}, "audit needs a command: chain, journal"},
		{[]string{"audit", "blocks"}, `unknown command "blocks"`},
		{[]string{"audit", "chain"}, "at least one --rpc endpoint is required"},
		{[]string{"audit", "chain", "--rpc", "http://x", "--from", "ten"}, `invalid argument "ten" for "--from"`},
		{[]string{"audit", "chain", "--rpcs", "http://x"}, "unknown flag: --rpcs"},
		{[]string{"audit", "chain", "--rpc", "http://x", "--consensus", "pow"}, `consensus "pow" is not one of auto, clique, qbft, ibft2`},
		{[]string{"audit", "chain", "--rpc", "http://x", "--from", "5", "--to", "4"}, "--to (4) must not be below --from (5)"},
		{[]string{"audit", "chain", "--rpc", "http://x", "--batch", "2000", "--concurrency", "99"}, "--concurrency (99) must be between 1 and 64; --batch (2000) must be between 1 and 1000"},
		{[]string{"audit", "chain", "--rpc", "http://x", "extra"}, `unknown command "extra"`},
		{[]string{"audit", "journal", "--output", "xml"}, `--output "xml"`},
	} {
		code, _, errOut := fencectl(t, c.URL, runOpts{}, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("fencectl %s = exit %d, %q; want 2 and one line with %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

func TestReadiness(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	finding := func(s readiness.Severity) func(context.Context, readiness.Options) (readiness.Report, error) {
		return func(_ context.Context, o readiness.Options) (readiness.Report, error) {
			if len(o.Contexts) != 2 || o.Contexts[0] != "region-a" || o.Namespace != "besu" || o.CoordinatorNamespace != readiness.DefaultCoordinatorNamespace || o.Now == nil {
				t.Errorf("readiness options = %+v", o)
			}
			return readiness.Report{Contexts: o.Contexts, Findings: []readiness.Finding{
				{Severity: readiness.OK, Check: "api-server", Cluster: "region-a"},
				{Severity: s, Check: "sidecar", Cluster: "region-b", Subject: "besu-validator-1", Detail: "standby leased"},
			}}, nil
		}
	}
	args := []string{"readiness", "--context", "region-a", "--context", "region-b", "--namespace", "besu"}
	for _, tc := range []struct {
		sev  readiness.Severity
		code int
	}{{readiness.OK, 0}, {readiness.Warn, 1}, {readiness.Critical, 2}} {
		if code, out, errOut := fencectl(t, c.URL, runOpts{ready: finding(tc.sev)}, args...); code != tc.code {
			t.Errorf("readiness with a %v finding = exit %d, want %d\n%s\n%s", tc.sev, code, tc.code, out, errOut)
		}
	}
	failing := func(context.Context, readiness.Options) (readiness.Report, error) {
		return readiness.Report{}, fencing.Errorf(fencing.CodeBadRequest, "context %q not in the kubeconfig", "region-x")
	}
	if code, _, errOut := fencectl(t, c.URL, runOpts{ready: failing}, args...); code != 3 || !strings.Contains(errOut, "could not check") {
		t.Errorf("readiness that could not check = exit %d, %q; want 3", code, errOut)
	}
	// The library itself, with a kubeconfig that does not exist.
	if code, _, errOut := fencectl(t, c.URL, runOpts{}, append(args, "--kubeconfig", filepath.Join(t.TempDir(), "none"))...); code != 3 {
		t.Errorf("readiness without a kubeconfig = exit %d, %q; want 3", code, errOut)
	}
	// Each result is in the history as an audit of kind readiness, its
	// critical findings counted as the audit's duplicates.
	evs, err := c.Client.Events(context.Background(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var details []string
	for _, e := range evs {
		if e.Kind == fencing.EventAudit && e.Reason == "readiness audit" {
			details = append(details, e.Detail)
		}
	}
	if len(details) != 3 || !strings.HasPrefix(details[2], "1 duplicates") || !strings.HasPrefix(details[0], "0 duplicates") {
		t.Errorf("readiness audits in history = %q", details)
	}
}

// writeLocalJournal writes entries to a sidecar's local journal under dir.
func writeLocalJournal(t *testing.T, dir string, entries ...fencing.JournalEntry) {
	t.Helper()
	j, err := localjournal.Open(filepath.Join(dir, "journal"), localjournal.Options{Sidecar: entries[0].Sidecar})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := j.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}
