#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Paths a hostile or careless command line names: --force never replaces the job's own input
# (store over its source disk, restore over its image), a dangling symbolic link is not
# replaced without --force, and the temporaries a killed run left are reclaimed by the next
# run when their owner is dead (a live owner's are kept).
. "$SRCDIR/tests/store/lib.sh"
make_disk disk.img 40
cp disk.img disk.orig

expect_fail "disk.img is a source of this store: refusing to replace it" nothing -- \
	"$B" store disk.img -o disk.img --force --progress=none
cmp disk.img disk.orig || fail "store replaced its source"

"$B" store disk.img -o a.bin --progress=none
cp a.bin a.orig
expect_fail "a.bin is the image restored from: refusing to replace it" nothing -- \
	"$B" restore a.bin -o a.bin --force --progress=none
cmp a.bin a.orig || fail "restore replaced its image"

ln -s nowhere link
expect_fail "link is a symbolic link to nothing" nothing -- \
	"$B" restore a.bin -o link --progress=none
[ -L link ] && [ "$(readlink link)" = nowhere ] || fail "the link was replaced"

dead=$(python3 -c 'import os
p = 4000000
while os.path.exists("/proc/%d" % p): p -= 1
print(p)')
touch ".b.bin.tmp-$dead" ".b.bin.tmp-$$" ".r.img.tmp-$dead"
"$B" store disk.img -o b.bin --progress=none 2> store.err
[ ! -e ".b.bin.tmp-$dead" ] || fail "a dead owner's temporary was kept"
[ -e ".b.bin.tmp-$$" ] || fail "a live owner's temporary was removed"
"$B" restore b.bin -o r.img --progress=none 2>/dev/null
[ ! -e ".r.img.tmp-$dead" ] || fail "restore kept a dead owner's temporary"
cmp r.img disk.img || fail "round trip differs"
# a passphrase from standard input, also ahead of the image itself on a pipe
echo "a passphrase" > pass
"$B" store disk.img -o e.bin --passphrase-file pass --progress=none
echo "a passphrase" | "$B" restore e.bin -o e1.img --passphrase-file - --progress=none
(echo "a passphrase"; cat e.bin) | "$B" restore - -o e2.img --passphrase-file - --progress=none
cmp e1.img disk.img && cmp e2.img disk.img || fail "passphrase from standard input"
"$B" restore b.bin -o d.img --debug --progress=none 2>debug.txt
grep -q "debug:" debug.txt || fail "restore --debug printed no debug line"
echo "paths: ok"
