package audit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/validator-fencing/fencing/internal/consensus"
)

const usageTop = `Usage: fencectl audit <journal|chain> [flags]

Find duplicate signatures: one validator signing two different things for one
(height, round, step). Run it after every failover drill and daily from cron.

  journal   the quorum journal (and a sidecar's local journal files)
  chain     block headers of one or more nodes over JSON-RPC

Exit codes: 0 clean, 1 duplicates found, 2 incomplete (something could not be
audited) or bad usage. Run 'fencectl audit <command> --help' for details.
`

const usageJournal = `Usage: fencectl audit journal [--state-dir DIR] [--output table|json]

Reads the quorum journal and event history from the coordinator, and with
--state-dir a sidecar's local journal (DIR/journal: its checkpoint and every
retained segment, read with the rules the sidecar applies), and reports:
  - every (validator, height, round, step) signed with two different digests;
  - every journal entry written under epoch N after N's revoke was committed
    (with both times: the sidecar's and the coordinator's clocks may differ).
A torn last record (a crash mid-write) is a warning; any other corrupt line is
reported with file:line, anything else wrong (records missing, a file of the
old format) with its file, and makes the run incomplete.

Examples:
  fencectl audit journal
  fencectl audit journal --state-dir /var/lib/fence-sidecar --output json

Exit codes: 0 clean, 1 duplicates or late writes found, 2 incomplete or bad
usage.

Flags:
`

const usageChain = `Usage: fencectl audit chain --rpc URL [--rpc URL ...] [flags]

Reads headers (eth_getBlockByNumber, in JSON-RPC batches) from every endpoint,
checks that each header hashes to the hash the node reports, recovers every
seal, and reports each validator that sealed two different blocks at one
height: a Clique signer, or a QBFT / IBFT 2.0 committer (in the same round or
across rounds, which an honest locked validator never does). Give one node per
region to compare what each side signed. Heights where a node fails, times out
or serves a header that does not verify are listed as unaudited.

Examples:
  fencectl audit chain --rpc http://node-a:8545 --rpc http://node-b:8545
  fencectl audit chain --rpc http://node-a:8545 --from 1 --to 2000000 \
      --checkpoint /var/tmp/audit.ckpt --output json > evidence.json
  fencectl audit chain --rpc ws://node-a:8546 --consensus qbft --batch 200

Without --to the audit stops at the lowest head among the endpoints. With
--checkpoint an interrupted run resumes where it stopped (same endpoints,
consensus and range); findings so far are kept in the file.

Exit codes: 0 clean, 1 duplicates found, 2 incomplete or bad usage.

Flags:
`

// Main is the entry point of 'fencectl audit': args are what follows "audit"
// (for example {"chain", "--rpc", URL}). journal is the coordinator's journal
// client; it may be nil when only --state-dir is used. Main prints the report
// to stdout, a progress line to stderr when stderr is a terminal, and returns
// the exit code (ExitClean, ExitDuplicates or ExitIncomplete).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, journal JournalSource) int {
	_, code := run(ctx, args, stdout, stderr, journal)
	return code
}

// Run is Main that also returns the report (nil on bad usage), so that a
// caller can post DuplicateCount to the coordinator.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, journal JournalSource) (*Report, int) {
	return run(ctx, args, stdout, stderr, journal)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, journal JournalSource) (*Report, int) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageTop)
		return nil, ExitIncomplete
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageTop)
		return nil, ExitClean
	case "journal":
		return runJournal(ctx, args[1:], stdout, stderr, journal)
	case "chain":
		return runChain(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "fencectl audit: unknown command %q: want journal or chain\n", args[0])
	return nil, ExitIncomplete
}

// newFlagSet returns a flag set whose errors Main prints itself, in one line.
func newFlagSet(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses args and reports --help (0) or a bad flag (2).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // Parse has printed the usage
			return ExitClean, false
		}
		fmt.Fprintf(stderr, "fencectl audit %s: %v (see --help)\n", fs.Name(), err)
		return ExitIncomplete, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fencectl audit %s: unexpected argument %q (see --help)\n", fs.Name(), fs.Arg(0))
		return ExitIncomplete, false
	}
	return 0, true
}

func badUsage(stderr io.Writer, cmd, format string, args ...any) (*Report, int) {
	fmt.Fprintf(stderr, "fencectl audit %s: %s (see --help)\n", cmd, fmt.Sprintf(format, args...))
	return nil, ExitIncomplete
}

func runJournal(ctx context.Context, args []string, stdout, stderr io.Writer, src JournalSource) (*Report, int) {
	fs := newFlagSet("journal", usageJournal, stdout)
	stateDir := fs.String("state-dir", "", "a sidecar's state directory; its local journal (DIR/journal) is audited too")
	output := fs.String("output", "table", "output format: table or json")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return nil, code
	}
	if *output != "table" && *output != "json" {
		return badUsage(stderr, "journal", "--output %q must be table or json", *output)
	}
	if src == nil && *stateDir == "" {
		return badUsage(stderr, "journal", "nothing to audit: no coordinator journal is available here, pass --state-dir DIR")
	}
	r := RunJournalAudit(ctx, src, *stateDir)
	return r, write(r, *output, stdout, stderr)
}

// urlList is a repeatable --rpc flag.
type urlList []string

func (u *urlList) String() string { return strings.Join(*u, ",") }
func (u *urlList) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("empty URL")
	}
	*u = append(*u, v)
	return nil
}

func runChain(ctx context.Context, args []string, stdout, stderr io.Writer) (*Report, int) {
	fs := newFlagSet("chain", usageChain, stdout)
	var rpcs urlList
	fs.Var(&rpcs, "rpc", "JSON-RPC endpoint URL; repeat for several nodes (required)")
	from := fs.Uint64("from", 1, "first block height")
	to := fs.Uint64("to", 0, "last block height (default: the lowest head among the endpoints)")
	consensusFlag := fs.String("consensus", "auto", "sealing format: auto, clique, qbft or ibft2")
	ckpt := fs.String("checkpoint", "", "file to save progress and findings to, and to resume from")
	concurrency := fs.Int("concurrency", defaultConcurrency, "batch requests in flight at once (1-64)")
	batch := fs.Int("batch", defaultBatch, "headers per JSON-RPC batch (1-1000)")
	timeout := fs.Duration("timeout", defaultTimeout, "timeout of one request")
	retries := fs.Int("retries", defaultRetries, "retries of a failed request, with backoff (0-20)")
	output := fs.String("output", "table", "output format: table or json")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return nil, code
	}
	hasTo := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "to" {
			hasTo = true
		}
	})
	var problems []string
	if len(rpcs) == 0 {
		problems = append(problems, "at least one --rpc URL is required")
	}
	c, err := consensus.ParseConsensus(*consensusFlag)
	if err != nil {
		problems = append(problems, "--"+err.Error())
	}
	if *output != "table" && *output != "json" {
		problems = append(problems, fmt.Sprintf("--output %q must be table or json", *output))
	}
	if *concurrency < 1 || *concurrency > 64 {
		problems = append(problems, fmt.Sprintf("--concurrency %d must be between 1 and 64", *concurrency))
	}
	if *batch < 1 || *batch > 1000 {
		problems = append(problems, fmt.Sprintf("--batch %d must be between 1 and 1000", *batch))
	}
	if *timeout <= 0 {
		problems = append(problems, fmt.Sprintf("--timeout %s must be positive", *timeout))
	}
	if *retries < 0 || *retries > 20 {
		problems = append(problems, fmt.Sprintf("--retries %d must be between 0 and 20", *retries))
	}
	if hasTo && *to < *from {
		problems = append(problems, fmt.Sprintf("--to %d must not be below --from %d", *to, *from))
	}
	if len(problems) > 0 {
		return badUsage(stderr, "chain", "%s", strings.Join(problems, "; "))
	}
	cfg := ChainConfig{
		Endpoints: rpcs, From: *from, To: *to, HasTo: hasTo, Consensus: c, Checkpoint: *ckpt,
		Concurrency: *concurrency, Batch: *batch, Timeout: *timeout, Retries: *retries,
	}
	if *retries == 0 {
		cfg.Retries = -1 // withDefaults maps 0 to the default
	}
	if isTerminal(stderr) {
		cfg.Progress = progressLine(stderr)
	}
	r, err := AuditChain(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		fmt.Fprintf(stderr, "fencectl audit chain: %v\n", err)
		return nil, ExitIncomplete
	}
	return r, write(r, *output, stdout, stderr)
}

func write(r *Report, output string, stdout, stderr io.Writer) int {
	var err error
	if output == "json" {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fencectl audit: write report: %v\n", err)
		if r.Findings() > 0 {
			return ExitDuplicates
		}
		return ExitIncomplete
	}
	return r.ExitCode()
}

// isTerminal reports whether w is a character device (a terminal), so that
// progress lines never end up in a file or a pipe.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func progressLine(w io.Writer) func(Progress) {
	return func(p Progress) {
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
