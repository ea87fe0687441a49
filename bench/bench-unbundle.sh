#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Throughput of `snapbundle unbundle` against the reference ec2-unbundle pipeline
# (`cat parts | openssl enc -d | gunzip | tar -x`) on the same bundle, one run each.
#
# usage: bench-unbundle.sh [SNAPBUNDLE]   (env: BENCH_DIR, BENCH_SIZE_MB, BENCH_THREADS,
#                                           BENCH_GENERATED=1)
# When the tree has `snapbundle bundle`, the same is measured on a bundle our writer made of the
# same image, judged outside the extents it does not keep (tests/unbundle/cmp-unused.py).
# The bundle is made by the reference pipeline (tests/unbundle/mkbundle.py: GNU tar -S |
# gzip -9 | openssl enc, 10 MiB parts) from bench/make-realistic-disk.sh when it exists, else
# from a generated image: a sparse disk with BENCH_SIZE_MB MiB apparent size whose first
# quarter is data (half random, half compressible text). Prints one JSON line per tool and a
# ratio line; never fails on a timing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
SNAPBUNDLE=${1:-${SNAPBUNDLE:-$src/build/tools/snapbundle}}
size_mb=${BENCH_SIZE_MB:-512}
threads=${BENCH_THREADS:-0}
dir=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/snap-bench-unbundle-XXXXXX")}
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/user.key" -out "$dir/user.pem" \
	-subj /CN=bench -days 2 2>/dev/null
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$dir/ec2.key" -out "$dir/ec2.pem" \
	-subj /CN=ec2 -days 2 2>/dev/null

img="$dir/disk.img"
if [ -x "$here/make-realistic-disk.sh" ] && [ "${BENCH_GENERATED:-0}" != 1 ]; then
	"$here/make-realistic-disk.sh" "$img" >/dev/null
	kind="make-realistic-disk.sh"
else
	python3 - "$img" "$size_mb" <<'PY'
import os, sys, random
path, mb = sys.argv[1], int(sys.argv[2])
size = mb << 20
rnd = random.Random(1)
f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(f, size)
data = size // 4
words = [b'kernel', b'block', b'snapshot', b'bundle', b'ext4', b'inode', b'0x1f8b', b'root']
off = 0
while off < data:
    n = 1 << 20
    if (off >> 22) % 2:
        buf = os.urandom(n)
    else:
        buf = b' '.join(rnd.choice(words) for _ in range(n // 5))[:n]
    os.pwrite(f, buf, off)
    off += 4 << 20          # 1 MiB of data every 4 MiB: many holes between
os.close(f)
PY
	kind="generated: ${size_mb} MiB sparse, 1 MiB data per 4 MiB, half random"
fi
apparent=$(stat -c %s "$img")
command -v /usr/bin/time >/dev/null || { echo "bench-unbundle: needs /usr/bin/time (package time)" >&2; exit 77; }
field() { python3 -c "import re,sys; print(re.search('<$2[^>]*>([^<]+)</$2>', open(sys.argv[1]).read()).group(1))" "$1"; }
unhex() { python3 -c "import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]))" "$(field "$1" "$2")"; }

# judge RESTORED: byte-identical to the image, or, for our writer's bundles (which keep neither
# filesystem free space nor unpartitioned space), identical outside the extents inspect calls
# unused and zero inside them
judge() {
	if [ "$judge_mode" = cmp ]; then
		cmp "$img" "$1" || echo "warning: $1 differs from the image" >&2
	else
		python3 "$src/tests/unbundle/cmp-unused.py" "$img" "$1" "$dir/map.json" >/dev/null ||
			echo "warning: $1 differs from the image outside its unused extents" >&2
	fi
}

# measure LABEL MANIFEST: the reference pipeline and snapbundle unbundle on one bundle
measure() {
	local label="$1" m="$2" bdir
	bdir=$(dirname "$m")
	local bundled name key iv parts
	bundled=$(field "$m" bundled_size)
	name=$(python3 -c "import re,sys; print(re.search('<image>\\s*<name>([^<]+)</name>', open(sys.argv[1]).read()).group(1))" "$m")
	key=$(unhex "$m" user_encrypted_key | openssl pkeyutl -decrypt -inkey "$dir/user.key")
	iv=$(unhex "$m" user_encrypted_iv | openssl pkeyutl -decrypt -inkey "$dir/user.key")
	parts=$(python3 -c "import re,sys; print(' '.join(sys.argv[2] + '/' + f for f in re.findall('<filename>([^<]+)</filename>', open(sys.argv[1]).read())))" "$m" "$bdir")
	sync
	rm -rf "$dir/ref" "$dir/ours.img"
	mkdir -p "$dir/ref"
	# wall, user and system seconds of each whole run (children included): on a shared
	# machine the CPU seconds are the steadier number
	/usr/bin/time -f '%e %U %S' -o "$dir/t-ref" bash -c \
		"cat $parts | openssl enc -d -aes-128-cbc -K $key -iv $iv | gunzip | tar -x -C '$dir/ref'"
	judge "$dir/ref/$name"
	rm -rf "$dir/ref"
	sync
	/usr/bin/time -f '%e %U %S' -o "$dir/t-ours" "$SNAPBUNDLE" unbundle -m "$m" \
		-k "$dir/user.key" -o "$dir/ours.img" --threads "$threads" --progress=none >/dev/null
	judge "$dir/ours.img"
	rm -f "$dir/ours.img"
	python3 - "$dir/t-ref" "$dir/t-ours" "$apparent" "$bundled" "$kind" "$(nproc)" "$threads" \
		"$(cut -d' ' -f1 /proc/loadavg)" "$label" <<'PY'
import json, sys
ref = [float(x) for x in open(sys.argv[1]).read().split()[-3:]]
ours = [float(x) for x in open(sys.argv[2]).read().split()[-3:]]
apparent, bundled = int(sys.argv[3]), int(sys.argv[4])
cfg = {"image": sys.argv[5], "bundle": sys.argv[9], "apparent_bytes": apparent,
       "bundled_bytes": bundled, "cpus": int(sys.argv[6]), "threads": int(sys.argv[7]),
       "loadavg": float(sys.argv[8])}
for name, (wall, user, sys_) in (("reference", ref), ("snapbundle", ours)):
    print(json.dumps(dict(cfg, tool=name, wall_s=wall, cpu_s=round(user + sys_, 2),
                          image_mib_per_s=round(apparent / max(wall, 1e-3) / 2**20, 1),
                          bundle_mib_per_s=round(bundled / max(wall, 1e-3) / 2**20, 1))))
print(json.dumps({"bundle": sys.argv[9],
                  "wall_ratio_reference_over_snapbundle": round(ref[0] / max(ours[0], 1e-3), 2),
                  "cpu_ratio_reference_over_snapbundle":
                      round((ref[1] + ref[2]) / max(ours[1] + ours[2], 1e-3), 2)}))
PY
}

# 1. a bundle made by the reference pipeline
m=$(python3 "$src/tests/unbundle/mkbundle.py" "$img" "$dir/b" --cert "$dir/user.pem" \
	--key "$dir/user.key" --ec2-cert "$dir/ec2.pem")
judge_mode=cmp
measure reference-pipeline "$m"
rm -rf "$dir/b"

# 2. a bundle made by snapbundle bundle, when this tree has it
if "$SNAPBUNDLE" bundle --help >/dev/null 2>&1; then
	mkdir -p "$dir/s"
	"$SNAPBUNDLE" bundle -i "$img" -c "$dir/user.pem" -k "$dir/user.key" -u 123456789012 \
		-r x86_64 --ec2cert "$dir/ec2.pem" -d "$dir/s" -p disk.img --progress=none >/dev/null
	"$SNAPBUNDLE" inspect "$img" --json --extents >"$dir/map.json"
	judge_mode=unused
	measure snapbundle "$dir/s/disk.img.manifest.xml"
fi
