// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * restore.c - SNAP_JOB_RESTORE and SNAP_JOB_VERIFY_STORE: a .bin store image back to image
 * files or block devices, or every check without writing.
 *
 * Invariants:
 *  1. Two paths, one set of checks. Random access (a seekable input): the footer and index are
 *     read and authenticated first, and only the frames that overlap the requested volume,
 *     partition or byte range are read. Sequential (a pipe, "-"): every record is read in
 *     order; frames are checked against their expected sequence number and order as they
 *     arrive, and against the authenticated index when it arrives at the end. Reading the
 *     frame records, both ways, and the selection are store-image-data.c's.
 *  2. Every frame is checked before its bytes count: header CRC, agreement with the index
 *     (random) or the sequence (sequential), the digest of its stored payload, the AES-256-GCM
 *     tag with the AAD binding image id, volume, frame number and offset (encrypted), inflate
 *     to exactly raw_len, and the CRC-32 of the restored data against the payload's trailer.
 *  3. Outputs are engine/output.h targets, one per volume (snap_output_open_volumes): temporary
 *     names renamed only by the commit after the last check passed, every volume's as one set
 *     (snap_output_commit_all); any failure aborts them, so nothing is left behind.
 *  4. The data stage runs on the pipeline (pipeline.h): the run thread reads the input in file
 *     order into slots (one frame record each), so the input may be a pipe; workers check
 *     frames in any order (restore_work); the sink thread writes each checked frame's bytes
 *     in frame order (restore_sink: positional writes, O_DIRECT where the target allows), so
 *     no worker waits for the device and the target sees sequential writes. Slot buffers are
 *     allocated once when the job starts (restore_start_workers). Workers run 10 nice levels
 *     below the run thread and the sink (pipeline.h invariant 6): the sink, which waits for
 *     frames in order, must not wait behind a worker's time slice (measured: restore 1.245 ->
 *     1.219 s on 2 cores, medians of 8 interleaved runs; bench/RESULTS.md).
 *  5. The first failure wins: workers and the sink record theirs with snap_pipeline_fail (on
 *     the job at once, and the pipeline stops), the run thread with snap_job_fail; the
 *     pipeline's acquire and finish return the first failure.
 *  6. Only the sink counts the bytes of checked frames (frame_done, frame_written, atomic); only
 *     the run thread copies them into job->progress (publish, also the pipeline's progress op
 *     while it waits) and reports, so progress never races and keeps flowing to the end of the
 *     data.
 *  7. An s3:// image (store-image.c invariant 4) takes the random path: restore_random tells the
 *     reader the byte ranges of the frames it will read (store_image_plan_sel), so a volume, a
 *     partition or a byte range fetches about its own frames, not the object.
 *  8. Progress over what is read (struct snap_progress bytes_data): bytes_read is every byte of
 *     the image read (store-image.c counts them, both paths). The random path knows before its
 *     data stage what it will read, the prepare stage's reads plus the records of the frames
 *     it wants (store_image_sel_bytes, store_image_frame_wanted: those planned), and sets
 *     bytes_data to that once, so bytes_read ends equal to it; the sequential path learns the
 *     frames only from the index at the end of the stream and leaves bytes_data 0.
 *
 * State transitions (snap_restore_run):
 *  1. prepare: head read and keys recovered (restore_open), selection resolved and outputs
 *     opened (restore_select, restore_open_outputs); random path: index loaded, what the data
 *     stage reads counted (store_image_sel_bytes)
 *  2. data: frames read (restore_random / restore_sequential), checked by workers
 *     (restore_work), written and counted by the sink (restore_sink); sequential path: index
 *     and footer checked at the end (store_image_read_tail)
 *  3. finish: ZERO extents zeroed (restore_zero), outputs committed
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job-internal.h"
#include "output.h"
#include "pipeline.h"
#include "store-frame.h"
#include "store-image.h"

struct rslot {
	uint8_t *rec; /* whole frame record */
	uint8_t *raw;
	struct snap_store_frame f;
	uint64_t at;   /* file offset of the record, for messages */
	uint64_t span; /* bytes of the selected ranges the frame covers: counted when sunk */
	/* the checked bytes to write (restore_sink): len bytes at off of out, from buf */
	struct snap_output *wout;
	const uint8_t *wbuf;
	size_t wlen;
	uint64_t woff;
};

struct rctx {
	struct snap_job *job;
	struct snap_store_image *img;
	bool verify_only;
	bool without_key; /* verify an encrypted image without its key: stored bytes only */
	struct store_image_sel *sel; /* per volume: whether and which bytes are restored */
	struct snap_output **outs;   /* per volume: its output (selected ones, not a verify) */
	size_t nvols;
	bool made_dir; /* the job created the output directory: removed when it fails */

	struct snap_pipeline *pipe;
	struct rslot *slots;
	unsigned nslots;

	uint64_t frames_read;
	bool skips_counted; /* ZERO/UNUSED bytes already in bytes_done (random path) */
	uint64_t skip_done; /* run thread: ZERO/UNUSED bytes covered */
	_Atomic uint64_t frame_done, frame_written; /* the sink: bytes of checked frames */
};

/* ---- workers ---- */

struct rworker {
	struct rctx *c;
	struct snap_frame_codec *codec;
	char msg[512]; /* the failure of the frame at hand */
};

static int rfail(struct rworker *w, int err, const struct rslot *sl, const char *what)
{
	struct rctx *c = w->c;
	const struct snap_store_frame *f = &sl->f;
	snprintf(w->msg, sizeof(w->msg),
		 "%s: frame %llu at offset %llu (volume %s, offset %llu): %s", c->img->path,
		 (unsigned long long)f->index, (unsigned long long)sl->at,
		 f->volume < c->nvols ? c->img->meta.volumes[f->volume].device : "?",
		 (unsigned long long)f->offset, what);
	return err;
}

static int decode_frame(struct rworker *w, struct rslot *sl)
{
	struct rctx *c = w->c;
	struct snap_store_frame *f = &sl->f;
	const char *why;
	int r;
	if (c->without_key) {
		/* the stored bytes are what the index lists; nothing to decrypt with */
		r = snap_store_frame_check_digest(w->codec, sl->rec, f, &why);
		return r < 0 ? rfail(w, r, sl, why) : 0;
	}
	/* the destination's address is congruent with the frame's output offset, so the
	 * whole blocks of the write can take the O_DIRECT path (output.h invariant 5) */
	uint8_t *dst =
	    sl->raw + (size_t)((f->offset - c->sel[f->volume].lo) % SNAP_OUTPUT_MEM_ALIGN);
	const uint8_t *raw;
	r = snap_store_frame_open(w->codec, c->img->hdr.image_id, sl->rec, f, dst, &raw, &why);
	if (r < 0)
		return rfail(w, r, sl, why);
	const struct store_image_sel *v = &c->sel[f->volume];
	struct snap_output *out = c->outs[f->volume];
	if (!v->selected || !out)
		return 0;
	uint64_t a, n = store_image_sel_clip(v, f->offset, f->raw_len, &a);
	if (!n)
		return 0;
	if (raw != dst && snap_output_is_direct(out)) {
		/* a stored (not deflated) frame: a copy costs far less CPU than a write
		 * through the page cache */
		memcpy(dst + (a - f->offset), raw + (a - f->offset), (size_t)n);
		raw = dst;
	}
	/* for the sink (restore_sink) */
	sl->wout = out;
	sl->wbuf = raw + (a - f->offset);
	sl->wlen = (size_t)n;
	sl->woff = a - v->lo;
	return 0;
}

/* The pipeline's work: check one frame (any order, any worker). */
static int restore_work(void *ctx, void *state, unsigned i)
{
	struct rctx *c = ctx;
	struct rworker *w = state;
	struct rslot *sl = &c->slots[i];
	sl->wlen = 0;
	int r = decode_frame(w, sl);
	return r < 0 ? snap_pipeline_fail(c->pipe, r, "%s", w->msg) : 0;
}

/* The pipeline's sink: writes checked frames in frame order, so the target sees sequential
 * writes, and counts them (invariant 6). One thread: on a fresh ext4 file every allocating
 * O_DIRECT write holds the inode lock exclusively for its device time anyway, and the workers
 * keep decoding meanwhile. */
static int restore_sink(void *ctx, unsigned i)
{
	struct rctx *c = ctx;
	struct rslot *sl = &c->slots[i];
	if (sl->wlen) {
		int r = snap_output_write(sl->wout, sl->wbuf, sl->wlen, sl->woff);
		if (r < 0)
			return snap_pipeline_fail(c->pipe, r, "cannot write %s at offset %llu: %s",
						  snap_output_path(sl->wout),
						  (unsigned long long)sl->woff, snap_strerror(r));
		atomic_fetch_add(&c->frame_written, sl->wlen);
	}
	if (sl->span)
		atomic_fetch_add(&c->frame_done, sl->span);
	return 0;
}

/* Copies the sink's counts into the job's progress (run thread; invariant 6); also the
 * pipeline's progress op, hence the untyped context. */
static void publish(void *ctx)
{
	struct rctx *c = ctx;
	struct snap_progress *p = &c->job->progress;
	p->bytes_done = c->skip_done + atomic_load(&c->frame_done);
	p->bytes_written = atomic_load(&c->frame_written);
	p->bytes_read = c->img->bytes_read;
}

/* Run thread: the bytes of the selected range that frame f covers. */
static uint64_t frame_span(const struct rctx *c, const struct snap_store_frame *f)
{
	const struct store_image_sel *v = &c->sel[f->volume];
	uint64_t a;
	return v->selected ? store_image_sel_clip(v, f->offset, f->raw_len, &a) : 0;
}

/* Run thread: the slot acquired last holds a frame record that passed the header checks. */
static void queue_slot(struct rctx *c, struct rslot *sl)
{
	c->frames_read++;
	sl->span = frame_span(c, &sl->f);
	snap_pipeline_submit(c->pipe, false);
	publish(c);
	snap_job_report(c->job, false);
}

static int restore_worker_init(void *ctx, unsigned i, void **ret)
{
	struct rctx *c = ctx;
	(void)i;
	struct rworker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->c = c;
	int r = snap_frame_codec_new(-1, c->img->unlocked ? &c->img->ks : NULL, &w->codec);
	if (r < 0) {
		free(w);
		return r;
	}
	*ret = w;
	return 0;
}

static void restore_worker_free(void *ctx, void *state)
{
	struct rworker *w = state;
	(void)ctx;
	if (!w)
		return;
	snap_frame_codec_free(w->codec);
	free(w);
}

static const struct snap_pipeline_ops restore_ops = {
    .worker_init = restore_worker_init,
    .worker_free = restore_worker_free,
    .work = restore_work,
    .sink = restore_sink,
    .progress = publish,
};

static int restore_start_workers(struct rctx *c)
{
	size_t fs = c->img->hdr.frame_size;
	unsigned nthreads = snap_job_threads(c->job);
	c->nslots = nthreads * 2 + 2;
	c->slots = calloc(c->nslots, sizeof(*c->slots));
	if (!c->slots)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nslots; i++) {
		c->slots[i].rec = malloc(store_image_record_max(c->img));
		/* aligned, with room to start the frame at any offset modulo the alignment */
		if (posix_memalign((void **)&c->slots[i].raw, SNAP_OUTPUT_MEM_ALIGN,
				   fs + SNAP_OUTPUT_MEM_ALIGN) != 0)
			c->slots[i].raw = NULL;
		if (!c->slots[i].rec || !c->slots[i].raw)
			return -ENOMEM;
	}
	struct snap_pipeline_opts po = {.nworkers = nthreads, .nslots = c->nslots, .nice_workers = 10};
	return snap_pipeline_new(c->job, &po, &restore_ops, c, &c->pipe);
}

/* A failure the image recorded (store-image.c invariant 3) becomes the job's; -ENOMEM is bare. */
static int image_failed(struct rctx *c, int r)
{
	return c->img->error ? snap_job_fail(c->job, r, "%s", c->img->error) : r;
}

/* ---- selection and outputs ---- */

static int restore_select(struct rctx *c)
{
	struct snap_job *job = c->job;
	c->nvols = c->img->meta.nvolumes;
	c->sel = calloc(c->nvols, sizeof(*c->sel));
	c->outs = calloc(c->nvols, sizeof(*c->outs));
	if (!c->sel || !c->outs)
		return -ENOMEM;
	int r = store_image_select(c->img, snap_job_string(job, SNAP_SPARAM_VOLUME),
				   snap_job_param(job, SNAP_PARAM_PARTITION, 0),
				   snap_job_param(job, SNAP_PARAM_RANGE_OFFSET, -1),
				   snap_job_param(job, SNAP_PARAM_RANGE_LENGTH, -1), c->sel);
	if (r < 0)
		return image_failed(c, r);
	for (size_t i = 0; i < c->nvols; i++)
		if (c->sel[i].selected)
			job->progress.bytes_total += c->sel[i].hi - c->sel[i].lo;
	return 0;
}

/* One output per selected volume (output.c: OUTPUT itself, or OUTPUT/NAME.img for several). */
static int restore_open_outputs(struct rctx *c)
{
	struct snap_job *job = c->job;
	if (c->verify_only)
		return 0;
	const char *out = snap_job_string(job, SNAP_SPARAM_OUTPUT);
	if (!out)
		return snap_job_fail(job, -EINVAL, "no output given");
	if (!strcmp(out, "-"))
		return snap_job_fail(job, -EINVAL,
				     "restore writes a file or block device, not stdout");
	unsigned output_flags = snap_output_job_flags(job);
	struct snap_output_vol *vols = calloc(c->nvols, sizeof(*vols));
	char *detail = NULL;
	if (!vols)
		return -ENOMEM;
	for (size_t i = 0; i < c->nvols; i++)
		vols[i] = (struct snap_output_vol){
		    c->sel[i].selected ? c->img->meta.volumes[i].device : NULL,
		    c->sel[i].hi - c->sel[i].lo};
	int r = snap_output_open_volumes(out, vols, c->nvols, output_flags, c->img->path,
					 c->img->fd, c->outs, &c->made_dir, &detail);
	if (r < 0 && detail)
		snap_job_fail(job, r, "%s", detail);
	free(detail);
	free(vols);
	return r;
}

#define ZERO_PIECE (256ull << 20)

/* After every frame passed: make ZERO extents read back as zeros (block devices). */
static int restore_zero(struct rctx *c)
{
	const struct snap_store_index *ix = &c->img->ix;
	for (size_t i = 0; i < c->nvols; i++) {
		const struct store_image_sel *v = &c->sel[i];
		struct snap_output *out = c->outs[i];
		if (!v->selected)
			continue;
		const struct snap_store_index_volume *iv = &ix->vols[i];
		for (size_t k = 0; k < iv->nextents; k++) {
			const struct snap_extent *e = &iv->extents[k];
			uint64_t a, len = store_image_sel_clip(v, e->offset, e->length, &a);
			uint64_t b = a + len;
			if (!len || e->kind == SNAP_EXTENT_DATA)
				continue;
			if (!c->skips_counted) {
				c->skip_done += len;
				c->job->progress.bytes_skipped += len;
			}
			if (e->kind != SNAP_EXTENT_ZERO || !out)
				continue;
			/* zeroing terabytes of a block device takes minutes: in pieces, with
			 * progress, and a cancellation honoured between them */
			for (uint64_t p = a; p < b;) {
				if (snap_job_cancelled(c->job))
					return -ECANCELED;
				uint64_t n = b - p < ZERO_PIECE ? b - p : ZERO_PIECE;
				int r = snap_output_zero(out, p - v->lo, n);
				if (r < 0)
					return snap_job_fail(
					    c->job, r, "cannot zero %s at offset %llu: %s",
					    snap_output_path(out), (unsigned long long)(p - v->lo),
					    snap_strerror(r));
				p += n;
				publish(c);
				snap_job_report(c->job, false);
			}
		}
	}
	return 0;
}

/* ---- the two paths ---- */

static int restore_random(struct rctx *c)
{
	struct snap_store_image *img = c->img;
	const struct snap_store_index *ix = &img->ix;
	/* the index is known up front: what needs no frame counts toward the percentage now */
	for (size_t vi = 0; vi < c->nvols; vi++) {
		const struct store_image_sel *v = &c->sel[vi];
		const struct snap_store_index_volume *iv = &ix->vols[vi];
		for (size_t k = 0; v->selected && k < iv->nextents; k++) {
			const struct snap_extent *e = &iv->extents[k];
			uint64_t a, n = store_image_sel_clip(v, e->offset, e->length, &a);
			if (n && e->kind != SNAP_EXTENT_DATA) {
				c->skip_done += n;
				c->job->progress.bytes_skipped += n;
			}
		}
	}
	c->skips_counted = true;
	publish(c);
	snap_job_report(c->job, false);
	/* an S3 image fetches about the frames read below (invariant 7) */
	int r = store_image_plan_sel(img, c->sel, c->verify_only);
	if (r < 0)
		return image_failed(c, r);
	for (uint64_t k = 0; k < ix->nframes; k++) { /* in file order, volume by volume */
		const struct snap_store_index_frame *e = &ix->frames[k];
		/* only the frames that overlap the requested range are read: those
		 * store_image_plan_sel fetches and store_image_sel_bytes counts */
		if (!store_image_frame_wanted(c->sel, c->verify_only, e))
			continue;
		unsigned si;
		uint64_t seq;
		if ((r = snap_pipeline_acquire(c->pipe, &si, &seq)) < 0)
			return r;
		struct rslot *sl = &c->slots[si];
		sl->at = e->file_offset;
		if ((r = store_image_read_frame(img, k, sl->rec, &sl->f)) < 0)
			return image_failed(c, r);
		queue_slot(c, sl);
	}
	return snap_pipeline_finish(c->pipe);
}

/* Frames in file order from a pipe (store-image-data.c invariants 1, 2), then the tail. */
static int restore_sequential(struct rctx *c)
{
	int r;
	for (;;) {
		unsigned si;
		uint64_t seq;
		if ((r = snap_pipeline_acquire(c->pipe, &si, &seq)) < 0)
			return r;
		struct rslot *sl = &c->slots[si];
		sl->at = c->img->pos;
		if ((r = store_image_next_frame(c->img, sl->rec, &sl->f)) < 0)
			return image_failed(c, r);
		if (r == 0) {
			/* the INDEX began: the slot goes to the sink empty */
			sl->wlen = 0;
			sl->span = 0;
			snap_pipeline_submit(c->pipe, true);
			break;
		}
		queue_slot(c, sl);
	}
	if ((r = snap_pipeline_finish(c->pipe)) < 0)
		return r;
	r = store_image_read_tail(c->img);
	return r < 0 ? image_failed(c, r) : 0;
}

static int restore_open(struct rctx *c)
{
	struct snap_job *job = c->job;
	const char *in = snap_job_string(job, SNAP_SPARAM_INPUT);
	if (!in)
		return snap_job_fail(job, -EINVAL, "no input image given");
	int r = snap_store_image_new(&c->img);
	if (r < 0)
		return r;
	if ((r = store_image_open_input(c->img, job, in)) < 0)
		return snap_job_fail(job, r, "%s", snap_store_image_error(c->img));
	const char *pass = snap_job_string(job, SNAP_SPARAM_PASSPHRASE);
	const char *key = snap_job_string(job, SNAP_SPARAM_PRIVATE_KEY);
	c->without_key = c->verify_only && snap_job_param(job, SNAP_PARAM_WITHOUT_KEY, 0) &&
			 c->img->keys_rec;
	if (c->without_key && (pass || key))
		return snap_job_fail(job, -EINVAL, "give either a key or \"without key\", not both");
	r = c->without_key ? store_image_decode_meta(c->img)
			   : snap_store_image_unlock(c->img, pass, key);
	if (r < 0)
		return snap_job_fail(job, r, "%s", snap_store_image_error(c->img));
	if (c->img->seekable) {
		r = store_image_load_index(c->img);
		if (r < 0)
			return snap_job_fail(job, r, "%s", snap_store_image_error(c->img));
	}
	return 0;
}

int snap_restore_run(struct snap_job *job)
{
	struct rctx c = {.job = job, .verify_only = job->kind == SNAP_JOB_VERIFY_STORE};
	int r = restore_open(&c);
	if (r < 0)
		goto out;
	if ((r = restore_select(&c)) < 0 || (r = restore_open_outputs(&c)) < 0)
		goto out;
	r = restore_start_workers(&c);
	if (r < 0) {
		r = snap_job_fail(job, r, "cannot start worker threads");
		goto out;
	}
	/* invariant 8: the total before the stage changes, and the first sample of the stage
	 * already counts what the prepare stage read */
	if (c.img->seekable)
		job->progress.bytes_data = store_image_sel_bytes(c.img, c.sel, c.verify_only);
	publish(&c);
	snap_job_set_stage(job, c.verify_only ? SNAP_STAGE_VERIFY : SNAP_STAGE_DATA);
	r = c.img->seekable ? restore_random(&c) : restore_sequential(&c);
	if (r < 0)
		goto out;
	snap_job_report(job, true); /* the DATA stage's last sample shows all of it */
	const char *signer = snap_job_string(job, SNAP_SPARAM_TRUSTED_SIGNER);
	if (signer && (r = store_image_check_signer(c.img, signer)) < 0) {
		r = snap_job_fail(job, r, "%s", snap_store_image_error(c.img));
		goto out;
	}
	snap_job_set_stage(job, SNAP_STAGE_FINISH);
	if ((r = restore_zero(&c)) < 0)
		goto out;
	publish(&c); /* the pipeline finished: every frame was sunk */
	/* last moment to honour a cancellation (also from the FINISH callback) cleanly */
	if (snap_job_cancelled(job)) {
		r = -ECANCELED;
		goto out;
	}
	/* every volume's output, committed as one: all of them or none (output.h 2a) */
	size_t nouts = 0;
	for (size_t i = 0; i < c.nvols; i++) { /* the outputs first, in volume order */
		struct snap_output *o = c.outs[i];
		c.outs[i] = NULL;
		if (o)
			c.outs[nouts++] = o;
	}
	char *detail = NULL;
	r = snap_output_commit_all(c.outs, nouts, &detail);
	if (r < 0)
		snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
	else if (nouts)
		snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH,
					   snap_output_path(c.outs[0]));
	free(detail);
	if (r < 0)
		goto out;
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_TOTAL, job->progress.bytes_total);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_READ, c.img->bytes_read);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, job->progress.bytes_written);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_SKIPPED, job->progress.bytes_skipped);
	snap_job_set_result_u64(job, SNAP_RESULT_FRAMES, c.img->ix.nframes);
out:
	if (r == -ENOMEM)
		snap_job_fail(job, r, "out of memory");
	snap_job_set_result_u64(job, SNAP_RESULT_FRAMES_READ, c.frames_read);
	snap_job_set_result_u64(job, SNAP_RESULT_AUTHENTICATED,
				!c.without_key ? 2 : c.img->signature_valid ? 1 : 0);
	c.pipe = snap_pipeline_free(c.pipe); /* joins every thread */
	for (size_t i = 0; c.outs && i < c.nvols; i++)
		c.outs[i] = snap_output_free(c.outs[i]); /* aborts uncommitted outputs */
	if (r < 0 && c.made_dir) /* empty now: nothing of a failed job is left */
		rmdir(snap_job_string(job, SNAP_SPARAM_OUTPUT));
	for (unsigned i = 0; c.slots && i < c.nslots; i++) {
		free(c.slots[i].rec);
		free(c.slots[i].raw);
	}
	free(c.slots);
	free(c.sel);
	free(c.outs);
	c.img = snap_store_image_free(c.img);
	return r;
}
