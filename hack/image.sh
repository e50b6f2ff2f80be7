#!/usr/bin/env bash
# image.sh builds the container image the way a machine without Docker Hub
# can (the Dockerfile's `prebuilt` target, from scratch) and checks it:
#
#   1. builds fence-coordinator, fence-sidecar and fencectl statically for
#      linux/amd64 into bin/linux-amd64/ (the flags of the Dockerfile's build
#      stage);
#   2. `buildah build --target prebuilt` with the vfs storage driver and chroot
#      isolation, into a temporary storage directory removed on exit;
#   3. checks the image config (linux/amd64, user 65532:65532, no entrypoint,
#      CMD fencectl --help, PATH=/usr/local/bin), then mounts the image root
#      and runs each binary's --help, and the CMD, inside it (chroot as user
#      65532 with only the image's PATH): the root holds nothing but the three
#      binaries, so this also proves they are static.
#
#   hack/image.sh            # make image
#
# Running a container is not possible on the project's machines (crun cannot
# set rlimits there), hence chroot. buildah comes from Debian's packages: if it
# is missing, it is installed with apt-get; only when that cannot be done (no
# apt-get, not root, apt-get update fails) does the script print SKIP and exit 0.
#
# Environment:
#   FENCE_IMAGE_TAG  tag of the built image (default: localhost/validator-fencing/fencing:ci).
#
# Cold (apt-get install buildah, an empty Go build cache): 6 to 7 minutes on a
# busy 2-core machine; warm: 4 to 11 s.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3

tag=${FENCE_IMAGE_TAG:-localhost/validator-fencing/fencing:ci}
bins=(fence-coordinator fence-sidecar fencectl)

skip() {
	echo "image.sh: SKIP: the container image was NOT built or checked: buildah is not installed and $*." \
		"Install buildah (Debian: apt-get install buildah) and run make image." >&2
	exit 0
}

if ! command -v buildah >/dev/null; then
	command -v apt-get >/dev/null || skip "there is no apt-get"
	[[ $(id -u) == 0 ]] || skip "apt-get needs root (this is uid $(id -u))"
	# One installer at a time (apt-get's own locks make others fail, not wait).
	lock="$(go env GOCACHE)/../fencing-image"
	mkdir -p "${lock}"
	exec 9>"${lock}/.lock"
	flock 9
	if ! command -v buildah >/dev/null; then
		export DEBIAN_FRONTEND=noninteractive
		echo "image.sh: installing buildah with apt-get" >&2
		apt-get -q -o APT::Update::Error-Mode=any update >&2 || skip "apt-get update failed (no network?)"
		# Without recommends: no container runtime is needed to build FROM
		# scratch with COPY, and none can run here.
		apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends buildah >&2
	fi
	exec 9>&-
fi
echo "image.sh: $(buildah --version)"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"
echo "image.sh: go build (static, linux/amd64) into bin/linux-amd64/"
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags "-s -w" -o bin/linux-amd64/ \
	./coordinator/cmd/fence-coordinator ./coordinator/cmd/fencectl ./sidecar/cmd/fence-sidecar

storage=$(mktemp -d)
bah() { buildah --root "${storage}/root" --runroot "${storage}/run" --storage-driver vfs "$@"; }
ctr=
cleanup() {
	if [[ -n "${ctr}" ]]; then
		bah umount "${ctr}" >/dev/null || true
		bah rm "${ctr}" >/dev/null || true
	fi
	rm -rf "${storage}"
}
trap cleanup EXIT

echo "image.sh: buildah build --target prebuilt -t ${tag}"
bah build --isolation chroot --pull-never --target prebuilt --platform linux/amd64 -t "${tag}" -f Dockerfile . >&2

fail=0
bad() {
	echo "image.sh: FAIL: $*" >&2
	fail=1
}
want() { # want <what> <got> <want>
	if [[ "$2" == "$3" ]]; then
		echo "image.sh: ok: ${1} ${2}"
	else
		bad "${1} is ${2}, want ${3}"
	fi
}
config() { bah inspect --type image --format "$1" "${tag}"; }
want platform "$(config '{{.OCIv1.OS}}/{{.OCIv1.Architecture}}')" linux/amd64
want user "$(config '{{.OCIv1.Config.User}}')" 65532:65532
want entrypoint "$(config '{{printf "%q" .OCIv1.Config.Entrypoint}}')" '[]'
want cmd "$(config '{{printf "%q" .OCIv1.Config.Cmd}}')" '["fencectl" "--help"]'
want env "$(config '{{printf "%q" .OCIv1.Config.Env}}')" '["PATH=/usr/local/bin"]'

ctr=$(bah from --pull-never "${tag}")
mnt=$(bah mount "${ctr}")
files=$(cd "${mnt}" && find . -mindepth 1 ! -type d | sort | tr '\n' ' ')
want files "${files% }" "./usr/local/bin/fence-coordinator ./usr/local/bin/fence-sidecar ./usr/local/bin/fencectl"

# inimage <argv...>: run in the image root as its user, with only its environment.
chroot=$(command -v chroot)
inimage() { env -i PATH=/usr/local/bin "${chroot}" --userspec=65532:65532 "${mnt}" "$@"; }
for b in "${bins[@]}"; do
	if out=$(inimage "${b}" --help 2>&1) && grep -q "^${b}" <<<"${out}"; then
		echo "image.sh: ok: ${b} --help runs in the image: $(head -1 <<<"${out}")"
	else
		bad "${b} --help in the image root (a dynamically linked binary fails with 'No such file or directory': the image has no libc): ${out}"
	fi
done
mapfile -t cmd < <(config '{{range .OCIv1.Config.Cmd}}{{println .}}{{end}}')
if out=$(inimage "${cmd[@]}" 2>&1); then
	echo "image.sh: ok: the image's CMD (${cmd[*]}) exits 0"
else
	bad "the image's CMD (${cmd[*]}) failed: ${out}"
fi

if ((fail)); then
	exit 1
fi
echo "image.sh: image ${tag} built and checked (it is not kept: the storage was temporary)"
