#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Bad input: a missing file, a directory, an empty file and bad options each give one clear
# "snapbundle: ..." error naming the input, nothing on stdout (with --json: only the JSON
# document, exit_class "failure", the message in its errors), and a non-zero exit.
set -u
tmp=$(mktemp -d "${TMPDIR:-/tmp}/snap-bad.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0

expect_error() { # description, pattern the message must match, command...
	local what=$1 pat=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	if [ "$rc" = 0 ]; then
		echo "FAIL: $what: exit 0"; fail=1
	fi
	if [ -s "$tmp/out" ]; then
		echo "FAIL: $what: wrote to stdout: $(head -c 200 "$tmp/out")"; fail=1
	fi
	if ! grep -Eq "^snapbundle: .*$pat" "$tmp/err"; then
		echo "FAIL: $what: message '$(cat "$tmp/err")' does not match '$pat'"; fail=1
	fi
	if grep -qi "sanitizer" "$tmp/err"; then
		echo "FAIL: $what: sanitizer report"; fail=1
	fi
}

: >"$tmp/empty.img"
mkdir "$tmp/dir"
expect_error "missing file" "cannot open $tmp/missing.img: No such file" \
	"$SNAPBUNDLE" inspect "$tmp/missing.img"
expect_json_error() { # description, pattern the message must match, command...
	local what=$1 pat=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	if [ "$rc" != 1 ]; then
		echo "FAIL: $what: exit $rc, not 1"; fail=1
	fi
	if ! python3 - "$tmp/out" "$pat" "$rc" <<'PY'
import json, re, sys
doc = json.load(open(sys.argv[1]))
assert doc["exit_class"] == "failure" and doc["exit_code"] == int(sys.argv[3]), doc
assert any(re.search(sys.argv[2], e) for e in doc["errors"]), doc["errors"]
PY
	then
		echo "FAIL: $what: stdout is not the failure document: $(head -c 300 "$tmp/out")"
		fail=1
	fi
	if ! grep -Eq "^snapbundle: .*$pat" "$tmp/err"; then
		echo "FAIL: $what: message '$(cat "$tmp/err")' does not match '$pat'"; fail=1
	fi
}
expect_json_error "missing file, json" "cannot open $tmp/missing.img" \
	"$SNAPBUNDLE" inspect --json "$tmp/missing.img"
expect_error "directory" "cannot use $tmp/dir: not a block device or regular file" \
	"$SNAPBUNDLE" inspect "$tmp/dir"
expect_error "empty file" "cannot use $tmp/empty.img: it is empty" \
	"$SNAPBUNDLE" inspect "$tmp/empty.img"
expect_json_error "empty file, json" "cannot use $tmp/empty.img: it is empty" \
	"$SNAPBUNDLE" inspect --json "$tmp/empty.img"
# a classic bundle's manifest is read as one (tests/tools/json-schemas.sh inspects a valid one):
# an incomplete one is named, not reported as a tiny disk
printf '<?xml version="1.0"?>\n<manifest><version>2007-10-10</version></manifest>\n' \
	>"$tmp/x.manifest.xml"
expect_error "incomplete manifest to inspect" "$tmp/x.manifest.xml: invalid manifest" \
	"$SNAPBUNDLE" inspect "$tmp/x.manifest.xml"
expect_error "manifest to verify" "is a classic bundle's manifest: give it with -m" \
	"$SNAPBUNDLE" verify "$tmp/x.manifest.xml"
expect_error "no source" "inspect needs a SOURCE" "$SNAPBUNDLE" inspect
expect_error "two sources" "inspect takes one SOURCE" \
	"$SNAPBUNDLE" inspect "$tmp/empty.img" "$tmp/empty.img"
expect_error "bad min gap" "invalid --min-gap 'lots'" \
	"$SNAPBUNDLE" inspect --min-gap lots "$tmp/empty.img"
exit $fail
