# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the tests/s3/store-*.sh scripts: the gateway's settings (skip, 77, without them),
# awscli as the outside judge, a bucket of the test's own, a disk whose image spans several
# reader chunks and multipart parts.
set -euo pipefail
: "${SNAPBUNDLE:?}" "${SRCDIR:?}"
for v in SNAP_TEST_S3_ENDPOINT SNAP_TEST_S3_ACCESS_KEY SNAP_TEST_S3_SECRET_KEY SNAP_TEST_S3_REGION; do
	[ -n "${!v:-}" ] || { echo "SKIP: $v is not set (tests/s3/rgw.sh start DIR, then source DIR/env)"; exit 77; }
done
AWS=/usr/bin/aws
[ -x "$AWS" ] || { echo "SKIP: $AWS missing (tools/install-deps.sh installs awscli)"; exit 77; }
command -v sfdisk >/dev/null || exit 77

B="$SNAPBUNDLE"
T=$(mktemp -d "${TMPDIR:-/tmp}/snap-s3-store.XXXXXX")
bucket="snaptest-store-$$-$RANDOM"
cleanup() {
	local ids
	# uploads a test left (a killed store), then the bucket
	ids=$(aws s3api list-multipart-uploads --bucket "$bucket" \
		--query 'Uploads[].[Key,UploadId]' --output text 2>/dev/null || true)
	echo "$ids" | while read -r k id; do
		[ -n "$id" ] && [ "$id" != None ] &&
			aws s3api abort-multipart-upload --bucket "$bucket" --key "$k" \
				--upload-id "$id" >/dev/null 2>&1 || true
	done
	"$AWS" "${common[@]}" s3 rb "s3://$bucket" --force >/dev/null 2>&1 || true
	rm -rf "$T"
}
trap cleanup EXIT
cd "$T"

# The gateway for snapbundle (the AWS chain's environment step) and for awscli; nothing from the
# user's home. The checkpoints of this test's stores stay in its directory.
export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none"
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
export AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY"
export AWS_DEFAULT_REGION="$SNAP_TEST_S3_REGION" AWS_REGION="$SNAP_TEST_S3_REGION"
export AWS_ENDPOINT_URL="$SNAP_TEST_S3_ENDPOINT"
export XDG_STATE_HOME="$T/state"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3
common=(--endpoint-url "$SNAP_TEST_S3_ENDPOINT" --cli-read-timeout 60 --cli-connect-timeout 10)
# awscli 2.9 may crash formatting the gateway's empty <Message>: judge its exit status only
aws() { timeout 120 "$AWS" "${common[@]}" "$@"; }

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

aws s3api create-bucket --bucket "$bucket" >/dev/null

# make_disk FILE: a 128 MiB GPT disk: partition 1 (80 MiB) holds 48 MiB of random bytes then
# zeros, partition 2 (8 MiB) 6 MiB of random bytes; the image is about 55 MiB, incompressible.
make_disk() {
	local f=$1
	rm -f "$f"
	truncate -s 128M "$f"
	printf 'label: gpt\nstart=2048, size=163840, name=big\nsize=16384, name=small\n' |
		sfdisk -q "$f" >/dev/null
	head -c $((48 << 20)) /dev/urandom |
		dd of="$f" bs=1M seek=1 conv=notrunc status=none
	head -c $((6 << 20)) /dev/urandom |
		dd of="$f" bs=1M seek=81 conv=notrunc status=none
}

# The parameters that make a store reproducible: the same image for the same source.
REPRO=(--test-seed 11 --creation-time 1600000000 --store-time 1700000000 --exact
	--name "test image" --description "store into s3" --owner 123456789012 --progress=none)

# expect_fail PATTERN COMMAND...: fails (non-zero), saying PATTERN.
expect_fail() {
	local pat=$1
	shift
	if "$@" >cmd.out 2>cmd.err; then
		fail "succeeded but should fail with '$pat': $*"
	fi
	grep -q -- "$pat" cmd.err || { cat cmd.err >&2; fail "expected '$pat' from: $*"; }
	if grep -q -e "Sanitizer" -e "runtime error" cmd.err; then
		cat cmd.err >&2
		fail "sanitizer report from: $*"
	fi
	ok "'$pat' ($(head -c 200 cmd.err | tr '\n' ' '))"
}

# uploads KEY: the multipart uploads in progress for KEY, one upload id a line.
uploads() {
	aws s3api list-multipart-uploads --bucket "$bucket" --prefix "$1" \
		--query 'Uploads[].UploadId' --output text | tr '\t' '\n' | grep -v '^None$' |
		grep -v '^$' || true
}

# no_object KEY: HEAD finds nothing.
no_object() {
	if aws s3api head-object --bucket "$bucket" --key "$1" >/dev/null 2>&1; then
		fail "s3://$bucket/$1 exists"
	fi
}
