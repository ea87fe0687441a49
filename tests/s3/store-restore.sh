#!/usr/bin/env bash
# store -o s3:// and back, judged by awscli: the object CreateStoreImageTask would name, a
# multipart upload (ETag "-N"), the x-amz-meta-ami-* metadata, the tags, the bytes equal to a
# local store of the same source; restore, verify (also --without-key) and inspect of s3://;
# a one-partition restore that fetches about that partition's frames.
. "$SRCDIR/tests/s3/store-lib.sh"
make_disk disk.img

"$B" store disk.img -o local.bin "${REPRO[@]}" --tag project=snap --tag env=test
"$B" store disk.img -o "s3://$bucket/images/" "${REPRO[@]}" --tag project=snap \
	--tag env=test --part-size 8M --acl public-read > store.out
cat store.out
url=$(sed -n 's/^stored \(s3:[^:]*\): .*/\1/p' store.out)
ami=$("$B" inspect local.bin | sed -n 's/^image id: *//p')
[[ "$ami" =~ ^ami-[0-9a-f]{17}$ ]] || fail "image id '$ami'"
[ "$url" = "s3://$bucket/images/$ami.bin" ] || fail "object $url, expected images/$ami.bin"
key="images/$ami.bin"
grep -q "etag \"[0-9a-f]*-[0-9]*\"" store.out || fail "no multipart ETag printed"
ok "stored $url"

# awscli: the multipart ETag, the metadata, the tags, the bytes
aws s3api head-object --bucket "$bucket" --key "$key" --output json > head.json
python3 - head.json "$ami" <<'EOF'
import json, re, sys
h = json.load(open(sys.argv[1]))
ami = sys.argv[2]
size = __import__("os").path.getsize("local.bin")
parts = -(-size // (8 << 20))
assert re.fullmatch(r'"[0-9a-f]{32}-%d"' % parts, h["ETag"]), ("ETag", h["ETag"], parts)
want = {
    "ami-name": "test image",
    "ami-description": "store into s3",
    "ami-registration-date": "2020-09-13T12:26:40.000Z",
    "ami-owner-account": "123456789012",
    "ami-store-date": "2023-11-14T22:13:20.000Z",
    "ami-id": ami,
}
assert h["Metadata"] == want, ("metadata", h["Metadata"], want)
assert h["ContentLength"] == size, ("size", h["ContentLength"], size)
print("head-object: ETag %s, metadata %s" % (h["ETag"], sorted(h["Metadata"])))
EOF
tags=$(aws s3api get-object-tagging --bucket "$bucket" --key "$key" \
	--query 'TagSet[].[Key,Value]' --output text | sort | tr '\t\n' '= ')
[ "$tags" = "env=test project=snap " ] || fail "tags: '$tags'"
ok "tags $tags"
aws s3api get-object-acl --bucket "$bucket" --key "$key" --output json > acl.json
python3 -c 'import json, sys
g = json.load(open(sys.argv[1]))["Grants"]
assert any(x["Grantee"].get("URI", "").endswith("/global/AllUsers") and
           x["Permission"] == "READ" for x in g), ("no public-read grant", g)' acl.json
ok "--acl public-read: AllUsers may read"
aws s3 cp --only-show-errors "s3://$bucket/$key" dl.bin
cmp dl.bin local.bin || fail "the object differs from a local store of the same source"
ok "awscli downloads the bytes of the local store"

# an existing object is not replaced without --force, and is with it
expect_fail "already exists" "$B" store disk.img -o "$url" "${REPRO[@]}"
"$B" store disk.img -o "$url" "${REPRO[@]}" --tag project=snap --tag env=test --force \
	--part-size 16M > force.out
grep -q 'etag "[0-9a-f]*-4"' force.out || fail "--force did not replace the object"
aws s3 cp --only-show-errors "s3://$bucket/$key" dl2.bin
cmp dl2.bin local.bin || fail "the replaced object differs"
ok "--force replaces it ($(grep -o 'etag [^,]*' force.out))"

# restore, verify, inspect of s3://
"$B" restore "$url" -o r.img --progress=none > restore.out
cat restore.out
cmp r.img disk.img || fail "restore from S3 differs from the source"
grep -q '^downloaded [0-9]* bytes' restore.out || fail "no bytes downloaded reported"
"$B" verify "$url" --progress=none | tee verify.out
grep -q ": ok, [0-9]* frames verified" verify.out || fail "verify s3://"
"$B" inspect "$url" > inspect.out
grep -q "^name: *test image" inspect.out || fail "inspect: no name"
grep -q "x-amz-meta-ami-id: $ami" inspect.out || fail "inspect: no S3 metadata"
grep -q "^image: *$url" inspect.out || fail "inspect: image $url"
ok "restore, verify and inspect of $url"

# an encrypted image: verify without its key checks the stored bytes
echo "s3 store secret" > pass
"$B" store disk.img -o "s3://$bucket/enc.bin" --passphrase-file pass --scrypt-log-n 10 \
	--progress=none >/dev/null
"$B" verify "s3://$bucket/enc.bin" --without-key --progress=none | tee vk.out
grep -q "ok without the key" vk.out || fail "verify --without-key"
"$B" verify "s3://$bucket/enc.bin" --passphrase-file pass --progress=none | grep -q ": ok," ||
	fail "verify with the passphrase"
"$B" restore "s3://$bucket/enc.bin" --passphrase-file pass -o e.img --progress=none >/dev/null
cmp e.img disk.img || fail "encrypted restore differs"
ok "encrypted: verify --without-key, verify and restore with the passphrase"

# one partition fetches about its own frames: no more than their records plus one 8 MiB chunk
# for each of the head, the tail and the one range of frames
"$B" inspect local.bin --frames > frames.txt
lo=$((165888 * 512)) hi=$(((165888 + 16384) * 512)) # partition 2
need=$(awk -v lo=$lo -v hi=$hi '/^frame [0-9]/ { off = $8; raw = $10; st = $12;
	if (off + raw > lo && off < hi) n += st + 112 } END { print n + 0 }' frames.txt)
"$B" restore "$url" --partition 2 -o p2.img --progress=none > p2.out
cmp p2.img <(dd if=disk.img bs=1M skip=81 count=8 status=none) || fail "partition 2 differs"
got=$(sed -n 's/^downloaded \([0-9]*\) bytes/\1/p' p2.out)
size=$(stat -c %s local.bin)
[ -n "$got" ] && [ "$need" -gt 0 ] || fail "downloaded '$got', needed '$need'"
[ "$got" -le $((need + 3 * (8 << 20))) ] ||
	fail "partition 2 fetched $got bytes: its frames are $need, the image $size"
[ "$got" -lt "$size" ] || fail "partition 2 fetched the whole image ($got of $size)"
ok "partition 2 fetched $got bytes (its frames $need, the image $size)"
echo "store-restore: ok"
