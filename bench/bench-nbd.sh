#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-nbd.sh [DISK_MIB] [ROUNDS] [FRAME_SIZE]: the serving path against restore, measured.
# Stores a disk of DISK_MIB (default 512) all data, half random and half text (every byte in a
# frame to read, check and, for the text, inflate; frame size default 4M) once, then in
# interleaved rounds (restore first in odd rounds, nbdcopy first in even ones) times
# `snapbundle restore IMG -o FILE` and
# `nbdkit -U - snapbundle image=IMG --run 'nbdcopy "$uri" FILE'`, each output compared with
# cmp once. Prints one JSON line per round and one summary line: the median seconds of each and
# their ratio. Environment: SNAPBUNDLE (default build/tools/snapbundle), PLUGIN (default beside
# it, build/tools/nbdkit/nbdkit-snapbundle-plugin.so). Never passes or fails on a timing.
set -euo pipefail
mib=${1:-512}
rounds=${2:-5}
fs=${3:-4M}
root=$(cd "$(dirname "$0")/.." && pwd)
B=${SNAPBUNDLE:-$root/build/tools/snapbundle}
P=${PLUGIN:-$(dirname "$B")/nbdkit/nbdkit-snapbundle-plugin.so}
for t in nbdkit nbdcopy; do
	command -v $t >/dev/null || { echo "$t missing (tools/install-deps.sh)" >&2; exit 77; }
done
[ -f "$P" ] || { echo "no plugin at $P" >&2; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-nbd.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T"
head -c $((mib / 2))M /dev/urandom > disk.img
{ yes "the served bytes of a snapbundle store image" || true; } |
	head -c $((mib - mib / 2))M >> disk.img
"$B" store disk.img -o img.bin --frame-size "$fs" --progress=none >/dev/null
now() { date +%s.%N; }
restore() {
	rm -f r.img
	local t0=$(now)
	"$B" restore img.bin -o r.img --progress=none >/dev/null
	printf "%.3f" "$(echo "$(now) - $t0" | bc)"
}
serve() {
	rm -f n.img
	local t0=$(now)
	nbdkit -U - --run 'nbdcopy "$uri" n.img' "$P" image=img.bin
	printf "%.3f" "$(echo "$(now) - $t0" | bc)"
}
rs=() ns=()
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) -eq 1 ]; then a=$(restore); b=$(serve); else b=$(serve); a=$(restore); fi
	[ "$r" -gt 1 ] || cmp r.img n.img || { echo "served bytes differ from restore's" >&2; exit 1; }
	rs+=("$a") ns+=("$b")
	echo "{\"round\":$r,\"restore_s\":$a,\"nbdcopy_s\":$b}"
done
python3 - "$mib" "$fs" "$(nproc)" "${rs[*]}" "${ns[*]}" <<'PY'
import json, statistics, sys
mib, fs, cpus, rs, ns = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
r = statistics.median(map(float, rs.split()))
n = statistics.median(map(float, ns.split()))
print(json.dumps({"bench": "nbd", "disk_mib": int(mib), "frame_size": fs, "cpus": cpus,
                  "rounds": len(rs.split()), "restore_median_s": round(r, 3),
                  "nbdcopy_median_s": round(n, 3), "nbdcopy_over_restore": round(n / r, 3)}))
PY
