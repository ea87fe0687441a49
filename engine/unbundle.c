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
 *  2. Parts are read in index order; manifest-read guarantees document order = index order,
 *     plain file names and parts/@count. A missing, short or damaged part is named.
 *  2a. Parts and manifest may be in S3 (s3://BUCKET/KEY, s3/s3.h): the manifest is fetched
 *     whole (at most MAX_MANIFEST_FILE bytes), one listing names a missing part up front
 *     (stat_parts_s3), and the run thread keeps up to `ahead` whole-part GETs in flight
 *     (fetch_ahead: the parts after the one it waits for, within S3_AHEAD_BUDGET bytes and
 *     the client's connections); a
 *     fetched body becomes the slot's buffer (no copy) and goes through the same pipeline as
 *     a local part, so invariant 1's digest check, before any byte of it is decrypted or
 *     inflated, holds for it unchanged. A part changed in the bucket fails its digest; one
 *     replaced by a shorter object fails it too (and is called truncated when it is shorter
 *     than part 0); one deleted after the listing fails its GET, named.
 *  3. The output is opened (temporary name, output.h) with the manifest's size before
 *     streaming and committed only after: the tar stream ended properly with exactly one
 *     member of that size, its SHA-1 equals the manifest digest, the gzip CRC and length
 *     matched, the PKCS#7 padding is valid, and the part sizes add up to bundled_size. Any
 *     failure or cancellation frees the output uncommitted, which removes it.
 *  4. The data stage runs on two chained instances of the pipeline (pipeline.h), every buffer
 *     allocated when the job starts. The parts' pipeline (pipe), one slot per part: the run
 *     thread reads parts in order into slots and chains them (chain_part: each slot gets the
 *     CBC IV of its body and the ciphertext block straddling the part before, if any: parts
 *     of a size that is not a multiple of 16 are legal, if unusual); workers verify and
 *     decrypt whole parts in any order (unbundle_work); its sink strips the padding of the
 *     last part and inflates (unbundle_sink, inflate_part) into the slots of the tar pipeline.
 *     Between snap_pipeline_new and snap_pipeline_finish the parts' sink alone owns the
 *     inflater and the tar slot it fills (tcur); the run thread owns the chaining, what was
 *     read and the job's progress.
 *  5. The tar pipeline (tpipe, opts.inner, no workers, TAR_SLOTS slots of TAR_BUF bytes) is
 *     filled by the parts' sink: a tar slot moves FREE -> FILLING (tar_next, acquire: it
 *     becomes tcur) -> DONE (tar_next when full, or unbundle_sink_end for the last one,
 *     submit) -> SINKING -> FREE (tar_sink: the tar stream's SHA-1, the tar reader, whose
 *     callbacks hand data runs to the output stream, whose thread writes them in order,
 *     O_DIRECT where the target allows: output.h). Between its snap_pipeline_new and
 *     snap_pipeline_finish the tar sink alone owns the tar reader, the tar digest, the output
 *     stream and the counters of what it wrote. The run thread creates it first and frees it
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
 *     data stage, to the parts' sizes that stat_parts or the listing found, so bytes_read ends
 *     equal to it; a part that changed size meanwhile fails the job (its digest, or the
 *     parts' sum against bundled_size).
 *
 * State transitions (snap_unbundle_run):
 *  1. prepare: read (or fetch: fetch_manifest) and parse the manifest, verify the signature
 *     (verify_signature), decrypt key and IV (unwrap_key), find the parts (locate_parts) and
 *     stat every one (stat_parts, or one listing: stat_parts_s3; their sizes are bytes_data),
 *     open the output, allocate the slots and start the tar pipeline, then the parts'
 *     (unbundle_start)
 *  2. data: read (parts in S3: GETs started ahead, fetch_ahead, waited for in order,
 *     read_part_s3) and chain the parts into slots (unbundle_data), workers verify and
 *     decrypt them (unbundle_work), the parts' sink inflates into tar slots (unbundle_sink,
 *     unbundle_sink_end), the tar sink hashes, parses and writes (tar_sink); the run thread
 *     finishes the parts' pipeline, then the tar pipeline
 *  3. verify: tar end, digest, sizes
 *  4. finish: snap_output_commit, or snap_output_free without commit on any failure
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "bundle-keys.h"
#include "bundle-manifest.h"
#include "gzip-chunk.h"
#include "job-internal.h"
#include "util.h"
#include "log.h"
#include "manifest-read.h"
#include "output.h"
#include "pipeline.h"
#include "s3.h"
#include "tar-reader.h"

#define MAX_MANIFEST_FILE (16u << 20)
#define MAX_PART (256u << 20)	 /* ec2-bundle-image writes 10 MiB parts */
#define TAR_BUF (4u << 20)	 /* inflated bytes per tar slot */
#define TAR_SLOTS 4		 /* slots of the tar pipeline */
#define SLOT_BUDGET (256u << 20) /* part buffers in all, beyond the minimum of MIN_SLOTS */
#define MIN_SLOTS 3
/* output stream buffers: the tar sink copies data runs into them, the stream's thread writes
 * them (O_DIRECT where the target allows it: output.h invariant 5) */
#define OUT_BUF (4u << 20)
#define OUT_NBUFS 3
/* parts fetched ahead from S3 (invariant 2a): at most half the client's memory budget in bodies
 * waiting (the slots hold the rest, SLOT_BUDGET), never more GETs than its connections */
#define S3_AHEAD_BUDGET(c) (snap_s3_client_budget(c) / 2)
/* every buffer of an unbundle from S3, within the 256 MiB of peak RSS the S3 jobs keep to */
#define S3_TOTAL_BUDGET (216u << 20)

/* What a pipeline slot holds: one part, its ciphertext, then (after the work) its plaintext. */
struct slot {
	uint8_t *data;
	size_t cap;
	size_t off, len;  /* payload is data[off, len) (after head) */
	uint8_t head[16]; /* a block straddling the previous part: ciphertext, then plaintext */
	size_t head_len;
	uint8_t head_iv[16], iv[16]; /* CBC IVs of head and of data[off, len) */
	size_t part;		     /* index of the part it holds */
	bool last;		     /* the last part */
};

/* What a slot of the tar pipeline holds: inflated tar stream bytes, data[0, len). */
struct tar_slot {
	uint8_t *data;
	size_t len;
};

struct unbundle {
	struct snap_job *job;
	const struct snap_manifest_doc *m;
	const char *srcdir;
	bool verify_digests;
	bool decrypt; /* false: verify without a key, parts only */

	struct snap_pipeline *pipe;  /* parts (invariant 4) */
	struct snap_pipeline *tpipe; /* tar slots, filled by pipe's sink (invariant 5) */
	struct slot *slots;
	unsigned nslots;
	struct tar_slot *tslots;
	uint64_t *part_sizes; /* from stat_parts, then what was read */
	uint8_t key[16], iv[16];

	/* parts in S3 (invariant 2a), else in srcdir; the run thread's */
	struct snap_s3_client *s3; /* the job's (job-internal.h invariant 5) */
	char *bucket, *prefix;	   /* part i is s3://bucket/prefix<filename> */
	struct snap_s3_get **gets; /* one per part: started ahead, NULL once waited for */
	size_t next_get;	   /* the first part whose GET is not started */
	unsigned ahead;

	/* run thread: the ciphertext stream's chaining across parts (invariant 4) */
	uint64_t bytes_read;
	uint8_t prev[16], carry[16];
	size_t carry_len;

	/* the parts' sink (invariant 4) */
	struct snap_inflate *inflate;
	uint64_t gz_in; /* compressed bytes consumed, for error offsets */
	bool member_done, any;
	struct tar_slot *tcur; /* the tar slot it fills (FILLING in tpipe), or NULL */

	/* the tar sink (invariant 5) */
	EVP_MD_CTX *tar_sha;
	struct snap_tar_reader *tar;
	struct snap_output *out;
	struct snap_output_stream *ostream; /* writes and zeroes out, in order */
	uint64_t written_to; /* member bytes covered so far (data written or zeroed) */
	uint64_t stream_bytes;
	uint64_t bytes_done, bytes_written, bytes_skipped;
	bool member_seen;
	/* published by the sinks for the run thread's progress (invariant 7) */
	_Atomic uint64_t pub_done, pub_written, pub_skipped;
};

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
/* Run thread: parts read in order into slots, chained                                       */

static char *part_path(const struct unbundle *p, size_t i)
{
	char *s;
	int n = p->s3 ? asprintf(&s, "s3://%s/%s%s", p->bucket, p->prefix, p->m->parts[i].filename)
		      : asprintf(&s, "%s/%s", p->srcdir, p->m->parts[i].filename);
	return n < 0 ? NULL : s;
}

static char *part_key(const struct unbundle *p, size_t i)
{
	char *s;
	if (asprintf(&s, "%s%s", p->prefix, p->m->parts[i].filename) < 0)
		return NULL;
	return s;
}

/* Starts the GETs of the parts before `upto` not started yet (invariant 2a). */
static int fetch_ahead(struct unbundle *p, size_t upto)
{
	if (upto > p->m->nparts)
		upto = p->m->nparts;
	while (p->next_get < upto) {
		size_t i = p->next_get;
		char *key = part_key(p, i);
		if (!key)
			return snap_pipeline_fail(p->pipe, -ENOMEM, "out of memory");
		int r =
		    snap_s3_get_start(p->s3, p->bucket, key, 0, UINT64_MAX, MAX_PART, &p->gets[i]);
		free(key);
		if (r < 0) {
			char *path = part_path(p, i);
			r = snap_pipeline_fail(p->pipe, r, "cannot fetch part %zu (%s): %s", i,
					       path ? path : p->m->parts[i].filename,
					       snap_strerror(r));
			free(path);
			return r;
		}
		p->next_get++;
	}
	return 0;
}

/* Part i from S3 into b: its GET (started ahead) waited for, its body the slot's buffer. */
static int read_part_s3(struct unbundle *p, size_t i, struct slot *b)
{
	int r = fetch_ahead(p, i + p->ahead);
	if (r < 0)
		return r;
	void *buf = NULL;
	size_t len = 0;
	char *detail = NULL;
	r = snap_s3_get_wait(p->gets[i], &buf, &len, &detail);
	p->gets[i] = NULL; /* wait freed it */
	if (r == 0 && len == 0)
		r = -ENODATA;
	if (r < 0) {
		char *path = part_path(p, i);
		const char *what = r == -ENOENT	   ? "is missing"
				   : r == -ENODATA ? "is truncated or empty"
				   : r == -EFBIG   ? "is too large"
						   : "cannot be fetched";
		r = snap_pipeline_fail(p->pipe, r, "part %zu (%s) %s: %s", i,
				       path ? path : p->m->parts[i].filename, what,
				       detail ? detail : snap_strerror(r));
		free(path);
		free(buf);
		free(detail);
		return r;
	}
	free(b->data);
	b->data = buf;
	b->cap = len;
	p->bytes_read += len;
	p->part_sizes[i] = len;
	b->off = 0;
	b->len = len;
	b->head_len = 0;
	b->part = i;
	b->last = i + 1 == p->m->nparts;
	return 0;
}

static int read_part(struct unbundle *p, size_t i, struct slot *b)
{
	if (p->s3)
		return read_part_s3(p, i, b);
	char *path = part_path(p, i);
	if (!path)
		return snap_pipeline_fail(p->pipe, -ENOMEM, "out of memory");
	int r = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = snap_pipeline_fail(p->pipe, -errno, "part %zu (%s) cannot be opened: %s", i,
				       path, strerror(errno));
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
				r = snap_pipeline_fail(p->pipe, -EFBIG,
						       "part %zu (%s) grew while being read", i,
						       path);
				goto out;
			}
			break;
		}
		ssize_t n = read(fd, b->data + got, b->cap - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = snap_pipeline_fail(p->pipe, -errno,
					       "part %zu (%s) cannot be read at offset %zu: %s", i,
					       path, got, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		p->bytes_read += (uint64_t)n;
	}
	if (got == 0) {
		r = snap_pipeline_fail(p->pipe, -EUCLEAN, "part %zu (%s) is empty", i, path);
		goto out;
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

/* The CBC chaining of a part read into b, from the ciphertext only: the block straddling the
 * previous part (head) and the body's IV; the bytes after the last whole block wait in carry
 * for the next part. */
static void chain_part(struct unbundle *p, struct slot *b)
{
	size_t n = b->len, pos = 0;
	if (p->carry_len) {
		size_t take = 16 - p->carry_len < n ? 16 - p->carry_len : n;
		memcpy(p->carry + p->carry_len, b->data, take);
		p->carry_len += take;
		pos = take;
		if (p->carry_len == 16) {
			memcpy(b->head, p->carry, 16);
			memcpy(b->head_iv, p->prev, 16);
			b->head_len = 16;
			memcpy(p->prev, p->carry, 16);
			p->carry_len = 0;
		}
	}
	size_t aligned = (n - pos) & ~(size_t)15;
	memcpy(b->iv, p->prev, 16);
	if (aligned)
		memcpy(p->prev, b->data + pos + aligned - 16, 16);
	size_t rest = n - pos - aligned;
	if (rest) {
		memcpy(p->carry + p->carry_len, b->data + pos + aligned, rest);
		p->carry_len += rest;
	}
	b->off = pos;
	b->len = pos + aligned;
}

/* ---------------------------------------------------------------------------------------- */
/* Workers: each part's SHA-1, then AES-128-CBC decryption of the whole part in place        */

static int check_digest(struct unbundle *p, const struct slot *b, size_t got)
{
	size_t i = b->part;
	uint8_t md[20];
	unsigned mdlen = 0;
	if (!EVP_Digest(b->data, got, md, &mdlen, EVP_sha1(), NULL))
		return snap_pipeline_fail(p->pipe, -EIO, "SHA-1 failed: %s", ossl_reason());
	if (!memcmp(md, p->m->parts[i].digest, 20))
		return 0;
	char want[41], have[41];
	hex(want, p->m->parts[i].digest, 20);
	hex(have, md, 20);
	char *path = part_path(p, i);
	int r = snap_pipeline_fail(
	    p->pipe, -EBADMSG,
	    "part %zu (%s) is damaged: SHA-1 %s, the manifest says %s (%zu bytes%s)", i,
	    path ? path : p->m->parts[i].filename, have, want, got,
	    i + 1 < p->m->nparts && i > 0 && got < p->part_sizes[0]
		? ", shorter than part 0: truncated?"
		: "");
	free(path);
	return r;
}

static int cbc_decrypt(EVP_CIPHER_CTX *ctx, const uint8_t key[16], const uint8_t iv[16],
		       uint8_t *data, size_t n)
{
	int outl = 0;
	if (n == 0)
		return 0;
	if (!EVP_DecryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key, iv) ||
	    !EVP_CIPHER_CTX_set_padding(ctx, 0) ||
	    !EVP_DecryptUpdate(ctx, data, &outl, data, (int)n) || (size_t)outl != n)
		return -EIO;
	return 0;
}

/* The pipeline's work (any order, any worker): verify the part, then decrypt it. */
static int unbundle_work(void *ctx, void *state, unsigned i)
{
	struct unbundle *p = ctx;
	struct slot *b = &p->slots[i];
	int r;
	/* the part's bytes are data[0, part size): the head's own ones included */
	if (p->verify_digests && (r = check_digest(p, b, p->part_sizes[b->part])) < 0)
		return r;
	if (!p->decrypt)
		return 0;
	if ((b->head_len && cbc_decrypt(state, p->key, b->head_iv, b->head, 16) < 0) ||
	    cbc_decrypt(state, p->key, b->iv, b->data + b->off, b->len - b->off) < 0)
		return snap_pipeline_fail(p->pipe, -EIO, "AES-128-CBC decryption failed: %s",
					  ossl_reason());
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

/* PKCS#7: the last plaintext byte n (1..16) and n bytes equal to it. */
static int strip_padding(struct unbundle *p, struct slot *b)
{
	size_t body = b->len - b->off, total = b->head_len + body;
	uint8_t tail[16];
	if (total < 16)
		return snap_pipeline_fail(p->pipe, -EUCLEAN,
					  "the encrypted stream is shorter than one AES block");
	for (size_t i = 0; i < 16; i++) {
		size_t at = total - 16 + i;
		tail[i] = at < b->head_len ? b->head[at] : b->data[b->off + at - b->head_len];
	}
	uint8_t n = tail[15];
	bool ok = n >= 1 && n <= 16;
	for (size_t i = 16 - (ok ? n : 0); ok && i < 16; i++)
		ok = tail[i] == n;
	if (!ok)
		return snap_pipeline_fail(
		    p->pipe, -EBADMSG,
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

static bool all_zero(const uint8_t *b, size_t n)
{
	return n == 0 || (b[0] == 0 && !memcmp(b, b + 1, n - 1));
}

/* A failure of the output stream: its own message names the piece that failed (perhaps an
 * earlier one, written in the background); otherwise this one. */
static int out_failed(struct unbundle *p, int r, const char *what, uint64_t off)
{
	const char *d = snap_output_stream_error(p->ostream);
	if (d)
		return snap_pipeline_fail(p->tpipe, r, "%s", d);
	return snap_pipeline_fail(p->tpipe, r, "cannot %s %s at offset %llu: %s", what,
				  snap_output_path(p->out), (unsigned long long)off, strerror(-r));
}

static int out_zero(struct unbundle *p, uint64_t off, uint64_t len)
{
	p->bytes_skipped += len;
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
	struct unbundle *p = ud;
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
					p->bytes_written += j - i;
			}
			if (r < 0)
				return r;
			i = j;
		}
	}
	p->written_to = off + len;
	p->bytes_done = p->written_to;
	return 0;
}

/* Run thread: what the sinks counted, for the progress report (invariant 7). */
static void unbundle_progress(void *ctx)
{
	struct unbundle *p = ctx;
	p->job->progress.bytes_read = p->bytes_read;
	p->job->progress.bytes_done = atomic_load(&p->pub_done);
	p->job->progress.bytes_written = atomic_load(&p->pub_written);
	p->job->progress.bytes_skipped = atomic_load(&p->pub_skipped);
}

static void publish(struct unbundle *p)
{
	atomic_store(&p->pub_done, p->bytes_done);
	atomic_store(&p->pub_written, p->bytes_written);
	atomic_store(&p->pub_skipped, p->bytes_skipped);
}

/* The tar pipeline's sink (in order): the tar stream's SHA-1, then the tar reader, whose
 * callbacks write. */
static int tar_sink(void *ctx, unsigned i)
{
	struct unbundle *p = ctx;
	const struct tar_slot *t = &p->tslots[i];
	if (p->verify_digests && !EVP_DigestUpdate(p->tar_sha, t->data, t->len))
		return snap_pipeline_fail(p->tpipe, -EIO, "SHA-1 failed: %s", ossl_reason());
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
static int inflate_part(struct unbundle *p, struct slot *in)
{
	int r;
	for (int piece = 0; piece < 2; piece++) {
		const uint8_t *src = piece == 0 ? in->head : in->data + in->off;
		size_t len = piece == 0 ? in->head_len : in->len - in->off;
		bool more = len > 0;
		while (more) {
			if (p->member_done) {
				if (len == 0)
					break;
				/* gzip allows several members; anything else is trailing junk */
				if (src[0] != 0x1f)
					return snap_pipeline_fail(
					    p->pipe, -EUCLEAN,
					    "part %zu: data after the end of the gzip stream "
					    "(compressed offset %llu)",
					    in->part, (unsigned long long)p->gz_in);
				snap_gunzip_next_member(p->inflate);
				p->member_done = false;
			}
			if ((!p->tcur || p->tcur->len == TAR_BUF) && (r = tar_next(p)) < 0)
				return r;
			struct tar_slot *t = p->tcur;
			size_t before = len, n;
			bool end;
			const char *why;
			int ir = snap_gunzip_step(p->inflate, &src, &len, t->data + t->len,
						  TAR_BUF - t->len, &n, &end, &why);
			t->len += n;
			p->gz_in += before - len;
			if (ir < 0)
				return snap_pipeline_fail(
				    p->pipe, ir, "part %zu: %s (compressed offset %llu)", in->part,
				    why, (unsigned long long)p->gz_in);
			p->any = true;
			if (end) {
				p->member_done = true;
				more = len > 0;
				continue;
			}
			/* a full output buffer may leave output inside ISA-L: call again */
			more = t->len == TAR_BUF || len > 0;
		}
	}
	return 0;
}

/* The pipeline's sink (in part order). */
static int unbundle_sink(void *ctx, unsigned i)
{
	struct unbundle *p = ctx;
	struct slot *b = &p->slots[i];
	int r;
	if (!p->decrypt) {
		p->bytes_done += p->part_sizes[b->part];
		publish(p);
		return 0;
	}
	if (b->last) {
		/* the run thread chained every part before it submitted the last */
		if (p->carry_len)
			return snap_pipeline_fail(
			    p->pipe, -EUCLEAN,
			    "the encrypted stream (%llu bytes) is not a whole "
			    "number of AES blocks: a part is truncated",
			    (unsigned long long)p->bytes_read);
		if ((r = strip_padding(p, b)) < 0)
			return r;
	}
	return inflate_part(p, b);
}

/* After the last part: the gzip stream must have ended; the last tar slot goes out. */
static int unbundle_sink_end(void *ctx)
{
	struct unbundle *p = ctx;
	if (!p->decrypt)
		return 0;
	if (!p->member_done)
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

/* Part i's size, found at path: at most MAX_PART; *max is the largest so far. */
static int take_size(struct unbundle *p, size_t i, const char *path, uint64_t size, uint64_t *max)
{
	if (size > MAX_PART)
		return snap_job_fail(p->job, -EFBIG,
				     "part %zu (%s) is %llu bytes; parts over %u bytes are not "
				     "supported",
				     i, path, (unsigned long long)size, MAX_PART);
	p->part_sizes[i] = size;
	if (size > *max)
		*max = size;
	return 0;
}

/* Every part exists and is a regular file before anything is written (a missing one is named
 * up front); returns the largest size. */
static int stat_parts(struct unbundle *p, uint64_t *ret_max)
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
		else
			r = take_size(p, i, path, (uint64_t)st.st_size, &max);
		free(path);
		if (r < 0)
			return r;
	}
	*ret_max = max;
	return 0;
}

static char *dirname_of(const char *path);

static int cmp_object(const void *a, const void *b)
{
	return strcmp(((const struct snap_s3_object *)a)->key,
		      ((const struct snap_s3_object *)b)->key);
}

/* stat_parts for parts in S3 (invariant 2a): one listing of the keys the part names share
 * (all pages), so a missing part is named before anything is fetched or written. */
static int stat_parts_s3(struct unbundle *p, uint64_t *ret_max)
{
	const struct snap_manifest_doc *m = p->m;
	size_t common = strlen(m->parts[0].filename);
	for (size_t i = 1; i < m->nparts; i++) {
		size_t k = 0;
		while (k < common && m->parts[i].filename[k] == m->parts[0].filename[k])
			k++;
		common = k;
	}
	char *lp = NULL, *detail = NULL;
	if (asprintf(&lp, "%s%.*s", p->prefix, (int)common, m->parts[0].filename) < 0)
		return snap_job_fail(p->job, -ENOMEM, "out of memory");
	struct snap_s3_list_objects *l = NULL;
	int r = snap_s3_list_objects(p->s3, p->bucket, lp, &l, &detail);
	if (r < 0) {
		snap_job_fail(p->job, r, "cannot list the parts under s3://%s/%s: %s", p->bucket,
			      lp, detail ? detail : snap_strerror(r));
		goto out;
	}
	qsort(l->objects, l->nobjects, sizeof(*l->objects), cmp_object);
	uint64_t max = 0;
	for (size_t i = 0; i < m->nparts && r == 0; i++) {
		char *key = part_key(p, i), *path = part_path(p, i);
		if (!key || !path) {
			r = snap_job_fail(p->job, -ENOMEM, "out of memory");
		} else {
			struct snap_s3_object want = {.key = key};
			const struct snap_s3_object *o = bsearch(&want, l->objects, l->nobjects,
								 sizeof(*l->objects), cmp_object);
			if (!o)
				r = snap_job_fail(p->job, -ENOENT, "part %zu (%s) is missing", i,
						  path);
			else if (o->size == 0)
				r = snap_job_fail(p->job, -EUCLEAN, "part %zu (%s) is empty", i,
						  path);
			else
				r = take_size(p, i, path, o->size, &max);
		}
		free(key);
		free(path);
	}
	if (r == 0)
		*ret_max = max;
out:
	snap_s3_list_objects_free(l);
	free(lp);
	free(detail);
	return r;
}

/* The bucket and key of an s3:// URL; a failure is recorded naming the URL. */
static int parse_url(struct snap_job *job, const char *url, char **ret_bucket, char **ret_key)
{
	char *detail = NULL;
	int r = snap_s3_url_parse(url, ret_bucket, ret_key, &detail);
	if (r < 0)
		snap_job_fail(job, r, "%s: %s", url, detail ? detail : snap_strerror(r));
	free(detail);
	return r;
}

/* Where the parts are: SNAP_SPARAM_SOURCE_DIR (a directory or an s3:// prefix), else where the
 * manifest is; an S3 prefix gets its '/' (a key "dir/m.xml" has its parts under "dir/"). */
static int locate_parts(struct unbundle *p, const char *mpath, char **ret_srcdir)
{
	const char *sd = snap_job_string(p->job, SNAP_SPARAM_SOURCE_DIR);
	const char *where = sd ? sd : mpath;
	if (!snap_s3_is_url(where)) {
		*ret_srcdir = sd ? strdup(sd) : dirname_of(mpath);
		return *ret_srcdir ? 0 : snap_job_fail(p->job, -ENOMEM, "out of memory");
	}
	char *key = NULL;
	int r = parse_url(p->job, where, &p->bucket, &key);
	if (r < 0)
		return r;
	size_t n = strlen(key);
	if (!sd) {
		const char *slash = strrchr(key, '/');
		n = slash ? (size_t)(slash - key) + 1 : 0;
	}
	if (asprintf(&p->prefix, "%.*s%s", (int)n, key, n && key[n - 1] != '/' ? "/" : "") < 0)
		p->prefix = NULL;
	free(key);
	if (!p->prefix)
		return snap_job_fail(p->job, -ENOMEM, "out of memory");
	*ret_srcdir = NULL;
	return 0;
}

/* The manifest from S3: whole, at most MAX_MANIFEST_FILE bytes. */
static int fetch_manifest(struct snap_job *job, struct snap_s3_client *c, const char *url,
			  uint8_t **ret, size_t *ret_len)
{
	char *bucket = NULL, *key = NULL, *detail = NULL;
	void *buf = NULL;
	int r = parse_url(job, url, &bucket, &key);
	if (r < 0)
		goto out;
	if (!*key || key[strlen(key) - 1] == '/') {
		r = snap_job_fail(job, -EINVAL,
				  "%s names no manifest object (a key ending in .manifest.xml)", url);
		goto out;
	}
	r = snap_s3_get_object(c, bucket, key, MAX_MANIFEST_FILE, &buf, ret_len, &detail);
	if (r == -ENOENT)
		snap_job_fail(job, r, "manifest %s is missing: %s", url,
			      detail ? detail : snap_strerror(r));
	else if (r == -EFBIG)
		snap_job_fail(job, r, "manifest %s is larger than %u MiB", url,
			      MAX_MANIFEST_FILE >> 20);
	else if (r < 0)
		snap_job_fail(job, r, "cannot fetch manifest %s: %s", url,
			      detail ? detail : snap_strerror(r));
	if (r == 0)
		*ret = buf;
out:
	free(bucket);
	free(key);
	free(detail);
	return r;
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

static void unbundle_free(struct unbundle *p)
{
	/* the parts first: their sink fills the tar slots (invariant 5) */
	p->pipe = snap_pipeline_free(p->pipe);
	p->tpipe = snap_pipeline_free(p->tpipe);
	for (size_t i = 0; p->gets && i < p->m->nparts; i++)
		p->gets[i] = snap_s3_get_free(p->gets[i]); /* cancels what was fetched ahead */
	free(p->gets);
	free(p->bucket);
	free(p->prefix);
	for (unsigned i = 0; p->slots && i < p->nslots; i++)
		free(p->slots[i].data);
	free(p->slots);
	for (unsigned i = 0; p->tslots && i < TAR_SLOTS; i++)
		free(p->tslots[i].data);
	free(p->tslots);
	snap_inflate_free(p->inflate);
	free(p->part_sizes);
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
	if (p->s3) {
		size_t other = (size_t)p->ahead * part_cap + TAR_SLOTS * TAR_BUF + OUT_NBUFS * OUT_BUF;
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
	for (unsigned i = 0; i < p->nslots && !p->s3; i++) {
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
		memcpy(p->prev, p->iv, 16);
		struct snap_pipeline_opts to = {.nslots = TAR_SLOTS, .inner = true};
		int r = snap_pipeline_new(p->job, &to, &tar_ops, p, &p->tpipe);
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
		struct slot *b = &p->slots[si];
		if ((r = read_part(p, i, b)) < 0)
			break;
		if (p->decrypt)
			chain_part(p, b);
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
			      p->out ? "cancelled at image offset %llu; the partial output was "
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
	char *srcdir = NULL, *outpath = NULL, *detail = NULL;
	uint8_t *mbuf = NULL;
	size_t mlen = 0;
	int r;

	/* 1. prepare */
	const char *sd = snap_job_string(job, SNAP_SPARAM_SOURCE_DIR);
	if ((snap_s3_is_url(mpath) || (sd && snap_s3_is_url(sd))) &&
	    (r = snap_job_s3_client(job, &p.s3)) < 0)
		goto out;
	if (snap_s3_is_url(mpath))
		r = fetch_manifest(job, p.s3, mpath, &mbuf, &mlen);
	else
		r = read_file(job, mpath, "manifest", MAX_MANIFEST_FILE, &mbuf, &mlen);
	if (r < 0)
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
	/* the parts' client: the manifest's, or one for parts in S3 beside a local manifest */
	if ((r = locate_parts(&p, mpath, &srcdir)) < 0)
		goto out;
	if (!srcdir && !p.s3 && (r = snap_job_s3_client(job, &p.s3)) < 0)
		goto out;
	if (srcdir)
		p.s3 = NULL; /* a manifest in S3 beside local parts: they are read from srcdir */
	p.part_sizes = calloc(m->nparts, sizeof(*p.part_sizes));
	p.gets = p.s3 ? calloc(m->nparts, sizeof(*p.gets)) : NULL;
	if (!p.part_sizes || (p.s3 && !p.gets)) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	p.srcdir = srcdir;
	uint64_t part_cap = 0;
	if ((r = p.s3 ? stat_parts_s3(&p, &part_cap) : stat_parts(&p, &part_cap)) < 0)
		goto out;
	for (size_t i = 0; i < m->nparts; i++) /* invariant 8 */
		job->progress.bytes_data += p.part_sizes[i];
	if (p.s3) {
		uint64_t conn = snap_s3_client_connections(p.s3);
		uint64_t fit = S3_AHEAD_BUDGET(p.s3) / (part_cap ? part_cap : 1);
		p.ahead = (unsigned)(conn < fit ? conn : fit);
		if (p.ahead < 1)
			p.ahead = 1;
		snap_debug("parts from s3://%s/%s: %u fetched ahead", p.bucket, p.prefix, p.ahead);
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

	if ((r = unbundle_start(&p, (size_t)part_cap)) < 0)
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
		if ((r = out_zero(&p, p.written_to, m->size - p.written_to)) < 0)
			goto out;
		job->progress.bytes_skipped = p.bytes_skipped;
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
			goto out;
		}
		/* the last moment a cancellation can be honoured without a complete output */
		if (snap_job_cancelled(job)) {
			r = snap_job_fail(job, -ECANCELED, "cancelled; the output was removed");
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
	/* the pipeline first (its sink feeds the stream), then the stream (its thread writes to
	 * the output until stopped) */
	p.pipe = snap_pipeline_free(p.pipe);
	p.tpipe = snap_pipeline_free(p.tpipe);
	p.ostream = snap_output_stream_free(p.ostream);
	/* without a commit this removes the temporary file (output.h invariant 1) */
	p.out = snap_output_free(p.out);
	unbundle_free(&p);
	snap_manifest_doc_free(m);
	free(mbuf);
	free(srcdir);
	free(outpath);
	free(detail);
	return r;
}
