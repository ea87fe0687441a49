/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bundle-output.h - the classic bundle job's outputs (bundle-output.c): where the bundle goes
 * (a directory or s3://BUCKET/PREFIX/), the AES-128-CBC ciphertext cut into parts and written
 * through an output sequence, the manifest, their commit, and the parts already there.
 */
#ifndef SNAP_BUNDLE_OUTPUT_H
#define SNAP_BUNDLE_OUTPUT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "bundle-manifest.h"
#include "job-internal.h"
#include "s3.h"

struct snap_job;
struct snap_pipeline;
struct snap_output_seq;

#define SNAP_BUNDLE_CANCELLED_MSG "cancelled; removed what was written"

struct snap_bundle_output {
	struct snap_job *job;
	struct snap_pipeline *pipe; /* where the sink's failures go, once the data moves */

	/* where: a directory, or "s3://BUCKET/PREFIX" without the '/' (bundle-output.c invariant 3)
	 */
	char *dest;
	const char *name; /* the bundle's */
	char *manifest_path;
	bool force;
	uint64_t part_size;

	/* an S3 destination (bundle-output.c invariant 3) */
	struct snap_s3_client *s3; /* the job's (job-internal.h invariant 5) */
	struct snap_s3_where w;	   /* snap_s3_where_parse's of the destination */
	struct snap_s3_put_options put;
	uint64_t name_count; /* the part count the part keys are padded for */
	size_t window;	     /* parts held uncommitted at most (commit_done_parts) */
	size_t ncommitted;   /* parts[0, ncommitted) committed by then */
	bool committing;     /* the manifest's PUT may have started */

	/* the writer: the pipeline's sink only (bundle-output.c invariant 2) */
	struct snap_bundle_key key; /* the parts' AES-128 key and IV, fresh for each bundle */
	EVP_CIPHER_CTX *aes;
	EVP_MD_CTX *part_sha1;
	uint64_t fed, produced; /* bytes into AES-128-CBC and ciphertext out of it */
	struct snap_output_seq *oseq;
	bool part_open;
	uint64_t part_left;
	uint64_t gz_len; /* gzip bytes put */
	struct snap_bundle_part *parts;
	size_t nparts, parts_cap;
	_Atomic uint64_t written;
	uint64_t aes_ns, part_sha1_ns; /* the sink's thread CPU time in each */

	struct snap_output *manifest;
};

/* Where the bundle goes (job, dest and name set): a directory checked, or an S3 destination
 * parsed and the job's client made; then the manifest's path. */
int snap_bundle_output_where(struct snap_bundle_output *o);
/* An S3 destination's part keys are padded for part_bound parts; the window of parts held. */
void snap_bundle_output_s3_window(struct snap_bundle_output *o, uint64_t part_bound);
/* An existing bundle of the same name: its manifest or any of its parts (-EEXIST); with
 * force, an S3 manifest deleted before a part is replaced (invariant 3). */
int snap_bundle_output_check_existing(struct snap_bundle_output *o);
/* A fresh key, the cipher keyed with it, the parts' hash and the output sequence. */
int snap_bundle_output_alloc(struct snap_bundle_output *o);

/* gzip bytes through AES-128-CBC into the parts (the sink). */
int snap_bundle_output_put(struct snap_bundle_output *o, const uint8_t *p, size_t len);
/* The AES padding and the last part closed (the sink, after the last bytes). */
int snap_bundle_output_finish(struct snap_bundle_output *o);
/* The output sequence's failure recorded on the pipeline. */
int snap_bundle_output_seq_failed(struct snap_bundle_output *o, int r);

/* After the data: the parts' final names (a directory's are padded to the count found). */
int snap_bundle_output_name_parts(struct snap_bundle_output *o);
/* The manifest's document doc[0, len) written to its temporary file or held for its PUT. */
int snap_bundle_output_manifest(struct snap_bundle_output *o, const char *doc, size_t len);
/* Parts, then the manifest, into their final names; src is the source, never replaced. */
int snap_bundle_output_commit(struct snap_bundle_output *o, const struct stat *src);
/* After a failure or a cancel: every output removed. */
void snap_bundle_output_remove(struct snap_bundle_output *o);
void snap_bundle_output_clear(struct snap_bundle_output *o);

#endif
