#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A store that fails or is cancelled (SIGINT) leaves nothing behind: no output, no temporary
# file. The signal is sent once the job reports data progress, so it lands mid-job.
. "$SRCDIR/tests/store/lib.sh"
expect_fail "cannot open missing.img" out.bin -- "$B" store missing.img -o out.bin --progress=none

head -c $((96 * 1024 * 1024)) /dev/urandom > disk.img
# level 3 on one thread with small frames: slow enough to be interrupted
"$B" store disk.img -o out.bin --level 3 --threads 1 --frame-size 64K --progress=json \
	2> progress.log &
pid=$!
for _ in $(seq 1 200); do
	grep -q '"stage":"data"' progress.log 2>/dev/null && break
	sleep 0.05
done
kill -INT "$pid" 2>/dev/null || true
rc=0
wait "$pid" || rc=$?
if [ $rc -eq 0 ]; then
	echo "store finished before the signal; cancellation not exercised"
	exit 77
fi
# it dies of the signal, as every command does (bundle's exit status, 130)
[ $rc -eq 130 ] || fail "exit status $rc after SIGINT, not 130"
grep -q "cancelled" progress.log || { cat progress.log >&2; fail "no 'cancelled' message"; }
[ ! -e out.bin ] || fail "cancelled store left out.bin"
if ls -A | grep -q '\.tmp-[0-9]'; then
	fail "cancelled store left a temporary file"
fi
echo "cancel: ok"
