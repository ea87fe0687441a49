#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ext4 regions skipped beyond the block bitmaps: the empty journal of a clean ext4 (all but its
superblock) and inode-table blocks past bg_itable_unused, both marked ZERO.

For each feature set: mke2fs over junk (lazy journal and inode-table init, so junk lies where
the driver promises zeros), a tree, then a loop mount that writes and deletes more files (so the
journal has carried transactions) and a clean unmount. The driver's ZERO ranges must be exactly
the journal minus its first block plus every group's inode-table blocks past itable_unused (as
dumpe2fs reports them). A copy gets garbage in every UNUSED range and zeros in every ZERO range;
e2fsck -fn must call it clean, debugfs rdump and a read-write mount must read every file back
identical, and after writing through the mount e2fsck -fn must still be clean. Controls: the
same copy with the journal superblock zeroed too must fail e2fsck -fn, and a dirty journal
(needs_recovery set with debugfs) must be refused. Then through the commands: store and restore
of the clean image (the journal and tables come back as zeros; e2fsck, mount, identical tree)
and of the dirty one (copied whole, restored byte-identical)."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjudge as J  # noqa: E402

J.need("mke2fs", "e2fsck", "debugfs", "dumpe2fs")

MiB = 1 << 20
B = os.environ.get("SNAPBUNDLE")
LAZY = ["-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1"]
CONFIGS = [
    # name, size, mke2fs options
    ("csum-4k", 96 * MiB, ["-t", "ext4", "-b", "4096", "-g", "8192", "-O",
                           "64bit,metadata_csum", "-J", "size=8"]),
    ("csum-flex-1k", 64 * MiB, ["-t", "ext4", "-b", "1024", "-N", "8192"]),
    ("uninit_bg", 48 * MiB, ["-t", "ext4", "-b", "1024", "-g", "4096",
                             "-O", "^metadata_csum,uninit_bg,^flex_bg,^64bit"]),
]


def geometry(img):
    out = J.run(["dumpe2fs", img]).stdout
    g = {
        "bs": int(re.search(r"^Block size:\s+(\d+)", out, re.M).group(1)),
        "isize": int(re.search(r"^Inode size:\s+(\d+)", out, re.M).group(1)),
        "ipg": int(re.search(r"^Inodes per group:\s+(\d+)", out, re.M).group(1)),
        "itb": int(re.search(r"^Inode blocks per group:\s+(\d+)", out, re.M).group(1)),
    }
    # per group: "Inode table at A-B" and "..., N unused inodes"
    g["tables"] = [int(x) for x in re.findall(r"Inode table at (\d+)-\d+", out)]
    unused = [int(x) for x in re.findall(r"(\d+) unused inodes", out)]
    if len(unused) != len(g["tables"]):
        J.fail("dumpe2fs: %d inode tables but %d unused-inode counts"
               % (len(g["tables"]), len(unused)))
    g["unused"] = unused
    return g


def journal_extents(img):
    """[(logical, physical, count)] of the journal inode, from debugfs."""
    out = J.run(["debugfs", "-R", "stat <8>", img]).stdout
    ext = []
    for a, b, c, d in re.findall(r"\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?", out):
        lo, hi = int(a), int(b or a)
        ext.append((lo, int(c), hi - lo + 1))
    if not ext:
        J.fail("debugfs: no extents for the journal inode:\n" + out)
    return ext


def expected_zero(img):
    """The ranges the driver must mark ZERO, sorted and merged, and their sum."""
    g = geometry(img)
    bs = g["bs"]
    ranges = []
    for lblk, pblk, n in journal_extents(img):
        if lblk == 0:
            pblk, n = pblk + 1, n - 1
        if n:
            ranges.append([pblk * bs, n * bs])
    for table, unused in zip(g["tables"], g["unused"]):
        first = -(-(g["ipg"] - unused) * g["isize"] // bs)
        if first < g["itb"]:
            ranges.append([(table + first) * bs, (g["itb"] - first) * bs])
    ranges.sort()
    merged = []
    for off, ln in ranges:
        if merged and merged[-1][0] + merged[-1][1] == off:
            merged[-1][1] += ln
        else:
            merged.append([off, ln])
    return merged, sum(r[1] for r in merged)


def populate(work, img, name, files):
    """Writes, rewrites and deletes through a read-write loop mount, then unmounts cleanly;
    updates files. Without loop mounts the journal keeps what mke2fs left."""
    if not J.can_loop_mount():
        J.log("%s: no loop mount: the journal was never written" % name)
        return
    mnt = os.path.join(work, name + "-mnt")
    os.makedirs(mnt)
    if J.run(["mount", "-t", "ext4", "-o", "loop", img, mnt], check=False).returncode:
        J.log("%s: loop mount not permitted: the journal was never written" % name)
        os.rmdir(mnt)
        return
    try:
        more = J.make_tree(os.path.join(work, name + "-more"), seed=77, nfiles=24,
                           max_size=300 * 1024, dirs=("", "d"))
        shutil.copytree(os.path.join(work, name + "-more"), os.path.join(mnt, "more"))
        for rel, h in more.items():
            files[os.path.join("more", rel)] = h
        for i in range(200):  # many small transactions, many inodes
            with open(os.path.join(mnt, "more", "s%03d" % i), "wb") as f:
                f.write(b"%d" % i)
        subprocess.run(["sync"])
        for i in range(0, 200, 2):
            os.unlink(os.path.join(mnt, "more", "s%03d" % i))
        for i in range(1, 200, 2):
            files[os.path.join("more", "s%03d" % i)] = hashlib.sha256(
                b"%d" % i).hexdigest()
    finally:
        J.run(["umount", mnt])
        os.rmdir(mnt)
        shutil.rmtree(os.path.join(work, name + "-more"), ignore_errors=True)


def judge(work, img, files, what, write=True):
    p = J.run(["e2fsck", "-fn", img], check=False)
    if p.returncode:
        J.fail("%s: e2fsck -fn exited %d:\n%s" % (what, p.returncode, p.stdout[-3000:]))
    out = os.path.join(work, "rdump")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    J.run(["debugfs", "-R", "rdump / " + out, img])
    got = {k: v for k, v in J.hash_tree(out).items() if not k.startswith("lost+found")}
    J.compare_files(files, got, what + " (debugfs rdump)")
    if set(got) != set(files):
        J.fail("%s: unexpected files: %s" % (what, sorted(set(got) - set(files))[:10]))
    shutil.rmtree(out)
    if not write or not J.can_loop_mount():
        return
    mnt = os.path.join(work, "judge-mnt")
    os.makedirs(mnt)
    J.run(["mount", "-t", "ext4", "-o", "loop", img, mnt])
    try:
        got = {k: v for k, v in J.hash_tree(mnt).items() if not k.startswith("lost+found")}
        J.compare_files(files, got, what + " (read-write mount)")
        # the kernel must take the zeroed journal and inode tables for new work
        for i in range(300):
            with open(os.path.join(mnt, "after%03d" % i), "wb") as f:
                f.write(os.urandom(i * 37))
        subprocess.run(["sync"])
    finally:
        J.run(["umount", mnt])
        os.rmdir(mnt)
    p = J.run(["e2fsck", "-fn", img], check=False)
    if p.returncode:
        J.fail("%s: e2fsck -fn after writing through the mount exited %d:\n%s"
               % (what, p.returncode, p.stdout[-3000:]))
    J.log("%s: mounted read-write, wrote 300 files, e2fsck -fn still clean" % what)


def one(work, idx, name, size, opts):
    tree = os.path.join(work, name + "-tree")
    files = J.make_tree(tree, seed=30 + idx, nfiles=40, max_size=600 * 1024)
    img = os.path.join(work, name + ".img")
    J.junk_fill(img, size, seed=3000 + idx)
    J.run(["mke2fs", "-q", "-F", "-d", tree] + LAZY + opts + [img],
          env={"MKE2FS_CONFIG": "/etc/mke2fs.conf"})
    shutil.rmtree(tree)
    populate(work, img, name, files)
    J.run(["e2fsck", "-fn", img])
    hdr = J.run(["dumpe2fs", "-h", img]).stdout
    if not re.search(r"^Journal start:\s+0$", hdr, re.M) or "needs_recovery" in hdr:
        J.fail("%s: not a clean, empty journal after the unmount:\n%s" % (name, hdr))

    m = J.fs_map("ext4", img)
    J.expect_ok(m, name)
    want, want_bytes = expected_zero(img)
    bs = geometry(img)["bs"]
    jext = journal_extents(img)
    jbytes = sum(n for _, _, n in jext) * bs
    J.log("%s: ZERO %d bytes (journal %d minus its superblock block, inode tables %d), "
          "UNUSED %d, kept %d of %d"
          % (name, m["zero_bytes"], jbytes, want_bytes - (jbytes - bs), m["unused_bytes"],
             m["kept_bytes"], m["size"]))
    if m["zero"] != want:
        J.fail("%s: ZERO ranges %s, expected %s" % (name, m["zero"][:6], want[:6]))
    if want_bytes - (jbytes - bs) <= 0:
        J.fail("%s: no inode-table blocks past itable_unused to test" % name)
    jsb = jext[0][1] * bs
    if any(off <= jsb < off + ln for off, ln in m["zero"]):
        J.fail("%s: the journal superblock is marked ZERO" % name)

    copy = os.path.join(work, name + "-copy.img")
    n = J.scramble(img, copy, m, seed=4000 + idx)
    J.log("%s: garbage over %d UNUSED bytes, zeros over %d ZERO bytes" % (name, n,
                                                                         m["zero_bytes"]))
    # control: the judge notices a zeroed journal superblock
    bad = os.path.join(work, name + "-control.img")
    shutil.copyfile(copy, bad)
    with open(bad, "r+b") as f:
        f.seek(jsb)
        f.write(bytes(bs))
    if J.run(["e2fsck", "-fn", bad], check=False).returncode == 0:
        J.fail("%s: control: e2fsck -fn accepted a zeroed journal superblock" % name)
    os.unlink(bad)
    J.log("%s: control: e2fsck -fn notices a zeroed journal superblock" % name)
    judge(work, copy, files, name)
    os.unlink(copy)

    # dirty journal: the driver refuses and the journal stays as it is
    dirty = os.path.join(work, name + "-dirty.img")
    shutil.copyfile(img, dirty)
    J.run(["debugfs", "-w", "-R", "feature needs_recovery", dirty])
    J.expect_refused(J.fs_map("ext4", dirty), name + " (needs_recovery)", ["recovery"])
    return img, dirty, files


def through_commands(work, img, dirty, files):
    """store/restore of the clean image (ZERO comes back as zeros) and of the dirty one."""
    if not B or subprocess.run([B, "store", "--help"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL).returncode:
        J.log("no snapbundle store command: skipping the round trips")
        return
    for what, src in (("clean", img), ("dirty", dirty)):
        p = subprocess.run([B, "inspect", "--json", src], stdout=subprocess.PIPE, text=True)
        if p.returncode:
            J.fail("inspect --json %s exited %d" % (src, p.returncode))
        insp = json.loads(p.stdout)
        zero = insp["map"]["bytes"]["zero"]
        binf = os.path.join(work, what + ".bin")
        J.run([B, "store", src, "-o", binf, "--progress=none"])
        out = os.path.join(work, what + "-restored.img")
        # restore over junk: whatever the restore leaves unwritten must not matter
        J.junk_fill(out, os.path.getsize(src), seed=99)
        J.run([B, "restore", binf, "-o", out, "--force", "--progress=none"])
        if what == "clean":
            m = J.fs_map("ext4", src)
            if zero != m["zero_bytes"]:
                J.fail("inspect counts %d ZERO bytes, the driver %d" % (zero, m["zero_bytes"]))
            with open(out, "rb") as f:
                for off, ln in m["zero"]:
                    f.seek(off)
                    if f.read(ln).count(0) != ln:
                        J.fail("restored image: ZERO range %d+%d is not zeros" % (off, ln))
            J.log("store/restore clean: %d ZERO bytes restored as zeros" % zero)
            judge(work, out, files, "store/restore clean")
        else:
            if insp["partitions"][0]["fs_mapped"] or zero:
                J.fail("dirty journal: inspect says mapped (%s) or ZERO %d"
                       % (insp["partitions"][0]["fs_mapped"], zero))
            with open(src, "rb") as a, open(out, "rb") as b:
                while True:
                    x, y = a.read(1 << 20), b.read(1 << 20)
                    if x != y:
                        J.fail("dirty journal: the restored image differs from the source")
                    if not x:
                        break
            J.log("store/restore dirty: copied whole, restored byte-identical")
        os.unlink(binf)
        os.unlink(out)


def main():
    work = J.tmpdir()
    try:
        only = sys.argv[1:]
        last = None
        for idx, (name, size, opts) in enumerate(CONFIGS):
            if only and name not in only:
                continue
            if last:
                for p in last[:2]:
                    os.unlink(p)
            last = one(work, idx, name, size, opts)
        if last:
            through_commands(work, *last)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    J.log("ok")


if __name__ == "__main__":
    main()
