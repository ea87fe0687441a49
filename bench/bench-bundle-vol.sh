#!/usr/bin/env bash
# bench-bundle-vol.sh [SIZE_MB [CONTENT_MB]] - snapbundle bundle-vol against the original's way
# on the same loop-mounted ext4 volume (SIZE_MB, default 512, holding CONTENT_MB, default 200,
# of this machine's /usr: libraries, binaries, text), in one run:
#   original: a fresh image (truncate, mkfs.ext4 with the volume's label and UUID, mount),
#             rsync -aHAXSx with the sensitive-file filter, unmount (copy); then
#             tar -S -c | gzip -9 | openssl enc -aes-128-cbc | split -b 10M (bundle)
#   ours:     snapbundle bundle-vol, its copy and bundle times from SNAP_RESULT_TIMINGS
# Reports wall time of each, the copy and the bundle apart, and the speed-up, as Markdown and
# one JSON line each; never passes or fails on time. Needs root (loop devices, mount).
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
SNAPBUNDLE="${SNAPBUNDLE:-$here/../build/tools/snapbundle}"
size=${1:-512}
content=${2:-200}
work=$(mktemp -d "${BENCH_WORK:-/var/tmp}/snapbundle-bench-bv.XXXXXX")
loops=()
mounts=()
cleanup() {
	for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
attach() { local l; l=$(losetup -f --show "$1"); loops+=("$l"); echo "$l"; }

uuid=3e0d9c4a-1b2f-4c6d-8e7f-9a0b1c2d3e4f
truncate -s "${size}M" "$work/vol.img"
mkfs.ext4 -q -F -L benchvol -U $uuid "$work/vol.img"
vl=$(attach "$work/vol.img")
mkdir -p "$work/vol" && mount "$vl" "$work/vol" && mounts+=("$work/vol")
# the content: files of /usr up to CONTENT_MB, their tree kept
python3 - $((content << 20)) >"$work/list" <<'PY'
import os, sys
left = int(sys.argv[1])
for d, dirs, files in os.walk('/usr'):
    dirs.sort()
    for n in sorted(files):
        p = os.path.join(d, n)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if os.path.isfile(p) and not os.path.islink(p) and st.st_size < 8 << 20:
            if st.st_size > left:
                sys.exit(0)
            left -= st.st_size
            print(p[1:])
PY
rsync -a --files-from="$work/list" / "$work/vol/" 2>/dev/null || true
mkdir -p "$work/vol/home/u/.ssh" && echo key >"$work/vol/home/u/.ssh/id_rsa"
sync
used=$(df -B1M --output=used "$work/vol" | tail -1 | tr -d ' ')

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/user.key" -out "$work/user.pem" \
	-days 2 -subj /CN=bench-user 2>/dev/null
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$work/ec2.key" -out "$work/ec2.pem" \
	-days 2 -subj /CN=bench-ec2 2>/dev/null
filter=(--exclude='#*#' --exclude='.#*' --exclude='*.sw' --exclude='*.swo' --exclude='*.swp'
	--exclude='*~' --exclude='*.pem' --exclude='*.priv' --exclude='*id_rsa*'
	--exclude='*id_dsa*' --exclude='*.gpg' --exclude='*.jks'
	--exclude='.ssh/authorized_keys' --exclude='.bash_history')

# the original's way
sync && echo 3 >/proc/sys/vm/drop_caches
mkdir -p "$work/ref" "$work/refmnt"
t0=$(now)
truncate -s "${size}M" "$work/ref/image"
mkfs.ext4 -q -F -L benchvol -U $uuid "$work/ref/image"
rl=$(attach "$work/ref/image")
mount "$rl" "$work/refmnt" && mounts+=("$work/refmnt")
rsync -aHAXSx --numeric-ids "${filter[@]}" "$work/vol/" "$work/refmnt/"
umount "$work/refmnt" && losetup -d "$rl" && sync
t1=$(now)
key=$(openssl rand -hex 16)
iv=$(openssl rand -hex 16)
(cd "$work/ref" && tar -S -c image | gzip -9 | openssl enc -aes-128-cbc -K "$key" -iv "$iv" |
	split -b 10M -d -a 3 - image.part.)
sync
t2=$(now)
ref_copy=$(echo "$t1 - $t0" | bc)
ref_bundle=$(echo "$t2 - $t1" | bc)
ref_bytes=$(cat "$work/ref"/image.part.* | wc -c)
rm -rf "$work/ref"

# ours
sync && echo 3 >/proc/sys/vm/drop_caches
mkdir -p "$work/ours"
t0=$(now)
"$SNAPBUNDLE" bundle-vol -v "$work/vol" -d "$work/ours" -p image -c "$work/user.pem" \
	-k "$work/user.key" -u 123456789012 -r x86_64 --ec2cert "$work/ec2.pem" --batch \
	--progress=none >"$work/ours.log"
sync
t1=$(now)
ours_total=$(echo "$t1 - $t0" | bc)
timings=$(sed -n 's/^  timings: *//p' "$work/ours.log")
ours_copy=$(python3 -c 'import json,sys; t=json.loads(sys.argv[1]); print("%.3f" % (t["image"] + t["copy"]))' "$timings")
ours_bundle=$(python3 -c 'import json,sys; print("%.3f" % json.loads(sys.argv[1])["bundle"])' "$timings")
ours_bytes=$(cat "$work/ours"/image.part.* | wc -c)
ref_total=$(echo "$ref_copy + $ref_bundle" | bc)

printf '\n| %s | wall s | copy s | bundle s | bundled bytes |\n|---|---|---|---|---|\n' \
	"${size} MiB volume, ${used} MiB used"
printf '| original (rsync + tar -S, gzip -9, openssl, split) | %.2f | %.2f | %.2f | %s |\n' \
	"$ref_total" "$ref_copy" "$ref_bundle" "$ref_bytes"
printf '| snapbundle bundle-vol | %.2f | %.2f | %.2f | %s |\n' "$ours_total" "$ours_copy" \
	"$ours_bundle" "$ours_bytes"
printf '\nspeed-up: %.1fx wall (%.1fx on the bundle)\n' "$(echo "$ref_total / $ours_total" | bc -l)" \
	"$(echo "$ref_bundle / $ours_bundle" | bc -l)"
printf '{"bench":"bundle-vol","size_mb":%s,"used_mb":%s,"ref_copy":%s,"ref_bundle":%s,"ours_total":%s,"ours_copy":%s,"ours_bundle":%s,"ref_bytes":%s,"ours_bytes":%s,"cpus":%s}\n' \
	"$size" "$used" "$ref_copy" "$ref_bundle" "$ours_total" "$ours_copy" "$ours_bundle" \
	"$ref_bytes" "$ours_bytes" "$(nproc)"
