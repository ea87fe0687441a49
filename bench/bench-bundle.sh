#!/usr/bin/env bash
# bench-bundle.sh [DISK] - snapbundle bundle against the reference pipeline of
# classic-bundle-format.md §1.3 on one disk image, in one run:
#   reference: tar -c -h -S --owner 0 --group 0 | tee FIFO (sha1sum) | gzip -9 |
#              openssl enc -aes-128-cbc | split -b 10M
#   ours:      snapbundle bundle at the default level (and, for the size/speed table, 0-3)
# Reports wall time, CPU time (user+sys of every process), bytes read, output size, the
# speed-up, the ratio to gzip -9 of the very same tar stream, the serial-stage ceiling
# (`openssl speed` for AES-128-CBC and SHA-1) and the per-stage times of our job.
# Prints Markdown (results) and one JSON line per measurement; never passes or fails on time.
# DISK defaults to $BENCH_DISK, else one is made with make-realistic-disk.sh.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
SNAPBUNDLE="${SNAPBUNDLE:-$here/../build/tools/snapbundle}"
disk="${1:-${BENCH_DISK:-}}"
work="${BENCH_WORK:-/var/tmp/snapbundle-bench}"
mkdir -p "$work"
if [ -z "$disk" ]; then
	disk="$work/disk.img"
	[ -f "$disk" ] || "$here/make-realistic-disk.sh" "$disk" 5 >&2
fi
disk=$(realpath "$disk")
name=$(basename "$disk")
run="$work/run"
rm -rf "$run"
mkdir -p "$run/ours" "$run/ref" "$run/levels"

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$run/user.key" -out "$run/user.pem" -days 2 \
	-subj /CN=bench-user 2>/dev/null
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$run/ec2.key" -out "$run/ec2.pem" -days 2 \
	-subj /CN=bench-ec2 2>/dev/null

# measure TIMEFILE OUT ERR CMD...: runs CMD with stdout OUT and stderr ERR, writes "wall cpu"
# seconds (CPU: user + sys of every descendant) to TIMEFILE
measure() {
	python3 - "$@" <<'PY'
import resource, subprocess, sys, time
timefile, out, err, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
t = time.monotonic()
with open(out, "wb") as o, open(err, "wb") as e:
    subprocess.run(cmd, check=True, stdout=o, stderr=e)
w = time.monotonic() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(timefile, "w").write("%.3f %.3f\n" % (w, r.ru_utime + r.ru_stime))
PY
}

drop_caches() { # cold page cache where allowed (the reference reads through it)
	sync
	echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo "not permitted"
}

sum_sizes() { du -cb "$@" | tail -1 | cut -f1; }

echo "## Environment"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "- $(openssl version), $(gzip --version | head -1), $(tar --version | head -1)"
echo "- disk: $disk, $(du -b --apparent-size "$disk" | cut -f1) bytes apparent, $(du -B1 "$disk" | cut -f1) allocated"
echo "- load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

echo "## Serial-stage ceiling (openssl speed, 1 MiB blocks, one core)"
echo
for alg in aes-128-cbc sha1; do
	rate=$(openssl speed -seconds 3 -bytes 1048576 -evp "$alg" 2>/dev/null | tail -1 |
		awk '{ v = $NF; sub("k", "", v); printf "%.0f", v * 1000 / 1048576 }')
	echo "- $alg: $rate MiB/s"
done
echo

echo "## snapbundle bundle (default level, every CPU)"
echo
cache=$(drop_caches)
measure "$run/ours.time" "$run/ours.out" "$run/ours.err" "$SNAPBUNDLE" bundle -i "$disk" \
	-c "$run/user.pem" -k "$run/user.key" -u 123456789012 -r x86_64 --ec2cert "$run/ec2.pem" \
	-d "$run/ours" --progress=none --debug
read -r ours_wall ours_cpu < "$run/ours.time"
ours_size=$(sum_sizes "$run/ours/$name".part.*)
timings=$(sed -n 's/.*debug: timings //p' "$run/ours.err")
ours_read=$(sed -n 's/.*(read \(.*\), skipped.*/\1/p' "$run/ours.out")
cat "$run/ours.out" | sed 's/^/    /'
echo
echo "- page cache: $cache; wall $ours_wall s, CPU $ours_cpu s, output $ours_size bytes"
echo '- stage seconds (*_cpu: thread CPU time, deflate summed over workers; the rest wall time):' "\`$timings\`"
echo

echo "## Reference pipeline (§1.3)"
echo
key=$(openssl rand -hex 16)
iv=$(openssl rand -hex 16)
cat > "$run/ref.sh" <<SH
set -euo pipefail
mkfifo "$run/fifo"
sha1sum < "$run/fifo" > "$run/ref.sha1" &
tar -c -h -S --owner 0 --group 0 -C "$(dirname "$disk")" "$name" | tee "$run/fifo" | gzip -9 |
	openssl enc -e -aes-128-cbc -K $key -iv $iv | split -b 10M -d -a 4 - "$run/ref/$name.part."
wait
SH
cache=$(drop_caches)
measure "$run/ref.time" /dev/null "$run/ref.err" bash "$run/ref.sh"
read -r ref_wall ref_cpu < "$run/ref.time"
ref_size=$(sum_sizes "$run/ref/$name".part.*)
ref_read=$(du -B1 "$disk" | cut -f1) # tar -S reads every allocated byte (SEEK_DATA)
echo "    tar -c -h -S --owner 0 --group 0 -C DIR $name | tee FIFO | gzip -9 |"
echo "        openssl enc -e -aes-128-cbc -K KEY -iv IV | split -b 10M    (sha1sum < FIFO)"
echo
echo "- page cache: $cache; wall $ref_wall s, CPU $ref_cpu s, output $ref_size bytes, reads $ref_read bytes"
echo

echo "## Compression of the same tar stream: ours at each level vs gzip -9"
echo
m="$run/ours/$name.manifest.xml"
field() { python3 -c 'import sys, xml.etree.ElementTree as E
print(E.parse(sys.argv[1]).getroot().find(sys.argv[2]).text)' "$1" "$2"; }
unwrap() { field "$m" "image/$1" | xxd -r -p |
	openssl pkeyutl -decrypt -inkey "$run/user.key" -pkeyopt rsa_padding_mode:pkcs1; }
ukey=$(unwrap user_encrypted_key)
uiv=$(unwrap user_encrypted_iv)
cat "$run/ours/$name".part.* | openssl enc -d -aes-128-cbc -K "$ukey" -iv "$uiv" | gunzip \
	> "$run/stream.tar"
stream_bytes=$(stat -c %s "$run/stream.tar")
[ "$(sha1sum < "$run/stream.tar" | cut -d' ' -f1)" = "$(field "$m" image/digest)" ] ||
	{ echo "digest mismatch" >&2; exit 1; }
measure "$run/gz9.time" "$run/gz9.size" /dev/null bash -c "gzip -9 < '$run/stream.tar' | wc -c"
read -r gz9_wall gz9_cpu < "$run/gz9.time"
gz9=$(cat "$run/gz9.size")
rm -f "$run/stream.tar"
echo "| compressor | wall s | CPU s | gzip bytes | vs gzip -9 |"
echo "|---|---|---|---|---|"
echo "| gzip -9 (one core) | $gz9_wall | $gz9_cpu | $gz9 | 1.000 |"
for level in 0 1 2 3; do
	rm -rf "$run/levels/l$level" && mkdir "$run/levels/l$level"
	measure "$run/l.time" /dev/null "$run/l.err" "$SNAPBUNDLE" bundle -i "$disk" \
		-c "$run/user.pem" -k "$run/user.key" -u 123456789012 -r x86_64 \
		--ec2cert "$run/ec2.pem" -d "$run/levels/l$level" --level $level --progress=none \
		--debug
	read -r w c < "$run/l.time"
	gzb=$(sed -n 's/.*"gzip_bytes":\([0-9]*\).*/\1/p' "$run/l.err")
	echo "| snapbundle --level $level | $w | $c | $gzb | $(python3 -c "print('%.3f' % ($gzb / $gz9))") |"
	rm -rf "$run/levels/l$level"
done
echo

echo "## Summary"
echo
python3 - <<PY
ow, oc, rw, rc = $ours_wall, $ours_cpu, $ref_wall, $ref_cpu
print("| | wall s | CPU s | read | output bytes |")
print("|---|---|---|---|---|")
print("| reference (§1.3) | %.1f | %.1f | $ref_read | $ref_size |" % (rw, rc))
print("| snapbundle | %.1f | %.1f | $ours_read | $ours_size |" % (ow, oc))
print()
print("- wall-time speed-up: %.1fx; CPU-time ratio: %.1fx" % (rw / ow, rc / oc))
print("- output: ours / reference = %.3f (the reference also stores deleted junk and"
      " unpartitioned space)" % ($ours_size / $ref_size))
print("- tar stream: $stream_bytes bytes")
PY
echo "- load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo '{"bench":"bundle","ours_wall":'"$ours_wall"',"ours_cpu":'"$ours_cpu"',"ours_bytes":'"$ours_size"',"ref_wall":'"$ref_wall"',"ref_cpu":'"$ref_cpu"',"ref_bytes":'"$ref_size"',"gzip9_same_stream":'"$gz9"',"timings":'"$timings"'}'
rm -rf "$run/ours" "$run/ref"
