// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-store-api.c - the store and restore jobs through the public API only: progress callbacks
 * (stages in order, percent never decreasing, 100 only when done), cancellation from the
 * progress callback (-ECANCELED, nothing left behind), and the snap_store_image_* inspection
 * calls on the result.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapbundle.h"
#include "test-util.h"

struct watch {
	int calls, last_stage;
	double last_percent;
	int cancel_at_calls; /* cancel on this data-stage call (0: never) */
	int data_calls;
	int bad;
};

static int on_progress(void *userdata, const struct snap_progress *p)
{
	struct watch *w = userdata;
	w->calls++;
	if (p->stage < w->last_stage || p->percent < w->last_percent ||
	    (p->percent >= 100.0 && p->stage != SNAP_STAGE_DONE))
		w->bad++;
	w->last_stage = p->stage;
	w->last_percent = p->percent;
	if (p->stage == SNAP_STAGE_DATA && w->cancel_at_calls &&
	    ++w->data_calls >= w->cancel_at_calls)
		return 1;
	return 0;
}

static int store(const char *src, const char *out, struct watch *w)
{
	struct snap_job *job = NULL;
	CHECK(snap_job_new(SNAP_JOB_STORE, &job) == 0);
	snap_job_add_source(job, src, "/dev/sdf");
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out);
	snap_job_set_string(job, SNAP_SPARAM_NAME, "api test");
	snap_job_add_string(job, SNAP_SPARAM_TAG, "k=v");
	snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, 64 * 1024);
	snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0);
	snap_job_set_param(job, SNAP_PARAM_THREADS, 2);
	snap_job_set_progress(job, on_progress, w);
	int r = snap_job_run(job);
	if (r < 0)
		fprintf(stderr, "store: %s\n", snap_job_error(job));
	snap_job_free(job);
	return r;
}

int main(void)
{
	char dir[] = "/tmp/snap-store-api.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char src[256], out[256], back[256];
	snprintf(src, sizeof(src), "%s/src.img", dir);
	snprintf(out, sizeof(out), "%s/img.bin", dir);
	snprintf(back, sizeof(back), "%s/back.img", dir);
	/* 8 MiB: text that compresses, a zero run, and a sparse tail */
	int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char line[64];
	for (int i = 0; i < 200000; i++) {
		int n = snprintf(line, sizeof(line), "line %d\n", i);
		if (write(fd, line, (size_t)n) != n)
			return 1;
	}
	CHECK(ftruncate(fd, 8 << 20) == 0);
	close(fd);

	/* cancelled from the progress callback: -ECANCELED, no output, no temporary */
	struct watch w = {.cancel_at_calls = 2};
	CHECK(store(src, out, &w) == -ECANCELED);
	CHECK(access(out, F_OK) != 0);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "ls -A %s | grep -q '\\.tmp-[0-9]'", dir);
	CHECK(system(cmd) != 0);

	struct watch ok = {0};
	CHECK(store(src, out, &ok) == 0);
	CHECK(ok.bad == 0 && ok.last_stage == SNAP_STAGE_DONE && ok.last_percent == 100.0);
	CHECK(ok.calls >= 4);

	struct snap_store_image *img = NULL;
	CHECK(snap_store_image_new(&img) == 0);
	CHECK(snap_store_image_open(img, out) == 0);
	struct snap_store_info in = {.struct_size = sizeof(in)};
	CHECK(snap_store_image_info(img, &in) == 0);
	CHECK(in.volumes == 1 && in.frames > 0 && !strcmp(in.name, "api test") && in.authenticated);
	CHECK(in.logical_bytes == 8 << 20 && in.stored_bytes < in.data_bytes);
	struct snap_store_volume_info vi = {.struct_size = sizeof(vi)};
	CHECK(snap_store_image_volume(img, 0, &vi) == 0 && !strcmp(vi.device, "/dev/sdf"));
	CHECK(vi.bytes[SNAP_EXTENT_DATA] + vi.bytes[SNAP_EXTENT_ZERO] +
		  vi.bytes[SNAP_EXTENT_UNUSED] ==
	      8 << 20);
	uint64_t covered = 0;
	for (uint64_t i = 0; i < in.frames; i++) {
		struct snap_store_frame_info f = {.struct_size = sizeof(f)};
		CHECK(snap_store_image_frame(img, i, &f) == 0 && f.index == i);
		covered += f.raw_len;
	}
	CHECK(covered == vi.bytes[SNAP_EXTENT_DATA]);
	int tags = 0;
	for (size_t i = 0; i < snap_store_image_list_count(img, SNAP_STORE_LIST_TAGS); i++)
		tags += !strcmp(snap_store_image_list(img, SNAP_STORE_LIST_TAGS, i), "k=v");
	CHECK(tags == 1);
	int s3 = 0;
	for (size_t i = 0; i < snap_store_image_list_count(img, SNAP_STORE_LIST_S3_METADATA); i++)
		s3 += !strncmp(snap_store_image_list(img, SNAP_STORE_LIST_S3_METADATA, i),
			       "x-amz-meta-ami-name=api test", 28);
	CHECK(s3 == 1);
	img = snap_store_image_free(img);

	struct snap_job *job = NULL;
	struct watch rw = {0};
	CHECK(snap_job_new(SNAP_JOB_RESTORE, &job) == 0);
	snap_job_set_string(job, SNAP_SPARAM_INPUT, out);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, back);
	snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0);
	snap_job_set_progress(job, on_progress, &rw);
	CHECK(snap_job_run(job) == 0);
	CHECK(rw.bad == 0 && rw.last_percent == 100.0);
	uint64_t frames = 0;
	CHECK(snap_job_result_u64(job, SNAP_RESULT_FRAMES_READ, &frames) == 0 &&
	      frames == in.frames);
	snap_job_free(job);
	snprintf(cmd, sizeof(cmd), "cmp -s %s %s", src, back);
	CHECK(system(cmd) == 0);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	if (test_failures)
		fprintf(stderr, "%d test_failures\n", test_failures);
	return test_failures ? 1 : 0;
}
