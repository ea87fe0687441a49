#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""NTFS free-space map against the ntfs-3g tools: mkntfs -Q (no zeroing) over a junk-filled
image, a tree written through an ntfs-3g mount where FUSE is available (with part of it deleted
again), else copied in with ntfscp; the driver's UNUSED ranges are overwritten with garbage in a
copy; ntfsfix -n and ntfsresize's consistency check must pass on the copy and ntfscat must read
every file back identical. The backup boot sector in the last sector must survive.
Fallbacks: a volume marked dirty, a $LogFile whose newest restart area is not clean, a $Bitmap
that frees $MFT's clusters."""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import hashlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjudge as J  # noqa: E402

J.need("mkntfs", "ntfsfix", "ntfscat", "ntfscp", "ntfsresize")
MiB = 1 << 20
CONFIGS = [
    ("ntfs-4k", 64 * MiB, []),
    ("ntfs-512", 48 * MiB, ["-c", "512"]),
    ("ntfs-64k", 96 * MiB, ["-c", "65536"]),
    ("ntfs-4ksect", 64 * MiB, ["-s", "4096"]),
]






def populate(img, tree, files):
    mnt = J.ntfs_fuse_mount(img)
    if mnt:
        for rel in sorted(files):
            os.makedirs(os.path.dirname(os.path.join(mnt, rel)), exist_ok=True)
            shutil.copyfile(os.path.join(tree, rel), os.path.join(mnt, rel))
        doomed = sorted(files)[::3]
        for rel in doomed:
            os.unlink(os.path.join(mnt, rel))
            del files[rel]
        J.ntfs_fuse_umount(mnt)
        J.log("populated through ntfs-3g, %d files deleted" % len(doomed))
        return files
    J.log("no ntfs-3g mount: files copied into the root with ntfscp, none deleted")
    flat = {}
    for rel in sorted(files):
        name = rel.replace("/", "_")
        J.run(["ntfscp", "-f", img, os.path.join(tree, rel), name])
        flat[name] = files[rel]
    return flat


def ntfsresize_used(img):
    """Bytes in use by ntfsresize's own cluster accounting (it walks every MFT record)."""
    out = J.run(["ntfsresize", "-i", "-f", "-v", img]).stdout
    import re
    m = re.search(r"Space in use\s*:\s*\d+ MB \(([\d.]+)%\)", out)
    total = re.search(r"Current volume size\s*:\s*(\d+) bytes", out)
    if not m or not total:
        J.fail("cannot read ntfsresize's accounting:\n" + out[-2000:])
    return int(float(m.group(1)) / 100 * int(total.group(1)))


def judges(img, what):
    p = J.run(["ntfsfix", "-n", img], check=False)
    if p.returncode != 0:
        J.fail("%s: ntfsfix -n exited %d:\n%s" % (what, p.returncode, p.stdout[-2000:]))
    p = J.run(["ntfsresize", "-i", "-f", img], check=False)
    if p.returncode != 0 or "successfully" not in p.stdout and "might resize" not in p.stdout:
        J.fail("%s: ntfsresize consistency check failed (%d):\n%s"
               % (what, p.returncode, p.stdout[-2000:]))


def one(work, idx, name, size, opts):
    tree = os.path.join(work, name + "-tree")
    files = J.make_tree(tree, seed=600 + idx, nfiles=30, max_size=700 * 1024)
    img = os.path.join(work, name + ".img")
    J.junk_fill(img, size, seed=700 + idx)
    J.run(["mkntfs", "-q", "-F", "-Q"] + opts + [img])
    files = populate(img, tree, files)
    judges(img, name + " (original)")

    m = J.fs_map("ntfs", img)
    J.expect_ok(m, name)
    if m["unused_bytes"] < size // 3:
        J.fail("%s: only %d bytes unused of %d" % (name, m["unused_bytes"], size))
    J.check_kept(m, ntfsresize_used(img), name)
    bps = geometry(img)[0]
    if not any(o <= size - bps and size <= o + n for o, n in m["pinned"]):
        J.fail("%s: the last sector (backup boot sector) is not pinned" % name)

    copy = os.path.join(work, name + "-scrambled.img")
    n = J.scramble(img, copy, m, seed=800 + idx)
    J.log("%s: overwrote %d bytes of free space with garbage" % (name, n))
    judges(copy, name + " (scrambled)")
    bps = geometry(img)[0]
    with open(img, "rb") as a, open(copy, "rb") as b:
        a.seek(size - bps)
        b.seek(size - bps)
        if a.read(bps) != b.read(bps):
            J.fail("%s: the partition's last sector (backup boot sector) changed" % name)
    got = {}
    for rel in files:
        p = subprocess.run(["ntfscat", copy, "/" + rel], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            J.fail("%s: ntfscat %s: %s" % (name, rel, p.stderr.decode(errors="replace")))
        got[rel] = hashlib.sha256(p.stdout).hexdigest()
    J.compare_files(files, got, name + " (ntfscat)")
    mnt = J.ntfs_fuse_mount(copy)
    if mnt:
        try:
            J.compare_files(files, J.hash_tree(mnt), name + " (ntfs-3g mount)")
        finally:
            J.ntfs_fuse_umount(mnt)
    os.unlink(copy)
    shutil.rmtree(tree)
    return img


def geometry(img):
    with open(img, "rb") as f:
        bs = f.read(512)
    bps = struct.unpack_from("<H", bs, 0x0B)[0]
    cluster = bs[0x0D] * bps
    mft = struct.unpack_from("<Q", bs, 0x30)[0] * cluster
    cpr = struct.unpack_from("<b", bs, 0x40)[0]
    rec = cpr * cluster if cpr > 0 else 1 << -cpr
    return bps, cluster, mft, rec


def read_record(img, off, rec):
    """An MFT record with its fixups undone, and the list of fixup positions."""
    with open(img, "rb") as f:
        f.seek(off)
        b = bytearray(f.read(rec))
    ofs, cnt = struct.unpack_from("<HH", b, 4)
    for i in range(1, cnt):
        b[i * 512 - 2:i * 512] = b[ofs + 2 * i:ofs + 2 * i + 2]
    return b


def write_record(img, off, b):
    """Writes an MFT record back, redoing its fixups."""
    b = bytearray(b)
    ofs, cnt = struct.unpack_from("<HH", b, 4)
    usn = b[ofs:ofs + 2]
    for i in range(1, cnt):
        b[ofs + 2 * i:ofs + 2 * i + 2] = b[i * 512 - 2:i * 512]
        b[i * 512 - 2:i * 512] = usn
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(b)


def find_attr(b, type_):
    off = struct.unpack_from("<H", b, 0x14)[0]
    while True:
        t, ln = struct.unpack_from("<II", b, off)
        if t == 0xFFFFFFFF:
            return None
        if t == type_:
            return off
        off += ln


def data_runs(b):
    a = find_attr(b, 0x80)
    mp = struct.unpack_from("<H", b, a + 0x20)[0]
    p = a + mp
    runs, lcn = [], 0
    while b[p]:
        lsz, osz = b[p] & 15, b[p] >> 4
        ln = int.from_bytes(b[p + 1:p + 1 + lsz], "little")
        d = int.from_bytes(b[p + 1 + lsz:p + 1 + lsz + osz], "little", signed=True)
        lcn += d
        runs.append((lcn, ln))
        p += 1 + lsz + osz
    return runs


def restart_page(lsn, clean, psize=4096):
    b = bytearray(psize)
    cnt = psize // 512 + 1
    struct.pack_into("<4sHHQIIHhh", b, 0, b"RSTR", 0x1E, cnt, 0, psize, 4096, 0x30, 1, 1)
    # restart area: current_lsn, log_clients, client_free_list, client_in_use_list, flags
    struct.pack_into("<QHHHH", b, 0x30, lsn, 1, 0xFFFF, 0, 0x0002 if clean else 0)
    usn = b"\x01\x00"
    b[0x1E:0x20] = usn
    for i in range(1, cnt):
        b[0x1E + 2 * i:0x20 + 2 * i] = b[i * 512 - 2:i * 512]
        b[i * 512 - 2:i * 512] = usn
    return bytes(b)


def fallbacks(work, base):
    bps, cluster, mft, rec = geometry(base)

    # $Volume flagged dirty
    img = os.path.join(work, "dirty.img")
    shutil.copyfile(base, img)
    b = read_record(img, mft + 3 * rec, rec)
    a = find_attr(b, 0x70)
    voff = struct.unpack_from("<H", b, a + 0x14)[0]
    flags = struct.unpack_from("<H", b, a + voff + 10)[0]
    struct.pack_into("<H", b, a + voff + 10, flags | 1)
    write_record(img, mft + 3 * rec, b)
    J.expect_refused(J.fs_map("ntfs", img), "dirty volume", ["dirty"])

    # $LogFile: newest restart area not clean (an older clean copy must not win)
    logrun = data_runs(read_record(base, mft + 2 * rec, rec))[0][0] * cluster
    for clean, expect in ((False, False), (True, True)):
        img = os.path.join(work, "log.img")
        shutil.copyfile(base, img)
        with open(img, "r+b") as f:
            f.seek(logrun)
            f.write(restart_page(200, clean))
            f.write(restart_page(100, True))
        m = J.fs_map("ntfs", img)
        if expect:
            J.expect_ok(m, "clean restart area")
            J.log("clean restart area: accepted")
        else:
            J.expect_refused(m, "unclean $LogFile", ["LogFile not clean"])

    # $Bitmap says $MFT's first cluster is free
    img = os.path.join(work, "bitmap.img")
    shutil.copyfile(base, img)
    bm = data_runs(read_record(img, mft + 6 * rec, rec))[0][0] * cluster
    mft_lcn = mft // cluster
    with open(img, "r+b") as f:
        f.seek(bm + mft_lcn // 8)
        v = f.read(1)[0]
        f.seek(bm + mft_lcn // 8)
        f.write(bytes([v & ~(1 << (mft_lcn % 8))]))
    J.expect_refused(J.fs_map("ntfs", img), "bitmap frees $MFT", ["system file"])


def main():
    work = J.tmpdir()
    try:
        imgs = {}
        for idx, (name, size, opts) in enumerate(CONFIGS):
            imgs[name] = one(work, idx, name, size, opts)
        fallbacks(work, imgs["ntfs-4k"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    J.log("ok")


if __name__ == "__main__":
    main()
