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
 *  6. The limit of invariant 2 is taken window by window along the source and summed: a
 *     disk's content changes along it (text deflates at a third of the rate of already
 *     compressed data, which also barely shrinks), so the stage that bounds a job changes
 *     too, and a pipeline that holds tens of MiB in flight cannot overlap the device time of
 *     one stretch with the CPU time of another a gigabyte away. A window is about
 *     WINDOW_BYTES of DATA; its deflate and inflate CPU and its compressed bytes are those of
 *     the corpus pieces that fall in it (bench_profile: stages.c samples evenly spaced
 *     pieces, so piece p stands for the p-th of npieces equal stretches of DATA); the other
 *     stages cost the same per byte anywhere. The whole source as one window with the same
 *     totals is also reported (flat_limit_seconds): the bound a pipeline with unlimited
 *     buffering could reach. Without a profile there is only that window, at the stages'
 *     mean rates. The bound named is the one that
 *     bounds the windows holding most of the time (bound_share).
 *  7. When the job reads and writes one disk (unbundle and restore always: they read and
 *     write the work directory; bundle and store when the source sits on the work
 *     directory's disk, bench_same_device), the device's time is shared: its reads and
 *     writes take the sum of their times at the rates measured alone ("read+write"). On
 *     the development VM a 4 MiB O_DIRECT writer next to a reader got 630-1020 MB/s of its
 *     1.7 GB/s alone while the reader kept 820-960 MB/s of 1.6-1.9 GB/s: the sum of their
 *     shares was 0.8-0.95, so the sum is the bound, not an overestimate.
 *  8. Moving bytes costs CPU: the read and write stages record what the whole machine spent
 *     while they ran (stages.c invariant 5), and the "io-cpu" term charges each job that CPU
 *     per byte it reads and writes. It shares the cores with the compute stages (so it
 *     enters the CPU sum of invariant 2) but is not in model_cpu_seconds: most of it is spent
 *     outside the job process (block-layer workers, interrupts), where the process's CPU
 *     time does not see it. Unknown (no /proc/stat) counts as nothing, and the model is
 *     then marked incomplete.
 *  9. The compute terms (and io-cpu) are divided by the run's host_speed (stages.c invariant
 *     6): the rate of a short deflate probe right before the run over its rate right after
 *     the stages. A host that slowed down between the stages and the run lowers what the
 *     run could reach, and one that sped up raises it. Unknown: 1.
 */
#include <stdlib.h>
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

/* Windows of about this many DATA bytes are modelled one by one (invariant 6): about what the
 * jobs hold in flight (store at 2 threads: 12 slots and 14 reader buffers of 4 MiB), so work
 * further apart than this cannot overlap. */
#define WINDOW_BYTES (128.0 * 1024 * 1024)

/* One stretch of the source's DATA, in source order. */
struct window {
	double d, c;		      /* DATA bytes, and those deflated at the jobs' level */
	double deflate_cpu, inflate_cpu; /* CPU seconds; < 0: from the stage's mean rate */
};

static const struct bench_stage *term_stage(const struct bench_report *rep,
					    const struct term_def *def)
{
	char name[16];
	if (!def->stage)
		return bench_stage_best_read(rep);
	if (!strcmp(def->stage, "deflate")) {
		snprintf(name, sizeof(name), "deflate-l%d", rep->opts.level);
		return bench_stage_find(rep, name);
	}
	return bench_stage_find(rep, def->stage);
}

static double ratio(const struct bench_report *rep)
{
	char name[16];
	snprintf(name, sizeof(name), "deflate-l%d", rep->opts.level);
	const struct bench_stage *st = bench_stage_find(rep, name);
	return st && st->ratio > 0 ? st->ratio : 1.0;
}

/* The terms of one window. */
static size_t window_terms(const struct bench_report *rep, const char *kind, double speed,
			   const struct window *w, struct bench_term *out, size_t max)
{
	size_t n;
	const struct term_def *defs = terms_of(kind, &n);
	double io_cpu = 0;
	bool io_cpu_known = false;
	for (size_t i = 0; i < n && i < max; i++) {
		const struct bench_stage *st = term_stage(rep, &defs[i]);
		out[i].stage = defs[i].label;
		out[i].serial = defs[i].serial;
		out[i].io = defs[i].io;
		out[i].available = st && st->rate > 0;
		out[i].seconds = out[i].cpu_seconds = 0;
		if (!out[i].available)
			continue;
		double bytes = defs[i].compressed ? w->c : w->d;
		if (defs[i].io) {
			out[i].seconds = bytes / st->rate;
			if (st->io_cpu_known && st->bytes > 0) {
				io_cpu += bytes * st->io_cpu_seconds / (double)st->bytes;
				io_cpu_known = true;
			}
			continue;
		}
		/* invariant 2: what a core does, not what this process got of it */
		double rate = st->cpu_rate > 0 ? st->cpu_rate : st->rate;
		double cpu = bytes / rate;
		if (defs[i].stage && !strcmp(defs[i].stage, "deflate") && w->deflate_cpu >= 0)
			cpu = w->deflate_cpu;
		else if (defs[i].stage && !strcmp(defs[i].stage, "inflate") && w->inflate_cpu >= 0)
			cpu = w->inflate_cpu;
		cpu /= speed; /* invariant 9 */
		out[i].seconds = cpu;
		out[i].cpu_seconds = st->cpu_rate > 0 ? cpu : 0;
	}
	if (n >= max)
		return max;
	/* invariant 8: the machine's CPU for the I/O, shared with the compute stages */
	out[n] = (struct bench_term){.stage = "io-cpu",
				     .available = io_cpu_known,
				     .seconds = io_cpu / speed};
	return n + 1;
}

/* The source's DATA as windows (invariant 6); one window when flat is asked for (the same
 * totals, so the terms add up to it), at the stages' mean rates when the corpus profile is
 * missing. Returns the count; *ret is malloc'ed. */
static size_t make_windows(const struct bench_report *rep, bool flat, struct window **ret)
{
	const struct bench_profile *pf = &rep->profile;
	double d = (double)rep->source.bytes[SNAP_EXTENT_DATA];
	*ret = NULL;
	if (pf->npieces == 0 || !pf->deflate_cpu || d <= 0) {
		struct window *w = malloc(sizeof(*w));
		if (!w)
			return 0;
		*w = (struct window){d, d * ratio(rep), -1, -1};
		*ret = w;
		return 1;
	}
	/* piece p stands for the p-th of npieces equal stretches of DATA (stages.c samples
	 * evenly spaced pieces); each piece's cost scales to the bytes it stands for */
	double span = d / (double)pf->npieces, scale = span / (double)pf->piece_bytes;
	size_t per = flat ? pf->npieces : (size_t)(WINDOW_BYTES / span + 0.5);
	if (per < 1)
		per = 1;
	size_t nw = (pf->npieces + per - 1) / per;
	struct window *w = calloc(nw, sizeof(*w));
	if (!w)
		return 0;
	for (size_t p = 0; p < pf->npieces; p++) {
		struct window *x = &w[p / per];
		x->d += span;
		x->c += (double)pf->deflate_out[p] * scale;
		x->deflate_cpu += pf->deflate_cpu[p] * scale;
		x->inflate_cpu = pf->inflate_cpu ? x->inflate_cpu + pf->inflate_cpu[p] * scale : -1;
	}
	*ret = w;
	return nw;
}

/* invariant 9: the host's speed at the run relative to the stages; 1 when unknown */
static double run_speed(const struct bench_run *run)
{
	return run && run->host_speed > 0 ? run->host_speed : 1.0;
}

size_t bench_model_terms(const struct bench_report *rep, const char *kind,
			 const struct bench_run *run, struct bench_term *out, size_t max)
{
	struct window *w;
	size_t nw = make_windows(rep, false, &w), n = 0;
	for (size_t k = 0; k < nw; k++) {
		struct bench_term t[16];
		n = window_terms(rep, kind, run_speed(run), &w[k], t, max < 16 ? max : 16);
		for (size_t i = 0; i < n; i++) {
			if (k == 0) {
				out[i] = t[i];
				continue;
			}
			out[i].seconds += t[i].seconds;
			out[i].cpu_seconds += t[i].cpu_seconds;
		}
	}
	free(w);
	return n;
}

/* Do the job's reads and writes share one disk (invariant 7)? */
static bool shares_device(const struct bench_report *rep, const char *kind)
{
	if (!strcmp(kind, "unbundle") || !strcmp(kind, "restore"))
		return true; /* both read what the work directory holds and write into it */
	return rep->shared_device;
}

/* A window's limit (invariant 2) and the name of what bounds it. */
static double window_limit(const struct bench_term *t, size_t n, unsigned cores, bool shared,
			   char *bound, size_t bound_len, bool *complete)
{
	double limit = 0, cpu = 0, biggest = 0, io = 0;
	const char *name = "?", *biggest_name = "?";
	for (size_t i = 0; i < n; i++) {
		if (!t[i].available) {
			*complete = false;
			continue;
		}
		if (!t[i].io) {
			cpu += t[i].seconds;
			if (t[i].seconds > biggest) {
				biggest = t[i].seconds;
				biggest_name = t[i].stage;
			}
		}
		if (t[i].io)
			io += t[i].seconds;
		if ((t[i].io || t[i].serial) && t[i].seconds > limit) {
			limit = t[i].seconds;
			name = t[i].stage;
		}
	}
	if (shared && io > limit) {
		limit = io;
		name = "read+write";
	}
	if (cpu / cores > limit) {
		snprintf(bound, bound_len, "cpu:%s", biggest_name);
		return cpu / cores;
	}
	snprintf(bound, bound_len, "%s", name);
	return limit;
}

static double model_limit(const struct bench_report *rep, const char *kind,
			  const struct bench_run *run, bool flat, char *bound, size_t bound_len,
			  double *ret_share, size_t *ret_windows, bool *ret_complete)
{
	unsigned threads = run->threads;
	unsigned cores = threads < rep->online_cpus ? threads : rep->online_cpus;
	if (cores == 0)
		cores = 1;
	struct window *w;
	size_t nw = make_windows(rep, flat, &w);
	/* seconds bounded by each name, to name the bound of most of the time */
	struct {
		char name[32];
		double seconds;
	} by[32];
	size_t nby = 0;
	double total = 0;
	bool complete = true;
	for (size_t k = 0; k < nw; k++) {
		struct bench_term t[16];
		size_t n = window_terms(rep, kind, run_speed(run), &w[k], t, 16);
		char name[32];
		double lim = window_limit(t, n, cores, shares_device(rep, kind), name,
					  sizeof(name), &complete);
		total += lim;
		size_t j = 0;
		while (j < nby && strcmp(by[j].name, name))
			j++;
		if (j == nby && nby < sizeof(by) / sizeof(by[0])) {
			snprintf(by[nby].name, sizeof(by[nby].name), "%s", name);
			by[nby++].seconds = 0;
		}
		if (j < nby)
			by[j].seconds += lim;
	}
	free(w);
	size_t best = 0;
	for (size_t j = 1; j < nby; j++)
		if (by[j].seconds > by[best].seconds)
			best = j;
	snprintf(bound, bound_len, "%s", nby ? by[best].name : "?");
	if (ret_share)
		*ret_share = nby && total > 0 ? by[best].seconds / total : 0;
	if (ret_windows)
		*ret_windows = nw;
	*ret_complete = complete && nw > 0;
	return total;
}

void bench_model_apply(struct bench_report *rep)
{
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		struct bench_job *job = &rep->jobs[k];
		for (size_t i = 0; i < job->nruns; i++) {
			struct bench_run *run = &job->runs[i];
			bool complete;
			char flat_bound[32];
			run->model_seconds = model_limit(rep, job->kind, run, false, run->model_bound,
							 sizeof(run->model_bound),
							 &run->model_bound_share, &run->model_windows,
							 &complete);
			bool flat_complete;
			run->model_flat_seconds =
			    model_limit(rep, job->kind, run, true, flat_bound, sizeof(flat_bound), NULL,
					NULL, &flat_complete);
			run->model_complete = complete;
			struct bench_term t[16];
			size_t n = bench_model_terms(rep, job->kind, run, t, 16);
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
