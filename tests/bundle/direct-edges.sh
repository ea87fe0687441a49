#!/usr/bin/env bash
# direct-edges.sh - edges of bundle's O_DIRECT parts that direct.sh does not reach: parts far
# smaller than the 4 MiB stage (every part is one padded last block plus ftruncate, many part
# ends inside one stage), a part size that is no multiple of the AES block, and a tmpfs
# destination (O_DIRECT accepted or refused depending on the kernel). Judges: each part's
# SHA-1 against the manifest (python hashlib), the gzip stream decrypted by openssl identical
# to the buffered bundle's (the AES key differs per bundle, the gzip bytes do not) and GNU tar
# extracting the image.
. "$(dirname "$0")/lib.sh"
make_keys

img="$T/img"
head -c 150000 /dev/urandom > "$img"
head -c 200000 /dev/zero >> "$img"
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 400)' >> "$img"

# gz MANIFEST DIR: the gzip stream the parts carry (decrypted by openssl, not inflated).
gz() {
	local m="$1" dir="$2" key iv
	key=$(unwrap "$m" user_encrypted_key "$T/user.key")
	iv=$(unwrap "$m" user_encrypted_iv "$T/user.key")
	python3 -c 'import sys, xml.etree.ElementTree as E
for p in E.parse(sys.argv[1]).getroot().find("image/parts"): print(p.find("filename").text)' \
		"$m" | while read -r f; do cat "$dir/$f"; done |
		openssl enc -d -aes-128-cbc -K "$key" -iv "$iv"
}

# check DIR: every part's SHA-1 is its manifest digest; prints "name size" per part.
check() {
	python3 - "$1" <<'PY'
import hashlib, os, sys, xml.etree.ElementTree as E
d = sys.argv[1]
for p in E.parse(os.path.join(d, "img.manifest.xml")).getroot().find("image/parts"):
    f = p.find("filename").text
    data = open(os.path.join(d, f), "rb").read()
    if hashlib.sha1(data).hexdigest() != p.find("digest").text:
        sys.exit("part %s does not match its manifest digest" % f)
    print(f, len(data))
PY
}

# run NAME DIR PARTSIZE [env...]: bundle into DIR, check digests, keep sizes and gzip stream
run() {
	local name="$1" dir="$2" ps="$3"
	shift 3
	mkdir -p "$dir"
	env "$@" "$SNAPBUNDLE" bundle -i "$img" -c "$T/user.pem" -k "$T/user.key" \
		-u 1234-5678-9012 -r x86_64 --ec2cert "$T/ec2.pem" -d "$dir" --batch \
		--progress=none --part-size "$ps" > /dev/null || fail "$name: bundle failed"
	check "$dir" > "$T/$name.sizes" || fail "$name: digests"
	gz "$dir/img.manifest.xml" "$dir" > "$T/$name.gz" || fail "$name: decrypt"
}

for ps in 8K 4097 1000; do
	run "direct-$ps" "$T/direct-$ps" "$ps"
	run "buffered-$ps" "$T/buffered-$ps" "$ps" SNAPBUNDLE_OUTPUT_BUFFERED=1
	cmp "$T/direct-$ps.sizes" "$T/buffered-$ps.sizes" || fail "$ps: part sizes differ"
	cmp "$T/direct-$ps.gz" "$T/buffered-$ps.gz" || fail "$ps: gzip streams differ"
	gunzip < "$T/direct-$ps.gz" | tar -x -O -f - | cmp - "$img" ||
		fail "$ps: the direct bundle does not extract to the image"
done
[ "$(wc -l < "$T/direct-8K.sizes")" -gt 20 ] || fail "expected many 8K parts"
cmp "$T/direct-8K.gz" "$T/direct-4097.gz" || fail "the part size changed the gzip stream"

if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	shm=$(mktemp -d /dev/shm/snapbundle-test.XXXXXX)
	trap 'rm -rf "$T" "$shm"' EXIT
	run shm "$shm" 4097
	cmp "$T/direct-4097.sizes" "$T/shm.sizes" || fail "tmpfs: part sizes differ"
	cmp "$T/direct-4097.gz" "$T/shm.gz" || fail "tmpfs: gzip stream differs"
fi
echo ok
