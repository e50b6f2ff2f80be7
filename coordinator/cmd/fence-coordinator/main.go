// Command fence-coordinator serves the fencing API over etcd. See
// fence-coordinator --help and docs/api.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/validator-fencing/fencing/coordinator"
	"github.com/validator-fencing/fencing/internal/flagenv"
	"github.com/validator-fencing/fencing/internal/logging"
)

const usage = `fence-coordinator: the only etcd client of validator fencing.

Serves the sidecar API (leases, epoch watch, journal) and the operator API
(validators, freeze, bump, history) that fencectl uses. Every flag can also be
set as FENCE_<NAME> (e.g. FENCE_ETCD_ENDPOINTS); flags win.

Examples:
  fence-coordinator --embedded-etcd ./fence-data                 # development
  fence-coordinator --listen 0.0.0.0:7600 --tls-cert c.pem --tls-key k.pem \
    --etcd-endpoints https://etcd-a:2379,https://etcd-b:2379,https://etcd-w:2379 \
    --etcd-cacert ca.pem --etcd-cert client.pem --etcd-key client-key.pem

Exit codes: 0 stopped by a signal, 1 failed while running, 2 bad configuration.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg coordinator.Config
	fs := flag.NewFlagSet("fence-coordinator", flag.ContinueOnError)
	cfg.Flags(fs)
	args, err := flagenv.Parse(fs, os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		flagenv.Usage(os.Stdout, fs, usage)
		os.Exit(0)
	}
	if err == nil && len(args) > 0 {
		err = fmt.Errorf("unexpected argument %q (fence-coordinator takes only flags; see --help)", args[0])
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fence-coordinator:", err)
		os.Exit(2)
	}
	lg := logging.New("fence-coordinator", os.Stderr, cfg.LogJSON, cfg.LogLevel)
	if err := coordinator.Run(ctx, cfg, lg); err != nil {
		fmt.Fprintln(os.Stderr, "fence-coordinator:", err)
		os.Exit(1)
	}
}
