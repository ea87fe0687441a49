#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-reader-vs-dd.sh READ-EXTENTS file|loop
#
# Both reader paths (io_uring and the pread fallback) must return exactly the bytes dd(1)
# returns for random extent lists: tiny and large ranges, unaligned offsets, the unaligned tail
# of an image whose size is not a multiple of 4096. "file" reads the image file (O_DIRECT and
# buffered), "loop" the same image through a read-only loop device (skipped, exit 77, where
# losetup is unavailable). An injected read error must name its offset, and nothing after it
# may be written. TEST_SEED reproduces a run.
set -euo pipefail

tool=${1:?usage: test-reader-vs-dd.sh READ-EXTENTS file|loop}
mode=${2:?usage: test-reader-vs-dd.sh READ-EXTENTS file|loop}
seed=${TEST_SEED:-$RANDOM$RANDOM}
echo "seed $seed"

work=$(mktemp -d "${BUILDDIR:-/tmp}/reader-vs-dd.XXXXXX")
loopdev=
cleanup() {
	if [ -n "$loopdev" ]; then
		losetup -d "$loopdev" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

img=$work/disk.img
size=$((16 * 1024 * 1024 + 3 * 512 + 123)) # not a multiple of 4096, nor of 512
python3 - "$img" "$size" "$seed" <<'PY'
import random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
with open(path, "wb") as f:
    left = size
    while left:
        n = min(left, 1 << 20)
        f.write(rng.randbytes(n))
        left -= n
PY

src=$img
if [ "$mode" = loop ]; then
	if ! loopdev=$(losetup --find --show --read-only "$img" 2>"$work/losetup.err"); then
		echo "losetup unavailable: $(cat "$work/losetup.err")"
		loopdev=
		exit 77
	fi
	src=$loopdev
	size=$(blockdev --getsize64 "$src")
	echo "loop device $src, $size bytes"
fi

# One random extent list per line: "OFF:LEN ...", sorted, non-overlapping; every other list
# runs into the last bytes of the source.
python3 - "$size" "$seed" 12 >"$work/lists" <<'PY'
import random, sys
size, seed, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed * 7 + 1)
for k in range(count):
    out, pos = [], rng.choice([0, rng.randrange(size // 4)])
    for _ in range(rng.randint(1, 16)):
        if pos >= size:
            break
        kind = rng.randrange(4)
        n = [rng.randint(1, 17), rng.randint(1, 9000), 4096 * rng.randint(1, 64),
             rng.randint(1, 3 << 20)][kind]
        n = min(n, size - pos)
        out.append((pos, n))
        pos += n + rng.choice([0, rng.randint(1, 5000), rng.randrange(size // 8)])
    if k % 2 and pos < size - 1:
        start = max(pos, size - rng.randint(1, 9000))
        out.append((start, size - start))
    print(" ".join(f"{o}:{n}" for o, n in out))
PY

expected() { # source, ranges... -> the bytes dd returns for each range, concatenated
	local s=$1 r
	shift
	for r in "$@"; do
		dd if="$s" iflag=skip_bytes,count_bytes skip="${r%%:*}" count="${r##*:}" bs=1M \
			status=none
	done
}

configs=("" "--qd 1 --rs 4096" "--qd 5 --rs 12345" "--qd 64 --rs 65536")
extra=("")
[ "$mode" = file ] && extra+=("--no-direct")
runs=0
n=0
while read -r -a ranges; do
	n=$((n + 1))
	expected "$src" "${ranges[@]}" >"$work/expected"
	for path in "" "--pread"; do
		for cfg in "${configs[@]}"; do
			for ex in "${extra[@]}"; do
				# shellcheck disable=SC2086 # options are words on purpose
				if ! "$tool" $path $cfg $ex "$src" "${ranges[@]}" >"$work/got" \
					2>"$work/err"; then
					echo "FAIL: list $n ($path $cfg $ex): $(cat "$work/err")"
					exit 1
				fi
				if ! cmp "$work/expected" "$work/got"; then
					echo "FAIL: list $n ($path $cfg $ex) differs from dd: ${ranges[*]}"
					cat "$work/err"
					exit 1
				fi
				runs=$((runs + 1))
			done
		done
	done
	[ "$n" = 1 ] && sed 's/^/  /' "$work/err"
done <"$work/lists"
echo "$runs reads of $n lists match dd"

# An injected EIO at the start of the second range of a list: the error names that offset and
# the output is exactly the first range, nothing more, never zero fill.
read -r -a ranges < <(awk 'NF >= 2' "$work/lists" | head -n 1)
if [ "${#ranges[@]}" -ge 2 ]; then
	at=${ranges[1]%%:*}
	expected "$src" "${ranges[0]}" >"$work/expected"
	for path in "" "--pread"; do
		if "$tool" $path --fail-at "$at" "$src" "${ranges[@]}" >"$work/got" 2>"$work/err"; then
			echo "FAIL: injected error at $at not reported ($path)"
			exit 1
		fi
		if ! grep -qF "cannot read $src at offset $at: Input/output error" "$work/err"; then
			echo "FAIL: error does not name offset $at ($path):"
			cat "$work/err"
			exit 1
		fi
		cmp "$work/expected" "$work/got" || {
			echo "FAIL: output after an injected error is not the bytes before it ($path)"
			exit 1
		}
	done
	echo "injected error at $at: $(tail -n 1 "$work/err")"
fi
echo ok
