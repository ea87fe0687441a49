#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-store.sh [SNAPBUNDLE] [DISK_MIB] [THREADS] [STORE OPTIONS...]: one run on one disk (tools/make-demo-disk.sh)
# of `snapbundle store` vs the classic bundle (when this build has it) vs
# `qemu-img convert -c -O qcow2` vs `zstd -T0` over the raw image; then `snapbundle restore`
# and `snapbundle unbundle`. Prints one JSON object per tool (configuration, median seconds of
# BENCH_REPEAT runs and their range, CPU, output bytes, MiB/s of disk), a Markdown table and the
# store/bundle and restore/store ratios. Every tool reads its input from the page cache (warmed
# first), so they compare alike. Never passes or fails on a timing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${1:-${SNAPBUNDLE:-$here/../build/tools/snapbundle}}
mib=${2:-${BENCH_DISK_MIB:-512}}
threads=${3:-${BENCH_THREADS:-$(nproc)}}
shift $(($# < 3 ? $# : 3))
store_opts=("$@")
restore_opts=() # BENCH_RESTORE_OPTS: e.g. "--passphrase-file F" for an encrypted store
[ -z "${BENCH_RESTORE_OPTS:-}" ] || read -r -a restore_opts <<< "$BENCH_RESTORE_OPTS"
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

# Each snapbundle job runs BENCH_REPEAT times (default 3), interleaved (store, bundle, restore,
# unbundle, then again), and the median run is reported with the spread: the machines are
# shared and noisy, and interleaving gives every tool the same share of the noise. The
# reference tools (minutes, not seconds) run once.
repeat=${BENCH_REPEAT:-3}
run_once() { # name output-path command...: appends "seconds user sys bytes" to $T/res.<name>
	local name=$1 out=$2
	shift 2
	rm -rf "$out"
	[ "$name" != "snapbundle bundle (classic)" ] || mkdir -p "$out"
	sync
	local TIMEFORMAT='%R %U %S'
	{ time "$@" > /dev/null 2> "$T/err"; } 2> "$T/time" ||
		{ echo "$name failed: $(cat "$T/err")" >&2; return 1; }
	echo "$(cat "$T/time") $(du -sb "$out" | cut -f1)" >> "$T/res.${name// /_}"
}
rows=()
declare -A median
report() { # name: the median run of $T/res.<name>, its spread, and its CPU
	local name=$1 f="$T/res.${1// /_}"
	[ -s "$f" ] || return 0
	local n secs user sys bytes lo hi rate
	n=$(wc -l < "$f")
	read -r secs user sys bytes < <(sort -n "$f" | sed -n "$(((n + 1) / 2))p")
	lo=$(sort -n "$f" | head -1 | cut -d' ' -f1)
	hi=$(sort -n "$f" | tail -1 | cut -d' ' -f1)
	rate=$(echo "$size / 1048576 / $secs" | bc -l)
	median[$name]=$secs
	printf '{"tool":"%s","disk_bytes":%s,"threads":%s,"runs":%s,"seconds":%.3f,"seconds_min":%.3f,"seconds_max":%.3f,"cpu_user":%.2f,"cpu_sys":%.2f,"output_bytes":%s,"disk_mib_per_s":%.1f}\n' \
		"$name" "$size" "$threads" "$n" "$secs" "$lo" "$hi" "$user" "$sys" "$bytes" "$rate"
	rows+=("$(printf '| %s | %.2f | %.2f-%.2f | %.2f + %.2f | %s | %.1f |' "$name" "$secs" "$lo" \
		"$hi" "$user" "$sys" "$bytes" "$rate")")
}

# the classic bundle: this build's, or BENCH_BUNDLE=path of a snapbundle that has it
BB=${BENCH_BUNDLE:-$B}
have_bundle=false
if "$BB" bundle --help > /dev/null 2>&1; then
	have_bundle=true
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" \
		-days 1 -subj /CN=bench 2>/dev/null
fi
for ((i = 0; i < repeat; i++)); do
	run_once "snapbundle store" "$T/img.bin" \
		"$B" store "$disk" -o "$T/img.bin" --threads "$threads" --progress=none "${store_opts[@]}"
	if $have_bundle; then
		run_once "snapbundle bundle (classic)" "$T/bundle" \
			"$BB" bundle -i "$disk" -c "$T/cert.pem" -k "$T/key.pem" -u 123456789012 \
			--ec2cert "$T/cert.pem" -d "$T/bundle" --threads "$threads" --progress=none
	fi
	# every tool reads its input from the page cache (the disk was read above; store writes
	# its image with O_DIRECT, so read it once before it is restored)
	cat "$T/img.bin" > /dev/null
	run_once "snapbundle restore" "$T/restored.img" \
		"$B" restore "$T/img.bin" -o "$T/restored.img" --threads "$threads" --progress=none \
		"${restore_opts[@]}"
	if [ -f "$T/bundle/$(basename "$disk").manifest.xml" ]; then
		cat "$T/bundle"/* > /dev/null
		run_once "snapbundle unbundle (classic)" "$T/unbundled.img" \
			"$BB" unbundle -m "$T/bundle/$(basename "$disk").manifest.xml" -k "$T/key.pem" \
			-o "$T/unbundled.img" --threads "$threads" --progress=none
	fi
done
if command -v qemu-img > /dev/null && [ -z "${BENCH_NO_REFERENCE:-}" ]; then
	run_once "qemu-img convert -c -O qcow2" "$T/disk.qcow2" \
		qemu-img convert -c -O qcow2 "$disk" "$T/disk.qcow2"
fi
if command -v zstd > /dev/null && [ -z "${BENCH_NO_REFERENCE:-}" ]; then
	run_once "zstd -T0" "$T/disk.zst" zstd -q -T0 "$disk" -o "$T/disk.zst"
fi
for name in "snapbundle store" "snapbundle bundle (classic)" "qemu-img convert -c -O qcow2" \
	"zstd -T0" "snapbundle restore" "snapbundle unbundle (classic)"; do
	report "$name"
done
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
echo "| tool | seconds (median) | range | CPU user + sys | output bytes | disk MiB/s |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
ratio() { [ -n "${median[$1]:-}" ] && [ -n "${median[$2]:-}" ] &&
	printf '%s: %.2fx\n' "$3" "$(echo "${median[$2]} / ${median[$1]}" | bc -l)"; }
ratio "snapbundle store" "snapbundle bundle (classic)" "store vs bundle throughput (medians)" || true
ratio "snapbundle restore" "snapbundle store" "restore vs store throughput (medians)" || true
