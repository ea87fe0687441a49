#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-model.sh SOURCE [RUNS] [THREADS] [JOBS]: runs `snapbundle bench SOURCE` RUNS times
# (default 5) at THREADS (default 2) for JOBS (default bundle,store) and prints, per job, each
# run's wall time, model limit, bound, host speed and % of the limit, then the median and range
# of the % of the limit. A single run on a shared virtual machine moves by 10 % and more with
# the host (docs/NOTES.md); the median of several is what issue 7's 85 % target is judged on.
# The JSON reports stay in BENCH_OUT (default: a temporary directory, removed) when it is set.
# Never passes or fails on a timing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${SNAPBUNDLE:-$here/../build/tools/snapbundle}
src=${1:?usage: bench-model.sh SOURCE [RUNS] [THREADS] [JOBS]}
runs=${2:-5}
threads=${3:-2}
jobs=${4:-bundle,store}
out=${BENCH_OUT:-}
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-model.XXXXXX")
trap 'rm -rf "$T"' EXIT
[ -n "$out" ] && mkdir -p "$out" || out=$T
for i in $(seq 1 "$runs"); do
	"$B" bench "$src" --threads "$threads" --jobs "$jobs" --json >"$out/run-$i.json" \
		2>"$T/err" || { cat "$T/err" >&2; exit 1; }
done
python3 - "$out" "$runs" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows = {}
for i in range(1, runs + 1):
    rep = json.load(open(f"{out}/run-{i}.json"))
    load = rep["machine"]["loadavg"][0]
    for job in rep["jobs"]:
        for r in job["runs"]:
            if not r["ok"]:
                continue
            m = r["model"]
            rows.setdefault((job["kind"], r["threads"]), []).append(
                (i, r["seconds"], r["cpu_seconds"], m["limit_seconds"], m["flat_limit_seconds"],
                 m["bound"], m["host_speed"], m["percent_of_limit"], load))
print("| job | threads | run | wall s | CPU s | model s | flat model s | bound | host speed | % of limit | load |")
print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
for (kind, t), rs in rows.items():
    for (i, s, cpu, lim, flat, bound, speed, pct, load) in rs:
        sp = f"{speed:.3f}" if speed else "-"
        print(f"| {kind} | {t} | {i} | {s:.3f} | {cpu:.2f} | {lim:.3f} | {flat:.3f} | {bound} | {sp} | {pct:.1f} % | {load:.2f} |")
print()
for (kind, t), rs in rows.items():
    p = [r[7] for r in rs]
    print(f"{kind} at {t} threads: median {statistics.median(p):.1f} % of the model's limit "
          f"(range {min(p):.1f}-{max(p):.1f} %, {len(p)} runs)")
PY
