#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A store is reproducible: the same source with the same seed and times gives the same image,
# byte for byte (cmp), in every process. Small frames are where ISA-L's levels 1-3 are not
# (formats/gzip-chunk.h invariant 5: they go through level 0), and a store's resume seals
# frames again in a new process and compares them with what it uploaded. Twenty-one processes per
# shape: before inputs under 256 KiB were deflated at level 0, about one process in four to
# forty sealed some 4 KiB frame differently, so this failed nearly always.
. "$SRCDIR/tests/store/lib.sh"
# 16 MiB of word salad (short, many matches) with a random stretch
python3 - <<'PY'
import random
r = random.Random(5)
words = [b"alpha", b"beta", b"gamma", b"delta"]
with open("src.img", "wb") as f:
    for _ in range(4096):
        line = b" ".join(r.choice(words) if r.random() < 0.8 else b"%d" % r.randrange(1000)
                         for _ in range(700))
        f.write(line[:4096].ljust(4096, b"x"))
    f.write(random.Random(6).randbytes(1 << 20))
PY
FIX=(--test-seed 3 --creation-time 1700000000 --store-time 1700000001
	--image-id ami-0123456789abcdef0 --threads 2 --progress=none --force)
for shape in "4K 1" "64K 1" "4K 3" "128K 2"; do
	set -- $shape
	"$B" store src.img -o ref.bin --frame-size "$1" --level "$2" "${FIX[@]}" >/dev/null ||
		fail "store --frame-size $1 --level $2"
	for i in $(seq 1 20); do
		"$B" store src.img -o again.bin --frame-size "$1" --level "$2" "${FIX[@]}" >/dev/null ||
			fail "store --frame-size $1 --level $2 (run $i)"
		cmp -s ref.bin again.bin ||
			fail "--frame-size $1 --level $2: run $i made another image: $(cmp ref.bin again.bin)"
	done
	echo "ok: --frame-size $1 --level $2: 21 processes, one image"
done
"$B" restore ref.bin -o r.img --progress=none >/dev/null && cmp r.img src.img ||
	fail "the image does not restore to its source"
echo "reproducible: ok"
