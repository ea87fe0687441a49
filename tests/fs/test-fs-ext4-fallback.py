#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every reason the ext2/3/4 driver must copy a partition whole, one damaged image each: a
block bitmap failing its metadata_csum checksum, a journal needing recovery, an unknown
incompatible feature, error and orphan state, bad descriptor checksums (crc32c and crc16), a
bitmap that disagrees with its descriptor, a non-empty journal, an unclean ext2 and a truncated
image, and a filesystem mounted read-write (refused) then frozen (accepted, and a scrambled
copy taken while frozen is clean). Each starts from a pristine copy the driver accepts, so a
refusal is due to the damage.
The superblock checksum is recomputed here with an independent crc32c, which also checks the
driver's convention against mke2fs."""
import hashlib
import os
import re
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjudge as J  # noqa: E402

J.need("mke2fs", "debugfs", "dumpe2fs")
MiB = 1 << 20


def crc32c(crc, data):
    """Raw CRC32C (no inversion), bitwise: an independent reference for the driver's."""
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc


def patch(img, off, data):
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(data)


def read(img, off, n):
    with open(img, "rb") as f:
        f.seek(off)
        return f.read(n)


def fix_sb_csum(img):
    sb = bytearray(read(img, 1024, 1024))
    struct.pack_into("<I", sb, 0x3FC, crc32c(0xFFFFFFFF, sb[:0x3FC]))
    patch(img, 1024, bytes(sb))


def make(work, name, opts, size=32 * MiB):
    tree = os.path.join(work, name + "-tree")
    J.make_tree(tree, seed=len(name), nfiles=12, max_size=300 * 1024)
    img = os.path.join(work, name + ".img")
    J.junk_fill(img, size, seed=7)
    J.run(["mke2fs", "-q", "-F", "-d", tree] + opts + [img])
    J.expect_ok(J.fs_map("ext4", img), name + " (pristine)")
    return img


def dumpe2fs(img):
    return J.run(["dumpe2fs", img]).stdout


def main():
    work = J.tmpdir()
    try:
        csum = make(work, "csum", ["-t", "ext4", "-b", "4096", "-g", "2048",
                                   "-O", "64bit,metadata_csum"])
        # the superblock checksum mke2fs wrote follows the driver's convention
        sb = read(csum, 1024, 1024)
        if struct.unpack_from("<I", sb, 0x3FC)[0] != crc32c(0xFFFFFFFF, sb[:0x3FC]):
            J.fail("mke2fs superblock checksum is not raw crc32c(~0) as expected")

        # 1. a block bitmap that fails its checksum (group 0's bitmap is always initialised)
        img = os.path.join(work, "bitmap.img")
        shutil.copyfile(csum, img)
        out = dumpe2fs(img)
        groups = re.findall(r"^Group (\d+): .*?\n(?:.*\n)*?\s+Block bitmap at (\d+)", out, re.M)
        g, blk = next((int(a), int(b)) for a, b in groups
                      if not re.search(r"^Group %s: .*BLOCK_UNINIT" % a, out, re.M)
                      and int(a) > 0) if len(groups) > 1 else (0, int(groups[0][1]))
        bs = 4096
        byte = read(img, blk * bs + 100, 1)[0]
        patch(img, blk * bs + 100, bytes([byte ^ 0x10]))
        J.expect_refused(J.fs_map("ext4", img), "corrupt block bitmap checksum",
                         ["group %d" % g, "bitmap checksum"])

        # 2. journal needs recovery
        img = os.path.join(work, "recover.img")
        shutil.copyfile(csum, img)
        J.run(["debugfs", "-w", "-R", "feature needs_recovery", img])
        J.expect_refused(J.fs_map("ext4", img), "needs_recovery", ["recovery"])

        # 3. unknown incompatible feature (superblock checksum fixed so only the feature
        # is wrong)
        img = os.path.join(work, "incompat.img")
        shutil.copyfile(csum, img)
        inc = struct.unpack_from("<I", read(img, 1024 + 0x60, 4))[0]
        patch(img, 1024 + 0x60, struct.pack("<I", inc | 0x40000000))
        fix_sb_csum(img)
        J.expect_refused(J.fs_map("ext4", img), "unknown incompat", ["incompatible"])

        # 3b. the same bit without fixing the checksum: refused for the checksum
        img = os.path.join(work, "sbcsum.img")
        shutil.copyfile(csum, img)
        patch(img, 1024 + 0x60, struct.pack("<I", inc | 0x40000000))
        J.expect_refused(J.fs_map("ext4", img), "superblock checksum", ["checksum"])

        # 4. errors state, orphan list
        for name, cmd, word in (("errors", "ssv state 2", "errors"),
                                ("orphan", "ssv last_orphan 12", "orphan")):
            img = os.path.join(work, name + ".img")
            shutil.copyfile(csum, img)
            J.run(["debugfs", "-w", "-R", cmd, img])
            J.expect_refused(J.fs_map("ext4", img), name, [word])

        # 5. descriptor checksum (crc32c): change group 1's unused-inode count in the
        # primary table only
        img = os.path.join(work, "desc.img")
        shutil.copyfile(csum, img)
        off = 4096 + 64 * 1 + 0x1C
        v = struct.unpack("<H", read(img, off, 2))[0]
        patch(img, off, struct.pack("<H", v ^ 1))
        J.expect_refused(J.fs_map("ext4", img), "descriptor crc32c", ["group 1", "descriptor"])

        # 6. descriptor checksum (crc16, uninit_bg without metadata_csum)
        old = make(work, "crc16", ["-t", "ext4", "-b", "1024", "-g", "2048",
                                   "-O", "^metadata_csum,uninit_bg,^64bit"])
        img = os.path.join(work, "desc16.img")
        shutil.copyfile(old, img)
        off = 2048 + 32 * 2 + 0x1C
        v = struct.unpack("<H", read(img, off, 2))[0]
        patch(img, off, struct.pack("<H", v ^ 1))
        J.expect_refused(J.fs_map("ext4", img), "descriptor crc16", ["group 2", "descriptor"])

        # 7. a bitmap (no checksums at all) that frees a block its descriptor counts as used
        ext2 = make(work, "ext2", ["-t", "ext2", "-b", "1024"])
        img = os.path.join(work, "count.img")
        shutil.copyfile(ext2, img)
        out = dumpe2fs(img)
        blk = int(re.search(r"^Group 0: .*\n(?:.*\n)*?\s+Block bitmap at (\d+)", out,
                            re.M).group(1))
        byte = read(img, blk * 1024 + 40, 1)[0]  # blocks 320..327: inode table, in use
        if byte == 0:
            J.fail("expected used blocks at the start of group 0")
        patch(img, blk * 1024 + 40, bytes([byte & (byte - 1)]))
        J.expect_refused(J.fs_map("ext4", img), "bitmap vs descriptor", ["group 0", "free"])

        # 8. unclean ext2 (no journal to vouch for the bitmaps)
        img = os.path.join(work, "unclean.img")
        shutil.copyfile(ext2, img)
        J.run(["debugfs", "-w", "-R", "ssv state 0", img])
        J.expect_refused(J.fs_map("ext4", img), "unclean ext2", ["not cleanly unmounted"])

        # 9. a journal holding transactions while the superblock flag is clear
        img = os.path.join(work, "journal.img")
        shutil.copyfile(csum, img)
        jblk = int(J.run(["debugfs", "-R", "bmap <8> 0", img]).stdout.split()[-1])
        patch(img, jblk * 4096 + 0x1C, struct.pack(">I", 1))
        J.expect_refused(J.fs_map("ext4", img), "non-empty journal", ["journal"])

        # 10. an image cut short: the filesystem is larger than its partition
        img = os.path.join(work, "short.img")
        shutil.copyfile(csum, img)
        os.truncate(img, 16 * MiB)
        J.expect_refused(J.fs_map("ext4", img), "truncated", ["larger than"])
        mounted_and_frozen(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    J.log("ok")


def mounted_and_frozen(work):
    """A filesystem mounted read-write has its journal flagged as needing recovery: refused.
    Frozen (FIFREEZE), its journal is flushed and the flag cleared: accepted, and a scrambled
    copy taken while frozen is clean for e2fsck -fn with every file intact."""
    if not J.can_loop_mount() or not shutil.which("fsfreeze"):
        J.log("no loop mount or fsfreeze: skipping the mounted and frozen cases")
        return
    tree = os.path.join(work, "live-tree")
    files = J.make_tree(tree, seed=99, nfiles=12, max_size=300 * 1024)
    img = os.path.join(work, "live.img")
    J.junk_fill(img, 32 * MiB, seed=9)
    J.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, img])
    mnt = tempfile.mkdtemp(prefix="snap-mnt-")
    p = J.run(["mount", "-o", "loop", img, mnt], check=False)
    if p.returncode != 0:
        os.rmdir(mnt)
        J.log("mount not permitted (%s): skipping the mounted and frozen cases"
              % p.stdout.strip())
        return
    frozen = False
    try:
        with open(os.path.join(mnt, "written-while-mounted"), "wb") as f:
            data = os.urandom(200000)
            f.write(data)
        files["written-while-mounted"] = hashlib.sha256(data).hexdigest()
        os.sync()
        J.expect_refused(J.fs_map("ext4", img), "mounted read-write", ["recovery"])
        J.run(["fsfreeze", "-f", mnt])
        frozen = True
        m = J.fs_map("ext4", img)
        J.expect_ok(m, "frozen")
        copy = os.path.join(work, "frozen-scrambled.img")
        J.scramble(img, copy, m, seed=5)
    finally:
        if frozen:
            J.run(["fsfreeze", "-u", mnt], check=False)
        J.run(["umount", mnt], check=False)
        os.rmdir(mnt)
    p = J.run(["e2fsck", "-fn", copy], check=False)
    if p.returncode != 0:
        J.fail("frozen: e2fsck -fn on the scrambled copy exited %d:\n%s"
               % (p.returncode, p.stdout[-3000:]))
    out = os.path.join(work, "frozen-out")
    os.makedirs(out)
    J.run(["debugfs", "-R", "rdump / " + out, copy])
    got = {k: v for k, v in J.hash_tree(out).items() if not k.startswith("lost+found")}
    J.compare_files(files, got, "frozen (debugfs rdump)")


if __name__ == "__main__":
    main()
