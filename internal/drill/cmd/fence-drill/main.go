// Command fence-drill runs a local failover drill of validator fencing on
// embedded etcd: coordinator, active and standby sidecars and a signing
// workload in one process (make demo). See fence-drill --help and
// docs/drill.md.
//
// It lives here, beside internal/drill, and not with fencectl: the drill
// embeds etcd's server, which an operator's CLI has no use for.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/validator-fencing/fencing/internal/drill"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := drill.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
