// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-bundle-s3.c - classic bundles in S3 under faults the process survives, through the
 * transport's fault hook (s3.h snap_s3_set_fault), against the gateway of the tests
 * (SNAP_TEST_S3_*; skipped without it):
 *  1. a part's PUT failing on every attempt: the bundle fails naming that part, and nothing
 *     stays under the prefix (the parts PUT before it are deleted, no manifest);
 *  2. the manifest's PUT failing: the parts, all PUT by then, are deleted again;
 *  3. a 503 SlowDown on the first attempt of every request: retried per request, the bundle
 *     succeeds (retries counted), and unbundle -m s3:// gives the image back byte for byte;
 *  4. unbundle -m s3:// with a part's GET reset on every attempt: fails naming the part,
 *     leaves no output file; reset on the first attempt only: retried, succeeds;
 *  5. a cancel from the progress callback mid-upload: -ECANCELED, nothing under the prefix;
 *  6. a manifest missing, one whose GET fails on every attempt and one over 16 MiB: unbundle,
 *     download-bundle and delete-bundle each fail with the one message that names the object;
 *  7. migrate-bundle with a part's copy failing on every attempt, as one CopyObject and as
 *     UploadPartCopy ranges: fails with "cannot copy s3://BUCKET/KEY: " naming the source part.
 * The bytes themselves are judged by awscli in tests/s3/bundle-s3.sh.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job-internal.h"
#include "s3.h"
#include "test-util.h"

static char dir[256], bucket[64];
static struct snap_s3_client *client;

/* The fault: requests of method whose key ends in suffix fail as kind, on attempts from
 * `from` on (attempt 0 is the first). */
static struct {
	const char *method, *suffix;
	enum snap_s3_fault kind;
	unsigned max_attempt; /* faulted while attempt <= max_attempt */
	int hits;
} fault;

static enum snap_s3_fault on_fault(void *ud, const char *method, const char *b, const char *key,
				   unsigned attempt)
{
	(void)ud;
	(void)b;
	if (!fault.kind || !key || strcmp(method, fault.method) || attempt > fault.max_attempt)
		return SNAP_S3_FAULT_NONE;
	size_t n = strlen(key), m = strlen(fault.suffix);
	if (n < m || strcmp(key + n - m, fault.suffix))
		return SNAP_S3_FAULT_NONE;
	__atomic_add_fetch(&fault.hits, 1, __ATOMIC_RELAXED);
	return fault.kind;
}

static void set_fault(const char *method, const char *suffix, enum snap_s3_fault kind,
		      unsigned max_attempt)
{
	fault.method = method;
	fault.suffix = suffix;
	fault.kind = kind;
	fault.max_attempt = max_attempt;
	fault.hits = 0;
}

static void s3_params(struct snap_job *job)
{
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_ENDPOINT,
				    getenv("SNAP_TEST_S3_ENDPOINT")) == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_REGION, getenv("SNAP_TEST_S3_REGION")) ==
		0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_ACCESS_KEY,
				    getenv("SNAP_TEST_S3_ACCESS_KEY")) == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_SECRET_KEY,
				    getenv("SNAP_TEST_S3_SECRET_KEY")) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_S3_RETRIES, 2) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0) == 0);
}

/* The user's certificate and key and the EC2 certificate made in dir: a bundle's signers. */
static void signing_keys(struct snap_job *job)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/user.pem", dir);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_CERT, p) == 0);
	snprintf(p, sizeof(p), "%s/user.key", dir);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, p) == 0);
	snprintf(p, sizeof(p), "%s/ec2.pem", dir);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_EC2_CERT, p) == 0);
}

static struct snap_job *bundle_job(const char *prefix)
{
	struct snap_job *job;
	char p[512];
	REQUIRE(snap_job_new(SNAP_JOB_BUNDLE, &job) == 0);
	snprintf(p, sizeof(p), "%s/img", dir);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_IMAGE, p) == 0);
	snprintf(p, sizeof(p), "s3://%s/%s/", bucket, prefix);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_DESTINATION, p) == 0);
	signing_keys(job);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_USER, "123456789012") == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_ARCH, "x86_64") == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_PART_SIZE, 1 << 20) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_THREADS, 2) == 0);
	s3_params(job);
	return job;
}

static struct snap_job *unbundle_job(const char *prefix, const char *out)
{
	struct snap_job *job;
	char p[512];
	REQUIRE(snap_job_new(SNAP_JOB_UNBUNDLE, &job) == 0);
	snprintf(p, sizeof(p), "s3://%s/%s/img.manifest.xml", bucket, prefix);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_MANIFEST, p) == 0);
	snprintf(p, sizeof(p), "%s/user.key", dir);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, p) == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out) == 0);
	s3_params(job);
	return job;
}

/* How many objects are under prefix/. */
static size_t count_objects(const char *prefix)
{
	char p[128], *detail = NULL;
	snprintf(p, sizeof(p), "%s/", prefix);
	struct snap_s3_list_objects *l = NULL;
	REQUIRE(snap_s3_list_objects(client, bucket, p, &l, &detail) == 0, "%s", detail);
	size_t n = l->nobjects;
	snap_s3_list_objects_free(l);
	return n;
}

static void empty_bucket(void)
{
	struct snap_s3_list_objects *l = NULL;
	char *detail = NULL;
	if (snap_s3_list_objects(client, bucket, "", &l, &detail) == 0) {
		for (size_t i = 0; i < l->nobjects; i++)
			snap_s3_delete_object(client, bucket, l->objects[i].key, NULL);
		snap_s3_list_objects_free(l);
	}
	free(detail);
}

static void test_part_put_fails(void)
{
	set_fault("PUT", "img.part.3", SNAP_S3_FAULT_HTTP_500, 100);
	struct snap_job *job = bundle_job("f1");
	int r = snap_job_run(job);
	CHECK(r < 0, "a bundle whose part 3 cannot be PUT succeeded");
	CHECK(strstr(snap_job_error(job), "img.part.3"), "%s", snap_job_error(job));
	CHECK(fault.hits == 3, "part 3 tried %d times, want 3 (2 retries)", fault.hits);
	CHECK(count_objects("f1") == 0, "%zu objects left under f1/", count_objects("f1"));
	printf("part 3 failing: %s\n", snap_job_error(job));
	snap_job_free(job);
}

static void test_manifest_put_fails(void)
{
	set_fault("PUT", "img.manifest.xml", SNAP_S3_FAULT_HTTP_500, 100);
	struct snap_job *job = bundle_job("f2");
	int r = snap_job_run(job);
	CHECK(r < 0, "a bundle whose manifest cannot be PUT succeeded");
	CHECK(strstr(snap_job_error(job), "img.manifest.xml"), "%s", snap_job_error(job));
	CHECK(fault.hits == 3, "manifest tried %d times", fault.hits);
	CHECK(count_objects("f2") == 0, "%zu objects left under f2/", count_objects("f2"));
	printf("manifest failing: %s\n", snap_job_error(job));
	snap_job_free(job);
}

static bool same_file(const char *a, const char *b)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

static void test_slowdown_then_unbundle(void)
{
	set_fault("PUT", "", SNAP_S3_FAULT_SLOWDOWN, 0);
	struct snap_job *job = bundle_job("ok");
	int r = snap_job_run(job);
	CHECK(r == 0, "%s", snap_job_error(job));
	uint64_t retries = 0, parts = 0, up = 0;
	CHECK(snap_job_result_u64(job, SNAP_RESULT_S3_RETRIES, &retries) == 0);
	CHECK(snap_job_result_u64(job, SNAP_RESULT_PARTS, &parts) == 0);
	CHECK(snap_job_result_u64(job, SNAP_RESULT_BYTES_UPLOADED, &up) == 0);
	CHECK(parts >= 4, "%llu parts", (unsigned long long)parts);
	/* every PUT once more: the parts and the manifest */
	CHECK(retries == parts + 1, "%llu retries for %llu parts", (unsigned long long)retries,
	      (unsigned long long)parts);
	CHECK(count_objects("ok") == parts + 1, "%zu objects", count_objects("ok"));
	printf("SlowDown once per PUT: %llu parts, %llu retries\n", (unsigned long long)parts,
	       (unsigned long long)retries);
	snap_job_free(job);

	char img[300], out[300];
	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(out, sizeof(out), "%s/out1", dir);
	set_fault("GET", ".part.1", SNAP_S3_FAULT_RESET, 0);
	job = unbundle_job("ok", out);
	r = snap_job_run(job);
	CHECK(r == 0, "%s", snap_job_error(job));
	CHECK(fault.hits == 1, "part 1 reset %d times", fault.hits);
	uint64_t down = 0;
	CHECK(snap_job_result_u64(job, SNAP_RESULT_BYTES_DOWNLOADED, &down) == 0);
	CHECK(down >= up - 4096, "downloaded %llu, uploaded %llu", (unsigned long long)down,
	      (unsigned long long)up);
	CHECK(same_file(img, out), "unbundle -m s3:// differs from the image");
	printf("part 1 reset once: unbundled, %llu bytes downloaded\n", (unsigned long long)down);
	snap_job_free(job);

	snprintf(out, sizeof(out), "%s/out2", dir);
	set_fault("GET", ".part.2", SNAP_S3_FAULT_RESET, 100);
	job = unbundle_job("ok", out);
	r = snap_job_run(job);
	CHECK(r < 0, "an unbundle whose part 2 cannot be fetched succeeded");
	CHECK(strstr(snap_job_error(job), "img.part.2"), "%s", snap_job_error(job));
	CHECK(access(out, F_OK) != 0, "%s left behind", out);
	printf("part 2 reset always: %s\n", snap_job_error(job));
	DIR *d = opendir(dir);
	REQUIRE(d);
	struct dirent *e;
	while ((e = readdir(d)))
		CHECK(strncmp(e->d_name, ".out2", 5), "temporary %s left behind", e->d_name);
	closedir(d);
	snap_job_free(job);
}

static int cancel_mid(void *ud, const struct snap_progress *p)
{
	(void)ud;
	return p->bytes_uploaded > (1u << 20); /* a part is up */
}

static void test_cancel(void)
{
	set_fault("", "", SNAP_S3_FAULT_NONE, 0);
	struct snap_job *job = bundle_job("c");
	/* slow enough to be cancelled mid-upload: incompressible, level 3, one thread */
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_THREADS, 1) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_LEVEL, 3) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_PART_SIZE, 256 << 10) == 0);
	snap_job_set_progress(job, cancel_mid, NULL);
	int r = snap_job_run(job);
	CHECK(r == -ECANCELED, "%d %s", r, snap_job_error(job));
	CHECK(strstr(snap_job_error(job), "cancelled"), "%s", snap_job_error(job));
	CHECK(count_objects("c") == 0, "%zu objects left under c/", count_objects("c"));
	uint64_t up = 0;
	snap_job_result_u64(job, SNAP_RESULT_BYTES_UPLOADED, &up);
	printf("cancelled after %llu bytes uploaded: %s\n", (unsigned long long)up,
	       snap_job_error(job));
	snap_job_free(job);
}

/* Every job that reads a manifest from a bucket reads it through one GET: the same failure in
 * the same words for each. */
static void test_manifest_get(void)
{
	static const char *const want[] = {
	    "no manifest s3://%s/m/img.manifest.xml: GetObject s3://%s/m/img.manifest.xml: ",
	    "cannot fetch manifest s3://%s/m/img.manifest.xml: GetObject s3://%s/m/img.manifest.xml: ",
	    "manifest s3://%s/m/img.manifest.xml is larger than 16 MiB",
	};
	static const enum snap_job_kind kinds[] = {SNAP_JOB_UNBUNDLE, SNAP_JOB_DOWNLOAD_BUNDLE,
						   SNAP_JOB_DELETE_BUNDLE};
	char out[300], where[128], msg[400], *detail = NULL;
	snprintf(out, sizeof(out), "%s/out-m", dir);
	snprintf(where, sizeof(where), "%s/m", bucket);
	for (size_t c = 0; c < 3; c++) {
		snprintf(msg, sizeof(msg), want[c], bucket, bucket);
		if (c == 1)
			set_fault("GET", "img.manifest.xml", SNAP_S3_FAULT_HTTP_500, 100);
		else
			set_fault("", "", SNAP_S3_FAULT_NONE, 0);
		if (c == 2) {
			size_t n = (16u << 20) + 1;
			char *big = malloc(n);
			REQUIRE(big);
			memset(big, '<', n);
			REQUIRE(snap_s3_put_object(client, bucket, "m/img.manifest.xml", big, n, NULL,
						   NULL, &detail) == 0,
				"%s", detail);
			free(big);
		}
		for (size_t k = 0; k < 3; k++) {
			struct snap_job *job;
			if (kinds[k] == SNAP_JOB_UNBUNDLE) {
				job = unbundle_job("m", out);
			} else {
				REQUIRE(snap_job_new(kinds[k], &job) == 0);
				REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_BUCKET, where) == 0);
				REQUIRE(snap_job_set_string(job, SNAP_SPARAM_MANIFEST,
							    "img.manifest.xml") == 0);
				s3_params(job);
			}
			int r = snap_job_run(job);
			const char *e = snap_job_error(job);
			CHECK(r < 0 && e && !strncmp(e, msg, strlen(msg)), "job %d: %d %s, want %s...",
			      (int)kinds[k], r, e ? e : "", msg);
			snap_job_free(job);
		}
		printf("manifest GET, case %zu: %s\n", c, msg);
	}
	set_fault("", "", SNAP_S3_FAULT_NONE, 0);
	CHECK(snap_s3_delete_object(client, bucket, "m/img.manifest.xml", NULL) == 0);
	CHECK(access(out, F_OK) != 0, "%s left behind", out);
}

/* migrate-bundle of a bundle bundled under prefix, in parts of part_size, the copy of its
 * first part failing on every attempt; copy_part_size, when not 0, makes copies of larger parts
 * UploadPartCopy ranges of that size. */
static void migrate_copy_fails(const char *prefix, int64_t part_size, const char *copy_part_size)
{
	struct snap_job *job = bundle_job(prefix);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_PART_SIZE, part_size) == 0);
	REQUIRE(snap_job_run(job) == 0, "%s", snap_job_error(job));
	snap_job_free(job);
	char p[512], part[256], suffix[300], *detail = NULL;
	snprintf(p, sizeof(p), "%s/", prefix);
	struct snap_s3_list_objects *l = NULL;
	REQUIRE(snap_s3_list_objects(client, bucket, p, &l, &detail) == 0, "%s", detail);
	size_t i = 0;
	while (i < l->nobjects && !strstr(l->objects[i].key, ".part."))
		i++;
	REQUIRE(i < l->nobjects, "no part under %s", p);
	snprintf(part, sizeof(part), "%s", l->objects[i].key + strlen(p));
	snap_s3_list_objects_free(l);
	snprintf(suffix, sizeof(suffix), "%s-to/%s", prefix, part);
	set_fault("PUT", suffix, SNAP_S3_FAULT_HTTP_500, 100);
	if (copy_part_size)
		setenv("SNAPBUNDLE_TEST_COPY_PART_SIZE", copy_part_size, 1);

	REQUIRE(snap_job_new(SNAP_JOB_MIGRATE_BUNDLE, &job) == 0);
	snprintf(p, sizeof(p), "%s/%s", bucket, prefix);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_BUCKET, p) == 0);
	snprintf(p, sizeof(p), "%s/%s-to", bucket, prefix);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_DEST_BUCKET, p) == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_MANIFEST, "img.manifest.xml") == 0);
	signing_keys(job);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_S3_ACL, "private") == 0); /* the gateway's */
	s3_params(job);
	int r = snap_job_run(job);
	const char *e = snap_job_error(job);
	snprintf(p, sizeof(p), "cannot copy s3://%s/%s/%s: ", bucket, prefix, part);
	CHECK(r < 0 && e && !strncmp(e, p, strlen(p)) && fault.hits > 0,
	      "migrate %s: %d %s, want %s... (%d faults)", prefix, r, e ? e : "", p, fault.hits);
	printf("migrate-bundle, copy of %s failing: %s\n", part, e ? e : "");
	snap_job_free(job);
	unsetenv("SNAPBUNDLE_TEST_COPY_PART_SIZE");
	set_fault("", "", SNAP_S3_FAULT_NONE, 0);
}

static void test_migrate_copy_fails(void)
{
	migrate_copy_fails("mc", 1 << 20, NULL);
	migrate_copy_fails("mr", 8 << 20, "5242880");
}

int main(void)
{
	static const char *const need[] = {"SNAP_TEST_S3_ENDPOINT", "SNAP_TEST_S3_ACCESS_KEY",
					   "SNAP_TEST_S3_SECRET_KEY", "SNAP_TEST_S3_REGION"};
	for (size_t i = 0; i < 4; i++)
		if (!getenv(need[i])) {
			printf("skip: %s is not set\n", need[i]);
			return 77;
		}
	if (system("command -v openssl >/dev/null") != 0)
		return 77;
	char prefix[200];
	snprintf(prefix, sizeof(prefix), "%s/snaptest-",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	test_mkdtemp(dir, sizeof(dir), prefix);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout user.key -out "
		 "user.pem -days 1 -subj /CN=u 2>/dev/null && openssl req -x509 -newkey rsa:1024 "
		 "-nodes -keyout ec2.key -out ec2.pem -days 1 -subj /CN=e 2>/dev/null && "
		 "head -c 6M /dev/urandom > img",
		 dir);
	REQUIRE(system(cmd) == 0);

	struct snap_s3_config cfg = {
	    .endpoint = getenv("SNAP_TEST_S3_ENDPOINT"),
	    .region = getenv("SNAP_TEST_S3_REGION"),
	    .access_key = getenv("SNAP_TEST_S3_ACCESS_KEY"),
	    .secret_key = getenv("SNAP_TEST_S3_SECRET_KEY"),
	    .source = (char *)"test",
	    .connections = 4,
	    .retries = 2,
	    .timeout_s = 30,
	};
	char *detail = NULL;
	REQUIRE(snap_s3_client_new(&cfg, &client, &detail) == 0, "%s", detail);
	snprintf(bucket, sizeof(bucket), "snaptest-bundle-c-%d", (int)getpid());
	REQUIRE(snap_s3_create_bucket(client, bucket, NULL, &detail) == 0, "%s", detail);
	snap_s3_set_fault(on_fault, NULL);

	test_part_put_fails();
	test_manifest_put_fails();
	test_slowdown_then_unbundle();
	test_cancel();
	test_manifest_get();
	test_migrate_copy_fails();

	snap_s3_set_fault(NULL, NULL);
	empty_bucket();
	snap_s3_delete_bucket(client, bucket, NULL);
	client = snap_s3_client_free(client);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
	return test_failures ? 1 : 0;
}
