#!/usr/bin/env bash
# gpt-junk.sh - a GPT disk with junk outside its partitions: the extracted image has zeros
# where the junk was and identical bytes everywhere else (partitions, both GPT headers and
# entry arrays); with --keep-unpartitioned it is identical everywhere.
. "$(dirname "$0")/lib.sh"
need sfdisk
make_keys

img="$T/gpt.img"
truncate -s 64M "$img"
sfdisk -q "$img" <<'SF'
label: gpt
start=2048, size=36864, type=0FC63DAF-8483-4772-8E79-3D7DE47D9477
start=61440, size=20480, type=0FC63DAF-8483-4772-8E79-3D7DE47D9477
SF
# partition contents (no filesystem: all of it is data)
head -c 18M /dev/urandom | dd of="$img" bs=1M seek=1 conv=notrunc status=none
head -c 10M /dev/urandom | dd of="$img" bs=1M seek=30 conv=notrunc status=none
# junk between the partitions and after the last one
head -c 11M /dev/urandom | dd of="$img" bs=1M seek=19 conv=notrunc status=none
head -c 20M /dev/urandom | dd of="$img" bs=1M seek=40 conv=notrunc status=none
sfdisk --verify "$img" >/dev/null 2>&1 || fail "test image is not a valid GPT disk"

expect="$T/expect.img"
cp --sparse=always "$img" "$expect"
dd if=/dev/zero of="$expect" bs=1M seek=19 count=11 conv=notrunc status=none
dd if=/dev/zero of="$expect" bs=1M seek=40 count=20 conv=notrunc status=none

mkdir "$T/out" "$T/x"
bundle "$img" "$T/out" > /dev/null
stream "$T/out/gpt.img.manifest.xml" "$T/out" | tar -x -C "$T/x" -f -
cmp "$expect" "$T/x/gpt.img" || fail "junk not zeroed or other bytes changed"
sfdisk --verify "$T/x/gpt.img" >/dev/null 2>&1 || fail "extracted GPT does not verify"
[ "$(sfdisk -d "$img")" = "$(sfdisk -d "$T/x/gpt.img" | sed "s|$T/x/|$T/|")" ] ||
	fail "partition table differs"

mkdir "$T/out2" "$T/x2"
bundle "$img" "$T/out2" --keep-unpartitioned > /dev/null
stream "$T/out2/gpt.img.manifest.xml" "$T/out2" | tar -x -C "$T/x2" -f -
cmp "$img" "$T/x2/gpt.img" || fail "--keep-unpartitioned changed bytes"
echo ok
