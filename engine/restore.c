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
 *     arrive, and against the authenticated index when it arrives at the end.
 *  2. Every frame is checked before its bytes count: header CRC, agreement with the index
 *     (random) or the sequence (sequential), the digest of its stored payload, the AES-256-GCM
 *     tag with the AAD binding image id, volume, frame number and offset (encrypted), inflate
 *     to exactly raw_len, and the CRC-32 of the restored data against the payload's trailer.
 *  3. Outputs are engine/output.h targets: temporary names renamed only by the commit after
 *     the last check passed, every volume's as one set (snap_output_commit_all); any failure
 *     aborts them, so nothing is left behind.
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
 *     reader the byte ranges of the frames it will read (store_image_plan), so a volume, a
 *     partition or a byte range fetches about its own frames, not the object.
 *  8. Progress over what is read (struct snap_progress bytes_data): bytes_read is every byte of
 *     the image read (store-image.c counts them, both paths). The random path knows before its
 *     data stage what it will read, the prepare stage's reads plus the records of the frames
 *     it wants (restore_data_bytes, frame_wanted: the frames restore_plan fetches), and sets
 *     bytes_data to that once, so bytes_read ends equal to it; the sequential path learns the
 *     frames only from the index at the end of the stream and leaves bytes_data 0.
 *
 * State transitions (snap_restore_run):
 *  1. prepare: head read and keys recovered (restore_open), selection resolved and outputs
 *     opened (restore_select, restore_open_outputs); random path: index loaded, what the data
 *     stage reads counted (restore_data_bytes)
 *  2. data: frames read (restore_random / restore_sequential), checked by workers
 *     (restore_work), written and counted by the sink (restore_sink); sequential path: index
 *     and footer checked at the end
 *  3. finish: ZERO extents zeroed (restore_zero), outputs committed
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job-internal.h"
#include "s3.h"
#include "output.h"
#include "pipeline.h"
#include "store-frame.h"
#include "store-image.h"

struct rvol {
	bool selected;
	uint64_t lo, hi; /* byte range of the volume restored */
	struct snap_output *out;
};

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
	struct rvol *vols;
	size_t nvols;
	char *made_dir; /* the output directory this job created: removed when it fails */
	struct snap_s3_client *s3; /* an s3:// image's (the job's) */

	struct snap_pipeline *pipe;
	struct rslot *slots;
	unsigned nslots;

	struct snap_store_index_frame *seen; /* sequential path: frames as they arrived */
	uint64_t nseen, cap_seen;
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
	    sl->raw + (size_t)((f->offset - c->vols[f->volume].lo) % SNAP_OUTPUT_MEM_ALIGN);
	const uint8_t *raw;
	r = snap_store_frame_open(w->codec, c->img->hdr.image_id, sl->rec, f, dst, &raw, &why);
	if (r < 0)
		return rfail(w, r, sl, why);
	struct rvol *v = &c->vols[f->volume];
	if (!v->selected || !v->out)
		return 0;
	uint64_t a = f->offset > v->lo ? f->offset : v->lo;
	uint64_t b = f->offset + f->raw_len < v->hi ? f->offset + f->raw_len : v->hi;
	if (a >= b)
		return 0;
	if (raw != dst && snap_output_is_direct(v->out)) {
		/* a stored (not deflated) frame: a copy costs far less CPU than a write
		 * through the page cache */
		memcpy(dst + (a - f->offset), raw + (a - f->offset), (size_t)(b - a));
		raw = dst;
	}
	/* for the sink (restore_sink) */
	sl->wout = v->out;
	sl->wbuf = raw + (a - f->offset);
	sl->wlen = (size_t)(b - a);
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

/* Copies the sink's counts into the job's progress (run thread; invariant 6). */
static void publish(struct rctx *c)
{
	struct snap_progress *p = &c->job->progress;
	p->bytes_done = c->skip_done + atomic_load(&c->frame_done);
	p->bytes_written = atomic_load(&c->frame_written);
	p->bytes_read = c->img->bytes_read;
}

static void restore_progress(void *ctx)
{
	publish(ctx);
}

/* Run thread: the bytes of the selected range that frame f covers. */
static uint64_t frame_span(const struct rctx *c, const struct snap_store_frame *f)
{
	const struct rvol *v = &c->vols[f->volume];
	uint64_t a = f->offset > v->lo ? f->offset : v->lo;
	uint64_t e = f->offset + f->raw_len;
	uint64_t b = e < v->hi ? e : v->hi;
	return v->selected && a < b ? b - a : 0;
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
    .progress = restore_progress,
};

static int restore_start_workers(struct rctx *c)
{
	uint32_t fs = c->img->hdr.frame_size;
	unsigned nthreads = snap_job_threads(c->job);
	c->nslots = nthreads * 2 + 2;
	c->slots = calloc(c->nslots, sizeof(*c->slots));
	if (!c->slots)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nslots; i++) {
		c->slots[i].rec = malloc((size_t)fs + SNAP_STORE_FRAME_HEADER_SIZE +
					 SNAP_STORE_FRAME_TRAILER_SIZE + SNAP_STORE_GCM_TAG_SIZE);
		/* aligned, with room to start the frame at any offset modulo the alignment */
		if (posix_memalign((void **)&c->slots[i].raw, SNAP_OUTPUT_MEM_ALIGN,
				   (size_t)fs + SNAP_OUTPUT_MEM_ALIGN) != 0)
			c->slots[i].raw = NULL;
		if (!c->slots[i].rec || !c->slots[i].raw)
			return -ENOMEM;
	}
	struct snap_pipeline_opts po = {.nworkers = nthreads, .nslots = c->nslots, .nice_workers = 10};
	return snap_pipeline_new(c->job, &po, &restore_ops, c, &c->pipe);
}

/* ---- selection and outputs ---- */

static int restore_select(struct rctx *c)
{
	struct snap_job *job = c->job;
	const struct snap_store_meta *m = &c->img->meta;
	const char *volname = snap_job_string(job, SNAP_SPARAM_VOLUME);
	int64_t part = snap_job_param(job, SNAP_PARAM_PARTITION, 0);
	int64_t roff = snap_job_param(job, SNAP_PARAM_RANGE_OFFSET, -1);
	int64_t rlen = snap_job_param(job, SNAP_PARAM_RANGE_LENGTH, -1);
	c->nvols = m->nvolumes;
	c->vols = calloc(c->nvols, sizeof(*c->vols));
	if (!c->vols)
		return -ENOMEM;
	size_t sel = SIZE_MAX;
	if (volname) {
		for (size_t i = 0; i < m->nvolumes; i++) {
			const char *d = m->volumes[i].device;
			const char *base = strrchr(d, '/');
			if (!strcmp(d, volname) || (base && !strcmp(base + 1, volname))) {
				if (sel != SIZE_MAX) /* a forged image: store refuses this */
					return snap_job_fail(job, -EUCLEAN,
							     "%s: volumes %s and %s both match %s",
							     c->img->path, m->volumes[sel].device,
							     d, volname);
				sel = i;
			}
		}
		if (sel == SIZE_MAX)
			return snap_job_fail(job, -ENOENT, "the image has no volume %s", volname);
	}
	for (size_t i = 0; i < c->nvols; i++) {
		c->vols[i].selected = sel == SIZE_MAX || sel == i;
		c->vols[i].lo = 0;
		c->vols[i].hi = m->volumes[i].size;
	}
	if (part > 0 || roff >= 0 || rlen >= 0) {
		if (sel == SIZE_MAX) {
			if (m->nvolumes != 1)
				return snap_job_fail(
				    job, -EINVAL,
				    "the image has %zu volumes: name one to restore "
				    "a partition or range",
				    m->nvolumes);
			sel = 0;
		}
		const struct snap_store_volume *v = &m->volumes[sel];
		struct rvol *rv = &c->vols[sel];
		if (part > 0) {
			size_t k;
			for (k = 0; k < v->nparts; k++)
				if (v->parts[k].number == (uint32_t)part)
					break;
			if (k == v->nparts)
				return snap_job_fail(job, -ENOENT,
						     "volume %s has no partition %lld", v->device,
						     (long long)part);
			const struct snap_store_partition *p = &v->parts[k];
			/* the metadata of an unencrypted image is only as good as its SHA-256: a
			 * partition that is empty, wraps around or starts past the volume's end is
			 * refused here rather than sizing an output from it; one that runs past the
			 * end (a truncated disk) is restored as far as the volume goes */
			if (p->size == 0 || p->start >= v->size || p->size > UINT64_MAX - p->start)
				return snap_job_fail(
				    job, -EUCLEAN,
				    "%s: partition %lld of volume %s (start %llu, "
				    "size %llu) lies outside the volume (%llu bytes)",
				    c->img->path, (long long)part, v->device,
				    (unsigned long long)p->start, (unsigned long long)p->size,
				    (unsigned long long)v->size);
			rv->lo = p->start;
			rv->hi = p->start + p->size < v->size ? p->start + p->size : v->size;
		} else {
			if (roff < 0 || rlen <= 0 || (uint64_t)roff > v->size ||
			    (uint64_t)rlen > v->size - (uint64_t)roff)
				return snap_job_fail(
				    job, -EINVAL,
				    "range %lld:%lld is outside volume %s (%llu bytes)",
				    (long long)roff, (long long)rlen, v->device,
				    (unsigned long long)v->size);
			rv->lo = (uint64_t)roff;
			rv->hi =
			    (uint64_t)roff + (uint64_t)rlen; /* no int64 overflow: size > 2^63 */
		}
	}
	for (size_t i = 0; i < c->nvols; i++)
		if (c->vols[i].selected)
			job->progress.bytes_total += c->vols[i].hi - c->vols[i].lo;
	return 0;
}

/* The file name a volume restores to in a directory: its device name's last component. */
static const char *device_base(const struct rctx *c, size_t i)
{
	const char *d = c->img->meta.volumes[i].device;
	const char *base = strrchr(d, '/');
	return base ? base + 1 : d;
}

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
	unsigned output_flags =
	    (snap_job_param(job, SNAP_PARAM_FORCE, 0) ? SNAP_OUTPUT_FORCE : 0) |
	    (snap_job_param(job, SNAP_PARAM_NO_DIRECT, 0) ? SNAP_OUTPUT_BUFFERED : 0);
	size_t nsel = 0;
	for (size_t i = 0; i < c->nvols; i++)
		nsel += c->vols[i].selected;
	for (size_t i = 0; i < c->nvols && nsel > 1; i++) {
		/* one file per volume, named after the device: two devices of one name (a forged
		 * image: store refuses them) would be one file, so nothing is written */
		const char *base = c->vols[i].selected ? device_base(c, i) : NULL;
		if (base && (!*base || !strcmp(base, ".") || !strcmp(base, "..")))
			return snap_job_fail(job, -EUCLEAN, "%s: volume %zu has no usable name (%s)",
					     c->img->path, i, c->img->meta.volumes[i].device);
		for (size_t j = 0; base && j < i; j++)
			if (c->vols[j].selected && !strcmp(device_base(c, j), base))
				return snap_job_fail(job, -EUCLEAN,
						     "%s: volumes %s and %s would both restore to "
						     "%s/%s.img",
						     c->img->path, c->img->meta.volumes[j].device,
						     c->img->meta.volumes[i].device, out, base);
	}
	if (nsel > 1) {
		/* several volumes: OUTPUT is a directory, one NAME.img per device */
		if (mkdir(out, 0755) == 0) {
			if (!(c->made_dir = strdup(out))) {
				rmdir(out);
				return -ENOMEM;
			}
		} else if (errno != EEXIST) {
			return snap_job_fail(job, -errno, "cannot create %s: %s", out,
					     strerror(errno));
		}
	}
	for (size_t i = 0; i < c->nvols; i++) {
		struct rvol *v = &c->vols[i];
		if (!v->selected)
			continue;
		char *path = NULL, *detail = NULL;
		if (nsel > 1) {
			if (asprintf(&path, "%s/%s.img", out, device_base(c, i)) < 0)
				return -ENOMEM;
		} else if (!(path = strdup(out))) {
			return -ENOMEM;
		}
		struct stat st;
		if (fstat(c->img->fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    snap_output_is_file(path, &st)) {
			int r = snap_job_fail(job, -EINVAL, "%s is the image restored from: refusing "
							   "to replace it",
					      path);
			free(path);
			return r;
		}
		int r = snap_output_open(path, v->hi - v->lo, output_flags, &v->out, &detail);
		free(path);
		if (r < 0) {
			r = snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
			free(detail);
			return r;
		}
	}
	return 0;
}

#define ZERO_PIECE (256ull << 20)

/* After every frame passed: make ZERO extents read back as zeros (block devices). */
static int restore_zero(struct rctx *c)
{
	const struct snap_store_index *ix = &c->img->ix;
	for (size_t i = 0; i < c->nvols; i++) {
		struct rvol *v = &c->vols[i];
		if (!v->selected)
			continue;
		const struct snap_store_index_volume *iv = &ix->vols[i];
		for (size_t k = 0; k < iv->nextents; k++) {
			const struct snap_extent *e = &iv->extents[k];
			uint64_t a = e->offset > v->lo ? e->offset : v->lo;
			uint64_t b = e->offset + e->length < v->hi ? e->offset + e->length : v->hi;
			if (a >= b || e->kind == SNAP_EXTENT_DATA)
				continue;
			if (!c->skips_counted) {
				c->skip_done += b - a;
				c->job->progress.bytes_skipped += b - a;
			}
			if (e->kind != SNAP_EXTENT_ZERO || !v->out)
				continue;
			/* zeroing terabytes of a block device takes minutes: in pieces, with
			 * progress, and a cancellation honoured between them */
			for (uint64_t p = a; p < b;) {
				if (snap_job_cancelled(c->job))
					return -ECANCELED;
				uint64_t n = b - p < ZERO_PIECE ? b - p : ZERO_PIECE;
				int r = snap_output_zero(v->out, p - v->lo, n);
				if (r < 0)
					return snap_job_fail(
					    c->job, r, "cannot zero %s at offset %llu: %s",
					    snap_output_path(v->out),
					    (unsigned long long)(p - v->lo), snap_strerror(r));
				p += n;
				publish(c);
				snap_job_report(c->job, false);
			}
		}
	}
	return 0;
}

/* ---- the two paths ---- */

static bool frame_matches(const struct snap_store_frame *f, const struct snap_store_index_frame *e,
			  uint64_t k)
{
	return f->index == k && f->volume == e->volume && f->flags == e->flags &&
	       f->offset == e->offset && f->raw_len == e->raw_len &&
	       f->stored_len == e->stored_len && !memcmp(f->digest, e->digest, sizeof(f->digest));
}

/* Whether restore_random reads frame k of volume vi. */
static bool frame_wanted(const struct rctx *c, size_t vi, const struct snap_store_index_frame *e)
{
	const struct rvol *v = &c->vols[vi];
	return (v->selected || c->verify_only) && e->offset + e->raw_len > v->lo &&
	       e->offset < v->hi;
}

/* The bytes restore_random will have read when its last frame is in (invariant 8): what the
 * prepare stage read (head, footer, index, signature) and the records of the frames it wants. */
static uint64_t restore_data_bytes(const struct rctx *c)
{
	const struct snap_store_index *ix = &c->img->ix;
	uint64_t n = c->img->bytes_read;
	for (size_t vi = 0; vi < c->nvols; vi++) {
		const struct snap_store_index_volume *iv = &ix->vols[vi];
		for (uint64_t k = iv->first_frame; k < iv->first_frame + iv->nframes; k++) {
			const struct snap_store_index_frame *e = &ix->frames[k];
			struct snap_store_frame hf = {.flags = e->flags,
						      .stored_len = e->stored_len};
			if (frame_wanted(c, vi, e))
				n += snap_store_frame_record_len(&hf);
		}
	}
	return n;
}

/* The file ranges of the frames restore_random reads, adjacent ones merged (invariant 7). */
static int restore_plan(struct rctx *c)
{
	const struct snap_store_index *ix = &c->img->ix;
	if (!c->s3)
		return 0;
	uint64_t(*ranges)[2] = calloc(ix->nframes + 1, sizeof(*ranges));
	size_t n = 0;
	if (!ranges)
		return -ENOMEM;
	for (size_t vi = 0; vi < c->nvols; vi++) {
		const struct snap_store_index_volume *iv = &ix->vols[vi];
		for (uint64_t k = iv->first_frame; k < iv->first_frame + iv->nframes; k++) {
			const struct snap_store_index_frame *e = &ix->frames[k];
			if (!frame_wanted(c, vi, e))
				continue;
			struct snap_store_frame hf = {.flags = e->flags,
						      .stored_len = e->stored_len};
			uint64_t a = e->file_offset, b = a + snap_store_frame_record_len(&hf);
			if (n && ranges[n - 1][1] == a)
				ranges[n - 1][1] = b;
			else
				ranges[n][0] = a, ranges[n++][1] = b;
		}
	}
	int r = n ? store_image_plan(c->img, (const uint64_t(*)[2])ranges, n) : 0;
	free(ranges);
	if (r < 0)
		return snap_job_fail(c->job, r, "cannot plan the reads of %s: %s", c->img->path,
				     snap_strerror(r));
	return 0;
}

static int restore_random(struct rctx *c)
{
	struct snap_store_image *img = c->img;
	const struct snap_store_index *ix = &img->ix;
	/* the index is known up front: what needs no frame counts toward the percentage now */
	for (size_t vi = 0; vi < c->nvols; vi++) {
		const struct rvol *v = &c->vols[vi];
		const struct snap_store_index_volume *iv = &ix->vols[vi];
		for (size_t k = 0; v->selected && k < iv->nextents; k++) {
			const struct snap_extent *e = &iv->extents[k];
			uint64_t a = e->offset > v->lo ? e->offset : v->lo;
			uint64_t b = e->offset + e->length < v->hi ? e->offset + e->length : v->hi;
			if (a < b && e->kind != SNAP_EXTENT_DATA) {
				c->skip_done += b - a;
				c->job->progress.bytes_skipped += b - a;
			}
		}
	}
	c->skips_counted = true;
	publish(c);
	snap_job_report(c->job, false);
	int r = restore_plan(c);
	if (r < 0)
		return r;
	for (size_t vi = 0; vi < c->nvols; vi++) {
		const struct rvol *v = &c->vols[vi];
		if (!v->selected && !c->verify_only)
			continue;
		const struct snap_store_index_volume *iv = &ix->vols[vi];
		for (uint64_t k = iv->first_frame; k < iv->first_frame + iv->nframes; k++) {
			const struct snap_store_index_frame *e = &ix->frames[k];
			/* only the frames that overlap the requested range are read: those
			 * restore_plan fetches and restore_data_bytes counts */
			if (!frame_wanted(c, vi, e))
				continue;
			unsigned si;
			uint64_t seq;
			r = snap_pipeline_acquire(c->pipe, &si, &seq);
			if (r < 0)
				return r;
			struct rslot *sl = &c->slots[si];
			struct snap_store_frame hdrf = {.flags = e->flags,
							.stored_len = e->stored_len};
			size_t len = (size_t)snap_store_frame_record_len(&hdrf);
			if (len > (size_t)img->hdr.frame_size + SNAP_STORE_FRAME_HEADER_SIZE +
				      SNAP_STORE_FRAME_TRAILER_SIZE + SNAP_STORE_GCM_TAG_SIZE)
				return snap_job_fail(c->job, -EUCLEAN,
						     "%s: index entry of frame %llu is too long",
						     img->path, (unsigned long long)k);
			sl->at = e->file_offset;
			r = store_image_pread(img, sl->rec, len, e->file_offset, "frame");
			if (r < 0)
				return snap_job_fail(c->job, r, "%s", snap_store_image_error(img));
			const char *why = "";
			r = snap_store_frame_decode(sl->rec, len, img->hdr.frame_size, &sl->f,
						    &why);
			if (r < 0)
				return snap_job_fail(c->job, r, "%s: frame %llu at offset %llu: %s",
						     img->path, (unsigned long long)k,
						     (unsigned long long)e->file_offset, why);
			if (!frame_matches(&sl->f, e, k))
				return snap_job_fail(
				    c->job, -EBADMSG,
				    "%s: frame %llu at offset %llu does not match "
				    "the index (moved, swapped or reordered frame)",
				    img->path, (unsigned long long)k,
				    (unsigned long long)e->file_offset);
			queue_slot(c, sl);
		}
	}
	return snap_pipeline_finish(c->pipe);
}

static int add_seen(struct rctx *c, const struct snap_store_frame *f, uint64_t at)
{
	if (c->nseen == c->cap_seen) {
		uint64_t cap = c->cap_seen ? c->cap_seen * 2 : 1024;
		struct snap_store_index_frame *n = realloc(c->seen, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		c->seen = n;
		c->cap_seen = cap;
	}
	struct snap_store_index_frame *e = &c->seen[c->nseen++];
	*e = (struct snap_store_index_frame){
	    .file_offset = at,
	    .volume = f->volume,
	    .flags = f->flags,
	    .offset = f->offset,
	    .raw_len = f->raw_len,
	    .stored_len = f->stored_len,
	};
	memcpy(e->digest, f->digest, sizeof(e->digest));
	return 0;
}

static int restore_sequential(struct rctx *c, uint8_t idx_prefix[SNAP_STORE_PREFIX_SIZE])
{
	struct snap_store_image *img = c->img;
	struct snap_job *job = c->job;
	uint32_t prev_vol = 0;
	uint64_t prev_end = 0;
	bool encrypted = img->keys_rec != NULL;
	int r;
	for (;;) {
		unsigned si;
		uint64_t seq;
		if ((r = snap_pipeline_acquire(c->pipe, &si, &seq)) < 0)
			return r;
		struct rslot *sl = &c->slots[si];
		uint64_t at = img->pos;
		sl->at = at;
		if ((r = store_image_read(img, sl->rec, SNAP_STORE_PREFIX_SIZE, "frames")) < 0)
			return snap_job_fail(job, r, "%s", snap_store_image_error(img));
		uint32_t type = snap_get_le32(sl->rec);
		if (type == SNAP_STORE_REC_INDEX) {
			/* the tail reads the rest of the record; the slot goes to the sink empty */
			memcpy(idx_prefix, sl->rec, SNAP_STORE_PREFIX_SIZE);
			sl->wlen = 0;
			sl->span = 0;
			snap_pipeline_submit(c->pipe, true);
			break;
		}
		if (type != SNAP_STORE_REC_FRAME)
			return snap_job_fail(job, -EUCLEAN,
					     "%s: unexpected record type %u at offset %llu",
					     img->path, type, (unsigned long long)at);
		r = store_image_read(img, sl->rec + SNAP_STORE_PREFIX_SIZE,
				     SNAP_STORE_FRAME_HEADER_SIZE - SNAP_STORE_PREFIX_SIZE,
				     "frame");
		if (r < 0)
			return snap_job_fail(job, r, "%s", snap_store_image_error(img));
		const char *why = "";
		r = snap_store_frame_decode(sl->rec, SNAP_STORE_FRAME_HEADER_SIZE,
					    img->hdr.frame_size, &sl->f, &why);
		if (r < 0)
			return snap_job_fail(job, r, "%s: frame at offset %llu: %s", img->path,
					     (unsigned long long)at, why);
		const struct snap_store_frame *f = &sl->f;
		if (f->index != c->nseen)
			return snap_job_fail(
			    job, -EBADMSG,
			    "%s: frames out of order at offset %llu: expected frame %llu, "
			    "found frame %llu (reordered, dropped or inserted frame)",
			    img->path, (unsigned long long)at, (unsigned long long)c->nseen,
			    (unsigned long long)f->index);
		if (f->volume >= c->nvols || f->volume < prev_vol ||
		    (f->volume == prev_vol && f->offset < prev_end) ||
		    f->offset + f->raw_len > img->meta.volumes[f->volume].size ||
		    !(f->flags & SNAP_STORE_FRAME_ENCRYPTED) != !encrypted)
			return snap_job_fail(
			    job, -EBADMSG,
			    "%s: frame %llu at offset %llu is out of place (moved frame)",
			    img->path, (unsigned long long)f->index, (unsigned long long)at);
		if (f->volume != prev_vol)
			prev_end = 0;
		prev_vol = f->volume;
		prev_end = f->offset + f->raw_len;
		size_t rest = (size_t)snap_store_frame_record_len(f) - SNAP_STORE_FRAME_HEADER_SIZE;
		r = store_image_read(img, sl->rec + SNAP_STORE_FRAME_HEADER_SIZE, rest, "frame");
		if (r < 0)
			return snap_job_fail(job, r, "%s", snap_store_image_error(img));
		if ((r = add_seen(c, f, at)) < 0)
			return r;
		queue_slot(c, sl);
	}
	return snap_pipeline_finish(c->pipe);
}

/* Reads the rest of the INDEX whose prefix was just read, then the footer, then EOF. */
static int restore_sequential_tail(struct rctx *c, const uint8_t prefix[SNAP_STORE_PREFIX_SIZE])
{
	struct snap_store_image *img = c->img;
	struct snap_job *job = c->job;
	uint64_t at = img->pos - SNAP_STORE_PREFIX_SIZE;
	struct snap_store_prefix p;
	if (snap_store_prefix_decode(prefix, SNAP_STORE_PREFIX_SIZE, &p) < 0 ||
	    p.type != SNAP_STORE_REC_INDEX || p.length > (1ull << 34) ||
	    p.length < SNAP_STORE_PREFIX_SIZE + SNAP_STORE_TAG_SIZE)
		return snap_job_fail(job, -EUCLEAN,
				     "%s: index record at offset %llu is corrupt (bad prefix)",
				     img->path, (unsigned long long)at);
	uint8_t *rec = malloc(p.length);
	if (!rec)
		return -ENOMEM;
	memcpy(rec, prefix, SNAP_STORE_PREFIX_SIZE);
	int r = store_image_read(img, rec + SNAP_STORE_PREFIX_SIZE,
				 p.length - SNAP_STORE_PREFIX_SIZE, "index");
	if (r < 0) {
		free(rec);
		return snap_job_fail(job, r, "%s", snap_store_image_error(img));
	}
	if (!snap_store_record_crc_ok(rec, p.length)) {
		free(rec);
		return snap_job_fail(job, -EBADMSG,
				     "%s: index record at offset %llu is corrupt (CRC mismatch)",
				     img->path, (unsigned long long)at);
	}
	if ((r = store_image_set_index(img, rec, p.length, at)) < 0)
		return snap_job_fail(job, r, "%s", snap_store_image_error(img));
	const struct snap_store_index *ix = &img->ix;
	if (ix->nframes != c->nseen)
		return snap_job_fail(job, -EBADMSG,
				     "%s: the index lists %llu frames, the image holds %llu "
				     "(dropped frames)",
				     img->path, (unsigned long long)ix->nframes,
				     (unsigned long long)c->nseen);
	for (uint64_t k = 0; k < ix->nframes; k++) {
		struct snap_store_frame f = {
		    .index = k,
		    .volume = c->seen[k].volume,
		    .flags = c->seen[k].flags,
		    .offset = c->seen[k].offset,
		    .raw_len = c->seen[k].raw_len,
		    .stored_len = c->seen[k].stored_len,
		};
		memcpy(f.digest, c->seen[k].digest, sizeof(f.digest));
		if (!frame_matches(&f, &ix->frames[k], k) ||
		    c->seen[k].file_offset != ix->frames[k].file_offset)
			return snap_job_fail(
			    job, -EBADMSG, "%s: frame %llu at offset %llu does not match the index",
			    img->path, (unsigned long long)k,
			    (unsigned long long)c->seen[k].file_offset);
	}
	if (img->hdr.compat & SNAP_STORE_COMPAT_SIGNATURE) {
		uint8_t pre[SNAP_STORE_PREFIX_SIZE];
		struct snap_store_prefix sp;
		if ((r = store_image_read(img, pre, sizeof(pre), "signature")) < 0)
			return snap_job_fail(job, r, "%s", snap_store_image_error(img));
		if (snap_store_prefix_decode(pre, sizeof(pre), &sp) < 0 ||
		    sp.type != SNAP_STORE_REC_SIGNATURE || sp.length > (1u << 20))
			return snap_job_fail(
			    job, -EUCLEAN, "%s: signature record missing or malformed", img->path);
		uint8_t *srec = malloc(sp.length);
		if (!srec)
			return -ENOMEM;
		memcpy(srec, pre, sizeof(pre));
		r = store_image_read(img, srec + sizeof(pre), sp.length - sizeof(pre), "signature");
		if (r < 0) {
			free(srec);
			return snap_job_fail(job, r, "%s", snap_store_image_error(img));
		}
		if ((r = store_image_set_signature(img, srec, sp.length)) < 0)
			return snap_job_fail(job, r, "%s", snap_store_image_error(img));
	}
	uint8_t foot[SNAP_STORE_FOOTER_SIZE];
	if ((r = store_image_read(img, foot, sizeof(foot), "footer")) < 0)
		return snap_job_fail(job, r, "%s", snap_store_image_error(img));
	const char *why = "";
	struct snap_store_footer ft;
	if ((r = snap_store_footer_decode(foot, sizeof(foot), &ft, &why)) < 0)
		return snap_job_fail(job, r, "%s: footer is corrupt: %s", img->path, why);
	if (ft.index_offset != at || ft.index_length != p.length || ft.image_size != img->pos ||
	    memcmp(ft.image_id, img->hdr.image_id, SNAP_STORE_ID_SIZE) != 0)
		return snap_job_fail(job, -EBADMSG, "%s: footer does not match the image",
				     img->path);
	uint8_t extra;
	ssize_t n;
	while ((n = read(img->fd, &extra, 1)) < 0 && errno == EINTR)
		;
	if (n != 0)
		return snap_job_fail(job, -EUCLEAN, "data after the footer of %s", img->path);
	return 0;
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
	if (snap_s3_is_url(in)) {
		struct snap_s3_client *s3c = NULL;
		if ((r = snap_job_s3_client(job, &s3c)) < 0)
			return snap_job_fail(job, r, "cannot reach S3 for %s: %s", in,
					     snap_strerror(r));
		c->s3 = s3c;
		r = store_image_open_s3(c->img, s3c, in);
		if (r < 0)
			return snap_job_fail(job, r, "%s", snap_store_image_error(c->img));
		goto opened;
	}
	int fd;
	bool own = true;
	if (!strcmp(in, "-")) {
		fd = STDIN_FILENO;
		own = false;
	} else if ((fd = open(in, O_RDONLY | O_CLOEXEC)) < 0) {
		return snap_job_fail(job, -errno, "cannot open %s: %s", in, strerror(errno));
	}
	r = store_image_open_fd(c->img, fd, !strcmp(in, "-") ? "stdin" : in, own);
	if (r < 0)
		return snap_job_fail(job, r, "%s", snap_store_image_error(c->img));
	/* a pipe is read once, in order; a file is read by random access */
	if (!strcmp(in, "-"))
		c->img->seekable = false;
opened:;
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
		job->progress.bytes_data = restore_data_bytes(&c);
	publish(&c);
	snap_job_set_stage(job, c.verify_only ? SNAP_STAGE_VERIFY : SNAP_STAGE_DATA);
	if (c.img->seekable) {
		r = restore_random(&c);
	} else {
		uint8_t idx_prefix[SNAP_STORE_PREFIX_SIZE];
		r = restore_sequential(&c, idx_prefix);
		if (r == 0)
			r = restore_sequential_tail(&c, idx_prefix);
	}
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
	struct snap_output **outs = calloc(c.nvols ? c.nvols : 1, sizeof(*outs));
	size_t nouts = 0;
	if (!outs) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < c.nvols; i++)
		if (c.vols[i].out)
			outs[nouts++] = c.vols[i].out;
	char *detail = NULL;
	r = snap_output_commit_all(outs, nouts, &detail);
	if (r < 0)
		snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
	else if (nouts)
		snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH, snap_output_path(outs[0]));
	free(detail);
	free(outs);
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
	for (size_t i = 0; c.vols && i < c.nvols; i++)
		c.vols[i].out = snap_output_free(c.vols[i].out); /* aborts uncommitted outputs */
	if (r < 0 && c.made_dir)
		rmdir(c.made_dir); /* empty now: nothing of a failed job is left */
	free(c.made_dir);
	for (unsigned i = 0; c.slots && i < c.nslots; i++) {
		free(c.slots[i].rec);
		free(c.slots[i].raw);
	}
	free(c.slots);
	free(c.vols);
	free(c.seen);
	c.img = snap_store_image_free(c.img);
	return r;
}
