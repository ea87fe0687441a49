# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the unbundle tests: a scratch directory, user and EC2 key pairs made with the openssl
# CLI, the reference bundle maker, and checks that name what failed.
set -euo pipefail

: "${SNAPBUNDLE:?run through meson test}"
: "${SRCDIR:?run through meson test}"
MKBUNDLE="$SRCDIR/tests/unbundle/mkbundle.py"

for t in openssl tar gzip python3 cmp; do
	command -v "$t" >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/snap-unbundle-XXXXXX")
trap 'rm -rf "$T"' EXIT
FAILS=0

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/user.key" -out "$T/user.pem" \
	-subj /CN=snapbundle-test-user -days 2 2>/dev/null
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$T/ec2.key" -out "$T/ec2.pem" \
	-subj /CN=snapbundle-test-ec2 -days 2 2>/dev/null

fail() {
	echo "FAIL: $*" >&2
	FAILS=$((FAILS + 1))
}

# mkbundle IMAGE DIR [mkbundle.py options...]: prints the manifest path
mkbundle() {
	local img="$1" dir="$2"
	shift 2
	mkdir -p "$dir"
	python3 "$MKBUNDLE" "$img" "$dir" --cert "$T/user.pem" --key "$T/user.key" \
		--ec2-cert "$T/ec2.pem" "$@"
}

# sparse_image PATH SIZE: a sparse file with data scattered in it (random, text, zeros)
sparse_image() {
	python3 - "$1" "$2" <<'PY'
import os, sys, random
path, size = sys.argv[1], int(sys.argv[2])
rnd = random.Random(size)
f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(f, size)
for i in range(24):
    off = rnd.randrange(0, size - 70000)
    n = rnd.randrange(1, 65536)
    os.pwrite(f, rnd.randbytes(n) if i % 3 else (b'snapbundle %d ' % i) * (n // 14 + 1), off)
os.pwrite(f, b'\0' * 8192, size // 2)     # written zeros (data to tar, hole to us)
os.pwrite(f, b'last bytes', size - 10)
os.close(f)
PY
}

# unbundle_ok NAME MANIFEST IMAGE [options]: restores and compares byte for byte
unbundle_ok() {
	local name="$1" manifest="$2" img="$3"
	shift 3
	local out="$T/out-$name.img"
	rm -f "$out"
	if ! "$SNAPBUNDLE" unbundle -m "$manifest" -k "$T/user.key" -o "$out" "$@" \
		>"$T/log" 2>&1; then
		fail "$name: unbundle failed: $(cat "$T/log")"
		return 0
	fi
	if ! cmp "$img" "$out"; then
		fail "$name: restored image differs from the source"
	fi
	rm -f "$out"
}

finish() {
	if [ "$FAILS" -ne 0 ]; then
		echo "$FAILS failures" >&2
		exit 1
	fi
	echo "all passed"
}
