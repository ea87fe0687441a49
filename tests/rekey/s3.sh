#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# rekey from and to S3 (the gateway of tests/s3/rgw.sh; skipped without it): an s3:// source
# read through the s3 reader, an s3:// output written as a multipart upload, judged by awscli
# (the object's bytes) and by restores with the new and the old key; --in-place refused.
. "$SRCDIR/tests/s3/store-lib.sh"
command -v openssl >/dev/null || exit 77
for n in 1 2; do
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "k$n.pem" -out "c$n.pem" -days 1 \
		-subj "/CN=rekey-$n" 2>/dev/null
done
head -c 14000000 /dev/urandom > disk.img
seq 1 300000 >> disk.img
truncate -s 24M disk.img
"$B" store disk.img -o a.bin --recipient c1.pem --frame-size 256K --level 0 --progress=none > /dev/null
aws s3 cp a.bin "s3://$bucket/src.bin" > /dev/null || fail "awscli upload"

# s3:// -> s3://, new data key, multipart
"$B" rekey "s3://$bucket/src.bin" -k k1.pem --new-data-key --add-recipient c2.pem \
	--remove-recipient c1.pem -o "s3://$bucket/dst.bin" --part-size 5M --progress=none
aws s3 cp "s3://$bucket/dst.bin" dst.bin > /dev/null || fail "awscli download"
aws s3api head-object --bucket "$bucket" --key dst.bin --query ETag --output text > etag
grep -q -- '-[0-9]' etag || fail "dst.bin is not a multipart object: $(cat etag)"
"$B" restore dst.bin -k k2.pem -o r.img --progress=none > /dev/null
cmp disk.img r.img || fail "dst.bin restores differently"
rm -f r.img
"$B" restore "s3://$bucket/dst.bin" -k k2.pem -o r.img --progress=none > /dev/null
cmp disk.img r.img || fail "s3://dst.bin restores differently"
rm -f r.img
if "$B" restore dst.bin -k k1.pem -o r.img --progress=none 2> /dev/null; then
	fail "the removed key still opens dst.bin"
fi
ok "s3 -> s3 with a new data key"

# s3:// -> local file and local file -> s3://, key slots only: frames byte-identical
"$B" rekey "s3://$bucket/src.bin" -k k1.pem --add-recipient c2.pem -o local.bin --progress=none
"$B" restore local.bin -k k2.pem -o r.img --progress=none > /dev/null
cmp disk.img r.img || fail "local.bin restores differently"
rm -f r.img
"$B" rekey local.bin -k k2.pem --remove-recipient c2.pem -o "s3://$bucket/back.bin" --progress=none
aws s3 cp "s3://$bucket/back.bin" back.bin > /dev/null || fail "awscli download"
"$B" restore back.bin -k k1.pem -o r.img --progress=none > /dev/null
cmp disk.img r.img || fail "back.bin restores differently"
[ "$(stat -c %s back.bin)" = "$(stat -c %s a.bin)" ] || fail "back.bin size"
ok "s3 -> local -> s3"

# refusals: in place on S3, an existing object without --force, the source as the output
if "$B" rekey "s3://$bucket/src.bin" -k k1.pem --add-recipient c2.pem --in-place 2> err; then
	fail "in place on S3"
fi
grep -q "in place" err || fail "no reason for in place on S3: $(cat err)"
if "$B" rekey local.bin -k k1.pem --add-recipient c2.pem -o "s3://$bucket/back.bin" 2> err; then
	fail "replaced an existing object without --force"
fi
if "$B" rekey "s3://$bucket/src.bin" -k k1.pem -o "s3://$bucket/src.bin" --force 2> err; then
	fail "replaced its own source"
fi
aws s3 cp "s3://$bucket/src.bin" src-again.bin > /dev/null
cmp a.bin src-again.bin || fail "the source object changed"
ok "s3 refusals"
