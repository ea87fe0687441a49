#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# rekey --in-place, crashed (SIGKILL) at many points, with and without a new data key: after
# every crash the image opens with the old key or the new one and restores identically (the
# switch is the commit's rename), the next run reclaims the dead run's temporary, and a run
# that completes leaves only the new keys working.
. "$(dirname "$0")/lib.sh"

keys 1 2
make_disk disk.img 48
"$B" store disk.img -o a.bin --recipient c1.pem --frame-size 64K --level 0 --progress=none > /dev/null
cp a.bin orig.bin

# which key opens a.bin now: prints old or new; fails if neither does
which_key() {
	rm -f restored.img
	if "$B" restore a.bin -k k1.pem -o restored.img --progress=none > /dev/null 2>&1; then
		cmp disk.img restored.img || fail "a.bin (old key) restores differently"
		echo old
	elif "$B" restore a.bin -k k2.pem -o restored.img --progress=none > /dev/null 2>&1; then
		cmp disk.img restored.img || fail "a.bin (new key) restores differently"
		echo new
	else
		fail "neither key opens a.bin after a crash"
	fi
	rm -f restored.img
}

for mode in slots new-data-key; do
	args=(-k k1.pem --add-recipient c2.pem --remove-recipient c1.pem)
	[ "$mode" = slots ] || args+=(--new-data-key)
	# how long one run takes, on a copy
	cp orig.bin timing.bin
	t0=$(date +%s%N)
	"$B" rekey timing.bin "${args[@]}" --threads 1 --in-place --progress=none > /dev/null
	dur=$((($(date +%s%N) - t0) / 1000))
	rm -f timing.bin
	olds=0 news=0
	for i in $(seq 0 15); do
		cp orig.bin a.bin
		"$B" rekey a.bin "${args[@]}" --threads 1 --in-place --progress=none > /dev/null 2>&1 &
		pid=$!
		# 16 points spread over [0, 1.2 * duration): before the open, in the data, at the
		# commit and after it
		us=$((dur * i * 12 / 160))
		[ "$us" -eq 0 ] || sleep "$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))"
		kill -KILL "$pid" 2> /dev/null || true
		wait "$pid" 2> /dev/null || true
		k=$(which_key)
		[ "$k" = old ] && olds=$((olds + 1)) || news=$((news + 1))
		# the old image is byte for byte the original until the switch
		[ "$k" = new ] || cmp -s a.bin orig.bin || fail "$mode point $i: a.bin changed but the old key opens it"
		echo "$mode point $i (${us}us of ${dur}us): $k"
		# a killed run's temporary: reclaimed by the next run of the job in that directory
		# (checked below); at most one here
		[ "$(ls -A | grep -c '\.tmp-[0-9]')" -le 1 ] || fail "more than one temporary"
		rm -f -- .a.bin.tmp-*
	done
	[ "$olds" -gt 0 ] || fail "$mode: no crash point left the old image"
	echo "$mode: $olds points old, $news new"
done

# a temporary left by a killed run is reclaimed by the next run, which completes
cp orig.bin a.bin
"$B" rekey a.bin -k k1.pem --add-recipient c2.pem --new-data-key --threads 1 --in-place \
	--progress=none > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 200); do
	ls -A | grep -q '\.tmp-[0-9]' && break
	sleep 0.01
done
kill -KILL "$pid" 2> /dev/null || true
wait "$pid" 2> /dev/null || true
chmod 600 a.bin
"$B" rekey a.bin -k k1.pem --add-recipient c2.pem --remove-recipient c1.pem --in-place \
	--progress=none > /dev/null
! ls -A | grep -q '\.tmp-[0-9]' || fail "the dead run's temporary was not reclaimed"
[ "$(stat -c %a a.bin)" = 600 ] || fail "in place lost the file's mode"
[ "$(which_key)" = new ] || fail "a completed in-place re-key left the old key working"
"$B" verify a.bin -k k2.pem > /dev/null || fail "verify a.bin"
# in place is local only, and -o and --in-place exclude each other
if "$B" rekey a.bin -k k2.pem --in-place -o x.bin 2> /dev/null; then fail "-o with --in-place"; fi
echo "ok: crash matrix"
