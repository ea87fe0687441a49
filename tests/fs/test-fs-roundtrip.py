#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Round trips of a GPT disk holding ext4, XFS, FAT16, swap and NTFS (each made by the real
tools over junk, filled with a tree and partly emptied again): snapbundle bundle -> unbundle and
store -> restore. On each restored disk every partition must be judged clean by its own checker
(e2fsck -fn, xfs_repair -n, fsck.vfat -n, ntfsfix -n + ntfsresize, blkid for swap) and every
file must read back identical; the junk in free space must be gone (it was skipped, not
copied); and the bytes read from the source (the commands' JSON progress) must be within a few
percent of what the drivers keep (used space plus metadata), printed side by side with a
--no-fs-skip store.
SNAP_FS_DISK_OUT=PATH keeps a copy of the disk (for bench/results/fs.md)."""
import json
import os
import shutil
import subprocess
import sys
import hashlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjudge as J  # noqa: E402

MiB = 1 << 20
B = os.environ.get("SNAPBUNDLE")
XFS_ENV = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}
MT_ENV = {"MTOOLS_SKIP_CHECK": "1"}


def has_command(name):
    return B and subprocess.run([B, name, "--help"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0


# ---------------------------------------------------------------------------------------------
# filesystems, each made in its own junk-filled file, then copied into the disk


def make_ext4(work, img, size):
    tree = os.path.join(work, "ext4-tree")
    files = J.make_tree(tree, seed=1, nfiles=30, max_size=700 * 1024)
    J.junk_fill(img, size, seed=11)
    J.run(["mke2fs", "-q", "-F", "-E", "nodiscard", "-t", "ext4", "-b", "4096", "-g", "4096",
           "-O", "64bit,metadata_csum", "-d", tree, img])
    doomed = sorted(files)[::3]
    cmds = os.path.join(work, "ext4.cmds")
    with open(cmds, "w") as f:
        f.writelines("rm /%s\n" % rel for rel in doomed)
    J.run(["debugfs", "-w", "-f", cmds, img])
    for rel in doomed:
        del files[rel]
    return files


def judge_ext4(work, img, files, what):
    p = J.run(["e2fsck", "-fn", img], check=False)
    if p.returncode:
        J.fail("%s: e2fsck -fn exited %d:\n%s" % (what, p.returncode, p.stdout[-3000:]))
    out = os.path.join(work, what.replace(" ", "-") + "-ext4")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    J.run(["debugfs", "-R", "rdump / " + out, img])
    got = {k: v for k, v in J.hash_tree(out).items() if not k.startswith("lost+found")}
    J.compare_files(files, got, what + " ext4")
    shutil.rmtree(out)


def make_xfs(work, img, size):
    tree = os.path.join(work, "xfs-tree")
    files = J.make_tree(tree, seed=2, nfiles=30, max_size=900 * 1024)
    proto = os.path.join(work, "xfs.proto")
    J.xfs_protofile(tree, files, proto)
    J.junk_fill(img, size, seed=12)
    J.run(["mkfs.xfs", "-q", "-f", "-K", "-p", proto, img], env=XFS_ENV)
    return files


def judge_xfs(work, img, files, what):
    p = J.run(["xfs_repair", "-n", img], check=False)
    if p.returncode:
        J.fail("%s: xfs_repair -n exited %d:\n%s" % (what, p.returncode, p.stdout[-3000:]))
    geo = J.xfs_geometry(img)
    got = {rel: hashlib.sha256(J.xfs_read_file(img, rel, geo)).hexdigest() for rel in files}
    J.compare_files(files, got, what + " xfs")


def make_vfat(work, img, size):
    tree = os.path.join(work, "vfat-tree")
    files = J.make_tree(tree, seed=3, nfiles=24, max_size=500 * 1024)
    J.junk_fill(img, size, seed=13)
    J.run(["mkfs.vfat", "-F", "16", img])
    for d in ("a", "a/b", "c"):
        J.run(["mmd", "-i", img, "::/" + d], env=MT_ENV)
    for rel in sorted(files):
        J.run(["mcopy", "-i", img, os.path.join(tree, rel), "::/" + rel], env=MT_ENV)
    for rel in sorted(files)[::3]:
        J.run(["mdel", "-i", img, "::/" + rel], env=MT_ENV)
        del files[rel]
    return files


def judge_vfat(work, img, files, what):
    p = J.run(["fsck.vfat", "-n", img], check=False)
    if p.returncode:
        J.fail("%s: fsck.vfat -n exited %d:\n%s" % (what, p.returncode, p.stdout[-3000:]))
    out = os.path.join(work, what.replace(" ", "-") + "-vfat")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    J.run(["mcopy", "-s", "-n", "-i", img, "::/", out], env=MT_ENV)
    J.compare_files(files, J.hash_tree(out), what + " vfat")
    shutil.rmtree(out)


UUID = "6f1d3c0e-8f5a-4b8e-9b57-1f2d3e4c5b6a"


def make_swap(work, img, size):
    J.junk_fill(img, size, seed=14)
    J.run(["mkswap", "-L", "rtswap", "-U", UUID, img])
    return {}


def judge_swap(work, img, files, what):
    out = J.run(["blkid", "-p", "-o", "export", img], check=False).stdout
    if "TYPE=swap" not in out or UUID not in out or "LABEL=rtswap" not in out:
        J.fail("%s: blkid does not find the swap area: %s" % (what, out))
    J.log("%s swap: blkid finds the same swap area" % what)


def make_ntfs(work, img, size):
    tree = os.path.join(work, "ntfs-tree")
    files = J.make_tree(tree, seed=4, nfiles=20, max_size=500 * 1024, dirs=("",))
    J.junk_fill(img, size, seed=15)
    J.run(["mkntfs", "-q", "-F", "-Q", img])
    for rel in sorted(files):
        J.run(["ntfscp", "-f", img, os.path.join(tree, rel), rel])
    return files


def judge_ntfs(work, img, files, what):
    p = J.run(["ntfsfix", "-n", img], check=False)
    if p.returncode:
        J.fail("%s: ntfsfix -n exited %d:\n%s" % (what, p.returncode, p.stdout[-2000:]))
    p = J.run(["ntfsresize", "-i", "-f", img], check=False)
    if p.returncode:
        J.fail("%s: ntfsresize consistency check exited %d:\n%s"
               % (what, p.returncode, p.stdout[-2000:]))
    got = {}
    for rel in files:
        c = subprocess.run(["ntfscat", img, "/" + rel], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if c.returncode:
            J.fail("%s: ntfscat %s: %s" % (what, rel, c.stderr.decode(errors="replace")))
        got[rel] = hashlib.sha256(c.stdout).hexdigest()
    J.compare_files(files, got, what + " ntfs")


# name, blkid type, size, maker, judge, tools it needs
PARTS = [
    ("ext4", "ext4", 48 * MiB, make_ext4, judge_ext4, ["mke2fs", "e2fsck", "debugfs"]),
    ("xfs", "xfs", 80 * MiB, make_xfs, judge_xfs, ["mkfs.xfs", "xfs_repair", "xfs_db"]),
    ("vfat", "vfat", 24 * MiB, make_vfat, judge_vfat, ["mkfs.vfat", "fsck.vfat", "mcopy"]),
    ("swap", "swap", 8 * MiB, make_swap, judge_swap, ["mkswap", "blkid"]),
    ("ntfs", "ntfs", 32 * MiB, make_ntfs, judge_ntfs, ["mkntfs", "ntfscp", "ntfscat",
                                                        "ntfsfix", "ntfsresize"]),
]


def make_disk(work):
    """A GPT disk of junk with one partition per filesystem whose tools are installed."""
    parts = [p for p in PARTS if all(shutil.which(t) for t in p[5])]
    for p in PARTS:
        if p not in parts:
            J.log("%s tools missing: no %s partition" % (p[0], p[0]))
    disk = os.path.join(work, "disk.img")
    size = 2 * MiB + sum(p[2] for p in parts)
    J.junk_fill(disk, size, seed=20)
    script = "label: gpt\n" + "".join("size=%dMiB, type=linux\n" % (p[2] // MiB) for p in parts)
    J.run(["sfdisk", "-q", disk], input=script)
    layout = json.loads(J.run(["sfdisk", "-J", disk]).stdout)["partitiontable"]
    ssz = layout.get("sectorsize", 512)
    out = []
    for p, e in zip(parts, layout["partitions"]):
        start, length = e["start"] * ssz, e["size"] * ssz
        img = os.path.join(work, p[0] + ".part")
        files = p[3](work, img, length)
        m = J.fs_map(p[1], img)
        J.expect_ok(m, p[0] + " partition")
        with open(img, "rb") as src, open(disk, "r+b") as dst:
            dst.seek(start)
            shutil.copyfileobj(src, dst, 4 * MiB)
        out.append({"name": p[0], "type": p[1], "start": start, "length": length,
                    "files": files, "judge": p[4], "map": m})
        os.unlink(img)
    return disk, out


def extract(disk, part, path):
    with open(disk, "rb") as src, open(path, "wb") as dst:
        src.seek(part["start"])
        left = part["length"]
        while left:
            b = src.read(min(left, 4 * MiB))
            if not b:
                J.fail("restored disk too short for partition %s" % part["name"])
            dst.write(b)
            left -= len(b)


def junk_left(orig, restored, part):
    """Fraction of the partition's UNUSED (not pinned) bytes that still hold the original junk,
    compared 4 KiB at a time."""
    total = same = 0
    with open(orig, "rb") as a, open(restored, "rb") as b:
        for off, ln in J.subtract(part["map"]["unused"], part["map"]["pinned"]):
            for o in range(off, off + ln - 4095, 4096):
                a.seek(part["start"] + o)
                b.seek(part["start"] + o)
                total += 1
                same += a.read(4096) == b.read(4096)
    return same / total if total else 0.0


def judge_disk(work, disk, restored, parts, what):
    for part in parts:
        img = os.path.join(work, "judge.part")
        extract(restored, part, img)
        part["judge"](work, img, part["files"], "%s %s" % (what, part["name"]))
        os.unlink(img)
        left = junk_left(disk, restored, part)
        J.log("%s %s: %.1f%% of free-space blocks still hold the old junk"
              % (what, part["name"], 100 * left))
        if left > 0.02:
            J.fail("%s %s: free space was copied, not skipped (%.1f%% identical)"
                   % (what, part["name"], 100 * left))


def last_progress(stderr):
    last = None
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                last = json.loads(line)
            except ValueError:
                pass
    if not last:
        J.fail("no JSON progress line on stderr:\n" + stderr[-2000:])
    return last


def check_read(what, prog, expected, disk_size):
    read = prog.get("bytes_read", 0)
    J.log("%s: read %d bytes from the source, drivers keep %d (used space + metadata, plus the "
          "partition table), disk %d, skipped %d" % (what, read, expected, disk_size,
                                                     prog.get("bytes_skipped", 0)))
    if read < expected * 0.95 - MiB or read > expected * 1.05 + 4 * MiB:
        J.fail("%s: read %d bytes, not within a few percent of %d" % (what, read, expected))


def main():
    for c in ("bundle", "unbundle", "store", "restore"):
        if not has_command(c):
            J.fail("this build has no %s command" % c)
    J.need("sfdisk", "openssl")
    work = J.tmpdir()
    try:
        disk, parts = make_disk(work)
        size = os.path.getsize(disk)
        if os.environ.get("SNAP_FS_DISK_OUT"):  # keep the disk (bench/results/fs.md)
            shutil.copyfile(disk, os.environ["SNAP_FS_DISK_OUT"])
        # what the drivers keep, plus the first MiB (protective MBR, GPT) and the backup GPT
        expected = sum(p["map"]["kept_bytes"] for p in parts) + MiB + 33 * 512
        J.log("disk: %d bytes, %s" % (size, ", ".join(
            "%s %d used / %d kept" % (p["name"], p["map"]["used_bytes"], p["map"]["kept_bytes"])
            for p in parts)))
        if has_command("inspect"):
            J.log(J.run([B, "inspect", disk]).stdout)

        # bundle -> unbundle
        key, cert = os.path.join(work, "user.key"), os.path.join(work, "user.pem")
        ec2key, ec2 = os.path.join(work, "ec2.key"), os.path.join(work, "ec2.pem")
        J.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
               "-out", cert, "-subj", "/CN=snapbundle-fs-test", "-days", "2"])
        J.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
               ec2key, "-out", ec2, "-subj", "/CN=snapbundle-fs-test-ec2", "-days", "2"])
        dest = os.path.join(work, "bundle")
        os.makedirs(dest)
        p = subprocess.run([B, "bundle", "-i", disk, "-c", cert, "-k", key, "-u",
                            "123456789012", "-r", "x86_64", "--ec2cert", ec2, "-d", dest,
                            "-p", "fsdisk", "--progress=json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode:
            J.fail("bundle exited %d: %s" % (p.returncode, p.stderr[-3000:]))
        check_read("bundle", last_progress(p.stderr), expected, size)
        out_size = sum(os.path.getsize(os.path.join(dest, f)) for f in os.listdir(dest))
        J.log("bundle: %d bytes of parts and manifest" % out_size)
        restored = os.path.join(work, "unbundled.img")
        J.run([B, "unbundle", "-m", os.path.join(dest, "fsdisk.manifest.xml"), "-k", key,
               "-c", cert, "-o", restored, "--progress=none"])
        if os.path.getsize(restored) != size:
            J.fail("unbundled disk has %d bytes, not %d" % (os.path.getsize(restored), size))
        judge_disk(work, disk, restored, parts, "unbundled")
        shutil.rmtree(dest)
        os.unlink(restored)

        # store -> restore
        sizes = {}
        for mode, extra in (("store", []), ("store --no-fs-skip", ["--no-fs-skip"])):
            out = os.path.join(work, "img-%d.bin" % len(sizes))
            p = subprocess.run([B, "store", disk, "-o", out, "--progress=json"] + extra,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if p.returncode:
                J.fail("%s exited %d: %s" % (mode, p.returncode, p.stderr[-3000:]))
            prog = last_progress(p.stderr)
            sizes[mode] = (prog.get("bytes_read", 0), os.path.getsize(out), out)
            J.log("%s: read %d bytes, wrote %d" % (mode, sizes[mode][0], sizes[mode][1]))
            if not extra:
                check_read(mode, prog, expected, size)
        if sizes["store --no-fs-skip"][0] < size * 0.9:
            J.fail("store --no-fs-skip read only %d of %d bytes"
                   % (sizes["store --no-fs-skip"][0], size))
        restored = os.path.join(work, "restored.img")
        J.run([B, "restore", sizes["store"][2], "-o", restored, "--progress=none"])
        judge_disk(work, disk, restored, parts, "restored")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    J.log("ok")


if __name__ == "__main__":
    main()
