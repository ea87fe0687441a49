// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-pipeline.c - the one pipeline (pipeline.h) on its own: the sink sees every item once and
 * in fill order whatever order the workers finish in (random work times, skipped slots mixed
 * in, 1 to 8 workers, 1 to 5 slots); a worker's or the sink's failure stops the run and is
 * what acquire and finish return, with the job's error the first one; every slot filled but
 * never sunk is dropped exactly once; a cancellation ends a run whose sink is stuck, with
 * progress reported while the run thread waits.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "job-internal.h"
#include "pipeline.h"
#include "test-util.h"

#define MAX_SLOTS 8

struct run {
	struct snap_pipeline *p;
	uint64_t item[MAX_SLOTS]; /* the item each slot carries */
	bool skip[MAX_SLOTS];
	uint64_t worked[MAX_SLOTS];	/* the item a worker saw in the slot */
	uint64_t next_sunk;		/* the sink's next expected item */
	_Atomic int drops, sink_ends, inits, frees;
	uint64_t fail_work_at, fail_sink_at; /* item that fails, or UINT64_MAX */
	bool sink_stuck;		     /* the sink waits for the cancellation */
	struct snap_job *job;
	int bad;
	unsigned seed;
};

static void nap(unsigned *seed)
{
	struct timespec ts = {0, (long)(rand_r(seed) % 200) * 1000};
	nanosleep(&ts, NULL);
}

static int w_init(void *ctx, unsigned worker, void **ret)
{
	struct run *r = ctx;
	unsigned *seed = malloc(sizeof(*seed));
	if (!seed)
		return -ENOMEM;
	*seed = r->seed + worker;
	atomic_fetch_add(&r->inits, 1);
	*ret = seed;
	return 0;
}

static void w_free(void *ctx, void *state)
{
	struct run *r = ctx;
	atomic_fetch_add(&r->frees, 1);
	free(state);
}

static int work(void *ctx, void *state, unsigned i)
{
	struct run *r = ctx;
	nap(state);
	r->worked[i] = r->item[i];
	if (r->item[i] == r->fail_work_at)
		return snap_pipeline_fail(r->p, -EIO, "work failed at %llu",
					  (unsigned long long)r->item[i]);
	return 0;
}

static int sink(void *ctx, unsigned i)
{
	struct run *r = ctx;
	if (r->item[i] != r->next_sunk || (!r->skip[i] && r->worked[i] != r->item[i]))
		r->bad++;
	r->next_sunk++;
	if (r->sink_stuck)
		while (!snap_pipeline_failed(r->p))
			usleep(1000);
	if (r->item[i] == r->fail_sink_at)
		return -ENOSPC; /* not recorded by the op: the pipeline records it */
	return 0;
}

static int sink_end(void *ctx)
{
	struct run *r = ctx;
	atomic_fetch_add(&r->sink_ends, 1);
	return 0;
}

static void drop(void *ctx, unsigned i)
{
	struct run *r = ctx;
	(void)i;
	atomic_fetch_add(&r->drops, 1);
}

static const struct snap_pipeline_ops ops = {
    .worker_init = w_init,
    .worker_free = w_free,
    .work = work,
    .sink = sink,
    .sink_end = sink_end,
    .drop = drop,
};

/* Runs n items through a pipeline; returns what finish (or acquire) returned. */
static int run_items(struct run *r, unsigned nworkers, unsigned nslots, uint64_t n)
{
	REQUIRE(snap_job_new(SNAP_JOB_STORE, &r->job) == 0);
	snap_job_set_param(r->job, SNAP_PARAM_PROGRESS_MS, 10);
	struct snap_pipeline_opts o = {.nworkers = nworkers, .nslots = nslots};
	REQUIRE(snap_pipeline_new(r->job, &o, &ops, r, &r->p) == 0);
	int ret = 0;
	for (uint64_t k = 0; k < n && ret == 0; k++) {
		unsigned i;
		uint64_t seq;
		if ((ret = snap_pipeline_acquire(r->p, &i, &seq)) < 0)
			break;
		CHECK(seq == k && i == k % nslots, " (slot %u seq %llu for item %llu)", i,
		      (unsigned long long)seq, (unsigned long long)k);
		r->item[i] = k;
		r->skip[i] = rand_r(&r->seed) % 5 == 0 && k != r->fail_work_at;
		snap_pipeline_submit(r->p, r->skip[i]);
	}
	int f = snap_pipeline_finish(r->p);
	if (ret == 0)
		ret = f;
	r->p = snap_pipeline_free(r->p);
	return ret;
}

static void done(struct run *r)
{
	CHECK(r->inits == r->frees, " (%d worker states made, %d freed)", r->inits, r->frees);
	snap_job_free(r->job);
}

static void *cancel_later(void *arg)
{
	usleep(50000);
	snap_job_cancel(arg);
	return NULL;
}

static int reports;
static int on_progress(void *ud, const struct snap_progress *p)
{
	(void)ud;
	(void)p;
	reports++;
	return 0;
}

int main(void)
{
	/* order, every item once, for every shape */
	for (unsigned nw = 1; nw <= 8; nw *= 2)
		for (unsigned ns = 1; ns <= 5; ns++) {
			struct run r = {.fail_work_at = UINT64_MAX, .fail_sink_at = UINT64_MAX,
					.seed = nw * 31 + ns};
			int ret = run_items(&r, nw, ns, 300);
			CHECK(ret == 0, " (%u workers, %u slots: %d %s)", nw, ns, ret,
			      snap_job_error(r.job));
			CHECK(r.bad == 0 && r.next_sunk == 300,
			      " (%u workers, %u slots: %d out of order, %llu sunk)", nw, ns, r.bad,
			      (unsigned long long)r.next_sunk);
			CHECK(r.sink_ends == 1 && r.drops == 0);
			done(&r);
		}

	/* a worker fails: the run stops with that failure, the job names it, nothing sunk after
	 * it, what was filled and never sunk is dropped */
	{
		struct run r = {.fail_work_at = 57, .fail_sink_at = UINT64_MAX, .seed = 5};
		int ret = run_items(&r, 3, 4, 1000);
		CHECK(ret == -EIO, " (%d)", ret);
		CHECK(!strcmp(snap_job_error(r.job), "work failed at 57"), " (%s)",
		      snap_job_error(r.job));
		CHECK(r.next_sunk <= 57 && r.bad == 0 && r.sink_ends == 0);
		CHECK(r.drops >= 1 && r.drops <= 4, " (%d drops)", r.drops);
		done(&r);
	}

	/* the sink fails without recording: the pipeline records its code */
	{
		struct run r = {.fail_work_at = UINT64_MAX, .fail_sink_at = 10, .seed = 9};
		int ret = run_items(&r, 2, 3, 100);
		CHECK(ret == -ENOSPC, " (%d)", ret);
		CHECK(r.next_sunk == 11 && r.sink_ends == 0);
		done(&r);
	}

	/* the first failure wins: the sink's later one does not replace the worker's */
	{
		struct run r = {.fail_work_at = 3, .fail_sink_at = 2, .seed = 11};
		int ret = run_items(&r, 1, 1, 10);
		CHECK(ret == -ENOSPC, " (%d)", ret); /* one slot: item 2 sinks before 3 works */
		done(&r);
	}

	/* cancellation while the sink is stuck and the run thread waits for a slot: the wait
	 * reports progress, notices the cancel, and the run ends with -ECANCELED */
	{
		struct run r = {.fail_work_at = UINT64_MAX, .fail_sink_at = UINT64_MAX,
				.sink_stuck = true, .seed = 13};
		REQUIRE(snap_job_new(SNAP_JOB_STORE, &r.job) == 0);
		snap_job_set_param(r.job, SNAP_PARAM_PROGRESS_MS, 10);
		snap_job_set_progress(r.job, on_progress, NULL);
		struct snap_pipeline_opts o = {.nworkers = 2, .nslots = 2};
		REQUIRE(snap_pipeline_new(r.job, &o, &ops, &r, &r.p) == 0);
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, cancel_later, r.job) == 0);
		int ret = 0;
		for (uint64_t k = 0; k < 100 && ret == 0; k++) {
			unsigned i;
			uint64_t seq;
			if ((ret = snap_pipeline_acquire(r.p, &i, &seq)) == 0) {
				r.item[i] = k;
				snap_pipeline_submit(r.p, false);
			}
		}
		pthread_join(t, NULL);
		CHECK(ret == -ECANCELED, " (%d)", ret);
		CHECK(snap_pipeline_finish(r.p) == -ECANCELED);
		CHECK(reports >= 2, " (%d progress reports while waiting)", reports);
		r.p = snap_pipeline_free(r.p);
		CHECK(r.drops >= 1, " (%d drops)", r.drops);
		done(&r);
	}
	printf(test_failures ? "FAILED\n" : "ok\n");
	return test_failures ? 1 : 0;
}
