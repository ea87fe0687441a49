// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-frame.c - seal and open one .bin store frame over memory (see store-frame.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gzip-chunk.h"
#include "store-frame.h"

struct snap_frame_codec {
	struct snap_deflate *deflate; /* NULL: open only */
	struct snap_inflate *inflate;
	struct snap_store_cipher *cipher;
	bool keyed;
};

int snap_frame_codec_new(int level, const struct snap_store_keyset *keys,
			 struct snap_frame_codec **ret)
{
	if (level < -1 || level > SNAP_DEFLATE_MAX_LEVEL)
		return -EINVAL;
	struct snap_frame_codec *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->keyed = keys != NULL;
	int r = level >= 0 ? snap_deflate_new(level, &c->deflate) : 0;
	if (r == 0)
		r = snap_inflate_new(&c->inflate);
	if (r == 0)
		r = snap_store_cipher_new(keys, &c->cipher);
	if (r < 0) {
		snap_frame_codec_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

struct snap_frame_codec *snap_frame_codec_free(struct snap_frame_codec *c)
{
	if (c) {
		snap_deflate_free(c->deflate);
		snap_inflate_free(c->inflate);
		snap_store_cipher_free(c->cipher);
		free(c);
	}
	return NULL;
}

static uint64_t tick(struct snap_frame_times *t, uint64_t since, uint64_t *acc)
{
	if (!t || !t->clock)
		return 0;
	uint64_t now = t->clock();
	if (acc)
		*acc += now - since;
	return now;
}

int snap_store_frame_seal(struct snap_frame_codec *c, const uint8_t image_id[SNAP_STORE_ID_SIZE],
			  const struct snap_store_rng *rng, struct snap_store_frame *f,
			  const uint8_t *raw, uint8_t *out, size_t *ret_len,
			  struct snap_frame_times *t)
{
	if (!c->deflate || f->raw_len == 0)
		return -EINVAL;
	uint8_t *payload = out + SNAP_STORE_FRAME_HEADER_SIZE;
	uint64_t c0 = tick(t, 0, NULL);
	uint32_t crc = snap_crc32(0, raw, f->raw_len);
	uint64_t c1 = tick(t, c0, t ? &t->crc_ns : NULL);
	size_t dlen = 0;
	/* keep the deflated body only when it shrinks */
	int r = snap_deflate_raw(c->deflate, raw, f->raw_len, payload, f->raw_len - 1, &dlen);
	uint64_t c2 = tick(t, c1, t ? &t->deflate_ns : NULL);
	uint32_t body;
	if (r == 0 && dlen > 0 && dlen < f->raw_len) {
		f->flags = SNAP_STORE_FRAME_DEFLATE;
		body = (uint32_t)dlen;
	} else if (r == 0 || r == -ENOBUFS) {
		f->flags = 0;
		body = f->raw_len;
		memcpy(payload, raw, f->raw_len);
	} else {
		return -EIO;
	}
	snap_put_le32(payload + body, crc);
	f->stored_len = body + SNAP_STORE_FRAME_TRAILER_SIZE;
	memset(f->digest, 0, sizeof(f->digest));
	if (c->keyed) {
		f->flags |= SNAP_STORE_FRAME_ENCRYPTED;
		r = snap_store_random(rng, "frame nonce", f->index, f->nonce, sizeof(f->nonce));
		if (r < 0)
			return r;
		uint8_t aad[SNAP_STORE_FRAME_AAD_SIZE];
		snap_store_frame_encode(f, out);
		snap_store_frame_aad(image_id, out, aad);
		r = snap_store_cipher_seal(c->cipher, f->nonce, aad, sizeof(aad), payload,
					   f->stored_len, payload + f->stored_len);
		if (r < 0)
			return r;
	}
	uint64_t c3 = tick(t, c2, t ? &t->seal_ns : NULL);
	r = snap_store_cipher_digest(c->cipher, payload, f->stored_len, f->digest);
	tick(t, c3, t ? &t->digest_ns : NULL);
	if (r < 0)
		return r;
	snap_store_frame_encode(f, out);
	*ret_len = (size_t)snap_store_frame_record_len(f);
	return 0;
}

int snap_store_frame_check_digest(struct snap_frame_codec *c, const uint8_t *rec,
				  const struct snap_store_frame *f, const char **ret_detail)
{
	uint8_t d[SNAP_STORE_DIGEST_SIZE];
	int r = snap_store_cipher_digest(c->cipher, rec + SNAP_STORE_FRAME_HEADER_SIZE,
					 f->stored_len, d);
	if (r < 0) {
		*ret_detail = "cannot compute the digest";
		return r;
	}
	if (!snap_store_ct_equal(d, f->digest, sizeof(d))) {
		*ret_detail = "digest mismatch (corrupt frame)";
		return -EBADMSG;
	}
	return 0;
}

int snap_store_frame_open(struct snap_frame_codec *c, const uint8_t image_id[SNAP_STORE_ID_SIZE],
			  uint8_t *rec, const struct snap_store_frame *f, uint8_t *dst,
			  const uint8_t **ret_raw, const char **ret_detail)
{
	uint8_t *payload = rec + SNAP_STORE_FRAME_HEADER_SIZE;
	/* the stored bytes first: this check needs no key */
	int r = snap_store_frame_check_digest(c, rec, f, ret_detail);
	if (r < 0)
		return r;
	if (f->stored_len < SNAP_STORE_FRAME_TRAILER_SIZE) {
		*ret_detail = "payload shorter than its CRC trailer (corrupt frame)";
		return -EBADMSG;
	}
	if (f->flags & SNAP_STORE_FRAME_ENCRYPTED) {
		if (!c->keyed) {
			*ret_detail = "the frame is encrypted and no key was given";
			return -ENOKEY;
		}
		uint8_t aad[SNAP_STORE_FRAME_AAD_SIZE];
		snap_store_frame_aad(image_id, rec, aad);
		r = snap_store_cipher_open(c->cipher, f->nonce, aad, sizeof(aad), payload,
					   f->stored_len, payload + f->stored_len);
		if (r == -EBADMSG) {
			*ret_detail =
			    "authentication failed (tampered frame, or a frame swapped in "
			    "from another image)";
			return r;
		}
		if (r < 0) {
			*ret_detail = "cannot decrypt";
			return r;
		}
	}
	uint32_t body = f->stored_len - SNAP_STORE_FRAME_TRAILER_SIZE;
	const uint8_t *raw = payload;
	if (f->flags & SNAP_STORE_FRAME_DEFLATE) {
		if (snap_inflate_raw(c->inflate, payload, body, dst, f->raw_len) < 0) {
			*ret_detail = "corrupt compressed data";
			return -EBADMSG;
		}
		raw = dst;
	} else if (body != f->raw_len) {
		*ret_detail = "stored body length differs from the raw length (corrupt frame)";
		return -EBADMSG;
	}
	if (snap_crc32(0, raw, f->raw_len) != snap_get_le32(payload + body)) {
		*ret_detail = "CRC mismatch of the restored data (corrupt frame)";
		return -EBADMSG;
	}
	*ret_raw = raw;
	return 0;
}
