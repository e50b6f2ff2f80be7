# cache.sh is the build-once cache of the hack/ scripts that build a tool:
# source it, define a function that builds the binary into the path it is
# given, and call
#
#   cached_build NAME VERSION CACHE_DIR FILE BUILD_FUNCTION
#
# which prints CACHE_DIR/VERSION/FILE on stdout (the only line on stdout;
# progress goes to stderr). The first caller builds it under a lock (others
# wait for that build instead of running their own), into a temporary name
# that is renamed only when complete, so an interrupted build never leaves a
# half-written binary.

cached_build() {
	local name=$1 version=$2 cache=$3 file=$4 build=$5
	mkdir -p "${cache}/${version}"
	cache=$(cd "${cache}" && pwd)
	local out="${cache}/${version}/${file}"
	if [[ -x "${out}" ]]; then
		echo "${out}"
		return 0
	fi
	exec 9>"${cache}/${version}/.lock"
	if ! flock -n 9; then
		echo "${name}: another build of ${version} is running; waiting for it" >&2
		flock 9
	fi
	if [[ ! -x "${out}" ]]; then
		local start
		start=$(date +%s)
		rm -rf "${out}.tmp"
		"${build}" "${out}.tmp" >&2
		mv "${out}.tmp" "${out}"
		echo "${name}: built ${version} in $(($(date +%s) - start))s" >&2
	fi
	exec 9>&-
	echo "${out}"
}
