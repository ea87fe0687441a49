#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Progress over the bytes restore and unbundle fetch (struct snap_progress bytes_data): with
# --progress=json, bytes_data is set before the data stage and never changes, bytes_read never
# exceeds it and ends equal to it, percent never goes down (check-fetch-progress.py). Its
# value is judged from outside: a whole restore reads the whole .bin (its size on disk), a
# one-partition restore what it read before the data stage plus the records of that
# partition's frames (inspect --json --frames, each record's length from the file itself),
# unbundle the parts (their sizes on disk). The bar's total is bytes_data too. Local files
# always; s3:// copies (uploaded by awscli) when the test gateway runs.
. "$SRCDIR/tests/tools/lib.sh"
CHECK="$SRCDIR/tests/tools/check-fetch-progress.py"

# check WHAT EVENTS WANT [--frames INSPECT IMAGE [PART]]: prints bytes_data
check() {
	local what=$1
	shift
	python3 "$CHECK" "$@" 2>check.err || { fail "$what: $(cat check.err)"; echo 0; }
}

# run WHAT COMMAND...: COMMAND with --progress=json succeeds, its events in progress.json
run() {
	local what=$1 rc=0
	shift
	"$@" --progress=json >cmd.out 2>progress.json </dev/null || rc=$?
	[ "$rc" = 0 ] || fail "$what: exit $rc: $(grep -v '^{' progress.json | tail -c 400)"
	! grep -qi sanitizer progress.json || fail "$what: sanitizer report"
}

# bar_total EVENTS_OF_A_BAR [STAGE]: the total of the bar's last line of STAGE (default data)
# ("X/TOTAL")
bar_total() {
	tr '\r' '\n' <"$1" | sed 's/\x1b\[K//g' | grep "^${2:-data}" | tail -1 |
		sed -n 's|.*% [0-9.]* [KMGT]*i*B/\([0-9.]* [KMGT]*i*B\) .*|\1|p'
}
human() {
	python3 -c "
n = $1
for u in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
    if n < 1024 or u == 'TiB':
        print(f'{n:.1f} {u}' if u != 'B' else f'{n} B'); break
    n /= 1024"
}

# A 48 MiB GPT disk: partition 1 (1-17 MiB) and 2 (17-41 MiB) each half random, half zeros,
# so partition 2 needs only some of the frames.
truncate -s 48M disk.img
printf 'label: gpt\nstart=2048, size=32768, name=a\nsize=49152, name=b\n' | sfdisk -q disk.img
head -c 8M /dev/urandom | dd of=disk.img bs=1M seek=1 conv=notrunc status=none
head -c 12M /dev/urandom | dd of=disk.img bs=1M seek=17 conv=notrunc status=none
make_keys
"$B" store disk.img -o a.bin --force >/dev/null 2>&1 || fail "store failed"
"$B" inspect a.bin --json --frames >a.json || fail "inspect --frames failed"
size=$(stat -c %s a.bin)
mkdir -p bdir
"$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d bdir -p img >/dev/null 2>&1 || fail "bundle failed"
parts=$(cat bdir/img.part.* | wc -c)

# restore_checks WHERE IMAGE: the whole image, then partition 2 (judged with the local a.bin)
restore_checks() {
	local where=$1 img=$2 d whole
	run "$where restore" "$B" restore "$img" -o r.img --force
	whole=$(check "$where restore" progress.json "$size" --frames a.json a.bin)
	cmp -s r.img disk.img || fail "$where restore: the image differs from the disk"
	run "$where restore --partition 2" "$B" restore "$img" -o p.img --partition 2 --force
	d=$(check "$where restore --partition 2" progress.json - --frames a.json a.bin 2)
	[ "$d" -gt 0 ] && [ "$d" -lt "$whole" ] ||
		fail "$where restore --partition 2: bytes_data $d, the whole image's $whole"
	cmp -s p.img <(dd if=disk.img bs=1M skip=17 count=24 status=none) ||
		fail "$where restore --partition 2: the partition differs"
	run "$where verify" "$B" verify "$img"
	check "$where verify" progress.json "$size" --frames a.json a.bin >/dev/null
}

unbundle_checks() {
	local where=$1 manifest=$2
	run "$where unbundle" "$B" unbundle -m "$manifest" -k user.key -o u.img --force
	check "$where unbundle" progress.json "$parts" >/dev/null
	cmp -s u.img disk.img || fail "$where unbundle: the image differs from the disk"
	run "$where verify -m" "$B" verify -m "$manifest" -k user.key
	check "$where verify -m" progress.json "$parts" >/dev/null
}

restore_checks local a.bin
unbundle_checks local bdir/img.manifest.xml

# The bar counts the same bytes: its data-stage total is bytes_data.
COLUMNS=100 "$B" restore a.bin -o r.img --force --progress=bar 2>bar.err >/dev/null ||
	fail "restore --progress=bar failed"
[ "$(bar_total bar.err)" = "$(human "$size")" ] ||
	fail "restore bar total '$(bar_total bar.err)', the image is $(human "$size")"
# verify of a .bin reads its frames in the verify stage: the bar counts them there
COLUMNS=100 "$B" verify a.bin --progress=bar 2>bar.err >/dev/null || fail "verify --progress=bar failed"
[ "$(bar_total bar.err verify)" = "$(human "$size")" ] ||
	fail "verify bar total '$(bar_total bar.err verify)', the image is $(human "$size")"
COLUMNS=100 "$B" unbundle -m bdir/img.manifest.xml -k user.key -o u.img --force \
	--progress=bar 2>bar.err >/dev/null || fail "unbundle --progress=bar failed"
[ "$(bar_total bar.err)" = "$(human "$parts")" ] ||
	fail "unbundle bar total '$(bar_total bar.err)', the parts are $(human "$parts")"

# The same from the test gateway: copies uploaded by awscli, the outside judge.
if [ -n "${SNAP_TEST_S3_ENDPOINT:-}" ] && [ -x /usr/bin/aws ]; then
	export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none"
	export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
	export AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY"
	export AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY"
	export AWS_DEFAULT_REGION="$SNAP_TEST_S3_REGION" AWS_REGION="$SNAP_TEST_S3_REGION"
	export AWS_ENDPOINT_URL="$SNAP_TEST_S3_ENDPOINT" XDG_STATE_HOME="$T/state"
	unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3
	aws() { timeout 120 /usr/bin/aws --endpoint-url "$SNAP_TEST_S3_ENDPOINT" "$@"; }
	bucket="snaptest-fetch-$$-$RANDOM"
	trap 'aws s3 rb "s3://$bucket" --force >/dev/null 2>&1; rm -rf "$T"' EXIT
	if aws s3api create-bucket --bucket "$bucket" >/dev/null &&
		aws s3 cp a.bin "s3://$bucket/a.bin" >/dev/null &&
		aws s3 cp --recursive bdir "s3://$bucket/b/" >/dev/null; then
		restore_checks s3 "s3://$bucket/a.bin"
		unbundle_checks s3 "s3://$bucket/b/img.manifest.xml"
	else
		fail "cannot upload the copies with awscli"
	fi
else
	echo "s3: skipped (no test gateway: SNAP_TEST_S3_ENDPOINT unset)"
fi
finish
