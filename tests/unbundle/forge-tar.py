#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Forges tar streams for the unbundle tests: any member, any header field, any old-GNU sparse
map (docs/classic-bundle-format.md; GNU tar's old-GNU format), every header checksum right.
Numbers that do not fit in octal are written in base-256, as GNU tar does.

usage: forge-tar.py OUT.tar MEMBER...   each MEMBER is a comma-separated key=value list:
    name=NAME type=0|S|5|1|2... size=N (header size field; default: the stored bytes)
    data=FILE (the stored bytes; default: zeros of the stored size)
    stored=N (stored bytes when no data= is given)
    realsize=N map=OFF:LEN/OFF:LEN/...  (old-GNU sparse 'S': the map, extension headers when
    over 4 entries; stored bytes default to the sum of the lengths)
    link=TARGET
Ends with two zero blocks. As a library: member(...) returns one member's bytes.
"""
import sys


def num(v, width):
    """octal with a NUL, or base-256 (0x80 then big-endian) when it does not fit"""
    o = b"%o" % v
    if len(o) < width:
        return o.rjust(width - 1, b"0") + b"\0"
    return bytes([0x80]) + (v % (1 << (8 * (width - 1)))).to_bytes(width - 1, "big")


def header(name, typ, size, link=b"", sparse=(), extended=False, realsize=None):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = num(0o644, 8)
    h[108:116] = num(0, 8)
    h[116:124] = num(0, 8)
    h[124:136] = num(size, 12)
    h[136:148] = num(1700000000, 12)
    h[156:157] = typ
    h[157:157 + len(link)] = link
    h[257:265] = b"ustar  \0"
    for i, (off, n) in enumerate(sparse):
        h[386 + 24 * i:398 + 24 * i] = num(off, 12)
        h[398 + 24 * i:410 + 24 * i] = num(n, 12)
    h[482] = 1 if extended else 0
    if realsize is not None:
        h[483:495] = num(realsize, 12)
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def pad(b):
    return b + bytes(-len(b) % 512)


def member(name=b"disk.img", typ=b"0", data=None, size=None, realsize=None, sparse_map=None,
           link=b""):
    if sparse_map is not None:
        stored = sum(n for _, n in sparse_map)
        typ = b"S"
    else:
        stored = len(data) if data is not None else (size or 0)
    if data is None:
        data = bytes(min(stored, 1 << 30))
    first, rest = (sparse_map or [])[:4], (sparse_map or [])[4:]
    out = header(name, typ, stored if size is None else size, link, first, bool(rest),
                 realsize)
    while rest:
        blk = bytearray(512)
        chunk, rest = rest[:21], rest[21:]
        for i, (off, n) in enumerate(chunk):
            blk[24 * i:24 * i + 12] = num(off, 12)
            blk[24 * i + 12:24 * i + 24] = num(n, 12)
        blk[504] = 1 if rest else 0
        out += bytes(blk)
    return out + pad(data)


def main():
    out = bytearray()
    for spec in sys.argv[2:]:
        kv = dict(x.split("=", 1) for x in spec.split(","))
        data = open(kv["data"], "rb").read() if "data" in kv else None
        smap = None
        if "map" in kv:
            smap = [tuple(int(x) for x in e.split(":")) for e in kv["map"].split("/") if e]
        if data is None and "stored" in kv:
            data = bytes(int(kv["stored"]))
        out += member(kv.get("name", "disk.img").encode(), kv.get("type", "0").encode(), data,
                      int(kv["size"]) if "size" in kv else None,
                      int(kv["realsize"]) if "realsize" in kv else None, smap,
                      kv.get("link", "").encode())
    out += bytes(1024)
    with open(sys.argv[1], "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
