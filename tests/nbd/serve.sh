#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A .bin served by nbdkit-snapbundle-plugin, judged by libnbd's nbdinfo and nbdcopy: the size is
# the volume's; the copy equals restore's output byte for byte (and the disk itself for a store
# --exact), its partitions the disk's, e2fsck and fsck.vfat accept its filesystems, its map's
# data the image's; an encrypted image with its passphrase. Refused before serving: a wrong or
# missing passphrase, a missing image, a tampered index, a volume the image lacks, a signer that
# did not sign it. A flipped byte in a frame fails the copy, nbdkit naming the frame.
. "$SRCDIR/tests/store/lib.sh"
. "$SRCDIR/tests/nbd/lib.sh"
TP="python3 $SRCDIR/tests/store/tamper.py"
"$SRCDIR/tools/make-demo-disk.sh" disk.img 128 >/dev/null 2>&1 || exit 77
size=$(stat -c %s disk.img)
echo "the passphrase" > pass
echo "another one" > wrong

# --exact: every byte of the disk, served
"$B" store disk.img -o exact.bin --exact --progress=none
serve out.img image=exact.bin || { cat out.img.err >&2; fail "serving exact.bin"; }
[ "$(cat out.img.size)" = "$size" ] || fail "nbdinfo size $(cat out.img.size), disk $size"
cmp disk.img out.img || fail "the served --exact image differs from the disk"
echo "ok: --exact served byte for byte"

# the default store (free space unused): restore's bytes, the disk's partitions
"$B" store disk.img -o img.bin --progress=none
"$B" restore img.bin -o restored.img --progress=none
serve out.img image=img.bin volume=0 || { cat out.img.err >&2; fail "serving img.bin"; }
[ "$(cat out.img.size)" = "$(volume_size img.bin)" ] || fail "nbdinfo size differs from the volume"
cmp restored.img out.img || fail "the served image differs from restore's"
same_partitions disk.img out.img
[ "$(wc -l < parts.txt)" = 3 ] || fail "expected 3 partitions"
{ read -r s1 c1; read -r s2 c2; } < parts.txt
dd if=out.img of=root.fs bs=512 skip="$s1" count="$c1" status=none
e2fsck -fn root.fs >/dev/null 2>&1 || fail "e2fsck rejects the served root filesystem"
if command -v fsck.vfat >/dev/null; then
	dd if=out.img of=efi.fs bs=512 skip="$s2" count="$c2" status=none
	fsck.vfat -n efi.fs >/dev/null || fail "fsck.vfat rejects the served EFI filesystem"
fi
# the map: data where the image holds data, holes that read as zeros elsewhere
data=$(awk '$3 == 0 { n += $2 } END { print n + 0 }' out.img.map)
want=$("$B" inspect img.bin --json | python3 -c 'import json, sys
print(json.load(sys.stdin)["volumes"][0]["map"]["bytes"]["data"])')
[ "$data" = "$want" ] || fail "nbdinfo --map shows $data bytes of data, the image $want"
grep -q "hole,zero" out.img.map || fail "no hole in the map"
echo "ok: default store served as restored (partitions, e2fsck, map)"
# the volume by its device name, as restore --volume takes it
serve byname.img image=img.bin volume=xvda || { cat byname.img.err >&2; fail "volume=xvda"; }
cmp restored.img byname.img || fail "volume=xvda served other bytes than volume 0"
echo "ok: volume=xvda served as volume 0"

# encrypted
"$B" store disk.img -o enc.bin --passphrase-file pass --frame-size 256K --progress=none
serve out.img image=enc.bin passphrase-file=pass || { cat out.img.err >&2; fail "enc.bin"; }
cmp restored.img out.img || fail "the served encrypted image differs from restore's"
echo "ok: encrypted image served"

# refused before serving
serve_fails "wrong passphrase for $T/enc.bin" image=enc.bin passphrase-file=wrong
serve_fails "is encrypted: give a passphrase or a private key" image=enc.bin
serve_fails "missing.bin" image=missing.bin
serve_fails "no image given" volume=0
serve_fails "has no volume 1" image=img.bin volume=1
serve_fails "the image has no volume sdz" image=img.bin volume=sdz
serve_fails "unknown parameter" image=img.bin colour=blue
read -r idx _ < <($TP img.bin record 4)
cp img.bin t.bin && $TP t.bin flip-fix $((idx + 100))
serve_fails "index authentication failed" image=t.bin
[ ! -e fail.img ] || fail "a refused image was copied"
if command -v openssl >/dev/null; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout sign.pem -out sign.crt -days 1 \
		-subj /CN=sign 2>/dev/null
	openssl req -x509 -newkey rsa:2048 -nodes -keyout other.pem -out other.crt -days 1 \
		-subj /CN=other 2>/dev/null
	"$B" store disk.img -o signed.bin --sign-key sign.pem --progress=none
	serve out.img image=signed.bin signer=sign.crt || { cat out.img.err >&2; fail "signed"; }
	cmp restored.img out.img || fail "the served signed image differs from restore's"
	serve_fails "is signed by another key than $T/other.crt" image=signed.bin signer=other.crt
	serve_fails "is not signed" image=img.bin signer=sign.crt
fi

# a flipped byte in the payload of the longest frame: opening succeeds (the index is intact),
# the copy fails when it reaches the frame (an I/O error), and nbdkit says which frame
read -r k at len < <($TP enc.bin frames | sort -k3,3n | tail -1)
cp enc.bin t.bin && $TP t.bin flip $((at + 96 + len / 2))
serve_fails "t.bin: frame $k at offset $at (volume /dev/xvda, offset [0-9]*): digest mismatch" \
	image=t.bin passphrase-file=pass
grep -q "nbdcopy: read at offset [0-9]* failed: Input/output error" fail.img.err ||
	fail "nbdcopy did not fail reading the frame"
echo "nbd-serve: ok"
