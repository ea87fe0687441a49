#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Volume names from an image are not trusted. Two volumes never become one file: store refuses
# device names that name one volume once normalised (/dev/xvda and xvda), and restore refuses
# an image whose metadata (forged, with valid checksums and tags) names two volumes alike,
# before it writes anything. inspect prints a forged name's control bytes escaped.
. "$SRCDIR/tests/store/lib.sh"
make_disk a.img 40
truncate -s 4M b.img
head -c 1000000 /dev/urandom | dd of=b.img bs=4096 seek=10 conv=notrunc status=none

expect_fail "device names /dev/xvda and xvda name one volume" dup.bin -- \
	"$B" store a.img=/dev/xvda b.img=xvda -o dup.bin --progress=none
expect_fail "invalid device name '/dev/'" dup.bin -- \
	"$B" store a.img=/dev/xvda b.img=/dev/ -o dup.bin --progress=none

"$B" store a.img=/dev/xvda b.img=/dev/xvdb -o two.bin --progress=none
"$B" verify two.bin --progress=none >/dev/null || fail "the image does not verify"
python3 "$SRCDIR/tests/store/tamper.py" two.bin device 1 /dev/xvda
# the forgery is valid as far as checksums and tags go: only the names collide
"$B" verify two.bin --progress=none >/dev/null || fail "the forged image does not verify"
mkdir out
if "$B" restore two.bin -o out/d --progress=none 2>err; then
	fail "restore wrote two volumes named alike"
fi
grep -q "volumes /dev/xvda and /dev/xvda would both restore to out/d/xvda.img" err ||
	fail "unexpected error: $(cat err)"
[ -z "$(ls -A out)" ] || fail "a refused restore left $(ls -A out)"
# nor can --volume pick one of the two
expect_fail "volumes /dev/xvda and /dev/xvda both match xvda" first.img -- \
	"$B" restore two.bin --volume xvda -o first.img --progress=none
# a name with a terminal escape sequence and a byte that is not UTF-8
"$B" store a.img=/dev/xvda b.img=/dev/xvdb -o esc.bin --progress=none
python3 "$SRCDIR/tests/store/tamper.py" esc.bin device 1 "$(printf '/dev/\033[J\377')"
"$B" inspect esc.bin > inspect.txt
if grep -q "$(printf '\033')" inspect.txt || grep -qa "$(printf '\377')" inspect.txt; then
	fail "inspect printed a raw escape or a byte that is not UTF-8"
fi
grep -qF 'volume 1: /dev/\x1b[J\xff' inspect.txt || fail "escaped name missing: $(cat inspect.txt)"
echo "volume-names: ok"
