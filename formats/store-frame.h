/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store-frame.h - sealing and opening one frame of a .bin store image (formats/STORE_FORMAT.md,
 * "Frames"), over memory only: the engine reads and writes, this file encodes and checks.
 *
 * Invariants:
 *  1. A frame's payload is its body (raw DEFLATE when that is shorter than the raw data,
 *     otherwise the raw data itself) and a le32 CRC-32 of the raw data; when encrypted the
 *     payload is AES-256-GCM ciphertext (AAD: snap_store_frame_aad) followed by the 16-byte
 *     tag. The digest covers the payload as stored (tag excluded).
 *  2. A codec (struct snap_frame_codec) belongs to one thread and holds everything a frame
 *     needs (ISA-L deflate state and level buffer, inflate state, cipher): made once per
 *     worker, so sealing and opening do not allocate.
 *  3. Opening checks in this order: digest of the stored bytes (no key needed), GCM tag, inflate
 *     to exactly raw_len, CRC-32 of the raw data. Nothing is returned unchecked.
 */
#ifndef SNAP_STORE_FRAME_H
#define SNAP_STORE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "store-crypto.h"
#include "store-format.h"

struct snap_frame_codec;

/* level: the deflate level (0-3) for sealing, or -1 for a codec that only opens. keys: the
 * frame keys, or NULL (frames neither sealed with GCM nor opened). -EINVAL, -ENOMEM, -EIO. */
int snap_frame_codec_new(int level, const struct snap_store_keyset *keys,
			 struct snap_frame_codec **ret);
struct snap_frame_codec *snap_frame_codec_free(struct snap_frame_codec *c);

/* Thread CPU spent per step of snap_store_frame_seal, accumulated when clock is set. */
struct snap_frame_times {
	uint64_t (*clock)(void); /* ns, e.g. the thread's CPU clock */
	uint64_t crc_ns, deflate_ns, seal_ns, digest_ns;
};

/* Out bytes a frame of raw_len bytes may need: header, payload, trailer and tag. */
#define SNAP_STORE_FRAME_MAX_RECORD(raw_len)                                                       \
	((size_t)(raw_len) + SNAP_STORE_FRAME_HEADER_SIZE + SNAP_STORE_FRAME_TRAILER_SIZE +        \
	 SNAP_STORE_GCM_TAG_SIZE)

/* Seals raw (f->raw_len bytes, 1 <= raw_len) into the frame record out (header, payload, tag;
 * SNAP_STORE_FRAME_MAX_RECORD(raw_len) bytes suffice). The caller sets f->volume, index, offset
 * and raw_len; this sets flags, stored_len, nonce and digest and writes the header. When the
 * codec has keys the frame is encrypted: its nonce comes from rng ("frame nonce", f->index) and
 * image_id goes into the AAD. *ret_len: the record's length. times may be NULL.
 * 0, -EINVAL (a codec without a deflate level), -EIO, or a crypto error. */
int snap_store_frame_seal(struct snap_frame_codec *c, const uint8_t image_id[SNAP_STORE_ID_SIZE],
			  const struct snap_store_rng *rng, struct snap_store_frame *f,
			  const uint8_t *raw, uint8_t *out, size_t *ret_len,
			  struct snap_frame_times *times);

/* Checks the digest of a frame record's stored bytes (rec: the whole record, f: its decoded
 * header). Needs no key. 0; -EBADMSG or another error with *ret_detail saying what. */
int snap_store_frame_check_digest(struct snap_frame_codec *c, const uint8_t *rec,
				  const struct snap_store_frame *f, const char **ret_detail);

/* Opens a frame record rec (its header decoded into f, e.g. by snap_store_frame_decode): checks
 * the digest, decrypts in place (the codec needs the keys when the frame is encrypted),
 * inflates into dst (raw_len bytes) and checks the CRC-32. *ret_raw: the raw data, at dst when
 * the frame was deflated, inside rec when it was stored raw (no copy). 0; -EBADMSG or another
 * error with *ret_detail saying what; -ENOKEY for an encrypted frame and a codec without keys. */
int snap_store_frame_open(struct snap_frame_codec *c, const uint8_t image_id[SNAP_STORE_ID_SIZE],
			  uint8_t *rec, const struct snap_store_frame *f, uint8_t *dst,
			  const uint8_t **ret_raw, const char **ret_detail);

#endif
