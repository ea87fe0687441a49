// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * reader.c - the extent reader: io_uring with registered buffers, or pread from a few helper
 * threads, behind one interface (reader.h).
 *
 * Invariants (on top of those in reader.h):
 *  1. Buffer b and request b are one slot. A slot is in exactly one state: FREE (on the free
 *     stack), QUEUED (pread path: waiting for a helper thread), BUSY (being read), DONE or
 *     FAILED (waiting in the delivery FIFO), HELD (the consumer's). States change only under
 *     lock; snap_reader_release() only ever moves HELD -> FREE.
 *  2. The delivery FIFO holds the issued requests in issue order, which is range order, and
 *     snap_reader_next() only ever hands out its head: a later request that completes first
 *     waits, so chunks come out in offset order whatever order the device completes them in.
 *  3. Byte i of a slot's buffer is source byte aoff + i. On an O_DIRECT source aoff is the
 *     request offset rounded down to the alignment, and the aligned superset of the request up
 *     to tail_start (the source size rounded down to the alignment) is read through the
 *     O_DIRECT descriptor; bytes at or past tail_start go through fd_buffered. On a buffered
 *     source aoff is the request offset and everything goes through src->fd.
 *  4. A segment is finished only when every byte asked for was read: a short read is
 *     resubmitted for the rest (on O_DIRECT from the last aligned position), EINTR/EAGAIN are
 *     retried, an end of file or any other error fails the request. Nothing is zero-filled.
 *  5. After the first failure no request is issued any more; the requests before it in order
 *     are still delivered, then next() returns the failure of the first failed request in
 *     order (naming the first byte of it that could not be read) and keeps returning it.
 *  6. Nothing is in flight when snap_reader_start() or snap_reader_free() returns: the kernel
 *     never writes into a buffer the reader has given back or freed.
 *
 * State transitions, and the function that performs each:
 *   FREE   -> BUSY        issue_more() (io_uring), issue_more() via QUEUED (pread)
 *   QUEUED -> BUSY        pread_worker()
 *   BUSY   -> DONE/FAILED finish_req() from complete_seg() (io_uring) or pread_worker()
 *   DONE   -> HELD        snap_reader_next()
 *   HELD   -> FREE        snap_reader_release()
 *   other  -> FREE        drain() (restart, free)
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "reader.h"

#define READER_DEFAULT_QD 32U
#define READER_MAX_QD 1024U
#define READER_DEFAULT_RS ((size_t)1 << 20)
#define READER_MAX_RS ((size_t)64 << 20)
/* Consecutive retries (EINTR, EAGAIN, or a short read that made no progress) before a read
 * counts as failed. */
#define READER_MAX_RETRIES 64U
/* Helper threads of the pread path: enough to overlap device latency with the consumer, few
 * enough not to thrash a small machine. */
#define READER_MAX_THREADS 4U

enum slot_state {
	SLOT_FREE,
	SLOT_QUEUED,
	SLOT_BUSY,
	SLOT_DONE,
	SLOT_FAILED,
	SLOT_HELD,
};

/* One read of a request through one descriptor: source bytes [pos, end) land at
 * buf + (pos - aoff). The consumer asked for [want, want_end) of it; on O_DIRECT the rest is
 * alignment padding. */
struct seg {
	uint64_t pos;
	uint64_t end;
	uint64_t want;
	uint64_t want_end;
	int fd;
	bool direct;
	unsigned retries;
};

struct req {
	uint64_t offset;
	size_t length;
	uint64_t aoff;
	struct seg seg[2];
	unsigned nseg;
	unsigned pending; /* segments not finished yet */
	int err;
	uint64_t err_off;
};

struct snap_reader {
	struct snap_src *src;
	snap_reader_fault_fn fault;
	void *fault_userdata;
	unsigned qd;
	size_t rs;
	size_t buf_size;
	uint32_t align; /* O_DIRECT alignment, 1 on a buffered source */
	uint64_t tail_start;

	uint8_t *mem;
	struct req *reqs;
	enum slot_state *state;
	unsigned *free_stack;
	unsigned nfree;
	unsigned *order; /* delivery FIFO of slots */
	unsigned order_head, order_count;

	struct snap_range *ranges;
	size_t nranges;
	size_t ri;    /* cursor: range index */
	uint64_t ro;  /* cursor: offset inside that range */
	bool stopped; /* a request failed: issue nothing more */
	int err;      /* sticky result of next() after a failure */
	char *error;
	uint64_t bytes_read; /* atomic */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* next() and drain(): a slot was released or a request finished */

	/* io_uring path: only touched by the thread calling start/next/free. */
	bool uring;
	bool fixed; /* buffers registered */
	bool draining;
	struct io_uring ring;
	unsigned inflight; /* SQEs submitted, CQE not seen yet */
	unsigned prepared; /* SQEs prepared, not submitted yet */

	/* pread path */
	pthread_cond_t work_cond; /* helper threads: a job was queued, or quit */
	pthread_t threads[READER_MAX_THREADS];
	unsigned nthreads;
	unsigned *jobs; /* FIFO of QUEUED slots */
	unsigned job_head, job_count;
	unsigned running;
	bool quit;
};

static inline uint8_t *slot_buf(const struct snap_reader *r, unsigned b)
{
	return r->mem + (size_t)b * r->buf_size;
}

static inline uint64_t seg_first(const struct seg *s)
{
	return s->pos > s->want ? s->pos : s->want;
}

static bool cursor_more(struct snap_reader *r)
{
	while (r->ri < r->nranges && r->ro >= r->ranges[r->ri].length) {
		r->ri++;
		r->ro = 0;
	}
	return r->ri < r->nranges;
}

static bool has_more(struct snap_reader *r)
{
	return !r->stopped && cursor_more(r);
}

/* Takes the next request off the cursor (cursor_more() was true). */
static void cursor_take(struct snap_reader *r, uint64_t *ret_off, size_t *ret_len)
{
	const struct snap_range *g = &r->ranges[r->ri];
	uint64_t left = g->length - r->ro;
	size_t len = left < r->rs ? (size_t)left : r->rs;
	*ret_off = g->offset + r->ro;
	*ret_len = len;
	r->ro += len;
}

/* Fills in the segments of slot b for [off, off + len) (invariant 3). */
static void setup_req(struct snap_reader *r, unsigned b, uint64_t off, size_t len)
{
	struct req *q = &r->reqs[b];
	uint64_t end = off + len;
	memset(q, 0, sizeof(*q));
	q->offset = off;
	q->length = len;
	if (r->align <= 1) {
		q->aoff = off;
		q->seg[0] = (struct seg){
		    .pos = off, .end = end, .want = off, .want_end = end, .fd = r->src->fd};
		q->nseg = 1;
	} else {
		uint64_t a = r->align;
		uint64_t aend = (end + a - 1) / a * a;
		if (aend > r->tail_start)
			aend = r->tail_start;
		q->aoff = off / a * a;
		if (q->aoff < aend)
			q->seg[q->nseg++] = (struct seg){.pos = q->aoff,
							 .end = aend,
							 .want = off,
							 .want_end = end < aend ? end : aend,
							 .fd = r->src->fd,
							 .direct = true};
		if (end > r->tail_start) {
			uint64_t s = off > r->tail_start ? off : r->tail_start;
			q->seg[q->nseg++] = (struct seg){.pos = s,
							 .end = end,
							 .want = s,
							 .want_end = end,
							 .fd = r->src->fd_buffered};
		}
	}
	q->pending = q->nseg;
}

static void seg_fail(struct req *q, const struct seg *s, int err)
{
	uint64_t at = seg_first(s);
	if (q->err == 0 || at < q->err_off) {
		q->err = err;
		q->err_off = at;
	}
}

/* Accounts the result of one read of s: 0 when the segment is complete, 1 when the rest must
 * be read (again), or the -errno that failed it (recorded in q). */
static int seg_advance(struct snap_reader *r, struct req *q, struct seg *s, int64_t res)
{
	if (res < 0) {
		if ((res == -EINTR || res == -EAGAIN) && s->retries++ < READER_MAX_RETRIES)
			return 1;
		seg_fail(q, s, (int)res);
		return (int)res;
	}
	if (res == 0) {
		/* End of file inside the source's size: the source shrank or lied. */
		seg_fail(q, s, -EIO);
		return -EIO;
	}
	uint64_t before = s->pos;
	s->pos += (uint64_t)res;
	if (s->pos >= s->want_end)
		return 0;
	/* O_DIRECT can only go on from an aligned position; rereading a few bytes is harmless. */
	if (s->direct)
		s->pos = s->pos / r->align * r->align;
	if (s->pos > before) {
		s->retries = 0;
	} else if (s->retries++ >= READER_MAX_RETRIES) {
		seg_fail(q, s, -EIO);
		return -EIO;
	}
	return 1;
}

/* Asks the fault hook about the next read of s: 0 to go ahead, else the injected error. */
static int seg_fault(struct snap_reader *r, const struct seg *s)
{
	if (!r->fault)
		return 0;
	uint64_t at = seg_first(s);
	int f = r->fault(r->fault_userdata, at, (size_t)(s->want_end - at));
	return f < 0 ? f : 0;
}

static void finish_req(struct snap_reader *r, unsigned b)
{
	struct req *q = &r->reqs[b];
	pthread_mutex_lock(&r->lock);
	if (q->err) {
		r->state[b] = SLOT_FAILED;
		r->stopped = true;
	} else {
		r->state[b] = SLOT_DONE;
		__atomic_fetch_add(&r->bytes_read, q->length, __ATOMIC_RELAXED);
	}
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* ---- io_uring path ---- */

/* Prepares the next read of segment si of slot b: 0 when an SQE is prepared, or the -errno
 * that failed the segment (the fault hook said so). */
static int uring_issue_seg(struct snap_reader *r, unsigned b, unsigned si)
{
	struct req *q = &r->reqs[b];
	struct seg *s = &q->seg[si];
	for (;;) {
		int f = seg_fault(r, s);
		if (f < 0) {
			int a = seg_advance(r, q, s, f);
			if (a == 1)
				continue;
			return a;
		}
		break;
	}
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	if (!sqe) {
		/* Cannot happen with 2 SQEs per slot and every SQE submitted before waiting, but a
		 * full ring must never turn into a lost read. */
		seg_fail(q, s, -EBUSY);
		return -EBUSY;
	}
	uint8_t *dst = slot_buf(r, b) + (s->pos - q->aoff);
	unsigned n = (unsigned)(s->end - s->pos);
	if (r->fixed)
		io_uring_prep_read_fixed(sqe, s->fd, dst, n, s->pos, (int)b);
	else
		io_uring_prep_read(sqe, s->fd, dst, n, s->pos);
	io_uring_sqe_set_data64(sqe, (uint64_t)b * 2 + si);
	r->prepared++;
	return 0;
}

static void uring_issue_req(struct snap_reader *r, unsigned b)
{
	struct req *q = &r->reqs[b];
	/* Once a segment failed the request has failed: the other one is not read. */
	for (unsigned si = 0; si < q->nseg; si++)
		if (q->err || uring_issue_seg(r, b, si) < 0)
			q->pending--;
	if (q->pending == 0)
		finish_req(r, b);
}

/* Submits the prepared SQEs. A submission the kernel refuses for good leaves the reader
 * failed (r->err); the prepared SQEs then never reach the kernel. */
static int uring_submit(struct snap_reader *r)
{
	unsigned tries = 0;
	while (r->prepared > 0) {
		int n = io_uring_submit(&r->ring);
		if (n > 0) {
			r->inflight += (unsigned)n;
			r->prepared -= (unsigned)n < r->prepared ? (unsigned)n : r->prepared;
			tries = 0;
			continue;
		}
		if ((n == 0 || n == -EINTR || n == -EAGAIN || n == -EBUSY) &&
		    tries++ < READER_MAX_RETRIES)
			continue;
		if (n == 0)
			n = -EIO;
		if (!r->err) {
			r->err = n;
			free(r->error);
			if (asprintf(&r->error, "cannot read %s: io_uring_submit: %s", r->src->path,
				     strerror(-n)) < 0)
				r->error = NULL;
		}
		r->stopped = true;
		return n;
	}
	return 0;
}

static void complete_seg(struct snap_reader *r, uint64_t data, int res)
{
	unsigned b = (unsigned)(data / 2), si = (unsigned)(data % 2);
	struct req *q = &r->reqs[b];
	struct seg *s = &q->seg[si];
	int a = seg_advance(r, q, s, res);
	if (a == 1) {
		if (!r->draining) {
			a = uring_issue_seg(r, b, si);
			if (a == 0)
				return;
		} else {
			seg_fail(q, s, -ECANCELED);
		}
	}
	if (--q->pending == 0)
		finish_req(r, b);
}

/* Waits for at least one completion and handles all that are there. */
static int uring_reap(struct snap_reader *r)
{
	struct io_uring_cqe *cqe;
	int ret;
	do
		ret = io_uring_wait_cqe(&r->ring, &cqe);
	while (ret == -EINTR || ret == -EAGAIN);
	if (ret < 0)
		return ret;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&r->ring, head, cqe)
	{
		uint64_t data = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		seen++;
		r->inflight--;
		complete_seg(r, data, res);
	}
	io_uring_cq_advance(&r->ring, seen);
	return 0;
}

/* ---- pread path ---- */

static void pread_req(struct snap_reader *r, unsigned b)
{
	struct req *q = &r->reqs[b];
	for (unsigned si = 0; si < q->nseg; si++) {
		struct seg *s = &q->seg[si];
		int a;
		q->pending--;
		if (q->err)
			continue;
		do {
			int64_t res = seg_fault(r, s);
			if (res == 0) {
				ssize_t n = pread(s->fd, slot_buf(r, b) + (s->pos - q->aoff),
						  (size_t)(s->end - s->pos), (off_t)s->pos);
				res = n < 0 ? -errno : n;
			}
			a = seg_advance(r, q, s, res);
		} while (a == 1);
	}
}

static void *pread_worker(void *arg)
{
	struct snap_reader *r = arg;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->quit && r->job_count == 0)
			pthread_cond_wait(&r->work_cond, &r->lock);
		if (r->quit)
			break;
		unsigned b = r->jobs[r->job_head];
		r->job_head = (r->job_head + 1) % r->qd;
		r->job_count--;
		r->state[b] = SLOT_BUSY;
		r->running++;
		pthread_mutex_unlock(&r->lock);

		pread_req(r, b);
		finish_req(r, b);

		pthread_mutex_lock(&r->lock);
		r->running--;
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* ---- both paths ---- */

/* Issues requests while there is work and a free slot. io_uring: called without the lock;
 * pread: called with it held. */
static void issue_more(struct snap_reader *r)
{
	while (has_more(r)) {
		if (r->uring)
			pthread_mutex_lock(&r->lock);
		if (r->nfree == 0) {
			if (r->uring)
				pthread_mutex_unlock(&r->lock);
			break;
		}
		unsigned b = r->free_stack[--r->nfree];
		r->state[b] = r->uring ? SLOT_BUSY : SLOT_QUEUED;
		r->order[(r->order_head + r->order_count) % r->qd] = b;
		r->order_count++;
		if (r->uring)
			pthread_mutex_unlock(&r->lock);

		uint64_t off;
		size_t len;
		cursor_take(r, &off, &len);
		setup_req(r, b, off, len);
		if (r->uring) {
			uring_issue_req(r, b);
		} else {
			r->jobs[(r->job_head + r->job_count) % r->qd] = b;
			r->job_count++;
			pthread_cond_signal(&r->work_cond);
		}
	}
}

/* Lets everything in flight finish and makes every slot that is not HELD free (invariant 6). */
static void drain(struct snap_reader *r)
{
	if (r->uring) {
		r->draining = true;
		if (r->prepared > 0)
			uring_submit(r);
		while (r->inflight > 0)
			if (uring_reap(r) < 0)
				break; /* cannot happen; io_uring_queue_exit() still waits for the
					  rest */
		r->draining = false;
		pthread_mutex_lock(&r->lock);
	} else {
		pthread_mutex_lock(&r->lock);
		r->job_count = 0; /* QUEUED slots are never read */
		while (r->running > 0)
			pthread_cond_wait(&r->cond, &r->lock);
	}
	for (unsigned b = 0; b < r->qd; b++) {
		if (r->state[b] == SLOT_FREE || r->state[b] == SLOT_HELD)
			continue;
		r->state[b] = SLOT_FREE;
		r->free_stack[r->nfree++] = b;
	}
	r->order_head = r->order_count = 0;
	pthread_mutex_unlock(&r->lock);
}

static bool env_force_pread(void)
{
	const char *e = getenv("SNAPBUNDLE_FORCE_PREAD");
	return e && *e && strcmp(e, "0") != 0;
}

/* "0" when io_uring may be used, else the sysctl's value (1: only a group, 2: nobody). */
static int uring_sysctl_disabled(void)
{
	int fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char c = '0';
	ssize_t n = read(fd, &c, 1);
	close(fd);
	return n == 1 && c >= '0' && c <= '9' ? c - '0' : 0;
}

static int uring_setup(struct snap_reader *r)
{
	unsigned entries = r->qd * 2; /* up to two segments per slot */
	int ret = io_uring_queue_init(entries, &r->ring, IORING_SETUP_COOP_TASKRUN);
	if (ret == -EINVAL) /* kernels before 5.19 */
		ret = io_uring_queue_init(entries, &r->ring, 0);
	if (ret < 0) {
		int d = uring_sysctl_disabled();
		if (d)
			snap_debug(
			    "io_uring unavailable (io_uring_setup: %s, io_uring_disabled=%d): "
			    "using pread",
			    strerror(-ret), d);
		else
			snap_debug("io_uring unavailable (io_uring_setup: %s): using pread",
				   strerror(-ret));
		return ret;
	}
	struct iovec *iov = calloc(r->qd, sizeof(*iov));
	if (!iov) {
		io_uring_queue_exit(&r->ring);
		return -ENOMEM;
	}
	for (unsigned b = 0; b < r->qd; b++) {
		iov[b].iov_base = slot_buf(r, b);
		iov[b].iov_len = r->buf_size;
	}
	ret = io_uring_register_buffers(&r->ring, iov, r->qd);
	free(iov);
	if (ret < 0) {
		/* Pinning needs RLIMIT_MEMLOCK room without CAP_IPC_LOCK: unregistered reads are
		 * a little slower but still asynchronous, which beats pread. */
		snap_debug("cannot register io_uring buffers (%s): using unregistered buffers",
			   strerror(-ret));
		r->fixed = false;
	} else {
		r->fixed = true;
	}
	r->uring = true;
	snap_debug("reading %s with io_uring: queue depth %u, request size %zu, %s buffers%s",
		   r->src->path, r->qd, r->rs, r->fixed ? "registered" : "unregistered",
		   r->src->direct ? ", O_DIRECT" : "");
	return 0;
}

static int pread_setup(struct snap_reader *r)
{
	r->jobs = calloc(r->qd, sizeof(*r->jobs));
	if (!r->jobs)
		return -ENOMEM;
	if (pthread_cond_init(&r->work_cond, NULL) != 0)
		return -ENOMEM;
	unsigned want = r->qd < READER_MAX_THREADS ? r->qd : READER_MAX_THREADS;
	for (unsigned i = 0; i < want; i++) {
		int e = pthread_create(&r->threads[i], NULL, pread_worker, r);
		if (e != 0) {
			if (r->nthreads > 0)
				break; /* fewer threads are slower, not wrong */
			return -e;
		}
		r->nthreads++;
	}
	snap_debug("reading %s with pread: %u threads, request size %zu%s", r->src->path,
		   r->nthreads, r->rs, r->src->direct ? ", O_DIRECT" : "");
	return 0;
}

int snap_reader_new(struct snap_src *src, const struct snap_reader_opts *opts,
		    struct snap_reader **ret)
{
	static const struct snap_reader_opts defaults;
	if (!src || !ret)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	uint32_t align = src->align ? src->align : 512;
	if (align & (align - 1))
		return -EINVAL;

	struct snap_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	int ret_code;
	r->src = src;
	r->fault = opts->fault;
	r->fault_userdata = opts->fault_userdata;
	r->qd = opts->queue_depth ? opts->queue_depth : READER_DEFAULT_QD;
	if (r->qd > READER_MAX_QD)
		r->qd = READER_MAX_QD;
	size_t rs = opts->request_size ? opts->request_size : READER_DEFAULT_RS;
	if (rs > READER_MAX_RS)
		rs = READER_MAX_RS;
	r->rs = (rs + align - 1) / align * align;
	r->align = src->direct ? align : 1;
	r->tail_start = src->direct ? src->size / align * align : src->size;
	/* An unaligned request of rs bytes spans at most rs + align aligned bytes. */
	size_t mem_align = align > 4096 ? align : 4096;
	r->buf_size = (r->rs + align + mem_align - 1) / mem_align * mem_align;

	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	void *mem = NULL;
	if (posix_memalign(&mem, mem_align, r->buf_size * r->qd) != 0) {
		ret_code = -ENOMEM;
		goto fail;
	}
	r->mem = mem;
	r->reqs = calloc(r->qd, sizeof(*r->reqs));
	r->state = calloc(r->qd, sizeof(*r->state));
	r->free_stack = calloc(r->qd, sizeof(*r->free_stack));
	r->order = calloc(r->qd, sizeof(*r->order));
	if (!r->reqs || !r->state || !r->free_stack || !r->order) {
		ret_code = -ENOMEM;
		goto fail;
	}
	/* Hand out slot 0 first: LIFO reuse keeps the hot buffers in cache. */
	for (unsigned b = 0; b < r->qd; b++)
		r->free_stack[b] = r->qd - 1 - b;
	r->nfree = r->qd;

	/* Buffered descriptors read ahead harder when told the access is sequential. */
	posix_fadvise(src->fd_buffered, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (!src->direct)
		posix_fadvise(src->fd, 0, 0, POSIX_FADV_SEQUENTIAL);

	bool force = opts->force_pread || env_force_pread();
	if (force)
		snap_debug("io_uring not used (%s): using pread",
			   opts->force_pread ? "forced" : "SNAPBUNDLE_FORCE_PREAD");
	if (force || uring_setup(r) < 0) {
		ret_code = pread_setup(r);
		if (ret_code < 0)
			goto fail;
	}
	*ret = r;
	return 0;
fail:
	snap_reader_free(r);
	return ret_code;
}

struct snap_reader *snap_reader_free(struct snap_reader *r)
{
	if (!r)
		return NULL;
	if (r->uring) {
		drain(r);
		io_uring_queue_exit(&r->ring);
	} else if (r->nthreads > 0) {
		drain(r);
		pthread_mutex_lock(&r->lock);
		r->quit = true;
		pthread_cond_broadcast(&r->work_cond);
		pthread_mutex_unlock(&r->lock);
		for (unsigned i = 0; i < r->nthreads; i++)
			pthread_join(r->threads[i], NULL);
	}
	if (r->jobs)
		pthread_cond_destroy(&r->work_cond);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r->jobs);
	free(r->order);
	free(r->free_stack);
	free(r->state);
	free(r->reqs);
	free(r->ranges);
	free(r->error);
	free(r->mem);
	free(r);
	return NULL;
}

bool snap_reader_uses_uring(const struct snap_reader *r)
{
	return r->uring;
}

size_t snap_reader_request_size(const struct snap_reader *r)
{
	return r->rs;
}

unsigned snap_reader_queue_depth(const struct snap_reader *r)
{
	return r->qd;
}

int snap_reader_start(struct snap_reader *r, const struct snap_range *ranges, size_t n)
{
	uint64_t prev_end = 0;
	for (size_t i = 0; i < n; i++) {
		const struct snap_range *g = &ranges[i];
		if (g->offset < prev_end || g->offset > r->src->size ||
		    g->length > r->src->size - g->offset)
			return -EINVAL;
		prev_end = g->offset + g->length;
	}
	struct snap_range *copy = NULL;
	if (n > 0) {
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, ranges, n * sizeof(*copy));
	}
	drain(r);
	free(r->ranges);
	r->ranges = copy;
	r->nranges = n;
	r->ri = 0;
	r->ro = 0;
	r->stopped = false;
	r->err = 0;
	free(r->error);
	r->error = NULL;
	return 0;
}

static int set_failure(struct snap_reader *r, const struct req *q)
{
	r->err = q->err;
	free(r->error);
	if (asprintf(&r->error, "cannot read %s at offset %llu: %s", r->src->path,
		     (unsigned long long)q->err_off, strerror(-q->err)) < 0)
		r->error = NULL;
	return r->err;
}

/* Hands out the head of the FIFO if it is finished; called with the lock held. 1: *ret is
 * filled, <0: the head failed, 0: not finished. */
static int take_head(struct snap_reader *r, struct snap_chunk *ret)
{
	if (r->order_count == 0)
		return 0;
	unsigned b = r->order[r->order_head];
	const struct req *q = &r->reqs[b];
	if (r->state[b] == SLOT_FAILED)
		return set_failure(r, q);
	if (r->state[b] != SLOT_DONE)
		return 0;
	r->state[b] = SLOT_HELD;
	r->order_head = (r->order_head + 1) % r->qd;
	r->order_count--;
	ret->offset = q->offset;
	ret->length = q->length;
	ret->data = slot_buf(r, b) + (q->offset - q->aoff);
	ret->buffer = b;
	return 1;
}

int snap_reader_next(struct snap_reader *r, struct snap_chunk *ret)
{
	int t;
	if (r->err)
		return r->err;
	if (!r->uring) {
		pthread_mutex_lock(&r->lock);
		for (;;) {
			issue_more(r);
			t = take_head(r, ret);
			if (t != 0)
				break;
			if (r->order_count == 0 && !has_more(r))
				break; /* the end of the list */
			pthread_cond_wait(&r->cond, &r->lock);
		}
		pthread_mutex_unlock(&r->lock);
		return t;
	}
	for (;;) {
		issue_more(r);
		if (uring_submit(r) < 0)
			return r->err;
		pthread_mutex_lock(&r->lock);
		t = take_head(r, ret);
		if (t != 0 || (r->order_count == 0 && !has_more(r))) {
			pthread_mutex_unlock(&r->lock);
			return t;
		}
		if (r->order_count == 0) {
			/* Every slot is the consumer's: wait for a release. */
			while (r->nfree == 0)
				pthread_cond_wait(&r->cond, &r->lock);
			pthread_mutex_unlock(&r->lock);
			continue;
		}
		pthread_mutex_unlock(&r->lock);
		/* The head is issued and not finished, so it is in flight. */
		int ret_reap = uring_reap(r);
		if (ret_reap < 0) {
			if (!r->err) {
				r->err = ret_reap;
				free(r->error);
				if (asprintf(&r->error, "cannot read %s: io_uring_wait_cqe: %s",
					     r->src->path, strerror(-ret_reap)) < 0)
					r->error = NULL;
			}
			r->stopped = true;
			return r->err;
		}
	}
}

void snap_reader_release(struct snap_reader *r, const struct snap_chunk *chunk)
{
	if (!r || !chunk)
		return;
	unsigned b = chunk->buffer;
	pthread_mutex_lock(&r->lock);
	if (b < r->qd && r->state[b] == SLOT_HELD) {
		r->state[b] = SLOT_FREE;
		r->free_stack[r->nfree++] = b;
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
}

const char *snap_reader_error(const struct snap_reader *r)
{
	return r->error ? r->error : "";
}

uint64_t snap_reader_bytes_read(const struct snap_reader *r)
{
	return __atomic_load_n(&r->bytes_read, __ATOMIC_RELAXED);
}
