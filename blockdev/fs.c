// SPDX-License-Identifier: LGPL-2.1-or-later
/* fs.c - the table of filesystem free-space drivers (fs.h). A filesystem not listed here is
 * copied whole. */
#include <string.h>

#include "fs.h"
#include "fs-util.h"

static const struct snap_fs_driver *const drivers[] = {
    &snap_fs_ext2, &snap_fs_ext3, &snap_fs_ext4, &snap_fs_swap,
    &snap_fs_vfat, &snap_fs_xfs,  &snap_fs_ntfs, NULL, /* drivers are listed above this sentinel */
};

const struct snap_fs_driver *snap_fs_driver_find(const char *blkid_type)
{
	if (!blkid_type)
		return NULL;
	for (size_t i = 0; drivers[i]; i++)
		if (!strcmp(drivers[i]->name, blkid_type))
			return drivers[i];
	return NULL;
}
