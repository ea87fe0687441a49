#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Block device output with -o /dev/loopN: holes are zeroed (the device is filled with 0xff
# first), the image lands byte-identical, a device that is too small is refused, and so is one
# in use. Needs root and loop devices; skipped (77) without them.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v losetup >/dev/null || ! losetup -f >/dev/null 2>&1; then
	echo "SKIP: needs root and a free loop device"
	exit 77
fi
img="$T/disk.img"
sparse_image "$img" $((16 * 1024 * 1024))
m=$(mkbundle "$img" "$T/b" --part-size 1048576)

python3 -c "import sys; sys.stdout.buffer.write(b'\xff' * (20 * 1024 * 1024))" >"$T/dev.img"
loop=$(losetup -f --show "$T/dev.img") || { echo "SKIP: losetup failed"; exit 77; }
small=""
cleanup() {
	losetup -d "$loop" 2>/dev/null || true
	[ -n "$small" ] && losetup -d "$small" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

if "$SNAPBUNDLE" unbundle -m "$m" -k "$T/user.key" -o "$loop" >"$T/log" 2>&1; then
	cmp -n $((16 * 1024 * 1024)) "$img" "$loop" || fail "device contents differ (holes not zeroed?)"
else
	fail "unbundle to $loop failed: $(cat "$T/log")"
fi

truncate -s 8M "$T/small.img"
small=$(losetup -f --show "$T/small.img")
if "$SNAPBUNDLE" unbundle -m "$m" -k "$T/user.key" -o "$small" >"$T/log" 2>&1; then
	fail "a device smaller than the image was accepted"
fi
grep -q "too small" "$T/log" || fail "too small: unclear error: $(cat "$T/log")"

# in use: held open O_EXCL by another process
python3 -c "
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL)
print('held', flush=True)
time.sleep(30)" "$loop" >"$T/held" &
holder=$!
for _ in $(seq 50); do grep -q held "$T/held" 2>/dev/null && break; sleep 0.1; done
if "$SNAPBUNDLE" unbundle -m "$m" -k "$T/user.key" -o "$loop" >"$T/log" 2>&1; then
	fail "a device in use was written"
fi
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
grep -q "in use" "$T/log" || fail "in use: unclear error: $(cat "$T/log")"
finish
