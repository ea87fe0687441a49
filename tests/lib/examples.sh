#!/bin/bash
# The examples/ programs on a small GPT image (sfdisk, the outside judge of the layout): inspect
# lists the partitions sfdisk made, store-progress stores with progress and is cancelled with no
# output left, restore-partition gives back exactly partition 2's bytes (cmp against dd).
set -euo pipefail
command -v sfdisk >/dev/null || { echo "sfdisk missing"; exit 77; }
ex=$BUILDDIR/examples
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT

truncate -s 24M "$t/src.img"
printf 'label: gpt\n,8M\n,8M\n' | sfdisk -q "$t/src.img" >/dev/null
start2=$(sfdisk -J "$t/src.img" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"]; print(p[1]["start"])')
dd if=/dev/urandom of="$t/src.img" bs=512 seek=$((start2 + 100)) count=6000 conv=notrunc status=none
dd if=/dev/urandom of="$t/src.img" bs=512 seek=4096 count=100 conv=notrunc status=none

"$ex/example-inspect" "$t/src.img" >"$t/inspect.out"
grep -q '^disk: 25165824 bytes, gpt$' "$t/inspect.out"
[ "$(grep -c '^  partition ' "$t/inspect.out")" -eq 2 ]
grep -q "^  partition 2: start $((start2 * 512)) size 8388608 " "$t/inspect.out"

# cancelled at 1%: exit 3, no output and no temporary left
set +e; "$ex/example-store-progress" "$t/src.img" "$t/img.bin" 1 >"$t/cancel.out"; rc=$?; set -e
[ $rc -eq 3 ] || { echo "FAIL: cancelled store exited $rc"; cat "$t/cancel.out"; exit 1; }
grep -q '^cancelled$' "$t/cancel.out"
[ -z "$(ls -A "$t" | grep -v -e '^src.img$' -e '\.out$')" ] || { echo "FAIL: left behind:"; ls -A "$t"; exit 1; }

"$ex/example-store-progress" "$t/src.img" "$t/img.bin" >"$t/store.out"
grep -q '^stored: ' "$t/store.out"
[ "$(grep -c '^stage ' "$t/store.out")" -ge 3 ]
"$SNAPBUNDLE" verify "$t/img.bin" >/dev/null

"$ex/example-inspect" "$t/img.bin" >"$t/inspect-bin.out"
grep -q '^store image: 1 volumes' "$t/inspect-bin.out"
grep -q "^  partition 2: start $((start2 * 512)) size 8388608$" "$t/inspect-bin.out"

"$ex/example-restore-partition" "$t/img.bin" 2 "$t/p2.img" | grep -c '^restored partition 2: ' >/dev/null
dd if="$t/src.img" of="$t/p2.want" bs=512 skip="$start2" count=16384 status=none
cmp "$t/p2.img" "$t/p2.want"
echo "ok: inspect, store with progress and cancellation, restore of partition 2"
