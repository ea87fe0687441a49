#!/usr/bin/env python3
"""check-bench-reference.py REPORT.json CHART.svg CHART-WITHOUT-REFERENCE.svg

The reference panel of bench --svg against the JSON report of the same run: a row per
reference tool and per compared job (bundle, store); the bars of those that ran are
proportional to their MB/s (1 % or 1 px) and labelled with it; the others say "not run:" and
why. pigz must be among the ones that did not run (the test hid it). The chart made without
--reference has no reference panel.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"
errors = []


def fail(msg):
    errors.append(msg)


rep = json.load(open(sys.argv[1]))
root = ET.parse(sys.argv[2]).getroot()
panel = [g for g in root.iter(NS + "g") if g.get("id") == "reference"]
if len(panel) != 1:
    sys.exit("FAIL: %d reference panels in the chart made with --reference" % len(panel))
panel = panel[0]
texts = ["".join(t.itertext()) for t in panel.iter(NS + "text")]
bars = {}  # name -> (width, the MB/s of the value label on its row)
vals = {float(t.get("y")): "".join(t.itertext()) for t in panel.iter(NS + "text")
        if t.get("class") == "val"}
for r in panel.iter(NS + "rect"):
    if r.get("class") == "refbar":
        label = vals.get(float(r.get("y")) + 11, "")
        m = re.match(r"^([0-9.]+) MB/s ", label)
        bars[r.find(NS + "title").text] = (float(r.get("width")), float(m.group(1)) if m else -1)

want = {}  # name -> MB/s, None when it did not run
for ref in rep["reference"]:
    want[ref["name"]] = ref["mb_per_s"] if ref["ok"] else None
    if not ref["ok"] and not any(t.startswith("not run: " + ref["reason"][:40]) for t in texts):
        fail("%s did not run, but the chart does not say why (%s)" % (ref["name"], ref["reason"]))
for job in rep["jobs"]:
    if job["kind"] in ("bundle", "store"):
        rates = [r["mb_per_s"] for r in job["runs"] if r.get("ok") and r.get("mb_per_s")]
        want["snapbundle " + job["kind"]] = max(rates) if rates else None

if "pigz" not in want or want["pigz"] is not None:
    fail("pigz was hidden from PATH but is reported as run: %r" % want.get("pigz"))
ran = {n: v for n, v in want.items() if v}
if len(ran) < 3:
    fail("too few rows ran to compare: %r" % ran)
for name in want:
    if name not in texts:
        fail("no row for %s" % name)
if set(bars) != set(ran):
    fail("bars for %s, but %s ran" % (sorted(bars), sorted(ran)))
top = max(ran.values()) if ran else 1
widest = max(w for w, _ in bars.values()) if bars else 1
for name, mbps in ran.items():
    if name not in bars:
        continue
    width, shown = bars[name]
    expect = mbps / top * widest
    if abs(width - expect) > max(1.0, 0.01 * expect):
        fail("%s: bar %.1f px, %.1f px for %.3g MB/s" % (name, width, expect, mbps))
    if abs(shown - mbps) > 0.01 * mbps + 0.006:
        fail("%s: its row shows %s MB/s, the report %.4g" % (name, shown, mbps))

plain = ET.parse(sys.argv[3]).getroot()
if any(g.get("id") == "reference" for g in plain.iter(NS + "g")):
    fail("a chart made without --reference has a reference panel")

if errors:
    print("FAIL: " + "\nFAIL: ".join(errors))
    sys.exit(1)
print("ok: %d rows, %d bars proportional to the report's MB/s" % (len(want), len(bars)))
