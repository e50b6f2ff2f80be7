#!/usr/bin/env bash
# make demo: the failover drill (fencectl drill) on an embedded etcd, in one
# process: active sidecars in region-a, standby sidecars in region-b, a
# signing workload, a bump, the journal audit and the evidence report. First
# the cooperative handover, then the one where region-a is partitioned away
# and the handover waits for its leases to expire.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3
cd "$(dirname "$0")/.."
go build -o bin/ ./coordinator/cmd/fencectl
export FENCE_OPERATOR=${FENCE_OPERATOR:-demo}
bin/fencectl drill --validators 4 --lease-ttl 15s
echo
bin/fencectl drill --validators 4 --lease-ttl 15s --partition
