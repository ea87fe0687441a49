#!/usr/bin/env bash
# The S3 service of the tests, judged by an outside client: Debian's awscli (/usr/bin/aws) against
# the gateway that tests/run.sh starts (tests/s3/rgw.sh). Bucket, small and 40 MiB (multipart)
# objects read back byte for byte, the multipart ETag form, listing, a canned ACL, and a request
# signed with a wrong secret refused with 403 SignatureDoesNotMatch.
# Skips (77) without SNAP_TEST_S3_ENDPOINT & co or without /usr/bin/aws.
set -euo pipefail

for v in SNAP_TEST_S3_ENDPOINT SNAP_TEST_S3_ACCESS_KEY SNAP_TEST_S3_SECRET_KEY SNAP_TEST_S3_REGION; do
	[ -n "${!v:-}" ] || { echo "SKIP: $v is not set (tests/s3/rgw.sh start DIR, then source DIR/env)"; exit 77; }
done
# Debian's awscli 2.9: ignores AWS_ENDPOINT_URL, hence --endpoint-url; an aws earlier on PATH may
# be another version.
AWS=/usr/bin/aws
[ -x "$AWS" ] || { echo "SKIP: $AWS missing (tools/install-deps.sh installs awscli)"; exit 77; }

tmp=$(mktemp -d)
bucket="snaptest-smoke-$$-$RANDOM"
cleanup() {
	"$AWS" "${common[@]}" s3 rb "s3://$bucket" --force >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# Only what this test sets: no profile, credentials or config from the user's home.
export AWS_CONFIG_FILE="$tmp/none" AWS_SHARED_CREDENTIALS_FILE="$tmp/none"
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
export AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY"
export AWS_DEFAULT_REGION="$SNAP_TEST_S3_REGION"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
common=(--endpoint-url "$SNAP_TEST_S3_ENDPOINT" --cli-read-timeout 60 --cli-connect-timeout 10)
aws() { timeout 120 "$AWS" "${common[@]}" "$@"; }
die() { echo "FAIL: $*"; exit 1; }
step() { echo "-- $*"; }

step "create bucket $bucket"
aws s3api create-bucket --bucket "$bucket" >/dev/null

step "small object: put, get, compare"
printf 'snapbundle s3 smoke %s\n' "$bucket" >"$tmp/small"
aws s3api put-object --bucket "$bucket" --key small.txt --body "$tmp/small" >/dev/null
aws s3api get-object --bucket "$bucket" --key small.txt "$tmp/small.back" >/dev/null
cmp "$tmp/small" "$tmp/small.back" || die "small object differs"

step "40 MiB object: multipart upload (aws s3 cp splits above 8 MiB), get, compare"
head -c $((40 * 1024 * 1024)) /dev/urandom >"$tmp/big"
aws s3 cp --only-show-errors "$tmp/big" "s3://$bucket/big.bin"
aws s3 cp --only-show-errors "s3://$bucket/big.bin" "$tmp/big.back"
cmp "$tmp/big" "$tmp/big.back" || die "40 MiB object differs"

step "head-object: multipart ETag \"<md5 of part md5s>-N\", size"
head=$(aws s3api head-object --bucket "$bucket" --key big.bin --output json)
echo "$head" | grep -E '"ETag"|"ContentLength"'
etag=$(echo "$head" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ETag"])')
[[ "$etag" =~ ^\"[0-9a-f]{32}-[0-9]+\"$ ]] || die "ETag $etag is not in the multipart form"
size=$(echo "$head" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ContentLength"])')
[ "$size" -eq $((40 * 1024 * 1024)) ] || die "ContentLength $size"

step "list"
keys=$(aws s3api list-objects-v2 --bucket "$bucket" --query 'Contents[].Key' --output text)
echo "$keys"
[ "$(echo "$keys" | tr -s '\t ' '\n' | sort | tr '\n' ' ')" = "big.bin small.txt " ] ||
	die "listing is not big.bin small.txt: $keys"

step "put with canned ACL private (RGW rejects aws-exec-read)"
aws s3api put-object --bucket "$bucket" --key acl.txt --body "$tmp/small" --acl private >/dev/null
aws s3api get-object-acl --bucket "$bucket" --key acl.txt --output text >/dev/null

step "wrong secret: refused with 403 SignatureDoesNotMatch"
# RGW's error bodies carry an empty <Message>, on which awscli 2.9's own S3 error message
# (customizations/s3errormsg.py) crashes: it prints only "argument of type 'NoneType' is not
# iterable". --debug shows the HTTP status and the error body the gateway sent.
if out=$(AWS_SECRET_ACCESS_KEY="${SNAP_TEST_S3_SECRET_KEY}x" \
	aws --debug s3api get-object --bucket "$bucket" --key small.txt "$tmp/bad" 2>&1); then
	die "a request signed with a wrong secret was accepted"
fi
[ ! -e "$tmp/bad" ] || [ ! -s "$tmp/bad" ] || die "a request with a wrong secret got the object"
echo "$out" | grep -E '" 403 |<Code>' || true
echo "$out" | grep -qE '"GET /'"$bucket"'/small.txt HTTP/1.1" 403 ' || die "no 403 for the GET in: $(echo "$out" | tail -n 20)"
echo "$out" | grep -q '<Code>SignatureDoesNotMatch</Code>' || die "no SignatureDoesNotMatch in: $(echo "$out" | tail -n 20)"

step "delete objects and bucket"
aws s3 rm --only-show-errors --recursive "s3://$bucket"
aws s3api delete-bucket --bucket "$bucket"
if aws s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then die "bucket still there"; fi
echo "OK"
