// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * s3-reader.c - an object read at any offset (s3.h, R1-R3).
 *
 * Invariants:
 *  1. The object is read through at most nslots chunk slots, nslots * chunk_size within the
 *     client's memory budget; a slot's bytes are counted in the budget from before its GET
 *     starts until the slot is reused or the reader freed.
 *  2. A slot is in one state: EMPTY; FETCHING (a GET started, get set, or being started by the
 *     thread that has it busy); READY (buf holds the object's bytes [start, end)); FAILED (err,
 *     detail). A busy slot belongs to the one thread starting or waiting for its GET, which
 *     works on it without the lock; every other thread waits on cond. A slot with refs > 0 is
 *     being copied from and is never reused.
 *  3. Every GET carries If-Match: the ETag of open's HEAD; 412 becomes -ESTALE (R1).
 *  4. Without a plan a slot covers a whole chunk; with a plan, the part of the chunk between
 *     the first and the last planned byte in it (and the bytes a read outside the plan asks),
 *     so a plan fetches at most its ranges plus one partial chunk at each end of a range.
 *  5. Read-ahead (up to `ahead` chunks past the one read) starts on a read at the end of the
 *     previous one, or on any read when there is a plan, and then only of planned chunks; it
 *     only takes slots that are empty or ready and not in its window, never cancels a GET.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

#define DEFAULT_CHUNK_SIZE (8ull << 20)
#define MIN_CHUNK_SIZE 4096ull

enum slot_state { S_EMPTY, S_FETCHING, S_READY, S_FAILED };

struct slot {
	enum slot_state state;
	uint64_t idx, start, end;
	uint8_t *buf;
	uint64_t held;
	struct snap_s3_get *get;
	bool busy;
	unsigned refs;
	uint64_t used;
	int err;
	char *detail;
};

struct snap_s3_reader {
	struct snap_s3_client *c;
	char *bucket, *key;
	struct snap_s3_head *head;
	uint64_t size, chunk_size, budget;
	unsigned connections, nslots, ahead;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct slot *slots;
	uint64_t last_end, tick, fetched;
	uint64_t (*plan)[2];
	size_t nplan;
};

static void reader_size_slots(struct snap_s3_reader *r)
{
	uint64_t fit = r->budget / r->chunk_size;
	unsigned n = r->connections + 2;
	if (fit < n)
		n = fit < 1 ? 1 : (unsigned)fit;
	/* One slot: no read-ahead, whose budget would wait for the slot being read. */
	r->nslots = n;
	r->ahead = r->connections < n - 1 ? r->connections : n - 1;
	if (r->ahead > 64)
		r->ahead = 64;
}

int snap_s3_reader_open(struct snap_s3_client *c, const char *bucket, const char *key,
			struct snap_s3_reader **ret, char **ret_detail)
{
	struct snap_s3_reader *r = calloc(1, sizeof(*r));
	int e;

	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->c = c;
	r->bucket = strdup(bucket);
	r->key = strdup(key);
	if (!r->bucket || !r->key) {
		e = -ENOMEM;
		goto fail;
	}
	e = snap_s3_head_object(c, bucket, key, &r->head, ret_detail);
	if (e < 0)
		goto fail;
	r->size = r->head->size;
	r->connections = snap_s3_client_connections(c);
	r->budget = snap_s3_client_budget(c);
	r->chunk_size = DEFAULT_CHUNK_SIZE;
	reader_size_slots(r);
	r->slots = calloc(r->nslots, sizeof(*r->slots));
	if (!r->slots) {
		e = -ENOMEM;
		goto fail;
	}
	*ret = r;
	return 0;
fail:
	snap_s3_reader_free(r);
	return e;
}

uint64_t snap_s3_reader_size(const struct snap_s3_reader *r)
{
	return r->size;
}

const struct snap_s3_head *snap_s3_reader_head(const struct snap_s3_reader *r)
{
	return r->head;
}

uint64_t snap_s3_reader_fetched(const struct snap_s3_reader *r)
{
	struct snap_s3_reader *m = (struct snap_s3_reader *)r;
	pthread_mutex_lock(&m->lock);
	uint64_t f = r->fetched;
	pthread_mutex_unlock(&m->lock);
	return f;
}

int snap_s3_reader_set_chunk_size(struct snap_s3_reader *r, uint64_t size)
{
	if (size < MIN_CHUNK_SIZE || size > SNAP_S3_MAX_BUFFERED_PART)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->nslots; i++) {
		if (r->slots[i].state != S_EMPTY) {
			pthread_mutex_unlock(&r->lock);
			return -EBUSY;
		}
	}
	unsigned old = r->nslots;
	r->chunk_size = size;
	reader_size_slots(r);
	if (r->nslots > old) {
		struct slot *s = realloc(r->slots, r->nslots * sizeof(*s));
		if (!s) {
			r->nslots = old;
			pthread_mutex_unlock(&r->lock);
			return -ENOMEM;
		}
		memset(s + old, 0, (r->nslots - old) * sizeof(*s));
		r->slots = s;
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

int snap_s3_reader_plan(struct snap_s3_reader *r, const uint64_t (*ranges)[2], size_t n)
{
	uint64_t(*p)[2] = NULL;

	for (size_t i = 0; i < n; i++) {
		if (ranges[i][0] >= ranges[i][1] || ranges[i][1] > r->size ||
		    (i && ranges[i][0] < ranges[i - 1][1]))
			return -EINVAL;
	}
	if (n) {
		p = malloc(n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memcpy(p, ranges, n * sizeof(*p));
	}
	pthread_mutex_lock(&r->lock);
	free(r->plan);
	r->plan = p;
	r->nplan = n;
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* The bytes of chunk idx to fetch (invariant 4); false when the plan has none of them. */
static bool chunk_range(struct snap_s3_reader *r, uint64_t idx, uint64_t *ret_s, uint64_t *ret_e)
{
	uint64_t cs = idx * r->chunk_size, ce = cs + r->chunk_size;
	if (ce > r->size)
		ce = r->size;
	if (!r->nplan) {
		*ret_s = cs;
		*ret_e = ce;
		return cs < ce;
	}
	uint64_t s = UINT64_MAX, e = 0;
	for (size_t i = 0; i < r->nplan; i++) {
		if (r->plan[i][1] <= cs)
			continue;
		if (r->plan[i][0] >= ce)
			break;
		uint64_t a = r->plan[i][0] > cs ? r->plan[i][0] : cs;
		uint64_t b = r->plan[i][1] < ce ? r->plan[i][1] : ce;
		if (a < s)
			s = a;
		if (b > e)
			e = b;
	}
	if (s >= e)
		return false;
	*ret_s = s;
	*ret_e = e;
	return true;
}

/* The next planned chunk after idx (UINT64_MAX when none). */
static uint64_t next_planned(struct snap_s3_reader *r, uint64_t idx)
{
	uint64_t from = (idx + 1) * r->chunk_size;
	for (size_t i = 0; i < r->nplan; i++) {
		if (r->plan[i][1] <= from)
			continue;
		uint64_t a = r->plan[i][0] > from ? r->plan[i][0] : from;
		return a / r->chunk_size;
	}
	return UINT64_MAX;
}

static struct slot *find(struct snap_s3_reader *r, uint64_t idx, uint64_t a, uint64_t b)
{
	for (unsigned i = 0; i < r->nslots; i++) {
		struct slot *s = &r->slots[i];
		if (s->state != S_EMPTY && s->idx == idx && s->start <= a && b <= s->end)
			return s;
	}
	return NULL;
}

/* A slot to reuse: empty, else the least recently used one nobody holds and not in
 * [keep_from, keep_to]; a FETCHING one (its GET cancelled) only when cancel is set. */
static struct slot *victim(struct snap_s3_reader *r, bool cancel, uint64_t keep_from,
			   uint64_t keep_to)
{
	struct slot *best = NULL;
	for (unsigned i = 0; i < r->nslots; i++) {
		struct slot *s = &r->slots[i];
		if (s->busy)
			continue;
		if (s->state == S_EMPTY)
			return s;
		if (s->refs || (s->state == S_FETCHING && !cancel))
			continue;
		if (s->idx >= keep_from && s->idx <= keep_to && s->state != S_FAILED)
			continue;
		if (!best || s->used < best->used ||
		    (best->state == S_FETCHING && s->state != S_FETCHING))
			best = s;
	}
	return best;
}

/* Empties a slot, under lock; a GET still in flight is cancelled without the lock. */
static void slot_clear(struct snap_s3_reader *r, struct slot *s)
{
	struct snap_s3_get *g = s->get;
	uint64_t held = s->held;

	free(s->buf);
	free(s->detail);
	*s = (struct slot){0};
	if (g) {
		/* Nobody takes the slot meanwhile. */
		s->busy = true;
		pthread_mutex_unlock(&r->lock);
		snap_s3_get_free(g);
		pthread_mutex_lock(&r->lock);
		s->busy = false;
	}
	if (held)
		snap_s3_budget_release(r->c, held);
}

static void slot_fail(struct snap_s3_reader *r, struct slot *s, int e, char *detail)
{
	s->state = S_FAILED;
	if (e == -EEXIST || e == -ESTALE) {
		/* 412 PreconditionFailed on If-Match (invariant 3). */
		e = -ESTALE;
		char *d = NULL;
		if (asprintf(&d, "s3://%s/%s: the object changed since it was opened (ETag %s): %s",
			     r->bucket, r->key, r->head->etag, detail ? detail : "412") >= 0) {
			free(detail);
			detail = d;
		}
	}
	s->err = e;
	s->detail = detail;
}

/* Starts the GET of [a, b) in chunk idx into s (FETCHING, busy), without the lock: the budget
 * may wait. Leaves s FETCHING with get set, or FAILED; not busy. */
static void slot_start(struct snap_s3_reader *r, struct slot *s)
{
	uint64_t len = s->end - s->start;
	struct snap_s3_get *g = NULL;

	pthread_mutex_unlock(&r->lock);
	int e = snap_s3_budget_acquire(r->c, len);
	if (e >= 0) {
		e = snap_s3_get_start_if(r->c, r->bucket, r->key, s->start, len, len, r->head->etag,
					 &g);
		if (e < 0)
			snap_s3_budget_release(r->c, len);
	}
	pthread_mutex_lock(&r->lock);
	s->busy = false;
	if (e < 0) {
		char *d = NULL;
		if (asprintf(&d, "s3://%s/%s: cannot start the GET of bytes %llu-%llu", r->bucket,
			     r->key, (unsigned long long)s->start, (unsigned long long)s->end) < 0)
			d = NULL;
		slot_fail(r, s, e, d);
	} else {
		s->get = g;
		s->held = len;
		r->fetched += len;
	}
	pthread_cond_broadcast(&r->cond);
}

/* Takes slot s for [a, b) of chunk idx and starts its GET (s must be a victim). */
static void slot_begin(struct snap_s3_reader *r, struct slot *s, uint64_t idx, uint64_t a,
		       uint64_t b)
{
	slot_clear(r, s);
	s->state = S_FETCHING;
	s->idx = idx;
	s->start = a;
	s->end = b;
	s->used = ++r->tick;
	s->busy = true;
	slot_start(r, s);
}

/* Waits until s is READY or FAILED, waiting for its GET when no other thread does. */
static void slot_wait(struct snap_s3_reader *r, struct slot *s)
{
	while (s->state == S_FETCHING) {
		if (s->busy || !s->get) {
			pthread_cond_wait(&r->cond, &r->lock);
			continue;
		}
		struct snap_s3_get *g = s->get;
		s->get = NULL;
		s->busy = true;
		pthread_mutex_unlock(&r->lock);
		void *buf = NULL;
		size_t len = 0;
		char *detail = NULL;
		int e = snap_s3_get_wait(g, &buf, &len, &detail);
		if (e >= 0 && len != s->end - s->start) {
			e = -ENODATA;
			free(detail);
			if (asprintf(&detail, "s3://%s/%s: %zu bytes answered for bytes %llu-%llu",
				     r->bucket, r->key, len, (unsigned long long)s->start,
				     (unsigned long long)s->end) < 0)
				detail = NULL;
		}
		pthread_mutex_lock(&r->lock);
		s->busy = false;
		if (e < 0) {
			free(buf);
			slot_fail(r, s, e, detail);
		} else {
			free(detail);
			s->buf = buf;
			s->state = S_READY;
		}
		pthread_cond_broadcast(&r->cond);
	}
}

/* Read-ahead after chunk idx (invariant 5), under lock. */
static void read_ahead(struct snap_s3_reader *r, uint64_t idx)
{
	uint64_t nchunks = (r->size + r->chunk_size - 1) / r->chunk_size;
	uint64_t next = idx, last = idx;
	uint64_t want[64];
	unsigned n = 0;

	while (n < r->ahead && n < 64) {
		next = r->nplan ? next_planned(r, next) : next + 1;
		if (next >= nchunks)
			break;
		want[n++] = next;
		last = next;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t a, b;
		if (!chunk_range(r, want[i], &a, &b) || find(r, want[i], a, b))
			continue;
		struct slot *s = victim(r, false, idx, last);
		if (!s)
			break;
		slot_begin(r, s, want[i], a, b);
	}
}

int snap_s3_reader_pread(struct snap_s3_reader *r, void *buf, size_t len, uint64_t off,
			 char **ret_detail)
{
	uint8_t *p = buf;
	int e = 0;

	if (off > r->size || len > r->size - off) {
		if (ret_detail &&
		    asprintf(
			ret_detail,
			"s3://%s/%s: cannot read %zu bytes at offset %llu: the object ends at %llu",
			r->bucket, r->key, len, (unsigned long long)off,
			(unsigned long long)r->size) < 0)
			*ret_detail = NULL;
		return -ENODATA;
	}
	if (!len)
		return 0;

	pthread_mutex_lock(&r->lock);
	bool ahead = r->nplan || off == r->last_end;
	r->last_end = off + len;
	uint64_t first = off / r->chunk_size, lastc = (off + len - 1) / r->chunk_size;
	for (uint64_t idx = first; idx <= lastc; idx++) {
		uint64_t cs = idx * r->chunk_size, ce = cs + r->chunk_size;
		uint64_t a = off > cs ? off : cs, b = off + len < ce ? off + len : ce;
		struct slot *s;

		while (!(s = find(r, idx, a, b))) {
			struct slot *v = victim(r, true, UINT64_MAX, 0);
			if (!v) {
				pthread_cond_wait(&r->cond, &r->lock);
				continue;
			}
			uint64_t fs, fe;
			if (!chunk_range(r, idx, &fs, &fe)) {
				fs = a;
				fe = b;
			}
			if (a < fs)
				fs = a;
			if (b > fe)
				fe = b;
			slot_begin(r, v, idx, fs, fe);
		}
		s->refs++;
		s->used = ++r->tick;
		if (idx == first && ahead)
			read_ahead(r, lastc);
		slot_wait(r, s);
		if (s->state == S_FAILED) {
			e = s->err;
			if (ret_detail)
				*ret_detail = s->detail ? strdup(s->detail) : NULL;
			s->refs--;
			/* A later read asks again (a transient failure after retries). */
			if (!s->refs && !s->busy)
				slot_clear(r, s);
			pthread_cond_broadcast(&r->cond);
			break;
		}
		pthread_mutex_unlock(&r->lock);
		memcpy(p, s->buf + (a - s->start), b - a);
		p += b - a;
		pthread_mutex_lock(&r->lock);
		s->refs--;
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	return e;
}

struct snap_s3_reader *snap_s3_reader_free(struct snap_s3_reader *r)
{
	if (!r)
		return NULL;
	if (r->slots) {
		pthread_mutex_lock(&r->lock);
		for (unsigned i = 0; i < r->nslots; i++)
			slot_clear(r, &r->slots[i]);
		pthread_mutex_unlock(&r->lock);
	}
	free(r->slots);
	free(r->plan);
	snap_s3_head_free(r->head);
	free(r->bucket);
	free(r->key);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
	return NULL;
}
