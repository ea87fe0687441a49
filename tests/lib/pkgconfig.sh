#!/bin/bash
# An integrator's build: meson install into a temporary DESTDIR, then examples/inspect.c built
# with cc against the installed header and pkg-config file only, once
# against libsnapbundle.so and once against the installed libsnapbundle.a, and both run on an
# image. The installed prefix is moved under DESTDIR with --define-variable=prefix (only ours:
# the system libraries it requires stay where they are). Skips (77) only when there is no C
# compiler or no pkg-config.
set -euo pipefail
CC=${CC:-cc}
command -v "$CC" >/dev/null || { echo "no C compiler"; exit 77; }
command -v pkg-config >/dev/null || { echo "no pkg-config"; exit 77; }
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
d=$t/dest

meson install -C "$BUILDDIR" --no-rebuild --quiet --destdir "$d" >"$t/install.log" 2>&1 ||
	{ cat "$t/install.log"; exit 1; }
pc=$(find "$d" -name snapbundle.pc | head -1)
[ -n "$pc" ] || { echo "FAIL: no snapbundle.pc installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
pc_prefix=$(pkg-config --variable=prefix snapbundle)
pkgconf() { pkg-config --define-variable=prefix="$d$pc_prefix" "$@" snapbundle; }
libdir=$(pkgconf --variable=libdir)
[ "$libdir" = "$(dirname "$(dirname "$pc")")" ] || { echo "FAIL: libdir $libdir is not the .pc's"; exit 1; }
[ -f "$libdir/libsnapbundle.a" ] || { echo "FAIL: no libsnapbundle.a in $libdir"; exit 1; }
[ -f "$(pkgconf --variable=includedir)/snapbundle.h" ] ||
	{ echo "FAIL: snapbundle.h not where snapbundle.pc says"; exit 1; }

# A library built with sanitizers needs them in the program that links it.
extra=()
if nm -D "$libdir/libsnapbundle.so" | grep -c ' U __asan_' >/dev/null; then extra=(-fsanitize=address,undefined); fi

src=$SRCDIR/examples/inspect.c
# shellcheck disable=SC2046
"$CC" -std=c99 -Wall -Werror "${extra[@]}" -o "$t/inspect-shared" "$src" \
	$(pkgconf --cflags --libs)
# The archive, then the shared libraries of the packages the .pc lists as Requires.private
# (pkg-config --static would also want their own static archives).
libs_private=$(pkg-config --libs $(pkgconf --print-requires-private | awk '{ print $1 }'))
# shellcheck disable=SC2086
"$CC" -std=c99 -Wall -Werror "${extra[@]}" -o "$t/inspect-static" "$src" \
	$(pkgconf --cflags) "$libdir/libsnapbundle.a" $libs_private
if ldd "$t/inspect-static" | grep -c libsnapbundle >/dev/null; then
	echo "FAIL: the static build links libsnapbundle.so"; exit 1
fi

truncate -s 8M "$t/disk.img"
if command -v sfdisk >/dev/null; then
	printf 'label: gpt\n,4M\n' | sfdisk -q "$t/disk.img" >/dev/null
	want='^disk: 8388608 bytes, gpt$'
else
	want='^disk: 8388608 bytes, no table$'
fi
LD_LIBRARY_PATH=$libdir "$t/inspect-shared" "$t/disk.img" | grep -c "$want" >/dev/null
LD_LIBRARY_PATH=$libdir ldd "$t/inspect-shared" | grep -c "$libdir/libsnapbundle.so" >/dev/null
"$t/inspect-static" "$t/disk.img" | grep -c "$want" >/dev/null
echo "ok: examples/inspect.c built with pkg-config against the installed shared and static library"
