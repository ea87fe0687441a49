#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Forges .bin store images for tests, written from formats/STORE_FORMAT.md alone.

Every derived field (CRCs, frame digests, the META and INDEX tags, volume digests, the META
digest, file offsets, lengths, counts, the footer, the signature) is computed from what is
actually written, unless the description overrides it: any field can take any value and the
image stays otherwise consistent, so a test reaches the checks behind the checksums.
Unencrypted images only (plain SHA-256 tags); optionally signed with an RSA/EC key through the
`cryptography` package.

As a library (sys.path.insert(0, "tests/store"); import forge):

    img = forge.Image(volumes=[forge.Volume.from_bytes(data, frame_size=65536)],
                      frame_size=65536)
    img.volumes[0].size = 1 << 63            # any field; derived fields follow
    img.frames(0)[1].offset = 5              # frame header and its index entry
    img.index_over["frame_count"] = 1 << 40  # override a derived field only
    open("x.bin", "wb").write(img.build())

  Image(volumes, frame_size=65536, **header fields)   header: magic version header_size compat
        incompat ro_compat frame_size image_id volume_count block_size reserved crc
        meta: list of (key, bytes) image TLVs (default: a name); meta_raw: whole META payload
        before the tag; meta_over: {tag, crc, type, length}
        index_over: {volume_count, reserved, frame_count, meta_offset, meta_length,
        meta_digest, tag, crc, type, length}; entries: list of index entries (default: one
        per frame written, equal to its header; each a dict that may override file_offset
        volume flags offset raw_len stored_len digest)
        footer_over: {magic, index_offset, index_length, image_size, image_id, reserved, crc}
        sign_key: PEM private key path (sets compat SIGNATURE); keys_raw: a whole KEYS record
        after_header / before_index / before_footer / trailer: raw bytes inserted there
  Volume(device, size, frames=[Frame], extents=None, partitions=[dict], tlvs=[(k, bytes)])
        extents default: DATA over the frames, ZERO in between (merged); index fields
        extent_count first_frame frame_count digest can be overridden in volume.index_over
        Volume.from_bytes(data, frame_size, device=..., deflate=False) cuts data as a writer
        does (all-zero chunks become ZERO extents)
  Frame(volume, offset, data, deflate=False)   or payload=bytes (body || crc, as stored);
        any header field may be set: length volume flags frame_no offset raw_len stored_len
        nonce reserved digest crc type; extra=bytes appended after the payload
  Extent(offset, length, kind=0, layer=0, partition=0, reserved=0)

As a command:
    forge.py OUT.bin DISK.img [--frame-size N] [--deflate] [--sign-key KEY.pem]
forges an honest image of DISK.img (it verifies and restores byte-identically).
"""
import hashlib
import struct
import sys
import zlib

DATA, ZERO, UNUSED = 0, 1, 2


def crc32(b):
    return zlib.crc32(b) & 0xFFFFFFFF


def sha(b):
    return hashlib.sha256(b).digest()


def tlv(key, value):
    return struct.pack("<HI", key, len(value)) + value


def s(text):
    return text.encode() if isinstance(text, str) else text


def q(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def l(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


class Extent:
    def __init__(self, offset, length, kind=DATA, layer=0, partition=0, reserved=0):
        self.offset, self.length, self.kind, self.layer = offset, length, kind, layer
        self.partition, self.reserved = partition, reserved

    def pack(self):
        return (q(self.offset) + q(self.length) + bytes([self.kind & 0xFF, self.layer & 0xFF])
                + struct.pack("<H", self.reserved & 0xFFFF) + l(self.partition))


class Frame:
    def __init__(self, volume=0, offset=0, data=None, payload=None, deflate=False, **over):
        self.volume, self.offset, self.data = volume, offset, data
        self.flags = None
        if payload is None:
            body = data
            if deflate:
                c = zlib.compressobj(9, zlib.DEFLATED, -15)
                z = c.compress(data) + c.flush()
                if len(z) < len(data):
                    body, self.flags = z, 1
            payload = body + l(crc32(data))
        self.payload = payload
        self.raw_len = len(data) if data is not None else max(len(payload) - 4, 0)
        if self.flags is None:
            self.flags = 0
        self.type, self.length, self.frame_no, self.stored_len = 3, None, None, None
        self.nonce, self.reserved, self.digest, self.crc = bytes(12), 0, None, None
        self.extra = b""
        for k, v in over.items():
            setattr(self, k, v)

    def header(self, frame_no):
        stored = len(self.payload) if self.stored_len is None else self.stored_len
        length = 96 + len(self.payload) + len(self.extra) if self.length is None else self.length
        digest = sha(self.payload) if self.digest is None else self.digest
        h = bytearray(l(self.type) + l(0) + q(length) + l(self.volume) + l(self.flags)
                      + q(frame_no if self.frame_no is None else self.frame_no)
                      + q(self.offset) + l(self.raw_len) + l(stored) + self.nonce
                      + l(self.reserved) + digest)
        h[4:8] = l(crc32(bytes(h)) if self.crc is None else self.crc)
        return bytes(h)


class Volume:
    def __init__(self, device="/dev/xvda", size=0, frames=None, extents=None, partitions=None,
                 tlvs=None, logical_sector=None):
        self.device, self.size, self.frames = device, size, frames or []
        self.extents, self.partitions, self.tlvs = extents, partitions or [], tlvs or []
        self.logical_sector = logical_sector
        self.index_over = {}

    @classmethod
    def from_bytes(cls, data, frame_size=65536, device="/dev/xvda", deflate=False, volume=0):
        v = cls(device, len(data))
        v.extents = []
        for off in range(0, len(data), frame_size):
            chunk = data[off:off + frame_size]
            kind = ZERO if chunk.count(0) == len(chunk) else DATA
            if kind == DATA:
                v.frames.append(Frame(volume, off, chunk, deflate=deflate))
            if v.extents and v.extents[-1].kind == kind:
                v.extents[-1].length += len(chunk)
            else:
                v.extents.append(Extent(off, len(chunk), kind, 0 if kind == DATA else 3))
        if not v.extents:
            v.extents = [Extent(0, 0, ZERO)]
        return v

    def get_extents(self):
        if self.extents is not None:
            return self.extents
        out, pos = [], 0
        for f in sorted(self.frames, key=lambda f: f.offset):
            if f.offset > pos:
                out.append(Extent(pos, f.offset - pos, ZERO, 3))
            if out and out[-1].kind == DATA and out[-1].offset + out[-1].length == f.offset:
                out[-1].length += f.raw_len
            else:
                out.append(Extent(f.offset, f.raw_len, DATA))
            pos = f.offset + f.raw_len
        if pos < self.size:
            out.append(Extent(pos, self.size - pos, ZERO, 3))
        return out

    def meta(self):
        b = tlv(1, s(self.device)) + tlv(0x8002, q(self.size))
        if self.logical_sector is not None:
            b += tlv(3, l(self.logical_sector))
        for p in self.partitions:
            pb = b""
            for k, key in (("number", 1), ("bootable", 10)):
                if k in p:
                    pb += tlv(key, l(p[k]))
            for k, key in (("start", 2), ("size", 3)):
                if k in p:
                    pb += tlv(key, q(p[k]))
            for k, key in (("type", 4), ("name", 5), ("uuid", 6), ("fs_type", 7),
                           ("fs_label", 8), ("fs_uuid", 9)):
                if k in p:
                    pb += tlv(key, s(p[k]))
            b += tlv(7, pb)
        for k, v in self.tlvs:
            b += tlv(k, v)
        return b


def record(rtype, payload, over, tag_fn):
    """prefix || payload || tag, the tag over the record up to it with crc zero, then the CRC"""
    length = 16 + len(payload) + 32
    rec = bytearray(l(over.get("type", rtype)) + l(0) + q(over.get("length", length)) + payload)
    tag = over.get("tag")
    rec += tag if tag is not None else tag_fn(bytes(rec))
    rec[4:8] = l(over["crc"] if "crc" in over else crc32(bytes(rec)))
    return bytes(rec)


class Image:
    def __init__(self, volumes, frame_size=65536, **kw):
        self.volumes = volumes
        self.magic, self.version, self.header_size = b"SNAPSTOR", 2, 128
        self.compat = self.incompat = self.ro_compat = 0
        self.frame_size, self.image_id, self.block_size = frame_size, bytes(range(16)), 4096
        self.volume_count, self.reserved, self.crc = None, bytes(68), None
        self.meta = [(1, b"forged"), (3, b"x86_64")]
        self.meta_raw, self.meta_over, self.index_over, self.footer_over = None, {}, {}, {}
        self.entries, self.sign_key, self.keys_raw, self.frame_list = None, None, None, None
        self.after_header = self.before_index = self.before_footer = self.trailer = b""
        for k, v in kw.items():
            setattr(self, k, v)

    def frames(self, vol=None):
        """the frames in file order (default: volume 0's, then volume 1's...); assign
        image.frame_list to write any other order or set"""
        if self.frame_list is not None:
            return self.frame_list if vol is None else [
                f for f in self.frame_list if f.volume == vol]
        if vol is not None:
            return self.volumes[vol].frames
        return [f for v in self.volumes for f in v.frames]

    def header(self):
        compat = self.compat | (1 if self.sign_key else 0)
        h = bytearray(self.magic + l(self.version) + l(self.header_size) + l(compat)
                      + l(self.incompat) + l(self.ro_compat) + l(self.frame_size)
                      + self.image_id
                      + l(len(self.volumes) if self.volume_count is None else self.volume_count)
                      + l(self.block_size) + self.reserved)
        h += l(crc32(bytes(h)) if self.crc is None else self.crc)
        return bytes(h)

    def build(self):
        hdr = self.header()
        keys = self.keys_raw or b""
        if self.meta_raw is not None:
            mp = self.meta_raw
        else:
            mp = b"".join(tlv(k, v) for k, v in self.meta)
            mp += b"".join(tlv(0x800C, v.meta()) for v in self.volumes)
        meta = record(2, mp, self.meta_over, lambda r: sha(hdr + keys + r))
        out = bytearray(hdr + self.after_header + keys)
        meta_off = len(out)
        out += meta
        frames = self.frames()
        heads = []
        for n, f in enumerate(frames):
            h = f.header(n)
            heads.append((len(out), h))
            out += h + f.payload + f.extra
        out += self.before_index
        idx_off = len(out)
        if self.entries is not None:
            ents = self.entries
        else:
            ents = [{} for _ in frames]
        packed = []
        for n, e in enumerate(ents):
            if n < len(frames):
                pos, h = heads[n]
                d = dict(file_offset=pos, volume=struct.unpack_from("<I", h, 16)[0],
                         flags=struct.unpack_from("<I", h, 20)[0],
                         offset=struct.unpack_from("<Q", h, 32)[0],
                         raw_len=struct.unpack_from("<I", h, 40)[0],
                         stored_len=struct.unpack_from("<I", h, 44)[0], digest=h[64:96])
            else:
                d = dict(file_offset=0, volume=0, flags=0, offset=0, raw_len=0, stored_len=0,
                         digest=bytes(32))
            d.update(e)
            packed.append(d)
        io = self.index_over
        ip = l(io.get("volume_count", len(self.volumes))) + l(io.get("reserved", 0))
        ip += q(io.get("frame_count", len(packed))) + q(io.get("meta_offset", meta_off))
        ip += q(io.get("meta_length", len(meta))) + io.get("meta_digest", sha(meta))
        first = 0
        for vi, v in enumerate(self.volumes):
            exts = v.get_extents()
            vf = [d for d in packed if d["volume"] == vi]
            vo = v.index_over
            ext_bytes = b"".join(e.pack() for e in exts)
            vd = sha(b"snapbundle-volume-v1" + l(vi) + q(v.size) + ext_bytes + b"".join(
                q(d["offset"]) + l(d["raw_len"]) + d["digest"] for d in vf))
            ip += q(vo.get("extent_count", len(exts))) + q(vo.get("first_frame", first))
            ip += q(vo.get("frame_count", len(vf))) + vo.get("digest", vd) + ext_bytes
            first += len(vf)
        for d in packed:
            ip += (q(d["file_offset"]) + l(d["volume"]) + l(d["flags"]) + q(d["offset"])
                   + l(d["raw_len"]) + l(d["stored_len"]) + d["digest"])
        index = record(4, ip, io, sha)
        out += index
        if self.sign_key:
            out += self.signature(hdr, keys, meta, index)
        out += self.before_footer
        fo = self.footer_over
        size = len(out) + 64
        f = bytearray(fo.get("magic", b"SNAPFOOT") + q(fo.get("index_offset", idx_off))
                      + q(fo.get("index_length", len(index))) + q(fo.get("image_size", size))
                      + fo.get("image_id", self.image_id) + fo.get("reserved", bytes(12)))
        f += l(fo["crc"] if "crc" in fo else crc32(bytes(f)))
        return bytes(out + f + self.trailer)

    def signature(self, hdr, keys, meta, index):
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        with open(self.sign_key, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), None)
        m = (b"snapbundle-store-v1 signature" + hdr + sha(keys) + sha(meta) + sha(index))
        if isinstance(key, rsa.RSAPrivateKey):
            sig = key.sign(m, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            sig = key.sign(m, ec.ECDSA(hashes.SHA256()))
        else:
            sig = key.sign(m)
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        return record(5, l(len(spki)) + spki + l(len(sig)) + sig, {}, sha)


def main():
    import argparse
    ap = argparse.ArgumentParser(description="forge an honest store image of a disk image")
    ap.add_argument("out")
    ap.add_argument("disk", nargs="+")
    ap.add_argument("--frame-size", type=int, default=65536)
    ap.add_argument("--deflate", action="store_true")
    ap.add_argument("--sign-key")
    a = ap.parse_args()
    vols = []
    for i, d in enumerate(a.disk):
        with open(d, "rb") as fh:
            vols.append(Volume.from_bytes(fh.read(), a.frame_size, "/dev/xvd" + chr(97 + i),
                                          a.deflate, i))
    img = Image(vols, a.frame_size, sign_key=a.sign_key)
    with open(a.out, "wb") as fh:
        fh.write(img.build())


if __name__ == "__main__":
    main()
