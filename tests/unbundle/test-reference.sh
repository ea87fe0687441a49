#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Bundles made by the reference pipeline (GNU tar -S | gzip -9 | openssl enc, split as §1.8,
# manifest per §2 signed with the openssl CLI) restore byte-identical: old-GNU sparse, PAX
# sparse 0.0 / 0.1 / 1.0, ustar, bsdtar's PAX sparse, every manifest version, part sizes that
# are not multiples of the AES block, GPT and MBR disks made by sfdisk.
. "$(dirname "$0")/lib.sh"

img="$T/disk.img"
sparse_image "$img" $((48 * 1024 * 1024))

# the judge agrees that the helper signs what §3 says
m=$(mkbundle "$img" "$T/gnu" --part-size 1048576)
python3 -c "import re,sys; s=open(sys.argv[1]).read(); \
open(sys.argv[2],'wb').write(bytes.fromhex(re.search('<signature>(.*)</signature>', s).group(1)))" \
	"$m" "$T/sig.bin"
openssl x509 -pubkey -noout -in "$T/user.pem" >"$T/user.pub"
openssl dgst -sha1 -verify "$T/user.pub" -signature "$T/sig.bin" "$T/gnu/disk.img.signed" \
	>/dev/null || fail "openssl does not verify the helper's signature"

unbundle_ok old-gnu-sparse "$m" "$img" -c "$T/user.pem"
unbundle_ok one-thread "$m" "$img" --threads 1
unbundle_ok many-threads "$m" "$img" --threads 7
# ec2-unbundle's options: -s parts directory, -d destination, name from the manifest
mkdir -p "$T/dest"
"$SNAPBUNDLE" unbundle -m "$m" -k "$T/user.key" -s "$T/gnu" -d "$T/dest" >/dev/null ||
	fail "unbundle with -s and -d failed"
cmp "$img" "$T/dest/disk.img" || fail "-d output differs"
# holes stay holes: far less disk than the apparent size
used=$(du -k "$T/dest/disk.img" | cut -f1)
[ "$used" -lt 8192 ] || fail "restored image is not sparse ($used KiB used)"
# an existing output is never replaced without --force
if "$SNAPBUNDLE" unbundle -m "$m" -k "$T/user.key" -d "$T/dest" >"$T/log" 2>&1; then
	fail "existing output replaced without --force"
fi
"$SNAPBUNDLE" unbundle -m "$m" -k "$T/user.key" -d "$T/dest" --force >/dev/null ||
	fail "--force did not replace the output"
cmp "$img" "$T/dest/disk.img" || fail "--force output differs"

for v in 0.0 0.1 1.0; do
	m=$(mkbundle "$img" "$T/pax$v" --part-size 1000000 --tar-args="-S --format=pax --sparse-version=$v")
	unbundle_ok "pax-sparse-$v" "$m" "$img" -c "$T/user.pem"
done
small="$T/small.img"
head -c 3000000 /dev/urandom >"$small"
m=$(mkbundle "$small" "$T/ustar" --part-size 333333 --tar-args="--format=ustar")
unbundle_ok ustar "$m" "$small" -c "$T/user.pem"
m=$(mkbundle "$img" "$T/gnu-nosparse" --part-size 4194304 --tar-args="--format=gnu")
unbundle_ok gnu-not-sparse "$m" "$img"
if command -v bsdtar >/dev/null; then
	m=$(mkbundle "$img" "$T/bsd" --tar-cmd "bsdtar -c --format=pax --read-sparse -f - -C '$T' disk.img")
	unbundle_ok bsdtar-pax-sparse "$m" "$img" -c "$T/user.pem"
	m=$(mkbundle "$small" "$T/bsd-ustar" --tar-cmd "bsdtar -c --format=ustar -f - -C '$T' small.img")
	unbundle_ok bsdtar-ustar "$m" "$small"
fi
for v in 2007-08-29 20070829 3; do
	m=$(mkbundle "$img" "$T/v$v" --version "$v" --part-size 2097152)
	unbundle_ok "manifest-$v" "$m" "$img" -c "$T/user.pem"
done

# partitioned disks made by sfdisk, with filesystems where mkfs is at hand
if command -v sfdisk >/dev/null; then
	for label in gpt dos; do
		d="$T/$label.img"
		truncate -s 64M "$d"
		printf 'label: %s\n,16M,L\n,,L\n' "$label" | sfdisk -q "$d" >/dev/null
		if command -v mkfs.ext4 >/dev/null; then
			mkfs.ext4 -q -F -E offset=$((1024 * 1024)) "$d" 15M >/dev/null 2>&1 || true
		fi
		printf 'payload %s\n' "$label" | dd of="$d" bs=1 seek=$((40 * 1024 * 1024)) \
			conv=notrunc 2>/dev/null
		m=$(mkbundle "$d" "$T/b-$label" --part-size 1048576)
		unbundle_ok "sfdisk-$label" "$m" "$d" -c "$T/user.pem"
		# the judge reads the same table back
		sfdisk -d "$d" | grep -v '^device' >"$T/want" || true
		"$SNAPBUNDLE" unbundle -m "$m" -k "$T/user.key" -o "$T/r-$label.img" >/dev/null
		sfdisk -d "$T/r-$label.img" | grep -v '^device' >"$T/have" || true
		sed -i "s#$T/r-$label.img#X#g" "$T/have"
		sed -i "s#$d#X#g" "$T/want"
		cmp -s "$T/want" "$T/have" || fail "sfdisk reads a different $label table back"
	done
fi

# verify: every check, nothing written
before=$(ls -A "$T/gnu" | wc -l)
"$SNAPBUNDLE" verify -m "$T/gnu/disk.img.manifest.xml" -c "$T/user.pem" >/dev/null ||
	fail "verify without a key failed"
"$SNAPBUNDLE" verify -m "$T/gnu/disk.img.manifest.xml" -k "$T/user.key" -c "$T/user.pem" \
	>/dev/null || fail "verify with a key failed"
[ "$(ls -A "$T/gnu" | wc -l)" = "$before" ] || fail "verify wrote something"

# verify's one dispatch point: a path instead of -m is a store image, checked by the store verifier
if "$SNAPBUNDLE" store --help >/dev/null 2>&1; then
	"$SNAPBUNDLE" store "$small" -o "$T/s.bin" --progress=none >/dev/null 2>&1 ||
		fail "store failed"
	"$SNAPBUNDLE" verify "$T/s.bin" --progress=none >"$T/log" 2>&1 ||
		fail "verify IMAGE.bin failed: $(cat "$T/log")"
	old=$(od -An -tu1 -j 5000 -N1 "$T/s.bin" | tr -d ' ')
	printf "\\x$(printf %02x $((old ^ 0x20)))" | dd of="$T/s.bin" bs=1 seek=5000 conv=notrunc \
		2>/dev/null
	if "$SNAPBUNDLE" verify "$T/s.bin" --progress=none >"$T/log" 2>&1; then
		fail "verify IMAGE.bin accepted a damaged store image"
	fi
fi
finish
