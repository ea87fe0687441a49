// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-store-nomem.c - store and restore when the worker pipeline cannot get its memory: the
 * job fails with -ENOMEM and a message, joins only the threads it started, and leaves no
 * output and no temporary file. The address space is capped (RLIMIT_AS) in a child process so
 * that 64 MiB frames for 16 threads (34 slots of two 64 MiB buffers) cannot be allocated.
 *
 * Skipped (77) under AddressSanitizer, whose shadow memory does not fit under such a cap.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "snapbundle.h"
#include "test-util.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define MIB (1024ull * 1024ull)

/* Runs the job in a child under a 1 GiB address space; returns its snap_job_run result, or
 * 1000 + signal when it died. */
static int run_capped(struct snap_job *job)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		struct rlimit rl = {1024 * MIB, 1024 * MIB};
		if (setrlimit(RLIMIT_AS, &rl) < 0)
			_exit(200);
		int r = snap_job_run(job);
		fprintf(stderr, "job: %d %s\n", r, snap_job_error(job));
		_exit(r < 0 && -r < 200 ? -r : r == 0 ? 0 : 201);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(st))
		return 1000 + WTERMSIG(st);
	return WEXITSTATUS(st) ? -WEXITSTATUS(st) : 0;
}

int main(void)
{
#ifdef UNDER_ASAN
	fprintf(stderr, "skipped under AddressSanitizer\n");
	return 77;
#endif
	char dir[] = "/tmp/snap-store-nomem.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char src[256], out[256], small[256], back[256], cmd[1024];
	snprintf(src, sizeof(src), "%s/src.img", dir);
	snprintf(out, sizeof(out), "%s/img.bin", dir);
	snprintf(small, sizeof(small), "%s/small.bin", dir);
	snprintf(back, sizeof(back), "%s/back.img", dir);
	int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char text[4096];
	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = (char)('a' + i % 26);
	for (int i = 0; i < 256; i++)
		CHECK(write(fd, text, sizeof(text)) == (ssize_t)sizeof(text));
	CHECK(ftruncate(fd, (off_t)(8 * MIB)) == 0);
	close(fd);

	/* store: the slots cannot be allocated */
	struct snap_job *job = NULL;
	CHECK(snap_job_new(SNAP_JOB_STORE, &job) == 0);
	snap_job_add_source(job, src, NULL);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out);
	snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, (int64_t)(64 * MIB));
	snap_job_set_param(job, SNAP_PARAM_THREADS, 16);
	int r = run_capped(job);
	snap_job_free(job);
	if (r == -200) {
		fprintf(stderr, "cannot cap the address space here\n");
		return 77;
	}
	if (r != -ENOMEM)
		fprintf(stderr, "store under the cap: %d (want %d)\n", r, -ENOMEM);
	CHECK(r == -ENOMEM);
	CHECK(access(out, F_OK) != 0);
	snprintf(cmd, sizeof(cmd), "ls -A %s | grep -q '\\.tmp-[0-9]'", dir);
	CHECK(system(cmd) != 0);

	/* restore: an image made with 64 MiB frames, restored with 16 threads under the cap */
	CHECK(snap_job_new(SNAP_JOB_STORE, &job) == 0);
	snap_job_add_source(job, src, NULL);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, small);
	snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, (int64_t)(64 * MIB));
	snap_job_set_param(job, SNAP_PARAM_THREADS, 1);
	CHECK(snap_job_run(job) == 0);
	snap_job_free(job);
	CHECK(snap_job_new(SNAP_JOB_RESTORE, &job) == 0);
	snap_job_set_string(job, SNAP_SPARAM_INPUT, small);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, back);
	snap_job_set_param(job, SNAP_PARAM_THREADS, 16);
	r = run_capped(job);
	snap_job_free(job);
	if (r != -ENOMEM)
		fprintf(stderr, "restore under the cap: %d (want %d)\n", r, -ENOMEM);
	CHECK(r == -ENOMEM);
	CHECK(access(back, F_OK) != 0);
	CHECK(system(cmd) != 0);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	if (test_failures)
		fprintf(stderr, "%d test_failures\n", test_failures);
	return test_failures ? 1 : 0;
}
