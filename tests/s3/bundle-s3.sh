#!/usr/bin/env bash
# bundle-s3.sh - classic bundles in S3, judged by awscli (/usr/bin/aws) against the gateway of
# the tests (tests/s3/rgw.sh):
#  - bundle -d s3://BUCKET/PREFIX/ of the demo disk: list-objects-v2 shows exactly the parts the
#    manifest names and the manifest, nothing else; aws s3 cp --recursive downloads them, and
#    the outside judges' pipeline (openssl, gunzip, tar) and a local unbundle of that download
#    both give the source back; the tar stream is the one a local bundle of the source makes
#    (same digest, sizes and part count: only the random key differs);
#  - unbundle -m s3:// (and a local manifest with -s s3://) restores the source, verify -m s3://
#    passes (digests, signature, image);
#  - --acl on every object (none without it), the service given by options alone;
#  - 200 MiB in default 10 MiB parts, more than the client's memory budget holds at once: both
#    ways with a peak RSS under 256 MiB;
#  - an existing manifest is refused without --force and replaced with it;
#  - a place with a doubled trailing '/' (s3://BUCKET/b2//) is the same place for bundle -d,
#    unbundle -s, download-bundle -b and delete-bundle -b: the objects under "b2/", none under
#    "b2//", found and removed there;
#  - a part changed in the bucket, a truncated part, a missing part and a missing manifest:
#    verify and unbundle fail naming the object, and leave no output file;
#  - SIGINT and SIGTERM in the middle of a bundle to S3: exit 130/143, and nothing stays under
#    the prefix (the parts it had uploaded are deleted: no manifest means no bundle);
#  - a wrong secret fails fast (no retry storm) with a clear message, nothing uploaded.
# Skips (77) without SNAP_TEST_S3_ENDPOINT & co or without /usr/bin/aws.
. "$(dirname "$0")/../bundle/lib.sh"

for v in SNAP_TEST_S3_ENDPOINT SNAP_TEST_S3_ACCESS_KEY SNAP_TEST_S3_SECRET_KEY SNAP_TEST_S3_REGION; do
	[ -n "${!v:-}" ] || { echo "SKIP: $v is not set (tests/s3/rgw.sh start DIR, then source DIR/env)"; exit 77; }
done
AWS=/usr/bin/aws
[ -x "$AWS" ] || { echo "SKIP: $AWS missing (tools/install-deps.sh installs awscli)"; exit 77; }

bucket="snaptest-bundle-$$-$RANDOM"
cleanup() {
	"$AWS" "${common[@]}" s3 rb "s3://$bucket" --force >/dev/null 2>&1 || true
	rm -rf "$T"
}
trap cleanup EXIT

# Only what this test sets, for awscli and for snapbundle's chain alike (AWS_ENDPOINT_URL is
# read by snapbundle; awscli 2.9 ignores it, hence --endpoint-url).
export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none"
export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
export AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY"
export AWS_DEFAULT_REGION="$SNAP_TEST_S3_REGION" AWS_ENDPOINT_URL="$SNAP_TEST_S3_ENDPOINT"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3 AWS_REGION
common=(--endpoint-url "$SNAP_TEST_S3_ENDPOINT" --cli-read-timeout 60 --cli-connect-timeout 10)
aws() { timeout 120 "$AWS" "${common[@]}" "$@"; }
step() { echo "-- $*"; }
# keys PREFIX: the keys under PREFIX, one a line, sorted
keys() {
	aws s3api list-objects-v2 --bucket "$bucket" --prefix "$1" --query 'Contents[].Key' \
		--output text | tr -s '\t ' '\n' | grep -v '^None$' | grep -v '^$' | sort || true
}
# names MANIFEST: the part file names it lists, in order
names() {
	python3 -c 'import sys, xml.etree.ElementTree as E
for p in E.parse(sys.argv[1]).getroot().find("image/parts"): print(p.find("filename").text)' "$1"
}
# every byte of the demo disk kept (free space and the junk outside partitions too), so that
# what comes back equals the source
sbundle() { bundle "$@" --no-fs-skip --keep-unpartitioned; }
unb() { "$SNAPBUNDLE" unbundle -k "$T/user.key" --progress=none "$@"; }
ver() { "$SNAPBUNDLE" verify -k "$T/user.key" -c "$T/user.pem" --progress=none "$@"; }

make_keys
step "create bucket $bucket"
aws s3api create-bucket --bucket "$bucket" >/dev/null

img="$T/disk.img"
"$SRCDIR/tools/make-demo-disk.sh" "$img" 128 >/dev/null
M="s3://$bucket/b1/disk.img.manifest.xml"

step "bundle -d s3://$bucket/b1/ (1 MiB parts)"
sbundle "$img" "s3://$bucket/b1/" --part-size 1M > "$T/out" || fail "bundle to S3 failed"
cat "$T/out"
grep -q 'uploaded' "$T/out" || fail "no bytes uploaded reported: $(cat "$T/out")"

step "awscli lists the parts and the manifest, nothing else"
keys b1/ > "$T/keys"
aws s3 cp --only-show-errors "$M" "$T/m1.xml"
names "$T/m1.xml" | sed 's#^#b1/#' > "$T/want"
echo b1/disk.img.manifest.xml >> "$T/want"
sort -o "$T/want" "$T/want"
n=$(names "$T/m1.xml" | wc -l)
[ "$n" -ge 3 ] || fail "only $n parts: the test wants several"
diff "$T/want" "$T/keys" || fail "the bucket holds other keys than the manifest names"
# padded names: lexicographic order is index order (§1.8)
[ "$(names "$T/m1.xml")" = "$(names "$T/m1.xml" | sort)" ] || fail "part names do not sort in order"

step "aws s3 cp --recursive, then the outside judges and a local unbundle"
aws s3 cp --only-show-errors --recursive "s3://$bucket/b1/" "$T/dl/"
stream "$T/dl/disk.img.manifest.xml" "$T/dl" | tar -x -O -f - > "$T/judged"
cmp "$img" "$T/judged" || fail "the judges' pipeline on the download differs from the source"
rm -f "$T/judged"
unb -m "$T/dl/disk.img.manifest.xml" -o "$T/local.img" > /dev/null
cmp "$img" "$T/local.img" || fail "local unbundle of the download differs from the source"
rm -f "$T/local.img"

step "the same tar stream, sizes and parts as a local bundle"
mkdir "$T/lb"
sbundle "$img" "$T/lb" --part-size 1M > /dev/null
for f in image/digest image/size image/bundled_size; do
	a=$(field "$T/lb/disk.img.manifest.xml" "$f")
	b=$(field "$T/m1.xml" "$f")
	[ -n "$a" ] && [ "$a" = "$b" ] || fail "$f: local $a, S3 $b"
done
[ "$(names "$T/lb/disk.img.manifest.xml" | wc -l)" = "$n" ] || fail "part count differs"
python3 - "$T/lb/disk.img.manifest.xml" "$T/m1.xml" "$T/lb" "$T/dl" <<'PY' || fail "part sizes differ"
import os, sys, xml.etree.ElementTree as E
def sizes(m, d):
    return [os.path.getsize(os.path.join(d, p.find("filename").text))
            for p in E.parse(m).getroot().find("image/parts")]
a, b = sizes(sys.argv[1], sys.argv[3]), sizes(sys.argv[2], sys.argv[4])
assert a == b, (a[:4], b[:4])
PY

step "unbundle -m s3:// and verify -m s3://"
unb -m "$M" -o "$T/s3.img" > "$T/out" || fail "unbundle -m s3:// failed"
cat "$T/out"
grep -q 'downloaded' "$T/out" || fail "no bytes downloaded reported"
cmp "$img" "$T/s3.img" || fail "unbundle -m s3:// differs from the source"
rm -f "$T/s3.img"
unb -m "$T/dl/disk.img.manifest.xml" -s "s3://$bucket/b1/" -o "$T/s.img" > /dev/null ||
	fail "unbundle of a local manifest with -s s3:// failed"
cmp "$img" "$T/s.img" || fail "unbundle -s s3:// differs from the source"
rm -f "$T/s.img"
ver -m "$M" > "$T/out" || fail "verify -m s3:// failed: $(cat "$T/out")"
grep -q 'OK' "$T/out" || fail "verify said: $(cat "$T/out")"
"$SNAPBUNDLE" verify -m "$M" --progress=none > /dev/null || fail "verify -m s3:// without a key"

step "an existing bundle is refused without --force, replaced with it"
if sbundle "$img" "s3://$bucket/b1/" --part-size 1M > /dev/null 2> "$T/err"; then
	fail "an existing manifest was replaced without --force"
fi
grep -q 'already exists' "$T/err" || fail "no 'already exists': $(cat "$T/err")"
sbundle "$img" "s3://$bucket/b1" --part-size 2M --force --debug > /dev/null 2> "$T/err" ||
	fail "--force failed: $(cat "$T/err")"
# the old manifest goes before a part is replaced: no manifest names a part of another bundle
grep -q "deleted s3://$bucket/b1/disk.img.manifest.xml" "$T/err" ||
	fail "--force did not delete the old manifest first: $(cat "$T/err")"
aws s3 cp --only-show-errors "$M" "$T/m2.xml"
names "$T/m2.xml" | sed 's#^#b1/#' > "$T/want"
echo b1/disk.img.manifest.xml >> "$T/want"
sort -o "$T/want" "$T/want"
keys b1/ > "$T/keys"
diff "$T/want" "$T/keys" || fail "after --force the bucket holds stale parts"
unb -m "$M" -o "$T/f.img" > /dev/null || fail "unbundle of the replaced bundle"
cmp "$img" "$T/f.img" || fail "replaced bundle differs"
rm -f "$T/f.img"

step "s3://$bucket/b2// is the place b2/ for bundle, unbundle -s, download- and delete-bundle"
sbundle "$img" "s3://$bucket/b2//" --part-size 4M > /dev/null || fail "bundle to b2// failed"
[ -z "$(keys b2//)" ] || fail "keys under b2//: $(keys b2//)"
[ "$(keys b2/ | grep -c '^b2/disk\.img\.manifest\.xml$')" = 1 ] || fail "no b2/ manifest: $(keys b2/)"
unb -m "s3://$bucket/b2/disk.img.manifest.xml" -s "s3://$bucket/b2//" -o "$T/b2.img" \
	> /dev/null || fail "unbundle -s s3://$bucket/b2// failed"
cmp "$img" "$T/b2.img" || fail "unbundle -s b2// differs from the source"
rm -f "$T/b2.img"
mkdir "$T/b2"
"$SNAPBUNDLE" download-bundle -b "$bucket/b2//" -m disk.img.manifest.xml -d "$T/b2" \
	> /dev/null || fail "download-bundle -b $bucket/b2// failed"
diff <(keys b2/ | sed 's#^b2/##') <(ls "$T/b2" | sort) || fail "download-bundle b2//: other files"
"$SNAPBUNDLE" delete-bundle -y -b "$bucket/b2//" -m disk.img.manifest.xml > /dev/null ||
	fail "delete-bundle -b $bucket/b2// failed"
[ -z "$(keys b2/)" ] || fail "delete-bundle b2// left: $(keys b2/)"
rm -rf "$T/b2"

step "--acl public-read, the service given by options (no environment): every object gets it"
(
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL
	sbundle "$img" "s3://$bucket/acl/" --part-size 4M --acl public-read \
		--endpoint-url "$SNAP_TEST_S3_ENDPOINT" --access-key "$SNAP_TEST_S3_ACCESS_KEY" \
		--secret-key "$SNAP_TEST_S3_SECRET_KEY" --region "$SNAP_TEST_S3_REGION" > /dev/null
) || fail "bundle with --acl and options failed"
for k in $(keys acl/); do
	aws s3api get-object-acl --bucket "$bucket" --key "$k" --output json > "$T/acl.json"
	python3 - "$T/acl.json" "$k" <<'PY' || fail "$k: no public READ grant: $(cat "$T/acl.json")"
import json, sys
g = json.load(open(sys.argv[1]))["Grants"]
assert any(x["Grantee"].get("URI", "").endswith("/global/AllUsers") and x["Permission"] == "READ"
           for x in g), (sys.argv[2], g)
PY
done
[ "$(keys acl/ | wc -l)" -ge 3 ] || fail "acl: too few objects: $(keys acl/)"
k=$(keys b1/ | head -1)
aws s3api get-object-acl --bucket "$bucket" --key "$k" --output json > "$T/acl.json"
if grep -q AllUsers "$T/acl.json"; then fail "without --acl, $k is public"; fi

step "default 10 MiB parts, more of them than the client's memory budget holds: bounded RSS"
# a sanitizer's shadow memory and quarantine are not the program's: the bound holds without one
max_rss=$((256 * 1024))
if ldd "$SNAPBUNDLE" 2>/dev/null | grep -E >/dev/null 'lib(a|ub)san'; then max_rss=$((4 * 1024 * 1024)); fi
head -c 200M /dev/urandom > "$T/rand"
/usr/bin/time -f "%M" -o "$T/rss" timeout 300 "$SNAPBUNDLE" bundle -i "$T/rand" \
	-c "$T/user.pem" -k "$T/user.key" -u 123456789012 -r x86_64 --ec2cert "$T/ec2.pem" \
	-d "s3://$bucket/big/" --progress=none > /dev/null || fail "bundle of 200 MiB failed"
echo "bundle: peak RSS $(cat "$T/rss") KiB"
[ "$(cat "$T/rss")" -lt $max_rss ] || fail "bundle peak RSS $(cat "$T/rss") KiB"
[ "$(keys big/ | wc -l)" -eq 22 ] || fail "want 21 parts and the manifest: $(keys big/)"
/usr/bin/time -f "%M" -o "$T/rss" timeout 300 "$SNAPBUNDLE" unbundle -k "$T/user.key" \
	-m "s3://$bucket/big/rand.manifest.xml" -o "$T/rand.out" --progress=none > /dev/null ||
	fail "unbundle of 200 MiB failed"
echo "unbundle: peak RSS $(cat "$T/rss") KiB"
[ "$(cat "$T/rss")" -lt $max_rss ] || fail "unbundle peak RSS $(cat "$T/rss") KiB"
cmp "$T/rand" "$T/rand.out" || fail "200 MiB unbundled differs"
rm -f "$T/rand" "$T/rand.out"
aws s3 rm --only-show-errors --recursive "s3://$bucket/big/"

# fails CMD... : it fails, names the object, and leaves no file in $T/o
fails() {
	local what="$1" name="$2"
	shift 2
	rm -rf "$T/o" && mkdir "$T/o"
	if "$@" > /dev/null 2> "$T/err"; then fail "$what: succeeded"; fi
	grep -qF "$name" "$T/err" || fail "$what: the message does not name $name: $(cat "$T/err")"
	[ -z "$(ls -A "$T/o")" ] || fail "$what: left $(ls -A "$T/o")"
	echo "$what: $(tail -1 "$T/err")"
}
p1=$(names "$T/m2.xml" | sed -n 2p)
aws s3 cp --only-show-errors "s3://$bucket/b1/$p1" "$T/p1"

step "a part changed in the bucket: caught before its bytes are used"
python3 - "$T/p1" "$T/p1.bad" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 0x40
open(sys.argv[2], "wb").write(b)
PY
aws s3 cp --only-show-errors "$T/p1.bad" "s3://$bucket/b1/$p1"
fails "verify, changed part" "s3://$bucket/b1/$p1" ver -m "$M"
fails "unbundle, changed part" "s3://$bucket/b1/$p1" unb -m "$M" -d "$T/o"
grep -q 'damaged' "$T/err" || fail "changed part: not called damaged: $(cat "$T/err")"

step "a truncated part"
head -c 1000 "$T/p1" > "$T/p1.short"
aws s3 cp --only-show-errors "$T/p1.short" "s3://$bucket/b1/$p1"
fails "verify, truncated part" "s3://$bucket/b1/$p1" ver -m "$M"
fails "unbundle, truncated part" "s3://$bucket/b1/$p1" unb -m "$M" -d "$T/o"
grep -q 'truncated' "$T/err" || fail "truncated part: not called truncated: $(cat "$T/err")"

step "a missing part"
aws s3 rm --only-show-errors "s3://$bucket/b1/$p1"
fails "verify, missing part" "s3://$bucket/b1/$p1" ver -m "$M"
fails "unbundle, missing part" "s3://$bucket/b1/$p1" unb -m "$M" -d "$T/o"
grep -q 'missing' "$T/err" || fail "missing part: not called missing: $(cat "$T/err")"
aws s3 cp --only-show-errors "$T/p1" "s3://$bucket/b1/$p1"
unb -m "$M" -d "$T/o" > /dev/null || fail "the bundle put back does not unbundle"
cmp "$img" "$T/o/disk.img" || fail "the bundle put back differs"
rm -rf "$T/o"

step "a missing manifest"
fails "unbundle, missing manifest" "s3://$bucket/b1/nothing.manifest.xml" \
	unb -m "s3://$bucket/b1/nothing.manifest.xml" -d "$T/o"
fails "verify, missing manifest" "s3://$bucket/b1/nothing.manifest.xml" \
	ver -m "s3://$bucket/b1/nothing.manifest.xml"

step "SIGINT and SIGTERM mid-upload: the parts uploaded are deleted"
big="$T/big"
# incompressible, slowest level, one thread, 512 KiB parts: many PUTs over seconds
head -c 96M /dev/zero | openssl enc -aes-128-ctr -K 00112233445566778899aabbccddeeff \
	-iv 00000000000000000000000000000000 2>/dev/null > "$big"
for sig in INT TERM; do
	pfx="int-$sig"
	"$SNAPBUNDLE" bundle -i "$big" -c "$T/user.pem" -k "$T/user.key" -u 123456789012 \
		-r x86_64 --ec2cert "$T/ec2.pem" -d "s3://$bucket/$pfx/" --level 3 --threads 1 \
		--part-size 512K --progress=json 2> "$T/err" > /dev/null &
	pid=$!
	# wait until parts are cut (bytes written past 2 parts), then freeze the process and look:
	# the signal lands mid-upload however fast this machine is
	for _ in $(seq 1 1000); do
		w=$(grep -o '"bytes_written":[0-9]*' "$T/err" | tail -1 | cut -d: -f2 || true)
		[ "${w:-0}" -gt $((1024 * 1024)) ] && break
		sleep 0.01
	done
	up=
	for _ in $(seq 1 50); do
		kill -STOP $pid 2>/dev/null || fail "SIG$sig: finished before it could be signalled"
		up=$(keys "$pfx/")
		[ -n "$up" ] && break
		kill -CONT $pid
		sleep 0.1
	done
	[ -n "$up" ] || { kill -KILL $pid; fail "SIG$sig: no part uploaded before the signal"; }
	echo "$up" | grep -q manifest && { kill -KILL $pid; fail "SIG$sig: already finished"; }
	echo "SIG$sig after $(echo "$up" | wc -l) parts"
	kill -$sig $pid
	kill -CONT $pid
	rc=0
	wait $pid || rc=$?
	[ $rc -eq $((128 + $(kill -l "$sig"))) ] || fail "SIG$sig: exit status $rc: $(tail -3 "$T/err")"
	grep -q 'cancelled' "$T/err" || fail "SIG$sig: no message: $(tail -3 "$T/err")"
	left=$(keys "$pfx/")
	[ -z "$left" ] || fail "SIG$sig left: $left"
done

step "a wrong secret: fails fast, says so, uploads nothing"
t0=$(date +%s)
if AWS_SECRET_ACCESS_KEY="${SNAP_TEST_S3_SECRET_KEY}x" sbundle "$img" "s3://$bucket/bad/" \
	--part-size 1M > /dev/null 2> "$T/err"; then
	fail "a bundle with a wrong secret succeeded"
fi
t1=$(date +%s)
cat "$T/err"
[ $((t1 - t0)) -lt 10 ] || fail "a wrong secret took $((t1 - t0)) s: a retry storm?"
grep -qiE 'SignatureDoesNotMatch|403|denied|forbidden' "$T/err" || fail "unclear: $(cat "$T/err")"
[ -z "$(keys bad/)" ] || fail "a wrong secret uploaded: $(keys bad/)"
if AWS_SECRET_ACCESS_KEY="${SNAP_TEST_S3_SECRET_KEY}x" unb -m "$M" -d "$T/o2" 2> "$T/err"; then
	fail "an unbundle with a wrong secret succeeded"
fi
grep -qiE 'SignatureDoesNotMatch|403|denied|forbidden' "$T/err" || fail "unclear: $(cat "$T/err")"
echo ok
