# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared helpers of the filesystem free-space tests (tests/fs/test-fs-*.py).

The pattern of every test: make a filesystem with the real tools over an image full of junk,
fill it with a known tree and delete part of it, run one driver through the fs-map harness,
copy the image and overwrite every range the driver called UNUSED (minus what it pinned) with
fresh garbage, then let the filesystem's own checker judge the copy and read every file back.
"""
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def log(*args):
    print(*args, flush=True)


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def skip(msg):
    print("SKIP: " + msg, flush=True)
    sys.exit(SKIP)


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            skip(t + " not installed")


def run(cmd, check=True, env=None, **kw):
    """Runs cmd (a list); returns CompletedProcess with text output."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace", env=e, **kw)
    if check and p.returncode != 0:
        fail("%s exited %d:\n%s" % (" ".join(cmd), p.returncode, p.stdout[-4000:]))
    return p


def fs_map_path():
    b = os.environ.get("BUILDDIR")
    if not b:
        fail("BUILDDIR not set (run through meson test)")
    return os.path.join(b, "tests", "fs", "fs-map")


def fs_map(driver, image):
    p = subprocess.run([fs_map_path(), driver, image], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        fail("fs-map %s %s exited %d: %s" % (driver, image, p.returncode, p.stderr))
    return json.loads(p.stdout)


def tmpdir():
    d = tempfile.mkdtemp(prefix="snap-fs-", dir=os.environ.get("TMPDIR"))
    return d


def junk_fill(path, size, seed):
    """An image of size bytes of pseudo-random junk, as a disk that held old data."""
    rnd = random.Random(seed)
    block = rnd.randbytes(1 << 20)
    with open(path, "wb") as f:
        left = size
        i = 0
        while left:
            n = min(left, len(block))
            # rotate so that no two MiB are the same
            k = (i * 4099) % len(block)
            chunk = (block[k:] + block[:k])[:n]
            f.write(chunk)
            left -= n
            i += 1


def make_tree(root, seed, nfiles=40, max_size=600 * 1024, dirs=("", "a", "a/b", "c")):
    """Random files under root; returns {relpath: sha256}."""
    rnd = random.Random(seed)
    files = {}
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for i in range(nfiles):
        d = dirs[i % len(dirs)]
        rel = os.path.join(d, "f%03d.bin" % i)
        size = rnd.choice([0, 1, 100, 4095, 4096, 4097, 65536, rnd.randrange(1, max_size)])
        data = rnd.randbytes(size)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
        files[rel] = hashlib.sha256(data).hexdigest()
    return files


def hash_tree(root):
    out = {}
    for dp, _, fns in os.walk(root):
        for fn in fns:
            p = os.path.join(dp, fn)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def compare_files(expected, got, what):
    """expected, got: {relpath: sha256}. Every expected file must be in got, identical."""
    missing = sorted(set(expected) - set(got))
    if missing:
        fail("%s: files missing after scrambling: %s" % (what, missing[:10]))
    bad = sorted(k for k in expected if expected[k] != got[k])
    if bad:
        fail("%s: files differ after scrambling: %s" % (what, bad[:10]))
    log("%s: %d files read back identical" % (what, len(expected)))


def subtract(ranges, holes):
    """ranges minus holes; both lists of [off, len] sorted and merged (as fs-map prints)."""
    out = []
    j = 0
    for off, ln in ranges:
        s, e = off, off + ln
        while j < len(holes) and holes[j][0] + holes[j][1] <= s:
            j += 1
        k = j
        while s < e:
            if k < len(holes) and holes[k][0] < e:
                hs, he = holes[k][0], holes[k][0] + holes[k][1]
                if hs > s:
                    out.append([s, hs - s])
                s = max(s, he)
                k += 1
            else:
                out.append([s, e - s])
                s = e
    return out


def scramble(src, dst, m, seed):
    """Copies src to dst, overwrites every UNUSED-and-not-pinned range with garbage and every
    ZERO range with zeros (what a restore writes there). Returns the garbage bytes."""
    shutil.copyfile(src, dst)
    rnd = random.Random(seed)
    block = rnd.randbytes(1 << 20)
    total = 0
    with open(dst, "r+b") as f:
        for off, ln in subtract(m["unused"], m["pinned"]):
            f.seek(off)
            left = ln
            while left:
                n = min(left, len(block))
                k = rnd.randrange(len(block))
                f.write((block[k:] + block[:k])[:n])
                left -= n
            total += ln
        zeros = bytes(1 << 20)
        for off, ln in m.get("zero", []):
            f.seek(off)
            while ln:
                n = min(ln, len(zeros))
                f.write(zeros[:n])
                ln -= n
    return total


def expect_ok(m, what):
    if m["result"] != 0:
        fail("%s: driver refused: %s (%s)" % (what, m["note"], m["error"]))


def expect_refused(m, what, words=()):
    if m["result"] >= 0:
        fail("%s: driver accepted a filesystem it must refuse" % what)
    if not m["note"]:
        fail("%s: refused without a note" % what)
    for w in words:
        if w.lower() not in m["note"].lower():
            fail("%s: note %r does not mention %r" % (what, m["note"], w))
    log("%s: refused as expected: %s" % (what, m["note"]))


def check_kept(m, reference, what, slack=0.05, extra=1 << 20):
    """Bytes kept (not UNUSED) must cover the filesystem's used space and stay within a few
    percent of reference (used space plus metadata, as the test computes it)."""
    kept = m["kept_bytes"]
    log("%s: kept %d bytes, filesystem says used %d, expected used+metadata %d, "
        "unused %d of %d" % (what, kept, m["used_bytes"], reference, m["unused_bytes"],
                              m["size"]))
    if kept + extra < reference * (1 - slack):
        fail("%s: kept %d bytes, less than used space + metadata %d" % (what, kept, reference))
    if kept > reference * (1 + slack) + extra:
        fail("%s: kept %d bytes, more than a few percent over used + metadata %d"
             % (what, kept, reference))


def can_loop_mount():
    return os.geteuid() == 0 and shutil.which("mount") and shutil.which("losetup") and \
        os.path.exists("/dev/loop-control")


def mount_and_hash(image, fstype, opts="ro,loop"):
    """Mounts image read-only and hashes every file; None when mounting is not permitted."""
    if not can_loop_mount():
        log("loop mount not available: skipping the mount read-back")
        return None
    mnt = tempfile.mkdtemp(prefix="snap-mnt-")
    p = subprocess.run(["mount", "-t", fstype, "-o", opts, image, mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        log("mount not permitted (%s): skipping the mount read-back" % p.stdout.strip())
        os.rmdir(mnt)
        return None
    try:
        return hash_tree(mnt)
    finally:
        subprocess.run(["umount", mnt])
        os.rmdir(mnt)


def xfs_protofile(tree, files, path):
    """An mkfs.xfs protofile for the tree (directories a, a/b, c and the files)."""
    dirs = {}
    for rel in files:
        dirs.setdefault(os.path.dirname(rel), []).append(os.path.basename(rel))
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def emit(d, depth):
        for name in sorted(dirs.get(d, [])):
            lines.append(" " * depth + "%s ---644 0 0 %s" % (name, os.path.join(tree, d, name)))
        subs = sorted({k.split("/")[len(d.split("/")) if d else 0]
                       for k in dirs if k and (k.startswith(d + "/") if d else True)})
        for s in subs:
            sub = os.path.join(d, s) if d else s
            lines.append(" " * depth + "%s d--755 0 0" % s)
            emit(sub, depth + 1)
            lines.append(" " * depth + "$")
    emit("", 1)
    lines.append("$")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def xfs_geometry(img):
    out = run(["xfs_db", "-r", "-c", "sb 0", "-c", "p blocksize agblocks dblocks fdblocks",
               img]).stdout
    g = dict(re.findall(r"^(\w+) = (\d+)", out, re.M))
    return {k: int(v) for k, v in g.items()}


def xfs_read_file(img, rel, geo):
    """A file's content through xfs_db: its size and its extent map, read from the image."""
    out = run(["xfs_db", "-r", "-c", "path /" + rel, "-c", "p core.size", "-c", "bmap",
               img]).stdout
    size = int(re.search(r"core\.size = (\d+)", out).group(1))
    data = bytearray(size)
    bs = geo["blocksize"]
    with open(img, "rb") as f:
        for m in re.finditer(r"data offset (\d+) startblock \d+ \((\d+)/(\d+)\) count (\d+) "
                             r"flag (\d)", out):
            off, ag, agbno, count, flag = (int(x) for x in m.groups())
            if flag:  # unwritten extent reads as zeros
                continue
            f.seek((ag * geo["agblocks"] + agbno) * bs)
            chunk = f.read(count * bs)
            lo = off * bs
            if lo < size:
                n = min(len(chunk), size - lo)
                data[lo:lo + n] = chunk[:n]
    return bytes(data)


def ntfs_fuse_mount(img):
    if not shutil.which("ntfs-3g") or not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        return None
    mnt = tempfile.mkdtemp(prefix="snap-mnt-")
    try:
        p = subprocess.run(["ntfs-3g", img, mnt], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        os.rmdir(mnt)
        return None
    if p.returncode != 0:
        log("ntfs-3g mount not permitted: %s" % p.stdout.strip())
        os.rmdir(mnt)
        return None
    return mnt


def ntfs_fuse_umount(mnt):
    run(["umount", mnt])
    os.rmdir(mnt)
