#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""FAT12/16/32 free-space map against the real tools: mkfs.vfat over a junk-filled image, a tree
copied in with mtools and part of it deleted, the driver's UNUSED ranges overwritten with
garbage in a copy; fsck.vfat -n must call the copy clean and mcopy must read every file back
identical. Also: a volume marked dirty and FAT copies that differ are refused."""
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjudge as J  # noqa: E402

J.need("mkfs.vfat", "fsck.vfat", "mcopy", "mdel", "mmd")
MiB = 1 << 20
CONFIGS = [
    ("fat12", 4 * MiB, ["-F", "12"]),
    ("fat16", 24 * MiB, ["-F", "16", "-s", "4"]),
    ("fat32", 40 * MiB, ["-F", "32", "-s", "1"]),
    ("fat16-1fat", 16 * MiB, ["-F", "16", "-f", "1", "-r", "1024"]),
]


def fsck_reference(img):
    """Used clusters * cluster size + everything before the data area, as fsck.vfat says."""
    out = J.run(["fsck.vfat", "-n", "-v", img]).stdout
    cbytes = int(re.search(r"(\d+) bytes per cluster", out).group(1))
    data = int(re.search(r"Data area starts at byte (\d+)", out).group(1))
    used = int(re.search(r"files, (\d+)/\d+ clusters", out).group(1))
    return data + used * cbytes


def mtools_env():
    return {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}


def one(work, idx, name, size, opts):
    tree = os.path.join(work, name + "-tree")
    max_size = 200 * 1024 if size < 8 * MiB else 800 * 1024
    files = J.make_tree(tree, seed=50 + idx, nfiles=16 if size < 8 * MiB else 40,
                        max_size=max_size)
    img = os.path.join(work, name + ".img")
    J.junk_fill(img, size, seed=60 + idx)
    J.run(["mkfs.vfat"] + opts + [img])
    env = mtools_env()
    for d in ("a", "a/b", "c"):
        J.run(["mmd", "-i", img, "::/" + d], env=env)
    for rel in sorted(files):
        J.run(["mcopy", "-i", img, os.path.join(tree, rel), "::/" + rel], env=env)
    doomed = sorted(files)[::3]
    for rel in doomed:
        J.run(["mdel", "-i", img, "::/" + rel], env=env)
        del files[rel]
    J.run(["fsck.vfat", "-n", img])

    m = J.fs_map("vfat", img)
    J.expect_ok(m, name)
    if m["unused_bytes"] < size // 5:
        J.fail("%s: only %d bytes unused of %d" % (name, m["unused_bytes"], size))
    J.check_kept(m, fsck_reference(img), name)

    copy = os.path.join(work, name + "-scrambled.img")
    n = J.scramble(img, copy, m, seed=70 + idx)
    J.log("%s: overwrote %d bytes of free space with garbage" % (name, n))
    p = J.run(["fsck.vfat", "-n", "-V", copy], check=False)
    if p.returncode != 0:
        J.fail("%s: fsck.vfat -n on the scrambled copy exited %d:\n%s"
               % (name, p.returncode, p.stdout[-3000:]))
    out = os.path.join(work, name + "-out")
    os.makedirs(out)
    J.run(["mcopy", "-s", "-n", "-i", copy, "::/", out], env=env)
    got = J.hash_tree(out)
    J.compare_files(files, got, name + " (mcopy)")
    if set(got) != set(files):
        J.fail("%s: unexpected files: %s" % (name, sorted(set(got) - set(files))[:10]))
    mounted = J.mount_and_hash(copy, "vfat")
    if mounted is not None:
        J.compare_files(files, mounted, name + " (loop mount)")
    return img


def main():
    work = J.tmpdir()
    try:
        imgs = {}
        for idx, (name, size, opts) in enumerate(CONFIGS):
            imgs[name] = one(work, idx, name, size, opts)

        # a volume marked dirty in its boot sector (FAT16: state byte 0x25)
        img = os.path.join(work, "dirty.img")
        shutil.copyfile(imgs["fat16"], img)
        with open(img, "r+b") as f:
            f.seek(0x25)
            f.write(b"\x01")
        J.expect_refused(J.fs_map("vfat", img), "dirty FAT16", ["dirty"])

        # FAT32: clean-shutdown bit of entry 1 cleared
        img = os.path.join(work, "unclean.img")
        shutil.copyfile(imgs["fat32"], img)
        with open(img, "rb") as f:
            bs = f.read(512)
        fat0 = int.from_bytes(bs[14:16], "little") * int.from_bytes(bs[11:13], "little")
        with open(img, "r+b") as f:
            f.seek(fat0 + 4 + 3)
            b = f.read(1)[0]
            f.seek(fat0 + 4 + 3)
            f.write(bytes([b & ~0x08]))
        J.expect_refused(J.fs_map("vfat", img), "unclean FAT32", ["cleanly"])

        # the second FAT differs from the first (a lost write)
        img = os.path.join(work, "fats.img")
        shutil.copyfile(imgs["fat16"], img)
        with open(img, "rb") as f:
            bs = f.read(512)
        bps = int.from_bytes(bs[11:13], "little")
        fat1 = (int.from_bytes(bs[14:16], "little") +
                int.from_bytes(bs[22:24], "little")) * bps
        with open(img, "r+b") as f:
            f.seek(fat1 + 2 * 40)
            f.write(b"\x00\x00")
        J.expect_refused(J.fs_map("vfat", img), "FAT copies differ", ["differ"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    J.log("ok")


if __name__ == "__main__":
    main()
