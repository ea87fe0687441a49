/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store-internal.h - what store.c shares with its helpers: the frame table (store-table.c), the
 * job's context and the stages that store-records.c (the image's head and tail) and store-s3.c
 * (an S3 object's setup, resume and end) run for it.
 *
 * Invariants:
 *  1. The table holds one struct snap_store_index_frame per frame, in frame order, entry k at
 *     position k. Up to spill_at entries it is one array in memory; past it the entries go to
 *     an unlinked temporary file (O_TMPFILE) in blocks of STORE_TABLE_BLOCK, and memory holds
 *     one block being filled and one block read back: 2 x 256 KiB, whatever the count.
 *  2. One thread at a time uses a table (the sink while the pipeline runs, the run thread
 *     otherwise); a pointer from store_table_get is valid until the next call on the table.
 *  3. The bytes of the image do not depend on whether or where the table spilled.
 *  4. A store's context (struct store_ctx) is one job's. The stages of store-records.c and
 *     store-s3.c run on the job's run thread outside the data stage's pipeline (store.c
 *     invariant 8; a replay runs a pipeline of its own the same way), but for the transport's
 *     part acknowledgements (any thread), which touch only the checkpoint.
 */
#ifndef SNAP_STORE_INTERNAL_H
#define SNAP_STORE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "disk-internal.h"
#include "store-checkpoint.h"
#include "store-crypto.h"
#include "store-format.h"

#define STORE_TABLE_BLOCK 4096u /* entries: 256 KiB */
/* Entries held in memory before the table spills: 64 MiB, 4 TiB of DATA at 4 MiB frames. */
#define STORE_TABLE_SPILL_DEFAULT (1ull << 20)

/* The threshold: SNAPBUNDLE_STORE_SPILL_FRAMES from the environment (a count of entries, for
 * tests; 0 spills from the first entry), else STORE_TABLE_SPILL_DEFAULT. Read here only. */
uint64_t store_table_spill_at(void);

struct store_table;
/* dir: where the temporary file goes when the table spills (the output's directory), NULL or
 * refused: $TMPDIR, then /var/tmp. */
int store_table_new(const char *dir, uint64_t spill_at, struct store_table **ret);
struct store_table *store_table_free(struct store_table *t);
uint64_t store_table_count(const struct store_table *t);
bool store_table_spilled(const struct store_table *t);
/* Entry k: k < count replaces it, k == count appends. */
int store_table_put(struct store_table *t, uint64_t k, const struct snap_store_index_frame *e);
/* Entry k < count. */
int store_table_get(struct store_table *t, uint64_t k, const struct snap_store_index_frame **ret);
/* Entries [first, first + n), all below count, into out. */
int store_table_read(struct store_table *t, uint64_t first, size_t n,
		     struct snap_store_index_frame *out);

/* ---- the job (store.c) ---- */

/* Where a store's time went (SNAP_RESULT_TIMINGS, docs/bench-json.md): work stages are thread
 * CPU seconds summed over the threads that did them, waits and the totals wall seconds. */
struct store_timings {
	double prepare, read_wait, fill, slot_wait;	/* run thread */
	double worker_idle, crc, deflate, seal, digest; /* workers, summed */
	double writer_wait, write, finish, total, cpu;	/* writer, then the whole job */
};

struct store_vol {
	const char *path;
	struct snap_source s; /* src, layout and reader below are its */
	char *device;
	struct snap_src *src;
	struct snap_layout *layout;
	struct snap_reader *reader;
	uint64_t first_frame, nframes;
};

struct store_ctx {
	struct snap_job *job;
	struct store_vol *vols;
	size_t nvols;
	uint32_t frame_size;
	int level;
	bool encrypted;
	struct snap_store_rng rng;
	struct snap_store_rng nonce_rng; /* the frames' nonces (store-s3.c invariant 2) */
	uint8_t image_id[SNAP_STORE_ID_SIZE];
	uint8_t dk[SNAP_STORE_KEY_SIZE];
	struct snap_store_keyset keys;

	/* output */
	struct snap_output *out;
	struct snap_output_seq *seq; /* writes out from start to end (store.c invariant 9) */
	const char *path;
	uint64_t written;
	uint64_t now; /* the default creation and store time, read once */

	/* an S3 object (store-s3.c invariant 1) */
	struct snap_s3_client *s3c;
	char *url;	 /* s3://BUCKET/KEY written (the -o given may name a prefix) */
	char *ckpt_path; /* the checkpoint of the -o given (store-checkpoint.h) */
	uint64_t part_size;
	struct store_ckpt *_Atomic ckpt;
	bool keep_upload; /* a failure keeps the upload and the checkpoint */
	/* --resume (store-s3.c invariant 2) */
	bool resuming;
	struct store_ckpt_state rs;
	uint64_t skip_to;    /* image bytes below were uploaded: not written again */
	uint64_t nverify;    /* frames below this number are compared with the checkpoint's */
	uint32_t resume_vol; /* reading starts in this volume ... */
	uint64_t resume_off; /* ... at this offset (a frame_size multiple) */
	/* frames below nverify must equal these: a resume's checkpoint; NULL: the table's own
	 * entries, which a replay compares in place */
	const struct snap_store_index_frame *vframes;
	bool replaying; /* the end's replay of a streamed part (store-s3.c invariant 3) */

	/* the parts of the image the index and footer need */
	uint8_t header[SNAP_STORE_HEADER_SIZE];
	uint64_t meta_offset, meta_length;
	uint8_t meta_digest[SNAP_STORE_DIGEST_SIZE];
	uint8_t *keys_rec, *meta_rec; /* kept for the signature */
	size_t keys_len, meta_len;
	struct store_table *table; /* the frames' index entries (store-internal.h) */
	struct snap_store_frame_source table_src;
	uint64_t niframes; /* entries in use: a replay reuses the table's in place */

	/* pipeline */
	struct snap_pipeline *pipe;
	struct slot *slots;
	unsigned nslots;
	uint64_t next_frame;
	_Atomic uint64_t pub_written; /* s->written as of the sink's last slot */
	struct store_timings t; /* run thread's and sink's fields; workers' merged at the end */
};

/* store.c: appends; -errno on failure, s->written counts what went out. No job calls: the sink
 * uses it too. A resume drops what the kept parts hold already (store-s3.c invariant 2). */
int store_write_out(struct store_ctx *s, const void *buf, size_t len);
/* store.c: the run thread's writes (head and tail); a failure fails the job. */
int store_write_all(struct store_ctx *s, const void *buf, size_t len);
/* store.c: the table, made at its first entry (s->table). */
int store_table(struct store_ctx *s);
/* store.c: entry k of the table (k < s->niframes or, in a replay, below nverify). */
int store_iframe_get(struct store_ctx *s, uint64_t k, const struct snap_store_index_frame **ret);
/* store.c: the pipeline started (the first run's slots again when s->slots is set), stopped
 * (joined, its waits kept), and chunks [0, n) of volume vi read (its reader started on them),
 * cut into frames and submitted to it in order; fill_cpu, when not NULL, adds the run thread's
 * CPU time of the cutting. */
int store_start_workers(struct store_ctx *s);
void store_stop_workers(struct store_ctx *s);
int store_read_chunks(struct store_ctx *s, uint32_t vi, const struct snap_range *chunks, size_t n,
		      double *fill_cpu);

/* ---- the image's head and tail (store-records.c) ---- */

/* A key slot wrapping dk for the recipient whose certificate is the file path (what names it
 * in a failed read's message, or NULL); a failure fails the job. Also rekey.c's. */
int store_recipient_slot(struct snap_job *job, const char *path, const char *what,
			 const uint8_t dk[SNAP_STORE_KEY_SIZE], struct snap_store_keyslot *ret);
/* The AMI id the image and its S3 object are named after: SNAP_SPARAM_IMAGE_ID, else ami- and
 * 17 hex digits of the image id. */
const char *store_ami_id(const struct store_ctx *s, char buf[40]);
/* The META record's contents from the job's parameters and the volumes. */
int store_meta(struct store_ctx *s, struct snap_store_meta *m);
/* Keys, header, KEYS and META written; the records kept for the tail (s->keys_rec, meta_rec). */
int store_write_head(struct store_ctx *s);
/* INDEX, SIGNATURE and footer built and written; an S3 object told its size first. */
int store_write_tail(struct store_ctx *s);

/* ---- an S3 object (store-s3.c) ---- */

/* Before the volumes: the checkpoint's name for an s3:// output, and --resume's loading. */
int store_prepare_s3(struct store_ctx *s);
/* --resume, once the volumes are open: the same sources, the kept parts, the restart. */
int store_resume_plan(struct store_ctx *s);
/* --resume found no part kept: the upload is aborted and the store starts over. */
int store_resume_fresh(struct store_ctx *s);
/* The upload created, or a resume's continued, as the output s->out. */
int store_create_s3(struct store_ctx *s, unsigned flags);
/* A resume's extent map and volume frame ranges below the restart, instead of the head. */
int store_resume_marks(struct store_ctx *s);
/* The checkpoint, once the head is written. */
int store_ckpt_start(struct store_ctx *s);
/* The object's size, known now: a streamed part begun past the end is produced again. */
int store_end_s3(struct store_ctx *s, uint64_t size);
/* A resume's tags, set on the completed object. */
int store_resume_tags(struct store_ctx *s);
/* An upload not kept, aborted through a client of its own. */
void store_abort_upload(struct store_ctx *s, const char *upload_id);

#endif
