#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# messages.sh - the wrong turns of issue 16 each get a message that says what went wrong, the
# object, and the likely fix (docs/cli.md, "Messages"); the old messages are refused:
#   bundle -i dir/          was "invalid bundle name ''"
#   bundle -d /nonexistent  was "is not a directory"
#   an existing bundle      "use --force", the flag's real name
#   -k KEY -c CERT of two different key pairs: an error (exit 1, nothing left), not a warning
#   verify x.manifest.xml   hints at -m; verify x.bin --help is the store image's help
#   restore --debug and --passphrase-file - are taken
. "$SRCDIR/tests/tools/lib.sh"
make_keys
make_disk disk.img 8
mkdir -p out dir

# says PATTERN DESCRIPTION: the last command's stderr matches PATTERN (extended regex)
says() { grep -Eq -- "$1" cmd.err || fail "$2: message '$(cat cmd.err)' lacks /$1/"; }
lacks() { ! grep -Eq -- "$1" cmd.err || fail "$2: message '$(cat cmd.err)' still says /$1/"; }

expect 1 "bundle -i dir/" "$B" bundle -i dir/ "${BUNDLE_KEYS[@]}" -d out
says "cannot name the bundle after dir/: .*name with -p" "bundle -i dir/"
lacks "invalid bundle name ''" "bundle -i dir/"

expect 2 "bundle -d /nonexistent" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d "$T/nonexistent"
says "destination $T/nonexistent: No such file or directory: -d takes the directory .*mkdir -p $T/nonexistent" \
	"-d /nonexistent"
lacks "is not a directory" "-d /nonexistent"
expect 2 "bundle -d FILE" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d disk.img
says "destination disk.img is not a directory: -d takes the directory .* -p the bundle's name" \
	"-d FILE"

expect 0 "bundle" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out --progress=none
expect 1 "bundle again" "$B" bundle -i disk.img "${BUNDLE_KEYS[@]}" -d out --progress=none
says "out/disk.img.(part.0|manifest.xml) already exists \(use --force to replace it\)" \
	"existing bundle"
lacks "use force" "existing bundle"

# a private key that is not the certificate's: refused before any part is written
expect 1 "key/cert mismatch" "$B" bundle -i disk.img -c user.pem -k other.key -u 123456789012 \
	-r x86_64 --ec2cert ec2.pem -d out -p mismatch --progress=none --json
says "private key other.key does not match certificate user.pem" "key/cert mismatch"
lacks "warning" "key/cert mismatch"
python3 -c 'import json; d = json.load(open("cmd.out"))
assert any("does not match certificate" in e for e in d["errors"]), d' ||
	fail "key/cert mismatch: not in the JSON errors: $(cat cmd.out)"
[ -z "$(ls out | grep mismatch)" ] || fail "key/cert mismatch left: $(ls out | grep mismatch)"

# a manifest where a .bin belongs: the hint names -m
M=out/disk.img.manifest.xml
expect 2 "verify MANIFEST" "$B" verify "$M"
says "is a classic bundle's manifest: give it with -m \(snapbundle verify -m $M\)" \
	"verify MANIFEST"
# verify IMAGE.bin --help: the store image's options
expect 0 "verify x.bin --help" "$B" verify x.bin --help
grep -q -- "--without-key" cmd.out || fail "verify x.bin --help lacks --without-key"

# restore --debug and --passphrase-file - (the passphrase on standard input)
echo "correct horse" >pass.txt
expect 0 "store encrypted" "$B" store disk.img -o enc.bin --passphrase-file pass.txt \
	--scrypt-log-n 10 --progress=none
rc=0
"$B" restore enc.bin -o back.img --debug --passphrase-file - --progress=none \
	<pass.txt >cmd.out 2>cmd.err || rc=$?
[ $rc = 0 ] || fail "restore --debug --passphrase-file -: exit $rc: $(tail -c 300 cmd.err)"
grep -q "debug:" cmd.err || fail "restore --debug printed no debug line"
cmp -s disk.img back.img || fail "restore --passphrase-file -: the image differs"
# a wrong passphrase: a failure that names the image, not a verification class
echo "wrong" >wrong.txt
expect 1 "restore wrong passphrase" "$B" restore enc.bin -o x.img --passphrase-file wrong.txt
says "passphrase" "restore wrong passphrase"
finish
