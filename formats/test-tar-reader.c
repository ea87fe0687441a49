// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-tar-reader.c - the tar reader against archives written by the outside judges: GNU tar
 * (old-GNU sparse with extension headers and base-256 numbers, PAX sparse 0.0, 0.1, 1.0, ustar,
 * long names), bsdtar (PAX sparse 1.0, ustar) and Python's tarfile (links, directories, '..'
 * names, several members). Each archive is pushed in chunks of several sizes (1 byte up to the
 * whole archive) and what the reader yields is compared with the source file, holes included.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tar-reader.h"
#include "test-util.h"

static char dir[] = "/tmp/snap-test-tar-XXXXXX";
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int r = system(cmd);
	return r == 0 ? 0 : -1;
}

static uint8_t *slurp(const char *path, size_t *ret_len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	fstat(fd, &st);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (b && got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*ret_len = got;
	return b;
}

struct check {
	int src;	  /* the source file, to compare runs with */
	uint64_t size;	  /* from the member callback */
	uint64_t next;	  /* end of the last run: runs must increase */
	uint64_t covered; /* bytes in runs */
	int members;
	int bad;
	uint64_t zero_gap_bytes; /* bytes of gaps checked to read as zeros in the source */
};

/* Bytes of the source in [a, b) must read as zeros (holes or written zeros). */
static int source_zero(int fd, uint64_t a, uint64_t b)
{
	static uint8_t buf[65536];
	while (a < b) {
		off_t d = lseek(fd, (off_t)a, SEEK_DATA);
		if (d < 0 || (uint64_t)d >= b)
			return 0;
		off_t h = lseek(fd, d, SEEK_HOLE);
		uint64_t e = (uint64_t)h < b ? (uint64_t)h : b;
		for (uint64_t o = (uint64_t)d; o < e;) {
			size_t n = e - o > sizeof(buf) ? sizeof(buf) : (size_t)(e - o);
			if (pread(fd, buf, n, (off_t)o) != (ssize_t)n)
				return -1;
			for (size_t i = 0; i < n; i++)
				if (buf[i])
					return -1;
			o += n;
		}
		a = e;
	}
	return 0;
}

static int on_member(void *ud, const char *name, uint64_t size)
{
	struct check *c = ud;
	(void)name;
	c->members++;
	c->size = size;
	return 0;
}

static int on_data(void *ud, uint64_t off, const uint8_t *buf, size_t len)
{
	struct check *c = ud;
	static uint8_t want[1 << 20];
	if (off < c->next || off + len > c->size) {
		c->bad++;
		return 0;
	}
	if (source_zero(c->src, c->next, off) < 0)
		c->bad++;
	for (size_t done = 0; done < len;) {
		size_t n = len - done > sizeof(want) ? sizeof(want) : len - done;
		if (pread(c->src, want, n, (off_t)(off + done)) != (ssize_t)n ||
		    memcmp(want, buf + done, n))
			c->bad++;
		done += n;
	}
	c->next = off + len;
	c->covered += len;
	return 0;
}

/* Reads tar with pushes of chunk bytes; returns the reader's result, error text in err. */
static int read_tar(const uint8_t *tar, size_t len, size_t chunk, const char *source,
		    struct check *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->src = source ? open(source, O_RDONLY) : -1;
	struct snap_tar_ops ops = {.member = on_member, .data = on_data};
	struct snap_tar_reader *tr;
	if (snap_tar_reader_new(&ops, c, &tr) < 0)
		return -ENOMEM;
	int r = 0;
	for (size_t o = 0; o < len && r >= 0; o += chunk)
		r = snap_tar_reader_push(tr, tar + o, len - o < chunk ? len - o : chunk);
	if (r >= 0)
		r = snap_tar_reader_finish(tr);
	if (r >= 0 && c->src >= 0 && source_zero(c->src, c->next, c->size) < 0)
		c->bad++;
	snprintf(err, errlen, "%s", snap_tar_reader_error(tr));
	snap_tar_reader_free(tr);
	if (c->src >= 0)
		close(c->src);
	return r;
}

static void expect_ok(const char *label, const char *tarfile, const char *source,
		      uint64_t want_size)
{
	char path[512];
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, tarfile);
	uint8_t *tar = slurp(path, &len);
	CHECK(tar && len, "%s: cannot read %s", label, path);
	if (!tar)
		return;
	const size_t chunks[] = {1, 7, 511, 512, 513, 4096, 65536 + 3, len};
	snprintf(path, sizeof(path), "%s/%s", dir, source);
	for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		/* byte-at-a-time pushes of multi-MiB archives only for small ones */
		if (chunks[k] < 512 && len > (1u << 20))
			continue;
		struct check c;
		char err[400];
		int r = read_tar(tar, len, chunks[k], path, &c, err, sizeof(err));
		CHECK(r == 0, "%s (chunk %zu): %d %s", label, chunks[k], r, err);
		CHECK(c.members == 1, "%s: %d member callbacks", label, c.members);
		CHECK(c.size == want_size, "%s: size %llu, want %llu", label,
		      (unsigned long long)c.size, (unsigned long long)want_size);
		CHECK(c.bad == 0, "%s (chunk %zu): %d mismatches against the source", label,
		      chunks[k], c.bad);
	}
	free(tar);
}

static void expect_fail(const char *label, const char *tarfile, int want_err, const char *want_text)
{
	char path[512];
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, tarfile);
	uint8_t *tar = slurp(path, &len);
	CHECK(tar, "%s: cannot read %s", label, path);
	if (!tar)
		return;
	const size_t chunks[] = {1, 512, len ? len : 1};
	for (size_t k = 0; k < 3; k++) {
		struct check c;
		char err[400];
		int r = read_tar(tar, len, chunks[k], NULL, &c, err, sizeof(err));
		CHECK(r == want_err, "%s: got %d (%s), want %d", label, r, err, want_err);
		CHECK(strstr(err, want_text), "%s: error '%s' lacks '%s'", label, err, want_text);
	}
	free(tar);
}

static void write_file(const char *name, const uint8_t *b, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, b, len) != (ssize_t)len)
		CHECK(0, "cannot write %s", path);
	if (fd >= 0)
		close(fd);
}

static void set_checksum(uint8_t *h)
{
	memset(h + 148, ' ', 8);
	unsigned s = 0;
	for (int i = 0; i < 512; i++)
		s += h[i];
	snprintf((char *)h + 148, 8, "%06o", s);
}

/* A hostile old-GNU sparse member: a header storing `stored` bytes, then up to nblocks
 * extension blocks of 21 entries each (length 1, offsets step apart: step 0 overlaps), pushed
 * one at a time. Returns how many blocks the reader took before it refused, and its error. */
static size_t hostile_map(uint64_t stored, uint64_t step, size_t nblocks, const char **ret_err)
{
	struct snap_tar_reader *tr = NULL;
	struct snap_tar_ops ops = {0};
	REQUIRE(snap_tar_reader_new(&ops, NULL, &tr) == 0);
	uint8_t h[512] = {0};
	strcpy((char *)h, "x");
	memcpy(h + 100, "0000644", 8);
	snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)stored);
	h[156] = 'S';
	memcpy(h + 257, "ustar  ", 8);
	snprintf((char *)h + 483, 12, "%011llo", 0777777777ull);
	h[482] = 1;
	set_checksum(h);
	uint64_t off = 0;
	size_t taken = 0;
	*ret_err = NULL;
	if (snap_tar_reader_push(tr, h, 512) < 0) {
		*ret_err = snap_tar_reader_error(tr);
		return 0;
	}
	for (; taken < nblocks; taken++) {
		uint8_t b[512] = {0};
		for (int i = 0; i < 21; i++, off += step) {
			snprintf((char *)b + 24 * i, 12, "%011llo", (unsigned long long)off);
			snprintf((char *)b + 24 * i + 12, 12, "%011llo", 1ull);
		}
		b[504] = taken + 1 < nblocks;
		if (snap_tar_reader_push(tr, b, 512) < 0) {
			static char err[256];
			snprintf(err, sizeof(err), "%s", snap_tar_reader_error(tr));
			*ret_err = err;
			break;
		}
	}
	snap_tar_reader_free(tr);
	return taken;
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	if (sh("command -v tar >/dev/null && command -v python3 >/dev/null") < 0)
		return 77;
	/* a sparse source with 30 data regions (old-GNU needs several extension blocks), an
	 * unaligned tail, and explicit zeros; a plain one; a 9 GiB sparse one (base-256) */
	if (sh("cd %s && python3 - <<'EOF'\n"
	       "import os\n"
	       "f = os.open('sparse.img', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n"
	       "os.ftruncate(f, 3 * 1024 * 1024 + 123)\n"
	       "for i in range(30):\n"
	       "    os.pwrite(f, bytes([(i * 7 + j) %% 251 + 1 for j in range(700)]), i * 98304 + "
	       "1000)\n"
	       "os.pwrite(f, bytes(8192), 2 * 1024 * 1024 + 8192)\n"
	       "os.pwrite(f, b'tail', 3 * 1024 * 1024 + 119)\n"
	       "os.close(f)\n"
	       "f = os.open('big.img', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n"
	       "os.ftruncate(f, 9 * 1024 ** 3)\n"
	       "os.pwrite(f, b'start', 0)\n"
	       "os.pwrite(f, b'end', 9 * 1024 ** 3 - 3)\n"
	       "os.close(f)\n"
	       "open('plain.img', 'wb').write(os.urandom(70001))\n"
	       "os.symlink('plain.img', 'link')\n"
	       "os.mkdir('d')\n"
	       "EOF",
	       dir) < 0) {
		fprintf(stderr, "cannot make the sources\n");
		return 1;
	}
	const uint64_t ssize = 3 * 1024 * 1024 + 123, big = 9ull * 1024 * 1024 * 1024;
	char longname[200];
	memset(longname, 'n', 150);
	strcpy(longname + 150, ".img");

	/* GNU tar: the reference pipeline's own format, then the PAX sparse versions */
	CHECK(sh("cd %s && tar -c -S --owner 0 --group 0 sparse.img > gnu-sparse.tar", dir) == 0,
	      "tar");
	expect_ok("old-GNU sparse", "gnu-sparse.tar", "sparse.img", ssize);
	CHECK(sh("cd %s && tar -c -S --format=gnu big.img > gnu-big.tar", dir) == 0, "tar");
	expect_ok("old-GNU sparse base-256", "gnu-big.tar", "big.img", big);
	const char *vers[] = {"0.0", "0.1", "1.0"};
	for (int i = 0; i < 3; i++) {
		char name[64], label[64];
		snprintf(name, sizeof(name), "pax-%s.tar", vers[i]);
		snprintf(label, sizeof(label), "PAX sparse %s", vers[i]);
		CHECK(sh("cd %s && tar -c -S --format=pax --sparse-version=%s sparse.img > %s", dir,
			 vers[i], name) == 0,
		      "tar");
		expect_ok(label, name, "sparse.img", ssize);
		snprintf(name, sizeof(name), "pax-big-%s.tar", vers[i]);
		CHECK(sh("cd %s && tar -c -S --format=pax --sparse-version=%s big.img > %s", dir,
			 vers[i], name) == 0,
		      "tar");
		expect_ok(label, name, "big.img", big);
	}
	CHECK(sh("cd %s && tar -c --format=ustar plain.img > ustar.tar", dir) == 0, "tar");
	expect_ok("ustar", "ustar.tar", "plain.img", 70001);
	CHECK(sh("cd %s && tar -c --format=gnu sparse.img > gnu-plain.tar", dir) == 0, "tar");
	expect_ok("GNU non-sparse", "gnu-plain.tar", "sparse.img", ssize);
	CHECK(sh("cd %s && cp plain.img %s && tar -c --format=gnu %s > gnu-long.tar", dir, longname,
		 longname) == 0,
	      "tar");
	expect_ok("GNU long name", "gnu-long.tar", "plain.img", 70001);
	CHECK(sh("cd %s && tar -c --format=pax %s > pax-long.tar", dir, longname) == 0, "tar");
	expect_ok("PAX long name", "pax-long.tar", "plain.img", 70001);
	CHECK(sh("cd %s && tar -c --format=pax plain.img > pax-plain.tar", dir) == 0, "tar");
	expect_ok("PAX plain", "pax-plain.tar", "plain.img", 70001);
	if (sh("command -v bsdtar >/dev/null") == 0) {
		CHECK(
		    sh("cd %s && bsdtar -c --format=pax --read-sparse -f bsd-sparse.tar sparse.img",
		       dir) == 0,
		    "bsdtar");
		expect_ok("bsdtar PAX sparse", "bsd-sparse.tar", "sparse.img", ssize);
		CHECK(sh("cd %s && bsdtar -c --format=ustar -f bsd-ustar.tar plain.img", dir) == 0,
		      "bsdtar");
		expect_ok("bsdtar ustar", "bsd-ustar.tar", "plain.img", 70001);
	}
	/* Python's tarfile: GNU format with base-256 uid/gid, the way it writes big numbers */
	CHECK(sh("cd %s && python3 -c \"import tarfile\n"
		 "t = tarfile.open('py-gnu.tar', 'w', format=tarfile.GNU_FORMAT)\n"
		 "i = t.gettarinfo('plain.img'); i.uid = 10 ** 10; i.gid = 10 ** 10\n"
		 "t.addfile(i, open('plain.img', 'rb')); t.close()\"",
		 dir) == 0,
	      "python");
	expect_ok("tarfile GNU base-256", "py-gnu.tar", "plain.img", 70001);

	/* base-256 in the size field itself (GNU tar writes it above 8 GiB) */
	{
		size_t len;
		char p[512];
		snprintf(p, sizeof(p), "%s/ustar.tar", dir);
		uint8_t *t = slurp(p, &len);
		if (t) {
			memset(t + 124, 0, 12);
			t[124] = 0x80;
			uint64_t v = 70001;
			for (int i = 0; i < 8; i++)
				t[135 - i] = (uint8_t)(v >> (8 * i));
			set_checksum(t);
			write_file("b256-size.tar", t, len);
			free(t);
			expect_ok("base-256 size", "b256-size.tar", "plain.img", 70001);
			CHECK(sh("cd %s && tar -tvf b256-size.tar | grep -q 70001", dir) == 0,
			      "GNU tar disagrees about the base-256 size");
		}
	}

	/* refusals */
	CHECK(sh("cd %s && python3 -c \"import tarfile, io\n"
		 "def mk(name, members):\n"
		 "    t = tarfile.open(name, 'w', format=tarfile.GNU_FORMAT)\n"
		 "    for m, data in members:\n"
		 "        t.addfile(m, io.BytesIO(data) if data is not None else None)\n"
		 "    t.close()\n"
		 "def reg(n, d=b'x' * 1000):\n"
		 "    i = tarfile.TarInfo(n); i.size = len(d); return (i, d)\n"
		 "def typ(n, ty, link=''):\n"
		 "    i = tarfile.TarInfo(n); i.type = ty; i.linkname = link; return (i, None)\n"
		 "mk('dotdot.tar', [reg('../x')])\n"
		 "mk('dotdot2.tar', [reg('a/../../x')])\n"
		 "mk('abs.tar', [reg('/etc/x')])\n"
		 "mk('two.tar', [reg('a'), reg('b')])\n"
		 "mk('sym.tar', [typ('s', tarfile.SYMTYPE, 'plain.img')])\n"
		 "mk('hard.tar', [typ('h', tarfile.LNKTYPE, 'plain.img')])\n"
		 "mk('dir.tar', [typ('d', tarfile.DIRTYPE)])\n"
		 "mk('fifo.tar', [typ('f', tarfile.FIFOTYPE)])\n"
		 "mk('chr.tar', [typ('c', tarfile.CHRTYPE)])\n"
		 "mk('blk.tar', [typ('b', tarfile.BLKTYPE)])\n"
		 "mk('empty.tar', [])\n"
		 "mk('longdotdot.tar', [reg('../' + 'y' * 200)])\n"
		 "t = tarfile.open('paxdotdot.tar', 'w', format=tarfile.PAX_FORMAT)\n"
		 "i = tarfile.TarInfo('ok'); i.size = 3; i.pax_headers = {'path': '../evil'}\n"
		 "t.addfile(i, io.BytesIO(b'abc')); t.close()\n"
		 "\"",
		 dir) == 0,
	      "python");
	expect_fail("../x", "dotdot.tar", -EPERM, "'..' component");
	expect_fail("a/../../x", "dotdot2.tar", -EPERM, "'..' component");
	expect_fail("long ../", "longdotdot.tar", -EPERM, "'..' component");
	expect_fail("PAX ../", "paxdotdot.tar", -EPERM, "'..' component");
	expect_fail("absolute", "abs.tar", -EPERM, "absolute path");
	expect_fail("two members", "two.tar", -EOPNOTSUPP, "more than one member");
	expect_fail("symlink", "sym.tar", -EOPNOTSUPP, "symbolic link");
	expect_fail("hard link", "hard.tar", -EOPNOTSUPP, "hard link");
	expect_fail("directory", "dir.tar", -EOPNOTSUPP, "directory");
	expect_fail("fifo", "fifo.tar", -EOPNOTSUPP, "FIFO");
	expect_fail("chardev", "chr.tar", -EOPNOTSUPP, "character device");
	expect_fail("blockdev", "blk.tar", -EOPNOTSUPP, "block device");
	expect_fail("no member", "empty.tar", -EUCLEAN, "no member");
	CHECK(sh("cd %s && tar -cf real-link.tar link", dir) == 0, "tar");
	expect_fail("GNU tar symlink", "real-link.tar", -EOPNOTSUPP, "symbolic link");

	/* damage: flipped header byte, truncations at every interesting place, trailing data */
	{
		size_t len;
		char p[512];
		snprintf(p, sizeof(p), "%s/gnu-sparse.tar", dir);
		uint8_t *t = slurp(p, &len);
		if (t) {
			t[10] ^= 1;
			write_file("badsum.tar", t, len);
			t[10] ^= 1;
			write_file("trunc-hdr.tar", t, 300);
			write_file("trunc-ext.tar", t, 700);
			write_file("trunc-data.tar", t, 5000);
			uint8_t *more = calloc(1, len + 512);
			memcpy(more, t, len);
			more[len + 100] = 1;
			write_file("trailing.tar", more, len + 512);
			free(more);
			free(t);
		}
	}
	expect_fail("flipped header byte", "badsum.tar", -EBADMSG, "checksum mismatch");
	expect_fail("truncated header", "trunc-hdr.tar", -EUCLEAN, "truncated");
	expect_fail("truncated extension", "trunc-ext.tar", -EUCLEAN, "truncated");
	expect_fail("truncated data", "trunc-data.tar", -EUCLEAN, "truncated");
	expect_fail("trailing data", "trailing.tar", -EOPNOTSUPP, "after the end-of-archive");
	{
		/* header and data complete, end-of-archive blocks missing */
		size_t len;
		char p[512];
		snprintf(p, sizeof(p), "%s/ustar.tar", dir);
		uint8_t *t = slurp(p, &len);
		if (t) {
			write_file("no-eof.tar", t, 512 + (70001 + 511) / 512 * 512);
			write_file("one-eof.tar", t, 512 + (70001 + 511) / 512 * 512 + 512);
			free(t);
		}
	}
	expect_fail("no end-of-archive", "no-eof.tar", -EUCLEAN, "end-of-archive blocks missing");
	expect_fail("one zero block", "one-eof.tar", -EUCLEAN, "end-of-archive blocks missing");

	sh("rm -rf %s", dir);
	/* a hostile sparse map is refused as its entries arrive, not after all of them are held:
	 * more entries than stored bytes, and overlapping entries, each within the first block */
	const char *err;
	size_t taken = hostile_map(10, 2, 20000, &err);
	CHECK(taken == 0 && err && strstr(err, "more entries than its member stores bytes"),
	      " (a 10-byte member with 420000 map entries: %zu blocks taken, %s)", taken,
	      err ? err : "no error");
	taken = hostile_map(1u << 30, 0, 20000, &err);
	CHECK(taken == 0 && err && strstr(err, "overlaps the one before"),
	      " (overlapping entries: %zu blocks taken, %s)", taken, err ? err : "no error");
	if (test_failures) {
		fprintf(stderr, "%d test_failures\n", test_failures);
		return 1;
	}
	printf("tar reader: all archives read as GNU tar, bsdtar and tarfile wrote them\n");
	return 0;
}
