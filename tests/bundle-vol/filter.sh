#!/usr/bin/env bash
# bundle-vol of a loop-mounted ext4 volume: unbundled and mounted read-only, every file but the
# sensitive ones is identical (content, owner, mode, xattrs, links, holes), the sensitive ones
# are absent, the image passes e2fsck -fn and keeps the volume's label and UUID; the bundle
# destination inside the volume is left out; no temporary is left behind.
. "$(dirname "$0")/lib.sh"
make_keys
make_volume 48
mkdir -p "$T/vol/var/bundles" "$T/out"

# the destination lies inside the volume: it must not copy itself
bundle_vol "$T/vol/var/bundles" -p vol1 --part-size 1M >"$T/log" 2>&1 ||
	{ cat "$T/log"; fail "bundle-vol failed"; }
m=$T/vol/var/bundles/vol1.manifest.xml
[ -f "$m" ] || fail "no manifest"
ls -a "$T/vol/var/bundles" | grep -q 'tmp-' && fail "a temporary was left: $(ls -a "$T/vol/var/bundles")"
mv "$T/vol/var/bundles"/vol1.* "$T/out/"

"$SNAPBUNDLE" unbundle -m "$T/out/vol1.manifest.xml" -k "$T/user.key" -o "$T/restored.img" \
	>"$T/log" 2>&1 || { cat "$T/log"; fail "unbundle failed"; }
e2fsck -fn "$T/restored.img" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck -fn fails"; }
[ "$(blkid -o value -s UUID "$T/restored.img")" = 6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b ] ||
	fail "UUID not kept"
[ "$(blkid -o value -s LABEL "$T/restored.img")" = bvroot ] || fail "label not kept"
[ "$(stat -c %s "$T/restored.img")" -eq $((48 << 20)) ] || fail "image size is not the volume's"
mount_image "$T/restored.img" "$T/r" ro
[ -e "$T/r/var/bundles" ] && fail "the destination was copied into the image"
rmdir "$T/vol/var/bundles" # now the source is what the image must hold
compare_trees "$T/vol" "$T/r" "${SECRETS[@]}" ||
	fail "the image differs from the volume"
[ -f "$T/r/home/alice/.ssh/known_hosts" ] || fail "known_hosts was filtered"
echo "ok"
