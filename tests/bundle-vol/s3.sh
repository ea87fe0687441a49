#!/usr/bin/env bash
# bundle-vol -d s3://: the volume's filtered copy bundled straight into the bucket (the image is
# made in --scratch-dir and removed after), judged by awscli (parts and manifest listed, no
# image or temporary left) and by unbundle -m s3://: mounted, the result holds the volume's
# files but the sensitive ones. Skips (77) without the S3 gateway (SNAP_TEST_S3_*).
. "$(dirname "$0")/lib.sh"
for v in SNAP_TEST_S3_ENDPOINT SNAP_TEST_S3_ACCESS_KEY SNAP_TEST_S3_SECRET_KEY SNAP_TEST_S3_REGION; do
	[ -n "${!v:-}" ] || skip "$v is not set (tests/s3/rgw.sh)"
done
AWS=/usr/bin/aws
[ -x "$AWS" ] || skip "$AWS missing"
export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none"
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
export AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY"
export AWS_DEFAULT_REGION="$SNAP_TEST_S3_REGION" AWS_ENDPOINT_URL="$SNAP_TEST_S3_ENDPOINT"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3
aws() { timeout 120 "$AWS" --endpoint-url "$SNAP_TEST_S3_ENDPOINT" "$@"; }
bucket="snaptest-bv-$$-$RANDOM"
aws s3api create-bucket --bucket "$bucket" >/dev/null
trap 'aws s3 rb "s3://$bucket" --force >/dev/null 2>&1 || true; cleanup' EXIT

make_keys
make_volume 48
mkdir -p "$T/scratch"
bundle_vol "s3://$bucket/vols/" -p vol1 --part-size 256K --scratch-dir "$T/scratch" \
	--acl private >"$T/log" 2>&1 || { cat "$T/log"; fail "bundle-vol -d s3:// failed"; }
[ -z "$(ls -A "$T/scratch")" ] || fail "the scratch image was left: $(ls -A "$T/scratch")"
aws s3 ls --recursive "s3://$bucket/vols/" | awk '{print $4}' >"$T/keys"
grep -qx 'vols/vol1.manifest.xml' "$T/keys" || fail "no manifest in the bucket: $(cat "$T/keys")"
n=$(grep -c '^vols/vol1\.part\.' "$T/keys" || true)
[ "$n" -ge 2 ] || fail "expected several parts, the bucket has $n: $(cat "$T/keys")"
[ "$(wc -l <"$T/keys")" -eq $((n + 1)) ] || fail "more than the bundle in the bucket: $(cat "$T/keys")"

"$SNAPBUNDLE" unbundle -m "s3://$bucket/vols/vol1.manifest.xml" -k "$T/user.key" \
	-o "$T/restored.img" --progress=none >"$T/log" 2>&1 || { cat "$T/log"; fail "unbundle -m s3://"; }
e2fsck -fn "$T/restored.img" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck -fn fails"; }
mount_image "$T/restored.img" "$T/r" ro
compare_trees "$T/vol" "$T/r" "${SECRETS[@]}" || fail "the image differs from the volume"
echo "ok"
