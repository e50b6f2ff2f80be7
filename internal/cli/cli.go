// Package cli is fencectl: the operator's command line over the coordinator
// API. Main dispatches subcommands; each prints a table (or JSON with
// --output json) and returns an exit code from the table in usage.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/flagenv"
)

// Exit codes of fencectl (audit has its own: 0 clean, 1 duplicates, 2 incomplete).
const (
	ExitOK          = 0 // done
	ExitRefused     = 1 // the coordinator refused (conflict, not found, fenced, ...)
	ExitUsage       = 2 // bad flags or arguments
	ExitUnavailable = 3 // coordinator or etcd unreachable; nothing was changed
	ExitInProgress  = 4 // a bump was accepted but not granted within --timeout; it continues
)

const usage = `fencectl: operate validator fencing.

Usage: fencectl [global flags] COMMAND [arguments] [flags]

Commands:
  status [VALIDATOR...]                       epoch, state, holder, leases, watermark of each validator
  validator add VALIDATOR --holder H --operator O --reason R
                                              register a validator: epoch 1 active on H
  freeze (VALIDATOR...|--holder H) --operator O --reason R
                                              revoke the active epoch: nobody signs until a bump
  bump (VALIDATOR...|--from H) --to H2 --operator O --reason R [--timeout 2m] [--scale ...]
                                              revoke, wait until every lease is gone, grant to H2;
                                              prints the timeline
  history [VALIDATOR] [--limit N]             the append-only event log
  evidence [VALIDATOR...] [--since 24h]       incident evidence report: decisions, timestamps,
                                              operators, drained leases, watermarks, audits
  audit journal [--state-dir DIR]             duplicate signatures in the quorum journal
  audit chain --rpc URL [--rpc URL...]        duplicate signatures on chain (Clique, QBFT, IBFT 2.0)
  drill                                       a local failover drill on embedded etcd

Global flags (before or after the command; also FENCE_<NAME> in the environment):
  --coordinator URL[,URL]   coordinator API (default http://127.0.0.1:7600, or FENCE_COORDINATOR)
  --output table|json       output format (default table)
  --token-file F            bearer token to send; --ca-file F verifies an https coordinator
  --client-cert F --client-key F   client certificate (an operator's: O=fencing:operators)
  --request-timeout D       bound on each API call (default 15s)

Examples:
  fencectl validator add 0x8f2c...41 --holder region-a --operator alice --reason "onboard"
  fencectl freeze --holder region-a --operator alice --reason "INC-42 region A degraded"
  fencectl bump --from region-a --to region-b --operator alice --reason "INC-42 failover"
  fencectl history 0x8f2c...41 --output json

Exit codes:
  0 done   1 refused by the coordinator (the message says why)   2 bad usage
  3 coordinator or etcd unavailable (not confirmed; re-read fencectl status)   4 bump still draining after --timeout
  audit: 0 clean, 1 duplicates found, 2 incomplete

Run 'fencectl COMMAND --help' for a command's flags.
`

// env is what every command shares: parsed global flags and the streams.
type env struct {
	ctx     context.Context
	stdout  io.Writer
	stderr  io.Writer
	getenv  func(string) string
	coord   flagenv.List
	output  string
	token   string
	caFile  string
	cert    string
	key     string
	timeout time.Duration
}

func (e *env) globalFlags(fs *flag.FlagSet) {
	fs.Var(&e.coord, "coordinator", "coordinator URL(s), comma-separated (default http://127.0.0.1:7600)")
	fs.StringVar(&e.output, "output", "table", "table or json")
	fs.StringVar(&e.token, "token-file", "", "file holding a bearer token to send")
	fs.StringVar(&e.caFile, "ca-file", "", "CA bundle that signed an https coordinator's certificate")
	fs.StringVar(&e.cert, "client-cert", "", "client certificate for a coordinator with --client-ca (an operator's has O=fencing:operators)")
	fs.StringVar(&e.key, "client-key", "", "key of --client-cert")
	fs.DurationVar(&e.timeout, "request-timeout", 15*time.Second, "bound on each API call")
}

func (e *env) client() (*api.Client, error) {
	urls := []string(e.coord)
	if len(urls) == 0 {
		urls = []string{"http://127.0.0.1:7600"}
	}
	return api.NewClient(urls, api.ClientOptions{TokenFile: e.token, CAFile: e.caFile, CertFile: e.cert, KeyFile: e.key, Timeout: e.timeout})
}

// command is one subcommand: its flags, its usage and what it does with the
// positional arguments.
type command struct {
	name  string
	usage string
	flags func(fs *flag.FlagSet)
	run   func(e *env, args []string) int
}

// Main runs fencectl with args (without the program name).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, getenv: getenv}
	// Global flags may come before the command.
	pre := flag.NewFlagSet("fencectl", flag.ContinueOnError)
	e.globalFlags(pre)
	pre.SetOutput(io.Discard)
	if err := pre.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return ExitOK
		}
		return e.usageError(err)
	}
	// Registering the command's flags below resets the shared variables to
	// their defaults: keep what was given before the command.
	given := map[string]string{}
	pre.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	rest := pre.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	if name == "audit" {
		return e.audit(rest)
	}
	if name == "validator" {
		if len(rest) == 0 || rest[0] != "add" {
			return e.usageError(errors.New("validator: the only subcommand is 'add' (fencectl validator add VALIDATOR --holder H ...)"))
		}
		name, rest = "validator add", rest[1:]
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		fs := flag.NewFlagSet("fencectl "+c.name, flag.ContinueOnError)
		e.globalFlags(fs)
		if c.flags != nil {
			c.flags(fs)
		}
		// Values given before the command stay unless repeated after it.
		for name, v := range given {
			_ = fs.Set(name, v)
		}
		pos, err := flagenv.Parse(fs, rest, getenv)
		if errors.Is(err, flag.ErrHelp) {
			flagenv.Usage(stdout, fs, c.usage+"\nFlags:\n")
			return ExitOK
		}
		if err != nil {
			return e.usageError(err)
		}
		if e.output != "table" && e.output != "json" {
			return e.usageError(fmt.Errorf("--output %q must be table or json", e.output))
		}
		return c.run(e, pos)
	}
	return e.usageError(fmt.Errorf("unknown command %q; run fencectl --help", name))
}

func commands() []command {
	return []command{statusCommand(), addCommand(), freezeCommand(), bumpCommand(), historyCommand(), evidenceCommand(), drillCommand()}
}

func (e *env) usageError(err error) int {
	fmt.Fprintln(e.stderr, "fencectl:", err)
	return ExitUsage
}

// fail prints err and maps its code word to an exit code.
func (e *env) fail(what string, err error) int {
	fmt.Fprintf(e.stderr, "fencectl: %s: %v\n", what, err)
	return exitCode(err)
}

func exitCode(err error) int {
	switch fencing.CodeOf(err) {
	case fencing.CodeUnavailable, fencing.CodeNoQuorum:
		return ExitUnavailable
	case fencing.CodeInProgress:
		return ExitInProgress
	case fencing.CodeBadRequest:
		return ExitUsage
	}
	return ExitRefused
}

func (e *env) json(v any) int {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return e.fail("write output", err)
	}
	return ExitOK
}

// change holds --operator and --reason, both required for every change.
type change struct{ operator, reason string }

func (c *change) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.operator, "operator", "", "who asks (required; FENCE_OPERATOR)")
	fs.StringVar(&c.reason, "reason", "", "why, e.g. an incident number (required)")
}

func (c *change) validate() error {
	var missing []string
	if strings.TrimSpace(c.operator) == "" {
		missing = append(missing, "--operator")
	}
	if strings.TrimSpace(c.reason) == "" {
		missing = append(missing, "--reason")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s required: every change is recorded with who asked and why", strings.Join(missing, " and "))
	}
	return nil
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
