// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * inspect.c - what a disk image or a .bin store image holds.
 *
 *	inspect PATH
 *
 * A .bin (snap_store_image_probe) prints its volumes and their partitions; anything else is
 * opened as a disk and prints its partition table, partitions and the bytes a job would read.
 * Built against <snapbundle.h> and libsnapbundle only.
 */
#include <stdio.h>

#include <snapbundle.h>

static int inspect_store(const char *path)
{
	struct snap_store_image *img = NULL;
	struct snap_store_info info = {.struct_size = sizeof(info)};
	int r;

	if ((r = snap_store_image_new(&img)) < 0)
		return r;
	if ((r = snap_store_image_open(img, path)) < 0 ||
	    (r = snap_store_image_info(img, &info)) < 0) {
		fprintf(stderr, "cannot read %s: %s\n", path, snap_store_image_error(img));
		snap_store_image_free(img);
		return r;
	}
	printf("store image: %llu volumes, %llu frames, %llu logical bytes\n",
	       (unsigned long long)info.volumes, (unsigned long long)info.frames,
	       (unsigned long long)info.logical_bytes);
	for (size_t v = 0; v < info.volumes; v++) {
		struct snap_store_volume_info vi = {.struct_size = sizeof(vi)};
		if ((r = snap_store_image_volume(img, v, &vi)) < 0)
			break;
		printf("volume %s: %llu bytes, %s, %llu partitions\n", vi.device,
		       (unsigned long long)vi.size, vi.ptable_type ? vi.ptable_type : "no table",
		       (unsigned long long)vi.partitions);
		for (size_t i = 0; i < vi.partitions; i++) {
			struct snap_partition_info p = {.struct_size = sizeof(p)};
			if (snap_store_image_partition(img, v, i, &p) == 0)
				printf("  partition %u: start %llu size %llu\n", p.number,
				       (unsigned long long)p.start, (unsigned long long)p.size);
		}
	}
	snap_store_image_free(img);
	return r < 0 ? r : 0;
}

static int inspect_disk(const char *path)
{
	struct snap_disk *disk = NULL;
	struct snap_map_summary sum = {.struct_size = sizeof(sum)};
	int r;

	if ((r = snap_disk_new(&disk)) < 0)
		return r;
	if ((r = snap_disk_open(disk, path)) < 0) {
		fprintf(stderr, "cannot open %s: %s\n", path, snap_disk_error(disk));
		snap_disk_free(disk);
		return r;
	}
	printf("disk: %llu bytes, %s\n", (unsigned long long)snap_disk_size(disk),
	       snap_disk_ptable_type(disk) ? snap_disk_ptable_type(disk) : "no table");
	for (size_t i = 0; i < snap_disk_partition_count(disk); i++) {
		const struct snap_partition_info *p = snap_disk_partition(disk, i);
		printf("  partition %u: start %llu size %llu fs %s\n", p->number,
		       (unsigned long long)p->start, (unsigned long long)p->size,
		       p->fs_type ? p->fs_type : "none");
	}
	if ((r = snap_disk_summary(disk, &sum)) == 0)
		printf("data %llu zero %llu unused %llu in %llu extents\n",
		       (unsigned long long)sum.bytes[SNAP_EXTENT_DATA],
		       (unsigned long long)sum.bytes[SNAP_EXTENT_ZERO],
		       (unsigned long long)sum.bytes[SNAP_EXTENT_UNUSED],
		       (unsigned long long)sum.extents);
	snap_disk_free(disk);
	return r;
}

int main(int argc, char **argv)
{
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: inspect PATH\n");
		return 2;
	}
	r = snap_store_image_probe(argv[1]);
	if (r < 0) {
		fprintf(stderr, "cannot read %s: %s\n", argv[1], snap_strerror(r));
		return 1;
	}
	r = r ? inspect_store(argv[1]) : inspect_disk(argv[1]);
	return r < 0 ? 1 : 0;
}
