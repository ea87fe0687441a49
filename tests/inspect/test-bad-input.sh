#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Bad input: a missing file, a directory, an empty file and bad options each give one clear
# "snapbundle: ..." error naming the input, nothing on stdout, and a non-zero exit.
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
expect_error "missing file, json" "cannot open $tmp/missing.img" \
	"$SNAPBUNDLE" inspect --json "$tmp/missing.img"
expect_error "directory" "cannot use $tmp/dir: not a block device or regular file" \
	"$SNAPBUNDLE" inspect "$tmp/dir"
expect_error "empty file" "cannot use $tmp/empty.img: it is empty" \
	"$SNAPBUNDLE" inspect --json "$tmp/empty.img"
# a classic bundle's manifest, given where a disk or a .bin belongs: the command says what to use
printf '<?xml version="1.0"?>\n<manifest><version>2007-10-10</version></manifest>\n' \
	>"$tmp/x.manifest.xml"
expect_error "manifest to inspect" "is a classic bundle's manifest: .*verify -m $tmp/x.manifest.xml" \
	"$SNAPBUNDLE" inspect "$tmp/x.manifest.xml"
expect_error "manifest to verify" "is a classic bundle's manifest: give it with -m" \
	"$SNAPBUNDLE" verify "$tmp/x.manifest.xml"
expect_error "no source" "inspect needs a SOURCE" "$SNAPBUNDLE" inspect
expect_error "two sources" "inspect takes one SOURCE" \
	"$SNAPBUNDLE" inspect "$tmp/empty.img" "$tmp/empty.img"
expect_error "bad min gap" "invalid --min-gap 'lots'" \
	"$SNAPBUNDLE" inspect --min-gap lots "$tmp/empty.img"
exit $fail
