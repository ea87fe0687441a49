# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the tests/store scripts: a scratch directory, a realistic disk, failure checks.
set -euo pipefail
: "${SNAPBUNDLE:?}" "${SRCDIR:?}"
B="$SNAPBUNDLE"
READER="$SRCDIR/tests/store/store-reader.py"
T=$(mktemp -d "${TMPDIR:-/tmp}/snap-store.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }

# make_disk FILE SIZE_MIB: a GPT disk, partition 1 an ext4 filled by mke2fs -d (text, random,
# zeros), partition 2 raw random data, unpartitioned tail.
make_disk() {
	local f=$1 size=$2
	command -v sfdisk >/dev/null && command -v mke2fs >/dev/null || exit 77
	rm -f "$f"
	truncate -s "${size}M" "$f"
	printf 'label: gpt\nstart=2048, size=40960, name=root\nsize=8192, name=data\n' |
		sfdisk -q "$f" >/dev/null
	rm -rf root && mkdir -p root/etc root/var
	seq 1 200000 > root/etc/numbers
	head -c 1500000 /dev/urandom > root/var/random.bin
	head -c 700000 /dev/zero > root/var/zeros
	echo "hello store" > root/etc/motd
	mke2fs -q -F -t ext4 -d root -E offset=$((2048 * 512)) "$f" 20M
	head -c 3000000 /dev/urandom | dd of="$f" bs=512 seek=$((2048 + 40960)) conv=notrunc \
		status=none
}

# same_partitions DISK COPY: COPY holds DISK's partitions (sfdisk's), byte for byte; their
# "start size" in sectors, one a line, are left in parts.txt.
same_partitions() {
	sfdisk --dump "$1" | sed -n 's/.*start= *\([0-9]*\), size= *\([0-9]*\).*/\1 \2/p' > parts.txt
	local start size
	while read -r start size; do
		cmp <(dd if="$1" bs=512 skip="$start" count="$size" status=none) \
			<(dd if="$2" bs=512 skip="$start" count="$size" status=none) ||
			fail "partition at sector $start of $2 differs from $1's"
	done < parts.txt
}

# expect_fail PATTERN OUTPUT -- COMMAND...: the command fails, says PATTERN, leaves no OUTPUT
# and no temporary file next to it.
expect_fail() {
	local pat=$1 out=$2
	shift 3
	if "$@" > cmd.out 2> cmd.err; then
		fail "succeeded but should fail with '$pat': $*"
	fi
	grep -q -- "$pat" cmd.err || { cat cmd.err >&2; fail "expected '$pat' from: $*"; }
	if grep -q -e "Sanitizer" -e "runtime error" cmd.err; then
		cat cmd.err >&2
		fail "sanitizer report from: $*"
	fi
	[ ! -e "$out" ] || fail "$out left behind after: $*"
	if ls -A "$(dirname "$out")" | grep -q '\.tmp-[0-9]'; then
		fail "temporary file left behind after: $*"
	fi
	echo "ok: '$pat' ($(head -c 150 cmd.err | tr '\n' ' '))"
}
