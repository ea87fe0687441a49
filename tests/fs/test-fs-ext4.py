#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ext2/3/4 free-space map against the real tools: for several mke2fs feature sets, a junk-filled
image gets a filesystem and a tree (mke2fs -d), part of the tree is deleted (debugfs rm), the
driver's UNUSED ranges are overwritten with garbage in a copy, and then e2fsck -fn must call the
copy clean and debugfs rdump must read every remaining file back identical."""
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjudge as J  # noqa: E402

J.need("mke2fs", "e2fsck", "debugfs", "dumpe2fs")

MiB = 1 << 20
CONFIGS = [
    # name, size, mke2fs options
    ("ext2", 32 * MiB, ["-t", "ext2", "-O", "^has_journal", "-b", "1024"]),
    ("ext3", 32 * MiB, ["-t", "ext3", "-b", "4096", "-g", "2048"]),
    ("ext4-default", 48 * MiB, ["-t", "ext4"]),
    ("ext4-4k-flex", 64 * MiB, ["-t", "ext4", "-b", "4096", "-g", "4096", "-G", "4"]),
    ("ext4-64bit-csum", 48 * MiB, ["-t", "ext4", "-b", "4096", "-g", "2048",
                                   "-O", "64bit,metadata_csum"]),
    ("ext4-bigalloc", 64 * MiB, ["-t", "ext4", "-b", "4096", "-O", "bigalloc", "-C", "16384"]),
    ("ext4-bigalloc-1k", 48 * MiB, ["-t", "ext4", "-b", "1024", "-O", "bigalloc", "-C", "4096",
                                    "-g", "4096"]),
    ("ext4-meta_bg", 32 * MiB, ["-t", "ext4", "-b", "1024", "-g", "512",
                                "-O", "meta_bg,^resize_inode"]),
    ("ext4-uninit_bg", 32 * MiB, ["-t", "ext4", "-b", "1024", "-g", "2048",
                                  "-O", "^metadata_csum,uninit_bg,^flex_bg,^64bit"]),
    ("ext4-sparse_super2", 32 * MiB, ["-t", "ext4", "-b", "4096", "-g", "1024",
                                      "-O", "sparse_super2", "-E", "num_backup_sb=2"]),
    # (not inline_data: debugfs rdump writes 60 bytes for inline files of 0 or 1 byte)
    ("ext4-features", 32 * MiB, ["-t", "ext4", "-b", "4096", "-g", "2048", "-O",
                                 "mmp,ea_inode,large_dir,casefold,encrypt,verity"]),
    ("ext3-nosparse", 24 * MiB, ["-t", "ext3", "-b", "1024", "-g", "1024",
                                 "-O", "^sparse_super,^resize_inode"]),
]


def dumpe2fs_used(img):
    out = J.run(["dumpe2fs", "-h", img]).stdout
    bs = int(re.search(r"^Block size:\s+(\d+)", out, re.M).group(1))
    count = int(re.search(r"^Block count:\s+(\d+)", out, re.M).group(1))
    free = int(re.search(r"^Free blocks:\s+(\d+)", out, re.M).group(1))
    return (count - free) * bs


def one(work, idx, name, size, opts):
    tree = os.path.join(work, name + "-tree")
    files = J.make_tree(tree, seed=idx, nfiles=48, max_size=800 * 1024)
    img = os.path.join(work, name + ".img")
    J.junk_fill(img, size, seed=1000 + idx)
    J.run(["mke2fs", "-q", "-F", "-E", "nodiscard", "-d", tree] + opts + [img],
          env={"MKE2FS_CONFIG": "/etc/mke2fs.conf"})
    # delete every third file: its blocks become free space full of its old content
    doomed = sorted(files)[::3]
    with open(os.path.join(work, name + ".cmds"), "w") as f:
        for rel in doomed:
            f.write("rm /%s\n" % rel)
    J.run(["debugfs", "-w", "-f", os.path.join(work, name + ".cmds"), img])
    for rel in doomed:
        del files[rel]
    J.run(["e2fsck", "-fn", img])  # the original must be clean to start with

    m = J.fs_map("ext4", img)
    J.expect_ok(m, name)
    if m["unused_bytes"] < size // 4:
        J.fail("%s: only %d bytes unused of %d" % (name, m["unused_bytes"], size))
    # ZERO ranges (empty journal, unused inode-table blocks) lie inside used blocks
    J.check_kept(m, dumpe2fs_used(img) - m["zero_bytes"], name)

    copy = os.path.join(work, name + "-scrambled.img")
    n = J.scramble(img, copy, m, seed=2000 + idx)
    J.log("%s: overwrote %d bytes of free space with garbage" % (name, n))
    p = J.run(["e2fsck", "-fn", copy], check=False)
    if p.returncode != 0:
        J.fail("%s: e2fsck -fn on the scrambled copy exited %d:\n%s"
               % (name, p.returncode, p.stdout[-3000:]))
    if idx == 2:
        # the judge must be able to fail: garbage over a used block (the root directory's
        # first block) of a second copy has to be noticed
        bad = os.path.join(work, name + "-control.img")
        shutil.copyfile(copy, bad)
        blk = int(J.run(["debugfs", "-R", "bmap / 0", bad]).stdout.split()[-1])
        bs = int(re.search(r"^Block size:\s+(\d+)", J.run(["dumpe2fs", "-h", bad]).stdout,
                           re.M).group(1))
        with open(bad, "r+b") as f:
            f.seek(blk * bs)
            f.write(os.urandom(bs))
        if J.run(["e2fsck", "-fn", bad], check=False).returncode == 0:
            J.fail("%s: e2fsck -fn did not notice garbage in a used block" % name)
        os.unlink(bad)
        J.log("%s: control: e2fsck -fn notices garbage in a used block" % name)
    out = os.path.join(work, name + "-out")
    os.makedirs(out)
    J.run(["debugfs", "-R", "rdump / " + out, copy])
    got = {k: v for k, v in J.hash_tree(out).items() if not k.startswith("lost+found")}
    J.compare_files(files, got, name + " (debugfs rdump)")
    if set(got) != set(files):
        J.fail("%s: unexpected files: %s" % (name, sorted(set(got) - set(files))[:10]))
    mounted = J.mount_and_hash(copy, "ext4" if name != "ext2" else "ext2")
    if mounted is not None:
        J.compare_files(files, {k: v for k, v in mounted.items()
                                if not k.startswith("lost+found")}, name + " (loop mount)")
    for p in (copy, img):
        os.unlink(p)
    shutil.rmtree(out)
    shutil.rmtree(tree)


def main():
    work = J.tmpdir()
    try:
        only = sys.argv[1:]
        for idx, (name, size, opts) in enumerate(CONFIGS):
            if only and name not in only:
                continue
            one(work, idx, name, size, opts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    J.log("ok")


if __name__ == "__main__":
    main()
