/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store-image.h - the reader of .bin store images shared by restore.c and the public
 * snap_store_image_* API (invariants in store-image.c).
 */
#ifndef SNAP_STORE_IMAGE_H
#define SNAP_STORE_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3.h"
#include "snapbundle.h"
#include "store-crypto.h"
#include "store-format.h"

struct snap_store_image {
	int fd;
	struct snap_s3_reader *s3; /* an s3:// image: read through it instead of fd */
	bool own_fd, seekable;
	uint64_t pos;	    /* sequential read position */
	uint64_t file_size; /* seekable inputs */
	uint64_t bytes_read; /* bytes of the image read so far, both paths */
	char *path;
	char *error;
	int errcode;

	uint8_t header_raw[SNAP_STORE_HEADER_SIZE];
	struct snap_store_header hdr;
	uint8_t *keys_rec;
	size_t keys_len;
	struct snap_store_keys keys;
	uint64_t meta_offset;
	uint8_t *meta_rec;
	size_t meta_len;
	struct snap_store_meta meta;

	bool unlocked;
	struct snap_store_keyset ks;
	bool meta_authenticated, index_authenticated, meta_decoded;

	uint8_t *index_rec;
	size_t index_len;
	uint64_t index_offset;
	struct snap_store_index ix;
	struct snap_store_footer ft;

	uint8_t *sig_rec; /* SIGNATURE record, verified */
	size_t sig_len;
	struct snap_store_signature sig;
	bool signature_valid;
	char signer_hex[2 * SNAP_STORE_DIGEST_SIZE + 1];

	char uuid_hex[2 * SNAP_STORE_ID_SIZE + 1];
	char *vol_digest_hex;
};

/* An S3 object (s3://BUCKET/KEY) through the client's reader (s3/s3.h R1-R3): seekable, every
 * read a ranged GET of the object as it was when opened (-ESTALE once it was replaced). Reads
 * the head like store_image_open_fd. The client must outlive the image. */
int store_image_open_s3(struct snap_store_image *img, struct snap_s3_client *c, const char *url);
/* The byte ranges about to be read, sorted and disjoint: an S3 image fetches only those
 * (snap_s3_reader_plan); a no-op for a file. */
int store_image_plan(struct snap_store_image *img, const uint64_t (*ranges)[2], size_t n);
/* Bytes fetched from S3 so far (0 for a file). */
uint64_t store_image_fetched(const struct snap_store_image *img);
/* Reads header, KEYS and META from fd at its current position (a pipe works). */
int store_image_open_fd(struct snap_store_image *img, int fd, const char *path, bool own_fd);
/* Seekable inputs: footer and INDEX; checks structure, metadata binding, volume digests. */
/* Decodes META (idempotent); before the tag was checked only for display, or to verify an
 * encrypted image's stored bytes without its key (SNAP_PARAM_WITHOUT_KEY). */
int store_image_decode_meta(struct snap_store_image *img);
int store_image_load_index(struct snap_store_image *img);
/* Takes ownership of an INDEX record read at file offset at (CRC already checked). */
int store_image_set_index(struct snap_store_image *img, uint8_t *rec, size_t len, uint64_t at);
/* Takes ownership of a SIGNATURE record (after the INDEX was set): CRC, tag, signature. */
int store_image_set_signature(struct snap_store_image *img, uint8_t *rec, size_t len);
/* Requires a valid signature by the key in the PEM file (certificate, public or private key). */
int store_image_check_signer(struct snap_store_image *img, const char *pem_path);
int store_image_read(struct snap_store_image *img, void *buf, size_t len, const char *what);
int store_image_pread(struct snap_store_image *img, void *buf, size_t len, uint64_t off,
		      const char *what);
/* Records a failure (first one wins). */
int store_image_fail(struct snap_store_image *img, int err, const char *what);

#endif
