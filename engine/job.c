// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * job.c - the job object: parameters, progress, cancellation, errors, results; and dispatch to
 * the runner of each job kind. Invariants in job-internal.h.
 *
 * State transitions:
 *  1. created (snap_job_new) -> configured (snap_job_set_param/_string/_add_source)
 *  2. configured -> running -> done or failed (snap_job_run, via the kind's runner)
 *  3. any -> cancelled (snap_job_cancel sets the flag; the runner notices, cleans up, and
 *     snap_job_run returns -ECANCELED)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "job-internal.h"
#include "util.h"

/* The runner of each job kind (job-internal.h). */
static int (*const job_runners[])(struct snap_job *job) = {
    [SNAP_JOB_BUNDLE] = snap_bundle_run,
    [SNAP_JOB_UNBUNDLE] = snap_unbundle_run,
    [SNAP_JOB_VERIFY_BUNDLE] = snap_unbundle_run,
    [SNAP_JOB_STORE] = snap_store_run,
    [SNAP_JOB_RESTORE] = snap_restore_run,
    [SNAP_JOB_VERIFY_STORE] = snap_restore_run,
    [SNAP_JOB_UPLOAD_BUNDLE] = snap_upload_bundle_run,
    [SNAP_JOB_DOWNLOAD_BUNDLE] = snap_download_bundle_run,
    [SNAP_JOB_DELETE_BUNDLE] = snap_delete_bundle_run,
    [SNAP_JOB_S3_ABORT] = snap_s3_abort_run,
    [SNAP_JOB_REKEY] = snap_rekey_run,
    [SNAP_JOB_BUNDLE_VOL] = snap_bundle_vol_run,
    [SNAP_JOB_MIGRATE_MANIFEST] = snap_migrate_manifest_run,
    [SNAP_JOB_MIGRATE_BUNDLE] = snap_migrate_bundle_run,
};

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t snap_now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

uint64_t snap_thread_cpu_ns(void)
{
	return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

uint64_t snap_process_cpu_ns(void)
{
	return clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

int snap_job_new(enum snap_job_kind kind, struct snap_job **ret)
{
	if (kind <= 0 || (size_t)kind >= sizeof(job_runners) / sizeof(job_runners[0]) ||
	    !job_runners[kind])
		return -EINVAL;
	struct snap_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->kind = kind;
	j->s3_wake_fd = -1;
	pthread_mutex_init(&j->fail_lock, NULL);
	pthread_mutex_init(&j->s3_lock, NULL);
	*ret = j;
	return 0;
}

struct snap_job *snap_job_free(struct snap_job *job)
{
	if (!job)
		return NULL;
	snap_job_s3_free(job);
	pthread_mutex_destroy(&job->s3_lock);
	free(job->params);
	for (size_t i = 0; i < job->nstrings; i++)
		free(job->strings[i].value);
	free(job->strings);
	for (size_t i = 0; i < job->nsources; i++) {
		free(job->sources[i].path);
		free(job->sources[i].device);
	}
	free(job->sources);
	free(job->error_detail);
	pthread_mutex_destroy(&job->fail_lock);
	for (size_t i = 0; i < JOB_RESULTS_STR; i++)
		free(job->result_str[i]);
	free(job);
	return NULL;
}

enum snap_job_kind snap_job_kind(const struct snap_job *job)
{
	return job->kind;
}

int snap_job_set_param(struct snap_job *job, int param, int64_t value)
{
	for (size_t i = 0; i < job->nparams; i++) {
		if (job->params[i].id == param) {
			job->params[i].value = value;
			return 0;
		}
	}
	struct job_kv *n = realloc(job->params, (job->nparams + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	job->params = n;
	job->params[job->nparams++] = (struct job_kv){param, value};
	return 0;
}

int snap_job_get_param(const struct snap_job *job, int param, int64_t *ret)
{
	for (size_t i = 0; i < job->nparams; i++) {
		if (job->params[i].id == param) {
			*ret = job->params[i].value;
			return 0;
		}
	}
	return -ENOENT;
}

int64_t snap_job_param(const struct snap_job *job, int param, int64_t def)
{
	int64_t v;
	return snap_job_get_param(job, param, &v) == 0 ? v : def;
}

static int add_string(struct snap_job *job, int sparam, const char *value, bool replace)
{
	if (!value)
		return -EINVAL;
	char *copy = strdup(value);
	if (!copy)
		return -ENOMEM;
	if (replace) {
		for (size_t i = 0; i < job->nstrings; i++) {
			if (job->strings[i].id == sparam) {
				free(job->strings[i].value);
				job->strings[i].value = copy;
				return 0;
			}
		}
	}
	struct job_str *n = realloc(job->strings, (job->nstrings + 1) * sizeof(*n));
	if (!n) {
		free(copy);
		return -ENOMEM;
	}
	job->strings = n;
	job->strings[job->nstrings++] = (struct job_str){sparam, copy};
	return 0;
}

int snap_job_set_string(struct snap_job *job, int sparam, const char *value)
{
	return add_string(job, sparam, value, true);
}

int snap_job_add_string(struct snap_job *job, int sparam, const char *value)
{
	return add_string(job, sparam, value, false);
}

const char *snap_job_string(const struct snap_job *job, int sparam)
{
	const char *v = NULL;
	for (size_t i = 0; i < job->nstrings; i++)
		if (job->strings[i].id == sparam)
			v = job->strings[i].value;
	return v;
}

size_t snap_job_list(const struct snap_job *job, int sparam, const char ***ret)
{
	size_t n = 0;
	*ret = NULL;
	for (size_t i = 0; i < job->nstrings; i++)
		n += job->strings[i].id == sparam;
	if (n == 0)
		return 0;
	const char **v = calloc(n, sizeof(*v));
	if (!v)
		return 0;
	n = 0;
	for (size_t i = 0; i < job->nstrings; i++)
		if (job->strings[i].id == sparam)
			v[n++] = job->strings[i].value;
	*ret = v;
	return n;
}

int snap_job_add_source(struct snap_job *job, const char *path, const char *device_name)
{
	if (!path)
		return -EINVAL;
	struct job_source *n = realloc(job->sources, (job->nsources + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	job->sources = n;
	struct job_source *s = &job->sources[job->nsources];
	s->path = strdup(path);
	s->device = device_name ? strdup(device_name) : NULL;
	if (!s->path || (device_name && !s->device)) {
		free(s->path);
		free(s->device);
		return -ENOMEM;
	}
	job->nsources++;
	return 0;
}

void snap_job_set_progress(struct snap_job *job, snap_progress_fn fn, void *userdata)
{
	job->progress_fn = fn;
	job->progress_userdata = userdata;
}

void snap_job_cancel(struct snap_job *job)
{
	job->cancelled = 1;
	snap_job_s3_cancel(job);
}

bool snap_job_cancelled(const struct snap_job *job)
{
	return job->cancelled != 0;
}

int snap_job_fail(struct snap_job *job, int err, const char *fmt, ...)
{
	if (err >= 0)
		err = -EIO;
	pthread_mutex_lock(&job->fail_lock);
	if (!job->error_detail) {
		job->error = err;
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(&job->error_detail, fmt, ap) < 0)
			job->error_detail = NULL;
		va_end(ap);
	}
	pthread_mutex_unlock(&job->fail_lock);
	return err;
}

int snap_job_read_file(struct snap_job *job, const char *path, const char *what, size_t max,
		       char **ret, size_t *ret_len)
{
	int r = snap_read_small_file(path, max, ret, ret_len);
	if (r == -EFBIG)
		return snap_job_fail(job, r, "cannot read %s%s%s: larger than %zu MiB",
				     what ? what : "", what ? " " : "", path, max >> 20);
	if (r < 0)
		return snap_job_fail(job, r, "cannot read %s%s%s: %s", what ? what : "",
				     what ? " " : "", path, snap_strerror(r));
	return 0;
}

const char *snap_job_error(const struct snap_job *job)
{
	return job->error_detail ? job->error_detail : "";
}

void snap_job_report(struct snap_job *job, bool force)
{
	uint64_t now = snap_now_ns();
	uint64_t interval = (uint64_t)snap_job_param(job, SNAP_PARAM_PROGRESS_MS, 200) * 1000000ull;
	if (!force && now - job->last_report_ns < interval)
		return;
	job->last_report_ns = now;
	struct snap_progress *p = &job->progress;
	p->elapsed = (double)(now - job->start_ns) / 1e9;
	if (p->bytes_total > 0) {
		double pct = 100.0 * (double)p->bytes_done / (double)p->bytes_total;
		if (p->stage < SNAP_STAGE_DONE && pct > 99.0)
			pct = 99.0; /* 100 % only once everything is renamed into place */
		p->percent = p->stage == SNAP_STAGE_DONE ? 100.0 : pct;
	} else {
		p->percent = p->stage == SNAP_STAGE_DONE ? 100.0 : 0.0;
	}
	snap_job_s3_progress(job);
	if (job->progress_fn && job->progress_fn(job->progress_userdata, p) != 0)
		job->cancelled = 1;
}

void snap_job_set_stage(struct snap_job *job, int stage)
{
	job->progress.stage = stage;
	snap_job_report(job, true);
}

void snap_job_wait(struct snap_job *job, pthread_cond_t *cond, pthread_mutex_t *lock)
{
	int64_t ms = snap_job_param(job, SNAP_PARAM_PROGRESS_MS, 200);
	/* a zero interval reports at every call; waking more often than this only burns CPU */
	if (ms < 10)
		ms = 10;
	/* the condition variables use the default clock, CLOCK_REALTIME: a clock step only
	 * moves one progress sample, the wait itself still ends on its signal */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ms * 1000000ull;
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	if (pthread_cond_timedwait(cond, lock, &ts) == ETIMEDOUT) {
		pthread_mutex_unlock(lock);
		snap_job_report(job, false);
		pthread_mutex_lock(lock);
	}
}

void snap_job_set_result_u64(struct snap_job *job, int result, uint64_t value)
{
	if (result > 0 && result < JOB_RESULTS_U64) {
		job->result_u64[result] = value;
		job->result_u64_set[result] = true;
	}
}

int snap_job_set_result_string(struct snap_job *job, int result, const char *value)
{
	int i = result - 100;
	if (i < 0 || i >= JOB_RESULTS_STR || !value)
		return -EINVAL;
	char *c = strdup(value);
	if (!c)
		return -ENOMEM;
	free(job->result_str[i]);
	job->result_str[i] = c;
	return 0;
}

int snap_job_result_u64(const struct snap_job *job, int result, uint64_t *ret)
{
	if (result <= 0 || result >= JOB_RESULTS_U64 || !job->result_u64_set[result])
		return -ENOENT;
	*ret = job->result_u64[result];
	return 0;
}

const char *snap_job_result_string(const struct snap_job *job, int result)
{
	int i = result - 100;
	if (i < 0 || i >= JOB_RESULTS_STR)
		return NULL;
	return job->result_str[i];
}

unsigned snap_job_threads(const struct snap_job *job)
{
	int64_t t = snap_job_param(job, SNAP_PARAM_THREADS, 0);
	if (t > 0)
		return t > 1024 ? 1024u : (unsigned)t;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1u;
}

int snap_job_run(struct snap_job *job)
{
	int r;
	if (job->error_detail) {
		free(job->error_detail);
		job->error_detail = NULL;
	}
	job->error = 0;
	/* a job run again reports only this run's results */
	memset(job->result_u64_set, 0, sizeof(job->result_u64_set));
	for (size_t i = 0; i < JOB_RESULTS_STR; i++) {
		free(job->result_str[i]);
		job->result_str[i] = NULL;
	}
	memset(&job->progress, 0, sizeof(job->progress));
	job->start_ns = snap_now_ns();
	job->last_report_ns = 0;
	snap_job_s3_run_start(job);
	snap_job_set_stage(job, SNAP_STAGE_PREPARE);
	r = job_runners[job->kind](job); /* snap_job_new accepts only kinds of the table */
	/* A cancel that arrives after the runner committed its output does not undo it: the
	 * runner's result stands (each runner polls the flag and returns -ECANCELED itself). */
	if (r == -ECANCELED && !job->error_detail)
		snap_job_fail(job, r, "cancelled");
	snap_job_set_result_u64(job, SNAP_RESULT_ELAPSED_NS, snap_now_ns() - job->start_ns);
	snap_job_s3_results(job);
	if (r >= 0)
		snap_job_set_stage(job, SNAP_STAGE_DONE);
	return r;
}
