#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Unbundles onto a loop device full of junk through the output stream and its O_DIRECT path:
# data runs that start and end off 4096-byte boundaries (partitions at odd sectors, an image
# size off 4096) land cmp-identical and every hole is zeroed, with the direct path and with
# the page cache only (SNAPBUNDLE_OUTPUT_BUFFERED=1). Needs root and a loop device: skipped
# (77) without them.
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tests/store/direct-lib.sh"
if [ "$(id -u)" -ne 0 ] || ! command -v losetup >/dev/null || ! losetup -f >/dev/null 2>&1; then
	echo "SKIP: needs root and a free loop device"
	exit 77
fi
B="$SNAPBUNDLE"
cd "$T"
make_odd_disk disk.img
head -c 1536 /dev/urandom >> disk.img
size=$(stat -c %s disk.img)
mG=$(mkbundle disk.img "$T/G" --part-size 4000000)
mN=$(mkbundle disk.img "$T/N" --tar-args '' --part-size 4000000)

loop=
cleanup() {
	[ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
python3 -c "import sys; sys.stdout.buffer.write(b'\xa5' * (41 << 20))" > dev.img
loop=$(losetup -f --show dev.img) || { echo "SKIP: losetup failed"; exit 77; }

for m in "$mG" "$mN"; do
	for mode in direct buffered; do
		dd if=/dev/zero bs=1M count=41 status=none | tr '\0' '\245' |
			dd of="$loop" bs=1M oflag=direct status=none
		e=
		[ $mode = buffered ] && e=1
		if SNAPBUNDLE_OUTPUT_BUFFERED=$e "$B" unbundle -m "$m" -k user.key -o "$loop" \
			--progress=none > log 2>&1; then
			cmp -n "$size" disk.img "$loop" || fail "$mode $(basename "$m"): the device differs"
		else
			fail "$mode: unbundle to $loop failed: $(cat log)"
		fi
		echo "ok: $mode $(basename "$(dirname "$m")")"
	done
done
finish
