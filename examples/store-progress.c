// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-progress.c - store a disk image as a .bin with a progress callback, and cancel it.
 *
 *	store-progress SOURCE OUTPUT.bin [CANCEL-AFTER-PERCENT]
 *
 * Prints one line per progress call. With CANCEL-AFTER-PERCENT the callback returns non-zero
 * once that percentage is passed: snap_job_run then fails with -ECANCELED and leaves no output.
 * Built against <snapbundle.h> and libsnapbundle only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <snapbundle.h>

struct state {
	double cancel_at; /* percent, or > 100 to never cancel */
};

/* Runs on the thread that called snap_job_run (docs/api.md, "Threads"). */
static int on_progress(void *userdata, const struct snap_progress *p)
{
	const struct state *st = userdata;

	printf("stage %d %.1f%% read %llu skipped %llu written %llu\n", p->stage, p->percent,
	       (unsigned long long)p->bytes_read, (unsigned long long)p->bytes_skipped,
	       (unsigned long long)p->bytes_written);
	return p->stage == SNAP_STAGE_DATA && p->percent >= st->cancel_at;
}

int main(int argc, char **argv)
{
	struct state st = {.cancel_at = 1000};
	struct snap_job *job = NULL;
	int r;

	if (argc < 3) {
		fprintf(stderr, "usage: store-progress SOURCE OUTPUT.bin [CANCEL-AFTER-PERCENT]\n");
		return 2;
	}
	if (argc > 3)
		st.cancel_at = atof(argv[3]);
	r = snap_job_new(SNAP_JOB_STORE, &job);
	if (r < 0) {
		fprintf(stderr, "cannot create the job: %s\n", snap_strerror(r));
		return 1;
	}
	if ((r = snap_job_add_source(job, argv[1], "/dev/xvda")) < 0 ||
	    (r = snap_job_set_string(job, SNAP_SPARAM_OUTPUT, argv[2])) < 0 ||
	    (r = snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0)) < 0)
		goto out;
	snap_job_set_progress(job, on_progress, &st);
	r = snap_job_run(job);
out:
	if (r == -ECANCELED)
		printf("cancelled\n");
	else if (r < 0)
		fprintf(stderr, "store failed: %s\n", snap_job_error(job));
	else {
		uint64_t rd = 0, sk = 0;
		snap_job_result_u64(job, SNAP_RESULT_BYTES_READ, &rd);
		snap_job_result_u64(job, SNAP_RESULT_BYTES_SKIPPED, &sk);
		printf("stored: %llu bytes read, %llu skipped\n", (unsigned long long)rd,
		       (unsigned long long)sk);
	}
	snap_job_free(job);
	return r == -ECANCELED ? 3 : r < 0 ? 1 : 0;
}
