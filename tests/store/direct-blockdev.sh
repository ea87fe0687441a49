#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Restores onto a loop device through the O_DIRECT output path: frames that start and end off
# 4096-byte boundaries (partitions at odd sectors), stored and deflated, land cmp-identical,
# ZERO ranges are zeroed around them (the device starts full of junk), and the same holds with
# the page cache only (SNAPBUNDLE_OUTPUT_BUFFERED=1) and for a partition with an odd start.
# Needs root and a loop device: skipped (77) without them.
. "$SRCDIR/tests/store/lib.sh"
. "$SRCDIR/tests/store/direct-lib.sh"
if [ "$(id -u)" -ne 0 ] || ! command -v losetup >/dev/null; then
	echo "SKIP: needs root and losetup"
	exit 77
fi
loop=
cleanup_loop() { [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null; rm -rf "$T"; }
trap cleanup_loop EXIT
make_odd_disk disk.img
"$B" store disk.img -o img.bin --frame-size 1M --progress=none
frames_unaligned img.bin

# junk_device: dev.img full of junk except where the image keeps nothing (UNUSED: a restore
# leaves those bytes alone), attached as $loop
junk_device() {
	[ -n "$loop" ] && losetup -d "$loop"
	loop=
	python3 -c "import sys; sys.stdout.buffer.write(b'\xa5' * (40 << 20))" > dev.img
	"$B" inspect img.bin --extents | awk '$1 == "extent" && $4 == "unused" { print $2, $3 }' |
		while read -r off len; do
			dd if=/dev/zero of=dev.img bs=64K seek="$off" count="$len" conv=notrunc \
				oflag=seek_bytes iflag=count_bytes status=none
		done
	if ! loop=$(losetup --find --show dev.img 2> losetup.err); then
		echo "SKIP: losetup unavailable: $(cat losetup.err)"
		loop=
		exit 77
	fi
}

for mode in direct buffered; do
	junk_device
	if [ $mode = buffered ]; then
		SNAPBUNDLE_OUTPUT_BUFFERED=1 "$B" restore img.bin -o "$loop" --progress=none > /dev/null
	else
		"$B" restore img.bin -o "$loop" --progress=none --threads 3 > /dev/null
	fi
	cmp disk.img "$loop" || fail "$mode: the restored device differs"
	echo "ok: $mode"
done

# a partition at sector 20551 onto the start of a junk device: every frame lands off its
# volume alignment
junk_device
"$B" restore img.bin -o "$loop" --partition 2 --progress=none > /dev/null
cmp -n $((30000 * 512)) <(dd if=disk.img bs=512 skip=20551 count=30000 status=none) "$loop" ||
	fail "partition 2 on the device differs"
cmp -i $((30000 * 512)) -n 4096 <(head -c $((30000 * 512 + 4096)) /dev/zero | tr '\0' '\245') \
	"$loop" || fail "the bytes after the partition were touched"
echo "direct-blockdev: ok"
