/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bundle-parts.h - a classic bundle's parts as a source: where the bytes of a bundle come from
 * (a directory, or an S3 bucket and prefix), found, sized, read whole in index order and checked
 * part by part, with the CBC chaining of the ciphertext across parts. The jobs that read a
 * bundle (unbundle.c) read it through this, as they write through the output layer (output.h).
 *
 * Invariants:
 *  1. Every part is found and sized before anything is read (snap_bundle_parts_open): a
 *     missing part, one that is not a regular file, an empty one or one over MAX_PART bytes is
 *     named up front, as "part I (PATH)", where PATH is the file or the s3:// URL.
 *  2. Parts are read in index order, each whole into one buffer (snap_bundle_parts_read); a
 *     part that changed since it was sized is caught: one that grew past its buffer here, one
 *     of another size or content by its digest (snap_bundle_parts_check), by the sizes' sum
 *     against the manifest's bundled_size (snap_bundle_parts_total) or by the chaining.
 *  3. Parts in S3 (s3://BUCKET/KEY): the manifest is fetched whole (at most MAX_MANIFEST_FILE
 *     bytes, snap_bundle_manifest_fetch), one listing names a missing part up front
 *     (stat_parts_s3), and the reading thread keeps up to `ahead` whole-part GETs in flight
 *     (fetch_ahead: the parts after the one it waits for, within S3_AHEAD_BUDGET bytes and the
 *     client's connections); a fetched body becomes the part's buffer (no copy), so the digest
 *     check before any byte of it is decrypted or inflated holds for it unchanged. A part
 *     changed in the bucket fails its digest; one replaced by a shorter object fails it too
 *     (and is called truncated when it is shorter than part 0); one deleted after the listing
 *     fails its GET, named.
 *  4. The chaining (chain_part, only when opened with an IV) uses the ciphertext only: each
 *     part gets the CBC IV of its body and the ciphertext block straddling the part before, if
 *     any (parts of a size that is not a multiple of 16 are legal, if unusual); the bytes after
 *     its last whole block wait for the next part. A worker can then decrypt any part alone.
 *  5. The source is the reading thread's (open, read, free); snap_bundle_parts_check may run on
 *     any thread for a part already read. A failure while reading or checking is recorded on
 *     the pipeline given (its first failure wins), one while opening on the job.
 *  6. part_sizes[i] holds what open sized, then what read read: the reading thread writes it
 *     before it hands the part on, so a worker checking part i (or comparing with part 0, read
 *     before it) reads a settled value.
 *  7. Parts in S3: gets[i] is started by fetch_ahead (in index order, next_get the first not
 *     started) and taken (set to NULL) by read_part_s3, which waits for it; whatever is still
 *     in flight is cancelled by snap_bundle_parts_free.
 *  8. The chaining state (prev: the last ciphertext block, carry: the bytes after it) is the
 *     reading thread's alone; prev starts as the manifest's IV.
 */
#ifndef SNAP_BUNDLE_PARTS_H
#define SNAP_BUNDLE_PARTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "job-internal.h"
#include "manifest-read.h"
#include "pipeline.h"
#include "s3.h"

#define MAX_PART (256u << 20) /* ec2-bundle-image writes 10 MiB parts */

/* One part as read: its ciphertext, then (after the caller decrypts it) its plaintext. */
struct snap_bundle_part_buf {
	uint8_t *data;
	size_t cap;
	size_t off, len;  /* payload is data[off, len) (after head) */
	uint8_t head[16]; /* a block straddling the previous part: ciphertext, then plaintext */
	size_t head_len;
	uint8_t head_iv[16], iv[16]; /* CBC IVs of head and of data[off, len) */
	size_t part;		     /* index of the part it holds */
	bool last;		     /* the last part */
};

/* The source. A job reads max, s3, ahead (after open), bytes_read and carry_len (on the
 * reading thread, or after it handed a part on); the rest is this file's. */
struct snap_bundle_parts {
	struct snap_job *job;
	const struct snap_manifest_doc *m;
	char *srcdir;	      /* parts in a directory, else NULL */
	uint64_t *part_sizes; /* invariant 6 */
	uint64_t max;	      /* the largest part's size, as sized by open */

	/* parts in S3 (invariant 3), else NULL: each is read into a buffer of its own, which the
	 * part takes (a local part is read into the buffer the caller gives, part->cap bytes) */
	struct snap_s3_client *s3; /* the job's (job-internal.h invariant 5) */
	struct snap_s3_where w;	   /* part i is s3://bucket/prefix<filename> */
	struct snap_s3_get **gets; /* one per part (invariant 7) */
	size_t next_get;	   /* the first part whose GET is not started */
	unsigned ahead;		   /* GETs in flight at most, each of max bytes at most */

	/* the ciphertext stream's chaining across parts (invariant 8) */
	bool chain;
	uint64_t bytes_read; /* the bytes of the parts read so far */
	uint8_t prev[16], carry[16];
	size_t carry_len; /* 0: the ciphertext read is a whole number of AES blocks */
};

/* The parts of m, found where SNAP_SPARAM_SOURCE_DIR says (a directory or an s3:// prefix),
 * else beside the manifest at mpath, and sized (invariant 1). iv, when not NULL, starts the
 * chaining (invariant 4). A failure is recorded on the job. */
int snap_bundle_parts_open(struct snap_job *job, const struct snap_manifest_doc *m,
			   const char *mpath, const uint8_t iv[16], struct snap_bundle_parts **ret);
struct snap_bundle_parts *snap_bundle_parts_free(struct snap_bundle_parts *ps);

/* The sum of the parts' sizes: as sized by open, then as read. */
uint64_t snap_bundle_parts_total(const struct snap_bundle_parts *ps);
/* Part i, the next in index order, whole into b, and chained (invariants 2 to 4). */
int snap_bundle_parts_read(struct snap_bundle_parts *ps, struct snap_pipeline *pipe, size_t i,
			   struct snap_bundle_part_buf *b);
/* The SHA-1 of the part in b, as read, against the manifest's; -EBADMSG names the part. */
int snap_bundle_parts_check(const struct snap_bundle_parts *ps, struct snap_pipeline *pipe,
			    const struct snap_bundle_part_buf *b);

/* Where a local bundle's parts are: SNAP_SPARAM_SOURCE_DIR, else the directory of the
 * manifest's path, as dirname(3) says it ("a//m.xml" is in "a", "m.xml" in "."); malloc'd,
 * NULL when out of memory. */
char *snap_bundle_parts_dir(const struct snap_job *job, const char *mpath);

/* The manifest at url (s3://BUCKET/KEY) with the client c: snap_bundle_manifest_get of a URL
 * that names an object. A failure is recorded on the job. */
int snap_bundle_manifest_fetch(struct snap_job *job, struct snap_s3_client *c, const char *url,
			       char **ret, size_t *ret_len);

#endif
