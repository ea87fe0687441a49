// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * s3-bundle.c - classic bundles between a directory and a bucket, as ec2-upload-bundle,
 * ec2-download-bundle and ec2-delete-bundle move them (SNAP_JOB_UPLOAD_BUNDLE, DOWNLOAD_BUNDLE,
 * DELETE_BUNDLE), and aborting the multipart uploads a store left (SNAP_JOB_S3_ABORT).
 *
 * Invariants:
 *  1. A bundle is complete only when its manifest is there: upload-bundle puts the manifest
 *     after every part succeeded, and delete-bundle removes it after every part; download-bundle
 *     reads it first (it lists the parts and their digests).
 *  2. Transfers resume part by part: upload skips a part the bucket holds with the same size
 *     and the part's MD5 as its ETag (a single PUT's ETag is the MD5 of its body); download
 *     skips a part on disk with the object's size and the manifest's SHA-1. Nothing else is
 *     compared, so a part that differs in any byte is sent again.
 *  3. Every part is checked against the manifest's SHA-1 before it is used: a local part before
 *     it is uploaded, a downloaded part before it is renamed into place (output.h's commit
 *     policy: a temporary name until then). A part changed in the bucket is caught there.
 *  4. At most `connections` parts are in flight, and the bodies held take the client's memory
 *     budget (s3.h, invariant 5). A part is held whole while it is sent or received (a single
 *     PUT or GET, whose ETag is its MD5 and which is retried as a whole; a streamed body could
 *     not carry the ACL): a part larger than the budget waits until nothing else is held, so
 *     memory peaks at the larger of the budget and the largest part (bundles cut 10 MiB
 *     parts).
 *  5. Every error names the object (s3://BUCKET/KEY) or the file.
 *
 * State transitions (each runner): prepare (manifest, client, listing) -> data (parts, in
 * order, the window of invariant 4) -> finish (manifest put or removed, bucket removed) -> done.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle-manifest.h"
#include "bundle-parts.h"
#include "hex.h"
#include "job-internal.h"
#include "log.h"
#include "manifest-read.h"
#include "output.h"
#include "s3.h"
#include "util.h"

#define HASH_CHUNK (1u << 20)

/* ---- the bundle in the bucket, and the window of parts in flight (invariant 4) ---- */

/* One part in flight: an upload's PUT and the body it sends, or a download's GET. */
struct slot {
	struct snap_s3_put *put;
	struct snap_s3_get *get;
	void *buf;
	uint64_t budget; /* bytes of the client's budget held */
	uint64_t size;
	size_t index;
	char *key;  /* the part's object */
	char *path; /* the part's file in dir */
};

/* A runner's bundle in the bucket at w: its manifest (key, URL, bytes and document), what the
 * bucket lists, and for an upload or a download the parts' sizes and the transfer of the parts
 * between dir and the bucket, through slots. */
struct xfer {
	struct snap_job *job;
	struct snap_s3_client *c;
	struct snap_s3_where w;
	char *mkey, url[2048]; /* the manifest's key, and s3://BUCKET/KEY for messages */
	char *text;	       /* the manifest's bytes */
	size_t len;
	struct snap_manifest_doc *m;
	struct snap_s3_list_objects *listed;
	const char *dir;
	uint64_t *sizes;
	struct slot *slots;
	size_t nslots, next;
	uint64_t skipped;
};

/* Frees what x holds; every slot is empty by then (xfer_drain). */
static void xfer_clear(struct xfer *x)
{
	free(x->slots);
	free(x->sizes);
	snap_s3_list_objects_free(x->listed);
	snap_manifest_doc_free(x->m);
	free(x->text);
	free(x->mkey);
	snap_s3_where_clear(&x->w);
}

/* The manifest's key under the prefix, and its URL. */
static int xfer_manifest_key(struct xfer *x, const char *name)
{
	x->mkey = snap_s3_where_key(&x->w, name);
	if (!x->mkey)
		return snap_job_fail(x->job, -ENOMEM, "out of memory");
	snprintf(x->url, sizeof(x->url), "s3://%s/%s", x->w.bucket, x->mkey);
	return 0;
}

/* The window of slots and the parts' sizes, once the manifest is read (upload, download). */
static int xfer_alloc(struct xfer *x)
{
	x->nslots = snap_job_s3_connections(x->job);
	x->slots = calloc(x->nslots, sizeof(*x->slots));
	x->sizes = calloc(x->m->nparts ? x->m->nparts : 1, sizeof(*x->sizes));
	if (!x->slots || !x->sizes)
		return snap_job_fail(x->job, -ENOMEM, "out of memory");
	return 0;
}

/* Part i's file in dir, malloc'd; NULL when out of memory. */
static char *part_path(const struct xfer *x, size_t i)
{
	char *path;
	return asprintf(&path, "%s/%s", x->dir, x->m->parts[i].filename) < 0 ? NULL : path;
}

/* The results of an upload or a download. */
static void transfer_results(const struct xfer *x)
{
	struct snap_job *job = x->job;
	snap_job_set_result_u64(job, SNAP_RESULT_PARTS, x->m->nparts);
	snap_job_set_result_u64(job, SNAP_RESULT_PARTS_SKIPPED, x->skipped);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_TOTAL, job->progress.bytes_total);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_SKIPPED, job->progress.bytes_skipped);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, job->progress.bytes_written);
}

/* Frees what the slot holds and empties it; a GET not waited for is cancelled (a PUT is always
 * waited for: its body is in buf). */
static void slot_clear(struct snap_s3_client *c, struct slot *s)
{
	snap_s3_get_free(s->get);
	free(s->buf);
	if (s->budget)
		snap_s3_budget_release(c, s->budget);
	free(s->key);
	free(s->path);
	*s = (struct slot){0};
}

/* Takes the client's budget for part i's body into s (what: the failure's words). */
static int slot_budget(struct xfer *x, struct slot *s, size_t i, const char *what)
{
	uint64_t b = x->sizes[i] ? x->sizes[i] : 1;
	int r = snap_s3_budget_acquire(x->c, b);
	if (r < 0)
		return snap_job_s3_fail(x->job, r, NULL, what);
	s->budget = b;
	return 0;
}

/* Part i's transfer in s has started (r: how starting it went; a failure empties s). */
static int slot_started(struct xfer *x, struct slot *s, size_t i, int r)
{
	if (r < 0) {
		snap_job_s3_fail(x->job, r, NULL, s->key);
		slot_clear(x->c, s);
		return r;
	}
	s->index = i;
	s->size = x->sizes[i];
	return 0;
}

static int up_wait(struct xfer *x, struct slot *s);
static int down_finish(struct xfer *x, struct slot *s);

/* Ends the transfer in s, an upload or a download; s is empty after it. */
static int slot_finish(struct xfer *x, struct slot *s)
{
	return s->put ? up_wait(x, s) : down_finish(x, s);
}

/* The slot for part i, once the transfer it held ended, with the part's key and file name in
 * dir; -ECANCELED after a cancel. A failure leaves the slot to xfer_drain. */
static int xfer_next(struct xfer *x, size_t i, struct slot **ret)
{
	if (snap_job_cancelled(x->job))
		return -ECANCELED;
	struct slot *s = &x->slots[x->next];
	int r;
	if ((s->put || s->get) && (r = slot_finish(x, s)) < 0)
		return r;
	x->next = (x->next + 1) % x->nslots;
	snap_job_report(x->job, false);
	s->key = snap_s3_where_key(&x->w, x->m->parts[i].filename);
	s->path = part_path(x, i);
	if (!s->key || !s->path)
		return snap_job_fail(x->job, -ENOMEM, "out of memory");
	*ret = s;
	return 0;
}

/* A part that is there already (invariant 2): counted as done and skipped, its slot emptied. */
static void xfer_skip(struct xfer *x, struct slot *s, size_t i)
{
	x->skipped++;
	x->job->progress.bytes_done += x->sizes[i];
	x->job->progress.bytes_skipped += x->sizes[i];
	slot_clear(x->c, s);
}

/* Ends every transfer still in flight, oldest first: each upload is waited for, a download only
 * while nothing failed (r: the loop's outcome; a failure drops the rest); the finish stage
 * follows a transfer that went well. */
static int xfer_drain(struct xfer *x, int r)
{
	for (size_t k = 0; k < x->nslots; k++) {
		struct slot *s = &x->slots[(x->next + k) % x->nslots];
		if (s->put || (s->get && r >= 0)) {
			int e = slot_finish(x, s);
			if (r >= 0 && e < 0)
				r = e;
		}
		slot_clear(x->c, s);
	}
	if (r >= 0 && snap_job_cancelled(x->job))
		r = -ECANCELED;
	if (r >= 0)
		snap_job_set_stage(x->job, SNAP_STAGE_FINISH);
	return r;
}

/* ---- upload-bundle ---- */

/* Reads a part file of size bytes into *ret_buf, with the MD5 and SHA-1 of its bytes. */
static int read_part(struct snap_job *job, const char *path, uint64_t size, uint8_t md5[16],
		     uint8_t sha1[20], void **ret_buf)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return snap_job_fail(job, -errno, "cannot open part %s: %s", path,
				     snap_strerror(-errno));
	uint8_t *buf = malloc(size ? size : 1);
	int r = buf ? snap_pread_all(fd, buf, (size_t)size, 0, NULL) : -ENOMEM;
	close(fd);
	if (r == -ENOMEM)
		snap_job_fail(job, r, "out of memory");
	else if (r < 0)
		snap_job_fail(job, r, "cannot read part %s: %s", path,
			      r == -ENODATA ? "shorter than when it was opened" : snap_strerror(r));
	else if (!EVP_Digest(buf, size, md5, NULL, EVP_md5(), NULL) ||
		 !EVP_Digest(buf, size, sha1, NULL, EVP_sha1(), NULL))
		r = snap_job_fail(job, -ENOMEM, "out of memory");
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret_buf = buf;
	return 0;
}

/* Waits for the upload in slot u; its failure is recorded. */
static int up_wait(struct xfer *x, struct slot *u)
{
	char *etag = NULL, *detail = NULL;
	int r = snap_s3_put_wait(u->put, &etag, &detail);
	u->put = NULL;
	if (snap_job_s3_check(x->job, r, &detail, NULL) >= 0) {
		snap_debug("uploaded s3://%s/%s (%s)", x->w.bucket, u->key, etag ? etag : "");
		x->job->progress.bytes_done += u->size;
		x->job->progress.bytes_written += u->size;
	}
	free(etag);
	slot_clear(x->c, u);
	return r;
}

int snap_upload_bundle_run(struct snap_job *job)
{
	struct xfer x = {.job = job};
	char *dir = NULL;
	const char *mpath = snap_job_string(job, SNAP_SPARAM_MANIFEST);
	if (!mpath)
		return snap_job_fail(job, -EINVAL, "no manifest given");
	int r = snap_job_s3_where(job, snap_job_string(job, SNAP_SPARAM_S3_BUCKET), NULL, &x.w);
	if (r < 0)
		return r;
	r = snap_job_read_file(job, mpath, "manifest", MAX_MANIFEST_FILE, &x.text, &x.len);
	if (r < 0 || (r = snap_bundle_manifest_parse(job, x.text, x.len, mpath, &x.m)) < 0)
		goto out;
	const struct snap_manifest_doc *m = x.m;
	if (!(dir = snap_bundle_parts_dir(job, mpath))) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	x.dir = dir;
	const char *slash = strrchr(mpath, '/');
	if ((r = xfer_manifest_key(&x, slash ? slash + 1 : mpath)) < 0 || (r = xfer_alloc(&x)) < 0)
		goto out;
	int64_t first = snap_job_param(job, SNAP_PARAM_FIRST_PART, 0);
	if (first < 0 || (size_t)first >= m->nparts) {
		r = snap_job_fail(job, -EINVAL, "no part %lld: the bundle of %s has parts 0 to %zu",
				  (long long)first, mpath, m->nparts - 1);
		goto out;
	}

	/* every part file is there before anything is sent */
	for (size_t i = (size_t)first; i < m->nparts; i++) {
		char *p = part_path(&x, i);
		struct stat st;
		if (!p) {
			r = snap_job_fail(job, -ENOMEM, "out of memory");
			break;
		}
		if (stat(p, &st) < 0)
			r = snap_job_fail(job, -errno, "cannot upload part %s: %s", p,
					  snap_strerror(-errno));
		else if (!S_ISREG(st.st_mode))
			r = snap_job_fail(job, -EINVAL, "cannot upload part %s: not a regular file",
					  p);
		else
			x.sizes[i] = (uint64_t)st.st_size;
		free(p);
		if (r < 0)
			break;
		job->progress.bytes_total += x.sizes[i];
	}
	if (r < 0 || (r = snap_job_s3_client(job, &x.c)) < 0)
		goto out;
	struct snap_s3_put_options po = {.acl = snap_job_s3_bundle_acl(job)};
	const char *location = snap_job_string(job, SNAP_SPARAM_S3_LOCATION);
	if (location && (r = snap_job_s3_make_bucket(job, x.c, x.w.bucket, location)) < 0)
		goto out;
	/* what the bucket holds already (invariant 2); also: the bucket exists */
	if ((r = snap_job_s3_list(job, x.c, &x.w, &x.listed)) < 0)
		goto out;

	snap_job_set_stage(job, SNAP_STAGE_DATA);
	for (size_t i = (size_t)first; i < m->nparts && r >= 0; i++) {
		struct slot *u;
		uint8_t md5[16], sha1[20];
		if ((r = xfer_next(&x, i, &u)) < 0 ||
		    (r = slot_budget(&x, u, i, "cannot upload")) < 0 ||
		    (r = read_part(job, u->path, x.sizes[i], md5, sha1, &u->buf)) < 0)
			break;
		if (memcmp(sha1, m->parts[i].digest, 20)) {
			r = snap_job_fail(job, -EBADMSG,
					  "part %s does not match the manifest's SHA-1 digest",
					  u->path);
			break;
		}
		const struct snap_s3_object *o = snap_s3_list_objects_find(x.listed, u->key);
		char hex[33];
		snap_hex(hex, md5, 16);
		if (o && o->size == x.sizes[i] && o->etag && snap_s3_etag_equal(o->etag, hex)) {
			snap_debug("s3://%s/%s has the part's MD5 already: skipped", x.w.bucket,
				   u->key);
			xfer_skip(&x, u, i);
			continue;
		}
		r = snap_s3_put_start(x.c, x.w.bucket, u->key, NULL, 0, u->buf, x.sizes[i], &po,
				      &u->put);
		r = slot_started(&x, u, i, r);
	}
	/* every transfer started ends before its buffer is freed, whatever happened */
	if ((r = xfer_drain(&x, r)) < 0)
		goto out;

	if (!snap_job_param(job, SNAP_PARAM_SKIP_MANIFEST, 0)) {
		char *detail = NULL;
		r = snap_s3_put_object(x.c, x.w.bucket, x.mkey, x.text, x.len, &po, NULL, &detail);
		if (snap_job_s3_check(job, r, &detail, NULL) < 0)
			goto out;
		snap_job_set_result_string(job, SNAP_RESULT_OBJECT_URL, x.url);
		snap_job_set_result_string(job, SNAP_RESULT_MANIFEST_PATH, x.url);
	}
	transfer_results(&x);
	r = 0;
out:
	free(dir);
	xfer_clear(&x);
	return r;
}

/* ---- download-bundle and delete-bundle: the manifest in the bucket ---- */

/* The manifest's key name: -m NAME, else PREFIX.manifest.xml (PREFIX default "image"). */
static char *manifest_name(struct snap_job *job)
{
	const char *name = snap_job_string(job, SNAP_SPARAM_MANIFEST);
	if (name)
		return strdup(name);
	const char *prefix = snap_job_string(job, SNAP_SPARAM_PREFIX);
	char *n;
	return asprintf(&n, "%s.manifest.xml", prefix ? prefix : "image") < 0 ? NULL : n;
}

/* The bucket's manifest named name into x: its key, URL, bytes and document, through the job's
 * client. */
static int fetch_manifest(struct xfer *x, const char *name)
{
	int r = snap_job_s3_client(x->job, &x->c);
	if (r >= 0)
		r = xfer_manifest_key(x, name);
	if (r >= 0)
		r = snap_bundle_manifest_get(x->job, x->c, x->w.bucket, x->mkey, &x->text, &x->len);
	if (r >= 0)
		r = snap_bundle_manifest_parse(x->job, x->text, x->len, x->url, &x->m);
	return r;
}

/* Waits for the download in slot p, checks it (invariant 3) and writes it into place. */
static int down_finish(struct xfer *x, struct slot *p)
{
	struct snap_job *job = x->job;
	void *buf = NULL;
	size_t len = 0;
	char *detail = NULL;
	int r = snap_s3_get_wait(p->get, &buf, &len, &detail);
	p->get = NULL;
	if (snap_job_s3_check(job, r, &detail, NULL) < 0)
		goto out;
	const struct snap_manifest_read_part *mp = &x->m->parts[p->index];
	uint8_t sha1[20];
	EVP_Digest(buf, len, sha1, NULL, EVP_sha1(), NULL);
	if (len != p->size || memcmp(sha1, mp->digest, 20)) {
		r = snap_job_fail(job, -EBADMSG,
				  "part s3://%s/%s does not match the manifest's SHA-1 digest (%zu "
				  "bytes read, %llu listed): changed in the bucket since bundled?",
				  x->w.bucket, p->key, len, (unsigned long long)p->size);
		goto out;
	}
	if ((r = snap_job_write_whole(job, p->path, buf, len, true)) < 0)
		goto out;
	job->progress.bytes_done += len;
	job->progress.bytes_written += len;
out:
	free(buf);
	slot_clear(x->c, p);
	return r;
}

/* Whether path holds size bytes whose SHA-1 is digest (a part downloaded before). */
static bool have_part(const char *path, uint64_t size, const uint8_t digest[20])
{
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size)
		return false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	EVP_MD_CTX *s1 = EVP_MD_CTX_new();
	uint8_t *buf = malloc(HASH_CHUNK), sha1[20];
	bool ok = s1 && buf && EVP_DigestInit_ex(s1, EVP_sha1(), NULL);
	uint64_t done = 0;
	while (ok && done < size) {
		size_t n = size - done < HASH_CHUNK ? (size_t)(size - done) : HASH_CHUNK;
		ok = snap_pread_all(fd, buf, n, done, NULL) == 0 && EVP_DigestUpdate(s1, buf, n);
		done += n;
	}
	ok = ok && EVP_DigestFinal_ex(s1, sha1, NULL) && !memcmp(sha1, digest, 20);
	EVP_MD_CTX_free(s1);
	free(buf);
	close(fd);
	return ok;
}

/* -k: the manifest's user key must decrypt with this private key, as ec2-download-bundle
 * checks it. */
static int check_key(struct snap_job *job, const struct snap_manifest_doc *m, const char *url)
{
	const char *key_path = snap_job_string(job, SNAP_SPARAM_PRIVATE_KEY);
	return key_path ? snap_bundle_manifest_unwrap(job, m, key_path, url, NULL, NULL) : 0;
}

int snap_download_bundle_run(struct snap_job *job)
{
	struct xfer x = {.job = job};
	char *name = NULL, *mpath = NULL;
	const char *dir = snap_job_string(job, SNAP_SPARAM_OUTPUT_DIR);
	x.dir = dir ? dir : ".";
	int r = snap_job_s3_where(job, snap_job_string(job, SNAP_SPARAM_S3_BUCKET), NULL, &x.w);
	if (r < 0)
		return r;
	name = manifest_name(job);
	if (!name) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	if (strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, ".")) {
		r = snap_job_fail(job, -EINVAL, "manifest name %s is not a plain file name", name);
		goto out;
	}
	if ((r = fetch_manifest(&x, name)) < 0 || (r = check_key(job, x.m, x.url)) < 0)
		goto out;
	const struct snap_manifest_doc *m = x.m;

	/* the manifest first (invariant 1) */
	if (asprintf(&mpath, "%s/%s", x.dir, name) < 0) {
		mpath = NULL;
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = snap_job_write_whole(job, mpath, x.text, x.len, true)) < 0)
		goto out;
	snap_job_set_result_string(job, SNAP_RESULT_MANIFEST_PATH, mpath);

	if ((r = snap_job_s3_list(job, x.c, &x.w, &x.listed)) < 0 || (r = xfer_alloc(&x)) < 0)
		goto out;
	for (size_t i = 0; i < m->nparts && r >= 0; i++) {
		const struct snap_s3_object *o;
		r = snap_job_s3_listed_part(job, &x.w, x.listed, m->parts[i].filename, NULL, &o);
		if (r >= 0)
			x.sizes[i] = o->size;
	}

	snap_job_set_stage(job, SNAP_STAGE_DATA);
	for (size_t i = 0; i < m->nparts && r >= 0; i++) {
		struct slot *p;
		if ((r = xfer_next(&x, i, &p)) < 0)
			break;
		if (have_part(p->path, x.sizes[i], m->parts[i].digest)) {
			xfer_skip(&x, p, i);
			continue;
		}
		if ((r = slot_budget(&x, p, i, "cannot download")) < 0)
			break;
		r = snap_s3_get_start(x.c, x.w.bucket, p->key, 0, UINT64_MAX,
				      (size_t)x.sizes[i] + 1, &p->get);
		r = slot_started(&x, p, i, r);
	}
	/* failed already: the rest is dropped (freeing a GET not waited for cancels it) */
	if ((r = xfer_drain(&x, r)) < 0)
		goto out;
	transfer_results(&x);
	snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH, x.dir);
	r = 0;
out:
	free(mpath);
	free(name);
	xfer_clear(&x);
	return r;
}

/* DeleteObject of one part or the manifest, counted as one step done. */
static int delete_one(struct snap_job *job, struct snap_s3_client *c, const char *bucket,
		      const char *key)
{
	char *detail = NULL;
	int r = snap_s3_delete_object(c, bucket, key, &detail);
	if (snap_job_s3_check(job, r, &detail, NULL) < 0)
		return r;
	job->progress.bytes_done++;
	return 0;
}

int snap_delete_bundle_run(struct snap_job *job)
{
	struct xfer x = {.job = job};
	char *name = NULL;
	int r = snap_job_s3_where(job, snap_job_string(job, SNAP_SPARAM_S3_BUCKET), NULL, &x.w);
	if (r < 0)
		return r;
	name = manifest_name(job);
	if (!name) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = fetch_manifest(&x, name)) < 0)
		goto out;
	struct snap_s3_client *c = x.c;
	const char *bucket = x.w.bucket;
	snap_job_set_stage(job, SNAP_STAGE_DATA);
	job->progress.bytes_total = x.m->nparts + 1;
	for (size_t i = 0; i < x.m->nparts; i++) {
		if (snap_job_cancelled(job)) {
			r = -ECANCELED;
			goto out;
		}
		char *k = snap_s3_where_key(&x.w, x.m->parts[i].filename);
		if (!k) {
			r = snap_job_fail(job, -ENOMEM, "out of memory");
			goto out;
		}
		r = delete_one(job, c, bucket, k);
		free(k);
		if (r < 0)
			goto out;
		snap_job_report(job, false);
	}
	/* the manifest last (invariant 1) */
	snap_job_set_stage(job, SNAP_STAGE_FINISH);
	if ((r = delete_one(job, c, bucket, x.mkey)) < 0)
		goto out;
	snap_job_set_result_u64(job, SNAP_RESULT_PARTS, x.m->nparts);
	if (snap_job_param(job, SNAP_PARAM_CLEAR, 0)) {
		struct snap_s3_list_objects *l = NULL;
		char *detail = NULL;
		r = snap_s3_list_objects(c, bucket, "", &l, &detail);
		if (r >= 0 && l->nobjects == 0) {
			snap_s3_list_objects_free(l);
			free(detail);
			detail = NULL;
			r = snap_s3_delete_bucket(c, bucket, &detail);
		} else if (r >= 0) {
			snap_warn("bucket %s is not empty (%zu objects): kept", bucket,
				  l->nobjects);
			snap_s3_list_objects_free(l);
		}
		char what[128];
		snprintf(what, sizeof(what), "cannot remove bucket %s", bucket);
		if (snap_job_s3_check(job, r, &detail, what) < 0)
			goto out;
	}
	r = 0;
out:
	free(name);
	xfer_clear(&x);
	return r;
}

/* ---- abort ---- */

int snap_s3_abort_run(struct snap_job *job)
{
	const char *url = snap_job_string(job, SNAP_SPARAM_OUTPUT);
	char *bucket = NULL, *key = NULL, *detail = NULL, *text = NULL;
	size_t tlen = 0;
	struct snap_s3_list_uploads *l = NULL;
	FILE *f = NULL;
	if (!url)
		return snap_job_fail(job, -EINVAL, "no s3:// URL given");
	int r = snap_s3_url_parse(url, &bucket, &key, &detail);
	if (r < 0) {
		snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
		free(detail);
		return r;
	}
	struct snap_s3_client *c;
	if ((r = snap_job_s3_client(job, &c)) < 0)
		goto out;
	r = snap_s3_list_uploads(c, bucket, key, &l, &detail);
	if (snap_job_s3_check(job, r, &detail, NULL) < 0)
		goto out;
	const bool under = !snap_s3_key_names_object(key);
	f = open_memstream(&text, &tlen);
	if (!f) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	uint64_t n = 0;
	for (size_t i = 0; i < l->nuploads; i++) {
		const struct snap_s3_upload *u = &l->uploads[i];
		if (!under && strcmp(u->key, key))
			continue; /* another key that begins with this one */
		if (snap_job_cancelled(job)) {
			r = -ECANCELED;
			goto out;
		}
		r = snap_s3_abort_upload(c, bucket, u->key, u->upload_id, &detail);
		if (r == -ENOENT)
			r = 0; /* gone meanwhile (completed or aborted by another) */
		if (snap_job_s3_check(job, r, &detail, NULL) < 0)
			goto out;
		fprintf(f, "s3://%s/%s %s\n", bucket, u->key, u->upload_id);
		n++;
	}
	if (fclose(f) != 0) {
		f = NULL;
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	f = NULL;
	snap_job_set_result_string(job, SNAP_RESULT_S3_ABORTED, text ? text : "");
	snap_job_set_result_u64(job, SNAP_RESULT_PARTS, n);
	r = 0;
out:
	if (f)
		fclose(f);
	free(text);
	free(bucket);
	free(key);
	snap_s3_list_uploads_free(l);
	return r;
}
