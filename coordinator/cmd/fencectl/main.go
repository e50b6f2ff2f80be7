// Command fencectl operates validator fencing: status, registry, freeze,
// bump, abandon, history, evidence, audits, readiness. See fencectl --help
// and docs/runbook.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/validator-fencing/fencing/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
