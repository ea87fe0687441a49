/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pipeline.h - the one pipeline every job runs on: an ordered ring of slots that the run thread
 * fills in order, a pool of workers that process them in any order, and one sink thread that
 * consumes them strictly in order. A job is its stages (what a slot holds, what a worker does
 * to it, what the sink does with it) plus the wiring; this file owns the threads, the states,
 * the waits, failure and cancellation.
 *
 * Invariants:
 *  1. Slot i carries the items whose sequence number seq satisfies seq % nslots == i. The run
 *     thread fills seq = 0, 1, 2, ... (snap_pipeline_acquire, snap_pipeline_submit), workers
 *     take them in seq order, the sink consumes them in seq order; so what the sink sees is in
 *     fill order whatever order the workers finish in, and a slot is reused only after the
 *     sink freed the one before it in the ring.
 *  2. A slot's state only moves FREE -> FILLING (acquire) -> QUEUED (submit) -> BUSY (a
 *     worker) -> DONE -> SINKING (the sink thread) -> FREE, under the pipeline's lock; a slot
 *     submitted with skip_work goes QUEUED -> DONE without a worker, in order. Only the thread
 *     that moved a slot out of FREE, QUEUED or DONE touches the slot's contents until it moves
 *     it on: the run thread in FILLING, one worker in BUSY, the sink in SINKING.
 *  3. The first failure wins: snap_pipeline_fail records it on the job (snap_job_fail, itself
 *     first-failure-wins and thread-safe) and sets the abort flag; after that no worker or sink
 *     starts a new slot, and acquire and finish return the failure. A cancellation of the job
 *     counts as a failure (-ECANCELED) from the moment the run thread notices it.
 *  4. The run thread never blocks on its own stages without reporting progress and polling
 *     cancellation: every wait of acquire and finish is snap_job_wait, which reports on the
 *     progress interval (after ops->progress published what the other threads counted). The
 *     acquire of an inner pipeline (opts.inner), filled by another one's sink, polls
 *     cancellation only.
 *  5. snap_pipeline_free joins every thread it started, then calls ops->drop on every slot
 *     that is not FREE (filled but never sunk), so whatever a slot holds (a reader buffer) is
 *     given back after a failure too.
 *  6. Workers run nice_workers levels below the job's other threads (setpriority on the
 *     thread): the run thread and the sink are single streams and the critical path, the
 *     workers are many and take what CPU is left.
 */
#ifndef SNAP_PIPELINE_H
#define SNAP_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

struct snap_job;
struct snap_pipeline;

struct snap_pipeline_ops {
	/* Optional: a worker's own state (compressor, cipher), made when it starts. */
	int (*worker_init)(void *ctx, unsigned worker, void **ret_state);
	void (*worker_free)(void *ctx, void *state);
	/* The parallel stage; NULL passes every slot straight to the sink. */
	int (*work)(void *ctx, void *state, unsigned slot);
	/* The in-order stage, on the sink thread; NULL frees slots in order. */
	int (*sink)(void *ctx, unsigned slot);
	/* Optional: after the sink thread consumed its last slot (finish only, not on failure),
	 * on the sink thread: a sink's last words (flush a stage, close a part). */
	int (*sink_end)(void *ctx);
	/* Optional: gives back what a slot that was filled but never sunk holds (invariant 5). */
	void (*drop)(void *ctx, unsigned slot);
	/* Optional: on the run thread, before each progress report: publish counters. */
	void (*progress)(void *ctx);
};

struct snap_pipeline_opts {
	unsigned nworkers; /* 0 with ops->work set: one */
	unsigned nslots;   /* at least 1 */
	int nice_workers;  /* invariant 6; 0 keeps the job's priority */
	/* Filled by another pipeline's sink, not by the run thread (a chain: unbundle's inflated
	 * tar stream): acquire then only polls cancellation while it waits, and never reports
	 * progress, which stays the run thread's; finish is the run thread's and reports. */
	bool inner;
};

/* Where the pipeline's threads waited, in ns (SNAP_RESULT_TIMINGS): the run thread for a free
 * slot and for the end, workers for work (summed over workers), the sink for the next slot. */
struct snap_pipeline_stats {
	uint64_t acquire_wait, finish_wait, worker_idle, sink_wait;
	uint64_t work_busy, sink_busy; /* wall time inside work (summed) and sink */
};

/* Starts the workers and the sink thread. ctx is passed to every op. On failure nothing is
 * left running and the job records why. */
int snap_pipeline_new(struct snap_job *job, const struct snap_pipeline_opts *opts,
		      const struct snap_pipeline_ops *ops, void *ctx, struct snap_pipeline **ret);

/* Run thread: waits for the next slot in sequence to be free and hands it over (FILLING); sets
 * its index and sequence number. Returns the first failure, or -ECANCELED. */
int snap_pipeline_acquire(struct snap_pipeline *p, unsigned *ret_slot, uint64_t *ret_seq);
/* Run thread: the slot acquired last is filled; skip_work sends it to the sink directly. */
void snap_pipeline_submit(struct snap_pipeline *p, bool skip_work);
/* Run thread: the last slot was submitted; waits until the sink consumed it and ran sink_end,
 * then stops every thread. Returns the first failure (also after a failure or cancellation
 * that came earlier). */
int snap_pipeline_finish(struct snap_pipeline *p);

/* Any thread: records the failure (first wins, invariant 3), stops the pipeline, returns err. */
int snap_pipeline_fail(struct snap_pipeline *p, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Any thread: whether a failure or a cancellation stopped the pipeline. */
bool snap_pipeline_failed(struct snap_pipeline *p);

void snap_pipeline_stats(const struct snap_pipeline *p, struct snap_pipeline_stats *ret);

/* Stops and joins every thread (without waiting for queued slots), drops what slots still
 * hold (invariant 5), frees. Accepts NULL, returns NULL. */
struct snap_pipeline *snap_pipeline_free(struct snap_pipeline *p);

#endif
