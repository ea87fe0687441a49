#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A 4 TiB sparse volume with a little data: stored and restored without reading or writing the
# holes (the restored file is sparse), data identical at every data offset.
. "$SRCDIR/tests/store/lib.sh"
truncate -s 4T big.img 2>/dev/null || exit 77
head -c 1048576 /dev/urandom > d1
seq 1 50000 > d2
dd if=d1 of=big.img bs=1M seek=0 conv=notrunc status=none
dd if=d2 of=big.img bs=1M seek=$((2 * 1024 * 1024)) conv=notrunc status=none
dd if=d1 of=big.img bs=1M seek=$((4 * 1024 * 1024 - 1)) conv=notrunc status=none

"$B" store big.img -o big.bin --progress=none
[ "$(stat -c %s big.bin)" -lt 4000000 ] || fail "store image too large"
"$B" restore big.bin -o out.img --progress=none
[ "$(stat -c %s out.img)" = "$(stat -c %s big.img)" ] || fail "size differs"
[ "$(du -k out.img | cut -f1)" -lt 65536 ] || fail "restored file is not sparse"
for seek in 0 $((2 * 1024 * 1024)) $((4 * 1024 * 1024 - 1)); do
	cmp <(dd if=big.img bs=1M skip=$seek count=1 status=none) \
		<(dd if=out.img bs=1M skip=$seek count=1 status=none) || fail "data at ${seek}M differs"
done
# the holes read back as zeros (a sample in between)
[ "$(dd if=out.img bs=1M skip=1000000 count=1 status=none | tr -d '\0' | wc -c)" = 0 ] ||
	fail "hole not zero"
"$B" inspect big.bin | grep -q "4.0 TiB" || fail "inspect size"
echo "sparse-4t: ok"
