#!/usr/bin/env bash
# A store into S3 whose end falls inside a streamed part: the part's request was started for
# part_size bytes before the end was known, so the store abandons it and produces the part
# again with its exact length (engine/store.c invariant 12). Parts of 5 MiB are made to stream
# with SNAPBUNDLE_TEST_S3_STREAM=1 (for tests; parts over 32 MiB stream anyway). The end lands
# inside the first part (the head written again), inside a later part, exactly at a part
# boundary and inside the index; every object equals a local store of the same seeded source
# (awscli downloads it), restores and verifies; plain and encrypted; and a resumed store. A
# store with parts of 40 MiB (streamed because they are over 32 MiB) that ends 36 MiB into its
# third part stays under 256 MiB of peak RSS (bench/bench-s3-huge.sh measures 200 MiB parts of a 1 GB image).
. "$SRCDIR/tests/s3/store-lib.sh"
export SNAPBUNDLE_TEST_S3_STREAM=1
P=$((5 << 20))
echo "huge secret" > pass
ENC=(--passphrase-file pass --scrypt-log-n 10)

# disk FILE KIB [SIZE]: a GPT disk (96M) whose one partition holds KIB KiB of random bytes
# (stored raw: the image grows by exactly the bytes added while the number of frames stays)
disk() {
	rm -f "$1"
	truncate -s "${3:-96M}" "$1"
	printf 'label: gpt\nstart=2048, name=data\n' | sfdisk -q "$1" >/dev/null
	head -c $(($2 << 10)) /dev/urandom | dd of="$1" bs=1M seek=1 conv=notrunc status=none
}

# fit TARGET ARGS...: a disk.img and a description (pad, two bytes of META a character: it is
# also an x-amz-meta value) and tag (tagv, one byte a character) whose local store (local.bin,
# with ARGS) is exactly TARGET bytes
fit() {
	local target=$1 kib=$((($1 >> 10) - 64)) d
	shift
	pad="" tagv=y
	disk disk.img "$kib"
	for _ in $(seq 1 10); do
		"$B" store disk.img -o local.bin "${REPRO[@]}" --force --description "d$pad" \
			--tag "p=$tagv" "$@"
		size=$(stat -c %s local.bin)
		[ "$size" -eq "$target" ] && return 0
		d=$((target - size))
		# a KiB more of random bytes adds 570-1460 bytes to the image (a last 4 KiB block
		# part zeros compresses), so the META pad takes up to 1535 bytes
		if [ "$d" -ge 1536 ] || [ "$d" -lt 0 ]; then
			kib=$((d < 0 ? kib - (1023 - d) / 1024 : kib + d / 1024))
			disk disk.img "$kib"
		else
			pad="$pad$(head -c $((d / 2)) /dev/zero | tr '\0' x)"
			[ $((d % 2)) -eq 0 ] || tagv="$tagv"y
		fi
	done
	fail "no disk stores to $target bytes (last $size)"
}

# check NAME WANT_REPLAY ARGS...: the S3 store of disk.img equals local.bin, restores, verifies;
# WANT_REPLAY 1 when the end must fall inside a started streamed part
check() {
	local name=$1 want=$2
	shift 2
	"$B" store disk.img -o "s3://$bucket/$name.bin" "${REPRO[@]}" --description "d$pad" \
		--tag "p=$tagv" --part-size 5M --debug "$@" >out 2>err || { cat err >&2; fail "store $name"; }
	if grep -q "ends inside a streamed part" err; then
		[ "$want" = 1 ] || fail "$name: a replay where none was due"
	else
		[ "$want" = 0 ] || { cat err >&2; fail "$name: no replay where the end fell inside a started part"; }
	fi
	if grep -q -e "Sanitizer" -e "runtime error" err; then
		cat err >&2
		fail "sanitizer report from $name"
	fi
	rm -f dl.bin r.img
	aws s3 cp --only-show-errors "s3://$bucket/$name.bin" dl.bin
	cmp dl.bin local.bin || fail "$name: the object differs from a local store"
	[ -z "$(uploads "$name.bin")" ] || fail "$name: an upload is left"
	local key=()
	[ $# -eq 0 ] || key=(--passphrase-file pass)
	"$B" restore "s3://$bucket/$name.bin" -o r.img --progress=none "${key[@]}" >/dev/null
	cmp r.img disk.img || fail "$name: the object does not restore the source"
	"$B" verify "s3://$bucket/$name.bin" --progress=none "${key[@]}" | grep -q ": ok," ||
		fail "$name: verify"
	parts=$(aws s3api head-object --bucket "$bucket" --key "$name.bin" --query ETag --output text |
		sed 's/.*-\([0-9]*\)"*$/\1/')
	[ "$parts" -eq $(((size + P - 1) / P)) ] || fail "$name: $parts parts for $size bytes"
	ok "$name: $size bytes in $parts parts, equal to a local store, restores, verifies"
}

# 1. inside the first part, after its request started (4 MiB): the head is written again
fit $((P - (400 << 10)))
check first 1
fit $((P - (400 << 10))) "${ENC[@]}"
check first-enc 1 "${ENC[@]}"

# 2. inside a later part, 700 KiB before its end
fit $((9 * P - (700 << 10)))
check later 1
fit $((9 * P - (700 << 10))) "${ENC[@]}"
check later-enc 1 "${ENC[@]}"

# 3. exactly at a part boundary: the last part ends where its request said
fit $((8 * P))
check boundary 0
fit $((8 * P)) "${ENC[@]}"
check boundary-enc 0 "${ENC[@]}"

# 4. inside the index: the object ends 200 bytes after a boundary, so the data ends before it
# (the index and footer take more) and the last part holds only the tail's end
fit $((7 * P + 200))
ixoff=$(od -An -t u8 -j $((size - 64 + 8)) -N 8 local.bin | tr -d ' ')
[ "$ixoff" -lt $((7 * P)) ] || fail "the index starts at $ixoff, after the boundary"
check index 0

# 5. before the ring filled (under 4 MiB into the last part): the request starts at the end
fit $((6 * P + (1 << 20)))
check short 0

# 6. bounded memory: parts over 32 MiB stream without the test switch; the end falls 36 MiB
# into part 3, whose 36 MiB are produced again; peak RSS (GNU time, KiB) under 256 MiB
unset SNAPBUNDLE_TEST_S3_STREAM
disk disk.img $((116 << 10)) 160M
"$B" store disk.img -o local.bin "${REPRO[@]}" --force
size=$(stat -c %s local.bin)
[ $((size % (40 << 20))) -gt $((5 << 20)) ] || fail "the image ($size bytes) does not end well inside a part"
/usr/bin/time -f %M -o rss "$B" store disk.img -o "s3://$bucket/rss.bin" "${REPRO[@]}" \
	--part-size 40M --debug >out 2>err || { cat err >&2; fail "store rss"; }
grep -q "ends inside a streamed part" err || { cat err >&2; fail "rss: no replay"; }
aws s3 cp --only-show-errors "s3://$bucket/rss.bin" dl.bin
cmp dl.bin local.bin || fail "rss: the object differs from a local store"
rss=$(tail -n 1 rss)
echo "peak RSS ${rss} KiB for $size bytes in parts of 40 MiB"
[ "$rss" -lt $((256 << 10)) ] || fail "peak RSS $rss KiB is over 256 MiB"
ok "rss: $size bytes with a replayed 40 MiB streamed part in $rss KiB of peak RSS"

# 7. a resume whose end falls inside a streamed part: killed once part 1 (of 40 MiB) is
# acknowledged, resumed; the resumed writer streams its parts, and the last one is produced
# again with its length; the object equals the local store
ckdir="$XDG_STATE_HOME/snapbundle"
rm -rf "$ckdir"
"$B" store disk.img -o "s3://$bucket/resumed.bin" "${REPRO[@]}" --part-size 40M --threads 1 \
	>bg.out 2>bg.err &
pid=$!
for _ in $(seq 1 3000); do
	[ "$(cat "$ckdir"/store-*.checkpoint 2>/dev/null | grep -c '^part ' || true)" -ge 1 ] && break
	kill -0 "$pid" 2>/dev/null || { cat bg.err >&2; fail "the store to kill ended early"; }
	sleep 0.02
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
no_object resumed.bin
"$B" store disk.img -o "s3://$bucket/resumed.bin" "${REPRO[@]}" --resume --debug >out 2>err ||
	{ cat err >&2; fail "resume"; }
grep -q "resuming" err || { cat err >&2; fail "resumed.bin: not resumed"; }
grep -q "ends inside a streamed part" err || { cat err >&2; fail "resumed.bin: no replay"; }
rm -f dl.bin
aws s3 cp --only-show-errors "s3://$bucket/resumed.bin" dl.bin
cmp dl.bin local.bin || fail "resumed.bin: the object differs from a local store"
[ -z "$(uploads resumed.bin)" ] || fail "resumed.bin: an upload is left"
ok "resumed.bin: resumed, its last streamed part produced again, equal to a local store"
