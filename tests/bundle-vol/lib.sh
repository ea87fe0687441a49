# lib.sh - shared by the bundle-vol tests: a loop-mounted ext4 volume holding a small system
# tree and planted secrets, the bundle keys, and the tree comparison (Python's os.stat,
# os.listxattr and SEEK_DATA/SEEK_HOLE as the judges). Sourced, not run.
set -euo pipefail
export LC_ALL=C

: "${SNAPBUNDLE:?run through meson test (SNAPBUNDLE unset)}"
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "skip: $*"; exit 77; }
need() { for p; do command -v "$p" >/dev/null || skip "$p missing"; done; }
need openssl python3 rsync mkfs.ext4 e2fsck losetup mount umount setfattr sfdisk
[ "$(id -u)" -eq 0 ] || skip "needs root (loop devices, mount)"
[ -e /dev/loop-control ] || skip "no loop devices"

T=$(mktemp -d "${TMPDIR:-/tmp}/snapbundle-bv.XXXXXX")
LOOPS=()
MOUNTS=()
cleanup() {
	local m l
	for m in "${MOUNTS[@]}"; do
		fsfreeze -u "$m" 2>/dev/null || true
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
	rm -rf "$T"
}
trap cleanup EXIT

# mount_image IMG DIR [ro]: loop-attach IMG and mount it at DIR; skips when the kernel cannot.
mount_image() {
	local l
	l=$(losetup -f --show ${3:+-r} "$1" 2>/dev/null) || skip "cannot attach a loop device"
	LOOPS+=("$l")
	mkdir -p "$2"
	mount ${3:+-o ro} "$l" "$2" 2>/dev/null || skip "cannot mount a loop device"
	MOUNTS+=("$2")
	LOOP=$l
}

# make_volume SIZE_MB: $T/vol, an ext4 volume (label, UUID) holding a small system tree.
make_volume() {
	truncate -s "${1}M" "$T/vol.img"
	mkfs.ext4 -q -F -L bvroot -U 6f1c2a3b-4d5e-4f60-8a9b-0c1d2e3f4a5b "$T/vol.img"
	mount_image "$T/vol.img" "$T/vol"
	VOLDEV=$LOOP
	local v=$T/vol
	mkdir -p "$v"/{etc,bin,usr/lib,var/log,home/alice/.ssh,root/.ssh,srv/data,tmp,opt/app}
	chmod 1777 "$v/tmp"
	printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n' \
		>"$v/etc/passwd"
	echo "bvhost" >"$v/etc/hostname"
	head -c 300000 /dev/urandom >"$v/bin/tool"
	chmod 4755 "$v/bin/tool"
	ln -s ../bin/tool "$v/usr/lib/tool-link"
	head -c 70000 /dev/urandom >"$v/usr/lib/libx.so.1"
	ln "$v/usr/lib/libx.so.1" "$v/usr/lib/libx-hard.so.1" # a hard link
	echo "log line" >"$v/var/log/messages"
	chown 1000:1000 "$v/home/alice" "$v/var/log/messages"
	chmod 640 "$v/var/log/messages"
	echo "notes" >"$v/home/alice/notes.txt"
	chown 1000:1000 "$v/home/alice/notes.txt"
	setfattr -n user.color -v blue "$v/home/alice/notes.txt"
	setfattr -n trusted.kind -v t1 "$v/etc/hostname"
	# a sparse file: data, a 1 MiB hole, data, a trailing hole
	python3 - "$v/srv/data/sparse.bin" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.pwrite(fd, os.urandom(8192), 0)
os.pwrite(fd, os.urandom(4096), (1 << 20) + 8192)
os.ftruncate(fd, 3 << 20)
os.close(fd)
PY
	head -c 200000 /dev/urandom >"$v/srv/data/blob"
	head -c 100000 /dev/urandom >"$v/opt/app/app.bin"
	echo "keep me" >"$v/opt/app/README"
	mkfifo "$v/srv/data/fifo"
	# the planted secrets: each matches the sensitive-file filter
	echo "PRIVATE KEY" >"$v/home/alice/.ssh/id_rsa"
	echo "ssh-rsa AAAA alice" >"$v/home/alice/.ssh/id_rsa.pub"
	echo "ssh-rsa AAAA root" >"$v/root/.ssh/authorized_keys"
	echo "-----BEGIN CERTIFICATE-----" >"$v/etc/server.pem"
	echo "ls -la" >"$v/root/.bash_history"
	echo "ls" >"$v/home/alice/.bash_history"
	head -c 40960 /dev/urandom >"$v/home/alice/.notes.txt.swp" # an editor's swap file
	echo "backup" >"$v/etc/hostname~"
	echo "known_hosts" >"$v/home/alice/.ssh/known_hosts" # not filtered
	SECRETS=(home/alice/.ssh/id_rsa home/alice/.ssh/id_rsa.pub root/.ssh/authorized_keys
		etc/server.pem root/.bash_history home/alice/.bash_history
		home/alice/.notes.txt.swp etc/hostname~)
	sync
}

make_keys() {
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/user.key" -out "$T/user.pem" \
		-days 2 -subj /CN=snapbundle-test-user 2>/dev/null
	openssl req -x509 -newkey rsa:1024 -nodes -keyout "$T/ec2.key" -out "$T/ec2.pem" \
		-days 2 -subj /CN=snapbundle-test-ec2 2>/dev/null
}

# bundle_vol DEST [options]: the standard invocation of the tests, of the volume $T/vol.
bundle_vol() {
	local dest="$1"
	shift
	"$SNAPBUNDLE" bundle-vol -v "$T/vol" -c "$T/user.pem" -k "$T/user.key" -u 1234-5678-9012 \
		-r x86_64 --ec2cert "$T/ec2.pem" -d "$dest" --batch --progress=none "$@"
}

# compare_trees SRC DST MISSING...: every path of SRC but the MISSING ones (relative) is in
# DST with the same type, content, owner, mode, xattrs, link target, hard links and holes,
# and the MISSING ones are absent; DST holds nothing else (lost+found aside).
compare_trees() {
	python3 - "$@" <<'PY'
import os, stat, sys, hashlib
src, dst, missing = sys.argv[1], sys.argv[2], set(sys.argv[3:])
errors = []
def walk(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = p
    return out
def holes(path, size):
    fd = os.open(path, os.O_RDONLY)
    m, off = [], 0
    try:
        while off < size:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            m.append((d // 4096, (h + 4095) // 4096))
            off = h
    finally:
        os.close(fd)
    return m
def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()
def xattrs(path):
    return {k: os.getxattr(path, k, follow_symlinks=False)
            for k in sorted(os.listxattr(path, follow_symlinks=False))}
a, b = walk(src), walk(dst)
for m in missing:
    if m not in a:
        errors.append('planted %s is not in the source' % m)
    if m in b:
        errors.append('%s should be left out but is in the image' % m)
ino_a, ino_b = {}, {}
for rel, p in sorted(a.items()):
    if rel == 'lost+found' or rel.startswith('lost+found/') or rel in missing:
        continue
    if any(rel.startswith(m + '/') for m in missing):
        continue
    if rel not in b:
        errors.append('%s is missing from the image' % rel)
        continue
    q = b[rel]
    sa, sb = os.lstat(p), os.lstat(q)
    for f in ('st_mode', 'st_uid', 'st_gid', 'st_nlink'):
        if getattr(sa, f) != getattr(sb, f):
            errors.append('%s: %s %o != %o' % (rel, f, getattr(sa, f), getattr(sb, f)))
    if xattrs(p) != xattrs(q):
        errors.append('%s: xattrs %r != %r' % (rel, xattrs(p), xattrs(q)))
    if stat.S_ISLNK(sa.st_mode):
        if os.readlink(p) != os.readlink(q):
            errors.append('%s: link target differs' % rel)
    elif stat.S_ISREG(sa.st_mode):
        if sa.st_size != sb.st_size or digest(p) != digest(q):
            errors.append('%s: content differs' % rel)
        elif holes(p, sa.st_size) != holes(q, sb.st_size):
            errors.append('%s: holes %r != %r' % (rel, holes(p, sa.st_size), holes(q, sb.st_size)))
        if sa.st_nlink > 1:
            ino_a.setdefault(sa.st_ino, set()).add(rel)
            ino_b.setdefault(sb.st_ino, set()).add(rel)
if sorted(map(sorted, ino_a.values())) != sorted(map(sorted, ino_b.values())):
    errors.append('hard links differ: %r vs %r' % (ino_a, ino_b))
for rel in b:
    if rel not in a and not rel.startswith('lost+found'):
        errors.append('%s is in the image but not in the source' % rel)
if errors:
    sys.exit('\n'.join(errors))
PY
}
