#!/usr/bin/env bash
# Installs the Debian 12 packages snapbundle builds and tests with, when any is missing.
# apt-get as root, through sudo otherwise. Idempotent: does nothing when all are present.
set -euo pipefail

packages=(
	# build
	build-essential meson ninja-build pkg-config
	liburing-dev libblkid-dev libfdisk-dev libisal-dev libssl-dev libxml2-dev zlib1g-dev
	libcurl4-openssl-dev # the S3 transport (s3/)
	# outside judges used by the tests, and the demo disk
	fdisk e2fsprogs xfsprogs dosfstools mtools ntfs-3g util-linux
	tar libarchive-tools gzip openssl python3 coreutils
	xxd # hex to bytes for the bundle tests
	rsync attr # bundle-vol copies with rsync; its tests set xattrs with setfattr
	scdoc # the man pages (docs/man/*.scd); without it meson skips them
	python3-jsonschema # the --json documents against docs/schema (tests/tools/json-schemas.sh)
	# fuzzing (tests/fuzz.sh): clang, and libFuzzer + the sanitizer runtimes, which clang-14
	# only recommends (--no-install-recommends below)
	clang libclang-rt-14-dev
	# reference tools for the benchmarks
	pigz zstd qemu-utils isal # isal: igzip, the outside bound of bench/limit.sh
	# the S3 service of the tests (tests/s3/rgw.sh): a one-node Ceph RADOS Gateway, and the
	# outside judge that talks to it (/usr/bin/aws, awscli 2.9)
	radosgw ceph-mon ceph-osd uuid-runtime curl awscli
	# serving a .bin as a block device (tools/nbdkit, tests/nbd): nbdkit and its plugin headers,
	# and libnbd's nbdcopy and nbdinfo, the outside judges
	nbdkit nbdkit-plugin-dev libnbd-bin
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
