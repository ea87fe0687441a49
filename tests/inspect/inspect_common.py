# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for the inspect tests: run `snapbundle inspect`, run the outside judges (sfdisk,
blkid), and query an extent list."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SNAPBUNDLE = os.environ.get("SNAPBUNDLE", "snapbundle")
SRCDIR = os.environ.get("SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what, file=sys.stderr)
    return cond


def finish(name):
    if failures:
        print(f"{name}: {failures} checks failed", file=sys.stderr)
        sys.exit(1)
    print(f"{name}: ok")
    sys.exit(0)


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            print(f"skipped: {t} is not installed", file=sys.stderr)
            sys.exit(77)


def tmpdir():
    d = tempfile.mkdtemp(prefix="snap-inspect-", dir=os.environ.get("TMPDIR"))
    import atexit
    atexit.register(shutil.rmtree, d, True)
    return d


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def inspect(path, *args):
    r = subprocess.run([SNAPBUNDLE, "inspect", "--json", *args, path], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"inspect {path} failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


def sfdisk_json(path):
    r = subprocess.run(["sfdisk", "--json", path], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        return None
    return json.loads(r.stdout)["partitiontable"]


def sfdisk(path, script):
    subprocess.run(["sfdisk", "-q", path], input=script, check=True, text=True,
                   capture_output=True)


def make_image(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def write_at(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def pattern(n, seed=b"snapbundle test data "):
    """Deterministic non-zero bytes that look like no partition table or filesystem."""
    return (seed * (n // len(seed) + 1))[:n]


def kinds_in(extents, off, length):
    """The set of (kind, layer, partition) over [off, off+length)."""
    end = off + length
    out = set()
    for e in extents:
        if e["offset"] < end and e["offset"] + e["length"] > off:
            out.add((e["kind"], e["layer"], e["partition"]))
    return out


def only_kind(extents, off, length, kind):
    ks = kinds_in(extents, off, length)
    return bool(ks) and all(k[0] == kind for k in ks)


def covers(extents, size):
    pos = 0
    for e in extents:
        if e["offset"] != pos or e["length"] == 0:
            return False
        pos += e["length"]
    return pos == size


def compare_with_sfdisk(ins, sf, label):
    """inspect --json must agree with sfdisk --json on the table and every partition."""
    ss = sf.get("sectorsize", 512)
    pt = ins["partition_table"]
    check(pt is not None and pt["type"] == sf["label"],
          f"{label}: table type {pt} vs {sf['label']}")
    check(pt is not None and pt["id"] == sf["id"], f"{label}: table id {pt} vs {sf['id']}")
    parts = {p["number"]: p for p in ins["partitions"]}
    check(len(parts) == len(sf["partitions"]),
          f"{label}: {len(parts)} partitions vs sfdisk's {len(sf['partitions'])}")
    for sp in sf["partitions"]:
        num = int(sp["node"][len(sf["device"]):].lstrip("p"))
        p = parts.get(num)
        if not check(p is not None, f"{label}: partition {num} missing"):
            continue
        check(p["start"] == sp["start"] * ss, f"{label}#{num}: start {p['start']} vs {sp['start']}")
        check(p["size"] == sp["size"] * ss, f"{label}#{num}: size {p['size']} vs {sp['size']}")
        check(p["type"] == sp["type"], f"{label}#{num}: type {p['type']} vs {sp['type']}")
        check(p["name"] == sp.get("name"), f"{label}#{num}: name {p['name']} vs {sp.get('name')}")
        check(p["uuid"] == sp.get("uuid"), f"{label}#{num}: uuid {p['uuid']} vs {sp.get('uuid')}")
        check(p["bootable"] == bool(sp.get("bootable", False)), f"{label}#{num}: bootable")
    return parts
