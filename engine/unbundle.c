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
 *     on the whole part in memory before any of its bytes reaches the decryptor (SNAP_PARAM_
 *     NO_VERIFY turns the digest and signature checks off, only on request).
 *  2. Parts are read in index order; manifest-read guarantees document order = index order,
 *     plain file names and parts/@count. A missing, short or damaged part is named.
 *  3. The output is opened (temporary name, output.h) with the manifest's size before
 *     streaming and committed only after: the tar stream ended properly with exactly one
 *     member of that size, its SHA-1 equals the manifest digest, the gzip CRC and length
 *     matched, the PKCS#7 padding is valid, and the part sizes add up to bundled_size. Any
 *     failure or cancellation frees the output uncommitted, which removes it.
 *  4. Stages run on their own threads joined by bounded queues of preallocated buffers
 *     (reader -> decryptor -> inflater -> the run thread, which hashes the tar stream, parses
 *     it and hands data runs to the output stream, whose thread writes them in order, O_DIRECT
 *     where the target allows: output.h): memory is fixed when the job starts. CBC
 *     decryption of one part is split across worker threads, each chunk's IV being the
 *     ciphertext block before it.
 *  5. The first failure wins (struct pipeline.err under the lock); it stops every stage, and
 *     only the run thread calls snap_job_fail, after the threads are joined.
 *
 * State transitions (snap_unbundle_run):
 *  1. prepare: read and parse the manifest, verify the signature (verify_signature), decrypt
 *     key and IV (unwrap_key), stat every part (stat_parts), open the output
 *  2. data: start the stage threads (reader_main, decrypt_main, inflate_main), consume tar
 *     buffers in the run thread (consume), join
 *  3. verify: tar end, digest, sizes
 *  4. finish: snap_output_commit, or snap_output_free without commit on any failure
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "bundle-keys.h"
#include "gzip-chunk.h"
#include "job-internal.h"
#include "util.h"
#include "log.h"
#include "manifest-read.h"
#include "output.h"
#include "tar-reader.h"

#define MAX_MANIFEST_FILE (16u << 20)
#define MAX_PART (256u << 20)	/* ec2-bundle-image writes 10 MiB parts */
#define TAR_BUF (4u << 20)	/* inflated bytes per tar buffer */
#define PARALLEL_MIN (1u << 20) /* smaller batches decrypt on the decrypt thread alone */
#define MAX_CBC_WORKERS 64
#define QCAP 8
/* output stream buffers: the run thread copies data runs into them, the stream's thread writes
 * them (O_DIRECT where the target allows it: output.h invariant 5) */
#define OUT_BUF (4u << 20)
#define OUT_NBUFS 3

struct buf {
	uint8_t *data;
	size_t cap;
	size_t off, len;  /* payload is data[off, len) (after head for part buffers) */
	uint8_t head[16]; /* part buffers: plaintext of a block straddling the previous part */
	size_t head_len;
	size_t part; /* index of the part it came from */
	bool last;   /* the last part */
};

struct queue {
	struct buf *items[QCAP];
	size_t head, count;
	bool closed;
};

struct pipeline;

struct cbc_worker {
	struct pipeline *p;
	pthread_t thread;
	EVP_CIPHER_CTX *ctx;
	bool started;
};

/* One batch of CBC chunks decrypted in place by the workers and the decrypt thread. Set up,
 * claimed and counted under pipeline.mu; a chunk's bytes are only touched by its claimer. */
struct cbc_batch {
	uint8_t *data;
	size_t len;
	size_t chunk;
	uint8_t (*ivs)[16]; /* iv of each chunk, saved before any chunk is decrypted */
	size_t nchunks;
	size_t next, done;
	int error;
};

struct pipeline {
	struct snap_job *job;
	const struct snap_manifest_doc *m;
	const char *srcdir;
	bool verify_digests;
	bool decrypt; /* false: verify without a key, parts only */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int err; /* first failure; see invariant 5 */
	char *detail;

	struct queue q_free_parts, q_parts_ct, q_parts_pt, q_free_tar, q_tar;
	struct buf *part_bufs, *tar_bufs;
	size_t npart_bufs, ntar_bufs;

	uint64_t *part_sizes; /* from stat_parts */
	atomic_uint_fast64_t bytes_read;

	/* decryption */
	uint8_t key[16], iv[16];
	EVP_CIPHER_CTX *dctx; /* the decrypt thread's own */
	struct cbc_worker *workers;
	size_t nworkers;
	struct cbc_batch batch;
	uint64_t batch_gen;
	bool stop_workers;

	/* inflate (inflate thread only) */
	struct snap_inflate *inflate;
	uint64_t gz_in; /* compressed bytes consumed, for error offsets */

	/* run thread */
	EVP_MD_CTX *tar_sha;
	struct snap_tar_reader *tar;
	struct snap_output *out;
	struct snap_output_stream *ostream; /* writes and zeroes out, in order */
	uint64_t written_to; /* member bytes covered so far (data written or zeroed) */
	uint64_t stream_bytes;
	bool member_seen;
};

static int pfail(struct pipeline *p, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int pfail(struct pipeline *p, int err, const char *fmt, ...)
{
	pthread_mutex_lock(&p->mu);
	if (!p->err) {
		p->err = err < 0 ? err : -EIO;
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(&p->detail, fmt, ap) < 0)
			p->detail = NULL;
		va_end(ap);
		pthread_cond_broadcast(&p->cv);
	}
	err = p->err;
	pthread_mutex_unlock(&p->mu);
	return err;
}

/* Waits on the pipeline's condition; wakes every 100 ms to notice a cancelled job. */
static void wait_cv(struct pipeline *p)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 100000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	if (!p->err && snap_job_cancelled(p->job)) {
		p->err = -ECANCELED;
		pthread_cond_broadcast(&p->cv);
	}
}

static int q_push(struct pipeline *p, struct queue *q, struct buf *b)
{
	pthread_mutex_lock(&p->mu);
	while (!p->err && q->count == QCAP)
		wait_cv(p);
	int r = p->err;
	if (!r) {
		q->items[(q->head + q->count) % QCAP] = b;
		q->count++;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return r;
}

/* 0 with *ret, 1 at the end of a closed queue, < 0 once the pipeline failed. */
static int q_pop(struct pipeline *p, struct queue *q, struct buf **ret)
{
	pthread_mutex_lock(&p->mu);
	while (!p->err && q->count == 0 && !q->closed)
		wait_cv(p);
	int r = p->err;
	if (!r) {
		if (q->count == 0) {
			r = 1;
		} else {
			*ret = q->items[q->head];
			q->head = (q->head + 1) % QCAP;
			q->count--;
			pthread_cond_broadcast(&p->cv);
		}
	}
	pthread_mutex_unlock(&p->mu);
	return r;
}

static void q_close(struct pipeline *p, struct queue *q)
{
	pthread_mutex_lock(&p->mu);
	q->closed = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static const char *ossl_reason(void)
{
	static __thread char msg[160];
	unsigned long e = ERR_peek_last_error();
	if (!e) {
		snprintf(msg, sizeof(msg), "unknown OpenSSL error");
	} else {
		ERR_error_string_n(e, msg, sizeof(msg));
	}
	ERR_clear_error();
	return msg;
}

static void hex(char *out, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ---------------------------------------------------------------------------------------- */
/* Stage 1: reader                                                                           */

static char *part_path(const struct pipeline *p, size_t i)
{
	char *s;
	if (asprintf(&s, "%s/%s", p->srcdir, p->m->parts[i].filename) < 0)
		return NULL;
	return s;
}

static int read_part(struct pipeline *p, size_t i, struct buf *b)
{
	const struct snap_manifest_part *pt = &p->m->parts[i];
	char *path = part_path(p, i);
	if (!path)
		return pfail(p, -ENOMEM, "out of memory");
	int r = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = pfail(p, -errno, "part %zu (%s) cannot be opened: %s", i, path,
			  strerror(errno));
		goto out;
	}
	/* read to the end, whatever the size was when stat_parts looked: a part that changed
	 * is caught by its digest, one that outgrew the buffer here */
	size_t got = 0;
	for (;;) {
		if (got == b->cap) {
			uint8_t c;
			ssize_t n = read(fd, &c, 1);
			if (n != 0) {
				r = pfail(p, -EFBIG, "part %zu (%s) grew while being read", i,
					  path);
				goto out;
			}
			break;
		}
		ssize_t n = read(fd, b->data + got, b->cap - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = pfail(p, -errno, "part %zu (%s) cannot be read at offset %zu: %s", i,
				  path, got, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		atomic_fetch_add(&p->bytes_read, (uint64_t)n);
	}
	if (got == 0) {
		r = pfail(p, -EUCLEAN, "part %zu (%s) is empty", i, path);
		goto out;
	}
	if (p->verify_digests) {
		uint8_t md[20];
		unsigned mdlen = 0;
		if (!EVP_Digest(b->data, got, md, &mdlen, EVP_sha1(), NULL)) {
			r = pfail(p, -EIO, "SHA-1 failed: %s", ossl_reason());
			goto out;
		}
		if (memcmp(md, pt->digest, 20)) {
			char want[41], have[41];
			hex(want, pt->digest, 20);
			hex(have, md, 20);
			r = pfail(
			    p, -EBADMSG,
			    "part %zu (%s) is damaged: SHA-1 %s, the manifest says %s (%zu bytes"
			    "%s)",
			    i, path, have, want, got,
			    i + 1 < p->m->nparts && i > 0 && got < p->part_sizes[0]
				? ", shorter than part 0: truncated?"
				: "");
			goto out;
		}
	}
	p->part_sizes[i] = got;
	b->off = 0;
	b->len = got;
	b->head_len = 0;
	b->part = i;
	b->last = i + 1 == p->m->nparts;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return r;
}

static void *reader_main(void *arg)
{
	struct pipeline *p = arg;
	for (size_t i = 0; i < p->m->nparts; i++) {
		struct buf *b;
		if (q_pop(p, &p->q_free_parts, &b) != 0)
			return NULL;
		if (read_part(p, i, b) < 0)
			return NULL;
		if (q_push(p, &p->q_parts_ct, b) < 0)
			return NULL;
	}
	q_close(p, &p->q_parts_ct);
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Stage 2: AES-128-CBC decryption (in place, chunks in parallel)                            */

static int cbc_chunk(struct pipeline *p, EVP_CIPHER_CTX *ctx, size_t k)
{
	struct cbc_batch *bt = &p->batch;
	size_t start = k * bt->chunk;
	size_t n = start + bt->chunk <= bt->len ? bt->chunk : bt->len - start;
	int outl = 0;
	if (!EVP_DecryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, p->key, bt->ivs[k]) ||
	    !EVP_CIPHER_CTX_set_padding(ctx, 0) ||
	    !EVP_DecryptUpdate(ctx, bt->data + start, &outl, bt->data + start, (int)n) ||
	    (size_t)outl != n)
		return -EIO;
	return 0;
}

/* Claims and decrypts chunks of batch generation gen until none is left. The claim compares
 * the generation under the lock, so a late worker never touches the next batch's fields. */
static void cbc_drain(struct pipeline *p, EVP_CIPHER_CTX *ctx, uint64_t gen)
{
	struct cbc_batch *bt = &p->batch;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (p->batch_gen != gen || bt->next >= bt->nchunks) {
			pthread_mutex_unlock(&p->mu);
			return;
		}
		size_t k = bt->next++;
		pthread_mutex_unlock(&p->mu);
		int r = cbc_chunk(p, ctx, k);
		pthread_mutex_lock(&p->mu);
		if (r < 0)
			bt->error = r;
		if (++bt->done == bt->nchunks)
			pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
}

static void *cbc_worker_main(void *arg)
{
	struct cbc_worker *w = arg;
	struct pipeline *p = w->p;
	uint64_t seen = 0;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->stop_workers && p->batch_gen == seen)
			pthread_cond_wait(&p->cv, &p->mu);
		bool stop = p->stop_workers;
		seen = p->batch_gen;
		pthread_mutex_unlock(&p->mu);
		if (stop)
			return NULL;
		cbc_drain(p, w->ctx, seen);
	}
}

/* Decrypts data[0, len) in place (len a multiple of 16); iv is the previous cipher block. */
static int cbc_decrypt(struct pipeline *p, uint8_t *data, size_t len, const uint8_t iv[16])
{
	if (len == 0)
		return 0;
	struct cbc_batch *bt = &p->batch;
	size_t parts = p->nworkers + 1;
	if (len < PARALLEL_MIN || p->nworkers == 0)
		parts = 1;
	size_t chunk = (len / parts + 15) & ~(size_t)15;
	if (chunk < 16)
		chunk = 16;
	pthread_mutex_lock(&p->mu);
	bt->data = data;
	bt->len = len;
	bt->chunk = chunk;
	bt->nchunks = (len + chunk - 1) / chunk;
	memcpy(bt->ivs[0], iv, 16);
	for (size_t k = 1; k < bt->nchunks; k++)
		memcpy(bt->ivs[k], data + k * chunk - 16, 16);
	bt->next = bt->done = 0;
	bt->error = 0;
	uint64_t gen = ++p->batch_gen;
	if (bt->nchunks > 1)
		pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	cbc_drain(p, p->dctx, gen);
	pthread_mutex_lock(&p->mu);
	while (bt->done < bt->nchunks)
		pthread_cond_wait(&p->cv, &p->mu);
	int err = bt->error;
	pthread_mutex_unlock(&p->mu);
	if (err)
		return pfail(p, -EIO, "AES-128-CBC decryption failed: %s", ossl_reason());
	return 0;
}

/* PKCS#7: the last plaintext byte n (1..16) and n bytes equal to it. */
static int strip_padding(struct pipeline *p, struct buf *b)
{
	size_t body = b->len - b->off, total = b->head_len + body;
	uint8_t tail[16];
	if (total < 16)
		return pfail(p, -EUCLEAN, "the encrypted stream is shorter than one AES block");
	for (size_t i = 0; i < 16; i++) {
		size_t at = total - 16 + i;
		tail[i] = at < b->head_len ? b->head[at] : b->data[b->off + at - b->head_len];
	}
	uint8_t n = tail[15];
	bool ok = n >= 1 && n <= 16;
	for (size_t i = 16 - (ok ? n : 0); ok && i < 16; i++)
		ok = tail[i] == n;
	if (!ok)
		return pfail(
		    p, -EBADMSG,
		    "part %zu: bad PKCS#7 padding at the end of the encrypted stream (wrong "
		    "key or IV, or a damaged last part)",
		    b->part);
	if (n <= body) {
		b->len -= n;
	} else {
		b->head_len -= n - body;
		b->len = b->off;
	}
	return 0;
}

static void *decrypt_main(void *arg)
{
	struct pipeline *p = arg;
	uint8_t prev[16], carry[16];
	size_t carry_len = 0;
	memcpy(prev, p->iv, 16);
	for (;;) {
		struct buf *b;
		int r = q_pop(p, &p->q_parts_ct, &b);
		if (r < 0)
			return NULL;
		if (r == 1)
			break;
		size_t n = b->len, pos = 0;
		b->head_len = 0;
		if (carry_len) {
			/* a block straddles the part boundary (parts of a size that is not a
			 * multiple of 16 are legal, if unusual) */
			size_t take = 16 - carry_len < n ? 16 - carry_len : n;
			memcpy(carry + carry_len, b->data, take);
			carry_len += take;
			pos = take;
			if (carry_len == 16) {
				uint8_t ct[16];
				memcpy(ct, carry, 16);
				if (cbc_decrypt(p, carry, 16, prev) < 0)
					return NULL;
				memcpy(b->head, carry, 16);
				b->head_len = 16;
				memcpy(prev, ct, 16);
				carry_len = 0;
			}
		}
		size_t aligned = (n - pos) & ~(size_t)15;
		uint8_t next_prev[16];
		if (aligned)
			memcpy(next_prev, b->data + pos + aligned - 16, 16);
		size_t rest = n - pos - aligned;
		if (rest) {
			memcpy(carry + carry_len, b->data + pos + aligned, rest);
			carry_len += rest;
		}
		if (cbc_decrypt(p, b->data + pos, aligned, prev) < 0)
			return NULL;
		if (aligned)
			memcpy(prev, next_prev, 16);
		b->off = pos;
		b->len = pos + aligned;
		if (b->last) {
			if (carry_len) {
				pfail(p, -EUCLEAN,
				      "the encrypted stream (%llu bytes) is not a whole "
				      "number of AES blocks: a part is truncated",
				      (unsigned long long)atomic_load(&p->bytes_read));
				return NULL;
			}
			if (strip_padding(p, b) < 0)
				return NULL;
		}
		if (q_push(p, &p->q_parts_pt, b) < 0)
			return NULL;
	}
	q_close(p, &p->q_parts_pt);
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Stage 3: inflate (ISA-L, gzip wrapper: header, CRC-32 and length checked)                  */

static void *inflate_main(void *arg)
{
	struct pipeline *p = arg;
	snap_gunzip_begin(p->inflate);
	bool member_done = false, any = false;
	struct buf *out = NULL;
	for (;;) {
		struct buf *in;
		int r = q_pop(p, &p->q_parts_pt, &in);
		if (r < 0)
			goto out;
		if (r == 1)
			break;
		/* the head block first, then the body */
		for (int piece = 0; piece < 2; piece++) {
			const uint8_t *src = piece == 0 ? in->head : in->data + in->off;
			size_t len = piece == 0 ? in->head_len : in->len - in->off;
			bool more = len > 0;
			while (more) {
				if (member_done) {
					if (len == 0)
						break;
					/* gzip allows several members; anything else is trailing
					 * junk */
					if (src[0] != 0x1f) {
						pfail(p, -EUCLEAN,
						      "part %zu: data after the end of the "
						      "gzip stream (compressed offset %llu)",
						      in->part, (unsigned long long)p->gz_in);
						goto out;
					}
					snap_gunzip_next_member(p->inflate);
					member_done = false;
				}
				if (!out || out->len == out->cap) {
					if (out && q_push(p, &p->q_tar, out) < 0)
						goto out;
					out = NULL;
					if (q_pop(p, &p->q_free_tar, &out) != 0) {
						out = NULL;
						goto out;
					}
					out->off = out->len = 0;
				}
				size_t before = len, n;
				bool end;
				const char *why;
				int ir = snap_gunzip_step(p->inflate, &src, &len,
							  out->data + out->len, out->cap - out->len,
							  &n, &end, &why);
				out->len += n;
				p->gz_in += before - len;
				if (ir < 0) {
					pfail(p, ir, "part %zu: %s (compressed offset %llu)",
					      in->part, why, (unsigned long long)p->gz_in);
					goto out;
				}
				any = true;
				if (end) {
					member_done = true;
					more = len > 0;
					continue;
				}
				/* a full output buffer may leave output inside ISA-L: call again */
				more = out->len == out->cap || len > 0;
			}
		}
		if (q_push(p, &p->q_free_parts, in) < 0)
			goto out;
	}
	if (!member_done) {
		pfail(p, -EUCLEAN,
		      any ? "the gzip stream is truncated (compressed offset %llu)"
			  : "the encrypted stream holds no data (compressed offset %llu)",
		      (unsigned long long)p->gz_in);
		goto out;
	}
	if (out && out->len && q_push(p, &p->q_tar, out) < 0)
		goto out;
	out = NULL;
	q_close(p, &p->q_tar);
out:
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Stage 4 (run thread): tar stream SHA-1, tar reader, output                                */

static int on_member(void *ud, const char *name, uint64_t size)
{
	struct pipeline *p = ud;
	p->member_seen = true;
	if (size != p->m->size)
		return pfail(p, -EUCLEAN,
			     "the tar member '%s' is %llu bytes but the manifest size "
			     "is %llu",
			     name, (unsigned long long)size, (unsigned long long)p->m->size);
	snap_debug("tar member '%s', %llu bytes", name, (unsigned long long)size);
	return 0;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	return n == 0 || (b[0] == 0 && !memcmp(b, b + 1, n - 1));
}

/* A failure of the output stream: its own message names the piece that failed (perhaps an
 * earlier one, written in the background); otherwise this one. */
static int out_failed(struct pipeline *p, int r, const char *what, uint64_t off)
{
	const char *d = snap_output_stream_error(p->ostream);
	if (d)
		return pfail(p, r, "%s", d);
	return pfail(p, r, "cannot %s %s at offset %llu: %s", what, snap_output_path(p->out),
		     (unsigned long long)off, strerror(-r));
}

static int out_zero(struct pipeline *p, uint64_t off, uint64_t len)
{
	p->job->progress.bytes_skipped += len;
	if (!p->ostream || !len)
		return 0;
	int r = snap_output_stream_zero(p->ostream, off, len);
	if (r < 0)
		return out_failed(p, r, "zero", off);
	return 0;
}

/* Data runs: all-zero 4 KiB blocks become holes (or zeroed ranges on a block device), so a
 * non-sparse tar of a mostly empty disk still restores sparse. */
static int on_data(void *ud, uint64_t off, const uint8_t *buf, size_t len)
{
	struct pipeline *p = ud;
	int r;
	if ((r = out_zero(p, p->written_to, off - p->written_to)) < 0)
		return r;
	if (p->ostream) {
		size_t i = 0;
		while (i < len) {
			/* pieces end on 4 KiB boundaries of the image */
			size_t n = 4096 - (size_t)((off + i) % 4096);
			if (n > len - i)
				n = len - i;
			bool z = all_zero(buf + i, n);
			size_t j = i + n;
			while (j < len) {
				size_t m = len - j < 4096 ? len - j : 4096;
				if (all_zero(buf + j, m) != z)
					break;
				j += m;
			}
			if (z) {
				r = out_zero(p, off + i, j - i);
			} else {
				r = snap_output_stream_write(p->ostream, buf + i, j - i, off + i);
				if (r < 0)
					r = out_failed(p, r, "write", off + i);
				else
					p->job->progress.bytes_written += j - i;
			}
			if (r < 0)
				return r;
			i = j;
		}
	}
	p->written_to = off + len;
	p->job->progress.bytes_done = p->written_to;
	return 0;
}

static int consume(struct pipeline *p)
{
	for (;;) {
		struct buf *b;
		int r = q_pop(p, &p->q_tar, &b);
		if (r < 0)
			return r;
		if (r == 1)
			return 0;
		if (p->verify_digests && !EVP_DigestUpdate(p->tar_sha, b->data, b->len))
			return pfail(p, -EIO, "SHA-1 failed: %s", ossl_reason());
		p->stream_bytes += b->len;
		r = snap_tar_reader_push(p->tar, b->data, b->len);
		if (r < 0)
			return pfail(p, r, "%s", snap_tar_reader_error(p->tar));
		if (q_push(p, &p->q_free_tar, b) < 0)
			return -ECANCELED;
		p->job->progress.bytes_read = atomic_load(&p->bytes_read);
		snap_job_report(p->job, false);
		if (snap_job_cancelled(p->job))
			return pfail(
			    p, -ECANCELED,
			    "cancelled at image offset %llu; the partial output was removed",
			    (unsigned long long)p->written_to);
	}
}

/* Verify without a key: the run thread recycles part buffers as the reader checks them. */
static int consume_parts(struct pipeline *p)
{
	for (;;) {
		struct buf *b;
		int r = q_pop(p, &p->q_parts_ct, &b);
		if (r < 0)
			return r;
		if (r == 1)
			return 0;
		p->job->progress.bytes_read = atomic_load(&p->bytes_read);
		p->job->progress.bytes_done = p->job->progress.bytes_read;
		if (q_push(p, &p->q_free_parts, b) < 0)
			return -ECANCELED;
		snap_job_report(p->job, false);
	}
}

/* ---------------------------------------------------------------------------------------- */
/* Preparation                                                                               */

static int read_file(struct snap_job *job, const char *path, const char *what, size_t max,
		     uint8_t **ret, size_t *ret_len)
{
	char *buf;
	int r = snap_read_small_file(path, max, &buf, ret_len);
	if (r < 0)
		return snap_job_fail(job, r, "cannot read %s %s: %s", what, path,
				     r == -EFBIG ? "too large" : strerror(-r));
	*ret = (uint8_t *)buf;
	return 0;
}

#define MAX_PEM_FILE (1u << 20)

/* The manifest's signature under the certificate (or public key) at cert_path. */
static int verify_signature(struct snap_job *job, const struct snap_manifest_doc *m,
			    const char *manifest_path, const char *cert_path)
{
	uint8_t *pem;
	size_t len;
	int r = read_file(job, cert_path, "certificate", MAX_PEM_FILE, &pem, &len);
	if (r < 0)
		return r;
	const char *detail;
	r = snap_bundle_verify_signature(pem, len, m->signature, m->signature_len,
					 m->signed_text, m->signed_len, &detail);
	free(pem);
	if (r == -EINVAL)
		return snap_job_fail(job, r, "%s is not a PEM certificate or public key: %s",
				     cert_path, detail);
	if (r == -EBADMSG && !m->signature)
		return snap_job_fail(job, r, "manifest %s has no signature", manifest_path);
	if (r == -EBADMSG)
		return snap_job_fail(
		    job, r,
		    "manifest %s fails authentication: its signature does not match "
		    "the signed text (machine_configuration and image) with the key of "
		    "%s; the manifest was edited or signed by another key",
		    manifest_path, cert_path);
	if (r < 0)
		return snap_job_fail(job, r, "out of memory");
	return 0;
}

/* Key and IV: the manifest's user_encrypted_key and user_encrypted_iv unwrapped (§4). */
static int unwrap_key(struct snap_job *job, const struct snap_manifest_doc *m, const char *key_path,
		      uint8_t key[16], uint8_t iv[16])
{
	uint8_t *pem;
	size_t len;
	int r = read_file(job, key_path, "private key", MAX_PEM_FILE, &pem, &len);
	if (r < 0)
		return r;
	char why[512];
	r = snap_bundle_key_unwrap(pem, len, m->user_encrypted_key, m->user_encrypted_key_len,
				   m->user_encrypted_iv, m->user_encrypted_iv_len, key, iv,
				   key_path, why, sizeof(why));
	OPENSSL_cleanse(pem, len);
	free(pem);
	if (r < 0)
		return snap_job_fail(job, r, "%s", why);
	return 0;
}

/* Every part exists and is a regular file before anything is written (a missing one is named
 * up front); returns the largest size. */
static int stat_parts(struct pipeline *p, uint64_t *ret_max)
{
	uint64_t max = 0;
	for (size_t i = 0; i < p->m->nparts; i++) {
		char *path = part_path(p, i);
		if (!path)
			return snap_job_fail(p->job, -ENOMEM, "out of memory");
		struct stat st;
		int r = 0;
		if (stat(path, &st) < 0)
			r = snap_job_fail(p->job, -errno, "part %zu (%s) is missing: %s", i, path,
					  strerror(errno));
		else if (!S_ISREG(st.st_mode))
			r = snap_job_fail(p->job, -EINVAL, "part %zu (%s) is not a regular file", i,
					  path);
		else if ((uint64_t)st.st_size > MAX_PART)
			r = snap_job_fail(p->job, -EFBIG,
					  "part %zu (%s) is %lld bytes; parts over %u "
					  "bytes are not supported",
					  i, path, (long long)st.st_size, MAX_PART);
		free(path);
		if (r < 0)
			return r;
		p->part_sizes[i] = (uint64_t)st.st_size;
		if ((uint64_t)st.st_size > max)
			max = (uint64_t)st.st_size;
	}
	*ret_max = max;
	return 0;
}

static char *dirname_of(const char *path)
{
	const char *s = strrchr(path, '/');
	if (!s)
		return strdup(".");
	if (s == path)
		return strdup("/");
	return strndup(path, (size_t)(s - path));
}

static void pipeline_free(struct pipeline *p)
{
	if (p->workers) {
		pthread_mutex_lock(&p->mu);
		p->stop_workers = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		for (size_t i = 0; i < p->nworkers; i++) {
			if (p->workers[i].started)
				pthread_join(p->workers[i].thread, NULL);
			EVP_CIPHER_CTX_free(p->workers[i].ctx);
		}
		free(p->workers);
	}
	EVP_CIPHER_CTX_free(p->dctx);
	for (size_t i = 0; i < p->npart_bufs; i++)
		free(p->part_bufs[i].data);
	free(p->part_bufs);
	for (size_t i = 0; i < p->ntar_bufs; i++)
		free(p->tar_bufs[i].data);
	free(p->tar_bufs);
	free(p->batch.ivs);
	snap_inflate_free(p->inflate);
	free(p->part_sizes);
	EVP_MD_CTX_free(p->tar_sha);
	snap_tar_reader_free(p->tar);
	free(p->detail);
	OPENSSL_cleanse(p->key, sizeof(p->key));
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
}

static int alloc_bufs(struct pipeline *p, size_t part_cap)
{
	p->npart_bufs = part_cap > (64u << 20) ? 3 : 4;
	p->part_bufs = calloc(p->npart_bufs, sizeof(*p->part_bufs));
	if (!p->part_bufs)
		return -ENOMEM;
	for (size_t i = 0; i < p->npart_bufs; i++) {
		p->part_bufs[i].cap = part_cap;
		p->part_bufs[i].data = malloc(part_cap);
		if (!p->part_bufs[i].data)
			return -ENOMEM;
		p->q_free_parts.items[i] = &p->part_bufs[i];
	}
	p->q_free_parts.count = p->npart_bufs;
	if (!p->decrypt)
		return 0;
	p->ntar_bufs = 4;
	p->tar_bufs = calloc(p->ntar_bufs, sizeof(*p->tar_bufs));
	if (!p->tar_bufs)
		return -ENOMEM;
	for (size_t i = 0; i < p->ntar_bufs; i++) {
		p->tar_bufs[i].cap = TAR_BUF;
		p->tar_bufs[i].data = malloc(TAR_BUF);
		if (!p->tar_bufs[i].data)
			return -ENOMEM;
		p->q_free_tar.items[i] = &p->tar_bufs[i];
	}
	p->q_free_tar.count = p->ntar_bufs;
	return 0;
}

static int start_workers(struct pipeline *p)
{
	unsigned threads = snap_job_threads(p->job);
	size_t n = threads > 1 ? threads - 1 : 0;
	if (n > MAX_CBC_WORKERS)
		n = MAX_CBC_WORKERS;
	p->batch.ivs = calloc(n + 2, sizeof(*p->batch.ivs));
	p->dctx = EVP_CIPHER_CTX_new();
	if (!p->batch.ivs || !p->dctx)
		return -ENOMEM;
	if (n == 0)
		return 0;
	p->workers = calloc(n, sizeof(*p->workers));
	if (!p->workers)
		return -ENOMEM;
	p->nworkers = n;
	for (size_t i = 0; i < n; i++) {
		p->workers[i].p = p;
		p->workers[i].ctx = EVP_CIPHER_CTX_new();
		if (!p->workers[i].ctx)
			return -ENOMEM;
		if (pthread_create(&p->workers[i].thread, NULL, cbc_worker_main, &p->workers[i]))
			return -EAGAIN;
		p->workers[i].started = true;
	}
	return 0;
}

/* The output path: -o, or DESTDIR/<image name>. */
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

	struct pipeline p = {.job = job, .verify_digests = !no_verify, .decrypt = key_path != NULL};
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	struct snap_manifest_doc *m = NULL;
	char *srcdir = NULL, *outpath = NULL, *detail = NULL;
	uint8_t *mbuf = NULL;
	size_t mlen = 0;
	pthread_t th[3];
	bool started[3] = {false, false, false};
	int r;

	/* 1. prepare */
	if ((r = read_file(job, mpath, "manifest", MAX_MANIFEST_FILE, &mbuf, &mlen)) < 0)
		goto out;
	r = snap_manifest_read(mbuf, mlen, &m, &detail);
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
		if ((r = verify_signature(job, m, mpath, cert_path)) < 0)
			goto out;
		snap_info("manifest signature verified with %s", cert_path);
	} else {
		snap_debug("no certificate given: the manifest signature is not checked");
	}
	if (p.decrypt && (r = unwrap_key(job, m, key_path, p.key, p.iv)) < 0)
		goto out;
	const char *sd = snap_job_string(job, SNAP_SPARAM_SOURCE_DIR);
	srcdir = sd ? strdup(sd) : dirname_of(mpath);
	p.part_sizes = calloc(m->nparts, sizeof(*p.part_sizes));
	if (!srcdir || !p.part_sizes) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	p.srcdir = srcdir;
	uint64_t part_cap = 0;
	if ((r = stat_parts(&p, &part_cap)) < 0)
		goto out;
	if ((r = alloc_bufs(&p, (size_t)part_cap)) < 0) {
		snap_job_fail(job, r, "cannot allocate buffers for %zu-byte parts",
			      (size_t)part_cap);
		goto out;
	}
	if (p.decrypt) {
		struct snap_tar_ops ops = {.member = on_member, .data = on_data};
		(void)snap_inflate_new(&p.inflate); /* stays NULL when out of memory */
		p.tar_sha = EVP_MD_CTX_new();
		if (!p.inflate || !p.tar_sha || snap_tar_reader_new(&ops, &p, &p.tar) < 0 ||
		    !EVP_DigestInit_ex(p.tar_sha, EVP_sha1(), NULL)) {
			r = snap_job_fail(job, -ENOMEM, "out of memory");
			goto out;
		}
		if ((r = start_workers(&p)) < 0) {
			snap_job_fail(job, r, "cannot start decryption threads");
			goto out;
		}
	}
	if (write) {
		if ((r = output_path(job, m, &outpath)) < 0)
			goto out;
		free(detail);
		detail = NULL;
		unsigned oflags =
		    (snap_job_param(job, SNAP_PARAM_FORCE, 0) ? SNAP_OUTPUT_FORCE : 0) |
		    (snap_job_param(job, SNAP_PARAM_NO_DIRECT, 0) ? SNAP_OUTPUT_BUFFERED : 0);
		r = snap_output_open(outpath, m->size, oflags, &p.out, &detail);
		if (r < 0) {
			snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
			goto out;
		}
		if (p.decrypt &&
		    (r = snap_output_stream_new(p.out, OUT_BUF, OUT_NBUFS, &p.ostream)) < 0) {
			snap_job_fail(job, r, "cannot start the output writer");
			goto out;
		}
	}

	/* 2. data */
	snap_job_set_stage(job, SNAP_STAGE_DATA);
	if (pthread_create(&th[0], NULL, reader_main, &p) == 0)
		started[0] = true;
	if (p.decrypt) {
		if (pthread_create(&th[1], NULL, decrypt_main, &p) == 0)
			started[1] = true;
		if (pthread_create(&th[2], NULL, inflate_main, &p) == 0)
			started[2] = true;
	}
	if (!started[0] || (p.decrypt && (!started[1] || !started[2])))
		pfail(&p, -EAGAIN, "cannot start the pipeline threads");
	else if (p.decrypt)
		consume(&p);
	else
		consume_parts(&p);
	if (p.err) {
		/* wake every stage so that it sees the failure */
		pthread_mutex_lock(&p.mu);
		pthread_cond_broadcast(&p.cv);
		pthread_mutex_unlock(&p.mu);
	}
	for (int i = 0; i < 3; i++)
		if (started[i])
			pthread_join(th[i], NULL);
	job->progress.bytes_read = atomic_load(&p.bytes_read);
	if (p.err) {
		r = snap_job_fail(job, p.err, "%s", p.detail ? p.detail : snap_strerror(p.err));
		goto out;
	}

	/* 3. verify */
	snap_job_set_stage(job, SNAP_STAGE_VERIFY);
	uint64_t total = 0;
	for (size_t i = 0; i < m->nparts; i++)
		total += p.part_sizes[i];
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
				r = snap_job_fail(job, -EIO, "SHA-1 failed: %s", ossl_reason());
				goto out;
			}
			hex(have, md, 20);
			if (memcmp(md, m->digest, 20)) {
				r = snap_job_fail(job, -EBADMSG,
						  "invalid digest of the tar stream (%llu bytes): "
						  "expected %s, received %s",
						  (unsigned long long)p.stream_bytes, m->digest_hex,
						  have);
				goto out;
			}
		}
		if ((r = out_zero(&p, p.written_to, m->size - p.written_to)) < 0) {
			snap_job_fail(job, r, "%s", p.detail);
			goto out;
		}
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
	if (p.out) {
		snap_job_set_stage(job, SNAP_STAGE_FINISH);
		if (p.ostream && (r = snap_output_stream_flush(p.ostream)) < 0) {
			out_failed(&p, r, "write", p.written_to);
			snap_job_fail(job, r, "%s", p.detail ? p.detail : snap_strerror(r));
			goto out;
		}
		free(detail);
		detail = NULL;
		r = snap_output_commit(p.out, &detail);
		if (r < 0) {
			snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
			goto out;
		}
		snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH, snap_output_path(p.out));
	}
	job->progress.bytes_done = job->progress.bytes_total;
	r = 0;
out:
	/* the stream first: its thread writes to the output until stopped */
	p.ostream = snap_output_stream_free(p.ostream);
	/* without a commit this removes the temporary file (output.h invariant 1) */
	p.out = snap_output_free(p.out);
	pipeline_free(&p);
	snap_manifest_doc_free(m);
	free(mbuf);
	free(srcdir);
	free(outpath);
	free(detail);
	return r;
}
