// SPDX-License-Identifier: LGPL-2.1-or-later
/* test-output.c - output targets: temporary names, no overwrite without force, abort leaves
 * nothing, holes stay holes, block devices zeroed and size-checked (loop device when the
 * machine allows one); the O_DIRECT path cross-checked against plain pwrite for random pieces
 * (offsets, lengths and buffer alignments around the block size), from two threads at once,
 * with the path taken checked through the output's byte counters. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output.h"
#include "test-util.h"

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	REQUIRE(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void test_file(void)
{
	char dir[] = "/tmp/snap-test-output-XXXXXX", path[256];
	REQUIRE(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	struct snap_output *o = NULL;
	char *detail = NULL;
	uint64_t size = 64ull << 20;

	/* abort: nothing left */
	REQUIRE(snap_output_open(path, size, false, &o, &detail) == 0);
	REQUIRE(count_entries(dir) == 1 && access(path, F_OK) != 0);
	REQUIRE(snap_output_write(o, "abc", 3, 10) == 0);
	o = snap_output_free(o);
	REQUIRE(count_entries(dir) == 0);

	/* commit: the file appears, sparse, with the bytes written */
	REQUIRE(snap_output_open(path, size, false, &o, &detail) == 0);
	REQUIRE(snap_output_write(o, "hello", 5, size - 5) == 0);
	REQUIRE(snap_output_write(o, "x", 1, size) == -ERANGE);
	REQUIRE(snap_output_zero(o, 0, 4096) == 0);
	REQUIRE(snap_output_commit(o, &detail) == 0);
	o = snap_output_free(o);
	struct stat st;
	REQUIRE(stat(path, &st) == 0 && (uint64_t)st.st_size == size);
	REQUIRE(st.st_blocks * 512 < 1 << 20); /* holes stayed holes */
	char buf[5];
	int fd = open(path, O_RDONLY);
	REQUIRE(pread(fd, buf, 5, (off_t)size - 5) == 5 && !memcmp(buf, "hello", 5));
	close(fd);
	REQUIRE(count_entries(dir) == 1);

	/* no overwrite without force; with force the old file is replaced only at commit */
	REQUIRE(snap_output_open(path, size, false, &o, &detail) == -EEXIST);
	REQUIRE(detail && strstr(detail, "already exists"));
	free(detail);
	detail = NULL;
	REQUIRE(snap_output_open(path, 4096, true, &o, &detail) == 0);
	REQUIRE(stat(path, &st) == 0 && (uint64_t)st.st_size == size);
	REQUIRE(snap_output_commit(o, &detail) == 0);
	o = snap_output_free(o);
	REQUIRE(stat(path, &st) == 0 && st.st_size == 4096);

	/* a directory and "-" are refused */
	REQUIRE(snap_output_open(dir, 1, true, &o, &detail) == -EISDIR);
	free(detail);
	detail = NULL;
	REQUIRE(snap_output_open("-", 1, true, &o, &detail) == -EINVAL);
	free(detail);
	unlink(path);
	rmdir(dir);
}

/* ---- the direct path ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible pieces for a given TEST_OUTPUT_SEED */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

struct piece {
	uint64_t off;
	size_t len;
	size_t skew; /* buffer address minus the congruent address, modulo 4096 */
	bool zero;   /* through snap_output_zero_write */
};

/* The whole expected content; pieces copy from it (at a chosen alignment) into the output. */
static uint8_t *expect;

struct writer {
	struct snap_output *o;
	const struct piece *pieces;
	size_t n, first, step;
	uint8_t *buf; /* aligned, (largest piece + 2 * 4096) bytes */
};

static int write_piece(struct snap_output *o, const struct piece *pc, uint8_t *buf)
{
	if (pc->zero)
		return snap_output_zero_write(o, pc->off, pc->len);
	uint8_t *p = buf + (pc->off + pc->skew) % SNAP_OUTPUT_MEM_ALIGN;
	memcpy(p, expect + pc->off, pc->len);
	return snap_output_write(o, p, pc->len, pc->off);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	for (size_t i = w->first; i < w->n; i += w->step)
		REQUIRE(write_piece(w->o, &w->pieces[i], w->buf) == 0);
	return NULL;
}

/* Cuts [0, size) into pieces at offsets of every alignment class (4096-aligned, 512-aligned,
 * odd), some of them left unwritten (holes), some zeroed, and shuffles them. */
static size_t make_pieces(uint64_t size, struct piece *pieces, size_t cap, size_t *ret_max)
{
	size_t n = 0, maxlen = 0;
	uint64_t off = 0;
	while (off < size && n < cap) {
		uint64_t len;
		switch (rnd() % 4) {
		case 0: /* a few blocks, 4096-aligned length */
			len = (1 + rnd() % 64) * 4096;
			break;
		case 1: /* 512-aligned */
			len = (1 + rnd() % 600) * 512;
			break;
		case 2: /* around one block: block - 1, block, block + 1 and small pieces */
			len = 4096 + (rnd() % 3) - 1;
			if (rnd() % 2)
				len = 1 + rnd() % 700;
			break;
		default: /* anything up to 1 MiB */
			len = 1 + rnd() % (1 << 20);
			break;
		}
		if (len > size - off)
			len = size - off;
		if (rnd() % 8 == 0) { /* a hole: never written, must read back as zeros */
			memset(expect + off, 0, len);
			off += len;
			continue;
		}
		struct piece *pc = &pieces[n++];
		pc->off = off;
		pc->len = (size_t)len;
		/* mostly congruent buffers (the direct path), some not (all buffered) */
		pc->skew = rnd() % 4 ? 0 : 1 + rnd() % 4095;
		pc->zero = rnd() % 16 == 0;
		if (pc->zero)
			memset(expect + off, 0, len);
		if (len > maxlen)
			maxlen = len;
		off += len;
	}
	for (size_t i = n; i > 1; i--) {
		size_t j = rnd() % i;
		struct piece t = pieces[i - 1];
		pieces[i - 1] = pieces[j];
		pieces[j] = t;
	}
	*ret_max = maxlen;
	return n;
}

static void read_all(const char *path, uint8_t *buf, uint64_t size)
{
	int fd = open(path, O_RDONLY);
	REQUIRE(fd >= 0);
	for (uint64_t got = 0; got < size;) {
		ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
		REQUIRE(n > 0);
		got += (uint64_t)n;
	}
	close(fd);
}

/* Random pieces through snap_output_write from two threads, and the same pieces through plain
 * pwrite into a reference file: both must read back identical, and equal to the expectation.
 * Returns the output's direct byte count. */
static uint64_t cross_check(const char *dir, unsigned flags, uint64_t size)
{
	char path[600], ref[600];
	snprintf(path, sizeof(path), "%s/direct.img", dir);
	snprintf(ref, sizeof(ref), "%s/reference.img", dir);
	expect = malloc(size);
	REQUIRE(expect);
	for (uint64_t i = 0; i < size; i += 8) {
		uint64_t v = rnd();
		memcpy(expect + i, &v, size - i < 8 ? size - i : 8);
	}
	static struct piece pieces[4096];
	size_t maxlen = 0;
	size_t n = make_pieces(size, pieces, 4096, &maxlen);

	/* the reference: plain pwrite of the same bytes */
	int rfd = open(ref, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	REQUIRE(rfd >= 0 && ftruncate(rfd, (off_t)size) == 0);
	for (size_t i = 0; i < n; i++)
		REQUIRE(pwrite(rfd, expect + pieces[i].off, pieces[i].len, (off_t)pieces[i].off) ==
		       (ssize_t)pieces[i].len);
	close(rfd);

	struct snap_output *o = NULL;
	char *detail = NULL;
	REQUIRE(snap_output_open(path, size, flags | SNAP_OUTPUT_FORCE, &o, &detail) == 0);
	struct writer w[2];
	pthread_t th[2];
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += pieces[i].len;
	for (int t = 0; t < 2; t++) {
		w[t] = (struct writer){
		    .o = o, .pieces = pieces, .n = n, .first = (size_t)t, .step = 2};
		REQUIRE(posix_memalign((void **)&w[t].buf, SNAP_OUTPUT_MEM_ALIGN,
				      maxlen + 2 * SNAP_OUTPUT_MEM_ALIGN) == 0);
		REQUIRE(pthread_create(&th[t], NULL, writer_main, &w[t]) == 0);
	}
	for (int t = 0; t < 2; t++) {
		pthread_join(th[t], NULL);
		free(w[t].buf);
	}
	/* every byte went one way or the other, exactly once */
	uint64_t direct = snap_output_direct_bytes(o);
	REQUIRE(direct + snap_output_buffered_bytes(o) == total);
	REQUIRE(snap_output_commit(o, &detail) == 0);
	o = snap_output_free(o);

	uint8_t *a = malloc(size), *b = malloc(size);
	REQUIRE(a && b);
	read_all(path, a, size);
	read_all(ref, b, size);
	REQUIRE(!memcmp(b, expect, size));
	for (uint64_t i = 0; i < size; i++)
		if (a[i] != b[i]) {
			fprintf(stderr, "differs from the reference at offset %llu\n",
				(unsigned long long)i);
			abort();
		}
	free(a);
	free(b);
	free(expect);
	expect = NULL;
	unlink(path);
	unlink(ref);
	return direct;
}

/* Exact split of single pieces: whole blocks direct, head and tail buffered; a buffer that
 * is not congruent goes buffered whole. */
static void exact_split(const char *dir)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/split.img", dir);
	struct snap_output *o = NULL;
	char *detail = NULL;
	uint64_t size = 8ull << 20;
	REQUIRE(snap_output_open(path, size, SNAP_OUTPUT_FORCE, &o, &detail) == 0);
	uint32_t bs = snap_output_direct_block(o);
	if (!bs) {
		printf("no O_DIRECT on %s: exact split skipped\n", dir);
		o = snap_output_free(o);
		return;
	}
	uint8_t *buf;
	REQUIRE(posix_memalign((void **)&buf, SNAP_OUTPUT_MEM_ALIGN, 1 << 20) == 0);
	memset(buf, 0x5a, 1 << 20);
	/* [3 blocks + 512, 10 blocks + 100): blocks 4..9 direct */
	uint64_t off = 3ull * bs + 512, end = 10ull * bs + 100;
	uint64_t d0 = snap_output_direct_bytes(o), b0 = snap_output_buffered_bytes(o);
	REQUIRE(snap_output_write(o, buf + off % SNAP_OUTPUT_MEM_ALIGN, end - off, off) == 0);
	REQUIRE(snap_output_direct_bytes(o) - d0 == 6ull * bs);
	REQUIRE(snap_output_buffered_bytes(o) - b0 == (bs - 512) + 100);
	/* block size - 1, block size, block size + 1 at an aligned offset */
	for (uint64_t k = 0; k < 3; k++) {
		off = (16 + 4 * k) * bs;
		d0 = snap_output_direct_bytes(o);
		b0 = snap_output_buffered_bytes(o);
		REQUIRE(snap_output_write(o, buf, bs - 1 + k, off) == 0);
		REQUIRE(snap_output_direct_bytes(o) - d0 == (k ? bs : 0));
		REQUIRE(snap_output_buffered_bytes(o) - b0 == (k == 0 ? bs - 1 : k == 1 ? 0 : 1));
	}
	/* not congruent: all buffered */
	d0 = snap_output_direct_bytes(o);
	REQUIRE(snap_output_write(o, buf + 8, 4ull * bs, 32ull * bs) == 0);
	REQUIRE(snap_output_direct_bytes(o) == d0);
	/* a zeroed range of a file writes nothing (a hole) */
	d0 = snap_output_direct_bytes(o);
	b0 = snap_output_buffered_bytes(o);
	REQUIRE(snap_output_zero(o, 40ull * bs, 4ull * bs) == 0);
	REQUIRE(snap_output_direct_bytes(o) == d0 && snap_output_buffered_bytes(o) == b0);
	/* zero writes take the direct path for their whole blocks */
	REQUIRE(snap_output_zero_write(o, 48ull * bs + 7, 200000) == 0);
	REQUIRE(snap_output_direct_bytes(o) > d0);
	free(buf);
	o = snap_output_free(o);

	/* forced buffered: by flag and by the environment */
	REQUIRE(snap_output_open(path, size, SNAP_OUTPUT_FORCE | SNAP_OUTPUT_BUFFERED, &o,
				&detail) == 0);
	REQUIRE(!snap_output_is_direct(o) && snap_output_direct_block(o) == 0);
	o = snap_output_free(o);
	setenv("SNAPBUNDLE_OUTPUT_BUFFERED", "1", 1);
	REQUIRE(snap_output_open(path, size, SNAP_OUTPUT_FORCE, &o, &detail) == 0);
	REQUIRE(!snap_output_is_direct(o));
	o = snap_output_free(o);
	unsetenv("SNAPBUNDLE_OUTPUT_BUFFERED");
}

/* The stream: pieces in increasing order from unaligned memory, zero ranges between them,
 * contiguous pieces merged; the result equals a plain pwrite reference, and the whole blocks
 * went the direct way where the target has one. Then a failure of the writer thread (the file
 * size limit) comes back from the next calls with a message naming the path and offset. */
static void test_stream(const char *dir)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/stream.img", dir);
	uint64_t size = (16ull << 20) + 333;
	uint8_t *want = calloc(1, size), *src = malloc((1 << 20) + 64);
	REQUIRE(want && src);
	struct snap_output *o = NULL;
	struct snap_output_stream *st = NULL;
	char *detail = NULL;
	REQUIRE(snap_output_open(path, size, SNAP_OUTPUT_FORCE, &o, &detail) == 0);
	/* small buffers, so that pieces straddle them */
	REQUIRE(snap_output_stream_new(o, 3 * 65536, 2, &st) == 0);
	uint64_t off = 0, total = 0;
	while (off < size) {
		uint64_t len = rnd() % 3 ? 1 + rnd() % 300000 : 512 * (1 + rnd() % 64);
		if (len > size - off)
			len = size - off;
		if (rnd() % 4 == 0) {
			REQUIRE(snap_output_stream_zero(st, off, len) == 0); /* stays zero */
		} else if (rnd() % 8) {
			uint8_t *p = src + rnd() % 64; /* any alignment */
			for (uint64_t i = 0; i < len; i++)
				want[off + i] = p[i] = (uint8_t)rnd();
			REQUIRE(snap_output_stream_write(st, p, len, off) == 0);
			total += len;
		}
		off += len;
	}
	REQUIRE(snap_output_stream_write(st, src, 1, size) == -ERANGE);
	REQUIRE(snap_output_stream_flush(st) == 0 && !snap_output_stream_error(st));
	st = snap_output_stream_free(st);
	uint64_t direct = snap_output_direct_bytes(o);
	REQUIRE(direct + snap_output_buffered_bytes(o) == total);
	if (snap_output_is_direct(o))
		REQUIRE(direct > total / 2);
	REQUIRE(snap_output_commit(o, &detail) == 0);
	o = snap_output_free(o);
	uint8_t *got = malloc(size);
	REQUIRE(got);
	read_all(path, got, size);
	REQUIRE(!memcmp(got, want, size));
	free(got);
	unlink(path);

	/* a failure in the writer thread: writes past RLIMIT_FSIZE fail with EFBIG */
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit old, lim;
	REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
	REQUIRE(snap_output_open(path, 8 << 20, SNAP_OUTPUT_FORCE, &o, &detail) == 0);
	REQUIRE(snap_output_stream_new(o, 65536, 2, &st) == 0);
	lim = old;
	lim.rlim_cur = 1 << 20;
	REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	int r = 0;
	for (uint64_t at = 0; at < (8 << 20) && r == 0; at += 65536)
		r = snap_output_stream_write(st, want, 65536, at);
	if (r == 0)
		r = snap_output_stream_flush(st);
	REQUIRE(setrlimit(RLIMIT_FSIZE, &old) == 0);
	REQUIRE(r == -EFBIG);
	REQUIRE(snap_output_stream_flush(st) == -EFBIG);
	REQUIRE(snap_output_stream_write(st, want, 1, 0) == -EFBIG);
	const char *msg = snap_output_stream_error(st);
	REQUIRE(msg && strstr(msg, "cannot write") && strstr(msg, path) &&
	       strstr(msg, "at offset 1048576"));
	st = snap_output_stream_free(st);
	o = snap_output_free(o); /* not committed: removed */
	REQUIRE(access(path, F_OK) != 0);
	signal(SIGXFSZ, SIG_DFL);
	free(want);
	free(src);
}

static void test_direct(void)
{
	const char *seed = getenv("TEST_OUTPUT_SEED");
	if (seed)
		rng_state = strtoull(seed, NULL, 0) | 1;
	/* where the tests run (a disk filesystem: the direct path), and tmpfs (whatever the
	 * kernel does with O_DIRECT there, the bytes must be the same) */
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	const char *bases[] = {base, "/dev/shm"};
	for (size_t i = 0; i < 2; i++) {
		char dir[512];
		snprintf(dir, sizeof(dir), "%s/snap-test-output-dio-XXXXXX", bases[i]);
		if (!mkdtemp(dir)) {
			printf("cannot use %s: skipped\n", bases[i]);
			continue;
		}
		exact_split(dir);
		test_stream(dir);
		for (int round = 0; round < 3; round++) {
			/* sizes that end on and off a block */
			uint64_t size = (24ull << 20) + (round == 1 ? 512 : round == 2 ? 77 : 0);
			uint64_t direct = cross_check(dir, 0, size);
			printf("%s: %llu of %llu bytes direct\n", dir, (unsigned long long)direct,
			       (unsigned long long)size);
			/* where the kernel offers O_DIRECT the whole blocks went that way */
			char probe[600];
			snprintf(probe, sizeof(probe), "%s/probe", dir);
			struct snap_output *o = NULL;
			char *detail = NULL;
			REQUIRE(snap_output_open(probe, 4096, 0, &o, &detail) == 0);
			bool dio = snap_output_is_direct(o);
			o = snap_output_free(o);
			REQUIRE(!dio || direct > size / 4);
			REQUIRE(cross_check(dir, SNAP_OUTPUT_BUFFERED, size) == 0);
		}
		rmdir(dir);
	}
}

static void test_blockdev(void)
{
	char img[] = "/tmp/snap-test-output-dev-XXXXXX";
	int fd = mkstemp(img);
	REQUIRE(fd >= 0);
	/* junk everywhere, so zeroing is visible */
	char junk[4096];
	memset(junk, 0xa5, sizeof(junk));
	for (int i = 0; i < 1024; i++)
		REQUIRE(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
	close(fd);
	char cmd[512], dev[64] = "";
	snprintf(cmd, sizeof(cmd), "losetup --find --show %s 2>/dev/null", img);
	FILE *p = popen(cmd, "r");
	if (!p || !fgets(dev, sizeof(dev), p) || pclose(p) != 0) {
		printf("loop devices unavailable: block device part skipped\n");
		unlink(img);
		return;
	}
	dev[strcspn(dev, "\n")] = 0;
	struct snap_output *o = NULL;
	char *detail = NULL;
	REQUIRE(snap_output_open(dev, 8ull << 20, false, &o, &detail) == -ENOSPC);
	REQUIRE(detail && strstr(detail, "too small"));
	free(detail);
	detail = NULL;
	REQUIRE(snap_output_open(dev, 4ull << 20, false, &o, &detail) == 0);
	REQUIRE(snap_output_is_block_device(o));
	REQUIRE(snap_output_zero(o, 100, 1 << 20) == 0); /* unaligned edges */
	REQUIRE(snap_output_write(o, "data", 4, 0) == 0);
	/* a congruent piece at a 512-aligned offset: its whole blocks go direct */
	static uint8_t piece[(1 << 20) + 8192] __attribute__((aligned(4096)));
	uint64_t poff = (2ull << 20) + 7 * 512, plen = (1 << 20) + 1000;
	for (size_t i = 0; i < sizeof(piece); i++)
		piece[i] = (uint8_t)(i * 7 + 1);
	uint8_t *pp = piece + poff % SNAP_OUTPUT_MEM_ALIGN;
	REQUIRE(snap_output_write(o, pp, plen, poff) == 0);
	if (snap_output_is_direct(o))
		REQUIRE(snap_output_direct_bytes(o) >= (1 << 20) - 4096);
	else
		printf("no O_DIRECT on %s\n", dev);
	REQUIRE(snap_output_commit(o, &detail) == 0);
	o = snap_output_free(o);
	snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
	REQUIRE(system(cmd) == 0);
	fd = open(img, O_RDONLY);
	static unsigned char back[(1 << 20) + 200];
	REQUIRE(pread(fd, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	close(fd);
	REQUIRE(!memcmp(back, "data", 4));
	for (size_t i = 4; i < 100; i++)
		REQUIRE(back[i] == 0xa5);
	for (size_t i = 100; i < 100 + (1 << 20); i++)
		REQUIRE(back[i] == 0);
	REQUIRE(back[100 + (1 << 20)] == 0xa5);
	fd = open(img, O_RDONLY);
	static uint8_t got[(1 << 20) + 1000];
	REQUIRE(pread(fd, got, plen, (off_t)poff) == (ssize_t)plen);
	REQUIRE(!memcmp(got, pp, plen));
	REQUIRE(pread(fd, got, 1, (off_t)(poff + plen)) == 1 && got[0] == 0xa5);
	close(fd);
	unlink(img);
}

int main(void)
{
	test_file();
	test_direct();
	if (geteuid() == 0)
		test_blockdev();
	printf("output: ok\n");
	return 0;
}
