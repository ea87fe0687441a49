#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Forged images (tests/store/forge.py via forge-cases.py): every CRC, digest and tag is right,
# and one field is wrong in a way only the checks behind them can see: sizes of 2^62..2^64-1,
# counts of 2^32-1..2^64-1, wrapping, overlapping and gapped extents, frames past the end,
# duplicated or reordered, two images concatenated. Each is refused by restore (file and
# pipe) and verify with an error naming the problem, nothing left behind, no sanitizer
# report, under 256 MiB RSS and 30 s. An honest forgery verifies and restores byte-identically.
. "$SRCDIR/tests/store/lib.sh"
python3 -c 'import cryptography' 2>/dev/null || exit 77
python3 "$SRCDIR/tests/store/forge-cases.py" .
mkdir out

# bounded OUT -- CMD...: CMD under /usr/bin/time, then its peak RSS and time are checked
bounded() {
	shift
	/usr/bin/time -f '%M %e' -o time.out "$@"
}
check_bounds() {
	local rss secs
	read -r rss secs < <(tail -1 time.out)
	[ "$rss" -lt 262144 ] || fail "$1: $rss KiB RSS"
	awk -v s="$secs" 'BEGIN { exit !(s < 30) }' || fail "$1: $secs s"
}
file() { bounded -- "$B" restore "$1" -o out/r.img --progress=none "${@:2}"; }
pipe() { bounded -- sh -c 'exec "$0" restore - -o out/r.img --progress=none < "$1"' "$B" "$1"; }
verify() { bounded -- "$B" verify "$1"; }
# refused NAME PATTERN [MODES]: every mode fails with PATTERN (a | separates per-mode patterns
# file|pipe|verify)
refused() {
	local name=$1 pats=$2 i=0 m pat
	local -a p
	IFS='|' read -r -a p <<< "$pats"
	for m in file pipe verify; do
		pat=${p[$i]:-${p[0]}}
		i=$((i + 1))
		expect_fail "$pat" out/r.img -- $m "$name.bin"
		check_bounds "$name $m"
	done
}

# the honest forgery: the independent reader, verify, restore from a file and a pipe
python3 "$READER" good.bin rd > /dev/null
cmp rd/0.img disk.img
"$B" verify good.bin
"$B" restore good.bin -o out/r.img --progress=none && cmp out/r.img disk.img && rm out/r.img
pipe good.bin && cmp out/r.img disk.img && rm out/r.img
"$B" restore good.bin -o out/r.img --progress=none --partition 1 && rm out/r.img
# ... also deflated and signed (RSA, through the cryptography package)
openssl genrsa -out sign.key 2048 2>/dev/null
python3 "$SRCDIR/tests/store/forge.py" signed.bin disk.img --deflate --sign-key sign.key
"$B" verify signed.bin > v.out 2>&1 || fail "forged signed image refused: $(cat v.out)"
python3 "$READER" signed.bin rs 2>&1 | grep -q "signed by" || fail "the reader finds no signature"
"$B" restore signed.bin -o out/r.img --progress=none && cmp out/r.img disk.img && rm out/r.img

# sizes
for n in 2^62 2^63 2^64-1; do
	expect_fail "cannot size .* bytes" out/r.img -- file vol-size-$n.bin
	check_bounds "vol-size-$n"
	expect_fail "cannot size .* bytes" out/r.img -- pipe vol-size-$n.bin
	# a volume of 2^62..2^64-1 bytes with a consistent map is valid to verify: the format
	# sets no bound; only writing it fails
	verify vol-size-$n.bin > /dev/null || fail "verify refused vol-size-$n"
done
expect_fail "cannot size .* bytes" out/r.img -- file extent-2^62.bin
refused extent-len-2^64-1 "index extent map does not match the volume size"
refused extent-wraps "index extent map does not cover its volume"
refused frame-offset-wraps "index frames out of order|invalid frame header field|index frames out of order"
refused frame-offset-2^62 "index extent map does not match the volume size|frame 0 at offset 297 is out of place|index extent map does not match the volume size"
refused frame-offset-2^64-64K "index extent map does not cover its volume|invalid frame header field|index extent map does not cover its volume"
refused raw-len-0 "index frames out of order|invalid frame header field|index frames out of order"
refused raw-len-2^32-1 "frame outside the DATA extents|invalid frame header field|frame outside the DATA extents"
refused frame-size-2^32-1 "invalid header field"
refused meta-length-2^62 "metadata record at offset 128 is corrupt (bad prefix)"
refused index-length-2^62 "index record at offset [0-9]* is corrupt (bad prefix)"
refused footer-index-length-2^62 "footer is corrupt: invalid footer field"
refused footer-index-offset-2^64-1 "footer is corrupt: invalid footer field"
refused footer-image-size-2^64-1 "footer says 18446744073709551615 bytes|footer does not match the image|footer says 18446744073709551615 bytes"
# partitions are informative for a whole-volume restore; restoring one is refused
for p in partition-2^63 partition-wraps partition-size-2^64-1; do
	expect_fail "partition 1 of volume /dev/xvda (start [0-9]*, size [0-9]*) lies outside the volume" \
		out/r.img -- file $p.bin --partition 1
	check_bounds "$p"
done
# counts
refused index-frames-2^40 "index frame count does not match its size"
refused volume-frames-2^40 "index volume frame ranges inconsistent"
refused volume-first-2^40 "index volume frame ranges inconsistent"
refused volume-extents-2^40 "malformed index"
refused volume-extents-2^64-1 "malformed index"
refused index-volumes-2^32-1 "malformed index"
refused header-volumes-2^32-1 "invalid header field"
refused keys-slots-2^32-1 "key record is corrupt"
refused frame-no-2^40 "frame 1 at offset [0-9]* does not match the index|expected frame 1, found frame 1099511627776|does not match the index"
# extents and frames
refused extents-overlap "index extent map does not cover its volume"
refused extents-gap "index extent map does not cover its volume"
refused frame-outside-data "index frame outside the DATA extents of its volume"
refused frame-len-past-eof "frame[ 0-9]* at offset [0-9]*: invalid frame header field"
refused frame-index-past-eof "index entry of frame 3 is inconsistent"
refused frame-stored-past-eof "index entry of frame 3 is inconsistent|frame at offset [0-9]*: invalid frame header field|index entry of frame 3 is inconsistent"
refused frame-duplicate "index frames out of order|frame 1 at offset [0-9]* is out of place|index frames out of order"
refused frame-duplicate-last "index frames out of order|frame 4 at offset [0-9]* is out of place|index frames out of order"
refused frames-reordered "index frames out of order|frame 1 at offset [0-9]* is out of place|index frames out of order"
# two images, one after the other
cat good.bin good.bin > cat.bin
refused cat "footer says [0-9]* bytes, cat.bin has|data after the footer of stdin|footer says [0-9]* bytes, cat.bin has"
cat good.bin frames-reordered.bin > cat2.bin
refused cat2 "footer says|data after the footer of stdin|footer says"
echo "all forged images refused"
