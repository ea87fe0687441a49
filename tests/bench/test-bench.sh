#!/usr/bin/env bash
# `snapbundle bench`: runs quick on a generated 64 MiB disk, its JSON is complete and its SVG
# well-formed (check-bench.py); the generated disk is a valid GPT disk to sfdisk; the table
# output names every stage and job; user errors are refused with a message; the work directory
# is removed. Speed is never asserted.
set -euo pipefail
: "${SNAPBUNDLE:?}" "${SRCDIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$SNAPBUNDLE" bench --quick --size 64M --threads 1,2 --json --svg "$tmp/chart.svg" \
	--workdir "$tmp" >"$tmp/report.json" 2>"$tmp/stderr" || { cat "$tmp/stderr"; exit 1; }
python3 "$SRCDIR/tests/bench/check-bench.py" "$tmp/report.json" "$tmp/chart.svg" $((64 << 20))
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/report.json"
if ls -d "$tmp"/snapbundle-bench.* 2>/dev/null; then
	echo "the work directory was left behind"; exit 1
fi

# the generated disk, judged by sfdisk
"$SNAPBUNDLE" bench --generate-only "$tmp/disk.img" --size 64M
[ "$(stat -c %s "$tmp/disk.img")" -eq $((64 << 20)) ] || { echo "wrong disk size"; exit 1; }
sfdisk --verify "$tmp/disk.img" >"$tmp/verify" 2>&1 || { cat "$tmp/verify"; exit 1; }
sfdisk --json "$tmp/disk.img" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
assert t["label"] == "gpt", t["label"]
names = [p.get("name") for p in t["partitions"]]
assert names == ["EFI System", "root", "data"], names
'
# deterministic: the same size gives the same bytes
"$SNAPBUNDLE" bench --generate-only "$tmp/disk2.img" --size 64M
cmp <(dd if="$tmp/disk.img" bs=1M skip=1 status=none) \
	<(dd if="$tmp/disk2.img" bs=1M skip=1 status=none)
# --uniform: another valid GPT disk, other content
"$SNAPBUNDLE" bench --generate-only "$tmp/uniform.img" --size 64M --uniform
sfdisk --verify "$tmp/uniform.img" >"$tmp/verify" 2>&1 || { cat "$tmp/verify"; exit 1; }
if cmp -s "$tmp/disk.img" "$tmp/uniform.img"; then echo "--uniform changed nothing"; exit 1; fi
rm -f "$tmp/uniform.img" "$tmp/disk2.img"
# sparse: holes were left unwritten
[ "$(stat -c %b "$tmp/disk.img")" -lt $((64 << 11)) ] || { echo "the disk is not sparse"; exit 1; }

# table output on a given SOURCE
"$SNAPBUNDLE" bench "$tmp/disk.img" --quick --threads 1 --jobs bundle,store --workdir "$tmp" \
	>"$tmp/table" 2>&1
for w in stages sha1 deflate-l3 aes256gcm-dec write bundle unbundle store restore; do
	grep -q -- "$w" "$tmp/table" || { cat "$tmp/table"; echo "table lacks $w"; exit 1; }
done
grep -q "restore   not run: not selected (--jobs)" "$tmp/table" ||
	{ cat "$tmp/table"; echo "an unselected job is not reported as such"; exit 1; }

# refusals
if "$SNAPBUNDLE" bench --quick --size 64M --svg "$tmp/chart.svg" --workdir "$tmp" \
	>/dev/null 2>"$tmp/err"; then
	echo "an existing SVG was overwritten without --force"; exit 1
fi
grep -q "already exists" "$tmp/err"
if "$SNAPBUNDLE" bench --threads 0 >/dev/null 2>"$tmp/err"; then
	echo "--threads 0 accepted"; exit 1
fi
grep -q "invalid thread list" "$tmp/err"
if "$SNAPBUNDLE" bench --jobs bundle,nonsense >/dev/null 2>"$tmp/err"; then
	echo "--jobs nonsense accepted"; exit 1
fi
grep -q "invalid job list" "$tmp/err"
if "$SNAPBUNDLE" bench --size 1M >/dev/null 2>"$tmp/err"; then
	echo "--size 1M accepted"; exit 1
fi
if "$SNAPBUNDLE" bench "$tmp/no-such-file" --quick --workdir "$tmp" >/dev/null 2>"$tmp/err"; then
	echo "a missing source was accepted"; exit 1
fi
grep -q "cannot open" "$tmp/err"
echo ok
