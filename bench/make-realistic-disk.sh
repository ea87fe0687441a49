#!/usr/bin/env bash
# make-realistic-disk.sh [--shape ext4|mixed] [--full] OUTPUT [SIZE_GIB] - a realistic disk image
# for the bundle benchmark, GPT, at least 4 GiB (5 GiB for --shape mixed).
# --shape ext4 (the default):
#   p1 "root" ext4: /usr/bin binaries, docs (.gz), headers, generated logs (text), plus junk
#      files that are deleted again, so their bytes stay in the free space;
#   p2 "data" ext4: shared libraries, already-compressed files from this system (.deb, .xz,
#      .gz, .png, .zst, .jpg), text, plus deleted junk as well;
#   junk (random bytes) in the unpartitioned space after p2.
#   Filesystems are built without mounting (mke2fs -d, then debugfs -w to delete the junk), so
#   no root-only loop devices are needed.
# --shape mixed (the disk of issue 17):
#   p1 "root" ext4 as above (2560 MiB);
#   p2 "data" XFS (1792 MiB): shared libraries, already-compressed files, text logs, random-data
#      files that stay, and junk files written, synced and deleted again;
#   p3 "swap" (512 MiB): stale random pages under a fresh mkswap header;
#   junk in the unpartitioned space after p3.
#   Debian 12's mkfs.xfs cannot populate from a directory, so the XFS image is loop-mounted
#   (root and loop devices needed: exits 77 with a message where it cannot mount) and checked
#   with xfs_repair -n after the unmount.
# --full: every byte of OUTPUT allocated and written, zeros where nothing else was written, as a
#   block device reads; without it OUTPUT is sparse.
# Prints what it made.
set -euo pipefail
export LC_ALL=C
usage="usage: make-realistic-disk.sh [--shape ext4|mixed] [--full] OUTPUT [SIZE_GIB]"
shape=ext4
full=0
while [ $# -gt 0 ]; do
	case "$1" in
	--shape) shape="${2:?$usage}"; shift 2 ;;
	--shape=*) shape="${1#--shape=}"; shift ;;
	--full) full=1; shift ;;
	--) shift; break ;;
	-*) echo "$usage" >&2; exit 1 ;;
	*) break ;;
	esac
done
out="${1:?$usage}"
gib="${2:-5}"
case "$shape" in
ext4) [ "$gib" -ge 4 ] || { echo "size must be at least 4 GiB" >&2; exit 1; } ;;
mixed) [ "$gib" -ge 5 ] || { echo "size must be at least 5 GiB for --shape mixed" >&2; exit 1; } ;;
*) echo "unknown shape $shape (ext4 or mixed)" >&2; exit 1 ;;
esac
tools="mke2fs debugfs sfdisk python3"
[ "$shape" = mixed ] && tools="$tools mkfs.xfs xfs_repair mkswap mount umount"
for p in $tools; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 1; }
done
work=$(mktemp -d "$(dirname "$out")/.mkdisk.XXXXXX")
cleanup() {
	if mountpoint -q "$work/mnt" 2>/dev/null; then
		umount "$work/mnt" || return # never remove the files of a mounted filesystem
	fi
	rm -rf "$work"
}
trap cleanup EXIT

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
if [ "$shape" = ext4 ]; then
	copy_some /usr/lib/x86_64-linux-gnu "$data/lib" $((250 << 20)) -name '*.so*'
	budget=110
else
	# smaller than the ext4 shape's, for about 1 GB of DATA with the random files and swap
	copy_some /usr/lib/x86_64-linux-gnu "$data/lib" $((160 << 20)) -name '*.so*'
	budget=80
fi
for d in /var/cache/apt/archives /usr/share; do
	copy_some "$d" "$data/compressed" $((budget << 20)) \( -name '*.deb' -o -name '*.xz' \
		-o -name '*.gz' -o -name '*.png' -o -name '*.zst' -o -name '*.jpg' -o -name '*.bz2' \)
done
text_logs "$data/logs" 24
if [ "$shape" = ext4 ]; then
	junk "$data/junk" 10 16
else
	junk "$data/random" 3 16 # random data that stays: incompressible files in use
fi

echo "making filesystems"
mke2fs -q -t ext4 -L root -d "$root" "$work/root.fs" 2560M
fslist=root
if [ "$shape" = ext4 ]; then
	mke2fs -q -t ext4 -L data -d "$data" "$work/data.fs" 1792M
	fslist="root data"
else
	truncate -s 1792M "$work/data.fs"
	mkfs.xfs -q -f -L data "$work/data.fs"
	mkdir "$work/mnt"
	mount -o loop "$work/data.fs" "$work/mnt" || {
		echo "cannot mount the XFS image $work/data.fs with a loop device (needs root):" \
			"skipped" >&2
		exit 77
	}
	cp -a "$data/." "$work/mnt/"
	# junk written back before it is deleted, or delayed allocation never writes it
	junk "$work/mnt/junk" 10 16
	sync -f "$work/mnt"
	rm -r "$work/mnt/junk"
	umount "$work/mnt"
	xfs_repair -n "$work/data.fs" >/dev/null 2>&1 || { echo "data.fs does not check" >&2; exit 1; }
	# a swap area that was in use: stale pages (random bytes) under a fresh header
	truncate -s 512M "$work/swap.fs"
	for i in 0 1 2 3 4 5 6 7; do
		head -c 8M /dev/urandom | dd of="$work/swap.fs" bs=1M seek=$((1 + i * 60)) \
			conv=notrunc status=none
	done
	# quiet: its warnings about a swap file's permissions and holes do not apply to a partition
	msg=$(mkswap -L swap "$work/swap.fs" 2>&1) || { echo "$msg" >&2; exit 1; }
fi
for fs in $fslist; do
	tree="$work/$fs"
	(cd "$tree/junk" && ls) | sed "s|^|rm /junk/|" > "$work/rm.cmd"
	echo "rmdir /junk" >> "$work/rm.cmd"
	debugfs -w -f "$work/rm.cmd" "$work/$fs.fs" >/dev/null 2>&1
	e2fsck -fn "$work/$fs.fs" >/dev/null 2>&1 || { echo "$fs.fs does not check" >&2; exit 1; }
done

echo "assembling the disk"
rm -f "$out"
if [ "$full" = 1 ]; then
	# written, not fallocated: an unwritten extent would still read as a hole to SEEK_DATA
	dd if=/dev/zero of="$out" bs=1M count=$((gib << 10)) status=none
	sparse=
else
	truncate -s "${gib}G" "$out"
	sparse=sparse,
fi
if [ "$shape" = ext4 ]; then
	sfdisk -q "$out" <<SF
label: gpt
start=2048, size=$((2560 * 2048)), type=0FC63DAF-8483-4772-8E79-3D7DE47D9477, name=root
size=$((1792 * 2048)), type=0FC63DAF-8483-4772-8E79-3D7DE47D9477, name=data
SF
	end=$((1 + 2560 + 1792))
	nparts=2
else
	sfdisk -q "$out" <<SF
label: gpt
start=2048, size=$((2560 * 2048)), type=0FC63DAF-8483-4772-8E79-3D7DE47D9477, name=root
size=$((1792 * 2048)), type=0FC63DAF-8483-4772-8E79-3D7DE47D9477, name=data
size=$((512 * 2048)), type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=swap
SF
	dd if="$work/swap.fs" of="$out" bs=1M seek=$((1 + 2560 + 1792)) conv=${sparse}notrunc \
		status=none
	end=$((1 + 2560 + 1792 + 512))
	nparts=3
fi
dd if="$work/root.fs" of="$out" bs=1M seek=1 conv=${sparse}notrunc status=none
dd if="$work/data.fs" of="$out" bs=1M seek=$((1 + 2560)) conv=${sparse}notrunc status=none
# junk in the unpartitioned space after the last partition
head -c 64M /dev/urandom | dd of="$out" bs=1M seek=$((end + 16)) conv=notrunc status=none
sfdisk --verify "$out" >/dev/null
if [ "$full" = 1 ]; then
	alloc=$(($(stat -c '%b * %B' "$out")))
	[ "$alloc" -ge "$(stat -c %s "$out")" ] ||
		{ echo "$out is not fully allocated ($alloc bytes)" >&2; exit 1; }
fi
echo "made $out: $(du -h --apparent-size "$out" | cut -f1) apparent, $(du -h "$out" | cut -f1) allocated"
sfdisk -l "$out" | tail -$((nparts + 1))
