// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fs-swap.c - Linux swap areas (SWAPSPACE2): nothing after the header page survives a reboot,
 * so everything from the second page to the end of the swap area is free.
 *
 * Invariants:
 *  1. The header page (boot bits, header, signature) is pinned.
 *  2. Only a version-1 SWAPSPACE2 header is mapped; a hibernation image (the signature replaced
 *     by S1SUSPEND, S2SUSPEND, ULSUSPEND or LINHIB0001) refuses: its pages are a saved memory
 *     image that resume will read.
 *  3. Only [page, (last_page + 1) * page) is marked: bytes past the swap area's end are not the
 *     swap area's to give away.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "fs-util.h"

#define SWAP_SIG_LEN 10
#define SWAP_MAX_PAGE 65536

static const char *const swap_hibernation_sigs[] = {
    "S1SUSPEND",
    "S2SUSPEND",
    "ULSUSPEND",
    "LINHIB0001",
};

static int swap_map(struct snap_fs_ctx *ctx)
{
	uint8_t hdr[12]; /* version, last_page, nr_badpages */
	char sig[SWAP_SIG_LEN];
	uint32_t page = 0;
	int r;

	/* the signature sits in the last 10 bytes of the first page, whose size is the
	 * creating machine's page size */
	for (uint32_t ps = 4096; ps <= SWAP_MAX_PAGE; ps *= 2) {
		if (ctx->part_size < ps)
			break;
		r = ctx->read(ctx, ps - SWAP_SIG_LEN, sig, SWAP_SIG_LEN);
		if (r < 0)
			return snap_fs_fail(ctx, r, "swap: cannot read the signature");
		if (!memcmp(sig, "SWAPSPACE2", SWAP_SIG_LEN)) {
			page = ps;
			break;
		}
		for (size_t i = 0;
		     i < sizeof(swap_hibernation_sigs) / sizeof(*swap_hibernation_sigs); i++) {
			const char *h = swap_hibernation_sigs[i];
			if (!memcmp(sig, h, strlen(h)))
				return snap_fs_fail(ctx, -EBUSY,
						    "swap: holds a hibernation image (%s)", h);
		}
		if (!memcmp(sig, "SWAP-SPACE", SWAP_SIG_LEN))
			return snap_fs_fail(ctx, -EOPNOTSUPP, "swap: old version-0 swap area");
	}
	if (!page)
		return snap_fs_fail(ctx, -EUCLEAN, "swap: no SWAPSPACE2 signature");

	r = ctx->read(ctx, 1024, hdr, 12);
	if (r < 0)
		return snap_fs_fail(ctx, r, "swap: cannot read the header");
	/* the header is in the creating machine's byte order */
	uint32_t version = snap_get_le32(hdr), last_page = snap_get_le32(hdr + 4);
	if (version != 1) {
		version = snap_get_be32(hdr);
		last_page = snap_get_be32(hdr + 4);
	}
	if (version != 1)
		return snap_fs_fail(ctx, -EOPNOTSUPP, "swap: unknown header version");
	uint64_t end = ((uint64_t)last_page + 1) * page;
	if (last_page < 1 || end > ctx->part_size)
		return snap_fs_fail(ctx, -EUCLEAN,
				    "swap: area of %" PRIu64
				    " bytes does not fit its partition (%" PRIu64 " bytes)",
				    end, ctx->part_size);

	r = ctx->pin(ctx, 0, page);
	if (r < 0)
		return r;
	r = ctx->mark_unused(ctx, page, end - page);
	if (r < 0)
		return r;
	ctx->used_bytes = page;
	return 0;
}

const struct snap_fs_driver snap_fs_swap = {.name = "swap", .map = swap_map};
