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
 *  8. During the data stage one writer thread owns the descriptor, s->written and the index
 *     entries: it writes finished slots strictly in sequence and frees them, so the run thread
 *     only reads and cuts, and a slow write never stalls the workers' supply. It never calls
 *     the job: its first failure (or a worker's, seen on the slot) is kept in werr/wmsg and
 *     recorded by the run thread. The run thread writes the head before it starts and the
 *     tail after it was joined.
 *  9. A file output also gets an O_DIRECT descriptor (unless SNAP_PARAM_NO_DIRECT, the
 *     environment's SNAPBUNDLE_OUTPUT_BUFFERED=1, or a refusal): the object is staged in an
 *     aligned 4 MiB buffer and written in whole 4 KiB blocks at increasing offsets, so a
 *     multi-terabyte image neither fills the page cache nor pays its system time; the commit
 *     writes the last block padded and truncates the padding away before the fsync. A
 *     filesystem that refuses a direct write (EINVAL) gets the rest through the page cache.
 *
 * State transitions (snap_store_run):
 *  1. prepare: open sources, build layouts (store_open_volumes), keys (store_keys), header,
 *     KEYS and META records written (store_write_head)
 *  2. data: chunks read through the reader, zero-scanned, cut into frames (store_fill_slot),
 *     sealed by workers (worker_main), written in order by the writer (writer_main)
 *  3. finish: INDEX and footer written (store_write_tail), fsync and rename (store_commit)
 *  4. done, or failed: temporary unlinked (store_cleanup)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "extent-map.h"
#include "gzip-chunk.h"
#include "job-internal.h"
#include "util.h"
#include "output.h"
#include "layout.h"
#include "log.h"
#include "reader.h"
#include "source.h"
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

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

struct slot {
	enum slot_state state;
	uint64_t seq;
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
	uint8_t image_id[SNAP_STORE_ID_SIZE];
	uint8_t dk[SNAP_STORE_KEY_SIZE];
	struct snap_store_keyset keys;

	/* output */
	int fd;
	bool to_stdout;
	char *path, *tmp;
	uint64_t written;
	uint64_t writeback_mark; /* s->written when writeback was last started */
	/* O_DIRECT output (invariant 9): dfd, and the staged bytes not yet written at flushed */
	int dfd;
	uint8_t *stage;
	size_t stage_len;
	uint64_t flushed;
	uint64_t fail_off; /* where the failed write was, for the message */

	/* the parts of the image the index and footer need */
	uint8_t header[SNAP_STORE_HEADER_SIZE];
	uint64_t meta_offset, meta_length;
	uint8_t meta_digest[SNAP_STORE_DIGEST_SIZE];
	uint8_t *keys_rec, *meta_rec; /* kept for the signature */
	size_t keys_len, meta_len;
	struct snap_store_index_frame *iframes;
	uint64_t niframes, cap_iframes;

	/* pipeline */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct slot *slots;
	unsigned nslots;
	uint64_t next_seq;  /* next slot sequence to fill */
	uint64_t write_seq; /* next slot sequence to write */
	pthread_t *threads;
	struct worker *workers;
	unsigned nthreads;
	bool stop;
	uint64_t next_frame;
	/* the writer thread (invariant 8) */
	pthread_t writer;
	bool writer_started;
	bool fill_done;	      /* the run thread queued its last slot */
	int werr;	      /* the writer's first failure, message in wmsg */
	char wmsg[512];
	uint64_t pub_written; /* s->written as of the writer's last slot, under lock */
	struct store_timings t; /* run thread's and writer's fields; workers' merged at stop */
};

#define STAGE_SIZE (4u << 20)

#define DIRECT_ALIGN 4096u

static int pwrite_all(struct store_ctx *s, int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		s->fail_off = off;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Writes the staged whole blocks (all of it, the last block padded with zeros, when final)
 * through the O_DIRECT descriptor; a descriptor the filesystem turns out to refuse (EINVAL)
 * is dropped and the bytes go through the page cache instead (invariant 9). */
static int stage_flush(struct store_ctx *s, bool final)
{
	size_t n = final ? (s->stage_len + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN
			 : s->stage_len / DIRECT_ALIGN * DIRECT_ALIGN;
	if (n == 0)
		return 0;
	if (n > s->stage_len)
		memset(s->stage + s->stage_len, 0, n - s->stage_len); /* the last block's padding */
	int r = s->dfd >= 0 ? pwrite_all(s, s->dfd, s->stage, n, s->flushed) : -EINVAL;
	if (r == -EINVAL) {
		if (s->dfd >= 0)
			close(s->dfd);
		s->dfd = -1;
		size_t keep = n < s->stage_len ? n : s->stage_len;
		r = pwrite_all(s, s->fd, s->stage, keep, s->flushed);
	}
	if (r < 0)
		return r;
	if (final) {
		/* the padding of the last block goes: the object ends where its bytes end */
		s->fail_off = s->flushed + s->stage_len;
		if (ftruncate(s->fd, (off_t)(s->flushed + s->stage_len)) < 0)
			return -errno;
		s->flushed += s->stage_len;
		s->stage_len = 0;
		return 0;
	}
	memmove(s->stage, s->stage + n, s->stage_len - n);
	s->stage_len -= n;
	s->flushed += n;
	return 0;
}

/* Appends; -errno on failure, s->written counts what went out. No job calls: the writer
 * thread uses it too. */
static int write_out(struct store_ctx *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	if (s->stage) {
		while (len > 0) {
			size_t n = STAGE_SIZE - s->stage_len < len ? STAGE_SIZE - s->stage_len : len;
			memcpy(s->stage + s->stage_len, p, n);
			s->stage_len += n;
			p += n;
			len -= n;
			s->written += n;
			int r = s->stage_len == STAGE_SIZE ? stage_flush(s, false) : 0;
			if (r < 0)
				return r;
		}
		return 0;
	}
	while (len > 0) {
		ssize_t n = write(s->fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			s->fail_off = s->written;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		s->written += (uint64_t)n;
	}
	if (s->written - s->writeback_mark >= (64ull << 20)) {
		/* start writeback now, so the commit's fsync does not flush the whole image at
		 * the end; pipes refuse it (ESPIPE), and any real error shows at the fsync */
		(void)sync_file_range(s->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		s->writeback_mark = s->written;
	}
	return 0;
}

/* The run thread's writes (head and tail). */
static int write_all(struct store_ctx *s, const void *buf, size_t len)
{
	int r = write_out(s, buf, len);
	if (r < 0)
		return snap_job_fail(s->job, r, "cannot write %s at offset %llu: %s", s->path,
				     (unsigned long long)s->fail_off, snap_strerror(r));
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
	uint64_t idle_ns;
	struct snap_frame_times t; /* crc, deflate, seal and digest CPU */
	struct snap_frame_codec *codec;
};

/* Compress, seal and digest one frame into out (header + payload + tag): store-frame.h. */
static int seal_frame(struct worker *w, const uint8_t *raw, struct frame_job *fj, uint8_t *out)
{
	struct store_ctx *s = w->s;
	return snap_store_frame_seal(w->codec, s->image_id, &s->rng, &fj->f, raw, out, &fj->out_len,
				     &w->t);
}

/* Gives a held reader buffer back (invariant 5). */
static void slot_release(struct slot *sl)
{
	if (sl->held_reader) {
		snap_reader_release(sl->held_reader, &sl->held);
		sl->held_reader = NULL;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct store_ctx *s = w->s;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct slot *sl = NULL;
		uint64_t t0 = snap_now_ns();
		while (!s->stop) {
			/* oldest queued first keeps the writer fed */
			for (unsigned i = 0; i < s->nslots; i++) {
				struct slot *c = &s->slots[i];
				if (c->state == SLOT_QUEUED && (!sl || c->seq < sl->seq))
					sl = c;
			}
			if (sl)
				break;
			pthread_cond_wait(&s->cond, &s->lock);
		}
		w->idle_ns += snap_now_ns() - t0;
		if (s->stop)
			break;
		sl->state = SLOT_BUSY;
		pthread_mutex_unlock(&s->lock);
		int r = 0;
		size_t out_off = 0;
		for (size_t i = 0; i < sl->nframes && r == 0; i++) {
			struct frame_job *fj = &sl->frames[i];
			fj->out_off = out_off;
			r = seal_frame(w, sl->data + fj->in_off, fj, sl->out + out_off);
			out_off += fj->out_len;
		}
		slot_release(sl);
		pthread_mutex_lock(&s->lock);
		sl->err = r;
		sl->state = SLOT_DONE;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- volumes and keys ---- */

static void layout_warn(void *userdata, const char *msg)
{
	(void)userdata;
	snap_warn("%s", msg);
}

static int store_open_volumes(struct store_ctx *s)
{
	struct snap_job *job = s->job;
	if (job->nsources == 0)
		return snap_job_fail(job, -EINVAL, "no source given");
	s->vols = calloc(job->nsources, sizeof(*s->vols));
	if (!s->vols)
		return -ENOMEM;
	s->nvols = job->nsources;
	unsigned flags = snap_job_param(job, SNAP_PARAM_NO_DIRECT, 0) ? SNAP_SRC_NO_DIRECT : 0;
	struct snap_layout_opts lo = {
	    .keep_unpartitioned = snap_job_param(job, SNAP_PARAM_KEEP_UNPARTITIONED, 0) != 0,
	    .no_fs_skip = snap_job_param(job, SNAP_PARAM_FS_SKIP, 1) == 0,
	    .freeze = snap_job_param(job, SNAP_PARAM_FREEZE, 0) != 0,
	    .min_gap = (uint64_t)snap_job_param(job, SNAP_PARAM_MIN_GAP, 0),
	    .warn = layout_warn,
	};
	for (size_t i = 0; i < s->nvols; i++) {
		struct store_vol *v = &s->vols[i];
		char *detail = NULL;
		v->path = job->sources[i].path;
		if (job->sources[i].device)
			v->device = strdup(job->sources[i].device);
		else if (asprintf(&v->device, "/dev/xvd%c", (int)('a' + (i % 26))) < 0)
			v->device = NULL;
		if (!v->device)
			return -ENOMEM;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(s->vols[j].device, v->device))
				return snap_job_fail(job, -EINVAL, "device name %s given twice",
						     v->device);
		int r = snap_src_open(v->path, flags, &v->src, &detail);
		if (r < 0) {
			r = snap_job_fail(job, r, "%s", detail ? detail : v->path);
			free(detail);
			return r;
		}
		r = snap_layout_build(v->src, &lo, &v->layout, &detail);
		if (r < 0) {
			r = snap_job_fail(job, r, "%s", detail ? detail : v->path);
			free(detail);
			return r;
		}
		struct snap_reader_opts ro = {
		    /* the slots hold reader buffers (invariant 5): a few more keep reads going */
		    .queue_depth = (unsigned)snap_job_param(
			job, SNAP_PARAM_QUEUE_DEPTH,
			store_slot_count(snap_job_threads(job), s->frame_size) + 2),
		    /* a frame per request (up to 4 MiB, so progress and cancellation still come
		     * within a large frame): a chunk then arrives whole in one reader buffer,
		     * which the slot holds instead of copying (invariant 5) */
		    .request_size = (size_t)snap_job_param(
			job, SNAP_PARAM_REQUEST_SIZE,
			s->frame_size < DEFAULT_FRAME_SIZE ? s->frame_size : DEFAULT_FRAME_SIZE),
		    .force_pread = snap_job_param(job, SNAP_PARAM_FORCE_PREAD, 0) != 0,
		};
		r = snap_reader_new(v->src, &ro, &v->reader);
		if (r < 0)
			return snap_job_fail(job, r, "cannot set up reading %s: %s", v->path,
					     snap_strerror(r));
		s->job->progress.bytes_total += v->src->size;
	}
	return 0;
}

static int read_small_file(struct snap_job *job, const char *path, char **ret, size_t *ret_len)
{
	int r = snap_read_small_file(path, 1u << 20, ret, ret_len);
	if (r < 0)
		return snap_job_fail(job, r, "cannot read %s: %s", path,
				     r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
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
		/* readers accept N up to 2^22 (formats/STORE_FORMAT.md); a shift by 64 or more
		 * would be undefined */
		int64_t log_n = snap_job_param(job, SNAP_PARAM_SCRYPT_LOG_N, 15);
		if (log_n < 1 || log_n > 22) {
			r = snap_job_fail(job, -EINVAL,
					  "scrypt cost log2(N) must be 1 to 22, not %lld",
					  (long long)log_n);
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
		if ((r = read_small_file(job, certs[i], &pem, &len)) < 0)
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

static int store_meta(struct store_ctx *s, struct snap_store_meta *m)
{
	struct snap_job *job = s->job;
	uint64_t now = (uint64_t)time(NULL);
	m->name = dup_or_null(snap_job_string(job, SNAP_SPARAM_NAME));
	m->description = dup_or_null(snap_job_string(job, SNAP_SPARAM_DESCRIPTION));
	m->arch = dup_or_null(snap_job_string(job, SNAP_SPARAM_ARCH));
	m->boot_mode = dup_or_null(snap_job_string(job, SNAP_SPARAM_BOOT_MODE));
	m->owner = dup_or_null(snap_job_string(job, SNAP_SPARAM_OWNER));
	m->image_id = dup_or_null(snap_job_string(job, SNAP_SPARAM_IMAGE_ID));
	if (!m->image_id) {
		/* an AMI-style id (ami- and 17 hex digits) from the image id */
		char id[40] = "ami-";
		for (int i = 0; i < 9; i++)
			snprintf(id + 4 + 2 * i, 3, "%02x", s->image_id[i]);
		id[21] = 0;
		m->image_id = strdup(id);
	}
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

static int add_iframe(struct store_ctx *s, const struct snap_store_frame *f, uint64_t file_offset)
{
	if (s->niframes == s->cap_iframes) {
		uint64_t cap = s->cap_iframes ? s->cap_iframes * 2 : 1024;
		struct snap_store_index_frame *n = realloc(s->iframes, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->iframes = n;
		s->cap_iframes = cap;
	}
	struct snap_store_index_frame *e = &s->iframes[s->niframes++];
	e->file_offset = file_offset;
	e->volume = f->volume;
	e->flags = f->flags;
	e->offset = f->offset;
	e->raw_len = f->raw_len;
	e->stored_len = f->stored_len;
	memcpy(e->digest, f->digest, SNAP_STORE_DIGEST_SIZE);
	return 0;
}

/* The writer thread (invariant 8): writes slots in sequence as workers finish them, records
 * their index entries, frees them for the run thread. */
static void *writer_main(void *arg)
{
	struct store_ctx *s = arg;
	pthread_mutex_lock(&s->lock);
	while (!s->stop && !s->werr) {
		struct slot *sl = NULL;
		for (unsigned i = 0; i < s->nslots && !sl; i++)
			if (s->slots[i].state == SLOT_DONE && s->slots[i].seq == s->write_seq)
				sl = &s->slots[i];
		if (!sl) {
			if (s->fill_done && s->write_seq == s->next_seq)
				break;
			uint64_t t0 = snap_now_ns();
			pthread_cond_wait(&s->cond, &s->lock);
			s->t.writer_wait += ns_to_s(snap_now_ns() - t0);
			continue;
		}
		pthread_mutex_unlock(&s->lock);
		char msg[sizeof(s->wmsg)] = "";
		int r = sl->err;
		if (r < 0) {
			const struct snap_store_frame *f = &sl->frames[0].f;
			snprintf(msg, sizeof(msg),
				 "cannot compress or seal frame %llu of %s (%s at offset %llu): %s",
				 (unsigned long long)f->index, s->path, s->vols[f->volume].path,
				 (unsigned long long)f->offset, snap_strerror(r));
		}
		uint64_t t0 = snap_now_ns();
		for (size_t i = 0; i < sl->nframes && r == 0; i++) {
			const struct frame_job *fj = &sl->frames[i];
			uint64_t at = s->written;
			r = write_out(s, sl->out + fj->out_off, fj->out_len);
			if (r < 0)
				snprintf(msg, sizeof(msg), "cannot write %s at offset %llu: %s",
					 s->path, (unsigned long long)s->fail_off, snap_strerror(r));
			else if ((r = add_iframe(s, &fj->f, at)) < 0)
				snprintf(msg, sizeof(msg), "out of memory");
		}
		pthread_mutex_lock(&s->lock);
		s->t.write += ns_to_s(snap_now_ns() - t0);
		s->pub_written = s->written;
		if (r < 0) {
			s->werr = r;
			memcpy(s->wmsg, msg, sizeof(msg));
		} else {
			sl->state = SLOT_FREE;
			s->write_seq++;
		}
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Run thread, lock held: waits on the pipeline with progress. */
static void store_wait(struct store_ctx *s)
{
	s->job->progress.bytes_written = s->pub_written;
	snap_job_wait(s->job, &s->cond, &s->lock);
	s->job->progress.bytes_written = s->pub_written;
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
	pthread_mutex_lock(&s->lock);
	for (uint32_t vi = 0; vi < s->nvols && r == 0; vi++) {
		struct store_vol *v = &s->vols[vi];
		/* the DATA ranges as the layout built them: zero marking below changes the map */
		struct snap_map *map = v->layout->map;
		size_t n = snap_map_count(map);
		struct snap_range *ranges = calloc(n ? n : 1, sizeof(*ranges));
		size_t nr = 0;
		if (!ranges) {
			r = -ENOMEM;
			break;
		}
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
			r = -ENOMEM;
			break;
		}
		nchunks = 0;
		for (size_t i = 0; i < nr; i++) {
			uint64_t off = ranges[i].offset, end = off + ranges[i].length;
			while (off < end) {
				uint64_t lim = (off / s->frame_size + 1) * s->frame_size;
				uint64_t e = lim < end ? lim : end;
				chunks[nchunks++] = (struct snap_range){off, e - off};
				off = e;
			}
		}
		free(ranges);
		pthread_mutex_unlock(&s->lock);
		r = nchunks ? snap_reader_start(v->reader, chunks, nchunks) : 0;
		pthread_mutex_lock(&s->lock);
		if (r < 0) {
			free(chunks);
			r = snap_job_fail(s->job, r, "cannot read %s: %s", v->path,
					  snap_strerror(r));
			break;
		}
		v->first_frame = s->next_frame;
		for (size_t i = 0; i < nchunks && r == 0; i++) {
			uint64_t off = chunks[i].offset;
			size_t len = (size_t)chunks[i].length;
			if (snap_job_cancelled(s->job)) {
				r = -ECANCELED;
				break;
			}
			struct slot *sl = NULL;
			uint64_t t0 = snap_now_ns();
			while (!sl && !s->werr) {
				for (unsigned k = 0; k < s->nslots; k++)
					if (s->slots[k].state == SLOT_FREE)
						sl = &s->slots[k];
				if (!sl)
					store_wait(s);
			}
			s->t.slot_wait += ns_to_s(snap_now_ns() - t0);
			if (s->werr) {
				r = snap_job_fail(s->job, s->werr, "%s", s->wmsg);
				break;
			}
			pthread_mutex_unlock(&s->lock);
			uint64_t c0 = snap_thread_cpu_ns();
			r = store_fill_slot(s, sl, vi, off, len);
			s->t.fill += ns_to_s(snap_thread_cpu_ns() - c0);
			pthread_mutex_lock(&s->lock);
			if (r < 0)
				break;
			sl->seq = s->next_seq++;
			if (!sl->nframes)
				slot_release(sl); /* all zero: nothing for a worker */
			sl->state = sl->nframes ? SLOT_QUEUED : SLOT_DONE;
			sl->err = 0;
			pthread_cond_broadcast(&s->cond);
		}
		free(chunks);
		/* frames of this volume are all numbered; they are written before the next */
		v->nframes = s->next_frame - v->first_frame;
	}
	s->fill_done = true;
	pthread_cond_broadcast(&s->cond);
	while (r == 0 && !s->werr && s->write_seq < s->next_seq)
		store_wait(s);
	if (r == 0 && s->werr)
		r = snap_job_fail(s->job, s->werr, "%s", s->wmsg);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->writer_started) {
		pthread_join(s->writer, NULL);
		s->writer_started = false;
	}
	s->job->progress.bytes_written = s->written;
	return r;
}

static int store_start_workers(struct store_ctx *s)
{
	/* s->nthreads counts started threads only: store_cleanup joins that many, whatever
	 * failed on the way (a slot buffer, a worker's state, pthread_create) */
	unsigned nthreads = snap_job_threads(s->job);
	s->nslots = store_slot_count(nthreads, s->frame_size);
	s->slots = calloc(s->nslots, sizeof(*s->slots));
	s->threads = calloc(nthreads, sizeof(*s->threads));
	s->workers = calloc(nthreads, sizeof(*s->workers));
	if (!s->slots || !s->threads || !s->workers)
		return -ENOMEM;
	size_t max_frames = s->frame_size / SNAP_STORE_BLOCK_SIZE / 2 + 2;
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
	for (unsigned i = 0; i < nthreads; i++) {
		struct worker *w = &s->workers[i];
		w->s = s;
		w->t.clock = snap_thread_cpu_ns;
		int r = snap_frame_codec_new(s->level, s->encrypted ? &s->keys : NULL, &w->codec);
		if (r == 0 && pthread_create(&s->threads[i], NULL, worker_main, w) != 0)
			r = -EAGAIN;
		if (r < 0) {
			w->codec = snap_frame_codec_free(w->codec);
			return r;
		}
		s->nthreads = i + 1;
	}
	if (pthread_create(&s->writer, NULL, writer_main, s) != 0)
		return -EAGAIN;
	s->writer_started = true;
	return 0;
}

static void store_stop_workers(struct store_ctx *s)
{
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->nthreads; i++) {
		pthread_join(s->threads[i], NULL);
		const struct worker *w = &s->workers[i];
		s->t.worker_idle += ns_to_s(w->idle_ns);
		s->t.crc += ns_to_s(w->t.crc_ns);
		s->t.deflate += ns_to_s(w->t.deflate_ns);
		s->t.seal += ns_to_s(w->t.seal_ns);
		s->t.digest += ns_to_s(w->t.digest_ns);
		snap_frame_codec_free(s->workers[i].codec);
	}
	s->nthreads = 0;
	if (s->writer_started) {
		pthread_join(s->writer, NULL);
		s->writer_started = false;
	}
}

/* ---- tail ---- */

/* The SIGNATURE record over header, KEYS, META and INDEX (formats/STORE_FORMAT.md). */
static int store_sign(struct store_ctx *s, const uint8_t *index_rec, size_t index_len,
		      uint8_t **ret, size_t *ret_len)
{
	const char *keyfile = snap_job_string(s->job, SNAP_SPARAM_SIGNING_KEY);
	char *pem = NULL;
	size_t pem_len = 0;
	int r = read_small_file(s->job, keyfile, &pem, &pem_len);
	if (r < 0)
		return r;
	uint8_t msg[SNAP_STORE_SIGNED_MSG_SIZE];
	uint8_t *sig = NULL, *spki = NULL, *payload = NULL;
	size_t sl = 0, kl = 0, pl = 0;
	const char *why = "";
	r = snap_store_signed_message(s->header, s->keys_rec, s->keys_len, s->meta_rec, s->meta_len,
				      index_rec, index_len, msg);
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

static int store_write_tail(struct store_ctx *s)
{
	struct snap_store_index ix = {
	    .meta_offset = s->meta_offset,
	    .meta_length = s->meta_length,
	    .nvolumes = (uint32_t)s->nvols,
	    .nframes = s->niframes,
	    .frames = s->iframes,
	};
	memcpy(ix.meta_digest, s->meta_digest, sizeof(ix.meta_digest));
	ix.vols = calloc(s->nvols, sizeof(*ix.vols));
	if (!ix.vols)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; i < s->nvols && r == 0; i++) {
		struct snap_store_index_volume *iv = &ix.vols[i];
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
		r = snap_store_volume_digest((uint32_t)i, snap_map_size(map), iv->extents,
					     iv->nextents, s->iframes + iv->first_frame,
					     iv->nframes, iv->digest);
	}
	uint8_t *payload = NULL, *rec = NULL;
	size_t plen = 0, rlen = 0;
	if (r == 0)
		r = snap_store_index_encode(&ix, &payload, &plen);
	if (r == 0)
		r = snap_store_build_record(SNAP_STORE_REC_INDEX, payload, plen,
					    s->encrypted ? s->keys.mac : NULL, NULL, NULL, 0, &rec,
					    &rlen);
	ix.frames = NULL; /* owned by s */
	snap_store_index_clear(&ix);
	free(payload);
	if (r < 0)
		return snap_job_fail(s->job, r, "cannot build the index");
	struct snap_store_footer ft = {
	    .index_offset = s->written,
	    .index_length = rlen,
	    .image_size = s->written + rlen + SNAP_STORE_FOOTER_SIZE,
	};
	memcpy(ft.image_id, s->image_id, SNAP_STORE_ID_SIZE);
	uint8_t *sig_rec = NULL;
	size_t sig_len = 0;
	if (snap_job_string(s->job, SNAP_SPARAM_SIGNING_KEY) &&
	    (r = store_sign(s, rec, rlen, &sig_rec, &sig_len)) < 0) {
		free(rec);
		return r;
	}
	ft.image_size += sig_len;
	uint8_t foot[SNAP_STORE_FOOTER_SIZE];
	snap_store_footer_encode(&ft, foot);
	r = write_all(s, rec, rlen);
	free(rec);
	if (r == 0 && sig_rec)
		r = write_all(s, sig_rec, sig_len);
	free(sig_rec);
	if (r == 0)
		r = write_all(s, foot, sizeof(foot));
	return r;
}

/* ---- output file ---- */

static int store_create_output(struct store_ctx *s)
{
	const char *out = snap_job_string(s->job, SNAP_SPARAM_OUTPUT);
	if (!out)
		return snap_job_fail(s->job, -EINVAL, "no output given");
	s->path = strdup(out);
	if (!s->path)
		return -ENOMEM;
	if (!strcmp(out, "-")) {
		s->to_stdout = true;
		s->fd = STDOUT_FILENO;
		return 0;
	}
	struct stat st;
	bool force = snap_job_param(s->job, SNAP_PARAM_FORCE, 0) != 0;
	bool exists = lstat(out, &st) == 0;
	/* the image is renamed into place: never over a device, a directory or a link */
	if (exists && !S_ISREG(st.st_mode))
		return snap_job_fail(s->job, -EINVAL,
				     "%s is not a regular file: store writes an image file, or - "
				     "for standard output",
				     out);
	if (!force && exists)
		return snap_job_fail(s->job, -EEXIST, "%s already exists (use force to replace it)",
				     out);
	const char *slash = strrchr(out, '/');
	int dl = slash ? (int)(slash - out + 1) : 0;
	if (asprintf(&s->tmp, "%.*s.%s.snapbundle-XXXXXX", dl, out, slash ? slash + 1 : out) < 0) {
		s->tmp = NULL;
		return -ENOMEM;
	}
	s->fd = mkostemp(s->tmp, O_CLOEXEC);
	if (s->fd < 0) {
		int r = -errno;
		free(s->tmp);
		s->tmp = NULL;
		return snap_job_fail(s->job, r, "cannot create %s: %s", out, strerror(-r));
	}
	int r = snap_file_mode_default(s->fd);
	if (r < 0)
		return snap_job_fail(s->job, r, "cannot set the mode of %s: %s", s->tmp,
				     strerror(-r));
	/* invariant 9: a second descriptor of the same file, O_DIRECT, unless refused */
	if (!snap_job_param(s->job, SNAP_PARAM_NO_DIRECT, 0) && !snap_output_env_buffered()) {
		char self[64];
		snprintf(self, sizeof(self), "/proc/self/fd/%d", s->fd);
		s->dfd = open(self, O_WRONLY | O_DIRECT | O_CLOEXEC);
		if (s->dfd >= 0 &&
		    posix_memalign((void **)&s->stage, DIRECT_ALIGN, STAGE_SIZE + DIRECT_ALIGN) != 0) {
			s->stage = NULL;
			close(s->dfd);
			s->dfd = -1;
		}
	}
	return 0;
}

static int store_commit(struct store_ctx *s)
{
	if (s->to_stdout)
		return 0;
	int fr = s->stage ? stage_flush(s, true) : 0;
	if (fr < 0)
		return snap_job_fail(s->job, fr, "cannot write %s at offset %llu: %s", s->path,
				     (unsigned long long)s->fail_off, snap_strerror(fr));
	if (fsync(s->fd) < 0)
		return snap_job_fail(s->job, -errno, "cannot sync %s: %s", s->path,
				     strerror(errno));
	bool force = snap_job_param(s->job, SNAP_PARAM_FORCE, 0) != 0;
	int r = force ? rename(s->tmp, s->path)
		      : renameat2(AT_FDCWD, s->tmp, AT_FDCWD, s->path, RENAME_NOREPLACE);
	if (r < 0 && !force && (errno == EINVAL || errno == ENOSYS)) {
		/* filesystems without RENAME_NOREPLACE: link() refuses an existing name too */
		r = link(s->tmp, s->path);
		if (r == 0)
			unlink(s->tmp);
	}
	if (r < 0)
		return snap_job_fail(s->job, -errno, "cannot rename %s into place: %s", s->path,
				     strerror(errno));
	free(s->tmp);
	s->tmp = NULL;
	/* the rename survives a crash only once its directory is synced; an image that may
	 * vanish is not reported as stored */
	const char *slash = strrchr(s->path, '/');
	char *dir = slash ? strndup(s->path, slash == s->path ? 1 : (size_t)(slash - s->path))
			  : strdup(".");
	if (!dir)
		return -ENOMEM;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r = dfd < 0 || fsync(dfd) == 0 || errno == EINVAL ? 0 : -errno;
	if (dfd >= 0)
		close(dfd);
	if (r < 0) {
		unlink(s->path);
		r = snap_job_fail(s->job, r, "cannot sync directory %s: %s", dir, strerror(-r));
	}
	free(dir);
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
		     s->stage ? "true" : "false", (unsigned long long)s->niframes,
		     (unsigned long long)s->written) >= 0) {
		snap_job_set_result_string(s->job, SNAP_RESULT_TIMINGS, json);
		free(json);
	}
}

static void store_cleanup(struct store_ctx *s)
{
	if (s->slots && s->threads)
		store_stop_workers(s);
	if (!s->to_stdout && s->fd >= 0)
		close(s->fd);
	if (s->dfd >= 0)
		close(s->dfd);
	free(s->stage);
	if (s->tmp)
		unlink(s->tmp);
	free(s->tmp);
	free(s->path);
	for (size_t i = 0; s->vols && i < s->nvols; i++) {
		snap_reader_free(s->vols[i].reader);
		snap_layout_free(s->vols[i].layout);
		snap_src_free(s->vols[i].src);
		free(s->vols[i].device);
	}
	free(s->vols);
	for (unsigned i = 0; s->slots && i < s->nslots; i++) {
		free(s->slots[i].in);
		free(s->slots[i].out);
		free(s->slots[i].frames);
	}
	free(s->slots);
	free(s->threads);
	free(s->workers);
	free(s->iframes);
	free(s->keys_rec);
	free(s->meta_rec);
	OPENSSL_cleanse(s->dk, sizeof(s->dk));
	OPENSSL_cleanse(&s->keys, sizeof(s->keys));
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
}

int snap_store_run(struct snap_job *job)
{
	struct store_ctx s = {.job = job, .fd = -1, .dfd = -1};
	uint64_t start = snap_now_ns(), cpu0 = snap_process_cpu_ns(), data_start = 0, data_end = 0;
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
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
	int64_t seed = snap_job_param(job, SNAP_PARAM_TEST_SEED, 0);
	s.rng = (struct snap_store_rng){.seeded = seed != 0, .seed = (uint64_t)seed};
	if ((r = snap_store_random(&s.rng, "image id", 0, s.image_id, sizeof(s.image_id))) < 0 ||
	    (r = store_open_volumes(&s)) < 0 || (r = store_create_output(&s)) < 0)
		goto out;
	if ((r = store_write_head(&s)) < 0)
		goto out;
	if ((r = store_start_workers(&s)) < 0) {
		r = snap_job_fail(job, r, "cannot start worker threads");
		goto out;
	}
	snap_job_set_stage(job, SNAP_STAGE_DATA);
	data_start = snap_now_ns();
	if ((r = store_data(&s)) < 0)
		goto out;
	store_stop_workers(&s); /* idle now; merges the workers' timings */
	data_end = snap_now_ns();
	snap_job_report(job, true); /* the DATA stage's last sample shows all of it */
	for (size_t i = 0; i < s.nvols; i++)
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
	snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH, s.path);
	store_set_timings(&s, start, data_start, data_end, cpu0);
out:
	if (r == -ENOMEM)
		snap_job_fail(job, r, "out of memory");
	if (r == -ECANCELED)
		snap_job_fail(job, r, "cancelled");
	store_cleanup(&s);
	return r;
}
