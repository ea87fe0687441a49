#!/usr/bin/env bash
# part-names.sh - part names follow §1.8's padding rule at 1, 10, 11, 100 and 101 parts: the
# index zero-padded to the digits of the part count, so that lexicographic order is numeric
# order; the manifest lists them in index order and they reassemble to the source.
. "$(dirname "$0")/lib.sh"
make_keys

img="$T/img"
head -c 200000 /dev/urandom > "$img" # incompressible: the bundled size is predictable

# The ciphertext length does not depend on the key: find it once, then pick part sizes.
mkdir "$T/probe"
bundle "$img" "$T/probe" > /dev/null
B=$(field "$T/probe/img.manifest.xml" image/bundled_size)

for n in 1 10 11 100 101; do
	ps=$(python3 -c 'import sys
B, n = int(sys.argv[1]), int(sys.argv[2])
print(next(p for p in range(16, B + 2) if -(-B // p) == n))' "$B" "$n")
	out="$T/out$n"
	mkdir "$out"
	bundle "$img" "$out" --part-size "$ps" > /dev/null
	m="$out/img.manifest.xml"
	[ "$(field "$m" image/bundled_size)" = "$B" ] || fail "bundled size changed"
	python3 - "$m" "$out" "$n" <<'PY'
import os, sys, xml.etree.ElementTree as E
m, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
parts = E.parse(m).getroot().find("image/parts")
assert int(parts.get("count")) == n == len(parts), (parts.get("count"), n)
digits = len(str(n))
names = [p.find("filename").text for p in parts]
want = ["img.part.%0*d" % (digits, i) for i in range(n)]
assert names == want, (names[:3], want[:3])
assert [int(p.get("index")) for p in parts] == list(range(n))
on_disk = sorted(f for f in os.listdir(out) if ".part." in f)
assert on_disk == want, (on_disk[:3], want[:3])
PY
	case $n in
	1) [ -f "$out/img.part.0" ] || fail "1 part: img.part.0" ;;
	10) [ -f "$out/img.part.00" ] && [ -f "$out/img.part.09" ] || fail "10 parts" ;;
	11) [ -f "$out/img.part.10" ] || fail "11 parts" ;;
	100) [ -f "$out/img.part.000" ] && [ -f "$out/img.part.099" ] || fail "100 parts" ;;
	101) [ -f "$out/img.part.100" ] || fail "101 parts" ;;
	esac
	# the parts, concatenated in shell glob (lexicographic) order, give the source back
	key=$(unwrap "$m" user_encrypted_key "$T/user.key")
	iv=$(unwrap "$m" user_encrypted_iv "$T/user.key")
	cat "$out"/img.part.* | openssl enc -d -aes-128-cbc -K "$key" -iv "$iv" | gunzip |
		tar -x -O -f - > "$T/extracted"
	cmp "$img" "$T/extracted" || fail "$n parts: extracted bytes differ"
done
echo ok
