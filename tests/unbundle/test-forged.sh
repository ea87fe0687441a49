#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Forged bundles (mkbundle.py --tar-file/--sub, forge-tar.py): encrypted, digested and signed
# with the real keys, so the part digests, the image digest and the signature all pass, and
# only the checks behind them can refuse: manifest sizes that overflow, a sparse map past the
# real size or wrapping, a member that is not the image, two members, parts listed twice.
# Each is refused with an error naming the problem, nothing left in the destination, no
# sanitizer report, under 256 MiB RSS and 30 s.
. "$(dirname "$0")/lib.sh"
FT="python3 $SRCDIR/tests/unbundle/forge-tar.py"
cd "$T"
head -c 8192 /dev/urandom > d8k
python3 - <<'PY'
d = bytearray(1048576)
s = open('d8k', 'rb').read()
d[0:4096] = s[:4096]
d[65536:69632] = s[4096:]
open('disk.img', 'wb').write(d)
PY
MAP=0:4096/65536:4096

# forged NAME [mkbundle options]: a bundle of disk.img in $T/NAME
forged() {
	local n=$1
	shift
	rm -rf "$T/$n"
	mkbundle "$T/disk.img" "$T/$n" "$@" > /dev/null
}
# refused NAME PATTERN [MODES]: unbundle (and verify -k) fail saying PATTERN, leave nothing,
# in bounds
refused() {
	local n=$1 pat=$2 rc=0 rss secs what
	for what in ${3:-unbundle verify}; do
		rm -rf "$T/dest" && mkdir "$T/dest"
		rc=0
		if [ $what = unbundle ]; then
			/usr/bin/time -f '%M %e' -o "$T/time" "$SNAPBUNDLE" unbundle \
				-m "$T/$n/disk.img.manifest.xml" -k "$T/user.key" -c "$T/user.pem" \
				-d "$T/dest" > "$T/log" 2>&1 || rc=$?
		else
			/usr/bin/time -f '%M %e' -o "$T/time" "$SNAPBUNDLE" verify \
				-m "$T/$n/disk.img.manifest.xml" -k "$T/user.key" -c "$T/user.pem" \
				> "$T/log" 2>&1 || rc=$?
		fi
		read -r rss secs < <(tail -1 "$T/time")
		if [ "$rc" -eq 0 ]; then
			fail "$n ($what): accepted"
		elif ! grep -q -- "$pat" "$T/log"; then
			fail "$n ($what): error does not say '$pat': $(cat "$T/log")"
		elif grep -q -e Sanitizer -e "runtime error" "$T/log"; then
			fail "$n ($what): sanitizer report: $(cat "$T/log")"
		else
			echo "ok $n ($what, $rss KiB, $secs s): $(head -1 "$T/log")"
		fi
		[ -z "$(ls -A "$T/dest")" ] || fail "$n ($what): left $(ls -A "$T/dest")"
		[ "$rss" -lt 262144 ] || fail "$n ($what): $rss KiB RSS"
		awk -v s="$secs" 'BEGIN { exit !(s < 30) }' || fail "$n ($what): $secs s"
	done
}

# the honest forgery restores byte-identically
$FT ok.tar "realsize=1048576,map=$MAP/1048576:0,data=d8k"
forged ok --tar-file ok.tar
unbundle_ok forged "$T/ok/disk.img.manifest.xml" "$T/disk.img" -c "$T/user.pem"

# manifest sizes that overflow, or fit only a file no filesystem holds
for sz in 18446744073709551615 18446744073709551616 99999999999999999999999; do
	forged size-$sz --tar-file ok.tar --sub '<size>[0-9]*</size>' "<size>$sz</size>"
	refused size-$sz "image/size is not a decimal number: '$sz'"
	forged bsize-$sz --tar-file ok.tar --sub '<bundled_size>[0-9]*</bundled_size>' \
		"<bundled_size>$sz</bundled_size>"
	refused bsize-$sz "image/bundled_size is not a decimal number: '$sz'"
done
for sz in 4611686018427387904 9223372036854775808; do
	forged size-$sz --tar-file ok.tar --sub '<size>[0-9]*</size>' "<size>$sz</size>"
	refused size-$sz "cannot size .* to $sz bytes\|manifest size is $sz"
done
# a tar member that claims 2^62 bytes, and a manifest that agrees
$FT big.tar "realsize=4611686018427387904,map=$MAP/4611686018427387904:0,data=d8k"
forged big --tar-file big.tar --size 4611686018427387904
refused big "cannot size .* to 4611686018427387904 bytes" unbundle
# ... is a consistent bundle of a 4 EiB sparse image: verify -k accepts it (only writing fails)
"$SNAPBUNDLE" verify -m "$T/big/disk.img.manifest.xml" -k "$T/user.key" > /dev/null ||
	fail "verify refused the consistent 2^62-byte bundle"
$FT sz.tar name=disk.img,size=18446744073709551615,stored=0
forged tar-size --tar-file sz.tar
refused tar-size "bad size field in the header of 'disk.img'"

# sparse maps past the real size, wrapping, or out of order
$FT past.tar "realsize=1048576,map=0:4096/2097152:4096,data=d8k"
forged sparse-past --tar-file past.tar
refused sparse-past "sparse map entry 1 (2097152+4096) is past the real size 1048576"
$FT past2.tar "realsize=1048576,map=0:4096/1046528:4096/1048576:0,data=d8k"
forged sparse-past-end --tar-file past2.tar
refused sparse-past-end "sparse map entry 2 at 1048576 is out of order or overlaps"
$FT wrap.tar "realsize=1048576,map=0:4096/18446744073709547520:8192/1048576:0,stored=12288"
forged sparse-wrap --tar-file wrap.tar
refused sparse-wrap "bad number in old-GNU sparse map entry"

# members that are not the image
$FT other.tar name=other.img,stored=524288
forged other-size --tar-file other.tar
refused other-size "1048576\|524288"
$FT dir.tar name=disk.img/,type=5,size=0
forged dir --tar-file dir.tar
refused dir "member 'disk.img/' is a directory"
$FT hard.tar name=disk.img,type=1,link=etc/passwd,size=0
forged hard --tar-file hard.tar
refused hard "member 'disk.img' is a hard link"
$FT empty.tar
forged empty --tar-file empty.tar
refused empty "archive holds no member"
# two members, the second the image again or an empty file
$FT two.tar name=disk.img,data=disk.img name=disk.img,data=disk.img
forged two --tar-file two.tar
refused two "more than one member (next: 'disk.img')"
$FT two2.tar name=disk.img,data=disk.img name=x,stored=0
forged two2 --tar-file two2.tar
refused two2 "more than one member (next: 'x')"

# parts listed twice (with parts/@count agreeing, and the signature valid)
forged dup0 --part-size 2000 --sub "(<part index='0'>.*?</part>)" '\1\1' \
	--sub "<parts count='5'>" "<parts count='6'>"
refused dup0 "parts are out of order: the part listed at position 1 has index 0"
forged dup1 --part-size 2000 --sub "(<part index='1'>)(.*?</part>)" '\1\2\1\2' \
	--sub "<parts count='5'>" "<parts count='6'>"
refused dup1 "parts are out of order: the part listed at position 2 has index 1"
forged dupfile --part-size 2000 \
	--sub "<filename>disk.img.part.2</filename>" "<filename>disk.img.part.1</filename>"
refused dupfile "part file 'disk.img.part.1' is listed twice"
finish
