#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# ab.sh A B SOURCE [ROUNDS] [THREADS] [JOBS]: an A/B comparison of two builds of snapbundle on
# one source, interleaved on one machine: each round runs `A bench SOURCE --jobs JOBS --json`
# and `B bench ...` (A B in odd rounds, B A in even ones, so drift and warm caches fall on both
# alike). Prints per job the median wall seconds, CPU seconds and peak RSS of A and B, their
# range, and B/A. Defaults: 5 rounds, 2 threads, bundle,unbundle,store,restore. A and B are
# snapbundle binaries (each finds its snapbundle-bench beside it). The JSON reports stay in
# BENCH_OUT when it is set. Never passes or fails on a timing.
set -euo pipefail
A=${1:?usage: ab.sh A B SOURCE [ROUNDS] [THREADS] [JOBS]}
Bn=${2:?}
src=${3:?}
rounds=${4:-5}
threads=${5:-2}
jobs=${6:-bundle,unbundle,store,restore}
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-ab.XXXXXX")
trap 'rm -rf "$T"' EXIT
out=${BENCH_OUT:-$T}
mkdir -p "$out"
run() { # label binary round
	"$2" bench "$src" --threads "$threads" --jobs "$jobs" --json >"$out/$1-$3.json" \
		2>"$T/err" || { cat "$T/err" >&2; exit 1; }
}
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) -eq 1 ]; then run A "$A" "$r"; run B "$Bn" "$r"
	else run B "$Bn" "$r"; run A "$A" "$r"; fi
	echo "round $r of $rounds done (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
done
python3 - "$out" "$rounds" "$A" "$Bn" "$src" "$threads" <<'PY'
import json, statistics, sys
out, rounds, a, b, src, threads = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
res = {}
for side in "AB":
    for r in range(1, rounds + 1):
        rep = json.load(open(f"{out}/{side}-{r}.json"))
        for job in rep["jobs"]:
            for run in job["runs"]:
                if not run.get("ok"):
                    continue
                d = res.setdefault(job["kind"], {}).setdefault(side, [])
                d.append((run["seconds"], run["cpu_seconds"], run["peak_rss_bytes"]))
print(f"A = {a}\nB = {b}\nsource {src}, {threads} threads, {rounds} interleaved rounds\n")
print("| job | A wall s (range) | B wall s (range) | B/A wall | A CPU s | B CPU s "
      "| A peak RSS MiB | B peak RSS MiB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for kind, sides in res.items():
    if "A" not in sides or "B" not in sides:
        continue
    med = {s: [statistics.median(x[i] for x in sides[s]) for i in range(3)] for s in "AB"}
    rng = {s: (min(x[0] for x in sides[s]), max(x[0] for x in sides[s])) for s in "AB"}
    print(f"| {kind} | {med['A'][0]:.3f} ({rng['A'][0]:.2f}-{rng['A'][1]:.2f}) "
          f"| {med['B'][0]:.3f} ({rng['B'][0]:.2f}-{rng['B'][1]:.2f}) "
          f"| {med['B'][0] / med['A'][0]:.3f} | {med['A'][1]:.2f} | {med['B'][1]:.2f} "
          f"| {max(x[2] for x in sides['A']) / 2**20:.0f} "
          f"| {max(x[2] for x in sides['B']) / 2**20:.0f} |")
PY
