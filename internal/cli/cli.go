// Package cli is fencectl, the operator's command line over the coordinator
// API, on cobra: NewCommand builds the command tree, Main and Run execute
// it. Every command prints a table for a person, or the same data with
// -o json / -o yaml, and exits with a code from the table below; scripts
// and the runbook's stop conditions branch on it.
//
//	| exit | most commands                                  | audit journal, audit chain | readiness       |
//	|------|------------------------------------------------|----------------------------|-----------------|
//	| 0    | done                                           | clean                      | OK              |
//	| 1    | refused by the coordinator, or not confirmed   | duplicates found           | warnings        |
//	| 2    | bad usage or configuration                     | incomplete, or bad usage   | critical        |
//	| 3    | coordinator or etcd unavailable: not confirmed | –                          | could not check |
//	| 4    | bump still draining after --timeout            | –                          | –               |
//
// Global flags (--coordinator, -o/--output, --token-file, --ca-file,
// --client-cert, --client-key, --request-timeout, --comment) are accepted
// before or after the command and each has an environment variable
// FENCE_<NAME> (FENCE_TOKEN_FILE), which a flag on the command line
// overrides.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/flagenv"
	"github.com/validator-fencing/fencing/internal/readiness"
	"github.com/validator-fencing/fencing/internal/version"
)

// Exit codes of fencectl (audit and readiness have their own, see the
// package doc).
const (
	ExitOK          = 0 // done
	ExitRefused     = 1 // the coordinator refused (conflict, not found, fenced, not ready, ...), or a prompt was not confirmed
	ExitUsage       = 2 // bad flags, arguments or configuration (a token file open to others, ...)
	ExitUnavailable = 3 // coordinator or etcd unreachable: the change is not confirmed; re-read fencectl status
	ExitInProgress  = 4 // a bump was accepted but not granted within --timeout; it continues in the coordinator
)

// DefaultCoordinator is the coordinator fencectl asks when neither
// --coordinator nor FENCE_COORDINATOR names one.
const DefaultCoordinator = "http://127.0.0.1:7600"

// Env is what one fencectl run reads and writes. Main fills it from the
// process; tests give their own streams and terminal check.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads FENCE_* variables; nil reads none.
	Getenv func(string) string
	// IsTerminal reports whether a stream (Stdin, Stdout or Stderr) is an
	// interactive terminal: a prompt needs Stdin and Stderr to be one, and
	// progress is redrawn in place on one. Nil: golang.org/x/term on an
	// *os.File (a pipe, a file or /dev/null is not a terminal).
	IsTerminal func(stream any) bool
	// Readiness is the check fencectl readiness runs; nil: readiness.Check.
	Readiness func(context.Context, readiness.Options) (readiness.Report, error)
}

// Main runs fencectl with args (without the program name) on the process's
// standard input and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return Run(ctx, args, Env{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv})
}

// Run runs fencectl with args in e and returns the exit code.
func Run(ctx context.Context, args []string, e Env) int {
	a := newApp(e)
	root := a.command()
	root.SetArgs(append([]string{}, args...)) // never nil: cobra would read os.Args
	cmd, err := root.ExecuteContextC(ctx)
	return a.exit(cmd, err)
}

// NewCommand returns fencectl's command tree for e (nothing runs until it
// is executed); Run is NewCommand plus the exit code.
func NewCommand(e Env) *cobra.Command { return newApp(e).command() }

// app is one fencectl run: its streams and the global flags.
type app struct {
	Env
	g globals
}

// globals are the flags every command takes.
type globals struct {
	coordinator    []string
	output         string
	tokenFile      string
	caFile         string
	clientCert     string
	clientKey      string
	requestTimeout time.Duration
	comment        string
}

func newApp(e Env) *app {
	if e.Stdin == nil {
		e.Stdin = strings.NewReader("")
	}
	if e.Stdout == nil {
		e.Stdout = io.Discard
	}
	if e.Stderr == nil {
		e.Stderr = io.Discard
	}
	if e.Getenv == nil {
		e.Getenv = func(string) string { return "" }
	}
	if e.IsTerminal == nil {
		e.IsTerminal = isTerminal
	}
	if e.Readiness == nil {
		e.Readiness = readiness.Check
	}
	return &app{Env: e}
}

func isTerminal(stream any) bool {
	f, ok := stream.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

const rootLong = `fencectl operates validator fencing: it asks the coordinator to register
validators, freeze them, move them to another holder (bump: revoke, wait until
every lease of the old epoch is gone, grant the next epoch), and shows their
state, history and the evidence of each change. The audits look for duplicate
signatures afterwards; readiness compares the active and the standby cluster.

Who acts is the principal the coordinator authenticates (--token-file, a
client certificate); every change also needs --reason (why, e.g. an incident
number) and may carry --comment (free text, e.g. who types). docs/runbook.md
is the failover written with these commands.

Exit codes:
  0 done   1 refused by the coordinator (the message says why) or not confirmed
  2 bad usage or configuration   3 coordinator or etcd unavailable: the change
  is not confirmed, re-read fencectl status   4 bump still draining after --timeout
  audit: 0 clean, 1 duplicates, 2 incomplete
  readiness: 0 OK, 1 warnings, 2 critical, 3 could not check

Global flags may stand before or after the command; each is also read from
FENCE_<NAME> (FENCE_COORDINATOR, FENCE_TOKEN_FILE, FENCE_OUTPUT, ...).`

const rootExample = `  export FENCE_COORDINATOR=https://localhost:7600 FENCE_CA_FILE=ca.crt FENCE_TOKEN_FILE=token
  fencectl status
  fencectl bump --from region-a --to region-b --reason "INC-42 region A lost" --dry-run
  fencectl bump --from region-a --to region-b --reason "INC-42 region A lost" --comment alice
  fencectl history 0x8f2c...41 -o json
  source <(fencectl completion bash)`

// command builds the whole tree.
func (a *app) command() *cobra.Command {
	root := &cobra.Command{
		Use:           "fencectl",
		Short:         "Operate validator fencing: status, freeze, bump, history, evidence, audits",
		Long:          rootLong,
		Example:       rootExample,
		Version:       version.String(),
		SilenceErrors: true, // Run prints them, with the exit code they map to
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(a.Stderr)
			_ = cmd.Help()
			return usageError("name a command (listed above)")
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.Getenv("FENCE_OPERATOR") != "" && a.Getenv("FENCE_COMMENT") == "" {
				fmt.Fprintln(a.Stderr, "fencectl: FENCE_OPERATOR is no longer read (who acts is the authenticated principal); set FENCE_COMMENT for free text")
			}
			return a.resolveGlobals(cmd)
		},
	}
	root.SetVersionTemplate(version.Line("fencectl") + "\n")
	root.SetIn(a.Stdin)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	root.SetFlagErrorFunc(flagError)
	a.globalFlags(root.PersistentFlags())
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.AddCommand(
		a.statusCmd(),
		a.validatorCmd(),
		a.holderCmd(),
		a.freezeCmd(),
		a.unfreezeCmd(),
		a.bumpCmd(),
		a.abandonCmd(),
		a.historyCmd(),
		a.evidenceCmd(),
		a.auditCmd(),
		a.readinessCmd(),
	)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return root
}

func (a *app) globalFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&a.g.coordinator, "coordinator", nil, "coordinator URL(s), comma-separated or repeated; tried in order (default "+DefaultCoordinator+")")
	fs.StringVarP(&a.g.output, "output", "o", "table", "output format: table, json or yaml")
	fs.StringVar(&a.g.tokenFile, "token-file", "", "file holding the bearer token to send (mode 0600 or 0440, at least 16 characters)")
	fs.StringVar(&a.g.caFile, "ca-file", "", "CA bundle that signed an https coordinator's certificate")
	fs.StringVar(&a.g.clientCert, "client-cert", "", "client certificate for a coordinator with --client-ca (an operator's has O=fencing:operators)")
	fs.StringVar(&a.g.clientKey, "client-key", "", "key of --client-cert (mode 0600)")
	fs.DurationVar(&a.g.requestTimeout, "request-timeout", 15*time.Second, "bound on each API call")
	fs.StringVar(&a.g.comment, "comment", "", "free text kept with each change beside the authenticated principal, e.g. who types (default: your login name)")
}

// resolveGlobals fills every global flag not given on the command line from
// its FENCE_<NAME> variable, then checks them.
func (a *app) resolveGlobals(cmd *cobra.Command) error {
	fs := cmd.Root().PersistentFlags()
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := flagenv.EnvName(f.Name)
		if v := a.Getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %v", name, v, err))
			}
		}
	})
	switch a.g.output {
	case "table", "json", "yaml":
	default:
		errs = append(errs, fmt.Errorf("--output %q must be table, json or yaml", a.g.output))
	}
	if a.g.requestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--request-timeout %s must be positive", a.g.requestTimeout))
	}
	if err := flagenv.Problems(errs); err != nil {
		return &exitError{code: ExitUsage, err: err}
	}
	return nil
}

// coordinatorGiven reports whether the operator named a coordinator (flag
// or environment) rather than relying on the default.
func (a *app) coordinatorGiven() bool { return len(a.g.coordinator) > 0 }

// client is the coordinator client of the global flags. A token file open
// to others or too short, a missing CA file and the like are configuration
// errors (exit 2).
func (a *app) client() (*api.Client, error) {
	if a.g.tokenFile != "" {
		if err := api.CheckTokenFile(a.g.tokenFile); err != nil {
			return nil, &exitError{code: ExitUsage, err: fmt.Errorf("--token-file: %w", err)}
		}
	}
	urls := a.g.coordinator
	if len(urls) == 0 {
		urls = []string{DefaultCoordinator}
	}
	c, err := api.NewClient(urls, api.ClientOptions{TokenFile: a.g.tokenFile, CAFile: a.g.caFile, CertFile: a.g.clientCert, KeyFile: a.g.clientKey, Timeout: a.g.requestTimeout})
	if err != nil {
		return nil, &exitError{code: ExitUsage, err: err}
	}
	return c, nil
}

// operator is the free text sent as a request's operator field: --comment,
// else the local login name. An authenticating coordinator records the
// principal as who acted and keeps this as a comment; an open one (loopback
// only) records it as who acted.
func (a *app) operator() string {
	if c := strings.TrimSpace(a.g.comment); c != "" {
		return c
	}
	for _, k := range []string{"USER", "LOGNAME"} {
		if u := a.Getenv(k); u != "" {
			return u
		}
	}
	return "fencectl"
}

// requireReason checks --reason, which every change needs.
func requireReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return usageError("--reason is required: every change is recorded with why (e.g. an incident number)")
	}
	return nil
}

// exitError carries the exit code of a failed command. err, when not nil,
// is printed as "fencectl: <err>"; nil means the output already said why.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// apiError maps err's code word to an exit code, with what failed.
func apiError(what string, err error) error {
	return &exitError{code: exitCode(err), err: fmt.Errorf("%s: %w", what, err)}
}

// exitWith ends a command with code after its output said why.
func exitWith(code int) error {
	if code == ExitOK {
		return nil
	}
	return &exitError{code: code}
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
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

// exit prints err and returns its exit code. Errors cobra returns itself
// (unknown command or flag, wrong arguments) are bad usage.
func (a *app) exit(cmd *cobra.Command, err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(a.Stderr, "fencectl: %v\n", ee.err)
		}
		return ee.code
	}
	path := "fencectl"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	fmt.Fprintf(a.Stderr, "fencectl: %v (see %s --help)\n", err, path)
	return ExitUsage
}

// flagError explains a flag that is gone.
func flagError(_ *cobra.Command, err error) error {
	if strings.Contains(err.Error(), "--operator") {
		return fmt.Errorf("%w: --operator is gone: the coordinator records the principal it authenticated as who acted; put free text in --comment", err)
	}
	return err
}

// group is a command that only holds subcommands: run without one, or with
// an unknown one, it is bad usage.
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, s := range cmd.Commands() {
				names = append(names, s.Name())
			}
			if len(args) > 0 {
				return usageError("unknown command %q for %q; its commands: %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
			}
			return usageError("%s needs a command: %s (see %s --help)", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}

// parseIDs parses validator arguments (where they enter).
func parseIDs(args []string) ([]fencing.ValidatorID, error) {
	ids := make([]fencing.ValidatorID, len(args))
	for i, s := range args {
		id, err := fencing.ParseValidatorID(s)
		if err != nil {
			return nil, usageError("%v", fencingMessage(err))
		}
		ids[i] = id
	}
	return ids, nil
}

// fencingMessage is err's sentence without its code word.
func fencingMessage(err error) string {
	var fe *fencing.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return err.Error()
}

func validateHolder(flag, h string) error {
	if err := fencing.ValidateHolder(h); err != nil {
		return usageError("%s: %s", flag, fencingMessage(err))
	}
	return nil
}
