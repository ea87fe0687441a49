#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# json-schemas.sh - the --json documents of every command, as the commands really print them
# (success and failure), validate against their schemas in docs/schema/ (validate-json.py,
# python3-jsonschema); so do the --progress=json events, a real `bench --json`, the committed
# bench/results/*.json and the examples of docs/json.md. inspect says what its SOURCE is: a
# disk, a .bin or a manifest (local, and in S3 when the test gateway runs), where it once
# reported a manifest as a tiny disk and refused a .bin's --json.
. "$SRCDIR/tests/tools/lib.sh"
python3 -c 'import jsonschema' 2>/dev/null || { echo "skip: python3-jsonschema missing"; exit 77; }
SCHEMA="$SRCDIR/docs/schema"
VALIDATE=(python3 "$SRCDIR/tests/tools/validate-json.py")
make_keys
make_disk disk.img 16
mkdir -p out

# valid NAME.json DESCRIPTION COMMAND...: COMMAND --json (exit status free), its document valid
valid() {
	local schema=$1 what=$2
	shift 2
	"$@" --json >doc.json 2>cmd.err </dev/null
	"${VALIDATE[@]}" "$SCHEMA/$schema" doc.json >val.out ||
		fail "$what: $(cat val.out) in $(head -c 600 doc.json)"
}
# field KEY: the value of the last document's member KEY, as JSON
field() {
	python3 -c 'import json, sys
print(json.dumps(json.load(open("doc.json")).get(sys.argv[1])))' "$1"
}

valid version.json "version" "$B" version
valid bundle.json "bundle" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out --progress=none
[ "$(field exit_code)" = 0 ] || fail "bundle failed: $(cat cmd.err)"
[ "$(field manifest_path)" = '"out/disk.img.manifest.xml"' ] ||
	fail "bundle manifest_path $(field manifest_path)"
[ "$(field bytes_total)" = $((16 << 20)) ] || fail "bundle bytes_total $(field bytes_total)"
valid bundle.json "bundle failure" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out
[ "$(field exit_code)" = 1 ] || fail "bundle again: exit_code $(field exit_code)"
valid bundle.json "bundle usage" "$B" bundle -i disk.img
[ "$(field exit_class)" = '"usage"' ] || fail "bundle usage: $(field exit_class)"
M=out/disk.img.manifest.xml
valid verify.json "verify -m" "$B" verify -m "$M" -k user.key -c user.pem
[ "$(field kind)" = '"bundle"' ] || fail "verify -m kind $(field kind)"
valid unbundle.json "unbundle" "$B" unbundle -m "$M" -k user.key -o back.img --progress=none
[ "$(field output_path)" = '"back.img"' ] || fail "unbundle output_path $(field output_path)"
valid unbundle.json "unbundle failure" "$B" unbundle -m "$M" -k user.key -o back.img
valid store.json "store" "$B" store disk.img -o img.bin --progress=none
[ "$(field frames)" != null ] || fail "store: no frames"
valid store.json "store failure" "$B" store missing.img -o x.bin
valid restore.json "restore" "$B" restore img.bin -o back2.img --progress=none
cmp -s disk.img back2.img || fail "restore: the image differs"
valid restore.json "restore usage" "$B" restore img.bin
valid verify.json "verify IMAGE.bin" "$B" verify img.bin
[ "$(field kind)" = '"store-image"' ] || fail "verify IMAGE.bin kind $(field kind)"
# store -o -: the image is standard output, the document goes to stderr
"$B" store disk.img -o - --progress=none --json >piped.bin 2>doc.json </dev/null ||
	fail "store -o - --json: exit $?"
"${VALIDATE[@]}" "$SCHEMA/store.json" doc.json >val.out || fail "store -o -: $(cat val.out)"
"$B" verify piped.bin >/dev/null 2>&1 || fail "store -o - --json: the image is not valid"

# inspect: the three kinds, each told apart
valid inspect.json "inspect disk" "$B" inspect disk.img --extents
[ "$(field kind)" = '"disk"' ] || fail "inspect disk: kind $(field kind)"
valid inspect.json "inspect IMAGE.bin" "$B" inspect img.bin --extents --frames
[ "$(field kind)" = '"store-image"' ] || fail "inspect IMAGE.bin: kind $(field kind)"
listed=$(python3 -c 'import json; print(len(json.load(open("doc.json"))["frame_index"]))')
[ "$(field frame_count)" = "$listed" ] ||
	fail "inspect IMAGE.bin: frame_count is not the frames listed"
valid inspect.json "inspect manifest" "$B" inspect "$M" -c user.pem
[ "$(field kind)" = '"bundle-manifest"' ] || fail "inspect manifest: kind $(field kind)"
python3 - "$M" <<'PY' || fail "inspect manifest: the fields are not the manifest's"
import json, sys, xml.etree.ElementTree as E
doc = json.load(open("doc.json"))
m, x = doc["manifest"], E.parse(sys.argv[1]).getroot()
assert doc["signature_checked"] is True and m["signed"] is True, doc
assert m["size"] == int(x.find("image/size").text), m["size"]
assert m["bundled_size"] == int(x.find("image/bundled_size").text)
assert m["digest"] == x.find("image/digest").text, m["digest"]
names = [p.find("filename").text for p in x.find("image/parts")]
assert [p["filename"] for p in m["parts"]] == names, m["parts"]
assert m["arch"] == "x86_64" and m["user"] == "123456789012", m
PY
valid inspect.json "inspect failure" "$B" inspect missing.img
valid inspect.json "inspect manifest, wrong certificate" "$B" inspect "$M" -c ec2.pem
[ "$(field exit_code)" = 3 ] || fail "inspect manifest -c other: exit_code $(field exit_code)"

# the S3 commands' failures without a service
NOS3=(--endpoint-url http://127.0.0.1:9 --region us-east-1 --access-key a --secret-key b
	--retry 0)
valid upload-bundle.json "upload-bundle failure" "$B" upload-bundle -b bkt -m "$M" "${NOS3[@]}"
valid download-bundle.json "download-bundle usage" "$B" download-bundle -m x
valid delete-bundle.json "delete-bundle usage" "$B" delete-bundle -b bkt -p x "${NOS3[@]}"
valid abort.json "abort failure" "$B" abort s3://bkt/x "${NOS3[@]}"

# the commands without a schema of their own: the common members
for cmd in bundle-vol rekey migrate-manifest migrate-bundle; do
	valid envelope.json "$cmd usage" "$B" $cmd --frobnicate
	[ "$(field command)" = "\"$cmd\"" ] || fail "$cmd: command $(field command)"
done

# --progress=json: every event line
"$B" store disk.img -o p.bin --progress=json 2>progress.log >/dev/null ||
	fail "store --progress=json"
grep '^{' progress.log >events.jsonl
[ "$(grep -c '"stage":"data"' events.jsonl)" -ge 1 ] || fail "no data event: $(cat progress.log)"
"${VALIDATE[@]}" --lines "$SCHEMA/progress.json" events.jsonl >val.out ||
	fail "progress events: $(cat val.out)"

# bench: a real report, and the committed ones
"$B" bench --quick --size 32M --threads 1 --jobs store --json --workdir "$T" >bench.json \
	2>bench.err || fail "bench: $(tail -c 300 bench.err)"
"${VALIDATE[@]}" "$SCHEMA/bench.json" bench.json "$SRCDIR"/bench/results/*.json >val.out ||
	fail "bench reports: $(cat val.out)"

# the examples of docs/json.md
"${VALIDATE[@]}" --examples "$SRCDIR/docs/json.md" "$SCHEMA" >val.out ||
	fail "docs/json.md examples: $(cat val.out)"

# with the test gateway: the S3 commands' documents, and inspect of S3 objects
if [ -n "${SNAP_TEST_S3_ENDPOINT:-}" ]; then
	S3=(--endpoint-url "$SNAP_TEST_S3_ENDPOINT" --region "${SNAP_TEST_S3_REGION:-us-east-1}"
		--access-key "$SNAP_TEST_S3_ACCESS_KEY" --secret-key "$SNAP_TEST_S3_SECRET_KEY")
	bkt="snap-json-$$-$RANDOM"
	valid upload-bundle.json "upload-bundle" "$B" upload-bundle -b "$bkt" -m "$M" \
		--location us-east-1 --acl private "${S3[@]}"
	[ "$(field exit_code)" = 0 ] || fail "upload-bundle: $(cat cmd.err)"
	mkdir dl
	valid download-bundle.json "download-bundle" "$B" download-bundle -b "$bkt" -p disk.img \
		-d dl "${S3[@]}"
	[ "$(field exit_code)" = 0 ] || fail "download-bundle: $(cat cmd.err)"
	valid inspect.json "inspect s3:// manifest" "$B" inspect "s3://$bkt/disk.img.manifest.xml" \
		"${S3[@]}"
	[ "$(field kind)" = '"bundle-manifest"' ] || fail "inspect s3:// manifest: $(field kind)"
	valid store.json "store -o s3://" "$B" store disk.img -o "s3://$bkt/img.bin" "${S3[@]}" \
		--progress=none
	[ "$(field exit_code)" = 0 ] || fail "store -o s3://: $(cat cmd.err)"
	valid inspect.json "inspect s3:// image" "$B" inspect "s3://$bkt/img.bin" "${S3[@]}"
	[ "$(field kind)" = '"store-image"' ] || fail "inspect s3:// image: $(field kind)"
	valid verify.json "verify s3:// image" "$B" verify "s3://$bkt/img.bin" "${S3[@]}"
	valid abort.json "abort" "$B" abort "s3://$bkt/" "${S3[@]}"
	valid delete-bundle.json "delete-bundle" "$B" delete-bundle -b "$bkt" -p disk.img -y \
		"${S3[@]}"
	[ "$(field exit_code)" = 0 ] || fail "delete-bundle: $(cat cmd.err)"
	AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
		AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" \
		AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY" \
		aws --endpoint-url "$SNAP_TEST_S3_ENDPOINT" s3 rb --force "s3://$bkt" \
		>/dev/null 2>&1 || true
else
	echo "SNAP_TEST_S3_ENDPOINT unset: the S3 commands' success documents not checked"
fi
finish
