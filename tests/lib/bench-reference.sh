#!/usr/bin/env bash
# bench --svg with --reference draws the reference tools next to our jobs (bench/svg.c): every
# tool of the JSON report has its row, a bar whose length is proportional to its MB/s when it
# ran, and its reason when it did not (pigz is hidden from PATH to make one); without
# --reference there is no such panel. check-bench-reference.py reads the SVG with an XML parser.
set -euo pipefail
: "${SNAPBUNDLE:?}" "${SRCDIR:?}"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
for p in bash tar gzip openssl split sha1sum mkfifo tee zstd qemu-img; do
	command -v $p >/dev/null || { echo "$p missing"; exit 77; }
done

# every program of PATH but pigz
mkdir "$t/bin"
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
	for f in "$d"/*; do
		n=${f##*/}
		[ "$n" = pigz ] || [ -e "$t/bin/$n" ] || ln -s "$f" "$t/bin/$n" 2>/dev/null || true
	done
done

PATH=$t/bin "$SNAPBUNDLE" bench --quick --size 64M --threads 1,2 --jobs bundle,store \
	--reference --json --svg "$t/ref.svg" --workdir "$t" >"$t/ref.json" 2>"$t/err" ||
	{ cat "$t/err"; exit 1; }
"$SNAPBUNDLE" bench --quick --size 64M --threads 1 --jobs none --json --svg "$t/plain.svg" \
	--workdir "$t" >"$t/plain.json" 2>"$t/err" || { cat "$t/err"; exit 1; }
python3 "$SRCDIR/tests/lib/check-bench-reference.py" "$t/ref.json" "$t/ref.svg" "$t/plain.svg"
