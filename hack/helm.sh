#!/usr/bin/env bash
# helm.sh runs helm at a pinned version, installing it with `go install` into a
# cache directory the first time (2 to 8 minutes), with HOME and the helm
# config/cache/data directories in a temporary directory so that nothing is
# read from or written to the caller's home.
#
#   hack/helm.sh lint charts/fencing
#   hack/helm.sh --print-path      # install if missing, print the binary path
#
# Environment:
#   FENCE_HELM        use this helm binary instead (must be executable).
#   FENCE_HELM_CACHE  cache directory (default: $(go env GOCACHE)/../fencing-helm).
set -euo pipefail
export GOTOOLCHAIN=go1.27.3

version=v3.22.0
# helm v3.22.0 is built against k8s.io/client-go v0.37.0; without these
# ldflags (which helm's own Makefile sets) a `go install`ed helm reports
# version "v3.22" and renders for Kubernetes v1.20.0.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${version} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
	ldflags+=" -X ${p}.k8sVersionMajor=1 -X ${p}.k8sVersionMinor=37"
done

helm=${FENCE_HELM:-}
if [[ -z "${helm}" ]]; then
	cache=${FENCE_HELM_CACHE:-"$(go env GOCACHE)/../fencing-helm"}
	bin="${cache}/${version}"
	helm="${bin}/helm"
	if [[ ! -x "${helm}" ]]; then
		mkdir -p "${bin}"
		exec 9>"${bin}/.lock"
		flock 9
		if [[ ! -x "${helm}" ]]; then
			echo "helm.sh: installing helm ${version} into ${bin} (2 to 8 minutes)" >&2
			GOBIN="${bin}" CGO_ENABLED=0 go install -trimpath -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${version}" >&2
		fi
		exec 9>&-
	fi
fi
if [[ ! -x "${helm}" ]]; then
	echo "helm.sh: ${helm} is not an executable file" >&2
	exit 1
fi

if [[ "${1:-}" == "--print-path" ]]; then
	echo "${helm}"
	exit 0
fi

home=$(mktemp -d)
trap 'rm -rf "${home}"' EXIT
export HOME="${home}"
export HELM_CACHE_HOME="${home}/cache" HELM_CONFIG_HOME="${home}/config" HELM_DATA_HOME="${home}/data"
"${helm}" "$@"
