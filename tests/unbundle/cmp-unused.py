#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""cmp-unused.py SOURCE RESTORED INSPECT_JSON: RESTORED equals SOURCE byte for byte, except in
the extents `snapbundle inspect --json --extents` calls "unused" (filesystem free space,
unpartitioned space), where a bundle keeps nothing and RESTORED must read as zeros. Holes of
both files are skipped with SEEK_DATA, so a sparse multi-GiB image compares quickly. Exit 0 when
they agree, 1 with the first differing offset otherwise."""
import json
import os
import sys

CHUNK = 1 << 20


def data_ranges(fd, start, end):
    """[a, b) ranges inside [start, end) that may hold data (not holes)."""
    off = start
    while off < end:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            return
        if d >= end:
            return
        h = min(os.lseek(fd, d, os.SEEK_HOLE), end)
        yield d, h
        off = h


def main():
    src, out, js = sys.argv[1:4]
    info = json.load(open(js))
    a, b = os.open(src, os.O_RDONLY), os.open(out, os.O_RDONLY)
    size = os.fstat(a).st_size
    if os.fstat(b).st_size < size:
        sys.exit('cmp-unused: %s is shorter than %s' % (out, src))
    zero = bytes(CHUNK)
    for e in info['extents']:
        off, end, kind = e['offset'], e['offset'] + e['length'], e['kind']
        # ranges where either file may hold data; elsewhere both read zeros
        ranges = sorted(set(data_ranges(a, off, end)) | set(data_ranges(b, off, end)))
        for lo, hi in ranges:
            o = lo
            while o < hi:
                n = min(CHUNK, hi - o)
                y = os.pread(b, n, o)
                x = zero[:n] if kind == 'unused' else os.pread(a, n, o)
                if x != y:
                    i = next(i for i in range(n) if x[i] != y[i])
                    sys.exit('cmp-unused: differ at byte %d (%s extent %d+%d)' %
                             (o + i, kind, e['offset'], e['length']))
                o += n
    print('cmp-unused: %s matches %s outside its unused extents' % (out, src))


if __name__ == '__main__':
    main()
