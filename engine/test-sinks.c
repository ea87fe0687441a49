// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-sinks.c - the output layer's two fallbacks through its fault hook (output.h), for every
 * sink a job writes through: store (a sequential image), restore (positional writes),
 * unbundle (the output stream) and bundle (a sequence of parts and the manifest).
 *  1. Every O_DIRECT write refused with EINVAL: the job still succeeds, through the page cache,
 *     and writes the same bytes as without the fault (store: the same image for the same
 *     seed; restore and unbundle: the source; bundle: a bundle that unbundles to the source).
 *     The hook must have been asked, or the direct path was never tried and the test proves
 *     nothing: then it fails, unless the filesystem refuses O_DIRECT at open (skip).
 *  2. The directory fsync of the commit fails: the job fails naming the directory, and leaves
 *     neither its output nor a temporary file behind.
 * The S3 sink (store -o s3://, output.h invariant 6), with the gateway of the tests
 * (SNAP_TEST_S3_*; the row is skipped without it), through the transport's fault hook instead:
 *  3. The first attempt of every upload request answered 503 SlowDown: the job still succeeds
 *     through its retries, and the object holds the bytes of the local store.
 *  4. Every attempt of every part answered 500: the job fails, and leaves neither an object nor
 *     (with no-resume) a multipart upload.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "output.h"
#include "s3.h"
#include "snapbundle.h"
#include "test-util.h"

static char dir[512];
static int fault_point; /* enum snap_output_fault_point to fail, 0 none */
static int fault_errno;
static int fault_calls;

static int on_fault(void *userdata, enum snap_output_fault_point point, const char *path,
		    uint64_t off)
{
	(void)userdata;
	(void)path;
	(void)off;
	if ((int)point != fault_point)
		return 0;
	fault_calls++;
	return fault_errno;
}

static void set_fault(int point, int err)
{
	fault_point = point;
	fault_errno = err;
	fault_calls = 0;
}

/* Files in d whose name starts with a dot (our temporaries) or equals name. */
static int count(const char *d, const char *name)
{
	DIR *dd = opendir(d);
	REQUIRE(dd != NULL);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dd)))
		if ((e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) ||
		    (name && !strncmp(e->d_name, name, strlen(name))))
			n++;
	closedir(dd);
	return n;
}

/* Runs fmt with every %s the test directory. */
static int sh(const char *fmt)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), fmt, dir, dir, dir);
	return system(cmd);
}

/* The test directory's path of name ("%s" in name is arg), for a job's string parameter. */
static void set_path(struct snap_job *job, int sparam, const char *name, const char *arg)
{
	char rel[300], p[1024];
	snprintf(rel, sizeof(rel), name, arg);
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	REQUIRE(snap_job_set_string(job, sparam, p) == 0);
}

/* Runs a job of kind: in and out are its input and output in the test directory (NULL: none);
 * every job runs on 2 threads with the test's keys where it needs them. */
static int run_job(enum snap_job_kind kind, const char *in, const char *out)
{
	struct snap_job *job;
	REQUIRE(snap_job_new(kind, &job) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_THREADS, 2) == 0);
	if (out && !strncmp(out, "s3://", 5)) {
		/* the gateway of the tests; a failure aborts the upload (fault 4) */
		REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_ENDPOINT,
					    getenv("SNAP_TEST_S3_ENDPOINT")) == 0);
		REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_REGION,
					    getenv("SNAP_TEST_S3_REGION")) == 0);
		REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_ACCESS_KEY,
					    getenv("SNAP_TEST_S3_ACCESS_KEY")) == 0);
		REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_SECRET_KEY,
					    getenv("SNAP_TEST_S3_SECRET_KEY")) == 0);
		REQUIRE(snap_job_set_param(job, SNAP_PARAM_NO_RESUME, 1) == 0);
		REQUIRE(snap_job_set_param(job, SNAP_PARAM_S3_PART_SIZE, 5 << 20) == 0);
	}
	char img[600];
	snprintf(img, sizeof(img), "%s/img", dir);
	switch (kind) {
	case SNAP_JOB_STORE: /* reproducible: the same image for the same source */
		REQUIRE(snap_job_add_source(job, img, NULL) == 0);
		REQUIRE(snap_job_set_param(job, SNAP_PARAM_TEST_SEED, 7) == 0);
		REQUIRE(snap_job_set_param(job, SNAP_PARAM_CREATION_TIME, 1) == 0);
		REQUIRE(snap_job_set_param(job, SNAP_PARAM_STORE_TIME, 1) == 0);
		if (!strncmp(out, "s3://", 5))
			REQUIRE(snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out) == 0);
		else
			set_path(job, SNAP_SPARAM_OUTPUT, "%s", out);
		break;
	case SNAP_JOB_RESTORE:
		set_path(job, SNAP_SPARAM_INPUT, "%s", in);
		set_path(job, SNAP_SPARAM_OUTPUT, "%s", out);
		break;
	case SNAP_JOB_BUNDLE:
		REQUIRE(snap_job_set_string(job, SNAP_SPARAM_IMAGE, img) == 0);
		set_path(job, SNAP_SPARAM_DESTINATION, "%s", out);
		set_path(job, SNAP_SPARAM_CERT, "user.pem", NULL);
		set_path(job, SNAP_SPARAM_PRIVATE_KEY, "user.key", NULL);
		set_path(job, SNAP_SPARAM_EC2_CERT, "user.pem", NULL);
		REQUIRE(snap_job_set_string(job, SNAP_SPARAM_USER, "1234-5678-9012") == 0);
		REQUIRE(snap_job_set_string(job, SNAP_SPARAM_ARCH, "x86_64") == 0);
		break;
	default: /* unbundle: in is a bundle's directory */
		set_path(job, SNAP_SPARAM_MANIFEST, "%s/img.manifest.xml", in);
		set_path(job, SNAP_SPARAM_PRIVATE_KEY, "user.key", NULL);
		set_path(job, SNAP_SPARAM_OUTPUT, "%s", out);
		break;
	}
	int r = snap_job_run(job);
	if (r < 0)
		fprintf(stderr, "job %d: %s\n", (int)kind, snap_job_error(job));
	snap_job_free(job);
	return r;
}

/* One sink: the job that writes through it, to a given output (a file or a directory). */
struct sink {
	const char *name;
	enum snap_job_kind kind;
	const char *in;
	const char *refused_out, *dirsync_out; /* one output per fault */
	const char *same;			/* a command judging refused_out ("%s" the dir) */
};

/* Fault 1: EINVAL on every direct write; the job succeeds and same judges its output. */
static void check_refused(const struct sink *k)
{
	set_fault(SNAP_OUTPUT_FAULT_DIRECT_WRITE, EINVAL);
	CHECK(run_job(k->kind, k->in, k->refused_out) == 0, " (%s with O_DIRECT refused)", k->name);
	int calls = fault_calls;
	set_fault(0, 0);
	CHECK(calls > 0, " (%s never tried a direct write)", k->name);
	if (k->kind == SNAP_JOB_BUNDLE) /* a bundle is judged by what it unbundles to */
		CHECK(run_job(SNAP_JOB_UNBUNDLE, k->refused_out, "b2.img") == 0, " (the bundle does not unbundle)");
	CHECK(sh(k->same) == 0, " (%s wrote other bytes through the page cache)", k->name);
	printf("%s: O_DIRECT refused %d times, output the same\n", k->name, calls);
}

/* Fault 2: the directory fsync fails; neither the output nor a temporary is left. */
static void check_dirsync(const struct sink *k)
{
	char d[600];
	const char *name = k->dirsync_out;
	if (k->kind == SNAP_JOB_BUNDLE) { /* a directory of parts: nothing of the bundle "img" in it */
		snprintf(d, sizeof(d), "%s/%s", dir, k->dirsync_out);
		name = "img";
	} else {
		snprintf(d, sizeof(d), "%s", dir);
	}
	set_fault(SNAP_OUTPUT_FAULT_DIR_SYNC, EIO);
	CHECK(run_job(k->kind, k->in, k->dirsync_out) < 0,
	      " (%s succeeded though its directory was not synced)", k->name);
	int calls = fault_calls;
	set_fault(0, 0);
	CHECK(calls > 0, " (%s never synced its directory)", k->name);
	CHECK(count(d, name) == 0, " (%s left %s or a temporary in %s)", k->name, name, d);
	printf("%s: directory fsync failure fails the job, nothing left\n", k->name);
}

/* ---- the S3 sink (3, 4) ---- */

static enum snap_s3_fault s3_fault;
static bool s3_first_only;
static int s3_calls;

static enum snap_s3_fault on_s3_fault(void *userdata, const char *method, const char *bucket,
				      const char *key, unsigned attempt)
{
	(void)userdata;
	(void)bucket;
	/* the uploads of the object: its parts (PUT) */
	if (!s3_fault || strcmp(method, "PUT") || !key || !*key || (s3_first_only && attempt))
		return SNAP_S3_FAULT_NONE;
	__atomic_add_fetch(&s3_calls, 1, __ATOMIC_RELAXED);
	return s3_fault;
}

static struct snap_s3_client *s3_client(void)
{
	struct snap_s3_options o = {
	    .endpoint = getenv("SNAP_TEST_S3_ENDPOINT"),
	    .region = getenv("SNAP_TEST_S3_REGION"),
	    .access_key = getenv("SNAP_TEST_S3_ACCESS_KEY"),
	    .secret_key = getenv("SNAP_TEST_S3_SECRET_KEY"),
	};
	struct snap_s3_config *cfg = NULL;
	struct snap_s3_client *c = NULL;
	REQUIRE(snap_s3_config_resolve(&o, &cfg, NULL) == 0);
	REQUIRE(snap_s3_client_new(cfg, &c, NULL) == 0);
	snap_s3_config_free(cfg);
	return c;
}

static void check_s3(void)
{
	if (!getenv("SNAP_TEST_S3_ENDPOINT") || !getenv("SNAP_TEST_S3_ACCESS_KEY") ||
	    !getenv("SNAP_TEST_S3_SECRET_KEY") || !getenv("SNAP_TEST_S3_REGION")) {
		printf("store-s3: no gateway (SNAP_TEST_S3_*): skipped\n");
		return;
	}
	struct snap_s3_client *c = s3_client();
	char bucket[64], url[128], *detail = NULL;
	snprintf(bucket, sizeof(bucket), "snaptest-sinks-%d", (int)getpid());
	REQUIRE(snap_s3_create_bucket(c, bucket, NULL, &detail) == 0, " %s", detail);
	snap_s3_set_fault(on_s3_fault, NULL);

	/* 3: SlowDown on every first attempt: retried, the same bytes */
	snprintf(url, sizeof(url), "s3://%s/b.bin", bucket);
	s3_fault = SNAP_S3_FAULT_SLOWDOWN;
	s3_first_only = true;
	s3_calls = 0;
	CHECK(run_job(SNAP_JOB_STORE, NULL, url) == 0, " (store-s3 with 503 SlowDown)");
	s3_fault = SNAP_S3_FAULT_NONE;
	CHECK(s3_calls > 0, " (store-s3 never uploaded a part)");
	void *obj = NULL;
	size_t olen = 0;
	char a[600];
	snprintf(a, sizeof(a), "%s/a.bin", dir);
	FILE *f = fopen(a, "rb");
	REQUIRE(f != NULL);
	char *want = malloc(64 << 20);
	size_t wlen = fread(want, 1, 64 << 20, f);
	fclose(f);
	CHECK(snap_s3_get_object(c, bucket, "b.bin", 64 << 20, &obj, &olen, &detail) == 0, " %s",
	      detail);
	CHECK(obj && olen == wlen && !memcmp(obj, want, wlen),
	      " (store-s3's object is not the local store: %zu bytes, %zu)", olen, wlen);
	free(obj);
	free(want);
	printf("store-s3: 503 SlowDown %d times, the object the same\n", s3_calls);

	/* 4: every part fails: no object, no upload */
	s3_fault = SNAP_S3_FAULT_HTTP_500;
	s3_first_only = false;
	s3_calls = 0;
	snprintf(url, sizeof(url), "s3://%s/c.bin", bucket);
	CHECK(run_job(SNAP_JOB_STORE, NULL, url) < 0,
	      " (store-s3 succeeded though every part failed)");
	s3_fault = SNAP_S3_FAULT_NONE;
	CHECK(s3_calls > 0, " (store-s3 never uploaded a part)");
	struct snap_s3_head *h = NULL;
	CHECK(snap_s3_head_object(c, bucket, "c.bin", &h, NULL) == -ENOENT,
	      " (the failed store left an object)");
	snap_s3_head_free(h);
	struct snap_s3_list_uploads *u = NULL;
	free(detail);
	detail = NULL;
	CHECK(snap_s3_list_uploads(c, bucket, "c.bin", &u, &detail) == 0, " %s", detail);
	CHECK(u && u->nuploads == 0, " (the failed store left %zu uploads)", u ? u->nuploads : 0);
	snap_s3_list_uploads_free(u);
	printf("store-s3: every part failing fails the job, nothing left\n");

	snap_s3_set_fault(NULL, NULL);
	snap_s3_delete_object(c, bucket, "b.bin", NULL);
	snap_s3_delete_bucket(c, bucket, NULL);
	free(detail);
	snap_s3_client_free(c);
}

static const struct sink sinks[] = {
    {"store", SNAP_JOB_STORE, NULL, "b.bin", "c.bin", "cmp -s %s/a.bin %s/b.bin"},
    {"restore", SNAP_JOB_RESTORE, "a.bin", "r.img", "s.img", "cmp -s %s/img %s/r.img"},
    {"unbundle", SNAP_JOB_UNBUNDLE, "b1", "u.img", "v.img", "cmp -s %s/img %s/u.img"},
    {"bundle", SNAP_JOB_BUNDLE, NULL, "b2", "b3",
     "cmp -s %s/img %s/b2.img"},
};

int main(void)
{
	if (system("command -v openssl >/dev/null") != 0) {
		fprintf(stderr, "no openssl: skipped\n");
		return 77;
	}
	/* on the build's filesystem, not /tmp (often tmpfs): the direct path must be tried */
	test_mkdtemp(dir, sizeof(dir), "test-sinks-");
	REQUIRE(sh("cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout user.key "
		   "-out user.pem -days 1 -subj /CN=u 2>/dev/null && truncate -s 40M img && "
		   "head -c 3M /dev/urandom | dd of=img bs=1M seek=5 conv=notrunc 2>/dev/null && "
		   "head -c 1M /dev/urandom | dd of=img bs=1M seek=20 conv=notrunc 2>/dev/null && "
		   "mkdir b1 b2 b3") == 0);
	snap_output_set_fault(on_fault, NULL);

	/* the reference outputs, no fault */
	REQUIRE(run_job(SNAP_JOB_STORE, NULL, "a.bin") == 0);
	REQUIRE(run_job(SNAP_JOB_BUNDLE, NULL, "b1") == 0);
	char probe[600];
	snprintf(probe, sizeof(probe), "%s/probe", dir);
	struct snap_output *o = NULL;
	REQUIRE(snap_output_open(probe, 1 << 20, 0, &o, NULL) == 0);
	bool direct = snap_output_is_direct(o);
	snap_output_free(o);
	if (!direct) {
		fprintf(stderr, "the filesystem of %s refuses O_DIRECT: skipped\n", dir);
		return 77;
	}

	for (size_t i = 0; i < sizeof(sinks) / sizeof(sinks[0]); i++) {
		check_refused(&sinks[i]);
		check_dirsync(&sinks[i]);
	}
	check_s3();

	if (!test_failures)
		sh("rm -rf '%s'");
	return test_failures ? 1 : 0;
}
