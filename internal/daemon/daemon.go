// Package daemon is the shared main of the long-running binaries: a signal
// context, configuration from flags, FENCE_* and --config, validation, a
// logger, then Run. Exit codes: 0 stopped by a signal (or --help,
// --version), 1 failed while running, 2 bad configuration: everything a
// Config's Validate reports (a key file open to others, a short operator
// token, ...) is reported before anything listens.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/validator-fencing/fencing/internal/flagenv"
	"github.com/validator-fencing/fencing/internal/logging"
	"github.com/validator-fencing/fencing/internal/version"
)

// Config is a binary's validated configuration.
type Config interface {
	Flags(fs *flag.FlagSet)
	Validate() error
	// Logging says how to log: JSON lines or text, and the level.
	Logging() (json bool, level string)
}

// Main parses args into cfg and runs run until SIGINT or SIGTERM; it
// returns the exit code. --version prints version.Line(name) and exits 0;
// only the command line sets it, not FENCE_VERSION nor a config file.
func Main(name, usage string, args []string, stdout, stderr io.Writer, cfg Config, run func(context.Context, hclog.Logger) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfg.Flags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	pos, err := flagenv.Parse(fs, args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		flagenv.Usage(stdout, fs, usage)
		return 0
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Line(name))
		return 0
	}
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected argument %q (%s takes only flags; see --help)", pos[0], name)
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	json, level := cfg.Logging()
	if err := run(ctx, logging.New(name, stderr, json, level)); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
