// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * freeze-helper.c - for test-freeze.py: opens DEVICE through the public API with
 * SNAP_DISK_FREEZE, prints each filesystem's number and note, prints "ready", waits for a line
 * on stdin, then frees the disk (which thaws what it froze) and prints "thawed".
 */
#include <stdio.h>

#include "snapbundle.h"

int main(int argc, char **argv)
{
	struct snap_disk *d = NULL;
	char line[16];

	if (argc != 2 || snap_disk_new(&d) < 0)
		return 2;
	snap_disk_set_param(d, SNAP_DISK_FREEZE, 1);
	int r = snap_disk_open(d, argv[1]);
	if (r < 0) {
		fprintf(stderr, "freeze-helper: %s\n", snap_disk_error(d));
		snap_disk_free(d);
		return 1;
	}
	for (size_t i = 0; i < snap_disk_partition_count(d); i++) {
		const struct snap_partition_info *p = snap_disk_partition(d, i);
		printf("partition %u %s note=%s\n", p->number, p->fs_type ? p->fs_type : "-",
		       p->fs_note ? p->fs_note : "-");
	}
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		line[0] = '\0';
	snap_disk_free(d);
	printf("thawed\n");
	return 0;
}
