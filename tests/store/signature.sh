#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Signed images (RSA and ECDSA P-256): the signature verifies with `openssl dgst -verify` over
# the message the spec defines (outside judge) and with the Python reader; restore and verify
# accept the right signer and refuse another one, an unsigned image, a forged signature.
. "$SRCDIR/tests/store/lib.sh"
command -v openssl >/dev/null || exit 77
python3 -c 'import cryptography' 2>/dev/null || exit 77
TP="python3 $SRCDIR/tests/store/tamper.py"
truncate -s 4M disk.img
seq 1 100000 | dd of=disk.img bs=4096 seek=10 conv=notrunc status=none
openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.pem -out rsa.crt -days 1 -subj /CN=rsa \
	2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out ec.pem 2>/dev/null
openssl pkey -in ec.pem -pubout -out ec.pub 2>/dev/null
echo "pass" > pass

for kind in rsa ec; do
	"$B" store disk.img -o $kind.bin --sign-key $kind.pem --passphrase-file pass --progress=none
	mkdir -p dump.$kind
	STORE_READER_DUMP=dump.$kind python3 "$READER" $kind.bin py.$kind --passphrase-file pass |
		grep -q "signed by" || fail "$kind: the Python reader saw no signature"
	openssl pkey -pubin -inform DER -in dump.$kind/spki.der -out dump.$kind/pub.pem
	openssl dgst -sha256 -verify dump.$kind/pub.pem -signature dump.$kind/sig dump.$kind/msg |
		grep -q "Verified OK" || fail "$kind: openssl does not verify the signature"
	cmp <(openssl pkey -in $kind.pem -pubout) dump.$kind/pub.pem || fail "$kind: wrong signer key"
	"$B" inspect $kind.bin | grep -q "signature:    valid" || fail "$kind: inspect"
done
"$B" restore rsa.bin -o out.img --signer rsa.crt --passphrase-file pass --progress=none
cmp disk.img out.img
"$B" verify - --signer ec.pub --passphrase-file pass < ec.bin | grep -q ok
"$B" verify ec.bin --signer ec.pem --passphrase-file pass | grep -q ok

mkdir out
expect_fail "is signed by another key than rsa.crt" out/r.img -- \
	"$B" restore ec.bin -o out/r.img --signer rsa.crt --passphrase-file pass --progress=none
"$B" store disk.img -o plain.bin --progress=none
expect_fail "is not signed (a signature by rsa.crt is required)" out/r.img -- \
	"$B" restore plain.bin -o out/r.img --signer rsa.crt --progress=none
read -r soff slen < <($TP rsa.bin record 5)
cp rsa.bin t.bin && $TP t.bin flip-fix $((soff + slen - 32 - 10))
expect_fail "signature record authentication failed" out/r.img -- \
	"$B" restore t.bin -o out/r.img --passphrase-file pass --progress=none
# a forged signature with a consistent record: recompute tag and CRC around it
cp rsa.bin t.bin
python3 - t.bin "$soff" "$slen" <<'PY'
import hashlib, struct, sys, zlib
p, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = bytearray(open(p, "rb").read())
d[off + n - 32 - 10] ^= 1  # inside the signature bytes
rec = d[off:off + n]
rec[4:8] = b"\0\0\0\0"
rec[-32:] = hashlib.sha256(bytes(rec[:-32])).digest()
rec[4:8] = struct.pack("<I", zlib.crc32(bytes(rec)) & 0xFFFFFFFF)
d[off:off + n] = rec
open(p, "wb").write(d)
PY
expect_fail "signature verification failed" out/r.img -- \
	"$B" restore t.bin -o out/r.img --passphrase-file pass --progress=none
expect_fail "signature verification failed" out/r.img -- \
	"$B" restore - -o out/r.img --passphrase-file pass --progress=none < t.bin
echo "signature: ok"
