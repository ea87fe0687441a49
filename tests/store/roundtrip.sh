#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# store -> restore is byte-identical for a GPT disk with an ext4 made by mke2fs -d, from a file
# and from a pipe; the independent Python reader agrees; unencrypted frame digests are checked
# with sha256sum; e2fsck accepts the restored filesystem; outputs are never overwritten.
. "$SRCDIR/tests/store/lib.sh"
make_disk disk.img 48

"$B" store disk.img=/dev/xvda -o img.bin --name "web server" --description "test image" \
	--arch x86_64 --boot-mode uefi --owner 123456789012 --tag env=test --tag team=storage \
	--block-device-mapping ami=/dev/xvda --frame-size 1M --threads 2 --progress=none
"$B" restore img.bin -o out.img --progress=none
cmp disk.img out.img || fail "restored image differs"

# from a pipe, sequential path
cat img.bin | "$B" restore - -o pipe.img --progress=none
cmp disk.img pipe.img || fail "restore from a pipe differs"

# store to stdout, then restore
"$B" store disk.img -o - --progress=none > stdout.bin
"$B" restore stdout.bin -o out2.img --progress=none
cmp disk.img out2.img || fail "image stored to stdout differs"

# outside judge 1: an independent reader written from the spec
python3 "$READER" img.bin py >/dev/null
cmp disk.img py/0.img || fail "the Python reader restores a different image"

# outside judge 2: for three frames, sha256sum of the payload as stored in the file equals
# the frame digest, and gzip's CRC-32 of the volume bytes equals the payload's CRC trailer
"$B" inspect img.bin --frames > inspect.txt
grep -q "x-amz-meta-ami-name: web server" inspect.txt || fail "S3 metadata missing"
grep -q "x-amz-meta-ami-owner-account: 123456789012" inspect.txt || fail "owner missing"
grep -q "env: test" inspect.txt || fail "tag missing"
grep -q "partition 1: start 1048576" inspect.txt || fail "partition missing"
n=0
while read -r _ _ _ at _ _ _ off _ raw _ stored _ _ dig; do
	got=$(dd if=img.bin bs=64K skip=$((at + 96)) count="$stored" status=none \
		iflag=skip_bytes,count_bytes | sha256sum | cut -d' ' -f1)
	[ "$got" = "$dig" ] || fail "frame at $at: sha256sum $got, digest $dig"
	want=$(dd if=disk.img bs=64K skip="$off" count="$raw" status=none iflag=skip_bytes,count_bytes |
		gzip -c | tail -c 8 | head -c 4 | od -An -tx1 | tr -d ' \n')
	trailer=$(dd if=img.bin bs=64K skip=$((at + 96 + stored - 4)) count=4 status=none \
		iflag=skip_bytes,count_bytes | od -An -tx1 | tr -d ' \n')
	[ "$want" = "$trailer" ] || fail "frame at $at: gzip CRC $want, trailer $trailer"
	n=$((n + 1))
done < <(grep '^frame [0-9]' inspect.txt | head -3)
[ "$n" = 3 ] || fail "expected 3 frames in inspect --frames, got $n"

# e2fsck on the restored root filesystem
if command -v e2fsck >/dev/null; then
	dd if=out.img of=root.fs bs=512 skip=2048 count=40960 status=none
	e2fsck -fn root.fs >/dev/null || fail "e2fsck rejects the restored filesystem"
fi

"$B" verify img.bin | grep -q ok || fail "verify"
"$B" verify - < img.bin | grep -q ok || fail "verify from a pipe"

# never overwrite without --force
expect_fail "already exists" nonexistent -- "$B" store disk.img -o img.bin --progress=none
cp out.img keep.img
if "$B" restore img.bin -o keep.img --progress=none 2>/dev/null; then
	fail "restore overwrote without --force"
fi
"$B" restore img.bin -o keep.img --force --progress=none
cmp disk.img keep.img
"$B" store disk.img -o img.bin --force --progress=json 2> progress.json
grep -q '"percent":100.0' progress.json || fail "no final 100% progress line"
echo "roundtrip: ok"
