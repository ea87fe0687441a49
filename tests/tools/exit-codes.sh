#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# exit-codes.sh - every command against the one exit-code table (docs/cli.md): 0 ok,
# 1 failure, 2 usage, 3 verification failed (a digest, tag or signature that does not match),
# 130/143 interrupted by SIGINT/SIGTERM; the --json document carries the same code and its
# class. Before the table, usage errors were 1 in bundle, store and restore, and an invalid
# shared option value 1 in store, restore and verify IMAGE.bin. The S3 commands' success and
# verification cases need the test gateway (SNAP_TEST_S3_ENDPOINT); without it only their
# usage and failure classes are checked.
. "$SRCDIR/tests/tools/lib.sh"
make_keys
make_disk disk.img 24
mkdir -p out

# --- every command: --version prints what the top level prints
"$B" --version >top.txt || fail "snapbundle --version"
grep -Eq '^snapbundle [0-9]+\.[0-9]+\.[0-9]+$' top.txt || fail "version line: $(cat top.txt)"
for cmd in bundle bundle-vol unbundle verify store restore rekey inspect bench upload-bundle \
	download-bundle delete-bundle abort migrate-manifest migrate-bundle version; do
	expect 0 "$cmd --version" "$B" $cmd --version
	cmp -s cmd.out top.txt || fail "$cmd --version printed '$(cat cmd.out)'"
done
expect 0 "verify IMAGE.bin --version" "$B" verify x.bin --version
cmp -s cmd.out top.txt || fail "verify x.bin --version printed '$(cat cmd.out)'"
expect 2 "unknown command" "$B" frobnicate
expect 2 "unknown command, json" "$B" frobnicate --json

# --- bundle
expect 0 "bundle" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out --progress=none --json
M=out/disk.img.manifest.xml
[ -f "$M" ] || fail "no manifest"
expect 2 "bundle without -c" "$B" bundle -i disk.img -k user.key -u 1 --ec2cert ec2.pem -d out
expect 2 "bundle unknown option" "$B" bundle --frobnicate
expect 2 "bundle --level 9" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out --level 9
expect 2 "bundle --threads x" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out --threads x
expect 2 "bundle operand" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out extra
expect 2 "bundle -d missing" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out/nonexistent
expect 1 "bundle missing image" "$B" bundle -i missing.img "${BUNDLE_KEYS[@]}" -d out --json
expect 1 "bundle existing" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out
expect 1 "bundle key/cert mismatch" "$B" bundle -i disk.img -c user.pem -k other.key \
	-u 123456789012 -r x86_64 --ec2cert ec2.pem -d out -p mismatch --json

# --- verify -m and unbundle: a damaged part is a verification failure
expect 0 "verify -m" "$B" verify -m "$M" -k user.key -c user.pem --json
expect 0 "unbundle" "$B" unbundle -m "$M" -k user.key -o restored.img --progress=none
cmp -s disk.img restored.img || fail "unbundle: the image differs"
expect 2 "unbundle without -k" "$B" unbundle -m "$M" -o x.img
expect 2 "unbundle bad option value" "$B" unbundle -m "$M" -k user.key --threads -1
expect 1 "unbundle missing manifest" "$B" unbundle -m missing.xml -k user.key -o x.img --json
expect 2 "verify -m unknown option" "$B" verify -m "$M" --frobnicate
expect 1 "verify -m missing" "$B" verify -m missing.manifest.xml
expect 3 "verify -m, certificate of another key" "$B" verify -m "$M" -c ec2.pem --json
mkdir dmg && cp out/disk.img.* dmg/
flip dmg/disk.img.part.0 1000
expect 3 "verify -m, damaged part" "$B" verify -m dmg/disk.img.manifest.xml --json
expect 3 "verify -m -k, damaged part" "$B" verify -m dmg/disk.img.manifest.xml -k user.key
expect 3 "unbundle, damaged part" "$B" unbundle -m dmg/disk.img.manifest.xml -k user.key \
	-o damaged.img --json
[ ! -e damaged.img ] || fail "unbundle of a damaged bundle left its output"
# a manifest whose signature does not match (an edited field): verification failed too
mkdir edit && cp out/disk.img.part.* edit/
sed 's|<user>[0-9]*</user>|<user>999999999999</user>|' "$M" >edit/disk.img.manifest.xml
expect 3 "verify -m -c, edited manifest" "$B" verify -m edit/disk.img.manifest.xml -c user.pem

# --- store, restore, verify IMAGE.bin, inspect IMAGE.bin
expect 0 "store" "$B" store disk.img -o img.bin --progress=none --json
expect 2 "store --threads x (was 1)" "$B" store disk.img -o x.bin --threads x
expect 2 "store --tag without =" "$B" store disk.img -o x.bin --tag novalue
expect 2 "store without -o" "$B" store disk.img
expect 1 "store missing source" "$B" store missing.img -o x.bin --json
expect 0 "restore" "$B" restore img.bin -o back.img --progress=none --json
cmp -s disk.img back.img || fail "restore: the image differs"
expect 2 "restore --partition 0 (was 1)" "$B" restore img.bin -o x.img --partition 0
expect 2 "restore --range bad (was 1)" "$B" restore img.bin -o x.img --range 5
expect 2 "restore --connections 0 (was 1)" "$B" restore img.bin -o x.img --connections 0
expect 1 "restore missing image" "$B" restore missing.bin -o x.img --json
expect 1 "restore existing output" "$B" restore img.bin -o back.img
expect 0 "verify IMAGE.bin" "$B" verify img.bin --json
expect 2 "verify IMAGE.bin --threads x (was 1)" "$B" verify img.bin --threads x
expect 1 "verify missing.bin" "$B" verify missing.bin
expect 0 "inspect IMAGE.bin" "$B" inspect img.bin --json
expect 2 "inspect IMAGE.bin --connections 0 (was 1)" "$B" inspect img.bin --connections 0
expect 0 "inspect disk" "$B" inspect disk.img --json
expect 0 "inspect manifest" "$B" inspect "$M" --json
expect 1 "inspect missing" "$B" inspect missing.img --json
expect 2 "inspect --min-gap x" "$B" inspect disk.img --min-gap x
# a frame's stored bytes changed: its digest does not match
off=$(python3 -c 'import json, sys
f = json.load(sys.stdin)["frame_index"][0]
print(f["file_offset"] + f["stored_len"] // 2)' \
	< <("$B" inspect img.bin --frames --json))
[ -n "$off" ] || fail "inspect --frames --json: no frame 0"
cp img.bin bad.bin && flip bad.bin "${off:-0}"
expect 3 "verify IMAGE.bin, damaged frame" "$B" verify bad.bin --json
expect 3 "restore, damaged frame" "$B" restore bad.bin -o bad.img --progress=none --json
[ ! -e bad.img ] || fail "restore of a damaged image left its output"

# --- the S3 commands: usage and failure without a service
NOS3=(--endpoint-url http://127.0.0.1:9 --region us-east-1 --access-key a --secret-key b
	--retry 0)
expect 2 "upload-bundle without -b" "$B" upload-bundle -m "$M"
expect 2 "download-bundle without -b" "$B" download-bundle -m x.manifest.xml
expect 2 "delete-bundle without -y, not a terminal" "$B" delete-bundle -b bkt -p disk.img \
	"${NOS3[@]}"
expect 2 "abort without URL" "$B" abort
expect 2 "upload-bundle --connections 0" "$B" upload-bundle -b bkt -m "$M" --connections 0
expect 1 "upload-bundle, no service" "$B" upload-bundle -b bkt -m "$M" "${NOS3[@]}" --json
expect 1 "abort, no service" "$B" abort s3://bkt/x "${NOS3[@]}" --json
expect 2 "bench unknown option" "$B" bench --frobnicate
for cmd in bundle-vol rekey migrate-manifest migrate-bundle; do
	expect 2 "$cmd unknown option" "$B" $cmd --frobnicate --json
done
expect 2 "bundle-vol --size x (was 1)" "$B" bundle-vol --size x

# --- interrupted: 130 after SIGINT, 143 after SIGTERM, whatever the command
make_disk big.img 80
SLOW=(--threads 1 --progress=json)
interrupt 130 INT "bundle" "$B" bundle -i big.img "${BUNDLE_KEYS[@]}" -d out --level 3 "${SLOW[@]}"
interrupt 143 TERM "bundle" "$B" bundle -i big.img "${BUNDLE_KEYS[@]}" -d out --level 3 \
	"${SLOW[@]}"
interrupt 130 INT "store" "$B" store big.img -o big.bin --level 3 --frame-size 64K "${SLOW[@]}"
interrupt 143 TERM "store, json" "$B" store big.img -o big.bin --level 3 --frame-size 64K \
	"${SLOW[@]}" --json
python3 -c 'import json; d = json.load(open("cmd.out"))
assert d["exit_code"] == 143 and d["exit_class"] == "interrupted", d' ||
	fail "store, json, SIGTERM: document $(head -c 300 cmd.out)"
expect 0 "bundle big" "$B" bundle -i big.img "${BUNDLE_KEYS[@]}" -d out --progress=none
expect 0 "store big" "$B" store big.img -o big.bin --progress=none
interrupt 130 INT "unbundle" "$B" unbundle -m out/big.img.manifest.xml -k user.key \
	-o big.out "${SLOW[@]}"
interrupt 143 TERM "verify -m" "$B" verify -m out/big.img.manifest.xml -k user.key "${SLOW[@]}"
interrupt 130 INT "restore" "$B" restore big.bin -o big.out "${SLOW[@]}"
interrupt 143 TERM "restore" "$B" restore big.bin -o big.out "${SLOW[@]}"
[ ! -e big.out ] || fail "an interrupted unbundle or restore left its output"

# --- with the test gateway: the S3 commands' other classes
if [ -n "${SNAP_TEST_S3_ENDPOINT:-}" ]; then
	S3=(--endpoint-url "$SNAP_TEST_S3_ENDPOINT" --region "${SNAP_TEST_S3_REGION:-us-east-1}"
		--access-key "$SNAP_TEST_S3_ACCESS_KEY" --secret-key "$SNAP_TEST_S3_SECRET_KEY")
	bkt="snap-exit-$$-$RANDOM"
	expect 0 "upload-bundle" "$B" upload-bundle -b "$bkt" -m "$M" --location us-east-1 --acl private \
		"${S3[@]}" \
		--json
	expect 0 "download-bundle" "$B" download-bundle -b "$bkt" -p disk.img -d . "${S3[@]}" \
		--json
	cmp -s disk.img.part.0 out/disk.img.part.0 || fail "download-bundle: part 0 differs"
	# a part changed in the bucket (by the outside judge, awscli): its SHA-1 does not match
	AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
		AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" \
		AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY" \
		AWS_DEFAULT_REGION="${SNAP_TEST_S3_REGION:-us-east-1}" \
		aws --endpoint-url "$SNAP_TEST_S3_ENDPOINT" s3 cp dmg/disk.img.part.0 \
		"s3://$bkt/disk.img.part.0" >/dev/null 2>&1 || fail "aws s3 cp of the damaged part"
	mkdir dl
	expect 3 "download-bundle, damaged part" "$B" download-bundle -b "$bkt" -p disk.img -d dl \
		"${S3[@]}" --json
	expect 3 "verify -m s3://, damaged part" "$B" verify -m "s3://$bkt/disk.img.manifest.xml" \
		"${S3[@]}"
	expect 0 "abort" "$B" abort "s3://$bkt/" "${S3[@]}" --json
	expect 0 "delete-bundle" "$B" delete-bundle -b "$bkt" -p disk.img -y --clear "${S3[@]}" \
		--json
else
	echo "SNAP_TEST_S3_ENDPOINT unset: the S3 commands' ok and verification classes skipped"
fi
finish
