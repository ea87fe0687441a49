#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the forged images of tests/store/forged.sh into OUTDIR: each is valid in every CRC,
digest and tag, and wrong in one thing only a check behind them can see.

usage: forge-cases.py OUTDIR   (writes OUTDIR/NAME.bin per case, OUTDIR/disk.img, good.bin)
"""
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import forge  # noqa: E402
from forge import DATA, ZERO, Extent, Frame, Image, Volume  # noqa: E402

FS = 65536
MIB = 1 << 20
TOP = 1 << 64


def disk():
    r = random.Random(7)
    d = bytearray(MIB)
    d[3 * FS:5 * FS] = r.randbytes(2 * FS)
    d[7 * FS:7 * FS + 100] = b"hello" * 20
    d[-10:] = b"last bytes"
    return bytes(d)


def base(**kw):
    v = Volume.from_bytes(DISK, FS)
    v.partitions = [dict(number=1, start=4096, size=512 * 1024, type="83", name="root")]
    kw.setdefault("frame_size", FS)
    return Image([v], **kw)


def big_volume(size):
    """a volume of SIZE bytes: the disk's frames, ZERO to the end"""
    img = base()
    v = img.volumes[0]
    v.size = size
    v.extents = None
    return img


def case_vol_size(size):
    return big_volume(size)


def case_frame_offset_wraps():
    # a frame at 2^64 - 32 KiB, 64 KiB long: its end wraps to 32 KiB, inside [0, 1 MiB)
    img = base()
    v = img.volumes[0]
    v.frames = [Frame(0, TOP - FS // 2, DISK[3 * FS:4 * FS])]
    v.extents = [Extent(0, MIB, DATA)]
    return img


def case_frame_offset_huge(off):
    # one frame far past the volume's end; extents claim DATA over it, ZERO up to it
    img = base()
    v = img.volumes[0]
    v.frames = [Frame(0, off, DISK[3 * FS:4 * FS])]
    v.extents = [Extent(0, MIB, ZERO), Extent(MIB, off - MIB, ZERO),
                 Extent(off, FS, DATA)]
    v.size = MIB
    return img


def case_extent_wraps():
    # [0, 1M) ZERO, [1M, 2^64 - 512K) ZERO ends at 512K (mod 2^64), [512K, 1M + 512K)...
    img = base()
    v = img.volumes[0]
    v.frames = []
    v.extents = [Extent(0, MIB, ZERO), Extent(MIB, TOP - MIB // 2, ZERO),
                 Extent(MIB // 2, MIB // 2, ZERO)]
    return img


def case_extent_length(n):
    img = base()
    v = img.volumes[0]
    v.frames = []
    v.extents = [Extent(0, n, ZERO)]
    v.size = MIB
    return img


def case_extent_huge_ok_size(n):
    # volume size N and one ZERO extent of N bytes: consistent, but N bytes to restore
    img = base()
    v = img.volumes[0]
    v.frames = []
    v.extents = [Extent(0, n, ZERO)]
    v.size = n
    return img


def case_partition(start, size):
    img = base()
    img.volumes[0].partitions = [dict(number=1, start=start, size=size, type="83")]
    return img


def case_count(field, n, volume=False):
    img = base()
    (img.volumes[0].index_over if volume else img.index_over)[field] = n
    return img


def case_volume_count_header():
    img = base()
    img.volume_count = 0xFFFFFFFF
    return img


def case_slots(n):
    img = base()
    img.incompat = 1
    payload = struct.pack("<I", n) + struct.pack("<II", 1, 108) + bytes(108)
    img.keys_raw = forge.record(1, payload, {}, forge.sha)
    return img


def case_frame_no(n):
    img = base()
    img.frames()[1].frame_no = n
    return img


def case_extents(exts):
    img = base()
    img.volumes[0].extents = exts
    return img


def case_overlap():
    # DATA [0, 320K) and [256K, 1M): overlapping, and the ends still add up to the size
    return case_extents([Extent(0, 5 * FS, ZERO), Extent(4 * FS, MIB - 4 * FS, DATA)])


def case_gap():
    return case_extents([Extent(0, 3 * FS, ZERO), Extent(4 * FS, MIB - 4 * FS, DATA)])


def case_frame_past_eof_len():
    # the last frame's record length runs past the end of the object
    img = base()
    img.frames()[-1].length = 1 << 40
    return img


def case_frame_past_eof_index():
    img = base()
    img.entries = [{} for _ in img.frames()]
    img.entries[-1]["file_offset"] = 1 << 40
    return img


def case_frame_stored_past_eof():
    img = base()
    f = img.frames()[-1]
    f.stored_len = 0xFFFFFFF0
    f.length = 96 + 0xFFFFFFF0
    return img


def case_duplicate():
    img = base()
    fr = img.frames()
    img.frame_list = [fr[0], fr[0]] + fr[1:]
    return img


def case_duplicate_last():
    img = base()
    fr = img.frames()
    img.frame_list = fr + [fr[-1]]
    return img


def case_reordered():
    img = base()
    fr = img.frames()
    img.frame_list = [fr[1], fr[0]] + fr[2:]
    return img


def case_frame_outside_extents():
    # a frame where the map says ZERO
    img = base()
    img.volumes[0].extents = [Extent(0, MIB, ZERO)]
    return img


def case_raw_len(n):
    img = base()
    f = img.frames()[0]
    f.raw_len = n
    return img


def case_frame_size(n):
    return base(frame_size=n)


def case_over(where, field, n):
    img = base()
    getattr(img, where)[field] = n
    return img


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cases = {
        "good": base,
        "vol-size-2^62": lambda: case_vol_size(1 << 62),
        "vol-size-2^63": lambda: case_vol_size(1 << 63),
        "vol-size-2^64-1": lambda: case_vol_size(TOP - 1),
        "extent-2^62": lambda: case_extent_huge_ok_size(1 << 62),
        "extent-len-2^64-1": lambda: case_extent_length(TOP - 1),
        "extent-wraps": case_extent_wraps,
        "frame-offset-wraps": case_frame_offset_wraps,
        "frame-offset-2^62": lambda: case_frame_offset_huge(1 << 62),
        "frame-offset-2^64-64K": lambda: case_frame_offset_huge(TOP - FS),
        "partition-2^63": lambda: case_partition(1 << 63, 1 << 63),
        "partition-wraps": lambda: case_partition(TOP - 4096, 8192),
        "partition-size-2^64-1": lambda: case_partition(4096, TOP - 1),
        "index-frames-2^40": lambda: case_count("frame_count", 1 << 40),
        "volume-frames-2^40": lambda: case_count("frame_count", 1 << 40, True),
        "volume-extents-2^40": lambda: case_count("extent_count", 1 << 40, True),
        "volume-extents-2^64-1": lambda: case_count("extent_count", TOP - 1, True),
        "volume-first-2^40": lambda: case_count("first_frame", 1 << 40, True),
        "index-volumes-2^32-1": lambda: case_count("volume_count", 0xFFFFFFFF),
        "header-volumes-2^32-1": case_volume_count_header,
        "keys-slots-2^32-1": lambda: case_slots(0xFFFFFFFF),
        "frame-no-2^40": lambda: case_frame_no(1 << 40),
        "extents-overlap": case_overlap,
        "extents-gap": case_gap,
        "frame-outside-data": case_frame_outside_extents,
        "frame-len-past-eof": case_frame_past_eof_len,
        "frame-index-past-eof": case_frame_past_eof_index,
        "frame-stored-past-eof": case_frame_stored_past_eof,
        "frame-duplicate": case_duplicate,
        "frame-duplicate-last": case_duplicate_last,
        "frames-reordered": case_reordered,
        "raw-len-0": lambda: case_raw_len(0),
        "raw-len-2^32-1": lambda: case_raw_len(0xFFFFFFFF),
        "frame-size-2^32-1": lambda: case_frame_size(0xFFFFFFFF),
        "meta-length-2^62": lambda: case_over("meta_over", "length", 1 << 62),
        "index-length-2^62": lambda: case_over("index_over", "length", 1 << 62),
        "footer-index-length-2^62": lambda: case_over("footer_over", "index_length", 1 << 62),
        "footer-index-offset-2^64-1": lambda: case_over("footer_over", "index_offset", TOP - 1),
        "footer-image-size-2^64-1": lambda: case_over("footer_over", "image_size", TOP - 1),
    }
    with open(os.path.join(out, "disk.img"), "wb") as f:
        f.write(DISK)
    for name, fn in cases.items():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(fn().build())


DISK = disk()

if __name__ == "__main__":
    main()
