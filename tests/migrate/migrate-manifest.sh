#!/usr/bin/env bash
# migrate-manifest.sh - snapbundle migrate-manifest judged by openssl: the migrated manifest's
# signature verifies (openssl dgst -sha1 -verify over the signed text cut from the document), its
# ec2_encrypted_key and ec2_encrypted_iv decrypt with the new EC2 key (openssl pkeyutl) and no
# longer with the old one, the parts decrypted with that key (openssl enc, gunzip, GNU tar) give
# back the image, every part digest and the image digest are kept, kernel and ramdisk are
# replaced (options, mapping file, --no-mapping), snapbundle unbundle restores it; and refusals
# (no mapping, wrong key, -o onto a file) leave the manifest byte for byte as it was.
. "$(dirname "$0")/../bundle/lib.sh"
need cmp

make_keys
# the EC2 key pair of the target region, a second one the test owns
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$T/ec2new.key" -out "$T/ec2new.pem" \
	-days 2 -subj /CN=snapbundle-test-ec2-new 2>/dev/null

img="$T/img"
head -c 400000 /dev/urandom > "$img"
head -c 300000 /dev/zero >> "$img"
head -c 100000 /dev/urandom >> "$img"
mkdir "$T/b"
bundle "$img" "$T/b" --part-size 200K --kernel aki-11111111 --ramdisk ari-22222222 \
	-B 'ami=sda1,root=/dev/sda1' --productcodes ABCD1234 > /dev/null
m="$T/b/img.manifest.xml"
cp "$m" "$T/orig.xml"
nparts=$(ls "$T/b" | grep -c '\.part\.')
[ "$nparts" -ge 3 ] || fail "the bundle has $nparts parts, want at least 3"

mig() { "$SNAPBUNDLE" migrate-manifest -c "$T/user.pem" -k "$T/user.key" "$@"; }

# parts MANIFEST: "filename digest" of every part, in order
parts() {
	python3 -c 'import sys, xml.etree.ElementTree as E
for p in E.parse(sys.argv[1]).getroot().find("image/parts"):
    print(p.get("index"), p.find("filename").text, p.find("digest").text)' "$1"
}

# verify MANIFEST: the signature, by openssl over the text cut from the document
verify() {
	python3 - "$1" "$T/signed.txt" "$T/sig.bin" <<'PY'
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
		grep -q 'Verified OK'
}

echo "-- in place, kernel and ramdisk from a mapping file"
cat > "$T/map" <<'EOF'
# region     old id         new id
eu-west-1    aki-11111111   aki-aaaaaaaa
eu-west-1    ari-22222222   ari-bbbbbbbb
us-west-2	aki-11111111	aki-cccccccc   # another region
EOF
mig -m "$m" --ec2cert "$T/ec2new.pem" --region eu-west-1 --mapping-file "$T/map" --batch \
	> "$T/out" || fail "migrate-manifest in place"
grep -qx "migrated $m" "$T/out" || fail "summary: $(cat "$T/out")"
[ "$(ls -A "$T/b" | grep -vc '^img\.')" = 0 ] || fail "debris beside the manifest: $(ls -A "$T/b")"
cmp -s "$m" "$T/orig.xml" && fail "the manifest did not change"

echo "-- openssl verifies the new signature; the old manifest's still verifies too"
verify "$m" || fail "the migrated manifest's signature does not verify"
verify "$T/orig.xml" || fail "the original's signature does not verify"

echo "-- kernel and ramdisk mapped; everything else of machine_configuration kept"
[ "$(field "$m" machine_configuration/kernel_id)" = aki-aaaaaaaa ] ||
	fail "kernel_id: $(field "$m" machine_configuration/kernel_id)"
[ "$(field "$m" machine_configuration/ramdisk_id)" = ari-bbbbbbbb ] ||
	fail "ramdisk_id: $(field "$m" machine_configuration/ramdisk_id)"
for f in machine_configuration/architecture machine_configuration/product_codes/product_code \
	image/name image/user image/digest image/size image/bundled_size; do
	[ "$(field "$m" $f)" = "$(field "$T/orig.xml" $f)" ] || fail "$f changed"
done
python3 - "$m" "$T/orig.xml" <<'PY' || fail "block device mappings changed"
import sys, xml.etree.ElementTree as E
def maps(p):
    return [(x.find("virtual").text, x.find("device").text)
            for x in E.parse(p).getroot().find("machine_configuration/block_device_mapping")]
assert maps(sys.argv[1]) == maps(sys.argv[2]) and len(maps(sys.argv[1])) == 2
PY

echo "-- every part digest kept, and each still the SHA-1 of its file"
diff <(parts "$m") <(parts "$T/orig.xml") || fail "part list changed"
parts "$m" | while read -r i f d; do
	[ "$(sha1sum < "$T/b/$f" | cut -d' ' -f1)" = "$d" ] || fail "part $f digest"
done

echo "-- the key is wrapped for the new EC2 key, no longer for the old one"
k_user=$(unwrap "$m" user_encrypted_key "$T/user.key")
k_ec2=$(unwrap "$m" ec2_encrypted_key "$T/ec2new.key")
iv_ec2=$(unwrap "$m" ec2_encrypted_iv "$T/ec2new.key")
[ "$k_user" = "$(unwrap "$T/orig.xml" user_encrypted_key "$T/user.key")" ] ||
	fail "the user key changed"
[ "$k_ec2" = "$k_user" ] || fail "the EC2 key is not the bundle's key"
[ "$iv_ec2" = "$(unwrap "$T/orig.xml" user_encrypted_iv "$T/user.key")" ] ||
	fail "the EC2 iv is not the bundle's iv"
if unwrap "$m" ec2_encrypted_key "$T/ec2.key" > /dev/null 2>&1; then
	fail "the old EC2 key still unwraps the migrated manifest"
fi

echo "-- the parts decrypted with the new EC2 key's counterpart give back the image"
python3 -c 'import sys, xml.etree.ElementTree as E
for p in E.parse(sys.argv[1]).getroot().find("image/parts"): print(p.find("filename").text)' \
	"$m" | while read -r f; do cat "$T/b/$f"; done |
	openssl enc -d -aes-128-cbc -K "$k_ec2" -iv "$iv_ec2" | gunzip | tar -x -O -f - > "$T/x"
cmp "$T/x" "$img" || fail "the parts decrypted with the EC2 key differ from the image"

echo "-- snapbundle unbundle restores the migrated bundle"
mkdir "$T/un"
"$SNAPBUNDLE" unbundle -m "$m" -k "$T/user.key" -d "$T/un" --progress=none > /dev/null ||
	fail "unbundle of the migrated bundle"
cmp "$T/un/img" "$img" || fail "unbundled image differs"

echo "-- --kernel beats the mapping; --no-mapping keeps the ramdisk; -o leaves the input alone"
cp "$m" "$T/mig1.xml"
mig -m "$m" --ec2cert "$T/ec2new.pem" --kernel aki-99999999 --no-mapping -o "$T/o.xml" \
	> /dev/null || fail "--kernel --no-mapping -o"
cmp "$m" "$T/mig1.xml" || fail "-o changed the input manifest"
[ "$(field "$T/o.xml" machine_configuration/kernel_id)" = aki-99999999 ] || fail "--kernel"
[ "$(field "$T/o.xml" machine_configuration/ramdisk_id)" = ari-bbbbbbbb ] || fail "--no-mapping"
verify "$T/o.xml" || fail "-o output's signature"
# the mapping file first, --no-mapping for what it lacks
printf 'ap-south-1 aki-aaaaaaaa aki-dddddddd\n' > "$T/map2"
mig -m "$m" --ec2cert "$T/ec2new.pem" --region ap-south-1 --mapping-file "$T/map2" \
	--no-mapping -o "$T/o3.xml" > /dev/null || fail "--mapping-file with --no-mapping"
[ "$(field "$T/o3.xml" machine_configuration/kernel_id)" = aki-dddddddd ] ||
	fail "the mapping file did not come before --no-mapping"
[ "$(field "$T/o3.xml" machine_configuration/ramdisk_id)" = ari-bbbbbbbb ] ||
	fail "--no-mapping did not keep the unmapped ramdisk"
# --ramdisk '' drops the ramdisk
mig -m "$m" --ec2cert "$T/ec2new.pem" --no-mapping --ramdisk '' -o "$T/o2.xml" > /dev/null ||
	fail "--ramdisk ''"
[ -z "$(field "$T/o2.xml" machine_configuration/ramdisk_id)" ] || fail "ramdisk not dropped"

echo "-- refusals leave the manifest as it was"
cp "$T/orig.xml" "$T/r.xml"
if mig -m "$T/r.xml" --ec2cert "$T/ec2new.pem" 2> "$T/err"; then
	fail "a kernel without a mapping was accepted"
fi
grep -q "cannot map kernel aki-11111111" "$T/err" || fail "no-mapping message: $(cat "$T/err")"
if mig -m "$T/r.xml" --ec2cert "$T/ec2new.pem" --region ap-south-1 --mapping-file "$T/map" \
	2> "$T/err"; then
	fail "a region without a line was accepted"
fi
grep -q "to region ap-south-1: mapping file $T/map has no line" "$T/err" ||
	fail "unmapped region message: $(cat "$T/err")"
printf 'eu-west-1 aki-11111111\n' > "$T/badmap"
if mig -m "$T/r.xml" --ec2cert "$T/ec2new.pem" --region eu-west-1 --mapping-file "$T/badmap" \
	2> "$T/err"; then
	fail "a malformed mapping file was accepted"
fi
grep -q "mapping file $T/badmap: line 1 is not" "$T/err" || fail "bad map: $(cat "$T/err")"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/other.key" -out "$T/other.pem" \
	-days 2 -subj /CN=other 2>/dev/null
if "$SNAPBUNDLE" migrate-manifest -m "$T/r.xml" -c "$T/other.pem" -k "$T/other.key" \
	--ec2cert "$T/ec2new.pem" --no-mapping 2> "$T/err"; then
	fail "another user's key was accepted"
fi
grep -q "is not for the key $T/other.key" "$T/err" || fail "wrong key: $(cat "$T/err")"
if mig -m "$T/r.xml" -c "$T/other.pem" --ec2cert "$T/ec2new.pem" --no-mapping 2> "$T/err"; then
	fail "a certificate not matching the key was accepted"
fi
grep -q "does not match certificate" "$T/err" || fail "mismatch: $(cat "$T/err")"
if mig -m "$T/r.xml" --ec2cert "$T/ec2new.pem" --no-mapping -o "$T/o.xml" 2> "$T/err"; then
	fail "-o replaced an existing file without --force"
fi
cmp "$T/r.xml" "$T/orig.xml" || fail "a refused migration changed the manifest"
[ "$(ls -A "$T" | grep -c '\.tmp-')" = 0 ] || fail "temporary files left: $(ls -A "$T")"
mig -m "$T/r.xml" --ec2cert "$T/ec2new.pem" --no-mapping -o "$T/o.xml" --force > /dev/null ||
	fail "-o --force"
echo ok
