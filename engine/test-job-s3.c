// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-job-s3.c - the S3 client of a job (engine/job-s3.c): a chain that finds no credentials
 * or a bad endpoint fails the job with the chain's detail; a cancel from a signal handler
 * (snap_job_cancel, async-signal-safe) reaches requests in flight, so a job stuck on a
 * non-answering service (the transport's fault hook) ends at once with -ECANCELED; the request
 * and retry counts are results even then; against the gateway when it runs, a missing bucket
 * fails naming it; and a place in a bucket (snap_s3_where_parse) is read the same by each of
 * its users: the bucket parameters (snap_job_s3_where: upload, download and delete-bundle,
 * migrate-bundle), a bundle's s3:// destination (snap_bundle_output_where) and an unbundle's
 * s3:// source directory (bundle-parts.c, which calls snap_s3_where_parse itself), slashes
 * included; and a local bundle's parts are found in one directory by unbundle and upload-bundle
 * alike (snap_bundle_parts_dir).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "bundle-output.h"
#include "bundle-parts.h"
#include "job-internal.h"
#include "s3.h"
#include "test-util.h"

static void clean_env(const char *dir)
{
	static const char *const vars[] = {
	    "AWS_ACCESS_KEY_ID",  "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
	    "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",   "AWS_ENDPOINT_URL",	"AWS_PROFILE",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	char p[300];
	snprintf(p, sizeof(p), "%s/none", dir);
	setenv("AWS_SHARED_CREDENTIALS_FILE", p, 1);
	setenv("AWS_CONFIG_FILE", p, 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static struct snap_job *abort_job(const char *url)
{
	struct snap_job *job;
	REQUIRE(snap_job_new(SNAP_JOB_S3_ABORT, &job) == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_OUTPUT, url) == 0);
	return job;
}

static void test_no_credentials(void)
{
	struct snap_job *job = abort_job("s3://some-bucket/key");
	int r = snap_job_run(job);
	CHECK(r == -ENOKEY, "%d", r);
	CHECK(strstr(snap_job_error(job), "no credentials found"), "%s", snap_job_error(job));
	uint64_t v;
	CHECK(snap_job_result_u64(job, SNAP_RESULT_S3_REQUESTS, &v) == -ENOENT,
	      "no client, no request count");
	snap_job_free(job);

	job = abort_job("s3://some-bucket/key");
	snap_job_set_string(job, SNAP_SPARAM_S3_ACCESS_KEY, "AK");
	snap_job_set_string(job, SNAP_SPARAM_S3_SECRET_KEY, "SK");
	snap_job_set_string(job, SNAP_SPARAM_S3_ENDPOINT, "ftp://x");
	r = snap_job_run(job);
	CHECK(r == -EINVAL, "%d", r);
	CHECK(strstr(snap_job_error(job), "cannot configure S3: endpoint 'ftp://x' (options)"),
	      "%s", snap_job_error(job));
	snap_job_free(job);

	job = abort_job("s3://Not_A_Bucket/key");
	r = snap_job_run(job);
	CHECK(r == -EINVAL && strstr(snap_job_error(job), "invalid bucket"), "%d %s", r,
	      snap_job_error(job));
	snap_job_free(job);
}

static enum snap_s3_fault always_timeout(void *userdata, const char *method, const char *bucket,
					 const char *key, unsigned attempt)
{
	(void)userdata, (void)method, (void)bucket, (void)key, (void)attempt;
	return SNAP_S3_FAULT_TIMEOUT;
}

static struct snap_job *volatile alarm_job;

static void on_alarm(int sig)
{
	(void)sig;
	if (alarm_job)
		snap_job_cancel(alarm_job);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_cancel_from_signal(void)
{
	/* every attempt times out after 1 s, and 20 retries with backoff would take far longer */
	snap_s3_set_fault(always_timeout, NULL);
	struct snap_job *job = abort_job("s3://some-bucket/key");
	snap_job_set_string(job, SNAP_SPARAM_S3_ACCESS_KEY, "AK");
	snap_job_set_string(job, SNAP_SPARAM_S3_SECRET_KEY, "SK");
	snap_job_set_string(job, SNAP_SPARAM_S3_ENDPOINT, "http://127.0.0.1:9");
	snap_job_set_param(job, SNAP_PARAM_S3_RETRIES, 20);
	struct sigaction sa = {.sa_handler = on_alarm};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm_job = job;
	struct itimerval it = {.it_value = {.tv_sec = 1, .tv_usec = 500000}};
	setitimer(ITIMER_REAL, &it, NULL);
	double t0 = now_s();
	int r = snap_job_run(job);
	double took = now_s() - t0;
	alarm_job = NULL;
	CHECK(r == -ECANCELED, "%d %s", r, snap_job_error(job));
	CHECK(took < 3.5, "the cancel took %.1f s to reach the request", took);
	CHECK(took > 1.0, "ended after %.1f s, before the cancel", took);
	uint64_t requests = 0, retries = 0;
	CHECK(snap_job_result_u64(job, SNAP_RESULT_S3_REQUESTS, &requests) == 0 && requests >= 1,
	      "requests %llu", (unsigned long long)requests);
	CHECK(snap_job_result_u64(job, SNAP_RESULT_S3_RETRIES, &retries) == 0 && retries >= 1,
	      "retries %llu (the first attempt timed out after 1 s)", (unsigned long long)retries);
	snap_job_free(job);
	snap_s3_set_fault(NULL, NULL);
}

static void test_gateway(void)
{
	const char *ep = getenv("SNAP_TEST_S3_ENDPOINT");
	if (!ep) {
		printf("gateway part skipped: SNAP_TEST_S3_ENDPOINT is not set\n");
		return;
	}
	char url[128];
	snprintf(url, sizeof(url), "s3://snaptest-jobs3-nosuch-%d/key", (int)getpid());
	struct snap_job *job = abort_job(url);
	snap_job_set_string(job, SNAP_SPARAM_S3_ENDPOINT, ep);
	/* credentials from the environment, through the chain */
	setenv("AWS_ACCESS_KEY_ID", getenv("SNAP_TEST_S3_ACCESS_KEY"), 1);
	setenv("AWS_SECRET_ACCESS_KEY", getenv("SNAP_TEST_S3_SECRET_KEY"), 1);
	int r = snap_job_run(job);
	CHECK(r == -ENOENT, "%d %s", r, snap_job_error(job));
	char bucket[64];
	snprintf(bucket, sizeof(bucket), "s3://snaptest-jobs3-nosuch-%d/", (int)getpid());
	CHECK(strstr(snap_job_error(job), bucket), "the error does not name %s: %s", bucket,
	      snap_job_error(job));
	uint64_t requests = 0, retries = 9;
	snap_job_result_u64(job, SNAP_RESULT_S3_REQUESTS, &requests);
	snap_job_result_u64(job, SNAP_RESULT_S3_RETRIES, &retries);
	CHECK(requests == 1 && retries == 0, "%llu requests, %llu retries for a 404",
	      (unsigned long long)requests, (unsigned long long)retries);
	/* run again: the counts are this run's (the client is kept) */
	r = snap_job_run(job);
	snap_job_result_u64(job, SNAP_RESULT_S3_REQUESTS, &requests);
	CHECK(r == -ENOENT && requests == 1, "second run: %d, %llu requests", r,
	      (unsigned long long)requests);
	snap_job_free(job);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
}

/* Each use of a place in a bucket: url for snap_s3_where_parse and a bundle's destination, the
 * same without "s3://" for the bucket parameters; bucket and prefix NULL for a refusal. */
static const struct {
	const char *url, *bucket, *prefix;
} places[] = {
    {"s3://bkt", "bkt", ""},
    {"s3://bkt/", "bkt", ""},
    {"s3://bkt//", "bkt", ""},
    {"s3://bkt/p", "bkt", "p/"},
    {"s3://bkt/p/", "bkt", "p/"},
    {"s3://bkt/p//", "bkt", "p/"}, /* where a bundle to it puts its objects, for every user */
    {"s3://bkt//p", "bkt", "/p/"}, /* a key is not a path: the '/' after the bucket's is kept */
    {"s3://bkt/a//b/", "bkt", "a//b/"},
    {"s3://", NULL, NULL},
    {"s3:///p", NULL, NULL},
};

static void test_where(void)
{
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		const char *url = places[i].url, *want_b = places[i].bucket;
		const char *want_p = places[i].prefix;
		struct snap_s3_where w = {(char *)0x1, (char *)0x1};
		char *d = NULL;
		int r = snap_s3_where_parse(url, &w, &d);
		if (!want_b) {
			CHECK(r == -EINVAL && d && strstr(d, "invalid bucket in"), "%s: %d %s", url,
			      r, d ? d : "");
			CHECK(w.bucket == (char *)0x1 && w.prefix == (char *)0x1, "%s: ret touched",
			      url);
		} else {
			CHECK(r == 0 && !strcmp(w.bucket, want_b) && !strcmp(w.prefix, want_p),
			      "%s: %d '%s' '%s'", url, r, r ? "" : w.bucket, r ? "" : w.prefix);
			if (r == 0)
				snap_s3_where_clear(&w);
		}
		free(d);

		/* the bucket parameters: the same place without the scheme */
		struct snap_job *job;
		REQUIRE(snap_job_new(SNAP_JOB_UPLOAD_BUNDLE, &job) == 0);
		w = (struct snap_s3_where){(char *)0x1, (char *)0x1};
		r = snap_job_s3_where(job, url + 5, "source", &w);
		if (!want_b && !url[5]) {
			CHECK(r == -EINVAL &&
				  !strcmp(snap_job_error(job), "no source bucket given"),
			      "%s: %d %s", url, r, snap_job_error(job));
		} else if (!want_b) { /* a leading '/' is skipped: "/p" is the bucket "p" */
			CHECK(r == -EINVAL && strstr(snap_job_error(job),
						     "source bucket: invalid bucket in s3://p"),
			      "%s: %d %s", url, r, snap_job_error(job));
		} else {
			CHECK(r == 0 && !strcmp(w.bucket, want_b) && !strcmp(w.prefix, want_p),
			      "bucket %s: %d '%s' '%s'", url + 5, r, r ? "" : w.bucket,
			      r ? "" : w.prefix);
			if (r == 0)
				snap_s3_where_clear(&w);
		}
		snap_job_free(job);

		/* a bundle's destination: its manifest's URL, no request made */
		REQUIRE(snap_job_new(SNAP_JOB_BUNDLE, &job) == 0);
		snap_job_set_string(job, SNAP_SPARAM_S3_ACCESS_KEY, "AK");
		snap_job_set_string(job, SNAP_SPARAM_S3_SECRET_KEY, "SK");
		snap_job_set_string(job, SNAP_SPARAM_S3_ENDPOINT, "http://127.0.0.1:9");
		struct snap_bundle_output o = {.job = job, .dest = strdup(url), .name = "img"};
		REQUIRE(o.dest);
		r = snap_bundle_output_where(&o);
		if (!want_b) {
			CHECK(r == -EINVAL && strstr(snap_job_error(job), "destination ") &&
				  strstr(snap_job_error(job), "invalid bucket in"),
			      "%s: %d %s", url, r, snap_job_error(job));
		} else {
			char want[128];
			snprintf(want, sizeof(want), "s3://%s/%simg.manifest.xml", want_b, want_p);
			CHECK(r == 0 && !strcmp(o.manifest_path, want) &&
				  !strcmp(o.w.prefix, want_p),
			      "destination %s: %d %s %s", url, r, r ? snap_job_error(job) : "",
			      r ? "" : o.manifest_path);
		}
		snap_bundle_output_clear(&o);
		snap_job_free(job);
	}
	struct snap_job *job;
	REQUIRE(snap_job_new(SNAP_JOB_UPLOAD_BUNDLE, &job) == 0);
	struct snap_s3_where w;
	CHECK(snap_job_s3_where(job, NULL, NULL, &w) == -EINVAL &&
	      !strcmp(snap_job_error(job), "no bucket given"));
	CHECK(snap_job_s3_where(job, "/bkt/p", NULL, &w) == 0 && !strcmp(w.bucket, "bkt") &&
	      !strcmp(w.prefix, "p/"));
	snap_s3_where_clear(&w);
	snap_job_free(job);
}

static void test_parts_dir(void)
{
	static const char *const cases[][2] = {
	    {"a/m.xml", "a"}, {"a//m.xml", "a"}, {"/a/b/m.xml", "/a/b"}, {"m.xml", "."},
	    {"/m.xml", "/"},  {"./m.xml", "."},	 {"a/b//m.xml", "a/b"},
	};
	struct snap_job *job;
	REQUIRE(snap_job_new(SNAP_JOB_UPLOAD_BUNDLE, &job) == 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *d = snap_bundle_parts_dir(job, cases[i][0]);
		CHECK(d && !strcmp(d, cases[i][1]), "%s: '%s', want '%s'", cases[i][0],
		      d ? d : "(null)", cases[i][1]);
		free(d);
	}
	/* SNAP_SPARAM_SOURCE_DIR as given */
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_SOURCE_DIR, "parts//") == 0);
	char *d = snap_bundle_parts_dir(job, "a/m.xml");
	CHECK(d && !strcmp(d, "parts//"), "source dir: '%s'", d ? d : "(null)");
	free(d);
	snap_job_free(job);
}

int main(void)
{
	clean_env(test_mkdir());
	test_no_credentials();
	test_where();
	test_parts_dir();
	test_cancel_from_signal();
	test_gateway();
	if (test_failures)
		fprintf(stderr, "%d checks failed\n", test_failures);
	return test_failures ? 1 : 0;
}
