// SPDX-License-Identifier: LGPL-2.1-or-later
/* util.c - small helpers the job runners share (util.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
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
	for (;;) { /* every pass fills the buffer, or reaches the end of the file */
		if (buf && cap > max) {
			r = -EFBIG;
			break;
		}
		size_t ncap = buf ? cap * 2 : cap, got = 0;
		char *n = realloc(buf, ncap + 1);
		if (!n) {
			r = -ENOMEM;
			break;
		}
		buf = n;
		cap = ncap;
		r = snap_read_all(fd, buf + len, cap - len, &got);
		len += got;
		if (r < 0) {
			r = r == -ENODATA ? 0 : r; /* the end of the file */
			break;
		}
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

/* The one loop of the *_all helpers: len bytes between buf and fd, at off (positional) or at the
 * descriptor's position; short transfers go on, EINTR retries, and a transfer of nothing fails
 * with end. */
static int io_all(int fd, void *buf, size_t len, bool positional, uint64_t off, bool out, int end,
		  size_t *done)
{
	uint8_t *p = buf;
	size_t got = 0;
	int r = 0;
	while (got < len) {
		ssize_t n;
		if (positional)
			n = out ? pwrite(fd, p + got, len - got, (off_t)(off + got))
				: pread(fd, p + got, len - got, (off_t)(off + got));
		else
			n = out ? write(fd, p + got, len - got) : read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : end;
			break;
		}
		got += (size_t)n;
	}
	if (done)
		*done = got;
	return r;
}

int snap_pwrite_all(int fd, const void *buf, size_t len, uint64_t off, size_t *done)
{
	return io_all(fd, (void *)buf, len, true, off, true, -EIO, done);
}

int snap_pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *done)
{
	return io_all(fd, buf, len, true, off, false, -ENODATA, done);
}

int snap_write_all(int fd, const void *buf, size_t len, size_t *done)
{
	return io_all(fd, (void *)buf, len, false, 0, true, -EIO, done);
}

int snap_read_all(int fd, void *buf, size_t len, size_t *done)
{
	return io_all(fd, buf, len, false, 0, false, -ENODATA, done);
}
