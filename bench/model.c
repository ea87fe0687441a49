// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * model.c - the time a job should take on this machine, from the stage speeds and the source's
 * extent map, and which stage bounds it.
 *
 * Invariants (the model's assumptions, documented in docs/bench-json.md):
 *  1. D is the source's DATA bytes (what every job must read and carry), r the deflate ratio
 *     of the corpus at the job's level, C = D * r the compressed bytes. ZERO and UNUSED extents
 *     cost nothing.
 *  2. Each stage's time is its bytes over its one-thread rate: for compute stages the rate per
 *     CPU second (what a core does; on an idle machine the same as the wall rate, on a busy
 *     one it keeps the model what the hardware allows instead of what the moment allowed),
 *     for read and write the wall rate. The stages overlap (they are a pipeline), so a job
 *     takes at least:
 *       - each I/O stage (read, write) alone: the device does not get faster with threads;
 *       - each serial stage alone: the bundle's tar SHA-1, AES-128-CBC encryption and part
 *         SHA-1 (one stream each); unbundle's part SHA-1, CBC decryption, inflate of the one
 *         gzip member and tar SHA-1;
 *       - the CPU work of every compute stage, serial and parallel, spread over
 *         min(threads, online CPUs) cores.
 *     The limit is the largest of these; its name is the bound ("aes128cbc-enc",
 *     "read", "cpu:deflate" naming the largest contributor when all cores are the limit).
 *  3. Unbundle and restore read what bundle and store wrote, at the source's best read rate.
 *  4. A stage whose rate could not be measured is left out of the sum and flagged in the
 *     terms; the limit is then a lower bound.
 *  5. Next to the time limit, the CPU the compute stages need at their per-CPU-second rates
 *     (model_cpu_seconds) is compared with the CPU the job process used: unlike wall time
 *     this holds on a machine shared with other work, and the gap is the pipeline's own
 *     overhead (copies, locking, waiting spins, tar and manifest work).
 */
#include <string.h>

#include "bench.h"

struct term_def {
	const char *stage; /* name in rep->stages, NULL: the best read */
	const char *label; /* name in the model */
	bool serial, io;
	bool compressed; /* bytes are C, else D */
};

static const struct term_def bundle_terms[] = {
    {NULL, "read", false, true, false},
    {"zero-scan", "zero-scan", false, false, false},
    {"sha1", "tar-sha1", true, false, false},
    {"deflate", "deflate", false, false, false},
    {"aes128cbc-enc", "aes128cbc-enc", true, false, true},
    {"sha1", "part-sha1", true, false, true},
    {"write", "write", false, true, true},
};

static const struct term_def unbundle_terms[] = {
    {NULL, "read", false, true, true},
    {"sha1", "part-sha1", true, false, true},
    {"aes128cbc-dec", "aes128cbc-dec", true, false, true},
    {"inflate", "inflate", true, false, false},
    {"sha1", "tar-sha1", true, false, false},
    {"write", "write", false, true, false},
};

static const struct term_def store_terms[] = {
    {NULL, "read", false, true, false},
    {"zero-scan", "zero-scan", false, false, false},
    {"crc32", "frame-crc", false, false, false},
    {"deflate", "deflate", false, false, false},
    {"aes256gcm-enc", "aes256gcm-enc", false, false, true},
    {"sha256", "frame-digest", false, false, true},
    {"write", "write", false, true, true},
};

static const struct term_def restore_terms[] = {
    {NULL, "read", false, true, true},
    {"sha256", "frame-digest", false, false, true},
    {"aes256gcm-dec", "aes256gcm-dec", false, false, true},
    {"inflate", "inflate", false, false, false},
    {"crc32", "frame-crc", false, false, false},
    {"write", "write", false, true, false},
};

static const struct term_def *terms_of(const char *kind, size_t *n)
{
#define RET(a)                                                                                     \
	do {                                                                                       \
		*n = sizeof(a) / sizeof((a)[0]);                                                   \
		return a;                                                                          \
	} while (0)
	if (!strcmp(kind, "bundle"))
		RET(bundle_terms);
	if (!strcmp(kind, "unbundle"))
		RET(unbundle_terms);
	if (!strcmp(kind, "store"))
		RET(store_terms);
	RET(restore_terms);
#undef RET
}

static double ratio(const struct bench_report *rep)
{
	char name[16];
	snprintf(name, sizeof(name), "deflate-l%d", rep->opts.level);
	const struct bench_stage *st = bench_stage_find(rep, name);
	return st && st->ratio > 0 ? st->ratio : 1.0;
}

size_t bench_model_terms(const struct bench_report *rep, const char *kind, unsigned threads,
			 struct bench_term *out, size_t max)
{
	size_t n;
	const struct term_def *defs = terms_of(kind, &n);
	double d = (double)rep->source.bytes[SNAP_EXTENT_DATA], c = d * ratio(rep);
	(void)threads;
	for (size_t i = 0; i < n && i < max; i++) {
		const struct bench_stage *st;
		char name[16];
		if (!defs[i].stage) {
			st = bench_stage_best_read(rep);
		} else if (!strcmp(defs[i].stage, "deflate")) {
			snprintf(name, sizeof(name), "deflate-l%d", rep->opts.level);
			st = bench_stage_find(rep, name);
		} else {
			st = bench_stage_find(rep, defs[i].stage);
		}
		out[i].stage = defs[i].label;
		out[i].serial = defs[i].serial;
		out[i].io = defs[i].io;
		out[i].available = st && st->rate > 0;
		double bytes = defs[i].compressed ? c : d;
		/* invariant 2: what a core does, not what this process got of it */
		double rate = st && !defs[i].io && st->cpu_rate > 0 ? st->cpu_rate
			      : st				    ? st->rate
								    : 0;
		out[i].seconds = out[i].available ? bytes / rate : 0;
		out[i].cpu_seconds =
		    out[i].available && !defs[i].io && st->cpu_rate > 0 ? bytes / st->cpu_rate : 0;
	}
	return n < max ? n : max;
}

double bench_model_limit(const struct bench_report *rep, const char *kind, unsigned threads,
			 char *bound, size_t bound_len, bool *ret_complete)
{
	struct bench_term t[16];
	size_t n = bench_model_terms(rep, kind, threads, t, 16);
	unsigned cores = threads < rep->online_cpus ? threads : rep->online_cpus;
	if (cores == 0)
		cores = 1;
	double limit = 0, cpu = 0, biggest = 0;
	const char *name = "?", *biggest_name = "?";
	bool complete = true;
	for (size_t i = 0; i < n; i++) {
		if (!t[i].available) {
			complete = false;
			continue;
		}
		if (!t[i].io) {
			cpu += t[i].seconds;
			if (t[i].seconds > biggest) {
				biggest = t[i].seconds;
				biggest_name = t[i].stage;
			}
		}
		if ((t[i].io || t[i].serial) && t[i].seconds > limit) {
			limit = t[i].seconds;
			name = t[i].stage;
		}
	}
	if (cpu / cores > limit) {
		limit = cpu / cores;
		snprintf(bound, bound_len, "cpu:%s", biggest_name);
	} else {
		snprintf(bound, bound_len, "%s", name);
	}
	*ret_complete = complete;
	return limit;
}

void bench_model_apply(struct bench_report *rep)
{
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		struct bench_job *job = &rep->jobs[k];
		for (size_t i = 0; i < job->nruns; i++) {
			struct bench_run *run = &job->runs[i];
			bool complete;
			run->model_seconds =
			    bench_model_limit(rep, job->kind, run->threads, run->model_bound,
					      sizeof(run->model_bound), &complete);
			run->model_complete = complete;
			struct bench_term t[16];
			size_t n = bench_model_terms(rep, job->kind, run->threads, t, 16);
			run->model_cpu_seconds = 0;
			for (size_t j = 0; j < n; j++)
				run->model_cpu_seconds += t[j].cpu_seconds;
			run->cpu_percent = run->ok && run->cpu_seconds > 0
					       ? 100.0 * run->model_cpu_seconds / run->cpu_seconds
					       : 0;
			run->percent_of_limit = run->ok && run->seconds > 0
						    ? 100.0 * run->model_seconds / run->seconds
						    : 0;
		}
	}
}
