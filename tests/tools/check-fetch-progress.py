#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""check-fetch-progress.py EVENTS WANT_DATA [--frames INSPECT IMAGE [PARTITION]]

Checks the --progress=json events (stderr of one successful run) of a restore or unbundle
against what it must read:

  - bytes_data is 0 until it is set, set no later than the first event of the data stage, and
    the same in every event from then on (it never changes);
  - bytes_read never exceeds it and the last event's bytes_read equals it;
  - percent never goes down, and the last event is "done" at 100;
  - bytes_data equals WANT_DATA (a number, or "-" for none), and with --frames also the bytes
    read before the data stage plus the records of the frames the run needs: those of volume 0
    that overlap PARTITION (every frame without one), taken from `snapbundle inspect --json
    --frames` (INSPECT) and the length in each record's own prefix in IMAGE (a local copy),
    cross-checked against the next frame's file offset.
Prints the bytes_data it found; exits 1 naming the first broken rule.
"""
import json
import struct
import sys


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def frames_bytes(inspect_path, image_path, partition):
    doc = json.load(open(inspect_path))
    frames = doc["frame_index"]
    if len(frames) != doc["frame_count"] or not frames:
        fail(f"inspect lists {len(frames)} of {doc['frame_count']} frames")
    lo, hi = 0, None
    if partition is not None:
        parts = [p for p in doc["volumes"][0]["partitions"] if p["number"] == partition]
        if len(parts) != 1:
            fail(f"inspect shows no partition {partition}")
        lo, hi = parts[0]["start"], parts[0]["start"] + parts[0]["size"]
    total = 0
    with open(image_path, "rb") as f:
        for i, fr in enumerate(frames):
            f.seek(fr["file_offset"])
            # record prefix: le32 type, le32 crc, le64 length of the whole record
            _type, _crc, length = struct.unpack("<IIQ", f.read(16))
            if i + 1 < len(frames) and frames[i + 1]["file_offset"] - fr["file_offset"] != length:
                fail(f"frame {i}: record length {length} is not the distance to frame {i + 1}")
            if length < fr["stored_len"]:
                fail(f"frame {i}: record length {length} below stored_len {fr['stored_len']}")
            if fr["volume"] != 0:
                continue
            end = fr["offset"] + fr["raw_len"]
            if end > lo and (hi is None or fr["offset"] < hi):
                total += length
    return total


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        fail("usage: check-fetch-progress.py EVENTS WANT_DATA [--frames INSPECT IMAGE [PART]]")
    events_path, want = args[0], args[1]
    ev = []
    for n, line in enumerate(open(events_path), 1):
        line = line.strip()
        if not line.startswith("{"):
            continue  # the command's own lines (its summary) are not events
        try:
            ev.append(json.loads(line))
        except ValueError:
            fail(f"line {n} is not JSON: {line[:200]}")
    if not ev:
        fail("no progress events")
    data = None
    stage_rank = {"prepare": 0, "data": 1, "verify": 2, "finish": 3, "done": 4}
    last_pct = -1.0
    for i, e in enumerate(ev):
        if e["percent"] < last_pct:
            fail(f"event {i}: percent went down from {last_pct} to {e['percent']}")
        last_pct = e["percent"]
        if data is None and e["bytes_data"]:
            data = e["bytes_data"]
        if data is None:
            if stage_rank[e["stage"]] >= stage_rank["data"]:
                fail(f"event {i}: stage {e['stage']} without bytes_data")
            continue
        if e["bytes_data"] != data:
            fail(f"event {i}: bytes_data changed from {data} to {e['bytes_data']}")
        if e["bytes_read"] > data:
            fail(f"event {i}: bytes_read {e['bytes_read']} exceeds bytes_data {data}")
    last = ev[-1]
    if last["stage"] != "done" or last["percent"] != 100.0:
        fail(f"the last event is {last['stage']} at {last['percent']} %")
    if last["bytes_read"] != data:
        fail(f"bytes_read ends at {last['bytes_read']}, bytes_data is {data}")
    if want != "-" and data != int(want):
        fail(f"bytes_data is {data}, want {want}")
    if len(args) > 2:
        if args[2] != "--frames" or len(args) < 5:
            fail("--frames INSPECT IMAGE [PARTITION]")
        part = int(args[5]) if len(args) > 5 else None
        first_data = next(e for e in ev if e["stage"] != "prepare")  # data, or verify
        frames = frames_bytes(args[3], args[4], part)
        if data != first_data["bytes_read"] + frames:
            fail(f"bytes_data {data} is not the {first_data['bytes_read']} bytes read before "
                 f"the data stage plus the {frames} bytes of the frames needed")
    print(data)


main()
