/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * layout.h - what is on a source: its partition table, its partitions and filesystems, and the
 * extent map built from them.
 *
 * The map is built in layers, in this order (snap_layout_build):
 *  1. everything DATA (SNAP_LAYER_SOURCE);
 *  2. partition table (libfdisk): space outside every partition UNUSED unless
 *     keep_unpartitioned; pinned DATA: everything before the first partition, the protective
 *     MBR, both GPT headers and entry arrays, the EBRs of logical partitions;
 *  3. filesystems: each partition's filesystem (libblkid) is offered to the probe table in
 *     fs.h, whose map function may mark free space UNUSED and pin its critical metadata;
 *  4. holes: SEEK_DATA / SEEK_HOLE of an image file mark holes ZERO without reading them;
 *  5. gaps shorter than min_gap between DATA extents are merged.
 * Zero detection happens later, while reading (the formats that can use it do).
 *
 * parts[] lists the partition table's partitions sorted by number (an MBR extended partition
 * with container = 1), or, for a source without a partition table whose whole holds a
 * filesystem, one entry number 0 covering it. Memory stays bounded whatever the source: free
 * runs and holes are collected with a minimum length that grows, and min_gap doubles while
 * the map holds more than about a million extents.
 */
#ifndef SNAP_LAYOUT_H
#define SNAP_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "extent-map.h"
#include "source.h"

struct snap_layout_opts {
	bool keep_unpartitioned;
	bool no_fs_skip;
	bool no_holes;
	bool freeze;	  /* FIFREEZE mounted filesystems (the caller thaws via snap_layout_free) */
	uint64_t min_gap; /* 0 = default (64 KiB); UINT64_MAX disables merging */
	/* log sink for warnings ("partition 2: ext4 needs journal recovery, copied whole") */
	void (*warn)(void *userdata, const char *msg);
	void *warn_userdata;
};

struct snap_layout {
	struct snap_src *src; /* not owned */
	char *ptable_type;    /* "gpt", "dos" or NULL */
	char *ptable_id;
	size_t nparts;
	struct snap_partition_info *parts; /* strings owned by the layout */
	struct snap_map *map;
	int *frozen_fds; /* filesystems frozen by opts.freeze, thawed by snap_layout_free */
	size_t nfrozen;
};

int snap_layout_build(struct snap_src *src, const struct snap_layout_opts *opts,
		      struct snap_layout **ret, char **ret_detail);
/* Thaws anything frozen, frees everything. */
struct snap_layout *snap_layout_free(struct snap_layout *layout);
/* Thaws frozen filesystems now (idempotent; call as soon as the read is over). */
void snap_layout_thaw(struct snap_layout *layout);
/* Undoes, in place, the \ooo escapes /proc/self/mountinfo writes for space, tab, newline and
 * backslash in a field. */
void snap_mountinfo_unescape(char *s);

#endif
