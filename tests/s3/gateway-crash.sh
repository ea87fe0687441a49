#!/usr/bin/env bash
# The gateway crashes mid-transfer and comes back: radosgw is killed (SIGKILL: connections reset,
# requests in flight lost) while a store uploads its parts and while a restore fetches its
# ranges, kept down for 3 s and started again (tests/s3/rgw.sh crash-gateway). Each job retries
# the failed requests (per part and range, with backoff) and finishes, and its output is right:
# the object equals a local store of the same source, the restore equals the source. Runs alone
# (is_parallel: false in meson): it takes the suite's gateway away from every other test for the
# seconds it is down.
. "$SRCDIR/tests/s3/store-lib.sh"
[ -n "${SNAP_TEST_RGW_DIR:-}" ] && [ -f "$SNAP_TEST_RGW_DIR/ceph.conf" ] ||
	{ echo "SKIP: SNAP_TEST_RGW_DIR is not a gateway this test may restart"; exit 77; }
RGW="$SRCDIR/tests/s3/rgw.sh"
make_disk disk.img

# crash_during PATTERN FILE: once FILE (the job's --progress=json) shows PATTERN, crash the
# gateway for 3 s
crash_during() {
	local pat=$1 f=$2 pid=$3
	for _ in $(seq 1 3000); do
		grep -q "$pat" "$f" 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || fail "the job ended before the gateway could crash"
		sleep 0.01
	done
	"$RGW" crash-gateway "$SNAP_TEST_RGW_DIR" 3 || fail "the gateway did not come back"
}

# store: 5 MiB parts, one connection, so the upload is under way when the gateway goes
"$B" store disk.img -o "s3://$bucket/img.bin" --part-size 5M --connections 1 --retry 15 \
	--progress=json "${REPRO[@]:0:${#REPRO[@]}-1}" >store.out 2>store.err &
pid=$!
crash_during '"bytes_uploaded":[1-9]' store.err "$pid"
wait "$pid" || { cat store.err >&2; fail "store did not survive the gateway's crash"; }
grep -Eq '^s3: [0-9]+ requests, [1-9][0-9]* retried' store.err ||
	{ tail -3 store.err >&2; fail "store did not report retrying across the crash"; }
"$B" store disk.img -o local.bin "${REPRO[@]}"
aws s3 cp --only-show-errors "s3://$bucket/img.bin" got.bin
cmp got.bin local.bin || fail "the object stored across the crash differs from a local store"
ok "store across a gateway crash: the object equals a local store"

# restore: ranged GETs, one connection
"$B" restore "s3://$bucket/img.bin" -o r.img --connections 1 --retry 15 --progress=json \
	>restore.out 2>restore.err &
pid=$!
crash_during '"bytes_downloaded":[1-9]' restore.err "$pid"
wait "$pid" || { cat restore.err >&2; fail "restore did not survive the gateway's crash"; }
grep -Eq '^s3: [0-9]+ requests, [1-9][0-9]* retried' restore.err ||
	{ tail -3 restore.err >&2; fail "restore did not report retrying across the crash"; }
cmp r.img disk.img || fail "the restore across the crash differs from the source"
"$B" verify "s3://$bucket/img.bin" --progress=none >/dev/null || fail "verify after the crash"
ok "restore across a gateway crash equals the source"
echo "gateway-crash: ok"
