#!/usr/bin/env bash
# make demo: the failover drill (fence-drill) on an embedded etcd, in one
# process: active sidecars in region-a, standby sidecars in region-b, a
# signing workload, a bump, the journal audit and the evidence report. First
# the cooperative handover, then the one where region-a is partitioned away
# and the handover waits for its leases to expire.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3
cd "$(dirname "$0")/.."
go build -o bin/ ./internal/drill/cmd/fence-drill
bin/fence-drill --validators 4 --lease-ttl 15s
echo
bin/fence-drill --validators 4 --lease-ttl 15s --partition
