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
 *                           (bundle_sink; bundle_sink_end: gzip trailer, AES padding, last part;
 *                           the AES and the parts are bundle-output.c's)
 *   output sequence thread: stages -> parts (O_DIRECT; output.h Q1-Q4)
 *
 * The manifest's keys, inputs, building and signing are bundle-manifest.c's; where the bundle
 * goes, its parts and manifest as outputs, their commit and the parts already there are
 * bundle-output.c's (its invariants 1-3).
 *
 * Invariants:
 *  1. Memory is fixed when the job starts: nslots slots of chunk_size input (touched only for
 *     copied chunks) and snap_deflate_bound(chunk_size) output, the reader's buffers
 *     (nslots + 8 requests of chunk_size by default), the output sequence's 3 stages, one
 *     ISA-L level buffer per worker. Only the extent list and the part list grow with the
 *     source (O(extents), O(parts)), never its size.
 *  2. Slot s carries stream chunk seq where seq % nslots == s (pipeline.h invariant 1): the
 *     run thread fills it between snap_pipeline_acquire and snap_pipeline_submit, one worker
 *     deflates it, the sink writes it; the pipeline moves it on and hands it over in seq
 *     order, so the output is in stream order whatever order workers finish in.
 *  3. Exactly one chunk, the last, is compressed with final set (BFINAL); every other chunk
 *     ends on a flush boundary (gzip-chunk.h), so the concatenation is one gzip member.
 *  4. Nothing the job writes carries a final name before the end (bundle-output.c invariant 1).
 *  5. After a failure (or a cancellation) no thread starts new work (pipeline.h invariant 3);
 *     the run thread stops the pipeline (every worker and the sink joined, the slots' reader
 *     buffers given back) and waits for the parts' writer before it touches the outputs.
 *  6. The first failure wins (snap_job_fail): workers and the sink record theirs through
 *     snap_pipeline_fail, which also stops the pipeline, the sink with the
 *     parts' writer's failure (snap_output_seq_error: part and offset); the run thread returns
 *     the recorded failure as the job's.
 *  7. Parts go through an output sequence with its own thread (bundle-output.c invariant 2).
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
 *  10. A destination s3://BUCKET/PREFIX/ puts the same bytes into objects (bundle-output.c
 *     invariant 3), part keys padded for the most parts the source can give (part_count_bound).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "bundle-manifest.h"
#include "bundle-output.h"
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
	char *name;
	int level;
	unsigned nworkers;
	size_t chunk_size;

	/* where it goes and the writer of the parts and the manifest (bundle-output.c) */
	struct snap_bundle_output o;

	/* source */
	struct snap_source source; /* src, layout and reader below are its */
	struct snap_src *src;
	struct snap_layout *layout;
	struct snap_reader *reader;
	struct snap_tar_region *regions;
	size_t nregions;
	struct stat st;

	/* the keys the manifest is signed and wrapped with (bundle-manifest.c) */
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

	/* sink state: the gzip member */
	uint32_t crc;
	uint64_t gz_in; /* bytes of tar stream compressed so far */

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
		return snap_pipeline_fail(b->pipe, r,
					  "deflate of tar stream bytes %" PRIu64 "+%zu failed: %s",
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
		if ((r = snap_bundle_output_put(&b->o, hdr, sizeof(hdr))) < 0)
			return r;
	}
	b->crc = s->seq == 0 ? s->crc : snap_crc32_combine(b->crc, s->crc, s->in_len);
	b->gz_in += s->in_len;
	return snap_bundle_output_put(&b->o, s->out, s->out_len);
}

/* The sink's last words, after the final chunk: the gzip trailer, the AES padding, the last
 * part closed, and every stage written (or the parts' writer's failure recorded). */
static int bundle_sink_end(void *ctx)
{
	struct bundle *b = ctx;
	uint8_t trl[SNAP_GZIP_TRAILER_SIZE];
	snap_gzip_trailer(trl, b->crc, b->gz_in);
	int r = snap_bundle_output_put(&b->o, trl, sizeof(trl));
	if (r >= 0)
		r = snap_bundle_output_finish(&b->o);
	int fr = snap_output_seq_flush(b->o.oseq); /* every part written */
	b->t.write = (double)snap_output_seq_write_ns(b->o.oseq) / 1e9;
	if (r >= 0 && fr < 0)
		r = snap_bundle_output_seq_failed(&b->o, fr);
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
	b->job->progress.bytes_written = atomic_load(&b->o.written);
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
	p->bytes_written = atomic_load(&b->o.written);
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
	return (ct + b->o.part_size - 1) / b->o.part_size;
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
				return snap_pipeline_fail(b->pipe, r, "%s",
							  *d ? d : snap_strerror(r));
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

static int configure(struct bundle *b)
{
	struct snap_job *job = b->job;
	b->image = snap_job_string(job, SNAP_SPARAM_IMAGE);
	if ((!b->image || !*b->image) && job->nsources == 1)
		b->image = job->sources[0].path;
	if (!b->image || !*b->image)
		return snap_job_fail(job, -EINVAL, "no image given");
	const char *dest = snap_job_string(job, SNAP_SPARAM_DESTINATION);
	b->o.dest = strdup(dest && *dest ? dest : "/tmp");
	const char *prefix = snap_job_string(job, SNAP_SPARAM_PREFIX);
	if (prefix && *prefix) {
		b->name = strdup(prefix);
	} else {
		const char *base = strrchr(b->image, '/');
		b->name = strdup(base ? base + 1 : b->image);
	}
	if (!b->o.dest || !b->name)
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
	b->o.job = job;
	b->o.name = b->name;
	int r = snap_bundle_output_where(&b->o);
	if (r < 0)
		return r;

	int64_t level = snap_job_param(job, SNAP_PARAM_LEVEL, LEVEL_DEFAULT);
	if (level < 0 || level > SNAP_DEFLATE_MAX_LEVEL)
		return snap_job_fail(job, -EINVAL, "compression level %" PRId64 " is not 0-3",
				     level);
	b->level = (int)level;
	int64_t ps = snap_job_param(job, SNAP_PARAM_PART_SIZE, (int64_t)PART_SIZE_DEFAULT);
	if (ps < 16)
		return snap_job_fail(job, -EINVAL, "part size %" PRId64 " is too small", ps);
	b->o.part_size = (uint64_t)ps;
	int64_t cs = snap_job_param(job, SNAP_PARAM_CHUNK_SIZE, (int64_t)CHUNK_SIZE_DEFAULT);
	if (cs < (int64_t)CHUNK_SIZE_MIN || cs > (int64_t)CHUNK_SIZE_MAX)
		return snap_job_fail(job, -EINVAL, "chunk size %" PRId64 " is not 64 KiB-64 MiB",
				     cs);
	b->chunk_size = (size_t)cs;
	b->o.force = snap_job_param(job, SNAP_PARAM_FORCE, 0) != 0;
	b->nworkers = snap_job_threads(job);
	if (b->nworkers > 256)
		b->nworkers = 256;
	b->nslots = 2 * b->nworkers + 2;
	return 0;
}

/* The manifest, built and signed (bundle-manifest.c), written through the output sequence. */
static int write_manifest(struct bundle *b, const char *user)
{
	struct snap_job *job = b->job;
	char *doc = NULL;
	size_t dlen = 0;
	int r = snap_bundle_manifest_build(job, &b->signer, &b->o.key, b->name, user, b->src->size,
					   b->digest, b->o.parts, b->o.nparts, &doc, &dlen);
	if (r >= 0)
		r = snap_bundle_output_manifest(&b->o, doc, dlen);
	free(doc);
	return r;
}

static int alloc_pipeline(struct bundle *b)
{
	b->slots = calloc(b->nslots, sizeof(*b->slots));
	b->tar_sha1 = EVP_MD_CTX_new();
	if (!b->slots || !b->tar_sha1)
		return snap_job_fail(b->job, -ENOMEM, "out of memory for the pipeline");
	/* the parts' writer: the cipher, the parts' hash and the output sequence */
	int r = snap_bundle_output_alloc(&b->o);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < b->nslots; i++) {
		b->slots[i].in = malloc(b->chunk_size);
		b->slots[i].out = malloc(snap_deflate_bound(b->chunk_size));
		if (!b->slots[i].in || !b->slots[i].out)
			return snap_job_fail(b->job, -ENOMEM, "out of memory for the pipeline");
	}
	if (EVP_DigestInit_ex(b->tar_sha1, EVP_sha1(), NULL) != 1)
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
	int r = snap_pipeline_new(b->job, &po, &bundle_ops, b, &b->pipe);
	b->o.pipe = b->pipe; /* the sink's failures in the parts' writer */
	return r;
}

/* Stops the pipeline (every thread joined, held reader buffers given back, invariant 5) and
 * keeps its waits for the timings; then waits for the parts' writer. */
static void stop_pipeline(struct bundle *b)
{
	if (b->pipe) {
		snap_pipeline_stats(b->pipe, &b->stats);
		b->pipe = snap_pipeline_free(b->pipe);
		b->o.pipe = NULL;
		b->t.produce_wait = (double)b->stats.acquire_wait / 1e9;
		b->t.writer_wait = (double)b->stats.sink_wait / 1e9;
	}
	if (b->o.oseq)
		(void)snap_output_seq_flush(b->o.oseq); /* its failure, if any, is recorded */
}

static void set_results(struct bundle *b)
{
	struct snap_job *job = b->job;
	uint64_t bundled = atomic_load(&b->o.written);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_TOTAL, b->src->size);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_READ, job->progress.bytes_read);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_SKIPPED, job->progress.bytes_skipped);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, bundled);
	snap_job_set_result_u64(job, SNAP_RESULT_PARTS, b->o.nparts);
	snap_job_set_result_u64(job, SNAP_RESULT_STREAM_BYTES, b->stream_len);
	snap_job_set_result_string(job, SNAP_RESULT_MANIFEST_PATH, b->o.manifest_path);
	snap_job_set_result_string(job, SNAP_RESULT_DIGEST, b->digest);
	snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH, b->o.dest);
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
		     b->stream_len, b->o.gz_len, bundled) >= 0) {
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
	snap_bundle_output_clear(&b->o);
	snap_bundle_signer_clear(&b->signer);
	snap_source_close(&b->source);
	free(b->regions);
	free(b->name);
}

int snap_bundle_run(struct snap_job *job)
{
	struct bundle b = {.job = job};
	char *user = NULL;
	uint64_t start = snap_now_ns(), cpu_start = snap_process_cpu_ns();

	int r = configure(&b);
	if (r >= 0)
		r = snap_bundle_manifest_inputs(job, &user);
	if (r >= 0 && !b.o.s3)
		snap_output_reclaim(b.o.dest, b.name); /* debris of killed runs of this bundle */
	if (r >= 0) /* with --force, an S3 manifest is deleted here (bundle-output.c invariant 3) */
		r = snap_bundle_output_check_existing(&b.o);
	uint64_t t0 = snap_now_ns();
	if (r >= 0)
		r = snap_bundle_signer_load(job, 16u << 20, false, "the bundle's signature",
					    &b.signer);
	b.t.keys = secs_since(t0);
	if (r >= 0)
		r = open_source(&b);
	if (r >= 0 && b.o.s3) /* the part keys' padding (bundle-output.c invariant 3) */
		snap_bundle_output_s3_window(&b.o, part_count_bound(&b));
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
	b.t.aes = (double)b.o.aes_ns / 1e9;
	b.t.part_sha1 = (double)b.o.part_sha1_ns / 1e9;

	snap_job_set_stage(job, SNAP_STAGE_FINISH);
	t0 = snap_now_ns();
	r = snap_bundle_output_name_parts(&b.o);
	if (r >= 0)
		r = write_manifest(&b, user);
	if (r >= 0 && snap_job_cancelled(job))
		r = -ECANCELED;
	b.o.committing = r >= 0;
	if (r >= 0)
		r = snap_bundle_output_commit(&b.o, &b.st);
	b.t.finish = secs_since(t0);
	b.t.total = secs_since(start);
	b.t.cpu = (double)(snap_process_cpu_ns() - cpu_start) / 1e9;
	job->progress.bytes_written = atomic_load(&b.o.written);
	if (r >= 0)
		set_results(&b);
out:
	stop_pipeline(&b);
	if (r < 0)
		snap_bundle_output_remove(&b.o);
	if (r == -ECANCELED)
		snap_job_fail(job, r, SNAP_BUNDLE_CANCELLED_MSG);
	free(user);
	bundle_free(&b);
	return r;
}
