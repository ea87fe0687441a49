# SPDX-License-Identifier: LGPL-2.1-or-later
# lib.sh - shared by the tests/tools scripts: a scratch directory, keys, small inputs (a disk,
# its bundle, its .bin) and the exit-code check. Sourced, not run.
set -uo pipefail
export LC_ALL=C
: "${SNAPBUNDLE:?run through meson test (SNAPBUNDLE unset)}" "${SRCDIR:?}"
B="$SNAPBUNDLE"
T=$(mktemp -d "${TMPDIR:-/tmp}/snap-tools.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
failures=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
need() { for p; do command -v "$p" >/dev/null || { echo "skip: $p missing"; exit 77; }; done; }
need openssl python3 sfdisk

# A user key pair, a second key that matches no certificate, and an EC2 stand-in.
make_keys() {
	openssl req -x509 -newkey rsa:2048 -nodes -keyout user.key -out user.pem -days 2 \
		-subj /CN=snapbundle-test-user 2>/dev/null
	openssl genrsa -out other.key 2048 2>/dev/null
	openssl req -x509 -newkey rsa:1024 -nodes -keyout ec2.key -out ec2.pem -days 2 \
		-subj /CN=snapbundle-test-ec2 2>/dev/null
}

# make_disk FILE MIB: a GPT disk, partition 1 random data (what a bundle or store reads).
make_disk() {
	truncate -s "$2M" "$1"
	printf 'label: gpt\nstart=2048, size=%d, name=data\n' $((($2 - 2) * 2048)) |
		sfdisk -q "$1" >/dev/null
	head -c $((($2 - 2) << 20)) /dev/urandom | dd of="$1" bs=1M seek=1 conv=notrunc \
		status=none
}

# bundle_args: the standard bundle options (keys above, destination and name after).
BUNDLE_KEYS=(-c user.pem -k user.key -u 1234-5678-9012 -r x86_64 --ec2cert ec2.pem --batch)

# flip FILE OFFSET: one byte of FILE changed at OFFSET.
flip() {
	python3 - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0x5a]))
PY
}

# expect WANT DESCRIPTION COMMAND...: COMMAND exits with WANT; with --json among its
# arguments, standard output is one JSON document whose exit_code is WANT and exit_class the
# table's name for it.
expect() {
	local want=$1 what=$2 rc=0
	shift 2
	"$@" >cmd.out 2>cmd.err </dev/null || rc=$?
	if [ "$rc" != "$want" ]; then
		fail "$what: exit $rc, want $want ($*): $(tail -c 400 cmd.err)"
		return
	fi
	if grep -qi "sanitizer" cmd.err; then
		fail "$what: sanitizer report: $(head -c 600 cmd.err)"
	fi
	local a
	for a; do
		[ "$a" = --json ] || continue
		python3 - cmd.out "$want" <<'PY' || fail "$what: JSON document: $(head -c 400 cmd.out)"
import json, sys
doc = json.load(open(sys.argv[1]))
want = int(sys.argv[2])
cls = {0: "ok", 1: "failure", 2: "usage", 3: "verification-failed", 130: "interrupted",
       143: "interrupted"}[want]
assert doc["exit_code"] == want and doc["exit_class"] == cls, doc
PY
		break
	done
}

# interrupt WANT SIGNAL DESCRIPTION COMMAND...: COMMAND (given --progress=json) is stopped once
# it reports its data stage, sent SIGNAL, continued: it must exit with WANT (128 + the
# signal's number). A run that finished before the signal (exit 0) is tried again, 3 times.
interrupt() {
	local try
	for try in 1 2 3; do
		interrupt_once "$@" && return
	done
	fail "$3: finished before SIG$2 three times"
}
interrupt_once() {
	local want=$1 sig=$2 what=$3 rc=0
	shift 3
	rm -f progress.log
	"$@" >cmd.out 2>progress.log </dev/null &
	local pid=$! i
	for i in $(seq 1 1000); do
		grep -q '"stage":"data"' progress.log 2>/dev/null && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.01
	done
	kill -STOP $pid 2>/dev/null
	kill -"$sig" $pid 2>/dev/null
	kill -CONT $pid 2>/dev/null
	wait $pid || rc=$?
	[ "$rc" != 0 ] || return 1
	if [ "$rc" != "$want" ]; then
		fail "$what: SIG$sig: exit $rc, want $want: $(tail -c 300 progress.log)"
	fi
}

finish() {
	if [ $failures -gt 0 ]; then
		echo "$failures failure(s)" >&2
		exit 1
	fi
	echo ok
	exit 0
}
