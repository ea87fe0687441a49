// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-sparse-tar.c - the tar writer against outside judges: our stream for a real sparse file
 * must be byte-identical to what GNU tar 1.34 writes for it (-S, --format=gnu), and GNU tar,
 * bsdtar and Python's tarfile must extract it to the same bytes. Covers regular members,
 * sparse members with 4, > 4 and > 25 map entries (one and two extension blocks), offsets past
 * 8 GiB (base-256), long names and the number encoder's boundaries.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include "sparse-tar.h"
#include "test-util.h"

static void test_numbers(void)
{
	uint8_t f[12];
	snap_tar_number(f, 12, 0);
	REQUIRE(!memcmp(f, "00000000000", 12));
	snap_tar_number(f, 12, 077777777777ull);
	REQUIRE(!memcmp(f, "77777777777", 12));
	snap_tar_number(f, 12, 077777777777ull + 1);
	REQUIRE(f[0] == 0x80);
	uint64_t v = 0;
	for (int i = 1; i < 12; i++)
		v = v << 8 | f[i];
	REQUIRE(v == 8589934592ull);
	snap_tar_number(f, 12, UINT64_MAX);
	REQUIRE(f[0] == 0x80 && f[1] == 0 && f[2] == 0 && f[3] == 0 && f[4] == 0xff && f[11] == 0xff);
	uint8_t m[8];
	snap_tar_number(m, 8, 07777777);
	REQUIRE(!memcmp(m, "7777777", 8));
	snap_tar_number(m, 8, 010000000);
	REQUIRE(m[0] == 0x80 && m[5] == 0x20 && m[6] == 0 && m[7] == 0);
}

static void test_trailer(void)
{
	REQUIRE(snap_tar_trailer_size(512) == 10240 - 512);
	REQUIRE(snap_tar_trailer_size(10240 - 1024) == 1024);
	REQUIRE(snap_tar_trailer_size(10240 - 1023) == 1023 + 10240); /* pad 511, then no room */
	REQUIRE(snap_tar_trailer_size(10240) == 10240);
	REQUIRE((snap_tar_trailer_size(12345) + 12345) % 10240 == 0);
}

/* Data regions of a file as the kernel reports them (what GNU tar 1.34 uses too). */
static size_t file_regions(int fd, uint64_t size, struct snap_tar_region *out, size_t max)
{
	size_t n = 0;
	off_t off = 0;
	while ((uint64_t)off < size) {
		off_t d = lseek(fd, off, SEEK_DATA);
		if (d < 0)
			break;
		off_t h = lseek(fd, d, SEEK_HOLE);
		REQUIRE(h > d && n < max);
		out[n].offset = (uint64_t)d;
		out[n].length = (uint64_t)(h - d);
		n++;
		off = h;
	}
	return n;
}

/* Writes our tar of dir/name to out, following the member rules of an image bundle. */
static void write_our_tar(const char *dir, const char *name, const char *out)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY);
	REQUIRE(fd >= 0);
	struct stat st;
	REQUIRE(fstat(fd, &st) == 0);
	static struct snap_tar_region regions[4096];
	size_t n = file_regions(fd, (uint64_t)st.st_size, regions, 4096);
	struct snap_tar_member m = {
	    .name = name,
	    .mode = st.st_mode & 07777,
	    .mtime = st.st_mtime,
	    .realsize = (uint64_t)st.st_size,
	    .regions = regions,
	    .nregions = n,
	};
	REQUIRE(snap_tar_member_check(&m) == 0);
	size_t hlen = snap_tar_header_size(&m);
	uint8_t *h = malloc(hlen);
	REQUIRE(h != NULL);
	REQUIRE(snap_tar_write_header(&m, h, hlen - 1) == -ENOBUFS);
	REQUIRE(snap_tar_write_header(&m, h, hlen) == 0);
	FILE *f = fopen(out, "wb");
	REQUIRE(f != NULL);
	REQUIRE(fwrite(h, 1, hlen, f) == hlen);
	uint64_t written = hlen;
	static uint8_t buf[1 << 16];
	for (size_t i = 0; i < n; i++) {
		uint64_t left = regions[i].length, off = regions[i].offset;
		while (left) {
			size_t c = left < sizeof(buf) ? (size_t)left : sizeof(buf);
			REQUIRE(pread(fd, buf, c, (off_t)off) == (ssize_t)c);
			REQUIRE(fwrite(buf, 1, c, f) == c);
			left -= c;
			off += c;
			written += c;
		}
	}
	uint64_t pad = snap_tar_trailer_size(written);
	memset(buf, 0, sizeof(buf));
	while (pad) {
		size_t c = pad < sizeof(buf) ? (size_t)pad : sizeof(buf);
		REQUIRE(fwrite(buf, 1, c, f) == c);
		pad -= c;
		written += c;
	}
	REQUIRE(fclose(f) == 0);
	REQUIRE(written == snap_tar_stream_size(&m));
	REQUIRE(written % SNAP_TAR_RECORD == 0);
	free(h);
	close(fd);
}

static void pwrite_pattern(int fd, uint64_t off, size_t len, unsigned seed)
{
	uint8_t *b = malloc(len);
	REQUIRE(b != NULL);
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 9)) | 1); /* never zero: stays data */
	REQUIRE(pwrite(fd, b, len, (off_t)off) == (ssize_t)len);
	free(b);
}

/* Compares two files reading only what either one stores (SEEK_DATA), so 8 GiB of holes cost
 * nothing; holes compare as zeros. */
static const char sparse_cmp_py[] =
    "import os, sys\n"
    "def regions(fd, size):\n"
    "    off = 0\n"
    "    while off < size:\n"
    "        try: d = os.lseek(fd, off, os.SEEK_DATA)\n"
    "        except OSError: return\n"
    "        h = os.lseek(fd, d, os.SEEK_HOLE); yield d, h; off = h\n"
    "a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])\n"
    "size = os.fstat(a).st_size\n"
    "assert os.fstat(b).st_size == size, 'size differs'\n"
    "for x, y in ((a, b), (b, a)):\n"
    "    for d, h in regions(x, size):\n"
    "        while d < h:\n"
    "            n = min(h - d, 1 << 20)\n"
    "            assert os.pread(x, n, d) == os.pread(y, n, d), 'differs at %d' % d\n"
    "            d += n\n";

static int sparse_cmp(const char *dir, const char *a, const char *b)
{
	char py[1024];
	snprintf(py, sizeof(py), "%s/sparse_cmp.py", dir);
	test_write_file(py, sparse_cmp_py, strlen(sparse_cmp_py));
	return test_sh("python3 '%s' '%s' '%s'", py, a, b);
}

/* Builds the file, compares our stream with GNU tar's, extracts it with every judge. */
static void judge(const char *dir, const char *name)
{
	REQUIRE(test_sh("cd '%s' && tar -c -S --format=gnu --owner 0 --group 0 -f gnu.tar '%s'", dir,
		      name) == 0);
	char ours[1024], src[1024], out[1200];
	snprintf(ours, sizeof(ours), "%s/ours.tar", dir);
	snprintf(src, sizeof(src), "%s/%s", dir, name);
	snprintf(out, sizeof(out), "%s/x/%s", dir, name);
	write_our_tar(dir, name, ours);
	REQUIRE(test_sh("cmp '%s/gnu.tar' '%s'", dir, ours) == 0);
	REQUIRE(test_sh("rm -rf '%s/x' && mkdir '%s/x' && tar -x -C '%s/x' -f '%s'", dir, dir, dir,
		      ours) == 0);
	REQUIRE(sparse_cmp(dir, src, out) == 0);
	if (test_have("bsdtar")) {
		REQUIRE(test_sh("rm -rf '%s/x' && mkdir '%s/x' && bsdtar -x -C '%s/x' -f '%s'", dir,
			      dir, dir, ours) == 0);
		REQUIRE(sparse_cmp(dir, src, out) == 0);
	}
	REQUIRE(test_sh("rm -rf '%s/x' && mkdir '%s/x' && python3 -c 'import sys, tarfile; "
		      "t = tarfile.open(sys.argv[1]); m = t.getmembers(); "
		      "assert len(m) == 1 and m[0].uid == 0 and m[0].gid == 0, m; "
		      "t.extractall(sys.argv[2])' '%s' '%s/x'",
		      dir, dir, ours, dir) == 0);
	REQUIRE(sparse_cmp(dir, src, out) == 0);
	REQUIRE(test_sh("rm -rf '%s/x'", dir) == 0);
	REQUIRE(unlink(src) == 0);
}

static int make_file(const char *dir, const char *name, uint64_t size)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
	REQUIRE(fd >= 0);
	REQUIRE(ftruncate(fd, (off_t)size) == 0);
	return fd;
}

int main(void)
{
	test_numbers();
	test_trailer();
	if (!test_have("tar") || !test_have("python3")) {
		fprintf(stderr, "GNU tar or python3 missing\n");
		return 77;
	}
	const char *dir = test_mkdir();

	/* regular members: empty, one byte short of a block, a block, one past */
	static const uint64_t sizes[] = {0, 511, 512, 513, 10240 - 1024, 100000};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int fd = make_file(dir, "dense.img", sizes[i]);
		if (sizes[i])
			pwrite_pattern(fd, 0, (size_t)sizes[i], (unsigned)i);
		close(fd);
		judge(dir, "dense.img");
	}

	/* sparse, map fits the header: 2 regions + terminator, trailing hole */
	int fd = make_file(dir, "s1.img", 20 << 20);
	pwrite_pattern(fd, 0, 128 << 10, 1);
	pwrite_pattern(fd, 1 << 20, 64 << 10, 2);
	close(fd);
	judge(dir, "s1.img");

	/* exactly 4 entries (3 regions + terminator), ending in data */
	fd = make_file(dir, "s4.img", 4 << 20);
	pwrite_pattern(fd, 64 << 10, 4096, 1);
	pwrite_pattern(fd, 1 << 20, 4096, 2);
	pwrite_pattern(fd, (4 << 20) - 4096, 4096, 3);
	close(fd);
	judge(dir, "s4.img");

	/* 5 entries: one extension block */
	fd = make_file(dir, "s5.img", 4 << 20);
	for (int i = 0; i < 4; i++)
		pwrite_pattern(fd, (uint64_t)i << 20, 8192, (unsigned)i);
	close(fd);
	judge(dir, "s5.img");

	/* 25, 26 and 47 entries: exactly one full extension block, then two, then three */
	static const int counts[] = {24, 25, 46};
	for (size_t c = 0; c < 3; c++) {
		fd = make_file(dir, "many.img", 8 << 20);
		for (int i = 0; i < counts[c]; i++)
			pwrite_pattern(fd, (uint64_t)i * (128 << 10) + 4096, 4096, (unsigned)i);
		close(fd);
		judge(dir, "many.img");
	}

	/* offsets and realsize past 8 GiB: base-256 in the map and realsize */
	fd = make_file(dir, "big.img", (8ull << 30) + 8192);
	pwrite_pattern(fd, 0, 4096, 1);
	pwrite_pattern(fd, (8ull << 30) + 4096, 4096, 2);
	pwrite_pattern(fd, 8ull << 30, 8192, 3);
	close(fd);
	judge(dir, "big.img");

	/* an all-hole file: no region, the map holds only the terminator */
	fd = make_file(dir, "holes.img", 1 << 20);
	close(fd);
	judge(dir, "holes.img");

	/* a long name: GNU's ././@LongLink member */
	char longname[160];
	memset(longname, 'n', 150);
	memcpy(longname + 150, ".img", 5);
	fd = make_file(dir, longname, 3 << 20);
	pwrite_pattern(fd, 1 << 20, 4096, 9);
	close(fd);
	judge(dir, longname);

	/* a stored size past 8 GiB: base-256 size field, parsed by Python's header parser */
	struct snap_tar_region r[2] = {{0, 5ull << 30}, {6ull << 30, 4ull << 30}};
	struct snap_tar_member m = {.name = "huge",
				    .mode = 0600,
				    .mtime = 1234567890,
				    .realsize = 11ull << 30,
				    .regions = r,
				    .nregions = 2};
	uint8_t h[512];
	REQUIRE(snap_tar_header_size(&m) == 512);
	REQUIRE(snap_tar_write_header(&m, h, sizeof(h)) == 0);
	char hp[1024];
	snprintf(hp, sizeof(hp), "%s/huge.hdr", dir);
	test_write_file(hp, h, sizeof(h));
	REQUIRE(
	    test_sh("python3 -c 'import sys, tarfile; b = open(sys.argv[1], \"rb\").read(); "
		    "t = tarfile.TarInfo.frombuf(b, \"utf-8\", \"surrogateescape\"); "
		    "s = t._sparse_structs; "
		    "assert t.size == 9 << 30 and s[2] == 11 << 30, (t.size, s); "
		    "assert s[0][:3] == [(0, 5 << 30), (6 << 30, 4 << 30), (11 << 30, 0)], s' '%s'",
		    hp) == 0);

	/* rejected inputs */
	struct snap_tar_region bad[2] = {{4096, 4096}, {0, 4096}};
	struct snap_tar_member mb = {
	    .name = "x", .realsize = 1 << 20, .regions = bad, .nregions = 2};
	REQUIRE(snap_tar_member_check(&mb) == -EINVAL);
	bad[0] = (struct snap_tar_region){0, (1 << 20) + 1};
	mb.nregions = 1;
	REQUIRE(snap_tar_member_check(&mb) == -EINVAL);
	printf("ok\n");
	return 0;
}
