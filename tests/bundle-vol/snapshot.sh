#!/usr/bin/env bash
# bundle-vol --snapshot: the frozen volume's block device is bundled and unbundles to the same
# files; it needs --no-filter and refuses a destination on the frozen filesystem; and a run
# killed in the middle (SIGTERM: the job's cancel; SIGKILL: the guard process) leaves the
# filesystem accepting writes.
. "$(dirname "$0")/lib.sh"
need fsfreeze timeout
make_keys
make_volume 160
mkdir -p "$T/out"

if bundle_vol "$T/out" --snapshot >"$T/log" 2>&1; then fail "--snapshot without --no-filter"; fi
grep -q -- "--no-filter" "$T/log" || { cat "$T/log"; fail "no clear message"; }
if bundle_vol "$T/vol/tmp" --snapshot --no-filter >"$T/log" 2>&1; then
	fail "--snapshot wrote onto the frozen filesystem"
fi
grep -q "freezes" "$T/log" || { cat "$T/log"; fail "no clear message for the destination"; }
timeout 10 touch "$T/vol/probe0" || fail "the volume is frozen after a refusal"

# a whole run: the bundle unbundles to the volume's files, secrets included (bit for bit)
bundle_vol "$T/out" -p snap --snapshot --no-filter --debug >"$T/log" 2>&1 ||
	{ cat "$T/log"; fail "bundle-vol --snapshot failed"; }
grep -q "thawed" "$T/log" || { cat "$T/log"; fail "no thaw reported"; }
timeout 10 touch "$T/vol/probe1" || fail "the volume is frozen after a run"
"$SNAPBUNDLE" unbundle -m "$T/out/snap.manifest.xml" -k "$T/user.key" -o "$T/snap.img" \
	>"$T/log" 2>&1 || { cat "$T/log"; fail "unbundle failed"; }
e2fsck -fn "$T/snap.img" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck -fn fails"; }
mount_image "$T/snap.img" "$T/r" ro
rm "$T/vol/probe1"
compare_trees "$T/vol" "$T/r" probe0 2>"$T/cmp" || grep -q "probe0" "$T/cmp" ||
	{ cat "$T/cmp"; fail "the snapshot differs"; }

# killed in the middle: enough data that the bundle takes a while
head -c $((120 << 20)) /dev/urandom >"$T/vol/srv/data/big"
sync
for sig in TERM KILL; do
	rm -f "$T/out"/kill*
	bundle_vol "$T/out" -p "kill$sig" --snapshot --no-filter --threads 1 --level 3 \
		--debug >"$T/log" 2>&1 &
	pid=$!
	for _ in $(seq 500); do grep -q "froze" "$T/log" && break; sleep 0.01; done
	grep -q "froze" "$T/log" || { kill -9 $pid; cat "$T/log"; fail "no freeze seen"; }
	sleep 0.3
	kill -$sig $pid
	wait $pid && fail "a killed run succeeded"
	[ -e "$T/out/kill$sig.manifest.xml" ] && fail "SIG$sig came after the end: not a test"
	timeout 10 touch "$T/vol/after-$sig" || fail "SIG$sig: the volume is still frozen"
	echo "SIG$sig: the volume accepts writes"
done
echo "ok"
