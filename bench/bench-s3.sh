#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench-s3.sh SOURCE [ROUNDS] [THREADS]: snapbundle's S3 jobs against the way users do it today,
# a local job followed (or preceded) by the AWS CLI, end to end, in interleaved rounds on one
# machine, against one S3 service (default 3 rounds, every CPU):
#   store   `snapbundle store SOURCE -o s3://B/P/`        vs  local store + `aws s3 cp`
#   restore `snapbundle restore s3://B/K.bin -o IMG`       vs  `aws s3 cp` + local restore
#   bundle  `snapbundle bundle -i SOURCE -d s3://B/P/`     vs  local bundle + `aws s3 cp --recursive`
#   unbundle `snapbundle unbundle -m s3://B/P/M.xml`       vs  `aws s3 cp --recursive` + local unbundle
# and each S3 job against the same job writing locally (what the service costs), the bytes a
# one-partition restore fetches against that partition's stored size, and every job's peak
# RSS. Prints a Markdown table of medians. Never passes or fails on a timing.
#
# The service: SNAP_TEST_S3_ENDPOINT with SNAP_TEST_S3_ACCESS_KEY, _SECRET_KEY and _REGION when
# set (tests/s3/rgw.sh writes them), else a gateway this script starts with tests/s3/rgw.sh on
# port 7489 (monitor 6799) and stops at the end. The AWS CLI is Debian's /usr/bin/aws.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${SNAPBUNDLE:-$here/../build/tools/snapbundle}
src=${1:?usage: bench-s3.sh SOURCE [ROUNDS] [THREADS]}
rounds=${2:-3}
threads=${3:-$(nproc)}
AWS=/usr/bin/aws
[ -x "$AWS" ] || { echo "bench-s3.sh: $AWS is missing (apt-get install awscli)" >&2; exit 77; }
T=$(mktemp -d "${BENCH_TMP:-$(dirname "$(realpath "$src")")}/bench-s3.XXXXXX")
rgw=
cleanup() {
	[ -z "$rgw" ] || "$here/../tests/s3/rgw.sh" stop "$rgw" >/dev/null 2>&1 || true
	rm -rf "$T"
}
trap cleanup EXIT
if [ -z "${SNAP_TEST_S3_ENDPOINT:-}" ]; then
	rgw="$T/rgw"
	SNAP_TEST_RGW_MON_PORT=6799 SNAP_TEST_RGW_MEM_MIB=${SNAP_TEST_RGW_MEM_MIB:-6144} \
		"$here/../tests/s3/rgw.sh" start "$rgw" 7489 >&2
	set -a; . "$rgw/env"; set +a
fi
# Both clients find the service and the keys the same way: the environment.
export AWS_ACCESS_KEY_ID="$SNAP_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SNAP_TEST_S3_SECRET_KEY"
export AWS_DEFAULT_REGION="$SNAP_TEST_S3_REGION" AWS_REGION="$SNAP_TEST_S3_REGION"
export AWS_ENDPOINT_URL="$SNAP_TEST_S3_ENDPOINT" AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
export AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none"
unset AWS_PROFILE AWS_SESSION_TOKEN
python3 - "$B" "$src" "$rounds" "$threads" "$T" "$AWS" "$SNAP_TEST_S3_ENDPOINT" <<'PY'
import json, os, re, shutil, statistics, subprocess, sys, time

B, src, rounds, threads, T, AWS, endpoint = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
bucket = f"bench-s3-{os.getpid()}"
aws = [AWS, "--endpoint-url", endpoint]

def run(cmd, capture=False):
    """Runs cmd; returns (wall s, peak RSS bytes of that process, its stdout+stderr)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench-s3.sh: failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}\n"
                 + out.decode(errors="replace")[-2000:])
    return wall, ru.ru_maxrss * 1024, out.decode(errors="replace")

def rm_prefix(prefix):
    subprocess.run(aws + ["s3", "rm", "--recursive", "--quiet", f"s3://{bucket}/{prefix}"],
                   check=True)

subprocess.run(aws + ["s3api", "create-bucket", "--bucket", bucket], check=True,
               stdout=subprocess.DEVNULL)
keys = f"{T}/k.pem"
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keys,
                "-out", f"{T}/c.pem", "-days", "1", "-subj", "/CN=bench-s3"], check=True,
               capture_output=True)
t = ["--threads", str(threads), "--progress=none"]
bundle_args = ["-c", f"{T}/c.pem", "-k", keys, "-u", "123456789012", "-r", "x86_64",
               "--ec2cert", f"{T}/c.pem", "--level", "1", "--batch"] + t
IMG_ID = "ami-0123456789abcdef0"

def s3_side():
    """The S3 jobs, each straight to or from the bucket."""
    r = {}
    r["store"] = run([B, "store", src, "-o", f"s3://{bucket}/s3/", "--image-id", IMG_ID,
                      "--level", "1"] + t)
    r["restore"] = run([B, "restore", f"s3://{bucket}/s3/{IMG_ID}.bin", "-o", f"{T}/r.img"] + t)
    os.unlink(f"{T}/r.img")
    r["bundle"] = run([B, "bundle", "-i", src, "-d", f"s3://{bucket}/s3b/"] + bundle_args)
    name = os.path.basename(src)
    r["unbundle"] = run([B, "unbundle", "-m", f"s3://{bucket}/s3b/{name}.manifest.xml", "-k",
                         keys, "-o", f"{T}/u.img"] + t)
    os.unlink(f"{T}/u.img")
    rm_prefix("s3/")
    rm_prefix("s3b/")
    return r

def local_side():
    """The same jobs on local files, and the AWS CLI moving the files; returns both the
    local jobs alone and the end-to-end pairs."""
    loc, e2e = {}, {}
    loc["store"] = run([B, "store", src, "-o", f"{T}/s.bin", "--image-id", IMG_ID,
                        "--level", "1"] + t)
    up = run(aws + ["s3", "cp", "--quiet", f"{T}/s.bin", f"s3://{bucket}/cp/{IMG_ID}.bin"])
    e2e["store"] = (loc["store"][0] + up[0], max(loc["store"][1], up[1]))
    os.unlink(f"{T}/s.bin")
    down = run(aws + ["s3", "cp", "--quiet", f"s3://{bucket}/cp/{IMG_ID}.bin", f"{T}/d.bin"])
    loc["restore"] = run([B, "restore", f"{T}/d.bin", "-o", f"{T}/r.img"] + t)
    e2e["restore"] = (down[0] + loc["restore"][0], max(down[1], loc["restore"][1]))
    for f in ("d.bin", "r.img"):
        os.unlink(f"{T}/{f}")
    os.makedirs(f"{T}/b")
    loc["bundle"] = run([B, "bundle", "-i", src, "-d", f"{T}/b"] + bundle_args)
    up = run(aws + ["s3", "cp", "--quiet", "--recursive", f"{T}/b", f"s3://{bucket}/cpb/"])
    e2e["bundle"] = (loc["bundle"][0] + up[0], max(loc["bundle"][1], up[1]))
    shutil.rmtree(f"{T}/b")
    down = run(aws + ["s3", "cp", "--quiet", "--recursive", f"s3://{bucket}/cpb/", f"{T}/d"])
    name = os.path.basename(src)
    loc["unbundle"] = run([B, "unbundle", "-m", f"{T}/d/{name}.manifest.xml", "-k", keys, "-o",
                           f"{T}/u.img"] + t)
    e2e["unbundle"] = (down[0] + loc["unbundle"][0], max(down[1], loc["unbundle"][1]))
    shutil.rmtree(f"{T}/d")
    os.unlink(f"{T}/u.img")
    rm_prefix("cp/")
    rm_prefix("cpb/")
    return loc, e2e

JOBS = ("store", "restore", "bundle", "unbundle")
res = {k: {"s3": [], "local": [], "e2e": []} for k in JOBS}
for r in range(rounds):
    sides = ("s3", "local") if r % 2 == 0 else ("local", "s3")
    for side in sides:
        if side == "s3":
            for k, v in s3_side().items():
                res[k]["s3"].append(v[:2])
        else:
            loc, e2e = local_side()
            for k in JOBS:
                res[k]["local"].append(loc[k][:2])
                res[k]["e2e"].append(e2e[k])
    print(f"round {r + 1} of {rounds} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr)

# A one-partition restore: bytes fetched against the partition's frames as stored (their
# records: payload plus the 112-byte frame record head, as `inspect IMAGE.bin --frames` lists).
run([B, "store", src, "-o", f"s3://{bucket}/p/{IMG_ID}.bin", "--image-id", IMG_ID,
     "--level", "1"] + t)
run([B, "store", src, "-o", f"{T}/p.bin", "--image-id", IMG_ID, "--level", "1"] + t)
disk = json.loads(run([B, "inspect", src, "--json"])[2])
parts = [p for p in disk.get("partitions") or [] if not p.get("container")]
part_line = ""
if parts:
    big = max(parts, key=lambda p: p["size"])
    lo, hi = big["start"], big["start"] + big["size"]
    need = 0
    for line in run([B, "inspect", f"{T}/p.bin", "--frames"])[2].splitlines():
        m = re.match(r"frame \d+: at \d+ volume \d+ offset (\d+) raw (\d+) stored (\d+)", line)
        if m:
            off, raw, stored = map(int, m.groups())
            if off + raw > lo and off < hi:
                need += stored + 112
    size = os.path.getsize(f"{T}/p.bin")
    out = run([B, "restore", f"s3://{bucket}/p/{IMG_ID}.bin", "--partition",
               str(big["number"]), "-o", f"{T}/p.img"] + t)[2]
    got = int(re.search(r"downloaded (\d+) bytes", out).group(1))
    os.unlink(f"{T}/p.img")
    part_line = (f"one-partition restore (partition {big['number']}, {big['size']} bytes): "
                 f"fetched {got} bytes; its frames are {need} bytes stored "
                 f"({got / max(need, 1):.3f}x); the whole image is {size} bytes")
os.unlink(f"{T}/p.bin")
rm_prefix("p/")
subprocess.run(aws + ["s3", "rb", f"s3://{bucket}", "--force"], check=True,
               stdout=subprocess.DEVNULL)

med = lambda xs, i: statistics.median(x[i] for x in xs)
print(f"source {src}, {threads} threads, S3 service {endpoint}, medians of {rounds} "
      "interleaved rounds\n")
print("| job | snapbundle to/from S3 s | local job + aws s3 cp s | speed-up | local job alone s "
      "| S3 cost | peak RSS S3 MiB | peak RSS local MiB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for k in JOBS:
    s3, e2e, loc = res[k]["s3"], res[k]["e2e"], res[k]["local"]
    print(f"| {k} | {med(s3, 0):.2f} | {med(e2e, 0):.2f} | {med(e2e, 0) / med(s3, 0):.2f}x "
          f"| {med(loc, 0):.2f} | {med(s3, 0) / med(loc, 0):.2f}x "
          f"| {max(x[1] for x in s3) / 2**20:.0f} | {max(x[1] for x in loc) / 2**20:.0f} |")
if part_line:
    print("\n" + part_line)
PY
