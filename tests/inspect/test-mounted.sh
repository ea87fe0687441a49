#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Block device sources on loop devices, with filesystems mounted read-write:
#  1. an ext4 filesystem on a whole loop device (no partition table): inspect keeps it out of
#     the filesystem layer with a note while it is mounted read-write, not once read-only;
#  2. where the kernel makes partition devices for loops (losetup -P), the demo disk with its
#     ext4 partition mounted: sfdisk judges the table read from the device, partition 1 has
#     the note.
# Needs root, loop devices and mount: exit 77 without them.
set -u
export PATH="$PATH:/usr/sbin:/sbin"
[ "$(id -u)" = 0 ] || { echo "skipped: needs root"; exit 77; }
for t in losetup mount umount mknod mke2fs sfdisk python3; do
	command -v $t >/dev/null || { echo "skipped: $t missing"; exit 77; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/snap-mounted.XXXXXX")
loops=() mounts=()
cleanup() {
	for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done
	for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 1. whole device
mke2fs -q -F -t ext4 -L whole "$tmp/whole.img" 32M >/dev/null || fail "mke2fs"
loop=$(losetup -f --show "$tmp/whole.img" 2>/dev/null) || { echo "skipped: losetup"; exit 77; }
loops+=("$loop")
mkdir "$tmp/mnt1"
mount -t ext4 -o rw "$loop" "$tmp/mnt1" 2>/dev/null || { echo "skipped: cannot mount"; exit 77; }
mounts+=("$tmp/mnt1")
"$SNAPBUNDLE" inspect --json "$loop" >"$tmp/rw.json" || fail "inspect $loop"
mount -o remount,ro "$tmp/mnt1" || fail "remount ro"
"$SNAPBUNDLE" inspect --json "$loop" >"$tmp/ro.json" || fail "inspect $loop (ro)"

# 2. partitions, where the kernel makes them
part_test=0
"$SRCDIR/tools/make-demo-disk.sh" "$tmp/demo.img" 128 >/dev/null || fail "make-demo-disk"
ploop=$(losetup -P -f --show "$tmp/demo.img" 2>/dev/null) || fail "losetup -P"
loops+=("$ploop")
name=$(basename "$ploop")
sysdev=/sys/block/$name/${name}p1/dev
for _ in 1 2 3 4 5; do [ -r "$sysdev" ] && break; sleep 0.2; done
if [ -r "$sysdev" ]; then
	IFS=: read -r maj min <"$sysdev"
	part=${ploop}p1
	[ -b "$part" ] || { part=$tmp/p1; mknod "$part" b "$maj" "$min" || fail "mknod"; }
	mkdir "$tmp/mnt2"
	mount -t ext4 -o rw "$part" "$tmp/mnt2" || fail "mount $part"
	mounts+=("$tmp/mnt2")
	"$SNAPBUNDLE" inspect --json "$ploop" >"$tmp/part.json" || fail "inspect $ploop"
	sfdisk --json "$ploop" >"$tmp/sfdisk.json" || fail "sfdisk $ploop"
	part_test=1
else
	echo "note: no partition devices for $ploop here; partition case not run"
fi

TMP="$tmp" PART_TEST=$part_test python3 - <<'PY'
import json, os, sys
sys.path.insert(0, os.path.join(os.environ["SRCDIR"], "tests", "inspect"))
from inspect_common import check, compare_with_sfdisk, finish
d = os.environ["TMP"]
rw = json.load(open(f"{d}/rw.json"))
ro = json.load(open(f"{d}/ro.json"))
check(rw["block_device"] is True and rw["size"] == 32 << 20, "whole: block device of 32 MiB")
check(rw["partition_table"] is None and len(rw["partitions"]) == 1, "whole: one entry")
p = rw["partitions"][0]
check(p["number"] == 0 and p["fs_type"] == "ext4" and p["fs_label"] == "whole", f"whole: {p}")
want = f"mounted read-write at {d}/mnt1; use --freeze"
check(p["fs_note"] == want and not p["fs_mapped"], f"whole rw note: {p['fs_note']}")
n = ro["partitions"][0]["fs_note"]
check(n is None or "mounted" not in n, f"whole ro note: {n}")
if os.environ["PART_TEST"] == "1":
    part = json.load(open(f"{d}/part.json"))
    sf = json.load(open(f"{d}/sfdisk.json"))["partitiontable"]
    parts = compare_with_sfdisk(part, sf, "loop")
    want = f"mounted read-write at {d}/mnt2; use --freeze"
    check(parts.get(1, {}).get("fs_note") == want, f"partition 1 note: {parts.get(1)}")
    n2 = parts.get(2, {}).get("fs_note")
    check(n2 is None or "mounted" not in n2, f"partition 2 note: {n2}")
finish("test-mounted")
PY
