#!/usr/bin/env bash
# `snapbundle bench --bound` on a generated 64 MiB disk: the JSON (valid against
# docs/schema/bench.json) and the table have a bound row for store, restore and bundle; the
# bound is the larger of its CPU and device figures; each percentage of the bound and each
# model-against-bound figure is recomputed from the numbers printed beside it; the
# disagreement line names the larger side. Without igzip on PATH the bound is reported as
# unavailable with the reason. Speed is never asserted.
set -euo pipefail
: "${SNAPBUNDLE:?}" "${SRCDIR:?}"
for t in igzip openssl dd; do
	command -v "$t" >/dev/null || { echo "skip: $t missing"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=(--quick --threads 2 --jobs store,restore,bundle --bound --workdir "$tmp")

"$SNAPBUNDLE" bench --generate-only "$tmp/disk.img" --size 64M
"$SNAPBUNDLE" bench "$tmp/disk.img" "${run[@]}" --json >"$tmp/report.json" 2>"$tmp/err" ||
	{ cat "$tmp/err"; exit 1; }
if python3 -c 'import jsonschema' 2>/dev/null; then
	python3 "$SRCDIR/tests/tools/validate-json.py" "$SRCDIR/docs/schema/bench.json" \
		"$tmp/report.json"
fi
"$SNAPBUNDLE" bench "$tmp/disk.img" "${run[@]}" >"$tmp/table" 2>"$tmp/err" ||
	{ cat "$tmp/err"; exit 1; }
python3 - "$tmp/report.json" "$tmp/table" <<'PY'
import json, re, sys
rep = json.load(open(sys.argv[1]))
b = rep["bound"]
assert b["available"] and b["reason"] is None, b
assert b["threads"] == 2, b["threads"]
data = rep["source"]["bytes"]["data"]
assert b["data_bytes"] == data, (b["data_bytes"], data)
assert 0 < b["compressed_bytes"] < data, b["compressed_bytes"]
t = b["tools"]
assert all(v is not None and v >= 0 for v in t.values()), t
assert t["igzip_deflate_cpu_seconds"] > 0 and t["dd_read_data_seconds"] > 0, t
runs = {j["kind"]: j["runs"] for j in rep["jobs"]}
rows = {j["kind"]: j for j in b["jobs"]}
assert sorted(rows) == ["bundle", "restore", "store"], rows
close = lambda a, c, tol: abs(a - c) <= tol * max(1.0, abs(c))
for kind, j in rows.items():
    # the one definition, recomputed from the tools' figures
    cpu = {"store": (t["igzip_deflate_cpu_seconds"] + t["sha256_cpu_seconds"]) / 2,
           "restore": (t["igzip_inflate_cpu_seconds"] + t["sha256_cpu_seconds"]) / 2}.get(kind)
    if kind == "bundle":
        chain = t["aes128cbc_cpu_seconds"] + t["cipher_sha1_cpu_seconds"]
        cpu = max((t["igzip_deflate_cpu_seconds"] + t["sha1_cpu_seconds"] + chain) / 2,
                  t["sha1_cpu_seconds"], chain)
    dev = (t["dd_read_compressed_seconds"] + t["dd_write_data_seconds"] if kind == "restore"
           else t["dd_read_data_seconds"] + t["dd_write_compressed_seconds"])
    assert close(j["cpu_seconds"], cpu, 1e-4), (kind, j, cpu)
    assert close(j["device_seconds"], dev, 1e-4), (kind, j, dev)
    assert j["seconds"] == max(j["cpu_seconds"], j["device_seconds"]), j
    assert j["binds"] == ("cpu" if j["cpu_seconds"] >= j["device_seconds"] else "device"), j
    run = [r for r in runs[kind] if r["threads"] == 2][0]
    assert j["job_seconds"] == run["seconds"] and j["job_cpu_seconds"] == run["cpu_seconds"]
    assert j["model_seconds"] == run["model"]["limit_seconds"], (j, run["model"])
    assert close(j["percent_of_bound"], j["seconds"] / j["job_seconds"] * 100, 1e-4), j
    diff = (j["model_seconds"] - j["seconds"]) / j["seconds"] * 100
    # the JSON prints 6 significant digits (%.6g): recomputed from the printed model and bound,
    # the difference of two near-equal times carries their rounding, divided by the bound
    rounding = (j["model_seconds"] + j["seconds"]) * 5e-6 / j["seconds"] * 100
    tol = 1e-4 * max(1.0, abs(diff)) + rounding
    assert abs(j["model_vs_bound_percent"] - diff) <= tol, (j, diff, tol)
    assert j["larger"] == ("model" if diff > 10 else "bound" if diff < -10 else None), j

# the table: a row per job whose % bound is its bound over its time, as printed
table = open(sys.argv[2]).read()
assert "outside bound (" in table, table
seen = set()
for m in re.finditer(r"^  (store|restore|bundle) +([\d.]+) s +([\d.]+) s +([\d.]+) s "
                     r"(cpu|device) +([\d.]+) s +([\d.]+) s +([\d.]+) s +([\d.]+) s +"
                     r"([\d.]+)%$", table, re.M):
    kind = m[1]
    cpu, dev, bound, tools, wall, jcpu, model, pct = (float(m[i]) for i in (2, 3, 4, 6, 7, 8, 9, 10))
    seen.add(kind)
    assert abs(bound - max(cpu, dev)) < 0.006, m[0]
    assert m[5] == ("cpu" if cpu >= dev else "device") or abs(cpu - dev) < 0.011, m[0]
    # the percentage, from the printed (rounded) bound and time
    lo = (bound - 0.005) / (wall + 0.005) * 100
    hi = (bound + 0.005) / max(wall - 0.005, 1e-9) * 100
    assert lo - 0.05 <= pct <= hi + 0.05, (m[0], lo, hi)
    line = re.search(rf"^  {kind}: the model and the outside bound (.*)$", table, re.M)
    assert line, f"no disagreement line for {kind}"
    if "disagree" in line[1]:
        d = re.match(r"disagree by ([\d.]+) %: the (model|bound) is larger "
                     r"\(model ([\d.]+) s, bound ([\d.]+) s\)", line[1])
        assert d and float(d[1]) > 10, line[0]
        # the side named larger is larger, unless both print the same at two decimals
        mv, bv = float(d[3]), float(d[4])
        assert mv == bv or (d[2] == "model") == (mv > bv), line[0]
    else:
        d = re.match(r"agree within 10 % \(([-+][\d.]+) %\)", line[1])
        assert d and abs(float(d[1])) <= 10, line[0]
assert seen == {"store", "restore", "bundle"}, (seen, table)
PY

# without igzip on PATH: unavailable, with the reason
mkdir "$tmp/bin"
for f in /usr/bin/* /bin/*; do
	n=${f##*/}
	[ "$n" = igzip ] || [ -e "$tmp/bin/$n" ] || ln -s "$f" "$tmp/bin/$n"
done
PATH=$tmp/bin "$SNAPBUNDLE" bench "$tmp/disk.img" "${run[@]}" --jobs store --json \
	>"$tmp/no.json" 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
python3 - "$tmp/no.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))["bound"]
assert b["available"] is False and b["jobs"] == [], b
assert b["reason"] == "igzip not found on PATH (Debian package isal)", b["reason"]
PY
PATH=$tmp/bin "$SNAPBUNDLE" bench "$tmp/disk.img" "${run[@]}" --jobs store >"$tmp/table" 2>&1
grep -q "^outside bound: unavailable: igzip not found on PATH" "$tmp/table" ||
	{ cat "$tmp/table"; echo "no unavailable bound in the table"; exit 1; }
if ls -d "$tmp"/snapbundle-bench.* 2>/dev/null; then
	echo "the work directory was left behind"; exit 1
fi
echo ok
