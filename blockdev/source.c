// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * source.c - opening a source read-only and learning its geometry.
 *
 * O_DIRECT is tried first; filesystems that refuse it (tmpfs says EINVAL) get buffered I/O.
 * The alignment O_DIRECT needs comes from statx(STATX_DIOALIGN) where the kernel reports it,
 * else the logical sector size of a block device, else 4096 for a file; never below 512.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "source.h"

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

__attribute__((format(printf, 2, 0))) static void set_detail(char **ret_detail, const char *fmt,
								const char *path, int err)
{
	if (!ret_detail)
		return;
	char *s = NULL;
	if (asprintf(&s, fmt, path, strerror(err)) < 0)
		s = NULL;
	*ret_detail = s;
}

int snap_src_open(const char *path, unsigned flags, struct snap_src **ret, char **ret_detail)
{
	struct snap_src *s = calloc(1, sizeof(*s));
	int r;
	if (!s)
		return -ENOMEM;
	s->fd = s->fd_buffered = -1;
	s->path = strdup(path);
	if (!s->path) {
		r = -ENOMEM;
		goto fail;
	}
	s->fd_buffered = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (s->fd_buffered < 0) {
		r = -errno;
		set_detail(ret_detail, "cannot open %s: %s", path, errno);
		goto fail;
	}
	struct stat st;
	if (fstat(s->fd_buffered, &st) < 0) {
		r = -errno;
		set_detail(ret_detail, "cannot stat %s: %s", path, errno);
		goto fail;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		int lbs = 512;
		unsigned int pbs = 512;
		if (ioctl(s->fd_buffered, BLKGETSIZE64, &sz) < 0) {
			r = -errno;
			set_detail(ret_detail, "cannot get the size of %s: %s", path, errno);
			goto fail;
		}
		if (ioctl(s->fd_buffered, BLKSSZGET, &lbs) < 0 || lbs < 512)
			lbs = 512;
		if (ioctl(s->fd_buffered, BLKPBSZGET, &pbs) < 0 || pbs < (unsigned)lbs)
			pbs = (unsigned)lbs;
		s->size = sz;
		s->logical_sector = (uint32_t)lbs;
		s->physical_sector = pbs;
		s->align = (uint32_t)lbs;
		s->block_device = true;
		s->rdev = st.st_rdev;
	} else if (S_ISREG(st.st_mode)) {
		s->size = (uint64_t)st.st_size;
		s->logical_sector = 512;
		s->physical_sector = st.st_blksize >= 512 ? (uint32_t)st.st_blksize : 512;
		s->align = 4096;
		struct statx stx;
		if (statx(s->fd_buffered, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
		    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align >= 512 &&
		    stx.stx_dio_offset_align <= 65536 && stx.stx_dio_mem_align <= 65536) {
			uint32_t a = stx.stx_dio_offset_align;
			if (stx.stx_dio_mem_align > a)
				a = stx.stx_dio_mem_align;
			s->align = a;
		}
	} else {
		r = -EINVAL;
		if (ret_detail &&
		    asprintf(ret_detail, "cannot use %s: not a block device or regular file", path) < 0)
			*ret_detail = NULL;
		goto fail;
	}

	s->fd = -1;
	if (!(flags & SNAP_SRC_NO_DIRECT)) {
		s->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_DIRECT);
		if (s->fd >= 0)
			s->direct = true;
	}
	if (s->fd < 0) {
		s->fd = dup(s->fd_buffered);
		if (s->fd < 0) {
			r = -errno;
			set_detail(ret_detail, "cannot open %s: %s", path, errno);
			goto fail;
		}
	}
	*ret = s;
	return 0;
fail:
	snap_src_free(s);
	return r;
}

struct snap_src *snap_src_free(struct snap_src *src)
{
	if (!src)
		return NULL;
	if (src->fd >= 0)
		close(src->fd);
	if (src->fd_buffered >= 0)
		close(src->fd_buffered);
	free(src->path);
	free(src);
	return NULL;
}

int snap_src_pread(const struct snap_src *src, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pread(src->fd_buffered, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* past the end: a short read, never zero fill */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

void *snap_src_alloc(const struct snap_src *src, size_t len)
{
	void *p = NULL;
	size_t a = src->align > 4096 ? src->align : 4096;
	len = (len + a - 1) / a * a;
	if (posix_memalign(&p, a, len ? len : a) != 0)
		return NULL;
	return p;
}
