#!/usr/bin/env bash
# make-realistic-disk.sh OUTPUT [SIZE_GIB] - a realistic disk image for the bundle benchmark:
# GPT, sparse, at least 4 GiB:
#   p1 "root" ext4: /usr/bin binaries, docs (.gz), headers, generated logs (text), plus junk
#      files that are deleted again, so their bytes stay in the free space;
#   p2 "data" ext4: shared libraries, already-compressed files from this system (.deb, .xz,
#      .gz, .png, .zst, .jpg), text, plus deleted junk as well;
#   junk (random bytes) in the unpartitioned space after p2.
# Filesystems are built without mounting (mke2fs -d, then debugfs -w to delete the junk), so no
# root-only loop devices are needed. Prints what it made.
set -euo pipefail
export LC_ALL=C
out="${1:?usage: make-realistic-disk.sh OUTPUT [SIZE_GIB]}"
gib="${2:-5}"
[ "$gib" -ge 4 ] || { echo "size must be at least 4 GiB" >&2; exit 1; }
for p in mke2fs debugfs sfdisk python3; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 1; }
done
work=$(mktemp -d "$(dirname "$out")/.mkdisk.XXXXXX")
trap 'rm -rf "$work"' EXIT

# copy_some SRC_DIR DEST_DIR MAX_BYTES [find predicates...]: regular files up to a budget
copy_some() {
	local src="$1" dest="$2" max="$3"
	shift 3
	mkdir -p "$dest"
	find "$src" -xdev -type f "$@" -size -64M -printf '%s\t%p\n' 2>/dev/null | sort -k2 |
		awk -F'\t' -v max="$max" '{ if (t + $1 > max) exit; t += $1; print $2 }' |
		while read -r f; do
			d="$dest/$(dirname "${f#/}")"
			mkdir -p "$d"
			cp -p "$f" "$d/" 2>/dev/null || true
		done || true # awk stops at the budget: the producers' SIGPIPE is expected
}

# text_logs DIR MiB: log-like text (timestamps, hosts, counters), compressible like real logs
text_logs() {
	python3 - "$1" "$2" <<'PY'
import os, random, sys
d, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
r = random.Random(42)
hosts = ["web%02d" % i for i in range(20)]
paths = ["/", "/api/v1/items", "/login", "/static/app.js", "/img/logo.png", "/health"]
agents = ["curl/7.88.1", "Mozilla/5.0 (X11; Linux x86_64)", "python-requests/2.28"]
for n in range(max(1, mib // 8)):
    with open(os.path.join(d, "access.log.%d" % n), "w") as f:
        size = 0
        while size < 8 << 20:
            line = "%s 10.%d.%d.%d - - [21/Nov/2026:%02d:%02d:%02d +0000] \"GET %s HTTP/1.1\" %d %d \"-\" \"%s\" rt=%.3f\n" % (
                r.choice(hosts), r.randrange(256), r.randrange(256), r.randrange(256),
                r.randrange(24), r.randrange(60), r.randrange(60), r.choice(paths),
                r.choice([200, 200, 200, 304, 404, 500]), r.randrange(100000),
                r.choice(agents), r.random())
            f.write(line)
            size += len(line)
PY
}

# junk DIR N MiB: N random files of MiB each, to be deleted after the filesystem is built
junk() {
	mkdir -p "$1"
	for i in $(seq 1 "$2"); do
		head -c "$3M" /dev/urandom > "$1/junk$i"
	done
}

echo "building the root tree"
root="$work/root"
copy_some /usr/bin "$root" $((360 << 20))
copy_some /usr/share/doc "$root" $((120 << 20))
copy_some /usr/include "$root" $((100 << 20))
text_logs "$root/var/log" 40
junk "$root/junk" 12 16

echo "building the data tree"
data="$work/data"
copy_some /usr/lib/x86_64-linux-gnu "$data/lib" $((250 << 20)) -name '*.so*'
for d in /var/cache/apt/archives /usr/share; do
	copy_some "$d" "$data/compressed" $((110 << 20)) \( -name '*.deb' -o -name '*.xz' \
		-o -name '*.gz' -o -name '*.png' -o -name '*.zst' -o -name '*.jpg' -o -name '*.bz2' \)
done
text_logs "$data/logs" 24
junk "$data/junk" 10 16

echo "making filesystems"
mke2fs -q -t ext4 -L root -d "$root" "$work/root.fs" 2560M
mke2fs -q -t ext4 -L data -d "$data" "$work/data.fs" 1792M
for fs in root data; do
	tree="$work/$fs"
	(cd "$tree/junk" && ls) | sed "s|^|rm /junk/|" > "$work/rm.cmd"
	echo "rmdir /junk" >> "$work/rm.cmd"
	debugfs -w -f "$work/rm.cmd" "$work/$fs.fs" >/dev/null 2>&1
	e2fsck -fn "$work/$fs.fs" >/dev/null 2>&1 || { echo "$fs.fs does not check" >&2; exit 1; }
done

echo "assembling the disk"
rm -f "$out"
truncate -s "${gib}G" "$out"
sfdisk -q "$out" <<SF
label: gpt
start=2048, size=$((2560 * 2048)), type=0FC63DAF-8483-4772-8E79-3D7DE47D9477, name=root
size=$((1792 * 2048)), type=0FC63DAF-8483-4772-8E79-3D7DE47D9477, name=data
SF
dd if="$work/root.fs" of="$out" bs=1M seek=1 conv=sparse,notrunc status=none
dd if="$work/data.fs" of="$out" bs=1M seek=$((1 + 2560)) conv=sparse,notrunc status=none
# junk in the unpartitioned space after p2
head -c 64M /dev/urandom | dd of="$out" bs=1M seek=$((1 + 2560 + 1792 + 16)) conv=notrunc \
	status=none
sfdisk --verify "$out" >/dev/null
echo "made $out: $(du -h --apparent-size "$out" | cut -f1) apparent, $(du -h "$out" | cut -f1) allocated"
sfdisk -l "$out" | tail -3
