#!/usr/bin/env python3
"""Judges the output of `snapbundle bench --json` (schema in docs/bench-json.md) and its SVG.

usage: check-bench.py REPORT.json [CHART.svg [GENERATED_SIZE]]

Completeness, never speed: every stage is present, available ones with a positive rate,
unavailable ones with a reason; stages that depend on nothing optional (OpenSSL, ISA-L, the
filesystem) must be available; every job kind appears exactly once, with runs or with a
reason; the model's terms and the source's byte counts add up; the SVG is well-formed XML
that names every stage and every job.
"""
import json
import sys
import xml.etree.ElementTree as ET

ALWAYS = ["sha1", "sha256", "crc32", "deflate-l0", "deflate-l1", "deflate-l2", "deflate-l3", "inflate",
          "aes128cbc-enc", "aes128cbc-dec", "aes256gcm-enc", "aes256gcm-dec", "write"]
OPTIONAL = ["zero-scan"]  # plus at least one read configuration
JOBS = ["bundle", "unbundle", "store", "restore"]

errors = []


def fail(msg):
    errors.append(msg)


def positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


rep = json.load(open(sys.argv[1]))
if rep.get("schema") != "snapbundle-bench/1":
    fail(f"schema is {rep.get('schema')!r}")
for key in ["snapbundle_version", "started", "total_seconds", "machine", "config", "source",
            "stages", "jobs", "reference"]:
    if key not in rep:
        fail(f"missing top-level key {key}")

m = rep["machine"]
if not (isinstance(m["online_cpus"], int) and m["online_cpus"] >= 1):
    fail("machine.online_cpus")
if len(m["loadavg"]) != 3:
    fail("machine.loadavg needs 3 numbers")

src = rep["source"]
b = src["bytes"]
if b["data"] + b["zero"] + b["unused"] != src["size"]:
    fail(f"source bytes {b} do not add up to its size {src['size']}")
if len(sys.argv) > 3 and (not src["generated"] or src["size"] != int(sys.argv[3])):
    fail(f"expected a generated disk of {sys.argv[3]} bytes")
if not isinstance(src.get("shares_disk_with_workdir"), bool) or not src.get("disk_note"):
    fail("source.shares_disk_with_workdir and disk_note are required")
if src["mapped"]:
    if src["ptable"] != "gpt" or src["partitions"] != 3:
        fail(f"the generated disk maps as {src['ptable']} with {src['partitions']} partitions")
    if b["unused"] == 0:
        fail("the generated disk's unpartitioned junk should be UNUSED")
elif not src["map_note"]:
    fail("an unmapped source must say why")
if b["zero"] == 0 or b["data"] == 0:
    fail("the generated disk must have DATA and holes")

stages = {}
for st in rep["stages"]:
    if st["name"] in stages:
        fail(f"stage {st['name']} twice")
    stages[st["name"]] = st
    if st["available"]:
        if not (positive(st["mb_per_s"]) and positive(st["bytes"]) and positive(st["seconds"])):
            fail(f"stage {st['name']} is available without a positive rate: {st}")
        if st["reason"] is not None:
            fail(f"stage {st['name']} is available but has a reason")
    elif not st["reason"]:
        fail(f"stage {st['name']} is unavailable without a reason")
    if st["group"] in ("read", "write") and st["available"] and \
            st["io_cpu_seconds"] is not None and not (positive(st["io_cpu_seconds"]) or
                                                      st["io_cpu_seconds"] == 0):
        fail(f"stage {st['name']}: io_cpu_seconds {st['io_cpu_seconds']}")
    if st["group"] == "write" and st["available"]:
        w = st.get("write")
        if not w or not isinstance(w["direct"], bool) or w["request_size"] < 4096:
            fail(f"write stage lacks its configuration: {st}")
    if st["group"] == "read":
        r = st.get("read")
        if not r or r["engine"] not in ("uring", "pread") or r["queue_depth"] < 1 \
                or r["request_size"] < 4096:
            fail(f"read stage {st['name']} lacks its configuration")
for name in ALWAYS + OPTIONAL:
    if name not in stages:
        fail(f"stage {name} missing")
for name in ALWAYS:
    if name in stages and not stages[name]["available"]:
        fail(f"stage {name} needs nothing optional but is unavailable: {stages[name]['reason']}")
for lvl in range(4):
    st = stages.get(f"deflate-l{lvl}")
    if st and st["available"] and not (0 < st["ratio"] < 1.2):
        fail(f"deflate-l{lvl} ratio {st['ratio']}")
reads = [s for s in rep["stages"] if s["group"] == "read"]
if not reads:
    fail("no read stage")
engines = {(s["read"]["engine"], s["read"]["direct"]) for s in reads}
if engines != {("uring", True), ("uring", False), ("pread", True), ("pread", False)}:
    fail(f"read stages must cover io_uring and pread, O_DIRECT and buffered: {engines}")

jobs = [j["kind"] for j in rep["jobs"]]
if sorted(jobs) != sorted(JOBS):
    fail(f"jobs {jobs}, expected each of {JOBS} once")
threads = rep["config"]["threads"]
for j in rep["jobs"]:
    if not j["available"]:
        if not j["reason"] or j["runs"]:
            fail(f"job {j['kind']} unavailable needs a reason and no runs: {j}")
        continue
    if [r["threads"] for r in j["runs"]] != threads:
        fail(f"job {j['kind']} ran at {[r['threads'] for r in j['runs']]}, not {threads}")
    if j["kind"] in ("unbundle", "restore") and j["output_identical"] is False:
        fail(f"job {j['kind']}: output differs from the source: {j['output_note']}")
    for r in j["runs"]:
        if not r["ok"]:
            if not r["error"]:
                fail(f"job {j['kind']} failed run without an error")
            continue
        for key in ["seconds", "cpu_seconds", "peak_rss_bytes", "mb_per_s"]:
            if not positive(r[key]):
                fail(f"job {j['kind']} at {r['threads']} threads: {key} = {r[key]}")
        mo = r["model"]
        if not mo["bound"] or not mo["terms"]:
            fail(f"job {j['kind']}: model without bound or terms")
        known = [t for t in mo["terms"] if t["seconds"] is not None]
        if mo["complete"] and len(known) != len(mo["terms"]):
            fail(f"job {j['kind']}: model complete with unknown terms")
        # over the whole source, the limit is the largest of each I/O or serial term, the I/O
        # sum when reads and writes share a disk, and the compute sum (io-cpu included) over
        # cores: flat_limit_seconds (the terms are its sums over the windows).
        cores = min(r["threads"], rep["machine"]["online_cpus"])
        shared = j["kind"] in ("unbundle", "restore") or src["shares_disk_with_workdir"]
        io = [t["seconds"] for t in known if t["io"]]
        floor = max([t["seconds"] for t in known if t["io"] or t["serial"]] +
                    ([sum(io)] if shared else []) +
                    [sum(t["seconds"] for t in known if not t["io"]) / cores])
        if not any(t["stage"] == "io-cpu" for t in mo["terms"]):
            fail(f"job {j['kind']}: no io-cpu term")
        if known and abs(mo["flat_limit_seconds"] - floor) > 1e-3 * floor + 1e-6:
            fail(f"job {j['kind']}: flat limit {mo['flat_limit_seconds']} is not the "
                 f"model's {floor}")
        # window by window, the limit can only be larger: a sum of maxima
        if mo["limit_seconds"] < mo["flat_limit_seconds"] * (1 - 1e-3):
            fail(f"job {j['kind']}: limit {mo['limit_seconds']} below the flat limit "
                 f"{mo['flat_limit_seconds']}")
        if not (isinstance(mo["windows"], int) and mo["windows"] >= 1):
            fail(f"job {j['kind']}: windows {mo['windows']}")
        if not (0 < mo["bound_share"] <= 1):
            fail(f"job {j['kind']}: bound_share {mo['bound_share']}")
        if mo["host_speed"] is not None and not positive(mo["host_speed"]):
            fail(f"job {j['kind']}: host_speed {mo['host_speed']}")
        if positive(mo["percent_of_limit"]) and abs(
                mo["percent_of_limit"] - 100 * mo["limit_seconds"] / r["seconds"]) > 0.01 * \
                mo["percent_of_limit"]:
            fail(f"job {j['kind']}: percent_of_limit does not match limit and time")

if len(sys.argv) > 2:
    root = ET.parse(sys.argv[2]).getroot()
    if root.tag != "{http://www.w3.org/2000/svg}svg":
        fail(f"SVG root is {root.tag}")
    texts = " ".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for name in list(stages) + JOBS:
        if name not in texts:
            fail(f"the SVG does not name {name}")
    if not list(root.iter("{http://www.w3.org/2000/svg}rect")):
        fail("the SVG has no bars")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"ok: {len(stages)} stages, {len(jobs)} jobs "
      f"({sum(1 for j in rep['jobs'] if j['available'])} available)")
