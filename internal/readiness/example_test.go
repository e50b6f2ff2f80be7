package readiness_test

import (
	"fmt"
	"os"
	"time"

	"github.com/validator-fencing/fencing/internal/readiness"
)

// A report as fencectl readiness prints it, with the line it records in
// the history and its exit status.
func ExampleReport_WriteTable() {
	rep := readiness.Report{
		Contexts: []string{"region-a", "region-b"},
		At:       time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		Findings: []readiness.Finding{
			{Severity: readiness.OK, Check: readiness.CheckSidecar, Cluster: "region-b", Subject: "besu-validator-1/besu-validator-1-0", Detail: "running without a lease, as a standby should"},
			{Severity: readiness.Critical, Check: readiness.CheckSecrets, Cluster: "region-b", Subject: "Secret validators/besu-validator-1-key", Detail: "missing"},
		},
	}
	_ = rep.WriteTable(os.Stdout)
	fmt.Println(rep.Summary())
	fmt.Println("exit", rep.ExitCode(), "critical findings", rep.Count(readiness.Critical))
	// Output:
	// SEVERITY  CHECK    CLUSTER   SUBJECT                                 DETAIL
	// ok        sidecar  region-b  besu-validator-1/besu-validator-1-0     running without a lease, as a standby should
	// critical  secrets  region-b  Secret validators/besu-validator-1-key  missing
	// critical: 1 critical, 0 warn, 1 ok (exit 2)
	// readiness region-a -> region-b: critical (1 critical, 0 warn, 1 ok); first critical: secrets region-b Secret validators/besu-validator-1-key: missing
	// exit 2 critical findings 1
}
