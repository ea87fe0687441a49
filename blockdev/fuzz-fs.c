// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-fs.c - libFuzzer target for the filesystem free-space drivers (fs.h). The first byte of
 * the input picks the driver, the rest is the partition. Besides not crashing, every driver
 * must keep its marks inside the partition and set a note whenever it refuses; either failure
 * aborts, so the fuzzer and the replay test report it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_drivers[] = {"ext4", "vfat", "swap", "xfs", "ntfs"};

struct fuzz_part {
	const uint8_t *data;
	size_t size;
};

static int fuzz_read(struct snap_fs_ctx *ctx, uint64_t off, void *buf, size_t len)
{
	const struct fuzz_part *p = ctx->priv;

	if (off > p->size || len > p->size - off)
		return -EIO;
	memcpy(buf, p->data + off, len);
	return 0;
}

static int fuzz_mark(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len)
{
	if (!len || off > ctx->part_size || len > ctx->part_size - off) {
		fprintf(stderr, "fuzz-fs: range %llu+%llu outside the partition (%llu bytes)\n",
			(unsigned long long)off, (unsigned long long)len,
			(unsigned long long)ctx->part_size);
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct fuzz_part part = {.data = data + 1, .size = size - 1};
	struct snap_fs_ctx ctx = {
	    .part_size = size - 1,
	    .read = fuzz_read,
	    .mark_unused = fuzz_mark,
	    .pin = fuzz_mark,
	    .mark_zero = fuzz_mark,
	    .priv = &part,
	};
	const struct snap_fs_driver *drv = snap_fs_driver_find(
	    fuzz_drivers[data[0] % (sizeof(fuzz_drivers) / sizeof(*fuzz_drivers))]);

	if (!drv)
		abort();
	int r = drv->map(&ctx);
	if (r < 0 && !ctx.note[0]) {
		fprintf(stderr, "fuzz-fs: %s refused (%d) without a note\n", drv->name, r);
		abort();
	}
	if (r > 0)
		abort();
	return 0;
}
