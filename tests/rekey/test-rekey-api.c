// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-rekey-api.c - SNAP_JOB_REKEY through the public API only: a passphrase changed
 * (removed and added in one run) under a new data key, the progress callback (stages in order,
 * bytes written reaching the output's size), the results, the key slots the inspection calls
 * see, restores with the new and the old passphrase, cancellation from the progress callback
 * (-ECANCELED, nothing left behind), and the refusals of a job given no output or both.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapbundle.h"
#include "test-util.h"

struct watch {
	int last_stage, bad, data_calls, cancel_at;
	uint64_t last_written, total;
};

static int on_progress(void *userdata, const struct snap_progress *p)
{
	struct watch *w = userdata;
	if (p->stage < w->last_stage || p->bytes_written < w->last_written)
		w->bad++;
	w->last_stage = p->stage;
	w->last_written = p->bytes_written;
	w->total = p->bytes_total;
	if (p->stage == SNAP_STAGE_DATA && w->cancel_at && ++w->data_calls >= w->cancel_at)
		return 1;
	return 0;
}

static int run_rekey(const char *in, const char *out, const char *pass, const char *new_pass,
		     struct watch *w, struct snap_job **ret)
{
	struct snap_job *job = NULL;
	REQUIRE(snap_job_new(SNAP_JOB_REKEY, &job) == 0);
	REQUIRE(snap_job_kind(job) == SNAP_JOB_REKEY && SNAP_JOB_REKEY == 14);
	snap_job_set_string(job, SNAP_SPARAM_INPUT, in);
	if (out)
		snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out);
	snap_job_set_string(job, SNAP_SPARAM_PASSPHRASE, pass);
	snap_job_set_string(job, SNAP_SPARAM_ADD_PASSPHRASE, new_pass);
	snap_job_set_param(job, SNAP_PARAM_REMOVE_PASSPHRASE, 1);
	snap_job_set_param(job, SNAP_PARAM_NEW_DATA_KEY, 1);
	snap_job_set_param(job, SNAP_PARAM_SCRYPT_LOG_N, 10);
	snap_job_set_param(job, SNAP_PARAM_THREADS, 2);
	snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0);
	if (w)
		snap_job_set_progress(job, on_progress, w);
	int r = snap_job_run(job);
	*ret = job;
	return r;
}

static int restore(const char *in, const char *out, const char *pass)
{
	struct snap_job *job = NULL;
	REQUIRE(snap_job_new(SNAP_JOB_RESTORE, &job) == 0);
	snap_job_set_string(job, SNAP_SPARAM_INPUT, in);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out);
	snap_job_set_string(job, SNAP_SPARAM_PASSPHRASE, pass);
	int r = snap_job_run(job);
	snap_job_free(job);
	return r;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	REQUIRE(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

int main(void)
{
	const char *dir = test_mkdir();
	char src[300], a[300], b[300], c[300], r1[300], r2[300];
	snprintf(src, sizeof(src), "%s/disk.img", dir);
	snprintf(a, sizeof(a), "%s/a.bin", dir);
	snprintf(b, sizeof(b), "%s/b.bin", dir);
	snprintf(c, sizeof(c), "%s/c.bin", dir);
	snprintf(r1, sizeof(r1), "%s/r1.img", dir);
	snprintf(r2, sizeof(r2), "%s/r2.img", dir);

	size_t len = 6u << 20;
	uint8_t *data = malloc(len);
	REQUIRE(data);
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		data[i] =
		    i < len / 2 ? (uint8_t)x : (uint8_t)(i / 4096); /* random, then text-ish */
	}
	test_write_file(src, data, len);

	struct snap_job *job = NULL;
	REQUIRE(snap_job_new(SNAP_JOB_STORE, &job) == 0);
	snap_job_add_source(job, src, "/dev/xvda");
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, a);
	snap_job_set_string(job, SNAP_SPARAM_PASSPHRASE, "old secret");
	snap_job_set_param(job, SNAP_PARAM_ENCRYPT, 1);
	snap_job_set_param(job, SNAP_PARAM_SCRYPT_LOG_N, 10);
	snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, 64 * 1024);
	REQUIRE(snap_job_run(job) == 0, "store: %s", snap_job_error(job));
	job = snap_job_free(job);

	/* the passphrase changed under a new data key */
	struct watch w = {0};
	int r = run_rekey(a, b, "old secret", "new secret", &w, &job);
	REQUIRE(r == 0, "rekey: %s", snap_job_error(job));
	struct stat st;
	REQUIRE(stat(b, &st) == 0);
	uint64_t written = 0, frames = 0;
	CHECK(snap_job_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, &written) == 0 &&
	      written == (uint64_t)st.st_size);
	CHECK(snap_job_result_u64(job, SNAP_RESULT_FRAMES, &frames) == 0 && frames > 40);
	CHECK(w.bad == 0 && w.last_stage == SNAP_STAGE_DONE);
	CHECK(w.total == (uint64_t)st.st_size && w.last_written == (uint64_t)st.st_size,
	      "progress %llu of %llu, file %lld", (unsigned long long)w.last_written,
	      (unsigned long long)w.total, (long long)st.st_size);
	const char *path = snap_job_result_string(job, SNAP_RESULT_OUTPUT_PATH);
	CHECK(path && !strcmp(path, b));
	job = snap_job_free(job);

	struct snap_store_image *img = NULL;
	struct snap_store_info info = {.struct_size = sizeof(info)};
	REQUIRE(snap_store_image_new(&img) == 0);
	REQUIRE(snap_store_image_open(img, b) == 0, "%s", snap_store_image_error(img));
	CHECK(snap_store_image_unlock(img, "old secret", NULL) == -EKEYREJECTED);
	img = snap_store_image_free(img);
	REQUIRE(snap_store_image_new(&img) == 0);
	REQUIRE(snap_store_image_open(img, b) == 0, "%s", snap_store_image_error(img));
	CHECK(snap_store_image_unlock(img, "new secret", NULL) == 0, "%s",
	      snap_store_image_error(img));
	CHECK(snap_store_image_info(img, &info) == 0 && info.keyslots == 1 && info.authenticated &&
	      info.frames == frames);
	img = snap_store_image_free(img);

	CHECK(restore(b, r1, "old secret") == -EKEYREJECTED);
	REQUIRE(restore(b, r2, "new secret") == 0);
	size_t got_len = 0;
	uint8_t *got = test_read_file(r2, &got_len);
	CHECK(got_len == len && !memcmp(got, data, len), "restored bytes differ");
	free(got);

	/* cancelled in the data stage: -ECANCELED, no output, no temporary */
	int before = count_entries(dir);
	struct watch wc = {.cancel_at = 1};
	r = run_rekey(a, c, "old secret", "new secret", &wc, &job);
	CHECK(r == -ECANCELED, "cancelled rekey returned %d", r);
	job = snap_job_free(job);
	CHECK(access(c, F_OK) != 0 && count_entries(dir) == before, "cancel left files");

	/* no output, or both an output and in place */
	r = run_rekey(a, NULL, "old secret", "x", NULL, &job);
	CHECK(r == -EINVAL && strstr(snap_job_error(job), "no output"), "%s", snap_job_error(job));
	job = snap_job_free(job);
	REQUIRE(snap_job_new(SNAP_JOB_REKEY, &job) == 0);
	snap_job_set_string(job, SNAP_SPARAM_INPUT, a);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, c);
	snap_job_set_string(job, SNAP_SPARAM_PASSPHRASE, "old secret");
	snap_job_set_param(job, SNAP_PARAM_IN_PLACE, 1);
	CHECK(snap_job_run(job) == -EINVAL);
	job = snap_job_free(job);
	free(data);
	return test_failures ? 1 : 0;
}
