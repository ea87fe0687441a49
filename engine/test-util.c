// SPDX-License-Identifier: LGPL-2.1-or-later
/* test-util.c - snap_read_small_file at its size limit (max - 1, max, max + 1, across the
 * buffer's growth steps), from a FIFO, and on a missing file; snap_pwrite_all at an offset, cut
 * short by RLIMIT_FSIZE, and on a bad descriptor. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"
#include "test-util.h"

static void write_file(const char *path, size_t n)
{
	FILE *f = fopen(path, "wb");
	REQUIRE(f);
	for (size_t i = 0; i < n; i++)
		fputc('a' + (int)(i % 26), f);
	fclose(f);
}

static void test_pwrite_all(const char *dir)
{
	char path[256], buf[10000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)('A' + i % 23);
	snprintf(path, sizeof(path), "%s/w", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	REQUIRE(fd >= 0);
	size_t done = 99;
	REQUIRE(snap_pwrite_all(fd, buf, sizeof(buf), 5000, &done) == 0 && done == sizeof(buf));
	char back[sizeof(buf)];
	REQUIRE(pread(fd, back, sizeof(back), 5000) == (ssize_t)sizeof(back));
	REQUIRE(!memcmp(back, buf, sizeof(buf)));
	REQUIRE(snap_pwrite_all(fd, buf, 0, 0, NULL) == 0);

	/* a file size limit inside the write: the bytes below it are written, then -EFBIG */
	struct rlimit saved, lim;
	REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
	lim = saved;
	lim.rlim_cur = 20000;
	signal(SIGXFSZ, SIG_IGN);
	REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	int r = snap_pwrite_all(fd, buf, sizeof(buf), 15000, &done);
	REQUIRE(setrlimit(RLIMIT_FSIZE, &saved) == 0);
	REQUIRE(r == -EFBIG && done == 5000, "r %d done %zu", r, done);
	close(fd);
	unlink(path);

	REQUIRE(snap_pwrite_all(-1, buf, 1, 0, &done) == -EBADF && done == 0);
}

int main(void)
{
	char dir[] = "/tmp/snap-test-util-XXXXXX", path[256];
	REQUIRE(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	static const size_t sizes[] = {0, 1, 16383, 16384, 16385, 32768, 100000};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		write_file(path, n);
		for (int d = -1; d <= 1; d++) {
			if (d < 0 && n == 0)
				continue;
			size_t max = n + (size_t)d;
			char *buf = NULL;
			size_t len = 99;
			int r = snap_read_small_file(path, max, &buf, &len);
			if (d < 0) {
				REQUIRE(r == -EFBIG && buf == NULL && len == 99);
			} else {
				REQUIRE(r == 0 && len == n && buf[n] == 0);
				for (size_t k = 0; k < n; k++)
					REQUIRE(buf[k] == 'a' + (int)(k % 26));
				free(buf);
			}
		}
	}
	/* a FIFO: no size known up front */
	snprintf(path, sizeof(path), "%s/fifo", dir);
	REQUIRE(mkfifo(path, 0600) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(path, O_WRONLY);
		for (int i = 0; i < 3000; i++)
			if (write(fd, "0123456789", 10) != 10)
				_exit(1);
		_exit(0);
	}
	char *buf = NULL;
	size_t len = 0;
	REQUIRE(snap_read_small_file(path, 1 << 20, &buf, &len) == 0 && len == 30000);
	REQUIRE(!memcmp(buf + 29990, "0123456789", 10));
	free(buf);
	int st;
	waitpid(pid, &st, 0);
	unlink(path);
	snprintf(path, sizeof(path), "%s/missing", dir);
	REQUIRE(snap_read_small_file(path, 10, &buf, &len) == -ENOENT);
	test_pwrite_all(dir);
	snprintf(path, sizeof(path), "%s/f", dir);
	unlink(path);
	rmdir(dir);
	printf("util: ok\n");
	return 0;
}
