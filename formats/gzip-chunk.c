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

/* One stateless deflate of in into out: a whole raw DEFLATE stream (end), or a chunk of one
 * (stateless: one call per chunk, and it falls back to stored blocks when the data does not
 * compress, where the stateful path would let random data grow by an eighth at level 0;
 * FULL_FLUSH byte-aligns a non-final chunk without BFINAL). */
static int deflate_stateless(struct snap_deflate *d, const uint8_t *in, size_t len, bool end,
			     int flush, uint8_t *out, size_t out_cap, size_t *ret_len)
{
	if (len > UINT32_MAX || out_cap > UINT32_MAX)
		return -EINVAL;
	struct isal_zstream *s = &d->stream;
	isal_deflate_stateless_init(s);
	bool small = len < SNAP_DEFLATE_SMALL; /* invariant 5 */
	s->level = small ? 0 : (uint32_t)d->level;
	s->level_buf = small ? NULL : d->level_buf;
	s->level_buf_size = small ? 0 : d->level_buf_size;
	s->gzip_flag = IGZIP_DEFLATE;
	s->end_of_stream = end ? 1 : 0;
	s->flush = flush;
	s->next_in = (uint8_t *)in;
	s->avail_in = (uint32_t)len;
	s->next_out = out;
	s->avail_out = (uint32_t)out_cap;
	int r = isal_deflate_stateless(s);
	if (r == STATELESS_OVERFLOW)
		return -ENOBUFS;
	if (r != COMP_OK || s->avail_in != 0)
		return -EIO;
	*ret_len = out_cap - s->avail_out;
	return 0;
}

int snap_deflate_raw(struct snap_deflate *d, const uint8_t *in, size_t len, uint8_t *out,
		     size_t out_cap, size_t *ret_len)
{
	return deflate_stateless(d, in, len, true, NO_FLUSH, out, out_cap, ret_len);
}

int snap_deflate_chunk(struct snap_deflate *d, const uint8_t *in, size_t len, bool final,
		       uint8_t *out, size_t out_cap, size_t *ret_len, uint32_t *ret_crc)
{
	int r = deflate_stateless(d, in, len, final, final ? NO_FLUSH : FULL_FLUSH, out, out_cap,
				  ret_len);
	if (r == 0)
		*ret_crc = snap_crc32(0, in, len);
	return r;
}

struct snap_inflate {
	struct inflate_state st;
	bool ended; /* streaming gunzip: the last member stepped ended */
};

int snap_inflate_new(struct snap_inflate **ret)
{
	struct snap_inflate *i = malloc(sizeof(*i));
	if (!i)
		return -ENOMEM;
	isal_inflate_init(&i->st);
	*ret = i;
	return 0;
}

struct snap_inflate *snap_inflate_free(struct snap_inflate *i)
{
	free(i);
	return NULL;
}

int snap_inflate_raw(struct snap_inflate *i, const uint8_t *in, size_t len, uint8_t *out,
		     size_t out_len)
{
	if (len > UINT32_MAX || out_len > UINT32_MAX)
		return -EBADMSG;
	struct inflate_state *st = &i->st;
	isal_inflate_init(st);
	st->crc_flag = ISAL_DEFLATE;
	st->next_in = (uint8_t *)in;
	st->avail_in = (uint32_t)len;
	st->next_out = out;
	st->avail_out = (uint32_t)out_len;
	int r = isal_inflate_stateless(st);
	if (r != ISAL_DECOMP_OK || st->total_out != out_len || st->avail_in != 0)
		return -EBADMSG;
	return 0;
}

static const char *isal_text(int r)
{
	switch (r) {
	case ISAL_INVALID_BLOCK:
		return "invalid deflate block";
	case ISAL_INVALID_SYMBOL:
		return "invalid deflate symbol";
	case ISAL_INVALID_LOOKBACK:
		return "invalid deflate distance";
	case ISAL_INVALID_WRAPPER:
		return "not a gzip stream (wrong key, or not a bundle)";
	case ISAL_UNSUPPORTED_METHOD:
		return "unsupported gzip compression method";
	case ISAL_INCORRECT_CHECKSUM:
		return "gzip CRC-32 or length mismatch";
	default:
		return "inflate failed";
	}
}

void snap_gunzip_begin(struct snap_inflate *i)
{
	isal_inflate_init(&i->st);
	i->st.crc_flag = ISAL_GZIP;
	i->ended = false;
}

int snap_gunzip_more(struct snap_inflate *i, const uint8_t *in, size_t in_len,
		     const char **ret_detail)
{
	if (!i->ended)
		return 1;
	if (in_len == 0)
		return 0;
	/* gzip allows several members; anything else is trailing junk */
	if (in[0] != 0x1f) {
		*ret_detail = "data after the end of the gzip stream";
		return -EUCLEAN;
	}
	isal_inflate_reset(&i->st); /* the next member */
	i->st.crc_flag = ISAL_GZIP;
	i->ended = false;
	return 1;
}

bool snap_gunzip_ended(const struct snap_inflate *i)
{
	return i->ended;
}

int snap_gunzip_step(struct snap_inflate *i, const uint8_t **in, size_t *in_len, uint8_t *out,
		     size_t out_cap, size_t *ret_out, bool *ret_end, const char **ret_detail)
{
	struct inflate_state *st = &i->st;
	if (*in_len > UINT32_MAX || out_cap > UINT32_MAX) {
		*ret_detail = "buffer too large";
		return -EINVAL;
	}
	st->next_in = (uint8_t *)*in;
	st->avail_in = (uint32_t)*in_len;
	st->next_out = out;
	st->avail_out = (uint32_t)out_cap;
	int r = isal_inflate(st);
	/* On some corrupt streams ISA-L (2.30) returns an error with avail_in wrapped below zero
	 * (next_in and avail_in disagree): the stream is dead then, so all of the input counts as
	 * read, and counters that no longer fit in what was given are corrupt data too. */
	if (r >= 0 && (st->avail_in > *in_len || st->avail_out > out_cap))
		r = ISAL_INVALID_BLOCK;
	size_t in_left = r < 0 || st->avail_in > *in_len ? 0 : st->avail_in;
	*ret_out = st->avail_out > out_cap ? 0 : out_cap - st->avail_out;
	*in += *in_len - in_left;
	*in_len = in_left;
	*ret_end = r >= 0 && st->block_state == ISAL_BLOCK_FINISH;
	i->ended = *ret_end;
	if (r < 0) {
		*ret_detail = isal_text(r);
		return r == ISAL_INCORRECT_CHECKSUM ? -EBADMSG : -EUCLEAN;
	}
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
