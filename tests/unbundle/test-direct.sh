#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Unbundles through the output stream and its O_DIRECT path: a disk with partitions at odd
# sectors and a size off 4096 bytes, bundled by snapbundle (a sparse map whose segments start
# and end off 4096-byte boundaries) and by GNU tar without -S (every byte in the stream),
# comes out cmp-identical with 1 and 3 threads; on a disk filesystem the image does not stay in
# the page cache (fincore: the direct path was taken); forced buffered
# (SNAPBUNDLE_OUTPUT_BUFFERED=1) and on tmpfs the bytes are the same.
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tests/store/direct-lib.sh"
B="$SNAPBUNDLE"
cd "$T"
make_odd_disk disk.img
truncate -s $((40 * 1024 * 1024 + 1536)) disk.img
# snapbundle keeps nothing of unpartitioned space (it restores as zeros): the tail stays zero
# for its bundle, GNU tar's gets random bytes there
mkdir A
"$B" bundle -i disk.img -d A -k user.key -c user.pem -u 123456789012 --ec2cert ec2.pem \
	--part-size 3000000 --progress=none > /dev/null
cp disk.img diskA.img
head -c 1536 /dev/urandom | dd of=disk.img bs=512 seek=$((40 * 2048)) conv=notrunc status=none
mB=$(mkbundle disk.img "$T/B" --tar-args '' --part-size 4000000)

unbundle_check() { # name manifest unbundle-args...
	local name=$1 m=$2 want=disk.img
	shift 2
	case "$m" in A/*) want=diskA.img ;; esac
	rm -f "$name.img"
	if ! "$B" unbundle -m "$m" -k user.key -o "$name.img" --progress=none "$@" > log 2>&1; then
		fail "$name: unbundle failed: $(cat log)"
		return 0
	fi
	if direct_expected . && [ -z "${SNAPBUNDLE_OUTPUT_BUFFERED:-}" ]; then
		local res
		res=$(cached "$name.img")
		[ "$res" -lt $((1024 * 1024)) ] ||
			fail "$name: $res bytes of the image are in the page cache"
	fi
	cmp "$want" "$name.img" || fail "$name: the image differs"
	rm -f "$name.img"
	echo "ok: $name"
}

for th in 1 3; do
	unbundle_check "snapbundle-$th" A/disk.img.manifest.xml --threads $th
	unbundle_check "gnu-tar-$th" "$mB" --threads $th
done
SNAPBUNDLE_OUTPUT_BUFFERED=1 unbundle_check buffered A/disk.img.manifest.xml
SNAPBUNDLE_OUTPUT_BUFFERED=1 unbundle_check buffered-gnu-tar "$mB"

if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	S=$(mktemp -d /dev/shm/snap-unbundle-direct.XXXXXX)
	trap 'rm -rf "$T" "$S"' EXIT
	if "$B" unbundle -m A/disk.img.manifest.xml -k user.key -o "$S/out.img" \
		--progress=none > log 2>&1; then
		cmp diskA.img "$S/out.img" || fail "tmpfs: the image differs"
	else
		fail "tmpfs: unbundle failed: $(cat log)"
	fi
	echo "ok: tmpfs"
fi
finish
