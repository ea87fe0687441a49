// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bundle-parts.c - a classic bundle's parts as a source: found in a directory or an S3 bucket,
 * sized, read whole in index order, chained and checked part by part (see bundle-parts.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bundle-keys.h"
#include "bundle-manifest.h"
#include "bundle-parts.h"
#include "log.h"

/* parts fetched ahead from S3 (bundle-parts.h invariant 3): at most half the client's memory budget
 * in bodies waiting (the job's buffers hold the rest), never more GETs than its connections */
#define S3_AHEAD_BUDGET(c) (snap_s3_client_budget(c) / 2)

static char *part_path(const struct snap_bundle_parts *p, size_t i)
{
	char *s;
	int n =
	    p->s3 ? asprintf(&s, "s3://%s/%s%s", p->w.bucket, p->w.prefix, p->m->parts[i].filename)
		  : asprintf(&s, "%s/%s", p->srcdir, p->m->parts[i].filename);
	return n < 0 ? NULL : s;
}

/* Part i's size, found at path: at most MAX_PART; p->max is the largest so far. */
static int take_size(struct snap_bundle_parts *p, size_t i, const char *path, uint64_t size)
{
	if (size > MAX_PART)
		return snap_job_fail(p->job, -EFBIG,
				     "part %zu (%s) is %llu bytes; parts over %u bytes are not "
				     "supported",
				     i, path, (unsigned long long)size, MAX_PART);
	p->part_sizes[i] = size;
	if (size > p->max)
		p->max = size;
	return 0;
}

/* Every part exists and is a regular file before anything is written (a missing one is named
 * up front). */
static int stat_parts(struct snap_bundle_parts *p)
{
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
			r = take_size(p, i, path, (uint64_t)st.st_size);
		free(path);
		if (r < 0)
			return r;
	}
	return 0;
}

static int cmp_object(const void *a, const void *b)
{
	return strcmp(((const struct snap_s3_object *)a)->key,
		      ((const struct snap_s3_object *)b)->key);
}

/* stat_parts for parts in S3 (bundle-parts.h invariant 3): one listing of the keys the part
 * names share (all pages), so a missing part is named before anything is fetched or written. */
static int stat_parts_s3(struct snap_bundle_parts *p)
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
	if (asprintf(&lp, "%s%.*s", p->w.prefix, (int)common, m->parts[0].filename) < 0)
		return snap_job_fail(p->job, -ENOMEM, "out of memory");
	struct snap_s3_list_objects *l = NULL;
	int r = snap_s3_list_objects(p->s3, p->w.bucket, lp, &l, &detail);
	if (r < 0) {
		snap_job_fail(p->job, r, "cannot list the parts under s3://%s/%s: %s", p->w.bucket,
			      lp, detail ? detail : snap_strerror(r));
		goto out;
	}
	qsort(l->objects, l->nobjects, sizeof(*l->objects), cmp_object);
	for (size_t i = 0; i < m->nparts && r == 0; i++) {
		char *key = snap_s3_where_key(&p->w, p->m->parts[i].filename),
		     *path = part_path(p, i);
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
				r = take_size(p, i, path, o->size);
		}
		free(key);
		free(path);
	}
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

char *snap_bundle_parts_dir(const struct snap_job *job, const char *mpath)
{
	const char *sd = snap_job_string(job, SNAP_SPARAM_SOURCE_DIR);
	if (sd)
		return strdup(sd);
	char *copy = strdup(mpath);
	char *dir = copy ? strdup(dirname(copy)) : NULL;
	free(copy);
	return dir;
}

/* Where the parts are: SNAP_SPARAM_SOURCE_DIR (a directory, or an s3:// place that
 * snap_s3_where_parse reads), else where the manifest is: an S3 manifest's key up to its last
 * '/', literally (a key "dir/m.xml" has its parts under "dir/"). */
static int locate_parts(struct snap_bundle_parts *p, const char *mpath)
{
	const char *sd = snap_job_string(p->job, SNAP_SPARAM_SOURCE_DIR);
	const char *where = sd ? sd : mpath;
	if (!snap_s3_is_url(where)) {
		p->srcdir = snap_bundle_parts_dir(p->job, mpath);
		return p->srcdir ? 0 : snap_job_fail(p->job, -ENOMEM, "out of memory");
	}
	if (sd) {
		char *detail = NULL;
		int r = snap_s3_where_parse(sd, &p->w, &detail);
		if (r < 0)
			snap_job_fail(p->job, r, "%s: %s", sd, detail ? detail : snap_strerror(r));
		free(detail);
		return r;
	}
	char *key = NULL;
	int r = parse_url(p->job, mpath, &p->w.bucket, &key);
	if (r < 0)
		return r;
	const char *slash = strrchr(key, '/');
	p->w.prefix = strndup(key, slash ? (size_t)(slash - key) + 1 : 0);
	free(key);
	if (!p->w.prefix)
		return snap_job_fail(p->job, -ENOMEM, "out of memory");
	return 0;
}

int snap_bundle_parts_open(struct snap_job *job, const struct snap_manifest_doc *m,
			   const char *mpath, const uint8_t iv[16], struct snap_bundle_parts **ret)
{
	struct snap_bundle_parts *p = calloc(1, sizeof(*p));
	if (!p)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	p->job = job;
	p->m = m;
	p->chain = iv != NULL;
	if (iv)
		memcpy(p->prev, iv, 16);
	/* the parts' client: the job's, for parts in S3 beside the manifest or under another
	 * prefix; local parts are read from srcdir, even beside a manifest in S3 */
	int r = locate_parts(p, mpath);
	if (r < 0 || (!p->srcdir && (r = snap_job_s3_client(job, &p->s3)) < 0))
		goto fail;
	p->part_sizes = calloc(m->nparts, sizeof(*p->part_sizes));
	p->gets = p->s3 ? calloc(m->nparts, sizeof(*p->gets)) : NULL;
	if (!p->part_sizes || (p->s3 && !p->gets)) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = p->s3 ? stat_parts_s3(p) : stat_parts(p)) < 0)
		goto fail;
	if (p->s3) {
		uint64_t conn = snap_s3_client_connections(p->s3);
		uint64_t fit = S3_AHEAD_BUDGET(p->s3) / (p->max ? p->max : 1);
		p->ahead = (unsigned)(conn < fit ? conn : fit);
		if (p->ahead < 1)
			p->ahead = 1;
		snap_debug("parts from s3://%s/%s: %u fetched ahead", p->w.bucket, p->w.prefix,
			   p->ahead);
	}
	*ret = p;
	return 0;
fail:
	snap_bundle_parts_free(p);
	return r;
}

struct snap_bundle_parts *snap_bundle_parts_free(struct snap_bundle_parts *p)
{
	if (!p)
		return NULL;
	for (size_t i = 0; p->gets && i < p->m->nparts; i++)
		p->gets[i] = snap_s3_get_free(p->gets[i]); /* cancels what was fetched ahead */
	free(p->gets);
	snap_s3_where_clear(&p->w);
	free(p->srcdir);
	free(p->part_sizes);
	free(p);
	return NULL;
}

uint64_t snap_bundle_parts_total(const struct snap_bundle_parts *p)
{
	uint64_t total = 0;
	for (size_t i = 0; i < p->m->nparts; i++)
		total += p->part_sizes[i];
	return total;
}

/* Starts the GETs of the parts before `upto` not started yet (bundle-parts.h invariant 3). */
static int fetch_ahead(struct snap_bundle_parts *p, struct snap_pipeline *pipe, size_t upto)
{
	if (upto > p->m->nparts)
		upto = p->m->nparts;
	while (p->next_get < upto) {
		size_t i = p->next_get;
		char *key = snap_s3_where_key(&p->w, p->m->parts[i].filename);
		if (!key)
			return snap_pipeline_fail(pipe, -ENOMEM, "out of memory");
		int r = snap_s3_get_start(p->s3, p->w.bucket, key, 0, UINT64_MAX, MAX_PART,
					  &p->gets[i]);
		free(key);
		if (r < 0) {
			char *path = part_path(p, i);
			r = snap_pipeline_fail(pipe, r, "cannot fetch part %zu (%s): %s", i,
					       path ? path : p->m->parts[i].filename,
					       snap_strerror(r));
			free(path);
			return r;
		}
		p->next_get++;
	}
	return 0;
}

/* Part i from S3 into b: its GET (started ahead) waited for, its body b's buffer. */
static int read_part_s3(struct snap_bundle_parts *p, struct snap_pipeline *pipe, size_t i,
			struct snap_bundle_part_buf *b)
{
	int r = fetch_ahead(p, pipe, i + p->ahead);
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
		r = snap_pipeline_fail(pipe, r, "part %zu (%s) %s: %s", i,
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
	b->len = len;
	return 0;
}

/* Part i from srcdir into b's buffer. */
static int read_part(struct snap_bundle_parts *p, struct snap_pipeline *pipe, size_t i,
		     struct snap_bundle_part_buf *b)
{
	char *path = part_path(p, i);
	if (!path)
		return snap_pipeline_fail(pipe, -ENOMEM, "out of memory");
	int r = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = snap_pipeline_fail(pipe, -errno, "part %zu (%s) cannot be opened: %s", i, path,
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
				r = snap_pipeline_fail(
				    pipe, -EFBIG, "part %zu (%s) grew while being read", i, path);
				goto out;
			}
			break;
		}
		ssize_t n = read(fd, b->data + got, b->cap - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = snap_pipeline_fail(pipe, -errno,
					       "part %zu (%s) cannot be read at offset %zu: %s", i,
					       path, got, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		p->bytes_read += (uint64_t)n;
	}
	if (got == 0)
		r = snap_pipeline_fail(pipe, -EUCLEAN, "part %zu (%s) is empty", i, path);
	b->len = got;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return r;
}

/* The CBC chaining of a part read into b, from the ciphertext only: the block straddling the
 * previous part (head) and the body's IV; the bytes after the last whole block wait in carry
 * for the next part. */
static void chain_part(struct snap_bundle_parts *p, struct snap_bundle_part_buf *b)
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

int snap_bundle_parts_read(struct snap_bundle_parts *p, struct snap_pipeline *pipe, size_t i,
			   struct snap_bundle_part_buf *b)
{
	int r = p->s3 ? read_part_s3(p, pipe, i, b) : read_part(p, pipe, i, b);
	if (r < 0)
		return r;
	p->part_sizes[i] = b->len;
	b->off = 0;
	b->head_len = 0;
	b->part = i;
	b->last = i + 1 == p->m->nparts;
	if (p->chain)
		chain_part(p, b);
	return 0;
}

int snap_bundle_parts_check(const struct snap_bundle_parts *p, struct snap_pipeline *pipe,
			    const struct snap_bundle_part_buf *b)
{
	size_t i = b->part;
	/* the part's bytes are data[0, part size): the head's own ones included */
	size_t got = p->part_sizes[i];
	uint8_t md[20];
	unsigned mdlen = 0;
	if (!EVP_Digest(b->data, got, md, &mdlen, EVP_sha1(), NULL))
		return snap_pipeline_fail(pipe, -EIO, "SHA-1 failed: %s", snap_ossl_reason());
	if (!memcmp(md, p->m->parts[i].digest, 20))
		return 0;
	char want[41], have[41];
	snap_hex(want, p->m->parts[i].digest, 20);
	snap_hex(have, md, 20);
	char *path = part_path(p, i);
	int r = snap_pipeline_fail(
	    pipe, -EBADMSG,
	    "part %zu (%s) is damaged: SHA-1 %s, the manifest says %s (%zu bytes%s)", i,
	    path ? path : p->m->parts[i].filename, have, want, got,
	    i + 1 < p->m->nparts && i > 0 && got < p->part_sizes[0]
		? ", shorter than part 0: truncated?"
		: "");
	free(path);
	return r;
}

int snap_bundle_manifest_fetch(struct snap_job *job, struct snap_s3_client *c, const char *url,
			       char **ret, size_t *ret_len)
{
	char *bucket = NULL, *key = NULL;
	int r = parse_url(job, url, &bucket, &key);
	if (r < 0)
		return r;
	if (!snap_s3_key_names_object(key))
		r = snap_job_fail(job, -EINVAL,
				  "%s names no manifest object (a key ending in .manifest.xml)",
				  url);
	else
		r = snap_bundle_manifest_get(job, c, bucket, key, ret, ret_len);
	free(bucket);
	free(key);
	return r;
}
