#!/usr/bin/env bash
# make demo: a scripted freeze and bump on a coordinator with embedded etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/ ./coordinator/cmd/...
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
bin/fence-coordinator --listen 127.0.0.1:0 --embedded-etcd "$dir/etcd" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do
  url=$(sed -n 's/.*listening: addr=\([^ ]*\).*/http:\/\/\1/p' "$dir/log" | head -1)
  [ -n "$url" ] && bin/fencectl --coordinator "$url" status >/dev/null 2>&1 && break
  sleep 0.1
done
export FENCE_COORDINATOR=$url FENCE_OPERATOR=demo
set -x
bin/fencectl validator add 0x8f2c0000000000000000000000000000000041aa --holder region-a --reason "demo onboarding"
bin/fencectl validator add val-2 --holder region-a --reason "demo onboarding"
bin/fencectl status
bin/fencectl bump --from region-a --to region-b --reason "demo failover"
bin/fencectl status
bin/fencectl history
