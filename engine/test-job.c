// SPDX-License-Identifier: LGPL-2.1-or-later
/* test-job.c - the job object: parameters, strings and lists, errors (first failure wins),
 * results, progress throttling and cancellation from the progress callback. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job-internal.h"
#include "test-util.h"

static int calls;

static int cancel_on_second(void *userdata, const struct snap_progress *p)
{
	(void)userdata;
	REQUIRE(p->percent >= 0.0 && p->percent <= 100.0);
	return ++calls >= 2;
}

int main(void)
{
	struct snap_job *j;
	REQUIRE(snap_job_new((enum snap_job_kind)0, &j) == -EINVAL);
	REQUIRE(snap_job_new(SNAP_JOB_BUNDLE, &j) == 0);

	int64_t v;
	REQUIRE(snap_job_get_param(j, SNAP_PARAM_LEVEL, &v) == -ENOENT);
	REQUIRE(snap_job_param(j, SNAP_PARAM_LEVEL, 7) == 7);
	REQUIRE(snap_job_set_param(j, SNAP_PARAM_LEVEL, 2) == 0);
	REQUIRE(snap_job_set_param(j, SNAP_PARAM_LEVEL, 3) == 0);
	REQUIRE(snap_job_get_param(j, SNAP_PARAM_LEVEL, &v) == 0 && v == 3);

	REQUIRE(snap_job_string(j, SNAP_SPARAM_PREFIX) == NULL);
	REQUIRE(snap_job_set_string(j, SNAP_SPARAM_PREFIX, "a") == 0);
	REQUIRE(snap_job_set_string(j, SNAP_SPARAM_PREFIX, "b") == 0);
	REQUIRE(!strcmp(snap_job_string(j, SNAP_SPARAM_PREFIX), "b"));
	REQUIRE(snap_job_add_string(j, SNAP_SPARAM_TAG, "k1=v1") == 0);
	REQUIRE(snap_job_add_string(j, SNAP_SPARAM_TAG, "k2=v2") == 0);
	const char **list;
	REQUIRE(snap_job_list(j, SNAP_SPARAM_TAG, &list) == 2);
	REQUIRE(!strcmp(list[0], "k1=v1") && !strcmp(list[1], "k2=v2"));
	free(list);
	REQUIRE(snap_job_list(j, SNAP_SPARAM_ANCESTOR, &list) == 0 && list == NULL);

	REQUIRE(snap_job_add_source(j, "/dev/null", "/dev/xvda") == 0);
	REQUIRE(j->nsources == 1 && !strcmp(j->sources[0].device, "/dev/xvda"));

	/* first failure wins */
	REQUIRE(!strcmp(snap_job_error(j), ""));
	REQUIRE(snap_job_fail(j, -EIO, "cannot read %s at offset %d", "x", 4096) == -EIO);
	REQUIRE(snap_job_fail(j, -EBADMSG, "follow-on") == -EBADMSG);
	REQUIRE(!strcmp(snap_job_error(j), "cannot read x at offset 4096"));

	snap_job_set_result_u64(j, SNAP_RESULT_PARTS, 11);
	uint64_t u;
	REQUIRE(snap_job_result_u64(j, SNAP_RESULT_PARTS, &u) == 0 && u == 11);
	REQUIRE(snap_job_result_u64(j, SNAP_RESULT_FRAMES, &u) == -ENOENT);
	REQUIRE(snap_job_set_result_string(j, SNAP_RESULT_DIGEST, "abc") == 0);
	REQUIRE(!strcmp(snap_job_result_string(j, SNAP_RESULT_DIGEST), "abc"));
	REQUIRE(snap_job_result_string(j, SNAP_RESULT_MANIFEST_PATH) == NULL);

	/* progress: forced reports always reach the callback; its non-zero return cancels */
	snap_job_set_progress(j, cancel_on_second, NULL);
	j->progress.bytes_total = 100;
	j->progress.bytes_done = 100;
	snap_job_report(j, true);
	REQUIRE(calls == 1 && !snap_job_cancelled(j));
	REQUIRE(j->progress.percent <= 99.0); /* 100 % only when done */
	snap_job_report(j, false);	     /* throttled: within the interval */
	REQUIRE(calls == 1);
	snap_job_set_stage(j, SNAP_STAGE_DONE);
	REQUIRE(calls == 2 && snap_job_cancelled(j) && j->progress.percent == 100.0);

	REQUIRE(snap_strerror(-EBADMSG) && strstr(snap_strerror(-EBADMSG), "mismatch"));
	REQUIRE(!strcmp(snap_extent_kind_name(SNAP_EXTENT_UNUSED), "unused"));
	REQUIRE(snap_job_free(j) == NULL);
	REQUIRE(snap_job_free(NULL) == NULL);
	printf("job: ok\n");
	return 0;
}
