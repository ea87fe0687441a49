/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fs-util.h - helpers shared by the filesystem free-space drivers (fs-*.c): explicit-endian
 * field access, the checksums their on-disk formats use, bitmap scanning, and a coalescing
 * emitter for ranges.
 *
 * Invariants:
 *  1. Field getters never assume alignment and never read past the pointer + width.
 *  2. snap_crc32c() is the raw Castagnoli CRC: no inversion on entry or exit. ext4 stores
 *     snap_crc32c(~0, ...) as is; XFS stores its complement (xfs_end_cksum).
 *  3. A range emitter forwards ranges in the order given, merging a range into the pending one
 *     only when it starts exactly where the pending one ends.
 */
#ifndef SNAP_FS_UTIL_H
#define SNAP_FS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs.h"

static inline uint16_t snap_get_le16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t snap_get_le32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t snap_get_le64(const void *p)
{
	const uint8_t *b = p;
	return (uint64_t)snap_get_le32(b) | (uint64_t)snap_get_le32(b + 4) << 32;
}

static inline uint16_t snap_get_be16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] << 8 | b[1]);
}

static inline uint32_t snap_get_be32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static inline uint64_t snap_get_be64(const void *p)
{
	const uint8_t *b = p;
	return (uint64_t)snap_get_be32(b) << 32 | snap_get_be32(b + 4);
}

static inline void snap_put_le32(void *p, uint32_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}

/* Raw CRC32C (Castagnoli, reflected, poly 0x82f63b78): no pre- or post-inversion. The standard
 * check value is ~snap_crc32c(~0, "123456789", 9) == 0xe3069283. */
uint32_t snap_crc32c(uint32_t crc, const void *buf, size_t len);

/* CRC16 as e2fsprogs' ext2fs_crc16 (ANSI, reflected, poly 0xa001), for ext4's gdt_csum. */
uint16_t snap_crc16(uint16_t crc, const void *buf, size_t len);

/* First bit >= from in [from, nbits) whose value is `value` (bit i = byte i/8, bit i%8, the
 * little-endian bit order of ext4 and NTFS bitmaps), or nbits when there is none. */
size_t snap_bitmap_find(const uint8_t *map, size_t nbits, size_t from, bool value);

/* Sets ctx->note (printf style) and returns err (a negative errno), for `return snap_fs_fail()`. */
int snap_fs_fail(struct snap_fs_ctx *ctx, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Merges adjacent ranges before handing them to ctx->mark_unused or ctx->pin. */
struct snap_fs_emitter {
	struct snap_fs_ctx *ctx;
	int (*fn)(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len);
	uint64_t off;
	uint64_t len;
	uint64_t total; /* bytes emitted so far (ranges as given, overlaps counted twice) */
};

void snap_fs_emitter_init(struct snap_fs_emitter *em, struct snap_fs_ctx *ctx,
			  int (*fn)(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len));
int snap_fs_emit(struct snap_fs_emitter *em, uint64_t off, uint64_t len);
int snap_fs_emit_flush(struct snap_fs_emitter *em);

/* The drivers (fs-*.c), listed in fs.c's table. */
extern const struct snap_fs_driver snap_fs_ext2, snap_fs_ext3, snap_fs_ext4;
extern const struct snap_fs_driver snap_fs_swap, snap_fs_vfat, snap_fs_xfs, snap_fs_ntfs;

#endif
