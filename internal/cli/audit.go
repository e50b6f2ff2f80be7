package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/consensus"
)

func (a *app) auditCmd() *cobra.Command {
	return group("audit", "Find duplicate signatures in the journals or on chain",
		`Finds duplicate signatures: one validator signing two different things for
one (height, round, step). Run it after every failover and daily from cron.
Each result is recorded with the coordinator (the audit event in history and
fencing_audit_duplicates) when one is reachable.

Exit codes: 0 clean, 1 duplicates (or journal writes after a revoke) found,
2 incomplete (something could not be audited; listed as UNAUDITED) or bad
usage.`,
		a.auditJournalCmd(), a.auditChainCmd())
}

func (a *app) auditJournalCmd() *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   "journal [--state-dir DIR]",
		Short: "Audit the quorum journal (and a sidecar's local journal)",
		Long: `Reads the quorum journal and event history from the coordinator, and with
--state-dir a sidecar's local journal (DIR/journal: its checkpoint and every
retained segment, read with the rules the sidecar applies), and reports:
  - every (validator, height, round, step) signed with two different digests;
  - every journal entry written under epoch N after N's revoke was committed
    (with both times: the sidecar's and the coordinator's clocks may differ).
A torn last record (a crash mid-write) is a warning; any other corrupt line is
reported with file:line, anything else wrong (records missing, a file of the
old format) with its file, and makes the run incomplete.

With --state-dir and no --coordinator (nor FENCE_COORDINATOR), only the local
journal is audited (inside a sidecar's Pod, where no operator credential is).`,
		Example: `  fencectl audit journal
  fencectl audit journal -o json > audit-journal.json
  kubectl exec besu-validator-1-0 -c fence-sidecar -- fencectl audit journal --state-dir /var/lib/fencing -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var src audit.JournalSource = c
			if stateDir != "" && !a.coordinatorGiven() {
				src = nil // only the sidecar's local files were asked for
			}
			r := audit.RunJournalAudit(cmd.Context(), src, stateDir)
			return a.finishAudit(cmd.Context(), c, "journal", r)
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "a sidecar's state directory; its local journal (DIR/journal) is audited too")
	_ = cmd.MarkFlagDirname("state-dir")
	return cmd
}

func (a *app) auditChainCmd() *cobra.Command {
	d := audit.DefaultChainConfig()
	var rpcs []string
	var from, to uint64
	var cons, ckpt string
	var concurrency, batch, retries int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "chain --rpc URL [--rpc URL...]",
		Short: "Audit block headers of one or more nodes for double seals",
		Long: `Reads headers (eth_getBlockByNumber, in JSON-RPC batches) from every endpoint,
checks that each header hashes to the hash the node reports, recovers every
seal, and reports each validator that sealed two different blocks at one
height: a Clique signer, or a QBFT / IBFT 2.0 committer (in the same round or
across rounds, which an honest locked validator never does). Give one node per
region to compare what each side signed. Heights where a node fails, times out
or serves a header that does not verify are listed as unaudited.

Without --to the audit stops at the lowest head among the endpoints. With
--checkpoint an interrupted run resumes where it stopped (same endpoints,
consensus and range); findings so far are kept in the file. A progress line
is shown on stderr when it is a terminal.`,
		Example: `  fencectl audit chain --rpc http://node-a:8545 --rpc http://node-b:8545
  fencectl audit chain --rpc http://node-a:8545 --from 1 --to 2000000 \
      --checkpoint /var/tmp/audit.ckpt -o json > evidence.json
  fencectl audit chain --rpc ws://node-a:8546 --consensus qbft --batch 200`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := audit.ChainConfig{
				Endpoints: rpcs, From: from, To: to, HasTo: cmd.Flags().Changed("to"), Checkpoint: ckpt,
				Concurrency: concurrency, Batch: batch, Timeout: timeout, Retries: retries,
			}
			var problems []string
			if c, err := consensus.ParseConsensus(cons); err != nil {
				problems = append(problems, "--"+err.Error())
			} else {
				cfg.Consensus = c
			}
			if err := cfg.Validate(); err != nil {
				problems = append(problems, err.Error())
			}
			if len(problems) > 0 {
				return usageError("audit chain: %s", strings.Join(problems, "; "))
			}
			if retries == 0 {
				cfg.Retries = -1 // ChainConfig takes 0 for its default
			}
			if a.IsTerminal(a.Stderr) {
				cfg.Progress = progressLine(a.Stderr)
			}
			r, err := audit.AuditChain(cmd.Context(), cfg)
			if cfg.Progress != nil {
				fmt.Fprint(a.Stderr, "\r\033[K")
			}
			if err != nil {
				return &exitError{code: audit.ExitIncomplete, err: fmt.Errorf("audit chain: %w", err)}
			}
			// The coordinator records the result when one is reachable.
			c, cerr := a.client()
			if cerr != nil && a.coordinatorGiven() {
				return cerr
			}
			return a.finishAudit(cmd.Context(), c, "chain", r)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&rpcs, "rpc", nil, "JSON-RPC endpoint URL (http, https, ws, wss or an IPC path); repeat for several nodes (required)")
	f.Uint64Var(&from, "from", 1, "first block height")
	f.Uint64Var(&to, "to", 0, "last block height (default: the lowest head among the endpoints)")
	f.StringVar(&cons, "consensus", string(d.Consensus), "sealing format: auto, clique, qbft or ibft2")
	f.StringVar(&ckpt, "checkpoint", "", "file to save progress and findings to, and to resume from")
	f.IntVar(&concurrency, "concurrency", d.Concurrency, "batch requests in flight at once (1-64)")
	f.IntVar(&batch, "batch", d.Batch, "headers per JSON-RPC batch (1-1000)")
	f.DurationVar(&timeout, "timeout", d.Timeout, "timeout of one request")
	f.IntVar(&retries, "retries", d.Retries, "retries of a failed request, with backoff (0-20)")
	_ = cmd.RegisterFlagCompletionFunc("consensus", cobra.FixedCompletions([]string{"auto", "clique", "qbft", "ibft2"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// finishAudit prints r, records it with the coordinator (best effort: an
// audit may run where no coordinator is reachable; a failure is reported
// only when one was named) and exits with the audit's code.
func (a *app) finishAudit(ctx context.Context, c *api.Client, kind string, r *audit.Report) error {
	err := a.print(r, func(w io.Writer) error { return r.WriteTable(w) })
	if err != nil {
		code := audit.ExitIncomplete
		if r.Findings() > 0 {
			code = audit.ExitDuplicates
		}
		return &exitError{code: code, err: err}
	}
	a.record(ctx, c, api.AuditReport{Kind: kind, Duplicates: r.DuplicateCount(), Incomplete: !r.Complete(), Detail: r.Verdict()})
	return exitWith(r.ExitCode())
}

// record posts an audit result to the coordinator.
func (a *app) record(ctx context.Context, c *api.Client, rep api.AuditReport) {
	if c == nil {
		return
	}
	rep.Operator = a.operator()
	if err := c.ReportAudit(ctx, rep); err != nil && a.coordinatorGiven() {
		fmt.Fprintf(a.Stderr, "fencectl: %s result not recorded with the coordinator: %v\n", rep.Kind, err)
	}
}

func progressLine(w io.Writer) func(audit.Progress) {
	return func(p audit.Progress) {
		rate := 0.0
		if s := p.Elapsed.Seconds(); s > 0 {
			rate = float64(p.Headers) / s
		}
		pct := 100.0
		if p.Total > 0 {
			pct = 100 * float64(p.Done) / float64(p.Total)
		}
		fmt.Fprintf(w, "\r\033[Kaudit chain: %d/%d heights (%.1f%%), %.0f headers/s, %d duplicate(s), %s",
			p.Done, p.Total, pct, rate, p.Duplicates, p.Elapsed.Truncate(time.Second))
	}
}
