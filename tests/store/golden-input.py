#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the two volumes of the golden vector: a.img (1 MiB + 1000 bytes: random-looking
data, a zero run, more data, an unaligned tail) and b.img (8 KiB). The bytes come from SHA-256
in counter mode, so they are the same everywhere. They do not compress, so every frame is
stored raw and the golden bytes do not depend on the deflate encoder's exact output (which
ISA-L does not promise across CPUs); the DEFLATE path is covered by the other tests and the
independent reader."""
import hashlib
import sys


def stream(label, n):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%s %d" % (label, i)).digest()
        i += 1
    return bytes(out[:n])


d = sys.argv[1]
a = bytearray(1048576 + 1000)
a[0:65536] = stream(b"a0", 65536)
a[524288:524288 + 20000] = stream(b"a1", 20000)
a[-3000:] = stream(b"a2", 3000)
open(d + "/a.img", "wb").write(a)
open(d + "/b.img", "wb").write(stream(b"b", 8192))
