# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the tests/nbd scripts (after tests/store/lib.sh or tests/s3/store-lib.sh): the
# plugin, nbdkit and the outside judges (nbdcopy, nbdinfo), skipping (77) without them.
: "${BUILDDIR:?}"
PLUGIN="$BUILDDIR/tools/nbdkit/nbdkit-snapbundle-plugin.so"
[ -f "$PLUGIN" ] || { echo "SKIP: the plugin was not built (nbdkit-plugin-dev missing)"; exit 77; }
for t in nbdkit nbdcopy nbdinfo; do
	command -v $t >/dev/null || { echo "SKIP: $t missing (tools/install-deps.sh)"; exit 77; }
done
# A sanitizer build's plugin needs its runtimes loaded first: nbdkit itself is not built with
# them. Their reports still fail the test (checked in the output below). nbdkit's own
# allocations are not this project's: leaks are checked by the unit test
# (engine/test-store-image-read.c). With the runtimes preloaded, an nbdkit that exits early
# (a refused image) may hang in libp11-kit's destructor (freelocale, in _dl_fini) after its
# message: a refusal is then given 10 seconds, and a timeout counts as its non-zero exit.
NBDKIT_ENV=()
asan=$(ldd "$PLUGIN" | awk '/libasan|libubsan/ { print $3 }' | tr '\n' ':')
if [ -n "$asan" ]; then
	NBDKIT_ENV=(env "LD_PRELOAD=${asan%:}" "ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0"
		timeout -k 2 240)
fi

# serve OUT PARAMS...: nbdkit serves the image (its PARAMS) on a private socket while nbdinfo
# records the size (OUT.size) and the map (OUT.map) and nbdcopy copies the device to OUT;
# nbdkit's messages go to OUT.err. Fails as nbdkit (or the command it ran) fails.
serve() {
	local out=$1
	shift
	rm -f "$out" "$out.size" "$out.map"
	OUT=$out "${NBDKIT_ENV[@]}" nbdkit -U - --run \
		'nbdinfo --size "$uri" > "$OUT.size" && nbdinfo --map "$uri" > "$OUT.map" &&
		 nbdcopy "$uri" "$OUT"' "$PLUGIN" "$@" 2> "$out.err"
	local r=$?
	if grep -q -e "Sanitizer" -e "runtime error" "$out.err"; then
		cat "$out.err" >&2
		fail "sanitizer report while serving $*"
	fi
	return $r
}

# serve_fails PATTERN PARAMS...: nbdkit (or the copy) fails, saying PATTERN on stderr.
serve_fails() {
	local pat=$1
	shift
	local saved=("${NBDKIT_ENV[@]}")
	[ -z "$asan" ] || NBDKIT_ENV[${#NBDKIT_ENV[@]} - 1]=10
	if serve fail.img "$@"; then
		fail "served but should fail with '$pat': $*"
	fi
	NBDKIT_ENV=("${saved[@]}")
	grep -q -- "$pat" fail.img.err || { cat fail.img.err >&2; fail "expected '$pat' from: $*"; }
	echo "ok: '$pat' ($(grep -m1 -- "$pat" fail.img.err | head -c 200))"
}

# volume_size IMAGE [ARGS...]: volume 0's size as inspect --json reports it.
volume_size() {
	"$B" inspect "$@" --json | python3 -c 'import json, sys
print(json.load(sys.stdin)["volumes"][0]["size"])'
}
