#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# limit.sh SOURCE [ROUNDS] [THREADS]: each job's wall time against a bound that outside tools
# measure on the same bytes, on this machine, in interleaved rounds (default 3 rounds, every
# CPU). The bound of a job is the larger of:
#  - CPU: the user CPU seconds of the work the format requires, done by outside tools, divided
#    by THREADS (never less than the longest serial chain):
#      store:   igzip -1 of the DATA bytes (one piece per thread, in parallel), then
#               openssl dgst -sha256 of the compressed pieces;
#      restore: igzip -d of those pieces, and the same sha256;
#      bundle:  igzip -1, openssl dgst -sha1 of the data, openssl enc -aes-128-cbc of the
#               compressed stream and sha1 of the ciphertext; the serial chain is the larger
#               of the data's sha1 and the cipher plus its sha1;
#  - device: dd with O_DIRECT and 4 MiB blocks, reading and writing the bytes the job must
#    move on the filesystem of its output (store: read DATA, write the compressed size;
#    restore: read the compressed size, write DATA; bundle: as store).
# DATA is what `snapbundle inspect --extents` calls data: what every job must read. The jobs
# run as users run them (snapbundle store/restore/bundle, --threads THREADS, level 1 like the
# bound; outputs under BENCH_TMP, default the SOURCE's directory). Prints a Markdown table of
# medians: bound (and which), job wall, % of the bound. Needs igzip (Debian's isal) and openssl.
# Never passes or fails on a timing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${SNAPBUNDLE:-$here/../build/tools/snapbundle}
src=${1:?usage: limit.sh SOURCE [ROUNDS] [THREADS]}
rounds=${2:-3}
threads=${3:-$(nproc)}
for t in igzip openssl dd python3; do
	command -v "$t" >/dev/null || { echo "limit.sh: $t is missing (apt-get install isal)" >&2; exit 77; }
done
T=$(mktemp -d "${BENCH_TMP:-$(dirname "$(realpath "$src")")}/limit.XXXXXX")
trap 'rm -rf "$T"' EXIT
python3 - "$B" "$src" "$rounds" "$threads" "$T" <<'PY'
import json, os, resource, shutil, statistics, subprocess, sys, time

B, src, rounds, threads, T = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def run(cmd, **kw):
    """Runs cmd; returns (wall s, user+sys CPU s of it and its children)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, **kw)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)

def user_cpu(cmds):
    """Runs the shell commands in parallel; returns their summed user CPU seconds."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ps = [subprocess.Popen(c, shell=True) for c in cmds]
    for p in ps:
        if p.wait() != 0:
            sys.exit(f"limit.sh: failed: {p.args}")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r1.ru_utime - r0.ru_utime

# the DATA bytes, split into one piece per thread
inspect = json.loads(subprocess.run([B, "inspect", src, "--json", "--extents"], check=True,
                                    capture_output=True).stdout)
data = [(e["offset"], e["length"]) for e in inspect["extents"] if e["kind"] == "data"]
total = sum(n for _, n in data)
pieces = [open(f"{T}/data.{i}", "wb") for i in range(threads)]
per = (total + threads - 1) // threads
done = 0
with open(src, "rb") as f:
    for off, n in data:
        f.seek(off)
        while n:
            k = min(n, 4 << 20, per - done % per)
            pieces[min(done // per, threads - 1)].write(f.read(k))
            done += k
            n -= k
for p in pieces:
    p.close()
P = [f"{T}/data.{i}" for i in range(threads)]
subprocess.run(f"cat {' '.join(P)} > {T}/data", shell=True, check=True)

def dd(inp, out, nbytes, direct_in, direct_out):
    count = (nbytes + (4 << 20) - 1) // (4 << 20)
    flags = (["iflag=direct"] if direct_in else []) + (["oflag=direct"] if direct_out else [])
    return run(["dd", f"if={inp}", f"of={out}", "bs=4M", f"count={count}", "status=none"] + flags)[0]

def bounds():
    gz = user_cpu([f"igzip -1 -c -T 1 {p} > {p}.gz" for p in P])
    comp = sum(os.path.getsize(p + ".gz") for p in P)
    sha256 = user_cpu([f"cat {' '.join(p + '.gz' for p in P)} | openssl dgst -sha256 > /dev/null"])
    gunzip = user_cpu([f"igzip -d -c {p}.gz > /dev/null" for p in P])
    sha1 = user_cpu([f"openssl dgst -sha1 {T}/data > /dev/null"])
    aes = user_cpu([f"cat {' '.join(p + '.gz' for p in P)} | openssl enc -aes-128-cbc "
                    f"-K 000102030405060708090a0b0c0d0e0f -iv 000102030405060708090a0b0c0d0e0f "
                    f"-out {T}/enc"])
    encsha1 = user_cpu([f"openssl dgst -sha1 {T}/enc > /dev/null"])
    rd = dd(f"{T}/data", "/dev/null", total, True, False)
    wr = dd("/dev/zero", f"{T}/w", comp, False, True)
    rdc = dd(f"{T}/enc", "/dev/null", comp, True, False)
    wrd = dd("/dev/zero", f"{T}/w", total, False, True)
    os.unlink(f"{T}/w")
    return {
        "store": {"cpu": (gz + sha256) / threads, "device": rd + wr},
        "restore": {"cpu": (gunzip + sha256) / threads, "device": rdc + wrd},
        "bundle": {"cpu": max((gz + sha1 + aes + encsha1) / threads, sha1, aes + encsha1),
                   "device": rd + wr},
    }

def jobs():
    keys = f"{T}/k.pem"
    if not os.path.exists(keys):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        keys, "-out", f"{T}/c.pem", "-days", "1", "-subj", "/CN=limit"],
                       check=True, capture_output=True)
    t = ["--threads", str(threads), "--progress=none"]
    out = {}
    out["store"] = run([B, "store", src, "-o", f"{T}/s.bin", "--level", "1"] + t,
                       stdout=subprocess.DEVNULL)[0]
    out["restore"] = run([B, "restore", f"{T}/s.bin", "-o", f"{T}/r.img"] + t,
                         stdout=subprocess.DEVNULL)[0]
    os.makedirs(f"{T}/b")
    out["bundle"] = run([B, "bundle", "-i", src, "-c", f"{T}/c.pem", "-k", keys, "-u",
                         "123456789012", "-r", "x86_64", "--ec2cert", f"{T}/c.pem", "-d",
                         f"{T}/b", "--level", "1", "--batch"] + t, stdout=subprocess.DEVNULL)[0]
    for f in (f"{T}/s.bin", f"{T}/r.img"):
        os.unlink(f)
    shutil.rmtree(f"{T}/b")
    return out

rows = {k: {"cpu": [], "device": [], "wall": []} for k in ("store", "restore", "bundle")}
for r in range(rounds):
    order = (bounds, jobs) if r % 2 == 0 else (jobs, bounds)
    for f in order:
        res = f()
        for k, v in res.items():
            if isinstance(v, dict):
                rows[k]["cpu"].append(v["cpu"])
                rows[k]["device"].append(v["device"])
            else:
                rows[k]["wall"].append(v)
    print(f"round {r + 1} of {rounds} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr)

print(f"source {src}: {total} bytes of DATA, {threads} threads, medians of {rounds} "
      f"interleaved rounds\n")
print("| job | wall | CPU bound | device bound | bound | of the bound |")
print("|---|---:|---:|---:|---:|---:|")
for k, v in rows.items():
    w, c, d = (statistics.median(v[x]) for x in ("wall", "cpu", "device"))
    b = max(c, d)
    print(f"| {k} | {w:.2f} s | {c:.2f} s | {d:.2f} s | {b:.2f} s ({'CPU' if c >= d else 'device'}) "
          f"| {100 * b / w:.0f} % |")
PY
