// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bundle-output.c - the classic bundle job's outputs (bundle.c): where the bundle goes (a
 * directory, or s3://BUCKET/PREFIX/), the sink's gzip bytes through AES-128-CBC into 10 MiB
 * parts with a SHA-1 each, the manifest's document, their commit as one set, and the parts
 * already there: an existing bundle refused, a replaced one's stale parts removed, and every
 * output removed after a failure (classic-bundle-format.md §1).
 *
 * Invariants:
 *  1. Nothing the job writes carries a final name before the end: parts are written as
 *     ".NAME.part.I.tmp-PID" and the manifest as ".NAME.manifest.xml.tmp-PID" (output.h
 *     targets), then committed as one set by the output layer's commit policy: parts
 *     renamed, then the manifest, last (snap_bundle_output_commit). Any failure or
 *     cancellation before that removes every temporary file (snap_bundle_output_remove); an
 *     existing bundle is only replaced with SNAP_PARAM_FORCE.
 *  2. Parts are written through an output sequence with its own thread (output.h Q1-Q4):
 *     the sink encrypts straight into the sequence's aligned 4 MiB stage
 *     (snap_output_seq_space), hashes the ciphertext there and hands it over
 *     (snap_output_seq_put); full stages go to the part with O_DIRECT at increasing offsets
 *     while the sink goes on, so the serial writer never waits for the device, and a part's
 *     last block is padded, the part truncated to its size and closed. A part's bytes never
 *     pass through the page cache and are never copied (buffered writes cost 0.2 s of system
 *     time per bundle of the realistic disk, and the page cache's writeback besides), unless
 *     SNAP_PARAM_NO_DIRECT, SNAPBUNDLE_OUTPUT_BUFFERED=1 or a filesystem's refusal (EINVAL,
 *     for the rest of the bundle) sends them through the page cache. Only the pipeline's sink
 *     calls the writer (snap_bundle_output_put, snap_bundle_output_finish); its failures are
 *     recorded on the pipeline (snap_pipeline_fail), the sequence's with part and offset.
 *  3. A destination s3://BUCKET/PREFIX/ (s3/s3.h) puts the same bytes into objects: each part
 *     is an S3 output (output.h invariant 6) opened when it is cut and PUT whole in the
 *     background as soon as it ends (single, within the client's memory budget, several at
 *     once); parts are committed in order as their PUTs complete, at most `window` of them
 *     waiting, since each keeps its writer until then (commit_done_parts); the
 *     manifest goes last and only at the commit (put_at_commit): a bundle in S3 is complete
 *     only when its manifest is there. An object cannot be renamed, so a part's key
 *     is final when it is opened: its index is padded to the digits of the largest part count
 *     the source can give (name_count: bundle.c's part_count_bound, known before any data
 *     moves) instead of the count found at the end,
 *     which is the same unless the bound and the count straddle a power of ten; the manifest
 *     names every part, and the padding keeps lexicographic order = index order (§1.8). Any
 *     failure or cancellation deletes the parts already PUT (snap_bundle_output_remove: the
 *     output layer's abort, then every key named deleted through the job's cleanup client,
 *     which a cancel does not stop: remove_objects), so no part stays without a manifest; a
 *     killed process cannot delete,
 *     and a rerun with --force (which replaces the parts and removes stale ones) or
 *     delete-bundle cleans what it left. --force deletes an existing manifest before the
 *     first part goes up, so no manifest ever names a part of another bundle.
 *
 * State transitions: set up (snap_bundle_output_where, snap_bundle_output_check_existing,
 * snap_bundle_output_s3_window, snap_bundle_output_alloc) -> data (parts opened, written and
 * closed as the sink puts: snap_bundle_output_put, snap_bundle_output_finish) -> finish (parts
 * named and the manifest written: snap_bundle_output_name_parts, snap_bundle_output_manifest)
 * -> committed (snap_bundle_output_commit, then stale parts removed with --force); any state
 * -> removed (snap_bundle_output_remove).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle-output.h"
#include "hex.h"
#include "job-internal.h"
#include "log.h"
#include "output.h"
#include "pipeline.h"

/* A failure of the parts' writer (or of an S3 open): after a cancel, the S3 requests in
 * flight fail with -ECANCELED, which is the cancellation, not a write error. */
static const char *out_error(struct snap_bundle_output *o, int r, const char *detail)
{
	if (r == -ECANCELED && snap_job_cancelled(o->job))
		return SNAP_BUNDLE_CANCELLED_MSG;
	return detail ? detail : snap_strerror(r);
}

int snap_bundle_output_seq_failed(struct snap_bundle_output *o, int r)
{
	return snap_pipeline_fail(o->pipe, r, "%s",
				  out_error(o, r, snap_output_seq_error(o->oseq)));
}

static int part_close(struct snap_bundle_output *o)
{
	if (!o->part_open)
		return 0;
	struct snap_bundle_part *p = &o->parts[o->nparts - 1];
	uint8_t md[20];
	unsigned mdlen = 0;
	uint64_t t0 = snap_thread_cpu_ns();
	if (EVP_DigestFinal_ex(o->part_sha1, md, &mdlen) != 1)
		return snap_pipeline_fail(o->pipe, -EIO, "SHA-1 of part %zu failed", o->nparts - 1);
	o->part_sha1_ns += snap_thread_cpu_ns() - t0;
	snap_hex(p->digest, md, 20);
	o->part_open = false;
	/* the sequence's thread writes the rest, truncates and closes the part */
	int r = snap_output_seq_end(o->oseq);
	if (r < 0)
		return snap_bundle_output_seq_failed(o, r);
	return 0;
}

/* S3 (invariant 3): an ended part keeps its writer (its body in the client's budget while the
 * PUT is in flight, and the writer's thread that waits for it) until its output is committed,
 * so at most `window` ended parts wait uncommitted, whatever the part count: past that, the
 * sequence is flushed (every part before ended, its PUT started) and the oldest are committed
 * in order (each waits for its PUT), down to half the window. */
static int commit_done_parts(struct snap_bundle_output *o)
{
	if (!o->s3 || o->nparts - o->ncommitted < o->window)
		return 0;
	int r = snap_output_seq_flush(o->oseq);
	if (r < 0)
		return snap_bundle_output_seq_failed(o, r);
	while (o->nparts - o->ncommitted > o->window / 2) {
		char *detail = NULL;
		r = snap_output_commit(o->parts[o->ncommitted].out, &detail);
		if (r < 0) {
			snap_pipeline_fail(o->pipe, r, "%s", out_error(o, r, detail));
			free(detail);
			return r;
		}
		o->ncommitted++;
	}
	return 0;
}

/* A part's or the manifest's output at path: a file, or an S3 object (invariant 3) sent as a
 * single PUT when single, and only at the commit when at_commit. */
static int output_open(struct snap_bundle_output *o, const char *path, unsigned flags, bool single,
		       bool at_commit, struct snap_output **ret, char **ret_detail)
{
	if (!o->s3)
		return snap_output_open(path, 0, flags, ret, ret_detail);
	struct snap_output_s3 s3o = {
	    .client = o->s3,
	    .put = &o->put,
	    .single = single,
	    .put_at_commit = at_commit,
	};
	return snap_output_open_s3(path, flags, &s3o, ret, ret_detail);
}

static int part_open(struct snap_bundle_output *o)
{
	int r = commit_done_parts(o);
	if (r < 0)
		return r;
	if (o->nparts == o->parts_cap) {
		size_t cap = o->parts_cap ? 2 * o->parts_cap : 64;
		struct snap_bundle_part *n = realloc(o->parts, cap * sizeof(*n));
		if (!n)
			return snap_pipeline_fail(o->pipe, -ENOMEM,
						  "out of memory for the part list");
		o->parts = n;
		o->parts_cap = cap;
	}
	struct snap_bundle_part *p = &o->parts[o->nparts];
	memset(p, 0, sizeof(*p));
	/* the final name needs the part count (snap_bundle_part_name): named at commit */
	char *path = NULL, *detail = NULL;
	if (o->s3) {
		/* an object is named once: its final key now (invariant 3) */
		if (o->nparts >= o->name_count)
			return snap_pipeline_fail(o->pipe, -EIO,
						  "part %zu is past the bound of %" PRIu64,
						  o->nparts, o->name_count);
		if (snap_bundle_part_name(o->name, o->nparts, o->name_count, &p->final_name) < 0 ||
		    asprintf(&path, "%s/%s", o->dest, p->final_name) < 0)
			return snap_pipeline_fail(o->pipe, -ENOMEM, "out of memory");
	} else if (asprintf(&path, "%s/%s.part.%zu", o->dest, o->name, o->nparts) < 0) {
		return snap_pipeline_fail(o->pipe, -ENOMEM, "out of memory");
	}
	/* the run reclaimed the debris of killed runs; without --force, a part of that name
	 * appearing now (a concurrent run) fails the open, and the commit never renames over one */
	unsigned flags =
	    SNAP_OUTPUT_APPEND | SNAP_OUTPUT_NO_RECLAIM | snap_output_job_flags(o->job);
	/* in S3, one PUT per part, made in the background once the part ends */
	r = output_open(o, path, flags, o->part_size <= SNAP_S3_MAX_BUFFERED_PART, false, &p->out,
			&detail);
	free(path);
	if (r < 0) {
		free(p->final_name);
		p->final_name = NULL;
		snap_pipeline_fail(o->pipe, r, "%s", out_error(o, r, detail));
		free(detail);
		return r;
	}
	o->nparts++;
	if (EVP_DigestInit_ex(o->part_sha1, EVP_sha1(), NULL) != 1)
		return snap_pipeline_fail(o->pipe, -EIO, "cannot start SHA-1");
	snap_output_seq_start(o->oseq, p->out);
	o->part_open = true;
	o->part_left = o->part_size;
	return 0;
}

/* n bytes of ciphertext, now at p in the sequence's stage, belong to the current part: hash
 * them, count them, hand them over, close a full part. */
static int part_took(struct snap_bundle_output *o, const uint8_t *p, size_t n)
{
	uint64_t t0 = snap_thread_cpu_ns();
	if (EVP_DigestUpdate(o->part_sha1, p, n) != 1)
		return snap_pipeline_fail(o->pipe, -EIO, "SHA-1 of part %zu failed", o->nparts - 1);
	o->part_sha1_ns += snap_thread_cpu_ns() - t0;
	o->parts[o->nparts - 1].size += n;
	atomic_fetch_add(&o->written, n);
	o->part_left -= n;
	int r = snap_output_seq_put(o->oseq, n);
	if (r < 0)
		return snap_bundle_output_seq_failed(o, r);
	if (o->part_left == 0)
		r = part_close(o);
	return r;
}

/* Ciphertext made elsewhere (a CBC block across a part boundary, the final padding) into
 * the parts: cut at part_size. */
static int parts_put(struct snap_bundle_output *o, const uint8_t *p, size_t len)
{
	while (len > 0) {
		int r;
		if (!o->part_open && (r = part_open(o)) < 0)
			return r;
		size_t room;
		uint8_t *dst = snap_output_seq_space(o->oseq, &room);
		size_t n = len < o->part_left ? len : (size_t)o->part_left;
		if (n > room)
			n = room;
		memcpy(dst, p, n);
		if ((r = part_took(o, dst, n)) < 0)
			return r;
		p += n;
		len -= n;
	}
	return 0;
}

/* gzip bytes through AES-128-CBC into the parts, encrypted straight into the stage
 * (invariant 2). CBC gives out whole 16-byte blocks and keeps up to 15 bytes (fed -
 * produced): feeding at most room - pending bytes never gives out more than room. */
int snap_bundle_output_put(struct snap_bundle_output *o, const uint8_t *p, size_t len)
{
	o->gz_len += len;
	while (len > 0) {
		int r;
		if (!o->part_open && (r = part_open(o)) < 0)
			return r;
		size_t room;
		uint8_t *stage = snap_output_seq_space(o->oseq, &room);
		if (room > o->part_left)
			room = (size_t)o->part_left;
		size_t pending = (size_t)(o->fed - o->produced);
		/* into the stage when its output fits; a block across the part's end goes
		 * through a small buffer that parts_put cuts */
		uint8_t blk[48];
		bool in_stage = room >= pending + 16;
		size_t n = in_stage ? room - pending : 16;
		if (n > len)
			n = len;
		if (n > INT_MAX / 2)
			n = INT_MAX / 2;
		uint8_t *dst = in_stage ? stage : blk;
		int outl = 0;
		uint64_t t0 = snap_thread_cpu_ns();
		if (EVP_EncryptUpdate(o->aes, dst, &outl, p, (int)n) != 1)
			return snap_pipeline_fail(o->pipe, -EIO, "AES-128-CBC encryption failed");
		o->aes_ns += snap_thread_cpu_ns() - t0;
		o->fed += n;
		o->produced += (uint64_t)outl;
		p += n;
		len -= n;
		if (in_stage)
			r = outl > 0 ? part_took(o, dst, (size_t)outl) : 0;
		else
			r = parts_put(o, blk, (size_t)outl);
		if (r < 0)
			return r;
	}
	return 0;
}

int snap_bundle_output_finish(struct snap_bundle_output *o)
{
	uint8_t blk[32];
	int outl = 0;
	if (EVP_EncryptFinal_ex(o->aes, blk, &outl) != 1)
		return snap_pipeline_fail(o->pipe, -EIO, "AES-128-CBC padding failed");
	o->produced += (uint64_t)outl;
	int r = parts_put(o, blk, (size_t)outl);
	if (r < 0)
		return r;
	return part_close(o);
}

/* After a failure in S3 (invariant 3): the outputs' aborts delete the parts already PUT, but
 * after a cancel the job's client refuses every request; so every key this run named is
 * deleted again through a client of its own (job-internal.h: snap_job_s3_cleanup_client),
 * which also catches a PUT that the cancel cut off after the gateway had the whole body (a
 * DELETE of a missing key succeeds). */
static void remove_objects(struct snap_bundle_output *o)
{
	if (!o->nparts && !o->committing)
		return; /* nothing was named: refused before the data (an existing bundle, a key) */
	struct snap_s3_client *c = NULL;
	int cr = snap_job_s3_cleanup_client(o->job, &c);
	if (cr < 0) {
		if (o->nparts)
			snap_warn(
			    "cannot reach S3 to delete the parts uploaded under s3://%s/%s: %s "
			    "(delete-bundle, or a rerun with --force, removes them)",
			    o->w.bucket, o->w.prefix, snap_strerror(cr));
		return;
	}
	size_t failed = 0;
	for (size_t i = 0; i <= o->nparts; i++) {
		char *key = NULL, *detail = NULL;
		if (i < o->nparts ? asprintf(&key, "%s%s", o->w.prefix, o->parts[i].final_name) < 0
				  : !o->committing || asprintf(&key, "%s%s.manifest.xml",
							       o->w.prefix, o->name) < 0)
			continue;
		int r = snap_s3_delete_object(c, o->w.bucket, key, &detail);
		if (r < 0 && failed++ < 3)
			snap_warn(
			    "cannot delete s3://%s/%s after the failure: %s (delete-bundle, or "
			    "a rerun with --force, removes it)",
			    o->w.bucket, key, detail ? detail : snap_strerror(r));
		free(key);
		free(detail);
	}
	if (!failed)
		snap_debug("deleted the %zu parts this run had named in s3://%s/%s", o->nparts,
			   o->w.bucket, o->w.prefix);
	snap_s3_client_free(c);
}

void snap_bundle_output_remove(struct snap_bundle_output *o)
{
	for (size_t i = 0; i < o->nparts; i++)
		o->parts[i].out = snap_output_free(o->parts[i].out); /* unless committed */
	o->manifest = snap_output_free(o->manifest);
	if (o->s3)
		remove_objects(o);
}

/* Is entry NAME.part.<digits> of this bundle? */
static bool is_part_of(const char *entry, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(entry, name, n) || strncmp(entry + n, ".part.", 6))
		return false;
	const char *d = entry + n + 6;
	if (!*d)
		return false;
	for (; *d; d++)
		if (*d < '0' || *d > '9')
			return false;
	return true;
}

/* Calls fn for each part of this bundle already at the destination, NAME.part.<digits>: a
 * directory's entries (dfd the directory), or the objects under PREFIX/, not deeper (dfd -1,
 * key the object's); stops at fn's failure. Listing failures: -errno, *ret_detail says why. */
static int each_part(struct snap_bundle_output *o,
		     int (*fn)(struct snap_bundle_output *o, int dfd, const char *name,
			       const char *key, void *arg),
		     void *arg, char **ret_detail)
{
	int r = 0;
	if (!o->s3) {
		DIR *d = opendir(o->dest);
		if (!d) {
			r = -errno;
			if (asprintf(ret_detail, "cannot open %s: %s", o->dest, snap_strerror(r)) <
			    0)
				*ret_detail = NULL;
			return r;
		}
		struct dirent *e;
		while (r >= 0 && (e = readdir(d)))
			if (is_part_of(e->d_name, o->name))
				r = fn(o, dirfd(d), e->d_name, NULL, arg);
		closedir(d);
		return r;
	}
	struct snap_s3_list_objects *l = NULL;
	char *lp = NULL, *detail = NULL;
	if (asprintf(&lp, "%s%s.part.", o->w.prefix, o->name) < 0)
		return -ENOMEM;
	r = snap_s3_list_objects(o->s3, o->w.bucket, lp, &l, &detail);
	if (r < 0 && asprintf(ret_detail, "cannot list s3://%s/%s: %s", o->w.bucket, lp,
			      detail ? detail : snap_strerror(r)) < 0)
		*ret_detail = NULL;
	size_t n = strlen(o->w.prefix);
	for (size_t i = 0; r >= 0 && i < l->nobjects; i++) {
		const char *k = l->objects[i].key;
		if (!strchr(k + n, '/') && is_part_of(k + n, o->name))
			r = fn(o, -1, k + n, k, arg);
	}
	snap_s3_list_objects_free(l);
	free(lp);
	free(detail);
	return r;
}

/* A part of an existing bundle: refused without --force. */
static int part_exists(struct snap_bundle_output *o, int dfd, const char *name, const char *key,
		       void *arg)
{
	(void)dfd, (void)key, (void)arg;
	return snap_job_fail(o->job, -EEXIST, "%s/%s already exists (use --force to replace it)",
			     o->dest, name);
}

/* An existing bundle's manifest in S3 (invariant 3): refused without force; with force, it is
 * deleted now, before a part is replaced. */
static int check_manifest_s3(struct snap_bundle_output *o)
{
	char *mkey = NULL, *detail = NULL;
	struct snap_s3_head *h = NULL;
	int r;
	if (asprintf(&mkey, "%s%s.manifest.xml", o->w.prefix, o->name) < 0)
		return snap_job_fail(o->job, -ENOMEM, "out of memory");
	r = snap_s3_head_object(o->s3, o->w.bucket, mkey, &h, &detail);
	if (r == 0 && !o->force) {
		r = snap_job_fail(o->job, -EEXIST, "%s already exists (use --force to replace it)",
				  o->manifest_path);
		goto out;
	}
	if (r == 0) {
		free(detail);
		detail = NULL;
		r = snap_s3_delete_object(o->s3, o->w.bucket, mkey, &detail);
		if (r < 0) {
			snap_job_fail(o->job, r, "cannot delete %s to replace it: %s",
				      o->manifest_path, detail ? detail : snap_strerror(r));
			goto out;
		}
		snap_info("deleted %s: the bundle replacing it is uploaded now", o->manifest_path);
	} else if (r != -ENOENT) {
		/* the first request: a HEAD's 403 has no body to say why */
		snap_job_fail(o->job, r, "cannot check %s: %s%s", o->manifest_path,
			      detail ? detail : snap_strerror(r),
			      r == -EACCES ? " (access denied: a wrong access key or secret key, "
					     "or no permission on the bucket)"
					   : "");
		goto out;
	}
	r = 0;
out:
	snap_s3_head_free(h);
	free(mkey);
	free(detail);
	return r;
}

int snap_bundle_output_check_existing(struct snap_bundle_output *o)
{
	int r = 0;
	if (o->s3)
		r = check_manifest_s3(o);
	else if (!o->force && faccessat(AT_FDCWD, o->manifest_path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		r = snap_job_fail(o->job, -EEXIST, "%s already exists (use --force to replace it)",
				  o->manifest_path);
	if (r < 0 || o->force)
		return r;
	char *detail = NULL;
	r = each_part(o, part_exists, NULL, &detail);
	if (r < 0 && r != -EEXIST) /* the listing's failure */
		snap_job_fail(o->job, r, "%s", detail ? detail : snap_strerror(r));
	free(detail);
	return r;
}

/* A part of the bundle replaced that the new one does not name (nor the source, in a
 * directory): removed. */
static int remove_stale(struct snap_bundle_output *o, int dfd, const char *name, const char *key,
			void *arg)
{
	const struct stat *src = arg;
	struct stat st;
	bool ours = dfd >= 0 && fstatat(dfd, name, &st, 0) == 0 && st.st_dev == src->st_dev &&
		    st.st_ino == src->st_ino; /* the source */
	for (size_t i = 0; i < o->nparts && !ours; i++)
		ours = !strcmp(name, o->parts[i].final_name);
	if (ours)
		return 0;
	char *detail = NULL;
	if (dfd >= 0 ? unlinkat(dfd, name, 0) == 0
		     : snap_s3_delete_object(o->s3, o->w.bucket, key, &detail) == 0)
		snap_info("removed %s/%s of the bundle replaced", o->dest, name);
	else if (dfd < 0)
		snap_warn("cannot remove %s/%s of the bundle replaced: %s", o->dest, name,
			  detail ? detail : "failed");
	free(detail);
	return 0;
}

/* Parts of an older bundle of this name that the new one does not have (force only). */
static void remove_stale_parts(struct snap_bundle_output *o, const struct stat *src)
{
	char *detail = NULL;
	if (each_part(o, remove_stale, (void *)src, &detail) < 0 && o->s3)
		snap_warn("stale parts of the bundle replaced are not removed: %s",
			  detail ? detail : "out of memory");
	free(detail);
}

/* ---------------------------------------------------------------------------------------- */
/* Setup and the end                                                                         */

/* s3://BUCKET[/PREFIX[/]] as snap_s3_where_parse reads it: the parts and the manifest go under
 * PREFIX/ (invariant 3); dest becomes "s3://BUCKET/PREFIX" without the '/', so that dest/NAME
 * is an object's URL. */
static int configure_s3(struct snap_bundle_output *o)
{
	char *detail = NULL;
	int r = snap_s3_where_parse(o->dest, &o->w, &detail);
	if (r < 0) {
		snap_job_fail(o->job, r, "destination %s: %s", o->dest,
			      detail ? detail : snap_strerror(r));
		free(detail);
		return r;
	}
	size_t n = strlen(o->w.prefix);
	free(o->dest);
	if (asprintf(&o->dest, "s3://%s%s%.*s", o->w.bucket, n ? "/" : "", n ? (int)n - 1 : 0,
		     o->w.prefix) < 0) {
		o->dest = NULL;
		return snap_job_fail(o->job, -ENOMEM, "out of memory");
	}
	o->put.acl = snap_job_string(o->job, SNAP_SPARAM_S3_ACL);
	o->put.content_type = NULL;
	return snap_job_s3_client(o->job, &o->s3);
}

int snap_bundle_output_where(struct snap_bundle_output *o)
{
	if (snap_s3_is_url(o->dest)) {
		int r = configure_s3(o);
		if (r < 0)
			return r;
	} else {
		struct stat st;
		if (stat(o->dest, &st) < 0) /* -ENOTDIR: not a directory we can write to */
			return snap_job_fail(o->job, -ENOTDIR, "destination %s: %s", o->dest,
					     strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return snap_job_fail(o->job, -ENOTDIR, "destination %s is not a directory",
					     o->dest);
	}
	if (asprintf(&o->manifest_path, "%s/%s.manifest.xml", o->dest, o->name) < 0) {
		o->manifest_path = NULL;
		return snap_job_fail(o->job, -ENOMEM, "out of memory");
	}
	return 0;
}

void snap_bundle_output_s3_window(struct snap_bundle_output *o, uint64_t part_bound)
{
	o->name_count = part_bound;
	/* a single PUT's buffer grows by doubling: at most twice the part, within the
	 * 32 MiB of a buffered body; half the budget for the parts waiting */
	uint64_t held = 2 * o->part_size < (1u << 20) ? (1u << 20) : 2 * o->part_size;
	if (held > SNAP_S3_MAX_BUFFERED_PART)
		held = SNAP_S3_MAX_BUFFERED_PART;
	o->window = (size_t)(snap_s3_client_budget(o->s3) / 2 / held);
	if (o->window < 2)
		o->window = 2;
	snap_debug("part keys padded for at most %" PRIu64 " parts", o->name_count);
}

int snap_bundle_output_alloc(struct snap_bundle_output *o)
{
	int r = snap_bundle_key_generate(&o->key);
	if (r < 0)
		return snap_job_fail(o->job, r,
				     "cannot generate the bundle key: random source failed");
	o->part_sha1 = EVP_MD_CTX_new();
	o->aes = EVP_CIPHER_CTX_new();
	/* the parts' writer: its own thread, parts closed as they end (invariant 2) */
	bool seq_ok = snap_output_seq_new(true, true, &o->oseq) == 0;
	if (!o->part_sha1 || !o->aes || !seq_ok)
		return snap_job_fail(o->job, -ENOMEM, "out of memory for the pipeline");
	if (EVP_EncryptInit_ex(o->aes, EVP_aes_128_cbc(), NULL, o->key.key, o->key.iv) != 1)
		return snap_job_fail(o->job, -EIO, "cannot set up SHA-1 and AES-128-CBC");
	return 0;
}

int snap_bundle_output_name_parts(struct snap_bundle_output *o)
{
	int r = 0;
	for (size_t i = 0; i < o->nparts && r >= 0 && !o->s3; i++) {
		r = snap_bundle_part_name(o->name, i, o->nparts, &o->parts[i].final_name);
		if (r < 0)
			snap_job_fail(o->job, r, "out of memory");
	}
	return r;
}

int snap_bundle_output_manifest(struct snap_bundle_output *o, const char *doc, size_t len)
{
	char *detail = NULL;
	unsigned flags =
	    SNAP_OUTPUT_APPEND | SNAP_OUTPUT_BUFFERED | (o->force ? SNAP_OUTPUT_FORCE : 0);
	/* in S3, PUT at the commit, after every part (invariant 3) */
	int r = output_open(o, o->manifest_path, flags, true, true, &o->manifest, &detail);
	if (r < 0) {
		r = snap_job_fail(o->job, r, "%s", out_error(o, r, detail));
		free(detail);
		return r;
	}
	snap_output_seq_start(o->oseq, o->manifest);
	r = snap_output_seq_write(o->oseq, doc, len);
	if (r == 0)
		r = snap_output_seq_end(o->oseq);
	if (r == 0)
		r = snap_output_seq_flush(o->oseq);
	if (r < 0)
		r = snap_job_fail(o->job, r, "%s", out_error(o, r, snap_output_seq_error(o->oseq)));
	return r;
}

/* Parts, then the manifest, into their final names, as one (invariant 1, output.h 2a). */
int snap_bundle_output_commit(struct snap_bundle_output *o, const struct stat *src)
{
	/* parts[0, ncommitted) are committed already (commit_done_parts) */
	size_t n0 = o->ncommitted, n = o->nparts - n0;
	struct snap_output **outs = calloc(n + 1, sizeof(*outs));
	if (!outs)
		return snap_job_fail(o->job, -ENOMEM, "out of memory");
	int r = 0;
	for (size_t i = 0; i < o->nparts && r == 0; i++) {
		char *path = NULL;
		if (i >= n0)
			outs[i - n0] = o->parts[i].out;
		if (o->s3) /* named at open (invariant 3) */
			continue;
		if (asprintf(&path, "%s/%s", o->dest, o->parts[i].final_name) < 0)
			r = snap_job_fail(o->job, -ENOMEM, "out of memory");
		else if ((r = snap_output_set_path(o->parts[i].out, path)) < 0)
			snap_job_fail(o->job, r, "out of memory");
		free(path);
	}
	outs[n] = o->manifest;
	for (size_t i = 0; i <= n && r == 0 && !o->s3; i++)
		if (snap_output_is_file(snap_output_path(outs[i]), src))
			r = snap_job_fail(o->job, -EINVAL,
					  "%s is the source: refusing to replace it",
					  snap_output_path(outs[i]));
	char *detail = NULL;
	if (r == 0 && (r = snap_output_commit_all(outs, n + 1, &detail)) < 0)
		snap_job_fail(o->job, r, "%s", out_error(o, r, detail));
	free(detail);
	free(outs);
	if (r == 0 && o->force)
		remove_stale_parts(o, src);
	return r;
}

void snap_bundle_output_clear(struct snap_bundle_output *o)
{
	OPENSSL_cleanse(&o->key, sizeof(o->key));
	EVP_MD_CTX_free(o->part_sha1);
	EVP_CIPHER_CTX_free(o->aes);
	o->oseq = snap_output_seq_free(o->oseq);
	for (size_t i = 0; i < o->nparts; i++) {
		snap_output_free(o->parts[i].out);
		free(o->parts[i].final_name);
	}
	snap_output_free(o->manifest);
	free(o->parts);
	free(o->dest);
	free(o->manifest_path);
	snap_s3_where_clear(&o->w);
}
