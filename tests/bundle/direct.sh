#!/usr/bin/env bash
# direct.sh - bundle writes its parts with O_DIRECT: after a bundle the parts are not in the
# page cache (fincore is the judge; a buffered bundle shows that the judge can tell), the
# outside judges (sha1sum of every part against the manifest, openssl enc -d, gunzip, GNU tar)
# accept direct, buffered and --no-direct bundles alike, and their gzip streams are identical
# (the AES key differs per bundle, the gzip bytes do not), with part sizes that end mid-block
# and off the 16-byte cipher block; a failing write (file size limit) names the part and the
# offset and leaves nothing behind, direct and buffered.
. "$(dirname "$0")/lib.sh"
make_keys

# 24 MiB of half-compressible data: several 4 MiB stages per part, a last part mid-block
img="$T/img"
python3 - "$img" <<'PY'
import os, random, sys
r = random.Random(7)
with open(sys.argv[1], "wb") as f:
    for i in range(24):
        blk = bytearray(r.randbytes(1 << 19))
        blk += bytes(r.choice(b"abcdefgh \n") for _ in range(1 << 19))
        f.write(blk)
PY

check() { # DIR: digests against the manifest, then the stream through the outside judges
	local d="$1" m="$1/img.manifest.xml"
	python3 - "$m" "$d" <<'PY'
import hashlib, sys, xml.etree.ElementTree as E
m, d = sys.argv[1], sys.argv[2]
for p in E.parse(m).getroot().find("image/parts"):
    name, want = p.find("filename").text, p.find("digest").text
    got = hashlib.sha1(open(f"{d}/{name}", "rb").read()).hexdigest()
    assert got == want, f"{name}: sha1 {got} != manifest {want}"
PY
	stream "$m" "$d" > "$d.gz.tar"
	tar -x -O -f "$d.gz.tar" > "$d.out"
	cmp "$img" "$d.out" || fail "$d: extracted bytes differ"
}

for ps in 10M 5000001 3M; do
	for mode in direct buffered nodirect; do
		d="$T/$mode-$ps"
		mkdir "$d"
		case $mode in
		direct) bundle "$img" "$d" --part-size "$ps" --level 1 >/dev/null ;;
		buffered) SNAPBUNDLE_OUTPUT_BUFFERED=1 bundle "$img" "$d" --part-size "$ps" \
			--level 1 >/dev/null ;;
		nodirect) bundle "$img" "$d" --part-size "$ps" --level 1 --no-direct >/dev/null ;;
		esac
		check "$d"
	done
	cmp "$T/direct-$ps.gz.tar" "$T/buffered-$ps.gz.tar" || fail "$ps: direct and buffered differ"
	cmp "$T/direct-$ps.gz.tar" "$T/nodirect-$ps.gz.tar" || fail "$ps: direct and --no-direct differ"
	[ "$(ls "$T/direct-$ps" | wc -l)" = "$(ls "$T/buffered-$ps" | wc -l)" ] ||
		fail "$ps: part counts differ"
done

# the page cache: fincore right after the bundle, before anything reads the parts
if command -v fincore >/dev/null; then
	for mode in direct buffered; do
		d="$T/pc-$mode"
		mkdir "$d"
		if [ "$mode" = direct ]; then
			bundle "$img" "$d" --level 1 >/dev/null
		else
			SNAPBUNDLE_OUTPUT_BUFFERED=1 bundle "$img" "$d" --level 1 >/dev/null
		fi
		cached=$(for f in "$d"/img.part.*; do fincore -b -n -o RES "$f"; done |
			awk '{s += $1} END {print s + 0}')
		total=$(cat "$d"/img.part.* | wc -c)
		if [ "$mode" = direct ]; then
			# only the last block of the last part may go through the cache
			[ "$cached" -le 8192 ] || fail "a direct bundle left $cached bytes in the page cache"
		else
			[ "$cached" -gt $((total / 2)) ] ||
				fail "the buffered bundle should be in the page cache ($cached of $total)"
		fi
	done
fi

# a write the file size limit refuses (EFBIG, SIGXFSZ ignored) in the writer thread: the part
# and the offset are named, nothing is left behind
mkdir "$T/out"
for mode in direct buffered; do
	env=()
	[ "$mode" = direct ] || env=(SNAPBUNDLE_OUTPUT_BUFFERED=1)
	if bash -c 'trap "" XFSZ; ulimit -f 6144; exec env "$@"' _ "${env[@]}" \
		"$SNAPBUNDLE" bundle -i "$img" -c "$T/user.pem" -k "$T/user.key" -u 1234-5678-9012 \
		-r x86_64 --ec2cert "$T/ec2.pem" -d "$T/out" --batch --progress=none --level 1 \
		2> "$T/err" > /dev/null; then
		fail "$mode: a bundle past the file size limit succeeded"
	fi
	grep -Eq "cannot write $T/out/img\.part\.0 at offset [0-9]+: File too large" \
		"$T/err" || fail "$mode: unexpected error: $(cat "$T/err")"
	off=$(sed -n 's/.* at offset \([0-9]*\): File too large.*/\1/p' "$T/err" | head -1)
	[ "$off" -eq $((6144 * 1024)) ] || fail "$mode: offset $off is not where the limit is"
	[ -z "$(ls -A "$T/out")" ] || fail "$mode: left behind: $(ls -A "$T/out")"
done
echo ok
