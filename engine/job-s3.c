// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * job-s3.c - the S3 client of a job (job-internal.h, invariant 5): made once from the job's
 * parameters through the AWS chain, its log lines sent to the library's log, its statistics
 * reported as progress and results, and a job's cancel forwarded to it. Also the one reading of
 * a place in a bucket (bucket and prefix) for every job, and the pieces the classic-bundle jobs
 * share (s3-bundle.c, migrate.c): the failure message and the end of an S3 call, the window of
 * connections, the bundle ACL, CreateBucket, the listing under a bundle's prefix and a part's
 * lookup in it, and a manifest or part written whole to a file.
 *
 * Invariants:
 *  1. The client is made under job->s3_lock and published (job->s3) only once complete; readers
 *     on other threads (progress, cancel) load the pointer atomically.
 *  2. snap_job_cancel may run in a signal handler, where the client's own cancel (locks,
 *     condition variables) is not allowed: it only writes a byte to s3_wake_fd. The watcher
 *     thread, blocked on the pipe's read end, then calls snap_s3_client_cancel. A cancel by the
 *     progress callback only sets job->cancelled: the watcher also wakes every
 *     WATCH_INTERVAL_MS to look at the flag.
 *  3. Progress and results count from the start of each run (the client's statistics at
 *     snap_job_run are the base), so a job run twice reports each run's own bytes.
 *
 * State transitions:
 *  1. none -> ready (snap_job_s3_client: resolve, client, watcher)
 *  2. ready -> cancelled (the watcher, on a cancel): every request fails with -ECANCELED
 *  3. ready or cancelled -> none (snap_job_s3_free: stop and join the watcher, free the client)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job-internal.h"
#include "log.h"
#include "output.h"
#include "s3.h"

#define WATCH_INTERVAL_MS 100

struct job_s3 {
	struct snap_job *job; /* the watcher's: it polls job->cancelled */
	struct snap_s3_config *cfg;
	struct snap_s3_client *client;
	int pipe[2];
	pthread_t watcher;
	bool watching;
	volatile int stop;
	struct snap_s3_stats base; /* invariant 3 */
};

static void client_log(void *userdata, int level, const char *msg)
{
	(void)userdata;
	snap_log((enum snap_log_level)level, "%s", msg);
}

static void *watch(void *arg)
{
	/* the thread gets its job_s3, never job->s3: snap_job_s3_free unpublishes that before
	 * it stops the thread, which may not have run yet */
	struct job_s3 *s = arg;
	struct snap_job *job = s->job;
	for (;;) {
		if (job->cancelled) {
			snap_s3_client_cancel(s->client);
			return NULL;
		}
		if (s->stop)
			return NULL;
		struct pollfd pfd = {.fd = s->pipe[0], .events = POLLIN};
		if (poll(&pfd, 1, WATCH_INTERVAL_MS) > 0) {
			char buf[16];
			while (read(s->pipe[0], buf, sizeof(buf)) > 0)
				;
		}
	}
}

static struct job_s3 *job_s3_load(const struct snap_job *job)
{
	return __atomic_load_n(&job->s3, __ATOMIC_ACQUIRE);
}

/* The options of the chain from the job's parameters. */
static void job_s3_options(struct snap_job *job, struct snap_s3_options *o)
{
	*o = (struct snap_s3_options){
	    .endpoint = snap_job_string(job, SNAP_SPARAM_S3_ENDPOINT),
	    .region = snap_job_string(job, SNAP_SPARAM_S3_REGION),
	    .access_key = snap_job_string(job, SNAP_SPARAM_S3_ACCESS_KEY),
	    .secret_key = snap_job_string(job, SNAP_SPARAM_S3_SECRET_KEY),
	    .session_token = snap_job_string(job, SNAP_SPARAM_S3_SESSION_TOKEN),
	    .profile = snap_job_string(job, SNAP_SPARAM_S3_PROFILE),
	};
	int64_t n = snap_job_param(job, SNAP_PARAM_S3_CONNECTIONS, 0);
	o->connections = n > 0 ? (n > 1024 ? 1024u : (unsigned)n) : 0;
	int64_t retries = snap_job_param(job, SNAP_PARAM_S3_RETRIES, -1);
	o->retries = retries == 0  ? SNAP_S3_NO_RETRIES
		     : retries > 0 ? (retries > 100 ? 100u : (unsigned)retries)
				   : 0;
}

static struct job_s3 *job_s3_free(struct job_s3 *s)
{
	if (!s)
		return NULL;
	snap_s3_client_free(s->client);
	snap_s3_config_free(s->cfg);
	if (s->pipe[0] >= 0)
		close(s->pipe[0]);
	if (s->pipe[1] >= 0)
		close(s->pipe[1]);
	free(s);
	return NULL;
}

int snap_job_s3_client(struct snap_job *job, struct snap_s3_client **ret)
{
	struct job_s3 *s = job_s3_load(job);
	if (s) {
		*ret = s->client;
		return 0;
	}
	pthread_mutex_lock(&job->s3_lock);
	if (job->s3) {
		*ret = job->s3->client;
		pthread_mutex_unlock(&job->s3_lock);
		return 0;
	}
	int r = -ENOMEM;
	char *detail = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail;
	s->pipe[0] = s->pipe[1] = -1;
	struct snap_s3_options o;
	job_s3_options(job, &o);
	r = snap_s3_config_resolve(&o, &s->cfg, &detail);
	if (r < 0) {
		snap_job_fail(job, r, "%s%s", r == -ENOKEY ? "" : "cannot configure S3: ",
			      detail ? detail : snap_strerror(r));
		goto fail;
	}
	r = snap_s3_client_new(s->cfg, &s->client, &detail);
	if (r < 0) {
		snap_job_fail(job, r, "cannot start the S3 client: %s",
			      detail ? detail : snap_strerror(r));
		goto fail;
	}
	snap_s3_client_set_log(s->client, client_log, job);
	snap_debug("s3: endpoint %s (%s addressing), region %s, credentials from %s",
		   s->cfg->endpoint, s->cfg->aws ? "virtual-hosted" : "path-style", s->cfg->region,
		   s->cfg->source);
	if (pipe2(s->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = snap_job_fail(job, -errno, "cannot make a pipe: %s", snap_strerror(-errno));
		goto fail;
	}
	snap_s3_client_stats(s->client, &s->base);
	/* publish, then start the watcher; a failed start unpublishes */
	__atomic_store_n(&job->s3, s, __ATOMIC_RELEASE);
	s->job = job;
	r = -pthread_create(&s->watcher, NULL, watch, s);
	if (r < 0) {
		__atomic_store_n(&job->s3, NULL, __ATOMIC_RELEASE);
		snap_job_fail(job, r, "cannot start a thread: %s", snap_strerror(r));
		goto fail;
	}
	s->watching = true;
	job->s3_wake_fd = s->pipe[1];
	pthread_mutex_unlock(&job->s3_lock);
	free(detail);
	*ret = s->client;
	return 0;
fail:
	pthread_mutex_unlock(&job->s3_lock);
	free(detail);
	job_s3_free(s);
	return r;
}

int snap_job_s3_cleanup_client(struct snap_job *job, struct snap_s3_client **ret)
{
	struct job_s3 *s = job_s3_load(job);
	if (!s)
		return -ENOENT;
	char *detail = NULL;
	int r = snap_s3_client_new(s->cfg, ret, &detail);
	free(detail);
	return r;
}

void snap_job_s3_cancel(struct snap_job *job)
{
	int fd = job->s3_wake_fd;
	if (fd >= 0) {
		int saved = errno; /* a signal handler must leave errno as it found it */
		ssize_t n = write(fd, "c", 1);
		(void)n;
		errno = saved;
	}
}

void snap_job_s3_progress(struct snap_job *job)
{
	struct job_s3 *s = job_s3_load(job);
	if (!s)
		return;
	struct snap_s3_stats st;
	snap_s3_client_stats(s->client, &st);
	job->progress.bytes_uploaded = st.bytes_up - s->base.bytes_up;
	job->progress.bytes_downloaded = st.bytes_down - s->base.bytes_down;
}

void snap_job_s3_run_start(struct snap_job *job)
{
	struct job_s3 *s = job_s3_load(job);
	if (s)
		snap_s3_client_stats(s->client, &s->base);
}

void snap_job_s3_results(struct snap_job *job)
{
	struct job_s3 *s = job_s3_load(job);
	if (!s)
		return;
	struct snap_s3_stats st;
	snap_s3_client_stats(s->client, &st);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_UPLOADED, st.bytes_up - s->base.bytes_up);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_DOWNLOADED,
				st.bytes_down - s->base.bytes_down);
	snap_job_set_result_u64(job, SNAP_RESULT_S3_REQUESTS, st.requests - s->base.requests);
	snap_job_set_result_u64(job, SNAP_RESULT_S3_RETRIES, st.retries - s->base.retries);
	snap_job_s3_progress(job);
}

void snap_job_s3_free(struct snap_job *job)
{
	struct job_s3 *s = job->s3;
	if (!s)
		return;
	job->s3_wake_fd = -1;
	__atomic_store_n(&job->s3, NULL, __ATOMIC_RELEASE);
	if (s->watching) {
		s->stop = 1;
		ssize_t n = write(s->pipe[1], "s", 1);
		(void)n;
		pthread_join(s->watcher, NULL);
	}
	job_s3_free(s);
}

/* ---- classic bundles in a bucket (s3-bundle.c, migrate.c) ---- */

int snap_s3_where_parse(const char *url, struct snap_s3_where *ret, char **ret_detail)
{
	char *bucket, *key, *prefix;
	int r = snap_s3_url_parse(url, &bucket, &key, ret_detail);
	if (r < 0)
		return r;
	size_t n = strlen(key);
	while (n && key[n - 1] == '/')
		n--;
	if (asprintf(&prefix, "%.*s%s", (int)n, key, n ? "/" : "") < 0) {
		free(bucket);
		free(key);
		return -ENOMEM;
	}
	free(key);
	*ret = (struct snap_s3_where){bucket, prefix};
	return 0;
}

int snap_job_s3_where(struct snap_job *job, const char *v, const char *what,
		      struct snap_s3_where *ret)
{
	if (!v || !*v)
		return what ? snap_job_fail(job, -EINVAL, "no %s bucket given", what)
			    : snap_job_fail(job, -EINVAL, "no bucket given");
	while (*v == '/')
		v++;
	char *url, *detail = NULL;
	if (asprintf(&url, "s3://%s", v) < 0)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	int r = snap_s3_where_parse(url, ret, &detail);
	free(url);
	if (r < 0) {
		const char *why = detail ? detail : snap_strerror(r);
		if (what)
			snap_job_fail(job, r, "%s bucket: %s", what, why);
		else
			snap_job_fail(job, r, "%s", why);
		free(detail);
	}
	return r;
}

void snap_s3_where_clear(struct snap_s3_where *w)
{
	free(w->bucket);
	free(w->prefix);
}

char *snap_s3_where_key(const struct snap_s3_where *w, const char *name)
{
	char *k;
	return asprintf(&k, "%s%s", w->prefix, name) < 0 ? NULL : k;
}

int snap_job_s3_fail(struct snap_job *job, int r, char *detail, const char *what)
{
	if (r == -ECANCELED && snap_job_cancelled(job))
		snap_job_fail(job, r, "cancelled");
	else if (what)
		snap_job_fail(job, r, "%s: %s", what, detail ? detail : snap_strerror(r));
	else
		snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
	free(detail);
	return r;
}

int snap_job_s3_check(struct snap_job *job, int r, char **detail, const char *what)
{
	char *d = *detail;
	*detail = NULL;
	if (r < 0)
		return snap_job_s3_fail(job, r, d, what);
	free(d);
	return r;
}

unsigned snap_job_s3_connections(const struct snap_job *job)
{
	int64_t n = snap_job_param(job, SNAP_PARAM_S3_CONNECTIONS, SNAP_S3_DEFAULT_CONNECTIONS);
	return n < 1 ? SNAP_S3_DEFAULT_CONNECTIONS : n > 64 ? 64u : (unsigned)n;
}

const char *snap_job_s3_bundle_acl(const struct snap_job *job)
{
	const char *acl = snap_job_string(job, SNAP_SPARAM_S3_ACL);
	if (!acl)
		return "aws-exec-read";
	return *acl ? acl : NULL;
}

int snap_job_s3_list(struct snap_job *job, struct snap_s3_client *c, const struct snap_s3_where *w,
		     struct snap_s3_list_objects **ret)
{
	char *detail = NULL;
	int r = snap_s3_list_objects(c, w->bucket, w->prefix, ret, &detail);
	return snap_job_s3_check(job, r, &detail, NULL);
}

int snap_job_s3_listed_part(struct snap_job *job, const struct snap_s3_where *w,
			    const struct snap_s3_list_objects *l, const char *name,
			    const char *bundle, const struct snap_s3_object **ret)
{
	char *k = snap_s3_where_key(w, name);
	if (!k)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	const struct snap_s3_object *o = snap_s3_list_objects_find(l, k);
	int r = 0;
	if (!o)
		r = snap_job_fail(job, -ENOENT, "no part s3://%s/%s: the bundle %s%sis incomplete",
				  w->bucket, k, bundle ? bundle : "", bundle ? " " : "");
	free(k);
	if (r < 0)
		return r;
	job->progress.bytes_total += o->size;
	*ret = o;
	return 0;
}

int snap_job_s3_make_bucket(struct snap_job *job, struct snap_s3_client *c, const char *bucket,
			    const char *location)
{
	char *detail = NULL;
	int r = snap_s3_create_bucket(c, bucket, location && *location ? location : NULL, &detail);
	if (r < 0 && r != -EEXIST) {
		char what[128];
		snprintf(what, sizeof(what), "cannot create bucket %s", bucket);
		return snap_job_s3_fail(job, r, detail, what);
	}
	free(detail);
	return 0;
}

int snap_job_write_whole(struct snap_job *job, const char *path, const void *buf, size_t len,
			 bool force)
{
	struct snap_output *out = NULL;
	char *detail = NULL;
	int r = snap_output_open(path, len, SNAP_OUTPUT_BUFFERED | (force ? SNAP_OUTPUT_FORCE : 0),
				 &out, &detail);
	if (r >= 0 && len)
		r = snap_output_write(out, buf, len, 0);
	if (r >= 0)
		r = snap_output_commit(out, &detail);
	if (r < 0)
		snap_job_fail(job, r, "cannot write %s: %s", path,
			      detail ? detail : snap_strerror(r));
	snap_output_free(out);
	free(detail);
	return r;
}
