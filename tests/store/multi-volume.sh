#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Three volumes in one encrypted image: all restored to a directory, one restored alone, the
# Python reader (AES-GCM, scrypt, HKDF from the `cryptography` package) agrees.
. "$SRCDIR/tests/store/lib.sh"
make_disk a.img 40
truncate -s 16M b.img
head -c 2000000 /dev/urandom | dd of=b.img bs=4096 seek=100 conv=notrunc status=none
seq 1 100000 | dd of=b.img bs=4096 seek=2000 conv=notrunc status=none
truncate -s 5M c.img
printf 'not aligned tail' >> c.img
echo "correct horse battery staple" > pass

"$B" store a.img=/dev/xvda b.img=/dev/xvdb c.img=/dev/xvdc -o img.bin --passphrase-file pass \
	--frame-size 256K --progress=none
"$B" restore img.bin -o all --passphrase-file pass --progress=none
cmp a.img all/xvda.img && cmp b.img all/xvdb.img && cmp c.img all/xvdc.img ||
	fail "three-volume round trip differs"

# a failure after the outputs were opened leaves neither files nor the directory it created
cp img.bin bad.bin
read -r f3 _ < <(python3 "$SRCDIR/tests/store/tamper.py" bad.bin frames | awk '$1 == 3 { print $2 }')
python3 "$SRCDIR/tests/store/tamper.py" bad.bin flip $((f3 + 96 + 10))
if "$B" restore bad.bin -o fresh --passphrase-file pass --progress=none 2>err; then
	fail "a tampered image restored"
fi
grep -q "digest mismatch (corrupt frame)" err || { cat err >&2; fail "unexpected error"; }
[ ! -e fresh ] || fail "output directory left behind by a failed restore: $(ls -A fresh)"

"$B" restore img.bin --volume /dev/xvdb -o b-only.img --passphrase-file pass --progress=none
cmp b.img b-only.img || fail "volume restored alone differs"
"$B" restore - --volume xvdc -o c-only.img --passphrase-file pass --progress=none < img.bin
cmp c.img c-only.img || fail "volume restored alone from a pipe differs"

python3 -c 'import cryptography' 2>/dev/null || { echo "no python cryptography"; exit 0; }
python3 "$READER" img.bin py --passphrase-file pass
cmp a.img py/0.img && cmp b.img py/1.img && cmp c.img py/2.img || fail "Python reader differs"
echo "multi-volume: ok"
