#!/usr/bin/env bash
# .bin images in S3 that are not there or not whole: a missing bucket, a missing object and a
# truncated object (uploaded cut short with awscli) each fail with a clear error naming the
# object, and leave no output; an object replaced while a restore reads it fails with -ESTALE
# (the reader's If-Match) and leaves no output; a store into a missing bucket leaves nothing.
. "$SRCDIR/tests/s3/store-lib.sh"
make_disk disk.img
"$B" store disk.img -o local.bin "${REPRO[@]}"
aws s3 cp --only-show-errors local.bin "s3://$bucket/whole.bin"

# check_fail PATTERN URL: restore, verify and inspect of URL all fail saying PATTERN and URL
check_fail() {
	local pat=$1 url=$2
	expect_fail "$pat" "$B" restore "$url" -o out.img --progress=none
	grep -qF "$url" cmd.err || fail "the error does not name $url"
	[ ! -e out.img ] && ! ls -A . | grep -q '\.tmp-' || fail "restore left an output"
	expect_fail "$pat" "$B" verify "$url" --progress=none
	grep -qF "$url" cmd.err || fail "the error does not name $url"
	expect_fail "$pat" "$B" inspect "$url"
	grep -qF "$url" cmd.err || fail "the error does not name $url"
}

check_fail "does not exist" "s3://$bucket-missing/x/img.bin"
check_fail "does not exist" "s3://$bucket/missing.bin"
size=$(stat -c %s local.bin)
head -c $((size - 1000)) local.bin > cut.bin
aws s3 cp --only-show-errors cut.bin "s3://$bucket/cut.bin"
check_fail "truncated" "s3://$bucket/cut.bin"
head -c 100 local.bin > tiny.bin
aws s3 cp --only-show-errors tiny.bin "s3://$bucket/tiny.bin"
check_fail "truncated" "s3://$bucket/tiny.bin"

# a store into a bucket that does not exist: an error naming the object, no upload anywhere
expect_fail "s3://$bucket-missing/img.bin" \
	"$B" store disk.img -o "s3://$bucket-missing/img.bin" "${REPRO[@]}"

# replaced while read: one connection (read-ahead of one chunk), the restore stopped at its
# first data progress, the object replaced, the restore continued. A restore that finishes
# before it can be stopped proves nothing either way: that trial is run again (at most 5).
"$B" store disk.img -o other.bin --test-seed 12 --progress=none
stopped=
for trial in 1 2 3 4 5; do
	aws s3 cp --only-show-errors local.bin "s3://$bucket/whole.bin"
	rm -f stale.img
	"$B" restore "s3://$bucket/whole.bin" -o stale.img --progress=json --threads 1 \
		--connections 1 >stale.out 2>stale.err &
	pid=$!
	for _ in $(seq 1 3000); do
		grep -q '"stage":"data"' stale.err 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.01
	done
	if kill -STOP "$pid" 2>/dev/null; then
		stopped=$trial
		break
	fi
	wait "$pid" || true
	echo "trial $trial: the restore ended before the object could be replaced; again"
done
[ -n "$stopped" ] || fail "the restore ended before the object could be replaced, 5 times"
aws s3 cp --only-show-errors other.bin "s3://$bucket/whole.bin"
kill -CONT "$pid"
st=0
wait "$pid" || st=$?
[ "$st" -ne 0 ] || fail "a restore of an object replaced while read succeeded"
grep -q "changed while it was read" stale.err || { cat stale.err >&2; fail "no -ESTALE message"; }
grep -qF "s3://$bucket/whole.bin" stale.err || fail "the error does not name the object"
[ ! -e stale.img ] && ! ls -A . | grep -q '\.tmp-' || fail "the failed restore left an output"
ok "replaced while read: $(grep -o 's3://[^ ]* changed while it was read' stale.err | head -1)"
echo "store-errors: ok"
