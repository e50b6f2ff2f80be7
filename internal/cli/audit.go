package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/audit"
)

// audit runs 'fencectl audit ...' and records the result with the
// coordinator (fencing_audit_duplicates and an audit event), which is best
// effort: a chain audit may run where no coordinator is reachable.
func (e *env) audit(args []string) int {
	c, err := e.client()
	if err != nil {
		return e.usageError(err)
	}
	explicit := len(e.coord) > 0 || e.getenv("FENCE_COORDINATOR") != ""
	if len(e.coord) == 0 && e.getenv("FENCE_COORDINATOR") != "" {
		_ = e.coord.Set(e.getenv("FENCE_COORDINATOR"))
		if c, err = e.client(); err != nil {
			return e.usageError(err)
		}
	}
	var src audit.JournalSource = c
	if !explicit && slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(strings.TrimLeft(a, "-"), "state-dir") }) {
		src = nil // only the sidecar's local files were asked for
	}
	rep, code := audit.Run(e.ctx, args, e.stdout, e.stderr, src)
	if rep == nil || len(args) == 0 {
		return code
	}
	operator := e.getenv("FENCE_OPERATOR")
	if operator == "" {
		operator = e.getenv("USER")
	}
	err = c.ReportAudit(e.ctx, api.AuditReport{
		Kind: args[0], Duplicates: rep.DuplicateCount(), Incomplete: !rep.Complete(), Operator: operator, Detail: rep.Verdict(),
	})
	if err != nil && explicit {
		fmt.Fprintf(e.stderr, "fencectl: audit result not recorded with the coordinator: %v\n", err)
	}
	return code
}
