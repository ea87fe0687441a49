// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-layout.c - a fuzz target for everything that parses a source's metadata: libfdisk's
 * view of the partition table, our own GPT header and EBR chain walks, libblkid probes, the
 * filesystem drivers in fs.c, the hole walk and the merge. The input is the whole disk image
 * (a memfd). It must never crash, and whatever it builds must keep the extent map's
 * invariants; a violation aborts.
 *
 * To fuzz (clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iblockdev -Iengine \
 *     blockdev/fuzz-layout.c blockdev/{layout,ptable,extent-map,fs*,source,log}.c \
 *     $(pkg-config --cflags --libs blkid fdisk) -o fuzz-layout
 *   LSAN_OPTIONS=suppressions=blockdev/fuzz-layout.supp ./fuzz-layout CORPUS blockdev/corpus/layout
 * (fuzz-layout.supp: a leak inside libfdisk itself.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(void *userdata, const char *msg)
{
	(void)userdata;
	(void)msg;
}

static void check_map(const struct snap_layout *l)
{
	uint64_t pos = 0;
	for (size_t i = 0; i < snap_map_count(l->map); i++) {
		const struct snap_extent *e = snap_map_get(l->map, i);
		if (e->offset != pos || e->length == 0 || e->kind > SNAP_EXTENT_UNUSED ||
		    e->layer >= SNAP_LAYER_COUNT)
			abort();
		pos += e->length;
	}
	if (pos != l->src->size)
		abort();
	for (size_t i = 0; i < l->nparts; i++)
		if (l->parts[i].fs_skipped > l->parts[i].size)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > (16u << 20))
		return 0;
	int fd = memfd_create("fuzz-layout", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	size_t done = 0;
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);
		if (n <= 0) {
			close(fd);
			return 0;
		}
		done += (size_t)n;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct snap_src *src = NULL;
	if (snap_src_open(path, SNAP_SRC_NO_DIRECT, &src, NULL) == 0) {
		for (int keep = 0; keep < 2; keep++) {
			struct snap_layout_opts opts = {.keep_unpartitioned = keep, .warn = quiet};
			struct snap_layout *l = NULL;
			char *detail = NULL;
			if (snap_layout_build(src, &opts, &l, &detail) == 0)
				check_map(l);
			snap_layout_free(l);
			free(detail);
		}
		snap_src_free(src);
	}
	close(fd);
	return 0;
}
