#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The demo disk (tools/make-demo-disk.sh): libblkid through inspect reports the ext4 and vfat
partitions' types and labels as blkid(8) does; sfdisk agrees on the table; the junk in the
unpartitioned tail is UNUSED, the never-written partition reads as a hole."""
import os

from inspect_common import (SRCDIR, check, compare_with_sfdisk, finish, inspect, kinds_in,
                            need, run, sfdisk_json, tmpdir)

MiB = 1024 * 1024
need("sfdisk", "mke2fs", "mkfs.vfat", "mcopy", "blkid")
d = tmpdir()
img = os.path.join(d, "demo.img")
run([os.path.join(SRCDIR, "tools", "make-demo-disk.sh"), img, "128"])

ins = inspect(img, "--extents")
parts = compare_with_sfdisk(ins, sfdisk_json(img), "demo")
check(ins["partition_table"]["type"] == "gpt", "demo: GPT")
check(sorted(parts) == [1, 2, 3], f"demo: partitions {sorted(parts)}")


def blkid(p):
    out = run(["blkid", "-p", "-o", "export", "-O", str(p["start"]), "-S", str(p["size"]),
               img]).stdout
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


for num, fstype, label in ((1, "ext4", "demo-root"), (2, "vfat", "DEMO-EFI")):
    p = parts.get(num)
    if not check(p is not None, f"demo: partition {num}"):
        continue
    judge = blkid(p)
    check(p["fs_type"] == judge.get("TYPE") == fstype, f"demo#{num}: type {p['fs_type']}, "
          f"blkid {judge.get('TYPE')}")
    check(p["fs_label"] == judge.get("LABEL") == label, f"demo#{num}: label {p['fs_label']}, "
          f"blkid {judge.get('LABEL')}")
    check(p["fs_uuid"] == judge.get("UUID"), f"demo#{num}: uuid {p['fs_uuid']}")
p3 = parts.get(3)
if p3:
    check(p3["fs_type"] is None, "demo#3: no filesystem")
    check({k[0] for k in kinds_in(ins["extents"], p3["start"], p3["size"])} == {"zero"},
          "demo#3: never written, a hole")
    tail = p3["start"] + p3["size"]
    # the tail holds junk; all of it but the backup GPT (last MiB) is unused
    check({k[0] for k in kinds_in(ins["extents"], tail, ins["size"] - MiB - tail)} == {"unused"},
          "demo: unpartitioned tail unused")
text = run([os.environ["SNAPBUNDLE"], "inspect", img]).stdout
check("ext4, label \"demo-root\"" in text and "vfat, label \"DEMO-EFI\"" in text,
      "demo: text report names the filesystems")
finish("test-demo-blkid")
