package drill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/drill"
	"github.com/validator-fencing/fencing/internal/version"
)

func TestDrillCooperative(t *testing.T) {
	res, err := drill.Run(context.Background(), drill.Options{Validators: 2, LeaseTTL: 3 * time.Second, Dir: t.TempDir(), Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !res.Clean() {
		t.Fatalf("Run: not clean: %s; violations %v", res.Check.Summary(), res.Check.Violations)
	}
	if res.MaxHandover.Duration > 2*time.Second {
		t.Errorf("cooperative handover %s, want <= 2s", res.MaxHandover)
	}
	for _, h := range res.Handovers {
		if h.FirstStandby.Before(h.GrantAt) || len(h.Bump.Timeline) < 3 {
			t.Errorf("handover %s: first standby signature %s before the grant %s, or short timeline %v", h.Validator, h.FirstStandby, h.GrantAt, h.Bump.Timeline)
		}
	}
	if res.Check.Grants != 2 || res.Check.Signed == 0 {
		t.Errorf("check: %s, want 2 grants and signatures", res.Check.Summary())
	}
}

// TestDrillCommandPartitioned runs `fence-drill --partition` as an
// operator would, with JSON output: the handover waits for the leases to
// expire and stays within TTL + 2s.
func TestDrillCommandPartitioned(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a lease TTL")
	}
	var out, errb bytes.Buffer
	code := drill.Main(context.Background(), []string{"--validators", "2", "--lease-ttl", "3s", "--partition", "--output", "json"}, &out, &errb)
	if code != drill.ExitPassed {
		t.Fatalf("fence-drill --partition = exit %d; stderr:\n%s", code, errb.String())
	}
	var rep struct {
		Passed      bool              `json:"passed"`
		Kind        string            `json:"kind"`
		MaxHandover string            `json:"max_handover"`
		Handovers   []json.RawMessage `json:"handovers"`
		Evidence    struct {
			Validators []json.RawMessage `json:"validators"`
			Audits     []json.RawMessage `json:"audits"`
		} `json:"evidence"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	d, err := time.ParseDuration(rep.MaxHandover)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed || rep.Kind != "partitioned" || d < time.Second || d > 5*time.Second {
		t.Errorf("drill: passed=%t kind=%s max handover %s; want passed, partitioned, within 1s..TTL+2s", rep.Passed, rep.Kind, d)
	}
	if len(rep.Handovers) != 2 || len(rep.Evidence.Validators) != 2 || len(rep.Evidence.Audits) != 1 {
		t.Errorf("drill report: %d handovers, %d validators, %d audits in the evidence; want 2, 2, 1", len(rep.Handovers), len(rep.Evidence.Validators), len(rep.Evidence.Audits))
	}
	if !strings.Contains(errb.String(), "partition: region-a") {
		t.Errorf("progress on stderr lacks the partition step:\n%s", errb.String())
	}
}

func TestDrillCommandBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"ttl not whole seconds", []string{"--lease-ttl", "1500ms"}, "--lease-ttl 1.5s must be whole seconds"},
		{"no validators and a long ttl", []string{"--validators", "0", "--lease-ttl", "5m1s"}, "--validators 0 must be between 1 and 64; --lease-ttl 5m1s"},
		{"argument", []string{"now"}, `unknown command "now"`},
		{"unknown flag", []string{"--operator", "x"}, "unknown flag: --operator"},
		{"bad output", []string{"-o", "xml"}, `--output "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := drill.Main(context.Background(), tt.args, &out, &errb); code != drill.ExitUsage || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("fence-drill %v = exit %d, %q; want %d and %q", tt.args, code, errb.String(), drill.ExitUsage, tt.want)
			}
		})
	}
	var out bytes.Buffer
	if code := drill.Main(context.Background(), []string{"--version"}, &out, &out); code != drill.ExitPassed || out.String() != version.Line("fence-drill")+"\n" {
		t.Errorf("fence-drill --version = exit %d, %q", code, out.String())
	}
	out.Reset()
	if code := drill.Main(context.Background(), []string{"--help"}, &out, &out); code != drill.ExitPassed || !strings.Contains(out.String(), "Exit codes: 0 passed") {
		t.Errorf("fence-drill --help = exit %d, %q", code, out.String())
	}
}
