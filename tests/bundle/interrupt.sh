#!/usr/bin/env bash
# interrupt.sh - SIGINT or SIGTERM in the middle of a bundle, or a write failing mid-run (file
# size limit): the command exits non-zero, says why, and the destination holds nothing, no
# parts, no temporary files, no manifest.
. "$(dirname "$0")/lib.sh"
make_keys

img="$T/img"
# incompressible data at the slowest level on one thread: seconds of work
head -c 512M /dev/zero | openssl enc -aes-128-ctr -K 00112233445566778899aabbccddeeff \
	-iv 00000000000000000000000000000000 2>/dev/null > "$img"

for sig in INT TERM; do
	out="$T/out-$sig"
	mkdir "$out"
	# the command itself in the background (not the shell function), so $! is its pid
	"$SNAPBUNDLE" bundle -i "$img" -c "$T/user.pem" -k "$T/user.key" -u 123456789012 \
		-r x86_64 --ec2cert "$T/ec2.pem" -d "$out" --level 3 --threads 1 --part-size 1M \
		--progress=json 2> "$T/progress" > /dev/null &
	pid=$!
	# wait until data is flowing and a part is on disk, then freeze the process so the signal
	# surely lands mid-run however fast this machine is
	for _ in $(seq 1 1000); do
		if grep -q '"stage":"data"' "$T/progress" && [ -n "$(ls -A "$out")" ]; then break; fi
		sleep 0.01
	done
	kill -STOP $pid 2>/dev/null || fail "SIG$sig: finished before it could be signalled"
	[ -n "$(ls -A "$out")" ] || { kill -KILL $pid; fail "nothing written before the signal"; }
	grep -q '"stage":"finish"' "$T/progress" && { kill -KILL $pid; fail "already finishing"; }
	kill -$sig $pid
	kill -CONT $pid
	rc=0
	wait $pid || rc=$?
	[ $rc -ne 0 ] || fail "SIG$sig: exit status 0 (finished before the signal?)"
	# it dies of the signal, as every command does: 128 + its number
	[ $rc -eq $((128 + $(kill -l "$sig"))) ] || fail "SIG$sig: exit status $rc"
	[ -z "$(ls -A "$out")" ] || fail "SIG$sig left: $(ls -A "$out")"
	grep -q 'cancelled' "$T/progress" || fail "SIG$sig: no message: $(tail -2 "$T/progress")"
done

# a part write that fails half-way (RLIMIT_FSIZE with SIGXFSZ ignored: write gives EFBIG)
out="$T/out-efbig"
mkdir "$out"
rc=0
(trap '' XFSZ; ulimit -f 3072; exec "$SNAPBUNDLE" bundle -i "$img" -c "$T/user.pem" \
	-k "$T/user.key" -u 123456789012 -r x86_64 --ec2cert "$T/ec2.pem" -d "$out" \
	--part-size 8M --progress=none) 2> "$T/err" > /dev/null || rc=$?
[ $rc -ne 0 ] || fail "EFBIG: exit status 0"
grep -q 'cannot write .*part.*File too large' "$T/err" || fail "EFBIG message: $(cat "$T/err")"
[ -z "$(ls -A "$out")" ] || fail "EFBIG left: $(ls -A "$out")"
echo ok
