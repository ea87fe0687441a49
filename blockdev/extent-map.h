/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * extent-map.h - one sorted list of extents covering a whole source.
 *
 * Invariants:
 *  1. The extents are sorted, contiguous, non-overlapping and cover [0, size) exactly.
 *  2. Neighbours never have the same (kind, layer, partition): snap_map_mark() coalesces.
 *  3. Kinds only ever weaken: DATA -> ZERO -> UNUSED. ZERO over UNUSED keeps UNUSED (the
 *     weaker promise wins: the content does not matter at all). Pinned ranges (critical
 *     regions: partition tables, boot gaps, superblocks) never become UNUSED but may become
 *     ZERO (a hole in a GPT entry array still reads back as zeros).
 *  4. Memory is O(extents), never O(size): the map of a 4 TiB sparse file with three data
 *     ranges holds about seven extents.
 */
#ifndef SNAP_EXTENT_MAP_H
#define SNAP_EXTENT_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "snapbundle.h"

struct snap_map;

/* A byte range of a source. */
struct snap_range {
	uint64_t offset;
	uint64_t length;
};

int snap_map_new(uint64_t size, struct snap_map **ret);
struct snap_map *snap_map_free(struct snap_map *map);
uint64_t snap_map_size(const struct snap_map *map);

/* Marks [off, off+len) (clipped to the map) as kind, decided by layer, following invariant 3. */
int snap_map_mark(struct snap_map *map, uint64_t off, uint64_t len, int kind, int layer);
/* The same for many ranges at once (any order, may overlap; the array is sorted in place):
 * one linear pass, for filesystem bitmaps with millions of free runs. */
int snap_map_mark_many(struct snap_map *map, struct snap_range *ranges, size_t n, int kind,
		       int layer);
/* Pins [off, off+len) as DATA that no later UNUSED marking may touch (and makes it DATA again
 * if it was UNUSED; ZERO stays ZERO). */
int snap_map_pin(struct snap_map *map, uint64_t off, uint64_t len, int layer);
/* Records the partition number of [off, off+len) (for reporting, and for per-partition
 * restores). */
int snap_map_set_partition(struct snap_map *map, uint64_t off, uint64_t len, uint32_t partition);
/* Turns ZERO/UNUSED gaps shorter than min_gap between two DATA extents into DATA
 * (layer SNAP_LAYER_MERGE), so fragmented disks read in long requests. */
int snap_map_merge_gaps(struct snap_map *map, uint64_t min_gap);

size_t snap_map_count(const struct snap_map *map);
const struct snap_extent *snap_map_get(const struct snap_map *map, size_t i);
/* Index of the extent containing off (off < size). */
size_t snap_map_find(const struct snap_map *map, uint64_t off);
void snap_map_summary(const struct snap_map *map, struct snap_map_summary *ret);
/* Bytes of kind inside [off, off+len). */
uint64_t snap_map_bytes_in(const struct snap_map *map, uint64_t off, uint64_t len, int kind);

#endif
