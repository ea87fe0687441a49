#!/usr/bin/env bash
# Runs every test: installs missing packages, builds with warnings as errors, runs the suite,
# then builds once more with AddressSanitizer + UndefinedBehaviorSanitizer and runs it again,
# then fuzzes every libFuzzer target for 15 s when clang is there (tests/fuzz.sh).
# Ends with one line "tests: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh

jobs=$(nproc)

# The S3 service of the tests (tests/s3/rgw.sh): started once, before the first meson test, and
# stopped on any exit, interruption included. Its SNAP_TEST_S3_* variables reach every test;
# without it (packages missing, cannot start here) the S3 tests skip. An endpoint already set
# in the environment is used as it is.
rgw_tmp=
s3_start() {
	[ -z "$rgw_tmp" ] && [ -z "${SNAP_TEST_S3_ENDPOINT:-}" ] || return 0
	rgw_tmp=$(mktemp -d "${TMPDIR:-/tmp}/snapbundle-rgw.XXXXXX")
	if tests/s3/rgw.sh start "$rgw_tmp/rgw"; then
		set -a; . "$rgw_tmp/rgw/env"; set +a
	else
		echo "S3 gateway not started (exit $?): the S3 tests skip"
	fi
}
s3_stop() {
	[ -n "$rgw_tmp" ] || return 0
	tests/s3/rgw.sh stop "$rgw_tmp/rgw" || true
	rm -rf "$rgw_tmp"
}
trap s3_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
passed=0 failed=0 skipped=0
status=0

count() { # build dir -> adds to the totals from meson's JSON test log
	local log="$1/meson-logs/testlog.json"
	[ -f "$log" ] || return 0
	read -r p f s < <(python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"): p += 1
    elif r == "SKIP": s += 1
    else: f += 1
print(p, f, s)
PY
)
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

run_suite() { # build dir, meson options...
	local dir="$1"; shift
	if [ -d "$dir/meson-private" ]; then
		meson configure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir" >/dev/null || { echo "build failed in $dir"; ninja -C "$dir" | tail -40; exit 1; }
	rm -f "$dir/meson-logs/testlog.json"
	s3_start
	meson test -C "$dir" --print-errorlogs --num-processes "$jobs" --no-rebuild || status=1
	count "$dir"
}

echo "== build and test (warnings are errors)"
run_suite build -Dwerror=true -Db_sanitize=none

echo "== build and test under AddressSanitizer + UndefinedBehaviorSanitizer"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
	-Dbuildtype=debug

echo "== fuzz every libFuzzer target for 15 s (tests/fuzz.sh)"
if command -v clang >/dev/null; then
	fuzz_log=$(mktemp)
	tests/fuzz.sh 15 | tee "$fuzz_log" || status=1
	fuzz_counts=$(sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$fuzz_log")
	rm -f "$fuzz_log"
	if [ -n "$fuzz_counts" ]; then
		read -r fp ff <<<"$fuzz_counts"
		passed=$((passed + fp)) failed=$((failed + ff))
	else
		failed=$((failed + 1)) status=1 # it did not get to run its targets
	fi
else
	echo "clang not found: fuzzing skipped"
	skipped=$((skipped + 1))
fi

echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
