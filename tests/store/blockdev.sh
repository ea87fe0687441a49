#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Restore onto a block device (a loop device over a file full of junk): DATA and ZERO ranges
# read back exactly (ZERO ranges zeroed on the device, not left as junk), the device is never
# renamed or removed, and a store reads a loop device as its source. Skipped without losetup.
. "$SRCDIR/tests/store/lib.sh"
loop=
cleanup_loop() { [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null; rm -rf "$T"; }
trap cleanup_loop EXIT
make_disk disk.img 32
"$B" store disk.img -o img.bin --exact --progress=none
head -c $((32 * 1024 * 1024)) /dev/urandom > target.img
if ! loop=$(losetup --find --show target.img 2> losetup.err); then
	echo "losetup unavailable: $(cat losetup.err)"
	loop=
	exit 77
fi
"$B" restore img.bin -o "$loop" --progress=none
[ -b "$loop" ] || fail "the device node is gone"
cmp disk.img "$loop" || fail "restored device differs (ZERO ranges not zeroed?)"
# the device as a store source
"$B" store "$loop=/dev/xvdf" -o dev.bin --exact --progress=none
"$B" restore dev.bin -o back.img --progress=none
cmp disk.img back.img || fail "store from a block device differs"
echo "blockdev: ok"
