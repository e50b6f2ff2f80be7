package charts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/sidecar"
)

// documentedSeries reads the "# Metrics" list of a package doc: lines of
// the form "//	fencing_name{labels} description".
func documentedSeries(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^//\t(fencing_[a-z_]+)`).FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return out
}

// exported is the fencing_ series a registry exports, histograms by their
// base name.
func exported(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "fencing_") {
			out = append(out, mf.GetName())
		}
	}
	slices.Sort(out)
	return out
}

// TestExportedMetricsAreDocumented ties three lists together: what a real
// coordinator and a real sidecar export once they have worked, the "#
// Metrics" lists of their package docs, and exportedSeries, which the
// alerts and the dashboard are checked against.
func TestExportedMetricsAreDocumented(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := fencetest.Start(t, fencetest.Options{Registry: reg})
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(fmt.Sprintf("%x", crypto.FromECDSA(k))), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := crypto.PubkeyToAddress(k.PublicKey).Hex()
	c.AddValidator(t, addr, "region-a")

	sreg := prometheus.NewRegistry()
	s, err := sidecar.NewSigner(sidecar.Config{Holder: "region-a", Name: "a-0", Keys: []string{keyFile}, StateDir: t.TempDir(), Mode: string(sidecar.ModeStrict),
		LeaseTTL: 3 * time.Second, RenewInterval: time.Second, SafetyMargin: time.Second}, c.Client, sreg, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Work until every kind of series has a sample: a signature, a refusal,
	// a bump with its grant.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := s.SignHRS(ctx, fencing.ValidatorID(addr), fencing.HRS{Height: 1, Step: fencing.StepCommit}, fencing.Digest{1}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sidecar did not sign within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Bump(t, addr, "region-b")
	if _, err := c.Client.Freeze(ctx, fencing.ValidatorID(addr), api.FreezeRequest{Operator: "test", Reason: "test"}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		binary, doc string
		g           prometheus.Gatherer
	}{
		{"fence-coordinator", "../coordinator/config.go", reg},
		{"fence-sidecar", "../sidecar/config.go", sreg},
	} {
		got, doc := exported(t, tc.g), documentedSeries(t, tc.doc)
		// The process gate's series exist only in gate mode; the sidecar's
		// TestGateMetricsAreDocumented checks them against the same doc.
		sign := slices.DeleteFunc(slices.Clone(doc), func(n string) bool { return strings.HasPrefix(n, "fencing_sidecar_gate_") })
		if !slices.Equal(got, sign) {
			t.Errorf("%s exports %v, its package doc (%s) lists %v", tc.binary, got, tc.doc, doc)
		}
		for _, name := range doc {
			if _, ok := exportedSeries[name]; !ok {
				t.Errorf("%s's %s is missing from exportedSeries (the chart's list)", tc.binary, name)
			}
		}
	}
	for name := range exportedSeries {
		if name == "up" {
			continue
		}
		if !slices.Contains(documentedSeries(t, "../coordinator/config.go"), name) && !slices.Contains(documentedSeries(t, "../sidecar/config.go"), name) {
			t.Errorf("exportedSeries lists %s, which no binary documents", name)
		}
	}
}
