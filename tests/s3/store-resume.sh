#!/usr/bin/env bash
# A store into S3 never leaves an object behind when it fails: killed (SIGKILL) halfway, it
# leaves its multipart upload and a checkpoint, and --resume completes the object byte for byte
# as an uninterrupted store (awscli downloads the bytes of a local store of the same source),
# which restores and verifies; a source that changed is refused (its modification time, the
# digest of a frame of the last part kept); an encrypted store resumes with its passphrase (the
# same bytes as a local store of the same seed; restored and verified without one); SIGINT
# keeps the upload and says how to resume or discard it; --no-resume aborts it; snapbundle
# abort discards one.
. "$SRCDIR/tests/s3/store-lib.sh"
make_disk disk.img
# slow enough to be caught halfway: one thread, the strongest compression
SLOW=(--threads 1 --level 3 --part-size 5M)
REPRO+=(--tag kind=resumed)
"$B" store disk.img -o local.bin "${REPRO[@]}" --level 3
size=$(stat -c %s local.bin)
parts=$(((size + (5 << 20) - 1) / (5 << 20)))
ckdir="$XDG_STATE_HOME/snapbundle"

# acked: the parts the checkpoint of the running store lists so far
acked() { cat "$ckdir"/store-*.checkpoint 2>/dev/null | grep -c '^part ' || true; }

# start_store KEY WANT ARGS...: a store in the background (with ARGS, REPRO unless changed), once
# WANT parts were acknowledged; its pid in $pid
ARGS=("${REPRO[@]}")
start_store() {
	local key=$1 want=$2
	shift 2
	rm -rf "$ckdir"
	"$B" store disk.img -o "s3://$bucket/$key" "${ARGS[@]}" "${SLOW[@]}" "$@" \
		>bg.out 2>bg.err &
	pid=$!
	for _ in $(seq 1 3000); do
		[ "$(acked)" -ge "$want" ] && return 0
		kill -0 "$pid" 2>/dev/null || { cat bg.err >&2; fail "store of $key ended early"; }
		sleep 0.02
	done
	fail "store of $key acknowledged no $want parts"
}

# 1. SIGKILL at about 50 %, then --resume
start_store r/img.bin $((parts / 2))
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
echo "killed after $(acked) of $parts parts"
no_object r/img.bin
[ "$(uploads r/img.bin | wc -l)" -eq 1 ] || fail "the killed store's upload is not listed"
ok "killed at $(acked)/$parts parts: no object, the upload is listed"
"$B" store disk.img -o "s3://$bucket/r/img.bin" "${REPRO[@]}" --level 3 --resume | tee res.out
grep -q "^stored s3://$bucket/r/img.bin" res.out || fail "resume printed no object"
aws s3 cp --only-show-errors "s3://$bucket/r/img.bin" dl.bin
cmp dl.bin local.bin || fail "the resumed object differs from an uninterrupted store"
[ -z "$(uploads r/img.bin)" ] || fail "an upload is left after the resume"
tags=$(aws s3api get-object-tagging --bucket "$bucket" --key r/img.bin \
	--query 'TagSet[].[Key,Value]' --output text | tr '\t' '=')
[ "$tags" = "kind=resumed" ] || fail "the resumed object's tags: '$tags'"
! ls "$ckdir"/store-*.checkpoint 2>/dev/null || fail "the checkpoint is left after success"
"$B" restore "s3://$bucket/r/img.bin" -o r.img --progress=none >/dev/null
cmp r.img disk.img || fail "the resumed image does not restore the source"
"$B" verify "s3://$bucket/r/img.bin" --progress=none | grep -q ": ok," || fail "verify"
ok "resumed: the object equals a local store, restores and verifies"

# 1b. encrypted: the passphrase unwraps the data key kept in the checkpoint; seeded, the object
# is a local store's bytes; unseeded (random keys and nonces), it restores and verifies
echo "resume secret" > pass
ENC=(--passphrase-file pass --scrypt-log-n 10)
"$B" store disk.img -o local-enc.bin "${REPRO[@]}" "${ENC[@]}" --level 3
start_store e/img.bin $((parts / 2)) "${ENC[@]}"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
expect_fail "give its passphrase" \
	"$B" store disk.img -o "s3://$bucket/e/img.bin" "${REPRO[@]}" --level 3 --resume
echo "wrong secret" > wrong
expect_fail "cannot resume s3://$bucket/e/img.bin" "$B" store disk.img \
	-o "s3://$bucket/e/img.bin" "${REPRO[@]}" --level 3 --resume --passphrase-file wrong
"$B" store disk.img -o "s3://$bucket/e/img.bin" "${REPRO[@]}" "${ENC[@]}" --level 3 --resume \
	>/dev/null
aws s3 cp --only-show-errors "s3://$bucket/e/img.bin" dl-enc.bin
cmp dl-enc.bin local-enc.bin || fail "the resumed encrypted object differs from a local store"
ARGS=(--exact --progress=none)
start_store u/img.bin $((parts / 2)) "${ENC[@]}"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
"$B" store disk.img -o "s3://$bucket/u/img.bin" "${ARGS[@]}" "${ENC[@]}" --resume >/dev/null
"$B" restore "s3://$bucket/u/img.bin" --passphrase-file pass -o u.img --progress=none >/dev/null
cmp u.img disk.img || fail "the resumed unseeded encrypted image does not restore the source"
"$B" verify "s3://$bucket/u/img.bin" --passphrase-file pass --progress=none | grep -q ": ok," ||
	fail "verify of the resumed unseeded encrypted image"
ARGS=("${REPRO[@]}")
ok "encrypted stores resume: seeded the local store's bytes, unseeded restores and verifies"

# 2. a source that changed is refused: its modification time, then a frame's bytes
cp disk.img orig.img
start_store r2.bin 3
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
touch disk.img
expect_fail "changed since the upload began" \
	"$B" store disk.img -o "s3://$bucket/r2.bin" "${REPRO[@]}" --level 3 --resume
grep -q "it was modified" cmd.err || fail "the modification time was not the reason"
# a byte of a frame of the last part kept, the modification time put back
cp orig.img disk.img
touch -d "@$(stat -c %.9Y orig.img)" disk.img
start_store r3.bin 3
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
mtime=$(stat -c %.9Y disk.img)
off=$(python3 - "$ckdir"/store-*.checkpoint <<'EOF'
import sys
parts, frames = {}, []
for line in open(sys.argv[1]):
    if not line.endswith("\n"):
        break
    w = line.split()
    if w[0] == "part":
        parts[int(w[1])] = int(w[2])
    elif w[0] == "frame":
        frames.append((int(w[1]), int(w[4]), int(w[5])))
n = 0
while n + 1 in parts:
    n += 1
lo, hi = (parts[n - 1] if n > 1 else 0), parts[n]
# a frame whose record starts within the last part kept: a byte in its middle
f = [f for f in frames if lo <= f[0] < hi][-1]
print(f[1] + f[2] // 2)
EOF
)
printf '\xa5' | dd of=disk.img bs=1 seek="$off" conv=notrunc status=none
cmp -s disk.img orig.img && printf '\x5a' | dd of=disk.img bs=1 seek="$off" conv=notrunc status=none
touch -d "@$mtime" disk.img
expect_fail "changed since the upload began (frame" \
	"$B" store disk.img -o "s3://$bucket/r3.bin" "${REPRO[@]}" --level 3 --resume
no_object r3.bin
cp orig.img disk.img

# 3. snapbundle abort discards a kept upload (else awscli does)
for k in r2.bin r3.bin; do
	if "$B" abort --help >/dev/null 2>&1; then
		"$B" abort "s3://$bucket/$k" >/dev/null || fail "snapbundle abort s3://$bucket/$k"
	else
		echo "snapbundle abort is not there: aborting with awscli"
		aws s3api abort-multipart-upload --bucket "$bucket" --key "$k" \
			--upload-id "$(uploads "$k")"
	fi
	[ -z "$(uploads "$k")" ] || fail "the upload of $k is still listed after abort"
done
ok "a changed source is refused; abort leaves no upload"

# 4. SIGINT: the upload is kept and the message says how to resume or discard it
start_store r4.bin 2
kill -INT "$pid"
st=0
wait "$pid" || st=$?
[ "$st" -ne 0 ] || fail "an interrupted store succeeded"
grep -q -- "--resume" bg.err && grep -q "snapbundle abort s3://$bucket/r4.bin" bg.err ||
	{ cat bg.err >&2; fail "no resume or discard advice"; }
no_object r4.bin
[ "$(uploads r4.bin | wc -l)" -eq 1 ] || fail "SIGINT did not keep the upload"
ok "SIGINT keeps the upload: $(grep -o 'is not complete.*' bg.err | head -c 160)"

# 5. --no-resume: nothing is kept
start_store r5.bin 2 --no-resume
kill -INT "$pid"
wait "$pid" || true
no_object r5.bin
[ -z "$(uploads r5.bin)" ] || fail "--no-resume left an upload"
! ls "$ckdir"/store-*.checkpoint 2>/dev/null || fail "--no-resume left a checkpoint"
ok "--no-resume leaves no upload and no checkpoint"
echo "store-resume: ok"
