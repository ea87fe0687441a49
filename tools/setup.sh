#!/usr/bin/env bash
# Command 1 of the README: installs what is missing, builds, makes the built-in demo disk and
# runs the main jobs on it, printing what each did and how fast.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

echo "== installing missing packages"
tools/install-deps.sh

echo "== building"
if [ ! -d build/meson-private ]; then
	meson setup build >/dev/null
fi
ninja -C build >/dev/null
sb="$top/build/tools/snapbundle"
"$sb" --version

demo="$top/demo"
rm -rf "$demo"
mkdir -p "$demo"
echo "== making the demo disk: $demo/disk.img"
tools/make-demo-disk.sh "$demo/disk.img"

echo
echo "== snapbundle inspect demo/disk.img"
"$sb" inspect "$demo/disk.img"
