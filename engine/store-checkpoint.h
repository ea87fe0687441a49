/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store-checkpoint.h - what `store -o s3://...` keeps so that `--resume` can continue a multipart
 * upload that a failure, a signal or a killed process left behind (invariants in
 * store-checkpoint.c).
 */
#ifndef SNAP_STORE_CHECKPOINT_H
#define SNAP_STORE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "s3.h"
#include "store-format.h"

/* A source volume as the store saw it: a resume refuses a source that changed. */
struct store_ckpt_volume {
	char *path;
	uint64_t size;
	int64_t mtime_ns; /* regular files; 0 for block devices */
};

/* The checkpoint as read back (store_ckpt_load), or as a new store starts it. */
struct store_ckpt_state {
	char *url, *upload_id;
	uint64_t part_size;
	uint32_t frame_size;
	int level;
	uint64_t nonce_seed; /* the frames' nonces derive from it (store-s3.c invariant 2) */
	struct store_ckpt_volume *vols;
	size_t nvols;
	uint8_t *head;	 /* the image's first head_len bytes: header, KEYS (the wrapped data key) */
	size_t head_len; /* and META, which ends it */
	uint64_t meta_offset, meta_length;
	struct snap_s3_part *parts; /* acknowledged, in any order; part_number from 1 */
	size_t nparts;
	uint64_t *part_ends; /* the image offset where each part of parts[] ends */
	struct snap_store_index_frame *frames; /* every frame sunk, in order (index = position) */
	uint64_t nframes;
};
void store_ckpt_state_clear(struct store_ckpt_state *st);

/* $XDG_STATE_HOME/snapbundle/store-HASH.checkpoint (else ~/.local/state/snapbundle/): HASH is
 * the SHA-256 of the object's URL, in hex, cut to 24 digits. */
int store_ckpt_path(const char *url, char **ret);

/* An open checkpoint, appended to as parts and frames are done. */
struct store_ckpt;
/* Writes st's fixed part, its parts and its frames to a new file replacing path (temporary name,
 * renamed), and keeps it open for appending. */
int store_ckpt_create(const char *path, const struct store_ckpt_state *st, struct store_ckpt **ret,
		      char **ret_detail);
/* From any thread (the transport's part callback). Failures are logged, not returned: the
 * store goes on, and a resume only goes as far as the checkpoint got. */
void store_ckpt_part(struct store_ckpt *ck, uint32_t part_number, const char *etag, uint64_t end);
void store_ckpt_frame(struct store_ckpt *ck, const struct snap_store_index_frame *f);
/* Closes; with remove, deletes the file (the store completed, or its upload was aborted). */
struct store_ckpt *store_ckpt_close(struct store_ckpt *ck, int remove);
const char *store_ckpt_file(const struct store_ckpt *ck);

/* Reads path: -ENOENT when there is none, -EUCLEAN (with a detail) when it does not parse. A
 * line cut short by a killed process (no newline) is ignored. */
int store_ckpt_load(const char *path, struct store_ckpt_state *ret, char **ret_detail);

#endif
