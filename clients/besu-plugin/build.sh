#!/usr/bin/env bash
# build.sh builds the fence Besu plugin jar and its test harness, and prints the
# directory that holds them:
#
#   <dir>/fence-besu-plugin.jar   the plugin (the only thing to ship: Besu's plugins/ folder)
#   <dir>/harness/                the harness classes (a stand-in for Besu; tests only)
#   <dir>/classpath               the harness's class path, ':'-separated
#
# Maven Central is out of reach here, so the plugin compiles against stubs/
# (Besu 26.2.0 plugin-api and tuweni-bytes 2.7.2 signatures, never shipped) and
# Debian's picocli, BouncyCastle and slf4j jars (at run time Besu's own copies
# are used). A missing JDK or jar is installed with apt-get (Debian's
# openjdk-17-jdk-headless, libbcprov-java, libpicocli-java, libslf4j-java): this
# is how CI gets a JDK. Builds are cached by the hash of the sources.
#
# Environment:
#   FENCE_BESU_PLUGIN_CACHE  cache directory (default: $(go env GOCACHE)/../fencing-besu-plugin).
set -euo pipefail
export GOTOOLCHAIN=go1.27.3
here=$(cd "$(dirname "$0")" && pwd)
cache=${FENCE_BESU_PLUGIN_CACHE:-"$(go env GOCACHE)/../fencing-besu-plugin"}
mkdir -p "${cache}"
cache=$(cd "${cache}" && pwd -P)
exec 9>"${cache}/.lock"
flock 9

jars=(/usr/share/java/bcprov.jar /usr/share/java/picocli.jar /usr/share/java/slf4j-api.jar /usr/share/java/slf4j-simple.jar)
missing=0
command -v javac >/dev/null && command -v jar >/dev/null && command -v java >/dev/null || missing=1
for j in "${jars[@]}"; do [[ -f "${j}" ]] || missing=1; done
if [[ ${missing} == 1 ]]; then
	echo "build.sh: installing Debian's openjdk-17-jdk-headless, libbcprov-java, libpicocli-java, libslf4j-java" >&2
	if [[ $(id -u) != 0 ]]; then
		echo "build.sh: need root for apt-get; install those packages, then run again" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	# Wait for another apt run (another build on this machine) instead of failing.
	apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
		openjdk-17-jdk-headless libbcprov-java libpicocli-java libslf4j-java >&2
fi
if ! javac -version 2>&1 | grep -Eq '^javac (1[7-9]|[2-9][0-9])'; then
	echo "build.sh: javac 17 or newer is needed, found: $(javac -version 2>&1)" >&2
	exit 1
fi

hash=$(cd "${here}" && find build.sh stubs src harness -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
out="${cache}/${hash}"
if [[ ! -f "${out}/classpath" ]]; then
	tmp=$(mktemp -d "${cache}/build.XXXXXX")
	trap 'rm -rf "${tmp}"' EXIT
	lib=$(IFS=:; echo "${jars[*]}")
	# -Xlint:-path: Debian's bcprov.jar names absent jars in its manifest Class-Path.
	flags=(--release 17 -Xlint:all,-path,-serial -Werror -encoding UTF-8)
	mkdir -p "${tmp}/stubs" "${tmp}/plugin" "${tmp}/harness"
	javac "${flags[@]}" -d "${tmp}/stubs" $(find "${here}/stubs" -name '*.java')
	javac "${flags[@]}" -cp "${tmp}/stubs:${lib}" -d "${tmp}/plugin" $(find "${here}/src/main/java" -name '*.java')
	javac "${flags[@]}" -cp "${tmp}/stubs:${lib}" -d "${tmp}/harness" $(find "${here}/harness" -name '*.java')
	printf 'Implementation-Title: fence-besu-plugin\nImplementation-Version: %s\n' "${hash}" >"${tmp}/manifest"
	jar --create --file "${tmp}/fence-besu-plugin.jar" --manifest "${tmp}/manifest" \
		-C "${tmp}/plugin" . -C "${here}/src/main/resources" .
	echo "${out}/harness:${out}/stubs:${lib}" >"${tmp}/classpath"
	rm -rf "${tmp}/plugin" "${tmp}/manifest"
	rm -rf "${out}"
	mv "${tmp}" "${out}"
	trap - EXIT
	echo "build.sh: built ${out}" >&2
fi
echo "${out}"
