// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * disk.c - the public snap_disk_* API (snapbundle.h): a source opened read-only, its partition
 * table, filesystems and extent map (blockdev/layout.h).
 *
 * Invariants:
 *  1. snap_disk_open either leaves the disk fully open (src and layout set) or untouched but
 *     for the error detail; a second open on an open disk is -EBUSY.
 *  2. Partition and extent accessors are total: out of range gives NULL or -ERANGE, and a
 *     disk that is not open reports zero partitions, zero extents and size 0.
 *  3. Caller-allocated structs are written only as far as their struct_size reaches
 *     (sized.h); the partitions the disk hands out carry struct_size = their sizeof.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk-internal.h"
#include "job-internal.h"
#include "log.h"
#include "sized.h"

int snap_disk_new(struct snap_disk **ret)
{
	struct snap_disk *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fs_skip = true;
	*ret = d;
	return 0;
}

struct snap_disk *snap_disk_free(struct snap_disk *disk)
{
	if (!disk)
		return NULL;
	snap_layout_free(disk->layout);
	snap_src_free(disk->src);
	free(disk->error);
	free(disk);
	return NULL;
}

int snap_disk_set_param(struct snap_disk *disk, int param, int64_t value)
{
	if (!disk)
		return -EINVAL;
	if (disk->src)
		return -EBUSY; /* invariant 2 */
	switch (param) {
	case SNAP_DISK_KEEP_UNPARTITIONED:
		disk->keep_unpartitioned = value != 0;
		return 0;
	case SNAP_DISK_MIN_GAP:
		if (value < -1)
			return -EINVAL;
		disk->min_gap = value == -1 ? UINT64_MAX : (uint64_t)value;
		return 0;
	case SNAP_DISK_FORCE_PREAD:
	case SNAP_DISK_QUEUE_DEPTH:
	case SNAP_DISK_REQUEST_SIZE:
		return -EOPNOTSUPP; /* a reader's settings: a disk object reads no data */
	case SNAP_DISK_NO_DIRECT:
		disk->no_direct = value != 0;
		return 0;
	case SNAP_DISK_FS_SKIP:
		disk->fs_skip = value != 0;
		return 0;
	case SNAP_DISK_FREEZE:
		disk->freeze = value != 0;
		return 0;
	case SNAP_DISK_NO_HOLES:
		disk->no_holes = value != 0;
		return 0;
	default:
		return -EINVAL;
	}
}

static void warn_to_log(void *userdata, const char *msg)
{
	(void)userdata;
	snap_warn("%s", msg);
}

int snap_source_open(const char *path, const struct snap_source_opts *o,
		     struct snap_src **ret_src, struct snap_layout **ret_layout, char **ret_detail)
{
	struct snap_src *src = NULL;
	int r = snap_src_open(path, o->no_direct ? SNAP_SRC_NO_DIRECT : 0, &src, ret_detail);
	if (r < 0)
		return r;
	const struct snap_layout_opts lo = {
	    .keep_unpartitioned = o->keep_unpartitioned,
	    .no_fs_skip = o->no_fs_skip,
	    .no_holes = o->no_holes,
	    .freeze = o->freeze,
	    .min_gap = o->min_gap,
	    .warn = warn_to_log,
	};
	r = snap_layout_build(src, &lo, ret_layout, ret_detail);
	if (r < 0) {
		snap_src_free(src);
		return r;
	}
	/* the layout fills its partitions without the public struct's size member */
	for (size_t i = 0; i < (*ret_layout)->nparts; i++)
		(*ret_layout)->parts[i].struct_size = sizeof(struct snap_partition_info);
	*ret_src = src;
	return 0;
}

int snap_job_source_open(struct snap_job *job, const char *path, unsigned queue_depth,
			 size_t request_size, struct snap_source *ret)
{
	const struct snap_source_opts o = {
	    .no_direct = snap_job_param(job, SNAP_PARAM_NO_DIRECT, 0) != 0,
	    .keep_unpartitioned = snap_job_param(job, SNAP_PARAM_KEEP_UNPARTITIONED, 0) != 0,
	    .no_fs_skip = snap_job_param(job, SNAP_PARAM_FS_SKIP, 1) == 0,
	    .freeze = snap_job_param(job, SNAP_PARAM_FREEZE, 0) != 0,
	    .min_gap = (uint64_t)snap_job_param(job, SNAP_PARAM_MIN_GAP, 0),
	};
	char *detail = NULL;
	*ret = (struct snap_source){.path = path};
	int r = snap_source_open(path, &o, &ret->src, &ret->layout, &detail);
	if (r < 0) {
		r = snap_job_fail(job, r, "%s", detail ? detail : path);
		free(detail);
		return r;
	}
	const struct snap_reader_opts ro = {
	    .queue_depth = (unsigned)snap_job_param(job, SNAP_PARAM_QUEUE_DEPTH, queue_depth),
	    .request_size = (size_t)snap_job_param(job, SNAP_PARAM_REQUEST_SIZE,
						   (int64_t)request_size),
	    .force_pread = snap_job_param(job, SNAP_PARAM_FORCE_PREAD, 0) != 0,
	};
	r = snap_reader_new(ret->src, &ro, &ret->reader);
	if (r < 0)
		return snap_job_fail(job, r, "cannot set up reading %s: %s", path,
				     snap_strerror(r));
	/* what the job must read: progress over DATA (struct snap_progress bytes_data) */
	const struct snap_map *map = ret->layout->map;
	for (size_t i = 0, n = snap_map_count(map); i < n; i++) {
		const struct snap_extent *e = snap_map_get(map, i);
		if (e->kind == SNAP_EXTENT_DATA)
			job->progress.bytes_data += e->length;
	}
	return 0;
}

void snap_source_close(struct snap_source *s)
{
	s->reader = snap_reader_free(s->reader);
	s->layout = snap_layout_free(s->layout);
	s->src = snap_src_free(s->src);
}

int snap_disk_open(struct snap_disk *disk, const char *path)
{
	char *detail = NULL;
	if (!disk || !path)
		return -EINVAL;
	if (disk->src)
		return -EBUSY;
	free(disk->error);
	disk->error = NULL;
	const struct snap_source_opts o = {
	    .no_direct = disk->no_direct,
	    .keep_unpartitioned = disk->keep_unpartitioned,
	    .no_fs_skip = !disk->fs_skip,
	    .no_holes = disk->no_holes,
	    .freeze = disk->freeze,
	    .min_gap = disk->min_gap,
	};
	int r = snap_source_open(path, &o, &disk->src, &disk->layout, &detail);
	if (r < 0) {
		if (!detail && asprintf(&detail, "cannot open %s: %s", path, snap_strerror(r)) < 0)
			detail = NULL;
		disk->error = detail;
	}
	return r;
}

const char *snap_disk_error(const struct snap_disk *disk)
{
	return disk && disk->error ? disk->error : "";
}

uint64_t snap_disk_size(const struct snap_disk *disk)
{
	return disk && disk->src ? disk->src->size : 0;
}

uint32_t snap_disk_logical_sector_size(const struct snap_disk *disk)
{
	return disk && disk->src ? disk->src->logical_sector : 0;
}

uint32_t snap_disk_physical_sector_size(const struct snap_disk *disk)
{
	return disk && disk->src ? disk->src->physical_sector : 0;
}

int snap_disk_is_block_device(const struct snap_disk *disk)
{
	return disk && disk->src && disk->src->block_device ? 1 : 0;
}

const char *snap_disk_ptable_type(const struct snap_disk *disk)
{
	return disk && disk->layout ? disk->layout->ptable_type : NULL;
}

const char *snap_disk_ptable_id(const struct snap_disk *disk)
{
	return disk && disk->layout ? disk->layout->ptable_id : NULL;
}

size_t snap_disk_partition_count(const struct snap_disk *disk)
{
	return disk && disk->layout ? disk->layout->nparts : 0;
}

const struct snap_partition_info *snap_disk_partition(const struct snap_disk *disk, size_t i)
{
	if (!disk || !disk->layout || i >= disk->layout->nparts)
		return NULL;
	return &disk->layout->parts[i];
}

size_t snap_disk_extent_count(const struct snap_disk *disk)
{
	return disk && disk->layout ? snap_map_count(disk->layout->map) : 0;
}

int snap_disk_extent(const struct snap_disk *disk, size_t i, struct snap_extent *ret)
{
	if (!disk || !disk->layout || snap_sized_check(ret) < 0)
		return -EINVAL;
	const struct snap_extent *e = snap_map_get(disk->layout->map, i);
	if (!e)
		return -ERANGE;
	struct snap_extent x = *e;
	x.reserved = 0; /* internal flags stay internal */
	snap_sized_copy(ret, &x, sizeof(x));
	return 0;
}

int snap_disk_summary(const struct snap_disk *disk, struct snap_map_summary *ret)
{
	struct snap_map_summary s = {0};

	if (snap_sized_check(ret) < 0)
		return -EINVAL;
	if (disk && disk->layout)
		snap_map_summary(disk->layout->map, &s);
	snap_sized_copy(ret, &s, sizeof(s));
	return 0;
}
