// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * restore-partition.c - restore one partition of a .bin store image to a file.
 *
 *	restore-partition IMAGE.bin PARTITION OUTPUT
 *
 * Every frame read is checked against its digest, as the whole restore does. Built against
 * <snapbundle.h> and libsnapbundle only.
 */
#include <stdio.h>
#include <stdlib.h>

#include <snapbundle.h>

int main(int argc, char **argv)
{
	struct snap_job *job = NULL;
	uint64_t written = 0;
	int r;

	if (argc != 4) {
		fprintf(stderr, "usage: restore-partition IMAGE.bin PARTITION OUTPUT\n");
		return 2;
	}
	if ((r = snap_job_new(SNAP_JOB_RESTORE, &job)) < 0) {
		fprintf(stderr, "cannot create the job: %s\n", snap_strerror(r));
		return 1;
	}
	if ((r = snap_job_set_string(job, SNAP_SPARAM_INPUT, argv[1])) < 0 ||
	    (r = snap_job_set_string(job, SNAP_SPARAM_OUTPUT, argv[3])) < 0 ||
	    (r = snap_job_set_param(job, SNAP_PARAM_PARTITION, atoi(argv[2]))) < 0 ||
	    (r = snap_job_run(job)) < 0) {
		fprintf(stderr, "restore failed: %s\n", snap_job_error(job));
		snap_job_free(job);
		return 1;
	}
	snap_job_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, &written);
	printf("restored partition %s: %llu bytes written\n", argv[2], (unsigned long long)written);
	snap_job_free(job);
	return 0;
}
