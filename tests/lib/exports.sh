#!/bin/bash
# The libraries export exactly the public API: every defined global symbol of libsnapbundle.a and
# libsnapbundle.so carries the snap_ prefix, and both sets equal the global: list of
# engine/libsnapbundle.sym (a function added to the header without the script, or an internal
# one left global, fails). Outside judge: nm. docs/api.md names every exported function and every
# struct, enum and callback type the header declares.
set -euo pipefail
command -v nm >/dev/null || { echo "nm missing"; exit 77; }
lib=$BUILDDIR/engine
sym=$SRCDIR/engine/libsnapbundle.sym
fail=0

sed -n '/global:/,/local:/{s/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);.*/\1/p}' "$sym" | sort >want.$$
trap 'rm -f want.$$ static.$$ shared.$$' EXIT
[ "$(wc -l <want.$$)" -gt 40 ] || { echo "FAIL: too few names parsed from $sym"; exit 1; }

nm --defined-only --extern-only "$lib/libsnapbundle.a" | awk 'NF == 3 { print $3 }' | sort >static.$$
nm -D --defined-only "$lib/libsnapbundle.so" | awk 'NF == 3 && $3 !~ /^SNAPBUNDLE_/ { sub(/@.*/, "", $3); print $3 }' |
	sort >shared.$$

for f in static shared; do
	bad=$(grep -v '^snap_' $f.$$ || true)
	if [ -n "$bad" ]; then
		echo "FAIL: libsnapbundle ($f) exports names without snap_:"; echo "$bad" | head -20
		fail=1
	fi
	if ! diff -u want.$$ $f.$$; then
		echo "FAIL: libsnapbundle ($f) exports differ from $sym (- listed only, + exported only)"
		fail=1
	fi
done
api=$SRCDIR/docs/api.md
while read -r name; do
	grep -q "\b$name\b" "$api" || { echo "FAIL: docs/api.md does not describe $name"; fail=1; }
done <want.$$
types=$(grep -oE '^(struct|enum) snap_[a-z_]+|^typedef [^(]*\(\*snap_[a-z_]+_fn\)' \
	"$SRCDIR/engine/snapbundle.h" | grep -oE 'snap_[a-z_]+' | sort -u)
[ "$(echo "$types" | wc -l)" -gt 15 ] || { echo "FAIL: too few types parsed from snapbundle.h"; exit 1; }
for name in $types; do
	grep -q "\b$name\b" "$api" || { echo "FAIL: docs/api.md does not describe $name"; fail=1; }
done
[ $fail -eq 0 ] && echo "ok: $(wc -l <static.$$) symbols, all snap_, static and shared equal to the version script, all in docs/api.md"
exit $fail
