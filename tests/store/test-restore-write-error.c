// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-restore-write-error.c - a write that fails in restore's writer thread fails the job,
 * through the public API only: once the DATA stage starts the progress callback lowers
 * RLIMIT_FSIZE (SIGXFSZ ignored), so writes past it fail with EFBIG, on the O_DIRECT path and
 * with the page cache only (SNAPBUNDLE_OUTPUT_BUFFERED=1). The job returns -EFBIG, its error
 * names the output and an offset past the limit, and neither the output nor its temporary
 * file is left behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapbundle.h"
#include "test-util.h"

#define MIB (1024ull * 1024ull)
#define LIMIT (4 * MIB)

static struct rlimit saved;
static bool lowered;

static int lower_limit(void *userdata, const struct snap_progress *p)
{
	(void)userdata;
	if (p->stage == SNAP_STAGE_DATA && !lowered) {
		struct rlimit lim = saved;
		lim.rlim_cur = LIMIT;
		if (setrlimit(RLIMIT_FSIZE, &lim) == 0)
			lowered = true;
	}
	return 0;
}

static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

static void restore_fails(const char *img, const char *dir, bool buffered)
{
	char out[600];
	snprintf(out, sizeof(out), "%s/out.img", dir);
	if (buffered)
		setenv("SNAPBUNDLE_OUTPUT_BUFFERED", "1", 1);
	struct snap_job *job = NULL;
	CHECK(snap_job_new(SNAP_JOB_RESTORE, &job) == 0);
	snap_job_set_string(job, SNAP_SPARAM_INPUT, img);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out);
	snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 0);
	snap_job_set_param(job, SNAP_PARAM_THREADS, 2);
	snap_job_set_progress(job, lower_limit, NULL);
	lowered = false;
	int r = snap_job_run(job);
	CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
	unsetenv("SNAPBUNDLE_OUTPUT_BUFFERED");
	CHECK(lowered);
	CHECK(r == -EFBIG);
	const char *e = snap_job_error(job);
	printf("%s: %s\n", buffered ? "buffered" : "direct", e ? e : "(no error)");
	CHECK(e && strstr(e, "cannot write") && strstr(e, "out.img") && strstr(e, "at offset "));
	const char *at = e ? strstr(e, "at offset ") : NULL;
	CHECK(at && strtoull(at + strlen("at offset "), NULL, 10) + MIB > LIMIT);
	CHECK(entries(dir) == 0); /* neither out.img nor .out.img.tmp-* */
	snap_job_free(job);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[512], outdir[600], disk[600], img[600];
	snprintf(dir, sizeof(dir), "%s/snap-restore-werr-XXXXXX", tmp);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(outdir, sizeof(outdir), "%s/out", dir);
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	snprintf(img, sizeof(img), "%s/img.bin", dir);
	CHECK(mkdir(outdir, 0700) == 0);

	/* 16 MiB of data that does not compress, no partition table: one DATA volume */
	int fd = open(disk, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	static unsigned char buf[1 << 20];
	uint64_t x = 88172645463325252ull;
	for (int m = 0; m < 16; m++) {
		for (size_t i = 0; i < sizeof(buf); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (unsigned char)x;
		}
		CHECK(write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
	}
	close(fd);

	struct snap_job *job = NULL;
	CHECK(snap_job_new(SNAP_JOB_STORE, &job) == 0);
	snap_job_add_source(job, disk, "/dev/xvda");
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, img);
	snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, (int64_t)MIB);
	if (snap_job_run(job) < 0) {
		fprintf(stderr, "store: %s\n", snap_job_error(job));
		test_failures++;
	}
	snap_job_free(job);

	signal(SIGXFSZ, SIG_IGN);
	CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
	if (!test_failures) {
		restore_fails(img, outdir, false);
		restore_fails(img, outdir, true);
	}
	unlink(disk);
	unlink(img);
	rmdir(outdir);
	rmdir(dir);
	if (test_failures) {
		fprintf(stderr, "%d test_failures\n", test_failures);
		return 1;
	}
	printf("restore write errors: ok\n");
	return 0;
}
