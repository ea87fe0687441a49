#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Edits a .bin store image for the tamper tests (layout from formats/STORE_FORMAT.md).

tamper.py IMG flip OFFSET            flip one byte
tamper.py IMG flip-fix OFFSET        flip one byte inside a KEYS/META/INDEX record and recompute
                                     that record's CRC (so only the tag can catch it)
tamper.py IMG incompat BITS          OR BITS into the header's incompat word, fix the CRC
tamper.py IMG frames                 print "number file_offset record_length" per frame
tamper.py IMG record TYPE            print "offset length" of the first record of TYPE
tamper.py IMG swap I J               exchange frame records I and J (same length required)
tamper.py IMG graft DONOR I          replace frame record I with the donor image's frame I
tamper.py IMG index-stored I VALUE   set stored_len of index entry I; recompute the INDEX tag
                                     (plain SHA-256: unencrypted images only) and CRC
tamper.py IMG redigest I OFFSET [index]
                                     flip the byte OFFSET bytes into frame I's payload, then
                                     recompute the frame's digest (SHA-256 of the stored
                                     payload) and header CRC; with "index" also its index entry,
                                     the INDEX tag and CRC (plain SHA-256: unencrypted only)
tamper.py IMG device I NAME          set the device name of volume I (0-based; same length) in
                                     META; recompute as part-size does (unencrypted images only)
tamper.py IMG scrypt-cost N R P      set the cost of the first KEYS slot (a passphrase slot);
                                     recompute the KEYS tag (plain SHA-256) and CRC
tamper.py IMG part-size I VALUE      set the size of partition I (0-based) of the first volume
                                     in META; recompute the META tag and CRC, the INDEX's
                                     metadata digest, tag and CRC (unencrypted images only)
"""
import struct
import sys
import zlib


def records(d):
    pos = 128
    while pos < len(d) - 64:
        t, _, n = struct.unpack_from("<IIQ", d, pos)
        yield pos, t, n
        pos += n


def frames(d):
    return [(p, n) for p, t, n in records(d) if t == 3]


def crc_fix(d, pos, n):
    d[pos + 4:pos + 8] = b"\0\0\0\0"
    d[pos + 4:pos + 8] = struct.pack("<I", zlib.crc32(bytes(d[pos:pos + n])) & 0xFFFFFFFF)


def tlvs(d, pos, end):
    """(key, value offset, value length) of each TLV in d[pos:end]"""
    while pos < end:
        k, n = struct.unpack_from("<HI", d, pos)
        yield k, pos + 6, n
        pos += 6 + n


def reseal_index(d, meta_pos, meta_len):
    import hashlib
    for p, t, n in records(d):
        if t == 4:
            break
    d[p + 16 + 32:p + 16 + 64] = hashlib.sha256(bytes(d[meta_pos:meta_pos + meta_len])).digest()
    d[p + 4:p + 8] = b"\0\0\0\0"
    d[p + n - 32:p + n] = hashlib.sha256(bytes(d[p:p + n - 32])).digest()
    crc_fix(d, p, n)


def index_entry(d):
    """(INDEX record offset, length, offset of index entry 0)"""
    for p, t, n in records(d):
        if t == 4:
            break
    body = p + 16
    nvol = struct.unpack_from("<I", d, body)[0]
    q = body + 64
    for _ in range(nvol):
        ne = struct.unpack_from("<Q", d, q)[0]
        q += 56 + 24 * ne
    return p, n, q


def revolume(d):
    """recomputes every volume digest of the INDEX from its entries (sizes from META)"""
    import hashlib
    mp, mn = next((p, n) for p, t, n in records(d) if t == 2)
    sizes = []
    for k, vo, vn in tlvs(d, mp + 16, mp + mn - 32):
        if k == 0x800C:
            sz = next(v for v in tlvs(d, vo, vo + vn) if v[0] == 0x8002)
            sizes.append(struct.unpack_from("<Q", d, sz[1])[0])
    p, n, q = index_entry(d)
    v = p + 16 + 64
    for i, size in enumerate(sizes):
        ne, first, nf = struct.unpack_from("<QQQ", d, v)
        m = hashlib.sha256(b"snapbundle-volume-v1" + struct.pack("<IQ", i, size) +
                           bytes(d[v + 56:v + 56 + 24 * ne]))
        for k in range(first, first + nf):
            e = q + 64 * k
            m.update(bytes(d[e + 16:e + 24]) + bytes(d[e + 24:e + 28]) + bytes(d[e + 32:e + 64]))
        d[v + 24:v + 56] = m.digest()
        v += 56 + 24 * ne


def main():
    path, op, *args = sys.argv[1:]
    d = bytearray(open(path, "rb").read())
    if op == "flip":
        d[int(args[0])] ^= 0x01
    elif op == "flip-fix":
        off = int(args[0])
        d[off] ^= 0x01
        for p, t, n in records(d):
            if p <= off < p + n:
                crc_fix(d, p, n)
                break
    elif op == "incompat":
        v = struct.unpack_from("<I", d, 20)[0] | int(args[0], 0)
        struct.pack_into("<I", d, 20, v)
        struct.pack_into("<I", d, 124, zlib.crc32(bytes(d[:124])) & 0xFFFFFFFF)
    elif op == "frames":
        for i, (p, n) in enumerate(frames(d)):
            print(i, p, n)
        return
    elif op == "record":
        for p, t, n in records(d):
            if t == int(args[0]):
                print(p, n)
                return
        sys.exit(1)
    elif op == "swap":
        f = frames(d)
        (pi, ni), (pj, nj) = f[int(args[0])], f[int(args[1])]
        assert ni == nj, "frames differ in length"
        a, b = bytes(d[pi:pi + ni]), bytes(d[pj:pj + nj])
        d[pi:pi + ni], d[pj:pj + nj] = b, a
    elif op == "index-stored":
        import hashlib
        p, n, q = index_entry(d)
        struct.pack_into("<I", d, q + 64 * int(args[0]) + 28, int(args[1]))
        d[p + 4:p + 8] = b"\0\0\0\0"
        d[p + n - 32:p + n] = hashlib.sha256(bytes(d[p:p + n - 32])).digest()
        crc_fix(d, p, n)
    elif op == "redigest":
        import hashlib
        pf, _ = frames(d)[int(args[0])]
        stored = struct.unpack_from("<I", d, pf + 44)[0]
        d[pf + 96 + int(args[1])] ^= 0x01
        dig = hashlib.sha256(bytes(d[pf + 96:pf + 96 + stored])).digest()
        d[pf + 64:pf + 96] = dig
        crc_fix(d, pf, 96)
        if args[2:] == ["index"]:
            p, n, q = index_entry(d)
            e = q + 64 * int(args[0])
            d[e + 32:e + 64] = dig
            revolume(d)
            d[p + 4:p + 8] = b"\0\0\0\0"
            d[p + n - 32:p + n] = hashlib.sha256(bytes(d[p:p + n - 32])).digest()
            crc_fix(d, p, n)
    elif op == "part-size":
        import hashlib
        for p, t, n in records(d):
            if t == 2:
                break
        vol = next(v for v in tlvs(d, p + 16, p + n - 32) if v[0] == 0x800C)
        parts = [v for v in tlvs(d, vol[1], vol[1] + vol[2]) if v[0] == 7]
        part = parts[int(args[0])]
        size = next(v for v in tlvs(d, part[1], part[1] + part[2]) if v[0] == 3)
        struct.pack_into("<Q", d, size[1], int(args[1]))
        d[p + 4:p + 8] = b"\0\0\0\0"
        d[p + n - 32:p + n] = hashlib.sha256(bytes(d[0:128]) + bytes(d[p:p + n - 32])).digest()
        crc_fix(d, p, n)
        reseal_index(d, p, n)
    elif op == "device":
        import hashlib
        for p, t, n in records(d):
            if t == 2:
                break
        vol = [v for v in tlvs(d, p + 16, p + n - 32) if v[0] == 0x800C][int(args[0])]
        dev = next(v for v in tlvs(d, vol[1], vol[1] + vol[2]) if v[0] == 1)
        name = args[1].encode("utf-8", "surrogateescape")
        assert len(name) == dev[2], "the new name must have the old one's length"
        d[dev[1]:dev[1] + dev[2]] = name
        d[p + 4:p + 8] = b"\0\0\0\0"
        d[p + n - 32:p + n] = hashlib.sha256(bytes(d[0:128]) + bytes(d[p:p + n - 32])).digest()
        crc_fix(d, p, n)
        reseal_index(d, p, n)
    elif op == "scrypt-cost":
        import hashlib
        p, n = next((p, n) for p, t, n in records(d) if t == 1)
        assert struct.unpack_from("<I", d, p + 16 + 4)[0] == 1, "slot 0 is not scrypt"
        slot = p + 16 + 4 + 8
        struct.pack_into("<QII", d, slot + 32, int(args[0]), int(args[1]), int(args[2]))
        d[p + 4:p + 8] = b"\0\0\0\0"
        d[p + n - 32:p + n] = hashlib.sha256(bytes(d[p:p + n - 32])).digest()
        crc_fix(d, p, n)
    elif op == "graft":
        donor = bytearray(open(args[0], "rb").read())
        i = int(args[1])
        (pi, ni), (pd, nd) = frames(d)[i], frames(donor)[i]
        assert ni == nd, "frames differ in length"
        d[pi:pi + ni] = donor[pd:pd + nd]
    open(path, "wb").write(d)


main()
