// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * s3-writer.c - an object written from start to end (s3.h, W1-W3).
 *
 * Invariants:
 *  1. Every part but the last holds exactly part_size bytes, so part N covers the object's bytes
 *     [(N - 1) * part_size, N * part_size) and a resume continues at nparts * part_size.
 *  2. Every byte of a body in memory is counted in the client's budget while it is held: a part
 *     buffer from the first byte put in it until its upload is acknowledged, the stream ring
 *     for the writer's life, the single PUT's buffer as it grows. held <= budget follows.
 *  3. Uploads in flight are a FIFO queue served by one reaper thread per multipart writer, which
 *     waits for each in order, keeps its ETag, frees its buffer and then tells on_part: parts
 *     are reported in order, each after every earlier one.
 *  4. A streamed part commits to its length when its request starts, which happens when the
 *     ring is full or the part's bytes are all in the ring. The ring only ever holds bytes of
 *     the streaming part: the first byte of the next part waits until the request took the
 *     last byte of the previous one (stream_active false).
 *  5. The first failure (err, detail) is kept; every later call returns it; the stream's read
 *     callback sees it and fails its request instead of waiting for bytes that will not come.
 *  6. The stream's read callback runs in the transport thread and never waits there: with the
 *     ring empty it pauses its request (-EAGAIN), and the writer resumes it when bytes come or
 *     a failure is kept. stream_put is only resumed under the lock while it is set, and the
 *     reaper clears it before put_wait frees the request.
 *  7. A streamed part whose request was started for more bytes than the object turns out to
 *     have (snap_s3_writer_rewind) is abandoned: its read callback fails the request (the
 *     service stores nothing of it), the reaper drops its entry without a failure or an
 *     on_part, and the writer goes back to the part's first byte with the same part number:
 *     the caller writes the part's bytes again, and its new request has their exact length.
 *
 * State transitions:
 *  open (snap_s3_writer_new, snap_s3_writer_resume) -> ended (snap_s3_writer_end) ->
 *  committed (snap_s3_writer_commit); from any state but committed: aborted
 *  (snap_s3_writer_abort, or snap_s3_writer_free before commit).
 */
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

/* The stream ring: bytes of a streamed part between the caller and its request. */
#define STREAM_RING_SIZE (4u << 20)
/* The single PUT's buffer grows by doubling from this. */
#define SINGLE_MIN_CAP (1u << 20)

enum writer_state { W_OPEN, W_ENDED, W_COMMITTED, W_ABORTED };

struct inflight {
	struct inflight *next;
	uint32_t number;
	uint64_t start, end; /* the object's bytes in the part */
	void *buf;	     /* body in memory; NULL when streamed */
	uint64_t held;	     /* budget bytes to release when it is done */
	struct snap_s3_put *put;
	bool mapped; /* buf is a part buffer (part_buf_new), not a single PUT's body */
};

struct snap_s3_writer {
	struct snap_s3_client *c;
	char *bucket, *key;
	unsigned flags;
	bool multipart, stream;
	uint64_t part_size;
	struct snap_s3_put_options opts; /* deep copy (the single PUT sends it at end) */
	char *upload_id;
	enum writer_state state;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	int err;
	char *detail;

	uint64_t offset; /* bytes taken */
	uint64_t size;	 /* snap_s3_writer_set_size, UINT64_MAX when unknown */
	uint32_t next_number;
	char **etags; /* [number - 1], set as parts are acknowledged */
	uint32_t etags_cap;

	/* buffered multipart: the part being filled */
	uint8_t *cur;
	uint64_t cur_len;

	/* streamed multipart (invariant 4) */
	uint8_t *ring;
	size_t ring_size, ring_head, ring_fill;
	bool stream_active;		/* a request started that has not taken all its bytes */
	bool part_started;		/* the current part's request started */
	bool stream_paused;		/* its read callback found the ring empty (-EAGAIN) */
	struct snap_s3_put *stream_put; /* resumable: set while stream_active */
	uint32_t abandon;		/* the part abandoned (invariant 7) */
	uint64_t stream_len, stream_fed;
	uint64_t part_written; /* bytes of the current streamed part taken from the caller */

	/* single PUT */
	uint8_t *single;
	size_t single_len, single_cap;
	char *single_etag;
	bool stored; /* the object exists (PUT done, or upload completed): abort deletes it */

	/* parts in flight (invariant 3) */
	struct inflight *head, *tail;
	unsigned ninflight, max_inflight;
	pthread_t reaper;
	bool reaper_running, stopping;

	snap_s3_part_done_fn on_part;
	void *on_part_userdata;
	uint64_t held, peak;
};

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* The first failure, under lock. detail is taken. */
__attribute__((format(printf, 4, 5))) static void fail_locked(struct snap_s3_writer *w, int r,
							      char *detail, const char *fmt, ...)
{
	if (w->err == 0) {
		char *what = NULL;
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(&what, fmt, ap) < 0)
			what = NULL;
		va_end(ap);
		w->err = r;
		if (w->stream_put && w->stream_paused) {
			w->stream_paused = false;
			snap_s3_put_resume(w->stream_put);
		}
		if (asprintf(&w->detail, "s3://%s/%s: %s%s%s", w->bucket, w->key, what ? what : "",
			     detail ? ": " : "", detail ? detail : "") < 0)
			w->detail = NULL;
		free(what);
		pthread_cond_broadcast(&w->cond);
	}
	free(detail);
}

static void hold(struct snap_s3_writer *w, uint64_t bytes)
{
	pthread_mutex_lock(&w->lock);
	w->held += bytes;
	if (w->held > w->peak)
		w->peak = w->held;
	pthread_mutex_unlock(&w->lock);
}

static void unhold(struct snap_s3_writer *w, uint64_t bytes)
{
	if (!bytes)
		return;
	pthread_mutex_lock(&w->lock);
	w->held -= bytes;
	pthread_mutex_unlock(&w->lock);
	snap_s3_budget_release(w->c, bytes);
}

static int budget_take(struct snap_s3_writer *w, uint64_t bytes)
{
	int r = snap_s3_budget_acquire(w->c, bytes);
	if (r < 0)
		return r;
	hold(w, bytes);
	return 0;
}

/* Part buffers are mapped and unmapped whole: glibc would keep a freed 16 MiB buffer in the
 * arena of the thread that freed it (the dynamic mmap threshold rises past it after the first
 * one), and with buffers freed on the transport's side and taken on the writer's the process
 * held 15-50 MiB more than the budget (store -o s3:// of the realistic disk: 226 MiB peak RSS
 * against 195 MiB with every buffer mapped). */
static void *part_buf_new(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void part_buf_free(void *p, size_t n)
{
	if (p)
		munmap(p, n);
}

static void inflight_buf_free(struct snap_s3_writer *w, struct inflight *e)
{
	if (e->mapped)
		part_buf_free(e->buf, w->part_size);
	else
		free(e->buf);
	e->buf = NULL;
}

static int get_err(struct snap_s3_writer *w)
{
	pthread_mutex_lock(&w->lock);
	int r = w->err;
	pthread_mutex_unlock(&w->lock);
	return r;
}

static int set_etag(struct snap_s3_writer *w, uint32_t number, const char *etag)
{
	if (number > w->etags_cap) {
		uint32_t cap = w->etags_cap ? w->etags_cap : 64;
		while (cap < number)
			cap *= 2;
		char **n = realloc(w->etags, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + w->etags_cap, 0, (cap - w->etags_cap) * sizeof(*n));
		w->etags = n;
		w->etags_cap = cap;
	}
	char *e = strdup(etag);
	if (!e)
		return -ENOMEM;
	free(w->etags[number - 1]);
	w->etags[number - 1] = e;
	return 0;
}

static void *reaper_main(void *arg)
{
	struct snap_s3_writer *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->head && !w->stopping)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->head)
			break;
		struct inflight *e = w->head;
		/* A stream is resumable until it took all its bytes (invariant 6). */
		while (w->stream_put && w->stream_put == e->put && !w->err && !w->abandon)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stream_put == e->put)
			w->stream_put = NULL;
		pthread_mutex_unlock(&w->lock);

		char *etag = NULL, *detail = NULL;
		int r = snap_s3_put_wait(e->put, &etag, &detail);
		e->put = NULL;
		inflight_buf_free(w, e);
		unhold(w, e->held);
		pthread_mutex_lock(&w->lock);
		/* invariant 7: the abandoned request's end is no failure, and no part */
		bool dropped = e->number && e->number == w->abandon;
		pthread_mutex_unlock(&w->lock);
		if (r >= 0 && w->on_part && e->number && !dropped)
			w->on_part(w->on_part_userdata, e->number, etag, e->end);

		pthread_mutex_lock(&w->lock);
		if (dropped) {
			w->abandon = 0;
		} else if (r >= 0 && !e->number) {
			/* the single PUT (W2): its buffer is released now, not at commit */
			w->single_etag = etag;
			etag = NULL;
			w->stored = true;
		} else if (r >= 0) {
			r = set_etag(w, e->number, etag);
			if (r < 0)
				fail_locked(w, r, NULL, "part %u", e->number);
		} else if (!e->number) {
			fail_locked(w, r, detail, "PUT of %llu bytes", (unsigned long long)e->end);
			detail = NULL;
		} else {
			fail_locked(w, r, detail, "part %u (bytes %llu-%llu)", e->number,
				    (unsigned long long)e->start, (unsigned long long)e->end);
			detail = NULL;
		}
		free(etag);
		free(detail);
		w->head = e->next;
		if (!w->head)
			w->tail = NULL;
		w->ninflight--;
		free(e);
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Queues a started upload for the reaper. */
static void enqueue(struct snap_s3_writer *w, struct inflight *e)
{
	pthread_mutex_lock(&w->lock);
	e->next = NULL;
	if (w->tail)
		w->tail->next = e;
	else
		w->head = e;
	w->tail = e;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static int copy_pairs(const struct snap_s3_pair *src, size_t n, struct snap_s3_pair **ret)
{
	if (!n) {
		*ret = NULL;
		return 0;
	}
	struct snap_s3_pair *p = calloc(n, sizeof(*p));
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		p[i].name = xstrdup(src[i].name);
		p[i].value = xstrdup(src[i].value);
		if (!p[i].name || !p[i].value) {
			for (size_t j = 0; j <= i; j++) {
				free((char *)p[j].name);
				free((char *)p[j].value);
			}
			free(p);
			return -ENOMEM;
		}
	}
	*ret = p;
	return 0;
}

static void free_pairs(const struct snap_s3_pair *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)p[i].name);
		free((char *)p[i].value);
	}
	free((void *)p);
}

static int copy_options(struct snap_s3_put_options *dst, const struct snap_s3_put_options *o)
{
	struct snap_s3_pair *meta = NULL, *tags = NULL;

	*dst = (struct snap_s3_put_options){0};
	if (!o)
		return 0;
	if (copy_pairs(o->meta, o->nmeta, &meta) < 0)
		return -ENOMEM;
	if (copy_pairs(o->tags, o->ntags, &tags) < 0) {
		free_pairs(meta, o->nmeta);
		return -ENOMEM;
	}
	dst->meta = meta;
	dst->nmeta = o->nmeta;
	dst->tags = tags;
	dst->ntags = o->ntags;
	dst->if_none_match = o->if_none_match;
	dst->acl = xstrdup(o->acl);
	dst->content_type = xstrdup(o->content_type);
	if ((o->acl && !dst->acl) || (o->content_type && !dst->content_type))
		return -ENOMEM;
	return 0;
}

static void free_options(struct snap_s3_put_options *o)
{
	free_pairs(o->meta, o->nmeta);
	free_pairs(o->tags, o->ntags);
	free((char *)o->acl);
	free((char *)o->content_type);
	*o = (struct snap_s3_put_options){0};
}

static struct snap_s3_writer *writer_alloc(struct snap_s3_client *c, const char *bucket,
					   const char *key, unsigned flags, uint64_t part_size,
					   char **ret_detail, int *ret_err)
{
	*ret_err = -ENOMEM;
	if (!part_size)
		part_size = SNAP_S3_DEFAULT_PART_SIZE;
	if ((flags & SNAP_S3_WRITER_MULTIPART) &&
	    (part_size < SNAP_S3_MIN_PART_SIZE || part_size > SNAP_S3_MAX_PART_SIZE)) {
		*ret_err = -EINVAL;
		if (ret_detail &&
		    asprintf(ret_detail, "s3://%s/%s: part size %llu is not in %llu..%llu", bucket,
			     key, (unsigned long long)part_size,
			     (unsigned long long)SNAP_S3_MIN_PART_SIZE,
			     (unsigned long long)SNAP_S3_MAX_PART_SIZE) < 0)
			*ret_detail = NULL;
		return NULL;
	}
	struct snap_s3_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->c = c;
	w->flags = flags;
	w->multipart = flags & SNAP_S3_WRITER_MULTIPART;
	w->part_size = part_size;
	w->stream = w->multipart &&
		    ((flags & SNAP_S3_WRITER_STREAM) || part_size > SNAP_S3_MAX_BUFFERED_PART);
	w->size = UINT64_MAX;
	w->next_number = 1;
	w->max_inflight = snap_s3_client_connections(c);
	w->bucket = strdup(bucket);
	w->key = strdup(key);
	if (!w->bucket || !w->key) {
		w->state = W_ABORTED;
		return snap_s3_writer_free(w);
	}
	return w;
}

/* What a multipart writer needs before its first byte: the ring, the reaper. */
static int writer_start(struct snap_s3_writer *w)
{
	int r;

	if (w->stream) {
		w->ring_size = STREAM_RING_SIZE;
		r = budget_take(w, w->ring_size);
		if (r < 0)
			return r;
		w->ring = malloc(w->ring_size);
		if (!w->ring)
			return -ENOMEM;
	}
	r = -pthread_create(&w->reaper, NULL, reaper_main, w);
	if (r < 0)
		return r;
	w->reaper_running = true;
	return 0;
}

int snap_s3_writer_new(struct snap_s3_client *c, const char *bucket, const char *key,
		       unsigned flags, uint64_t part_size, const struct snap_s3_put_options *o,
		       struct snap_s3_writer **ret, char **ret_detail)
{
	int r;
	struct snap_s3_writer *w = writer_alloc(c, bucket, key, flags, part_size, ret_detail, &r);
	if (!w)
		return r;
	r = copy_options(&w->opts, o);
	if (r < 0)
		goto fail;
	if (w->multipart) {
		r = snap_s3_create_upload(c, bucket, key, o, &w->upload_id, ret_detail);
		if (r < 0)
			goto fail;
		r = writer_start(w);
		if (r < 0)
			goto fail;
	}
	*ret = w;
	return 0;
fail:
	snap_s3_writer_free(w);
	return r;
}

int snap_s3_writer_resume(struct snap_s3_client *c, const char *bucket, const char *key,
			  const char *upload_id, const struct snap_s3_part *parts, size_t nparts,
			  uint64_t part_size, struct snap_s3_writer **ret, char **ret_detail)
{
	struct snap_s3_list_parts *l = NULL;
	int r;
	struct snap_s3_writer *w =
	    writer_alloc(c, bucket, key, SNAP_S3_WRITER_MULTIPART | SNAP_S3_WRITER_KEEP, part_size,
			 ret_detail, &r);
	if (!w)
		return r;
	r = -ENOMEM;
	w->upload_id = strdup(upload_id);
	if (!w->upload_id)
		goto fail;
	if (nparts >= SNAP_S3_MAX_PARTS) {
		r = -EFBIG;
		if (ret_detail && asprintf(ret_detail, "s3://%s/%s: %zu parts done, no part left",
					   bucket, key, nparts) < 0)
			*ret_detail = NULL;
		goto fail;
	}
	r = snap_s3_list_parts(c, bucket, key, upload_id, &l, ret_detail);
	if (r < 0)
		goto fail;
	size_t j = 0;
	for (size_t i = 0; i < nparts; i++) {
		uint32_t number = i + 1;
		const char *why = NULL;
		while (j < l->nparts && l->parts[j].part_number < number)
			j++;
		if (parts[i].part_number != number)
			why = "is not in order in the checkpoint";
		else if (j == l->nparts || l->parts[j].part_number != number)
			why = "is missing from the upload";
		else if (l->parts[j].size != w->part_size ||
			 (parts[i].size && parts[i].size != l->parts[j].size))
			why = "has another size in the upload";
		else if (!parts[i].etag || !snap_s3_etag_equal(parts[i].etag, l->parts[j].etag))
			why = "has another ETag in the upload";
		if (why) {
			r = -ESTALE;
			if (ret_detail &&
			    asprintf(
				ret_detail, "s3://%s/%s: upload %s: part %u %s (%s, %llu bytes)",
				bucket, key, upload_id, number, why,
				j < l->nparts ? l->parts[j].etag : "none",
				j < l->nparts ? (unsigned long long)l->parts[j].size : 0ull) < 0)
				*ret_detail = NULL;
			goto fail;
		}
		r = set_etag(w, number, l->parts[j].etag);
		if (r < 0)
			goto fail;
	}
	w->next_number = nparts + 1;
	w->offset = nparts * w->part_size;
	r = writer_start(w);
	if (r < 0)
		goto fail;
	snap_s3_list_parts_free(l);
	*ret = w;
	return 0;
fail:
	snap_s3_list_parts_free(l);
	/* Not ours to abort: the upload stays as it was found. */
	w->state = W_ABORTED;
	snap_s3_writer_free(w);
	return r;
}

void snap_s3_writer_on_part(struct snap_s3_writer *w, snap_s3_part_done_fn fn, void *userdata)
{
	w->on_part = fn;
	w->on_part_userdata = userdata;
}

int snap_s3_writer_set_size(struct snap_s3_writer *w, uint64_t size)
{
	if (size < w->offset)
		return -EINVAL;
	w->size = size;
	return 0;
}

int snap_s3_writer_rewind(struct snap_s3_writer *w, uint64_t size, uint64_t *ret_offset)
{
	int r = get_err(w);
	if (r < 0)
		return r;
	if (w->state != W_OPEN || size < w->offset || size == UINT64_MAX)
		return -EINVAL;
	uint64_t start = w->offset - w->part_written;
	if (!w->stream || !w->part_started || w->stream_len <= size - start) {
		/* nothing promised beyond size: the part (if started) ends where it said */
		w->size = size;
		*ret_offset = w->offset;
		return 0;
	}
	/* invariant 7: the started part is the latest one queued, and it still streams */
	uint32_t number = w->next_number - 1;
	pthread_mutex_lock(&w->lock);
	w->abandon = number;
	if (w->stream_put && w->stream_paused) {
		w->stream_paused = false;
		snap_s3_put_resume(w->stream_put);
	}
	pthread_cond_broadcast(&w->cond);
	while (w->abandon && !w->err)
		pthread_cond_wait(&w->cond, &w->lock);
	r = w->err;
	if (r == 0) {
		w->ring_head = w->ring_fill = 0;
		w->stream_active = false;
		w->stream_put = NULL;
		w->stream_paused = false;
		w->stream_len = w->stream_fed = 0;
	}
	pthread_mutex_unlock(&w->lock);
	if (r < 0)
		return r;
	w->part_started = false;
	w->part_written = 0;
	w->offset = start;
	w->next_number = number;
	w->size = size;
	*ret_offset = start;
	return 0;
}

uint64_t snap_s3_writer_offset(const struct snap_s3_writer *w)
{
	return w->offset;
}

uint64_t snap_s3_writer_peak_held(const struct snap_s3_writer *w)
{
	return w->peak;
}

const char *snap_s3_writer_upload_id(const struct snap_s3_writer *w)
{
	return w->upload_id;
}

const char *snap_s3_writer_error(const struct snap_s3_writer *w)
{
	return w->detail;
}

static int fail(struct snap_s3_writer *w, int r, char *detail, const char *what, uint32_t number)
{
	char part[32] = "";
	if (number)
		snprintf(part, sizeof(part), "part %u ", number);
	pthread_mutex_lock(&w->lock);
	fail_locked(w, r, detail, "%s%s%sat offset %llu", what, *what ? " " : "", part,
		    (unsigned long long)w->offset);
	r = w->err;
	pthread_mutex_unlock(&w->lock);
	return r;
}

/* A new part number is taken: at most SNAP_S3_MAX_PARTS. */
static int part_number_check(struct snap_s3_writer *w)
{
	if (w->next_number <= SNAP_S3_MAX_PARTS)
		return 0;
	return fail(w, -EFBIG, NULL,
		    "more than 10000 parts of this size (part_size is too small):", w->next_number);
}

/* Buffered multipart: uploads the part being filled in the background. */
static int submit_cur(struct snap_s3_writer *w)
{
	static const uint8_t empty[1];
	struct inflight *e = calloc(1, sizeof(*e));
	if (!e)
		return fail(w, -ENOMEM, NULL, "", w->next_number);
	e->number = w->next_number;
	e->start = w->offset - w->cur_len;
	e->end = w->offset;
	e->buf = w->cur;
	e->mapped = w->cur != NULL;
	e->held = w->cur ? w->part_size : 0;
	int r = snap_s3_put_start(w->c, w->bucket, w->key, w->upload_id, e->number,
				  w->cur ? (const void *)w->cur : empty, w->cur_len, NULL, &e->put);
	w->cur = NULL;
	w->cur_len = 0;
	if (r < 0) {
		inflight_buf_free(w, e);
		unhold(w, e->held);
		free(e);
		return fail(w, r, NULL, "cannot start", w->next_number);
	}
	pthread_mutex_lock(&w->lock);
	w->ninflight++;
	pthread_mutex_unlock(&w->lock);
	w->next_number++;
	enqueue(w, e);
	return 0;
}

/* Buffered multipart: a part buffer for the next bytes, once fewer than max_inflight parts are
 * in flight and the budget has room. */
static int take_cur(struct snap_s3_writer *w)
{
	int r = part_number_check(w);
	if (r < 0)
		return r;
	pthread_mutex_lock(&w->lock);
	while (w->ninflight >= w->max_inflight && !w->err)
		pthread_cond_wait(&w->cond, &w->lock);
	r = w->err;
	pthread_mutex_unlock(&w->lock);
	if (r < 0)
		return r;
	r = budget_take(w, w->part_size);
	if (r < 0)
		return fail(w, r, NULL, "memory budget for", w->next_number);
	w->cur = part_buf_new(w->part_size);
	if (!w->cur) {
		unhold(w, w->part_size);
		return fail(w, -ENOMEM, NULL, "", w->next_number);
	}
	return 0;
}

static int write_buffered(struct snap_s3_writer *w, const uint8_t *p, size_t len)
{
	while (len) {
		int r;
		if (!w->cur) {
			r = take_cur(w);
			if (r < 0)
				return r;
		}
		size_t n = w->part_size - w->cur_len;
		if (n > len)
			n = len;
		memcpy(w->cur + w->cur_len, p, n);
		w->cur_len += n;
		w->offset += n;
		p += n;
		len -= n;
		if (w->cur_len == w->part_size) {
			r = submit_cur(w);
			if (r < 0)
				return r;
		}
		r = get_err(w);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The stream's read callback, from the transport: the ring's bytes of the streaming part. */
static long stream_read(void *userdata, void *buf, size_t room)
{
	struct snap_s3_writer *w = userdata;

	pthread_mutex_lock(&w->lock);
	if (w->err || w->abandon) {
		pthread_mutex_unlock(&w->lock);
		return -ECANCELED;
	}
	if (w->ring_fill == 0) {
		w->stream_paused = true;
		pthread_mutex_unlock(&w->lock);
		return -EAGAIN;
	}
	size_t n = w->ring_fill;
	if (n > room)
		n = room;
	if (n > w->stream_len - w->stream_fed)
		n = w->stream_len - w->stream_fed;
	if (n > w->ring_size - w->ring_head)
		n = w->ring_size - w->ring_head;
	if (n == 0) {
		pthread_mutex_unlock(&w->lock);
		return -EIO;
	}
	memcpy(buf, w->ring + w->ring_head, n);
	w->ring_head = (w->ring_head + n) % w->ring_size;
	w->ring_fill -= n;
	w->stream_fed += n;
	if (w->stream_fed == w->stream_len) {
		w->stream_active = false;
		w->stream_put = NULL;
	}
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return (long)n;
}

/* Starts the request of the streamed part being written, for len bytes (invariant 4). */
static int stream_start(struct snap_s3_writer *w, uint64_t len)
{
	struct inflight *e = calloc(1, sizeof(*e));
	if (!e)
		return fail(w, -ENOMEM, NULL, "", w->next_number);
	e->number = w->next_number;
	e->start = w->offset - w->part_written;
	e->end = e->start + len;
	pthread_mutex_lock(&w->lock);
	w->stream_active = len > 0;
	w->part_started = true;
	w->stream_len = len;
	w->stream_fed = 0;
	w->ninflight++;
	/* Under the lock: the callback may run before stream_put is set. */
	int r = snap_s3_put_stream_start(w->c, w->bucket, w->key, w->upload_id, e->number, len,
					 stream_read, w, &e->put);
	if (r < 0) {
		w->stream_active = false;
		w->ninflight--;
		pthread_mutex_unlock(&w->lock);
		free(e);
		return fail(w, r, NULL, "cannot start", w->next_number);
	}
	if (w->stream_active)
		w->stream_put = e->put;
	w->stream_paused = false;
	pthread_mutex_unlock(&w->lock);
	w->next_number++;
	enqueue(w, e);
	return 0;
}

/* The length a streamed part will have: part_size, or less when the size says it is the last. */
static uint64_t stream_part_len(struct snap_s3_writer *w)
{
	uint64_t start = w->offset - w->part_written;
	if (w->size != UINT64_MAX && w->size - start < w->part_size)
		return w->size - start;
	return w->part_size;
}

static int write_streamed(struct snap_s3_writer *w, const uint8_t *p, size_t len)
{
	int r;

	while (len) {
		if (w->part_written == 0) {
			/* The first byte of a part: the previous one took all its bytes. */
			pthread_mutex_lock(&w->lock);
			while (w->stream_active && !w->err)
				pthread_cond_wait(&w->cond, &w->lock);
			r = w->err;
			pthread_mutex_unlock(&w->lock);
			if (r < 0)
				return r;
			r = part_number_check(w);
			if (r < 0)
				return r;
		}
		uint64_t plen = stream_part_len(w);
		pthread_mutex_lock(&w->lock);
		while (w->ring_fill == w->ring_size && !w->err) {
			if (!w->part_started) {
				pthread_mutex_unlock(&w->lock);
				r = stream_start(w, plen);
				if (r < 0)
					return r;
				pthread_mutex_lock(&w->lock);
				continue;
			}
			pthread_cond_wait(&w->cond, &w->lock);
		}
		r = w->err;
		if (r < 0) {
			pthread_mutex_unlock(&w->lock);
			return r;
		}
		size_t tail = (w->ring_head + w->ring_fill) % w->ring_size;
		size_t n = w->ring_size - w->ring_fill;
		if (n > w->ring_size - tail)
			n = w->ring_size - tail;
		if (n > len)
			n = len;
		if (n > plen - w->part_written)
			n = plen - w->part_written;
		memcpy(w->ring + tail, p, n);
		w->ring_fill += n;
		if (w->stream_put && w->stream_paused) {
			w->stream_paused = false;
			snap_s3_put_resume(w->stream_put);
		}
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		w->part_written += n;
		w->offset += n;
		p += n;
		len -= n;
		if (w->part_written == plen) {
			if (!w->part_started) {
				r = stream_start(w, plen);
				if (r < 0)
					return r;
			}
			w->part_written = 0;
			w->part_started = false;
		}
	}
	return 0;
}

int snap_s3_writer_write(struct snap_s3_writer *w, const void *buf, size_t len)
{
	int r = get_err(w);
	if (r < 0)
		return r;
	if (w->state != W_OPEN)
		return -EINVAL;
	if (!len)
		return 0;
	if (w->size != UINT64_MAX && len > w->size - w->offset)
		return fail(w, -EFBIG, NULL, "more bytes than the size given", 0);
	if (w->stream)
		return write_streamed(w, buf, len);
	if (w->multipart)
		return write_buffered(w, buf, len);

	if (len > SNAP_S3_MAX_BUFFERED_PART - w->single_len)
		return fail(w, -EFBIG, NULL, "a single PUT holds at most 32 MiB (use multipart)",
			    0);
	if (w->single_len + len > w->single_cap) {
		size_t cap = w->single_cap ? w->single_cap : SINGLE_MIN_CAP;
		while (cap < w->single_len + len)
			cap *= 2;
		if (cap > SNAP_S3_MAX_BUFFERED_PART)
			cap = SNAP_S3_MAX_BUFFERED_PART;
		r = budget_take(w, cap - w->single_cap);
		if (r < 0)
			return fail(w, r, NULL, "memory budget", 0);
		uint8_t *n = realloc(w->single, cap);
		if (!n) {
			unhold(w, cap - w->single_cap);
			return fail(w, -ENOMEM, NULL, "", 0);
		}
		w->single = n;
		w->single_cap = cap;
	}
	memcpy(w->single + w->single_len, buf, len);
	w->single_len += len;
	w->offset += len;
	return 0;
}

/* The single PUT, in the background: the reaper waits for it and releases its buffer. */
static int submit_single(struct snap_s3_writer *w)
{
	static const uint8_t empty[1];
	struct inflight *e = calloc(1, sizeof(*e));
	if (!e)
		return fail(w, -ENOMEM, NULL, "", 0);
	e->end = w->single_len;
	int r = snap_s3_put_start(w->c, w->bucket, w->key, NULL, 0,
				  w->single ? (const void *)w->single : empty, w->single_len,
				  &w->opts, &e->put);
	if (r >= 0 && !w->reaper_running) {
		r = -pthread_create(&w->reaper, NULL, reaper_main, w);
		if (r < 0) {
			char *etag = NULL;
			snap_s3_put_wait(e->put, &etag, NULL);
			free(etag);
		} else {
			w->reaper_running = true;
		}
	}
	if (r < 0) {
		free(e);
		return fail(w, r, NULL, "cannot start the PUT", 0);
	}
	e->buf = w->single;
	e->held = w->single_cap;
	w->single = NULL;
	w->single_cap = 0;
	pthread_mutex_lock(&w->lock);
	w->ninflight++;
	pthread_mutex_unlock(&w->lock);
	enqueue(w, e);
	return 0;
}

static int end_streamed(struct snap_s3_writer *w)
{
	if (w->part_written > 0 && w->part_started) {
		/* This part's request started and was promised more than came. */
		return fail(w, -EINVAL, NULL,
			    "the object ended inside a streamed part whose request was started "
			    "for part_size bytes (snap_s3_writer_set_size tells the size ahead):",
			    w->next_number - 1);
	}
	if (w->part_written > 0) {
		int r = stream_start(w, w->part_written);
		w->part_written = 0;
		w->part_started = false;
		return r;
	}
	if (w->next_number == 1) {
		/* An empty object is still one (empty) part. */
		return submit_cur(w);
	}
	return 0;
}

int snap_s3_writer_end(struct snap_s3_writer *w)
{
	int r = get_err(w);
	if (r < 0)
		return r;
	if (w->state != W_OPEN)
		return w->state == W_ENDED ? 0 : -EINVAL;
	if (w->size != UINT64_MAX && w->offset != w->size)
		return fail(w, -EINVAL, NULL, "the object ended before the size given", 0);
	if (w->stream)
		r = end_streamed(w);
	else if (w->multipart)
		r = w->cur || w->next_number == 1 ? submit_cur(w) : 0;
	else
		r = submit_single(w);
	if (r < 0)
		return r;
	w->state = W_ENDED;
	return 0;
}

/* Waits until no upload is in flight. */
static void drain(struct snap_s3_writer *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->head)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

static void stop_reaper(struct snap_s3_writer *w)
{
	if (!w->reaper_running)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->reaper, NULL);
	w->reaper_running = false;
}

int snap_s3_writer_commit(struct snap_s3_writer *w, char **ret_etag)
{
	char *etag = NULL, *detail = NULL;
	int r;

	if (w->state == W_OPEN) {
		r = snap_s3_writer_end(w);
		if (r < 0)
			return r;
	}
	if (w->state != W_ENDED)
		return get_err(w) < 0 ? get_err(w) : -EINVAL;

	if (!w->multipart) {
		drain(w);
		r = get_err(w);
		if (r < 0)
			return r;
		etag = w->single_etag;
		w->single_etag = NULL;
	} else {
		drain(w);
		r = get_err(w);
		if (r < 0)
			return r;
		uint32_t n = w->next_number - 1;
		struct snap_s3_part *parts = calloc(n, sizeof(*parts));
		if (!parts)
			return fail(w, -ENOMEM, NULL, "", 0);
		for (uint32_t i = 0; i < n; i++) {
			parts[i].part_number = i + 1;
			parts[i].etag = w->etags[i];
		}
		r = snap_s3_complete_upload(w->c, w->bucket, w->key, w->upload_id, parts, n, &etag,
					    &detail);
		free(parts);
		if (r < 0)
			return fail(w, r, detail, "completing the upload", 0);
		w->stored = true;
		if (w->opts.ntags) {
			/* Tags given at CreateMultipartUpload are set again on the object:
			 * RGW 16 ignores them there. */
			r = snap_s3_put_tagging(w->c, w->bucket, w->key, w->opts.tags,
						w->opts.ntags, &detail);
			if (r < 0) {
				free(etag);
				return fail(w, r, detail, "tagging the object", 0);
			}
		}
	}
	w->state = W_COMMITTED;
	stop_reaper(w);
	if (ret_etag)
		*ret_etag = etag;
	else
		free(etag);
	return 0;
}

void snap_s3_writer_abort(struct snap_s3_writer *w)
{
	if (!w || w->state == W_ABORTED)
		return;
	if (w->state == W_COMMITTED) {
		/* Undone: a bundle's earlier parts when a later one fails. */
		w->state = W_ABORTED;
		snap_s3_delete_object(w->c, w->bucket, w->key, NULL);
		return;
	}
	w->state = W_ABORTED;
	/* Stops the stream's callback and every later call. */
	pthread_mutex_lock(&w->lock);
	fail_locked(w, -ECANCELED, NULL, "aborted");
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);

	if (w->cur) {
		part_buf_free(w->cur, w->part_size);
		w->cur = NULL;
		unhold(w, w->part_size);
	}
	drain(w);
	stop_reaper(w);
	if (w->multipart && w->upload_id && !(w->flags & SNAP_S3_WRITER_KEEP))
		snap_s3_abort_upload(w->c, w->bucket, w->key, w->upload_id, NULL);
	if (w->stored)
		snap_s3_delete_object(w->c, w->bucket, w->key, NULL);
}

struct snap_s3_writer *snap_s3_writer_free(struct snap_s3_writer *w)
{
	if (!w)
		return NULL;
	if (w->state != W_COMMITTED)
		snap_s3_writer_abort(w);
	drain(w);
	stop_reaper(w);
	part_buf_free(w->cur, w->part_size);
	if (w->cur)
		unhold(w, w->part_size);
	free(w->ring);
	if (w->ring)
		unhold(w, w->ring_size);
	free(w->single);
	if (w->single_cap)
		unhold(w, w->single_cap);
	for (uint32_t i = 0; i < w->etags_cap; i++)
		free(w->etags[i]);
	free(w->etags);
	free(w->single_etag);
	free_options(&w->opts);
	free(w->upload_id);
	free(w->detail);
	free(w->bucket);
	free(w->key);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	return NULL;
}
