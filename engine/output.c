// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * output.c - the target of unbundle and restore (invariants in output.h).
 *
 * State transitions:
 *  1. open (snap_output_open): file -> temporary created and truncated to size;
 *     block device -> opened O_EXCL and its size checked
 *  2. writing (snap_output_write, snap_output_zero)
 *  3. committed (snap_output_commit: fsync, rename, fsync of the directory) or
 *     aborted (snap_output_abort, or snap_output_free before a commit: temporary unlinked)
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output.h"

/* Writeback is started every this many bytes written, so the fsync of the commit finds most of
 * the data already on its way to the device instead of flushing it all at the end. */
#define WRITEBACK_STEP (64ull << 20)

struct snap_output {
	char *path; /* final name */
	char *tmp;  /* temporary name (files only) */
	int fd;
	bool blockdev;
	bool committed;
	uint64_t size;
	uint64_t written;	   /* atomic: bytes written so far */
	uint64_t writeback_mark; /* atomic: written count at the last writeback start */
};

static void detail(char **ret_detail, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detail(char **ret_detail, const char *fmt, ...)
{
	if (!ret_detail)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(ret_detail, fmt, ap) < 0)
		*ret_detail = NULL;
	va_end(ap);
}

static int open_blockdev(struct snap_output *o, uint64_t size, char **ret_detail)
{
	/* O_EXCL on a block device: the kernel refuses it while mounted or claimed */
	o->fd = open(o->path, O_WRONLY | O_EXCL | O_CLOEXEC);
	if (o->fd < 0) {
		int r = -errno;
		if (errno == EBUSY)
			detail(ret_detail, "cannot write %s: device is mounted or in use", o->path);
		else
			detail(ret_detail, "cannot open %s: %s", o->path, strerror(errno));
		return r;
	}
	uint64_t devsize = 0;
	if (ioctl(o->fd, BLKGETSIZE64, &devsize) < 0) {
		int r = -errno;
		detail(ret_detail, "cannot get the size of %s: %s", o->path, strerror(errno));
		return r;
	}
	if (devsize < size) {
		detail(ret_detail, "%s is too small: %llu bytes, the image needs %llu", o->path,
		       (unsigned long long)devsize, (unsigned long long)size);
		return -ENOSPC;
	}
	o->blockdev = true;
	return 0;
}

static int open_file(struct snap_output *o, uint64_t size, char **ret_detail)
{
	char *dup1 = strdup(o->path), *dup2 = strdup(o->path);
	int r = 0;
	if (!dup1 || !dup2) {
		r = -ENOMEM;
		goto out;
	}
	const char *dir = dirname(dup1), *base = basename(dup2);
	if (asprintf(&o->tmp, "%s/.%s.snapbundle-XXXXXX", dir, base) < 0) {
		o->tmp = NULL;
		r = -ENOMEM;
		goto out;
	}
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	if (o->fd < 0) {
		r = -errno;
		detail(ret_detail, "cannot create a file in %s: %s", dir, strerror(errno));
		free(o->tmp);
		o->tmp = NULL;
		goto out;
	}
	if (snap_file_mode_default(o->fd) < 0 || ftruncate(o->fd, (off_t)size) < 0) {
		r = -errno;
		detail(ret_detail, "cannot size %s to %llu bytes: %s", o->tmp,
		       (unsigned long long)size, strerror(errno));
		goto out;
	}
out:
	free(dup1);
	free(dup2);
	return r;
}

int snap_output_open(const char *path, uint64_t size, bool force, struct snap_output **ret,
		     char **ret_detail)
{
	if (!path || !*path || !strcmp(path, "-")) {
		detail(ret_detail, "the output must be a file or a block device, not '%s'",
		       path ? path : "");
		return -EINVAL;
	}
	struct snap_output *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->fd = -1;
	o->size = size;
	o->path = strdup(path);
	if (!o->path) {
		free(o);
		return -ENOMEM;
	}
	int r;
	struct stat st;
	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode)) {
		r = open_blockdev(o, size, ret_detail);
	} else if (stat(path, &st) == 0 && !force) {
		detail(ret_detail, "%s already exists (use --force to replace it)", path);
		r = -EEXIST;
	} else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		detail(ret_detail, "%s is a directory", path);
		r = -EISDIR;
	} else {
		r = open_file(o, size, ret_detail);
	}
	if (r < 0) {
		snap_output_free(o);
		return r;
	}
	*ret = o;
	return 0;
}

int snap_file_mode_default(int fd)
{
	/* umask() can only be read by setting it; the pair is not thread-safe, so read it from
	 * /proc where the kernel reports it (Linux 4.7+), falling back to the usual 022 */
	mode_t mask = 022;
	FILE *f = fopen("/proc/self/status", "re");
	if (f) {
		char line[256];
		unsigned int m;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "Umask: %o", &m) == 1) {
				mask = (mode_t)m;
				break;
			}
		fclose(f);
	}
	return fchmod(fd, 0666 & ~mask) < 0 ? -errno : 0;
}

bool snap_output_is_block_device(const struct snap_output *out)
{
	return out->blockdev;
}

const char *snap_output_path(const struct snap_output *out)
{
	return out->path;
}

int snap_output_write(struct snap_output *out, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	if (off > out->size || len > out->size - off)
		return -ERANGE;
	while (len > 0) {
		ssize_t n = pwrite(out->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
		__atomic_add_fetch(&out->written, (uint64_t)n, __ATOMIC_RELAXED);
	}
	uint64_t w = __atomic_load_n(&out->written, __ATOMIC_RELAXED);
	uint64_t mark = __atomic_load_n(&out->writeback_mark, __ATOMIC_RELAXED);
	if (w - mark >= WRITEBACK_STEP &&
	    __atomic_compare_exchange_n(&out->writeback_mark, &mark, w, false, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED)) {
		/* start writeback of everything dirty so far; it does not wait for it. Failures
		 * are not errors here: the commit's fsync reports them. */
		(void)sync_file_range(out->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	}
	return 0;
}

int snap_output_zero(struct snap_output *out, uint64_t off, uint64_t len)
{
	if (off > out->size || len > out->size - off)
		return -ERANGE;
	if (!out->blockdev || len == 0)
		return 0; /* a fresh file reads back zeros where nothing was written */

	/* BLKZEROOUT wants 512-byte alignment; write the unaligned edges */
	uint64_t a = (off + 511) & ~511ull, b = (off + len) & ~511ull;
	if (b > a) {
		uint64_t range[2] = {a, b - a};
		if (ioctl(out->fd, BLKZEROOUT, range) == 0) {
			int r = 0;
			if (a > off)
				r = snap_output_zero_write(out, off, a - off);
			if (r == 0 && off + len > b)
				r = snap_output_zero_write(out, b, off + len - b);
			return r;
		}
	}
	return snap_output_zero_write(out, off, len);
}

int snap_output_zero_write(struct snap_output *out, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[1 << 16];
	while (len > 0) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		int r = snap_output_write(out, zeros, n, off);
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

int snap_output_commit(struct snap_output *out, char **ret_detail)
{
	if (fsync(out->fd) < 0) {
		int r = -errno;
		detail(ret_detail, "cannot flush %s: %s", out->blockdev ? out->path : out->tmp,
		       strerror(errno));
		return r;
	}
	if (!out->blockdev) {
		if (rename(out->tmp, out->path) < 0) {
			int r = -errno;
			detail(ret_detail, "cannot rename %s to %s: %s", out->tmp, out->path,
			       strerror(errno));
			return r;
		}
		char *d = strdup(out->path);
		if (d) {
			int dfd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd >= 0) {
				fsync(dfd);
				close(dfd);
			}
			free(d);
		}
	}
	out->committed = true;
	return 0;
}

void snap_output_abort(struct snap_output *out)
{
	if (out && !out->committed && out->tmp) {
		unlink(out->tmp);
		free(out->tmp);
		out->tmp = NULL;
	}
}

struct snap_output *snap_output_free(struct snap_output *out)
{
	if (!out)
		return NULL;
	snap_output_abort(out);
	if (out->fd >= 0)
		close(out->fd);
	free(out->tmp);
	free(out->path);
	free(out);
	return NULL;
}
