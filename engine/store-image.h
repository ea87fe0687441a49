/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store-image.h - the reader of .bin store images shared by restore.c, rekey.c and the public
 * snap_store_image_* API: the head, the tail and the keys (invariants in store-image.c); a
 * selection and the frame records it reads (store-image-data.c).
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
	/* The data key unlock recovered and the passphrase slot it opened (-1: a recipient's),
	 * kept for rekey, which wraps the same key in new slots; cleansed at free. */
	uint8_t dk[SNAP_STORE_KEY_SIZE];
	int dk_scrypt_slot;
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

	/* sequential reading (store-image-data.c invariant 2): the frames as they arrived, the
	 * end of the last one, the prefix of the INDEX record that ended them */
	struct snap_store_index_frame *seen;
	uint64_t nseen, cap_seen;
	uint32_t seq_vol;
	uint64_t seq_end;
	uint8_t index_prefix[SNAP_STORE_PREFIX_SIZE];
};

/* What a job reads of one volume: whether it is selected, and the byte range of it. */
struct store_image_sel {
	bool selected;
	uint64_t lo, hi;
};

/* An S3 object (s3://BUCKET/KEY) through the client's reader (s3/s3.h R1-R3): seekable, every
 * read a ranged GET of the object as it was when opened (-ESTALE once it was replaced). Reads
 * the head like store_image_open_fd. The client must outlive the image. */
int store_image_open_s3(struct snap_store_image *img, struct snap_s3_client *c, const char *url);
/* The byte ranges about to be read, sorted and disjoint: an S3 image fetches only those
 * (snap_s3_reader_plan); a no-op for a file. */
int store_image_plan(struct snap_store_image *img, const uint64_t (*ranges)[2], size_t n);
/* A job's input: "-" (standard input, read in order), an s3:// URL through the job's client,
 * or a file; reads the head like store_image_open_fd. */
int store_image_open_input(struct snap_store_image *img, struct snap_job *job, const char *in);
/* Reads header, KEYS and META from fd at its current position (a pipe works). */
int store_image_open_fd(struct snap_store_image *img, int fd, const char *path, bool own_fd);
/* Seekable inputs: footer and INDEX; checks structure, metadata binding, volume digests. */
/* Decodes META (idempotent); before the tag was checked only for display, or to verify an
 * encrypted image's stored bytes without its key (SNAP_PARAM_WITHOUT_KEY). */
int store_image_decode_meta(struct snap_store_image *img);
int store_image_load_index(struct snap_store_image *img);
/* Takes ownership of an INDEX record read at file offset at; checks its prefix and CRC first. */
int store_image_set_index(struct snap_store_image *img, uint8_t *rec, size_t len, uint64_t at);
/* Takes ownership of a SIGNATURE record (after the INDEX was set): CRC, tag, signature. */
int store_image_set_signature(struct snap_store_image *img, uint8_t *rec, size_t len);
/* Requires a valid signature by the key in the PEM file (certificate, public or private key). */
int store_image_check_signer(struct snap_store_image *img, const char *pem_path);
int store_image_read(struct snap_store_image *img, void *buf, size_t len, const char *what);
/* The rest of a record of len bytes whose prefix pre was just read: *ret (free it) holds it all. */
int store_image_read_rest(struct snap_store_image *img, const uint8_t *pre, size_t len,
			  const char *what, uint8_t **ret);
int store_image_pread(struct snap_store_image *img, void *buf, size_t len, uint64_t off,
		      const char *what);
/* Records a failure (first one wins); returns err (-EIO for err >= 0). */
int store_image_fail(struct snap_store_image *img, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- store-image-data.c ---- */

/* Resolves a selection into sel (one entry per volume): every volume (volume NULL), or the one
 * whose device name, or its last component, is volume; in it a partition (part > 0) or the
 * byte range [roff, roff + rlen) (either >= 0). */
int store_image_select(struct snap_store_image *img, const char *volume, int64_t part, int64_t roff,
		       int64_t rlen, struct store_image_sel *sel);
/* The bytes of [off, off + len) of a volume inside its selected range, from *ret_at on. */
uint64_t store_image_sel_clip(const struct store_image_sel *s, uint64_t off, uint64_t len,
			      uint64_t *ret_at);
/* Whether a reader of sel reads frame e (all: every volume's frames, a verify). */
bool store_image_frame_wanted(const struct store_image_sel *sel, bool all,
			      const struct snap_store_index_frame *e);
/* The bytes read once every wanted frame is in: those read so far and the frames' records. */
uint64_t store_image_sel_bytes(const struct snap_store_image *img,
			       const struct store_image_sel *sel, bool all);
/* Tells an S3 image's reader the file ranges of the wanted frames, adjacent ones merged (a
 * no-op for a file). */
int store_image_plan_sel(struct snap_store_image *img, const struct store_image_sel *sel, bool all);
/* The longest frame record of the image: the size of the buffers the next two fill. */
size_t store_image_record_max(const struct snap_store_image *img);
/* Random access: frame k's record into rec, its header decoded into f and matched to the index. */
int store_image_read_frame(struct snap_store_image *img, uint64_t k, uint8_t *rec,
			   struct snap_store_frame *f);
/* Sequential: the next frame's record into rec, its header decoded into f and checked against
 * the sequence: 1; 0 when the INDEX record began instead (store_image_read_tail reads on). */
int store_image_next_frame(struct snap_store_image *img, uint8_t *rec, struct snap_store_frame *f);
/* Sequential: the rest of the INDEX, checked against the frames read, the signature, the
 * footer, and the end of the input. */
int store_image_read_tail(struct snap_store_image *img);

#endif
