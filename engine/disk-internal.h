/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * disk-internal.h - what the engine's job runners see of a struct snap_disk: the open source,
 * its layout (partitions and extent map) and the parameters its map is built with.
 *
 * Invariants:
 *  1. src and layout are both NULL before snap_disk_open succeeds and both set after.
 *  2. Parameters only change before snap_disk_open. A disk opens no data reader, so the
 *     reader's settings (QUEUE_DEPTH, REQUEST_SIZE, FORCE_PREAD) are refused (-EOPNOTSUPP):
 *     jobs take theirs from the job's parameters (snap_job_source_open).
 */
#ifndef SNAP_DISK_INTERNAL_H
#define SNAP_DISK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "reader.h"
#include "snapbundle.h"
#include "source.h"

struct snap_disk {
	/* parameters (enum snap_disk_param) */
	bool keep_unpartitioned;
	bool fs_skip;
	bool freeze;
	bool no_holes;
	bool no_direct;
	uint64_t min_gap; /* 0 = default */

	struct snap_src *src;
	struct snap_layout *layout;
	char *error;
};

/* The source side of every job and of snap_disk_open, in one place: a source opened read-only
 * (O_DIRECT unless no_direct), its layout (partition table, filesystems, holes, gaps), and for
 * jobs a reader. */
struct snap_source_opts {
	bool no_direct, keep_unpartitioned, no_fs_skip, no_holes, freeze;
	uint64_t min_gap; /* 0 = the layout's default */
};

struct snap_source {
	const char *path;
	struct snap_src *src;
	struct snap_layout *layout;
	struct snap_reader *reader;
};

int snap_source_open(const char *path, const struct snap_source_opts *opts,
		     struct snap_src **ret_src, struct snap_layout **ret_layout, char **ret_detail);

struct snap_job;
/* Opens path for a job: the source options from the job's parameters (NO_DIRECT,
 * KEEP_UNPARTITIONED, FS_SKIP, FREEZE, MIN_GAP: their defaults live here), and a reader whose
 * QUEUE_DEPTH and REQUEST_SIZE default to what the job's pipeline wants (FORCE_PREAD
 * likewise). A failure is recorded on the job (it names the path). */
int snap_job_source_open(struct snap_job *job, const char *path, unsigned queue_depth,
			 size_t request_size, struct snap_source *ret);
void snap_source_close(struct snap_source *s);

#endif
