#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The golden vector: two fixed volumes stored with a fixed seed (image id, data key, salt,
# nonces), clock and passphrase must give exactly the committed golden.bin, whose SHA-256 is
# also committed; with any number of threads. The committed golden.bin must restore to the
# volumes, with our reader and with the independent Python reader. A change of format shows
# here first. To regenerate after a deliberate format change (bump the version!):
#   tests/store/golden.sh --regenerate
. "$SRCDIR/tests/store/lib.sh"
G="$SRCDIR/tests/store"
python3 "$G/golden-input.py" .
echo "golden vector passphrase" > pass
store() {
	"$B" store a.img=/dev/xvda b.img=/dev/xvdb -o "$1" --passphrase-file pass --frame-size 32K \
		--name golden --description "golden vector" --arch x86_64 --boot-mode uefi \
		--owner 111122223333 --image-id ami-0123456789abcdef0 --tag purpose=golden \
		--test-seed 42 --creation-time 1700000000 --store-time 1700003600 --scrypt-log-n 10 \
		--threads "$2" --progress=none >/dev/null
}
store one.bin 1
store three.bin 3
cmp one.bin three.bin || fail "output depends on the thread count"
if [ "${1:-}" = "--regenerate" ]; then
	cp one.bin "$G/golden.bin"
	sha256sum one.bin | cut -d' ' -f1 > "$G/golden.sha256"
	echo "regenerated"; exit 0
fi
[ "$(sha256sum one.bin | cut -d' ' -f1)" = "$(cat "$G/golden.sha256")" ] ||
	fail "store output changed: sha256 $(sha256sum one.bin | cut -d' ' -f1)"
cmp one.bin "$G/golden.bin" || fail "store output differs from golden.bin"
"$B" restore "$G/golden.bin" -o out --passphrase-file pass --progress=none >/dev/null
cmp a.img out/xvda.img && cmp b.img out/xvdb.img || fail "golden.bin restores differently"
if python3 -c 'import cryptography' 2>/dev/null; then
	python3 "$READER" "$G/golden.bin" py --passphrase-file pass >/dev/null
	cmp a.img py/0.img && cmp b.img py/1.img || fail "Python reader disagrees"
fi
echo "golden: ok"
