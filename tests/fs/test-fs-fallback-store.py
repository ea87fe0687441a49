#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Whole-partition fallbacks end to end: a GPT disk of junk holding an ext4 whose block bitmap
fails its checksum, an ext4 whose journal needs recovery, an XFS with a dirty log and, as the
control, a clean ext4. `snapbundle inspect` must name each reason, `store` must read each
refused partition whole (and skip the control's free space), and after `restore` each refused
partition must be byte-identical to the original (junk in its free space included) while the
control is judged clean by e2fsck -fn. Skipped (77) in a tree without store and restore."""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjudge as J  # noqa: E402

MiB = 1 << 20
B = os.environ.get("SNAPBUNDLE")
XFS_ENV = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}


def has_command(name):
    return B and subprocess.run([B, name, "--help"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0


def ext4(work, img, size, seed):
    tree = os.path.join(work, "tree%d" % seed)
    J.make_tree(tree, seed=seed, nfiles=12, max_size=400 * 1024)
    J.junk_fill(img, size, seed=seed)
    J.run(["mke2fs", "-q", "-F", "-E", "nodiscard", "-t", "ext4", "-b", "4096", "-g", "1024",
           "-O", "64bit,metadata_csum", "-d", tree, img])


def bad_bitmap(work, img, size):
    ext4(work, img, size, 1)
    out = J.run(["dumpe2fs", img]).stdout
    # group 0's bitmap is always initialised (others may be BLOCK_UNINIT, never read)
    blk = int(re.search(r"^Group 0: .*\n(?:.*\n)*?\s+Block bitmap at (\d+)", out,
                        re.M).group(1))
    with open(img, "r+b") as f:
        f.seek(blk * 4096 + 7)
        b = f.read(1)[0]
        f.seek(blk * 4096 + 7)
        f.write(bytes([b ^ 0x40]))
    return "group 0 block bitmap checksum"


def needs_recovery(work, img, size):
    ext4(work, img, size, 2)
    J.run(["debugfs", "-w", "-R", "feature needs_recovery", img])
    return "journal needs recovery"


def dirty_xfs(work, img, size):
    J.junk_fill(img, size, seed=3)
    J.run(["mkfs.xfs", "-q", "-f", "-K", img], env=XFS_ENV)
    # turn the unmount record before the log head into an ordinary one
    out = J.run(["xfs_db", "-r", "-c", "sb 0", "-c", "p logstart agblklog agblocks blocksize",
                 img]).stdout
    g = {k: int(v) for k, v in re.findall(r"^(\w+) = (\d+)", out, re.M)}
    start = ((g["logstart"] >> g["agblklog"]) * g["agblocks"] +
             (g["logstart"] & ((1 << g["agblklog"]) - 1))) * g["blocksize"]
    lp = J.run(["xfs_logprint", "-t", img], check=False).stdout
    head = int(re.search(r"head: (\d+)", lp).group(1)) if "head:" in lp else 2
    with open(img, "r+b") as f:
        for b in range(head - 1, max(head - 600, -1), -1):
            f.seek(start + b * 512)
            if f.read(4) == b"\xfe\xed\xba\xbe":
                f.seek(start + (b + 1) * 512 + 9)
                flags = f.read(1)[0]
                f.seek(start + (b + 1) * 512 + 9)
                f.write(bytes([flags & ~0x20]))
                break
        else:
            J.fail("no log record before the XFS log head")
    return "log not clean"


def control(work, img, size):
    ext4(work, img, size, 4)
    return None


PARTS = [("bitmap", 24 * MiB, bad_bitmap), ("recovery", 24 * MiB, needs_recovery),
         ("xfs-log", 32 * MiB, dirty_xfs), ("control", 24 * MiB, control)]


def main():
    if not has_command("store") or not has_command("restore") or not has_command("inspect"):
        J.skip("this build has no store, restore or inspect command")
    J.need("sfdisk", "mke2fs", "debugfs", "dumpe2fs", "e2fsck", "mkfs.xfs", "xfs_db")
    work = J.tmpdir()
    try:
        disk = os.path.join(work, "disk.img")
        size = 2 * MiB + sum(p[1] for p in PARTS)
        J.junk_fill(disk, size, seed=9)
        J.run(["sfdisk", "-q", disk], input="label: gpt\n" + "".join(
            "size=%dMiB\n" % (p[1] // MiB) for p in PARTS))
        table = json.loads(J.run(["sfdisk", "-J", disk]).stdout)["partitiontable"]
        parts = []
        for (name, psize, make), e in zip(PARTS, table["partitions"]):
            img = os.path.join(work, name + ".part")
            reason = make(work, img, psize)
            m = J.fs_map("xfs" if name == "xfs-log" else "ext4", img)
            if reason:
                J.expect_refused(m, name, [reason])
            else:
                J.expect_ok(m, name)
            start = e["start"] * 512
            with open(img, "rb") as src, open(disk, "r+b") as dst:
                dst.seek(start)
                shutil.copyfileobj(src, dst)
            parts.append((name, start, psize, reason, m))
            os.unlink(img)

        out = J.run([B, "inspect", disk]).stdout
        J.log(out)
        for name, _, _, reason, _ in parts:
            if reason and reason not in out:
                J.fail("inspect does not say why %s is copied whole (%r)" % (name, reason))

        binf = os.path.join(work, "disk.bin")
        p = subprocess.run([B, "store", disk, "-o", binf, "--progress=json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode:
            J.fail("store exited %d: %s" % (p.returncode, p.stderr[-2000:]))
        prog = [json.loads(line) for line in p.stderr.splitlines() if line.startswith("{")][-1]
        whole = sum(s for _, _, s, r, _ in parts if r)
        ctl = parts[-1][4]
        J.log("store read %d bytes: refused partitions %d (whole), control keeps %d of %d"
              % (prog["bytes_read"], whole, ctl["kept_bytes"], ctl["size"]))
        if prog["bytes_read"] < whole:
            J.fail("store read %d bytes, less than the refused partitions' %d"
                   % (prog["bytes_read"], whole))
        if prog["bytes_read"] > whole + ctl["kept_bytes"] + 4 * MiB:
            J.fail("store read %d bytes: the control's free space was not skipped"
                   % prog["bytes_read"])

        restored = os.path.join(work, "restored.img")
        J.run([B, "restore", binf, "-o", restored, "--progress=none"])
        with open(disk, "rb") as a, open(restored, "rb") as b:
            for name, start, psize, reason, _ in parts:
                a.seek(start)
                b.seek(start)
                if reason:
                    if a.read(psize) != b.read(psize):
                        J.fail("%s: the restored partition differs from the original" % name)
                    J.log("%s: copied whole, restored byte-identical" % name)
                else:
                    ctl_img = os.path.join(work, "control.part")
                    with open(ctl_img, "wb") as f:
                        f.write(b.read(psize))
                    r = J.run(["e2fsck", "-fn", ctl_img], check=False)
                    if r.returncode:
                        J.fail("control: e2fsck -fn on the restored partition:\n"
                               + r.stdout[-2000:])
                    J.log("control: free space skipped, e2fsck -fn clean")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    J.log("ok")


if __name__ == "__main__":
    main()
