#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The realistic benchmark disk (tools/make-demo-disk.sh: GPT, ext4, vfat, an empty partition,
# junk in unpartitioned space): `store --exact` restores byte-identical; the default store
# (unpartitioned space unused) restores the same partition table (sfdisk --dump), filesystems
# e2fsck and fsck.vfat accept, and identical partitions.
. "$SRCDIR/tests/store/lib.sh"
"$SRCDIR/tools/make-demo-disk.sh" disk.img 128 >/dev/null 2>&1 || exit 77

"$B" store disk.img -o exact.bin --exact --progress=none
"$B" restore exact.bin -o exact.img --progress=none
cmp disk.img exact.img || fail "--exact round trip differs"

"$B" store disk.img -o img.bin --progress=none
"$B" restore img.bin -o out.img --progress=none
dump() { sfdisk --dump "$1" | grep -v '^device:' | sed "s|^$1||"; }
[ "$(dump disk.img)" = "$(dump out.img)" ] || fail "partition tables differ"
[ "$(stat -c %s exact.bin)" -ge "$(stat -c %s img.bin)" ] || fail "default image larger"
same_partitions disk.img out.img
[ "$(wc -l < parts.txt)" = 3 ] || fail "expected 3 partitions"
read -r start size < parts.txt
dd if=out.img of=root.fs bs=512 skip="$start" count="$size" status=none
if command -v e2fsck >/dev/null; then
	e2fsck -fn root.fs >/dev/null || fail "e2fsck rejects the restored root filesystem"
fi
echo "demo-disk: ok"
