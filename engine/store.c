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
 * 10. An s3:// output is an S3 object of the output layer (output.h invariant 6): a multipart
 *     upload whose object appears only at the commit. A PREFIX/ names the object
 *     PREFIX/AMI-ID.bin, as CreateStoreImageTask does. The x-amz-meta-ami-* values are the
 *     META record's (store_meta), the tags the --tag pairs. Nothing is written locally but
 *     the checkpoint: the upload id, the image's head (the data key only wrapped, as KEYS
 *     holds it), every frame as the sink records it (before its bytes go out) and every part
 *     as the service acknowledges it. A failure keeps the upload and the checkpoint for
 *     --resume unless SNAP_PARAM_NO_RESUME, which aborts the upload; success removes it.
 * 11. A resume (SNAP_PARAM_RESUME) continues the kept upload after its parts 1..n, the longest
 *     run the checkpoint holds: it rebuilds the head from the checkpoint and starts reading
 *     at the chunk of the first frame of part n, so that every frame of part n (and the one
 *     that crosses into part n + 1) is read, sealed and compared with the checkpoint again: a
 *     source that changed fails the job (-ESTALE), as does a source of another size or
 *     modification time. Bytes below the end of part n are dropped (write_out), frames are
 *     numbered and placed as before (invariant 2), and the extent map below the restart is
 *     rebuilt from the checkpoint's frames (every byte of a DATA extent outside a frame is a
 *     zero block), so the object is byte for byte the one an uninterrupted run writes.
 *     Frame nonces derive from a random per-image seed (nonce_rng; the test seed itself when
 *     seeded), which the checkpoint keeps, so an encrypted frame sealed again is the same
 *     bytes; an encrypted store is resumed with its passphrase or a recipient's private key,
 *     which unwrap the data key from the checkpoint's KEYS and authenticate its META.
 * 12. The size of an S3 object is told to its writer once the tail is built (store_end_s3).
 *     A part over SNAP_S3_MAX_BUFFERED_PART (or any part under SNAPBUNDLE_TEST_S3_STREAM=1, for
 *     tests) streams, and its request declared part_size bytes when the writer's 4 MiB ring
 *     filled; when the object ends before that, the writer abandons the request and goes back
 *     to the part's start (snap_s3_writer_rewind), and the store writes the same bytes again
 *     (store_replay): the head from the records kept, then every frame from the one that
 *     overlaps the part's start, each read again as one chunk (all its blocks are non-zero, so
 *     it is one frame again), sealed with the same nonce (invariant 11) and compared in place
 *     with its index entry (-ESTALE when the source changed; nothing is recorded in the
 *     checkpoint twice), dropped below the part's start as a resume drops (write_out). The part
 *     then streams with its exact length. Memory stays bounded (no part is held, nothing is
 *     written locally); the cost is reading and sealing at most one part's worth of frames
 *     again, once, at the end. The sources are thawed only after it.
 * 13. The frames' index entries are a table (store-internal.h) that spills to an unlinked
 *     temporary file past STORE_TABLE_SPILL_DEFAULT entries, next to a file output or in
 *     $TMPDIR (store_table), so memory does not grow with DATA. The end holds no copy of it:
 *     the INDEX record is encoded from it in 256 KiB pieces (snap_store_index_record_seal,
 *     _stream), a pass for its tag and CRC, one for the signature's digest when signed, and
 *     one as it is written, which must give the CRC of the first (store_write_index). The
 *     table does not change between them: a replay compares its frames with the entries in
 *     place, and takes its chunks from the table before its pipeline's sink reads it.
 *
 * State transitions (snap_store_run):
 *  1. prepare: open sources, build layouts (store_open_volumes), keys (store_keys), header,
 *     KEYS and META records written (store_write_head); s3://: the checkpoint's name and a
 *     resume's checkpoint read (store_prepare_s3, store_resume_load), the kept parts and the
 *     restart chosen (store_resume_plan), the upload created or continued (store_create_s3),
 *     the checkpoint written (store_ckpt_start); a resume rebuilds the map below the restart
 *     (store_resume_marks) instead of writing the head
 *  2. data: chunks read through the reader, zero-scanned, cut into frames (store_fill_slot),
 *     sealed by workers (store_work), written in order by the sink (store_sink)
 *  3. finish: INDEX sealed, signed, footer built (store_write_tail); s3://: the size told, and a
 *     streamed part promised past the end produced again (store_end_s3, store_replay); INDEX
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <zlib.h>

#include "disk-internal.h"
#include "extent-map.h"
#include "hex.h"
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
#include "store-image.h"
#include "store-internal.h"
#include "store-crypto.h"
#include "store-format.h"
#include "store-frame.h"

#define DEFAULT_FRAME_SIZE (4u << 20)
#define MIN_FRAME_SIZE SNAP_STORE_BLOCK_SIZE

struct worker;

/* Where a store's time went (SNAP_RESULT_TIMINGS, docs/bench-json.md): work stages are thread
 * CPU seconds summed over the threads that did them, waits and the totals wall seconds. */
struct store_timings {
	double prepare, read_wait, fill, slot_wait; /* run thread */
	double worker_idle, crc, deflate, seal, digest;		/* workers, summed */
	double writer_wait, write, finish, total, cpu;		/* writer, then the whole job */
};

static double ns_to_s(uint64_t ns)
{
	return (double)ns / 1e9;
}

struct store_vol {
	const char *path;
	struct snap_source s; /* src, layout and reader below are its */
	char *device;
	struct snap_src *src;
	struct snap_layout *layout;
	struct snap_reader *reader;
	uint64_t first_frame, nframes;
};

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

struct store_ctx {
	struct snap_job *job;
	struct store_vol *vols;
	size_t nvols;
	uint32_t frame_size;
	int level;
	bool encrypted;
	struct snap_store_rng rng;
	struct snap_store_rng nonce_rng; /* the frames' nonces (invariant 11) */
	uint8_t image_id[SNAP_STORE_ID_SIZE];
	uint8_t dk[SNAP_STORE_KEY_SIZE];
	struct snap_store_keyset keys;

	/* output */
	struct snap_output *out;
	struct snap_output_seq *seq; /* writes out from start to end (invariant 9) */
	const char *path;
	uint64_t written;
	uint64_t now; /* the default creation and store time, read once */

	/* an S3 object (invariant 10) */
	struct snap_s3_client *s3c;
	char *url;	 /* s3://BUCKET/KEY written (the -o given may name a prefix) */
	char *ckpt_path; /* the checkpoint of the -o given (store-checkpoint.h) */
	uint64_t part_size;
	struct store_ckpt *_Atomic ckpt;
	bool keep_upload; /* a failure keeps the upload and the checkpoint */
	/* --resume (invariant 11) */
	bool resuming;
	struct store_ckpt_state rs;
	uint64_t skip_to;    /* image bytes below were uploaded: not written again */
	uint64_t nverify;    /* frames below this number are compared with the checkpoint's */
	uint32_t resume_vol; /* reading starts in this volume ... */
	uint64_t resume_off; /* ... at this offset (a frame_size multiple) */
	/* frames below nverify must equal these: a resume's checkpoint; NULL: the table's own
	 * entries, which a replay compares in place */
	const struct snap_store_index_frame *vframes;
	bool replaying; /* the end's replay of a streamed part (invariant 12) */

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

/* Appends; -errno on failure, s->written counts what went out. No job calls: the sink uses it
 * too. A resume drops what the kept parts hold already (invariant 11). */
static int write_out(struct store_ctx *s, const void *buf, size_t len)
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
static int write_all(struct store_ctx *s, const void *buf, size_t len)
{
	int r = write_out(s, buf, len);
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

/* Builds the KEYS payload; sets s->dk, s->keys. */
static int store_keys(struct store_ctx *s, uint8_t **ret, size_t *ret_len)
{
	struct snap_job *job = s->job;
	const char **certs = NULL;
	size_t ncerts = snap_job_list(job, SNAP_SPARAM_RECIPIENT_CERT, &certs);
	const char *pass = snap_job_string(job, SNAP_SPARAM_PASSPHRASE);
	struct snap_store_keys k = {0};
	int r = 0;
	s->encrypted = ncerts > 0 || pass || snap_job_param(job, SNAP_PARAM_ENCRYPT, 0);
	if (!s->encrypted)
		goto out;
	if (ncerts == 0 && !pass) {
		r = snap_job_fail(job, -EINVAL,
				  "encryption needs a recipient certificate or a passphrase");
		goto out;
	}
	if ((r = snap_store_random(&s->rng, "data key", 0, s->dk, sizeof(s->dk))) < 0 ||
	    (r = snap_store_derive(s->dk, s->image_id, &s->keys)) < 0)
		goto out;
	k.slots = calloc(ncerts + 1, sizeof(*k.slots));
	if (!k.slots) {
		r = -ENOMEM;
		goto out;
	}
	if (pass) {
		/* readers accept what store writes (store-crypto.h); a shift by 64 or more would
		 * be undefined */
		int64_t log_n = snap_job_param(job, SNAP_PARAM_SCRYPT_LOG_N, 15);
		if (log_n < 1 || log_n > SNAP_STORE_SCRYPT_MAX_LOG_N) {
			r = snap_job_fail(job, -EINVAL,
					  "scrypt cost log2(N) must be 1 to %d, not %lld",
					  SNAP_STORE_SCRYPT_MAX_LOG_N, (long long)log_n);
			goto out;
		}
		uint64_t n = 1ull << log_n;
		r = snap_store_slot_scrypt_make(pass, strlen(pass), s->dk, s->image_id, &s->rng, n,
						&k.slots[k.nslots]);
		if (r < 0) {
			r = snap_job_fail(job, r, "cannot derive a key from the passphrase");
			goto out;
		}
		k.nslots++;
	}
	for (size_t i = 0; i < ncerts; i++) {
		char *pem = NULL;
		size_t len = 0;
		const char *why = "";
		if ((r = snap_job_read_file(job, certs[i], NULL, 1u << 20, &pem, &len)) < 0)
			goto out;
		r = snap_store_slot_rsa_make(pem, len, s->dk, &k.slots[k.nslots], &why);
		free(pem);
		if (r < 0) {
			r = snap_job_fail(job, r, "cannot use recipient %s: %s", certs[i], why);
			goto out;
		}
		k.nslots++;
	}
	r = snap_store_keys_encode(&k, ret, ret_len);
out:
	snap_store_keys_clear(&k);
	free(certs);
	return r;
}

static char *iso_time(uint64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[64];
	gmtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
	return strdup(buf);
}

static int add_s3(struct snap_store_meta *m, const char *key, const char *value)
{
	if (!value)
		return 0;
	char *kv = NULL;
	if (asprintf(&kv, "%s=%s", key, value) < 0)
		return -ENOMEM;
	int r = snap_store_strlist_add(&m->s3, kv);
	free(kv);
	return r;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* The AMI id the image and its S3 object are named after: SNAP_SPARAM_IMAGE_ID, else
 * ami- and 17 hex digits of the image id. */
static const char *store_ami_id(const struct store_ctx *s, char buf[40])
{
	const char *id = snap_job_string(s->job, SNAP_SPARAM_IMAGE_ID);
	if (id)
		return id;
	memcpy(buf, "ami-", 4);
	snap_hex(buf + 4, s->image_id, 9);
	buf[21] = 0;
	return buf;
}

static int store_meta(struct store_ctx *s, struct snap_store_meta *m)
{
	struct snap_job *job = s->job;
	uint64_t now = s->now;
	m->name = dup_or_null(snap_job_string(job, SNAP_SPARAM_NAME));
	m->description = dup_or_null(snap_job_string(job, SNAP_SPARAM_DESCRIPTION));
	m->arch = dup_or_null(snap_job_string(job, SNAP_SPARAM_ARCH));
	m->boot_mode = dup_or_null(snap_job_string(job, SNAP_SPARAM_BOOT_MODE));
	m->owner = dup_or_null(snap_job_string(job, SNAP_SPARAM_OWNER));
	char id[40];
	m->image_id = strdup(store_ami_id(s, id));
	m->creation_time = (uint64_t)snap_job_param(job, SNAP_PARAM_CREATION_TIME, (int64_t)now);
	m->store_time = (uint64_t)snap_job_param(job, SNAP_PARAM_STORE_TIME, (int64_t)now);
	const char **l = NULL;
	size_t n = snap_job_list(job, SNAP_SPARAM_TAG, &l);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++)
		r = snap_store_strlist_add(&m->tags, l[i]);
	free(l);
	n = snap_job_list(job, SNAP_SPARAM_BLOCK_DEVICE_MAPPING, &l);
	for (size_t i = 0; i < n && r == 0; i++)
		r = snap_store_strlist_add(&m->bdm, l[i]);
	free(l);
	if (r < 0)
		return r;

	char *created = iso_time(m->creation_time), *stored = iso_time(m->store_time);
	/* the object metadata EC2 CreateStoreImageTask attaches, for an uploader to set */
	r = add_s3(m, "x-amz-meta-ami-name", m->name);
	if (r == 0)
		r = add_s3(m, "x-amz-meta-ami-description", m->description);
	if (r == 0)
		r = add_s3(m, "x-amz-meta-ami-registration-date", created);
	if (r == 0)
		r = add_s3(m, "x-amz-meta-ami-owner-account", m->owner);
	if (r == 0)
		r = add_s3(m, "x-amz-meta-ami-store-date", stored);
	if (r == 0)
		r = add_s3(m, "x-amz-meta-ami-id", m->image_id);
	free(created);
	free(stored);
	if (r < 0)
		return r;

	m->volumes = calloc(s->nvols, sizeof(*m->volumes));
	if (!m->volumes)
		return -ENOMEM;
	m->nvolumes = s->nvols;
	for (size_t i = 0; i < s->nvols; i++) {
		const struct store_vol *sv = &s->vols[i];
		struct snap_store_volume *v = &m->volumes[i];
		v->device = strdup(sv->device);
		v->size = sv->src->size;
		v->logical_sector = sv->src->logical_sector;
		v->physical_sector = sv->src->physical_sector;
		v->ptable_type = dup_or_null(sv->layout->ptable_type);
		v->ptable_id = dup_or_null(sv->layout->ptable_id);
		v->parts = calloc(sv->layout->nparts + 1, sizeof(*v->parts));
		if (!v->parts || !v->device)
			return -ENOMEM;
		v->nparts = sv->layout->nparts;
		for (size_t j = 0; j < v->nparts; j++) {
			const struct snap_partition_info *pi = &sv->layout->parts[j];
			struct snap_store_partition *p = &v->parts[j];
			p->number = pi->number;
			p->start = pi->start;
			p->size = pi->size;
			p->bootable = pi->bootable ? 1 : 0;
			p->type = dup_or_null(pi->type);
			p->name = dup_or_null(pi->name);
			p->uuid = dup_or_null(pi->uuid);
			p->fs_type = dup_or_null(pi->fs_type);
			p->fs_label = dup_or_null(pi->fs_label);
			p->fs_uuid = dup_or_null(pi->fs_uuid);
		}
	}
	return 0;
}

static int store_write_head(struct store_ctx *s)
{
	uint8_t *keys_payload = NULL, *keys_rec = NULL, *meta_payload = NULL, *meta_rec = NULL;
	size_t keys_payload_len = 0, keys_len = 0, meta_payload_len = 0, meta_len = 0;
	struct snap_store_meta m = {0};
	/* keys first: they decide the ENCRYPTED feature bit of the header */
	int r = store_keys(s, &keys_payload, &keys_payload_len);
	if (r < 0)
		goto out;
	struct snap_store_header h = {
	    .version = SNAP_STORE_VERSION,
	    .compat =
		snap_job_string(s->job, SNAP_SPARAM_SIGNING_KEY) ? SNAP_STORE_COMPAT_SIGNATURE : 0,
	    .incompat = s->encrypted ? SNAP_STORE_INCOMPAT_ENCRYPTED : 0,
	    .frame_size = s->frame_size,
	    .volume_count = (uint32_t)s->nvols,
	    .block_size = SNAP_STORE_BLOCK_SIZE,
	};
	memcpy(h.image_id, s->image_id, SNAP_STORE_ID_SIZE);
	snap_store_header_encode(&h, s->header);
	if ((r = write_all(s, s->header, sizeof(s->header))) < 0)
		goto out;
	if (s->encrypted) {
		/* the KEYS record carries a plain SHA-256: the META tag authenticates it */
		r = snap_store_build_record(SNAP_STORE_REC_KEYS, keys_payload, keys_payload_len,
					    NULL, NULL, NULL, 0, &keys_rec, &keys_len);
		if (r < 0 || (r = write_all(s, keys_rec, keys_len)) < 0)
			goto out;
	}
	if ((r = store_meta(s, &m)) < 0 ||
	    (r = snap_store_meta_encode(&m, &meta_payload, &meta_payload_len)) < 0)
		goto out;
	const void *pre[] = {s->header, keys_rec};
	const size_t pre_lens[] = {sizeof(s->header), keys_len};
	r = snap_store_build_record(SNAP_STORE_REC_META, meta_payload, meta_payload_len,
				    s->encrypted ? s->keys.mac : NULL, pre, pre_lens,
				    s->encrypted ? 2 : 1, &meta_rec, &meta_len);
	if (r < 0)
		goto out;
	s->meta_offset = s->written;
	s->meta_length = meta_len;
	const void *parts[] = {meta_rec};
	const size_t lens[] = {meta_len};
	if ((r = snap_store_mac(NULL, parts, lens, 1, s->meta_digest)) < 0)
		goto out;
	r = write_all(s, meta_rec, meta_len);
	if (r == 0) {
		s->keys_rec = keys_rec;
		s->keys_len = keys_len;
		s->meta_rec = meta_rec;
		s->meta_len = meta_len;
		keys_rec = meta_rec = NULL;
	}
out:
	if (r == -ENOMEM)
		snap_job_fail(s->job, r, "out of memory building the image metadata");
	snap_store_meta_clear(&m);
	free(keys_payload);
	free(keys_rec);
	free(meta_payload);
	free(meta_rec);
	return r;
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
static int store_table(struct store_ctx *s)
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
static int iframe_get(struct store_ctx *s, uint64_t k, const struct snap_store_index_frame **ret)
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
			else if ((r = iframe_get(s, fj->f.index, &want)) < 0)
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
		r = write_out(s, sl->out + fj->out_off, fj->out_len);
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
		r = nchunks ? snap_reader_start(v->reader, chunks, nchunks) : 0;
		if (r < 0) {
			free(chunks);
			r = snap_job_fail(s->job, r, "cannot read %s: %s", v->path,
					  snap_strerror(r));
			break;
		}
		if (!restart)
			v->first_frame = s->next_frame;
		for (size_t i = 0; i < nchunks && r == 0; i++) {
			unsigned si;
			uint64_t seq;
			if ((r = snap_pipeline_acquire(s->pipe, &si, &seq)) < 0)
				break;
			struct slot *sl = &s->slots[si];
			uint64_t c0 = snap_thread_cpu_ns();
			r = store_fill_slot(s, sl, vi, chunks[i].offset, (size_t)chunks[i].length);
			s->t.fill += ns_to_s(snap_thread_cpu_ns() - c0);
			if (r < 0)
				break;
			if (!sl->nframes)
				slot_release(sl); /* all zero: nothing for a worker */
			snap_pipeline_submit(s->pipe, sl->nframes == 0);
		}
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

static int store_start_workers(struct store_ctx *s)
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
static void store_stop_workers(struct store_ctx *s)
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

/* ---- the end of an S3 object (invariant 12) ---- */

static uint64_t iframe_end(const struct snap_store_index_frame *f)
{
	struct snap_store_frame tmp = {.flags = f->flags, .stored_len = f->stored_len};
	return f->file_offset + snap_store_frame_record_len(&tmp);
}

/* Reads, seals and writes again the frames [k0, n) of the first run, each its own chunk (its
 * blocks are all non-zero, so it is one frame again), volume by volume. */
static int store_replay_frames(struct store_ctx *s, uint64_t k0, uint64_t n)
{
	int r = store_start_workers(s);
	if (r < 0)
		return snap_job_fail(s->job, r, "cannot start worker threads: %s",
				     snap_strerror(r));
	struct snap_range *all = calloc(n - k0 + 1, sizeof(*all));
	uint32_t *vol = calloc(n - k0 + 1, sizeof(*vol));
	if (!all || !vol) {
		free(all);
		free(vol);
		return -ENOMEM;
	}
	/* every chunk taken from the table before the pipeline runs: its sink reads the table
	 * (store-internal.h invariant 2) */
	for (uint64_t k = k0; k < n && r == 0; k++) {
		const struct snap_store_index_frame *f;
		if ((r = iframe_get(s, k, &f)) < 0) {
			r = snap_job_fail(s->job, r, "cannot read frame %llu of the index: %s",
					  (unsigned long long)k, snap_strerror(r));
			break;
		}
		all[k - k0] = (struct snap_range){f->offset, f->raw_len};
		vol[k - k0] = f->volume;
	}
	for (uint64_t a = k0; a < n && r == 0;) {
		uint32_t vi = vol[a - k0];
		struct store_vol *v = &s->vols[vi];
		struct snap_range *chunks = all + (a - k0);
		size_t nc = 0;
		uint64_t b = a;
		for (; b < n && vol[b - k0] == vi; b++)
			nc++;
		a = b;
		if ((r = snap_reader_start(v->reader, chunks, nc)) < 0) {
			r = snap_job_fail(s->job, r, "cannot read %s: %s", v->path,
					  snap_strerror(r));
			break;
		}
		for (size_t i = 0; i < nc && r == 0; i++) {
			unsigned si;
			uint64_t seq;
			if ((r = snap_pipeline_acquire(s->pipe, &si, &seq)) < 0)
				break;
			struct slot *sl = &s->slots[si];
			r = store_fill_slot(s, sl, vi, chunks[i].offset, (size_t)chunks[i].length);
			if (r < 0)
				break;
			if (!sl->nframes)
				slot_release(sl);
			snap_pipeline_submit(s->pipe, sl->nframes == 0);
		}
	}
	free(all);
	free(vol);
	if (r == 0)
		r = snap_pipeline_finish(s->pipe);
	store_stop_workers(s);
	return r;
}

/* The image's bytes from offset from (the start of the streamed part that was promised past
 * the end) to the end of the data, written again as the first run wrote them: the head from
 * its records, then the frames, compared with the first run's (a source that changed fails). */
static int store_replay(struct store_ctx *s, uint64_t from)
{
	uint64_t data_end = s->written, n = s->niframes, k0 = 0;
	uint64_t head_len = s->meta_offset + s->meta_length;
	struct snap_progress *pg = &s->job->progress;
	uint64_t done0 = pg->bytes_done, read0 = pg->bytes_read, skipped0 = pg->bytes_skipped;
	/* k0: the first frame that ends past from (frames end in increasing order) */
	const struct snap_store_index_frame *f;
	uint64_t lo = 0, hi = n, at0 = data_end;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		int r = iframe_get(s, mid, &f);
		if (r < 0)
			return snap_job_fail(s->job, r, "cannot read the index: %s",
					     snap_strerror(r));
		if (iframe_end(f) <= from)
			lo = mid + 1;
		else
			hi = mid;
	}
	k0 = lo;
	if (k0 < n) {
		int r = iframe_get(s, k0, &f);
		if (r < 0)
			return snap_job_fail(s->job, r, "cannot read the index: %s",
					     snap_strerror(r));
		at0 = f->file_offset;
	}
	/* the entries [k0, n) stay where they are: the sink compares each frame sealed again
	 * with its entry in place (no second copy of an index that may be large) */
	s->niframes = s->next_frame = k0;
	s->vframes = NULL;
	s->nverify = n;
	s->replaying = true;
	s->skip_to = from;
	int r = 0;
	if (from < head_len) {
		s->written = 0;
		r = write_all(s, s->header, sizeof(s->header));
		if (r == 0 && s->keys_len)
			r = write_all(s, s->keys_rec, s->keys_len);
		if (r == 0)
			r = write_all(s, s->meta_rec, s->meta_len);
	} else {
		s->written = at0;
	}
	if (r == 0 && k0 < n)
		r = store_replay_frames(s, k0, n);
	if (r == 0 && (s->written != data_end || s->niframes != n))
		r = snap_job_fail(s->job, -ESTALE,
				  "cannot complete %s: %s changed since the upload began (its data "
				  "ends at %llu, not %llu)",
				  s->url, s->vols[0].path, (unsigned long long)s->written,
				  (unsigned long long)data_end);
	s->replaying = false;
	s->nverify = 0;
	s->vframes = NULL;
	/* the first run counted these bytes (invariant 6) */
	pg->bytes_done = done0;
	pg->bytes_read = read0;
	pg->bytes_skipped = skipped0;
	pg->bytes_written = s->written;
	return r;
}

/* The object's size, known now: a streamed part whose request was started for part_size bytes
 * past the end is abandoned, and its bytes are produced again with their length (invariant
 * 12). */
static int store_end_s3(struct store_ctx *s, uint64_t size)
{
	uint64_t at = 0, cur = s->written > s->skip_to ? s->written : s->skip_to;
	int r = snap_output_seq_s3_rewind(s->seq, size, &at);
	if (r < 0)
		return snap_job_fail(s->job, r, "%s",
				     snap_output_seq_error(s->seq) ? snap_output_seq_error(s->seq)
								   : snap_strerror(r));
	if (at >= cur)
		return 0;
	snap_info("%s ends inside a streamed part begun for %llu bytes: producing its bytes from "
		  "offset %llu again with their length",
		  s->url, (unsigned long long)s->part_size, (unsigned long long)at);
	return store_replay(s, at);
}

/* ---- tail ---- */

/* The SIGNATURE record over header, KEYS, META and INDEX (formats/STORE_FORMAT.md); the INDEX
 * record by its SHA-256. */
static int store_sign(struct store_ctx *s, const uint8_t index_digest[SNAP_STORE_DIGEST_SIZE],
		      uint8_t **ret, size_t *ret_len)
{
	const char *keyfile = snap_job_string(s->job, SNAP_SPARAM_SIGNING_KEY);
	char *pem = NULL;
	size_t pem_len = 0;
	int r = snap_job_read_file(s->job, keyfile, NULL, 1u << 20, &pem, &pem_len);
	if (r < 0)
		return r;
	uint8_t msg[SNAP_STORE_SIGNED_MSG_SIZE];
	uint8_t *sig = NULL, *spki = NULL, *payload = NULL;
	size_t sl = 0, kl = 0, pl = 0;
	const char *why = "";
	r = snap_store_signed_message_digest(s->header, s->keys_rec, s->keys_len, s->meta_rec,
					     s->meta_len, index_digest, msg);
	if (r == 0)
		r = snap_store_sign(pem, pem_len, msg, sizeof(msg), &sig, &sl, &spki, &kl, &why);
	OPENSSL_cleanse(pem, pem_len);
	free(pem);
	if (r < 0)
		return snap_job_fail(s->job, r, "cannot sign with %s: %s", keyfile, why);
	struct snap_store_signature sg = {spki, kl, sig, sl};
	r = snap_store_signature_encode(&sg, &payload, &pl);
	if (r == 0)
		r = snap_store_build_record(SNAP_STORE_REC_SIGNATURE, payload, pl, NULL, NULL, NULL,
					    0, ret, ret_len);
	free(payload);
	free(sig);
	free(spki);
	return r;
}

static int table_read(void *ctx, uint64_t first, size_t n, struct snap_store_index_frame *out)
{
	return store_table_read(ctx, first, n, out);
}

/* The INDEX of the frames in the table (read from it, not copied) and the volumes' extent
 * maps and digests. */
static int store_index(struct store_ctx *s, struct snap_store_index *ix)
{
	s->table_src = (struct snap_store_frame_source){table_read, s->table};
	*ix = (struct snap_store_index){
	    .meta_offset = s->meta_offset,
	    .meta_length = s->meta_length,
	    .nvolumes = (uint32_t)s->nvols,
	    .nframes = s->niframes,
	    .source = &s->table_src,
	};
	memcpy(ix->meta_digest, s->meta_digest, sizeof(ix->meta_digest));
	ix->vols = calloc(s->nvols, sizeof(*ix->vols));
	if (!ix->vols)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; i < s->nvols && r == 0; i++) {
		struct snap_store_index_volume *iv = &ix->vols[i];
		struct snap_map *map = s->vols[i].layout->map;
		iv->first_frame = s->vols[i].first_frame;
		iv->nframes = s->vols[i].nframes;
		iv->nextents = snap_map_count(map);
		iv->extents = calloc(iv->nextents, sizeof(*iv->extents));
		if (!iv->extents) {
			r = -ENOMEM;
			break;
		}
		for (size_t j = 0; j < iv->nextents; j++)
			iv->extents[j] = *snap_map_get(map, j);
		r = snap_store_volume_digest_source((uint32_t)i, snap_map_size(map), iv->extents,
						    iv->nextents, &s->table_src, iv->first_frame,
						    iv->nframes, iv->digest);
	}
	return r;
}

static int emit_digest(void *ctx, const void *buf, size_t len)
{
	return snap_store_mac_update(ctx, buf, len);
}

/* The write pass checks itself: the bytes written must have the CRC the first pass sealed. */
struct tail_write {
	struct store_ctx *s;
	uLong crc; /* with the prefix's crc field as zero, as the CRC is defined */
	bool started;
};

static int emit_write(void *ctx, const void *buf, size_t len)
{
	struct tail_write *tw = ctx;
	if (!tw->started) {
		/* snap_store_index_record_stream hands the prefix over alone, first */
		uint8_t pfx[SNAP_STORE_PREFIX_SIZE] = {0};
		if (len != sizeof(pfx))
			return -EIO;
		memcpy(pfx, buf, 4);
		memcpy(pfx + 8, (const uint8_t *)buf + 8, 8);
		tw->crc = crc32_z(tw->crc, pfx, sizeof(pfx));
		tw->started = true;
	} else {
		tw->crc = crc32_z(tw->crc, buf, len);
	}
	return write_all(tw->s, buf, len);
}

/* SHA-256 of the INDEX record, for the signature: a pass over the record as it will stream. */
static int store_index_digest(const struct snap_store_index *ix,
			      const struct snap_store_record_seal *seal,
			      uint8_t out[SNAP_STORE_DIGEST_SIZE])
{
	struct snap_store_mac_ctx *sha = NULL;
	int r = snap_store_mac_new(NULL, &sha);
	if (r == 0)
		r = snap_store_index_record_stream(ix, seal, emit_digest, sha);
	if (r == 0)
		r = snap_store_mac_final(sha, out);
	snap_store_mac_free(sha);
	return r;
}

/* The record's bytes as the seal saw them: the same frame table, the same CRC (its own field
 * read as zero, as the CRC covers it). */
static int store_write_index(struct store_ctx *s, const struct snap_store_index *ix,
			     const struct snap_store_record_seal *seal)
{
	if (ix->nframes != s->niframes)
		return snap_job_fail(s->job, -EIO, "the index changed while it was written");
	struct tail_write tw = {.s = s, .crc = crc32(0L, Z_NULL, 0)};
	int r = snap_store_index_record_stream(ix, seal, emit_write, &tw);
	if (r < 0) /* a write failed the job already; a prefix not handed over alone did not */
		return tw.started ? r : snap_job_fail(s->job, r, "cannot write the index");
	if ((uint32_t)tw.crc != seal->crc)
		return snap_job_fail(s->job, -EIO, "the index changed while it was written");
	return 0;
}

/* The INDEX record is never held whole (bench/RESULTS.md, the end of a store): it is encoded
 * from the frame table in 256 KiB pieces, once for its tag and CRC, once more for the
 * signature's digest when signed, and once as it is written. */
static int store_write_tail(struct store_ctx *s)
{
	struct snap_store_index ix;
	struct snap_store_record_seal seal;
	uint8_t *sig_rec = NULL;
	size_t sig_len = 0;
	int r = store_index(s, &ix);
	if (s->table && store_table_spilled(s->table))
		snap_debug("the frame table (%llu entries) was spilled to a temporary file",
			   (unsigned long long)s->niframes);
	if (r == 0)
		r = snap_store_index_record_seal(&ix, s->encrypted ? s->keys.mac : NULL, &seal);
	if (r < 0) {
		snap_store_index_clear(&ix);
		return snap_job_fail(s->job, r, "cannot build the index");
	}
	struct snap_store_footer ft = {
	    .index_offset = s->written,
	    .index_length = seal.length,
	    .image_size = s->written + seal.length + SNAP_STORE_FOOTER_SIZE,
	};
	memcpy(ft.image_id, s->image_id, SNAP_STORE_ID_SIZE);
	if (snap_job_string(s->job, SNAP_SPARAM_SIGNING_KEY)) {
		uint8_t digest[SNAP_STORE_DIGEST_SIZE];
		r = store_index_digest(&ix, &seal, digest);
		if (r < 0)
			r = snap_job_fail(s->job, r, "cannot build the index");
		else
			r = store_sign(s, digest, &sig_rec, &sig_len);
	}
	ft.image_size += sig_len;
	uint8_t foot[SNAP_STORE_FOOTER_SIZE];
	snap_store_footer_encode(&ft, foot);
	if (r == 0 && s->url)
		r = store_end_s3(s, ft.image_size);
	if (r == 0) {
		/* the sources are read for the last time (store_end_s3) */
		for (size_t i = 0; i < s->nvols; i++)
			snap_layout_thaw(s->vols[i].layout);
		r = store_write_index(s, &ix, &seal);
	}
	snap_store_index_clear(&ix);
	if (r == 0 && sig_rec)
		r = write_all(s, sig_rec, sig_len);
	free(sig_rec);
	if (r == 0)
		r = write_all(s, foot, sizeof(foot));
	return r;
}

/* ---- output file ---- */

/* ---- an S3 object (invariants 10, 11) ---- */

/* The transport acknowledged a part (any thread). */
static void store_on_part(void *userdata, uint32_t part_number, const char *etag, uint64_t end)
{
	struct store_ctx *s = userdata;
	struct store_ckpt *ck = atomic_load(&s->ckpt);
	if (ck)
		store_ckpt_part(ck, part_number, etag, end);
}

/* Parts of PART bytes such that the largest image the sources can make fits in S3's 10,000:
 * every byte stored raw in frames of two blocks (the most frame overhead zero blocks can cause),
 * an index entry per frame, and the head. */
static int store_part_size(struct store_ctx *s, uint64_t *ret)
{
	int64_t want = snap_job_param(s->job, SNAP_PARAM_S3_PART_SIZE, 0);
	if (want) {
		if (want < (int64_t)SNAP_S3_MIN_PART_SIZE || want > (int64_t)SNAP_S3_MAX_PART_SIZE)
			return snap_job_fail(s->job, -EINVAL,
					     "part size must be 5 MiB to 5 GiB, not %lld",
					     (long long)want);
		*ret = (uint64_t)want;
		return 0;
	}
	uint64_t total = 0, frames = 0;
	for (size_t i = 0; i < s->nvols; i++) {
		total += s->vols[i].src->size;
		frames += s->vols[i].src->size / (2 * SNAP_STORE_BLOCK_SIZE) + 1;
	}
	uint64_t per = SNAP_STORE_FRAME_HEADER_SIZE + SNAP_STORE_FRAME_TRAILER_SIZE +
		       SNAP_STORE_GCM_TAG_SIZE + sizeof(struct snap_store_index_frame);
	uint64_t bound = total + frames * per + (16ull << 20);
	uint64_t part = (bound + SNAP_S3_MAX_PARTS - 1) / SNAP_S3_MAX_PARTS;
	part = (part + (1u << 20) - 1) & ~((uint64_t)(1u << 20) - 1);
	if (part < SNAP_S3_DEFAULT_PART_SIZE)
		part = SNAP_S3_DEFAULT_PART_SIZE;
	if (part > SNAP_S3_MAX_PART_SIZE)
		return snap_job_fail(s->job, -EFBIG,
				     "%llu bytes of volumes do not fit in one S3 object",
				     (unsigned long long)total);
	*ret = part;
	return 0;
}

/* The object's metadata (x-amz-meta-ami-*, as the META record has them) and tags. */
static int store_s3_pairs(struct store_ctx *s, struct snap_store_meta *m,
			  struct snap_s3_pair **ret_meta, size_t *ret_nmeta,
			  struct snap_s3_pair **ret_tags, size_t *ret_ntags)
{
	int r = store_meta(s, m);
	if (r < 0)
		return r;
	struct snap_s3_pair *meta = calloc(m->s3.n + 1, sizeof(*meta));
	struct snap_s3_pair *tags = calloc(m->tags.n + 1, sizeof(*tags));
	if (!meta || !tags) {
		free(meta);
		free(tags);
		return -ENOMEM;
	}
	size_t nm = 0, nt = 0;
	/* "x-amz-meta-NAME=VALUE" (store_meta): S3 wants NAME and VALUE */
	for (size_t i = 0; i < m->s3.n; i++) {
		char *kv = m->s3.v[i], *eq = strchr(kv, '=');
		if (!eq || strncmp(kv, "x-amz-meta-", 11))
			continue;
		*eq = 0;
		meta[nm++] = (struct snap_s3_pair){kv + 11, eq + 1};
	}
	for (size_t i = 0; i < m->tags.n; i++) {
		char *kv = m->tags.v[i], *eq = strchr(kv, '=');
		if (!eq)
			continue;
		*eq = 0;
		tags[nt++] = (struct snap_s3_pair){kv, eq + 1};
	}
	*ret_meta = meta;
	*ret_nmeta = nm;
	*ret_tags = tags;
	*ret_ntags = nt;
	return 0;
}

/* SNAPBUNDLE_TEST_S3_STREAM=1, for tests only: every part of a new upload streams (as parts over
 * SNAP_S3_MAX_BUFFERED_PART do), so that tests reach the streamed end (invariant 12) with parts
 * of a few MiB. */
static bool store_test_stream(void)
{
	const char *e = getenv("SNAPBUNDLE_TEST_S3_STREAM");
	return e && *e && strcmp(e, "0") != 0;
}

static int store_create_s3(struct store_ctx *s, unsigned flags)
{
	struct snap_job *job = s->job;
	char *bucket = NULL, *key = NULL, *detail = NULL;
	int r = snap_s3_url_parse(s->path, &bucket, &key, &detail);
	if (r < 0) {
		r = snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
		goto out;
	}
	if (!s->url) {
		char id[40];
		size_t kl = strlen(key);
		bool prefix = !kl || key[kl - 1] == '/';
		if (asprintf(&s->url, "s3://%s/%s%s%s", bucket, key,
			     prefix ? store_ami_id(s, id) : "", prefix ? ".bin" : "") < 0) {
			s->url = NULL;
			r = -ENOMEM;
			goto out;
		}
	}
	if ((r = snap_job_s3_client(job, &s->s3c)) < 0) {
		r = snap_job_fail(job, r, "cannot reach S3 for %s: %s", s->url, snap_strerror(r));
		goto out;
	}
	uint64_t part = s->rs.part_size;
	if (!s->resuming && (r = store_part_size(s, &part)) < 0)
		goto out;
	s->part_size = part;
	struct snap_store_meta m = {0};
	struct snap_s3_pair *meta = NULL, *tags = NULL;
	size_t nmeta = 0, ntags = 0;
	/* a resume's metadata went with its CreateMultipartUpload; its tags are set at the
	 * commit (output.c), from the options given now */
	if ((r = store_s3_pairs(s, &m, &meta, &nmeta, &tags, &ntags)) < 0) {
		snap_store_meta_clear(&m);
		goto out;
	}
	struct snap_s3_put_options po = {
	    .acl = snap_job_string(job, SNAP_SPARAM_S3_ACL),
	    .meta = meta,
	    .nmeta = nmeta,
	    .tags = tags,
	    .ntags = ntags,
	};
	s->keep_upload = !snap_job_param(job, SNAP_PARAM_NO_RESUME, 0);
	struct snap_output_s3 o = {
	    .client = s->s3c,
	    .put = &po,
	    .part_size = part,
	    .keep = s->keep_upload,
	    .stream = store_test_stream(),
	    .on_part = store_on_part,
	    .on_part_userdata = s,
	};
	if (s->resuming) {
		o.upload_id = s->rs.upload_id;
		o.parts = s->rs.parts;
		o.nparts = s->rs.nparts;
	}
	r = snap_output_open_s3(s->url, flags, &o, &s->out, &detail);
	free(meta);
	free(tags);
	snap_store_meta_clear(&m);
	if (r < 0) {
		r = snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
		goto out;
	}
	snap_job_set_result_string(job, SNAP_RESULT_OBJECT_URL, s->url);
out:
	free(detail);
	free(bucket);
	free(key);
	return r;
}

/* The checkpoint of a new upload, once the head is written: its fixed part. */
static int store_ckpt_start(struct store_ctx *s)
{
	struct store_ckpt_state st = {
	    .url = s->url,
	    .upload_id = (char *)snap_output_s3_upload_id(s->out),
	    .part_size = s->part_size,
	    .frame_size = s->frame_size,
	    .level = s->level,
	    .nonce_seed = s->nonce_rng.seed,
	    .meta_offset = s->meta_offset,
	    .meta_length = s->meta_length,
	    .nvols = s->nvols,
	    .frames = s->resuming ? s->rs.frames : NULL, /* [0, niframes): store_resume_plan */
	    .nframes = s->niframes,
	};
	uint8_t *head = NULL;
	int r = 0;
	char *detail = NULL;
	if (!st.upload_id)
		return 0;
	st.vols = calloc(s->nvols, sizeof(*st.vols));
	st.head_len = (size_t)(s->meta_offset + s->meta_length);
	head = malloc(st.head_len);
	if (!st.vols || !head) {
		r = -ENOMEM;
		goto out;
	}
	if (s->resuming) {
		memcpy(head, s->rs.head, st.head_len);
		st.parts = s->rs.parts;
		st.nparts = s->rs.nparts;
		st.part_ends = s->rs.part_ends;
	} else {
		memcpy(head, s->header, sizeof(s->header));
		if (s->keys_len)
			memcpy(head + sizeof(s->header), s->keys_rec, s->keys_len);
		memcpy(head + s->meta_offset, s->meta_rec, s->meta_len);
	}
	st.head = head;
	for (size_t i = 0; i < s->nvols; i++) {
		struct stat sb;
		st.vols[i].path = (char *)s->vols[i].path;
		st.vols[i].size = s->vols[i].src->size;
		if (fstat(s->vols[i].src->fd_buffered, &sb) == 0 && S_ISREG(sb.st_mode))
			st.vols[i].mtime_ns =
			    (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	}
	struct store_ckpt *ck = NULL;
	r = store_ckpt_create(s->ckpt_path, &st, &ck, &detail);
	if (r < 0) {
		r = snap_job_fail(s->job, r, "%s", detail ? detail : snap_strerror(r));
		goto out;
	}
	atomic_store(&s->ckpt, ck);
out:
	free(detail);
	free(head);
	free(st.vols);
	return r;
}

/* An encrypted resume: the data key unwrapped from the checkpoint's KEYS with the passphrase or
 * a recipient's private key, the checkpoint's META authenticated by it (invariant 11). */
static int store_resume_keys(struct store_ctx *s)
{
	struct snap_job *job = s->job;
	const char *pass = snap_job_string(job, SNAP_SPARAM_PASSPHRASE);
	const char *key = snap_job_string(job, SNAP_SPARAM_PRIVATE_KEY);
	if (!pass && !key)
		return snap_job_fail(job, -ENOKEY,
				     "cannot resume the encrypted store %s: give its passphrase or "
				     "the private key of a recipient",
				     s->rs.url);
	if (s->rs.meta_offset < SNAP_STORE_HEADER_SIZE)
		return snap_job_fail(job, -EUCLEAN, "the checkpoint %s has no key record",
				     s->ckpt_path);
	/* the image reader reads a head from a descriptor: the checkpoint's, in memory */
	int fd = memfd_create("snapbundle-head", MFD_CLOEXEC);
	if (fd < 0)
		return snap_job_fail(job, -errno, "cannot make a memory file: %s",
				     snap_strerror(-errno));
	struct snap_store_image *img = NULL;
	int r = 0;
	for (size_t done = 0; done < s->rs.head_len && r == 0;) {
		ssize_t n = write(fd, s->rs.head + done, s->rs.head_len - done);
		if (n <= 0)
			r = n < 0 ? -errno : -EIO;
		else
			done += (size_t)n;
	}
	if (r == 0 && lseek(fd, 0, SEEK_SET) < 0)
		r = -errno;
	if (r == 0)
		r = snap_store_image_new(&img);
	if (r < 0) {
		close(fd);
		return snap_job_fail(job, r, "cannot read the checkpoint %s: %s", s->ckpt_path,
				     snap_strerror(r));
	}
	r = store_image_open_fd(img, fd, s->ckpt_path, true);
	if (r == 0)
		r = snap_store_image_unlock(img, pass, key);
	if (r < 0) {
		r = snap_job_fail(job, r, "cannot resume %s: %s", s->rs.url,
				  snap_store_image_error(img));
		snap_store_image_free(img);
		return r;
	}
	s->keys = img->ks;
	s->encrypted = true;
	s->keys_len = img->keys_len;
	s->keys_rec = img->keys_rec;
	img->keys_rec = NULL;
	snap_store_image_free(img); /* cleanses its keyset */
	return 0;
}

/* --resume, before the volumes are opened: the checkpoint of the -o given, its frame size and
 * level (the image's), its head. */
static int store_resume_load(struct store_ctx *s)
{
	struct snap_job *job = s->job;
	char *detail = NULL;
	int r = store_ckpt_load(s->ckpt_path, &s->rs, &detail);
	if (r == -ENOENT)
		return snap_job_fail(job, r,
				     "cannot resume %s: no checkpoint (%s): nothing was kept",
				     s->path, s->ckpt_path);
	if (r < 0) {
		r = snap_job_fail(job, r, "cannot resume %s: %s", s->path,
				  detail ? detail : snap_strerror(r));
		free(detail);
		return r;
	}
	struct snap_store_header h;
	const char *why = "";
	if (s->rs.head_len < SNAP_STORE_HEADER_SIZE ||
	    snap_store_header_decode(s->rs.head, SNAP_STORE_HEADER_SIZE, &h, &why) < 0)
		return snap_job_fail(job, -EUCLEAN,
				     "cannot resume %s: the checkpoint %s has no "
				     "valid image header",
				     s->path, s->ckpt_path);
	if ((h.compat & SNAP_STORE_COMPAT_SIGNATURE) !=
	    (snap_job_string(job, SNAP_SPARAM_SIGNING_KEY) ? SNAP_STORE_COMPAT_SIGNATURE : 0))
		return snap_job_fail(job, -EINVAL,
				     "cannot resume %s: it was begun %s a signing key", s->rs.url,
				     h.compat & SNAP_STORE_COMPAT_SIGNATURE ? "with" : "without");
	if (!(s->url = strdup(s->rs.url)))
		return -ENOMEM;
	s->nonce_rng = (struct snap_store_rng){.seeded = true, .seed = s->rs.nonce_seed};
	if ((h.incompat & SNAP_STORE_INCOMPAT_ENCRYPTED) && (r = store_resume_keys(s)) < 0)
		return r;
	memcpy(s->image_id, h.image_id, SNAP_STORE_ID_SIZE);
	memcpy(s->header, s->rs.head, SNAP_STORE_HEADER_SIZE);
	s->frame_size = s->rs.frame_size;
	s->level = s->rs.level;
	s->meta_offset = s->rs.meta_offset;
	s->meta_length = s->meta_len = (size_t)s->rs.meta_length;
	if (!(s->meta_rec = malloc(s->meta_len)))
		return -ENOMEM;
	memcpy(s->meta_rec, s->rs.head + s->meta_offset, s->meta_len);
	const void *parts[] = {s->meta_rec};
	const size_t lens[] = {s->meta_len};
	return snap_store_mac(NULL, parts, lens, 1, s->meta_digest);
}

static int cmp_part(const void *a, const void *b)
{
	const struct snap_s3_part *x = a, *y = b;
	return x->part_number < y->part_number ? -1 : x->part_number > y->part_number;
}

/* --resume, once the volumes are open: the same sources, the kept parts 1..n, where reading
 * starts again (invariant 11). */
static int store_resume_plan(struct store_ctx *s)
{
	struct snap_job *job = s->job;
	struct store_ckpt_state *rs = &s->rs;
	if (rs->nvols != s->nvols)
		return snap_job_fail(job, -ESTALE,
				     "cannot resume %s: it was begun with %zu volumes, "
				     "not %zu",
				     rs->url, rs->nvols, s->nvols);
	for (size_t i = 0; i < s->nvols; i++) {
		struct stat sb;
		int64_t mt = 0;
		if (fstat(s->vols[i].src->fd_buffered, &sb) == 0 && S_ISREG(sb.st_mode))
			mt = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
		if (rs->vols[i].size != s->vols[i].src->size || rs->vols[i].mtime_ns != mt)
			return snap_job_fail(job, -ESTALE,
					     "cannot resume %s: %s changed since the upload began "
					     "(%s)",
					     rs->url, s->vols[i].path,
					     rs->vols[i].size != s->vols[i].src->size
						 ? "its size differs"
						 : "it was modified");
	}
	/* the parts in number order, each one's latest acknowledgement; then the run 1..n */
	struct snap_s3_part *p = rs->parts;
	uint64_t *ends = calloc(rs->nparts + 1, sizeof(*ends));
	if (!ends)
		return -ENOMEM;
	for (size_t i = 0; i < rs->nparts; i++)
		p[i].size = rs->part_ends[i]; /* carried through the sort */
	qsort(p, rs->nparts, sizeof(*p), cmp_part);
	size_t n = 0;
	for (size_t i = 0; i < rs->nparts; i++) {
		if (n && p[n - 1].part_number == p[i].part_number) {
			free(p[n - 1].etag);
			p[n - 1] = p[i];
			continue;
		}
		if (p[i].part_number != n + 1) {
			for (size_t j = i; j < rs->nparts; j++)
				free(p[j].etag);
			break;
		}
		p[n++] = p[i];
	}
	uint64_t prev = 0;
	for (size_t i = 0; i < n; i++) {
		ends[i] = p[i].size;
		if (ends[i] <= prev) {
			free(ends);
			rs->nparts = i;
			return snap_job_fail(job, -EUCLEAN,
					     "cannot resume %s: the checkpoint %s is "
					     "inconsistent (part %u)",
					     rs->url, s->ckpt_path, p[i].part_number);
		}
		p[i].size = ends[i] - prev;
		prev = ends[i];
	}
	rs->nparts = n;
	free(rs->part_ends);
	rs->part_ends = ends;
	if (n == 0)
		return 0; /* nothing kept: store_resume_fresh */
	uint64_t e = ends[n - 1], eprev = n > 1 ? ends[n - 2] : 0;
	/* frames of the kept parts; the first one of part n (or crossing into it) */
	uint64_t m = 0, k0 = UINT64_MAX;
	for (uint64_t k = 0; k < rs->nframes && rs->frames[k].file_offset < e; k++) {
		const struct snap_store_index_frame *f = &rs->frames[k];
		struct snap_store_frame tmp = {.flags = f->flags, .stored_len = f->stored_len};
		uint64_t end = f->file_offset + snap_store_frame_record_len(&tmp);
		if (f->volume >= s->nvols ||
		    f->file_offset !=
			(k ? rs->frames[k - 1].file_offset +
				 snap_store_frame_record_len(&(struct snap_store_frame){
				     .flags = rs->frames[k - 1].flags,
				     .stored_len = rs->frames[k - 1].stored_len})
			   : rs->head_len))
			return snap_job_fail(job, -EUCLEAN,
					     "cannot resume %s: the checkpoint %s is inconsistent "
					     "(frame %llu)",
					     rs->url, s->ckpt_path, (unsigned long long)k);
		if (k0 == UINT64_MAX && end > eprev)
			k0 = k;
		m = k + 1;
	}
	uint64_t kstart = m;
	if (k0 != UINT64_MAX) {
		s->resume_vol = rs->frames[k0].volume;
		s->resume_off = rs->frames[k0].offset / s->frame_size * s->frame_size;
		for (kstart = 0; kstart < k0; kstart++)
			if (rs->frames[kstart].volume == s->resume_vol &&
			    rs->frames[kstart].offset >= s->resume_off)
				break;
	} else {
		/* part n holds only the index and what follows: every volume was read */
		s->resume_vol = (uint32_t)s->nvols;
		s->resume_off = 0;
	}
	s->nverify = m;
	s->vframes = rs->frames;
	s->skip_to = e;
	s->table = store_table_free(s->table);
	s->niframes = 0;
	int r = store_table(s);
	for (uint64_t k = 0; k < kstart && r == 0; k++)
		r = store_table_put(s->table, k, &rs->frames[k]);
	if (r < 0)
		return snap_job_fail(s->job, r, "cannot record the frames of %s: %s", s->ckpt_path,
				     snap_strerror(r));
	s->niframes = s->next_frame = kstart;
	if (kstart) {
		const struct snap_store_index_frame *f = &rs->frames[kstart - 1];
		struct snap_store_frame tmp = {.flags = f->flags, .stored_len = f->stored_len};
		s->written = f->file_offset + snap_store_frame_record_len(&tmp);
	} else {
		s->written = rs->head_len;
	}
	/* the frames that start again are recorded again (store_ckpt_start writes [0, kstart)) */
	rs->nframes = kstart;
	snap_info("resuming %s: %zu parts (%llu bytes) kept, reading again from %s at offset %llu",
		  rs->url, n, (unsigned long long)e,
		  s->resume_vol < s->nvols ? s->vols[s->resume_vol].path : "the end",
		  (unsigned long long)s->resume_off);
	return 0;
}

/* Below the restart, the extent map as the first run left it (invariant 11): every byte of a
 * DATA extent outside the checkpoint's frames was a zero block. Also the volumes' frame
 * ranges. */
static int store_resume_marks(struct store_ctx *s)
{
	/* the table's entries below the restart are the checkpoint's (store_resume_plan) */
	const struct snap_store_index_frame *fr = s->rs.frames;
	for (uint32_t vi = 0; vi < s->nvols && vi <= s->resume_vol; vi++) {
		struct store_vol *v = &s->vols[vi];
		uint64_t limit = vi < s->resume_vol ? v->src->size : s->resume_off;
		struct snap_map *map = v->layout->map;
		size_t n = snap_map_count(map), nr = 0;
		struct snap_range *ranges = calloc(n ? n : 1, sizeof(*ranges));
		if (!ranges)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			const struct snap_extent *e = snap_map_get(map, i);
			if (e->kind == SNAP_EXTENT_DATA && e->offset < limit)
				ranges[nr++] =
				    (struct snap_range){e->offset, (e->offset + e->length < limit
									? e->offset + e->length
									: limit) -
								       e->offset};
		}
		/* this volume's frames below the restart, in offset order */
		uint64_t k = 0;
		while (k < s->niframes && fr[k].volume < vi)
			k++;
		v->first_frame = k;
		int r = 0;
		for (size_t i = 0; i < nr && r == 0; i++) {
			uint64_t at = ranges[i].offset, end = at + ranges[i].length;
			while (at < end && r == 0) {
				while (k < s->niframes && fr[k].volume == vi &&
				       fr[k].offset + fr[k].raw_len <= at)
					k++;
				bool in = k < s->niframes && fr[k].volume == vi;
				uint64_t fs = in ? fr[k].offset : end;
				if (fs > at) {
					uint64_t z = (fs < end ? fs : end) - at;
					r = snap_map_mark(map, at, z, SNAP_EXTENT_ZERO,
							  SNAP_LAYER_ZEROSCAN);
					at += z;
				} else {
					at = fr[k].offset + fr[k].raw_len;
				}
			}
		}
		free(ranges);
		while (k < s->niframes && fr[k].volume == vi)
			k++;
		v->nframes = k - v->first_frame;
		if (r < 0)
			return snap_job_fail(s->job, r, "cannot rebuild the extent map of %s: %s",
					     v->path, snap_strerror(r));
	}
	return 0;
}

/* Before the volumes: the checkpoint's name for an s3:// output, and --resume's loading. */
static int store_prepare_s3(struct store_ctx *s)
{
	struct snap_job *job = s->job;
	const char *out = snap_job_string(job, SNAP_SPARAM_OUTPUT);
	bool resume = snap_job_param(job, SNAP_PARAM_RESUME, 0);
	if (!out || !snap_s3_is_url(out)) {
		if (resume)
			return snap_job_fail(job, -EINVAL,
					     "only a store into S3 (-o s3://...) can be resumed");
		return 0;
	}
	if (resume && snap_job_param(job, SNAP_PARAM_NO_RESUME, 0))
		return snap_job_fail(job, -EINVAL, "give either resume or no-resume, not both");
	/* --no-resume keeps nothing, and needs no place to keep it */
	int r = store_ckpt_path(out, &s->ckpt_path);
	if (r < 0 && !snap_job_param(job, SNAP_PARAM_NO_RESUME, 0))
		return snap_job_fail(job, r,
				     "cannot make the checkpoint directory of %s: %s (set "
				     "XDG_STATE_HOME, or use --no-resume)",
				     out, snap_strerror(r));
	s->path = out;
	if (!resume)
		return 0;
	s->resuming = true;
	return store_resume_load(s);
}

/* --resume found no part kept: the upload is aborted and the store starts over. */
static int store_resume_fresh(struct store_ctx *s)
{
	struct snap_s3_client *c = NULL;
	char *bucket = NULL, *key = NULL, *detail = NULL;
	int r = snap_job_s3_client(s->job, &c);
	if (r == 0)
		r = snap_s3_url_parse(s->rs.url, &bucket, &key, &detail);
	if (r == 0)
		r = snap_s3_abort_upload(c, bucket, key, s->rs.upload_id, &detail);
	if (r < 0 && r != -ENOENT)
		snap_warn("cannot abort the upload %s of %s: %s", s->rs.upload_id, s->rs.url,
			  detail ? detail : snap_strerror(r));
	snap_info("no part of %s was kept: storing it again", s->rs.url);
	free(bucket);
	free(key);
	free(detail);
	s->resuming = false;
	free(s->meta_rec);
	s->meta_rec = NULL;
	s->meta_len = 0;
	store_ckpt_state_clear(&s->rs);
	return 0;
}

static int store_create_output(struct store_ctx *s)
{
	s->path = snap_job_string(s->job, SNAP_SPARAM_OUTPUT);
	if (!s->path)
		return snap_job_fail(s->job, -EINVAL, "no output given");
	unsigned flags = SNAP_OUTPUT_APPEND;
	if (snap_job_param(s->job, SNAP_PARAM_FORCE, 0))
		flags |= SNAP_OUTPUT_FORCE;
	if (snap_job_param(s->job, SNAP_PARAM_NO_DIRECT, 0))
		flags |= SNAP_OUTPUT_BUFFERED;
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

/* A resumed writer knows no put options: the tags (--tag, as given to the resume) are set on
 * the completed object here, as the writer does after a completion of its own. */
static int store_resume_tags(struct store_ctx *s)
{
	const char **l = NULL;
	size_t n = snap_job_list(s->job, SNAP_SPARAM_TAG, &l);
	struct snap_s3_pair *tags = calloc(n + 1, sizeof(*tags));
	char **dup = calloc(n + 1, sizeof(*dup));
	char *bucket = NULL, *key = NULL, *detail = NULL;
	int r = tags && dup ? 0 : -ENOMEM;
	size_t nt = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		char *eq;
		if (!(dup[i] = strdup(l[i])))
			r = -ENOMEM;
		else if ((eq = strchr(dup[i], '=')))
			*eq = 0, tags[nt++] = (struct snap_s3_pair){dup[i], eq + 1};
	}
	if (r == 0 && nt && (r = snap_s3_url_parse(s->url, &bucket, &key, &detail)) == 0)
		r = snap_s3_put_tagging(s->s3c, bucket, key, tags, nt, &detail);
	if (r < 0)
		snap_job_fail(s->job, r, "cannot tag %s: %s", s->url,
			      detail ? detail : snap_strerror(r));
	for (size_t i = 0; dup && i < n; i++)
		free(dup[i]);
	free(dup);
	free(tags);
	free(l);
	free(bucket);
	free(key);
	free(detail);
	return r;
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

/* A cancel made the job's client refuse every request, the writer's AbortMultipartUpload too:
 * an upload not kept is aborted through a client of its own. */
static void store_abort_upload(struct store_ctx *s, const char *upload_id)
{
	struct snap_s3_client *c = NULL;
	char *bucket = NULL, *key = NULL, *detail = NULL;
	int r = snap_job_s3_cleanup_client(s->job, &c);
	if (r == 0)
		r = snap_s3_url_parse(s->url, &bucket, &key, &detail);
	if (r == 0)
		r = snap_s3_abort_upload(c, bucket, key, upload_id, &detail);
	if (r < 0 && r != -ENOENT)
		snap_warn("cannot abort the upload %s of %s: %s (snapbundle abort %s discards it)",
			  upload_id, s->url, detail ? detail : snap_strerror(r), s->url);
	snap_s3_client_free(c);
	free(bucket);
	free(key);
	free(detail);
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
