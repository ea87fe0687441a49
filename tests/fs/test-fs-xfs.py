#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""XFS (v4 and v5) free-space map against the real tools: mkfs.xfs -p protofile over a
junk-filled image; where loop mounts are permitted, part of the tree is deleted through a mount
(which also leaves a used, cleanly unmounted log). The driver's UNUSED ranges are overwritten
with garbage in a copy; xfs_repair -n must call the copy clean, and every file must read back
identical through xfs_db's block maps (and a loop mount where permitted).
Fallbacks: a dirty log (crafted by turning the unmount record into an ordinary one, and a real
one from a shut-down mount where permitted), a mounted filesystem, AGF and bnobt CRC
mismatches, an unknown incompatible feature. A frozen filesystem (covered log) is accepted and
its scrambled copy mounts and is clean."""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjudge as J  # noqa: E402

J.need("mkfs.xfs", "xfs_repair", "xfs_db")
MiB = 1 << 20
# mkfs.xfs refuses filesystems under 300 MB unless it believes it runs under fstests
XFS_ENV = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}
CONFIGS = [
    ("xfs-v5", 80 * MiB, []),
    ("xfs-v4", 80 * MiB, ["-m", "crc=0"]),
    ("xfs-1k", 64 * MiB, ["-b", "size=1024"]),
    ("xfs-4ksect", 80 * MiB, ["-s", "size=4096"]),
    ("xfs-rmap-reflink", 96 * MiB, ["-m", "rmapbt=1,reflink=1", "-d", "agcount=6"]),
]








def xfs_files_identical(img, files, what, tree):
    import hashlib
    geo = J.xfs_geometry(img)
    got = {rel: hashlib.sha256(J.xfs_read_file(img, rel, geo)).hexdigest() for rel in files}
    J.compare_files(files, got, what)


def mount_rw(img):
    """A read-write loop mount, or None where not permitted."""
    if not J.can_loop_mount():
        return None
    mnt = tempfile.mkdtemp(prefix="snap-mnt-")
    p = subprocess.run(["mount", "-t", "xfs", "-o", "loop", img, mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        J.log("mount not permitted (%s)" % p.stdout.strip())
        os.rmdir(mnt)
        return None
    return mnt


def umount(mnt):
    J.run(["umount", mnt])
    os.rmdir(mnt)


def one(work, idx, name, size, opts):
    tree = os.path.join(work, name + "-tree")
    files = J.make_tree(tree, seed=300 + idx, nfiles=40, max_size=900 * 1024)
    proto = os.path.join(work, name + ".proto")
    J.xfs_protofile(tree, files, proto)
    img = os.path.join(work, name + ".img")
    J.junk_fill(img, size, seed=400 + idx)
    J.run(["mkfs.xfs", "-q", "-f", "-K", "-p", proto] + opts + [img], env=XFS_ENV)
    mnt = mount_rw(img)
    if mnt:
        doomed = sorted(files)[::3]
        for rel in doomed:
            os.unlink(os.path.join(mnt, rel))
            del files[rel]
        umount(mnt)
        J.log("%s: deleted %d files through a loop mount" % (name, len(doomed)))
    else:
        J.log("%s: no loop mount: free space holds the junk from before mkfs only" % name)
    J.run(["xfs_repair", "-n", img])

    m = J.fs_map("xfs", img)
    J.expect_ok(m, name)
    if m["unused_bytes"] < size // 3:
        J.fail("%s: only %d bytes unused of %d" % (name, m["unused_bytes"], size))
    geo = J.xfs_geometry(img)
    J.check_kept(m, (geo["dblocks"] - geo["fdblocks"]) * geo["blocksize"], name)

    copy = os.path.join(work, name + "-scrambled.img")
    n = J.scramble(img, copy, m, seed=500 + idx)
    J.log("%s: overwrote %d bytes of free space with garbage" % (name, n))
    p = J.run(["xfs_repair", "-n", copy], check=False)
    if p.returncode != 0:
        J.fail("%s: xfs_repair -n on the scrambled copy exited %d:\n%s"
               % (name, p.returncode, p.stdout[-3000:]))
    xfs_files_identical(copy, files, name + " (xfs_db bmap)", tree)
    mounted = J.mount_and_hash(copy, "xfs", "ro,loop,norecovery")
    if mounted is not None:
        J.compare_files(files, mounted, name + " (loop mount)")
    os.unlink(copy)
    shutil.rmtree(tree)
    return img


def crc32c(crc, data):
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc


def xfs_fix_crc(buf, off):
    b = bytearray(buf)
    b[off:off + 4] = b"\0\0\0\0"
    struct.pack_into("<I", b, off, ~crc32c(0xFFFFFFFF, bytes(b)) & 0xFFFFFFFF)
    return bytes(b)


def patch(img, off, data):
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(data)


def read(img, off, n):
    with open(img, "rb") as f:
        f.seek(off)
        return f.read(n)


def fallbacks(work, v5):
    geo = J.xfs_geometry(v5)
    bs = geo["blocksize"]
    sb = read(v5, 0, 512)
    # our CRC convention reproduces mkfs.xfs's superblock CRC
    if xfs_fix_crc(sb, 0xE0) != sb:
        J.fail("xfs superblock CRC convention differs from mkfs.xfs")

    # crafted dirty log: the unmount record's op header loses its UNMOUNT flag
    out = J.run(["xfs_db", "-r", "-c", "sb 0", "-c", "p logstart agblklog", v5]).stdout
    logstart = int(re.search(r"logstart = (\d+)", out).group(1))
    agblklog = int(re.search(r"agblklog = (\d+)", out).group(1))
    logbyte = ((logstart >> agblklog) * geo["agblocks"] +
               (logstart & ((1 << agblklog) - 1))) * bs
    lp = J.run(["xfs_logprint", "-t", v5], check=False).stdout if shutil.which(
        "xfs_logprint") else ""
    head = int(re.search(r"head: (\d+)", lp).group(1)) if "head:" in lp else None
    img = os.path.join(work, "dirty.img")
    shutil.copyfile(v5, img)
    found = False
    with open(img, "r+b") as f:
        # the record header right before the head: scan back for the magic
        hb = head if head is not None else 2
        for b in range(hb - 1, max(hb - 600, -1), -1):
            f.seek(logbyte + b * 512)
            if f.read(4) == b"\xfe\xed\xba\xbe":
                f.seek(logbyte + (b + 1) * 512 + 9)
                flags = f.read(1)[0]
                if not flags & 0x20:
                    J.fail("expected an unmount record before the log head")
                f.seek(logbyte + (b + 1) * 512 + 9)
                f.write(bytes([flags & ~0x20]))
                found = True
                break
    if not found:
        J.fail("no log record found before the head")
    J.expect_refused(J.fs_map("xfs", img), "crafted dirty log", ["log not clean"])

    # a real dirty log: shut down a mounted filesystem after writing to it
    if shutil.which("xfs_io"):
        img = os.path.join(work, "shutdown.img")
        shutil.copyfile(v5, img)
        mnt = mount_rw(img)
        if mnt:
            with open(os.path.join(mnt, "new-file"), "wb") as f:
                f.write(os.urandom(100000))
            os.mkdir(os.path.join(mnt, "newdir"))
            J.run(["xfs_io", "-x", "-c", "shutdown -f", mnt])
            umount(mnt)
            p = J.run(["xfs_repair", "-n", img], check=False)
            J.log("xfs_repair -n on the shut-down filesystem exited %d" % p.returncode)
            if p.returncode == 0:
                J.fail("xfs_repair -n thinks the shut-down filesystem's log is clean")
            J.expect_refused(J.fs_map("xfs", img), "dirty log after shutdown", ["log"])
        else:
            J.log("no loop mount: skipping the shut-down dirty log")

    # frozen: the log is not clean but covered (only superblock updates after the tail), which
    # the driver accepts; a scrambled copy taken while frozen must mount (replaying the log),
    # then be clean for xfs_repair -n with every file intact
    if shutil.which("fsfreeze"):
        img = os.path.join(work, "frozen.img")
        shutil.copyfile(v5, img)
        mnt = mount_rw(img)
        if mnt:
            new = os.urandom(300000)
            copy = os.path.join(work, "frozen-copy.img")
            try:
                with open(os.path.join(mnt, "written-while-mounted"), "wb") as f:
                    f.write(new)
                os.sync()
                J.expect_refused(J.fs_map("xfs", img), "mounted read-write", ["log"])
                J.run(["fsfreeze", "-f", mnt])
                try:
                    m = J.fs_map("xfs", img)
                    J.expect_ok(m, "frozen")
                    if "covered" not in m["note"]:
                        J.fail("frozen: expected a covered log, note %r" % m["note"])
                    shutil.copyfile(img, copy)
                finally:
                    J.run(["fsfreeze", "-u", mnt], check=False)
            finally:
                umount(mnt)
            scrambled = os.path.join(work, "frozen-scrambled.img")
            J.scramble(copy, scrambled, m, seed=77)
            mnt = mount_rw(scrambled)  # replays the superblock-only log
            if not mnt:
                J.fail("frozen: the scrambled copy does not mount")
            with open(os.path.join(mnt, "written-while-mounted"), "rb") as f:
                if f.read() != new:
                    J.fail("frozen: the file written while mounted differs")
            umount(mnt)
            p = J.run(["xfs_repair", "-n", scrambled], check=False)
            if p.returncode:
                J.fail("frozen: xfs_repair -n after log replay exited %d:\n%s"
                       % (p.returncode, p.stdout[-3000:]))
            J.log("frozen: covered log accepted; scrambled copy mounts, xfs_repair -n clean")
        else:
            J.log("no loop mount: skipping the frozen filesystem")

    if shutil.which("xfs_logprint"):
        covered_from_corpus(work)

    # AGF CRC mismatch (AG 1): change a spare byte
    img = os.path.join(work, "agf.img")
    shutil.copyfile(v5, img)
    agf = geo["agblocks"] * bs + 512
    patch(img, agf + 0x70, b"\x01")
    J.expect_refused(J.fs_map("xfs", img), "AGF CRC", ["AG 1", "CRC"])

    # bnobt root block CRC mismatch (AG 2)
    img = os.path.join(work, "bnobt.img")
    shutil.copyfile(v5, img)
    agf = 2 * geo["agblocks"] * bs + 512
    root = struct.unpack(">I", read(img, agf + 0x10, 4))[0]
    blk = (2 * geo["agblocks"] + root) * bs
    patch(img, blk + bs - 1, bytes([read(img, blk + bs - 1, 1)[0] ^ 0xFF]))
    J.expect_refused(J.fs_map("xfs", img), "bnobt CRC", ["AG 2", "CRC"])

    # unknown incompatible feature, superblock CRC fixed
    img = os.path.join(work, "incompat.img")
    shutil.copyfile(v5, img)
    sect = bytearray(read(img, 0, 512))
    inc = struct.unpack_from(">I", sect, 0xD8)[0]
    struct.pack_into(">I", sect, 0xD8, inc | 0x40000000)
    patch(img, 0, xfs_fix_crc(bytes(sect), 0xE0))
    J.expect_refused(J.fs_map("xfs", img), "unknown incompat", ["incompatible"])


def covered_from_corpus(work):
    """The frozen XFS of the fuzz corpus (made by blockdev/make-fuzz-fs-corpus.sh): its covered
    log is accepted without any mount; once one logged item between tail and head stops being
    the superblock buffer, it is refused."""
    import gzip
    src = os.path.join(os.environ.get("SRCDIR", os.path.join(os.path.dirname(__file__), "..",
                                                              "..")),
                       "blockdev", "corpus", "fs", "xfs-frozen.gz")
    img = os.path.join(work, "corpus-frozen.img")
    with gzip.open(src, "rb") as f, open(img, "wb") as out:
        out.write(f.read()[1:])  # the first byte selects the fuzz driver
    m = J.fs_map("xfs", img)
    J.expect_ok(m, "corpus frozen XFS")
    if "covered" not in m["note"]:
        J.fail("corpus frozen XFS: expected a covered log, note %r" % m["note"])
    out = J.run(["xfs_db", "-r", "-c", "sb 0", "-c", "p logstart agblklog agblocks blocksize",
                 img]).stdout
    g = {k: int(v) for k, v in re.findall(r"^(\w+) = (\d+)", out, re.M)}
    start = ((g["logstart"] >> g["agblklog"]) * g["agblocks"] +
             (g["logstart"] & ((1 << g["agblklog"]) - 1))) * g["blocksize"]
    with open(img, "r+b") as f:
        f.seek(start)
        log = bytearray(f.read(4 << 20))
        # the first buffer item (0x123c, little-endian) in the data of a record between the
        # log's tail and head (as xfs_logprint finds them), not at a block start
        lp = J.run(["xfs_logprint", "-t", img], check=False).stdout
        tail, head = (int(x) for x in re.search(r"log tail: (\d+) head: (\d+)", lp).groups())
        for b in range(tail, head):
            h = log[b * 512:(b + 1) * 512]
            if h[:4] != b"\xfe\xed\xba\xbe":
                continue
            hlen = struct.unpack_from(">I", h, 12)[0]
            data = log[(b + 1) * 512:(b + 1) * 512 + hlen]
            k = data.find(b"\x3c\x12")
            if k > 0 and k % 512 >= 4:
                f.seek(start + (b + 1) * 512 + k)
                f.write(b"\x3b\x12")  # now an inode item
                break
        else:
            J.fail("corpus frozen XFS: no buffer item found in its log")
    J.expect_refused(J.fs_map("xfs", img), "covered log with an inode item",
                     ["beyond the superblock"])


def main():
    work = J.tmpdir()
    try:
        imgs = {}
        for idx, (name, size, opts) in enumerate(CONFIGS):
            imgs[name] = one(work, idx, name, size, opts)
        fallbacks(work, imgs["xfs-v5"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    J.log("ok")


if __name__ == "__main__":
    main()
