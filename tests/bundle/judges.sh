#!/usr/bin/env bash
# judges.sh - a bundle reproduced by outside judges only: openssl pkeyutl unwraps the key, the
# parts decrypt with openssl enc, gunzip inflates, GNU tar, bsdtar and Python's tarfile extract
# the same bytes as the source; sha1sum of the stream is the manifest digest; every part's
# sha1sum is its manifest digest; openssl dgst verifies the signature over the signed text cut
# from the manifest; the manifest is REXML-style bytes with every field §2 asks for.
. "$(dirname "$0")/lib.sh"
make_keys

# a sparse image: random data, a binary, text, holes, data at the very end
img="$T/disk one.img"
truncate -s 48M "$img"
head -c 3M /dev/urandom | dd of="$img" conv=notrunc status=none
dd if=/usr/bin/tar of="$img" bs=1M seek=10 conv=notrunc status=none
seq 1 200000 | dd of="$img" bs=1M seek=20 conv=notrunc status=none
head -c 4096 /dev/urandom | dd of="$img" bs=4096 seek=$((48 * 256 - 1)) conv=notrunc status=none
chmod 640 "$img"
touch -d '2020-02-02 02:02:02 UTC' "$img"

out="$T/out"
mkdir "$out"
bundle "$img" "$out" -p myimage --kernel aki-12345678 --ramdisk ari-87654321 \
	--productcodes ABCD1234,EFGH5678 -B 'swap=sda3,root=/dev/sda1,ami=sda1,ephemeral0=sda2' \
	--part-size 1M > "$T/summary"
m="$out/myimage.manifest.xml"
[ -f "$m" ] || fail "no manifest"
ls -A "$out" | grep -q tmp && fail "temporary files left: $(ls -A "$out")"

# the stream, by outside judges
stream "$m" "$out" > "$T/stream.tar"
digest=$(field "$m" image/digest)
[ "$(sha1sum < "$T/stream.tar" | cut -d' ' -f1)" = "$digest" ] || fail "digest mismatch"
[ $(( $(stat -c %s "$T/stream.tar") % 10240 )) = 0 ] || fail "tar not padded to 10240"
grep -q "$digest" "$T/summary" || fail "summary lacks the digest"

# the gzip header: 1f 8b 08 00, MTIME 0, OS 3
key=$(unwrap "$m" user_encrypted_key "$T/user.key")
iv=$(unwrap "$m" user_encrypted_iv "$T/user.key")
cat "$out"/myimage.part.* | openssl enc -d -aes-128-cbc -K "$key" -iv "$iv" > "$T/stream.gz"
hdr=$(head -c 10 "$T/stream.gz" | xxd -p)
gunzip -t < "$T/stream.gz" || fail "gunzip -t"
python3 -c 'import sys, zlib
d = zlib.decompressobj(31)
out = d.decompress(open(sys.argv[1], "rb").read())
assert d.eof and not d.unused_data, "not one gzip member"
assert len(out) == int(sys.argv[2])' "$T/stream.gz" "$(stat -c %s "$T/stream.tar")" ||
	fail "zlib: not exactly one gzip member"
[[ "$hdr" =~ ^1f8b080000000000..03$ ]] || fail "gzip header $hdr"

# the EC2 copy of the key unwraps to the same text
[ "$(unwrap "$m" ec2_encrypted_key "$T/ec2.key")" = "$key" ] || fail "ec2 key differs"
[ "$(unwrap "$m" ec2_encrypted_iv "$T/ec2.key")" = "$iv" ] || fail "ec2 iv differs"
[ "$(field "$m" image/ec2_encrypted_key | tr -d '\n' | wc -c)" = 256 ] || fail "ec2 key length"
[ "$(field "$m" image/user_encrypted_key | tr -d '\n' | wc -c)" = 512 ] || fail "user key length"

# GNU tar, bsdtar, Python's tarfile
mkdir "$T/gnu" "$T/bsd" "$T/py"
tar -x -C "$T/gnu" -f "$T/stream.tar"
cmp "$img" "$T/gnu/myimage" || fail "GNU tar extracted different bytes"
[ "$(stat -c %a "$T/gnu/myimage")" = 640 ] || fail "mode not kept"
[ "$(stat -c %Y "$T/gnu/myimage")" = "$(stat -c %Y "$img")" ] || fail "mtime not kept"
tar -t -v -f "$T/stream.tar" | grep -q 'root/root' || fail "owner not root/root"
if command -v bsdtar >/dev/null; then
	bsdtar -x -C "$T/bsd" -f "$T/stream.tar"
	cmp "$img" "$T/bsd/myimage" || fail "bsdtar extracted different bytes"
fi
python3 -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
m = t.getmembers()
assert len(m) == 1 and m[0].name == "myimage" and m[0].uid == 0 and m[0].gid == 0, m
assert m[0].type == tarfile.GNUTYPE_SPARSE, m[0].type
t.extractall(sys.argv[2])' "$T/stream.tar" "$T/py"
cmp "$img" "$T/py/myimage" || fail "tarfile extracted different bytes"

# part digests, sizes, names
python3 - "$m" "$out" "$(stat -c %s "$img")" <<'PY'
import hashlib, os, sys, xml.etree.ElementTree as E
m, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = E.parse(m).getroot()
parts = r.find("image/parts")
n = int(parts.get("count"))
assert n == len(parts) and n > 1, n
total = 0
for i, p in enumerate(parts):
    assert int(p.get("index")) == i
    name = p.find("filename").text
    assert name == "myimage.part.%d" % i, name
    data = open(os.path.join(out, name), "rb").read()
    assert len(data) == (1 << 20) or i == n - 1, (name, len(data))
    assert len(data) > 0
    assert hashlib.sha1(data).hexdigest() == p.find("digest").text, name
    assert p.find("digest").get("algorithm") == "SHA1"
    total += len(data)
assert int(r.find("image/bundled_size").text) == total
assert int(r.find("image/size").text) == size
assert total % 16 == 0
assert r.find("image/user").text == "123456789012"
assert r.find("image/name").text == "myimage"
assert r.find("version").text == "2007-10-10"
assert [c.tag for c in r] == ["version", "bundler", "machine_configuration", "image",
                              "signature"], [c.tag for c in r]
mc = r.find("machine_configuration")
assert [c.tag for c in mc] == ["architecture", "block_device_mapping", "kernel_id",
                               "ramdisk_id", "product_codes"], [c.tag for c in mc]
assert [m.find("virtual").text for m in mc.find("block_device_mapping")] == \
    ["ami", "ephemeral0", "root", "swap"]
assert [c.text for c in mc.find("product_codes")] == ["ABCD1234,EFGH5678"]
img = r.find("image")
assert [c.tag for c in img] == ["name", "user", "type", "digest", "size", "bundled_size",
    "ec2_encrypted_key", "user_encrypted_key", "ec2_encrypted_iv", "user_encrypted_iv",
    "parts"], [c.tag for c in img]
PY

# REXML byte style: declaration first, single quotes, one line, no trailing newline
head -c 21 "$m" | grep -qx "<?xml version='1.0'?>" || fail "declaration"
[ "$(tail -c 11 "$m")" = "</manifest>" ] || fail "trailing bytes"
[ "$(wc -l < "$m")" = 0 ] || fail "manifest has newlines"
grep -q '"' "$m" && fail "double quotes in manifest"
grep -q "<digest algorithm='SHA1'>" "$m" || fail "attribute style"

# the signature, verified by openssl over the text cut from the manifest
python3 - "$m" "$T/signed.txt" "$T/sig.bin" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
def cut(tag):
    a = d.index(b"<%s>" % tag)
    return d[a:d.index(b"</%s>" % tag, a) + len(tag) + 3]
open(sys.argv[2], "wb").write(cut(b"machine_configuration") + cut(b"image"))
sig = cut(b"signature")[len(b"<signature>"):-len(b"</signature>")]
open(sys.argv[3], "wb").write(bytes.fromhex(sig.decode()))
PY
openssl dgst -sha1 -verify "$T/user.pub" -signature "$T/sig.bin" "$T/signed.txt" |
	grep -q 'Verified OK' || fail "signature does not verify"

# a dense image (no holes) gives a regular member; the default name is the file name
dense="$T/dense.img"
head -c 300000 /dev/urandom > "$dense"
mkdir "$T/out2"
bundle "$dense" "$T/out2" > /dev/null
stream "$T/out2/dense.img.manifest.xml" "$T/out2" > "$T/dense.tar"
tar -x -C "$T/out2" -f "$T/dense.tar" --transform 's/^/x-/'
cmp "$dense" "$T/out2/x-dense.img" || fail "dense image differs"
python3 -c 'import sys, tarfile
m = tarfile.open(sys.argv[1]).getmembers()
assert m[0].type == tarfile.REGTYPE, m[0].type' "$T/dense.tar"
[ -f "$T/out2/dense.img.part.0" ] || fail "single part not named .part.0"

# every compression level reproduces the source
for level in 0 2 3; do
	rm -rf "$T/lv" && mkdir "$T/lv"
	bundle "$img" "$T/lv" -p lv --level $level --threads 3 --chunk-size 64K > /dev/null
	stream "$T/lv/lv.manifest.xml" "$T/lv" | tar -x -O -f - > "$T/lv/extracted"
	cmp "$img" "$T/lv/extracted" || fail "level $level differs"
done
echo ok
