#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""matrix.py - the crash-and-signal matrix: every job (bundle, unbundle, store to a file and to
a pipe, restore from a file and from a pipe) against every fault:

  INT-e/m/l, TERM-e/m/l, KILL-e/m/l   the signal early (first data progress line), in the middle
                                      (>= 40 % done) or late (>= 60 % done, still in the data
                                      stage). The run is stopped (SIGSTOP) at the progress line
                                      that reaches the point, signalled, then continued; it runs
                                      in a cpu cgroup with a small quota, so a ~0.2 s job lasts
                                      seconds and every point is reached, never raced.
  ENOSPC    the output on a 16 MiB tmpfs;  EROFS  the output on a read-only tmpfs
  EFBIG     a short write: at the early point the run's RLIMIT_FSIZE drops to 4 MiB (prlimit,
            SIGXFSZ ignored); for store to a pipe: the reader closes the pipe (EPIPE)
  EIO       source reads fail (crash-eio, the reader's fault hook) for the jobs that read disks

After each run: (1) no temporary (.NAME.tmp-PID) after SIGINT/SIGTERM or a failure; (2) no final
output unless the exit status is 0; (3) an exit-0 output verifies; (4) an output that existed
(--force runs: the middle signal points and the failures) is unchanged when the run failed;
(5) a SIGKILLed run's temporaries are removed by the next run of the same job to the same place
(KILL-m reclaims KILL-e's, KILL-l KILL-m's, a full run KILL-l's); signalled runs exit non-zero;
every run's peak RSS < 256 MiB and wall time < 30 s. Prints the matrix at the end.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

B = os.environ["SNAPBUNDLE"]
EIO_HELPER = sys.argv[1]
MIB = 1 << 20
RSS_LIMIT_KIB = 256 * 1024
WALL_LIMIT = 30.0
TMP_RE = re.compile(r"^\..*\.tmp-(\d+)$")

for tool in ("sfdisk", "mke2fs", "openssl"):
    if not shutil.which(tool):
        print(f"skip: {tool} missing")
        sys.exit(77)

T = tempfile.mkdtemp(prefix="snap-crash.")
os.chdir(T)
failures = []
notes = []
results = {}  # (job, fault) -> "ok" | "FAIL" | "n/a" | "skip"
mounts = []


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(MIB), b""):
            h.update(b)
    return h.hexdigest()


# ---- the source: a 64 MiB GPT disk, partition 1 an ext4 full of varied data ----
def make_disk():
    with open("disk.img", "wb") as f:
        f.truncate(64 * MIB)
    sh("sfdisk", "-q", "disk.img", input=b"label: gpt\nstart=2048, size=120000, name=root\n",
       stdout=subprocess.DEVNULL)
    os.makedirs("root/etc")
    os.makedirs("root/var")
    with open("root/etc/numbers", "w") as f:
        f.write("".join(f"{i}\n" for i in range(1500000)))
    with open("root/var/random.bin", "wb") as f:
        f.write(os.urandom(20 * MIB))
    with open("root/var/zeros", "wb") as f:
        f.write(bytes(4 * MIB))
    for i in range(100):
        with open(f"root/etc/text{i}.txt", "w") as f:
            f.write(os.urandom(40000 + 997 * i).hex())
    sh("mke2fs", "-q", "-F", "-t", "ext4", "-d", "root", "-E", f"offset={2048 * 512}",
       "disk.img", "60000K")
    shutil.rmtree("root")


make_disk()
DISK_SHA = sha("disk.img")
# The EIO fault's source offset: the middle of the largest DATA extent, which every job that
# reads the disk must read (not a fixed offset: the filesystem driver decides what is DATA, and
# a region it marks ZERO, such as a clean ext4's empty journal, is never read).
_ext = json.loads(subprocess.run([B, "inspect", "disk.img", "--json", "--extents"], check=True,
                                 capture_output=True).stdout)["extents"]
_big = max((e for e in _ext if e["kind"] == "data"), key=lambda e: e["length"])
EIO_AT = _big["offset"] + _big["length"] // 2
for name, bits in (("user", 2048), ("ec2", 1024)):
    sh("openssl", "req", "-x509", "-newkey", f"rsa:{bits}", "-nodes", "-keyout", f"{name}.key",
       "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=crash-{name}",
       stderr=subprocess.DEVNULL)
KEYS = ["-c", f"{T}/user.pem", "-k", f"{T}/user.key", "-u", "123456789012", "-r", "x86_64",
        "--ec2cert", f"{T}/ec2.pem", "--batch"]
os.mkdir("ref-bundle")
sh(B, "bundle", "-i", "disk.img", *KEYS, "-d", "ref-bundle", "--threads", "2", "--progress=none",
   stdout=subprocess.DEVNULL)
MANIFEST = f"{T}/ref-bundle/disk.img.manifest.xml"
sh(B, "store", "disk.img", "-o", "ref.bin", "--threads", "2", "--progress=none",
   stdout=subprocess.DEVNULL)

# ---- the cpu cgroup that slows the signalled runs down (v1 cpu controller, or v2 cpu.max) ----
CG = None
for base, quota_file in (("/sys/fs/cgroup/cpu", "cpu.cfs_quota_us"), ("/sys/fs/cgroup", "cpu.max")):
    try:
        if not os.path.exists(os.path.join(base, quota_file if base.endswith("cpu") else
                                           "cgroup.controllers")):
            continue
        d = os.path.join(base, f"snap-crash-{os.getpid()}")
        os.mkdir(d)
        CG = (d, quota_file)
        break
    except OSError:
        continue


def set_quota(percent):
    d, qf = CG
    with open(os.path.join(d, qf), "w") as f:
        f.write(f"{percent * 1000}\n" if qf == "cpu.cfs_quota_us" else f"{percent * 1000} 100000\n")


# ---- the jobs: where the output goes, how to run it, how to check it ----
class Job:
    def __init__(self, name, quota, out_kind, eio):
        self.name, self.quota, self.out_kind, self.eio = name, quota, out_kind, eio

    def output(self, d):
        """The final output in directory d (for bundle: the manifest)."""
        if self.out_kind == "bundle":
            return os.path.join(d, "disk.img.manifest.xml")
        if self.out_kind == "pipe":
            return None
        return os.path.join(d, "out.img" if self.out_kind == "image" else "out.bin")

    def argv(self, d, force):
        f = ["--force"] if force else []
        common = ["--threads", "2", "--progress=json"] + f
        if self.name == "bundle":
            return [B, "bundle", "-i", f"{T}/disk.img", *KEYS, "-d", d] + common
        if self.name == "unbundle":
            return [B, "unbundle", "-m", MANIFEST, "-k", f"{T}/user.key", "-o",
                    self.output(d)] + common
        if self.name == "store":
            return [B, "store", f"{T}/disk.img", "-o", self.output(d)] + common
        if self.name == "store-pipe":
            return [B, "store", f"{T}/disk.img", "-o", "-"] + common
        if self.name == "restore":
            return [B, "restore", f"{T}/ref.bin", "-o", self.output(d)] + common
        if self.name == "restore-pipe":
            return [B, "restore", "-", "-o", self.output(d)] + common
        raise ValueError(self.name)

    def verify(self, d, stream):
        """Checks an exit-0 output; returns an error text or None."""
        if self.out_kind == "bundle":
            r = subprocess.run([B, "verify", "-m", self.output(d), "-k", f"{T}/user.key", "-c",
                                f"{T}/user.pem", "--progress=none"], capture_output=True)
            return None if r.returncode == 0 else "verify -m failed: " + r.stderr.decode()[-300:]
        if self.out_kind in ("bin", "pipe"):
            path = self.output(d) if self.out_kind == "bin" else stream
            r = subprocess.run([B, "verify", path, "--progress=none"], capture_output=True)
            return None if r.returncode == 0 else "verify failed: " + r.stderr.decode()[-300:]
        return None if sha(self.output(d)) == DISK_SHA else "output differs from the source"

    def make_old(self, d):
        """A file (or bundle) at the output path before a --force run; returns its digests."""
        if self.out_kind == "pipe":
            return {}
        if self.out_kind == "bundle":
            # an earlier, different bundle of the same name: one 1 MiB part and its manifest
            os.makedirs(os.path.join(d, ".old"), exist_ok=True)
            src = os.path.join(d, ".old", "disk.img")
            with open(src, "wb") as f:
                f.write(os.urandom(MIB))
            sh(B, "bundle", "-i", src, *KEYS, "-d", d, "--progress=none", "--force",
               stdout=subprocess.DEVNULL)
            shutil.rmtree(os.path.join(d, ".old"))
        else:
            with open(self.output(d), "wb") as f:
                f.write(b"old output, must survive a failed run\n" * 1000)
        return {n: sha(os.path.join(d, n)) for n in os.listdir(d)}


JOBS = [Job("bundle", 12, "bundle", True), Job("unbundle", 5, "image", False),
        Job("store", 10, "bin", True), Job("store-pipe", 10, "pipe", False),
        Job("restore", 6, "image", False), Job("restore-pipe", 4, "image", False)]
POINTS = {"e": 0.0, "m": 0.40, "l": 0.6}
SIGS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "KILL": signal.SIGKILL}
FAULTS = [f"{s}-{p}" for s in SIGS for p in POINTS] + ["ENOSPC", "EROFS", "EFBIG", "EIO"]


def temporaries(d):
    return sorted(n for n in os.listdir(d) if TMP_RE.match(n)) if d and os.path.isdir(d) else []


class Run:
    """One run of a job; trigger(line) says whether the progress line reaches the fault
    point, act(run) then does the fault with the process stopped."""

    def __init__(self, argv, throttle=None, stdin_file=None, stdout_file=None,
                 close_stdout_after=None, fsize_at_point=False):
        self.argv = argv
        self.lines = []
        self.stopped_at = None
        self.stream = stdout_file

        def pre():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            if throttle:
                with open(os.path.join(CG[0], "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))

        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_file else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE if stdout_file else subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, preexec_fn=pre)
        self.threads = []
        if stdin_file:
            self.threads.append(threading.Thread(target=self._feed, args=(stdin_file,)))
        if stdout_file:
            self.threads.append(threading.Thread(target=self._drain,
                                                 args=(stdout_file, close_stdout_after)))
        for t in self.threads:
            t.start()
        self.closed_stdout = threading.Event()

    def _feed(self, path):
        try:
            with open(path, "rb") as f:
                for b in iter(lambda: f.read(MIB), b""):
                    self.p.stdin.write(b)
        except (BrokenPipeError, ValueError, OSError):
            pass
        try:
            self.p.stdin.close()
        except OSError:
            pass

    def _drain(self, path, close_after):
        n = 0
        with open(path, "wb") as f:
            for b in iter(lambda: self.p.stdout.read1(MIB), b""):
                f.write(b)
                n += len(b)
                if close_after is not None and n >= close_after:
                    break
        self.p.stdout.close()

    def run(self, trigger=None, act=None):
        """Reads progress; at the first line trigger accepts: SIGSTOP, act(), SIGCONT. Then waits
        (a run past WALL_LIMIT is a hang: killed and reported). Returns the exit status
        (negative: the signal that ended it)."""
        timer = threading.Timer(WALL_LIMIT + 5, lambda: self.p.kill())
        timer.start()
        for raw in self.p.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if trigger and self.stopped_at is None and line.startswith("{"):
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if trigger(ev):
                    self.stopped_at = ev
                    self.stop_index = len(self.lines) - 1
                    os.kill(self.p.pid, signal.SIGSTOP)
                    act(self)
                    if self.p.returncode is None:
                        try:
                            os.kill(self.p.pid, signal.SIGCONT)
                        except ProcessLookupError:
                            pass
        _, status, ru = os.wait4(self.p.pid, 0)
        self.wall = time.monotonic() - self.t0
        timer.cancel()
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.rss_kib = ru.ru_maxrss
        for t in self.threads:
            t.join()
        return self.p.returncode


def overshot(run):
    """Whether the job reached finish or done after the stop point: with a run that ended
    complete (exit 0, or an output), the signal came after the job's last cancellation point."""
    if run.stopped_at is None:
        return False
    after = run.lines[run.stop_index + 1:]
    for line in after:
        if line.startswith("{"):
            try:
                if json.loads(line).get("stage") in ("finish", "done"):
                    return True
            except ValueError:
                pass
    return False


def point_trigger(frac):
    def trig(ev):
        if ev.get("stage") != "data" or not ev.get("bytes_total"):
            return False
        return ev["bytes_done"] / ev["bytes_total"] >= frac
    return trig


def check(job, fault, d, run, rc, old, kill=False, expect_fail=True):
    """The checks common to every run; returns a list of problems."""
    bad = []
    out = job.output(d)
    tail = " | ".join(l for l in run.lines[-3:])
    if any("Sanitizer" in l or "runtime error" in l for l in run.lines):
        bad.append("sanitizer report: " + tail)
    if run.rss_kib >= RSS_LIMIT_KIB:
        bad.append(f"peak RSS {run.rss_kib} KiB >= 256 MiB")
    if run.wall >= WALL_LIMIT:
        bad.append(f"wall time {run.wall:.1f} s >= {WALL_LIMIT} s (hang?)")
    if expect_fail and rc == 0:
        bad.append("exit status 0, the fault should have failed it")
    if not kill:
        left = temporaries(d)
        if left:
            bad.append(f"temporaries left (exit {rc}): {left}")
    if rc != 0 and out:
        if old:
            now = {n: sha(os.path.join(d, n)) for n in os.listdir(d)
                   if not TMP_RE.match(n)}
            if now != old:
                bad.append(f"existing output changed by a failed run (exit {rc}): "
                           f"before {sorted(old)}, after {sorted(now)}")
        elif os.path.exists(out):
            bad.append(f"output {os.path.basename(out)} exists after exit {rc}")
        if job.out_kind == "bundle" and not old:
            parts = [n for n in os.listdir(d) if ".part." in n and not TMP_RE.match(n)]
            if parts:
                bad.append(f"parts left after exit {rc}: {parts[:3]}")
    if rc == 0:
        err = job.verify(d, run.stream)
        if err:
            bad.append(err)
    return bad


def record(job, fault, bad, info=""):
    results[(job.name, fault)] = "FAIL" if bad else "ok"
    msg = "; ".join(bad) if bad else "ok"
    print(f"{job.name:13} {fault:7} {msg} {info}", flush=True)
    if bad:
        failures.append(f"{job.name} x {fault}: {msg}")


def fresh(name):
    d = os.path.join(T, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def start(job, d, force, throttle=True, slower=0, **kw):
    if job.name == "restore-pipe":
        kw["stdin_file"] = f"{T}/ref.bin"
    if job.out_kind == "pipe":
        kw["stdout_file"] = os.path.join(d, "stream.bin")
    if throttle and CG:
        # each retry of a point the job ran past halves its CPU, so the point lasts longer
        set_quota(max(1, job.quota >> slower))
    return Run(job.argv(d, force), throttle=throttle and CG is not None, **kw)


def stopped_info(run):
    ev = run.stopped_at
    if not ev:
        return "(point never reached)"
    return f"(at {100 * ev['bytes_done'] / ev['bytes_total']:.0f}%, exit {run.p.returncode}, " \
           f"{run.rss_kib // 1024} MiB, {run.wall:.1f} s)"


def signal_cases(job):
    if CG is None:
        for f in FAULTS[:9]:
            results[(job.name, f)] = "skip"
        return
    for sname, sig in SIGS.items():
        d = fresh(f"{job.name}-{sname}")
        debris = []
        for p, frac in POINTS.items():
            fault = f"{sname}-{p}"
            force = p == "m" and sig != signal.SIGKILL
            old = job.make_old(d) if force else {}
            seen = {}

            def act(run, sig=sig):
                # the previous killed run's debris must be gone once this run has started
                seen["left"] = [n for n in debris if os.path.exists(os.path.join(d, n))]
                os.kill(run.p.pid, sig)

            for attempt in range(4):
                run = start(job, d, force, slower=attempt)
                rc = run.run(point_trigger(frac), act)
                if not (overshot(run) and (rc == 0 or os.path.exists(job.output(d)))):
                    break
                # the job printed its point and went on past its last cancellation point
                # before the signal reached it (a loaded machine reads the progress late): a
                # valid, complete end, not this point; the place is emptied, the point retried
                for n in os.listdir(d):
                    os.unlink(os.path.join(d, n))
                debris = []
            bad = []
            if run.stopped_at is None:
                bad.append(f"the {fault} point was never reached (exit {rc}): "
                           + " | ".join(run.lines[-2:]))
            if rc == 0:
                bad.append("exit status 0 after the signal")
            if seen.get("left"):
                bad.append(f"debris of the killed run not reclaimed: {seen['left']}")
            bad += check(job, fault, d, run, rc, old, kill=sig == signal.SIGKILL)
            if sig == signal.SIGKILL:
                debris = temporaries(d)
            elif old:
                for n in os.listdir(d):  # back to an empty place for the next point
                    os.unlink(os.path.join(d, n))
            record(job, fault, bad, stopped_info(run) + (f" debris {debris}" if debris else ""))
        if sig == signal.SIGKILL:
            # a full run to the same place reclaims the last killed run's debris and succeeds
            run = start(job, d, False, throttle=False)
            rc = run.run()
            bad = [f"exit {rc}: " + " | ".join(run.lines[-2:])] if rc else []
            left = [n for n in debris if os.path.exists(os.path.join(d, n))]
            if left:
                bad.append(f"debris of the killed run not reclaimed by a full run: {left}")
            bad += check(job, "KILL-rerun", d, run, rc, {}, expect_fail=False)
            if bad:
                failures.append(f"{job.name} x KILL rerun: " + "; ".join(bad))
                results[(job.name, "KILL-l")] = "FAIL"
            print(f"{job.name:13} rerun   {'; '.join(bad) or 'ok'} (reclaimed {debris})",
                  flush=True)


def mount_tmpfs(name, size="16m"):
    d = os.path.join(T, name)
    os.makedirs(d, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", d],
                       capture_output=True)
    if r.returncode:
        return None
    mounts.append(d)
    return d


def umount(d):
    subprocess.run(["umount", d], capture_output=True)
    mounts.remove(d)


def simple_case(job, fault, d, force=True, **kw):
    old = job.make_old(d) if force else {}
    run = start(job, d, force, throttle=False, **kw)
    return run, old


def fault_cases(job):
    # ENOSPC: the output on a 16 MiB tmpfs (the outputs are 34-47 MiB of data)
    if job.out_kind == "pipe":
        results[(job.name, "ENOSPC")] = results[(job.name, "EROFS")] = "n/a"
    else:
        d = mount_tmpfs(f"{job.name}-enospc")
        if d is None:
            results[(job.name, "ENOSPC")] = results[(job.name, "EROFS")] = "skip"
            notes.append(f"{job.name}: mount -t tmpfs refused: ENOSPC and EROFS skipped")
        else:
            run, old = simple_case(job, "ENOSPC", d)
            rc = run.run()
            bad = check(job, "ENOSPC", d, run, rc, old)
            if rc and not any("No space left" in l for l in run.lines):
                bad.append("no ENOSPC message: " + " | ".join(run.lines[-2:]))
            record(job, "ENOSPC", bad, f"(exit {rc}, {run.rss_kib // 1024} MiB, {run.wall:.1f} s)")
            # EROFS: the same filesystem, an old output on it, remounted read-only
            for n in os.listdir(d):
                p = os.path.join(d, n)
                shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
            old = job.make_old(d)
            if subprocess.run(["mount", "-o", "remount,ro", d], capture_output=True).returncode:
                results[(job.name, "EROFS")] = "skip"
                notes.append(f"{job.name}: remount,ro refused: EROFS skipped")
            else:
                run = start(job, d, True, throttle=False)
                rc = run.run()
                bad = check(job, "EROFS", d, run, rc, old)
                if rc and not any("Read-only" in l for l in run.lines):
                    bad.append("no EROFS message: " + " | ".join(run.lines[-2:]))
                record(job, "EROFS", bad, f"(exit {rc}, {run.rss_kib // 1024} MiB, {run.wall:.1f} s)")
            umount(d)
    # EFBIG: a short write once data flows (store to a pipe: the reader goes away, EPIPE)
    d = fresh(f"{job.name}-efbig")
    if job.out_kind == "pipe":
        run = start(job, d, False, throttle=False, close_stdout_after=4 * MIB)
        rc = run.run()
        bad = check(job, "EFBIG", d, run, rc, {})
        info = "(EPIPE: reader closed after 4 MiB"
    else:
        old = job.make_old(d)

        def act(run):
            subprocess.run(["prlimit", f"--pid={run.p.pid}", f"--fsize={4 * MIB}"], check=True)

        run = start(job, d, True, fsize_at_point=True)
        rc = run.run(point_trigger(0.0), act)
        bad = check(job, "EFBIG", d, run, rc, old)
        if run.stopped_at is None:
            bad.append("the limit was never set (no data progress line)")
        if rc and not any("too large" in l for l in run.lines):
            bad.append("no EFBIG message: " + " | ".join(run.lines[-2:]))
        info = "(fsize 4 MiB at the first data line"
    record(job, "EFBIG", bad, f"{info}, exit {rc}, {run.rss_kib // 1024} MiB, {run.wall:.1f} s)")
    # EIO from the source, for the jobs that read disks
    if not job.eio:
        results[(job.name, "EIO")] = "n/a"
        return
    d = fresh(f"{job.name}-eio")
    old = job.make_old(d)
    if job.name == "bundle":
        argv = [EIO_HELPER, "bundle", f"{T}/disk.img", d, str(EIO_AT), f"{T}/user.pem",
                f"{T}/user.key", f"{T}/ec2.pem", "--force"]
    else:
        argv = [EIO_HELPER, "store", f"{T}/disk.img", job.output(d), str(EIO_AT), "--force"]
    run = Run(argv)
    rc = run.run()
    bad = check(job, "EIO", d, run, rc, old)
    if rc and not any("Input/output error" in l for l in run.lines):
        bad.append("no EIO message: " + " | ".join(run.lines[-2:]))
    record(job, "EIO", bad, f"(exit {rc}: {run.lines[-1][:160] if run.lines else ''})")


t_start = time.monotonic()
try:
    if CG is None:
        notes.append("no writable cpu cgroup: the signal cases were skipped")
    for job in JOBS:
        signal_cases(job)
        fault_cases(job)
finally:
    for d in list(mounts):
        umount(d)
    if CG:
        try:
            os.rmdir(CG[0])
        except OSError:
            pass
    os.chdir("/")
    shutil.rmtree(T, ignore_errors=True)

elapsed = time.monotonic() - t_start
print(f"\nmatrix (job x fault), {elapsed:.0f} s:")
print(f"{'':13}" + "".join(f"{f:>8}" for f in FAULTS))
for job in JOBS:
    print(f"{job.name:13}" + "".join(f"{results.get((job.name, f), '?'):>8}" for f in FAULTS))
for n in notes:
    print("note:", n)
if failures:
    print("\nFAILURES:")
    for f in failures:
        print(" ", f)
    sys.exit(1)
