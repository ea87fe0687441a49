/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-util.h - the assertions and small helpers (temp dirs, files, judges) of every C unit and
 * integration test. Each assertion has one meaning:
 *
 *   CHECK(cond[, fmt, ...])    on failure: print where, the condition and the message, count it in
 *                              test_failures and go on (main returns non-zero when it is set)
 *   REQUIRE(cond[, fmt, ...])  on failure: print the same and exit(1) at once, for a condition
 *                              the rest of the test depends on
 *   FAIL(fmt, ...)             print where and the message and exit(1)
 */
#ifndef SNAP_TEST_UTIL_H
#define SNAP_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Failed CHECKs so far. */
static int test_failures __attribute__((unused));

/* The optional message of CHECK and REQUIRE: " " fmt, args. */
__attribute__((format(printf, 4, 5), unused)) static void
test_report(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: check failed: %s", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			test_report(__FILE__, __LINE__, #cond, " " __VA_ARGS__);                   \
			test_failures++;                                                           \
		}                                                                                  \
	} while (0)

#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			test_report(__FILE__, __LINE__, #cond, " " __VA_ARGS__);                   \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define FAIL(...)                                                                                  \
	do {                                                                                       \
		fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		exit(1);                                                                           \
	} while (0)

static char test_dir[256];

static void test_cleanup(void)
{
	if (test_dir[0]) {
		char cmd[320];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", test_dir);
	}
}

/* mkdtemp of prefix followed by the six characters it replaces; buf holds the name. */
__attribute__((unused)) static char *test_mkdtemp(char *buf, size_t size, const char *prefix)
{
	size_t n = strlen(prefix);
	REQUIRE(n + 7 <= size);
	memcpy(buf, prefix, n);
	memset(buf + n, 'X', 6);
	buf[n + 6] = 0;
	REQUIRE(mkdtemp(buf) != NULL);
	return buf;
}

__attribute__((unused)) static const char *test_mkdir(void)
{
	const char *t = getenv("TMPDIR");
	char prefix[sizeof(test_dir) - 8];
	snprintf(prefix, sizeof(prefix), "%s/snaptest-", t && *t ? t : "/tmp");
	test_mkdtemp(test_dir, sizeof(test_dir), prefix);
	atexit(test_cleanup);
	return test_dir;
}

/* Runs a shell command built from fmt; returns its exit status. */
__attribute__((format(printf, 1, 2), unused)) static int test_sh(const char *fmt, ...)
{
	char *cmd;
	va_list ap;
	va_start(ap, fmt);
	REQUIRE(vasprintf(&cmd, fmt, ap) >= 0);
	va_end(ap);
	int st = system(cmd);
	if (st != 0)
		fprintf(stderr, "command failed (%d): %s\n", st, cmd);
	free(cmd);
	return st == -1 ? -1 : WEXITSTATUS(st);
}

__attribute__((unused)) static int test_have(const char *prog)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

__attribute__((unused)) static void test_write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	REQUIRE(fd >= 0);
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		REQUIRE(n > 0);
		p += n;
		len -= (size_t)n;
	}
	REQUIRE(close(fd) == 0);
}

/* Reads a whole file (malloc'd). */
__attribute__((unused)) static void *test_read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	REQUIRE(f != NULL);
	REQUIRE(fseek(f, 0, SEEK_END) == 0);
	long n = ftell(f);
	REQUIRE(n >= 0);
	rewind(f);
	char *buf = malloc((size_t)n + 1);
	REQUIRE(buf != NULL);
	REQUIRE(fread(buf, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	buf[n] = 0;
	*ret_len = (size_t)n;
	return buf;
}

#endif
