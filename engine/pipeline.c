// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * pipeline.c - the ordered slot ring, the worker pool, the in-order sink thread, first failure
 * wins and the run thread's waits. Invariants in pipeline.h.
 *
 * State transitions (of the pipeline):
 *  1. running (snap_pipeline_new): workers and sink started
 *  2. finishing (snap_pipeline_finish): no more slots; the sink runs sink_end after the last
 *  3. stopped (finish returned, a failure, or snap_pipeline_free): every thread joined
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "job-internal.h"
#include "pipeline.h"

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE, SLOT_SINKING };

struct worker {
	struct snap_pipeline *p;
	unsigned index;
	pthread_t thread;
	void *state;
	uint64_t idle_ns, busy_ns;
};

struct snap_pipeline {
	struct snap_job *job;
	struct snap_pipeline_ops ops;
	void *ctx;
	int nice_workers;
	bool inner;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum slot_state *state;
	unsigned nslots;
	uint64_t next_fill, next_work, next_sink; /* sequence numbers (invariant 1) */
	bool filling;  /* the run thread holds slot next_fill % nslots */
	bool finishing;	 /* the last slot was submitted */
	bool sink_ended; /* sink_end ran (or there was nothing to run) */
	bool abort;
	bool stop; /* threads leave */
	int err;

	struct worker *workers;
	unsigned nworkers, nstarted;
	pthread_t sink;
	bool sink_started;
	uint64_t acquire_wait, finish_wait, sink_wait, sink_busy;
};

/* Invariant 1 and 2, checked in debug builds at every state change: the sequence counters are
 * ordered, and the slots between them are in the states their position allows. */
static void assert_ring(const struct snap_pipeline *p)
{
#ifndef NDEBUG
	assert(p->next_sink <= p->next_work || !p->ops.work);
	assert(p->next_work <= p->next_fill);
	assert(p->next_fill - p->next_sink <= p->nslots);
	for (uint64_t seq = p->next_sink; seq < p->next_fill; seq++) {
		enum slot_state s = p->state[seq % p->nslots];
		assert(s != SLOT_FREE && s != SLOT_FILLING);
		if (p->ops.work && seq >= p->next_work)
			assert(s == SLOT_QUEUED || (s == SLOT_DONE && seq > p->next_work));
	}
	if (p->filling)
		assert(p->state[p->next_fill % p->nslots] == SLOT_FILLING);
#else
	(void)p;
#endif
}

int snap_pipeline_fail(struct snap_pipeline *p, int err, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	err = snap_job_fail(p->job, err, "%s", msg ? msg : snap_strerror(err));
	free(msg);
	pthread_mutex_lock(&p->lock);
	if (!p->err)
		p->err = err;
	p->abort = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return err;
}

bool snap_pipeline_failed(struct snap_pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	bool r = p->abort;
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* A failure a worker's or the sink's op returned without recording it. Lock held. */
static void fail_locked(struct snap_pipeline *p, int err)
{
	if (!p->err)
		p->err = err;
	p->abort = true;
	pthread_cond_broadcast(&p->cond);
}

/* Moves next_work past slots submitted with skip_work, so that at and after next_work every
 * slot is QUEUED (invariant 2). Lock held. */
static void skip_done(struct snap_pipeline *p)
{
	while (p->next_work < p->next_fill && p->state[p->next_work % p->nslots] == SLOT_DONE)
		p->next_work++;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct snap_pipeline *p = w->p;
	if (p->nice_workers) {
		errno = 0;
		int now = getpriority(PRIO_PROCESS, 0);
		if (errno == 0)
			(void)setpriority(PRIO_PROCESS, (id_t)gettid(),
					  now + p->nice_workers < 19 ? now + p->nice_workers : 19);
	}
	pthread_mutex_lock(&p->lock);
	for (;;) {
		uint64_t t0 = snap_now_ns();
		/* slots are taken in sequence: the one the sink needs next is never left behind */
		while (!p->stop && !p->abort && p->next_work == p->next_fill)
			pthread_cond_wait(&p->cond, &p->lock);
		w->idle_ns += snap_now_ns() - t0;
		if (p->stop || p->abort)
			break;
		unsigned i = (unsigned)(p->next_work++ % p->nslots);
		assert(p->state[i] == SLOT_QUEUED);
		p->state[i] = SLOT_BUSY;
		skip_done(p);
		assert_ring(p);
		pthread_mutex_unlock(&p->lock);
		uint64_t t1 = snap_now_ns();
		int r = p->ops.work(p->ctx, w->state, i);
		w->busy_ns += snap_now_ns() - t1;
		pthread_mutex_lock(&p->lock);
		p->state[i] = SLOT_DONE;
		if (r < 0)
			fail_locked(p, r);
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void *sink_main(void *arg)
{
	struct snap_pipeline *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		uint64_t t0 = snap_now_ns();
		/* with workers, a slot is the sink's once the workers moved past it (a skipped
		 * slot is DONE before that, and its ring place must not be reused under them) */
		while (!p->stop && !p->abort &&
		       !(p->next_sink < (p->ops.work ? p->next_work : p->next_fill) &&
			 p->state[p->next_sink % p->nslots] == SLOT_DONE) &&
		       !(p->finishing && p->next_sink == p->next_fill))
			pthread_cond_wait(&p->cond, &p->lock);
		p->sink_wait += snap_now_ns() - t0;
		if (p->stop || p->abort)
			break;
		if (p->next_sink == p->next_fill) { /* finishing: everything was consumed */
			pthread_mutex_unlock(&p->lock);
			int r = p->ops.sink_end ? p->ops.sink_end(p->ctx) : 0;
			pthread_mutex_lock(&p->lock);
			if (r < 0)
				fail_locked(p, r);
			p->sink_ended = true;
			pthread_cond_broadcast(&p->cond);
			break;
		}
		unsigned i = (unsigned)(p->next_sink % p->nslots);
		p->state[i] = SLOT_SINKING;
		pthread_mutex_unlock(&p->lock);
		uint64_t t1 = snap_now_ns();
		int r = p->ops.sink ? p->ops.sink(p->ctx, i) : 0;
		pthread_mutex_lock(&p->lock);
		p->sink_busy += snap_now_ns() - t1;
		p->state[i] = SLOT_FREE;
		p->next_sink++;
		if (r < 0)
			fail_locked(p, r);
		assert_ring(p);
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Stops and joins every thread. */
static void stop_threads(struct snap_pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nstarted; i++) {
		struct worker *w = &p->workers[i];
		pthread_join(w->thread, NULL);
		if (p->ops.worker_free)
			p->ops.worker_free(p->ctx, w->state);
		w->state = NULL;
	}
	p->nstarted = 0;
	if (p->sink_started)
		pthread_join(p->sink, NULL);
	p->sink_started = false;
}

int snap_pipeline_new(struct snap_job *job, const struct snap_pipeline_opts *opts,
		      const struct snap_pipeline_ops *ops, void *ctx, struct snap_pipeline **ret)
{
	struct snap_pipeline *p = calloc(1, sizeof(*p));
	if (!p)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	p->job = job;
	p->ops = *ops;
	p->ctx = ctx;
	p->nice_workers = opts->nice_workers;
	p->inner = opts->inner;
	p->nslots = opts->nslots ? opts->nslots : 1;
	p->nworkers = ops->work ? (opts->nworkers ? opts->nworkers : 1) : 0;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->state = calloc(p->nslots, sizeof(*p->state));
	p->workers = calloc(p->nworkers ? p->nworkers : 1, sizeof(*p->workers));
	int r = p->state && p->workers ? 0 : -ENOMEM;
	for (unsigned i = 0; i < p->nworkers && r == 0; i++) {
		struct worker *w = &p->workers[i];
		w->p = p;
		w->index = i;
		if (ops->worker_init && (r = ops->worker_init(ctx, i, &w->state)) < 0)
			break;
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			if (ops->worker_free)
				ops->worker_free(ctx, w->state);
			r = -EAGAIN;
			break;
		}
		p->nstarted++;
	}
	if (r == 0 && pthread_create(&p->sink, NULL, sink_main, p) != 0)
		r = -EAGAIN;
	else if (r == 0)
		p->sink_started = true;
	if (r < 0) {
		snap_job_fail(job, r, r == -ENOMEM ? "out of memory" : "cannot start threads: %s",
			      snap_strerror(r));
		snap_pipeline_free(p);
		return r;
	}
	*ret = p;
	return 0;
}

/* Lock held: one wait of the run thread with progress (invariant 4), or of the producer of an
 * inner pipeline without; either notices a cancellation. */
static void run_wait(struct snap_pipeline *p, uint64_t *acc, bool quiet)
{
	uint64_t t0 = snap_now_ns();
	if (snap_job_cancelled(p->job)) {
		fail_locked(p, -ECANCELED);
		return;
	}
	if (quiet) {
		/* not the run thread: no progress from here, but a cancellation is seen */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	} else {
		/* a report on the interval whether the wait timed out or was woken: a pipeline
		 * whose stages wake it often still reports as bytes move */
		snap_job_wait(p->job, &p->cond, &p->lock);
		pthread_mutex_unlock(&p->lock);
		if (p->ops.progress)
			p->ops.progress(p->ctx);
		snap_job_report(p->job, false);
		pthread_mutex_lock(&p->lock);
	}
	*acc += snap_now_ns() - t0;
}

int snap_pipeline_acquire(struct snap_pipeline *p, unsigned *ret_slot, uint64_t *ret_seq)
{
	pthread_mutex_lock(&p->lock);
	assert(!p->filling && !p->finishing);
	unsigned i = (unsigned)(p->next_fill % p->nslots);
	while (!p->abort && p->state[i] != SLOT_FREE)
		run_wait(p, &p->acquire_wait, p->inner);
	if (!p->abort && snap_job_cancelled(p->job))
		fail_locked(p, -ECANCELED);
	int r = p->abort ? p->err : 0;
	if (r == 0) {
		p->state[i] = SLOT_FILLING;
		p->filling = true;
		*ret_slot = i;
		*ret_seq = p->next_fill;
		assert_ring(p);
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

void snap_pipeline_submit(struct snap_pipeline *p, bool skip_work)
{
	pthread_mutex_lock(&p->lock);
	assert(p->filling);
	p->state[p->next_fill % p->nslots] = skip_work || !p->ops.work ? SLOT_DONE : SLOT_QUEUED;
	p->next_fill++;
	p->filling = false;
	skip_done(p);
	assert_ring(p);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

int snap_pipeline_finish(struct snap_pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	assert(!p->filling);
	p->finishing = true;
	pthread_cond_broadcast(&p->cond);
	while (!p->abort && !p->sink_ended)
		run_wait(p, &p->finish_wait, false);
	/* a cancellation that came with the last report is honoured too (invariant 3) */
	if (!p->abort && snap_job_cancelled(p->job))
		fail_locked(p, -ECANCELED);
	int r = p->abort ? p->err : 0;
	pthread_mutex_unlock(&p->lock);
	if (p->ops.progress)
		p->ops.progress(p->ctx);
	stop_threads(p);
	return r;
}

void snap_pipeline_stats(const struct snap_pipeline *p, struct snap_pipeline_stats *ret)
{
	*ret = (struct snap_pipeline_stats){
	    .acquire_wait = p->acquire_wait,
	    .finish_wait = p->finish_wait,
	    .sink_wait = p->sink_wait,
	    .sink_busy = p->sink_busy,
	};
	for (unsigned i = 0; i < p->nworkers; i++) {
		ret->worker_idle += p->workers[i].idle_ns;
		ret->work_busy += p->workers[i].busy_ns;
	}
}

struct snap_pipeline *snap_pipeline_free(struct snap_pipeline *p)
{
	if (!p)
		return NULL;
	stop_threads(p);
	for (unsigned i = 0; p->state && i < p->nslots; i++)
		if (p->state[i] != SLOT_FREE && p->ops.drop)
			p->ops.drop(p->ctx, i);
	free(p->state);
	free(p->workers);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
	return NULL;
}
