// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-s3.c - the S3 object a store writes: the upload's setup, its resume from a checkpoint,
 * and its end, for store.c (store-internal.h). The job calls these at its stages; the data
 * stage does not know whether its output is a file or an object.
 *
 * Invariants:
 *  1. An s3:// output is an S3 object of the output layer (output.h invariant 6): a multipart
 *     upload whose object appears only at the commit. A PREFIX/ names the object
 *     PREFIX/AMI-ID.bin, as CreateStoreImageTask does. The x-amz-meta-ami-* values are the
 *     META record's (store_meta), the tags the --tag pairs. Nothing is written locally but
 *     the checkpoint: the upload id, the image's head (the data key only wrapped, as KEYS
 *     holds it), every frame as the sink records it (before its bytes go out) and every part
 *     as the service acknowledges it. A failure keeps the upload and the checkpoint for
 *     --resume unless SNAP_PARAM_NO_RESUME, which aborts the upload; success removes it.
 *  2. A resume (SNAP_PARAM_RESUME) continues the kept upload after its parts 1..n, the longest
 *     run the checkpoint holds: it rebuilds the head from the checkpoint and starts reading
 *     at the chunk of the first frame of part n, so that every frame of part n (and the one
 *     that crosses into part n + 1) is read, sealed and compared with the checkpoint again: a
 *     source that changed fails the job (-ESTALE), as does a source of another size or
 *     modification time. Bytes below the end of part n are dropped (store_write_out), frames
 *     are numbered and placed as before (store.c invariant 2), and the extent map below the
 *     restart is rebuilt from the checkpoint's frames (every byte of a DATA extent outside a
 *     frame is a zero block), so the object is byte for byte the one an uninterrupted run
 *     writes. Frame nonces derive from a random per-image seed (nonce_rng; the test seed
 *     itself when seeded), which the checkpoint keeps, so an encrypted frame sealed again is
 *     the same bytes; an encrypted store is resumed with its passphrase or a recipient's
 *     private key, which unwrap the data key from the checkpoint's KEYS and authenticate its
 *     META.
 *  3. The size of an S3 object is told to its writer once the tail is built (store_end_s3).
 *     A part over SNAP_S3_MAX_BUFFERED_PART (or any part under SNAPBUNDLE_TEST_S3_STREAM=1, for
 *     tests) streams, and its request declared part_size bytes when the writer's 4 MiB ring
 *     filled; when the object ends before that, the writer abandons the request and goes back
 *     to the part's start (snap_s3_writer_rewind), and the store writes the same bytes again
 *     (store_replay): the head from the records kept, then every frame from the one that
 *     overlaps the part's start, each read again as one chunk (all its blocks are non-zero, so
 *     it is one frame again), sealed with the same nonce (invariant 2) and compared in place
 *     with its index entry (-ESTALE when the source changed; nothing is recorded in the
 *     checkpoint twice), dropped below the part's start as a resume drops (store_write_out).
 *     The part then streams with its exact length. Memory stays bounded (no part is held,
 *     nothing is written locally); the cost is reading and sealing at most one part's worth
 *     of frames again, once, at the end. The sources are thawed only after it.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job-internal.h"
#include "log.h"
#include "output.h"
#include "pipeline.h"
#include "reader.h"
#include "s3.h"
#include "store-image.h"
#include "store-internal.h"
#include "util.h"

/* ---- the upload and its resume (invariants 1, 2) ---- */

/* A source's modification time as the checkpoint keeps it: regular files; 0 for block devices. */
static int64_t store_vol_mtime(const struct store_vol *v)
{
	struct stat sb;
	if (fstat(v->src->fd_buffered, &sb) == 0 && S_ISREG(sb.st_mode))
		return (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	return 0;
}

/* An encrypted resume: the data key unwrapped from the checkpoint's KEYS with the passphrase or
 * a recipient's private key, the checkpoint's META authenticated by it (invariant 2). */
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
	/* written where the reader reads from: the descriptor stays at offset 0 */
	int r = snap_pwrite_all(fd, s->rs.head, s->rs.head_len, 0, NULL);
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
	return snap_store_sha256(s->meta_rec, s->meta_len, s->meta_digest);
}

/* Before the volumes: the checkpoint's name for an s3:// output, and --resume's loading. */
int store_prepare_s3(struct store_ctx *s)
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

static int cmp_part(const void *a, const void *b)
{
	const struct snap_s3_part *x = a, *y = b;
	return x->part_number < y->part_number ? -1 : x->part_number > y->part_number;
}

/* --resume, once the volumes are open: the same sources, the kept parts 1..n, where reading
 * starts again (invariant 2). */
int store_resume_plan(struct store_ctx *s)
{
	struct snap_job *job = s->job;
	struct store_ckpt_state *rs = &s->rs;
	if (rs->nvols != s->nvols)
		return snap_job_fail(job, -ESTALE,
				     "cannot resume %s: it was begun with %zu volumes, "
				     "not %zu",
				     rs->url, rs->nvols, s->nvols);
	for (size_t i = 0; i < s->nvols; i++) {
		int64_t mt = store_vol_mtime(&s->vols[i]);
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
		uint64_t end = snap_store_index_frame_end(f);
		if (f->volume >= s->nvols ||
		    f->file_offset !=
			(k ? snap_store_index_frame_end(&rs->frames[k - 1]) : rs->head_len))
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
	s->written = kstart ? snap_store_index_frame_end(&rs->frames[kstart - 1]) : rs->head_len;
	/* the frames that start again are recorded again (store_ckpt_start writes [0, kstart)) */
	rs->nframes = kstart;
	snap_info("resuming %s: %zu parts (%llu bytes) kept, reading again from %s at offset %llu",
		  rs->url, n, (unsigned long long)e,
		  s->resume_vol < s->nvols ? s->vols[s->resume_vol].path : "the end",
		  (unsigned long long)s->resume_off);
	return 0;
}

/* Aborts the upload upload_id of url through c, got with r (< 0: no client); one already gone is
 * no failure, another is a warning, with how to discard it when said is set. */
static void store_abort_with(struct snap_s3_client *c, int r, const char *url,
			     const char *upload_id, bool say_abort)
{
	char *bucket = NULL, *key = NULL, *detail = NULL;
	if (r == 0)
		r = snap_s3_url_parse(url, &bucket, &key, &detail);
	if (r == 0)
		r = snap_s3_abort_upload(c, bucket, key, upload_id, &detail);
	if (r < 0 && r != -ENOENT && say_abort)
		snap_warn("cannot abort the upload %s of %s: %s (snapbundle abort %s discards it)",
			  upload_id, url, detail ? detail : snap_strerror(r), url);
	else if (r < 0 && r != -ENOENT)
		snap_warn("cannot abort the upload %s of %s: %s", upload_id, url,
			  detail ? detail : snap_strerror(r));
	free(bucket);
	free(key);
	free(detail);
}

/* --resume found no part kept: the upload is aborted and the store starts over. */
int store_resume_fresh(struct store_ctx *s)
{
	struct snap_s3_client *c = NULL;
	store_abort_with(c, snap_job_s3_client(s->job, &c), s->rs.url, s->rs.upload_id, false);
	snap_info("no part of %s was kept: storing it again", s->rs.url);
	s->resuming = false;
	free(s->meta_rec);
	s->meta_rec = NULL;
	s->meta_len = 0;
	store_ckpt_state_clear(&s->rs);
	return 0;
}

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

/* The "PREFIX NAME=VALUE" strings of l as NAME and VALUE pairs into out (cut in place at the
 * '='); the others are skipped. Returns the count. */
static size_t split_pairs(const struct snap_store_strlist *l, const char *prefix,
			  struct snap_s3_pair *out)
{
	size_t n = 0, pl = strlen(prefix);
	for (size_t i = 0; i < l->n; i++) {
		char *kv = l->v[i], *eq = strchr(kv, '=');
		if (!eq || strncmp(kv, prefix, pl))
			continue;
		*eq = 0;
		out[n++] = (struct snap_s3_pair){kv + pl, eq + 1};
	}
	return n;
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
	/* "x-amz-meta-NAME=VALUE" (store_meta): S3 wants NAME and VALUE */
	*ret_nmeta = split_pairs(&m->s3, "x-amz-meta-", meta);
	*ret_ntags = split_pairs(&m->tags, "", tags);
	*ret_meta = meta;
	*ret_tags = tags;
	return 0;
}

/* SNAPBUNDLE_TEST_S3_STREAM=1, for tests only: every part of a new upload streams (as parts over
 * SNAP_S3_MAX_BUFFERED_PART do), so that tests reach the streamed end (invariant 3) with parts
 * of a few MiB. */
static bool store_test_stream(void)
{
	const char *e = getenv("SNAPBUNDLE_TEST_S3_STREAM");
	return e && *e && strcmp(e, "0") != 0;
}

int store_create_s3(struct store_ctx *s, unsigned flags)
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
		bool prefix = !snap_s3_key_names_object(key);
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
int store_ckpt_start(struct store_ctx *s)
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
		st.vols[i].path = (char *)s->vols[i].path;
		st.vols[i].size = s->vols[i].src->size;
		st.vols[i].mtime_ns = store_vol_mtime(&s->vols[i]);
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

/* Below the restart, the extent map as the first run left it (invariant 2): every byte of a
 * DATA extent outside the checkpoint's frames was a zero block. Also the volumes' frame
 * ranges. */
int store_resume_marks(struct store_ctx *s)
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

/* ---- the end of an S3 object (invariant 3) and of its job ---- */

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
		if ((r = store_iframe_get(s, k, &f)) < 0) {
			r = snap_job_fail(s->job, r, "cannot read frame %llu of the index: %s",
					  (unsigned long long)k, snap_strerror(r));
			break;
		}
		all[k - k0] = (struct snap_range){f->offset, f->raw_len};
		vol[k - k0] = f->volume;
	}
	for (uint64_t a = k0; a < n && r == 0;) {
		uint32_t vi = vol[a - k0];
		struct snap_range *chunks = all + (a - k0);
		size_t nc = 0;
		uint64_t b = a;
		for (; b < n && vol[b - k0] == vi; b++)
			nc++;
		a = b;
		r = store_read_chunks(s, vi, chunks, nc, NULL);
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
		int r = store_iframe_get(s, mid, &f);
		if (r < 0)
			return snap_job_fail(s->job, r, "cannot read the index: %s",
					     snap_strerror(r));
		if (snap_store_index_frame_end(f) <= from)
			lo = mid + 1;
		else
			hi = mid;
	}
	k0 = lo;
	if (k0 < n) {
		int r = store_iframe_get(s, k0, &f);
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
		r = store_write_all(s, s->header, sizeof(s->header));
		if (r == 0 && s->keys_len)
			r = store_write_all(s, s->keys_rec, s->keys_len);
		if (r == 0)
			r = store_write_all(s, s->meta_rec, s->meta_len);
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
	/* the first run counted these bytes (store.c invariant 6) */
	pg->bytes_done = done0;
	pg->bytes_read = read0;
	pg->bytes_skipped = skipped0;
	pg->bytes_written = s->written;
	return r;
}

/* The object's size, known now: a streamed part whose request was started for part_size bytes
 * past the end is abandoned, and its bytes are produced again with their length (invariant
 * 3). */
int store_end_s3(struct store_ctx *s, uint64_t size)
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

/* A resumed writer knows no put options: the tags (--tag, as given to the resume) are set on
 * the completed object here, as the writer does after a completion of its own. */
int store_resume_tags(struct store_ctx *s)
{
	struct snap_store_meta m = {0};
	struct snap_s3_pair *meta = NULL, *tags = NULL;
	size_t nmeta = 0, nt = 0;
	char *bucket = NULL, *key = NULL, *detail = NULL;
	int r = store_s3_pairs(s, &m, &meta, &nmeta, &tags, &nt);
	if (r == 0 && nt && (r = snap_s3_url_parse(s->url, &bucket, &key, &detail)) == 0)
		r = snap_s3_put_tagging(s->s3c, bucket, key, tags, nt, &detail);
	if (r < 0)
		snap_job_fail(s->job, r, "cannot tag %s: %s", s->url,
			      detail ? detail : snap_strerror(r));
	snap_store_meta_clear(&m);
	free(meta);
	free(tags);
	free(bucket);
	free(key);
	free(detail);
	return r;
}

/* A cancel made the job's client refuse every request, the writer's AbortMultipartUpload too:
 * an upload not kept is aborted through a client of its own. */
void store_abort_upload(struct store_ctx *s, const char *upload_id)
{
	struct snap_s3_client *c = NULL;
	int r = snap_job_s3_cleanup_client(s->job, &c);
	store_abort_with(c, r, s->url, upload_id, true);
	snap_s3_client_free(c);
}
