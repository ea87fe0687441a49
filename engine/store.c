// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store.c - SNAP_JOB_STORE: sources -> one .bin store image (formats/STORE_FORMAT.md).
 *
 * Invariants:
 *  1. The output is written strictly append-only, in file order, through one descriptor: it may
 *     be a pipe ("-") or a temporary file renamed into place only after the footer is written
 *     and synced. A failed or cancelled job unlinks the temporary file.
 *  2. Frame numbers, volume offsets and file offsets are assigned by the run thread in source
 *     order before a frame is handed to a worker, so the bytes of the image do not depend on
 *     thread timing (the golden vector relies on it); workers only compress, digest and seal.
 *  3. Zero detection works on 4 KiB blocks aligned to volume offsets: an all-zero block turns
 *     DATA into ZERO (layer zeroscan) in the volume's map, and each run of non-zero blocks
 *     inside a chunk becomes one frame. The index stores the map after this pass.
 *  4. Memory is fixed when the job starts: nslots chunks in flight (store_slot_count), each
 *     with an input buffer of frame_size bytes (touched only when a chunk must be copied) and
 *     an output buffer large enough for its frames stored raw; the reader (blockdev/reader.h,
 *     io_uring or pread) has its own queue_depth request buffers of frame_size bytes (at most
 *     4 MiB) by default.
 *  5. Chunks are the DATA extents of the layout cut at multiples of frame_size; they are the
 *     reader's ranges. A chunk that arrives whole in one reader buffer (the default request
 *     size is the frame size) is not copied: the slot holds the buffer and the worker releases
 *     it once the slot's frames are sealed (a slot with no frames releases it at once). A chunk
 *     that arrives in pieces (a smaller request size) is copied into the slot's input buffer.
 *     No deadlock: the run thread waits for a reader buffer only while it holds a free slot,
 *     and every held buffer belongs to a queued or busy slot that a worker finishes without
 *     the run thread.
 *  6. Progress is counted and reported by the run thread only: bytes_read and bytes_done as each
 *     reader chunk arrives, bytes_written from what the writer published (pub_written, under
 *     the lock), and on the progress interval while it waits (snap_job_wait). bytes_read +
 *     bytes_skipped == bytes_total: blocks the zero scan finds were read, so not skipped.
 *  7. A cancellation is honoured up to the rename: nothing is committed after one arrived.
 *  8. The data stage runs on the pipeline (pipeline.h): the run thread reads and cuts chunks
 *     into slots, workers seal them (store_work), and the sink thread writes finished slots
 *     strictly in sequence and records their index entries (store_sink); it alone owns the
 *     descriptor, s->written and the index entries until the pipeline finished. The run
 *     thread writes the head before it starts and the tail after it finished.
 *  9. A file output also gets an O_DIRECT descriptor (unless SNAP_PARAM_NO_DIRECT, the
 *     environment's SNAPBUNDLE_OUTPUT_BUFFERED=1, or a refusal): the object is staged in an
 *     aligned 4 MiB buffer and written in whole 4 KiB blocks at increasing offsets, so a
 *     multi-terabyte image neither fills the page cache nor pays its system time; the commit
 *     writes the last block padded and truncates the padding away before the fsync. A
 *     filesystem that refuses a direct write (EINVAL) gets the rest through the page cache.
 * 10. An s3:// output is a multipart upload kept with a checkpoint for --resume, or aborted
 *     (store-s3.c invariant 1).
 * 11. A resume continues the kept upload after its parts 1..n, reading again from the first
 *     frame of part n and comparing what it seals with the checkpoint; frame nonces derive
 *     from a per-image seed the checkpoint keeps (store-s3.c invariant 2).
 * 12. An S3 object is told its size at the end, and a streamed part promised past it is
 *     produced again (store-s3.c invariant 3).
 * 13. The frames' index entries are a table (store-internal.h) that spills to an unlinked
 *     temporary file past STORE_TABLE_SPILL_DEFAULT entries, next to a file output or in
 *     $TMPDIR (store_table), so memory does not grow with DATA. The end holds no copy of it:
 *     the INDEX record is encoded from it in 256 KiB pieces (snap_store_index_record_seal,
 *     _stream), a pass for its tag and CRC, one for the signature's digest when signed, and
 *     one as it is written, which must give the CRC of the first (store-records.c
 *     store_write_index). The
 *     table does not change between them: a replay compares its frames with the entries in
 *     place, and takes its chunks from the table before its pipeline's sink reads it.
 *
 * State transitions (snap_store_run):
 *  1. prepare: open sources, build layouts (store_open_volumes), keys, header, KEYS and META
 *     records written (store_write_head, store-records.c); s3:// (store-s3.c): the
 *     checkpoint's name and a resume's checkpoint read (store_prepare_s3), the kept parts and
 *     the restart chosen (store_resume_plan), the upload created or continued
 *     (store_create_s3), the checkpoint written (store_ckpt_start); a resume rebuilds the map
 *     below the restart (store_resume_marks) instead of writing the head
 *  2. data: chunks read through the reader, zero-scanned, cut into frames (store_fill_slot),
 *     sealed by workers (store_work), written in order by the sink (store_sink)
 *  3. finish: INDEX sealed, signed, footer built (store_write_tail, store-records.c); s3://: the
 *     size told, and a streamed part promised past the end produced again (store_end_s3,
 *     store-s3.c); INDEX
 *     and footer written; fsync and rename, or the upload completed and the checkpoint removed
 *     (store_commit)
 *  4. done, or failed: temporary unlinked, or the upload kept with its checkpoint or aborted
 *     (store_cleanup)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "disk-internal.h"
#include "extent-map.h"
#include "gzip-chunk.h"
#include "job-internal.h"
#include "util.h"
#include "output.h"
#include "pipeline.h"
#include "layout.h"
#include "log.h"
#include "reader.h"
#include "source.h"
#include "s3.h"
#include "store-checkpoint.h"
#include "store-internal.h"
#include "store-crypto.h"
#include "store-format.h"
#include "store-frame.h"

#define DEFAULT_FRAME_SIZE (4u << 20)
#define MIN_FRAME_SIZE SNAP_STORE_BLOCK_SIZE

struct worker;

static double ns_to_s(uint64_t ns)
{
	return (double)ns / 1e9;
}

struct frame_job {
	struct snap_store_frame f;
	size_t in_off; /* offset of the frame's data in the slot's input */
	size_t out_off, out_len;
};

/* What a pipeline slot holds (pipeline.h): a chunk and the frames cut from it. */
struct slot {
	const uint8_t *data; /* the chunk: the reader's buffer (held) or in (copied) */
	struct snap_reader *held_reader;
	struct snap_chunk held; /* released by the worker once the frames are sealed */
	uint8_t *in, *out;
	size_t out_cap;
	size_t nframes;
	struct frame_job *frames;
	int err;
};

/* Appends; -errno on failure, s->written counts what went out. No job calls: the sink uses it
 * too. A resume drops what the kept parts hold already (invariant 11). */
int store_write_out(struct store_ctx *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t n = len;
	if (s->written < s->skip_to) {
		uint64_t skip = s->skip_to - s->written;
		if (skip > n)
			skip = n;
		p += skip;
		n -= (size_t)skip;
	}
	int r = n ? snap_output_seq_write(s->seq, p, n) : 0;
	if (r == 0)
		s->written += len;
	return r;
}

/* The run thread's writes (head and tail). */
int store_write_all(struct store_ctx *s, const void *buf, size_t len)
{
	int r = store_write_out(s, buf, len);
	if (r < 0)
		return snap_job_fail(s->job, r, "%s", snap_output_seq_error(s->seq));
	s->job->progress.bytes_written = s->written;
	return 0;
}

/* Slots in flight: 4 per worker plus 4 (measured on 2 CPUs: with 2 per worker the workers
 * waited 0.2-0.3 s of a 1.5 s store for the oldest slot to be sealed and written; with 4, under
 * 0.1 s), within SLOT_BUDGET of output and reader buffers, never fewer than one per worker plus
 * two. */
#define SLOT_BUDGET (160u << 20)
static unsigned store_slot_count(unsigned nthreads, uint32_t frame_size)
{
	unsigned want = nthreads * 4 + 4, floor = nthreads + 2;
	unsigned budget = (unsigned)(SLOT_BUDGET / (2ull * frame_size));
	if (want > budget)
		want = budget;
	return want > floor ? want : floor;
}

/* ---- workers ---- */

struct worker {
	struct store_ctx *s;
	struct snap_frame_times t; /* crc, deflate, seal and digest CPU */
	struct snap_frame_codec *codec;
};

/* Compress, seal and digest one frame into out (header + payload + tag): store-frame.h. */
static int seal_frame(struct worker *w, const uint8_t *raw, struct frame_job *fj, uint8_t *out)
{
	struct store_ctx *s = w->s;
	return snap_store_frame_seal(w->codec, s->image_id, &s->nonce_rng, &fj->f, raw, out,
				     &fj->out_len, &w->t);
}

/* Gives a held reader buffer back (invariant 5). */
static void slot_release(struct slot *sl)
{
	if (sl->held_reader) {
		snap_reader_release(sl->held_reader, &sl->held);
		sl->held_reader = NULL;
	}
}

/* The pipeline's work: seal the slot's frames (any order, any worker). */
static int store_work(void *ctx, void *state, unsigned i)
{
	struct store_ctx *s = ctx;
	struct worker *w = state;
	struct slot *sl = &s->slots[i];
	int r = 0;
	size_t out_off = 0;
	for (size_t k = 0; k < sl->nframes && r == 0; k++) {
		struct frame_job *fj = &sl->frames[k];
		fj->out_off = out_off;
		r = seal_frame(w, sl->data + fj->in_off, fj, sl->out + out_off);
		out_off += fj->out_len;
	}
	slot_release(sl);
	if (r < 0) {
		const struct snap_store_frame *f = &sl->frames[0].f;
		return snap_pipeline_fail(
		    s->pipe, r, "cannot compress or seal frame %llu of %s (%s at offset %llu): %s",
		    (unsigned long long)f->index, s->path, s->vols[f->volume].path,
		    (unsigned long long)f->offset, snap_strerror(r));
	}
	return 0;
}

static int store_worker_init(void *ctx, unsigned i, void **ret)
{
	struct store_ctx *s = ctx;
	(void)i;
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->s = s;
	w->t.clock = snap_thread_cpu_ns;
	int r = snap_frame_codec_new(s->level, s->encrypted ? &s->keys : NULL, &w->codec);
	if (r < 0) {
		free(w);
		return r;
	}
	*ret = w;
	return 0;
}

/* After the worker was joined (run thread): its timings join the job's. */
static void store_worker_free(void *ctx, void *state)
{
	struct store_ctx *s = ctx;
	struct worker *w = state;
	if (!w)
		return;
	s->t.crc += ns_to_s(w->t.crc_ns);
	s->t.deflate += ns_to_s(w->t.deflate_ns);
	s->t.seal += ns_to_s(w->t.seal_ns);
	s->t.digest += ns_to_s(w->t.digest_ns);
	snap_frame_codec_free(w->codec);
	free(w);
}

static void store_drop(void *ctx, unsigned i)
{
	struct store_ctx *s = ctx;
	slot_release(&s->slots[i]);
}

/* ---- volumes and keys ---- */

static int store_open_volumes(struct store_ctx *s)
{
	struct snap_job *job = s->job;
	if (job->nsources == 0)
		return snap_job_fail(job, -EINVAL, "no source given");
	s->vols = calloc(job->nsources, sizeof(*s->vols));
	if (!s->vols)
		return -ENOMEM;
	s->nvols = job->nsources;
	for (size_t i = 0; i < s->nvols; i++) {
		struct store_vol *v = &s->vols[i];
		v->path = job->sources[i].path;
		if (job->sources[i].device)
			v->device = strdup(job->sources[i].device);
		else if (asprintf(&v->device, "/dev/xvd%c", (int)('a' + (i % 26))) < 0)
			v->device = NULL;
		if (!v->device)
			return -ENOMEM;
		/* a restore names each volume's file after its device's last component:
		 * /dev/xvda and xvda are one name there */
		const char *base = strrchr(v->device, '/') ? strrchr(v->device, '/') + 1 : v->device;
		if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
			return snap_job_fail(job, -EINVAL, "invalid device name '%s'", v->device);
		for (size_t j = 0; j < i; j++) {
			const char *o = strrchr(s->vols[j].device, '/');
			if (!strcmp(o ? o + 1 : s->vols[j].device, base))
				return snap_job_fail(job, -EINVAL,
						     "device names %s and %s name one volume (%s)",
						     s->vols[j].device, v->device, base);
		}
		/* the slots hold reader buffers (invariant 5): a few more requests keep reads
		 * going; a frame per request (up to 4 MiB, so progress and cancellation still
		 * come within a large frame): a chunk then arrives whole in one reader buffer,
		 * which the slot holds instead of copying (invariant 5) */
		int r = snap_job_source_open(
		    job, v->path, store_slot_count(snap_job_threads(job), s->frame_size) + 2,
		    s->frame_size < DEFAULT_FRAME_SIZE ? s->frame_size : DEFAULT_FRAME_SIZE, &v->s);
		if (r < 0)
			return r;
		v->src = v->s.src;
		v->layout = v->s.layout;
		v->reader = v->s.reader;
		s->job->progress.bytes_total += v->src->size;
	}
	return 0;
}

/* ---- data ---- */

static void iframe_set(struct snap_store_index_frame *e, const struct snap_store_frame *f,
		       uint64_t file_offset)
{
	e->file_offset = file_offset;
	e->volume = f->volume;
	e->flags = f->flags;
	e->offset = f->offset;
	e->raw_len = f->raw_len;
	e->stored_len = f->stored_len;
	memcpy(e->digest, f->digest, SNAP_STORE_DIGEST_SIZE);
}

/* The table, made at its first entry: a spill goes next to a file output (on the filesystem
 * that takes the image), elsewhere to $TMPDIR or /var/tmp. */
int store_table(struct store_ctx *s)
{
	if (s->table)
		return 0;
	char *dir = NULL;
	if (s->path && !snap_s3_is_url(s->path) && strcmp(s->path, "-") != 0) {
		const char *slash = strrchr(s->path, '/');
		dir = slash ? strndup(s->path, slash == s->path ? 1 : (size_t)(slash - s->path))
			    : strdup(".");
		if (!dir)
			return -ENOMEM;
	}
	int r = store_table_new(dir, store_table_spill_at(), &s->table);
	free(dir);
	return r;
}

static int add_iframe(struct store_ctx *s, const struct snap_store_frame *f, uint64_t file_offset)
{
	struct snap_store_index_frame e;
	iframe_set(&e, f, file_offset);
	int r = store_table(s);
	if (r == 0)
		r = store_table_put(s->table, s->niframes, &e);
	if (r == 0)
		s->niframes++;
	return r;
}

/* Entry k of the table (k < s->niframes or, in a replay, below nverify). */
int store_iframe_get(struct store_ctx *s, uint64_t k, const struct snap_store_index_frame **ret)
{
	return s->table ? store_table_get(s->table, k, ret) : -EINVAL;
}

/* A frame sealed again by a resume is the one the checkpoint recorded (invariant 11). */
static bool store_resume_same(const struct snap_store_index_frame *a,
			      const struct snap_store_index_frame *b)
{
	return a->file_offset == b->file_offset && a->volume == b->volume && a->flags == b->flags &&
	       a->offset == b->offset && a->raw_len == b->raw_len &&
	       a->stored_len == b->stored_len && !memcmp(a->digest, b->digest, sizeof(a->digest));
}

/* The pipeline's sink (invariant 8): writes each slot's frames in sequence and records their
 * index entries. */
static int store_sink(void *ctx, unsigned i)
{
	struct store_ctx *s = ctx;
	struct slot *sl = &s->slots[i];
	int r = 0;
	for (size_t k = 0; k < sl->nframes && r == 0; k++) {
		const struct frame_job *fj = &sl->frames[k];
		uint64_t at = s->written;
		struct snap_store_index_frame tmp, *e = &tmp;
		iframe_set(&tmp, &fj->f, at);
		/* a replay compares in place: the entry is the first run's (invariant 12) */
		if (s->replaying && fj->f.index < s->nverify && fj->f.index == s->niframes)
			s->niframes++;
		else if ((r = add_iframe(s, &fj->f, at)) < 0)
			return snap_pipeline_fail(s->pipe, r, "cannot record frame %llu: %s",
						  (unsigned long long)fj->f.index,
						  snap_strerror(r));
		const struct snap_store_index_frame *want = NULL;
		if (fj->f.index < s->nverify) {
			if (s->vframes)
				want = &s->vframes[fj->f.index];
			else if ((r = store_iframe_get(s, fj->f.index, &want)) < 0)
				return snap_pipeline_fail(s->pipe, r, "cannot read frame %llu: %s",
							  (unsigned long long)fj->f.index,
							  snap_strerror(r));
		}
		if (want && !store_resume_same(want, e))
			return snap_pipeline_fail(
			    s->pipe, -ESTALE,
			    "cannot %s %s: %s changed since the upload began (frame %llu at "
			    "offset %llu differs)",
			    s->replaying ? "complete" : "resume", s->url,
			    s->vols[fj->f.volume].path, (unsigned long long)fj->f.index,
			    (unsigned long long)fj->f.offset);
		/* recorded before its bytes go out (store-checkpoint.c invariant 2); a replay's
		 * frames are recorded already */
		struct store_ckpt *ck = atomic_load(&s->ckpt);
		if (ck && !s->replaying)
			store_ckpt_frame(ck, e);
		r = store_write_out(s, sl->out + fj->out_off, fj->out_len);
		if (r < 0)
			return snap_pipeline_fail(s->pipe, r, "%s", snap_output_seq_error(s->seq));
	}
	atomic_store(&s->pub_written, s->written);
	return 0;
}

/* Run thread: what the sink wrote, for the progress report. */
static void store_progress(void *ctx)
{
	struct store_ctx *s = ctx;
	s->job->progress.bytes_written = atomic_load(&s->pub_written);
}

/* Reads a chunk (one reader range, delivered as one or more reader chunks in order) into a
 * slot, marks zero blocks, cuts the rest into frames. */
static int store_fill_slot(struct store_ctx *s, struct slot *sl, uint32_t vi, uint64_t off,
			   size_t len)
{
	struct store_vol *v = &s->vols[vi];
	size_t got = 0;
	int r;
	sl->held_reader = NULL;
	while (got < len) {
		struct snap_chunk ch;
		/* a chunk may be 64 MiB from a slow device: cancel between reader chunks */
		if (snap_job_cancelled(s->job))
			return -ECANCELED;
		uint64_t t0 = snap_now_ns();
		r = snap_reader_next(v->reader, &ch);
		s->t.read_wait += ns_to_s(snap_now_ns() - t0);
		if (r <= 0) {
			if (r == 0)
				r = -EIO;
			return snap_job_fail(s->job, r, "%s",
					     *snap_reader_error(v->reader)
						 ? snap_reader_error(v->reader)
						 : "the reader ended early");
		}
		/* invariant 1 of reader.h: chunks come in range order, never across ranges */
		if (ch.offset != off + got || ch.length > len - got) {
			snap_reader_release(v->reader, &ch);
			return snap_job_fail(s->job, -EIO, "%s: reader out of step at offset %llu",
					     v->path, (unsigned long long)ch.offset);
		}
		if (ch.length == len) {
			sl->data = ch.data;
			sl->held = ch;
			sl->held_reader = v->reader;
		} else {
			memcpy(sl->in + got, ch.data, ch.length);
			sl->data = sl->in;
			snap_reader_release(v->reader, &ch);
		}
		got += ch.length;
		/* progress as the reader delivers, not per chunk: a chunk may be 64 MiB */
		s->job->progress.bytes_read += ch.length;
		s->job->progress.bytes_done += ch.length;
		snap_job_report(s->job, false);
	}
	sl->nframes = 0;
	size_t pos = 0;
	size_t run_start = 0;
	bool in_run = false;
	while (pos < len) {
		/* blocks are aligned to volume offsets, so the map's zero runs line up */
		uint64_t abs = off + pos;
		size_t blen = SNAP_STORE_BLOCK_SIZE - (size_t)(abs % SNAP_STORE_BLOCK_SIZE);
		if (blen > len - pos)
			blen = len - pos;
		bool zero = snap_is_zero(sl->data + pos, blen);
		if (!zero && !in_run) {
			in_run = true;
			run_start = pos;
		}
		if ((zero || pos + blen == len) && in_run) {
			size_t end = zero ? pos : pos + blen;
			struct frame_job *fj = &sl->frames[sl->nframes++];
			memset(fj, 0, sizeof(*fj));
			fj->f.volume = vi;
			fj->f.index = s->next_frame++;
			fj->f.offset = off + run_start;
			fj->f.raw_len = (uint32_t)(end - run_start);
			fj->in_off = run_start;
			in_run = false;
		}
		if (zero) {
			/* read, so not skipped: bytes_read + bytes_skipped == bytes_total */
			r = snap_map_mark(v->layout->map, abs, blen, SNAP_EXTENT_ZERO,
					  SNAP_LAYER_ZEROSCAN);
			if (r < 0) {
				slot_release(sl);
				return snap_job_fail(s->job, r,
						     "cannot update the extent map of %s at offset "
						     "%llu: %s",
						     v->path, (unsigned long long)abs,
						     snap_strerror(r));
			}
		}
		pos += blen;
	}
	return 0;
}

/* Chunks [0, n) of volume vi, its reader's ranges in that order, each into a slot and on to the
 * workers: a slot with no frames (all zero) is released at once. */
int store_read_chunks(struct store_ctx *s, uint32_t vi, const struct snap_range *chunks, size_t n,
		      double *fill_cpu)
{
	struct store_vol *v = &s->vols[vi];
	int r = n ? snap_reader_start(v->reader, chunks, n) : 0;
	if (r < 0)
		return snap_job_fail(s->job, r, "cannot read %s: %s", v->path, snap_strerror(r));
	for (size_t i = 0; i < n && r == 0; i++) {
		unsigned si;
		uint64_t seq;
		if ((r = snap_pipeline_acquire(s->pipe, &si, &seq)) < 0)
			break;
		struct slot *sl = &s->slots[si];
		uint64_t c0 = fill_cpu ? snap_thread_cpu_ns() : 0;
		r = store_fill_slot(s, sl, vi, chunks[i].offset, (size_t)chunks[i].length);
		if (fill_cpu)
			*fill_cpu += ns_to_s(snap_thread_cpu_ns() - c0);
		if (r < 0)
			break;
		if (!sl->nframes)
			slot_release(sl); /* all zero: nothing for a worker */
		snap_pipeline_submit(s->pipe, sl->nframes == 0);
	}
	return r;
}

static int store_data(struct store_ctx *s)
{
	int r = 0;
	for (uint32_t vi = 0; vi < s->nvols && r == 0; vi++) {
		struct store_vol *v = &s->vols[vi];
		if (s->resuming && vi < s->resume_vol) {
			/* read before the interruption (store_resume_marks): not read again */
			s->job->progress.bytes_done += v->src->size;
			s->job->progress.bytes_skipped += v->src->size;
			continue;
		}
		bool restart = s->resuming && vi == s->resume_vol;
		/* the DATA ranges as the layout built them: zero marking below changes the map */
		struct snap_map *map = v->layout->map;
		size_t n = snap_map_count(map);
		struct snap_range *ranges = calloc(n ? n : 1, sizeof(*ranges));
		size_t nr = 0;
		if (!ranges)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			const struct snap_extent *e = snap_map_get(map, i);
			if (e->kind == SNAP_EXTENT_DATA) {
				ranges[nr++] = (struct snap_range){e->offset, e->length};
			} else {
				/* covered without reading: counts toward the percentage at once */
				s->job->progress.bytes_done += e->length;
				s->job->progress.bytes_skipped += e->length;
			}
		}
		/* chunks end on frame_size boundaries of the volume, so frames do not depend on
		 * how the reader cuts requests; the reader gets the chunks as its ranges */
		size_t nchunks = 0;
		for (size_t i = 0; i < nr; i++) {
			uint64_t a = ranges[i].offset, b = a + ranges[i].length;
			nchunks += (size_t)((b - 1) / s->frame_size - a / s->frame_size + 1);
		}
		struct snap_range *chunks = calloc(nchunks ? nchunks : 1, sizeof(*chunks));
		if (!chunks) {
			free(ranges);
			return -ENOMEM;
		}
		nchunks = 0;
		for (size_t i = 0; i < nr; i++) {
			uint64_t off = ranges[i].offset, end = off + ranges[i].length;
			while (off < end) {
				uint64_t lim = (off / s->frame_size + 1) * s->frame_size;
				uint64_t e = lim < end ? lim : end;
				if (restart && off < s->resume_off) {
					/* sealed before the interruption: its frames are kept */
					s->job->progress.bytes_done += e - off;
					s->job->progress.bytes_skipped += e - off;
				} else {
					chunks[nchunks++] = (struct snap_range){off, e - off};
				}
				off = e;
			}
		}
		free(ranges);
		if (!restart)
			v->first_frame = s->next_frame;
		r = store_read_chunks(s, vi, chunks, nchunks, &s->t.fill);
		free(chunks);
		/* frames of this volume are all numbered; they are written before the next */
		v->nframes = s->next_frame - v->first_frame;
	}
	if (r < 0)
		return r;
	r = snap_pipeline_finish(s->pipe);
	s->job->progress.bytes_written = s->written;
	return r;
}

static const struct snap_pipeline_ops store_ops = {
    .worker_init = store_worker_init,
    .worker_free = store_worker_free,
    .work = store_work,
    .sink = store_sink,
    .drop = store_drop,
    .progress = store_progress,
};

int store_start_workers(struct store_ctx *s)
{
	unsigned nthreads = snap_job_threads(s->job);
	size_t max_frames = s->frame_size / SNAP_STORE_BLOCK_SIZE / 2 + 2;
	struct snap_pipeline_opts po = {.nworkers = nthreads};
	if (s->slots) {
		/* a replay (invariant 12): the slots of the first run */
		po.nslots = s->nslots;
		return snap_pipeline_new(s->job, &po, &store_ops, s, &s->pipe);
	}
	s->nslots = store_slot_count(nthreads, s->frame_size);
	s->slots = calloc(s->nslots, sizeof(*s->slots));
	if (!s->slots)
		return -ENOMEM;
	for (unsigned i = 0; i < s->nslots; i++) {
		struct slot *sl = &s->slots[i];
		sl->out_cap = s->frame_size +
			      max_frames * (SNAP_STORE_FRAME_HEADER_SIZE +
					    SNAP_STORE_FRAME_TRAILER_SIZE + SNAP_STORE_GCM_TAG_SIZE);
		sl->in = malloc(s->frame_size);
		sl->out = malloc(sl->out_cap);
		sl->frames = calloc(max_frames, sizeof(*sl->frames));
		if (!sl->in || !sl->out || !sl->frames)
			return -ENOMEM;
	}
	po.nslots = s->nslots;
	return snap_pipeline_new(s->job, &po, &store_ops, s, &s->pipe);
}

/* Stops the pipeline (joined, the slots' reader buffers given back) and keeps its waits. */
void store_stop_workers(struct store_ctx *s)
{
	if (!s->pipe)
		return;
	struct snap_pipeline_stats st;
	snap_pipeline_stats(s->pipe, &st);
	s->pipe = snap_pipeline_free(s->pipe);
	s->t.slot_wait += ns_to_s(st.acquire_wait);
	s->t.worker_idle += ns_to_s(st.worker_idle);
	s->t.writer_wait += ns_to_s(st.sink_wait);
	s->t.write += ns_to_s(st.sink_busy);
}

/* ---- output file ---- */

static int store_create_output(struct store_ctx *s)
{
	s->path = snap_job_string(s->job, SNAP_SPARAM_OUTPUT);
	if (!s->path)
		return snap_job_fail(s->job, -EINVAL, "no output given");
	unsigned flags = SNAP_OUTPUT_APPEND | snap_output_job_flags(s->job);
	for (size_t i = 0; i < s->nvols; i++) {
		struct stat st;
		if (fstat(s->vols[i].src->fd_buffered, &st) == 0 && snap_output_is_file(s->path, &st))
			return snap_job_fail(s->job, -EINVAL,
					     "%s is a source of this store: refusing to replace it",
					     s->path);
	}
	char *detail = NULL;
	int r = snap_s3_is_url(s->path) ? store_create_s3(s, flags)
					: snap_output_open(s->path, 0, flags, &s->out, &detail);
	if (r < 0 && !detail)
		return r; /* recorded */
	if (r == 0)
		r = snap_output_seq_new(false, false, &s->seq);
	if (r < 0) {
		r = snap_job_fail(s->job, r, "%s", detail ? detail : snap_strerror(r));
		free(detail);
		return r;
	}
	snap_output_seq_start(s->seq, s->out);
	return 0;
}

static int store_commit(struct store_ctx *s)
{
	char *detail = NULL;
	int r = snap_output_seq_end(s->seq);
	if (r < 0)
		return snap_job_fail(s->job, r, "%s", snap_output_seq_error(s->seq));
	r = snap_output_commit(s->out, &detail);
	if (r < 0)
		snap_job_fail(s->job, r, "%s", detail ? detail : snap_strerror(r));
	free(detail);
	if (r == 0 && s->resuming && (r = store_resume_tags(s)) < 0)
		return r;
	if (r == 0 && snap_output_is_s3(s->out)) {
		snap_job_set_result_string(s->job, SNAP_RESULT_ETAG, snap_output_s3_etag(s->out));
		/* the object is complete: nothing to resume */
		store_ckpt_close(atomic_exchange(&s->ckpt, NULL), 1);
	}
	return r;
}

static void store_set_timings(struct store_ctx *s, uint64_t start, uint64_t data_start,
			      uint64_t data_end, uint64_t cpu0)
{
	struct store_timings *t = &s->t;
	uint64_t now = snap_now_ns();
	t->prepare = ns_to_s(data_start - start);
	t->finish = ns_to_s(now - data_end);
	t->total = ns_to_s(now - start);
	t->cpu = ns_to_s(snap_process_cpu_ns() - cpu0);
	char *json = NULL;
	if (asprintf(&json,
		     "{\"prepare_wall\":%.6f,\"data_wall\":%.6f,\"read_wait\":%.6f,"
		     "\"fill_cpu\":%.6f,\"slot_wait\":%.6f,\"worker_idle\":%.6f,"
		     "\"crc_cpu\":%.6f,\"deflate_cpu\":%.6f,\"seal_cpu\":%.6f,"
		     "\"digest_cpu\":%.6f,\"writer_wait\":%.6f,\"write_wall\":%.6f,"
		     "\"finish_wall\":%.6f,\"total_wall\":%.6f,\"total_cpu\":%.6f,"
		     "\"threads\":%u,\"slots\":%u,\"level\":%d,\"frame_size\":%u,"
		     "\"direct_output\":%s,\"frames\":%llu,\"bytes_written\":%llu}",
		     t->prepare, ns_to_s(data_end - data_start), t->read_wait, t->fill,
		     t->slot_wait, t->worker_idle, t->crc, t->deflate, t->seal, t->digest,
		     t->writer_wait, t->write, t->finish, t->total, t->cpu,
		     snap_job_threads(s->job), s->nslots, s->level, s->frame_size,
		     snap_output_is_direct(s->out) && snap_output_seq_direct(s->seq) ? "true"
										     : "false", (unsigned long long)s->niframes,
		     (unsigned long long)s->written) >= 0) {
		snap_job_set_result_string(s->job, SNAP_RESULT_TIMINGS, json);
		free(json);
	}
}

static void store_cleanup(struct store_ctx *s, int r)
{
	store_stop_workers(s);
	s->seq = snap_output_seq_free(s->seq);
	/* an upload not completed: kept for --resume, or aborted (invariant 10) */
	char *kept = NULL, *drop = NULL;
	struct store_ckpt *ck = atomic_load(&s->ckpt);
	const char *id = r < 0 && s->out ? snap_output_s3_upload_id(s->out) : NULL;
	if (id && ck && s->keep_upload)
		kept = strdup(id);
	else if (id && !s->resuming && (s->keep_upload || snap_job_cancelled(s->job)))
		drop = strdup(id);	   /* no checkpoint to resume it with, or the abort refused:
					    * a resume keeps its upload, whose checkpoint is intact */
	s->out = snap_output_free(s->out); /* removes it (aborts the upload) unless committed */
	if (drop)
		store_abort_upload(s, drop);
	free(drop);
	ck = atomic_exchange(&s->ckpt, NULL); /* no part is acknowledged any more */
	if (kept)
		snap_warn("%s is not complete: its upload %s is kept (checkpoint %s): continue it "
			  "with store --resume -o %s, or discard it with snapbundle abort %s",
			  s->url, kept, store_ckpt_file(ck), s->path, s->url);
	store_ckpt_close(ck, !kept);
	free(kept);
	free(s->url);
	free(s->ckpt_path);
	store_ckpt_state_clear(&s->rs);
	for (size_t i = 0; s->vols && i < s->nvols; i++) {
		snap_source_close(&s->vols[i].s);
		free(s->vols[i].device);
	}
	free(s->vols);
	for (unsigned i = 0; s->slots && i < s->nslots; i++) {
		free(s->slots[i].in);
		free(s->slots[i].out);
		free(s->slots[i].frames);
	}
	free(s->slots);
	s->table = store_table_free(s->table);
	free(s->keys_rec);
	free(s->meta_rec);
	OPENSSL_cleanse(s->dk, sizeof(s->dk));
	OPENSSL_cleanse(&s->keys, sizeof(s->keys));
}

int snap_store_run(struct snap_job *job)
{
	struct store_ctx s = {.job = job};
	uint64_t start = snap_now_ns(), cpu0 = snap_process_cpu_ns(), data_start = 0, data_end = 0;
	int64_t fs = snap_job_param(job, SNAP_PARAM_FRAME_SIZE, DEFAULT_FRAME_SIZE);
	int64_t level = snap_job_param(job, SNAP_PARAM_LEVEL, 1);
	int r;
	if (fs < MIN_FRAME_SIZE || fs > SNAP_STORE_MAX_FRAME || fs % SNAP_STORE_BLOCK_SIZE) {
		r = snap_job_fail(
		    job, -EINVAL,
		    "frame size must be a multiple of 4 KiB between 4 KiB and 64 MiB");
		goto out;
	}
	if (level < 0 || level > SNAP_DEFLATE_MAX_LEVEL) {
		r = snap_job_fail(job, -EINVAL, "compression level must be 0 to 3");
		goto out;
	}
	s.frame_size = (uint32_t)fs;
	s.level = (int)level;
	s.now = (uint64_t)time(NULL);
	int64_t seed = snap_job_param(job, SNAP_PARAM_TEST_SEED, 0);
	s.rng = (struct snap_store_rng){.seeded = seed != 0, .seed = (uint64_t)seed};
	/* frame nonces from a seed of their own (invariant 11): unique per frame number, as
	 * random ones, and the same when a resume seals a frame again; the test seed's own
	 * derivation when seeded, so seeded images keep their bytes */
	uint64_t nonce_seed = (uint64_t)seed;
	if (!seed &&
	    (r = snap_store_random(NULL, "nonce seed", 0, &nonce_seed, sizeof(nonce_seed))) < 0)
		goto out;
	s.nonce_rng = (struct snap_store_rng){.seeded = true, .seed = nonce_seed};
	if ((r = snap_store_random(&s.rng, "image id", 0, s.image_id, sizeof(s.image_id))) < 0)
		goto out;
	if ((r = store_prepare_s3(&s)) < 0 || (r = store_open_volumes(&s)) < 0)
		goto out;
	if (s.resuming && (r = store_resume_plan(&s)) < 0)
		goto out;
	if (s.resuming && s.rs.nparts == 0 && (r = store_resume_fresh(&s)) < 0)
		goto out;
	if ((r = store_create_output(&s)) < 0)
		goto out;
	r = s.resuming ? store_resume_marks(&s) : store_write_head(&s);
	if (r < 0)
		goto out;
	if (s.url && s.ckpt_path && (r = store_ckpt_start(&s)) < 0)
		goto out;
	if ((r = store_start_workers(&s)) < 0) {
		r = snap_job_fail(job, r, "cannot start worker threads: %s", snap_strerror(r));
		goto out;
	}
	snap_job_set_stage(job, SNAP_STAGE_DATA);
	data_start = snap_now_ns();
	if ((r = store_data(&s)) < 0)
		goto out;
	store_stop_workers(&s); /* idle now; merges the workers' timings */
	data_end = snap_now_ns();
	snap_job_report(job, true); /* the DATA stage's last sample shows all of it */
	for (size_t i = 0; !s.url && i < s.nvols; i++)
		snap_layout_thaw(s.vols[i].layout);
	snap_job_set_stage(job, SNAP_STAGE_FINISH);
	if ((r = store_write_tail(&s)) < 0)
		goto out;
	/* the last moment a cancellation (also from the FINISH progress callback) can be
	 * honoured without leaving a complete-looking image behind */
	if (snap_job_cancelled(job)) {
		r = -ECANCELED;
		goto out;
	}
	if ((r = store_commit(&s)) < 0)
		goto out;
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_TOTAL, job->progress.bytes_total);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_READ, job->progress.bytes_read);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_SKIPPED, job->progress.bytes_skipped);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, s.written);
	snap_job_set_result_u64(job, SNAP_RESULT_FRAMES, s.niframes);
	snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH, s.url ? s.url : s.path);
	store_set_timings(&s, start, data_start, data_end, cpu0);
out:
	if (r == -ENOMEM)
		snap_job_fail(job, r, "out of memory");
	if (r == -ECANCELED)
		snap_job_fail(job, r, "cancelled");
	store_cleanup(&s, r);
	return r;
}
