#!/usr/bin/env bash
# tests/fuzz.sh [SECONDS]: fuzzes every libFuzzer target for SECONDS each (default 60).
# Sets up and builds build-fuzz (clang, -Dfuzz=true, ASan + UBSan), runs each target in turn on
# a copy of its corpus (-max_total_time=SECONDS -rss_limit_mb=512 -timeout=10), then merges
# what it found into the corpus directory in the tree (-merge=1), so the plain replay tests of
# the normal build keep it. Any crash, leak, timeout, out-of-memory or sanitizer report fails
# the target: its reproducer is kept under build-fuzz/fuzz-artifacts/ and the script says how
# to replay it, and nothing of that run is merged. Prints per target the exec rate, the final
# coverage (cov: edges, ft: features) and the corpus size before and after; ends with one line
# "fuzz: N passed, N failed" and exits non-zero when any failed. docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
[[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
command -v clang >/dev/null || { echo "fuzz: needs clang (tools/install-deps.sh)" >&2; exit 2; }

dir=build-fuzz
if [ ! -d "$dir/meson-private" ]; then
	CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
		>/dev/null
else
	meson configure "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
		>/dev/null
fi

# name, executable (in build-fuzz), corpus directory in the tree, extra libFuzzer options.
# fs: the corpus holds gzipped disk images (fuzz-fs-replay.c reads them); the fuzzer gets them
# inflated, and what the merge adds goes back gzipped.
targets=(
	"gunzip formats/fuzz-gunzip formats/corpus/gunzip"
	"manifest-read formats/fuzz-manifest-read formats/corpus/manifest-read"
	"tar-reader formats/fuzz-tar-reader formats/corpus/tar-reader"
	"s3-xml formats/fuzz-s3-xml formats/corpus/s3-xml"
	"store formats/fuzz-store formats/corpus-store"
	"layout blockdev/fuzz-layout blockdev/corpus/layout"
	"fs blockdev/fuzz-fs blockdev/corpus/fs"
)
exes=()
for t in "${targets[@]}"; do
	read -r _ exe _ <<<"$t"
	exes+=("$exe")
done
ninja -C "$dir" "${exes[@]}" >/dev/null ||
	{ echo "fuzz: build failed in $dir"; ninja -C "$dir" "${exes[@]}" | tail -40; exit 1; }

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# a leak inside libfdisk itself (blockdev/fuzz-layout.supp)
export LSAN_OPTIONS="suppressions=$PWD/blockdev/fuzz-layout.supp:print_suppressions=0"

work=$(mktemp -d "${TMPDIR:-/tmp}/snap-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

size_of() { # directory -> "N files, N KiB"
	find "$1" -maxdepth 1 -type f ! -name '.*' -printf '%s\n' |
		awk '{ n++; b += $1 } END { printf "%d files, %d KiB\n", n, (b + 1023) / 1024 }'
}

for t in "${targets[@]}"; do
	read -r name exe corpus opts <<<"$t"
	bin="$dir/$exe"
	w="$work/$name"
	arts="$dir/fuzz-artifacts/$name"
	mkdir -p "$w/run" "$w/merged" "$arts"
	before=$(size_of "$corpus")
	if [ "$name" = fs ]; then
		for f in "$corpus"/*; do
			b=$(basename "$f" .gz)
			gzip -dc "$f" >"$w/run/$b"
			cp "$w/run/$b" "$w/merged/$b"
		done
	else
		cp "$corpus"/* "$w/run/"
	fi
	echo "== fuzz-$name: ${secs}s on $(size_of "$w/run") (tree: $before)"
	rc=0
	# shellcheck disable=SC2086 # opts: a list of options
	"$bin" -max_total_time="$secs" -rss_limit_mb=512 -timeout=10 -print_final_stats=1 \
		-artifact_prefix="$PWD/$arts/" $opts "$w/run" >"$w/log" 2>&1 || rc=$?
	last=$(grep -E '^#[0-9]+' "$w/log" | tail -1 || true)
	execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$w/log" | grep -oE '[0-9]+$' || true)
	rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$w/log" | grep -oE '[0-9]+$' || true)
	cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$last" || true)
	if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: ' "$w/log"; then
		failed=$((failed + 1))
		echo "FAIL fuzz-$name (exit $rc): last 30 lines of its log:"
		tail -30 "$w/log" | sed 's/^/    /'
		cp "$w/log" "$arts/log"
		for a in $(grep -oE "Test unit written to .*" "$w/log" | sed 's/Test unit written to //' | sort -u); do
			echo "    reproducer: $a"
			echo "    replay:     $bin $a"
			echo "    or, in the normal build: build/$exe $a"
		done
		echo "    full log: $arts/log (nothing of this run was merged into $corpus)"
		continue
	fi
	# merge what this run found into the tree's corpus: only inputs that add coverage
	if [ "$name" = fs ]; then
		mrc=0
		"$bin" -merge=1 -rss_limit_mb=1024 -timeout=10 "$w/merged" "$w/run" >"$w/merge.log" 2>&1 ||
			mrc=$?
		for f in "$w/merged"/*; do
			b=$(basename "$f")
			[ -e "$corpus/$b.gz" ] || gzip -9nc "$f" >"$corpus/$b.gz"
		done
	else
		mrc=0
		"$bin" -merge=1 -rss_limit_mb=1024 -timeout=10 "$corpus" "$w/run" >"$w/merge.log" 2>&1 ||
			mrc=$?
	fi
	if [ "$mrc" -ne 0 ]; then
		failed=$((failed + 1))
		echo "FAIL fuzz-$name: the merge into $corpus failed (exit $mrc):"
		tail -20 "$w/merge.log" | sed 's/^/    /'
		continue
	fi
	passed=$((passed + 1))
	echo "ok   fuzz-$name: ${execs:-?} execs, ${rate:-?} exec/s, ${cov:-cov: ?}; corpus $before -> $(size_of "$corpus")"
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
