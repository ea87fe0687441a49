#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A sparse image of 4 TiB apparent size with a few MiB of data at its start, middle and end:
inspect --json --extents lists exactly those data extents, with ZERO holes between, found by
SEEK_DATA / SEEK_HOLE without reading the holes (so the test finishes at all; no timing is
asserted)."""
import os

from inspect_common import check, covers, finish, inspect, pattern, tmpdir, write_at

MiB = 1024 * 1024
TiB = 1024 * 1024 * MiB
size = 4 * TiB
data = [(0, 3 * MiB), (2 * TiB + 5 * MiB, 2 * MiB), (size - MiB, MiB)]

d = tmpdir()
img = os.path.join(d, "big.img")
try:
    with open(img, "wb") as f:
        f.truncate(size)
except OSError as e:
    print(f"skipped: cannot make a 4 TiB sparse file here: {e}")
    raise SystemExit(77)
for off, n in data:
    write_at(img, off, pattern(n))
fd = os.open(img, os.O_RDONLY)
try:
    hole = os.lseek(fd, 0, os.SEEK_HOLE)
finally:
    os.close(fd)
if hole != 3 * MiB:
    print(f"skipped: this filesystem reports no holes (SEEK_HOLE at 0 gives {hole})")
    raise SystemExit(77)

for args in ([], ["--min-gap", "0"]):
    ins = inspect(img, "--extents", *args)
    ex = ins["extents"]
    check(ins["size"] == size and covers(ex, size), f"{args}: extents cover 4 TiB")
    check(ins["partition_table"] is None, f"{args}: no partition table")
    got = [(e["offset"], e["length"]) for e in ex if e["kind"] == "data"]
    check(got == data, f"{args}: data extents {got}, expected {data}")
    holes = [(e["offset"], e["length"], e["layer"]) for e in ex if e["kind"] == "zero"]
    want = [(3 * MiB, 2 * TiB + 2 * MiB, "hole"), (2 * TiB + 7 * MiB, 2 * TiB - 8 * MiB, "hole")]
    check(holes == want, f"{args}: zero extents {holes}, expected {want}")
    check(len(ex) == 5, f"{args}: {len(ex)} extents")
    check(ins["map"]["bytes"] == {"data": 6 * MiB, "zero": size - 6 * MiB, "unused": 0},
          f"{args}: summary {ins['map']['bytes']}")

finish("test-sparse-4t")
