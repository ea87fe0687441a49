// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-reader.c - the extent reader against pread(2) of the same bytes.
 *
 * Random extent lists (sorted, non-overlapping, tiny and large, unaligned, some running into
 * the unaligned tail of a file whose size is not a multiple of 4096) are read through both
 * paths at several queue depths and request sizes, with chunks released at once or later from
 * another thread. Every chunk must be the next one of the expected sequence (each range cut at
 * the request size) and hold exactly the bytes pread returns. Files live in the build
 * directory, under /tmp and under /dev/shm (tmpfs), each once with O_DIRECT where the
 * filesystem takes it and once buffered. Then the failure paths: an injected EIO ends the list
 * with an error naming the first byte of the failed request, EINTR/EAGAIN are retried,
 * endless EAGAIN fails, a source that shrank underneath is an error and never zero fill.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "reader.h"
#include "source.h"
#include "test-util.h"

#define FILE_SIZE ((4u << 20) + 1234u) /* not a multiple of 4096: an unaligned tail */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static char last_log[1024];

static void log_sink(void *userdata, enum snap_log_level level, const char *msg)
{
	(void)userdata;
	(void)level;
	if (strstr(msg, "io_uring") && !strstr(msg, "reading "))
		snprintf(last_log, sizeof(last_log), "%s", msg);
	if (getenv("TEST_READER_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

static void make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		FAIL("cannot create %s: %s", path, strerror(errno));
	uint8_t *buf = malloc(size);
	if (!buf)
		FAIL("out of memory");
	for (uint64_t i = 0; i < size; i += 8) {
		uint64_t v = rnd();
		memcpy(buf + i, &v, size - i < 8 ? size - i : 8);
	}
	if (write(fd, buf, size) != (ssize_t)size)
		FAIL("cannot write %s", path);
	free(buf);
	if (fsync(fd) < 0 || close(fd) < 0)
		FAIL("cannot sync %s: %s", path, strerror(errno));
}

/* Random sorted, non-overlapping ranges inside [0, size), some tiny, some large, some
 * unaligned, sometimes up to the very end of the source. */
static size_t random_ranges(uint64_t size, struct snap_range *out, size_t max)
{
	size_t n = 0, want = 1 + (size_t)rnd_below(max);
	uint64_t pos = rnd_below(3) == 0 ? 0 : rnd_below(size / 4);
	while (n < want && pos < size) {
		uint64_t len;
		switch (rnd_below(4)) {
		case 0:
			len = 1 + rnd_below(17);
			break;
		case 1:
			len = 1 + rnd_below(9000);
			break;
		case 2:
			len = 4096 * (1 + rnd_below(40));
			break;
		default:
			len = 1 + rnd_below(1u << 20);
			break;
		}
		if (len > size - pos)
			len = size - pos;
		out[n].offset = pos;
		out[n].length = len;
		n++;
		pos += len;
		switch (rnd_below(3)) {
		case 0:
			break; /* adjacent */
		case 1:
			pos += 1 + rnd_below(5000);
			break;
		default:
			pos += rnd_below(size / 16);
			break;
		}
	}
	/* Often reach into the unaligned tail. */
	if (n > 0 && n < max && rnd_below(2) == 0) {
		uint64_t end = out[n - 1].offset + out[n - 1].length;
		if (end < size - 1) {
			uint64_t start =
			    size - 1 - rnd_below(size - end - 1 < 9000 ? size - end - 1 : 9000);
			if (start < end)
				start = end;
			out[n].offset = start;
			out[n].length = size - start;
			n++;
		}
	}
	return n;
}

/* ---- releases from another thread ---- */

struct releaser {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct snap_reader *reader;
	struct snap_chunk queue[2048];
	size_t head, count;
	bool quit;
	pthread_t thread;
};

static void *releaser_main(void *arg)
{
	struct releaser *rl = arg;
	pthread_mutex_lock(&rl->lock);
	for (;;) {
		while (!rl->quit && rl->count == 0)
			pthread_cond_wait(&rl->cond, &rl->lock);
		if (rl->count == 0 && rl->quit)
			break;
		struct snap_chunk c = rl->queue[rl->head];
		rl->head = (rl->head + 1) % 2048;
		rl->count--;
		pthread_mutex_unlock(&rl->lock);
		if (c.buffer % 3 == 0)
			usleep(50); /* hold some buffers a while, so the reader has to wait */
		snap_reader_release(rl->reader, &c);
		pthread_mutex_lock(&rl->lock);
	}
	pthread_mutex_unlock(&rl->lock);
	return NULL;
}

static void releaser_push(struct releaser *rl, const struct snap_chunk *c)
{
	pthread_mutex_lock(&rl->lock);
	if (rl->count == 2048)
		FAIL("releaser queue full");
	rl->queue[(rl->head + rl->count) % 2048] = *c;
	rl->count++;
	pthread_cond_signal(&rl->cond);
	pthread_mutex_unlock(&rl->lock);
}

static void releaser_start(struct releaser *rl, struct snap_reader *reader)
{
	memset(rl, 0, sizeof(*rl));
	pthread_mutex_init(&rl->lock, NULL);
	pthread_cond_init(&rl->cond, NULL);
	rl->reader = reader;
	if (pthread_create(&rl->thread, NULL, releaser_main, rl) != 0)
		FAIL("pthread_create");
}

static void releaser_stop(struct releaser *rl)
{
	pthread_mutex_lock(&rl->lock);
	rl->quit = true;
	pthread_cond_signal(&rl->cond);
	pthread_mutex_unlock(&rl->lock);
	pthread_join(rl->thread, NULL);
	pthread_cond_destroy(&rl->cond);
	pthread_mutex_destroy(&rl->lock);
}

/* ---- reading a list and checking it ---- */

static uint8_t *judge_buf;

/* Checks one chunk against pread(2) of the same bytes through an independent descriptor. */
static void judge_chunk(int judge_fd, const struct snap_chunk *c, const char *what)
{
	ssize_t n = pread(judge_fd, judge_buf, c->length, (off_t)c->offset);
	if (n != (ssize_t)c->length)
		FAIL("%s: judge pread at %" PRIu64 " returned %zd", what, c->offset, n);
	if (memcmp(judge_buf, c->data, c->length) != 0) {
		size_t i = 0;
		while (judge_buf[i] == c->data[i])
			i++;
		FAIL("%s: chunk at %" PRIu64 "+%zu differs from pread at byte %" PRIu64, what,
		     c->offset, c->length, c->offset + i);
	}
}

/* Reads ranges through reader, checking order and content; returns the chunks read. When
 * stop_at is not UINT64_MAX the list must fail at the chunk containing stop_at; *ret_err gets
 * next()'s result at the end. */
static size_t read_list(struct snap_reader *reader, int judge_fd, const struct snap_range *ranges,
			size_t n, bool async_release, const char *what, int *ret_err)
{
	size_t rs = snap_reader_request_size(reader);
	struct releaser rl;
	uint64_t before, bytes = 0;
	if (snap_reader_start(reader, ranges, n) < 0)
		FAIL("%s: start", what);
	/* After start: requests of a failed list still complete (and count) while it drains. */
	before = snap_reader_bytes_read(reader);
	if (async_release)
		releaser_start(&rl, reader);

	size_t ri = 0, chunks = 0;
	uint64_t ro = 0;
	int r;
	struct snap_chunk c;
	while ((r = snap_reader_next(reader, &c)) > 0) {
		while (ri < n && ro >= ranges[ri].length) {
			ri++;
			ro = 0;
		}
		if (ri >= n)
			FAIL("%s: chunk at %" PRIu64 " after the end of the list", what, c.offset);
		uint64_t want_off = ranges[ri].offset + ro;
		uint64_t left = ranges[ri].length - ro;
		size_t want_len = left < rs ? (size_t)left : rs;
		if (c.offset != want_off || c.length != want_len)
			FAIL("%s: chunk %" PRIu64 "+%zu, expected %" PRIu64 "+%zu", what, c.offset,
			     c.length, want_off, want_len);
		judge_chunk(judge_fd, &c, what);
		ro += want_len;
		bytes += want_len;
		chunks++;
		if (async_release)
			releaser_push(&rl, &c);
		else
			snap_reader_release(reader, &c);
	}
	if (async_release)
		releaser_stop(&rl);
	if (ret_err) {
		*ret_err = r;
		return chunks;
	}
	if (r < 0)
		FAIL("%s: next: %s (%s)", what, strerror(-r), snap_reader_error(reader));
	while (ri < n && ro >= ranges[ri].length) {
		ri++;
		ro = 0;
	}
	if (ri != n)
		FAIL("%s: list ended early at range %zu", what, ri);
	if (snap_reader_bytes_read(reader) - before != bytes)
		FAIL("%s: bytes_read %" PRIu64 ", expected %" PRIu64, what,
		     snap_reader_bytes_read(reader) - before, bytes);
	if (snap_reader_next(reader, &c) != 0)
		FAIL("%s: next after the end", what);
	return chunks;
}

/* ---- fault hooks ---- */

struct fault {
	pthread_mutex_t lock;
	bool armed;
	int mode; /* 0: EIO at target, 1: EAGAIN/EINTR once per call pattern, 2: EAGAIN forever */
	uint64_t target;
	uint64_t failed_at; /* offset of the read the hook failed (mode 0 and 2) */
	unsigned calls;
	unsigned injected;
};

static int fault_hook(void *userdata, uint64_t offset, size_t length)
{
	struct fault *f = userdata;
	int ret = 0;
	pthread_mutex_lock(&f->lock);
	f->calls++;
	if (f->armed) {
		bool hit = offset <= f->target && f->target < offset + length;
		if (f->mode == 0 && hit) {
			f->failed_at = offset;
			f->injected++;
			ret = -EIO;
		} else if (f->mode == 1 && f->calls % 3 != 0) {
			f->injected++;
			ret = f->calls % 2 ? -EAGAIN : -EINTR;
		} else if (f->mode == 2 && hit) {
			f->failed_at = offset;
			f->injected++;
			ret = -EAGAIN;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return ret;
}

/* The range list's chunk that contains off: its offset. */
static uint64_t chunk_containing(const struct snap_range *g, size_t n, size_t rs, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		if (off >= g[i].offset && off < g[i].offset + g[i].length)
			return g[i].offset + (off - g[i].offset) / rs * rs;
	FAIL("offset %" PRIu64 " in no range", off);
}

static void test_faults(struct snap_src *src, int judge_fd, bool force_pread, unsigned qd,
			size_t rs)
{
	struct fault f = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct snap_reader_opts o = {.queue_depth = qd,
				     .request_size = rs,
				     .force_pread = force_pread,
				     .fault = fault_hook,
				     .fault_userdata = &f};
	struct snap_reader *reader;
	if (snap_reader_new(src, &o, &reader) < 0)
		FAIL("reader_new");
	rs = snap_reader_request_size(reader);
	char what[256];
	snprintf(what, sizeof(what), "%s faults %s qd %u rs %zu",
		 snap_reader_uses_uring(reader) ? "io_uring" : "pread", src->path, qd, rs);
	struct snap_range g[40];

	for (int round = 0; round < 12; round++) {
		size_t n = random_ranges(src->size, g, 20);
		/* A target byte: anywhere in the list, often in the tail. */
		size_t k = round % 3 == 0 ? n - 1 : (size_t)rnd_below(n);
		uint64_t target = g[k].offset + rnd_below(g[k].length);
		uint64_t chunk = chunk_containing(g, n, rs, target);
		pthread_mutex_lock(&f.lock);
		f.armed = true;
		f.mode = round % 4 == 3 ? 2 : 0;
		f.target = target;
		f.failed_at = UINT64_MAX;
		f.injected = 0;
		pthread_mutex_unlock(&f.lock);

		int err = 0;
		size_t got = read_list(reader, judge_fd, g, n, round % 2, what, &err);
		int want_err = f.mode == 2 ? -EAGAIN : -EIO;
		if (err != want_err)
			FAIL("%s: round %d: next returned %d, expected %d", what, round, err,
			     want_err);
		/* Every chunk before the failed one came out, none at or after it. */
		size_t before = 0;
		for (size_t i = 0; i < n; i++)
			for (uint64_t o2 = 0; o2 < g[i].length; o2 += rs)
				if (g[i].offset + o2 < chunk)
					before++;
		if (got != before)
			FAIL("%s: round %d: %zu chunks before the failure, expected %zu", what,
			     round, got, before);
		/* The failed read is the request containing target, or its part in the tail. */
		uint64_t tail = src->size / src->align * src->align;
		if (f.failed_at != chunk && !(src->direct && target >= tail && f.failed_at == tail))
			FAIL("%s: round %d: hook failed a read at %" PRIu64 ", chunk at %" PRIu64,
			     what, round, f.failed_at, chunk);
		char want[512];
		snprintf(want, sizeof(want), "cannot read %s at offset %" PRIu64 ": %s", src->path,
			 f.failed_at, strerror(-want_err));
		if (strcmp(snap_reader_error(reader), want) != 0)
			FAIL("%s: error '%s', expected '%s'", what, snap_reader_error(reader),
			     want);
		struct snap_chunk c;
		if (snap_reader_next(reader, &c) != want_err)
			FAIL("%s: the error is not sticky", what);
	}

	/* Retried errors: the data still comes out whole. */
	pthread_mutex_lock(&f.lock);
	f.mode = 1;
	f.injected = 0;
	pthread_mutex_unlock(&f.lock);
	for (int round = 0; round < 3; round++) {
		size_t n = random_ranges(src->size, g, 20);
		read_list(reader, judge_fd, g, n, round % 2, what, NULL);
	}
	if (f.injected == 0)
		FAIL("%s: no EINTR/EAGAIN injected", what);
	if (strcmp(snap_reader_error(reader), "") != 0)
		FAIL("%s: error after a clean list: %s", what, snap_reader_error(reader));
	snap_reader_free(reader);
}

/* The file shrinks under an open source: the reader reports the end of file as an error at
 * the offset where bytes ran out, never zero fill. */
static void test_shrunk(const char *path, unsigned flags, bool force_pread)
{
	make_file(path, FILE_SIZE);
	struct snap_src *src;
	if (snap_src_open(path, flags, &src, NULL) < 0)
		FAIL("open %s", path);
	uint64_t cut = 1000000 + 77;
	if (truncate(path, (off_t)cut) < 0)
		FAIL("truncate %s", path);
	struct snap_reader_opts o = {
	    .queue_depth = 4, .request_size = 65536, .force_pread = force_pread};
	struct snap_reader *reader;
	if (snap_reader_new(src, &o, &reader) < 0)
		FAIL("reader_new");
	struct snap_range g = {.offset = 500000, .length = 1500000};
	if (snap_reader_start(reader, &g, 1) < 0)
		FAIL("start");
	struct snap_chunk c;
	int r;
	uint64_t last_end = 0;
	while ((r = snap_reader_next(reader, &c)) > 0) {
		if (c.offset + c.length > cut)
			FAIL("shrunk %s: a chunk past the end of file at %" PRIu64, path, c.offset);
		last_end = c.offset + c.length;
		snap_reader_release(reader, &c);
	}
	if (r != -EIO)
		FAIL("shrunk %s: next returned %d, expected -EIO", path, r);
	unsigned long long at;
	char fmt[600];
	snprintf(fmt, sizeof(fmt), "cannot read %s at offset %%llu: Input/output error", path);
	if (sscanf(snap_reader_error(reader), fmt, &at) != 1 || at < last_end || at > cut)
		FAIL("shrunk %s: error '%s' (bytes ran out at %" PRIu64 ")", path,
		     snap_reader_error(reader), cut);
	printf("%s %s: shrunk source: %s\n", snap_reader_uses_uring(reader) ? "io_uring" : "pread",
	       src->direct ? "O_DIRECT" : "buffered", snap_reader_error(reader));
	snap_reader_free(reader);
	snap_src_free(src);
	unlink(path);
}

static void test_file(const char *path, unsigned flags, bool quick)
{
	make_file(path, FILE_SIZE);
	struct snap_src *src;
	char *detail = NULL;
	int r = snap_src_open(path, flags, &src, &detail);
	if (r < 0)
		FAIL("%s", detail ? detail : path);
	int judge_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (judge_fd < 0)
		FAIL("open %s", path);
	printf("%s: %s, alignment %u\n", path, src->direct ? "O_DIRECT" : "buffered", src->align);

	static const unsigned qds[] = {1, 3, 32};
	static const size_t rss[] = {4096, 5000, 65536, 1u << 20};
	for (int p = 0; p < 2; p++) {
		for (size_t qi = 0; qi < sizeof(qds) / sizeof(qds[0]); qi++) {
			for (size_t si = 0; si < sizeof(rss) / sizeof(rss[0]); si++) {
				if (quick && (qi + si) % 2)
					continue;
				struct snap_reader_opts o = {.queue_depth = qds[qi],
							     .request_size = rss[si],
							     .force_pread = p == 1};
				struct snap_reader *reader;
				if (snap_reader_new(src, &o, &reader) < 0)
					FAIL("reader_new");
				if (p == 1 && snap_reader_uses_uring(reader))
					FAIL("force_pread ignored");
				if (snap_reader_queue_depth(reader) != qds[qi] ||
				    snap_reader_request_size(reader) % src->align ||
				    snap_reader_request_size(reader) < rss[si])
					FAIL("queue depth %u / request size %zu",
					     snap_reader_queue_depth(reader),
					     snap_reader_request_size(reader));
				char what[256];
				snprintf(what, sizeof(what), "%s %s qd %u rs %zu",
					 snap_reader_uses_uring(reader) ? "io_uring" : "pread",
					 path, qds[qi], snap_reader_request_size(reader));
				size_t chunks = 0;
				for (int l = 0; l < 3; l++) {
					struct snap_range g[40];
					size_t n = random_ranges(src->size, g, 30);
					chunks += read_list(reader, judge_fd, g, n, l % 2 == 1,
							    what, NULL);
				}
				/* The whole source, tail included, in one range. */
				struct snap_range all = {0, src->size};
				chunks += read_list(reader, judge_fd, &all, 1, true, what, NULL);
				if (chunks == 0)
					FAIL("%s: nothing read", what);
				snap_reader_free(reader);
			}
		}
		test_faults(src, judge_fd, p == 1, p ? 3 : 8, p ? 4096 : 65536);
	}
	close(judge_fd);
	snap_src_free(src);
	unlink(path);
}

static void test_edges(const char *path)
{
	make_file(path, FILE_SIZE);
	struct snap_src *src;
	if (snap_src_open(path, 0, &src, NULL) < 0)
		FAIL("open %s", path);
	struct snap_reader *reader;
	if (snap_reader_new(src, NULL, &reader) < 0)
		FAIL("reader_new with default options");
	if (snap_reader_queue_depth(reader) != 32 || snap_reader_request_size(reader) != 1u << 20)
		FAIL("defaults: qd %u rs %zu", snap_reader_queue_depth(reader),
		     snap_reader_request_size(reader));
	struct snap_chunk c;
	if (snap_reader_next(reader, &c) != 0)
		FAIL("next before start");
	if (snap_reader_start(reader, NULL, 0) < 0 || snap_reader_next(reader, &c) != 0)
		FAIL("empty list");
	struct snap_range zero[2] = {{10, 0}, {src->size, 0}};
	if (snap_reader_start(reader, zero, 2) < 0 || snap_reader_next(reader, &c) != 0)
		FAIL("list of empty ranges");
	struct snap_range overlap[2] = {{0, 100}, {50, 10}};
	if (snap_reader_start(reader, overlap, 2) != -EINVAL)
		FAIL("overlapping ranges accepted");
	struct snap_range past = {src->size - 10, 11};
	if (snap_reader_start(reader, &past, 1) != -EINVAL)
		FAIL("range past the end accepted");
	struct snap_range huge = {1, UINT64_MAX};
	if (snap_reader_start(reader, &huge, 1) != -EINVAL)
		FAIL("overflowing range accepted");

	/* The consumer holds every buffer while another thread releases them late, and a
	 * restart in the middle of a list drops what was in flight. */
	struct snap_range big = {3, src->size - 3};
	if (snap_reader_start(reader, &big, 1) < 0)
		FAIL("start");
	for (int i = 0; i < 3; i++) {
		if (snap_reader_next(reader, &c) != 1)
			FAIL("next");
		snap_reader_release(reader, &c);
		snap_reader_release(reader, &c); /* a second release is ignored */
	}
	struct snap_range small = {4095, 2};
	if (snap_reader_start(reader, &small, 1) < 0 || snap_reader_next(reader, &c) != 1 ||
	    c.offset != 4095 || c.length != 2)
		FAIL("restart");
	snap_reader_release(reader, &c);
	if (snap_reader_next(reader, &c) != 0)
		FAIL("restart end");
	snap_reader_free(reader);

	/* SNAPBUNDLE_FORCE_PREAD=1 forces the fallback like force_pread. */
	setenv("SNAPBUNDLE_FORCE_PREAD", "1", 1);
	if (snap_reader_new(src, NULL, &reader) < 0 || snap_reader_uses_uring(reader))
		FAIL("SNAPBUNDLE_FORCE_PREAD ignored");
	snap_reader_free(reader);
	unsetenv("SNAPBUNDLE_FORCE_PREAD");

	/* Freeing a reader with reads in flight and chunks held. */
	if (snap_reader_new(src, NULL, &reader) < 0)
		FAIL("reader_new");
	struct snap_range all = {0, src->size};
	if (snap_reader_start(reader, &all, 1) < 0 || snap_reader_next(reader, &c) != 1)
		FAIL("start");
	snap_reader_free(reader);
	snap_src_free(src);
	unlink(path);
}

/* Makes syscall nr fail with err in this process from now on (seccomp, as a container
 * runtime would). */
static int deny_syscall(long nr, int err)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

/* io_uring refused the way seccomp or the io_uring_disabled sysctl refuse it: the reader falls
 * back to pread and says so; refused buffer registration keeps io_uring with unregistered
 * buffers. Each case runs in a child, since a seccomp filter cannot be removed. */
static void test_refused(const char *path)
{
	static const struct {
		long nr;
		int err;
		bool uring;
		const char *log;
	} cases[] = {
	    {__NR_io_uring_setup, ENOSYS, false,
	     "io_uring unavailable (io_uring_setup: Function not implemented): using pread"},
	    {__NR_io_uring_setup, EPERM, false,
	     "io_uring unavailable (io_uring_setup: Operation not permitted): using pread"},
	    {__NR_io_uring_register, ENOMEM, true,
	     "cannot register io_uring buffers (Cannot allocate memory): using unregistered "
	     "buffers"},
	};
	make_file(path, FILE_SIZE);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0)
			FAIL("fork");
		if (pid == 0) {
			if (deny_syscall(cases[i].nr, cases[i].err) < 0) {
				printf("seccomp unavailable: refused io_uring not tested\n");
				exit(77);
			}
			struct snap_src *src;
			if (snap_src_open(path, 0, &src, NULL) < 0)
				FAIL("open %s", path);
			int judge_fd = open(path, O_RDONLY | O_CLOEXEC);
			struct snap_reader_opts o = {.queue_depth = 4, .request_size = 8192};
			struct snap_reader *reader;
			last_log[0] = 0;
			if (judge_fd < 0 || snap_reader_new(src, &o, &reader) < 0)
				FAIL("reader_new with io_uring refused");
			if (snap_reader_uses_uring(reader) != cases[i].uring ||
			    strcmp(last_log, cases[i].log) != 0)
				FAIL("refused case %zu: uses_uring %d, log '%s'", i,
				     snap_reader_uses_uring(reader), last_log);
			for (int l = 0; l < 3; l++) {
				struct snap_range g[40];
				size_t n = random_ranges(src->size, g, 30);
				read_list(reader, judge_fd, g, n, l == 1, last_log, NULL);
			}
			printf("refused: %s\n", last_log);
			snap_reader_free(reader);
			snap_src_free(src);
			close(judge_fd);
			free(judge_buf);
			exit(0);
		}
		int st;
		if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) ||
		    (WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 77))
			FAIL("refused case %zu: child failed (status %#x)", i, st);
	}
	unlink(path);
}

int main(void)
{
	snap_set_log(log_sink, NULL, SNAP_LOG_DEBUG);
	const char *seed = getenv("TEST_READER_SEED");
	if (seed)
		rng_state = strtoull(seed, NULL, 0) | 1;
	printf("seed %#" PRIx64 "\n", rng_state);
	judge_buf = malloc(1u << 20);
	if (!judge_buf)
		FAIL("out of memory");

	char here[4096], p[4200];
	if (!getcwd(here, sizeof(here)))
		FAIL("getcwd");
	snprintf(p, sizeof(p), "%s/test-reader-%d.img", here, (int)getpid());
	test_edges(p);
	test_refused(p);
	test_file(p, 0, false);
	test_file(p, SNAP_SRC_NO_DIRECT, true);
	test_shrunk(p, 0, false);
	test_shrunk(p, 0, true);
	test_shrunk(p, SNAP_SRC_NO_DIRECT, false);

	/* /tmp and tmpfs: O_DIRECT may be refused (tmpfs before Linux 6.6); the source then
	 * reads buffered and the reader must not care. */
	static const char *const dirs[] = {"/tmp", "/dev/shm"};
	for (size_t i = 0; i < 2; i++) {
		struct stat st;
		if (stat(dirs[i], &st) < 0 || !S_ISDIR(st.st_mode) || access(dirs[i], W_OK) < 0) {
			printf("%s: not usable, skipped\n", dirs[i]);
			continue;
		}
		snprintf(p, sizeof(p), "%s/snapbundle-test-reader-%d.img", dirs[i], (int)getpid());
		test_file(p, 0, true);
	}
	free(judge_buf);
	printf("ok\n");
	return 0;
}
