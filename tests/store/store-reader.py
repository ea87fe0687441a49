#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""An independent reader of .bin store images, written from formats/STORE_FORMAT.md alone,
with Python's zlib, hashlib and hmac and the `cryptography` package (AES-GCM, HKDF) -- an
outside judge for the C implementation.

usage: store-reader.py IMAGE.bin OUTDIR [--passphrase-file F]
Writes OUTDIR/<n>.img for each volume n (sparse), exits 1 with a message on any failed check.
"""
import hashlib
import hmac
import os
import struct
import sys
import zlib


def die(msg):
    print("store-reader: " + msg, file=sys.stderr)
    sys.exit(1)


def crc_skip(buf, at):
    return zlib.crc32(buf[:at] + b"\0\0\0\0" + buf[at + 4:]) & 0xFFFFFFFF


def tlv(buf):
    pos = 0
    while pos < len(buf):
        if len(buf) - pos < 6:
            die("truncated TLV")
        key, n = struct.unpack_from("<HI", buf, pos)
        pos += 6
        if n > len(buf) - pos:
            die("TLV overruns")
        yield key, buf[pos:pos + n]
        pos += n


def main():
    args = sys.argv[1:]
    passphrase = None
    if "--passphrase-file" in args:
        i = args.index("--passphrase-file")
        passphrase = open(args[i + 1], "rb").read().split(b"\n")[0]
        del args[i:i + 2]
    path, outdir = args
    data = open(path, "rb").read()

    # header
    h = data[:128]
    if len(h) < 128 or h[:8] != b"SNAPSTOR":
        die("not a store image")
    if zlib.crc32(h[:124]) & 0xFFFFFFFF != struct.unpack_from("<I", h, 124)[0]:
        die("header CRC")
    version, hsize, compat, incompat, ro, frame_size = struct.unpack_from("<6I", h, 8)
    image_id = h[32:48]
    volume_count, block_size = struct.unpack_from("<II", h, 48)
    if version != 2 or incompat & ~1:
        die("unsupported version or feature")
    encrypted = bool(incompat & 1)
    pos = 128

    def record(expect):
        nonlocal pos
        rtype, crc, length = struct.unpack_from("<IIQ", data, pos)
        if rtype != expect:
            die("expected record %d at %d, found %d" % (expect, pos, rtype))
        rec = data[pos:pos + length]
        if len(rec) != length or crc_skip(rec, 4) != crc:
            die("record %d CRC" % rtype)
        pos += length
        return rec

    def zero_crc(rec):
        return rec[:4] + b"\0\0\0\0" + rec[8:]

    keys_rec = b""
    k_enc = k_mac = None
    if encrypted:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        keys_rec = record(1)
        if hashlib.sha256(zero_crc(keys_rec)[:-32]).digest() != keys_rec[-32:]:
            die("KEYS tag")
        body = keys_rec[16:-32]
        (nslots,) = struct.unpack_from("<I", body, 0)
        p = 4
        dk = None
        for _ in range(nslots):
            stype, slen = struct.unpack_from("<II", body, p)
            p += 8
            s = body[p:p + slen]
            p += slen
            if stype == 1 and passphrase is not None:
                salt = s[:32]
                n, r, par = struct.unpack_from("<QII", s, 32)
                kek = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=par, dklen=32,
                                     maxmem=256 * 1024 * 1024)
                try:
                    dk = AESGCM(kek).decrypt(s[48:60], s[60:108], image_id)
                except Exception:
                    die("wrong passphrase")
        if dk is None:
            die("no usable key slot")

        def hk(info):
            return HKDF(algorithm=hashes.SHA256(), length=32, salt=image_id,
                        info=info).derive(dk)
        k_enc = hk(b"snapbundle-store-v1 frame key")
        k_mac = hk(b"snapbundle-store-v1 mac key")
        aes = AESGCM(k_enc)

    def mac(msg):
        if k_mac:
            return hmac.new(k_mac, msg, hashlib.sha256).digest()
        return hashlib.sha256(msg).digest()

    meta_offset = pos
    meta_rec = record(2)
    if mac(h + keys_rec + zero_crc(meta_rec)[:-32]) != meta_rec[-32:]:
        die("META tag")
    sizes = []
    devices = []
    for key, val in tlv(meta_rec[16:-32]):
        if key == 0x800C:
            size = None
            dev = None
            for k2, v2 in tlv(val):
                if k2 == 0x8002:
                    (size,) = struct.unpack("<Q", v2)
                elif k2 == 1:
                    dev = v2.decode()
            sizes.append(size)
            devices.append(dev)
        elif key & 0x8000:
            die("unknown critical key")
    if len(sizes) != volume_count:
        die("volume count")

    # frames, sequentially
    frames = []
    os.makedirs(outdir, exist_ok=True)
    outs = []
    for i, size in enumerate(sizes):
        f = open(os.path.join(outdir, "%d.img" % i), "wb")
        f.truncate(size)
        outs.append(f)
    while True:
        (rtype,) = struct.unpack_from("<I", data, pos)
        if rtype != 3:
            break
        fh = data[pos:pos + 96]
        if crc_skip(fh, 4) != struct.unpack_from("<I", fh, 4)[0]:
            die("frame header CRC")
        _, _, length, vol, flags, no, off, raw_len, stored_len = struct.unpack_from(
            "<IIQIIQQII", fh, 0)
        if no != len(frames):
            die("frame out of order")
        nonce = fh[48:60]
        digest = fh[64:96]
        payload = data[pos + 96:pos + 96 + stored_len]
        if len(payload) != stored_len or stored_len < 4:
            die("frame %d truncated" % no)
        if hashlib.sha256(payload).digest() != digest:
            die("frame %d digest" % no)
        if flags & 2:
            tag = data[pos + 96 + stored_len:pos + 112 + stored_len]
            aad = image_id + fh[:4] + bytes(4) + fh[8:64]
            try:
                payload = aes.decrypt(nonce, payload + tag, aad)
            except Exception:
                die("frame %d authentication" % no)
        body, (crc,) = payload[:-4], struct.unpack("<I", payload[-4:])
        if flags & 1:
            if len(body) >= raw_len:
                die("frame %d: DEFLATE body not shorter than the data" % no)
            d = zlib.decompressobj(-15)
            raw = d.decompress(body)
            if not d.eof or d.unused_data:
                die("frame %d: DEFLATE stream does not end with the body" % no)
        else:
            raw = body
        if len(raw) != raw_len or zlib.crc32(raw) & 0xFFFFFFFF != crc:
            die("frame %d CRC of the data" % no)
        outs[vol].seek(off)
        outs[vol].write(raw)
        frames.append((pos, vol, flags, off, raw_len, stored_len, digest))
        pos += length

    index_offset = pos
    idx = record(4)
    if mac(zero_crc(idx)[:-32]) != idx[-32:]:
        die("INDEX tag")
    body = idx[16:-32]
    nvol, _, nframes, moff, mlen = struct.unpack_from("<IIQQQ", body, 0)
    if (moff, mlen) != (meta_offset, len(meta_rec)) or body[32:64] != hashlib.sha256(
            meta_rec).digest():
        die("index does not match META")
    p = 64
    vols = []
    for v in range(nvol):
        ne, first, nf = struct.unpack_from("<QQQ", body, p)
        vdig = body[p + 24:p + 56]
        p += 56
        ext = body[p:p + 24 * ne]
        p += 24 * ne
        vols.append((first, nf, vdig, ext))
    if nframes != len(frames):
        die("index frame count")
    entries = []
    for i in range(nframes):
        e = struct.unpack_from("<QIIQII", body, p) + (body[p + 32:p + 64],)
        p += 64
        if e != frames[i]:
            die("index entry %d does not match frame" % i)
        entries.append(e)
    for v, (first, nf, vdig, ext) in enumerate(vols):
        m = hashlib.sha256(b"snapbundle-volume-v1" + struct.pack("<IQ", v, sizes[v]) + ext)
        for e in entries[first:first + nf]:
            m.update(struct.pack("<QI", e[3], e[4]) + e[6])
        if m.digest() != vdig:
            die("volume %d digest" % v)
        # ZERO extents are holes in the fresh files already
    signer = None
    if compat & 1:
        sig_rec = record(5)
        if hashlib.sha256(zero_crc(sig_rec)[:-32]).digest() != sig_rec[-32:]:
            die("SIGNATURE tag")
        body = sig_rec[16:-32]
        (kl,) = struct.unpack_from("<I", body, 0)
        spki = body[4:4 + kl]
        (sl,) = struct.unpack_from("<I", body, 4 + kl)
        sig = body[8 + kl:8 + kl + sl]
        msg = (b"snapbundle-store-v1 signature" + h + hashlib.sha256(keys_rec).digest() +
               hashlib.sha256(meta_rec).digest() + hashlib.sha256(idx).digest())
        from cryptography.hazmat.primitives import hashes as H
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        from cryptography.hazmat.primitives.serialization import load_der_public_key
        pub = load_der_public_key(spki)
        try:
            if isinstance(pub, rsa.RSAPublicKey):
                pub.verify(sig, msg, padding.PKCS1v15(), H.SHA256())
            elif isinstance(pub, ec.EllipticCurvePublicKey):
                pub.verify(sig, msg, ec.ECDSA(H.SHA256()))
            else:
                pub.verify(sig, msg)
        except Exception:
            die("signature does not verify")
        signer = hashlib.sha256(spki).hexdigest()
        if len(sys.argv) and os.environ.get("STORE_READER_DUMP"):
            d = os.environ["STORE_READER_DUMP"]
            open(d + "/msg", "wb").write(msg)
            open(d + "/sig", "wb").write(sig)
            open(d + "/spki.der", "wb").write(spki)
    foot = data[pos:pos + 64]
    if len(foot) != 64 or foot[:8] != b"SNAPFOOT":
        die("no footer (truncated)")
    if zlib.crc32(foot[:60]) & 0xFFFFFFFF != struct.unpack_from("<I", foot, 60)[0]:
        die("footer CRC")
    io, il, isz = struct.unpack_from("<QQQ", foot, 8)
    if (io, il, isz) != (index_offset, len(idx), len(data)) or foot[32:48] != image_id:
        die("footer fields")
    for f in outs:
        f.close()
    print("ok: %d volumes (%s), %d frames%s" % (len(sizes), ", ".join(devices), nframes,
                                              ", signed by " + signer if signer else ""))


main()
