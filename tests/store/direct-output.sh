#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# store writes its image with O_DIRECT: the bytes are exactly those of a store through the page
# cache and of a store to a pipe (same seed), the image is not left in the page cache (fincore
# is the judge; the buffered store shows that the judge can tell), sizes that end mid-block are
# truncated exactly, and a failing write (file size limit) fails the job with path and offset
# and leaves nothing behind, direct and buffered.
. "$SRCDIR/tests/store/lib.sh"
make_disk disk.img 32
opts=(--test-seed 11 --creation-time 1700000000 --store-time 1700000001 --progress=none)

"$B" store disk.img -o direct.bin "${opts[@]}" >/dev/null
if command -v fincore >/dev/null; then
	cached=$(fincore -b -n -o RES direct.bin | tr -d ' ')
	[ "$cached" -lt 65536 ] || fail "direct store left $cached bytes of its image in the page cache"
fi
SNAPBUNDLE_OUTPUT_BUFFERED=1 "$B" store disk.img -o buffered.bin "${opts[@]}" >/dev/null
if command -v fincore >/dev/null; then
	cached=$(fincore -b -n -o RES buffered.bin | tr -d ' ')
	[ "$cached" -gt 1048576 ] || fail "the buffered store should be in the page cache ($cached)"
fi
"$B" store disk.img -o - "${opts[@]}" > piped.bin
"$B" store disk.img -o nodirect.bin --no-direct "${opts[@]}" >/dev/null
cmp direct.bin buffered.bin || fail "direct and buffered stores differ"
cmp direct.bin piped.bin || fail "direct and piped stores differ"
cmp direct.bin nodirect.bin || fail "direct and --no-direct stores differ"
[ $(($(stat -c %s direct.bin) % 4096)) -ne 0 ] || echo "note: image size is a multiple of 4096"
"$B" verify direct.bin --progress=none >/dev/null || fail "the direct store does not verify"
python3 "$READER" direct.bin py >/dev/null || fail "the Python reader refuses the direct store"
# restore --no-direct keeps the page cache and writes the same bytes
"$B" restore direct.bin -o r-direct.img --progress=none >/dev/null
"$B" restore direct.bin -o r-cached.img --no-direct --progress=none >/dev/null
cmp r-direct.img r-cached.img || fail "restore --no-direct differs"
if command -v fincore >/dev/null; then
	cached=$(fincore -b -n -o RES r-cached.img | tr -d ' ')
	[ "$cached" -gt 1048576 ] || fail "restore --no-direct should leave the page cache ($cached)"
fi

# a write the file size limit refuses (EFBIG: SIGXFSZ ignored) in the writer thread
mkdir out
for mode in direct buffered; do
	env=()
	[ "$mode" = direct ] || env=(SNAPBUNDLE_OUTPUT_BUFFERED=1)
	expect_fail "cannot write out/x.bin at offset 2097152: File too large" out/x.bin -- \
		bash -c 'trap "" XFSZ; ulimit -f 2048; exec env "$@"' _ "${env[@]}" \
		"$B" store disk.img -o out/x.bin --progress=none
done
[ -z "$(ls -A out)" ] || fail "out/ is not empty: $(ls -A out)"
# the image is renamed into place, so never over a device node, even with --force
if "$B" store disk.img -o /dev/null --force --progress=none 2> err.txt; then
	fail "store replaced /dev/null"
fi
grep -q "/dev/null is not a regular file" err.txt || fail "unexpected error: $(cat err.txt)"
if "$B" restore direct.bin -o /dev/null --force --progress=none 2> err.txt; then
	fail "restore replaced /dev/null"
fi
grep -q "/dev/null is neither a regular file nor a block device" err.txt ||
	fail "unexpected error: $(cat err.txt)"
[ -c /dev/null ] || fail "/dev/null is no longer a character device"
echo "direct-output: ok"
