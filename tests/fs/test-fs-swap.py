#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Linux swap: everything after the header page is UNUSED, the header page pinned; after the
rest is overwritten with garbage, blkid still finds the same swap area (UUID, label) and
swaplabel reads it. A hibernation image (signature replaced) and an old-style area are
refused."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjudge as J  # noqa: E402

J.need("mkswap", "blkid")
MiB = 1 << 20
UUID = "2a6cc5b4-1f0a-4c43-9d1c-3a8f1e0b7c55"


def probe(img):
    out = J.run(["blkid", "-p", "-o", "export", img], check=False).stdout
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


def main():
    work = J.tmpdir()
    try:
        for page in (4096, 65536):
            size = 16 * MiB
            img = os.path.join(work, "swap%d.img" % page)
            J.junk_fill(img, size, seed=page)
            J.run(["mkswap", "-p", str(page), "-L", "snapswap", "-U", UUID, img])
            before = probe(img)
            if before.get("TYPE") != "swap":
                J.fail("blkid does not see the swap area: %s" % before)
            m = J.fs_map("swap", img)
            J.expect_ok(m, "swap page %d" % page)
            if m["pinned"] != [[0, page]] or m["unused"] != [[page, size - page]]:
                J.fail("swap page %d: pinned %s unused %s" % (page, m["pinned"], m["unused"]))
            J.check_kept(m, page, "swap page %d" % page)
            copy = os.path.join(work, "scrambled.img")
            J.scramble(img, copy, m, seed=3)
            after = probe(copy)
            for k in ("TYPE", "UUID", "LABEL", "VERSION"):
                if before.get(k) != after.get(k):
                    J.fail("swap page %d: blkid %s %r became %r"
                           % (page, k, before.get(k), after.get(k)))
            if shutil.which("swaplabel"):
                out = J.run(["swaplabel", copy]).stdout
                if UUID not in out or "snapswap" not in out:
                    J.fail("swaplabel on the scrambled copy: %s" % out)
            J.log("swap page %d: header intact after scrambling %d bytes" % (page, size - page))

        img = os.path.join(work, "swap4096.img")
        for sig in (b"S1SUSPEND\0", b"ULSUSPEND\0", b"LINHIB0001"):
            hib = os.path.join(work, "hib.img")
            shutil.copyfile(img, hib)
            with open(hib, "r+b") as f:
                f.seek(4096 - 10)
                f.write(sig)
            J.expect_refused(J.fs_map("swap", hib), "hibernation %s" % sig, ["hibernation"])
        old = os.path.join(work, "old.img")
        shutil.copyfile(img, old)
        with open(old, "r+b") as f:
            f.seek(4096 - 10)
            f.write(b"SWAP-SPACE")
        J.expect_refused(J.fs_map("swap", old), "version 0", ["version-0"])
        # an area claiming more pages than its partition has
        short = os.path.join(work, "short.img")
        shutil.copyfile(img, short)
        os.truncate(short, 8 * MiB)
        J.expect_refused(J.fs_map("swap", short), "truncated", ["does not fit"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    J.log("ok")


if __name__ == "__main__":
    main()
