# lib.sh - shared by the bundle tests: keys, manifest fields, and the outside judges' pipeline
# (openssl pkeyutl, openssl enc, gunzip, GNU tar). Sourced, not run.
set -euo pipefail
export LC_ALL=C

: "${SNAPBUNDLE:?run through meson test (SNAPBUNDLE unset)}"
T=$(mktemp -d "${TMPDIR:-/tmp}/snapbundle-test.XXXXXX")
trap 'rm -rf "$T"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
need() { for p; do command -v "$p" >/dev/null || { echo "skip: $p missing"; exit 77; }; done; }
need openssl gunzip tar python3 xxd sha1sum

# A user key pair (2048-bit, certificate + PKCS#8 key) and an EC2 stand-in (1024-bit like
# cert-ec2.pem): generated now, no Amazon file is shipped.
make_keys() {
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/user.key" -out "$T/user.pem" \
		-days 2 -subj /CN=snapbundle-test-user 2>/dev/null
	openssl req -x509 -newkey rsa:1024 -nodes -keyout "$T/ec2.key" -out "$T/ec2.pem" \
		-days 2 -subj /CN=snapbundle-test-ec2 2>/dev/null
	openssl x509 -in "$T/user.pem" -pubkey -noout > "$T/user.pub"
}

# bundle IMAGE DEST [more options]: the standard invocation of the tests.
bundle() {
	local img="$1" dest="$2"
	shift 2
	"$SNAPBUNDLE" bundle -i "$img" -c "$T/user.pem" -k "$T/user.key" -u 1234-5678-9012 \
		-r x86_64 --ec2cert "$T/ec2.pem" -d "$dest" --batch --progress=none "$@"
}

# field MANIFEST XPATH: element text, read with Python's XML parser.
field() {
	python3 -c 'import sys, xml.etree.ElementTree as E
r = E.parse(sys.argv[1]).getroot().find(sys.argv[2])
print(r.text if r is not None else "")' "$1" "$2"
}

# unwrap MANIFEST FIELD KEYFILE: the hex text RSA-decrypted by openssl pkeyutl (PKCS#1 v1.5).
unwrap() {
	field "$1" "image/$2" | xxd -r -p > "$T/wrapped.bin"
	openssl pkeyutl -decrypt -pkeyopt rsa_padding_mode:pkcs1 -inkey "$3" -in "$T/wrapped.bin"
}

# stream MANIFEST DIR: the tar stream, by the outside judges alone (parts in manifest order).
stream() {
	local m="$1" dir="$2" key iv
	key=$(unwrap "$m" user_encrypted_key "$T/user.key")
	iv=$(unwrap "$m" user_encrypted_iv "$T/user.key")
	[[ "$key" =~ ^[0-9a-f]{32}$ && "$iv" =~ ^[0-9a-f]{32}$ ]] ||
		fail "key/iv are not 32 lowercase hex characters: '$key' '$iv'"
	python3 -c 'import sys, xml.etree.ElementTree as E
for p in E.parse(sys.argv[1]).getroot().find("image/parts"): print(p.find("filename").text)' \
		"$m" | while read -r f; do cat "$dir/$f"; done |
		openssl enc -d -aes-128-cbc -K "$key" -iv "$iv" | gunzip
}

# sparse_cmp A B: files equal, holes read as zeros, reading only stored data (for 4 TiB files).
sparse_cmp() {
	python3 - "$1" "$2" <<'PY'
import os, sys
def regions(fd, size):
    off = 0
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            return
        h = os.lseek(fd, d, os.SEEK_HOLE)
        yield d, h
        off = h
a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
size = os.fstat(a).st_size
if os.fstat(b).st_size != size:
    sys.exit("size differs: %d vs %d" % (size, os.fstat(b).st_size))
for x, y in ((a, b), (b, a)):
    for d, h in regions(x, size):
        while d < h:
            n = min(h - d, 1 << 20)
            if os.pread(x, n, d) != os.pread(y, n, d):
                sys.exit("differ in [%d, %d)" % (d, d + n))
            d += n
PY
}
