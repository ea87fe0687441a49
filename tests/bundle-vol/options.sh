#!/usr/bin/env bash
# bundle-vol --clone-only: -i brings one filtered file back, --no-filter keeps them all, -e
# drops a directory, --generate-fstab writes the root line, a mount point with a space is found;
# each image passes e2fsck -fn and holds exactly what it should.
. "$(dirname "$0")/lib.sh"
make_volume 40
mkdir -p "$T/out"

clone() { # NAME [options]: the image of $VOL (default $T/vol) $T/out/NAME, mounted at $T/m-NAME
	local name=$1
	shift
	"$SNAPBUNDLE" bundle-vol -v "${VOL:-$T/vol}" -d "$T/out" -p "$name" --clone-only --batch \
		--progress=none "$@" >"$T/log" 2>&1 || { cat "$T/log"; fail "bundle-vol $* failed"; }
	[ -f "$T/out/$name" ] || fail "--clone-only left no image $name"
	e2fsck -fn "$T/out/$name" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck -fn fails on $name"; }
	mount_image "$T/out/$name" "$T/m-$name" ro
}

# -i: the user's key comes back, the other secrets stay out
clone inc -i "$T/vol/home/alice/.ssh/id_rsa"
keep=()
for s in "${SECRETS[@]}"; do [ "$s" = home/alice/.ssh/id_rsa ] || keep+=("$s"); done
compare_trees "$T/vol" "$T/m-inc" "${keep[@]}" || fail "-i: the image differs"
cmp "$T/vol/home/alice/.ssh/id_rsa" "$T/m-inc/home/alice/.ssh/id_rsa" || fail "-i: content"

# --no-filter: everything
clone all --no-filter
compare_trees "$T/vol" "$T/m-all" || fail "--no-filter: the image differs"

# -e: a directory and all below it are left out (comma-separated lists, as the original)
clone exc -e "$T/vol/opt/app,$T/vol/srv/data"
[ -e "$T/m-exc/opt/app" ] && fail "-e: opt/app is in the image"
[ -e "$T/m-exc/srv/data" ] && fail "-e: srv/data is in the image"
[ -f "$T/m-exc/etc/passwd" ] || fail "-e: etc/passwd is missing"

# --generate-fstab: one line for the root filesystem, by the volume's UUID
clone fstab --generate-fstab
printf 'UUID=6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b\t/\text4\tdefaults\t0\t1\n' |
	cmp - "$T/m-fstab/etc/fstab" || fail "--generate-fstab: wrong /etc/fstab"

# a mount point whose name mountinfo escapes (a space is \040 there) is found all the same
mkdir -p "$T/vol two"
mount --bind "$T/vol" "$T/vol two" 2>/dev/null || skip "cannot bind-mount"
MOUNTS+=("$T/vol two")
VOL="$T/vol two" clone spaced --no-filter
compare_trees "$T/vol" "$T/m-spaced" || fail "a mount point with a space: the image differs"

# nothing but the images is left in the destination
left=$(ls -A "$T/out" | grep -v -x -e inc -e all -e exc -e fstab -e spaced || true)
[ -z "$left" ] || fail "debris in the destination: $left"

# --clone-only never replaces an image without --force
if "$SNAPBUNDLE" bundle-vol -v "$T/vol" -d "$T/out" -p inc --clone-only --progress=none \
	>"$T/log" 2>&1; then fail "an existing image was replaced"; fi
grep -q "exists" "$T/log" || { cat "$T/log"; fail "no clear message for an existing image"; }
# --inherit cannot work here and says so
if "$SNAPBUNDLE" bundle-vol -v "$T/vol" --inherit --clone-only >"$T/log" 2>&1; then
	fail "--inherit succeeded"
fi
grep -q "instance metadata" "$T/log" || fail "--inherit: no clear message"
echo "ok"
