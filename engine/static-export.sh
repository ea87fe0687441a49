#!/bin/sh
# Makes the installed libsnapbundle.a from the internal static library: one partial link of all
# its objects (ld -r), then every defined global symbol that the version script does not list is
# made local (objcopy --keep-global-symbols), so the archive exports exactly the public API, as
# the shared library does. Usage: static-export.sh LD OBJCOPY AR INTERNAL.a SYMFILE OUTPUT.a TMPDIR
set -eu
ld=$1 objcopy=$2 ar=$3 internal=$4 symfile=$5 output=$6 tmp=$7

mkdir -p "$tmp"
# The global: section of the version script, one name a line.
sed -n '/global:/,/local:/{s/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);.*/\1/p}' "$symfile" \
	>"$tmp/keep.txt"
[ -s "$tmp/keep.txt" ] || { echo "static-export.sh: no global symbols in $symfile" >&2; exit 1; }

"$ld" -r --whole-archive "$internal" -o "$tmp/snapbundle.o"
"$objcopy" --keep-global-symbols="$tmp/keep.txt" "$tmp/snapbundle.o" "$tmp/snapbundle-public.o"
rm -f "$output"
"$ar" rcs "$output" "$tmp/snapbundle-public.o"
