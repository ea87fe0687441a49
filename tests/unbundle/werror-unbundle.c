// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * werror-unbundle.c - unbundles MANIFEST with KEY to OUTPUT through the public API and makes
 * the output's writes fail: once the DATA stage starts the progress callback lowers
 * RLIMIT_FSIZE to LIMIT bytes (SIGXFSZ ignored), so the output stream's thread gets EFBIG.
 * Exits 0 when the job returned -EFBIG with an error naming OUTPUT and an offset at or past
 * LIMIT, and neither OUTPUT nor any temporary file is left in its directory.
 *
 * usage: werror-unbundle MANIFEST KEY OUTPUT LIMIT
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "snapbundle.h"

static struct rlimit saved;
static unsigned long long limit;
static bool lowered;

static int on_progress(void *userdata, const struct snap_progress *p)
{
	(void)userdata;
	if (p->stage == SNAP_STAGE_DATA && !lowered) {
		struct rlimit lim = saved;
		lim.rlim_cur = limit;
		lowered = setrlimit(RLIMIT_FSIZE, &lim) == 0;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: werror-unbundle MANIFEST KEY OUTPUT LIMIT\n");
		return 2;
	}
	limit = strtoull(argv[4], NULL, 10);
	signal(SIGXFSZ, SIG_IGN);
	if (getrlimit(RLIMIT_FSIZE, &saved) < 0)
		return 1;
	struct snap_job *job;
	if (snap_job_new(SNAP_JOB_UNBUNDLE, &job) < 0)
		return 1;
	snap_job_set_string(job, SNAP_SPARAM_MANIFEST, argv[1]);
	snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, argv[2]);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, argv[3]);
	snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0);
	snap_job_set_progress(job, on_progress, NULL);
	int r = snap_job_run(job);
	setrlimit(RLIMIT_FSIZE, &saved);
	const char *e = snap_job_error(job);
	int status = 0;
	if (!lowered || r != -EFBIG) {
		fprintf(stderr, "FAIL: job returned %d (%s), want -EFBIG\n", r, e ? e : "");
		status = 1;
	}
	const char *at = e ? strstr(e, "at offset ") : NULL;
	if (!e || !strstr(e, "cannot write") || !strstr(e, argv[3]) || !at ||
	    strtoull(at + strlen("at offset "), NULL, 10) + (4u << 20) < limit) {
		fprintf(stderr, "FAIL: the error does not name the output and offset: %s\n",
			e ? e : "(none)");
		status = 1;
	}
	if (access(argv[3], F_OK) == 0) {
		fprintf(stderr, "FAIL: %s exists after the failed job\n", argv[3]);
		status = 1;
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", argv[3]);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		strcpy(dir, ".");
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strstr(de->d_name, ".tmp-")) {
			fprintf(stderr, "FAIL: temporary file %s left behind\n", de->d_name);
			status = 1;
		}
	}
	if (d)
		closedir(d);
	printf("failed as it should: %s\n", e ? e : "");
	snap_job_free(job);
	return status;
}
