#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The progress bar fits an 80-column terminal: every line it draws (store, restore) is at most
# 79 columns once its erase-to-end-of-line sequence is taken out, so no update wraps.
. "$SRCDIR/tests/store/lib.sh"
make_disk disk.img 40
"$B" store disk.img -o a.bin --progress=bar 2>store.err >/dev/null
"$B" restore a.bin -o r.img --progress=bar 2>restore.err >/dev/null
for f in store.err restore.err; do
	lines=$(tr '\r' '\n' < "$f" | sed 's/\x1b\[K//g' | grep -c '%')
	[ "$lines" -gt 0 ] || fail "$f: no progress bar drawn"
	long=$(tr '\r' '\n' < "$f" | sed 's/\x1b\[K//g' | awk 'length($0) > 79' | head -1)
	[ -z "$long" ] || fail "$f: a line of ${#long} columns: $long"
done
echo "progress-bar: ok"
