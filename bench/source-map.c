// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * source-map.c - how many bytes of the source are DATA, ZERO and UNUSED: the model's input.
 *
 * Invariants:
 *  1. The numbers come from the public snap_disk API (partition table, filesystems, holes),
 *     exactly what the jobs see.
 *  2. When the source cannot be mapped, the allocated ranges of an image file (SEEK_DATA)
 *     count as DATA and its holes as ZERO, and map_reason says why.
 *  3. The UNUSED extents are kept (src->unused): their content does not matter, so a restored
 *     image is compared with the source everywhere else.
 *  4. The DATA extents are kept (src->data): the stage corpus is sampled from them, so the
 *     stages are timed on the bytes the jobs carry (free-space junk compresses at another
 *     speed than the data around it).
 *  5. Whether the source and the work directory (where the jobs write) sit on one device is
 *     decided from sysfs: the whole disks under each (a partition's parent, the devices a
 *     device-mapper or md device is built on, recursively). Devices sysfs does not know
 *     (tmpfs, overlay, NFS: major 0) are one device only when their st_dev is equal.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "bench.h"

static void map_by_holes(struct bench_source *src)
{
	int fd = open(src->path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	memset(src->bytes, 0, sizeof(src->bytes));
	src->extents = 0;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t size = 0;
		if (ioctl(fd, BLKGETSIZE64, &size) == 0)
			src->size = size;
	} else {
		src->size = (uint64_t)st.st_size;
	}
	off_t pos = 0;
	while ((uint64_t)pos < src->size) {
		off_t d = lseek(fd, pos, SEEK_DATA);
		if (d < 0) {
			if (errno == ENXIO)
				src->bytes[SNAP_EXTENT_ZERO] += src->size - (uint64_t)pos;
			else /* no SEEK_DATA (a device): all data */
				src->bytes[SNAP_EXTENT_DATA] += src->size - (uint64_t)pos;
			src->extents++;
			break;
		}
		off_t h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			h = (off_t)src->size;
		if (d > pos) {
			src->bytes[SNAP_EXTENT_ZERO] += (uint64_t)(d - pos);
			src->extents++;
		}
		src->bytes[SNAP_EXTENT_DATA] += (uint64_t)(h - d);
		src->extents++;
		pos = h;
	}
	close(fd);
}

void bench_map_source(struct bench_source *src)
{
	struct snap_disk *disk = NULL;
	int r = snap_disk_new(&disk);
	if (r >= 0)
		r = snap_disk_open(disk, src->path);
	if (r < 0) {
		snprintf(src->map_reason, sizeof(src->map_reason),
			 "cannot map the source (%s): DATA and ZERO from SEEK_DATA",
			 disk && *snap_disk_error(disk) ? snap_disk_error(disk) : snap_strerror(r));
		if (disk)
			snap_disk_free(disk);
		map_by_holes(src);
		return;
	}
	struct snap_map_summary sum = {.struct_size = sizeof(sum)};
	snap_disk_summary(disk, &sum);
	memcpy(src->bytes, sum.bytes, sizeof(src->bytes));
	src->extents = sum.extents;
	src->size = sum.bytes[0] + sum.bytes[1] + sum.bytes[2];
	const char *pt = snap_disk_ptable_type(disk);
	snprintf(src->ptable, sizeof(src->ptable), "%s", pt ? pt : "");
	src->partitions = snap_disk_partition_count(disk);
	src->mapped = true;
	size_t n = snap_disk_extent_count(disk);
	/* without room for the DATA list the corpus is sampled from the allocated space */
	src->data = calloc(n ? n : 1, sizeof(*src->data));
	src->ndata = 0;
	for (size_t i = 0; i < n; i++) {
		struct snap_extent e = {.struct_size = sizeof(e)};
		if (snap_disk_extent(disk, i, &e) < 0)
			continue;
		if (e.kind == SNAP_EXTENT_DATA) {
			if (src->data)
				src->data[src->ndata++] = (struct snap_range_list){e.offset, e.length};
			continue;
		}
		if (e.kind != SNAP_EXTENT_UNUSED)
			continue;
		struct snap_range_list *u = realloc(src->unused, (src->nunused + 1) * sizeof(*u));
		if (!u)
			break; /* the comparison then covers more, never less */
		src->unused = u;
		src->unused[src->nunused++] = (struct snap_range_list){e.offset, e.length};
	}
	snap_disk_free(disk);
}

void bench_source_free(struct bench_source *src)
{
	free(src->unused);
	src->unused = NULL;
	src->nunused = 0;
	free(src->data);
	src->data = NULL;
	src->ndata = 0;
}

/* ---- which device (invariant 5) ---------------------------------------------------------- */

#define MAX_DISKS 16

/* The whole disks under block device MAJ:MIN, added to disks[] (as "MAJ:MIN" of the disk). */
static void whole_disks(const char *sysdir, char disks[][24], size_t *n, int depth)
{
	char path[4500], buf[24];
	if (depth > 8 || *n >= MAX_DISKS)
		return;
	/* built on other devices (dm, md): follow them */
	snprintf(path, sizeof(path), "%s/slaves", sysdir);
	DIR *d = opendir(path);
	bool any = false;
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char sub[4400];
			snprintf(sub, sizeof(sub), "%s/slaves/%s", sysdir, e->d_name);
			char real[4096];
			if (!realpath(sub, real))
				continue;
			any = true;
			whole_disks(real, disks, n, depth + 1);
		}
		closedir(d);
	}
	if (any)
		return;
	/* a partition: its disk is the parent directory */
	snprintf(path, sizeof(path), "%s/partition", sysdir);
	char dir[4400];
	if (access(path, F_OK) == 0)
		snprintf(dir, sizeof(dir), "%s/..", sysdir);
	else
		snprintf(dir, sizeof(dir), "%s", sysdir);
	snprintf(path, sizeof(path), "%s/dev", dir);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = 0;
		bool dup = false;
		for (size_t i = 0; i < *n; i++)
			dup = dup || !strcmp(disks[i], buf);
		if (!dup)
			memcpy(disks[(*n)++], buf, sizeof(buf));
	}
	fclose(f);
}

static size_t disks_of(dev_t dev, char disks[][24])
{
	char sys[64], real[4096];
	size_t n = 0;
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(dev), minor(dev));
	if (major(dev) != 0 && realpath(sys, real))
		whole_disks(real, disks, &n, 0);
	return n;
}

int bench_same_device(const char *source, const char *dir, char *note, size_t note_len)
{
	struct stat a, b;
	if (stat(source, &a) < 0 || stat(dir, &b) < 0) {
		snprintf(note, note_len, "cannot stat the source or the work directory: %s",
			 strerror(errno));
		return -errno;
	}
	dev_t sdev = S_ISBLK(a.st_mode) ? a.st_rdev : a.st_dev;
	if (sdev == b.st_dev) {
		snprintf(note, note_len, "source and work directory on device %u:%u",
			 major(sdev), minor(sdev));
		return 1;
	}
	char da[MAX_DISKS][24], db[MAX_DISKS][24];
	size_t na = disks_of(sdev, da), nb = disks_of(b.st_dev, db);
	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			if (!strcmp(da[i], db[j])) {
				snprintf(note, note_len,
					 "source and work directory on disk %s", da[i]);
				return 1;
			}
	if (na == 0 || nb == 0)
		snprintf(note, note_len,
			 "source on %u:%u, work directory on %u:%u (not both known to sysfs: "
			 "taken as separate)",
			 major(sdev), minor(sdev), major(b.st_dev), minor(b.st_dev));
	else
		snprintf(note, note_len, "source on disk %s, work directory on disk %s", da[0],
			 db[0]);
	return 0;
}
