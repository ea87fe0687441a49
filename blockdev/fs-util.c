// SPDX-License-Identifier: LGPL-2.1-or-later
/* fs-util.c - checksums, bitmap scanning and range emitters for the filesystem drivers
 * (fs-util.h). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <isa-l/crc.h>

#include "fs-util.h"

uint32_t snap_crc32c(uint32_t crc, const void *buf, size_t len)
{
	unsigned char *p = (unsigned char *)buf; /* ISA-L takes a non-const pointer, reads only */

	/* ISA-L's crc32_iscsi neither inverts on entry nor on exit (checked by test-fs-util
	 * against the standard check value and against superblocks written by mke2fs). */
	while (len > 0) {
		size_t n = len > (size_t)INT_MAX ? (size_t)1 << 30 : len;
		crc = crc32_iscsi(p, (int)n, crc);
		p += n;
		len -= n;
	}
	return crc;
}

uint16_t snap_crc16(uint16_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	/* Bitwise: only group descriptors of old ext4 filesystems are summed with it. */
	while (len--) {
		crc ^= *p++;
		for (int i = 0; i < 8; i++)
			crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xa001) : (uint16_t)(crc >> 1);
	}
	return crc;
}

size_t snap_bitmap_find(const uint8_t *map, size_t nbits, size_t from, bool value)
{
	const uint8_t skip = value ? 0x00 : 0xff; /* a byte with no bit of the wanted value */
	size_t i = from;

	while (i < nbits) {
		if (!(i & 7)) {
			/* whole bytes (and words) that cannot hold the wanted value */
			while (i + 64 <= nbits && !(i & 63)) {
				uint64_t w;
				memcpy(&w, map + i / 8, 8);
				if (w != (value ? 0 : UINT64_MAX))
					break;
				i += 64;
			}
			while (i + 8 <= nbits && map[i / 8] == skip)
				i += 8;
			if (i >= nbits)
				break;
		}
		if (!!(map[i / 8] & (1u << (i & 7))) == value)
			return i;
		i++;
	}
	return nbits;
}

int snap_fs_fail(struct snap_fs_ctx *ctx, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->note, sizeof(ctx->note), fmt, ap);
	va_end(ap);
	return err;
}

void snap_fs_emitter_init(struct snap_fs_emitter *em, struct snap_fs_ctx *ctx,
			  int (*fn)(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len))
{
	*em = (struct snap_fs_emitter){.ctx = ctx, .fn = fn};
}

int snap_fs_emit(struct snap_fs_emitter *em, uint64_t off, uint64_t len)
{
	if (!len)
		return 0;
	em->total += len;
	if (em->len && em->off + em->len == off) {
		em->len += len;
		return 0;
	}
	int r = snap_fs_emit_flush(em);
	if (r < 0)
		return r;
	em->off = off;
	em->len = len;
	return 0;
}

int snap_fs_emit_flush(struct snap_fs_emitter *em)
{
	int r = 0;

	if (em->len)
		r = em->fn(em->ctx, em->off, em->len);
	em->len = 0;
	return r;
}
