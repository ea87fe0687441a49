#!/usr/bin/env bash
# ext4-junk.sh - a GPT disk whose ext4 partition holds files and the bytes of deleted ones: the
# bundle leaves the free space out (zeros after extraction), and the extracted filesystem checks
# clean (e2fsck -fn) with every file's bytes intact (debugfs dump compared with the originals).
. "$(dirname "$0")/lib.sh"
need sfdisk mke2fs debugfs e2fsck
make_keys

tree="$T/tree"
mkdir -p "$tree/bin" "$tree/junk" "$tree/log"
cp /usr/bin/tar /usr/bin/openssl "$tree/bin/"
seq 1 100000 > "$tree/log/numbers.txt"
head -c 3M /dev/urandom > "$tree/random.bin"
for i in 1 2 3 4; do head -c 2M /dev/urandom > "$tree/junk/junk$i"; done
mke2fs -q -t ext4 -d "$tree" "$T/fs.img" 32M >/dev/null
printf 'rm /junk/junk%s\n' 1 2 3 4 > "$T/rm.cmd"
debugfs -w -f "$T/rm.cmd" "$T/fs.img" >/dev/null 2>&1
e2fsck -fn "$T/fs.img" >/dev/null 2>&1 || fail "test filesystem does not check"

img="$T/disk.img"
truncate -s 40M "$img"
sfdisk -q "$img" <<'SF'
label: gpt
start=2048, size=65536, type=0FC63DAF-8483-4772-8E79-3D7DE47D9477
SF
dd if="$T/fs.img" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none

mkdir "$T/out" "$T/x"
bundle "$img" "$T/out" > "$T/summary"
stream "$T/out/disk.img.manifest.xml" "$T/out" | tar -x -C "$T/x" -f -
dd if="$T/x/disk.img" of="$T/fs2.img" bs=1M skip=1 count=32 status=none
e2fsck -fn "$T/fs2.img" >/dev/null 2>&1 || fail "extracted filesystem does not check"
for f in bin/tar bin/openssl log/numbers.txt random.bin; do
	debugfs -R "dump /$f $T/dumped" "$T/fs2.img" >/dev/null 2>&1
	cmp "$tree/$f" "$T/dumped" || fail "$f differs after the round trip"
done
# the deleted junk did not travel: its bytes are nowhere in the extracted image
head -c 4096 "$tree/junk/junk1" > "$T/needle"
python3 -c 'import sys
hay = open(sys.argv[1], "rb").read()
needle = open(sys.argv[2], "rb").read()
sys.exit(1 if needle in hay else 0)' "$T/x/disk.img" "$T/needle" || fail "deleted junk was bundled"

# --no-fs-skip keeps free space: the extracted partition is byte-identical, junk included
mkdir "$T/out2" "$T/x2"
bundle "$img" "$T/out2" --no-fs-skip > "$T/summary2"
stream "$T/out2/disk.img.manifest.xml" "$T/out2" | tar -x -C "$T/x2" -f -
cmp "$img" "$T/x2/disk.img" || fail "--no-fs-skip: extracted image differs from the source"
echo ok
