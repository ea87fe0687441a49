#!/usr/bin/env bash
# bundle-vol --partition gpt: sfdisk reads the image's table (one partition at 1 MiB), and the
# partition holds the volume's filesystem (type, label, UUID) and files; --partition mbr too.
. "$(dirname "$0")/lib.sh"
make_volume 40
mkdir -p "$T/out"
for kind in gpt mbr; do
	"$SNAPBUNDLE" bundle-vol -v "$T/vol" -d "$T/out" -p "$kind" --clone-only -P "$kind" \
		-s 64 --progress=none >"$T/log" 2>&1 || { cat "$T/log"; fail "bundle-vol -P $kind"; }
	img=$T/out/$kind
	[ "$(stat -c %s "$img")" -eq $((64 << 20)) ] || fail "$kind: image is not 64 MiB"
	sfdisk -d "$img" >"$T/table" 2>"$T/err" || { cat "$T/err"; fail "$kind: sfdisk -d fails"; }
	want=$([ $kind = gpt ] && echo gpt || echo dos)
	grep -q "^label: $want" "$T/table" || { cat "$T/table"; fail "$kind: not a $want table"; }
	grep -q "start= *2048," "$T/table" || { cat "$T/table"; fail "$kind: not at 1 MiB"; }
	[ "$(grep -c "^$img" "$T/table")" -eq 1 ] || fail "$kind: not one partition"
	l=$(losetup -f --show -r -o $((2048 * 512)) "$img")
	LOOPS+=("$l")
	e2fsck -fn "$l" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "$kind: e2fsck -fn fails"; }
	[ "$(blkid -o value -s UUID "$l")" = 6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b ] ||
		fail "$kind: UUID not kept"
	mkdir -p "$T/m-$kind"
	mount -o ro "$l" "$T/m-$kind"
	MOUNTS+=("$T/m-$kind")
	compare_trees "$T/vol" "$T/m-$kind" "${SECRETS[@]}" || fail "$kind: the image differs"
done
echo "ok"
