// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bundle.c - the classic bundle job: source -> sparse tar -> SHA-1 -> parallel gzip ->
 * AES-128-CBC -> 10 MiB parts + manifest (classic-bundle-format.md §1-4).
 *
 * Threads and data flow (the data stage runs on the job pipeline, pipeline.h):
 *   run thread (produce):   reader chunks -> tar stream -> SHA-1 of the stream -> slot.data
 *                           (a reader buffer it holds, or the tar header, trailer and small
 *                           chunks copied into slot.in); acquire/submit, the last one final
 *   pipeline workers (N):   slot.data -> ISA-L raw deflate chunk + CRC-32 -> slot.out
 *                           (bundle_work, a snap_deflate per worker)
 *   pipeline sink (write):  slot.out in order -> gzip wrapper -> AES -> stages, SHA-1 per part
 *                           (bundle_sink; bundle_sink_end: gzip trailer, AES padding, last part)
 *   output sequence thread: stages -> parts (O_DIRECT; output.h Q1-Q4)
 *
 * Invariants:
 *  1. Memory is fixed when the job starts: nslots slots of chunk_size input (touched only for
 *     copied chunks) and snap_deflate_bound(chunk_size) output, the reader's buffers
 *     (nslots + 8 requests of chunk_size by default), the output sequence's 3 stages, one
 *     ISA-L level buffer per worker. Only the extent list and the part list grow with the source (O(extents),
 *     O(parts)), never its size.
 *  2. Slot s carries stream chunk seq where seq % nslots == s (pipeline.h invariant 1): the
 *     run thread fills it between snap_pipeline_acquire and snap_pipeline_submit, one worker
 *     deflates it, the sink writes it; the pipeline moves it on and hands it over in seq
 *     order, so the output is in stream order whatever order workers finish in.
 *  3. Exactly one chunk, the last, is compressed with final set (BFINAL); every other chunk
 *     ends on a flush boundary (gzip-chunk.h), so the concatenation is one gzip member.
 *  4. Nothing the job writes carries a final name before the end: parts are written as
 *     ".NAME.part.I.tmp-PID" and the manifest as ".NAME.manifest.xml.tmp-PID" (output.h
 *     targets), then committed as one set by the output layer's commit policy: parts
 *     renamed, then the manifest, last (commit_outputs). Any failure or cancellation before
 *     that removes every temporary file (remove_outputs); an existing bundle is only replaced
 *     with SNAP_PARAM_FORCE.
 *  5. After a failure (or a cancellation) no thread starts new work (pipeline.h invariant 3);
 *     the run thread stops the pipeline (every worker and the sink joined, the slots' reader
 *     buffers given back) and waits for the parts' writer before it touches the outputs.
 *  6. The first failure wins (snap_job_fail): workers and the sink record theirs through
 *     snap_pipeline_fail, which also stops the pipeline, the sink with the
 *     parts' writer's failure (snap_output_seq_error: part and offset); the run thread returns
 *     the recorded failure as the job's.
 *  7. Parts are written through an output sequence with its own thread (output.h Q1-Q4):
 *     the sink encrypts straight into the sequence's aligned 4 MiB stage
 *     (snap_output_seq_space), hashes the ciphertext there and hands it over
 *     (snap_output_seq_put); full stages go to the part with O_DIRECT at increasing offsets
 *     while the sink goes on, so the serial writer never waits for the device, and a part's
 *     last block is padded, the part truncated to its size and closed. A part's bytes never
 *     pass through the page cache and are never copied (buffered writes cost 0.2 s of system
 *     time per bundle of the realistic disk, and the page cache's writeback besides), unless
 *     SNAP_PARAM_NO_DIRECT, SNAPBUNDLE_OUTPUT_BUFFERED=1 or a filesystem's refusal (EINVAL,
 *     for the rest of the bundle) sends them through the page cache.
 *  8. The deflate workers run WORKER_NICE below the job's other threads (the pipeline's
 *     nice_workers, pipeline.h invariant 6): the run thread's tar SHA-1 and the sink's
 *     AES-128-CBC and part SHA-1 are single streams and the pipeline's critical path, while
 *     the workers are many and absorb whatever CPU is left, so when the job has more busy
 *     threads than cores the serial stages must not wait behind a worker's time slice
 *     (measured on 2 cores: 2.00 s -> 1.95 s per bundle of the realistic disk, medians of 4
 *     interleaved runs). On a shared machine this also lets other work go first, as a backup
 *     tool should.
 *  9. A reader chunk of at least ZERO_COPY_MIN bytes is a stream chunk of its own, deflated
 *     from the reader's buffer: the slot holds the buffer and its worker releases it right
 *     after deflating (copying 1.16 GB of the realistic disk into the slots cost 0.13 s of
 *     the run thread's CPU). The tar header, the trailer and smaller chunks (extent ends) are
 *     copied as before. Stream chunks therefore follow the reader's requests (each range cut
 *     into chunk_size requests, reader.h invariant 1), so the gzip bytes are the same for
 *     the same source and settings whichever way the source is read. A held buffer is only
 *     ever in a submitted slot (taken and submitted in one step, emit_held); a slot that
 *     never reaches a worker gives it back through the pipeline's drop (pipeline.h
 *     invariant 5). No deadlock: the run thread waits for a reader buffer only while it holds
 *     none (a slot it is filling holds copied bytes only), and it waits for a free slot
 *     (acquire) holding at most one buffer not yet in a slot; every other held buffer belongs
 *     to a submitted slot that a worker finishes and the sink frees without the run thread.
 *  10. A destination s3://BUCKET/PREFIX/ (s3/s3.h) puts the same bytes into objects: each part
 *     is an S3 output (output.h invariant 6) opened when it is cut and PUT whole in the
 *     background as soon as it ends (single, within the client's memory budget, several at
 *     once); parts are committed in order as their PUTs complete, at most `window` of them
 *     waiting, since each keeps its writer until then (commit_done_parts); the
 *     manifest goes last and only at the commit (put_at_commit): a bundle in S3 is complete
 *     only when its manifest is there. An object cannot be renamed, so a part's key
 *     is final when it is opened: its index is padded to the digits of the largest part count
 *     the source can give (name_count, part_count_bound: the tar stream's length through the
 *     deflate bound, known before any data moves) instead of the count found at the end,
 *     which is the same unless the bound and the count straddle a power of ten; the manifest
 *     names every part, and the padding keeps lexicographic order = index order (§1.8). Any
 *     failure or cancellation deletes the parts already PUT (remove_outputs: the output
 *     layer's abort, then every key named deleted through the job's cleanup client, which a
 *     cancel does not stop: remove_objects), so no part stays without a manifest; a killed
 *     process cannot delete,
 *     and a rerun with --force (which replaces the parts and removes stale ones) or
 *     delete-bundle cleans what it left. --force deletes an existing manifest before the
 *     first part goes up, so no manifest ever names a part of another bundle.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bundle-manifest.h"
#include "disk-internal.h"
#include "extent-map.h"
#include "gzip-chunk.h"
#include "job-internal.h"
#include "util.h"
#include "layout.h"
#include "log.h"
#include "output.h"
#include "pipeline.h"
#include "reader.h"
#include "s3.h"
#include "source.h"
#include "sparse-tar.h"

#define PART_SIZE_DEFAULT (10ull << 20)
#define CHUNK_SIZE_DEFAULT ((size_t)2 << 20)
#define CHUNK_SIZE_MIN ((size_t)64 << 10)
#define CHUNK_SIZE_MAX ((size_t)64 << 20)
#define LEVEL_DEFAULT 2 /* measured: bench/results/bundle.md */
#define WORKER_NICE 10 /* how much lower the deflate workers run (invariant 8) */
#define ZERO_COPY_MIN ((size_t)256 << 10) /* smaller reader chunks are copied (invariant 9) */

/* What a pipeline slot holds (pipeline.h): a stream chunk, then its deflate output. */
struct slot {
	uint64_t seq; /* the chunk's place in the stream (pipeline.h invariant 1) */
	uint64_t off; /* the tar stream offset of its first byte */
	bool final;
	const uint8_t *data; /* what to deflate: in, or a reader buffer the slot holds */
	struct snap_chunk held; /* the reader buffer, released by the worker (invariant 9) */
	bool holding;
	uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_len;
	uint32_t crc;
};

/* Seconds per stage. Work stages (copy, tar_sha1, deflate summed over workers, aes,
 * part_sha1) are thread CPU time, so they say what a stage costs even on a shared machine;
 * waits, write and the totals are wall time. */
struct timings {
	double layout, keys, read_wait, tar_sha1, copy, produce_wait;
	double deflate, aes, part_sha1, write, writer_wait, finish, total, cpu;
};

struct bundle {
	struct snap_job *job;

	/* configuration */
	const char *image;
	char *dest;
	char *name;
	int level;
	unsigned nworkers;
	uint64_t part_size;
	size_t chunk_size;
	bool force;

	/* an S3 destination (invariant 10): dest is then "s3://BUCKET/PREFIX" without the '/' */
	struct snap_s3_client *s3; /* the job's (job-internal.h invariant 5) */
	char *bucket, *prefix;	   /* prefix "" or ending in '/' */
	struct snap_s3_put_options put;
	uint64_t name_count; /* the part count the part keys are padded for */
	size_t window;	     /* parts held uncommitted at most (commit_done_parts) */
	size_t ncommitted;   /* parts[0, ncommitted) committed by then */
	bool committing;     /* the manifest's PUT may have started */

	/* source */
	struct snap_source source; /* src, layout and reader below are its */
	struct snap_src *src;
	struct snap_layout *layout;
	struct snap_reader *reader;
	struct snap_tar_region *regions;
	size_t nregions;
	struct stat st;

	/* keys */
	struct snap_bundle_key key;
	struct snap_bundle_signer signer;

	/* pipeline */
	struct snap_pipeline *pipe;
	struct slot *slots;
	unsigned nslots;
	struct snap_pipeline_stats stats; /* kept when the pipeline is freed */

	/* producer state (run thread) */
	EVP_MD_CTX *tar_sha1;
	struct slot *cur; /* the slot being filled (acquired, not submitted), or NULL */
	uint64_t stream_len;

	/* writer state */
	EVP_CIPHER_CTX *aes;
	EVP_MD_CTX *part_sha1;
	uint64_t fed, produced; /* bytes into AES-128-CBC and ciphertext out of it */
	/* the parts, written one after another (invariant 7, output.h Q1-Q4) */
	struct snap_output_seq *oseq;
	bool part_open;
	uint32_t crc;
	uint64_t gz_in;	 /* bytes of tar stream compressed so far */
	uint64_t gz_len; /* gzip bytes produced */
	uint64_t part_left;
	struct snap_bundle_part *parts;
	size_t nparts, parts_cap;
	_Atomic uint64_t written;

	char *manifest_path;
	struct snap_output *manifest;
	char digest[41];
	struct timings t;
	_Atomic uint64_t deflate_ns;
};

static double secs_since(uint64_t t0)
{
	return (double)(snap_now_ns() - t0) / 1e9;
}

static double cpu_since(uint64_t t0)
{
	return (double)(snap_thread_cpu_ns() - t0) / 1e9;
}

/* ---------------------------------------------------------------------------------------- */
/* Outputs: temporary parts, commit, removal                                                 */

#define CANCELLED_MSG "cancelled; removed what was written"

/* A failure of the parts' writer (or of an S3 open): after a cancel, the S3 requests in
 * flight fail with -ECANCELED, which is the cancellation, not a write error. */
static const char *out_error(struct bundle *b, int r, const char *detail)
{
	if (r == -ECANCELED && snap_job_cancelled(b->job))
		return CANCELLED_MSG;
	return detail ? detail : snap_strerror(r);
}

static int seq_failed(struct bundle *b, int r)
{
	return snap_pipeline_fail(b->pipe, r, "%s",
				  out_error(b, r, snap_output_seq_error(b->oseq)));
}

static int part_close(struct bundle *b)
{
	if (!b->part_open)
		return 0;
	struct snap_bundle_part *p = &b->parts[b->nparts - 1];
	uint8_t md[20];
	unsigned mdlen = 0;
	uint64_t t0 = snap_thread_cpu_ns();
	if (EVP_DigestFinal_ex(b->part_sha1, md, &mdlen) != 1)
		return snap_pipeline_fail(b->pipe, -EIO, "SHA-1 of part %zu failed", b->nparts - 1);
	b->t.part_sha1 += cpu_since(t0);
	snap_hex(p->digest, md, 20);
	b->part_open = false;
	/* the sequence's thread writes the rest, truncates and closes the part */
	int r = snap_output_seq_end(b->oseq);
	if (r < 0)
		return seq_failed(b, r);
	return 0;
}

/* S3 (invariant 10): an ended part keeps its writer (its body in the client's budget while the
 * PUT is in flight, and the writer's thread that waits for it) until its output is committed,
 * so at most `window` ended parts wait uncommitted, whatever the part count: past that, the
 * sequence is flushed (every part before ended, its PUT started) and the oldest are committed
 * in order (each waits for its PUT), down to half the window. */
static int commit_done_parts(struct bundle *b)
{
	if (!b->s3 || b->nparts - b->ncommitted < b->window)
		return 0;
	int r = snap_output_seq_flush(b->oseq);
	if (r < 0)
		return seq_failed(b, r);
	while (b->nparts - b->ncommitted > b->window / 2) {
		char *detail = NULL;
		r = snap_output_commit(b->parts[b->ncommitted].out, &detail);
		if (r < 0) {
			snap_pipeline_fail(b->pipe, r, "%s", out_error(b, r, detail));
			free(detail);
			return r;
		}
		b->ncommitted++;
	}
	return 0;
}

static int part_open(struct bundle *b)
{
	int r = commit_done_parts(b);
	if (r < 0)
		return r;
	if (b->nparts == b->parts_cap) {
		size_t cap = b->parts_cap ? 2 * b->parts_cap : 64;
		struct snap_bundle_part *n = realloc(b->parts, cap * sizeof(*n));
		if (!n)
			return snap_pipeline_fail(b->pipe, -ENOMEM, "out of memory for the part list");
		b->parts = n;
		b->parts_cap = cap;
	}
	struct snap_bundle_part *p = &b->parts[b->nparts];
	memset(p, 0, sizeof(*p));
	/* the final name needs the part count (snap_bundle_part_name): named at commit */
	char *path = NULL, *detail = NULL;
	if (b->s3) {
		/* an object is named once: its final key now (invariant 10) */
		if (b->nparts >= b->name_count)
			return snap_pipeline_fail(b->pipe, -EIO,
						  "part %zu is past the bound of %" PRIu64,
						  b->nparts, b->name_count);
		if (snap_bundle_part_name(b->name, b->nparts, b->name_count, &p->final_name) < 0 ||
		    asprintf(&path, "%s/%s", b->dest, p->final_name) < 0)
			return snap_pipeline_fail(b->pipe, -ENOMEM, "out of memory");
	} else if (asprintf(&path, "%s/%s.part.%zu", b->dest, b->name, b->nparts) < 0) {
		return snap_pipeline_fail(b->pipe, -ENOMEM, "out of memory");
	}
	/* the run reclaimed the debris of killed runs; without --force, a part of that name
	 * appearing now (a concurrent run) fails the open, and the commit never renames over one */
	unsigned flags = SNAP_OUTPUT_APPEND | SNAP_OUTPUT_NO_RECLAIM;
	if (b->force)
		flags |= SNAP_OUTPUT_FORCE;
	if (snap_job_param(b->job, SNAP_PARAM_NO_DIRECT, 0))
		flags |= SNAP_OUTPUT_BUFFERED;
	if (b->s3) {
		/* one PUT per part, made in the background once the part ends */
		struct snap_output_s3 o = {
		    .client = b->s3,
		    .put = &b->put,
		    .single = b->part_size <= SNAP_S3_MAX_BUFFERED_PART,
		};
		r = snap_output_open_s3(path, flags, &o, &p->out, &detail);
	} else {
		r = snap_output_open(path, 0, flags, &p->out, &detail);
	}
	free(path);
	if (r < 0) {
		free(p->final_name);
		p->final_name = NULL;
		snap_pipeline_fail(b->pipe, r, "%s", out_error(b, r, detail));
		free(detail);
		return r;
	}
	b->nparts++;
	if (EVP_DigestInit_ex(b->part_sha1, EVP_sha1(), NULL) != 1)
		return snap_pipeline_fail(b->pipe, -EIO, "cannot start SHA-1");
	snap_output_seq_start(b->oseq, p->out);
	b->part_open = true;
	b->part_left = b->part_size;
	return 0;
}

/* n bytes of ciphertext, now at p in the sequence's stage, belong to the current part: hash
 * them, count them, hand them over, close a full part. */
static int part_took(struct bundle *b, const uint8_t *p, size_t n)
{
	uint64_t t0 = snap_thread_cpu_ns();
	if (EVP_DigestUpdate(b->part_sha1, p, n) != 1)
		return snap_pipeline_fail(b->pipe, -EIO, "SHA-1 of part %zu failed", b->nparts - 1);
	b->t.part_sha1 += cpu_since(t0);
	b->parts[b->nparts - 1].size += n;
	atomic_fetch_add(&b->written, n);
	b->part_left -= n;
	int r = snap_output_seq_put(b->oseq, n);
	if (r < 0)
		return seq_failed(b, r);
	if (b->part_left == 0)
		r = part_close(b);
	return r;
}

/* Ciphertext made elsewhere (a CBC block across a part boundary, the final padding) into
 * the parts: cut at part_size. */
static int parts_put(struct bundle *b, const uint8_t *p, size_t len)
{
	while (len > 0) {
		int r;
		if (!b->part_open && (r = part_open(b)) < 0)
			return r;
		size_t room;
		uint8_t *dst = snap_output_seq_space(b->oseq, &room);
		size_t n = len < b->part_left ? len : (size_t)b->part_left;
		if (n > room)
			n = room;
		memcpy(dst, p, n);
		if ((r = part_took(b, dst, n)) < 0)
			return r;
		p += n;
		len -= n;
	}
	return 0;
}

/* gzip bytes through AES-128-CBC into the parts, encrypted straight into the stage
 * (invariant 7). CBC gives out whole 16-byte blocks and keeps up to 15 bytes (fed -
 * produced): feeding at most room - pending bytes never gives out more than room. */
static int encrypt_put(struct bundle *b, const uint8_t *p, size_t len)
{
	b->gz_len += len;
	while (len > 0) {
		int r;
		if (!b->part_open && (r = part_open(b)) < 0)
			return r;
		size_t room;
		uint8_t *stage = snap_output_seq_space(b->oseq, &room);
		if (room > b->part_left)
			room = (size_t)b->part_left;
		size_t pending = (size_t)(b->fed - b->produced);
		/* into the stage when its output fits; a block across the part's end goes
		 * through a small buffer that parts_put cuts */
		uint8_t blk[48];
		bool in_stage = room >= pending + 16;
		size_t n = in_stage ? room - pending : 16;
		if (n > len)
			n = len;
		if (n > INT_MAX / 2)
			n = INT_MAX / 2;
		uint8_t *dst = in_stage ? stage : blk;
		int outl = 0;
		uint64_t t0 = snap_thread_cpu_ns();
		if (EVP_EncryptUpdate(b->aes, dst, &outl, p, (int)n) != 1)
			return snap_pipeline_fail(b->pipe, -EIO, "AES-128-CBC encryption failed");
		b->t.aes += cpu_since(t0);
		b->fed += n;
		b->produced += (uint64_t)outl;
		p += n;
		len -= n;
		if (in_stage)
			r = outl > 0 ? part_took(b, dst, (size_t)outl) : 0;
		else
			r = parts_put(b, blk, (size_t)outl);
		if (r < 0)
			return r;
	}
	return 0;
}

static int encrypt_finish(struct bundle *b)
{
	uint8_t blk[32];
	int outl = 0;
	if (EVP_EncryptFinal_ex(b->aes, blk, &outl) != 1)
		return snap_pipeline_fail(b->pipe, -EIO, "AES-128-CBC padding failed");
	b->produced += (uint64_t)outl;
	int r = parts_put(b, blk, (size_t)outl);
	if (r < 0)
		return r;
	return part_close(b);
}

/* After a failure in S3 (invariant 10): the outputs' aborts delete the parts already PUT, but
 * after a cancel the job's client refuses every request; so every key this run named is
 * deleted again through a client of its own (job-internal.h: snap_job_s3_cleanup_client),
 * which also catches a PUT that the cancel cut off after the gateway had the whole body (a
 * DELETE of a missing key succeeds). */
static void remove_objects(struct bundle *b)
{
	for (size_t i = 0; i < b->nparts; i++)
		b->parts[i].out = snap_output_free(b->parts[i].out);
	b->manifest = snap_output_free(b->manifest);
	if (!b->nparts && !b->committing)
		return; /* nothing was named: refused before the data (an existing bundle, a key) */
	struct snap_s3_client *c = NULL;
	int cr = snap_job_s3_cleanup_client(b->job, &c);
	if (cr < 0) {
		if (b->nparts)
			snap_warn(
			    "cannot reach S3 to delete the parts uploaded under s3://%s/%s: %s "
			    "(delete-bundle, or a rerun with --force, removes them)",
			    b->bucket, b->prefix, snap_strerror(cr));
		return;
	}
	size_t failed = 0;
	for (size_t i = 0; i <= b->nparts; i++) {
		char *key = NULL, *detail = NULL;
		if (i < b->nparts ? asprintf(&key, "%s%s", b->prefix, b->parts[i].final_name) < 0
				  : !b->committing ||
					asprintf(&key, "%s%s.manifest.xml", b->prefix, b->name) < 0)
			continue;
		int r = snap_s3_delete_object(c, b->bucket, key, &detail);
		if (r < 0 && failed++ < 3)
			snap_warn(
			    "cannot delete s3://%s/%s after the failure: %s (delete-bundle, or "
			    "a rerun with --force, removes it)",
			    b->bucket, key, detail ? detail : snap_strerror(r));
		free(key);
		free(detail);
	}
	if (!failed)
		snap_debug("deleted the %zu parts this run had named in s3://%s/%s", b->nparts,
			   b->bucket, b->prefix);
	snap_s3_client_free(c);
}

static void remove_outputs(struct bundle *b)
{
	if (b->s3)
		remove_objects(b);
	for (size_t i = 0; i < b->nparts; i++)
		b->parts[i].out = snap_output_free(b->parts[i].out); /* unless committed */
	b->manifest = snap_output_free(b->manifest);
}

/* Is entry NAME.part.<digits> of this bundle? */
static bool is_part_of(const char *entry, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(entry, name, n) || strncmp(entry + n, ".part.", 6))
		return false;
	const char *d = entry + n + 6;
	if (!*d)
		return false;
	for (; *d; d++)
		if (*d < '0' || *d > '9')
			return false;
	return true;
}

/* The objects under PREFIX/NAME.part.; *ret_detail says what failed. */
static int list_parts_s3(struct bundle *b, struct snap_s3_list_objects **ret, char **ret_detail)
{
	char *lp = NULL, *detail = NULL;
	if (asprintf(&lp, "%s%s.part.", b->prefix, b->name) < 0)
		return -ENOMEM;
	int r = snap_s3_list_objects(b->s3, b->bucket, lp, ret, &detail);
	if (r < 0 && asprintf(ret_detail, "cannot list s3://%s/%s: %s", b->bucket, lp,
			      detail ? detail : snap_strerror(r)) < 0)
		*ret_detail = NULL;
	free(lp);
	free(detail);
	return r;
}

/* Whether key is PREFIX/NAME.part.<digits> of this bundle (not deeper under the prefix). */
static bool is_part_key(const struct bundle *b, const char *key)
{
	size_t n = strlen(b->prefix);
	return !strncmp(key, b->prefix, n) && !strchr(key + n, '/') && is_part_of(key + n, b->name);
}

/* An existing bundle in S3 (invariant 10): its manifest or any of its parts, refused without
 * force; with force, the manifest is deleted now, before a part is replaced. */
static int check_existing_s3(struct bundle *b)
{
	char *mkey = NULL, *detail = NULL;
	struct snap_s3_head *h = NULL;
	struct snap_s3_list_objects *l = NULL;
	int r;
	if (asprintf(&mkey, "%s%s.manifest.xml", b->prefix, b->name) < 0)
		return snap_job_fail(b->job, -ENOMEM, "out of memory");
	r = snap_s3_head_object(b->s3, b->bucket, mkey, &h, &detail);
	if (r == 0 && !b->force) {
		r = snap_job_fail(b->job, -EEXIST, "%s already exists (use --force to replace it)",
				  b->manifest_path);
		goto out;
	}
	if (r == 0) {
		free(detail);
		detail = NULL;
		r = snap_s3_delete_object(b->s3, b->bucket, mkey, &detail);
		if (r < 0) {
			snap_job_fail(b->job, r, "cannot delete %s to replace it: %s",
				      b->manifest_path, detail ? detail : snap_strerror(r));
			goto out;
		}
		snap_info("deleted %s: the bundle replacing it is uploaded now", b->manifest_path);
	} else if (r != -ENOENT) {
		/* the first request: a HEAD's 403 has no body to say why */
		snap_job_fail(b->job, r, "cannot check %s: %s%s", b->manifest_path,
			      detail ? detail : snap_strerror(r),
			      r == -EACCES ? " (access denied: a wrong access key or secret key, "
					     "or no permission on the bucket)"
					   : "");
		goto out;
	}
	r = 0;
	if (b->force)
		goto out;
	if ((r = list_parts_s3(b, &l, &detail)) < 0) {
		snap_job_fail(b->job, r, "%s", detail ? detail : snap_strerror(r));
		goto out;
	}
	for (size_t i = 0; i < l->nobjects && r == 0; i++)
		if (is_part_key(b, l->objects[i].key))
			r = snap_job_fail(b->job, -EEXIST,
					  "s3://%s/%s already exists (use --force to replace it)",
					  b->bucket, l->objects[i].key);
out:
	snap_s3_list_objects_free(l);
	snap_s3_head_free(h);
	free(mkey);
	free(detail);
	return r;
}

/* An existing bundle of the same name: its manifest or any of its parts. */
static int check_existing(struct bundle *b)
{
	if (b->s3)
		return check_existing_s3(b);
	if (faccessat(AT_FDCWD, b->manifest_path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return snap_job_fail(b->job, -EEXIST, "%s already exists (use --force to replace it)",
				     b->manifest_path);
	DIR *d = opendir(b->dest);
	if (!d) {
		int r = -errno;
		return snap_job_fail(b->job, r, "cannot open %s: %s", b->dest, snap_strerror(r));
	}
	struct dirent *e;
	int r = 0;
	while ((e = readdir(d))) {
		if (is_part_of(e->d_name, b->name)) {
			r = snap_job_fail(b->job, -EEXIST,
					  "%s/%s already exists (use --force to replace it)", b->dest,
					  e->d_name);
			break;
		}
	}
	closedir(d);
	return r;
}

/* remove_stale_parts in S3: after the commit, the parts the new manifest does not name. */
static void remove_stale_parts_s3(struct bundle *b)
{
	struct snap_s3_list_objects *l = NULL;
	char *detail = NULL;
	if (list_parts_s3(b, &l, &detail) < 0) {
		snap_warn("stale parts of the bundle replaced are not removed: %s",
			  detail ? detail : "out of memory");
		free(detail);
		return;
	}
	for (size_t i = 0; i < l->nobjects; i++) {
		const char *k = l->objects[i].key;
		if (!is_part_key(b, k))
			continue;
		bool ours = false;
		for (size_t j = 0; j < b->nparts && !ours; j++)
			ours = !strcmp(k + strlen(b->prefix), b->parts[j].final_name);
		if (ours)
			continue;
		if (snap_s3_delete_object(b->s3, b->bucket, k, &detail) == 0)
			snap_info("removed s3://%s/%s of the bundle replaced", b->bucket, k);
		else
			snap_warn("cannot remove s3://%s/%s of the bundle replaced: %s", b->bucket,
				  k, detail ? detail : "failed");
		free(detail);
	}
	snap_s3_list_objects_free(l);
}

/* Parts of an older bundle of this name that the new one does not have (force only). */
static void remove_stale_parts(struct bundle *b)
{
	if (b->s3) {
		remove_stale_parts_s3(b);
		return;
	}
	DIR *d = opendir(b->dest);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!is_part_of(e->d_name, b->name))
			continue;
		struct stat st;
		bool ours = fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
			    st.st_dev == b->st.st_dev && st.st_ino == b->st.st_ino; /* the source */
		for (size_t i = 0; i < b->nparts && !ours; i++)
			ours = !strcmp(e->d_name, b->parts[i].final_name);
		if (!ours && unlinkat(dirfd(d), e->d_name, 0) == 0)
			snap_info("removed %s/%s of the bundle replaced", b->dest, e->d_name);
	}
	closedir(d);
}

/* ---------------------------------------------------------------------------------------- */
/* Workers                                                                                   */

/* Gives back the reader buffer a slot holds (invariant 9). */
static void slot_release(struct bundle *b, struct slot *s)
{
	if (s->holding) {
		snap_reader_release(b->reader, &s->held);
		s->holding = false;
	}
}

/* The pipeline's work: deflate one stream chunk (any worker, any order). */
static int bundle_work(void *ctx, void *state, unsigned i)
{
	struct bundle *b = ctx;
	struct slot *s = &b->slots[i];
	uint64_t t0 = snap_thread_cpu_ns();
	size_t outlen = 0;
	uint32_t crc = 0;
	int r = snap_deflate_chunk(state, s->data, s->in_len, s->final, s->out,
				   snap_deflate_bound(b->chunk_size), &outlen, &crc);
	slot_release(b, s); /* invariant 9: the reader's buffer goes back at once */
	atomic_fetch_add(&b->deflate_ns, snap_thread_cpu_ns() - t0);
	if (r < 0)
		return snap_pipeline_fail(b->pipe, r, "deflate of tar stream bytes %" PRIu64 "+%zu failed: %s",
				     s->off, s->in_len, snap_strerror(r));
	s->out_len = outlen;
	s->crc = crc;
	return 0;
}

/* A worker's deflate state: one ISA-L level buffer (invariant 1). */
static int bundle_worker_init(void *ctx, unsigned worker, void **ret_state)
{
	struct bundle *b = ctx;
	struct snap_deflate *d = NULL;
	(void)worker;
	int r = snap_deflate_new(b->level, &d);
	if (r < 0)
		return snap_job_fail(b->job, r, "cannot set up compression: %s", snap_strerror(r));
	*ret_state = d;
	return 0;
}

static void bundle_worker_free(void *ctx, void *state)
{
	(void)ctx;
	snap_deflate_free(state);
}

/* The pipeline's sink: each deflated chunk in stream order through the gzip wrapper and
 * AES-128-CBC into the parts. The first chunk starts the gzip member. */
static int bundle_sink(void *ctx, unsigned i)
{
	struct bundle *b = ctx;
	struct slot *s = &b->slots[i];
	int r;
	if (s->seq == 0) {
		uint8_t hdr[SNAP_GZIP_HEADER_SIZE];
		snap_gzip_header(hdr, b->level);
		if ((r = encrypt_put(b, hdr, sizeof(hdr))) < 0)
			return r;
	}
	b->crc = s->seq == 0 ? s->crc : snap_crc32_combine(b->crc, s->crc, s->in_len);
	b->gz_in += s->in_len;
	return encrypt_put(b, s->out, s->out_len);
}

/* The sink's last words, after the final chunk: the gzip trailer, the AES padding, the last
 * part closed, and every stage written (or the parts' writer's failure recorded). */
static int bundle_sink_end(void *ctx)
{
	struct bundle *b = ctx;
	uint8_t trl[SNAP_GZIP_TRAILER_SIZE];
	snap_gzip_trailer(trl, b->crc, b->gz_in);
	int r = encrypt_put(b, trl, sizeof(trl));
	if (r >= 0)
		r = encrypt_finish(b);
	int fr = snap_output_seq_flush(b->oseq); /* every part written */
	b->t.write = (double)snap_output_seq_write_ns(b->oseq) / 1e9;
	if (r >= 0 && fr < 0)
		r = seq_failed(b, fr);
	return r;
}

/* A slot filled but never deflated gives its reader buffer back (invariant 9). */
static void bundle_drop(void *ctx, unsigned i)
{
	struct bundle *b = ctx;
	slot_release(b, &b->slots[i]);
}

/* Run thread, before a progress report: what the sink has written. */
static void bundle_progress(void *ctx)
{
	struct bundle *b = ctx;
	b->job->progress.bytes_written = atomic_load(&b->written);
}

static const struct snap_pipeline_ops bundle_ops = {
    .worker_init = bundle_worker_init,
    .worker_free = bundle_worker_free,
    .work = bundle_work,
    .sink = bundle_sink,
    .sink_end = bundle_sink_end,
    .drop = bundle_drop,
    .progress = bundle_progress,
};

/* ---------------------------------------------------------------------------------------- */
/* Producer: the tar stream, on the run thread                                               */

static void report_progress(struct bundle *b, uint64_t covered, uint64_t read)
{
	struct snap_progress *p = &b->job->progress;
	p->bytes_done = covered;
	p->bytes_read = read;
	p->bytes_skipped = covered - read;
	p->bytes_written = atomic_load(&b->written);
	snap_job_report(b->job, false);
}

/* Takes the slot for the next stream chunk (waiting, with progress, for it to be free). */
static int slot_take(struct bundle *b)
{
	unsigned i;
	uint64_t seq;
	int r = snap_pipeline_acquire(b->pipe, &i, &seq);
	if (r < 0)
		return r;
	struct slot *s = &b->slots[i];
	s->seq = seq;
	s->off = b->stream_len;
	s->final = false;
	s->data = s->in;
	s->in_len = 0;
	s->holding = false;
	b->cur = s;
	return 0;
}

/* Hands the slot being filled to the workers (invariant 3: final for the last chunk only). */
static void slot_give(struct bundle *b, bool final)
{
	b->cur->final = final;
	b->cur = NULL;
	snap_pipeline_submit(b->pipe, false);
}

/* Appends tar stream bytes (data == NULL: zeros). */
static int emit(struct bundle *b, const uint8_t *data, uint64_t len)
{
	static const uint8_t zeros[65536];
	while (len > 0) {
		if (b->cur && b->cur->in_len == b->chunk_size)
			slot_give(b, false);
		if (!b->cur) {
			int r = slot_take(b);
			if (r < 0)
				return r;
		}
		struct slot *s = b->cur;
		size_t n = b->chunk_size - s->in_len;
		if (n > len)
			n = (size_t)len;
		if (!data && n > sizeof(zeros))
			n = sizeof(zeros);
		const uint8_t *src = data ? data : zeros;
		uint64_t t0 = snap_thread_cpu_ns();
		memcpy(s->in + s->in_len, src, n);
		uint64_t t1 = snap_thread_cpu_ns();
		if (EVP_DigestUpdate(b->tar_sha1, src, n) != 1)
			return snap_pipeline_fail(b->pipe, -EIO, "SHA-1 of the tar stream failed");
		b->t.copy += (double)(t1 - t0) / 1e9;
		b->t.tar_sha1 += cpu_since(t1);
		s->in_len += n;
		b->stream_len += n;
		if (data)
			data += n;
		len -= n;
	}
	return 0;
}

/* A reader chunk as a stream chunk of its own, deflated from the reader's buffer (invariant
 * 9). Returns 1 when a slot took the chunk (its worker, or the pipeline's drop, releases it),
 * 0 when it is too small for that and the caller copies it, -errno when it was released here.
 * The chunk is hashed before the run thread waits for its slot. */
static int emit_held(struct bundle *b, const struct snap_chunk *c)
{
	if (c->length < ZERO_COPY_MIN || c->length > b->chunk_size)
		return 0;
	uint64_t t0 = snap_thread_cpu_ns();
	if (EVP_DigestUpdate(b->tar_sha1, c->data, c->length) != 1) {
		snap_reader_release(b->reader, c);
		return snap_pipeline_fail(b->pipe, -EIO, "SHA-1 of the tar stream failed");
	}
	b->t.tar_sha1 += cpu_since(t0);
	/* the bytes copied so far end their chunk here */
	if (b->cur)
		slot_give(b, false);
	int r = slot_take(b);
	if (r < 0) {
		snap_reader_release(b->reader, c);
		return r;
	}
	/* the slot takes the buffer and goes to the workers in one step */
	struct slot *s = b->cur;
	s->data = c->data;
	s->held = *c;
	s->holding = true;
	s->in_len = c->length;
	b->stream_len += c->length;
	slot_give(b, false);
	return 1;
}

static struct snap_tar_member tar_member(const struct bundle *b)
{
	return (struct snap_tar_member){
	    .name = b->name,
	    .mode = b->st.st_mode & 07777,
	    .mtime = b->st.st_mtime,
	    .realsize = b->src->size,
	    .regions = b->regions,
	    .nregions = b->nregions,
	};
}

/* The most parts the source can give (invariant 10): the tar stream's length is known before
 * any data moves; its gzip is at most the sum of snap_deflate_bound over the stream chunks
 * (len + len / 64 + 4096 each), and there are at most 2 per reader chunk held (one of its own,
 * ZERO_COPY_MIN bytes or more, and the copied one it ends) plus one per chunk_size copied,
 * plus the last; then the gzip wrapper and the AES padding. */
static uint64_t part_count_bound(const struct bundle *b)
{
	struct snap_tar_member m = tar_member(b);
	uint64_t len = snap_tar_stream_size(&m);
	uint64_t chunks = 2 * (len / ZERO_COPY_MIN + 1) + len / b->chunk_size + 2;
	uint64_t gz =
	    SNAP_GZIP_HEADER_SIZE + len + len / 64 + 4096 * chunks + SNAP_GZIP_TRAILER_SIZE;
	uint64_t ct = gz / 16 * 16 + 16;
	return (ct + b->part_size - 1) / b->part_size;
}

static int produce(struct bundle *b)
{
	struct snap_tar_member m = tar_member(b);
	size_t hlen = snap_tar_header_size(&m);
	uint8_t *hdr = malloc(hlen);
	if (!hdr)
		return snap_pipeline_fail(b->pipe, -ENOMEM, "out of memory for the tar header");
	int r = snap_tar_write_header(&m, hdr, hlen);
	if (r >= 0)
		r = emit(b, hdr, hlen);
	free(hdr);
	if (r < 0)
		return r;

	_Static_assert(sizeof(struct snap_range) == sizeof(struct snap_tar_region),
		       "a region list doubles as the reader's range list");
	uint64_t read = 0, covered = 0;
	if (b->nregions) {
		r = snap_reader_start(b->reader, (const struct snap_range *)b->regions,
				      b->nregions);
		if (r < 0)
			return snap_pipeline_fail(b->pipe, r, "cannot read %s: %s", b->image,
					     snap_strerror(r));
		for (;;) {
			struct snap_chunk c;
			uint64_t t0 = snap_now_ns();
			r = snap_reader_next(b->reader, &c);
			b->t.read_wait += secs_since(t0);
			if (r < 0) {
				const char *d = snap_reader_error(b->reader);
				return snap_pipeline_fail(b->pipe, r, "%s", *d ? d : snap_strerror(r));
			}
			if (r == 0)
				break;
			r = emit_held(b, &c);
			if (r == 0) {
				r = emit(b, c.data, c.length);
				snap_reader_release(b->reader, &c);
			}
			if (r < 0)
				return r;
			read += c.length;
			covered = c.offset + c.length;
			report_progress(b, covered, read);
			if (snap_job_cancelled(b->job))
				return -ECANCELED;
		}
	}
	report_progress(b, b->src->size, read);
	r = emit(b, NULL, snap_tar_trailer_size(b->stream_len));
	if (r < 0)
		return r;
	if (b->stream_len != snap_tar_stream_size(&m))
		return snap_pipeline_fail(b->pipe, -EIO,
				     "tar stream of %s is %" PRIu64 " bytes, expected %" PRIu64,
				     b->image, b->stream_len, snap_tar_stream_size(&m));
	if (!b->cur && (r = slot_take(b)) < 0) /* never: the trailer is at least 1 KiB */
		return r;
	slot_give(b, true);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Setup                                                                                     */

/* The keys the manifest is signed and wrapped with (bundle-manifest.c), then the bundle's
 * own AES-128 key and IV. */
static int load_keys(struct bundle *b)
{
	int r = snap_bundle_signer_load(b->job, 16u << 20, false, "the bundle's signature",
					&b->signer);
	if (r < 0)
		return r;
	r = snap_bundle_key_generate(&b->key);
	if (r < 0)
		return snap_job_fail(b->job, r,
				     "cannot generate the bundle key: random source failed");
	return 0;
}

/* The DATA extents as stored tar regions (adjacent DATA extents of different layers merged);
 * ZERO and UNUSED extents become holes. */
static int build_regions(struct bundle *b)
{
	const struct snap_map *map = b->layout->map;
	size_t n = snap_map_count(map), cap = 0;
	for (size_t i = 0; i < n; i++)
		if (snap_map_get(map, i)->kind == SNAP_EXTENT_DATA)
			cap++;
	b->regions = calloc(cap ? cap : 1, sizeof(*b->regions));
	if (!b->regions)
		return snap_job_fail(b->job, -ENOMEM, "out of memory for the extent list");
	for (size_t i = 0; i < n; i++) {
		const struct snap_extent *e = snap_map_get(map, i);
		if (e->kind != SNAP_EXTENT_DATA || e->length == 0)
			continue;
		struct snap_tar_region *last = b->nregions ? &b->regions[b->nregions - 1] : NULL;
		if (last && last->offset + last->length == e->offset)
			last->length += e->length;
		else
			b->regions[b->nregions++] = (struct snap_tar_region){e->offset, e->length};
	}
	return 0;
}

static int open_source(struct bundle *b)
{
	uint64_t t0 = snap_now_ns();
	/* invariant 9: requests of a chunk each, and enough of them that the slots holding
	 * buffers leave the reader some to read ahead with */
	int r = snap_job_source_open(b->job, b->image, b->nslots + 8, b->chunk_size, &b->source);
	b->t.layout = secs_since(t0);
	if (r < 0)
		return r;
	b->src = b->source.src;
	b->layout = b->source.layout;
	b->reader = b->source.reader;
	if (fstat(b->src->fd_buffered, &b->st) < 0) { /* the tar member's mode and mtime */
		r = -errno;
		return snap_job_fail(b->job, r, "cannot stat %s: %s", b->image, snap_strerror(r));
	}
	if (b->src->size == 0)
		return snap_job_fail(b->job, -EINVAL, "%s is empty", b->image);
	b->job->progress.bytes_total = b->src->size;
	return build_regions(b);
}

/* s3://BUCKET[/PREFIX[/]]: the parts and the manifest go under PREFIX/ (invariant 10); dest
 * becomes "s3://BUCKET/PREFIX" without the '/', so that dest/NAME is an object's URL. */
static int configure_s3(struct bundle *b)
{
	char *key = NULL, *detail = NULL;
	int r = snap_s3_url_parse(b->dest, &b->bucket, &key, &detail);
	if (r < 0) {
		snap_job_fail(b->job, r, "destination %s: %s", b->dest,
			      detail ? detail : snap_strerror(r));
		free(detail);
		return r;
	}
	size_t n = strlen(key);
	while (n && key[n - 1] == '/')
		n--;
	free(b->dest);
	b->dest = NULL;
	if (asprintf(&b->prefix, "%.*s%s", (int)n, key, n ? "/" : "") < 0)
		b->prefix = NULL;
	else if (asprintf(&b->dest, "s3://%s%s%.*s", b->bucket, n ? "/" : "", (int)n, key) < 0)
		b->dest = NULL;
	free(key);
	if (!b->prefix || !b->dest)
		return snap_job_fail(b->job, -ENOMEM, "out of memory");
	b->put.acl = snap_job_string(b->job, SNAP_SPARAM_S3_ACL);
	b->put.content_type = NULL;
	return snap_job_s3_client(b->job, &b->s3);
}

static int configure(struct bundle *b)
{
	struct snap_job *job = b->job;
	b->image = snap_job_string(job, SNAP_SPARAM_IMAGE);
	if ((!b->image || !*b->image) && job->nsources == 1)
		b->image = job->sources[0].path;
	if (!b->image || !*b->image)
		return snap_job_fail(job, -EINVAL, "no image given");
	const char *dest = snap_job_string(job, SNAP_SPARAM_DESTINATION);
	b->dest = strdup(dest && *dest ? dest : "/tmp");
	const char *prefix = snap_job_string(job, SNAP_SPARAM_PREFIX);
	if (prefix && *prefix) {
		b->name = strdup(prefix);
	} else {
		const char *base = strrchr(b->image, '/');
		b->name = strdup(base ? base + 1 : b->image);
	}
	if (!b->dest || !b->name)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	if (!*b->name && !(prefix && *prefix))
		return snap_job_fail(job, -EINVAL,
				     "cannot name the bundle after %s: give a file or a device, or a "
				     "name with -p",
				     b->image);
	if (!*b->name || strchr(b->name, '/') || !strcmp(b->name, ".") || !strcmp(b->name, ".."))
		return snap_job_fail(job, -EINVAL, "invalid bundle name '%s' (no '/', not empty)",
				     b->name);
	if (strlen(b->name) > NAME_MAX - 40)
		return snap_job_fail(job, -ENAMETOOLONG, "bundle name '%s' is too long", b->name);
	if (snap_s3_is_url(b->dest)) {
		int r = configure_s3(b);
		if (r < 0)
			return r;
	} else {
		struct stat st;
		if (stat(b->dest, &st) < 0) /* -ENOTDIR: not a directory we can write to */
			return snap_job_fail(job, -ENOTDIR, "destination %s: %s", b->dest,
					     strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return snap_job_fail(job, -ENOTDIR, "destination %s is not a directory",
					     b->dest);
	}

	int64_t level = snap_job_param(job, SNAP_PARAM_LEVEL, LEVEL_DEFAULT);
	if (level < 0 || level > SNAP_DEFLATE_MAX_LEVEL)
		return snap_job_fail(job, -EINVAL, "compression level %" PRId64 " is not 0-3",
				     level);
	b->level = (int)level;
	int64_t ps = snap_job_param(job, SNAP_PARAM_PART_SIZE, (int64_t)PART_SIZE_DEFAULT);
	if (ps < 16)
		return snap_job_fail(job, -EINVAL, "part size %" PRId64 " is too small", ps);
	b->part_size = (uint64_t)ps;
	int64_t cs = snap_job_param(job, SNAP_PARAM_CHUNK_SIZE, (int64_t)CHUNK_SIZE_DEFAULT);
	if (cs < (int64_t)CHUNK_SIZE_MIN || cs > (int64_t)CHUNK_SIZE_MAX)
		return snap_job_fail(job, -EINVAL, "chunk size %" PRId64 " is not 64 KiB-64 MiB",
				     cs);
	b->chunk_size = (size_t)cs;
	b->force = snap_job_param(job, SNAP_PARAM_FORCE, 0) != 0;
	b->nworkers = snap_job_threads(job);
	if (b->nworkers > 256)
		b->nworkers = 256;
	b->nslots = 2 * b->nworkers + 2;
	if (asprintf(&b->manifest_path, "%s/%s.manifest.xml", b->dest, b->name) < 0) {
		b->manifest_path = NULL;
		return snap_job_fail(job, -ENOMEM, "out of memory");
	}
	return 0;
}

/* The manifest, built and signed (bundle-manifest.c), written through the output sequence. */
static int write_manifest(struct bundle *b, const char *user)
{
	struct snap_job *job = b->job;
	char *doc = NULL;
	size_t dlen = 0;
	int r = snap_bundle_manifest_build(job, &b->signer, &b->key, b->name, user, b->src->size,
					   b->digest, b->parts, b->nparts, &doc, &dlen);
	if (r < 0)
		return r;
	char *detail = NULL;
	unsigned flags = SNAP_OUTPUT_APPEND | SNAP_OUTPUT_BUFFERED | (b->force ? SNAP_OUTPUT_FORCE : 0);
	if (b->s3) {
		/* PUT at the commit, after every part (invariant 10) */
		struct snap_output_s3 o = {
		    .client = b->s3,
		    .put = &b->put,
		    .single = true,
		    .put_at_commit = true,
		};
		r = snap_output_open_s3(b->manifest_path, flags, &o, &b->manifest, &detail);
	} else {
		r = snap_output_open(b->manifest_path, 0, flags, &b->manifest, &detail);
	}
	if (r < 0) {
		r = snap_job_fail(job, r, "%s", out_error(b, r, detail));
		free(detail);
		goto out;
	}
	snap_output_seq_start(b->oseq, b->manifest);
	r = snap_output_seq_write(b->oseq, doc, dlen);
	if (r == 0)
		r = snap_output_seq_end(b->oseq);
	if (r == 0)
		r = snap_output_seq_flush(b->oseq);
	if (r < 0)
		r = snap_job_fail(job, r, "%s", out_error(b, r, snap_output_seq_error(b->oseq)));
out:
	free(doc);
	return r;
}

/* Parts, then the manifest, into their final names, as one (invariant 4, output.h 2a). */
static int commit_outputs(struct bundle *b)
{
	/* parts[0, ncommitted) are committed already (commit_done_parts) */
	size_t n0 = b->ncommitted, n = b->nparts - n0;
	struct snap_output **outs = calloc(n + 1, sizeof(*outs));
	if (!outs)
		return snap_job_fail(b->job, -ENOMEM, "out of memory");
	int r = 0;
	for (size_t i = 0; i < b->nparts && r == 0; i++) {
		char *path = NULL;
		if (i >= n0)
			outs[i - n0] = b->parts[i].out;
		if (b->s3) /* named at open (invariant 10) */
			continue;
		if (asprintf(&path, "%s/%s", b->dest, b->parts[i].final_name) < 0)
			r = snap_job_fail(b->job, -ENOMEM, "out of memory");
		else if ((r = snap_output_set_path(b->parts[i].out, path)) < 0)
			snap_job_fail(b->job, r, "out of memory");
		free(path);
	}
	outs[n] = b->manifest;
	for (size_t i = 0; i <= n && r == 0 && !b->s3; i++)
		if (snap_output_is_file(snap_output_path(outs[i]), &b->st))
			r = snap_job_fail(b->job, -EINVAL, "%s is the source: refusing to replace it",
					  snap_output_path(outs[i]));
	char *detail = NULL;
	if (r == 0 && (r = snap_output_commit_all(outs, n + 1, &detail)) < 0)
		snap_job_fail(b->job, r, "%s", out_error(b, r, detail));
	free(detail);
	free(outs);
	if (r == 0 && b->force)
		remove_stale_parts(b);
	return r;
}

static int alloc_pipeline(struct bundle *b)
{
	b->slots = calloc(b->nslots, sizeof(*b->slots));
	b->tar_sha1 = EVP_MD_CTX_new();
	b->part_sha1 = EVP_MD_CTX_new();
	b->aes = EVP_CIPHER_CTX_new();
	/* the parts' writer: its own thread, parts closed as they end (invariant 7) */
	bool seq_ok = snap_output_seq_new(true, true, &b->oseq) == 0;
	if (!b->slots || !b->tar_sha1 || !b->part_sha1 || !b->aes || !seq_ok)
		return snap_job_fail(b->job, -ENOMEM, "out of memory for the pipeline");
	for (unsigned i = 0; i < b->nslots; i++) {
		b->slots[i].in = malloc(b->chunk_size);
		b->slots[i].out = malloc(snap_deflate_bound(b->chunk_size));
		if (!b->slots[i].in || !b->slots[i].out)
			return snap_job_fail(b->job, -ENOMEM, "out of memory for the pipeline");
	}
	if (EVP_DigestInit_ex(b->tar_sha1, EVP_sha1(), NULL) != 1 ||
	    EVP_EncryptInit_ex(b->aes, EVP_aes_128_cbc(), NULL, b->key.key, b->key.iv) != 1)
		return snap_job_fail(b->job, -EIO, "cannot set up SHA-1 and AES-128-CBC");
	return 0;
}

/* Starts the workers (one deflate state each, invariant 8's nice) and the sink. */
static int start_pipeline(struct bundle *b)
{
	struct snap_pipeline_opts po = {
	    .nworkers = b->nworkers,
	    .nslots = b->nslots,
	    .nice_workers = WORKER_NICE,
	};
	return snap_pipeline_new(b->job, &po, &bundle_ops, b, &b->pipe);
}

/* Stops the pipeline (every thread joined, held reader buffers given back, invariant 5) and
 * keeps its waits for the timings; then waits for the parts' writer. */
static void stop_pipeline(struct bundle *b)
{
	if (b->pipe) {
		snap_pipeline_stats(b->pipe, &b->stats);
		b->pipe = snap_pipeline_free(b->pipe);
		b->t.produce_wait = (double)b->stats.acquire_wait / 1e9;
		b->t.writer_wait = (double)b->stats.sink_wait / 1e9;
	}
	if (b->oseq)
		(void)snap_output_seq_flush(b->oseq); /* its failure, if any, is recorded */
}

static void set_results(struct bundle *b)
{
	struct snap_job *job = b->job;
	uint64_t bundled = atomic_load(&b->written);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_TOTAL, b->src->size);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_READ, job->progress.bytes_read);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_SKIPPED, job->progress.bytes_skipped);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, bundled);
	snap_job_set_result_u64(job, SNAP_RESULT_PARTS, b->nparts);
	snap_job_set_result_u64(job, SNAP_RESULT_STREAM_BYTES, b->stream_len);
	snap_job_set_result_string(job, SNAP_RESULT_MANIFEST_PATH, b->manifest_path);
	snap_job_set_result_string(job, SNAP_RESULT_DIGEST, b->digest);
	snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH, b->dest);
	const struct timings *t = &b->t;
	char *json = NULL;
	if (asprintf(&json,
		     "{\"layout_wall\":%.6f,\"keys_wall\":%.6f,\"read_wait\":%.6f,"
		     "\"tar_sha1_cpu\":%.6f,\"copy_cpu\":%.6f,\"produce_wait\":%.6f,"
		     "\"deflate_cpu\":%.6f,\"aes_cpu\":%.6f,\"part_sha1_cpu\":%.6f,"
		     "\"write_wall\":%.6f,\"writer_wait\":%.6f,\"finish_wall\":%.6f,"
		     "\"total_wall\":%.6f,\"total_cpu\":%.6f,\"threads\":%u,\"level\":%d,\"chunk_"
		     "size\":%zu,"
		     "\"reader\":\"%s\",\"extents\":%zu,\"stream_bytes\":%" PRIu64
		     ",\"gzip_bytes\":%" PRIu64 ",\"bundled_bytes\":%" PRIu64 "}",
		     t->layout, t->keys, t->read_wait, t->tar_sha1, t->copy, t->produce_wait,
		     t->deflate, t->aes, t->part_sha1, t->write, t->writer_wait, t->finish,
		     t->total, t->cpu, b->nworkers, b->level, b->chunk_size,
		     snap_reader_uses_uring(b->reader) ? "io_uring" : "pread", b->nregions,
		     b->stream_len, b->gz_len, bundled) >= 0) {
		snap_job_set_result_string(job, SNAP_RESULT_TIMINGS, json);
		free(json);
	}
}

static void bundle_free(struct bundle *b)
{
	if (b->slots)
		for (unsigned i = 0; i < b->nslots; i++) {
			free(b->slots[i].in);
			free(b->slots[i].out);
		}
	free(b->slots);
	EVP_MD_CTX_free(b->tar_sha1);
	EVP_MD_CTX_free(b->part_sha1);
	EVP_CIPHER_CTX_free(b->aes);
	b->oseq = snap_output_seq_free(b->oseq);
	for (size_t i = 0; i < b->nparts; i++) {
		snap_output_free(b->parts[i].out);
		free(b->parts[i].final_name);
	}
	snap_output_free(b->manifest);
	free(b->parts);
	snap_bundle_signer_clear(&b->signer);
	OPENSSL_cleanse(&b->key, sizeof(b->key));
	snap_source_close(&b->source);
	free(b->regions);
	free(b->dest);
	free(b->name);
	free(b->manifest_path);
	free(b->bucket);
	free(b->prefix);
}

int snap_bundle_run(struct snap_job *job)
{
	struct bundle b = {.job = job};
	char *user = NULL;
	uint64_t start = snap_now_ns(), cpu_start = snap_process_cpu_ns();

	int r = configure(&b);
	if (r >= 0)
		r = snap_bundle_manifest_inputs(job, &user);
	if (r >= 0 && !b.s3)
		snap_output_reclaim(b.dest, b.name); /* debris of killed runs of this bundle */
	if (r >= 0 && !b.force)
		r = check_existing(&b);
	uint64_t t0 = snap_now_ns();
	if (r >= 0)
		r = load_keys(&b);
	b.t.keys = secs_since(t0);
	if (r >= 0)
		r = open_source(&b);
	if (r >= 0 && b.s3) {
		b.name_count = part_count_bound(&b);
		/* a single PUT's buffer grows by doubling: at most twice the part, within the
		 * 32 MiB of a buffered body; half the budget for the parts waiting */
		uint64_t held = 2 * b.part_size < (1u << 20) ? (1u << 20) : 2 * b.part_size;
		if (held > SNAP_S3_MAX_BUFFERED_PART)
			held = SNAP_S3_MAX_BUFFERED_PART;
		b.window = (size_t)(snap_s3_client_budget(b.s3) / 2 / held);
		if (b.window < 2)
			b.window = 2;
		snap_debug("part keys padded for at most %" PRIu64 " parts", b.name_count);
	}
	if (r >= 0)
		r = alloc_pipeline(&b);
	if (r >= 0 && snap_job_cancelled(job))
		r = -ECANCELED;
	if (r < 0)
		goto out;

	snap_job_set_stage(job, SNAP_STAGE_DATA);
	r = start_pipeline(&b);
	if (r >= 0)
		r = produce(&b);
	if (r >= 0)
		r = snap_pipeline_finish(b.pipe);
	stop_pipeline(&b);
	/* the sink's or a worker's failure is the root cause when there is one
	 * (the run thread may have seen only the cancellation that followed) */
	if (r < 0 && job->error < 0)
		r = job->error;
	if (r < 0)
		goto out;

	uint8_t md[20];
	unsigned mdlen = 0;
	if (EVP_DigestFinal_ex(b.tar_sha1, md, &mdlen) != 1) {
		r = snap_job_fail(job, -EIO, "SHA-1 of the tar stream failed");
		goto out;
	}
	snap_hex(b.digest, md, 20);
	b.t.deflate = (double)atomic_load(&b.deflate_ns) / 1e9;

	snap_job_set_stage(job, SNAP_STAGE_FINISH);
	t0 = snap_now_ns();
	for (size_t i = 0; i < b.nparts && r >= 0 && !b.s3; i++) {
		r = snap_bundle_part_name(b.name, i, b.nparts, &b.parts[i].final_name);
		if (r < 0)
			snap_job_fail(job, r, "out of memory");
	}
	if (r >= 0)
		r = write_manifest(&b, user);
	if (r >= 0 && snap_job_cancelled(job))
		r = -ECANCELED;
	b.committing = r >= 0;
	if (r >= 0)
		r = commit_outputs(&b);
	b.t.finish = secs_since(t0);
	b.t.total = secs_since(start);
	b.t.cpu = (double)(snap_process_cpu_ns() - cpu_start) / 1e9;
	job->progress.bytes_written = atomic_load(&b.written);
	if (r >= 0)
		set_results(&b);
out:
	stop_pipeline(&b);
	if (r < 0)
		remove_outputs(&b);
	if (r == -ECANCELED)
		snap_job_fail(job, r, CANCELLED_MSG);
	free(user);
	bundle_free(&b);
	return r;
}
