package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/validator-fencing/fencing/coordinator"
	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
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

// A request that names a validator by its lowercase address is the same
// validator: parsed once at the edge, the reconciler is kicked with the one
// canonical ID. Before the ValidatorID type the coordinator kicked the
// reconciler with the raw path, which then spun on failed fence
// transactions (999 in 2 s in a probe) and took the bump lock under another
// key than the bump's.
func TestLowercaseAddressDoesNotSpinTheReconciler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := fencetest.Start(t, fencetest.Options{Registry: reg})
	const addr = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
	c.AddValidator(t, addr, "region-a")
	lower := fencing.ValidatorID(strings.ToLower(addr)) // as a client may send it, unparsed
	if _, err := c.Client.Freeze(context.Background(), lower, api.FreezeRequest{Operator: "o", Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Client.Bump(context.Background(), lower, api.BumpRequest{To: "region-b", Force: true, Operator: "o", Reason: "r", Wait: api.Duration{Duration: 20 * time.Second}})
	if err != nil || !res.Done || res.Epoch.Epoch != 2 {
		t.Fatalf("bump by lowercase address = %+v, %v; want epoch 2", res, err)
	}
	fences := 0
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "fencing_etcd_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == "fence" {
					fences += int(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	if fences == 0 || fences > 5 {
		t.Fatalf("%d fence transactions for one freeze and one bump, want 1 to 5 (a spinning reconciler makes hundreds)", fences)
	}
}
