#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Restores through the O_DIRECT output path: frames that start and end off 4096-byte boundaries,
# stored and deflated, restored whole, by partition (an odd start sector) and by byte range,
# from a file and from a pipe, with 1 and 3 threads, come out cmp-identical; on a disk
# filesystem the restored data does not stay in the page cache (fincore: the direct path was
# taken); forced buffered (SNAPBUNDLE_OUTPUT_BUFFERED=1) and on tmpfs the bytes are the same.
. "$SRCDIR/tests/store/lib.sh"
. "$SRCDIR/tests/store/direct-lib.sh"
make_odd_disk disk.img
"$B" store disk.img -o img.bin --frame-size 1M --progress=none
frames_unaligned img.bin
"$B" store disk.img -o level0.bin --frame-size 256K --level 0 --progress=none

restore_check() { # name image.bin expected-file restore-args...
	local name=$1 img=$2 want=$3
	shift 3
	"$B" restore "$img" -o "$name.img" --progress=none "$@" > /dev/null
	if direct_expected . && [ -z "${SNAPBUNDLE_OUTPUT_BUFFERED:-}" ]; then
		local res
		res=$(cached "$name.img")
		# only the unaligned heads and tails of the frames go through the page cache
		[ "$res" -lt $((1024 * 1024)) ] ||
			fail "$name: $res bytes of the restored image are in the page cache"
	fi
	cmp "$want" "$name.img" || fail "$name: restored image differs"
	rm -f "$name.img"
	echo "ok: $name"
}

restore_check whole img.bin disk.img
restore_check threads1 img.bin disk.img --threads 1
restore_check threads3 img.bin disk.img --threads 3
restore_check level0 level0.bin disk.img --threads 2
cat img.bin | restore_check pipe - disk.img
dd if=disk.img of=part2.want bs=512 skip=20551 count=30000 status=none
restore_check part2 img.bin part2.want --partition 2
dd if=disk.img of=part1.want bs=512 skip=63 count=20000 status=none
restore_check part1 level0.bin part1.want --partition 1
dd if=disk.img of=range.want bs=512 skip=1001 count=40001 status=none
restore_check range img.bin range.want --range $((1001 * 512)):$((40001 * 512))

# the page cache only: same bytes
SNAPBUNDLE_OUTPUT_BUFFERED=1 restore_check buffered img.bin disk.img
SNAPBUNDLE_OUTPUT_BUFFERED=1 restore_check buffered-part2 img.bin part2.want --partition 2

# tmpfs
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	S=$(mktemp -d /dev/shm/snap-store-direct.XXXXXX)
	trap 'rm -rf "$T" "$S"' EXIT
	"$B" restore img.bin -o "$S/out.img" --progress=none > /dev/null
	cmp disk.img "$S/out.img" || fail "restore to tmpfs differs"
	"$B" restore level0.bin -o "$S/p2.img" --partition 2 --progress=none > /dev/null
	cmp part2.want "$S/p2.img" || fail "partition restore to tmpfs differs"
	echo "ok: tmpfs"
fi
echo "direct: ok"
