#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# An s3:// image served by nbdkit-snapbundle-plugin from the test gateway (endpoint= and
# region= given, credentials from the AWS chain's environment): nbdcopy's copy equals restore's
# output of the object as awscli downloads it, plain and encrypted; a missing object and an
# unreachable endpoint are refused before serving.
. "$SRCDIR/tests/s3/store-lib.sh"
. "$SRCDIR/tests/nbd/lib.sh"
make_disk disk.img
echo "the passphrase" > pass
S3P=(endpoint="$SNAP_TEST_S3_ENDPOINT" region="$SNAP_TEST_S3_REGION")

"$B" store disk.img -o "s3://$bucket/img.bin" --progress=none >/dev/null
"$B" store disk.img -o "s3://$bucket/enc.bin" --passphrase-file pass --scrypt-log-n 10 \
	--progress=none >/dev/null
for name in img enc; do
	aws s3 cp "s3://$bucket/$name.bin" $name.bin >/dev/null
	"$B" restore $name.bin -o $name.img --passphrase-file pass --progress=none >/dev/null
	cmp <(head -c $((48 << 20)) disk.img | tail -c $((47 << 20))) \
		<(head -c $((48 << 20)) $name.img | tail -c $((47 << 20))) ||
		fail "restore of the downloaded $name.bin differs from the disk"
	serve out.img image="s3://$bucket/$name.bin" "${S3P[@]}" passphrase-file=pass ||
		{ cat out.img.err >&2; fail "serving s3://$bucket/$name.bin"; }
	[ "$(cat out.img.size)" = "$(stat -c %s disk.img)" ] || fail "$name: nbdinfo size"
	cmp $name.img out.img || fail "the served s3://$bucket/$name.bin differs from restore's"
	ok "s3://$bucket/$name.bin served as restored"
done

serve_fails "s3://$bucket/none.bin does not exist" image="s3://$bucket/none.bin" "${S3P[@]}"
serve_fails "wrong passphrase for s3://$bucket/enc.bin" image="s3://$bucket/enc.bin" \
	"${S3P[@]}" passphrase-file=disk.img
serve_fails "s3://$bucket/img.bin" image="s3://$bucket/img.bin" endpoint=http://127.0.0.1:1 \
	region="$SNAP_TEST_S3_REGION"
serve_fails "need an s3:// image" image=img.bin endpoint="$SNAP_TEST_S3_ENDPOINT"
echo "nbd-serve-s3: ok"
