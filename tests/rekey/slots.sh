#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# rekey: recipients and passphrases added and removed; a wrong old key refused; the outside
# judge (store-reader.py, written from formats/STORE_FORMAT.md alone) reads the results.
. "$(dirname "$0")/lib.sh"

keys 1 2 3
make_disk disk.img 8
echo "first passphrase" > p1
echo "second passphrase" > p2
echo "wrong passphrase" > pw
"$B" store disk.img -o a.bin --recipient c1.pem --passphrase-file p1 --frame-size 64K \
	--scrypt-log-n 10 --progress=none > /dev/null
restores a.bin -k k1.pem

# a recipient added, one removed: the old key fails, the new one restores identically
"$B" rekey a.bin -k k1.pem --add-recipient c2.pem --remove-recipient c1.pem -o b.bin \
	--progress=none > /dev/null
restores b.bin -k k2.pem
restores b.bin --passphrase-file p1
refused b.bin "not one of the image's recipients" -k k1.pem
cmp -s a.bin b.bin && fail "b.bin is a.bin"
# no frame was touched: same digests, same stored bytes
[ "$(frame_digests a.bin)" = "$(frame_digests b.bin)" ] || fail "frames changed without --new-data-key"
"$B" verify b.bin -k k2.pem > /dev/null || fail "verify b.bin"
echo "ok: recipient added and removed"

# a recipient added, every old one kept
"$B" rekey b.bin --passphrase-file p1 --add-recipient c3.pem -o c.bin --progress=none > /dev/null
restores c.bin -k k3.pem
restores c.bin -k k2.pem
echo "ok: recipient added"

# passphrase: added, then the old one removed (both slots are scrypt: all passphrases go)
"$B" rekey c.bin -k k3.pem --add-passphrase p2 --scrypt-log-n 10 -o d.bin --progress=none > /dev/null
restores d.bin --passphrase-file p2
restores d.bin --passphrase-file p1
"$B" rekey d.bin -k k3.pem --remove-passphrase -o e.bin --progress=none > /dev/null
refused e.bin "no passphrase slot" --passphrase-file p1
refused e.bin "no passphrase slot" --passphrase-file p2
restores e.bin -k k3.pem
"$B" rekey e.bin -k k2.pem --add-passphrase p2 --scrypt-log-n 10 -o f.bin --progress=none > /dev/null
refused f.bin "wrong passphrase" --passphrase-file p1
restores f.bin --passphrase-file p2
# the outside judge (it tries one passphrase slot per image: f.bin has one)
python3 "$READER" f.bin judge --passphrase-file p2 || fail "store-reader.py rejects f.bin"
cmp disk.img judge/0.img || fail "store-reader.py restores f.bin differently"
rm -rf judge
echo "ok: passphrase added and removed"

# refusals: nothing is written
expect_refused() {
	local pat=$1
	shift
	rm -f out.bin
	if "$B" rekey "$@" --progress=none > /dev/null 2> cmd.err; then
		fail "rekey succeeded but should fail with '$pat': $*"
	fi
	grep -q -- "$pat" cmd.err || { cat cmd.err >&2; fail "expected '$pat' from rekey $*"; }
	[ ! -e out.bin ] || fail "out.bin left behind by: rekey $*"
	! ls -A | grep -q '\.tmp-[0-9]' || fail "temporary left behind by: rekey $*"
	echo "ok: refused '$pat'"
}
expect_refused "wrong passphrase" a.bin --passphrase-file pw --add-recipient c2.pem -o out.bin
expect_refused "not one of the image's recipients" a.bin -k k2.pem --add-recipient c3.pem -o out.bin
expect_refused "holds no key slot" a.bin -k k1.pem --remove-recipient c3.pem -o out.bin
expect_refused "refusing to remove every key slot" e.bin -k k3.pem --remove-recipient c2.pem \
	--remove-recipient c3.pem -o out.bin
expect_refused "no passphrase to remove" e.bin -k k3.pem --remove-passphrase -o out.bin
expect_refused "is the source of this re-key" a.bin -k k1.pem --add-recipient c2.pem -o a.bin
"$B" store disk.img -o plain.bin --frame-size 64K --progress=none > /dev/null
expect_refused "not encrypted" plain.bin -k k1.pem -o out.bin
# the original is untouched by all of it
restores a.bin -k k1.pem
echo "ok: slots"
