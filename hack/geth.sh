#!/usr/bin/env bash
# geth.sh builds geth v1.13.15 from the Go module proxy into a cache directory,
# only if it is not there yet, and prints its path on stdout (the only line on
# stdout; progress goes to stderr).
#
#   FENCE_GETH=$(hack/geth.sh)
#
# v1.13.15 is the last geth release that seals Clique blocks, and it seals them
# through an external signer too (`--signer <url>`: Clef's account_signData
# with the application/x-clique-header content type), which is how the
# end-to-end tests in e2e/ put a real client that the project did not write in
# front of the sidecar (docs/clients.md).
#
# Environment:
#   FENCE_GETH        if set and executable, print it and build nothing.
#   FENCE_GETH_CACHE  cache directory (default: $(go env GOCACHE)/../fencing-geth).
#
# The build takes about 5 minutes on 2 idle cores and writes a 60 MB binary. A
# lock file makes concurrent callers wait for one build instead of running two.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3

version=v1.13.15

if [[ -n "${FENCE_GETH:-}" && -x "${FENCE_GETH}" ]]; then
	echo "${FENCE_GETH}"
	exit 0
fi

# shellcheck source=hack/cache.sh
source "$(dirname "${BASH_SOURCE[0]}")/cache.sh"

# build_geth installs geth into a scratch GOBIN and moves it to $1.
# -mod=mod: geth v1.13.15's go.sum misses entries that a newer go command
# wants. -checklinkname=0: its dependencies use go:linkname into the standard
# library, which the linker refuses since Go 1.23 without this flag.
build_geth() {
	echo "geth.sh: building geth ${version} (about 5 minutes on 2 cores)"
	local tmp="$1.gobin"
	rm -rf "${tmp}"
	mkdir -p "${tmp}"
	GOBIN="${tmp}" GOFLAGS=-mod=mod go install -trimpath -ldflags=-checklinkname=0 \
		"github.com/ethereum/go-ethereum/cmd/geth@${version}"
	mv "${tmp}/geth" "$1"
	rm -rf "${tmp}"
}

cached_build geth.sh "${version}" "${FENCE_GETH_CACHE:-"$(go env GOCACHE)/../fencing-geth"}" geth build_geth
