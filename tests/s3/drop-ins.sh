#!/usr/bin/env bash
# drop-ins.sh - upload-bundle, download-bundle, delete-bundle and abort against the gateway, judged
# by the AWS CLI (/usr/bin/aws) and by unbundling: the objects' MD5 ETags are md5sum's of the
# local parts, the parts aws downloads unbundle to the source image, a second upload skips every
# part and a part removed from the bucket is the only one sent again, download-bundle resumes part
# by part and catches a part changed in the bucket, delete-bundle leaves nothing (and --clear no
# bucket), abort leaves no multipart upload, and a wrong secret, a missing bucket and a missing
# manifest fail at once naming the object. Skips (77) without the gateway's variables or aws.
. "$(dirname "$0")/../bundle/lib.sh"

for v in SNAP_TEST_S3_ENDPOINT SNAP_TEST_S3_ACCESS_KEY SNAP_TEST_S3_SECRET_KEY SNAP_TEST_S3_REGION; do
	[ -n "${!v:-}" ] || { echo "SKIP: $v is not set (tests/s3/rgw.sh start DIR)"; exit 77; }
done
AWS=/usr/bin/aws
[ -x "$AWS" ] || { echo "SKIP: $AWS missing"; exit 77; }
need md5sum cmp

bucket="snaptest-dropins-$$-$RANDOM"
# Only what this test sets, for aws and for snapbundle's AWS chain alike.
export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none"
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
export AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY"
export AWS_DEFAULT_REGION="$SNAP_TEST_S3_REGION"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_REGION
aws() { timeout 120 "$AWS" --endpoint-url "$SNAP_TEST_S3_ENDPOINT" "$@"; }
cleanup() {
	"$AWS" --endpoint-url "$SNAP_TEST_S3_ENDPOINT" s3 rb "s3://$bucket" --force >/dev/null 2>&1 || true
	rm -rf "$T"
}
trap cleanup EXIT
step() { echo "-- $*"; }
# sb COMMAND ...: snapbundle with the endpoint; the credentials come from the environment
# (AWS_ACCESS_KEY_ID...) unless the test passes -a/-s.
sb() { local c="$1"; shift; timeout 120 "$SNAPBUNDLE" "$c" --url "$SNAP_TEST_S3_ENDPOINT" "$@"; }
# keys PREFIX: "key etag" of every object under PREFIX, sorted
keys() {
	aws s3api list-objects --bucket "$bucket" --prefix "$1" --query 'Contents[].[Key,ETag]' \
		--output text | grep -v '^None$' | tr -d '"' | tr '\t' ' ' | sort || true
}

make_keys
img="$T/img"
head -c 1500000 /dev/urandom > "$img"
head -c 700000 /dev/zero >> "$img"
head -c 300000 /dev/urandom >> "$img"
mkdir "$T/b"
bundle "$img" "$T/b" --part-size 512K > /dev/null
nparts=$(ls "$T/b" | grep -c '\.part\.')
[ "$nparts" -ge 3 ] || fail "the bundle has $nparts parts, want at least 3"

step "upload-bundle ($nparts parts), creating the bucket with --location"
sb upload-bundle -b "$bucket/bundles" -m "$T/b/img.manifest.xml" --acl private \
	--location "$SNAP_TEST_S3_REGION" --progress=json > "$T/up1" 2> "$T/up1.json" ||
	fail "upload-bundle: $(cat "$T/up1.json")"
cat "$T/up1"
grep -q "uploaded s3://$bucket/bundles/img.manifest.xml: $nparts parts, 0 skipped" "$T/up1" ||
	fail "upload-bundle's summary: $(cat "$T/up1")"
# progress: the last report counts every part's bytes as uploaded
total=$(cat "$T/b"/img.part.* | wc -c)
grep "^{" "$T/up1.json" | tail -n 1 | python3 -c 'import json, sys
p = json.loads(sys.stdin.read()); want = int(sys.argv[1])
assert p["stage"] == "done", p
assert p["bytes_uploaded"] >= want, (p["bytes_uploaded"], want)' "$total" ||
	fail "progress did not count the bytes uploaded: $(tail -n 1 "$T/up1.json")"

step "aws lists the parts and the manifest; each ETag is md5sum of the local file"
(cd "$T/b" && for f in img.manifest.xml img.part.*; do
	echo "bundles/$f $(md5sum < "$f" | cut -d' ' -f1)"; done) | sort > "$T/want"
keys bundles/ > "$T/got"
diff "$T/want" "$T/got" || fail "objects in the bucket differ from the local bundle"
aws s3api head-object --bucket "$bucket" --key bundles/img.part.0 > /dev/null ||
	fail "head-object of a part"

step "aws s3 cp --recursive downloads a bundle that unbundles to the source"
mkdir "$T/awsdown" "$T/un1"
aws s3 cp --only-show-errors --recursive "s3://$bucket/bundles/" "$T/awsdown/" ||
	fail "aws s3 cp --recursive"
"$SNAPBUNDLE" unbundle -m "$T/awsdown/img.manifest.xml" -k "$T/user.key" -d "$T/un1" \
	--progress=none > /dev/null || fail "unbundle of what aws downloaded"
cmp "$T/un1/img" "$img" || fail "unbundled image differs from the source"

step "a second upload skips every part"
sb upload-bundle -b "$bucket/bundles" -m "$T/b/img.manifest.xml" --acl private --retry 2 \
	--connections 2 > "$T/up2" ||
	fail "second upload-bundle"
cat "$T/up2"
grep -q ": $nparts parts, $nparts skipped (already in the bucket), 0 B of" "$T/up2" ||
	fail "the second upload sent parts again: $(cat "$T/up2")"
# one listing and the manifest
grep -q ", 2 requests, 0 retries" "$T/up2" || fail "requests of the second upload: $(cat "$T/up2")"

step "a part removed from the bucket is the only one sent again (resume part by part)"
aws s3 rm --only-show-errors "s3://$bucket/bundles/img.part.1"
sb upload-bundle -b "$bucket/bundles" -m "$T/b/img.manifest.xml" --acl private > "$T/up3" ||
	fail "third upload-bundle"
part1=$(stat -c %s "$T/b/img.part.1")
grep -q "$((nparts - 1)) skipped" "$T/up3" || fail "resume: $(cat "$T/up3")"
diff "$T/want" <(keys bundles/) || fail "objects after the resume differ"

step "--part N begins at part N; --skipmanifest leaves the manifest out"
sb upload-bundle -b "$bucket/other" -m "$T/b/img.manifest.xml" --acl private --part 1 \
	--skipmanifest > "$T/up4" || fail "upload-bundle --part 1 --skipmanifest"
keys other/ | cut -d' ' -f1 > "$T/other"
[ "$(grep -c . "$T/other")" = "$((nparts - 1))" ] && ! grep -q 'img.part.0$' "$T/other" &&
	! grep -q manifest "$T/other" || fail "--part 1 --skipmanifest uploaded: $(cat "$T/other")"
aws s3 rm --only-show-errors --recursive "s3://$bucket/other/"

step "download-bundle into an empty directory, then unbundle"
mkdir "$T/d" "$T/un2"
sb download-bundle -b "$bucket/bundles" -p img -k "$T/user.key" -d "$T/d" --retry \
	--connections 1 > "$T/down1" ||
	fail "download-bundle"
cat "$T/down1"
grep -q ": $nparts parts, 0 skipped" "$T/down1" || fail "download summary: $(cat "$T/down1")"
"$SNAPBUNDLE" unbundle -m "$T/d/img.manifest.xml" -k "$T/user.key" -d "$T/un2" \
	--progress=none > /dev/null || fail "unbundle of the download"
cmp "$T/un2/img" "$img" || fail "downloaded bundle unbundles to another image"
[ -z "$(ls -A "$T/d" | grep -v '^img\.')" ] || fail "debris in the directory: $(ls -A "$T/d")"

step "download-bundle resumes: only a damaged local part is fetched again"
printf 'X' | dd of="$T/d/img.part.2" bs=1 seek=100 conv=notrunc status=none
sb download-bundle -b "$bucket/bundles" -m img.manifest.xml -d "$T/d" > "$T/down2" ||
	fail "download-bundle again"
grep -q ": $nparts parts, $((nparts - 1)) skipped (already there)" "$T/down2" ||
	fail "resume: $(cat "$T/down2")"
cmp "$T/d/img.part.2" "$T/b/img.part.2" || fail "the damaged part was not fetched again"

step "download-bundle -k with another key refuses the bundle"
openssl genrsa -out "$T/other.key" 2048 2>/dev/null
mkdir "$T/d3"
if sb download-bundle -b "$bucket/bundles" -p img -k "$T/other.key" -d "$T/d3" 2> "$T/err"; then
	fail "download-bundle accepted another key"
fi
grep -q "is not for the key $T/other.key" "$T/err" || fail "wrong key message: $(cat "$T/err")"

step "a part changed in the bucket is caught before it is used, and upload-bundle repairs it"
head -c "$part1" /dev/urandom > "$T/evil"
aws s3 cp --only-show-errors "$T/evil" "s3://$bucket/bundles/img.part.1"
mkdir "$T/d4"
if sb download-bundle -b "$bucket/bundles" -p img -d "$T/d4" 2> "$T/err"; then
	fail "download-bundle used a changed part"
fi
grep -q "part s3://$bucket/bundles/img.part.1 does not match the manifest's SHA-1" "$T/err" ||
	fail "changed part message: $(cat "$T/err")"
[ ! -e "$T/d4/img.part.1" ] || fail "the changed part was written"
[ -z "$(ls -A "$T/d4" | grep '^\.')" ] || fail "temporaries left: $(ls -A "$T/d4")"
sb upload-bundle -b "$bucket/bundles" -m "$T/b/img.manifest.xml" --acl private > "$T/up5" ||
	fail "upload-bundle over a changed part"
grep -q "$((nparts - 1)) skipped" "$T/up5" || fail "the changed part was skipped: $(cat "$T/up5")"
diff "$T/want" <(keys bundles/) || fail "objects after the repair differ"

step "a wrong secret fails at once with a clear error, without retries"
start=$(date +%s)
if sb upload-bundle -b "$bucket/bundles" -m "$T/b/img.manifest.xml" --acl private \
	-a "$SNAP_TEST_S3_ACCESS_KEY" -s wrong-secret 2> "$T/err" > /dev/null; then
	fail "a wrong secret was accepted"
fi
cat "$T/err"
[ $(( $(date +%s) - start )) -le 10 ] || fail "a wrong secret took $(( $(date +%s) - start )) s"
grep -q "403" "$T/err" && grep -q "s3://$bucket" "$T/err" ||
	fail "wrong secret message: $(cat "$T/err")"

step "a missing bucket and a missing manifest name the object"
if sb download-bundle -b "nosuch-$bucket" -p img -d "$T/d3" 2> "$T/err"; then
	fail "download from a missing bucket succeeded"
fi
grep -q "s3://nosuch-$bucket/img.manifest.xml" "$T/err" || fail "missing bucket: $(cat "$T/err")"
if sb delete-bundle -y -b "$bucket/bundles" -p nosuch 2> "$T/err"; then
	fail "delete of a missing manifest succeeded"
fi
grep -q "s3://$bucket/bundles/nosuch.manifest.xml" "$T/err" ||
	fail "missing manifest: $(cat "$T/err")"
if sb upload-bundle -b "nosuch-$bucket" -m "$T/b/img.manifest.xml" --acl private 2> "$T/err"; then
	fail "upload to a missing bucket succeeded"
fi
grep -q "s3://nosuch-$bucket" "$T/err" || fail "upload, missing bucket: $(cat "$T/err")"

step "usage: --sigv 2, a missing -b and --retry=x are refused (exit 2)"
set +e
sb upload-bundle -b "$bucket" -m "$T/b/img.manifest.xml" --sigv 2 2> /dev/null; rc1=$?
sb download-bundle -p img 2> /dev/null; rc2=$?
sb download-bundle -b "$bucket" --retry=x 2> /dev/null; rc3=$?
set -e
[ "$rc1" = 2 ] && [ "$rc2" = 2 ] && [ "$rc3" = 2 ] || fail "usage exit codes $rc1 $rc2 $rc3"

step "delete-bundle without -y refuses when stdin is not a terminal"
if sb delete-bundle -b "$bucket/bundles" -p img < /dev/null 2> "$T/err"; then
	fail "delete-bundle without -y deleted"
fi
grep -q "refusing to delete without -y" "$T/err" || fail "no -y: $(cat "$T/err")"
diff "$T/want" <(keys bundles/) || fail "objects changed without -y"

step "delete-bundle -y removes the parts and the manifest, and keeps the bucket"
sb delete-bundle -y -b "$bucket/bundles" -p img > /dev/null || fail "delete-bundle -y"
[ -z "$(keys '')" ] || fail "objects left: $(keys '')"
aws s3api head-bucket --bucket "$bucket" || fail "the bucket went without --clear"

step "abort: the multipart uploads of one key, then of a prefix"
id1=$(aws s3api create-multipart-upload --bucket "$bucket" --key store/a.bin \
	--query UploadId --output text)
id2=$(aws s3api create-multipart-upload --bucket "$bucket" --key store/a.bin.old \
	--query UploadId --output text)
sb abort "s3://$bucket/store/a.bin" > "$T/ab1" || fail "abort"
cat "$T/ab1"
[ "$(cat "$T/ab1")" = "aborted s3://$bucket/store/a.bin $id1" ] || fail "abort said: $(cat "$T/ab1")"
left=$(aws s3api list-multipart-uploads --bucket "$bucket" --query 'Uploads[].UploadId' --output text)
[ "$left" = "$id2" ] || fail "uploads left after the first abort: $left"
sb abort "s3://$bucket/store/" > "$T/ab2" || fail "abort of a prefix"
grep -q "aborted s3://$bucket/store/a.bin.old $id2" "$T/ab2" || fail "abort said: $(cat "$T/ab2")"
left=$(aws s3api list-multipart-uploads --bucket "$bucket" --query 'Uploads[].UploadId' --output text)
[ "$left" = "None" ] || [ -z "$left" ] || fail "uploads left after aborting the prefix: $left"
sb abort "s3://$bucket/store/" > "$T/ab3" || fail "abort with nothing to abort"
grep -q "no multipart upload in progress" "$T/ab3" || fail "abort of nothing: $(cat "$T/ab3")"

step "delete-bundle --clear removes the bucket once empty"
sb upload-bundle -b "$bucket" -m "$T/b/img.manifest.xml" --acl private > /dev/null ||
	fail "upload-bundle to the bucket's root"
sb delete-bundle -y --clear -b "$bucket" -p img > /dev/null || fail "delete-bundle --clear"
if aws s3api head-bucket --bucket "$bucket" 2> /dev/null; then
	fail "the bucket is still there after --clear"
fi
echo "OK"
