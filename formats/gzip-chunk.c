// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * gzip-chunk.c - ISA-L deflate of independent chunks, and the gzip wrapper around them (see
 * gzip-chunk.h). The compressor never sees more than one chunk, which is what lets chunks be
 * compressed on any worker in any order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <zlib.h>

#include "gzip-chunk.h"

struct snap_deflate {
	struct isal_zstream stream;
	int level;
	uint8_t *level_buf;
	uint32_t level_buf_size;
};

static const uint32_t level_buf_sizes[SNAP_DEFLATE_MAX_LEVEL + 1] = {
    ISAL_DEF_LVL0_DEFAULT,
    ISAL_DEF_LVL1_DEFAULT,
    ISAL_DEF_LVL2_DEFAULT,
    ISAL_DEF_LVL3_DEFAULT,
};

int snap_deflate_new(int level, struct snap_deflate **ret)
{
	if (level < 0 || level > SNAP_DEFLATE_MAX_LEVEL)
		return -EINVAL;
	struct snap_deflate *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->level = level;
	d->level_buf_size = level_buf_sizes[level];
	if (d->level_buf_size) {
		d->level_buf = malloc(d->level_buf_size);
		if (!d->level_buf) {
			free(d);
			return -ENOMEM;
		}
	}
	*ret = d;
	return 0;
}

struct snap_deflate *snap_deflate_free(struct snap_deflate *d)
{
	if (d) {
		free(d->level_buf);
		free(d);
	}
	return NULL;
}

size_t snap_deflate_bound(size_t len)
{
	/* stored blocks cost 5 bytes per 64 KiB at worst; ISA-L may also emit a dynamic block
	 * header before it falls back, and the flush adds an empty stored block */
	return len + len / 64 + 4096;
}

int snap_deflate_chunk(struct snap_deflate *d, const uint8_t *in, size_t len, bool final,
		       uint8_t *out, size_t out_cap, size_t *ret_len, uint32_t *ret_crc)
{
	if (len > UINT32_MAX || out_cap > UINT32_MAX)
		return -EINVAL;
	struct isal_zstream *s = &d->stream;
	isal_deflate_stateless_init(s);
	s->level = (uint32_t)d->level;
	s->level_buf = d->level_buf;
	s->level_buf_size = d->level_buf_size;
	s->gzip_flag = IGZIP_DEFLATE;
	s->next_in = (uint8_t *)in;
	s->avail_in = (uint32_t)len;
	s->next_out = out;
	s->avail_out = (uint32_t)out_cap;
	s->end_of_stream = final ? 1 : 0;
	/* stateless: one call per chunk, and it falls back to stored blocks when the data does
	 * not compress (the stateful path would let random data grow by an eighth at level 0).
	 * FULL_FLUSH byte-aligns a non-final chunk without BFINAL. */
	s->flush = final ? NO_FLUSH : FULL_FLUSH;
	int r = isal_deflate_stateless(s);
	if (r == STATELESS_OVERFLOW)
		return -ENOBUFS;
	if (r != COMP_OK || s->avail_in != 0)
		return -EIO;
	*ret_len = out_cap - s->avail_out;
	*ret_crc = snap_crc32(0, in, len);
	return 0;
}

uint32_t snap_crc32(uint32_t crc, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		uint64_t n = len > (1u << 30) ? (1u << 30) : len;
		crc = crc32_gzip_refl(crc, buf, n);
		buf += n;
		len -= n;
	}
	return crc;
}

uint32_t snap_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	return (uint32_t)crc32_combine64(crc_a, crc_b, (z_off64_t)len_b);
}

void snap_gzip_header(uint8_t out[SNAP_GZIP_HEADER_SIZE], int level)
{
	static const uint8_t h[SNAP_GZIP_HEADER_SIZE] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
	memcpy(out, h, sizeof(h));
	out[8] = level >= SNAP_DEFLATE_MAX_LEVEL ? 2 : level == 0 ? 4 : 0;
}

void snap_gzip_trailer(uint8_t out[SNAP_GZIP_TRAILER_SIZE], uint32_t crc, uint64_t total_len)
{
	uint32_t isize = (uint32_t)total_len;
	for (int i = 0; i < 4; i++) {
		out[i] = (uint8_t)(crc >> (8 * i));
		out[4 + i] = (uint8_t)(isize >> (8 * i));
	}
}
