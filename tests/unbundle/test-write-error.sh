#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A write that fails in the output stream's thread (RLIMIT_FSIZE lowered once data flows)
# fails the unbundle with the output's path and offset and leaves neither the output nor its
# temporary file, on the O_DIRECT path and with the page cache only.
. "$(dirname "$0")/lib.sh"
: "${WERROR_UNBUNDLE:?run through meson test}"

img="$T/disk.img"
python3 -c "
import os, sys
f = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(24):
    os.pwrite(f, os.urandom(1 << 20), i << 20)
os.close(f)" "$img"
m=$(mkbundle "$img" "$T/b" --part-size 4194304)
mkdir "$T/out"
"$WERROR_UNBUNDLE" "$m" "$T/user.key" "$T/out/disk.img" $((8 << 20)) ||
	fail "direct: the write failure was not reported cleanly"
SNAPBUNDLE_OUTPUT_BUFFERED=1 "$WERROR_UNBUNDLE" "$m" "$T/user.key" "$T/out/disk.img" \
	$((8 << 20)) || fail "buffered: the write failure was not reported cleanly"
[ -z "$(ls -A "$T/out")" ] || fail "output directory not empty: $(ls -A "$T/out")"
finish
