/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * job-internal.h - the job object shared by every job runner (bundle.c, unbundle.c, store.c,
 * restore.c).
 *
 * Invariants:
 *  1. Parameters and strings are only changed before snap_job_run; runners read them with
 *     snap_job_param() / snap_job_string() / snap_job_list().
 *  2. The first failure wins: snap_job_fail() records the detail only if none is recorded yet,
 *     so the root cause, not a follow-on error, reaches the user. It is safe from any thread
 *     (the pipeline's workers and sink call it).
 *  3. Progress counters in job->progress are written by the run thread; worker threads that
 *     count bytes use the atomic helpers below. The callback is only ever called from the run
 *     thread (snap_job_report).
 *  4. cancelled is set asynchronously (signal handler, other thread, progress callback) and
 *     polled by runners at every chunk.
 *  5. A job has at most one S3 client (job-s3.c), made at the first snap_job_s3_client and kept
 *     until snap_job_free; a cancel reaches it through s3_wake_fd (a write(2), async-signal-
 *     safe) or, for a cancel by the progress callback, the flag its watcher polls.
 */
#ifndef SNAP_JOB_INTERNAL_H
#define SNAP_JOB_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "snapbundle.h"

struct job_kv {
	int id;
	int64_t value;
};

struct job_str {
	int id;
	char *value;
};

struct job_source {
	char *path;
	char *device; /* may be NULL */
};

#define JOB_RESULTS_U64 16

struct snap_s3_client;
struct snap_s3_list_objects;
struct snap_s3_object;
struct job_s3; /* job-s3.c */
#define JOB_RESULTS_STR 8

struct snap_job {
	enum snap_job_kind kind;
	struct job_kv *params;
	size_t nparams;
	struct job_str *strings; /* single-valued and list-valued alike, in order added */
	size_t nstrings;
	struct job_source *sources;
	size_t nsources;

	snap_progress_fn progress_fn;
	void *progress_userdata;
	struct snap_progress progress;
	uint64_t start_ns, last_report_ns;

	volatile int cancelled; /* sig_atomic; see invariant 4 */
	volatile int s3_wake_fd; /* -1, or the write end of the S3 watcher's pipe (invariant 5) */
	pthread_mutex_t s3_lock; /* creating the S3 client */
	struct job_s3 *s3;
	pthread_mutex_t fail_lock; /* snap_job_fail may be called from any thread */
	int error;
	char *error_detail;

	uint64_t result_u64[JOB_RESULTS_U64]; /* indexed by snap_job_result (1..15) */
	bool result_u64_set[JOB_RESULTS_U64];
	char *result_str[JOB_RESULTS_STR]; /* indexed by snap_job_result - 100 */
};

int64_t snap_job_param(const struct snap_job *job, int param, int64_t def);
/* The last value set for sparam, or NULL. */
const char *snap_job_string(const struct snap_job *job, int sparam);
/* Every value added for a list sparam, in order; *ret is malloc'd (free it), count returned. */
size_t snap_job_list(const struct snap_job *job, int sparam, const char ***ret);

/* Reads a small file (a key, a certificate, a manifest) for the job: at most max bytes, NUL
 * terminated (free it); a failure is recorded: "cannot read WHAT PATH: why". */
int snap_job_read_file(struct snap_job *job, const char *path, const char *what, size_t max,
		       char **ret, size_t *ret_len);

/* Records (first failure wins) and returns err, which must be negative. */
int snap_job_fail(struct snap_job *job, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool snap_job_cancelled(const struct snap_job *job);

/* Calls the progress callback if the interval passed, or always when force. A non-zero return
 * from the callback cancels the job. */
void snap_job_report(struct snap_job *job, bool force);
/* pthread_cond_wait(cond, lock) for at most the progress interval (lock held); when the wait
 * times out, reports progress with lock released, so a run thread waiting on its workers or
 * its input still reports while bytes move. Callers loop on their own condition. */
void snap_job_wait(struct snap_job *job, pthread_cond_t *cond, pthread_mutex_t *lock);
void snap_job_set_stage(struct snap_job *job, int stage);
uint64_t snap_now_ns(void);
/* CPU time of the calling thread and of the whole process, in ns: what a stage costs,
 * whatever else shares the machine (the jobs' SNAP_RESULT_TIMINGS). */
uint64_t snap_thread_cpu_ns(void);
uint64_t snap_process_cpu_ns(void);

void snap_job_set_result_u64(struct snap_job *job, int result, uint64_t value);
int snap_job_set_result_string(struct snap_job *job, int result, const char *value);

/* Number of worker threads for SNAP_PARAM_THREADS (0 = online CPUs). */
unsigned snap_job_threads(const struct snap_job *job);

/* The job's S3 client (invariant 5), made at the first call from SNAP_SPARAM_S3_* and
 * SNAP_PARAM_S3_* through the AWS chain (s3/s3.h); a failure is recorded with the chain's
 * detail. Any thread. */
int snap_job_s3_client(struct snap_job *job, struct snap_s3_client **ret);
/* A fresh client with the job's configuration (caller frees it), for the cleanups a cancelled job
 * still owes (aborting an upload it does not keep): the job's own client fails every request
 * after a cancel. -ENOENT when the job made no client. */
int snap_job_s3_cleanup_client(struct snap_job *job, struct snap_s3_client **ret);
/* job.c's hooks: the cancel (async-signal-safe), progress (bytes_uploaded/downloaded), the
 * results at the end of a run, and freeing. Each is a no-op for a job without a client. */
void snap_job_s3_cancel(struct snap_job *job);
void snap_job_s3_progress(struct snap_job *job);
void snap_job_s3_run_start(struct snap_job *job);
void snap_job_s3_results(struct snap_job *job);
void snap_job_s3_free(struct snap_job *job);

/* Where a classic bundle is in S3: a bucket and a key prefix, "" or ending in '/'. */
struct snap_s3_where {
	char *bucket, *prefix;
};
/* The one reading of a place a user names in a bucket, "s3://BUCKET[/PREFIX]" (the bucket
 * parameters of s3-bundle.c and migrate.c, a bundle's s3:// destination, an unbundle's s3://
 * source directory):
 *  1. BUCKET is what comes before the first '/' after "s3://", checked by snap_s3_url_parse:
 *     an empty one ("s3://", "s3:///p") is refused.
 *  2. PREFIX is the rest taken literally (a key is not a path: "s3://b//p" is under "/p/"),
 *     except that its trailing '/'s are one: "s3://b/p", "s3://b/p/" and "s3://b/p//" all
 *     mean the prefix "p/", where a bundle to any of them puts its objects.
 *  3. No PREFIX, or one of '/'s only ("s3://b", "s3://b/", "s3://b//"), is the prefix "", the
 *     top of the bucket.
 * The folder of an existing object's key (bundle-parts.c, the parts beside a manifest) is not
 * such a place: it is the key up to its last '/', literally. -EINVAL with the URL parser's
 * detail; ret untouched on failure. */
int snap_s3_where_parse(const char *url, struct snap_s3_where *ret, char **ret_detail);
/* snap_s3_where_parse of "BUCKET[/PREFIX]" without the scheme (leading '/' skipped), a failure
 * recorded in the job; what names the bucket in messages ("source": "no source bucket given"),
 * NULL for the only one. */
int snap_job_s3_where(struct snap_job *job, const char *v, const char *what,
		      struct snap_s3_where *ret);
void snap_s3_where_clear(struct snap_s3_where *w);
/* PREFIX + name, malloc'd; NULL when out of memory. */
char *snap_s3_where_key(const struct snap_s3_where *w, const char *name);
/* Records an S3 failure: "cancelled" after a cancel, else "what: detail" (what optional; the
 * errno's text without a detail). Frees detail; returns r. */
int snap_job_s3_fail(struct snap_job *job, int r, char *detail, const char *what);
/* The end of an S3 call that returned r and *detail: a failure recorded as snap_job_s3_fail
 * does; *detail freed and set to NULL either way. Returns r. */
int snap_job_s3_check(struct snap_job *job, int r, char **detail, const char *what);
/* The parts in flight at once: SNAP_PARAM_S3_CONNECTIONS within 1..64. */
unsigned snap_job_s3_connections(const struct snap_job *job);
/* The canned ACL of a bundle's objects: SNAP_SPARAM_S3_ACL, aws-exec-read by default (the EC2
 * AMI tools'), NULL for "" (none). */
const char *snap_job_s3_bundle_acl(const struct snap_job *job);
/* What the bucket holds under w's prefix; a failure fails the job. */
int snap_job_s3_list(struct snap_job *job, struct snap_s3_client *c, const struct snap_s3_where *w,
		     struct snap_s3_list_objects **ret);
/* The listed object of a bundle's part name under w, its size counted in progress.bytes_total;
 * a missing one fails the job: "no part s3://BUCKET/KEY: the bundle [BUNDLE ]is incomplete". */
int snap_job_s3_listed_part(struct snap_job *job, const struct snap_s3_where *w,
			    const struct snap_s3_list_objects *l, const char *name,
			    const char *bundle, const struct snap_s3_object **ret);
/* CreateBucket at location (NULL or "": the service's default); one that exists is fine. */
int snap_job_s3_make_bucket(struct snap_job *job, struct snap_s3_client *c, const char *bucket,
			    const char *location);
/* buf[0, len) as the file at path, under the output layer's commit policy (output.h): replaced
 * only with force; a failure is "cannot write PATH: why". */
int snap_job_write_whole(struct snap_job *job, const char *path, const void *buf, size_t len,
			 bool force);

/* Runners: one per job kind. */
int snap_bundle_run(struct snap_job *job);
int snap_unbundle_run(struct snap_job *job); /* SNAP_JOB_UNBUNDLE and SNAP_JOB_VERIFY_BUNDLE */
int snap_store_run(struct snap_job *job);
int snap_restore_run(struct snap_job *job); /* SNAP_JOB_RESTORE and SNAP_JOB_VERIFY_STORE */
/* s3-bundle.c */
int snap_upload_bundle_run(struct snap_job *job);
int snap_download_bundle_run(struct snap_job *job);
int snap_delete_bundle_run(struct snap_job *job);
int snap_s3_abort_run(struct snap_job *job);
int snap_rekey_run(struct snap_job *job);
int snap_bundle_vol_run(struct snap_job *job); /* bundle-vol.c: SNAP_JOB_BUNDLE_VOL */
/* migrate.c */
int snap_migrate_manifest_run(struct snap_job *job);
int snap_migrate_bundle_run(struct snap_job *job);

#endif
