# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the tests/rekey scripts: a scratch directory, keys, a disk, an encrypted image.
set -euo pipefail
: "${SNAPBUNDLE:?}" "${SRCDIR:?}"
B="$SNAPBUNDLE"
READER="$SRCDIR/tests/store/store-reader.py"
T=$(mktemp -d "${TMPDIR:-/tmp}/snap-rekey.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T"
command -v openssl >/dev/null || exit 77

fail() { echo "FAIL: $*" >&2; exit 1; }

# keys N...: kN.pem (private key) and cN.pem (certificate) for each N
keys() {
	for n in "$@"; do
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "k$n.pem" -out "c$n.pem" -days 1 \
			-subj "/CN=rekey-$n" 2>/dev/null
	done
}

# make_disk FILE MIB: random data, text, zeros and a hole
make_disk() {
	local f=$1 size=$2
	rm -f "$f"
	head -c $((size * 1024 * 1024 / 2)) /dev/urandom > "$f"
	seq 1 200000 >> "$f"
	head -c 300000 /dev/zero >> "$f"
	echo "rekey test" >> "$f"
	truncate -s "${size}M" "$f"
}

# restores IMAGE KEYARGS...: the image restores with these key arguments, identical to disk.img
restores() {
	local img=$1
	shift
	rm -f restored.img
	"$B" restore "$img" "$@" -o restored.img --progress=none > /dev/null ||
		fail "$img does not restore with $*"
	cmp disk.img restored.img || fail "$img restored with $* differs from the source"
	rm -f restored.img
}

# refused IMAGE PATTERN KEYARGS...: the image does not open with these key arguments
refused() {
	local img=$1 pat=$2
	shift 2
	rm -f restored.img
	if "$B" restore "$img" "$@" -o restored.img --progress=none > /dev/null 2> cmd.err; then
		fail "$img still opens with $*"
	fi
	grep -q -- "$pat" cmd.err || { cat cmd.err >&2; fail "expected '$pat' for $img with $*"; }
	[ ! -e restored.img ] || fail "restored.img left behind"
}

# frame_digests IMAGE: one hex digest a line, from the INDEX the footer points at
frame_digests() {
	python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
io, il = struct.unpack_from("<QQ", d, len(d) - 64 + 8)
p = io + 16
vc, _, fc = struct.unpack_from("<IIQ", d, p)
p += 16 + 16 + 32
for _ in range(vc):
    ne, = struct.unpack_from("<Q", d, p)
    p += 8 + 8 + 8 + 32 + 24 * ne
for i in range(fc):
    print(d[p + 32:p + 64].hex())
    p += 64
PY
}
