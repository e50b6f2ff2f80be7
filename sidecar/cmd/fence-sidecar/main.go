// Command fence-sidecar signs for a validator only while it holds a lease
// under the validator's fencing epoch. See fence-sidecar --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/validator-fencing/fencing/internal/flagenv"
	"github.com/validator-fencing/fencing/internal/logging"
	"github.com/validator-fencing/fencing/sidecar"
)

const usage = `fence-sidecar: a fail-closed signer beside each validator.

Signs on localhost only while it holds a lease under the validator's fencing
epoch. In strict mode (the default) every signature is first journaled in etcd
through the coordinator. Every flag can also be set as FENCE_<NAME>.

Signing APIs on --listen: POST /v1/sign (native), Web3Signer eth1
(/api/v1/eth1/...), Clef JSON-RPC (POST /), typed Clique and QBFT seals.
Health: /healthz, /readyz (ready = holds a lease), /upcheck, /healthcheck.

Example:
  fence-sidecar --coordinator https://fencing:7600 --holder region-a \
    --key /keys/validator.json --password-file /keys/password \
    --state-dir /var/lib/fence-sidecar

Exit codes: 0 stopped by a signal, 1 failed while running, 2 bad configuration.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg sidecar.Config
	fs := flag.NewFlagSet("fence-sidecar", flag.ContinueOnError)
	cfg.Flags(fs)
	args, err := flagenv.Parse(fs, os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		flagenv.Usage(os.Stdout, fs, usage)
		os.Exit(0)
	}
	if err == nil && len(args) > 0 {
		err = fmt.Errorf("unexpected argument %q (fence-sidecar takes only flags; see --help)", args[0])
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fence-sidecar:", err)
		os.Exit(2)
	}
	lg := logging.New("fence-sidecar", os.Stderr, cfg.LogJSON, cfg.LogLevel)
	if err := sidecar.Run(ctx, cfg, lg); err != nil {
		fmt.Fprintln(os.Stderr, "fence-sidecar:", err)
		os.Exit(1)
	}
}
