// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * output.c - the target of unbundle and restore (invariants in output.h).
 *
 * State transitions:
 *  1. open (snap_output_open): file -> temporary created and truncated to size;
 *     block device -> opened O_EXCL and its size checked
 *  2. writing (snap_output_write, snap_output_zero)
 *  3. committed (snap_output_commit: fsync, rename, fsync of the directory) or
 *     aborted (snap_output_free before a commit, by output_abort: temporary unlinked)
 *
 * The direct path (output.h invariant 5; open_direct, snap_output_write):
 *  D1. The O_DIRECT descriptor (dfd) is a second open of the same inode (/proc/self/fd/N, else
 *      the path), without O_EXCL: the first descriptor keeps a block device's exclusive claim.
 *  D2. Direct writes cover only whole blocks of dblock bytes, dblock = the larger of the
 *      kernel's DIO offset alignment (statx STATX_DIOALIGN; else the logical sector size of a
 *      block device, else 4096), the page size, and the filesystem block size (st_blksize,
 *      up to 1 MiB). Every byte outside a direct block goes through the page cache.
 *  D3. So a direct range and a buffered range never share a page, a filesystem block or a
 *      device sector. That is what makes mixing safe: a direct write flushes and invalidates
 *      the page cache over its own pages only, and no buffered write (nor the folio it
 *      creates: a buffered write only makes folios over the pages it touches) ever holds one
 *      of those pages, so no invalidation fails and no stale cached page is written back over
 *      direct data later; no filesystem block is half direct, half buffered, so no sub-block
 *      zeroing races a neighbour. Pieces of one output are disjoint byte ranges (callers
 *      write each byte once), which D2 turns into disjoint blocks.
 *  D4. ZERO ranges of a block device (BLKZEROOUT on the first descriptor) are byte ranges
 *      disjoint from the data; the ioctl drops the page cache over its range and writes the
 *      device directly, like a direct write, and its unaligned edges are buffered writes. A
 *      page at its edge may hold buffered bytes of a neighbouring piece, never direct ones
 *      (its direct blocks lie inside the piece, rounded inward to dblock: D2).
 *  D5. snap_output_commit's fsync on the first descriptor covers the direct writes too: both
 *      descriptors name one inode, fsync writes back its dirty pages and metadata (the extents
 *      a direct write allocated) and flushes the device cache. Direct writes are synchronous,
 *      and callers wait for their writers (restore's drain, snap_output_stream_flush) before
 *      they commit.
 *  D6. A direct write the kernel refuses with EINVAL (an alignment it did not report) turns
 *      the direct path off for the rest of the output and is redone buffered; any other error
 *      is returned like a buffered one, and the caller names the path and offset.
 *
 * The stream (snap_output_stream_*, one producer, one writer thread):
 *  S1. A buffer is owned by exactly one side at a time: free (the free stack), filling (the
 *      producer's cur), queued (the FIFO) or being written (the writer's, busy). Moves between
 *      owners happen under the stream's lock.
 *  S2. The writer takes buffers in FIFO order and writes or zeroes each before the next, so
 *      zero ranges and data keep the producer's order and never run concurrently.
 *  S3. The first failure stops the writing: later queued buffers are returned unwritten, and
 *      every later call of the producer returns the failure.
 *
 * S3 objects (output.h invariant 6; snap_output_open_s3):
 *  O1. open: HEAD (unless force), then the s3 writer (CreateMultipartUpload, or a resume's
 *      ListParts check); the sequence's stages go to snap_s3_writer_write, its final one to
 *      snap_s3_writer_end (a put_at_commit output: end waits for the commit)
 *  O2. commit: snap_s3_writer_commit, in the set's order, after every file of the set was
 *      synced; an object committed before a later member failed is deleted again
 *  O3. abort: snap_s3_writer_abort (aborts the upload, or keeps it with keep; deletes a
 *      single PUT already made)
 *  O4. The size told at the end (snap_output_seq_s3_rewind): the stage is handed to the writer,
 *      which may go back to the start of a streamed part promised past the end
 *      (snap_s3_writer_rewind); the sequence's offset goes back with it, and the producer
 *      writes the same bytes again from there.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <libgen.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job-internal.h" /* snap_now_ns, snap_job_param */
#include "log.h"
#include "output.h"
#include "util.h"

/* Writeback is started every this many bytes written, so the fsync of the commit finds most of
 * the data already on its way to the device instead of flushing it all at the end. */
#define WRITEBACK_STEP (64ull << 20)

static snap_output_fault_fn fault_fn;
static void *fault_userdata;

void snap_output_set_fault(snap_output_fault_fn fn, void *userdata)
{
	fault_fn = fn;
	fault_userdata = userdata;
}

/* The fault hook's verdict on the next call at point: 0, or the errno to fail it with. */
static int fault(enum snap_output_fault_point point, const char *path, uint64_t off)
{
	return fault_fn ? fault_fn(fault_userdata, point, path, off) : 0;
}

struct snap_output {
	char *path; /* final name */
	char *tmp;  /* temporary name (files only) */
	int fd;
	bool blockdev;
	bool is_stdout; /* SNAP_OUTPUT_APPEND with "-" */
	bool force;	/* SNAP_OUTPUT_FORCE: the commit may replace */
	char *dir;	/* the directory of path (files), for the commit's directory fsync */
	bool committed;
	uint64_t size;
	uint64_t written;	 /* atomic: bytes written through the page cache so far */
	uint64_t writeback_mark; /* atomic: written count at the last writeback start */
	int dfd;		 /* O_DIRECT descriptor of the same inode, or -1 (D1) */
	bool direct_off;	 /* atomic: the kernel refused a direct write (D6) */
	uint32_t dblock;	 /* offset and length granularity of direct writes (D2) */
	uint32_t dmem;		 /* memory alignment of direct writes */
	uint64_t direct_written; /* atomic: bytes written through dfd */

	/* S3 objects (O1-O3) */
	struct snap_s3_client *s3c;
	struct snap_s3_writer *s3w;
	char *bucket, *key, *etag;
	bool s3_ended, put_at_commit;
};

static void detail(char **ret_detail, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detail(char **ret_detail, const char *fmt, ...)
{
	if (!ret_detail)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(ret_detail, fmt, ap) < 0)
		*ret_detail = NULL;
	va_end(ap);
}

/* An output named path, nothing open yet; NULL when out of memory. */
static struct snap_output *output_new(const char *path)
{
	struct snap_output *o = calloc(1, sizeof(*o));
	if (!o || !(o->path = strdup(path))) {
		free(o);
		return NULL;
	}
	o->fd = o->dfd = -1;
	return o;
}

static int open_blockdev(struct snap_output *o, uint64_t size, char **ret_detail)
{
	/* O_EXCL on a block device: the kernel refuses it while mounted or claimed */
	o->fd = open(o->path, O_WRONLY | O_EXCL | O_CLOEXEC);
	if (o->fd < 0) {
		int r = -errno;
		if (errno == EBUSY)
			detail(ret_detail, "cannot write %s: device is mounted or in use", o->path);
		else
			detail(ret_detail, "cannot open %s: %s", o->path, strerror(errno));
		return r;
	}
	uint64_t devsize = 0;
	if (ioctl(o->fd, BLKGETSIZE64, &devsize) < 0) {
		int r = -errno;
		detail(ret_detail, "cannot get the size of %s: %s", o->path, strerror(errno));
		return r;
	}
	if (devsize < size) {
		detail(ret_detail, "%s is too small: %llu bytes, the image needs %llu", o->path,
		       (unsigned long long)devsize, (unsigned long long)size);
		return -ENOSPC;
	}
	o->blockdev = true;
	return 0;
}

int snap_output_reclaim(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	size_t pl = strlen(prefix);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *t = strstr(e->d_name, ".tmp-");
		if (e->d_name[0] != '.' || strncmp(e->d_name + 1, prefix, pl) || !t)
			continue;
		char *end;
		long pid = strtol(t + 5, &end, 10);
		if (*end || pid <= 0 || (kill((pid_t)pid, 0) < 0 ? errno != ESRCH : true))
			continue; /* not ours to judge, or its owner is alive */
		if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
			snap_info("removed %s/%s, left by process %ld", dir, e->d_name, pid);
			n++;
		}
	}
	closedir(d);
	return n;
}

bool snap_output_is_file(const char *path, const struct stat *st)
{
	struct stat o;
	return stat(path, &o) == 0 && o.st_dev == st->st_dev && o.st_ino == st->st_ino;
}

/* Gives a freshly created file (O_CREAT with 0600) the mode open(O_CREAT, 0666) would: 0666
 * less the process umask. */
static int file_mode_default(int fd)
{
	/* umask() can only be read by setting it; the pair is not thread-safe, so read it from
	 * /proc where the kernel reports it (Linux 4.7+), falling back to the usual 022 */
	mode_t mask = 022;
	FILE *f = fopen("/proc/self/status", "re");
	if (f) {
		char line[256];
		unsigned int m;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "Umask: %o", &m) == 1) {
				mask = (mode_t)m;
				break;
			}
		fclose(f);
	}
	return fchmod(fd, 0666 & ~mask) < 0 ? -errno : 0;
}

static int open_file(struct snap_output *o, uint64_t size, unsigned flags, char **ret_detail)
{
	char *dup = strdup(o->path);
	if (!dup)
		return -ENOMEM;
	const char *dir = o->dir, *base = basename(dup);
	int r = 0;
	/* the owner's pid in the name: a later run can tell whose it is, and reclaims it */
	if (!(flags & SNAP_OUTPUT_NO_RECLAIM))
		snap_output_reclaim(dir, base);
	if (asprintf(&o->tmp, "%s/.%s.tmp-%ld", dir, base, (long)getpid()) < 0) {
		o->tmp = NULL;
		r = -ENOMEM;
		goto out;
	}
	o->fd = open(o->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (o->fd < 0) {
		r = -errno;
		detail(ret_detail, "cannot create a file in %s: %s", dir, strerror(errno));
		free(o->tmp);
		o->tmp = NULL;
		goto out;
	}
	if (file_mode_default(o->fd) < 0 ||
	    (!(flags & SNAP_OUTPUT_APPEND) && ftruncate(o->fd, (off_t)size) < 0)) {
		r = -errno;
		detail(ret_detail, "cannot size %s to %llu bytes: %s", o->tmp,
		       (unsigned long long)size, strerror(errno));
		goto out;
	}
out:
	free(dup);
	return r;
}

/* SNAPBUNDLE_OUTPUT_BUFFERED is set (and not "0"): every output keeps the page cache. */
static bool env_buffered(void)
{
	const char *e = getenv("SNAPBUNDLE_OUTPUT_BUFFERED");
	return e && *e && strcmp(e, "0") != 0;
}

static bool pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* Opens the O_DIRECT descriptor and sets its alignment (D1, D2). Failing is not an error: the
 * output then goes through the page cache only, as it always could. */
static void open_direct(struct snap_output *o)
{
	struct statx sx = {0};
	if (statx(o->fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_DIOALIGN, &sx) < 0)
		return;
	uint32_t offa, mema;
	if (sx.stx_mask & STATX_DIOALIGN) {
		if (!sx.stx_dio_offset_align)
			return; /* the kernel says: no direct I/O on this file */
		offa = sx.stx_dio_offset_align;
		mema = sx.stx_dio_mem_align ? sx.stx_dio_mem_align : offa;
	} else if (o->blockdev) {
		int ssz = 0;
		if (ioctl(o->fd, BLKSSZGET, &ssz) < 0 || ssz <= 0)
			ssz = 4096;
		offa = mema = (uint32_t)ssz;
	} else {
		/* a kernel without STATX_DIOALIGN (before 6.1): 4096 is safe on every
		 * filesystem with 4 KiB sectors or smaller, and O_DIRECT may still be refused */
		offa = mema = 4096;
	}
	long page = sysconf(_SC_PAGESIZE);
	uint64_t blk = offa;
	if (page > 0 && (uint64_t)page > blk)
		blk = (uint64_t)page;
	if (pow2(sx.stx_blksize) && sx.stx_blksize <= (1u << 20) && sx.stx_blksize > blk)
		blk = sx.stx_blksize;
	if (!pow2(blk) || !pow2(mema) || blk % offa || mema > SNAP_OUTPUT_MEM_ALIGN ||
	    blk > (1u << 20))
		return;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", o->fd);
	int dfd = open(proc, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (dfd < 0 && errno == ENOENT) /* no /proc: the name we created or were given */
		dfd = open(o->tmp ? o->tmp : o->path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (dfd < 0) {
		snap_debug("%s: no O_DIRECT (%s): writing through the page cache", o->path,
			   strerror(errno));
		return;
	}
	struct stat a, b;
	if (fstat(o->fd, &a) < 0 || fstat(dfd, &b) < 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev || a.st_rdev != b.st_rdev) {
		close(dfd); /* not the same inode (a name swapped under us): never write it */
		return;
	}
	o->dfd = dfd;
	o->dblock = (uint32_t)blk;
	o->dmem = mema;
	snap_debug("%s: O_DIRECT writes in blocks of %u bytes, memory aligned to %u", o->path,
		   o->dblock, o->dmem);
}

unsigned snap_output_job_flags(const struct snap_job *job)
{
	return (snap_job_param(job, SNAP_PARAM_FORCE, 0) ? SNAP_OUTPUT_FORCE : 0) |
	       (snap_job_param(job, SNAP_PARAM_NO_DIRECT, 0) ? SNAP_OUTPUT_BUFFERED : 0);
}

int snap_output_open(const char *path, uint64_t size, unsigned flags, struct snap_output **ret,
		     char **ret_detail)
{
	bool force = flags & SNAP_OUTPUT_FORCE, append = flags & SNAP_OUTPUT_APPEND;
	if (append && path && !strcmp(path, "-")) {
		struct snap_output *o = output_new(path);
		if (!o)
			return -ENOMEM;
		o->fd = STDOUT_FILENO;
		o->is_stdout = true;
		*ret = o;
		return 0;
	}
	if (!path || !*path || !strcmp(path, "-")) {
		detail(ret_detail, "the output must be a file or a block device, not '%s'",
		       path ? path : "");
		return -EINVAL;
	}
	struct snap_output *o = output_new(path);
	if (!o)
		return -ENOMEM;
	o->size = size;
	o->force = force;
	char *d = strdup(path);
	o->dir = d ? strdup(dirname(d)) : NULL;
	free(d);
	if (!o->dir) {
		snap_output_free(o);
		return -ENOMEM;
	}
	int r;
	struct stat st, lst;
	bool exists = stat(path, &st) == 0, lexists = lstat(path, &lst) == 0;
	if (exists && S_ISBLK(st.st_mode) && !append) {
		r = open_blockdev(o, size, ret_detail);
	} else if (lexists && S_ISLNK(lst.st_mode)) {
		/* a link is renamed over, not written through: only a block device is followed */
		detail(ret_detail, "%s is a symbolic link%s (give the file it names)", path,
		       exists ? "" : " to nothing");
		r = -EEXIST;
	} else if (exists && S_ISDIR(st.st_mode)) {
		detail(ret_detail, "%s is a directory", path);
		r = -EISDIR;
	} else if (exists && !S_ISREG(st.st_mode) && append) {
		/* written from start to end and renamed into place: files only */
		detail(ret_detail, "%s is not a regular file: write an image file, or - for "
				   "standard output",
		       path);
		r = -EINVAL;
	} else if (exists && !S_ISREG(st.st_mode)) {
		/* a file target is renamed into place: never over a character device or a pipe */
		detail(ret_detail, "%s is neither a regular file nor a block device", path);
		r = -EINVAL;
	} else if (lexists && !force) {
		detail(ret_detail, "%s already exists (use --force to replace it)", path);
		r = -EEXIST;
	} else {
		r = open_file(o, size, flags, ret_detail);
	}
	if (r < 0) {
		snap_output_free(o);
		return r;
	}
	if (!(flags & SNAP_OUTPUT_BUFFERED) && !env_buffered())
		open_direct(o);
	*ret = o;
	return 0;
}

/* The file name a volume restores to in a directory: its device name's last component. */
static const char *device_base(const char *device)
{
	const char *base = strrchr(device, '/');
	return base ? base + 1 : device;
}

int snap_output_open_volumes(const char *out, const struct snap_output_vol *vols, size_t n,
			     unsigned flags, const char *src, int src_fd, struct snap_output **outs,
			     bool *ret_made_dir, char **ret_detail)
{
	size_t nsel = 0;
	for (size_t i = 0; i < n; i++)
		nsel += vols[i].device != NULL;
	for (size_t i = 0; i < n && nsel > 1; i++) {
		/* one file per volume, named after the device: two devices of one name (a forged
		 * image: store refuses them) would be one file, so nothing is written */
		const char *base = vols[i].device ? device_base(vols[i].device) : NULL;
		if (base && (!*base || !strcmp(base, ".") || !strcmp(base, ".."))) {
			detail(ret_detail, "%s: volume %zu has no usable name (%s)", src, i,
			       vols[i].device);
			return -EUCLEAN;
		}
		for (size_t j = 0; base && j < i; j++)
			if (vols[j].device && !strcmp(device_base(vols[j].device), base)) {
				detail(ret_detail,
				       "%s: volumes %s and %s would both restore to %s/%s.img", src,
				       vols[j].device, vols[i].device, out, base);
				return -EUCLEAN;
			}
	}
	/* several volumes: out is a directory, one NAME.img per device */
	bool made = nsel > 1 && mkdir(out, 0755) == 0;
	if (nsel > 1 && !made && errno != EEXIST) {
		int r = -errno;
		detail(ret_detail, "cannot create %s: %s", out, strerror(-r));
		return r;
	}
	struct stat st;
	bool src_file = src_fd >= 0 && fstat(src_fd, &st) == 0 && S_ISREG(st.st_mode);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		if (!vols[i].device)
			continue;
		char *path = NULL;
		if (nsel > 1 ? asprintf(&path, "%s/%s.img", out, device_base(vols[i].device)) < 0
			     : !(path = strdup(out))) {
			path = NULL;
			r = -ENOMEM;
		} else if (src_file && snap_output_is_file(path, &st)) {
			detail(ret_detail, "%s is the image restored from: refusing to replace it",
			       path);
			r = -EINVAL;
		} else {
			r = snap_output_open(path, vols[i].size, flags, &outs[i], ret_detail);
			if (r < 0 && ret_detail && !*ret_detail) /* the message names the failure */
				detail(ret_detail, "%s", snap_strerror(r));
		}
		free(path);
	}
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			outs[i] = snap_output_free(outs[i]); /* aborts: nothing is left behind */
		if (made)
			rmdir(out);
		return r;
	}
	*ret_made_dir = made;
	return 0;
}

int snap_output_open_s3(const char *url, unsigned flags, const struct snap_output_s3 *s3,
			struct snap_output **ret, char **ret_detail)
{
	char *bucket = NULL, *key = NULL, *d = NULL;
	int r = snap_s3_url_parse(url, &bucket, &key, ret_detail);
	if (r < 0)
		return r;
	if (!snap_s3_key_names_object(key)) {
		detail(ret_detail, "%s names no object (a key is needed after the bucket)", url);
		free(bucket);
		free(key);
		return -EINVAL;
	}
	struct snap_output *o = output_new(url);
	if (!o) {
		free(bucket);
		free(key);
		return -ENOMEM;
	}
	o->s3c = s3->client;
	o->bucket = bucket;
	o->key = key;
	o->force = flags & SNAP_OUTPUT_FORCE;
	o->put_at_commit = s3->single && s3->put_at_commit;
	if (!o->force && !s3->upload_id) {
		/* an existing object is refused now (the commit cannot be conditional: O2) */
		struct snap_s3_head *h = NULL;
		r = snap_s3_head_object(o->s3c, bucket, key, &h, &d);
		snap_s3_head_free(h);
		if (r == 0) {
			detail(ret_detail, "%s already exists (use --force to replace it)", url);
			r = -EEXIST;
			goto fail;
		}
		if (r != -ENOENT)
			goto fail_detail;
		free(d);
		d = NULL;
	}
	uint64_t part = s3->part_size ? s3->part_size : SNAP_S3_DEFAULT_PART_SIZE;
	if (s3->upload_id)
		r = snap_s3_writer_resume(o->s3c, bucket, key, s3->upload_id, s3->parts, s3->nparts,
					  part, &o->s3w, &d);
	else
		r = snap_s3_writer_new(o->s3c, bucket, key,
				       s3->single ? 0
						  : SNAP_S3_WRITER_MULTIPART |
							(s3->keep ? SNAP_S3_WRITER_KEEP : 0) |
							(s3->stream ? SNAP_S3_WRITER_STREAM : 0),
				       part, s3->put, &o->s3w, &d);
	if (r < 0)
		goto fail_detail;
	if (s3->on_part)
		snap_s3_writer_on_part(o->s3w, s3->on_part, s3->on_part_userdata);
	*ret = o;
	return 0;
fail_detail:
	detail(ret_detail, "%s", d ? d : strerror(-r));
fail:
	free(d);
	snap_output_free(o);
	return r;
}

bool snap_output_is_s3(const struct snap_output *out)
{
	return out->s3w != NULL;
}

const char *snap_output_s3_etag(const struct snap_output *out)
{
	return out->etag;
}

const char *snap_output_s3_upload_id(const struct snap_output *out)
{
	return out->s3w ? snap_s3_writer_upload_id(out->s3w) : NULL;
}

bool snap_output_is_block_device(const struct snap_output *out)
{
	return out->blockdev;
}

const char *snap_output_path(const struct snap_output *out)
{
	return out->path;
}

bool snap_output_is_direct(const struct snap_output *out)
{
	return out->dfd >= 0 && !__atomic_load_n(&out->direct_off, __ATOMIC_RELAXED);
}

uint32_t snap_output_direct_block(const struct snap_output *out)
{
	return snap_output_is_direct(out) ? out->dblock : 0;
}

uint64_t snap_output_direct_bytes(const struct snap_output *out)
{
	return __atomic_load_n(&out->direct_written, __ATOMIC_RELAXED);
}

uint64_t snap_output_buffered_bytes(const struct snap_output *out)
{
	return __atomic_load_n(&out->written, __ATOMIC_RELAXED);
}

/* pwrite until done: short writes continue, EINTR retries. */
static int write_buffered(struct snap_output *out, const uint8_t *p, size_t len, uint64_t off)
{
	size_t done = 0;
	int r = snap_pwrite_all(out->fd, p, len, off, &done);
	__atomic_add_fetch(&out->written, (uint64_t)done, __ATOMIC_RELAXED);
	if (r < 0)
		return r;
	uint64_t w = __atomic_load_n(&out->written, __ATOMIC_RELAXED);
	uint64_t mark = __atomic_load_n(&out->writeback_mark, __ATOMIC_RELAXED);
	if (w - mark >= WRITEBACK_STEP &&
	    __atomic_compare_exchange_n(&out->writeback_mark, &mark, w, false, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED)) {
		/* start writeback of everything dirty so far; it does not wait for it. Failures
		 * are not errors here: the commit's fsync reports them. */
		(void)sync_file_range(out->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	}
	return 0;
}

/* len bytes of whole blocks at off (multiples of dblock, p aligned to dmem) through dfd (D2),
 * the fault hook asked first: until done, a failure (-EINVAL: the kernel refused, D6), or a
 * short write that ended off a block boundary. *done: the bytes written, either way. */
static int pwrite_direct(struct snap_output *out, const uint8_t *p, uint64_t off, size_t len,
			 size_t *done)
{
	size_t put = 0;
	int r = 0;
	while (put < len) {
		int f = fault(SNAP_OUTPUT_FAULT_DIRECT_WRITE, out->path, off + put);
		ssize_t n =
		    f ? (errno = f, -1) : pwrite(out->dfd, p + put, len - put, (off_t)(off + put));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		put += (size_t)n;
		__atomic_add_fetch(&out->direct_written, (uint64_t)n, __ATOMIC_RELAXED);
		if ((off + put) % out->dblock) /* a short write off a block: the rest buffered */
			break;
	}
	*done = put;
	return r;
}

/* A direct write refused with EINVAL: flag (an output's, or a sequence's) turns the direct path
 * off, said once. */
static void direct_refused(bool *flag, const char *path, uint64_t off)
{
	if (!__atomic_exchange_n(flag, true, __ATOMIC_SEQ_CST))
		snap_debug("%s: O_DIRECT write refused at offset %llu: writing through the page "
			   "cache",
			   path, (unsigned long long)off);
}

/* The whole blocks [a, b) (a, b multiples of dblock, p aligned to dmem) through dfd (D2, D6). */
static int write_direct(struct snap_output *out, const uint8_t *p, uint64_t a, uint64_t b)
{
	size_t done = 0;
	int r = pwrite_direct(out, p, a, (size_t)(b - a), &done);
	if (r == -EINVAL) /* an alignment rule the kernel did not report: the rest of this */
		direct_refused(&out->direct_off, out->path, a + done); /* output buffered (D3) */
	else if (r < 0 || a + done == b)
		return r;
	/* refused, or a short write that ended off a block boundary: finish buffered, whole
	 * blocks still */
	return write_buffered(out, p + done, (size_t)(b - a - done), a + done);
}

int snap_output_write(struct snap_output *out, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	if (off > out->size || len > out->size - off)
		return -ERANGE;
	if (snap_output_is_direct(out) && len >= out->dblock) {
		uint64_t bs = out->dblock;
		uint64_t a = (off + bs - 1) / bs * bs, b = (off + len) / bs * bs;
		if (a < b && ((uintptr_t)(p + (a - off)) & (out->dmem - 1)) == 0) {
			int r = 0;
			if (a > off)
				r = write_buffered(out, p, (size_t)(a - off), off);
			if (r == 0)
				r = write_direct(out, p + (a - off), a, b);
			if (r == 0 && off + len > b)
				r = write_buffered(out, p + (b - off), (size_t)(off + len - b), b);
			return r;
		}
	}
	return write_buffered(out, p, len, off);
}

int snap_output_zero(struct snap_output *out, uint64_t off, uint64_t len)
{
	if (off > out->size || len > out->size - off)
		return -ERANGE;
	if (!out->blockdev || len == 0)
		return 0; /* a fresh file reads back zeros where nothing was written */

	/* BLKZEROOUT wants 512-byte alignment; write the unaligned edges */
	uint64_t a = (off + 511) & ~511ull, b = (off + len) & ~511ull;
	if (b > a) {
		uint64_t range[2] = {a, b - a};
		if (ioctl(out->fd, BLKZEROOUT, range) == 0) {
			int r = 0;
			if (a > off)
				r = snap_output_zero_write(out, off, a - off);
			if (r == 0 && off + len > b)
				r = snap_output_zero_write(out, b, off + len - b);
			return r;
		}
	}
	return snap_output_zero_write(out, off, len);
}

int snap_output_zero_write(struct snap_output *out, uint64_t off, uint64_t len)
{
	/* aligned, and each piece starts at the address congruent with its offset, so that the
	 * whole blocks of a zeroed range go the direct way */
	static const uint8_t zeros[1 << 16] __attribute__((aligned(SNAP_OUTPUT_MEM_ALIGN)));
	while (len > 0) {
		size_t skew = (size_t)(off % SNAP_OUTPUT_MEM_ALIGN);
		size_t n = sizeof(zeros) - skew;
		if (n > len)
			n = (size_t)len;
		int r = snap_output_write(out, zeros + skew, n, off);
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---- writer threads: the stream's and the sequence's ---- */

/* What a producer and its writer thread share, under mu. */
struct writer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool started;
	unsigned queued; /* handed over, not taken by the thread yet */
	bool busy;	 /* the thread holds one */
	bool stop;	 /* the thread exits once nothing is queued */
	bool discard;	 /* queued ones are dropped unwritten (the stream's S3) */
	int err;	 /* the first failure (S3, Q3) */
	char *detail;
};

/* The thread, lock held: waits for something queued; false when it is to exit instead. */
static bool writer_next(struct writer *w)
{
	while (!w->queued && !w->stop)
		pthread_cond_wait(&w->cv, &w->mu);
	return w->queued != 0;
}

/* The first failure so far. */
static int writer_err(struct writer *w)
{
	pthread_mutex_lock(&w->mu);
	int r = w->err;
	pthread_mutex_unlock(&w->mu);
	return r;
}

/* Waits until everything handed over was written; the first failure. */
static int writer_flush(struct writer *w)
{
	pthread_mutex_lock(&w->mu);
	while (w->queued || w->busy)
		pthread_cond_wait(&w->cv, &w->mu);
	int r = w->err;
	pthread_mutex_unlock(&w->mu);
	return r;
}

/* Stops the thread (after what is queued, unless discard), frees what w holds. */
static void writer_stop(struct writer *w, bool discard)
{
	if (w->started) {
		pthread_mutex_lock(&w->mu);
		w->stop = true;
		w->discard = discard;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thread, NULL);
	}
	free(w->detail);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}

/* ---- the stream ---- */

struct stream_buf {
	uint8_t *mem;  /* aligned to SNAP_OUTPUT_MEM_ALIGN, bufsize bytes */
	uint8_t *data; /* mem + off % SNAP_OUTPUT_MEM_ALIGN: congruent with off */
	uint64_t off;
	size_t len;
	bool zero; /* a zero range [off, off + len), no data */
};

struct snap_output_stream {
	struct snap_output *out;
	size_t bufsize;
	unsigned nbufs;
	struct stream_buf *bufs;
	struct stream_buf *cur; /* producer: the buffer being filled */

	struct writer w;
	struct stream_buf **fifo; /* queued (w.queued of them), in order (S2) */
	unsigned fhead;
	struct stream_buf **free_stack;
	unsigned nfree;
};

static void *stream_main(void *arg)
{
	struct snap_output_stream *s = arg;
	pthread_mutex_lock(&s->w.mu);
	while (writer_next(&s->w)) {
		struct stream_buf *b = s->fifo[s->fhead];
		s->fhead = (s->fhead + 1) % s->nbufs;
		s->w.queued--;
		bool skip = s->w.err || s->w.discard;
		s->w.busy = true;
		pthread_mutex_unlock(&s->w.mu);
		int r = 0;
		if (!skip)
			r = b->zero ? snap_output_zero(s->out, b->off, b->len)
				    : snap_output_write(s->out, b->data, b->len, b->off);
		pthread_mutex_lock(&s->w.mu);
		if (r < 0 && !s->w.err) {
			s->w.err = r;
			detail(&s->w.detail, "cannot %s %s at offset %llu: %s",
			       b->zero ? "zero" : "write", s->out->path, (unsigned long long)b->off,
			       strerror(-r));
		}
		s->free_stack[s->nfree++] = b;
		s->w.busy = false;
		pthread_cond_broadcast(&s->w.cv);
	}
	pthread_mutex_unlock(&s->w.mu);
	return NULL;
}

int snap_output_stream_new(struct snap_output *out, size_t bufsize, unsigned nbufs,
			   struct snap_output_stream **ret)
{
	if (!nbufs || !bufsize || bufsize % SNAP_OUTPUT_MEM_ALIGN)
		return -EINVAL;
	struct snap_output_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->out = out;
	s->bufsize = bufsize;
	s->nbufs = nbufs;
	pthread_mutex_init(&s->w.mu, NULL);
	pthread_cond_init(&s->w.cv, NULL);
	s->bufs = calloc(nbufs, sizeof(*s->bufs));
	s->fifo = calloc(nbufs, sizeof(*s->fifo));
	s->free_stack = calloc(nbufs, sizeof(*s->free_stack));
	if (!s->bufs || !s->fifo || !s->free_stack)
		goto nomem;
	for (unsigned i = 0; i < nbufs; i++) {
		if (posix_memalign((void **)&s->bufs[i].mem, SNAP_OUTPUT_MEM_ALIGN, bufsize) != 0) {
			s->bufs[i].mem = NULL;
			goto nomem;
		}
		s->free_stack[s->nfree++] = &s->bufs[i];
	}
	if (pthread_create(&s->w.thread, NULL, stream_main, s) != 0) {
		snap_output_stream_free(s);
		return -EAGAIN;
	}
	s->w.started = true;
	*ret = s;
	return 0;
nomem:
	snap_output_stream_free(s);
	return -ENOMEM;
}

/* Hands the buffer being filled (if any) to the writer thread. */
static void stream_submit(struct snap_output_stream *s)
{
	struct stream_buf *b = s->cur;
	if (!b)
		return;
	s->cur = NULL;
	pthread_mutex_lock(&s->w.mu);
	s->fifo[(s->fhead + s->w.queued) % s->nbufs] = b;
	s->w.queued++;
	pthread_cond_broadcast(&s->w.cv);
	pthread_mutex_unlock(&s->w.mu);
}

/* A free buffer for the producer, or the writer's failure. */
static int stream_get(struct snap_output_stream *s, struct stream_buf **ret)
{
	pthread_mutex_lock(&s->w.mu);
	while (!s->nfree && !s->w.err)
		pthread_cond_wait(&s->w.cv, &s->w.mu);
	int r = s->w.err;
	if (!r)
		*ret = s->free_stack[--s->nfree];
	pthread_mutex_unlock(&s->w.mu);
	return r;
}

int snap_output_stream_write(struct snap_output_stream *s, const void *buf, size_t len,
			     uint64_t off)
{
	const uint8_t *p = buf;
	int r = writer_err(&s->w);
	if (r < 0)
		return r;
	if (off > s->out->size || len > s->out->size - off)
		return -ERANGE;
	while (len > 0) {
		struct stream_buf *b = s->cur;
		if (b && off != b->off + b->len) {
			stream_submit(s);
			b = NULL;
		}
		if (!b) {
			if ((r = stream_get(s, &b)) < 0)
				return r;
			b->off = off;
			b->len = 0;
			b->zero = false;
			b->data = b->mem + off % SNAP_OUTPUT_MEM_ALIGN;
			s->cur = b;
		}
		/* a full buffer ends at an offset that is a multiple of the alignment */
		size_t room = s->bufsize - (size_t)(b->data - b->mem) - b->len;
		size_t n = len < room ? len : room;
		memcpy(b->data + b->len, p, n);
		b->len += n;
		p += n;
		off += n;
		len -= n;
		if (n == room)
			stream_submit(s);
	}
	return 0;
}

int snap_output_stream_zero(struct snap_output_stream *s, uint64_t off, uint64_t len)
{
	int r = writer_err(&s->w);
	if (r < 0)
		return r;
	if (off > s->out->size || len > s->out->size - off)
		return -ERANGE;
	if (!s->out->blockdev || len == 0)
		return 0; /* a fresh file reads back zeros where nothing was written */
	stream_submit(s);
	struct stream_buf *b;
	if ((r = stream_get(s, &b)) < 0)
		return r;
	b->off = off;
	b->len = (size_t)len;
	b->zero = true;
	s->cur = b;
	stream_submit(s);
	return 0;
}

int snap_output_stream_flush(struct snap_output_stream *s)
{
	stream_submit(s);
	return writer_flush(&s->w);
}

const char *snap_output_stream_error(const struct snap_output_stream *s)
{
	/* written once, under the lock, before err is seen by the producer */
	return s->w.detail;
}

struct snap_output_stream *snap_output_stream_free(struct snap_output_stream *s)
{
	if (!s)
		return NULL;
	writer_stop(&s->w, true);
	for (unsigned i = 0; s->bufs && i < s->nbufs; i++)
		free(s->bufs[i].mem);
	free(s->bufs);
	free(s->fifo);
	free(s->free_stack);
	free(s);
	return NULL;
}

/* ---- the commit policy (output.h invariant 2a) ---- */

static int sync_data(struct snap_output *out, char **ret_detail)
{
	const char *name = out->blockdev ? out->path : out->tmp;
	int fd = out->fd >= 0 ? out->fd : open(name, O_RDONLY | O_CLOEXEC);
	int r = fd < 0 || fsync(fd) < 0 ? -errno : 0;
	if (fd >= 0 && fd != out->fd)
		close(fd);
	if (r < 0)
		detail(ret_detail, "cannot flush %s: %s", name, strerror(-r));
	return r;
}

/* tmp to path, never over an existing name unless force (invariant 2). */
static int rename_into_place(const struct snap_output *out, bool force, char **ret_detail)
{
	int r = force ? rename(out->tmp, out->path)
		      : renameat2(AT_FDCWD, out->tmp, AT_FDCWD, out->path, RENAME_NOREPLACE);
	if (r < 0 && !force && (errno == EINVAL || errno == ENOSYS)) {
		/* a filesystem without RENAME_NOREPLACE: link() refuses an existing name too */
		r = link(out->tmp, out->path);
		if (r == 0)
			unlink(out->tmp);
	}
	if (r == 0)
		return 0;
	r = -errno;
	if (r == -EEXIST)
		detail(ret_detail, "%s appeared while it was written (use --force to replace it)",
		       out->path);
	else
		detail(ret_detail, "cannot rename %s to %s: %s", out->tmp, out->path,
		       strerror(-r));
	return r;
}

static int sync_dir(const char *dir, char **ret_detail)
{
	int r = fault(SNAP_OUTPUT_FAULT_DIR_SYNC, dir, 0);
	if (r == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		/* EINVAL: a filesystem that cannot sync directories has nothing to sync */
		r = dfd < 0 || fsync(dfd) == 0 || errno == EINVAL ? 0 : errno;
		if (dfd >= 0)
			close(dfd);
	}
	if (r)
		detail(ret_detail, "cannot sync directory %s: %s", dir, strerror(r));
	return -r;
}

/* O2: ends a put_at_commit object (its PUT starts now), waits for the object. */
static int s3_commit(struct snap_output *o, char **ret_detail)
{
	int r = 0;
	if (!o->s3_ended) {
		r = snap_s3_writer_end(o->s3w);
		o->s3_ended = true;
	}
	if (r == 0)
		r = snap_s3_writer_commit(o->s3w, &o->etag);
	if (r < 0) {
		const char *e = snap_s3_writer_error(o->s3w);
		detail(ret_detail, "%s", e && *e ? e : strerror(-r));
	}
	return r;
}

/* Whether out is a file renamed into place by the commit. */
static bool renamed_file(const struct snap_output *o)
{
	return !o->blockdev && !o->is_stdout && !o->s3w;
}

int snap_output_commit_all(struct snap_output *const *outs, size_t n, char **ret_detail)
{
	int r = 0;
	size_t renamed = 0;
	for (size_t i = 0; i < n && r == 0; i++)
		if (!outs[i]->is_stdout && !outs[i]->s3w)
			r = sync_data(outs[i], ret_detail);
	/* in order, the last one last: renames and S3 commits (O2) alike */
	for (; renamed < n && r == 0; renamed++) {
		struct snap_output *o = outs[renamed];
		if (o->s3w)
			r = s3_commit(o, ret_detail);
		else if (renamed_file(o))
			r = rename_into_place(o, o->force, ret_detail);
		if (r < 0)
			break; /* outs[0, renamed) were committed, this one not */
	}
	/* one fsync per directory: outputs of a set usually share one */
	for (size_t i = 0; i < renamed && r == 0; i++) {
		const struct snap_output *o = outs[i];
		bool seen = !renamed_file(o);
		for (size_t j = 0; j < i && !seen; j++)
			seen = renamed_file(outs[j]) && !strcmp(outs[j]->dir, o->dir);
		if (!seen)
			r = sync_dir(o->dir, ret_detail);
	}
	for (size_t i = 0; i < renamed; i++) {
		struct snap_output *o = outs[i];
		if (r < 0 && renamed_file(o)) {
			unlink(o->path); /* renamed, but a crash could take it back: undone */
		} else if (r < 0 && o->s3w) {
			/* the set failed: an object of it must not stay behind */
			char *d = NULL;
			int dr = snap_s3_delete_object(o->s3c, o->bucket, o->key, &d);
			if (dr < 0)
				snap_warn("cannot delete %s after the failure: %s", o->path,
					  d ? d : strerror(-dr));
			free(d);
			o->committed = true; /* its writer is done: no abort of a completion */
		} else {
			o->committed = true;
		}
	}
	return r;
}

int snap_output_commit(struct snap_output *out, char **ret_detail)
{
	return snap_output_commit_all(&out, 1, ret_detail);
}

/* Closes the descriptors of a finished output (one of many parts: descriptors are bounded),
 * after starting its writeback; its commit reopens the temporary name to fsync it. */
static void output_close(struct snap_output *out)
{
	if (out->is_stdout || out->s3w)
		return;
	if (out->dfd >= 0)
		close(out->dfd);
	out->dfd = -1;
	if (out->fd >= 0) {
		/* start writeback now so the commit's fsync finds little to do */
		(void)sync_file_range(out->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		close(out->fd);
	}
	out->fd = -1;
}

int snap_output_fd(const struct snap_output *out)
{
	return out->s3w || out->is_stdout ? -1 : out->fd;
}

const char *snap_output_tmp_path(const struct snap_output *out)
{
	return out->tmp;
}

int snap_output_set_path(struct snap_output *out, const char *path)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	free(out->path);
	out->path = p;
	return 0;
}

/* Removes the temporary file (or aborts the upload, O3) unless committed. Idempotent. */
static void output_abort(struct snap_output *out)
{
	if (out && !out->committed && out->s3w)
		snap_s3_writer_abort(out->s3w); /* O3 */
	if (out && !out->committed && out->tmp) {
		unlink(out->tmp);
		free(out->tmp);
		out->tmp = NULL;
	}
}

struct snap_output *snap_output_free(struct snap_output *out)
{
	if (!out)
		return NULL;
	output_abort(out);
	if (out->dfd >= 0)
		close(out->dfd);
	if (out->fd >= 0 && !out->is_stdout)
		close(out->fd);
	snap_s3_writer_free(out->s3w);
	free(out->bucket);
	free(out->key);
	free(out->etag);
	free(out->tmp);
	free(out->path);
	free(out->dir);
	free(out);
	return NULL;
}

/* ---- the sequential writer (output.h Q1-Q4) ---- */

#define SEQ_STAGE ((size_t)4 << 20)
#define SEQ_NSTAGES 3
#define SEQ_ALIGN 4096u /* a stage's whole blocks: every direct block size divides it (D2) */

/* A stage handed over: n bytes at off of out (keep of them real, the rest the last block's
 * padding); a final one truncates out to size and, with close_at_end, closes it. */
struct seq_req {
	struct snap_output *out;
	uint8_t *buf;
	size_t n, keep;
	uint64_t off, size;
	bool final;
};

struct snap_output_seq {
	bool async, close_at_end;
	bool direct_off;	 /* atomic; Q2: for the rest of the sequence */
	struct snap_output *out; /* the producer's current output */
	uint8_t *stage;		 /* being filled */
	size_t stage_len;
	uint64_t flushed; /* bytes of out handed over */
	uint8_t *mem[SEQ_NSTAGES];

	struct writer w;
	uint8_t *free_stages[SEQ_NSTAGES];
	unsigned nfree;
	struct seq_req queue[SEQ_NSTAGES]; /* w.queued of them from qhead */
	unsigned qhead;
	uint64_t write_ns; /* wall time spent writing */
};

/* Writes one request: whole blocks direct where the output allows it, else through the page
 * cache; then, when final, the truncation. Returns 0 or -errno, *at where it failed. */
static int seq_write_req(struct snap_output_seq *q, const struct seq_req *rq, uint64_t *at)
{
	struct snap_output *o = rq->out;
	*at = rq->off;
	if (o->s3w) {
		/* O1: the s3 writer cuts parts and uploads them in the background */
		int r = rq->keep ? snap_s3_writer_write(o->s3w, rq->buf, rq->keep) : 0;
		if (r == 0 && rq->final && !o->put_at_commit) {
			r = snap_s3_writer_end(o->s3w);
			o->s3_ended = true;
		}
		return r;
	}
	if (o->is_stdout) {
		size_t done = 0;
		int r = snap_write_all(o->fd, rq->buf, rq->keep, &done);
		*at = rq->off + done;
		return r;
	}
	bool direct = o->dfd >= 0 && !__atomic_load_n(&q->direct_off, __ATOMIC_SEQ_CST) &&
		      rq->n % o->dblock == 0 && rq->off % o->dblock == 0;
	size_t done = 0;
	int r = direct ? pwrite_direct(o, rq->buf, rq->off, rq->n, &done) : 0;
	if (r == -EINVAL && done == 0) {
		/* Q2: refused after all: buffered from here on, for every output */
		direct_refused(&q->direct_off, o->path, rq->off);
	} else if (r < 0) {
		*at = rq->off + done;
		return r;
	}
	if (done < rq->keep) {
		uint64_t before = __atomic_load_n(&o->written, __ATOMIC_RELAXED);
		r = write_buffered(o, rq->buf + done, rq->keep - done, rq->off + done);
		if (r < 0) { /* the bytes before the failure were counted (one writer) */
			uint64_t now = __atomic_load_n(&o->written, __ATOMIC_RELAXED);
			*at = rq->off + done + (now - before);
			return r;
		}
	}
	if (rq->final && ftruncate(o->fd, (off_t)rq->size) < 0) {
		*at = rq->size;
		return -errno;
	}
	return 0;
}

/* Performs a request (on the thread, or on the producer without async) and records the first
 * failure; after one, nothing more is written (Q3). Lock not held. */
static void seq_do(struct snap_output_seq *q, const struct seq_req *rq)
{
	bool failed = writer_err(&q->w) != 0;
	uint64_t at = 0, t0 = snap_now_ns();
	int r = failed ? 0 : seq_write_req(q, rq, &at);
	q->write_ns += snap_now_ns() - t0; /* one writer at a time: the thread, or the producer */
	if (rq->final && q->close_at_end)
		output_close(rq->out);
	if (r < 0) {
		pthread_mutex_lock(&q->w.mu);
		if (!q->w.err) {
			q->w.err = r;
			const char *e = rq->out->s3w ? snap_s3_writer_error(rq->out->s3w) : NULL;
			if (e && *e)
				detail(&q->w.detail, "%s", e);
			else
				detail(&q->w.detail, "cannot write %s at offset %llu: %s",
				       rq->out->path, (unsigned long long)at, strerror(-r));
		}
		pthread_mutex_unlock(&q->w.mu);
	}
}

static void *seq_main(void *arg)
{
	struct snap_output_seq *q = arg;
	pthread_mutex_lock(&q->w.mu);
	while (writer_next(&q->w)) {
		struct seq_req rq = q->queue[q->qhead];
		q->w.busy = true;
		pthread_mutex_unlock(&q->w.mu);
		seq_do(q, &rq);
		pthread_mutex_lock(&q->w.mu);
		q->qhead = (q->qhead + 1) % SEQ_NSTAGES;
		q->w.queued--;
		q->w.busy = false;
		q->free_stages[q->nfree++] = rq.buf;
		pthread_cond_broadcast(&q->w.cv);
	}
	pthread_mutex_unlock(&q->w.mu);
	return NULL;
}

int snap_output_seq_new(bool async, bool close_at_end, struct snap_output_seq **ret)
{
	struct snap_output_seq *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->async = async;
	q->close_at_end = close_at_end;
	pthread_mutex_init(&q->w.mu, NULL);
	pthread_cond_init(&q->w.cv, NULL);
	unsigned n = async ? SEQ_NSTAGES : 1;
	for (unsigned i = 0; i < n; i++) {
		/* a block of slack: the last block of a stage is padded in place */
		if (posix_memalign((void **)&q->mem[i], SEQ_ALIGN, SEQ_STAGE + SEQ_ALIGN) != 0) {
			q->mem[i] = NULL;
			snap_output_seq_free(q);
			return -ENOMEM;
		}
		if (i > 0)
			q->free_stages[q->nfree++] = q->mem[i];
	}
	q->stage = q->mem[0];
	if (async && pthread_create(&q->w.thread, NULL, seq_main, q) != 0) {
		snap_output_seq_free(q);
		return -EAGAIN;
	}
	q->w.started = async;
	*ret = q;
	return 0;
}

void snap_output_seq_start(struct snap_output_seq *q, struct snap_output *out)
{
	q->out = out;
	q->flushed = 0;
	q->stage_len = 0;
}

/* Hands the stage over: its whole blocks, or all of it (the last block padded) when final,
 * or all of it when the output takes no direct writes; keeps the rest for the next stage. */
static int seq_flush_stage(struct snap_output_seq *q, bool final)
{
	struct snap_output *o = q->out;
	bool direct = o->dfd >= 0 && !__atomic_load_n(&q->direct_off, __ATOMIC_SEQ_CST);
	size_t bs = direct ? o->dblock : 1;
	size_t n = final ? (q->stage_len + bs - 1) / bs * bs : q->stage_len / bs * bs;
	if (n > q->stage_len)
		memset(q->stage + q->stage_len, 0, n - q->stage_len); /* the last block's padding */
	size_t keep = n < q->stage_len ? n : q->stage_len;
	struct seq_req rq = {
	    .out = o,
	    .buf = q->stage,
	    .n = n,
	    .keep = keep,
	    .off = q->flushed,
	    .size = q->flushed + q->stage_len,
	    .final = final && !o->is_stdout,
	};
	uint8_t *next = q->stage;
	if (q->async) {
		pthread_mutex_lock(&q->w.mu);
		while (!q->nfree)
			pthread_cond_wait(&q->w.cv, &q->w.mu);
		q->queue[(q->qhead + q->w.queued) % SEQ_NSTAGES] = rq;
		q->w.queued++;
		next = q->free_stages[--q->nfree];
		pthread_cond_broadcast(&q->w.cv);
		pthread_mutex_unlock(&q->w.mu);
	} else {
		seq_do(q, &rq);
	}
	/* what is left (a part of a block) starts the next stage */
	if (next != q->stage)
		memcpy(next, q->stage + keep, q->stage_len - keep);
	else
		memmove(next, q->stage + keep, q->stage_len - keep);
	q->stage = next;
	q->stage_len -= keep;
	q->flushed += keep;
	return writer_err(&q->w);
}

uint8_t *snap_output_seq_space(struct snap_output_seq *q, size_t *ret_room)
{
	if (q->stage_len == SEQ_STAGE)
		(void)seq_flush_stage(q, false); /* a failure shows at the next put */
	*ret_room = SEQ_STAGE - q->stage_len;
	return q->stage + q->stage_len;
}

int snap_output_seq_put(struct snap_output_seq *q, size_t n)
{
	q->stage_len += n;
	int r = q->stage_len == SEQ_STAGE ? seq_flush_stage(q, false) : 0;
	if (r == 0 && q->w.err) /* read unlocked first: the lock only on a failure */
		r = writer_err(&q->w);
	return r;
}

int snap_output_seq_write(struct snap_output_seq *q, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		size_t room;
		uint8_t *dst = snap_output_seq_space(q, &room);
		size_t n = room < len ? room : len;
		memcpy(dst, p, n);
		int r = snap_output_seq_put(q, n);
		if (r < 0)
			return r;
		p += n;
		len -= n;
	}
	return 0;
}

int snap_output_seq_end(struct snap_output_seq *q)
{
	int r = seq_flush_stage(q, true);
	q->out = NULL;
	return r;
}

int snap_output_seq_s3_rewind(struct snap_output_seq *q, uint64_t size, uint64_t *ret_offset)
{
	struct snap_output *o = q->out;
	if (!o || !o->s3w)
		return -EINVAL;
	/* O4: every staged byte goes to the writer first (an S3 output takes any length) */
	int r = q->stage_len ? seq_flush_stage(q, false) : 0;
	if (r == 0)
		r = snap_output_seq_flush(q);
	if (r < 0)
		return r;
	uint64_t before = snap_s3_writer_offset(o->s3w), at = before;
	r = snap_s3_writer_rewind(o->s3w, size, &at);
	if (r < 0) {
		pthread_mutex_lock(&q->w.mu);
		if (!q->w.err) {
			q->w.err = r;
			const char *e = snap_s3_writer_error(o->s3w);
			detail(&q->w.detail, "%s", e && *e ? e : strerror(-r));
		}
		pthread_mutex_unlock(&q->w.mu);
		return r;
	}
	q->flushed -= before - at;
	*ret_offset = at;
	return 0;
}

int snap_output_seq_flush(struct snap_output_seq *q)
{
	return writer_flush(&q->w);
}

const char *snap_output_seq_error(const struct snap_output_seq *q)
{
	return q->w.detail;
}

uint64_t snap_output_seq_write_ns(const struct snap_output_seq *q)
{
	return q->write_ns;
}

bool snap_output_seq_direct(const struct snap_output_seq *q)
{
	return !__atomic_load_n(&q->direct_off, __ATOMIC_SEQ_CST);
}

struct snap_output_seq *snap_output_seq_free(struct snap_output_seq *q)
{
	if (!q)
		return NULL;
	writer_stop(&q->w, false);
	for (unsigned i = 0; i < SEQ_NSTAGES; i++)
		free(q->mem[i]);
	free(q);
	return NULL;
}
