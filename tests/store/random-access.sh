#!/usr/bin/env bash
# Restoring one partition or one byte range reads only the frames it needs: the count the job
# reports equals the frames of the index that overlap the range (from inspect --frames).
. "$SRCDIR/tests/store/lib.sh"
make_disk disk.img 48
"$B" store disk.img -o img.bin --frame-size 256K --progress=none
"$B" inspect img.bin --frames > frames.txt
total=$(grep -c '^frame [0-9]' frames.txt)

# frames overlapping [lo, hi)
needed() {
	awk -v lo="$1" -v hi="$2" '/^frame [0-9]/ { off = $8; raw = $10;
		if (off + raw > lo && off < hi) n++ } END { print n + 0 }' frames.txt
}
check() { # what lo len restore-args...
	local what=$1 lo=$2 len=$3
	shift 3
	"$B" restore img.bin -o "$what.img" --progress=none "$@" > out.txt
	local got want
	got=$(sed -n 's/.* \([0-9]*\) frames read/\1/p' out.txt)
	want=$(needed "$lo" $((lo + len)))
	[ "$got" = "$want" ] || fail "$what: read $got frames, needs $want"
	[ "$got" -lt "$total" ] || fail "$what: read every frame"
	cmp "$what.img" <(dd if=disk.img bs=64K skip="$lo" count="$len" status=none \
		iflag=skip_bytes,count_bytes) || fail "$what: content differs"
	echo "ok: $what read $got of $total frames"
}
check part1 $((2048 * 512)) $((40960 * 512)) --partition 1
check part2 $(((2048 + 40960) * 512)) $((8192 * 512)) --partition 2
check range 3000000 10000 --range 3000000:10000

# forged metadata (unencrypted: its SHA-256 tag and the index's digest of it can be
# recomputed): a partition whose end wraps around 2^64 is refused with a clear error, and
# one that runs past the end of the volume is restored as far as the volume goes
cp img.bin t.bin
python3 "$SRCDIR/tests/store/tamper.py" t.bin part-size 1 18446744073709547520
why="t.bin: partition 2 of volume /dev/xvda (start 22020096, size 18446744073709547520)"
expect_fail "$why lies outside the volume" wrap.img -- \
	"$B" restore t.bin --partition 2 -o wrap.img --progress=none
cp img.bin t.bin
python3 "$SRCDIR/tests/store/tamper.py" t.bin part-size 1 $((64 << 20))
"$B" restore t.bin --partition 2 -o past.img --progress=none > /dev/null
cmp past.img <(dd if=disk.img bs=64K skip=$(((2048 + 40960) * 512)) status=none \
	iflag=skip_bytes) || fail "partition running past the volume's end differs"
check range2 $((2048 * 512 + 123)) 1 --range $((2048 * 512 + 123)):1
echo "random-access: ok"
