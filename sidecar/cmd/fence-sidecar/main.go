// Command fence-sidecar signs for a validator only while it holds a lease
// under the validator's fencing epoch. See fence-sidecar --help.
package main

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/validator-fencing/fencing/internal/daemon"
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
	// In gate mode the sidecar starts itself as the validator client's
	// watchdog (docs/gate.md).
	if code, ok := sidecar.GateWatchdog(os.Args[1:]); ok {
		os.Exit(code)
	}
	var cfg sidecar.Config
	os.Exit(daemon.Main("fence-sidecar", usage, os.Args[1:], os.Stdout, os.Stderr, &cfg, func(ctx context.Context, lg hclog.Logger) error {
		return sidecar.Run(ctx, cfg, lg)
	}))
}
