#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""SNAP_DISK_FREEZE: an ext4 filesystem on a loop device, mounted read-write, is frozen while
the disk is open (a write to it blocks), mapped instead of skipped with a note, and thawed when
the disk is freed (the write completes). Needs root, loop devices and mount: exit 77 without."""
import os
import shutil
import subprocess
import sys
import time

from inspect_common import check, finish, need, run, tmpdir

need("losetup", "mount", "umount", "mke2fs")
if os.geteuid() != 0:
    print("skipped: needs root")
    sys.exit(77)
helper = os.path.join(os.environ["BUILDDIR"], "tests", "inspect", "freeze-helper")
d = tmpdir()
img, mnt = os.path.join(d, "fs.img"), os.path.join(d, "mnt")
os.mkdir(mnt)
run(["mke2fs", "-q", "-F", "-t", "ext4", img, "32M"])
r = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True)
if r.returncode != 0:
    print("skipped: losetup")
    sys.exit(77)
loop = r.stdout.strip()
mounted = False
writer = None
try:
    if subprocess.run(["mount", "-t", "ext4", "-o", "rw", loop, mnt]).returncode != 0:
        print("skipped: cannot mount")
        sys.exit(77)
    mounted = True
    h = subprocess.Popen([helper, loop], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    lines = []
    while True:
        line = h.stdout.readline()
        if not line or line.strip() == "ready":
            break
        lines.append(line.strip())
    check(lines == ["partition 0 ext4 note=no free-space map for ext4"] or
          (len(lines) == 1 and "mounted" not in lines[0]), f"frozen, not skipped: {lines}")
    # a write to the frozen filesystem must wait for the thaw
    writer = subprocess.Popen(["sh", "-c", f"echo x > {mnt}/after-freeze && sync -f {mnt}"])
    time.sleep(1.0)
    check(writer.poll() is None, "a write to the frozen filesystem went through")
    h.stdin.write("go\n")
    h.stdin.flush()
    check(h.stdout.readline().strip() == "thawed", "helper thawed")
    check(h.wait(timeout=30) == 0, "helper exit status")
    check(writer.wait(timeout=30) == 0, "write after the thaw")
    check(os.path.exists(os.path.join(mnt, "after-freeze")), "file written after the thaw")
finally:
    if writer and writer.poll() is None:
        subprocess.run(["fsfreeze", "--unfreeze", mnt], capture_output=True)
        writer.wait(timeout=30)
    if mounted:
        subprocess.run(["umount", mnt])
    subprocess.run(["losetup", "-d", loop])
finish("test-freeze")
