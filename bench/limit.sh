#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# limit.sh SOURCE [ROUNDS] [THREADS]: each job's wall time against a bound that outside tools
# measure on the same bytes, on this machine, as the medians of ROUNDS (default 3) runs of
# `snapbundle bench SOURCE --bound --json` (jobs store, restore, bundle at THREADS, default
# every CPU, level 1; work directory BENCH_TMP, default the SOURCE's directory). Each run
# measures the jobs, then the bound, so the rounds interleave them.
# The bound is defined once, in bench/bound.c (see its header and docs/bench-json.md, `bound`):
# the larger of the tools' CPU (igzip -1 / -d, openssl sha256, sha1, aes-128-cbc, divided by
# THREADS, never less than the serial chain) and dd O_DIRECT device time. Prints a Markdown
# table. Needs igzip (Debian's isal), openssl, python3. Never passes or fails on a timing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${SNAPBUNDLE:-$here/../build/tools/snapbundle}
src=${1:?usage: limit.sh SOURCE [ROUNDS] [THREADS]}
rounds=${2:-3}
threads=${3:-$(nproc)}
for t in igzip openssl dd python3; do
	command -v "$t" >/dev/null || { echo "limit.sh: $t is missing (apt-get install isal)" >&2; exit 77; }
done
T=$(mktemp -d "${BENCH_TMP:-$(dirname "$(realpath "$src")")}/limit.XXXXXX")
trap 'rm -rf "$T"' EXIT
for r in $(seq "$rounds"); do
	"$B" bench "$src" --bound --json --quick --level 1 --threads "$threads" \
		--jobs store,restore,bundle --workdir "$T" >"$T/round.$r.json"
	echo "round $r of $rounds done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done
python3 - "$src" "$rounds" "$threads" "$T" <<'PY'
import json, statistics, sys

src, rounds, threads, T = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
reps = [json.load(open(f"{T}/round.{r + 1}.json")) for r in range(rounds)]
for rep in reps:
    if not rep["bound"]["available"]:
        sys.exit(f"limit.sh: the bound is unavailable: {rep['bound']['reason']}")
print(f"source {src}: {reps[0]['bound']['data_bytes']} bytes of DATA, {threads} threads, "
      f"medians of {rounds} interleaved rounds\n")
print("| job | wall | CPU | CPU bound | device bound | bound | of the bound | model |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for kind in ("store", "restore", "bundle"):
    rows = [j for rep in reps for j in rep["bound"]["jobs"] if j["kind"] == kind]
    med = lambda k: statistics.median(r[k] for r in rows if r[k] is not None)
    w, c, d, m = med("job_seconds"), med("cpu_seconds"), med("device_seconds"), med("model_seconds")
    b = max(c, d)
    print(f"| {kind} | {w:.2f} s | {med('job_cpu_seconds'):.2f} s (tools {med('tools_cpu_seconds'):.2f} s) "
          f"| {c:.2f} s | {d:.2f} s | {b:.2f} s ({'CPU' if c >= d else 'device'}) "
          f"| {100 * b / w:.0f} % | {m:.2f} s |")
PY
