#!/usr/bin/env bash
# migrate-bundle.sh - snapbundle migrate-bundle between two buckets of the gateway, judged by the
# AWS CLI and openssl: aws s3api list-objects-v2 shows every part in the destination with the
# source's ETag (the md5sum of the local part), the parts aws downloads are byte-equal, the source
# is untouched, the migrated manifest's signature verifies and its key unwraps with the new EC2
# key, and snapbundle unbundle -m s3://DEST/... restores the image; a part over the CopyObject
# limit (lowered for the test) goes through UploadPartCopy and arrives byte-equal; a missing
# source part is named and nothing is copied; the destination bucket is made at --location.
# Skips (77) without the gateway's variables or aws.
. "$(dirname "$0")/../bundle/lib.sh"

for v in SNAP_TEST_S3_ENDPOINT SNAP_TEST_S3_ACCESS_KEY SNAP_TEST_S3_SECRET_KEY \
	SNAP_TEST_S3_REGION; do
	[ -n "${!v:-}" ] || { echo "SKIP: $v is not set (tests/s3/rgw.sh start DIR)"; exit 77; }
done
AWS=/usr/bin/aws
[ -x "$AWS" ] || { echo "SKIP: $AWS missing"; exit 77; }
need md5sum cmp

src="snaptest-migsrc-$$-$RANDOM"
dst="snaptest-migdst-$$-$RANDOM"
export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none"
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
export AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY"
export AWS_DEFAULT_REGION="$SNAP_TEST_S3_REGION"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_REGION
aws() { timeout 120 "$AWS" --endpoint-url "$SNAP_TEST_S3_ENDPOINT" "$@"; }
cleanup() {
	for b in "$src" "$dst"; do
		"$AWS" --endpoint-url "$SNAP_TEST_S3_ENDPOINT" s3 rb "s3://$b" --force \
			>/dev/null 2>&1 || true
	done
	rm -rf "$T"
}
trap cleanup EXIT
step() { echo "-- $*"; }
sb() { local c="$1"; shift; timeout 300 "$SNAPBUNDLE" "$c" --url "$SNAP_TEST_S3_ENDPOINT" "$@"; }
# keys BUCKET PREFIX: "key etag size" of every object under PREFIX, sorted
keys() {
	aws s3api list-objects-v2 --bucket "$1" --prefix "$2" \
		--query 'Contents[].[Key,ETag,Size]' --output text | grep -v '^None$' |
		tr -d '"' | tr '\t' ' ' | sort || true
}
migrate() {
	sb migrate-bundle -c "$T/user.pem" -k "$T/user.key" --ec2cert "$T/ec2new.pem" \
		--acl private "$@"
}
verify() {
	python3 - "$1" "$T/signed.txt" "$T/sig.bin" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
def cut(tag):
    a = d.index(b"<%s>" % tag)
    return d[a:d.index(b"</%s>" % tag, a) + len(tag) + 3]
open(sys.argv[2], "wb").write(cut(b"machine_configuration") + cut(b"image"))
sig = cut(b"signature")[len(b"<signature>"):-len(b"</signature>")]
open(sys.argv[3], "wb").write(bytes.fromhex(sig.decode()))
PY
	openssl dgst -sha1 -verify "$T/user.pub" -signature "$T/sig.bin" "$T/signed.txt" |
		grep -q 'Verified OK'
}

make_keys
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$T/ec2new.key" -out "$T/ec2new.pem" \
	-days 2 -subj /CN=snapbundle-test-ec2-new 2>/dev/null
img="$T/img"
head -c 1200000 /dev/urandom > "$img"
head -c 500000 /dev/zero >> "$img"
head -c 300000 /dev/urandom >> "$img"
mkdir "$T/b"
bundle "$img" "$T/b" --part-size 512K --kernel aki-11111111 > /dev/null
nparts=$(ls "$T/b" | grep -c '\.part\.')
[ "$nparts" -ge 3 ] || fail "the bundle has $nparts parts, want at least 3"

step "the source: upload-bundle of $nparts parts"
sb upload-bundle -b "$src/from" -m "$T/b/img.manifest.xml" --acl private \
	--location "$SNAP_TEST_S3_REGION" --progress=none > /dev/null || fail "upload-bundle"
keys "$src" "" > "$T/src-before"

step "migrate-bundle to another bucket, made at --location"
cat > "$T/map" <<EOF
$SNAP_TEST_S3_REGION aki-11111111 aki-22222222
EOF
migrate -b "$src/from" -d "$dst/to" -m img.manifest.xml --location "$SNAP_TEST_S3_REGION" \
	--mapping-file "$T/map" --batch --progress=none --connections 3 > "$T/out" ||
	fail "migrate-bundle"
cat "$T/out"
grep -q "^migrated to s3://$dst/to/img.manifest.xml: $nparts parts" "$T/out" ||
	fail "summary: $(cat "$T/out")"

step "aws lists every part in the destination with the md5sum of the local part"
(cd "$T/b" && for f in img.part.*; do
	echo "to/$f $(md5sum < "$f" | cut -d' ' -f1) $(stat -c %s "$f")"; done) | sort > "$T/want"
keys "$dst" "to/" | grep -v manifest > "$T/got"
diff "$T/want" "$T/got" || fail "the destination's parts differ from the bundle's"
keys "$dst" "to/" | grep -q "^to/img.manifest.xml " || fail "no manifest in the destination"
[ "$(keys "$dst" "" | wc -l)" = "$((nparts + 1))" ] || fail "extra objects: $(keys "$dst" "")"

step "the source is untouched"
diff "$T/src-before" <(keys "$src" "") || fail "the source bucket changed"
aws s3 cp --only-show-errors "s3://$src/from/img.manifest.xml" "$T/src.xml"
cmp "$T/src.xml" "$T/b/img.manifest.xml" || fail "the source manifest changed"

step "aws downloads byte-equal parts; the migrated manifest verifies and is for the new key"
mkdir "$T/down"
aws s3 cp --only-show-errors --recursive "s3://$dst/to/" "$T/down/" || fail "aws s3 cp"
for f in "$T"/b/img.part.*; do cmp "$f" "$T/down/$(basename "$f")" || fail "$f differs"; done
m="$T/down/img.manifest.xml"
verify "$m" || fail "the migrated manifest's signature does not verify"
[ "$(field "$m" machine_configuration/kernel_id)" = aki-22222222 ] || fail "kernel not mapped"
diff <(python3 -c 'import sys, xml.etree.ElementTree as E
for p in E.parse(sys.argv[1]).getroot().find("image/parts"):
    print(p.find("filename").text, p.find("digest").text)' "$m") \
	<(cd "$T/b" && for f in $(ls img.part.* | sort -t. -k3 -n); do
		echo "$f $(sha1sum < "$f" | cut -d' ' -f1)"; done) || fail "part digests"
[ "$(unwrap "$m" ec2_encrypted_key "$T/ec2new.key")" = \
	"$(unwrap "$T/b/img.manifest.xml" user_encrypted_key "$T/user.key")" ] ||
	fail "the new EC2 key does not unwrap the bundle's key"

step "snapbundle unbundle -m s3://DEST/... restores the image"
mkdir "$T/un"
sb unbundle -m "s3://$dst/to/img.manifest.xml" -k "$T/user.key" -d "$T/un" --progress=none \
	> /dev/null || fail "unbundle from the destination"
cmp "$T/un/img" "$img" || fail "the migrated bundle restores another image"

step "a part over the CopyObject limit goes through UploadPartCopy"
big="$T/big"
head -c 7000000 /dev/urandom > "$big"
mkdir "$T/bb"
bundle "$big" "$T/bb" --part-size 7M > /dev/null
[ "$(ls "$T/bb" | grep -c '\.part\.')" = 1 ] || fail "the big bundle has more than one part"
psize=$(stat -c %s "$T/bb/big.part.0")
[ "$psize" -gt 5242880 ] || fail "the big part is $psize bytes"
sb upload-bundle -b "$src/big" -m "$T/bb/big.manifest.xml" --acl private --progress=none \
	> /dev/null || fail "upload-bundle big"
SNAPBUNDLE_TEST_COPY_PART_SIZE=5242880 migrate -b "$src/big" -d "$dst/big" \
	-m big.manifest.xml --no-mapping --progress=none > /dev/null || fail "migrate big"
etag=$(aws s3api head-object --bucket "$dst" --key big/big.part.0 --query ETag --output text |
	tr -d '"')
[[ "$etag" == *-2 ]] || fail "the big part's ETag $etag is not of a 2-part upload"
aws s3 cp --only-show-errors "s3://$dst/big/big.part.0" "$T/big.part.0"
cmp "$T/big.part.0" "$T/bb/big.part.0" || fail "the part copied by UploadPartCopy differs"
[ -z "$(aws s3api list-multipart-uploads --bucket "$dst" --query 'Uploads[].Key' \
	--output text | grep -v '^None$')" ] || fail "multipart uploads left"
mkdir "$T/unbig"
sb unbundle -m "s3://$dst/big/big.manifest.xml" -k "$T/user.key" -d "$T/unbig" \
	--progress=none > /dev/null || fail "unbundle big"
cmp "$T/unbig/big" "$big" || fail "big restores another image"

step "a missing source part is named, and nothing is copied"
aws s3 cp --only-show-errors --recursive "s3://$src/from/" "s3://$src/gap/"
aws s3 rm --only-show-errors "s3://$src/gap/img.part.1"
if migrate -b "$src/gap" -d "$dst/gap" -m img.manifest.xml --no-mapping 2> "$T/err"; then
	fail "a bundle with a missing part migrated"
fi
grep -q "no part s3://$src/gap/img.part.1" "$T/err" || fail "missing part: $(cat "$T/err")"
[ -z "$(keys "$dst" gap/)" ] || fail "objects copied for an incomplete bundle: $(keys "$dst" gap/)"

step "refusals: no mapping for the kernel, the wrong key, source equal to destination"
if migrate -b "$src/from" -d "$dst/nomap" -m img.manifest.xml 2> "$T/err"; then
	fail "a kernel without a mapping migrated"
fi
grep -q "cannot map kernel aki-11111111" "$T/err" || fail "no mapping: $(cat "$T/err")"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/o.key" -out "$T/o.pem" -days 2 \
	-subj /CN=other 2>/dev/null
if sb migrate-bundle -c "$T/o.pem" -k "$T/o.key" --ec2cert "$T/ec2new.pem" --acl private \
	-b "$src/from" -d "$dst/other" -m img.manifest.xml --no-mapping 2> "$T/err"; then
	fail "another user's key migrated the bundle"
fi
grep -q "is not for the key $T/o.key" "$T/err" || fail "wrong key: $(cat "$T/err")"
[ -z "$(keys "$dst" nomap/)$(keys "$dst" other/)" ] || fail "refused runs copied objects"
if migrate -b "$src/from" -d "$src/from/" -m img.manifest.xml --no-mapping 2> "$T/err"; then
	fail "a bundle migrated onto itself"
fi
grep -q "nothing to migrate" "$T/err" || fail "same place: $(cat "$T/err")"
if migrate -b "$src/none" -d "$dst/none" -m img.manifest.xml --no-mapping 2> "$T/err"; then
	fail "a missing manifest migrated"
fi
grep -q "no manifest.*s3://$src/none/img.manifest.xml" "$T/err" ||
	fail "missing manifest: $(cat "$T/err")"
diff "$T/src-before" <(keys "$src" "" | grep '^from/') || fail "the source bucket changed"
echo ok
