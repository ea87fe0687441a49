#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-s3-huge.sh [SNAPBUNDLE]: peak RSS of `store -o s3://` with streamed parts of
# BENCH_PART_MIB (default 200) on a disk holding BENCH_DATA_MIB (default 950) MiB of random bytes
# (incompressible, so the image is about that size and ends BENCH_DATA_MIB % BENCH_PART_MIB MiB
# into its last part: a part whose request was started for BENCH_PART_MIB MiB and is produced
# again with its length, engine/store.c invariant 12). Against the gateway of the tests
# (SNAP_TEST_S3_*; tests/s3/rgw.sh start DIR with SNAP_TEST_RGW_MEM_MIB=3072, then source
# DIR/env); skips (77) without it. Prints one JSON object; never passes or fails on a number.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${1:-${SNAPBUNDLE:-$here/../build/tools/snapbundle}}
part=${BENCH_PART_MIB:-200}
data=${BENCH_DATA_MIB:-950}
for v in SNAP_TEST_S3_ENDPOINT SNAP_TEST_S3_ACCESS_KEY SNAP_TEST_S3_SECRET_KEY SNAP_TEST_S3_REGION; do
	[ -n "${!v:-}" ] || { echo "SKIP: $v is not set" >&2; exit 77; }
done
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-s3-huge.XXXXXX")
bucket="bench-huge-$$-$RANDOM"
export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none"
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER="" XDG_STATE_HOME="$T/state"
export AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY"
export AWS_DEFAULT_REGION="$SNAP_TEST_S3_REGION" AWS_REGION="$SNAP_TEST_S3_REGION"
export AWS_ENDPOINT_URL="$SNAP_TEST_S3_ENDPOINT"
unset SNAPBUNDLE_TEST_S3_STREAM
aws() { timeout 600 /usr/bin/aws --endpoint-url "$SNAP_TEST_S3_ENDPOINT" "$@"; }
trap 'aws s3 rb "s3://$bucket" --force >/dev/null 2>&1 || true; rm -rf "$T"' EXIT
aws s3api create-bucket --bucket "$bucket" >/dev/null

disk="$T/disk.img"
truncate -s $((data + 64))M "$disk"
printf 'label: gpt\nstart=2048, name=data\n' | sfdisk -q "$disk" >/dev/null
head -c $((data << 20)) /dev/urandom | dd of="$disk" bs=1M seek=1 conv=notrunc status=none

start=$(date +%s.%N)
/usr/bin/time -f %M -o "$T/rss" "$B" store "$disk" -o "s3://$bucket/huge.bin" --exact \
	--progress=none --part-size "${part}M" --debug >"$T/out" 2>"$T/err" ||
	{ cat "$T/err" >&2; exit 1; }
end=$(date +%s.%N)
size=$(aws s3api head-object --bucket "$bucket" --key huge.bin --query ContentLength --output text)
replayed=false
grep -q "ends inside a streamed part" "$T/err" && replayed=true
printf '{"bench":"s3-huge","part_mib":%s,"data_mib":%s,"object_bytes":%s,"replayed":%s,"peak_rss_kib":%s,"wall_s":%.2f}\n' \
	"$part" "$data" "$size" "$replayed" "$(tail -n 1 "$T/rss")" "$(echo "$end - $start" | bc)"
