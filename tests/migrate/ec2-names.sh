#!/usr/bin/env bash
# ec2-names.sh - the built snapbundle run through the ec2-* links of the build tree
# (tools/meson.build makes them; -Dec2-names=true installs the same): each name runs its
# command, with ec2-ami-tools' common options --version (ours), --manual and -h (the command's
# help), --batch (accepted) and --debug; a bundle made by ec2-bundle-image, migrated by
# ec2-migrate-manifest and restored by ec2-unbundle gives back the image.
. "$(dirname "$0")/../bundle/lib.sh"
: "${BUILDDIR:?run through meson test (BUILDDIR unset)}"
need cmp
L="$BUILDDIR/tools"
version=$("$SNAPBUNDLE" --version | cut -d' ' -f2)

declare -A cmd=(
	[ec2-bundle-image]=bundle [ec2-bundle-vol]=bundle-vol [ec2-unbundle]=unbundle
	[ec2-upload-bundle]=upload-bundle [ec2-download-bundle]=download-bundle
	[ec2-delete-bundle]=delete-bundle [ec2-migrate-manifest]=migrate-manifest
	[ec2-migrate-bundle]=migrate-bundle
)
for n in "${!cmd[@]}"; do
	[ -L "$L/$n" ] && [ "$(readlink "$L/$n")" = snapbundle ] || fail "$L/$n is not a link"
	out=$("$L/$n" --version) || fail "$n --version"
	[ "$out" = "$n (snapbundle $version)" ] || fail "$n --version printed '$out'"
	# the command's own help, the same text as through snapbundle COMMAND --help
	if "$SNAPBUNDLE" "${cmd[$n]}" --help > "$T/want" 2>&1; then
		for o in --manual -h; do
			"$L/$n" $o > "$T/got" 2>&1 || fail "$n $o"
			cmp -s "$T/want" "$T/got" ||
				fail "$n $o is not ${cmd[$n]}'s help: $(head -3 "$T/got")"
		done
		grep -q "usage: snapbundle ${cmd[$n]}" "$T/got" ||
			fail "$n help: $(head -1 "$T/got")"
	else
		# a build without that command (bundle-vol before it lands) says so
		if "$L/$n" -h 2> "$T/err"; then fail "$n ran without its command"; fi
		grep -q "has no ${cmd[$n]} command" "$T/err" || fail "$n: $(cat "$T/err")"
	fi
done
# not every name is a command: snapbundle itself under its own name still wants one
if "$SNAPBUNDLE" 2> /dev/null; then fail "snapbundle without a command succeeded"; fi

make_keys
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$T/ec2new.key" -out "$T/ec2new.pem" \
	-days 2 -subj /CN=snapbundle-test-ec2-new 2>/dev/null
img="$T/img"
head -c 200000 /dev/urandom > "$img"
head -c 100000 /dev/zero >> "$img"
mkdir "$T/b" "$T/un"

echo "-- ec2-bundle-image --batch --debug"
"$L/ec2-bundle-image" -i "$img" -c "$T/user.pem" -k "$T/user.key" -u 1234-5678-9012 -r x86_64 \
	--ec2cert "$T/ec2.pem" -d "$T/b" --batch --debug --progress=none --part-size 100K \
	> "$T/bundle.out" 2> "$T/bundle.err" || fail "ec2-bundle-image: $(cat "$T/bundle.err")"
[ -f "$T/b/img.manifest.xml" ] || fail "ec2-bundle-image wrote no manifest"
grep -qi debug "$T/bundle.err" || [ -s "$T/bundle.err" ] || fail "--debug printed nothing"

echo "-- ec2-migrate-manifest --batch"
"$L/ec2-migrate-manifest" -m "$T/b/img.manifest.xml" -c "$T/user.pem" -k "$T/user.key" \
	--ec2cert "$T/ec2new.pem" --no-mapping --batch > /dev/null || fail "ec2-migrate-manifest"
k=$(unwrap "$T/b/img.manifest.xml" ec2_encrypted_key "$T/ec2new.key") ||
	fail "the migrated manifest is not for the new EC2 key"
[[ "$k" =~ ^[0-9a-f]{32}$ ]] || fail "unwrapped key: '$k'"

echo "-- ec2-unbundle --batch"
"$L/ec2-unbundle" -m "$T/b/img.manifest.xml" -k "$T/user.key" -s "$T/b" -d "$T/un" --batch \
	--progress=none > /dev/null || fail "ec2-unbundle"
cmp "$T/un/img" "$img" || fail "ec2-unbundle restored another image"

echo "-- options after -- are the command's"
if "$L/ec2-unbundle" -- --version > "$T/out" 2>&1; then fail "-- --version succeeded"; fi
grep -q "snapbundle (snapbundle" "$T/out" && fail "-- --version printed the version"
echo ok
