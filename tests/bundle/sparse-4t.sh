#!/usr/bin/env bash
# sparse-4t.sh - a 4 TiB sparse source with data at its start, middle and end: the bundle
# holds only the data (old-GNU sparse member, base-256 numbers), and GNU tar extracts a sparse
# file with the same bytes. No speed is asserted; the meson timeout bounds it.
. "$(dirname "$0")/lib.sh"
make_keys

img="$T/huge.img"
size=$((4 << 40))
truncate -s $size "$img" 2>/dev/null || { echo "skip: no 4 TiB sparse files here"; exit 77; }
head -c 1M /dev/urandom | dd of="$img" conv=notrunc status=none
head -c 1M /dev/urandom | dd of="$img" bs=1M seek=$((2 << 20)) conv=notrunc status=none
head -c 1M /dev/urandom | dd of="$img" bs=1M seek=$(((4 << 20) - 1)) conv=notrunc status=none

mkdir "$T/out"
bundle "$img" "$T/out" > "$T/summary"
m="$T/out/huge.img.manifest.xml"
[ "$(field "$m" image/size)" = $size ] || fail "size"
stream "$m" "$T/out" > "$T/stream.tar"
[ "$(stat -c %s "$T/stream.tar")" -lt $((4 << 20)) ] || fail "stream holds holes"
[ "$(sha1sum < "$T/stream.tar" | cut -d' ' -f1)" = "$(field "$m" image/digest)" ] ||
	fail "digest"
mkdir "$T/x"
tar -x -C "$T/x" -f "$T/stream.tar"
[ "$(stat -c %s "$T/x/huge.img")" = $size ] || fail "extracted size"
[ "$(du -k "$T/x/huge.img" | cut -f1)" -lt 65536 ] || fail "extracted file is not sparse"
sparse_cmp "$img" "$T/x/huge.img" || fail "extracted bytes differ"
python3 -c 'import sys, tarfile
m = tarfile.open(sys.argv[1]).getmembers()[0]
assert m.type == tarfile.GNUTYPE_SPARSE and m.size == 4 << 40, (m.type, m.size)
assert [s for s in m.sparse if s[1]] == [(0, 1 << 20), (2 << 40, 1 << 20),
    ((4 << 40) - (1 << 20), 1 << 20)], m.sparse' "$T/stream.tar"
echo ok
