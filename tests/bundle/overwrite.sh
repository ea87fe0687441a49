#!/usr/bin/env bash
# overwrite.sh - an existing bundle (manifest or any part) is not overwritten without --force;
# with --force it is replaced whole, leftover parts of the old one included.
. "$(dirname "$0")/lib.sh"
make_keys

img="$T/img"
head -c 100000 /dev/urandom > "$img"
mkdir "$T/out"
bundle "$img" "$T/out" --part-size 8K > /dev/null
before=$(cd "$T/out" && sha1sum * | sha1sum)
count=$(ls "$T/out" | grep -c '\.part\.')
[ "$count" -ge 10 ] || fail "expected many parts, got $count"

if bundle "$img" "$T/out" 2> "$T/err" > /dev/null; then fail "overwrote without --force"; fi
grep -q 'already exists' "$T/err" || fail "message: $(cat "$T/err")"
[ "$(cd "$T/out" && sha1sum * | sha1sum)" = "$before" ] || fail "old bundle changed"

# a lone part is enough to refuse
mkdir "$T/out2"
touch "$T/out2/img.part.3"
if bundle "$img" "$T/out2" 2> /dev/null > /dev/null; then fail "overwrote a part"; fi
[ ! -e "$T/out2/img.manifest.xml" ] || fail "manifest written"
[ "$(ls -A "$T/out2")" = "img.part.3" ] || fail "files left: $(ls -A "$T/out2")"

bundle "$img" "$T/out" --force > /dev/null
[ "$(ls -A "$T/out" | sort | tr '\n' ' ')" = "img.manifest.xml img.part.0 " ] ||
	fail "after --force: $(ls -A "$T/out")"
stream "$T/out/img.manifest.xml" "$T/out" | tar -x -O -f - | cmp - "$img" ||
	fail "replaced bundle does not extract"

# --force never replaces or deletes the source, even one named like a part of the bundle
mkdir "$T/out4"
cp "$img" "$T/out4/y.part.0"
cp "$img" "$T/out4/keep"
bundle "$T/out4/y.part.0" "$T/out4" -p y --part-size 1M > /dev/null 2>&1 || true
bundle "$T/out4/y.part.0" "$T/out4" -p y --force > /dev/null 2>"$T/err" &&
	fail "bundle --force replaced its own source"
grep -q "y.part.0 is the source: refusing to replace it" "$T/err" || fail "message: $(cat "$T/err")"
cmp "$T/out4/y.part.0" "$T/out4/keep" || fail "the source changed"
[ "$(ls -A "$T/out4" | sort | tr '\n' ' ')" = "keep y.part.0 " ] ||
	fail "files left: $(ls -A "$T/out4")"

# the debris of a killed bundle (a dead owner's temporaries) is reclaimed by the next run;
# a live owner's is kept
mkdir "$T/out5"
dead=$(python3 -c 'import os
p = 4000000
while os.path.exists("/proc/%d" % p): p -= 1
print(p)')
touch "$T/out5/.img.part.0.tmp-$dead" "$T/out5/.img.manifest.xml.tmp-$dead" \
	"$T/out5/.img.part.1.tmp-$$"
bundle "$img" "$T/out5" > /dev/null
[ "$(ls -A "$T/out5" | sort | tr '\n' ' ')" = ".img.part.1.tmp-$$ img.manifest.xml img.part.0 " ] ||
	fail "debris not reclaimed (or a live owner's removed): $(ls -A "$T/out5")"

# a private key that does not match the certificate: refused before anything is written (its
# bundle's signature could never be verified)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/other.key" -out "$T/other.pem" -days 1 \
	-subj /CN=other 2>/dev/null
mkdir "$T/out6"
if "$SNAPBUNDLE" bundle -i "$img" -c "$T/user.pem" -k "$T/other.key" -u 123456789012 -r x86_64 \
	--ec2cert "$T/ec2.pem" -d "$T/out6" --batch 2>"$T/err" >/dev/null; then
	fail "bundled with a key that does not match the certificate"
fi
grep -q "does not match certificate" "$T/err" || fail "message: $(cat "$T/err")"
[ -z "$(ls -A "$T/out6")" ] || fail "files left: $(ls -A "$T/out6")"

# a prefix with a slash, a missing image, a missing key: refused, nothing written
mkdir "$T/out3"
if bundle "$img" "$T/out3" -p a/b 2>/dev/null >/dev/null; then fail "prefix with /"; fi
if bundle "$T/nope" "$T/out3" 2>"$T/err" >/dev/null; then fail "missing image"; fi
grep -q "$T/nope" "$T/err" || fail "error does not name the image: $(cat "$T/err")"
if "$SNAPBUNDLE" bundle -i "$img" -c "$T/user.pem" -k "$T/nokey" -u 123456789012 -r x86_64 \
	--ec2cert "$T/ec2.pem" -d "$T/out3" 2>"$T/err" >/dev/null; then fail "missing key"; fi
grep -q "$T/nokey" "$T/err" || fail "error does not name the key: $(cat "$T/err")"
if bundle "$img" "$T/out3" -u 12345 2>/dev/null >/dev/null; then fail "bad user"; fi
# wrong turns get a message that says what to do
if bundle "$T/" "$T/out3" 2>"$T/err" >/dev/null; then fail "a directory as the image"; fi
grep -q "give a file or a device, or a name with -p" "$T/err" || fail "message: $(cat "$T/err")"
if bundle "$img" "$T/nowhere" 2>"$T/err" >/dev/null; then fail "a missing destination"; fi
grep -q "destination $T/nowhere: No such file or directory" "$T/err" ||
	fail "message: $(cat "$T/err")"
if bundle "$img" "$T/out3" -B 'root' 2>/dev/null >/dev/null; then fail "bad mapping"; fi
[ -z "$(ls -A "$T/out3")" ] || fail "files left: $(ls -A "$T/out3")"
echo ok
