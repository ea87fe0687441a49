#!/usr/bin/env python3
"""The command's own lists against the man pages and the shell completion.

    surface.py man         docs/man/snapbundle-COMMAND.1.scd for every command of
                           `snapbundle --help`, whose OPTIONS entries are exactly the options of
                           `snapbundle COMMAND --help` (built pages too, when scdoc built them)
    surface.py completion  tools/completion/snapbundle.bash and _snapbundle list every command
                           and exactly those options; bash completes them (and zsh parses its
                           file, when zsh is installed)

A command's options are those its --help defines on an option line (`  -o, --output FILE`) or
names in its usage lines; -h/--help, which every command takes, is left out. verify has a second
help for store images (`verify IMAGE.bin --help`), read as well.
"""
import os
import re
import shutil
import subprocess
import sys

SNAPBUNDLE = os.environ["SNAPBUNDLE"]
SRCDIR = os.environ["SRCDIR"]
BUILDDIR = os.environ["BUILDDIR"]
EXTRA_HELP = {"verify": [["verify", "x.bin", "--help"]]}
OPT = r"--?[A-Za-z0-9][a-z0-9-]*"
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def run(args):
    p = subprocess.run([SNAPBUNDLE] + args, capture_output=True, text=True)
    return p.stdout + p.stderr


def commands():
    top = run(["--help"])
    cmds = re.findall(r"^  ([a-z][a-z-]*)  +\S", top, re.M)
    if len(cmds) < 10:
        sys.exit("FAIL: only %d commands parsed from snapbundle --help" % len(cmds))
    return cmds


def help_options(cmd):
    opts = set()
    for args in [[cmd, "--help"]] + EXTRA_HELP.get(cmd, []):
        text = run(args)
        for line in text.split("\n"):
            if re.match(r"^(usage: |\s+)snapbundle ", line):
                opts.update(re.findall(r"(?<![\w-])(" + OPT + r")", line))
                continue
            m = re.match(r"^\s{1,8}((?:-[A-Za-z0-9], )?" + OPT + ")", line)
            if m:
                opts.update(m.group(1).split(", "))
    return opts - {"-h", "--help"}


def page_options(path):
    opts = set()
    with open(path) as f:
        for line in f:
            if line.startswith("*-"):
                opts.update(re.findall(r"\*(" + OPT + r")\*", line))
    return opts - {"-h", "--help"}


def compare(what, cmd, want, have):
    if want - have:
        fail("%s %s: missing %s" % (what, cmd, " ".join(sorted(want - have))))
    if have - want:
        fail("%s %s: not in --help: %s" % (what, cmd, " ".join(sorted(have - want))))


def check_man(cmds):
    built = os.path.isdir(os.path.join(BUILDDIR, "docs", "man")) and shutil.which("scdoc")
    for cmd in cmds:
        page = os.path.join(SRCDIR, "docs", "man", "snapbundle-%s.1.scd" % cmd)
        if not os.path.exists(page):
            fail("no man page for %s (%s)" % (cmd, page))
            continue
        compare("man page", cmd, help_options(cmd), page_options(page))
        if built and not os.path.exists(os.path.join(BUILDDIR, "docs", "man",
                                                     "snapbundle-%s.1" % cmd)):
            fail("man page of %s not built" % cmd)
    top = open(os.path.join(SRCDIR, "docs", "man", "snapbundle.1.scd")).read()
    for cmd in cmds:
        if "*snapbundle-%s*(1)" % cmd not in top:
            fail("snapbundle(1) does not list %s" % cmd)
    for code in ["0", "1", "2", "3", "130", "143"]:
        if not re.search(r"^\|\s+%s$" % code, top, re.M):
            fail("snapbundle(1): exit code %s not in the table" % code)


def completion_lists(path):
    """The per-command option lists of a completion file: `CMD) opts=... ;;` lines."""
    text = open(path).read()
    lists = {}
    for cmd, body in re.findall(r"^\s*([a-z][a-z-]*)\)\s*opts=[\"(]([^\")]*)[\")]", text, re.M):
        lists[cmd] = set(body.split())
    m = re.search(r'commands="([^"]*)"', text)  # bash: commands="a b"; zsh: 'a:what it does'
    names = set(m.group(1).split()) if m else set(re.findall(r"^\s*'([a-z][a-z-]*):", text, re.M))
    return text, lists, names


def check_completion(cmds):
    comp = os.path.join(SRCDIR, "tools", "completion")
    for name in ["snapbundle.bash", "_snapbundle"]:
        text, lists, names = completion_lists(os.path.join(comp, name))
        for cmd in cmds:
            if cmd not in names:
                fail("%s: command %s missing" % (name, cmd))
            if cmd not in lists:
                fail("%s: no option list for %s" % (name, cmd))
                continue
            compare(name, cmd, help_options(cmd), lists[cmd])
        for cmd in set(lists) - set(cmds):
            fail("%s: %s is not a command" % (name, cmd))
    # bash itself completes a command's options and the commands
    bash = os.path.join(comp, "snapbundle.bash")
    script = (
        'source "%s"; '
        'COMP_WORDS=(snapbundle store --out); COMP_CWORD=2; _snapbundle; echo "A ${COMPREPLY[*]}"; '
        'COMP_WORDS=(snapbundle upl); COMP_CWORD=1; _snapbundle; echo "B ${COMPREPLY[*]}"; '
        'COMP_WORDS=(snapbundle store --progress ""); COMP_CWORD=3; _snapbundle; '
        'echo "C ${COMPREPLY[*]}"' % bash)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    got = dict(line.split(" ", 1) for line in out.stdout.strip().split("\n") if " " in line)
    if got.get("A") != "--output":
        fail("bash: 'store --out' completes to %r, not --output (%s)" % (got.get("A"), out.stderr))
    if got.get("B") != "upload-bundle":
        fail("bash: 'upl' completes to %r, not upload-bundle" % got.get("B"))
    if sorted((got.get("C") or "").split()) != ["bar", "json", "none"]:
        fail("bash: '--progress ' completes to %r, not bar json none" % got.get("C"))
    if shutil.which("zsh"):
        r = subprocess.run(["zsh", "-n", os.path.join(comp, "_snapbundle")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail("zsh -n _snapbundle: " + r.stderr.strip())


def main():
    mode = sys.argv[1]
    cmds = commands()
    {"man": check_man, "completion": check_completion}[mode](cmds)
    if failures:
        return 1
    print("ok: %d commands, %s matches every --help" % (len(cmds), mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
