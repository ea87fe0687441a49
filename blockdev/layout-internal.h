/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * layout-internal.h - the filesystem layer's entry point, for snap_layout_build and for tests
 * that drive it with drivers of their own (blockdev/test-layout.c).
 */
#ifndef SNAP_LAYOUT_INTERNAL_H
#define SNAP_LAYOUT_INTERNAL_H

#include "fs.h"
#include "layout.h"

/*
 * Runs drv over partition p of l (p points into l->parts or is the whole disk) and, only if it
 * returned 0, applies its pins and then its free runs (UNUSED, SNAP_LAYER_FS) to l->map; fills
 * p->fs_mapped, fs_used_bytes, fs_skipped and fs_note. A driver failure is not an error: the
 * partition is copied whole, p->fs_note says why and opts->warn is told. Free runs shorter
 * than min_gap are dropped while collecting (UINT64_MAX: none are). -errno only for ENOMEM.
 */
int snap_layout_fs_apply(struct snap_layout *l, struct snap_partition_info *p,
			 const struct snap_fs_driver *drv, const struct snap_layout_opts *opts,
			 uint64_t min_gap);

#endif
