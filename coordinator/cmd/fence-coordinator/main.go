// Command fence-coordinator serves the fencing API over etcd. See
// fence-coordinator --help and docs/api.md.
package main

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/validator-fencing/fencing/coordinator"
	"github.com/validator-fencing/fencing/internal/daemon"
)

const usage = `fence-coordinator: the only etcd client of validator fencing.

Serves the sidecar API (leases, epoch watch, journal) and the operator API
(validators, freeze, bump, history) that fencectl uses. Every flag can also be
set as FENCE_<NAME> (e.g. FENCE_ETCD_ENDPOINTS); flags win.

Off a loopback listener it serves only TLS and requires sidecar
authentication (--auth-audience in Kubernetes, or --client-ca) and operator
authentication (--operator-auth kubernetes, token or mtls).

Examples:
  fence-coordinator --embedded-etcd ./fence-data                 # development, loopback only
  fence-coordinator --listen 0.0.0.0:7600 --tls-cert c.pem --tls-key k.pem \
    --etcd-endpoints https://etcd-a:2379,https://etcd-b:2379,https://etcd-w:2379 \
    --etcd-cacert ca.pem --etcd-cert client.pem --etcd-key client-key.pem \
    --auth-audience fencing-coordinator --auth-bindings-file bindings.yaml \
    --operator-auth kubernetes --operator-namespace fencing

Exit codes: 0 stopped by a signal, 1 failed while running, 2 bad configuration.

Flags:
`

func main() {
	var cfg coordinator.Config
	os.Exit(daemon.Main("fence-coordinator", usage, os.Args[1:], os.Stdout, os.Stderr, &cfg, func(ctx context.Context, lg hclog.Logger) error {
		return coordinator.Run(ctx, cfg, lg)
	}))
}
