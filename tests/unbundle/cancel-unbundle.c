// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cancel-unbundle.c - unbundles MANIFEST with KEY to OUTPUT through the public API and cancels
 * the job from its progress callback once some image data was written. Exits 0 when the job
 * returned -ECANCELED and neither OUTPUT nor any temporary file is left in its directory.
 *
 * usage: cancel-unbundle MANIFEST KEY OUTPUT
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "snapbundle.h"

static int calls;

static int on_progress(void *userdata, const struct snap_progress *p)
{
	(void)userdata;
	calls++;
	return p->stage == SNAP_STAGE_DATA && p->bytes_written > 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: cancel-unbundle MANIFEST KEY OUTPUT\n");
		return 2;
	}
	struct snap_job *job;
	if (snap_job_new(SNAP_JOB_UNBUNDLE, &job) < 0)
		return 1;
	snap_job_set_string(job, SNAP_SPARAM_MANIFEST, argv[1]);
	snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, argv[2]);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, argv[3]);
	snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0);
	snap_job_set_progress(job, on_progress, NULL);
	int r = snap_job_run(job);
	int status = 0;
	if (r != -ECANCELED) {
		fprintf(stderr, "FAIL: job returned %d (%s), want -ECANCELED\n", r,
			snap_job_error(job));
		status = 1;
	}
	if (access(argv[3], F_OK) == 0) {
		fprintf(stderr, "FAIL: %s exists after the cancelled job\n", argv[3]);
		status = 1;
	}
	/* the temporary file lives next to the output */
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", argv[3]);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		strcpy(dir, ".");
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (strstr(e->d_name, ".tmp-")) {
			fprintf(stderr, "FAIL: temporary file %s left behind\n", e->d_name);
			status = 1;
		}
	}
	if (d)
		closedir(d);
	printf("cancelled after %d progress calls: %s\n", calls, snap_job_error(job));
	snap_job_free(job);
	return status;
}
