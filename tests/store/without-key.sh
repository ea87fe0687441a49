#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `verify --without-key`: an encrypted image's stored bytes are checked against its index with
# no key (a service scrubbing images it cannot read); the signature, when there is one,
# authenticates the index and metadata; every edit of a frame is still caught; the frame
# digests agree with sha256sum over the bytes as stored (outside judge).
. "$SRCDIR/tests/store/lib.sh"
command -v openssl >/dev/null || exit 77
make_disk disk.img 32
echo "scrub passphrase" > pass
openssl req -x509 -newkey rsa:2048 -nodes -keyout sign.key -out sign.pem -days 2 \
	-subj /CN=signer 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 \
	-subj /CN=other 2>/dev/null
st() { "$B" store disk.img -o "$1" --passphrase-file pass --scrypt-log-n 10 --frame-size 256K \
	--progress=none "${@:2}" >/dev/null; }
st plain-enc.bin
st signed.bin --sign-key sign.key

"$B" verify plain-enc.bin --without-key > out.txt
grep -q "ok without the key" out.txt || fail "unsigned: $(cat out.txt)"
grep -q "NOT authenticated" out.txt || fail "unsigned image claimed authenticated: $(cat out.txt)"
"$B" verify signed.bin --without-key --signer sign.pem > out.txt
grep -q "authenticated by the signature" out.txt || fail "signed: $(cat out.txt)"
"$B" verify - --without-key < signed.bin > out.txt
grep -q "authenticated by the signature" out.txt || fail "signed, from a pipe: $(cat out.txt)"
# without the key means without it: both given is a usage error
expect_fail 'give either a key or "without key"' nothing -- \
	"$B" verify signed.bin --without-key --passphrase-file pass
expect_fail "signed by another key" nothing -- \
	"$B" verify signed.bin --without-key --signer other.pem

# outside judge: sha256sum of each frame's payload as stored (ciphertext) equals its digest
"$B" inspect signed.bin --frames > inspect.txt
n=0
while read -r _ _ _ at _ _ _ _ _ _ _ stored _ _ _ dig; do
	got=$(dd if=signed.bin bs=64K skip=$((at + 96)) count="$stored" status=none \
		iflag=skip_bytes,count_bytes | sha256sum | cut -d' ' -f1)
	[ "$got" = "$dig" ] || fail "frame at $at: sha256sum $got, digest $dig"
	n=$((n + 1))
done < <(grep '^frame [0-9]' inspect.txt)
[ "$n" -gt 3 ] || fail "expected several frames, got $n"

TP="python3 $SRCDIR/tests/store/tamper.py"
read -r f2 _ < <($TP signed.bin frames | awk '$1 == 2 { print $2, $3 }')
cp signed.bin t.bin && $TP t.bin flip $((f2 + 96 + 77))
expect_fail "frame 2 at offset $f2 (volume /dev/xvda, offset" nothing -- \
	"$B" verify t.bin --without-key
expect_fail "digest mismatch (corrupt frame)" nothing -- "$B" verify - --without-key < t.bin
# the digests recomputed in the frame and the index (whose tag needs the key): the index no
# longer matches its signature
cp signed.bin t.bin && $TP t.bin redigest 2 77 index
expect_fail "signature verification failed" nothing -- "$B" verify t.bin --without-key
# ... and an unsigned image edited that way passes without the key but not with it: the
# output says so, and the key catches it
cp plain-enc.bin t.bin && $TP t.bin redigest 2 77 index
"$B" verify t.bin --without-key | grep -q "NOT authenticated" ||
	fail "an unsigned edited image must be reported unauthenticated"
expect_fail "index authentication failed" nothing -- \
	"$B" verify t.bin --passphrase-file pass
# the option is where a user looks for it: verify IMAGE.bin --help (not the bundle's usage)
"$B" verify t.bin --help > help.txt
grep -q -- "--without-key" help.txt || fail "verify IMAGE.bin --help hides --without-key"
grep -q -- "-m MANIFEST" help.txt && fail "verify IMAGE.bin --help prints the bundle's usage"
echo "without-key: ok"
