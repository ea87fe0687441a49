// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-bundle.c - the bundle job through the public API: parameters, the progress callback
 * (stages in order, bytes read + skipped covering the source, bytes written), results
 * (manifest path, digest, sizes, parts, timings JSON), cancellation from the progress callback
 * and from another thread (nothing left behind), and refused configurations. The bytes of the
 * bundle itself are judged by tests/bundle/ with outside tools.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapbundle.h"
#include "test-util.h"

static char dir[256];

struct seen {
	int stages[8];
	int nstages;
	uint64_t total, done, read, skipped, written;
	int cancel_after_read; /* cancel once bytes_read > 0 */
	struct snap_job *job;
};

static int on_progress(void *userdata, const struct snap_progress *p)
{
	struct seen *s = userdata;
	if (s->nstages == 0 || s->stages[s->nstages - 1] != p->stage)
		if (s->nstages < 8)
			s->stages[s->nstages++] = p->stage;
	REQUIRE(p->bytes_read + p->bytes_skipped == p->bytes_done);
	REQUIRE(p->bytes_done <= p->bytes_total);
	REQUIRE(p->bytes_written >= s->written);
	s->total = p->bytes_total;
	s->done = p->bytes_done;
	s->read = p->bytes_read;
	s->skipped = p->bytes_skipped;
	s->written = p->bytes_written;
	return s->cancel_after_read && p->bytes_read > 0;
}

static int count_entries(const char *path)
{
	DIR *d = opendir(path);
	REQUIRE(d != NULL);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static struct snap_job *new_job(const char *image, const char *dest)
{
	struct snap_job *job;
	char p[512];
	REQUIRE(snap_job_new(SNAP_JOB_BUNDLE, &job) == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_IMAGE, image) == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_DESTINATION, dest) == 0);
	snprintf(p, sizeof(p), "%s/user.pem", dir);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_CERT, p) == 0);
	snprintf(p, sizeof(p), "%s/user.key", dir);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, p) == 0);
	snprintf(p, sizeof(p), "%s/ec2.pem", dir);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_EC2_CERT, p) == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_USER, "1234-5678-9012") == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_ARCH, "x86_64") == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0) == 0);
	return job;
}

static void *cancel_soon(void *arg)
{
	usleep(20000);
	snap_job_cancel(arg);
	return NULL;
}

int main(void)
{
	if (system("command -v openssl >/dev/null") != 0)
		return 77;
	char prefix[200];
	snprintf(prefix, sizeof(prefix), "%s/snaptest-", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	test_mkdtemp(dir, sizeof(dir), prefix);
	char cmd[2048];
	snprintf(
	    cmd, sizeof(cmd),
	    "cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout user.key -out user.pem "
	    "-days 1 -subj /CN=u 2>/dev/null && openssl req -x509 -newkey rsa:1024 -nodes "
	    "-keyout ec2.key -out ec2.pem -days 1 -subj /CN=e 2>/dev/null && "
	    "truncate -s 40M img && head -c 3M /dev/urandom | dd of=img bs=1M seek=5 "
	    "conv=notrunc status=none && head -c 1M /dev/urandom | dd of=img bs=1M seek=39 "
	    "conv=notrunc status=none && mkdir out out2 out3 && "
	    "head -c 64M /dev/urandom > big",
	    dir);
	REQUIRE(system(cmd) == 0);
	char img[512], big[512], out[512], out2[512], out3[512];
	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(big, sizeof(big), "%s/big", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(out2, sizeof(out2), "%s/out2", dir);
	snprintf(out3, sizeof(out3), "%s/out3", dir);

	/* a whole run: progress and results */
	struct snap_job *job = new_job(img, out);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_PART_SIZE, 1 << 20) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_THREADS, 3) == 0);
	struct seen s = {0};
	snap_job_set_progress(job, on_progress, &s);
	int r = snap_job_run(job);
	if (r < 0)
		fprintf(stderr, "bundle failed: %s\n", snap_job_error(job));
	REQUIRE(r == 0);
	REQUIRE(s.nstages == 4 && s.stages[0] == SNAP_STAGE_PREPARE &&
	      s.stages[1] == SNAP_STAGE_DATA && s.stages[2] == SNAP_STAGE_FINISH &&
	      s.stages[3] == SNAP_STAGE_DONE);
	REQUIRE(s.total == 40 << 20 && s.done == s.total);
	REQUIRE(s.read == 4 << 20 && s.skipped == 36 << 20);
	uint64_t v;
	REQUIRE(snap_job_result_u64(job, SNAP_RESULT_BYTES_TOTAL, &v) == 0 && v == 40 << 20);
	REQUIRE(snap_job_result_u64(job, SNAP_RESULT_BYTES_READ, &v) == 0 && v == 4 << 20);
	REQUIRE(snap_job_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, &v) == 0 && v == s.written);
	uint64_t parts;
	REQUIRE(snap_job_result_u64(job, SNAP_RESULT_PARTS, &parts) == 0);
	REQUIRE(parts == (v + (1 << 20) - 1) >> 20);
	REQUIRE(snap_job_result_u64(job, SNAP_RESULT_STREAM_BYTES, &v) == 0 && v % 10240 == 0);
	const char *digest = snap_job_result_string(job, SNAP_RESULT_DIGEST);
	REQUIRE(digest && strlen(digest) == 40 && strspn(digest, "0123456789abcdef") == 40);
	const char *manifest = snap_job_result_string(job, SNAP_RESULT_MANIFEST_PATH);
	char want[600];
	snprintf(want, sizeof(want), "%s/img.manifest.xml", out);
	REQUIRE(manifest && !strcmp(manifest, want) && access(manifest, R_OK) == 0);
	const char *timings = snap_job_result_string(job, SNAP_RESULT_TIMINGS);
	REQUIRE(timings && timings[0] == '{' && strstr(timings, "\"deflate_cpu\":"));
	REQUIRE(count_entries(out) == (int)parts + 1);
	snap_job_free(job);

	/* the same again is refused: the bundle exists */
	job = new_job(img, out);
	REQUIRE(snap_job_run(job) == -EEXIST);
	REQUIRE(strstr(snap_job_error(job), "already exists"));
	snap_job_free(job);

	/* cancelled from the progress callback: nothing left */
	job = new_job(big, out2);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_THREADS, 1) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_LEVEL, 3) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_PART_SIZE, 256 << 10) == 0);
	struct seen c = {.cancel_after_read = 1};
	snap_job_set_progress(job, on_progress, &c);
	REQUIRE(snap_job_run(job) == -ECANCELED);
	REQUIRE(count_entries(out2) == 0);
	snap_job_free(job);

	/* cancelled from another thread */
	job = new_job(big, out2);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_THREADS, 1) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_LEVEL, 3) == 0);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, cancel_soon, job) == 0);
	r = snap_job_run(job);
	pthread_join(t, NULL);
	REQUIRE(r == -ECANCELED || r == 0); /* a very fast machine may finish first */
	REQUIRE(r == 0 ? count_entries(out2) >= 2 : count_entries(out2) == 0);
	snap_job_free(job);

	/* refused before any byte is written */
	static const struct {
		int sparam;
		const char *value;
		int err;
	} bad[] = {
	    {SNAP_SPARAM_USER, "12345", -EINVAL},
	    {SNAP_SPARAM_PREFIX, "a/b", -EINVAL},
	    {SNAP_SPARAM_BLOCK_DEVICE_MAPPING, "root", -EINVAL},
	    {SNAP_SPARAM_CERT, "/nonexistent.pem", -ENOENT},
	    {SNAP_SPARAM_IMAGE, "/nonexistent.img", -ENOENT},
	    {SNAP_SPARAM_DESTINATION, "/nonexistent-dir", -ENOTDIR},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		job = new_job(img, out3);
		if (bad[i].sparam == SNAP_SPARAM_BLOCK_DEVICE_MAPPING)
			REQUIRE(snap_job_add_string(job, bad[i].sparam, bad[i].value) == 0);
		else
			REQUIRE(snap_job_set_string(job, bad[i].sparam, bad[i].value) == 0);
		r = snap_job_run(job);
		if (r != bad[i].err)
			fprintf(stderr, "case %zu: %d (%s)\n", i, r, snap_job_error(job));
		REQUIRE(r == bad[i].err);
		REQUIRE(*snap_job_error(job));
		snap_job_free(job);
		REQUIRE(count_entries(out3) == 0);
	}
	job = new_job(img, out3);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_LEVEL, 4) == 0);
	REQUIRE(snap_job_run(job) == -EINVAL);
	snap_job_free(job);

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	REQUIRE(system(cmd) == 0);
	printf("ok\n");
	return 0;
}
