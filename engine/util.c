// SPDX-License-Identifier: LGPL-2.1-or-later
/* util.c - small helpers the job runners share (util.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

int snap_read_small_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t cap = 16384, len = 0;
	char *buf = NULL;
	int r = 0;
	for (;;) {
		if (!buf || len == cap) {
			if (buf && cap > max) {
				r = -EFBIG;
				break;
			}
			size_t ncap = buf ? cap * 2 : cap;
			char *n = realloc(buf, ncap + 1);
			if (!n) {
				r = -ENOMEM;
				break;
			}
			buf = n;
			cap = ncap;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (r == 0 && len > max)
		r = -EFBIG;
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[len] = 0;
	*ret = buf;
	*ret_len = len;
	return 0;
}

int snap_pwrite_all(int fd, const void *buf, size_t len, uint64_t off, size_t *done)
{
	const uint8_t *p = buf;
	size_t put = 0;
	int r = 0;
	while (put < len) {
		ssize_t n = pwrite(fd, p + put, len - put, (off_t)(off + put));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		put += (size_t)n;
	}
	if (done)
		*done = put;
	return r;
}

int snap_pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *done)
{
	uint8_t *p = buf;
	size_t got = 0;
	int r = 0;
	while (got < len) {
		ssize_t n = pread(fd, p + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -ENODATA;
			break;
		}
		got += (size_t)n;
	}
	if (done)
		*done = got;
	return r;
}
