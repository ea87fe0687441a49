#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The frame table spilled to a temporary file (SNAPBUNDLE_STORE_SPILL_FRAMES, store-internal.h)
# gives byte for byte the image of a store that keeps it in memory: two volumes in 4 KiB frames
# (over 10,000 frames, so several 4096-entry blocks), plain and encrypted and signed, spilled
# from the first entry, after one, at a block boundary and inside the second block. The
# spilled images restore to the volumes, and the Python reader (an outside judge) reads them.
. "$SRCDIR/tests/store/lib.sh"
command -v openssl >/dev/null || exit 77
truncate -s 48M a.img
seq 1 3000000 | dd of=a.img bs=4096 seek=3 conv=notrunc status=none
head -c 9000000 /dev/urandom | dd of=a.img bs=4096 seek=6000 conv=notrunc status=none
truncate -s 8M b.img
seq 1 900000 | dd of=b.img bs=4096 seek=1 conv=notrunc status=none
# Ed25519: its signatures are deterministic (ECDSA's are not), so two images can be compared
openssl genpkey -algorithm ed25519 -out ed.pem 2>/dev/null
echo "pass" > pass
FIX="--test-seed 11 --creation-time 1700000000 --store-time 1700000001 --scrypt-log-n 10
	--image-id ami-0123456789abcdef0 --frame-size 4K --threads 2 --progress=none"
for mode in plain sealed; do
	extra=""
	[ $mode = sealed ] && extra="--passphrase-file pass --sign-key ed.pem"
	# shellcheck disable=SC2086
	SNAPBUNDLE_STORE_SPILL_FRAMES= "$B" store a.img=/dev/xvda b.img=/dev/xvdb -o mem.$mode.bin \
		$FIX $extra --debug 2> mem.$mode.log
	! grep -q "was spilled" mem.$mode.log || fail "$mode: a small store spilled its table"
	for at in 0 1 4096 5000; do
		# shellcheck disable=SC2086
		SNAPBUNDLE_STORE_SPILL_FRAMES=$at "$B" store a.img=/dev/xvda b.img=/dev/xvdb \
			-o spill.$mode.$at.bin $FIX $extra --debug 2> spill.$mode.$at.log
		grep -q "was spilled" spill.$mode.$at.log ||
			fail "$mode: spill at $at did not spill"
		cmp mem.$mode.bin spill.$mode.$at.bin ||
			fail "$mode: the image spilled at $at differs from the one kept in memory"
	done
	out=spill.$mode.4096.bin
	rm -rf r py.$mode && mkdir r
	"$B" restore $out -o r/all --progress=none ${extra:+--passphrase-file pass} >/dev/null
	cmp r/all/xvda.img a.img && cmp r/all/xvdb.img b.img ||
		fail "$mode: restore of the spilled image differs"
	python3 "$READER" $out py.$mode ${extra:+--passphrase-file pass} >/dev/null ||
		fail "$mode: the Python reader refuses the spilled image"
	cmp py.$mode/0.img a.img && cmp py.$mode/1.img b.img ||
		fail "$mode: the Python reader's volumes differ"
done
n=$(grep -o "([0-9]* entries)" spill.plain.0.log | tr -dc 0-9)
[ "$n" -gt 8192 ] || fail "only $n frames: the table did not pass two blocks"
echo "ok: $n frames, spilled at 0, 1, 4096, 5000: byte-identical"
