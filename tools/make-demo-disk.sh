#!/usr/bin/env bash
# make-demo-disk.sh [--force] OUT [SIZE_MIB] - builds the demo disk image, without root:
#   a sparse image file with a GPT (sfdisk) holding
#     1. an ext4 filesystem "demo-root" populated with files (mke2fs -d),
#     2. a vfat filesystem "DEMO-EFI" with a few files (mkfs.vfat + mcopy),
#     3. an empty partition "scratch" that is never written (a sparse hole),
#   and unpartitioned space at the end with 4 MiB of random junk in it.
# Each filesystem is built in a temporary file and copied in with dd conv=notrunc,sparse, so
# the image stays sparse. OUT appears only once complete (temp name + rename).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

force=0
if [ "${1:-}" = "--force" ]; then
	force=1
	shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 [--force] OUT [SIZE_MIB]" >&2
	exit 2
fi
out=$1
size_mib=${2:-256}
die() { echo "make-demo-disk: $*" >&2; exit 1; }
[[ "$size_mib" =~ ^[0-9]+$ ]] || die "invalid size '$size_mib': expected MiB as a number"
[ "$size_mib" -ge 128 ] || die "size $size_mib MiB is too small: at least 128 MiB"
[ -e "$out" ] && [ "$force" = 0 ] && die "$out exists (use --force to replace it)"
for t in sfdisk mke2fs mkfs.vfat mcopy dd truncate; do
	command -v "$t" >/dev/null || die "$t is missing (run tools/install-deps.sh)"
done

# Partition sizes in MiB; everything 1 MiB aligned.
ext4_mib=$((size_mib * 3 / 8))
vfat_mib=32
scratch_mib=$((size_mib / 8))
ext4_start=1
vfat_start=$((ext4_start + ext4_mib))
scratch_start=$((vfat_start + vfat_mib))
free_start=$((scratch_start + scratch_mib))
# junk in the middle of the unpartitioned tail, clear of the backup GPT in the last MiB
junk_start=$(((free_start + size_mib - 1) / 2 - 2))

tmp=$(mktemp -d "${TMPDIR:-/tmp}/demo-disk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
img="$out.tmp.$$"
trap 'rm -rf "$tmp"; rm -f "$img"' EXIT

# Files for the filesystems: text, a binary blob, a nested tree, a sparse file.
mkdir -p "$tmp/root/etc" "$tmp/root/home/demo/docs" "$tmp/root/var/lib"
echo "snapbundle-demo" > "$tmp/root/etc/hostname"
printf 'demo disk made by make-demo-disk.sh\n' > "$tmp/root/etc/motd"
for i in 1 2 3 4 5; do
	seq 1 $((i * 2000)) > "$tmp/root/home/demo/docs/numbers-$i.txt"
done
head -c $((3 * 1024 * 1024)) /dev/urandom > "$tmp/root/var/lib/blob.bin"
truncate -s 8M "$tmp/root/var/lib/sparse.img"
printf 'hello from the demo disk\n' > "$tmp/root/home/demo/README"

truncate -s "${size_mib}M" "$img"
sfdisk -q "$img" <<SFDISK
label: gpt
start=$((ext4_start * 2048)), size=$((ext4_mib * 2048)), type=L, name="root"
start=$((vfat_start * 2048)), size=$((vfat_mib * 2048)), type=U, name="efi"
start=$((scratch_start * 2048)), size=$((scratch_mib * 2048)), type=L, name="scratch"
SFDISK

mke2fs -q -F -t ext4 -L demo-root -d "$tmp/root" "$tmp/ext4.img" "${ext4_mib}M" >/dev/null
dd if="$tmp/ext4.img" of="$img" bs=1M seek="$ext4_start" conv=notrunc,sparse status=none

mkfs.vfat -n DEMO-EFI -C "$tmp/vfat.img" $((vfat_mib * 1024)) >/dev/null
mkdir -p "$tmp/efi"
printf 'default demo\ntimeout 3\n' > "$tmp/efi/loader.conf"
head -c 65536 /dev/urandom > "$tmp/efi/bootx64.efi"
MTOOLS_SKIP_CHECK=1 mmd -i "$tmp/vfat.img" ::/EFI
MTOOLS_SKIP_CHECK=1 mcopy -i "$tmp/vfat.img" "$tmp/efi/loader.conf" "$tmp/efi/bootx64.efi" ::/EFI/
dd if="$tmp/vfat.img" of="$img" bs=1M seek="$vfat_start" conv=notrunc,sparse status=none

dd if=/dev/urandom of="$img" bs=1M seek="$junk_start" count=4 conv=notrunc status=none

mv -f "$img" "$out"
trap 'rm -rf "$tmp"' EXIT
echo "made $out: ${size_mib} MiB, GPT: 1 ext4 'demo-root' ${ext4_mib} MiB, 2 vfat 'DEMO-EFI'" \
	"${vfat_mib} MiB, 3 empty ${scratch_mib} MiB (sparse), $((size_mib - free_start)) MiB" \
	"unpartitioned with 4 MiB of junk at ${junk_start} MiB"
