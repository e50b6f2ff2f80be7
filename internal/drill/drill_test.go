package drill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/cli"
	"github.com/validator-fencing/fencing/internal/drill"
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

// TestDrillCommandPartitioned runs `fencectl drill --partition` as an
// operator would, with JSON output: the handover waits for the leases to
// expire and stays within TTL + 2s.
func TestDrillCommandPartitioned(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a lease TTL")
	}
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), []string{"drill", "--validators", "2", "--lease-ttl", "3s", "--partition", "--output", "json"}, &out, &errb, func(string) string { return "" })
	if code != cli.ExitOK {
		t.Fatalf("fencectl drill --partition = exit %d; stderr:\n%s", code, errb.String())
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
	}{
		{"ttl not whole seconds", []string{"drill", "--lease-ttl", "1500ms"}},
		{"no validators", []string{"drill", "--validators", "0"}},
		{"argument", []string{"drill", "now"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := cli.Main(context.Background(), tt.args, &out, &errb, func(string) string { return "" }); code != cli.ExitUsage {
				t.Errorf("fencectl %v = exit %d, want %d (stderr %q)", tt.args, code, cli.ExitUsage, errb.String())
			}
		})
	}
}
