#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The progress bar fits the terminal: every line it draws (store, restore) is at most one column
# narrower than the terminal ($COLUMNS here: stderr is no terminal) once its erase-to-end-of-line
# sequence is taken out, so no update wraps; a wide terminal gets a longer bar, a narrow one the
# numbers alone.
. "$SRCDIR/tests/store/lib.sh"
make_disk disk.img 40
for cols in 80 60 120 40; do
	COLUMNS=$cols "$B" store disk.img -o a.bin --progress=bar --force 2>store.err >/dev/null
	COLUMNS=$cols "$B" restore a.bin -o r.img --progress=bar --force 2>restore.err >/dev/null
	for f in store.err restore.err; do
		tr '\r' '\n' < "$f" | sed 's/\x1b\[K//g' | grep '%' > lines || fail "$f: no progress drawn"
		long=$(awk -v c="$cols" 'length($0) > c - 1' lines | head -1)
		[ -z "$long" ] || fail "COLUMNS=$cols, $f: a line of ${#long} columns: $long"
		bar=$(grep -o '\[[#.]*\]' lines | head -1 || true)
		case $cols in
		40) [ -z "$bar" ] || fail "COLUMNS=40: a bar was drawn: $bar" ;;
		80) [ ${#bar} -ge 10 ] || fail "COLUMNS=80: bar '$bar' too short" ;;
		120) [ ${#bar} -ge 40 ] || fail "COLUMNS=120: bar '$bar' not widened" ;;
		esac
	done
done
# The bar counts what must be read: its total is the disk's DATA (inspect's map), not the disk
data=$("$B" inspect disk.img --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["map"]["bytes"]["data"])')
COLUMNS=100 "$B" store disk.img -o a.bin --progress=bar --force 2>store.err >/dev/null
shown=$(tr '\r' '\n' < store.err | sed 's/\x1b\[K//g' | grep '^data' | tail -1 |
	sed -n 's|.*% [0-9.]* [KMGT]*i*B/\([0-9.]* [KMGT]*i*B\) .*|\1|p')
want=$(python3 -c "
n = $data
for u in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
    if n < 1024 or u == 'TiB':
        print(f'{n:.1f} {u}' if u != 'B' else f'{n} B'); break
    n /= 1024")
[ -n "$shown" ] || fail "no data-stage line with a total: $(tr '\r' '\n' < store.err | tail -2)"
[ "$shown" = "$want" ] || fail "the bar's total is $shown, the disk's DATA is $want ($data bytes)"
echo "progress-bar: ok"
