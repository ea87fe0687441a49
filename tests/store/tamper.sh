#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every kind of tampering is detected, each with its own error, and no output is left behind:
# flipped bytes in a frame payload, a frame header, the index, the metadata (with and without a
# recomputed CRC), a truncated object, a frame grafted from another image made with the same
# passphrase, reordered frames, a wrong passphrase, a wrong key, an unknown incompat feature.
. "$SRCDIR/tests/store/lib.sh"
TP="python3 $SRCDIR/tests/store/tamper.py"
# random data: every frame is stored raw, 64 KiB each, so frames can be swapped and grafted
truncate -s 2M disk.img
head -c 1048576 /dev/urandom | dd of=disk.img bs=64K seek=4 conv=notrunc status=none
echo "the passphrase" > pass
echo "another one" > wrong
store() { "$B" store disk.img -o "$1" --passphrase-file pass --frame-size 64K --progress=none; }
store good.bin
store other.bin
"$B" restore good.bin -o ok.img --passphrase-file pass --progress=none
cmp disk.img ok.img

mkdir out
restore() { "$B" restore "$1" -o out/r.img --passphrase-file pass --progress=none; }
restore_pipe() { "$B" restore - -o out/r.img --passphrase-file pass --progress=none < "$1"; }

read -r f3 f3len < <($TP good.bin frames | awk '$1 == 3 { print $2, $3 }')
read -r meta metalen < <($TP good.bin record 2)
read -r idx idxlen < <($TP good.bin record 4)

# a flipped ciphertext byte: the digest of the stored payload catches it, before any key use
cp good.bin t.bin && $TP t.bin flip $((f3 + 96 + 1000))
expect_fail "digest mismatch (corrupt frame)" out/r.img -- restore t.bin
expect_fail "t.bin: frame 3 at offset $f3 (volume /dev/xvda" out/r.img -- restore t.bin
expect_fail "digest mismatch (corrupt frame)" out/r.img -- restore_pipe t.bin
expect_fail "stdin: frame 3 at offset $f3 (volume /dev/xvda" out/r.img -- restore_pipe t.bin
expect_fail "digest mismatch" out/r.img -- "$B" verify t.bin --passphrase-file pass
# ... and with the (unkeyed) digest recomputed too: the index disagrees, and read as a stream,
# before the index arrives, the GCM tag fails
cp good.bin t.bin && $TP t.bin redigest 3 1000
expect_fail "frame 3 at offset $f3 does not match the index" out/r.img -- restore t.bin
expect_fail "authentication failed (tampered frame" out/r.img -- restore_pipe t.bin
expect_fail "stdin: frame 3 at offset $f3 (volume /dev/xvda" out/r.img -- restore_pipe t.bin

cp good.bin t.bin && $TP t.bin flip $((f3 + 40))
expect_fail "t.bin: frame 3 at offset $f3: frame header CRC mismatch" out/r.img -- restore t.bin
expect_fail "stdin: frame at offset $f3: frame header CRC mismatch" out/r.img -- \
	restore_pipe t.bin

cp good.bin t.bin && $TP t.bin flip $((idx + 100))
expect_fail "t.bin: index record at offset $idx is corrupt (CRC mismatch)" out/r.img -- \
	restore t.bin
expect_fail "stdin: index record at offset $idx is corrupt (CRC mismatch)" out/r.img -- \
	restore_pipe t.bin
cp good.bin t.bin && $TP t.bin flip-fix $((idx + 100))
expect_fail "index authentication failed" out/r.img -- restore t.bin
expect_fail "index authentication failed" out/r.img -- restore_pipe t.bin

cp good.bin t.bin && $TP t.bin flip $((meta + 20))
expect_fail "metadata record at offset $meta is corrupt (CRC mismatch)" out/r.img -- restore t.bin
cp good.bin t.bin && $TP t.bin flip-fix $((meta + 20))
expect_fail "metadata authentication failed" out/r.img -- restore t.bin
expect_fail "metadata authentication failed" out/r.img -- restore_pipe t.bin

head -c $(($(stat -c %s good.bin) - 100)) good.bin > t.bin
expect_fail "image truncated: no footer" out/r.img -- restore t.bin
expect_fail "image truncated" out/r.img -- restore_pipe t.bin
head -c $((f3 + 500)) good.bin > t.bin
expect_fail "image truncated" out/r.img -- restore_pipe t.bin

cp good.bin t.bin && $TP t.bin graft other.bin 3
expect_fail "frame 3 at offset $f3 does not match the index" out/r.img -- restore t.bin
expect_fail "authentication failed (tampered frame, or a frame swapped in" out/r.img -- \
	restore_pipe t.bin

cp good.bin t.bin && $TP t.bin swap 2 3
expect_fail "does not match the index (moved, swapped or reordered frame)" out/r.img -- \
	restore t.bin
expect_fail "stdin: frames out of order" out/r.img -- restore_pipe t.bin

expect_fail "wrong passphrase" out/r.img -- \
	"$B" restore good.bin -o out/r.img --passphrase-file wrong --progress=none
expect_fail "is encrypted: give a passphrase or a private key" out/r.img -- \
	"$B" restore good.bin -o out/r.img --progress=none
if command -v openssl >/dev/null; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout k1.pem -out c1.pem -days 1 -subj /CN=one \
		2>/dev/null
	openssl req -x509 -newkey rsa:2048 -nodes -keyout k2.pem -out c2.pem -days 1 -subj /CN=two \
		2>/dev/null
	"$B" store disk.img -o rsa.bin --recipient c1.pem --frame-size 64K --progress=none
	"$B" restore rsa.bin -o rsa.img -k k1.pem --progress=none
	cmp disk.img rsa.img
	expect_fail "wrong key k2.pem: the key is not one of the image's recipients" out/r.img -- \
		"$B" restore rsa.bin -o out/r.img -k k2.pem --progress=none
	# a key above 4096 bits opens its slot too (OpenSSL wants room for a whole modulus)
	openssl req -x509 -newkey rsa:4160 -nodes -keyout k5.pem -out c5.pem -days 1 \
		-subj /CN=big 2>/dev/null
	"$B" store disk.img -o big.bin --recipient c5.pem --frame-size 64K --progress=none
	"$B" restore big.bin -o big.img -k k5.pem --progress=none
	cmp disk.img big.img
fi

cp good.bin t.bin && $TP t.bin incompat 0x4
expect_fail "unsupported incompatible feature 0x4" out/r.img -- restore t.bin
expect_fail "unsupported incompatible feature 0x4" out/r.img -- restore_pipe t.bin
expect_fail "unsupported incompatible feature 0x4" nothing -- "$B" inspect t.bin

# unencrypted images: a flipped payload byte is a digest mismatch
"$B" store disk.img -o plain.bin --frame-size 64K --progress=none
read -r p3 _ < <($TP plain.bin frames | awk '$1 == 3 { print $2, $3 }')
cp plain.bin t.bin && $TP t.bin flip $((p3 + 96 + 7))
expect_fail "digest mismatch (corrupt frame)" out/r.img -- \
	"$B" restore t.bin -o out/r.img --progress=none
expect_fail "t.bin: frame 3 at offset $p3 " out/r.img -- \
	"$B" restore t.bin -o out/r.img --progress=none
# a payload whose digests (frame header and index) were recomputed after an edit of its CRC
# trailer: the CRC-32 of the restored data catches it (unencrypted: the index tag is plain)
stored3=$($TP plain.bin frames | awk '$1 == 3 { print $3 - 96 }')
cp plain.bin t.bin && $TP t.bin redigest 3 $((stored3 - 1)) index
expect_fail "CRC mismatch of the restored data (corrupt frame)" out/r.img -- \
	"$B" restore t.bin -o out/r.img --progress=none
expect_fail "CRC mismatch of the restored data" out/r.img -- \
	"$B" restore - -o out/r.img --progress=none < t.bin
# a forged index (unencrypted: its SHA-256 tag can be recomputed) never drives a read past a
# frame buffer
cp plain.bin t.bin && $TP t.bin index-stored 0 4000000000
expect_fail "index entry of frame 0 is inconsistent" out/r.img -- \
	"$B" restore t.bin -o out/r.img --progress=none
# the scrypt cost is chosen by the image, before anything is authenticated: a cost beyond what
# store writes is refused at once (not 16 GiB and minutes of work), whatever the passphrase
for cost in "4194304 32 16" "524288 8 1" "262144 8 4" "1024 4096 1"; do
	cp good.bin t.bin && $TP t.bin scrypt-cost $cost
	SECONDS=0
	expect_fail "asks for scrypt N=${cost%% *}" out/r.img -- timeout 20 \
		"$B" restore t.bin -o out/r.img --passphrase-file pass --progress=none
	[ "$SECONDS" -le 5 ] || fail "a hostile scrypt cost ($cost) took $SECONDS s to refuse"
done
# the dearest cost store writes still opens (2^18, r 8: 256 MiB)
cp good.bin t.bin && $TP t.bin scrypt-cost 262144 8 1
expect_fail "wrong passphrase" out/r.img -- \
	"$B" restore t.bin -o out/r.img --passphrase-file pass --progress=none
# a scrypt cost readers would refuse is refused when storing (and 2^64 is no shift at all)
expect_fail "scrypt cost log2(N) must be 1 to 18, not 64" out/s.bin -- \
	"$B" store disk.img -o out/s.bin --passphrase-file pass --scrypt-log-n 64 --progress=none
expect_fail "scrypt cost log2(N) must be 1 to 18, not 19" out/s.bin -- \
	"$B" store disk.img -o out/s.bin --passphrase-file pass --scrypt-log-n 19 --progress=none
[ -z "$(ls -A out)" ] || fail "out/ is not empty"
echo "tamper: ok"
