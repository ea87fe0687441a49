#!/usr/bin/env bash
# Command 1 of the README: installs what is missing, builds, makes the built-in demo disk and
# runs the main jobs on it (inspect; bundle -> verify -> unbundle; store -> verify -> restore),
# printing what each did and how fast, and checking each round trip.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

step() { printf '\n== %s\n' "$*"; }

# timed WHAT COMMAND...: runs the command and says how long it took and at what rate of the
# demo disk's size
timed() {
	local what=$1 t0 t1
	shift
	t0=$(date +%s%N)
	"$@"
	t1=$(date +%s%N)
	python3 -c 'import sys
ns, size, what = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = ns / 1e9
print("%s took %.2f s (%.0f MiB/s of the %d MiB disk)" % (what, s, size / 2**20 / s, size >> 20))' \
		"$((t1 - t0))" "$(stat -c %s "$demo/disk.img")" "$what"
}

step "installing missing packages"
tools/install-deps.sh

step "building"
if [ ! -d build/meson-private ]; then
	meson setup build >/dev/null
fi
ninja -C build >/dev/null
sb="$top/build/tools/snapbundle"
"$sb" --version

demo="$top/demo"
rm -rf "$demo"
mkdir -p "$demo"
step "making the demo disk: demo/disk.img"
tools/make-demo-disk.sh "$demo/disk.img"

step "snapbundle inspect demo/disk.img"
"$sb" inspect "$demo/disk.img"
"$sb" inspect --json --extents "$demo/disk.img" >"$demo/disk.json"

# A user key pair, and a stand-in for Amazon's EC2 certificate (the real cert-ec2.pem comes with
# ec2-ami-tools; see README.md).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$demo/user-key.pem" -out "$demo/user-cert.pem" \
	-subj /CN=snapbundle-demo-user -days 30 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$demo/ec2-key.pem" -out "$demo/ec2-cert.pem" \
	-subj /CN=snapbundle-demo-ec2 -days 30 2>/dev/null

# The restored image must equal the source wherever the map says DATA or ZERO; UNUSED space
# (free filesystem blocks, unpartitioned junk) is not kept and reads back as zeros.
check() {
	if python3 tests/unbundle/cmp-unused.py "$demo/disk.img" "$1" "$demo/disk.json"; then
		echo "round trip: $2 restored every used byte of demo/disk.img; unused space reads as zeros"
	else
		echo "round trip FAILED: $2" >&2
		exit 1
	fi
}

step "snapbundle bundle (classic EC2 bundle) -> demo/bundle/"
mkdir -p "$demo/bundle"
timed bundle "$sb" bundle -i "$demo/disk.img" -c "$demo/user-cert.pem" -k "$demo/user-key.pem" \
	-u 1234-5678-9012 -r x86_64 --ec2cert "$demo/ec2-cert.pem" -d "$demo/bundle" --batch
ls -l "$demo/bundle"

step "snapbundle verify -m demo/bundle/disk.img.manifest.xml (every check, nothing written)"
"$sb" verify -m "$demo/bundle/disk.img.manifest.xml" -k "$demo/user-key.pem" \
	-c "$demo/user-cert.pem"

step "snapbundle unbundle -> demo/unbundled.img"
timed unbundle "$sb" unbundle -m "$demo/bundle/disk.img.manifest.xml" -k "$demo/user-key.pem" \
	-c "$demo/user-cert.pem" -o "$demo/unbundled.img"
check "$demo/unbundled.img" "bundle -> unbundle"

step "snapbundle store (single-object .bin, encrypted with a passphrase) -> demo/disk.bin"
printf 'demo passphrase\n' >"$demo/passphrase"
timed store "$sb" store "$demo/disk.img=/dev/xvda" -o "$demo/disk.bin" --name demo-image \
	--description "snapbundle demo disk" --arch x86_64 --passphrase-file "$demo/passphrase"
"$sb" inspect "$demo/disk.bin"

step "snapbundle verify demo/disk.bin"
"$sb" verify "$demo/disk.bin" --passphrase-file "$demo/passphrase"

step "snapbundle restore -> demo/restored.img"
timed restore "$sb" restore "$demo/disk.bin" --passphrase-file "$demo/passphrase" -o "$demo/restored.img"
check "$demo/restored.img" "store -> restore"

step "done: everything is in demo/"
du -sh --apparent-size "$demo/disk.img" | sed 's/^/disk (apparent size): /'
du -sh "$demo/bundle" "$demo/disk.bin" | sed 's/^/output: /'
