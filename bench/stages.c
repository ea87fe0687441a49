// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * stages.c - each pipeline stage alone, on one thread: read (blockdev/reader.h: io_uring and
 * pread, O_DIRECT and buffered, several queue depths and request sizes), zero scan
 * (snap_is_zero), SHA-1 and SHA-256, deflate at ISA-L levels 0-3, inflate, AES-128-CBC
 * encrypt and decrypt, AES-256-GCM seal and open, write.
 *
 * Invariants:
 *  1. Compute stages run over a corpus sampled from the source itself (evenly spaced 1 MiB
 *     pieces of its allocated space), so deflate rates and ratios are those of this data; each
 *     runs whole passes over the corpus until min_time has passed, and the rate is input bytes
 *     over wall time of one thread: a rate per core.
 *  2. Read stages read the source's allocated ranges (a hole reads at memory speed and says
 *     nothing about the device) up to read_budget bytes, cold: the page cache of the source is
 *     dropped (POSIX_FADV_DONTNEED) before each buffered configuration.
 *  3. A read configuration the source or the kernel refuses (O_DIRECT, io_uring) is reported
 *     unavailable with that reason, not measured on another path.
 *  4. Compressed output is checked by inflating it back (a stage that produced garbage would
 *     report a meaningless rate): a mismatch marks the inflate stage unavailable with a reason.
 *  5. Read and write stages also record the CPU the whole machine spent while they ran
 *     (io_cpu_seconds, from /proc/stat): moving bytes costs CPU in the kernel, much of it
 *     outside the process (block-layer workers, interrupts), and on a machine with few cores
 *     that CPU is taken from the compute stages. Other work on the machine inflates it; the
 *     report shows the load average the run started at.
 *  6. A virtual machine's CPU speed drifts (on the development VM the same deflate ran 25-30 %
 *     slower minutes later), so a probe (bench_probe: deflate of an 8 MiB piece of the corpus,
 *     0.25 s) runs right after the stages and again right before each job run; their ratio
 *     (host_speed) scales the model's CPU terms for that run.
 */
#include <errno.h>
#include <fcntl.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "reader.h"

#define MIB (1024ull * 1024ull)
#define PIECE ((size_t)MIB) /* compute stages work in 1 MiB pieces, as the pipeline does */

static struct bench_stage *stage_add(struct bench_report *rep, const char *name, const char *group)
{
	if (rep->nstages >= BENCH_MAX_STAGES)
		return NULL;
	struct bench_stage *st = &rep->stages[rep->nstages++];
	memset(st, 0, sizeof(*st));
	snprintf(st->name, sizeof(st->name), "%s", name);
	snprintf(st->group, sizeof(st->group), "%s", group);
	return st;
}

static void stage_unavailable(struct bench_stage *st, const char *fmt, const char *arg)
{
	st->available = false;
	snprintf(st->reason, sizeof(st->reason), fmt, arg);
}

/* CPU seconds the whole machine has been busy (/proc/stat: user, nice, system, irq, softirq
 * over all CPUs), or -1. I/O costs CPU outside the process too: block-layer workers,
 * interrupts, the filesystem's completion work (invariant 5). */
static double machine_busy(void)
{
	FILE *f = fopen("/proc/stat", "re");
	if (!f)
		return -1;
	unsigned long long v[8] = {0};
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		       &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	long hz = sysconf(_SC_CLK_TCK);
	if (n < 7 || hz <= 0)
		return -1;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / (double)hz;
}

/* An I/O stage's machine CPU over [b0, b1] of machine_busy(). */
static void stage_io_cpu(struct bench_stage *st, double b0, double b1)
{
	if (st->available && b0 >= 0 && b1 >= b0) {
		st->io_cpu_seconds = b1 - b0; /* 0: less than a clock tick */
		st->io_cpu_known = true;
	}
}

static void stage_done(struct bench_stage *st, uint64_t bytes, double seconds)
{
	st->bytes = bytes;
	st->seconds = seconds;
	st->available = bytes > 0 && seconds > 0;
	st->rate = st->available ? (double)bytes / seconds : 0;
	if (!st->available)
		snprintf(st->reason, sizeof(st->reason), "nothing was processed");
}

const struct bench_stage *bench_stage_find(const struct bench_report *rep, const char *name)
{
	for (size_t i = 0; i < rep->nstages; i++)
		if (!strcmp(rep->stages[i].name, name))
			return rep->stages[i].available ? &rep->stages[i] : NULL;
	return NULL;
}

void bench_profile_free(struct bench_profile *p)
{
	free(p->deflate_cpu);
	free(p->deflate_out);
	free(p->inflate_cpu);
	memset(p, 0, sizeof(*p));
}

const struct bench_stage *bench_stage_best_read(const struct bench_report *rep)
{
	/* the jobs read with O_DIRECT (buffered only when refused or asked): a buffered
	 * configuration counts only when no direct one could run. Buffered reads also cost
	 * several times the CPU (the page cache copy), which the model charges (io-cpu). */
	const struct bench_stage *best = NULL;
	for (int direct = 1; direct >= 0 && !best; direct--)
		for (size_t i = 0; i < rep->nstages; i++) {
			const struct bench_stage *st = &rep->stages[i];
			if (st->available && !strcmp(st->group, "read") && st->direct == direct &&
			    (!best || st->rate > best->rate))
				best = st;
		}
	return best;
}

/* ---- sampling the source ---------------------------------------------------------------- */

/* Allocated ranges of path (SEEK_DATA/SEEK_HOLE; a device or a filesystem without it: one
 * range), aligned outward to align, at most max_ranges, clipped to budget bytes in all. */
static size_t allocated_ranges(int fd, uint64_t size, uint64_t align, uint64_t budget,
			       struct snap_range *out, size_t max_ranges)
{
	size_t n = 0;
	uint64_t total = 0;
	off_t pos = 0;
	while (n < max_ranges && (uint64_t)pos < size && total < budget) {
		off_t d = lseek(fd, pos, SEEK_DATA);
		if (d < 0) {
			if (errno == ENXIO)
				break;
			/* no SEEK_DATA here: everything is data */
			out[0] = (struct snap_range){0, size < budget ? size : budget};
			return 1;
		}
		off_t h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			h = (off_t)size;
		uint64_t start = (uint64_t)d / align * align;
		uint64_t end = ((uint64_t)h + align - 1) / align * align;
		if (end > size)
			end = size;
		if (n > 0 && start <= out[n - 1].offset + out[n - 1].length) {
			uint64_t prev_end = out[n - 1].offset + out[n - 1].length;
			if (end > prev_end) {
				total += end - prev_end;
				out[n - 1].length = end - out[n - 1].offset;
			}
		} else if (end > start) {
			out[n++] = (struct snap_range){start, end - start};
			total += end - start;
		}
		pos = h;
	}
	if (total > budget && n > 0) {
		uint64_t excess = total - budget;
		out[n - 1].length = out[n - 1].length > excess ? out[n - 1].length - excess : 0;
		if (out[n - 1].length == 0)
			n--;
	}
	return n;
}

#define MAX_RANGES 65536

int bench_sample_source(const struct bench_source *src, size_t sample_bytes, uint8_t **ret,
			size_t *ret_len)
{
	uint64_t size = src->size;
	int fd = open(src->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct snap_range *ranges = NULL;
	uint8_t *buf = malloc(sample_bytes);
	int r = 0;
	size_t n;
	if (src->ndata) {
		/* the DATA extents: what the jobs read and compress */
		ranges = calloc(src->ndata, sizeof(*ranges));
		for (size_t i = 0; ranges && i < src->ndata; i++)
			ranges[i] = (struct snap_range){src->data[i].offset, src->data[i].length};
		n = src->ndata;
	} else {
		ranges = calloc(MAX_RANGES, sizeof(*ranges));
		n = ranges ? allocated_ranges(fd, size, 4096, UINT64_MAX, ranges, MAX_RANGES) : 0;
	}
	if (!ranges || !buf) {
		r = -ENOMEM;
		goto out;
	}
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += ranges[i].length;
	size_t pieces = sample_bytes / PIECE, got = 0;
	if (total < sample_bytes)
		pieces = (size_t)(total / PIECE);
	for (size_t p = 0; p < pieces; p++) {
		/* the p-th of pieces evenly spaced positions in the concatenated allocated space */
		uint64_t want = total / pieces * p, acc = 0;
		size_t i = 0;
		while (i < n && acc + ranges[i].length <= want)
			acc += ranges[i++].length;
		if (i == n)
			break;
		uint64_t off = ranges[i].offset + (want - acc);
		if (off + PIECE > size)
			off = size - PIECE;
		ssize_t k = pread(fd, buf + got, PIECE, (off_t)off);
		if (k < 0) {
			r = -errno;
			goto out;
		}
		got += (size_t)k;
	}
	if (got < PIECE) {
		r = -ENODATA;
		goto out;
	}
	*ret = buf;
	*ret_len = got / PIECE * PIECE;
	buf = NULL;
out:
	free(buf);
	free(ranges);
	close(fd);
	return r;
}

/* ---- read ------------------------------------------------------------------------------- */

struct read_cfg {
	bool uring, direct;
	unsigned qd;
	size_t request_size;
};

static void run_read(struct bench_report *rep, const struct read_cfg *c)
{
	char name[48];
	snprintf(name, sizeof(name), "read-%s-%s-qd%u-%zuk", c->uring ? "uring" : "pread",
		 c->direct ? "direct" : "buffered", c->qd, c->request_size / 1024);
	struct bench_stage *st = stage_add(rep, name, "read");
	if (!st)
		return;
	snprintf(st->engine, sizeof(st->engine), "%s", c->uring ? "uring" : "pread");
	st->direct = c->direct;
	st->queue_depth = c->qd;
	st->request_size = c->request_size;
	struct snap_src *src = NULL;
	struct snap_reader *reader = NULL;
	struct snap_range *ranges = NULL;
	char *detail = NULL;
	int r = snap_src_open(rep->source.path, c->direct ? 0 : SNAP_SRC_NO_DIRECT, &src, &detail);
	if (r < 0) {
		stage_unavailable(st, "%s", detail ? detail : snap_strerror(r));
		goto out;
	}
	if (c->direct && !src->direct) {
		stage_unavailable(st, "%s", "the source's filesystem refuses O_DIRECT");
		goto out;
	}
	ranges = calloc(MAX_RANGES, sizeof(*ranges));
	if (!ranges) {
		stage_unavailable(st, "%s", "out of memory");
		goto out;
	}
	size_t n = allocated_ranges(src->fd_buffered, src->size, src->align ? src->align : 4096,
				    rep->opts.read_budget, ranges, MAX_RANGES);
	struct snap_reader_opts o = {
	    .queue_depth = c->qd,
	    .request_size = c->request_size,
	    .force_pread = !c->uring,
	};
	r = snap_reader_new(src, &o, &reader);
	if (r < 0) {
		stage_unavailable(st, "cannot set up the reader: %s", snap_strerror(r));
		goto out;
	}
	if (c->uring && !snap_reader_uses_uring(reader)) {
		stage_unavailable(
		    st, "%s", "io_uring is unavailable here (or SNAPBUNDLE_FORCE_PREAD is set)");
		goto out;
	}
	/* Cold cache for buffered reads (invariant 2); O_DIRECT bypasses it anyway. */
	posix_fadvise(src->fd_buffered, 0, 0, POSIX_FADV_DONTNEED);
	uint64_t bytes = 0;
	double b0 = machine_busy(), t0 = bench_now();
	r = snap_reader_start(reader, ranges, n);
	struct snap_chunk ch;
	while (r >= 0 && (r = snap_reader_next(reader, &ch)) > 0) {
		bytes += ch.length;
		snap_reader_release(reader, &ch);
	}
	double t1 = bench_now(), b1 = machine_busy();
	if (r < 0) {
		stage_unavailable(st, "%s", snap_reader_error(reader));
		goto out;
	}
	stage_done(st, bytes, t1 - t0);
	stage_io_cpu(st, b0, b1);
out:
	if (reader)
		snap_reader_free(reader);
	snap_src_free(src);
	free(ranges);
	free(detail);
}

/* ---- compute stages --------------------------------------------------------------------- */

struct corpus {
	const uint8_t *data;
	size_t len;
	double min_time;
};

typedef int (*pass_fn)(void *ctx, const struct corpus *c, uint64_t *bytes);

/* Whole passes until min_time (at least one); invariant 1. */
static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whole passes until min_time (at least one); invariant 1. The thread's CPU time is taken
 * too: on a shared machine the wall rate is what this process got, the CPU rate what a core
 * does. */
static void timed(struct bench_stage *st, const struct corpus *c, pass_fn fn, void *ctx)
{
	uint64_t bytes = 0;
	double t0 = bench_now(), c0 = thread_cpu(), t;
	do {
		int r = fn(ctx, c, &bytes);
		if (r < 0) {
			stage_unavailable(st, "%s", snap_strerror(r));
			return;
		}
		t = bench_now();
	} while (t - t0 < c->min_time && !bench_interrupted());
	double cpu = thread_cpu() - c0;
	stage_done(st, bytes, t - t0);
	if (st->available && cpu > 0) {
		st->cpu_seconds = cpu;
		st->cpu_rate = (double)bytes / cpu;
	}
}

static int pass_zero(void *ctx, const struct corpus *c, uint64_t *bytes)
{
	const uint8_t *zeros = ctx;
	for (size_t off = 0; off < c->len; off += PIECE)
		if (!snap_is_zero(zeros + off, PIECE))
			return -EBADMSG;
	*bytes += c->len;
	return 0;
}

static int pass_digest(void *ctx, const struct corpus *c, uint64_t *bytes)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	if (!m)
		return -ENOMEM;
	int ok = EVP_DigestInit_ex(m, ctx, NULL);
	for (size_t off = 0; ok && off < c->len; off += PIECE)
		ok = EVP_DigestUpdate(m, c->data + off, PIECE);
	ok = ok && EVP_DigestFinal_ex(m, md, &mdlen);
	EVP_MD_CTX_free(m);
	if (!ok)
		return -EIO;
	*bytes += c->len;
	return 0;
}

/* the frame CRC-32 of store and restore (ISA-L, as the jobs compute it) */
static int pass_crc32(void *ctx, const struct corpus *c, uint64_t *bytes)
{
	uint32_t *sink = ctx, crc = 0;
	for (size_t off = 0; off < c->len; off += PIECE)
		crc = crc32_gzip_refl(crc, c->data + off, PIECE);
	*sink ^= crc; /* used, so the loop is not optimised away */
	*bytes += c->len;
	return 0;
}

struct deflate_ctx {
	uint32_t level;
	uint8_t *level_buf;
	uint32_t level_buf_size;
	uint8_t *out; /* pieces compressed, back to back */
	size_t out_cap;
	size_t *out_len; /* compressed length of each piece */
	uint64_t total_out;
	double *piece_cpu; /* CPU seconds per piece, summed over passes (NULL: not kept) */
	unsigned passes;
};

static int pass_deflate(void *ctx, const struct corpus *c, uint64_t *bytes)
{
	struct deflate_ctx *d = ctx;
	struct isal_zstream zs;
	size_t pos = 0;
	d->total_out = 0;
	for (size_t p = 0; p * PIECE < c->len; p++) {
		double c0 = d->piece_cpu ? thread_cpu() : 0;
		isal_deflate_init(&zs);
		zs.level = d->level;
		zs.level_buf = d->level_buf;
		zs.level_buf_size = d->level_buf_size;
		zs.end_of_stream = 1;
		zs.flush = NO_FLUSH;
		zs.next_in = (uint8_t *)c->data + p * PIECE;
		zs.avail_in = PIECE;
		zs.next_out = d->out + pos;
		zs.avail_out = (uint32_t)(d->out_cap - pos);
		if (isal_deflate(&zs) != COMP_OK || zs.avail_in != 0 ||
		    zs.internal_state.state != ZSTATE_END)
			return -EIO;
		d->out_len[p] = zs.total_out;
		pos += zs.total_out;
		if (d->piece_cpu)
			d->piece_cpu[p] += thread_cpu() - c0;
	}
	d->passes++;
	d->total_out = pos;
	*bytes += c->len;
	return 0;
}

struct inflate_ctx {
	const struct deflate_ctx *d;
	uint8_t *out;
	bool verify;
	double *piece_cpu; /* as in deflate_ctx; the verifying pass is not counted */
	unsigned passes;
};

static int pass_inflate(void *ctx, const struct corpus *c, uint64_t *bytes)
{
	struct inflate_ctx *x = ctx;
	struct inflate_state st;
	size_t pos = 0;
	for (size_t p = 0; p * PIECE < c->len; p++) {
		double c0 = thread_cpu();
		isal_inflate_init(&st);
		st.next_in = x->d->out + pos;
		st.avail_in = (uint32_t)x->d->out_len[p];
		st.next_out = x->out;
		st.avail_out = PIECE;
		if (isal_inflate(&st) != ISAL_DECOMP_OK || st.block_state != ISAL_BLOCK_FINISH ||
		    st.total_out != PIECE)
			return -EBADMSG;
		if (x->piece_cpu && !x->verify)
			x->piece_cpu[p] += thread_cpu() - c0;
		if (x->verify && memcmp(x->out, c->data + p * PIECE, PIECE) != 0)
			return -EBADMSG;
		pos += x->d->out_len[p];
	}
	x->passes += !x->verify;
	x->verify = false;
	*bytes += c->len;
	return 0;
}

struct cipher_ctx {
	const EVP_CIPHER *cipher;
	bool encrypt, aead;
	unsigned char key[32], iv[16];
	const uint8_t *in; /* NULL: the corpus */
	uint8_t *out;
	unsigned char (*tags)[16];
};

static int pass_cipher(void *ctx, const struct corpus *c, uint64_t *bytes)
{
	struct cipher_ctx *k = ctx;
	const uint8_t *in = k->in ? k->in : c->data;
	EVP_CIPHER_CTX *e = EVP_CIPHER_CTX_new();
	if (!e)
		return -ENOMEM;
	int ok = 1, len;
	if (!k->aead) {
		/* One stream over the whole corpus: CBC chains, as the bundle's serial stage does.
		 */
		ok = EVP_CipherInit_ex(e, k->cipher, NULL, k->key, k->iv, k->encrypt);
		ok = ok && EVP_CIPHER_CTX_set_padding(e, 0);
		for (size_t off = 0; ok && off < c->len; off += PIECE)
			ok = EVP_CipherUpdate(e, k->out + off, &len, in + off, (int)PIECE);
	} else {
		/* One seal per frame under its own nonce, as store frames are. */
		for (size_t p = 0; ok && p * PIECE < c->len; p++) {
			unsigned char nonce[12] = {0};
			memcpy(nonce, &p, sizeof(p) < 12 ? sizeof(p) : 12);
			ok = EVP_CipherInit_ex(e, k->cipher, NULL, k->key, nonce, k->encrypt);
			if (ok && !k->encrypt)
				ok = EVP_CIPHER_CTX_ctrl(e, EVP_CTRL_AEAD_SET_TAG, 16, k->tags[p]);
			ok = ok && EVP_CipherUpdate(e, k->out + p * PIECE, &len, in + p * PIECE,
						    (int)PIECE);
			ok = ok && EVP_CipherFinal_ex(e, k->out + p * PIECE + len, &len);
			if (ok && k->encrypt)
				ok = EVP_CIPHER_CTX_ctrl(e, EVP_CTRL_AEAD_GET_TAG, 16, k->tags[p]);
		}
	}
	EVP_CIPHER_CTX_free(e);
	if (!ok)
		return k->aead && !k->encrypt ? -EBADMSG : -EIO;
	*bytes += c->len;
	return 0;
}

/* ---- write ------------------------------------------------------------------------------ */

/* Writes as the jobs write their outputs (store's .bin, bundle's parts, restore and unbundle
 * targets): O_DIRECT in 4 MiB requests from an aligned buffer into a new file, one request at a
 * time, and one fdatasync at the end, timed; a filesystem that refuses O_DIRECT gets buffered
 * writes, as the jobs fall back to, and the stage says which it measured (direct). */
#define WRITE_REQUEST ((size_t)4 << 20)
static void run_write(struct bench_report *rep, const struct corpus *c, const char *workdir)
{
	struct bench_stage *st = stage_add(rep, "write", "write");
	if (!st)
		return;
	char path[4200];
	snprintf(path, sizeof(path), "%s/write-stage.tmp", workdir);
	uint8_t *buf = NULL;
	if (posix_memalign((void **)&buf, 4096, WRITE_REQUEST) != 0) {
		stage_unavailable(st, "%s", "out of memory");
		return;
	}
	/* the corpus, not zeros or a pattern: what the device sees does not matter for most
	 * devices, but some compress or deduplicate */
	for (size_t off = 0; off < WRITE_REQUEST; off += PIECE)
		memcpy(buf + off, c->data + off % c->len, PIECE < c->len ? PIECE : c->len);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0600);
	st->direct = fd >= 0;
	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		stage_unavailable(st, "cannot create the write test file: %s", strerror(errno));
		free(buf);
		return;
	}
	st->request_size = WRITE_REQUEST;
	st->queue_depth = 1;
	snprintf(st->engine, sizeof(st->engine), "pwrite");
	uint64_t bytes = 0;
	int err = 0;
	double b0 = machine_busy(), t0 = bench_now();
	while (bytes < rep->opts.write_budget && !err) {
		ssize_t n = pwrite(fd, buf, WRITE_REQUEST, (off_t)bytes);
		if (n < 0 && errno == EINVAL && st->direct && bytes == 0) {
			/* refused at the first write (some filesystems accept the open) */
			int flags = fcntl(fd, F_GETFL);
			if (flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_DIRECT) == 0) {
				st->direct = false;
				continue;
			}
		}
		if (n < 0)
			err = errno;
		else
			bytes += (uint64_t)n;
	}
	if (!err && fdatasync(fd) < 0)
		err = errno;
	double t1 = bench_now(), b1 = machine_busy();
	close(fd);
	unlink(path);
	free(buf);
	if (err) {
		stage_unavailable(st, "cannot write the write test file: %s", strerror(err));
		return;
	}
	stage_done(st, bytes, t1 - t0);
	stage_io_cpu(st, b0, b1);
}

/* The host's speed now (invariant 6): deflate at level over the probe piece for min_time. */
double bench_probe(const uint8_t *data, size_t len, int level, double min_time)
{
	static const uint32_t sizes[] = {ISAL_DEF_LVL0_DEFAULT, ISAL_DEF_LVL1_DEFAULT,
					 ISAL_DEF_LVL2_DEFAULT, ISAL_DEF_LVL3_DEFAULT};
	size_t npieces = len / PIECE;
	if (npieces == 0 || level < 0 || level > 3)
		return 0;
	struct deflate_ctx d = {.level = (uint32_t)level, .level_buf_size = sizes[level]};
	d.out_cap = len + len / 4 + npieces * 1024 + 65536;
	d.out = malloc(d.out_cap);
	d.out_len = calloc(npieces, sizeof(*d.out_len));
	d.level_buf = malloc(sizes[level]);
	struct bench_stage st = {0};
	struct corpus c = {data, npieces * PIECE, min_time};
	if (d.out && d.out_len && d.level_buf)
		timed(&st, &c, pass_deflate, &d);
	free(d.out);
	free(d.out_len);
	free(d.level_buf);
	return st.available ? st.cpu_rate : 0;
}

void bench_run_stages(struct bench_report *rep, const uint8_t *data, size_t len,
		      const char *workdir)
{
	struct corpus c = {data, len, rep->opts.min_time};
	struct bench_stage *st;

	/* read: the configurations the reader offers */
	static const struct read_cfg quick_reads[] = {
	    {true, true, 1, 1 << 20},  {true, true, 32, 1 << 20},  {true, false, 32, 1 << 20},
	    {false, true, 4, 1 << 20}, {false, false, 4, 1 << 20},
	};
	/* the pread path reads with min(queue depth, 4) helper threads: qd 1 and 4 differ */
	static const struct read_cfg full_reads[] = {
	    {true, true, 1, 128 << 10}, {true, true, 4, 128 << 10},   {true, true, 32, 128 << 10},
	    {true, true, 1, 1 << 20},	{true, true, 4, 1 << 20},     {true, true, 32, 1 << 20},
	    {true, false, 4, 1 << 20},	{true, false, 32, 1 << 20},   {true, false, 32, 128 << 10},
	    {false, true, 1, 1 << 20},	{false, true, 4, 128 << 10},  {false, true, 4, 1 << 20},
	    {false, false, 1, 1 << 20}, {false, false, 4, 128 << 10}, {false, false, 4, 1 << 20},
	};
	const struct read_cfg *reads = rep->opts.quick ? quick_reads : full_reads;
	size_t nreads = rep->opts.quick ? sizeof(quick_reads) / sizeof(quick_reads[0])
					: sizeof(full_reads) / sizeof(full_reads[0]);
	for (size_t i = 0; i < nreads && !bench_interrupted(); i++)
		run_read(rep, &reads[i]);

	/* zero scan: all-zero input is its worst case (every byte must be looked at) */
	st = stage_add(rep, "zero-scan", "zero");
	if (st) {
		uint8_t *zeros = malloc(len);
		if (!zeros) {
			stage_unavailable(st, "%s", "out of memory");
		} else {
			memset(zeros, 0, len); /* real pages, not the shared zero page */
			timed(st, &c, pass_zero, zeros);
			free(zeros);
		}
	}

	st = stage_add(rep, "sha1", "hash");
	if (st)
		timed(st, &c, pass_digest, (void *)EVP_sha1());
	st = stage_add(rep, "sha256", "hash");
	if (st)
		timed(st, &c, pass_digest, (void *)EVP_sha256());
	uint32_t crc_sink = 0;
	st = stage_add(rep, "crc32", "hash");
	if (st)
		timed(st, &c, pass_crc32, &crc_sink);

	/* deflate at each level; the output at the jobs' level (--level) feeds inflate */
	static const uint32_t level_buf_sizes[] = {ISAL_DEF_LVL0_DEFAULT, ISAL_DEF_LVL1_DEFAULT,
						   ISAL_DEF_LVL2_DEFAULT, ISAL_DEF_LVL3_DEFAULT};
	size_t npieces = len / PIECE;
	struct deflate_ctx d = {.out_cap = len + len / 4 + npieces * 1024 + 65536};
	d.out = malloc(d.out_cap);
	d.out_len = calloc(npieces, sizeof(*d.out_len));
	d.level_buf = malloc(ISAL_DEF_LVL3_DEFAULT);
	uint8_t *l1 = malloc(d.out_cap);
	size_t *l1_len = calloc(npieces, sizeof(*l1_len));
	bool have_l1 = false;
	for (uint32_t level = 0; level <= 3; level++) {
		char name[16];
		snprintf(name, sizeof(name), "deflate-l%u", level);
		st = stage_add(rep, name, "deflate");
		if (!st)
			break;
		if (!d.out || !d.out_len || !d.level_buf || !l1 || !l1_len) {
			stage_unavailable(st, "%s", "out of memory");
			continue;
		}
		d.level = level;
		d.level_buf_size = level_buf_sizes[level];
		/* the jobs' level: what each piece costs, for the model's windows */
		bool profile = (int)level == rep->opts.level;
		d.piece_cpu = profile ? calloc(npieces, sizeof(*d.piece_cpu)) : NULL;
		d.passes = 0;
		timed(st, &c, pass_deflate, &d);
		if (st->available && d.piece_cpu && d.passes > 0) {
			struct bench_profile *pf = &rep->profile;
			bench_profile_free(pf);
			pf->deflate_out = calloc(npieces, sizeof(*pf->deflate_out));
			if (pf->deflate_out) {
				pf->npieces = npieces;
				pf->piece_bytes = PIECE;
				pf->deflate_cpu = d.piece_cpu;
				d.piece_cpu = NULL;
				for (size_t p = 0; p < npieces; p++) {
					pf->deflate_cpu[p] /= d.passes;
					pf->deflate_out[p] = d.out_len[p];
				}
			}
		}
		free(d.piece_cpu);
		d.piece_cpu = NULL;
		if (st->available) {
			st->ratio = (double)d.total_out / (double)len;
			if (profile) {
				memcpy(l1, d.out, d.total_out);
				memcpy(l1_len, d.out_len, npieces * sizeof(*l1_len));
				have_l1 = true;
			}
		}
	}
	st = stage_add(rep, "inflate", "inflate");
	if (st && !have_l1) {
		stage_unavailable(st, "%s", "no deflate output at the jobs' level to inflate");
	} else if (st) {
		memcpy(d.out, l1, d.out_cap);
		memcpy(d.out_len, l1_len, npieces * sizeof(*l1_len));
		struct inflate_ctx x = {.d = &d, .out = malloc(PIECE), .verify = true};
		if (rep->profile.npieces == npieces)
			x.piece_cpu = calloc(npieces, sizeof(*x.piece_cpu));
		if (!x.out)
			stage_unavailable(st, "%s", "out of memory");
		else
			timed(st, &c, pass_inflate, &x);
		if (st->available && x.piece_cpu && x.passes > 0) {
			for (size_t p = 0; p < npieces; p++)
				x.piece_cpu[p] /= x.passes;
			rep->profile.inflate_cpu = x.piece_cpu;
			x.piece_cpu = NULL;
		}
		free(x.piece_cpu);
		if (!st->available && !strcmp(st->reason, snap_strerror(-EBADMSG)))
			snprintf(st->reason, sizeof(st->reason),
				 "inflate did not give back the deflated corpus");
		free(x.out);
	}
	free(d.out);
	free(d.out_len);
	free(d.level_buf);
	free(l1);
	free(l1_len);

	/* ciphers: encrypt the corpus, then decrypt what was encrypted */
	uint8_t *ct = malloc(len), *pt = malloc(len);
	unsigned char(*tags)[16] = calloc(npieces, sizeof(*tags));
	struct {
		const char *enc, *dec;
		const EVP_CIPHER *cipher;
		bool aead;
	} ciphers[] = {
	    {"aes128cbc-enc", "aes128cbc-dec", EVP_aes_128_cbc(), false},
	    {"aes256gcm-enc", "aes256gcm-dec", EVP_aes_256_gcm(), true},
	};
	for (size_t i = 0; i < 2; i++) {
		struct cipher_ctx k = {.cipher = ciphers[i].cipher,
				       .aead = ciphers[i].aead,
				       .encrypt = true,
				       .out = ct,
				       .tags = tags};
		RAND_bytes(k.key, sizeof(k.key));
		RAND_bytes(k.iv, sizeof(k.iv));
		for (int dir = 0; dir < 2; dir++) {
			st = stage_add(rep, dir ? ciphers[i].dec : ciphers[i].enc, "cipher");
			if (!st)
				break;
			if (!ct || !pt || !tags) {
				stage_unavailable(st, "%s", "out of memory");
				continue;
			}
			if (dir) {
				k.encrypt = false;
				k.in = ct;
				k.out = pt;
			}
			timed(st, &c, pass_cipher, &k);
			if (dir && st->available && memcmp(pt, data, len) != 0)
				stage_unavailable(st, "%s",
						  "decryption did not give back the corpus");
		}
	}
	free(ct);
	free(pt);
	free(tags);

	if (!bench_interrupted())
		run_write(rep, &c, workdir);
}
