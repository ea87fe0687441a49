#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A job cancelled in the middle of the data (from its progress callback, deterministic) returns
# -ECANCELED and leaves neither the output nor its temporary file.
. "$(dirname "$0")/lib.sh"
: "${CANCEL_UNBUNDLE:?run through meson test}"

img="$T/disk.img"
python3 -c "
import os, sys
f = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(24):
    os.pwrite(f, os.urandom(1 << 20), i << 20)
os.close(f)" "$img"
m=$(mkbundle "$img" "$T/b" --part-size 4194304)
mkdir "$T/out"
"$CANCEL_UNBUNDLE" "$m" "$T/user.key" "$T/out/disk.img" || fail "cancellation left debris"
[ -z "$(ls -A "$T/out")" ] || fail "output directory not empty: $(ls -A "$T/out")"
finish
