/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store-format.h - encode and decode the records of a .bin store image (formats/STORE_FORMAT.md).
 * Pure code over memory buffers: no I/O, so every decoder can be fuzzed.
 *
 * Invariants:
 *  1. Every multi-byte integer on disk is little-endian; every fixed structure has a
 *     _Static_assert on its size in store-format.c.
 *  2. Decoders never trust a length: every count is checked against the bytes present before
 *     anything is allocated, and they return -EUCLEAN (corrupt), -EBADMSG (CRC mismatch) or
 *     -EOPNOTSUPP (unknown incompatible feature or critical field), never crash.
 *  3. Decoded objects own their memory; *_clear() frees it and leaves a zeroed object.
 *  4. META's fields (image, volume, partition) are declared once, in one table per record kind
 *     in store-format.c (key, type, offset); its encoder, decoder and destructor walk them.
 */
#ifndef SNAP_STORE_FORMAT_H
#define SNAP_STORE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapbundle.h"

#define SNAP_STORE_MAGIC "SNAPSTOR"
#define SNAP_STORE_FOOTER_MAGIC "SNAPFOOT"
#define SNAP_STORE_VERSION 2u
#define SNAP_STORE_HEADER_SIZE 128u
#define SNAP_STORE_FOOTER_SIZE 64u
#define SNAP_STORE_PREFIX_SIZE 16u
#define SNAP_STORE_FRAME_HEADER_SIZE 96u
#define SNAP_STORE_INDEX_FRAME_SIZE 64u
#define SNAP_STORE_INDEX_EXTENT_SIZE 24u
#define SNAP_STORE_TAG_SIZE 32u /* HMAC-SHA256 or SHA-256 after META and INDEX */
#define SNAP_STORE_GCM_TAG_SIZE 16u
#define SNAP_STORE_FRAME_TRAILER_SIZE 4u /* le32 CRC-32 of the raw data, ending the payload */
#define SNAP_STORE_NONCE_SIZE 12u
#define SNAP_STORE_DIGEST_SIZE 32u
#define SNAP_STORE_ID_SIZE 16u
#define SNAP_STORE_KEY_SIZE 32u
#define SNAP_STORE_BLOCK_SIZE 4096u
#define SNAP_STORE_MAX_FRAME (64u << 20) /* largest raw frame a reader must accept */

/*
 * On-disk layouts, declared once (e2fsprogs ext2_fs.h style). Integers are little-endian on
 * disk; the field types only say each field's width. Nothing reads these structs from memory
 * directly: the encoders and decoders of store-format.c address every field as
 * offsetof(struct, field) (SNAP_STORE_AT), so encode and decode cannot disagree, and the
 * _Static_asserts in store-format.c pin every offset to STORE_FORMAT.md.
 */
#define SNAP_STORE_AT(type, field) offsetof(struct type, field)

struct snap_store_disk_header { /* 128 bytes at offset 0 */
	uint8_t magic[8];	/* SNAP_STORE_MAGIC */
	uint32_t version;
	uint32_t header_size;	/* SNAP_STORE_HEADER_SIZE */
	uint32_t compat;
	uint32_t incompat;
	uint32_t ro_compat;
	uint32_t frame_size;
	uint8_t image_id[16];
	uint32_t volume_count;
	uint32_t block_size;
	uint8_t reserved[68];	/* zero */
	uint32_t crc;		/* CRC-32 of bytes 0..124 */
};

struct snap_store_disk_prefix { /* 16 bytes: every record starts with it */
	uint32_t type;
	uint32_t crc;		/* CRC-32 of the record with this field as zero */
	uint64_t length;	/* of the whole record */
};

struct snap_store_disk_frame { /* 96 bytes: a FRAME record's header */
	struct snap_store_disk_prefix prefix; /* crc over the 96 header bytes only */
	uint32_t volume;
	uint32_t flags;
	uint64_t index;
	uint64_t offset;
	uint32_t raw_len;
	uint32_t stored_len;
	uint8_t nonce[12];
	uint32_t reserved;	/* zero */
	uint8_t digest[32];	/* not part of the AAD */
};

struct snap_store_disk_footer { /* 64 bytes at the end of the image */
	uint8_t magic[8];	/* SNAP_STORE_FOOTER_MAGIC */
	uint64_t index_offset;
	uint64_t index_length;
	uint64_t image_size;
	uint8_t image_id[16];
	uint8_t reserved[12];	/* zero */
	uint32_t crc;		/* CRC-32 of bytes 0..60 */
};

struct snap_store_disk_extent { /* 24 bytes: an INDEX extent entry */
	uint64_t offset;
	uint64_t length;
	uint8_t kind;
	uint8_t layer;
	uint8_t reserved[2];	/* zero */
	uint32_t partition;
};

struct snap_store_disk_iframe { /* 64 bytes: an INDEX frame entry */
	uint64_t file_offset;
	uint32_t volume;
	uint32_t flags;
	uint64_t offset;
	uint32_t raw_len;
	uint32_t stored_len;
	uint8_t digest[32];
};
#define SNAP_STORE_MAX_RECORD (1ull << 40)

/* Feature words. A reader refuses an image with an incompat bit it does not know; it may read
 * but must not modify an image with an unknown ro_compat bit; it ignores unknown compat bits. */
#define SNAP_STORE_INCOMPAT_ENCRYPTED 0x1u /* frames sealed with AES-256-GCM, KEYS record */
#define SNAP_STORE_INCOMPAT_PARENT 0x2u	   /* reserved: incremental image over a parent */
#define SNAP_STORE_INCOMPAT_SUPPORTED (SNAP_STORE_INCOMPAT_ENCRYPTED)
#define SNAP_STORE_COMPAT_SIGNATURE 0x1u /* a SIGNATURE record between INDEX and footer */
#define SNAP_STORE_RO_COMPAT_SUPPORTED 0u

enum snap_store_record {
	SNAP_STORE_REC_KEYS = 1,
	SNAP_STORE_REC_META = 2,
	SNAP_STORE_REC_FRAME = 3,
	SNAP_STORE_REC_INDEX = 4,
	SNAP_STORE_REC_SIGNATURE = 5,
};

/* The label that starts a signed message (formats/STORE_FORMAT.md, "Signature"). */
#define SNAP_STORE_SIGNATURE_LABEL "snapbundle-store-v1 signature"

/* SIGNATURE payload (between prefix and tag): le32 spki_len, DER SubjectPublicKeyInfo of the
 * signer, le32 sig_len, signature. Pointers point into buf. */
struct snap_store_signature {
	const uint8_t *spki;
	size_t spki_len;
	const uint8_t *sig;
	size_t sig_len;
};
int snap_store_signature_encode(const struct snap_store_signature *s, uint8_t **ret,
				size_t *ret_len);
int snap_store_signature_decode(const uint8_t *buf, size_t len, struct snap_store_signature *ret);

/* Frame flags */
#define SNAP_STORE_FRAME_DEFLATE 0x1u	/* payload is raw deflate (RFC 1951) */
#define SNAP_STORE_FRAME_ENCRYPTED 0x2u /* payload is AES-256-GCM ciphertext + 16-byte tag */
#define SNAP_STORE_FRAME_KNOWN (SNAP_STORE_FRAME_DEFLATE | SNAP_STORE_FRAME_ENCRYPTED)

struct snap_store_header {
	uint32_t version;
	uint32_t compat, incompat, ro_compat;
	uint32_t frame_size;
	uint8_t image_id[SNAP_STORE_ID_SIZE];
	uint32_t volume_count;
	uint32_t block_size;
};

void snap_store_header_encode(const struct snap_store_header *h,
			      uint8_t out[SNAP_STORE_HEADER_SIZE]);
/* -EUCLEAN bad magic or field, -EBADMSG CRC, -EOPNOTSUPP version or incompat feature; detail
 * (may be NULL) gets a static text naming the problem. */
int snap_store_header_decode(const uint8_t *buf, size_t len, struct snap_store_header *ret,
			     const char **ret_detail);

/* Record prefix: le32 type, le32 crc, le64 length (whole record, prefix included). */
struct snap_store_prefix {
	uint32_t type;
	uint32_t crc;
	uint64_t length;
};
int snap_store_prefix_decode(const uint8_t *buf, size_t len, struct snap_store_prefix *ret);
/* Seals a non-frame record in place: writes the prefix (crc 0), the caller has put payload and
 * tag after it; then computes the CRC over the whole record and stores it. */
void snap_store_record_set_crc(uint8_t *rec, size_t len);
/* Checks the CRC of a whole non-frame record (and leaves rec untouched). */
bool snap_store_record_crc_ok(const uint8_t *rec, size_t len);
void snap_store_prefix_encode(uint8_t *out, uint32_t type, uint64_t length);
/* Builds a non-frame record (malloc'd into *ret): prefix, payload, then the tag (SHA-256, or
 * HMAC-SHA256 under mac_key) over the npre (at most 3) buffers pre and the record up to the
 * tag; then the CRC. 0, -ENOMEM, or a crypto error. */
int snap_store_build_record(uint32_t type, const uint8_t *payload, size_t len,
			    const uint8_t *mac_key, const void *const *pre, const size_t *pre_lens,
			    size_t npre, uint8_t **ret, size_t *ret_len);

struct snap_store_frame {
	uint32_t volume;
	uint32_t flags;
	uint64_t index;
	uint64_t offset;
	uint32_t raw_len;
	uint32_t stored_len; /* payload bytes: body and CRC trailer, GCM tag excluded */
	uint8_t nonce[SNAP_STORE_NONCE_SIZE];
	uint8_t digest[SNAP_STORE_DIGEST_SIZE];
};

/* Record length of a frame: header + payload + GCM tag when encrypted. */
uint64_t snap_store_frame_record_len(const struct snap_store_frame *f);
/* The file offset just past the frame record an index entry places. */
struct snap_store_index_frame;
uint64_t snap_store_index_frame_end(const struct snap_store_index_frame *e);
/* Header with its CRC. */
void snap_store_frame_encode(const struct snap_store_frame *f,
			     uint8_t out[SNAP_STORE_FRAME_HEADER_SIZE]);
/* The length rules of a frame: 1 <= raw_len <= max_raw; a DEFLATE body is shorter than raw_len,
 * a raw body is raw_len bytes; the payload is the body and the 4-byte CRC trailer. */
bool snap_store_frame_lengths_ok(uint32_t flags, uint32_t raw_len, uint32_t stored_len,
				 uint32_t max_raw);
/* The AAD of an encrypted frame: image_id || the frame header's first 64 bytes as written, with
 * its crc field as zero. The digest (bytes 64..95) is left out: it is a digest of the
 * ciphertext, so it can only be computed after the seal, and the tag covers the ciphertext. */
#define SNAP_STORE_FRAME_AAD_SIZE (SNAP_STORE_ID_SIZE + 64u)
void snap_store_frame_aad(const uint8_t image_id[SNAP_STORE_ID_SIZE],
			  const uint8_t header[SNAP_STORE_FRAME_HEADER_SIZE],
			  uint8_t out[SNAP_STORE_FRAME_AAD_SIZE]);
/* Checks type, CRC, flags, lengths against max_raw. */
int snap_store_frame_decode(const uint8_t *buf, size_t len, uint32_t max_raw,
			    struct snap_store_frame *ret, const char **ret_detail);

struct snap_store_footer {
	uint64_t index_offset;
	uint64_t index_length;
	uint64_t image_size;
	uint8_t image_id[SNAP_STORE_ID_SIZE];
};
void snap_store_footer_encode(const struct snap_store_footer *f,
			      uint8_t out[SNAP_STORE_FOOTER_SIZE]);
int snap_store_footer_decode(const uint8_t *buf, size_t len, struct snap_store_footer *ret,
			     const char **ret_detail);

/* KEYS record: how the data key is recovered. */
enum snap_store_keyslot_type {
	SNAP_STORE_SLOT_SCRYPT = 1,
	SNAP_STORE_SLOT_RSA_OAEP = 2,
};
#define SNAP_STORE_SCRYPT_SLOT_SIZE 108u
struct snap_store_keyslot {
	uint32_t type;
	/* scrypt */
	uint8_t salt[32];
	uint64_t n;
	uint32_t r, p;
	uint8_t nonce[SNAP_STORE_NONCE_SIZE];
	uint8_t wrapped[SNAP_STORE_KEY_SIZE];
	uint8_t tag[SNAP_STORE_GCM_TAG_SIZE];
	/* rsa-oaep */
	uint8_t key_id[32]; /* SHA-256 of the recipient's DER SubjectPublicKeyInfo */
	uint8_t *rsa;	    /* RSA-OAEP ciphertext */
	size_t rsa_len;
};
struct snap_store_keys {
	size_t nslots;
	struct snap_store_keyslot *slots;
};
/* Payload only (between prefix and end of record). */
int snap_store_keys_encode(const struct snap_store_keys *k, uint8_t **ret, size_t *ret_len);
int snap_store_keys_decode(const uint8_t *buf, size_t len, struct snap_store_keys *ret);
void snap_store_keys_clear(struct snap_store_keys *k);

/* META record: image metadata and the volume table. */
struct snap_store_partition {
	uint32_t number;
	uint64_t start, size;
	uint32_t bootable;
	char *type, *name, *uuid, *fs_type, *fs_label, *fs_uuid;
};
struct snap_store_volume {
	char *device;
	uint64_t size;
	uint32_t logical_sector, physical_sector;
	char *ptable_type, *ptable_id;
	size_t nparts;
	struct snap_store_partition *parts;
};
struct snap_store_strlist {
	size_t n;
	char **v;
};
struct snap_store_meta {
	char *name, *description, *arch, *boot_mode, *owner, *image_id;
	uint64_t creation_time, store_time;
	struct snap_store_strlist tags, bdm, s3;
	size_t nvolumes;
	struct snap_store_volume *volumes;
};
int snap_store_strlist_add(struct snap_store_strlist *l, const char *s);
/* Payload without the tag. */
int snap_store_meta_encode(const struct snap_store_meta *m, uint8_t **ret, size_t *ret_len);
int snap_store_meta_decode(const uint8_t *buf, size_t len, struct snap_store_meta *ret,
			   const char **ret_detail);
void snap_store_meta_clear(struct snap_store_meta *m);

/* INDEX record: where every frame is, the final extent maps, the volume digests. */
struct snap_store_index_frame {
	uint64_t file_offset;
	uint32_t volume, flags;
	uint64_t offset;
	uint32_t raw_len, stored_len;
	uint8_t digest[SNAP_STORE_DIGEST_SIZE];
};
struct snap_store_index_volume {
	uint64_t first_frame, nframes;
	uint8_t digest[SNAP_STORE_DIGEST_SIZE];
	size_t nextents;
	struct snap_extent *extents;
};
/* Frame entries kept elsewhere (a writer's table spilled to a file): n entries from first into
 * out; 0 or -errno. */
struct snap_store_frame_source {
	int (*read)(void *ctx, uint64_t first, size_t n, struct snap_store_index_frame *out);
	void *ctx;
};
struct snap_store_index {
	uint64_t meta_offset, meta_length;
	uint8_t meta_digest[SNAP_STORE_DIGEST_SIZE];
	uint32_t nvolumes;
	struct snap_store_index_volume *vols;
	uint64_t nframes;
	struct snap_store_index_frame *frames;
	/* the encoders only, when frames is NULL: where the entries are read from */
	const struct snap_store_frame_source *source;
};
/* Payload without the tag, in one malloc'd buffer (snap_store_index_stream's pieces). */
int snap_store_index_encode(const struct snap_store_index *ix, uint8_t **ret, size_t *ret_len);
/* A consumer of bytes in order: 0, or a -errno that stops the encoder and is returned. */
typedef int (*snap_store_emit_fn)(void *ctx, const void *buf, size_t len);
/* Bytes of the payload (without the tag). */
uint64_t snap_store_index_payload_len(const struct snap_store_index *ix);
/* The payload handed to emit in pieces of at most 256 KiB, staged in one buffer of that size:
 * the index is never copied whole. */
int snap_store_index_stream(const struct snap_store_index *ix, snap_store_emit_fn emit, void *ctx);
/* An INDEX record written piece by piece, byte for byte what snap_store_build_record makes of
 * snap_store_index_encode's payload. Its prefix carries the CRC of the whole record, which
 * depends on the tag at its end, so it takes two passes over ix: _seal computes the length,
 * the tag (HMAC-SHA256 under mac_key, or SHA-256 when NULL) and the CRC without output;
 * _stream then hands the record to emit: prefix, payload pieces, tag. ix must not change
 * between the two: ret_crc, when not NULL, gets the CRC of what _stream handed over, which
 * differs from seal->crc when it did. _digest: SHA-256 of the record, a pass of _stream (for a
 * signature). */
struct snap_store_record_seal {
	uint64_t length; /* of the whole record */
	uint32_t crc;
	uint8_t tag[SNAP_STORE_TAG_SIZE];
};
int snap_store_index_record_seal(const struct snap_store_index *ix, const uint8_t *mac_key,
				 struct snap_store_record_seal *ret);
int snap_store_index_record_stream(const struct snap_store_index *ix,
				   const struct snap_store_record_seal *seal,
				   snap_store_emit_fn emit, void *ctx, uint32_t *ret_crc);
int snap_store_index_record_digest(const struct snap_store_index *ix,
				   const struct snap_store_record_seal *seal,
				   uint8_t out[SNAP_STORE_DIGEST_SIZE]);
/* Also checks the structure: extents cover each volume exactly (sizes from vol_sizes when not
 * NULL), frames sorted by file offset, each volume's frames contiguous, sorted, inside its
 * DATA extents. */
int snap_store_index_decode(const uint8_t *buf, size_t len, const uint64_t *vol_sizes,
			    size_t nvol_sizes, struct snap_store_index *ret,
			    const char **ret_detail);
void snap_store_index_clear(struct snap_store_index *ix);

/* The volume digest: SHA-256 over "snapbundle-volume-v1", le32 volume, le64 size, each extent
 * (24-byte index form) and each frame's le64 offset, le32 raw_len, digest. */
int snap_store_volume_digest(uint32_t volume, uint64_t size, const struct snap_extent *extents,
			     size_t nextents, const struct snap_store_index_frame *frames,
			     size_t nframes, uint8_t out[SNAP_STORE_DIGEST_SIZE]);
/* The same over the entries [first, first + nframes) of a source. */
int snap_store_volume_digest_source(uint32_t volume, uint64_t size,
				    const struct snap_extent *extents, size_t nextents,
				    const struct snap_store_frame_source *src, uint64_t first,
				    uint64_t nframes, uint8_t out[SNAP_STORE_DIGEST_SIZE]);

/* Little-endian helpers shared with the engine. */
static inline void snap_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}
static inline void snap_put_le64(uint8_t *p, uint64_t v)
{
	snap_put_le32(p, (uint32_t)v);
	snap_put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t snap_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t snap_get_le64(const uint8_t *p)
{
	return (uint64_t)snap_get_le32(p) | (uint64_t)snap_get_le32(p + 4) << 32;
}

#endif
