#!/usr/bin/env bash
# govulncheck.sh checks the project against the Go vulnerability database with
# no access to vuln.go.dev: it downloads the newest golang.org/x/vulndb module
# from the Go module proxy, builds a file:// database from its data/osv
# advisories with vulndb's own cmd/indexdb, and runs govulncheck on ./...
#
#   hack/govulncheck.sh            # make vulncheck
#
# It fails when the code calls a vulnerable function (govulncheck's symbol
# results, exit status 3); vulnerabilities in imported packages or required
# modules that the code does not call are printed as information. The output
# names the database version and the date of its newest data ("DB updated").
#
# Environment:
#   FENCE_VULNDB_VERSION  golang.org/x/vulndb version (default: latest, asked of the proxy on each run).
#   FENCE_VULNDB_CACHE    cache directory (default: $(go env GOCACHE)/../fencing-vulndb).
#
# Cold (empty module, build and database caches): 3.3 minutes on a busy
# 2-core machine (8 minutes when very busy): go install of govulncheck and
# indexdb, the 67 MB vulndb module, about 12 s of indexing. Warm: the scan
# alone, 18 to 45 s. A new vulndb version costs only its download and indexing.
# A lock file makes concurrent callers wait for one build instead of running two.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3

govulncheck_version=v1.9.0
# cmd/indexdb is taken from a fixed vulndb commit (a tool, reproducible); the
# advisories it indexes come from FENCE_VULNDB_VERSION.
indexdb_version=v0.0.0-20261105234957-e22db6528018

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FENCE_VULNDB_CACHE:-"$(go env GOCACHE)/../fencing-vulndb"}
mkdir -p "${cache}"
cache=$(cd "${cache}" && pwd)

# Outside any module: these go commands must not read or change the project's go.mod.
cd "${cache}"
info=$(go list -m -f '{{.Version}} {{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' \
	"golang.org/x/vulndb@${FENCE_VULNDB_VERSION:-latest}") || {
	echo "govulncheck.sh: cannot resolve golang.org/x/vulndb@${FENCE_VULNDB_VERSION:-latest} (module proxy down?);" \
		"FENCE_VULNDB_VERSION=<a version in the cache> works offline" >&2
	exit 1
}
read -r version committed <<<"${info}"
db="${cache}/db/${version}"
bin="${cache}/bin"
govulncheck="${bin}/govulncheck-${govulncheck_version}"
indexdb="${bin}/indexdb-${indexdb_version}"

install_tool() { # install_tool <binary path> <package@version>
	local tmp
	[[ -x "$1" ]] && return
	echo "govulncheck.sh: installing $2" >&2
	tmp=$(mktemp -d "${bin}/install.XXXXXX")
	GOBIN="${tmp}" CGO_ENABLED=0 go install -trimpath "$2" >&2
	mv "${tmp}/$(basename "${2%@*}")" "$1"
	rmdir "${tmp}"
}

if [[ ! -x "${govulncheck}" || ! -f "${db}/index/db.json" ]]; then
	mkdir -p "${bin}" "${cache}/db"
	exec 9>"${cache}/.lock"
	if ! flock -n 9; then
		echo "govulncheck.sh: another run is building the vulnerability database; waiting for it" >&2
		flock 9
	fi
	install_tool "${govulncheck}" "golang.org/x/vuln/cmd/govulncheck@${govulncheck_version}"
	if [[ ! -f "${db}/index/db.json" ]]; then
		install_tool "${indexdb}" "golang.org/x/vulndb/cmd/indexdb@${indexdb_version}"
		go mod download "golang.org/x/vulndb@${version}"
		src=$(go list -m -f '{{.Dir}}' "golang.org/x/vulndb@${version}")
		echo "govulncheck.sh: indexing $(find "${src}/data/osv" -name '*.json' | wc -l) advisories of golang.org/x/vulndb@${version}" >&2
		tmp=$(mktemp -d "${cache}/db/build.XXXXXX")
		"${indexdb}" -vulns "${src}/data/osv" -out "${tmp}"
		# The advisories in data/osv carry no dates (vulndb's release pipeline
		# takes them from git history), so indexdb writes "modified": year 1.
		# The data is as new as its commit: say so, and govulncheck prints it
		# as "DB updated". The file:// client reads only the .json files.
		printf '{"modified":"%s"}' "${committed}" >"${tmp}/index/db.json"
		find "${tmp}" -name '*.json.gz' -delete
		rm -rf "${db}"
		mv "${tmp}" "${db}"
		# Older databases are superseded by this one.
		find "${cache}/db" -mindepth 1 -maxdepth 1 ! -name "${version}" -exec rm -rf {} +
	fi
	exec 9>&-
fi

echo "govulncheck.sh: golang.org/x/vulndb@${version} (advisories committed ${committed}), govulncheck ${govulncheck_version}"
cd "${root}"
out=$(mktemp)
trap 'rm -f "${out}"' EXIT
status=0
"${govulncheck}" -db "file://${db}" -show verbose,version ./... >"${out}" 2>&1 || status=$?
# The version lines, then the results; the verbose lists of scanned packages
# and modules are left out.
sed -n -e '/^DB updated:/q' -e '/^\(Go\|Scanner\|DB\):/p' "${out}"
grep '^DB updated:' "${out}" || true
grep '^Govulncheck scanned' "${out}" | sed 's/:$//' || true
# At most 3 example call paths for each vulnerability (govulncheck prints one
# for every vulnerable function called: over a hundred for one net/http advisory).
awk '/^=== Symbol Results ===/ { on = 1 }
	!on { next }
	/^      #[0-9]+: / { if (++n <= 3) print; else more++; next }
	{ if (more) print "      ... and " more " more"; n = more = 0; print }' "${out}"
case "${status}" in
0) echo "govulncheck.sh: no vulnerable code is called" ;;
3) echo "govulncheck.sh: FAIL: the code calls vulnerable functions (Symbol Results above); move each to its 'Fixed in' version (a module: go get; the standard library: the Go toolchain)" >&2 ;;
*) cat "${out}" >&2; echo "govulncheck.sh: govulncheck failed (exit status ${status})" >&2 ;;
esac
exit "${status}"
