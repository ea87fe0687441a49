#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every kind of damage is refused with its own clear error, a non-zero exit and nothing left in
# the destination: a flipped byte in any part, a truncated part, a missing part, parts listed
# out of order, a wrong private key, an edited manifest (with -c), a tar member named ../x, an
# entity bomb, a bad gzip CRC, several tar members, a link member, edited sizes and digests.
. "$(dirname "$0")/lib.sh"

img="$T/disk.img"
sparse_image "$img" $((24 * 1024 * 1024))
good=$(mkbundle "$img" "$T/good" --part-size 262144)
nparts=$(ls "$T/good"/disk.img.part.* | wc -l)
[ "$nparts" -ge 3 ] || { echo "need at least 3 parts, got $nparts"; exit 1; }
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/other.key" -out "$T/other.pem" \
	-subj /CN=other -days 2 2>/dev/null

# fresh copy of the good bundle in $T/case
copy() {
	rm -rf "$T/case" "$T/dest"
	cp -r "$T/good" "$T/case"
	mkdir "$T/dest"
}

# expect_fail NAME PATTERN [unbundle options...]: fails, says PATTERN, leaves $T/dest empty
expect_fail() {
	local name="$1" pattern="$2"
	shift 2
	local rc=0
	"$SNAPBUNDLE" unbundle -m "$T/case/disk.img.manifest.xml" -d "$T/dest" "$@" \
		>"$T/log" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ]; then
		fail "$name: unbundle succeeded"
	elif ! grep -q -- "$pattern" "$T/log"; then
		fail "$name: error does not say '$pattern': $(cat "$T/log")"
	else
		echo "ok $name: $(head -1 "$T/log")"
	fi
	if [ -n "$(ls -A "$T/dest")" ]; then
		fail "$name: left output behind: $(ls -A "$T/dest")"
	fi
}

K=(-k "$T/user.key")
last=$(ls "$T/good"/disk.img.part.* | tail -1)
last=$(basename "$last")
mid=$(printf 'disk.img.part.%0*d' ${#nparts} 1)

copy
"$SNAPBUNDLE" unbundle -m "$T/case/disk.img.manifest.xml" -d "$T/dest" "${K[@]}" >/dev/null ||
	fail "the untouched bundle does not unbundle"

for p in "$(printf 'disk.img.part.%0*d' ${#nparts} 0)" "$mid" "$last"; do
	copy
	size=$(stat -c %s "$T/case/$p")
	# flip bits of the byte there (writing a fixed byte would leave it alone 1 time in 256)
	old=$(od -An -tu1 -j $((size / 2)) -N1 "$T/case/$p" | tr -d ' ')
	printf "\\x$(printf %02x $((old ^ 0x5a)))" |
		dd of="$T/case/$p" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
	expect_fail "flipped byte in $p" "($T/case/$p) is damaged" "${K[@]}"
done
copy
truncate -s 100000 "$T/case/$mid"
expect_fail "truncated part" "($T/case/$mid) is damaged.*truncated" "${K[@]}"
copy
rm "$T/case/$mid"
expect_fail "missing part" "part 1 ($T/case/$mid) is missing" "${K[@]}"
copy
python3 - "$T/case/disk.img.manifest.xml" <<'PY'
import sys, re
p = sys.argv[1]
s = open(p).read()
parts = re.findall(r"<part index='\d+'>.*?</part>", s)
s = s.replace(parts[0] + parts[1], parts[1] + parts[0])
open(p, 'w').write(s)
PY
expect_fail "parts out of order" "parts are out of order" "${K[@]}"
copy
expect_fail "wrong private key" "wrong private key" -k "$T/other.key"
copy
sed -i 's#<architecture>x86_64</architecture>#<architecture>i386</architecture>#' \
	"$T/case/disk.img.manifest.xml"
expect_fail "edited manifest" "fails authentication" "${K[@]}" -c "$T/user.pem"
copy
expect_fail "signed by another key" "fails authentication" "${K[@]}" -c "$T/other.pem"
copy
python3 - "$T/case/disk.img.manifest.xml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
lol = "<!DOCTYPE manifest [<!ENTITY lol 'lol'>" + "".join(
    "<!ENTITY lol%d '%s'>" % (i, ("&lol%s;" % (i - 1 if i > 1 else "")) * 10) for i in range(1, 10)) + "]>"
s = s.replace("<?xml version='1.0'?>", "<?xml version='1.0'?>" + lol, 1)
s = s.replace("<user>123456789012</user>", "<user>&lol9;</user>")
open(p, 'w').write(s)
PY
expect_fail "entity bomb" "DOCTYPE" "${K[@]}"
copy
sed -i 's#<size>[0-9]*</size>#<size>1048576</size>#' "$T/case/disk.img.manifest.xml"
expect_fail "edited size" "manifest size is 1048576" "${K[@]}"
copy
sed -i 's#<bundled_size>[0-9]*</bundled_size>#<bundled_size>12345</bundled_size>#' \
	"$T/case/disk.img.manifest.xml"
expect_fail "edited bundled_size" "bundled_size is 12345" "${K[@]}"
copy
sed -i "s#<digest algorithm='SHA1'>[0-9a-f]*</digest><size>#<digest algorithm='SHA1'>0123456789012345678901234567890123456789</digest><size>#" \
	"$T/case/disk.img.manifest.xml"
expect_fail "edited image digest" "invalid digest of the tar stream" "${K[@]}"
copy
sed -i "s#<parts count='[0-9]*'>#<parts count='2'>#" "$T/case/disk.img.manifest.xml"
expect_fail "edited part count" "@count is 2" "${K[@]}"
copy
sed -i "s#<filename>$mid</filename>#<filename>../$mid</filename>#" \
	"$T/case/disk.img.manifest.xml"
expect_fail "part path" "not a plain file name" "${K[@]}"

# damage that survives the part digests: the reference pipeline fed with bad contents
rm -rf "$T/good"
printf 'x' >"$T/one"
python3 -c "
import tarfile, io, sys
t = tarfile.open(fileobj=sys.stdout.buffer, mode='w|', format=tarfile.GNU_FORMAT)
i = tarfile.TarInfo('../x'); i.size = 1; t.addfile(i, io.BytesIO(b'x')); t.close()" >"$T/dotdot.tar"
good=$(mkbundle "$T/one" "$T/good" --name disk.img --tar-cmd "cat '$T/dotdot.tar'")
copy
expect_fail "tar member ../x" "refused member name '../x'" "${K[@]}"
[ ! -e "$T/x" ] || fail "../x was written"

rm -rf "$T/good"
good=$(mkbundle "$img" "$T/good" --tar-cmd "tar -c -S -C '$T' disk.img one")
copy
expect_fail "two members" "more than one member" "${K[@]}"
rm -rf "$T/good"
ln -s disk.img "$T/link"
good=$(mkbundle "$T/one" "$T/good" --name disk.img --tar-cmd "tar -c -C '$T' link")
copy
expect_fail "symlink member" "is a symbolic link" "${K[@]}"
rm -rf "$T/good"
good=$(mkbundle "$img" "$T/good" --gzip-crc-flip --part-size 1048576)
copy
expect_fail "gzip CRC" "gzip CRC-32 or length mismatch" "${K[@]}"

# --no-verify skips the digests, but never the structure: still refused, nothing left
rm -rf "$T/good"
good=$(mkbundle "$img" "$T/good" --part-size 262144)
copy
printf '\x5a\x5a\x5a\x5a' | dd of="$T/case/$mid" bs=1 seek=1000 conv=notrunc 2>/dev/null
expect_fail "flipped part with --no-verify" "part 1:\|tar stream\|gzip" "${K[@]}" --no-verify

# verify finds the same damage and writes nothing
copy
old=$(od -An -tu1 -j 1000 -N1 "$T/case/$mid" | tr -d ' ')
printf "\\x$(printf %02x $((old ^ 0x5a)))" | dd of="$T/case/$mid" bs=1 seek=1000 conv=notrunc \
	2>/dev/null
if "$SNAPBUNDLE" verify -m "$T/case/disk.img.manifest.xml" >"$T/log" 2>&1; then
	fail "verify without a key accepted a damaged part"
else
	grep -q "is damaged" "$T/log" || fail "verify: unclear error: $(cat "$T/log")"
fi
copy
sed -i "s#<digest algorithm='SHA1'>[0-9a-f]*</digest><size>#<digest algorithm='SHA1'>0123456789012345678901234567890123456789</digest><size>#" \
	"$T/case/disk.img.manifest.xml"
"$SNAPBUNDLE" verify -m "$T/case/disk.img.manifest.xml" >/dev/null 2>&1 ||
	fail "verify without a key checks what needs a key"
if "$SNAPBUNDLE" verify -m "$T/case/disk.img.manifest.xml" -k "$T/user.key" >"$T/log" 2>&1; then
	fail "verify with a key accepted a wrong image digest"
fi
grep -q "invalid digest" "$T/log" || fail "verify -k: unclear error: $(cat "$T/log")"
finish
