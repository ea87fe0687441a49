/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * source.h - a block device or image file opened read-only.
 *
 * Invariants:
 *  1. fd is always open; when direct is set it was opened with O_DIRECT and every read through
 *     it must use offsets, lengths and buffers aligned to align (>= logical sector size).
 *  2. fd_buffered is a second, buffered descriptor for small unaligned metadata reads
 *     (partition tables, filesystem bitmaps) and for the unaligned tail of the source.
 *  3. size is BLKGETSIZE64 for a block device, st_size for a file; it never changes.
 */
#ifndef SNAP_SOURCE_H
#define SNAP_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
	SNAP_SRC_NO_DIRECT = 1 << 0, /* never open with O_DIRECT */
};

struct snap_src {
	char *path;
	int fd;		 /* O_DIRECT when direct */
	int fd_buffered; /* always buffered */
	uint64_t size;
	uint32_t logical_sector;
	uint32_t physical_sector;
	uint32_t align; /* alignment O_DIRECT needs (offset, length, memory) */
	bool block_device;
	bool direct;
	dev_t rdev; /* block devices */
};

/* Opens path read-only. Errors name the path in *ret_detail when ret_detail is non-NULL
 * (caller frees). */
int snap_src_open(const char *path, unsigned flags, struct snap_src **ret, char **ret_detail);
struct snap_src *snap_src_free(struct snap_src *src);

/* Exactly len bytes at off through the buffered descriptor (EINTR and short reads retried).
 * Reading past the end of the source is -EIO ("short read"), never zero-filled. */
int snap_src_pread(const struct snap_src *src, void *buf, size_t len, uint64_t off);

/* Aligned allocation suitable for O_DIRECT on this source (free with free()). */
void *snap_src_alloc(const struct snap_src *src, size_t len);

#endif
