#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# rekey --new-data-key: every frame sealed again under a new data key without recompressing:
# restores identically, verify passes, every frame's stored bytes (and so its digest) differ,
# the old key fails, its record lengths are unchanged; the outside judge reads the result.
. "$(dirname "$0")/lib.sh"

keys 1 2
make_disk disk.img 12
echo "old passphrase" > p1
"$B" store disk.img -o a.bin --recipient c1.pem --passphrase-file p1 --frame-size 64K \
	--scrypt-log-n 10 --progress=none > /dev/null

# a recipient kept under a new key needs its certificate: refused without it
if "$B" rekey a.bin --passphrase-file p1 --new-data-key -o b.bin --progress=none 2> cmd.err; then
	fail "new data key kept a recipient without its certificate"
fi
grep -q "without its certificate" cmd.err || { cat cmd.err >&2; fail "no reason given"; }
[ ! -e b.bin ] || fail "b.bin left behind"

"$B" rekey a.bin --passphrase-file p1 --new-data-key --add-recipient c2.pem \
	--remove-recipient c1.pem --threads 2 -o b.bin --progress=none > /dev/null
restores b.bin -k k2.pem
restores b.bin --passphrase-file p1
refused b.bin "not one of the image's recipients" -k k1.pem
"$B" verify b.bin -k k2.pem > /dev/null || fail "verify b.bin"
"$B" verify b.bin --without-key > /dev/null || fail "verify b.bin --without-key"
python3 "$READER" b.bin judge --passphrase-file p1 || fail "store-reader.py rejects b.bin"
cmp disk.img judge/0.img || fail "store-reader.py restores b.bin differently"

# every frame re-sealed: no digest in common, same number of frames
frame_digests a.bin > da
frame_digests b.bin > db
[ "$(wc -l < da)" -eq "$(wc -l < db)" ] && [ "$(wc -l < da)" -gt 50 ] || fail "frame counts"
[ -z "$(sort da db | uniq -d)" ] || fail "frames kept their stored bytes under a new data key"
# nothing recompressed: the image grew only by what the key slots did
sa=$(stat -c %s a.bin); sb=$(stat -c %s b.bin)
[ $((sb - sa)) -lt 4096 ] && [ $((sa - sb)) -lt 4096 ] || fail "sizes $sa and $sb"

# the old key, from an old slot copied by hand onto the new image, cannot open the frames:
# the passphrase of a.bin opens a.bin's data key, which is not b.bin's
"$B" rekey b.bin -k k2.pem --new-data-key --add-recipient c2.pem --remove-passphrase \
	-o c.bin --progress=none > /dev/null
refused c.bin "no passphrase slot" --passphrase-file p1
restores c.bin -k k2.pem
frame_digests c.bin > dc
[ -z "$(sort db dc | uniq -d)" ] || fail "second new data key kept frames"
echo "ok: new data key"
