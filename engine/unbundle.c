// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * unbundle.c - SNAP_JOB_UNBUNDLE and SNAP_JOB_VERIFY_BUNDLE: a classic bundle (manifest +
 * parts, docs/classic-bundle-format.md) back to an image file or block device, or every check
 * without writing.
 *
 * Invariants:
 *  1. Nothing from the bundle is trusted before it is checked: the manifest is parsed by
 *     formats/manifest-read.c (no DTD, no entities) and its signature verified with the user
 *     certificate when one is given, before any part is read; each part's SHA-1 is verified
 *     on the whole part in memory by its worker before that worker decrypts it, and the
 *     parts' sink inflates a part only after every part before it was verified too (pipeline.h
 *     invariant 1); the CBC chaining block a worker takes from the part before is only
 *     ciphertext (SNAP_PARAM_NO_VERIFY turns the digest and signature checks off, only on
 *     request).
 *  2. Parts are read in index order from the parts' source (bundle-parts.h: a directory or
 *     an S3 prefix, every part found and sized up front, S3 parts fetched ahead, the CBC
 *     chaining); manifest-read guarantees document order = index order, plain file names and
 *     parts/@count. A missing, short or damaged part is named.
 *  2a. Parts and manifest may be in S3 (s3://BUCKET/KEY, s3/s3.h; bundle-parts.h invariant
 *     3): a fetched body becomes the slot's buffer and goes through the same pipeline as a
 *     local part, so invariant 1's digest check holds for it unchanged.
 *  3. The output is opened (temporary name, output.h) with the manifest's size before
 *     streaming and committed only after: the tar stream ended properly with exactly one
 *     member of that size, its SHA-1 equals the manifest digest, the gzip CRC and length
 *     matched, the PKCS#7 padding is valid, and the part sizes add up to bundled_size. Any
 *     failure or cancellation frees the output uncommitted, which removes it.
 *  4. The data stage runs on two chained instances of the pipeline (pipeline.h), every buffer
 *     allocated when the job starts. The parts' pipeline (pipe), one slot per part: the run
 *     thread reads parts in order into slots, chained (snap_bundle_parts_read: each slot gets
 *     the CBC IV of its body and the ciphertext block straddling the part before, if any);
 *     workers verify and decrypt whole parts in any order (unbundle_work); its sink strips the
 *     padding of the last part and inflates (unbundle_sink, inflate_part) into the slots of
 *     the tar pipeline. Between snap_pipeline_new and snap_pipeline_finish the parts' sink
 *     alone owns the inflater and the tar slot it fills (tcur); the run thread owns the
 *     parts' source (its chaining, what was read) and the job's progress.
 *  5. The tar pipeline (tpipe, opts.inner, no workers, TAR_SLOTS slots of TAR_BUF bytes) is
 *     filled by the parts' sink: a tar slot moves FREE -> FILLING (tar_next, acquire: it
 *     becomes tcur) -> DONE (tar_next when full, or unbundle_sink_end for the last one,
 *     submit) -> SINKING -> FREE (tar_sink: the tar stream's SHA-1, the tar reader, whose
 *     callbacks hand data runs to the image writer (image-writer.h: zero blocks as holes) and
 *     its output stream, whose thread writes them in order, O_DIRECT where the target allows:
 *     output.h). Between its snap_pipeline_new and snap_pipeline_finish the tar sink alone
 *     owns the tar reader, the tar digest and the image writer (the output stream and the
 *     counters of what it wrote). The run thread creates it first and frees it
 *     last: it finishes the parts' pipeline (whose sink_end submitted the last tar slot), then
 *     the tar pipeline (unbundle_data); after a failure it only frees it, since a tar slot may
 *     be left FILLING.
 *  6. The first failure wins (snap_pipeline_fail on either pipeline records it on the job, on
 *     any thread) and stops both: a failure of the parts' pipeline makes the run thread skip
 *     the tar pipeline's finish and free it at once; a failure of the tar sink comes back
 *     from the parts' sink's next acquire (tar_next), which returns it and so stops the
 *     parts' pipeline, or from the tar pipeline's finish. A cancellation is noticed by the run
 *     thread's waits (and by the parts' sink's waits for a tar slot, which only poll it) and
 *     recorded by the run thread with the offset reached (unbundle_data).
 *  7. Progress is reported from the run thread only: a sink (the tar sink, or the parts' sink
 *     when verifying without a key) publishes what it covered, wrote and skipped (atomics,
 *     publish), unbundle_progress (both pipelines' ops->progress) copies that into the job
 *     while the run thread waits in either pipeline's acquire or finish; the parts' sink's
 *     waits for a tar slot report nothing (the tar pipeline is inner).
 *  8. Progress over what is read (struct snap_progress bytes_data): bytes_read counts the bytes
 *     of the parts read or fetched (the manifest not), and bytes_data is set once, before the
 *     data stage, to the parts' sizes that snap_bundle_parts_open found, so bytes_read ends
 *     equal to it; a part that changed size meanwhile fails the job (its digest, or the
 *     parts' sum against bundled_size).
 *
 * State transitions (snap_unbundle_run):
 *  1. prepare: read (or fetch: snap_bundle_manifest_fetch) and parse the manifest, verify the
 *     signature (verify_signature), decrypt key and IV (unwrap_key), open the parts' source,
 *     which finds and sizes every part (snap_bundle_parts_open; their sizes are bytes_data),
 *     open the output, allocate the slots and start the tar pipeline, then the parts'
 *     (unbundle_start)
 *  2. data: read the parts, chained, into slots (snap_bundle_parts_read, unbundle_data),
 *     workers verify and decrypt them (unbundle_work), the parts' sink inflates into tar slots
 *     (unbundle_sink, unbundle_sink_end), the tar sink hashes, parses and writes (tar_sink);
 *     the run thread finishes the parts' pipeline, then the tar pipeline
 *  3. verify: tar end, digest, sizes
 *  4. finish: snap_output_commit, or snap_output_free without commit on any failure
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "bundle-keys.h"
#include "bundle-manifest.h"
#include "bundle-parts.h"
#include "gzip-chunk.h"
#include "image-writer.h"
#include "job-internal.h"
#include "util.h"
#include "log.h"
#include "manifest-read.h"
#include "output.h"
#include "pipeline.h"
#include "s3.h"
#include "tar-reader.h"

#define TAR_BUF (4u << 20)	 /* inflated bytes per tar slot */
#define TAR_SLOTS 4		 /* slots of the tar pipeline */
#define SLOT_BUDGET (256u << 20) /* part buffers in all, beyond the minimum of MIN_SLOTS */
#define MIN_SLOTS 3
/* output stream buffers: the tar sink copies data runs into them, the stream's thread writes
 * them (O_DIRECT where the target allows it: output.h invariant 5) */
#define OUT_BUF (4u << 20)
#define OUT_NBUFS 3
/* every buffer of an unbundle from S3, within the 256 MiB of peak RSS the S3 jobs keep to */
#define S3_TOTAL_BUDGET (216u << 20)

/* What a slot of the tar pipeline holds: inflated tar stream bytes, data[0, len). */
struct tar_slot {
	uint8_t *data;
	size_t len;
};

struct unbundle {
	struct snap_job *job;
	const struct snap_manifest_doc *m;
	struct snap_bundle_parts *parts; /* the source (bundle-parts.h); the run thread reads it */
	bool verify_digests;
	bool decrypt; /* false: verify without a key, parts only */

	struct snap_pipeline *pipe;  /* parts (invariant 4) */
	struct snap_pipeline *tpipe; /* tar slots, filled by pipe's sink (invariant 5) */
	struct snap_bundle_part_buf *slots; /* what a slot of pipe holds: one part */
	unsigned nslots;
	struct tar_slot *tslots;
	uint8_t key[16], iv[16];

	/* the parts' sink (invariant 4) */
	struct snap_inflate *inflate;
	uint64_t gz_in; /* compressed bytes consumed, for error offsets */
	bool any;
	struct tar_slot *tcur; /* the tar slot it fills (FILLING in tpipe), or NULL */

	/* the tar sink (invariant 5) */
	EVP_MD_CTX *tar_sha;
	struct snap_tar_reader *tar;
	struct snap_image_writer img; /* the member's bytes into the output (image-writer.h) */
	uint64_t stream_bytes;
	bool member_seen;
	/* published by the sinks for the run thread's progress (invariant 7) */
	_Atomic uint64_t pub_done, pub_written, pub_skipped;
};

/* ---------------------------------------------------------------------------------------- */
/* Workers: each part's SHA-1, then AES-128-CBC decryption of the whole part in place        */

/* The pipeline's work (any order, any worker): verify the part, then decrypt it. */
static int unbundle_work(void *ctx, void *state, unsigned i)
{
	struct unbundle *p = ctx;
	struct snap_bundle_part_buf *b = &p->slots[i];
	int r;
	if (p->verify_digests && (r = snap_bundle_parts_check(p->parts, p->pipe, b)) < 0)
		return r;
	if (!p->decrypt)
		return 0;
	if ((b->head_len && snap_bundle_cbc_decrypt(state, p->key, b->head_iv, b->head, 16) < 0) ||
	    snap_bundle_cbc_decrypt(state, p->key, b->iv, b->data + b->off, b->len - b->off) < 0)
		return snap_pipeline_fail(p->pipe, -EIO, "AES-128-CBC decryption failed: %s",
					  snap_ossl_reason());
	return 0;
}

static int unbundle_worker_init(void *ctx, unsigned i, void **ret)
{
	(void)ctx;
	(void)i;
	*ret = EVP_CIPHER_CTX_new();
	return *ret ? 0 : -ENOMEM;
}

static void unbundle_worker_free(void *ctx, void *state)
{
	(void)ctx;
	EVP_CIPHER_CTX_free(state);
}

/* ---------------------------------------------------------------------------------------- */
/* Sink: padding, inflate (ISA-L, gzip wrapper: header, CRC-32 and length checked), tar      */

static int on_member(void *ud, const char *name, uint64_t size)
{
	struct unbundle *p = ud;
	p->member_seen = true;
	if (size != p->m->size)
		return snap_pipeline_fail(p->tpipe, -EUCLEAN,
					  "the tar member '%s' is %llu bytes but the manifest size "
					  "is %llu",
					  name, (unsigned long long)size,
					  (unsigned long long)p->m->size);
	snap_debug("tar member '%s', %llu bytes", name, (unsigned long long)size);
	return 0;
}

/* Data runs, into the image (image-writer.h: zero blocks become holes). */
static int on_data(void *ud, uint64_t off, const uint8_t *buf, size_t len)
{
	struct unbundle *p = ud;
	return snap_image_writer_data(&p->img, off, buf, len);
}

/* Run thread: what the sinks counted, for the progress report (invariant 7). */
static void unbundle_progress(void *ctx)
{
	struct unbundle *p = ctx;
	p->job->progress.bytes_read = p->parts->bytes_read;
	p->job->progress.bytes_done = atomic_load(&p->pub_done);
	p->job->progress.bytes_written = atomic_load(&p->pub_written);
	p->job->progress.bytes_skipped = atomic_load(&p->pub_skipped);
}

static void publish(struct unbundle *p)
{
	atomic_store(&p->pub_done, p->img.bytes_done);
	atomic_store(&p->pub_written, p->img.bytes_written);
	atomic_store(&p->pub_skipped, p->img.bytes_skipped);
}

/* The tar pipeline's sink (in order): the tar stream's SHA-1, then the tar reader, whose
 * callbacks write. */
static int tar_sink(void *ctx, unsigned i)
{
	struct unbundle *p = ctx;
	const struct tar_slot *t = &p->tslots[i];
	if (p->verify_digests && !EVP_DigestUpdate(p->tar_sha, t->data, t->len))
		return snap_pipeline_fail(p->tpipe, -EIO, "SHA-1 failed: %s", snap_ossl_reason());
	p->stream_bytes += t->len;
	int r = snap_tar_reader_push(p->tar, t->data, t->len);
	if (r < 0)
		return snap_pipeline_fail(p->tpipe, r, "%s", snap_tar_reader_error(p->tar));
	publish(p);
	return 0;
}

static const struct snap_pipeline_ops tar_ops = {
    .sink = tar_sink,
    .progress = unbundle_progress, /* its finish is the run thread's */
};

/* The parts' sink: hands the tar slot it filled to the tar pipeline and takes the next one. A
 * failure of the tar pipeline comes back from acquire (recorded there) and stops this one. */
static int tar_next(struct unbundle *p)
{
	if (p->tcur) {
		snap_pipeline_submit(p->tpipe, false);
		p->tcur = NULL;
	}
	unsigned i;
	uint64_t seq;
	int r = snap_pipeline_acquire(p->tpipe, &i, &seq);
	if (r < 0)
		return r;
	p->tcur = &p->tslots[i];
	p->tcur->len = 0;
	return 0;
}

/* Inflates one part's plaintext, the head block first, then the body. */
static int inflate_part(struct unbundle *p, struct snap_bundle_part_buf *in)
{
	int r, ir = 0;
	const char *why = NULL;
	for (int piece = 0; piece < 2; piece++) {
		const uint8_t *src = piece == 0 ? in->head : in->data + in->off;
		size_t len = piece == 0 ? in->head_len : in->len - in->off;
		bool more = len > 0;
		while (more) {
			/* the next member, if one ended; trailing junk fails (snap_gunzip_more) */
			if ((ir = snap_gunzip_more(p->inflate, src, len, &why)) <= 0) {
				if (ir == 0)
					break;
				goto fail;
			}
			if ((!p->tcur || p->tcur->len == TAR_BUF) && (r = tar_next(p)) < 0)
				return r;
			struct tar_slot *t = p->tcur;
			size_t before = len, n;
			bool end;
			ir = snap_gunzip_step(p->inflate, &src, &len, t->data + t->len,
					      TAR_BUF - t->len, &n, &end, &why);
			t->len += n;
			p->gz_in += before - len;
			if (ir < 0)
				goto fail;
			p->any = true;
			/* a full output buffer may leave output inside ISA-L: call again */
			more = end ? len > 0 : t->len == TAR_BUF || len > 0;
		}
	}
	return 0;
fail:
	return snap_pipeline_fail(p->pipe, ir, "part %zu: %s (compressed offset %llu)", in->part,
				  why, (unsigned long long)p->gz_in);
}

/* The pipeline's sink (in part order). */
static int unbundle_sink(void *ctx, unsigned i)
{
	struct unbundle *p = ctx;
	struct snap_bundle_part_buf *b = &p->slots[i];
	int r;
	if (!p->decrypt) {
		p->img.bytes_done += b->len; /* no tar sink; not chained: the whole part */
		publish(p);
		return 0;
	}
	if (b->last) {
		/* the run thread chained every part before it submitted the last */
		if (p->parts->carry_len)
			return snap_pipeline_fail(
			    p->pipe, -EUCLEAN,
			    "the encrypted stream (%llu bytes) is not a whole "
			    "number of AES blocks: a part is truncated",
			    (unsigned long long)p->parts->bytes_read);
		/* the last part's PKCS#7 padding (snap_bundle_cbc_unpad) */
		size_t body = b->len - b->off;
		r = snap_bundle_cbc_unpad(b->head, &b->head_len, b->data + b->off, &body);
		if (r == -EUCLEAN)
			return snap_pipeline_fail(
			    p->pipe, -EUCLEAN,
			    "the encrypted stream is shorter than one AES block");
		if (r < 0)
			return snap_pipeline_fail(p->pipe, -EBADMSG,
						  "part %zu: bad PKCS#7 padding at the end of the "
						  "encrypted stream (wrong "
						  "key or IV, or a damaged last part)",
						  b->part);
		b->len = b->off + body;
	}
	return inflate_part(p, b);
}

/* After the last part: the gzip stream must have ended; the last tar slot goes out. */
static int unbundle_sink_end(void *ctx)
{
	struct unbundle *p = ctx;
	if (!p->decrypt)
		return 0;
	if (!snap_gunzip_ended(p->inflate))
		return snap_pipeline_fail(
		    p->pipe, -EUCLEAN,
		    p->any ? "the gzip stream is truncated (compressed offset %llu)"
			   : "the encrypted stream holds no data (compressed offset %llu)",
		    (unsigned long long)p->gz_in);
	/* the tar pipeline's last slot: the run thread finishes it after this pipeline */
	if (p->tcur) {
		snap_pipeline_submit(p->tpipe, false);
		p->tcur = NULL;
	}
	return 0;
}

static const struct snap_pipeline_ops unbundle_ops = {
    .worker_init = unbundle_worker_init,
    .worker_free = unbundle_worker_free,
    .work = unbundle_work,
    .sink = unbundle_sink,
    .sink_end = unbundle_sink_end,
    .progress = unbundle_progress,
};

/* ---------------------------------------------------------------------------------------- */
/* Preparation                                                                               */

static void unbundle_free(struct unbundle *p)
{
	/* the parts first: their sink fills the tar slots (invariant 5) */
	p->pipe = snap_pipeline_free(p->pipe);
	p->tpipe = snap_pipeline_free(p->tpipe);
	p->parts = snap_bundle_parts_free(p->parts); /* cancels what was fetched ahead */
	for (unsigned i = 0; p->slots && i < p->nslots; i++)
		free(p->slots[i].data);
	free(p->slots);
	for (unsigned i = 0; p->tslots && i < TAR_SLOTS; i++)
		free(p->tslots[i].data);
	free(p->tslots);
	snap_inflate_free(p->inflate);
	EVP_MD_CTX_free(p->tar_sha);
	snap_tar_reader_free(p->tar);
	OPENSSL_cleanse(p->key, sizeof(p->key));
}

/* Every buffer of the data stage (invariant 4), then the pipelines' threads: the tar pipeline
 * (no workers, its sink alone), then the parts' (one worker per thread, enough slots to keep
 * them and the sink busy within SLOT_BUDGET), whose sink fills the tar pipeline. */
static int unbundle_start(struct unbundle *p, size_t part_cap)
{
	unsigned nworkers = snap_job_threads(p->job);
	/* parts from S3: the bodies fetched ahead share S3_TOTAL_BUDGET with the slots, and the
	 * tar slots and output buffers come off it too, so the whole stays within it (invariant
	 * 2a) */
	size_t room = SLOT_BUDGET;
	if (p->parts->s3) {
		size_t other =
		    (size_t)p->parts->ahead * part_cap + TAR_SLOTS * TAR_BUF + OUT_NBUFS * OUT_BUF;
		room = other < S3_TOTAL_BUDGET ? S3_TOTAL_BUDGET - other : 0;
	}
	size_t budget = room / (part_cap ? part_cap : 1);
	p->nslots = nworkers + 2 < budget ? nworkers + 2 : (unsigned)budget;
	if (p->nslots < MIN_SLOTS)
		p->nslots = MIN_SLOTS;
	p->slots = calloc(p->nslots, sizeof(*p->slots));
	if (!p->slots)
		goto nomem;
	/* a part from S3 is read into its own buffer, which the slot takes (invariant 2a) */
	for (unsigned i = 0; i < p->nslots && !p->parts->s3; i++) {
		p->slots[i].cap = part_cap;
		p->slots[i].data = malloc(part_cap ? part_cap : 1);
		if (!p->slots[i].data)
			goto nomem;
	}
	if (p->decrypt) {
		struct snap_tar_ops ops = {.member = on_member, .data = on_data};
		(void)snap_inflate_new(&p->inflate); /* stays NULL when out of memory */
		p->tslots = calloc(TAR_SLOTS, sizeof(*p->tslots));
		p->tar_sha = EVP_MD_CTX_new();
		if (!p->inflate || !p->tslots || !p->tar_sha ||
		    snap_tar_reader_new(&ops, p, &p->tar) < 0 ||
		    !EVP_DigestInit_ex(p->tar_sha, EVP_sha1(), NULL))
			goto nomem;
		for (unsigned i = 0; i < TAR_SLOTS; i++)
			if (!(p->tslots[i].data = malloc(TAR_BUF)))
				goto nomem;
		snap_gunzip_begin(p->inflate);
		struct snap_pipeline_opts to = {.nslots = TAR_SLOTS, .inner = true};
		int r = snap_pipeline_new(p->job, &to, &tar_ops, p, &p->tpipe);
		p->img.pipe = p->tpipe;
		if (r < 0)
			return r;
	}
	struct snap_pipeline_opts po = {.nworkers = nworkers, .nslots = p->nslots};
	return snap_pipeline_new(p->job, &po, &unbundle_ops, p, &p->pipe);
nomem:
	return snap_job_fail(p->job, -ENOMEM, "cannot allocate buffers for %zu-byte parts",
			     part_cap);
}

/* --debug: where the pipelines' threads waited and worked, in ms. */
static void debug_stats(const struct unbundle *p)
{
	struct snap_pipeline_stats a, t = {0};
	if (!p->pipe)
		return;
	snap_pipeline_stats(p->pipe, &a);
	if (p->tpipe)
		snap_pipeline_stats(p->tpipe, &t);
	snap_debug("parts: acquire wait %llu ms, finish wait %llu ms, work %llu ms, worker idle "
		   "%llu ms, sink (inflate) %llu ms, sink wait %llu ms; tar: acquire wait %llu ms, "
		   "sink (hash, parse, write) %llu ms, sink wait %llu ms",
		   (unsigned long long)(a.acquire_wait / 1000000),
		   (unsigned long long)(a.finish_wait / 1000000),
		   (unsigned long long)(a.work_busy / 1000000),
		   (unsigned long long)(a.worker_idle / 1000000),
		   (unsigned long long)(a.sink_busy / 1000000),
		   (unsigned long long)(a.sink_wait / 1000000),
		   (unsigned long long)(t.acquire_wait / 1000000),
		   (unsigned long long)(t.sink_busy / 1000000),
		   (unsigned long long)(t.sink_wait / 1000000));
}

/* Run thread: reads the parts in order into slots (invariant 2) and chains them; the
 * pipeline's waits report progress and notice a cancellation. Then finishes the parts, whose
 * sink submitted the last tar slot, then the tar pipeline; a failure of either stopped the
 * parts' pipeline (invariant 6), and the tar pipeline, perhaps with a slot left FILLING, is
 * only freed then. */
static int unbundle_data(struct unbundle *p)
{
	int r = 0;
	for (size_t i = 0; i < p->m->nparts && r == 0; i++) {
		unsigned si;
		uint64_t seq;
		if ((r = snap_pipeline_acquire(p->pipe, &si, &seq)) < 0)
			break;
		struct snap_bundle_part_buf *b = &p->slots[si];
		if ((r = snap_bundle_parts_read(p->parts, p->pipe, i, b)) < 0)
			break;
		snap_pipeline_submit(p->pipe, false);
		unbundle_progress(p);
		snap_job_report(p->job, false);
	}
	if (r == 0)
		r = snap_pipeline_finish(p->pipe);
	if (r == 0 && p->tpipe)
		r = snap_pipeline_finish(p->tpipe); /* reports while the last tar slots go out */
	debug_stats(p);
	if (r < 0) {
		/* stops both now, the parts first: their sink may still use the tar pipeline */
		p->pipe = snap_pipeline_free(p->pipe);
		p->tpipe = snap_pipeline_free(p->tpipe);
	}
	if (r == -ECANCELED)
		/* the pipeline notices a cancellation without a message; the first failure wins */
		snap_job_fail(p->job, r,
			      p->img.out ? "cancelled at image offset %llu; the partial output was "
					   "removed"
					 : "cancelled at offset %llu",
			      (unsigned long long)atomic_load(&p->pub_done));
	return r;
}

static int output_path(struct snap_job *job, const struct snap_manifest_doc *m, char **ret)
{
	const char *o = snap_job_string(job, SNAP_SPARAM_OUTPUT);
	if (o) {
		*ret = strdup(o);
		return *ret ? 0 : -ENOMEM;
	}
	const char *n = m->name;
	if (!*n || strchr(n, '/') || !strcmp(n, ".") || !strcmp(n, ".."))
		return snap_job_fail(job, -EINVAL,
				     "the manifest's image name '%s' is not a plain "
				     "file name; give the output with -o",
				     n);
	const char *d = snap_job_string(job, SNAP_SPARAM_OUTPUT_DIR);
	if (asprintf(ret, "%s/%s", d ? d : ".", n) < 0)
		return -ENOMEM;
	return 0;
}

int snap_unbundle_run(struct snap_job *job)
{
	const bool write = job->kind == SNAP_JOB_UNBUNDLE;
	const char *mpath = snap_job_string(job, SNAP_SPARAM_MANIFEST);
	const char *key_path = snap_job_string(job, SNAP_SPARAM_PRIVATE_KEY);
	const char *cert_path = snap_job_string(job, SNAP_SPARAM_CERT);
	const bool no_verify = snap_job_param(job, SNAP_PARAM_NO_VERIFY, 0) != 0;
	if (!mpath)
		return snap_job_fail(job, -EINVAL, "no manifest given");
	if (write && !key_path)
		return snap_job_fail(job, -EINVAL, "unbundling needs the user private key");

	struct unbundle p = {.job = job, .verify_digests = !no_verify, .decrypt = key_path != NULL};
	struct snap_manifest_doc *m = NULL;
	struct snap_s3_client *s3 = NULL; /* the manifest's */
	char *outpath = NULL, *detail = NULL;
	char *mbuf = NULL;
	size_t mlen = 0;
	int r;

	/* 1. prepare */
	const char *sd = snap_job_string(job, SNAP_SPARAM_SOURCE_DIR);
	if ((snap_s3_is_url(mpath) || (sd && snap_s3_is_url(sd))) &&
	    (r = snap_job_s3_client(job, &s3)) < 0)
		goto out;
	if (snap_s3_is_url(mpath))
		r = snap_bundle_manifest_fetch(job, s3, mpath, &mbuf, &mlen);
	else
		r = snap_job_read_file(job, mpath, "manifest", MAX_MANIFEST_FILE, &mbuf, &mlen);
	if (r < 0)
		goto out;
	r = snap_manifest_read((const uint8_t *)mbuf, mlen, &m, &detail);
	if (r < 0) {
		snap_job_fail(job, r, "%s: %s", mpath, detail ? detail : snap_strerror(r));
		goto out;
	}
	p.m = m;
	job->progress.bytes_total = p.decrypt ? m->size : m->bundled_size;
	if (no_verify) {
		snap_warn("--no-verify: part digests, the image digest and the signature are not "
			  "checked");
	} else if (cert_path) {
		if ((r = snap_bundle_manifest_verify(job, m, mpath, cert_path)) < 0)
			goto out;
		snap_info("manifest signature verified with %s", cert_path);
	} else {
		snap_debug("no certificate given: the manifest signature is not checked");
	}
	if (!write && snap_job_param(job, SNAP_PARAM_MANIFEST_ONLY, 0)) {
		/* inspect: the manifest alone */
		if ((r = snap_bundle_manifest_info(job, m)) < 0)
			goto out;
		snap_job_set_result_u64(job, SNAP_RESULT_PARTS, m->nparts);
		snap_job_set_result_string(job, SNAP_RESULT_DIGEST, m->digest_hex);
		snap_job_set_result_string(job, SNAP_RESULT_MANIFEST_PATH, mpath);
		job->progress.bytes_done = job->progress.bytes_total;
		r = 0;
		goto out;
	}
	if (p.decrypt && (r = snap_bundle_manifest_unwrap(job, m, key_path, NULL, p.key, p.iv)) < 0)
		goto out;
	/* the source: the parts found and sized (bundle-parts.h), chained when decrypting */
	if ((r = snap_bundle_parts_open(job, m, mpath, p.decrypt ? p.iv : NULL, &p.parts)) < 0)
		goto out;
	job->progress.bytes_data += snap_bundle_parts_total(p.parts); /* invariant 8 */
	if (write) {
		if ((r = output_path(job, m, &outpath)) < 0)
			goto out;
		free(detail);
		detail = NULL;
		r = snap_output_open(outpath, m->size, snap_output_job_flags(job), &p.img.out,
				     &detail);
		if (r < 0) {
			snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
			goto out;
		}
		if (p.decrypt && (r = snap_output_stream_new(p.img.out, OUT_BUF, OUT_NBUFS,
							     &p.img.ostream)) < 0) {
			snap_job_fail(job, r, "cannot start the output writer");
			goto out;
		}
	}

	if ((r = unbundle_start(&p, (size_t)p.parts->max)) < 0)
		goto out;

	/* 2. data */
	snap_job_set_stage(job, SNAP_STAGE_DATA);
	r = unbundle_data(&p);
	/* the sinks' counters are the run thread's again (invariants 4 and 5) */
	unbundle_progress(&p);
	if (r < 0)
		goto out;

	/* 3. verify */
	snap_job_set_stage(job, SNAP_STAGE_VERIFY);
	uint64_t total = snap_bundle_parts_total(p.parts);
	if (total != m->bundled_size) {
		r = snap_job_fail(job, -EUCLEAN,
				  "the parts hold %llu bytes but the manifest's "
				  "bundled_size is %llu",
				  (unsigned long long)total, (unsigned long long)m->bundled_size);
		goto out;
	}
	if (p.decrypt) {
		r = snap_tar_reader_finish(p.tar);
		if (r < 0) {
			snap_job_fail(job, r, "%s", snap_tar_reader_error(p.tar));
			goto out;
		}
		if (p.verify_digests) {
			uint8_t md[20];
			unsigned mdlen;
			char have[41];
			if (!EVP_DigestFinal_ex(p.tar_sha, md, &mdlen)) {
				r = snap_job_fail(job, -EIO, "SHA-1 failed: %s",
						  snap_ossl_reason());
				goto out;
			}
			snap_hex(have, md, 20);
			if (memcmp(md, m->digest, 20)) {
				r = snap_job_fail(job, -EBADMSG,
						  "invalid digest of the tar stream (%llu bytes): "
						  "expected %s, received %s",
						  (unsigned long long)p.stream_bytes, m->digest_hex,
						  have);
				goto out;
			}
		}
		if ((r = snap_image_writer_zero(&p.img, p.img.written_to,
						m->size - p.img.written_to)) < 0)
			goto out;
		job->progress.bytes_skipped = p.img.bytes_skipped;
		snap_job_set_result_u64(job, SNAP_RESULT_STREAM_BYTES, p.stream_bytes);
		snap_job_set_result_u64(job, SNAP_RESULT_BYTES_TOTAL, m->size);
		snap_job_set_result_u64(job, SNAP_RESULT_BYTES_WRITTEN,
					job->progress.bytes_written);
	}
	snap_job_set_result_u64(job, SNAP_RESULT_PARTS, m->nparts);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_READ, job->progress.bytes_read);

	snap_job_set_result_string(job, SNAP_RESULT_DIGEST, m->digest_hex);
	snap_job_set_result_string(job, SNAP_RESULT_MANIFEST_PATH, mpath);

	/* 4. finish */
	if (p.img.out) {
		snap_job_set_stage(job, SNAP_STAGE_FINISH);
		if (p.img.ostream && (r = snap_output_stream_flush(p.img.ostream)) < 0) {
			snap_image_writer_failed(&p.img, r, "write", p.img.written_to);
			goto out;
		}
		/* the last moment a cancellation can be honoured without a complete output */
		if (snap_job_cancelled(job)) {
			r = snap_job_fail(job, -ECANCELED, "cancelled; the output was removed");
			goto out;
		}
		free(detail);
		detail = NULL;
		r = snap_output_commit(p.img.out, &detail);
		if (r < 0) {
			snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
			goto out;
		}
		snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH,
					   snap_output_path(p.img.out));
	}
	job->progress.bytes_done = job->progress.bytes_total;
	r = 0;
out:
	/* the pipeline first (its sink feeds the stream), then the stream (its thread writes to
	 * the output until stopped) */
	p.pipe = snap_pipeline_free(p.pipe);
	p.tpipe = snap_pipeline_free(p.tpipe);
	p.img.ostream = snap_output_stream_free(p.img.ostream);
	/* without a commit this removes the temporary file (output.h invariant 1) */
	p.img.out = snap_output_free(p.img.out);
	unbundle_free(&p);
	snap_manifest_doc_free(m);
	free(mbuf);
	free(outpath);
	free(detail);
	return r;
}
