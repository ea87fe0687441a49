#!/usr/bin/env bash
# Regenerates blockdev/corpus/fs: small filesystems made by the real tools, each prefixed with
# the fuzz-fs driver selector byte (0 ext4, 1 vfat, 2 swap, 3 xfs, 4 ntfs) and gzipped (the
# replay test inflates them). Usage: blockdev/make-fuzz-fs-corpus.sh (run from anywhere).
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)/corpus/fs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir t t/d
head -c 3000 /dev/urandom >t/a
echo hello >t/d/b
export TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 MTOOLS_SKIP_CHECK=1 # small XFS; no mtools geometry check

emit() { # name selector image
	{ printf "\\x$(printf %02x "$2")"; cat "$3"; } | gzip -9 -n >"$out/$1.gz"
}
mk() { truncate -s "$2" "$1"; }

mk ext4.img 512K
mke2fs -q -F -t ext4 -b 1024 -g 1024 -N 64 -O ^has_journal,metadata_csum,64bit -d t ext4.img
emit ext4-csum 0 ext4.img
mk ext3.img 2M
mke2fs -q -F -t ext3 -b 1024 -g 1024 -N 64 -O meta_bg,^resize_inode -d t ext3.img
emit ext3-meta_bg 0 ext3.img
mk big.img 1M
mke2fs -q -F -t ext4 -b 1024 -O bigalloc,^has_journal -C 4096 -N 64 -d t big.img
emit ext4-bigalloc 0 big.img
mk old.img 512K
mke2fs -q -F -t ext4 -b 1024 -g 1024 -N 64 -O ^has_journal,^metadata_csum,uninit_bg -d t old.img
emit ext4-uninit_bg 0 old.img
mk fat12.img 200K
mkfs.vfat -F 12 fat12.img >/dev/null
mcopy -i fat12.img t/a ::/
emit fat12 1 fat12.img
mk fat16.img 3M
mkfs.vfat -F 16 -s 1 fat16.img >/dev/null
mcopy -i fat16.img t/a ::/
emit fat16 1 fat16.img
mk fat32.img 34M
mkfs.vfat -F 32 -s 1 fat32.img >/dev/null
mcopy -i fat32.img t/a ::/
emit fat32 1 fat32.img
mk swap.img 40K
mkswap swap.img >/dev/null 2>&1
emit swap 2 swap.img
mk xfs.img 32M
mkfs.xfs -q -f -d agcount=2 xfs.img
emit xfs-v5 3 xfs.img
mk xfs4.img 32M
mkfs.xfs -q -f -m crc=0 -d agcount=2 xfs4.img 2>/dev/null
emit xfs-v4 3 xfs4.img
# a frozen XFS (log covered, not clean), where loop mounts are permitted
cp xfs.img xfsf.img
mkdir mnt
if mount -o loop xfsf.img mnt 2>/dev/null; then
	cp t/a mnt/
	sync
	fsfreeze -f mnt
	cp xfsf.img xfs-frozen.img
	fsfreeze -u mnt
	umount mnt
	emit xfs-frozen 3 xfs-frozen.img
fi
mk ntfs.img 2M
mkntfs -q -F -Q ntfs.img
ntfscp ntfs.img t/a a
emit ntfs 4 ntfs.img
ls -la "$out"
