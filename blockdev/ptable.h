/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ptable.h - the partition table of a source (libfdisk), and its layer of the extent map.
 *
 * Invariants:
 *  1. Reading is read-only: libfdisk gets a read-only context, our own reads of GPT headers and
 *     EBRs go through snap_src_pread.
 *  2. parts[] lists every partition libfdisk reports, sorted by number, an MBR extended
 *     partition included (container = 1); strings are owned by the table.
 *  3. crit[] are the byte ranges the disk needs to boot and to be partitioned again: the gap
 *     before the first partition (protective MBR, primary GPT header and entries, boot
 *     loader), the backup GPT entries and header, every EBR. They are clipped to the source.
 */
#ifndef SNAP_PTABLE_H
#define SNAP_PTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "extent-map.h"
#include "source.h"

struct snap_ptable {
	char *type; /* "gpt", "dos", NULL when the source holds no partition table */
	char *id;   /* GPT disk GUID, or "0x%08x" MBR signature, as sfdisk --json's "id" */
	uint32_t sector_size;
	int known; /* gpt or dos: structures we know how to keep, so the rest may go */
	size_t nparts;
	struct snap_partition_info *parts; /* fs_* fields left zero */
	size_t ncrit;
	struct snap_range *crit;
};

/* Reads the partition table of src. A source without one gives a table with type NULL and no
 * partitions (not an error). Errors name what failed in *ret_detail (caller frees). */
int snap_ptable_read(struct snap_src *src, struct snap_ptable **ret, char **ret_detail);
struct snap_ptable *snap_ptable_free(struct snap_ptable *pt);

/* Applies the table to map (layer SNAP_LAYER_PTABLE): critical regions DATA and pinned, space
 * outside every partition UNUSED unless keep_unpartitioned, partition numbers recorded. */
int snap_ptable_apply(const struct snap_ptable *pt, struct snap_map *map, int keep_unpartitioned);

#endif
