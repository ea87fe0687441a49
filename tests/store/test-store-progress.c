// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-store-progress.c - what the store, restore and verify jobs report, through the public
 * API only:
 *  - progress while data moves: with a small SNAP_PARAM_PROGRESS_MS, several DATA-stage
 *    samples with increasing bytes_done, also when one frame covers the whole 64 MiB disk (a
 *    job that reported once per frame showed one sample), bytes_done and percent never
 *    decreasing, and percent 100 only in the last sample, at SNAP_STAGE_DONE;
 *  - the byte counts as results, consistent across the jobs: store TOTAL == READ + SKIPPED
 *    and WRITTEN == the size of the .bin; restore READ == the bytes of the .bin it read (all
 *    of them for a whole restore, random access or from a pipe, fewer for a byte range) and
 *    TOTAL == WRITTEN + SKIPPED; verify reads the whole .bin and writes nothing;
 *  - cancellation is honoured to the end: from the FINISH-stage callback (store and restore)
 *    and in the middle of one 64 MiB chunk (store), -ECANCELED and no output left.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapbundle.h"
#include "test-util.h"

#define MIB (1024ull * 1024ull)
#define DISK_SIZE (64 * MIB)

struct samples {
	int calls, data_samples, bad;
	uint64_t last_done;
	double last_percent;
	int last_stage;
	bool hundred_before_done;
	uint64_t data_read, data_done; /* the last DATA (or VERIFY) sample */
	int cancel_stage;      /* cancel at the first callback of this stage (0: never) */
	int cancel_after_data; /* or at this DATA sample with more bytes done (0: never) */
	uint64_t cancel_read;  /* bytes_read when it cancelled */
};

/* verify has its VERIFY stage where the others have DATA */
static int rank(int stage)
{
	return stage == SNAP_STAGE_VERIFY ? SNAP_STAGE_DATA : stage;
}

static int on_progress(void *userdata, const struct snap_progress *p)
{
	struct samples *s = userdata;
	s->calls++;
	if (rank(p->stage) < rank(s->last_stage) || p->percent < s->last_percent ||
	    p->bytes_done < s->last_done || p->bytes_done > p->bytes_total)
		s->bad++;
	if (p->percent >= 100.0 && p->stage != SNAP_STAGE_DONE)
		s->hundred_before_done = true;
	if ((p->stage == SNAP_STAGE_DATA || p->stage == SNAP_STAGE_VERIFY) &&
	    p->bytes_done > s->last_done)
		s->data_samples++;
	if (p->stage == SNAP_STAGE_DATA || p->stage == SNAP_STAGE_VERIFY) {
		s->data_read = p->bytes_read;
		s->data_done = p->bytes_done;
	}
	s->last_stage = p->stage;
	s->last_percent = p->percent;
	s->last_done = p->bytes_done;
	if ((s->cancel_stage && p->stage == s->cancel_stage) ||
	    (s->cancel_after_data && s->data_samples >= s->cancel_after_data)) {
		s->cancel_read = p->bytes_read;
		return 1;
	}
	return 0;
}

static uint64_t result(struct snap_job *job, int which)
{
	uint64_t v = UINT64_MAX;
	if (snap_job_result_u64(job, which, &v) < 0) {
		fprintf(stderr, "result %d is not set\n", which);
		test_failures++;
	}
	return v;
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* xorshift64: incompressible bytes that do not depend on the C library */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* 64 MiB: random (incompressible), text and zeros written out, in turns, 1 MiB each; the last
 * 4 MiB a sparse hole. Everything before the hole is one DATA extent: with 64 MiB frames it is
 * one chunk, which the job must not report as one step. */
static int make_disk(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	uint8_t *buf = malloc(MIB);
	int ret = buf ? 0 : -1;
	for (uint64_t m = 0; m < DISK_SIZE / MIB - 4 && ret == 0; m++) {
		switch (m % 3) {
		case 0:
			for (size_t i = 0; i < MIB; i += 8) {
				uint64_t v = next_rand();
				memcpy(buf + i, &v, 8);
			}
			break;
		case 1:
			for (size_t i = 0; i < MIB; i++)
				buf[i] = (uint8_t)("line of text, compressible\n"[i % 27]);
			break;
		default:
			memset(buf, 0, MIB);
			break;
		}
		if (pwrite(fd, buf, MIB, (off_t)(m * MIB)) != (ssize_t)MIB)
			ret = -1;
	}
	if (ret == 0 && ftruncate(fd, (off_t)DISK_SIZE) < 0)
		ret = -1;
	free(buf);
	close(fd);
	return ret;
}

static void check_samples(const char *what, const struct samples *s, int min_data)
{
	if (s->bad || s->hundred_before_done || s->data_samples < min_data ||
	    s->last_stage != SNAP_STAGE_DONE || s->last_percent != 100.0) {
		fprintf(stderr,
			"%s: %d calls, %d data samples with more bytes done (want %d), %d out of "
			"order, 100%% early: %d, last stage %d at %.1f%%\n",
			what, s->calls, s->data_samples, min_data, s->bad, s->hundred_before_done,
			s->last_stage, s->last_percent);
		test_failures++;
	}
}

/* Cancelled by the callback: -ECANCELED and no output (nor a temporary) left behind. */
static void check_cancelled(const char *what, int r, const char *out, const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "ls -A %s | grep -q '\\.tmp-[0-9]'", dir);
	if (r != -ECANCELED || access(out, F_OK) == 0 || system(cmd) == 0) {
		fprintf(stderr, "%s: %d (want %d), %s %s\n", what, r, -ECANCELED, out,
			access(out, F_OK) == 0 ? "left behind" : "absent");
		test_failures++;
	}
}

static int store_cancelled(const char *src, const char *out, struct samples *s)
{
	struct snap_job *job = NULL;
	CHECK(snap_job_new(SNAP_JOB_STORE, &job) == 0);
	snap_job_add_source(job, src, "/dev/xvda");
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out);
	snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, (int64_t)(64 * MIB));
	snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0);
	snap_job_set_param(job, SNAP_PARAM_THREADS, 2);
	snap_job_set_progress(job, on_progress, s);
	int r = snap_job_run(job);
	snap_job_free(job);
	return r;
}

static void store(const char *src, const char *out, int64_t frame_size)
{
	struct samples s = {0};
	struct snap_job *job = NULL;
	CHECK(snap_job_new(SNAP_JOB_STORE, &job) == 0);
	snap_job_add_source(job, src, "/dev/xvda");
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out);
	snap_job_set_param(job, SNAP_PARAM_FORCE, 1);
	snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, frame_size);
	snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 1);
	snap_job_set_param(job, SNAP_PARAM_THREADS, 2);
	snap_job_set_progress(job, on_progress, &s);
	int r = snap_job_run(job);
	if (r < 0)
		fprintf(stderr, "store: %s\n", snap_job_error(job));
	CHECK(r == 0);
	char what[64];
	snprintf(what, sizeof(what), "store, %lld-byte frames", (long long)frame_size);
	check_samples(what, &s, 4);
	uint64_t total = result(job, SNAP_RESULT_BYTES_TOTAL);
	uint64_t rd = result(job, SNAP_RESULT_BYTES_READ);
	uint64_t skipped = result(job, SNAP_RESULT_BYTES_SKIPPED);
	CHECK(total == DISK_SIZE);
	CHECK(rd + skipped == total);
	CHECK(rd >= DISK_SIZE / 2); /* random, text and written zeros are read */
	CHECK(result(job, SNAP_RESULT_BYTES_WRITTEN) == file_size(out));
	/* the data stage ends with a sample of everything read (what bench's rates use) */
	CHECK(s.data_read == rd && s.data_done == total);
	snap_job_free(job);
}

struct restore_opts {
	const char *input, *output;
	bool verify;
	int64_t range_offset, range_length;
};

static struct snap_job *restore(const struct restore_opts *o, struct samples *s)
{
	struct snap_job *job = NULL;
	CHECK(snap_job_new(o->verify ? SNAP_JOB_VERIFY_STORE : SNAP_JOB_RESTORE, &job) == 0);
	snap_job_set_string(job, SNAP_SPARAM_INPUT, o->input);
	if (o->output)
		snap_job_set_string(job, SNAP_SPARAM_OUTPUT, o->output);
	if (o->range_length > 0) {
		snap_job_set_param(job, SNAP_PARAM_RANGE_OFFSET, o->range_offset);
		snap_job_set_param(job, SNAP_PARAM_RANGE_LENGTH, o->range_length);
	}
	snap_job_set_param(job, SNAP_PARAM_FORCE, 1);
	snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 1);
	snap_job_set_param(job, SNAP_PARAM_THREADS, 2);
	snap_job_set_progress(job, on_progress, s);
	int r = snap_job_run(job);
	if (r < 0)
		fprintf(stderr, "%s: %s\n", o->verify ? "verify" : "restore", snap_job_error(job));
	CHECK(r == 0);
	return job;
}

int main(void)
{
	char dir[] = "/tmp/snap-store-progress.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char src[256], out[256], back[256], cmd[1024];
	snprintf(src, sizeof(src), "%s/src.img", dir);
	snprintf(out, sizeof(out), "%s/img.bin", dir);
	snprintf(back, sizeof(back), "%s/back.img", dir);
	if (make_disk(src) < 0) {
		perror("cannot create the test disk");
		return 1;
	}

	/* cancelled in the middle of the one 64 MiB chunk, and at the very end */
	char fresh[256];
	snprintf(fresh, sizeof(fresh), "%s/fresh.bin", dir);
	struct samples s = {.cancel_after_data = 2};
	check_cancelled("store cancelled inside a chunk", store_cancelled(src, fresh, &s), fresh,
			dir);
	CHECK(s.cancel_read < DISK_SIZE / 2);
	s = (struct samples){.cancel_stage = SNAP_STAGE_FINISH};
	check_cancelled("store cancelled at FINISH", store_cancelled(src, fresh, &s), fresh, dir);

	/* one 64 MiB frame: the whole disk is one chunk, progress must still flow */
	store(src, out, (int64_t)(64 * MIB));
	store(src, out, (int64_t)(4 * MIB));
	uint64_t bin = file_size(out);

	/* restore cancelled at FINISH: nothing left */
	s = (struct samples){.cancel_stage = SNAP_STAGE_FINISH};
	struct restore_opts o = {.input = out, .output = back};
	struct snap_job *job = NULL;
	CHECK(snap_job_new(SNAP_JOB_RESTORE, &job) == 0);
	snap_job_set_string(job, SNAP_SPARAM_INPUT, out);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, back);
	snap_job_set_progress(job, on_progress, &s);
	check_cancelled("restore cancelled at FINISH", snap_job_run(job), back, dir);
	snap_job_free(job);

	/* restore, random access: every byte of the .bin read once */
	s = (struct samples){0};
	job = restore(&o, &s);
	check_samples("restore", &s, 2);
	uint64_t total = result(job, SNAP_RESULT_BYTES_TOTAL);
	uint64_t written = result(job, SNAP_RESULT_BYTES_WRITTEN);
	uint64_t skipped = result(job, SNAP_RESULT_BYTES_SKIPPED);
	CHECK(result(job, SNAP_RESULT_BYTES_READ) == bin);
	CHECK(total == DISK_SIZE && written + skipped == total && written > 0);
	CHECK(s.data_done == total && s.data_read == bin);
	snap_job_free(job);
	snprintf(cmd, sizeof(cmd), "cmp -s %s %s", src, back);
	CHECK(system(cmd) == 0);

	/* verify: reads it all, writes nothing */
	s = (struct samples){0};
	o = (struct restore_opts){.input = out, .verify = true};
	job = restore(&o, &s);
	check_samples("verify", &s, 2);
	CHECK(result(job, SNAP_RESULT_BYTES_READ) == bin);
	CHECK(result(job, SNAP_RESULT_BYTES_WRITTEN) == 0);
	CHECK(result(job, SNAP_RESULT_BYTES_TOTAL) == DISK_SIZE);
	CHECK(result(job, SNAP_RESULT_BYTES_SKIPPED) == skipped);
	snap_job_free(job);

	/* a byte range reads only the frames it needs */
	s = (struct samples){0};
	o = (struct restore_opts){
	    .input = out, .output = back, .range_offset = (int64_t)MIB, .range_length = 4096};
	job = restore(&o, &s);
	uint64_t rd = result(job, SNAP_RESULT_BYTES_READ);
	CHECK(rd > 0 && rd < bin / 2);
	CHECK(result(job, SNAP_RESULT_BYTES_TOTAL) == 4096);
	snap_job_free(job);

	/* sequential ("-" is read as a pipe): every byte of the .bin read once */
	int fd = open(out, O_RDONLY);
	int saved = dup(STDIN_FILENO);
	CHECK(fd >= 0 && saved >= 0 && dup2(fd, STDIN_FILENO) == STDIN_FILENO);
	close(fd);
	s = (struct samples){0};
	o = (struct restore_opts){.input = "-", .output = back};
	job = restore(&o, &s);
	check_samples("restore from a pipe", &s, 2);
	CHECK(result(job, SNAP_RESULT_BYTES_READ) == bin);
	CHECK(result(job, SNAP_RESULT_BYTES_WRITTEN) == written);
	snap_job_free(job);
	dup2(saved, STDIN_FILENO);
	close(saved);
	CHECK(system(cmd) == 0);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	if (test_failures)
		fprintf(stderr, "%d test_failures\n", test_failures);
	return test_failures ? 1 : 0;
}
