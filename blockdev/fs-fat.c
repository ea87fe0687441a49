// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fs-fat.c - free clusters of FAT12/16/32 from the file allocation table.
 *
 * Invariants:
 *  1. The FAT type follows from the BIOS parameter block as Linux and dosfstools decide it: a
 *     zero 16-bit FAT size means FAT32 (whatever the cluster count, mkfs.vfat -F 32 makes
 *     small ones), otherwise the cluster count picks FAT12 or FAT16; never the label strings.
 *  2. Everything before the data area stays DATA and is pinned: boot sector, reserved sectors
 *     (FAT32's FSInfo and backup boot sector among them), every FAT copy, FAT12/16's root
 *     directory. Sectors after the last whole cluster are not marked either.
 *  3. A cluster is free only when its entry is 0. Every mirrored FAT copy must agree with the
 *     first one entry for entry; any difference refuses, as does a volume marked dirty (boot
 *     sector state bit or the clean-shutdown bit of FAT entry 1).
 *  4. The FAT is read in windows, so memory stays bounded whatever the volume's size.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fs-util.h"

#define FAT_WINDOW (256u * 1024) /* bytes of each FAT copy per read; a multiple of 3 * 4 */

struct fat_vol {
	struct snap_fs_ctx *ctx;
	int bits; /* 12, 16 or 32 */
	uint32_t bps, spc;
	uint64_t fat_start, fat_bytes; /* bytes */
	uint32_t nfats, active;	       /* active: the one FAT copy in use when not mirrored */
	bool mirrored;
	uint64_t data_start; /* bytes */
	uint64_t clusters;   /* data clusters: entries 2 .. clusters + 1 */
	uint64_t total_bytes;
};

static uint32_t fat_entry(const struct fat_vol *v, const uint8_t *fat, uint64_t n)
{
	switch (v->bits) {
	case 12: {
		uint16_t x = snap_get_le16(fat + n + n / 2);
		return n & 1 ? x >> 4 : x & 0xfff;
	}
	case 16:
		return snap_get_le16(fat + 2 * n);
	default:
		return snap_get_le32(fat + 4 * n) & 0x0fffffff;
	}
}

static int fat_parse(struct fat_vol *v, const uint8_t *bs)
{
	struct snap_fs_ctx *ctx = v->ctx;

	if (snap_get_le16(bs + 510) != 0xaa55)
		return snap_fs_fail(ctx, -EUCLEAN, "vfat: no boot sector signature");
	v->bps = snap_get_le16(bs + 0x0b);
	v->spc = bs[0x0d];
	uint32_t reserved = snap_get_le16(bs + 0x0e);
	v->nfats = bs[0x10];
	uint32_t root_entries = snap_get_le16(bs + 0x11);
	uint64_t total = snap_get_le16(bs + 0x13);
	if (!total)
		total = snap_get_le32(bs + 0x20);
	uint64_t fat_sectors = snap_get_le16(bs + 0x16);
	bool fat32 = !fat_sectors;
	if (fat32)
		fat_sectors = snap_get_le32(bs + 0x24);

	if (v->bps < 512 || v->bps > 4096 || (v->bps & (v->bps - 1)))
		return snap_fs_fail(ctx, -EUCLEAN, "vfat: bad sector size %u", v->bps);
	if (!v->spc || (v->spc & (v->spc - 1)))
		return snap_fs_fail(ctx, -EUCLEAN, "vfat: bad sectors per cluster %u", v->spc);
	if (!reserved || !v->nfats || !fat_sectors || !total)
		return snap_fs_fail(ctx, -EUCLEAN, "vfat: bad BIOS parameter block");

	uint64_t root_sectors = ((uint64_t)root_entries * 32 + v->bps - 1) / v->bps;
	uint64_t meta = reserved + v->nfats * fat_sectors + root_sectors;
	if (meta >= total)
		return snap_fs_fail(ctx, -EUCLEAN, "vfat: no data area");
	v->clusters = (total - meta) / v->spc;
	v->bits = fat32 ? 32 : v->clusters < 4085 ? 12 : 16;
	if (fat32 && root_entries)
		return snap_fs_fail(ctx, -EUCLEAN, "vfat: FAT32 with a fixed root directory");
	if (!fat32 && (!root_entries || v->clusters >= 65525))
		return snap_fs_fail(
		    ctx, -EUCLEAN, "vfat: bad FAT12/16 layout (%" PRIu64 " clusters)", v->clusters);
	if (v->clusters + 2 > 0x0ffffff7)
		return snap_fs_fail(ctx, -EUCLEAN, "vfat: too many clusters");
	v->fat_start = (uint64_t)reserved * v->bps;
	v->fat_bytes = fat_sectors * v->bps;
	v->data_start = meta * v->bps;
	v->total_bytes = total * v->bps;
	if ((v->clusters + 2) * v->bits > v->fat_bytes * 8)
		return snap_fs_fail(ctx, -EUCLEAN, "vfat: FAT too small for %" PRIu64 " clusters",
				    v->clusters);
	if (v->total_bytes > ctx->part_size)
		return snap_fs_fail(ctx, -EUCLEAN,
				    "vfat: volume (%" PRIu64
				    " bytes) larger than its partition (%" PRIu64 " bytes)",
				    v->total_bytes, ctx->part_size);

	v->mirrored = true;
	v->active = 0;
	uint8_t state;
	if (v->bits == 32) {
		uint16_t ext = snap_get_le16(bs + 0x28);
		if (snap_get_le16(bs + 0x2a) != 0)
			return snap_fs_fail(ctx, -EOPNOTSUPP, "vfat: unknown FAT32 version 0x%04x",
					    snap_get_le16(bs + 0x2a));
		if (ext & 0x80) {
			v->mirrored = false;
			v->active = ext & 0x0f;
			if (v->active >= v->nfats)
				return snap_fs_fail(ctx, -EUCLEAN, "vfat: active FAT %u of %u",
						    v->active, v->nfats);
		}
		state = bs[0x41];
	} else {
		state = bs[0x25];
	}
	/* the extended boot signature says whether the state byte is meaningful */
	if (bs[v->bits == 32 ? 0x42 : 0x26] == 0x29 && (state & 0x01))
		return snap_fs_fail(ctx, -EUCLEAN,
				    "vfat: volume marked dirty (not cleanly unmounted)");
	return 0;
}

static int fat_map(struct snap_fs_ctx *ctx)
{
	struct fat_vol v = {.ctx = ctx};
	struct snap_fs_emitter unused;
	uint8_t bs[512];
	uint8_t *win = NULL, *other = NULL;
	uint64_t used = 0;
	int r;

	if (ctx->part_size < sizeof(bs))
		return snap_fs_fail(ctx, -EUCLEAN, "vfat: partition too small");
	r = ctx->read(ctx, 0, bs, sizeof(bs));
	if (r < 0)
		return snap_fs_fail(ctx, r, "vfat: cannot read the boot sector");
	r = fat_parse(&v, bs);
	if (r < 0)
		return r;

	/* FAT12 entries straddle bytes: read that (small, <= 6 KiB) table whole */
	uint64_t win_bytes = v.bits == 12 ? v.fat_bytes : FAT_WINDOW;
	win = malloc(win_bytes);
	other = malloc(win_bytes);
	if (!win || !other) {
		r = snap_fs_fail(ctx, -ENOMEM, "vfat: out of memory");
		goto out;
	}
	snap_fs_emitter_init(&unused, ctx, ctx->mark_unused);
	uint64_t entry_end = v.clusters + 2;
	uint64_t per_win = v.bits == 12 ? entry_end : win_bytes * 8 / (uint64_t)v.bits;
	uint64_t cbytes = (uint64_t)v.spc * v.bps;
	for (uint64_t e0 = 0; e0 < entry_end; e0 += per_win) {
		uint64_t n = entry_end - e0 < per_win ? entry_end - e0 : per_win;
		uint64_t off = v.bits == 12 ? 0 : e0 * (uint64_t)v.bits / 8;
		uint64_t len = v.bits == 12 ? v.fat_bytes : n * (uint64_t)v.bits / 8;
		uint64_t first = v.fat_start + (uint64_t)v.active * v.fat_bytes;

		r = ctx->read(ctx, first + off, win, len);
		if (r < 0) {
			r = snap_fs_fail(ctx, r, "vfat: cannot read FAT %u", v.active);
			goto out;
		}
		for (uint32_t k = 1; v.mirrored && k < v.nfats; k++) {
			r = ctx->read(ctx, v.fat_start + k * v.fat_bytes + off, other, len);
			if (r < 0) {
				r = snap_fs_fail(ctx, r, "vfat: cannot read FAT %u", k);
				goto out;
			}
			/* dosfstools and Windows keep the copies identical; where they
			 * differ, which one a checker trusts is not ours to guess */
			for (uint64_t i = e0 ? 0 : 2; i < n; i++) {
				uint64_t at = v.bits == 12 ? e0 + i : i;
				if (fat_entry(&v, win, at) != fat_entry(&v, other, at)) {
					r = snap_fs_fail(
					    ctx, -EUCLEAN,
					    "vfat: FAT copies 0 and %u differ at cluster %" PRIu64,
					    k, e0 + i);
					goto out;
				}
			}
		}
		if (e0 == 0 && v.bits != 12) {
			/* entry 1's clean-shutdown bit (set = clean) */
			uint32_t e1 = fat_entry(&v, win, 1);
			uint32_t clean = v.bits == 16 ? 0x8000 : 0x08000000;
			if (!(e1 & clean)) {
				r = snap_fs_fail(
				    ctx, -EUCLEAN,
				    "vfat: volume not cleanly unmounted (FAT entry 1)");
				goto out;
			}
		}
		for (uint64_t i = e0 ? 0 : 2; i < n; i++) {
			uint64_t c = e0 + i;
			if (fat_entry(&v, win, v.bits == 12 ? c : i) != 0) {
				used++;
				continue;
			}
			r = snap_fs_emit(&unused, v.data_start + (c - 2) * cbytes, cbytes);
			if (r < 0)
				goto out;
		}
	}
	r = snap_fs_emit_flush(&unused);
	if (r < 0)
		goto out;
	r = ctx->pin(ctx, 0, v.data_start);
	if (r < 0)
		goto out;
	ctx->used_bytes = v.data_start + used * cbytes;
out:
	free(win);
	free(other);
	return r;
}

const struct snap_fs_driver snap_fs_vfat = {.name = "vfat", .map = fat_map};
