#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# "Never overwrite without --force" holds under concurrency: two restores, two unbundles or
# two bundles of one name started together, without --force, never both succeed; the one that
# succeeds leaves an output that checks, and the other leaves nothing behind.
. "$SRCDIR/tests/store/lib.sh"
command -v openssl >/dev/null || exit 77
make_disk disk.img 40
"$B" store disk.img -o a.bin --progress=none
openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -days 1 -subj /CN=t \
	2>/dev/null
bundle() {
	"$B" bundle -i disk.img -c c.pem -k k.pem -u 123456789012 -r x86_64 --ec2cert c.pem \
		-d "$1" --batch --progress=none
}
mkdir b0 && bundle b0 >/dev/null

# both at once, n times; exactly one exit 0 per trial
race() { # name trials command-with-OUT...
	local name=$1 trials=$2 wins=0
	shift 2
	for t in $(seq 1 "$trials"); do
		rm -rf out && mkdir out
		(if "${@//OUT/out}" >/dev/null 2>e1; then echo 1; else echo 0; fi > s1) &
		(if "${@//OUT/out}" >/dev/null 2>e2; then echo 1; else echo 0; fi > s2) &
		wait
		local ok ok2
		ok=$(cat s1)
		ok2=$(cat s2)
		[[ "$ok$ok2" =~ ^[01][01]$ ]] || fail "$name trial $t: no exit status recorded"
		[ $((ok + ok2)) -eq 1 ] ||
			fail "$name trial $t: $((ok + ok2)) of 2 succeeded ($(cat e1 e2 | head -c 300))"
		grep -qh "already exists\|appeared while it was written\|File exists\|being" e1 e2 ||
			fail "$name trial $t: unexpected error: $(cat e1 e2)"
		wins=$((wins + 1))
		if ls -A out | grep -q '\.tmp-[0-9]'; then
			fail "$name trial $t: temporary left: $(ls -A out)"
		fi
		check_"$name"
	done
	echo "$name: one of two won in each of $wins trials"
}
check_restore() { cmp out/r.img disk.img || fail "restore: the winner's output differs"; }
check_unbundle() { cmp out/u.img disk.img || fail "unbundle: the winner's output differs"; }
check_bundle() {
	"$B" verify -m out/disk.img.manifest.xml -k k.pem -c c.pem --progress=none >/dev/null 2>v.err ||
		fail "bundle: the winner's bundle does not verify: $(cat v.err) $(ls -A out)"
}
race restore 8 "$B" restore a.bin -o OUT/r.img --progress=none
race unbundle 8 "$B" unbundle -m b0/disk.img.manifest.xml -k k.pem -o OUT/u.img --progress=none
race bundle 8 bundle OUT
echo "concurrent: ok"
