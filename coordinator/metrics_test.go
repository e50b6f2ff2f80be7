package coordinator_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/validator-fencing/fencing/coordinator"
	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencetest"
)

// The last audit's result is kept in etcd: a replica started afterwards
// (a restart) exports it, so the duplicates alert does not clear itself.
func TestAuditResultSurvivesRestart(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	if err := c.Client.ReportAudit(context.Background(), api.AuditReport{Kind: "chain", Duplicates: 2, Operator: "alice", Detail: "heights 4-5"}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := coordinator.NewServer(c.Store, coordinator.ServerOptions{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[string]float64{"chain": 2, "journal": 0} {
		n, err := testutil.GatherAndCount(reg, "fencing_audit_duplicates")
		if err != nil || n != 2 {
			t.Fatalf("fencing_audit_duplicates series = %d, %v; want 2 (journal and chain)", n, err)
		}
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "fencing_audit_duplicates" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == kind && m.GetGauge().GetValue() != want {
					t.Errorf("after a restart fencing_audit_duplicates{kind=%q} = %v, want %v", kind, m.GetGauge().GetValue(), want)
				}
			}
		}
	}
}
