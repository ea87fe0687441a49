#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Partition tables: GPT, MBR with an extended partition and logical partitions, and none.
sfdisk makes each image and is the judge of every partition; the GPT headers and the EBR chain
are parsed here, independently of libfdisk, to say where the critical regions are."""
import os
import struct
import subprocess

from inspect_common import (check, compare_with_sfdisk, covers, finish, inspect, kinds_in,
                            make_image, need, only_kind, pattern, run, sfdisk, sfdisk_json,
                            tmpdir, write_at)

MiB = 1024 * 1024
need("sfdisk")
d = tmpdir()


def unpartitioned_ranges(size, parts, keep):
    """Complement of the non-container partitions, minus the ranges in keep."""
    used = sorted((p["start"], p["start"] + p["size"]) for p in parts if not p["container"])
    used += sorted((a, a + n) for a, n in keep)
    used.sort()
    out, pos = [], 0
    for a, b in used:
        if a > pos:
            out.append((pos, a - pos))
        pos = max(pos, b)
    if pos < size:
        out.append((pos, size - pos))
    return out


def check_partition_numbers(ex, parts, label):
    for p in parts.values():
        if p["container"]:
            continue
        nums = {k[2] for k in kinds_in(ex, p["start"], p["size"])}
        check(nums == {p["number"]}, f"{label}#{p['number']}: extents say partitions {nums}")


# ------------------------------------------------------------------------------------------
# GPT
img = os.path.join(d, "gpt.img")
size = 64 * MiB
make_image(img, size)
sfdisk(img, """label: gpt
start=2048, size=16384, type=L, name="root"
start=18432, size=8192, type=U, name="efi system"
start=40960, size=8192, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, uuid=01234567-89AB-CDEF-0123-456789ABCDEF
""")
# a boot loader in the gap, junk between partitions and at the end, data in each partition
write_at(img, 40 * 512, pattern(100 * 1024, b"bootloader "))
write_at(img, 30 * MiB, pattern(MiB, b"junk between "))
write_at(img, 50 * MiB, pattern(MiB, b"junk at the end "))
for start in (1 * MiB, 9 * MiB, 20 * MiB):
    write_at(img, start, pattern(64 * 1024))

with open(img, "rb") as f:
    f.seek(512)
    prim = f.read(92)
    check(prim[:8] == b"EFI PART", "gpt: primary header signature")
    alt, = struct.unpack_from("<Q", prim, 32)
    p_entries, = struct.unpack_from("<Q", prim, 72)
    n_entries, esize = struct.unpack_from("<II", prim, 80)
    f.seek(alt * 512)
    back = f.read(92)
    check(back[:8] == b"EFI PART", "gpt: backup header signature")
    b_entries, = struct.unpack_from("<Q", back, 72)
entries_bytes = n_entries * esize

sf = sfdisk_json(img)
ins = inspect(img, "--extents", "--min-gap", "0")
parts = compare_with_sfdisk(ins, sf, "gpt")
ex = ins["extents"]
check(ins["size"] == size and covers(ex, size), "gpt: extents cover the image")
first = min(p["start"] for p in ins["partitions"])
# kept: what was written is DATA, what never was may read back as zeros (a hole), none UNUSED
check(all(k[0] != "unused" for k in kinds_in(ex, 0, first)),
      f"gpt: gap before the first partition kept: {kinds_in(ex, 0, first)}")
check(only_kind(ex, 40 * 512, 100 * 1024, "data"), "gpt: boot loader in the gap is data")
check(only_kind(ex, 0, p_entries * 512 + entries_bytes, "data"), "gpt: primary header+entries")
check(only_kind(ex, b_entries * 512, entries_bytes, "data"),
      f"gpt: backup entries at LBA {b_entries}: {kinds_in(ex, b_entries * 512, entries_bytes)}")
check(kinds_in(ex, alt * 512, 512) == {("data", "ptable", 0)},
      f"gpt: backup header at LBA {alt}: {kinds_in(ex, alt * 512, 512)}")
crit = [(0, first), (b_entries * 512, entries_bytes), (alt * 512, 512)]
gaps = unpartitioned_ranges(size, ins["partitions"], crit)
check(len(gaps) == 2, f"gpt: two unpartitioned ranges expected, got {gaps}")
for off, n in gaps:
    check(kinds_in(ex, off, n) == {("unused", "ptable", 0)},
          f"gpt: unpartitioned [{off}, +{n}) is {kinds_in(ex, off, n)}")
check_partition_numbers(ex, parts, "gpt")
check(ins["map"]["bytes"]["unused"] == sum(n for _, n in gaps), "gpt: summary of unused bytes")

# the default merge gap changes none of this (the gaps are 1 MiB and more)
ins = inspect(img, "--extents")
for off, n in gaps:
    check(only_kind(ins["extents"], off, n, "unused"), f"gpt default: [{off}, +{n}) unused")

keep = inspect(img, "--extents", "--keep-unpartitioned", "--min-gap", "0")
check(keep["map"]["bytes"]["unused"] == 0, "gpt --keep-unpartitioned: nothing unused")
check(only_kind(keep["extents"], 30 * MiB, MiB, "data"), "gpt --keep-unpartitioned: junk kept")
check(only_kind(keep["extents"], 50 * MiB, MiB, "data"), "gpt --keep-unpartitioned: tail kept")

# ------------------------------------------------------------------------------------------
# MBR: three primaries, an extended partition, three logical partitions, free space in it
img = os.path.join(d, "mbr.img")
size = 64 * MiB
make_image(img, size)
sfdisk(img, """label: dos
label-id: 0x1234abcd
size=8M, type=83, bootable
size=4M, type=7
size=4M, type=c
type=5
size=10M, type=83
size=10M, type=82
size=5M, type=c
""")
for off in (1 * MiB, 9 * MiB):
    write_at(img, off, pattern(64 * 1024))
write_at(img, 60 * MiB, pattern(MiB, b"junk in the extended partition "))

# the EBR chain, walked here
ebrs = []
with open(img, "rb") as f:
    mbr = f.read(512)
    for i in range(4):
        typ = mbr[446 + 16 * i + 4]
        if typ in (0x05, 0x0F, 0x85):
            ext, = struct.unpack_from("<I", mbr, 446 + 16 * i + 8)
            cur = ext
            while True:
                f.seek(cur * 512)
                ebr = f.read(512)
                if ebr[510:] != b"\x55\xaa":
                    break
                ebrs.append(cur * 512)
                nxt, = struct.unpack_from("<I", ebr, 446 + 16 + 8)
                if ebr[446 + 16 + 4] == 0 or nxt == 0:
                    break
                cur = ext + nxt

sf = sfdisk_json(img)
ins = inspect(img, "--extents", "--min-gap", "0")
parts = compare_with_sfdisk(ins, sf, "mbr")
ex = ins["extents"]
check(ins["partition_table"]["id"] == "0x1234abcd", "mbr: disk id")
logicals = [p for p in ins["partitions"] if p["number"] > 4]
check(len(logicals) == 3 and len(ebrs) == 3, f"mbr: 3 logicals, 3 EBRs: {len(logicals)} {ebrs}")
check([p["container"] for p in ins["partitions"]] == [False, False, False, True, False, False,
                                                       False], "mbr: the extended partition "
      "alone is a container")
check(parts[4]["type"] == "5" and parts[1]["bootable"], "mbr: types and boot flag")
check(covers(ex, size), "mbr: extents cover the image")
first = min(p["start"] for p in ins["partitions"])
check(all(k[0] != "unused" for k in kinds_in(ex, 0, first)),
      "mbr: gap before the first partition kept")
check(only_kind(ex, 0, 512, "data"), "mbr: the MBR is data")
for off in ebrs:
    check(kinds_in(ex, off, 512) == {("data", "ptable", 4)},
          f"mbr: EBR at {off} is {kinds_in(ex, off, 512)}")
gaps = unpartitioned_ranges(size, ins["partitions"], [(0, first)] + [(o, 512) for o in ebrs])
check(len(gaps) >= 4, f"mbr: unpartitioned ranges inside the extended partition: {gaps}")
for off, n in gaps:
    check(only_kind(ex, off, n, "unused"), f"mbr: unpartitioned [{off}, +{n}) is "
          f"{kinds_in(ex, off, n)}")
check_partition_numbers(ex, parts, "mbr")
keep = inspect(img, "--extents", "--keep-unpartitioned", "--min-gap", "0")
check(keep["map"]["bytes"]["unused"] == 0, "mbr --keep-unpartitioned: nothing unused")
check(only_kind(keep["extents"], 60 * MiB, MiB, "data"), "mbr --keep-unpartitioned: junk kept")

# ------------------------------------------------------------------------------------------
# No partition table: raw data, then a filesystem on the whole disk
img = os.path.join(d, "raw.img")
size = 16 * MiB
make_image(img, size)
write_at(img, 0, pattern(MiB))
write_at(img, 8 * MiB, pattern(MiB))
check(sfdisk_json(img) is None, "raw: sfdisk sees no partition table")
ins = inspect(img, "--extents", "--min-gap", "0")
check(ins["partition_table"] is None and ins["partitions"] == [], "raw: no table, no partitions")
check(ins["map"]["bytes"]["unused"] == 0, "raw: nothing unused")
check(ins["map"]["bytes"]["data"] + ins["map"]["bytes"]["zero"] == size, "raw: data + zero")
check(only_kind(ins["extents"], 0, MiB, "data") and only_kind(ins["extents"], 8 * MiB, MiB, "data"),
      "raw: written ranges are data")

if subprocess.run(["sh", "-c", "command -v mke2fs"], capture_output=True).returncode == 0:
    img = os.path.join(d, "whole-ext4.img")
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "wholedisk", img, "32M"])
    check(sfdisk_json(img) is None, "whole ext4: sfdisk sees no partition table")
    blk = dict(line.split("=", 1) for line in
               run(["blkid", "-p", "-o", "export", img]).stdout.split() if "=" in line)
    ins = inspect(img, "--no-fs")
    check(ins["partition_table"] is None, "whole ext4: no table")
    check(len(ins["partitions"]) == 1, f"whole ext4: one whole-disk entry: {ins['partitions']}")
    if ins["partitions"]:
        p = ins["partitions"][0]
        check(p["number"] == 0 and p["start"] == 0 and p["size"] == 32 * MiB,
              "whole ext4: entry 0 covers the disk")
        check(p["fs_type"] == blk.get("TYPE") == "ext4", f"whole ext4: type {p['fs_type']}")
        check(p["fs_label"] == blk.get("LABEL") == "wholedisk", f"whole ext4: {p['fs_label']}")
        check(p["fs_uuid"] == blk.get("UUID"), "whole ext4: uuid")
    check(ins["map"]["bytes"]["unused"] == 0, "whole ext4 --no-fs: nothing unused")

# ------------------------------------------------------------------------------------------
# A filesystem on the whole disk next to (what looks like) a partition table. blkid judges.
def blkid_whole(path):
    out = run(["blkid", "-p", "-o", "export", path]).stdout
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


if subprocess.run(["sh", "-c", "command -v mkfs.vfat && command -v mke2fs"],
                  capture_output=True).returncode == 0:
    # FAT's boot sector ends in 0x55aa: libfdisk (and sfdisk) see an empty MBR, blkid a vfat
    img = os.path.join(d, "whole-vfat.img")
    run(["mkfs.vfat", "-n", "WHOLEFAT", "-C", img, str(16 * 1024)])
    write_at(img, 8 * MiB, pattern(MiB))  # stands in for file data
    blk = blkid_whole(img)
    check(blk.get("TYPE") == "vfat" and "PTTYPE" not in blk, f"whole vfat: blkid says {blk}")
    ins = inspect(img, "--no-fs", "--extents", "--min-gap", "0")
    check(ins["partition_table"] is None, f"whole vfat: no table: {ins['partition_table']}")
    check([(p["number"], p["fs_type"], p["fs_label"]) for p in ins["partitions"]] ==
          [(0, "vfat", "WHOLEFAT")], f"whole vfat: {ins['partitions']}")
    check(ins["map"]["bytes"]["unused"] == 0, "whole vfat: nothing unused")
    check(only_kind(ins["extents"], 8 * MiB, MiB, "data"), "whole vfat: file data kept")

    # a stale ext4 signature under a new MBR: the table counts, the space outside stays
    img = os.path.join(d, "stale.img")
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "stale", img, "32M"])
    sfdisk(img, "label: dos\nstart=2048, size=8M, type=83\n")
    blk = blkid_whole(img)
    check(blk.get("TYPE") == "ext4" and blk.get("PTTYPE") == "dos", f"stale: blkid says {blk}")
    r = subprocess.run([os.environ.get("SNAPBUNDLE", "snapbundle"), "inspect", "--json", img],
                       capture_output=True, text=True)
    check(r.returncode == 0 and "also carries a filesystem signature (ext4)" in r.stderr,
          f"stale: warning: {r.stderr!r}")
    ins = inspect(img, "--no-fs")
    compare_with_sfdisk(ins, sfdisk_json(img), "stale")
    check(ins["map"]["bytes"]["unused"] == 0, "stale: space outside the partition kept")

finish("test-ptable")
