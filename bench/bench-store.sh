#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-store.sh [SNAPBUNDLE] [DISK_MIB] [THREADS] [STORE OPTIONS...]: one run on one disk (tools/make-demo-disk.sh)
# of `snapbundle store` vs the classic bundle (when this build has it) vs
# `qemu-img convert -c -O qcow2` vs `zstd -T0` over the raw image; then `snapbundle restore`.
# Prints one JSON object per tool (configuration, seconds, output bytes, MiB/s of disk) and a
# Markdown table. Never passes or fails on a timing. The page cache is warmed first so every
# tool reads the disk from memory alike.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${1:-${SNAPBUNDLE:-$here/../build/tools/snapbundle}}
mib=${2:-${BENCH_DISK_MIB:-512}}
threads=${3:-${BENCH_THREADS:-$(nproc)}}
shift $(($# < 3 ? $# : 3))
store_opts=("$@")
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-store.XXXXXX")
trap 'rm -rf "$T"' EXIT

# BENCH_DISK=path uses that disk (e.g. bench/make-realistic-disk.sh's) instead of making one.
if [ -n "${BENCH_DISK:-}" ]; then
	disk=$BENCH_DISK
	data_mib=0
else
# The demo disk is mostly empty space; with BENCH_DATA_MIB (default: 60 % of the root partition) its root filesystem is
# rebuilt from that many MiB of this machine's /usr/lib and /usr/share files (binaries, text),
# so the tools have real data to compress.
"$here/../tools/make-demo-disk.sh" "$T/disk.img" "$mib" >/dev/null
disk=$T/disk.img
data_mib=${BENCH_DATA_MIB:-$((mib * 9 / 40))}
if [ "$data_mib" -gt 0 ]; then
	mkdir "$T/root"
	python3 - "$T/root" "$data_mib" <<'PY'
import os, shutil, sys
dst, budget = sys.argv[1], int(sys.argv[2]) << 20
for top in ("/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/lib"):
    for d, _, files in os.walk(top):
        for f in sorted(files):
            p = os.path.join(d, f)
            try:
                if not os.path.isfile(p) or os.path.islink(p):
                    continue
                n = os.path.getsize(p)
                if n > budget:
                    continue
                t = os.path.join(dst, os.path.relpath(p, "/"))
                os.makedirs(os.path.dirname(t), exist_ok=True)
                shutil.copyfile(p, t)
                budget -= n
            except OSError:
                pass
            if budget < 65536:
                sys.exit(0)
PY
	start=$(sfdisk --dump "$disk" | sed -n 's/.*start= *\([0-9]*\), size= *\([0-9]*\).*/\1 \2/p' |
		head -1)
	set -- $start
	mke2fs -q -F -t ext4 -d "$T/root" -L demo-root "$T/root.fs" $(($2 / 2))k
	dd if="$T/root.fs" of="$disk" bs=512 seek="$1" conv=notrunc,sparse status=none
	rm -rf "$T/root" "$T/root.fs"
fi
fi
size=$(stat -c %s "$disk")
cat "$disk" > /dev/null

rows=()
measure() { # name output-path command...
	local name=$1 out=$2
	shift 2
	sync
	local t0 t1
	t0=$(date +%s.%N)
	"$@" > /dev/null 2> "$T/err" || { echo "$name failed: $(cat "$T/err")" >&2; return 0; }
	t1=$(date +%s.%N)
	local secs bytes
	secs=$(echo "$t1 - $t0" | bc -l)
	bytes=$(du -sb "$out" | cut -f1)
	local rate
	rate=$(echo "$size / 1048576 / $secs" | bc -l)
	printf '{"tool":"%s","disk_bytes":%s,"threads":%s,"seconds":%.3f,"output_bytes":%s,"disk_mib_per_s":%.1f}\n' \
		"$name" "$size" "$threads" "$secs" "$bytes" "$rate"
	rows+=("$(printf '| %s | %.2f | %s | %.1f |' "$name" "$secs" "$bytes" "$rate")")
}

measure "snapbundle store" "$T/img.bin" \
	"$B" store "$disk" -o "$T/img.bin" --threads "$threads" --progress=none "${store_opts[@]}"
# the classic bundle: this build's, or BENCH_BUNDLE=path of a snapbundle that has it
BB=${BENCH_BUNDLE:-$B}
if "$BB" bundle --help > /dev/null 2>&1; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" \
		-days 1 -subj /CN=bench 2>/dev/null
	mkdir -p "$T/bundle"
	measure "snapbundle bundle (classic)" "$T/bundle" \
		"$BB" bundle -i "$disk" -c "$T/cert.pem" -k "$T/key.pem" -u 123456789012 \
		--ec2cert "$T/cert.pem" -d "$T/bundle" --threads "$threads" --progress=none
fi
if command -v qemu-img > /dev/null; then
	measure "qemu-img convert -c -O qcow2" "$T/disk.qcow2" \
		qemu-img convert -c -O qcow2 "$disk" "$T/disk.qcow2"
fi
if command -v zstd > /dev/null; then
	measure "zstd -T0" "$T/disk.zst" zstd -q -T0 "$disk" -o "$T/disk.zst"
fi
measure "snapbundle restore" "$T/restored.img" \
	"$B" restore "$T/img.bin" -o "$T/restored.img" --threads "$threads" --progress=none
if [ -f "$T/bundle/$(basename "$disk").manifest.xml" ]; then
	measure "snapbundle unbundle (classic)" "$T/unbundled.img" \
		"$BB" unbundle -m "$T/bundle/$(basename "$disk").manifest.xml" -k "$T/key.pem" \
		-o "$T/unbundled.img" --threads "$threads" --progress=none
fi
# (unpartitioned space is UNUSED by default, so the restore matches the disk only where it
# matters; tests/store/demo-disk.sh checks that)

echo
if [ -n "${BENCH_DISK:-}" ]; then
	echo "disk: $(numfmt --to=iec "$size") ($BENCH_DISK), threads $threads, $(nproc) CPUs," \
		"$(uname -m), store options: ${store_opts[*]:-none}, load $(cut -d' ' -f1-3 /proc/loadavg)"
else
echo "disk: $(numfmt --to=iec "$size") (tools/make-demo-disk.sh $mib, root filesystem with" \
	"$data_mib MiB of files), threads $threads, $(nproc) CPUs, $(uname -m)," \
	"store options: ${store_opts[*]:-none}, load $(cut -d' ' -f1-3 /proc/loadavg)"
fi
echo
echo "| tool | seconds | output bytes | disk MiB/s |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
