/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fs.h - filesystem free-space maps, one file per filesystem behind a table of probes (the way
 * libblkid keeps one file per on-disk format).
 *
 * A map function reads the filesystem's allocation metadata through ctx->read (never by
 * mounting) and reports free space with ctx->mark_unused, critical metadata it wants kept
 * whatever else says with ctx->pin, and ranges whose content the filesystem itself says a
 * reader must find as zeros (an empty journal, never-used inode-table blocks) with
 * ctx->mark_zero. Offsets are relative to the start of the partition.
 *
 * Safety contract: any doubt (unknown incompatible feature, checksum mismatch, journal needing
 * recovery, unclean log) returns a negative errno with ctx->note set to why; the caller then
 * discards every mark the function made and copies the partition whole. Nothing is marked
 * UNUSED or ZERO in the map until the function returned 0.
 *
 * ZERO is stronger than UNUSED: a ZERO range reads back as zeros after a restore, so it may lie
 * inside pinned metadata (a pin keeps a range from becoming UNUSED, not from becoming ZERO). A
 * driver marks ZERO only where zeros are exactly what the filesystem's tools and the kernel
 * accept in place of the original bytes.
 */
#ifndef SNAP_FS_H
#define SNAP_FS_H

#include <stddef.h>
#include <stdint.h>

struct snap_fs_ctx {
	uint64_t part_size; /* bytes */
	/* exactly len bytes at partition-relative off, or -errno */
	int (*read)(struct snap_fs_ctx *ctx, uint64_t off, void *buf, size_t len);
	int (*mark_unused)(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len);
	int (*pin)(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len);
	int (*mark_zero)(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len);
	void *priv;

	/* set by the map function */
	uint64_t used_bytes; /* used space per the filesystem's own accounting */
	char note[256];	     /* why the partition is copied whole, or a remark */
};

struct snap_fs_driver {
	const char *name; /* libblkid TYPE: "ext4", "xfs", "vfat", "swap", "ntfs" */
	int (*map)(struct snap_fs_ctx *ctx);
};

/* The driver for a libblkid TYPE, or NULL (the partition is then copied whole). */
const struct snap_fs_driver *snap_fs_driver_find(const char *blkid_type);

#endif
