// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * migrate.c - ec2-migrate-manifest and ec2-migrate-bundle (SNAP_JOB_MIGRATE_MANIFEST,
 * SNAP_JOB_MIGRATE_BUNDLE): a classic bundle's manifest rewritten for another region or another
 * kernel and ramdisk, its key wrapped again for the given EC2 certificate, and signed again; and a
 * bundle copied between buckets by the service itself, then given that manifest.
 *
 * Invariants:
 *  1. No part changes: the migrated manifest lists the same part names and SHA-1 digests, the
 *     same image digest and sizes, and the AES key and IV are the ones the parts were encrypted
 *     with (unwrapped with -k, the user's private key, and wrapped again for the EC2 certificate
 *     and the user certificate -c).
 *  2. Kernel and ramdisk ids come from --kernel / --ramdisk, else from the mapping file for the
 *     target region (the original asks the EC2 API, which is not reachable here), else stay as
 *     they are with --no-mapping. An id that would need a mapping and has none fails the job
 *     before anything is written or copied.
 *  3. migrate-manifest writes under the output layer's commit policy (output.h): a temporary file
 *     renamed over the manifest (in place) or to -o, so a failure leaves the old manifest whole.
 *  4. migrate-bundle moves no part through this machine: CopyObject for a part of at most 5 GiB,
 *     else UploadPartCopy ranges of a multipart upload (aborted on failure). The manifest is
 *     migrated before the first copy (a wrong key fails at once) and put last, so the bundle
 *     exists in the destination only when every part is there. A copy whose source has a single
 *     PUT's ETag (an MD5) must come back with the same ETag. The source is only read.
 *  5. Every error names the object (s3://BUCKET/KEY) or the file.
 *
 * State transitions: prepare (manifest read and migrated, source listed, destination bucket
 * made: migrate_doc, snap_migrate_bundle_run) -> data (parts copied on the pipeline, copy_parts)
 * -> finish (manifest written or put: snap_migrate_manifest_run through snap_job_write_whole,
 * snap_migrate_bundle_run) -> done.
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest-read.h"
#include "manifest-write.h"

#include "bundle-keys.h"
#include "bundle-manifest.h"
#include "hex.h"
#include "job-internal.h"
#include "log.h"
#include "output.h"
#include "pipeline.h"
#include "s3.h"

#define MAX_PEM (1u << 20)
#define MAX_MAPPING_FILE (16u << 20)
/* UploadPartCopy ranges of a part over SNAP_S3_MAX_PART_SIZE */
#define COPY_RANGE (512ull << 20)

/* ---- kernel and ramdisk mappings (invariant 2) ---- */

/* The id src maps to in region, from the mapping file's text: lines "REGION SOURCE-ID
 * DESTINATION-ID" separated by blanks, '#' to the end of a line a comment. *ret malloc'd, or NULL
 * when no line matches; -EINVAL naming the line that is not three words. */
static int mapping_lookup(struct snap_job *job, const char *path, const char *text,
			  const char *region, const char *src, char **ret)
{
	char *copy = strdup(text), *save = NULL;
	if (!copy)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	*ret = NULL;
	unsigned lineno = 0;
	int r = 0;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *w[4], *s2 = NULL;
		size_t n = 0;
		for (char *t = strtok_r(line, " \t\r", &s2); t && n < 4;
		     t = strtok_r(NULL, " \t\r", &s2))
			w[n++] = t;
		if (n == 0)
			continue;
		if (n != 3) {
			r = snap_job_fail(job, -EINVAL,
					  "mapping file %s: line %u is not REGION SOURCE-ID "
					  "DESTINATION-ID",
					  path, lineno);
			break;
		}
		if (!*ret && !strcmp(w[0], region) && !strcmp(w[1], src)) {
			if (!(*ret = strdup(w[2])))
				r = snap_job_fail(job, -ENOMEM, "out of memory");
		}
	}
	if (r < 0) {
		free(*ret);
		*ret = NULL;
	}
	free(copy);
	return r;
}

/* The new id of a kernel or ramdisk (what: "kernel"): the option's, else the mapping file's for
 * the region, else the old one with --no-mapping; NULL in *ret when there is none. */
static int map_id(struct snap_job *job, const char *what, int sparam, const char *old,
		  const char *map_text, char **ret)
{
	const char *set = snap_job_string(job, sparam);
	*ret = NULL;
	if (set) {
		if (*set && !(*ret = strdup(set)))
			return snap_job_fail(job, -ENOMEM, "out of memory");
		return 0;
	}
	if (!old || !*old)
		return 0;
	const char *region = snap_job_string(job, SNAP_SPARAM_MIGRATE_REGION);
	const char *path = snap_job_string(job, SNAP_SPARAM_MAPPING_FILE);
	bool have_region = region && *region;
	if (map_text && have_region) {
		int r = mapping_lookup(job, path, map_text, region, old, ret);
		if (r < 0)
			return r;
		if (*ret) {
			snap_info("%s %s is %s in %s", what, old, *ret, region);
			return 0;
		}
	}
	if (snap_job_param(job, SNAP_PARAM_NO_MAPPING, 0)) {
		if (!(*ret = strdup(old)))
			return snap_job_fail(job, -ENOMEM, "out of memory");
		return 0;
	}
	if (map_text && have_region)
		return snap_job_fail(job, -ENOENT,
				     "cannot map %s %s to region %s: mapping file %s has no line "
				     "for it",
				     what, old, region, path);
	return snap_job_fail(job, -ENOENT,
			     "cannot map %s %s: %s (the EC2 API is not asked); give --%s, "
			     "--no-mapping, or --mapping-file with --region",
			     what, old, !map_text ? "no mapping file" : "no target region", what);
}

/* ---- the manifest (invariants 1, 2) ---- */

/* The migrated document of the manifest m, named name in messages. */
static int migrate_doc(struct snap_job *job, const struct snap_bundle_signer *k,
		       const char *map_text, const struct snap_manifest_doc *m, const char *name,
		       char **ret_doc, size_t *ret_len)
{
	struct snap_manifest_mapping *maps = NULL;
	struct snap_manifest_part *parts = NULL;
	char *kernel = NULL, *ramdisk = NULL;
	uint8_t key[16], iv[16];
	char hex[2][33];
	int r;
	if (m->type && strcmp(m->type, "machine")) {
		r = snap_job_fail(
		    job, -EOPNOTSUPP,
		    "cannot migrate manifest %s: its image is of type %s, only machine "
		    "images are migrated",
		    name, m->type);
		goto out;
	}
	if (!m->architecture || !*m->architecture) {
		r = snap_job_fail(job, -EOPNOTSUPP,
				  "cannot migrate manifest %s: version %s has no architecture",
				  name, m->version_text ? m->version_text : "?");
		goto out;
	}
	r = map_id(job, "kernel", SNAP_SPARAM_KERNEL, m->kernel_id, map_text, &kernel);
	if (r >= 0)
		r = map_id(job, "ramdisk", SNAP_SPARAM_RAMDISK, m->ramdisk_id, map_text, &ramdisk);
	if (r < 0)
		goto out;

	/* the key the parts were encrypted with (invariant 1) */
	r = snap_bundle_manifest_key_for(job, m, name, k->priv_pem, k->priv_len,
					 snap_job_string(job, SNAP_SPARAM_PRIVATE_KEY), key, iv);
	if (r < 0)
		goto out;
	snap_hex(hex[0], key, 16);
	snap_hex(hex[1], iv, 16);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));

	maps = calloc(m->nmappings ? m->nmappings : 1, sizeof(*maps));
	parts = calloc(m->nparts ? m->nparts : 1, sizeof(*parts));
	if (!maps || !parts) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < m->nmappings; i++)
		maps[i] = (struct snap_manifest_mapping){m->mappings[i].virtual_name,
							 m->mappings[i].device};
	for (size_t i = 0; i < m->nparts; i++) {
		parts[i].filename = m->parts[i].filename;
		snap_hex(parts[i].digest, m->parts[i].digest, 20);
	}
	struct snap_manifest_info info = {
	    .bundler_name = m->bundler_name,
	    .bundler_version = m->bundler_version,
	    .bundler_release = m->bundler_release,
	    .arch = m->architecture,
	    .mappings = maps,
	    .nmappings = m->nmappings,
	    .kernel_id = kernel,
	    .ramdisk_id = ramdisk,
	    .product_codes = (const char *const *)m->product_codes,
	    .nproduct_codes = m->nproduct_codes,
	    .name = m->name,
	    .user = m->user,
	    .ancestors = (const char *const *)m->ancestors,
	    .nancestors = m->nancestors,
	    .size = m->size,
	    .bundled_size = m->bundled_size,
	    .parts = parts,
	    .nparts = m->nparts,
	};
	snap_hex(info.digest, m->digest, 20);
	/* the key the parts were encrypted with, wrapped again (invariant 1) */
	r = snap_bundle_manifest_sign(job, k, &info, hex[0], hex[1], "the migrated manifest of ",
				      name, ret_doc, ret_len);
out:
	OPENSSL_cleanse(hex, sizeof(hex));
	free(parts);
	free(maps);
	free(kernel);
	free(ramdisk);
	return r;
}

/* Keys and the mapping file's text (NULL without one), read once for the job. */
static int prepare(struct snap_job *job, struct snap_bundle_signer *k, char **ret_map_text)
{
	int r = snap_bundle_signer_load(job, MAX_PEM, true, "the migrated manifest's signature", k);
	if (r < 0)
		return r;
	const char *path = snap_job_string(job, SNAP_SPARAM_MAPPING_FILE);
	*ret_map_text = NULL;
	if (!path)
		return 0;
	size_t len;
	return snap_job_read_file(job, path, "mapping file", MAX_MAPPING_FILE, ret_map_text, &len);
}

/* ---- migrate-manifest (invariant 3) ---- */

int snap_migrate_manifest_run(struct snap_job *job)
{
	struct snap_bundle_signer k = {0};
	struct snap_manifest_doc *m = NULL;
	char *map_text = NULL, *text = NULL, *doc = NULL;
	size_t len = 0, dlen = 0;
	const char *path = snap_job_string(job, SNAP_SPARAM_MANIFEST);
	const char *dest = snap_job_string(job, SNAP_SPARAM_OUTPUT);
	if (!path)
		return snap_job_fail(job, -EINVAL, "no manifest given");
	int r = prepare(job, &k, &map_text);
	if (r >= 0)
		r = snap_job_read_file(job, path, "manifest", MAX_MANIFEST_FILE, &text, &len);
	if (r >= 0)
		r = snap_bundle_manifest_parse(job, text, len, path, &m);
	if (r >= 0)
		r = migrate_doc(job, &k, map_text, m, path, &doc, &dlen);
	if (r < 0)
		goto out;
	snap_job_set_stage(job, SNAP_STAGE_FINISH);
	/* in place replaces the manifest by rename; -o replaces only with --force */
	bool force = !dest || snap_job_param(job, SNAP_PARAM_FORCE, 0);
	if (!dest)
		dest = path;
	if ((r = snap_job_write_whole(job, dest, doc, dlen, force)) < 0)
		goto out;
	job->progress.bytes_written = dlen;
	snap_job_set_result_string(job, SNAP_RESULT_MANIFEST_PATH, dest);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, dlen);
	r = 0;
out:
	snap_manifest_doc_free(m);
	free(doc);
	free(text);
	free(map_text);
	snap_bundle_signer_clear(&k);
	return r;
}

/* ---- migrate-bundle (invariant 4) ---- */

/* SNAP_SPARAM_S3_BUCKET or DEST_BUCKET, with or without "s3://". */
static int where_parse(struct snap_job *job, int sparam, const char *what,
		       struct snap_s3_where *ret)
{
	const char *v = snap_job_string(job, sparam);
	if (v && !strncmp(v, "s3://", 5))
		v += 5;
	return snap_job_s3_where(job, v, what, ret);
}

struct copy_part {
	char *src_key, *dst_key;
	uint64_t size;
	const char *src_etag; /* the listing's */
};

struct copier {
	struct snap_job *job;
	struct snap_s3_client *c;
	const struct snap_s3_where *src, *dst;
	const char *acl;
	struct copy_part *parts;
	size_t nparts;
	size_t *slot_part; /* the part each pipeline slot holds */
	uint64_t single_max, range; /* CopyObject up to single_max, else ranges of range */
};

/* The end of a copy of p's bytes (CopyObject or UploadPartCopy): snap_job_s3_check, a failure
 * naming the source. */
static int copy_check(struct copier *cp, const struct copy_part *p, int r, char **detail)
{
	char what[2200];
	snprintf(what, sizeof(what), "cannot copy s3://%s/%s", cp->src->bucket, p->src_key);
	return snap_job_s3_check(cp->job, r, detail, what);
}

/* A part too large for one CopyObject: UploadPartCopy ranges, aborted on failure. */
static int copy_multipart(struct copier *cp, const struct copy_part *p)
{
	char *upload = NULL, *detail = NULL, *etag = NULL;
	struct snap_s3_put_options po = {.acl = cp->acl};
	int r = snap_s3_create_upload(cp->c, cp->dst->bucket, p->dst_key, &po, &upload, &detail);
	if (snap_job_s3_check(cp->job, r, &detail, NULL) < 0)
		return r;
	size_t n = (size_t)((p->size + cp->range - 1) / cp->range);
	struct snap_s3_part *done = calloc(n ? n : 1, sizeof(*done));
	if (!done)
		r = snap_job_fail(cp->job, -ENOMEM, "out of memory");
	for (size_t i = 0; done && i < n && r >= 0; i++) {
		if (snap_job_cancelled(cp->job)) {
			r = -ECANCELED;
			break;
		}
		uint64_t off = (uint64_t)i * cp->range;
		uint64_t len = p->size - off < cp->range ? p->size - off : cp->range;
		r = snap_s3_upload_part_copy(cp->c, cp->src->bucket, p->src_key, off, len,
					     cp->dst->bucket, p->dst_key, upload, (uint32_t)(i + 1),
					     &done[i].etag, &detail);
		if (copy_check(cp, p, r, &detail) < 0)
			break;
		done[i].part_number = (uint32_t)(i + 1);
		done[i].size = len;
	}
	if (r >= 0) {
		r = snap_s3_complete_upload(cp->c, cp->dst->bucket, p->dst_key, upload, done, n,
					    &etag, &detail);
		snap_job_s3_check(cp->job, r, &detail, NULL);
	}
	if (r < 0) {
		/* after a cancel the job's client refuses every request: a fresh one aborts */
		struct snap_s3_client *cleanup = NULL;
		if (r == -ECANCELED && snap_job_s3_cleanup_client(cp->job, &cleanup) < 0)
			cleanup = NULL;
		char *d2 = NULL;
		if (snap_s3_abort_upload(cleanup ? cleanup : cp->c, cp->dst->bucket, p->dst_key,
					 upload, &d2) < 0)
			snap_warn("cannot abort the upload of s3://%s/%s: %s", cp->dst->bucket,
				  p->dst_key, d2 ? d2 : "");
		free(d2);
		snap_s3_client_free(cleanup);
	}
	for (size_t i = 0; done && i < n; i++)
		free(done[i].etag);
	free(done);
	free(etag);
	free(upload);
	return r;
}

static int copy_one(struct copier *cp, const struct copy_part *p)
{
	if (p->size > cp->single_max)
		return copy_multipart(cp, p);
	char *etag = NULL, *detail = NULL;
	int r = snap_s3_copy_object(cp->c, cp->src->bucket, p->src_key, cp->dst->bucket, p->dst_key,
				    cp->acl, &etag, &detail);
	if (copy_check(cp, p, r, &detail) < 0)
		return r;
	if (snap_s3_etag_is_md5(p->src_etag) && !snap_s3_etag_equal(etag, p->src_etag))
		r = snap_job_fail(
		    cp->job, -EBADMSG, "copy s3://%s/%s has ETag %s, its source s3://%s/%s has %s",
		    cp->dst->bucket, p->dst_key, etag, cp->src->bucket, p->src_key, p->src_etag);
	else
		snap_debug("copied s3://%s/%s to s3://%s/%s (%s)", cp->src->bucket, p->src_key,
			   cp->dst->bucket, p->dst_key, etag);
	free(etag);
	return r;
}

/* The copies run on the pipeline (pipeline.h): the run thread hands out the parts in order,
 * up to `connections` workers copy them, and the sink counts each copied part, in order. */
static int copy_work(void *ctx, void *state, unsigned slot)
{
	(void)state;
	struct copier *cp = ctx;
	return copy_one(cp, &cp->parts[cp->slot_part[slot]]);
}

static int copy_sink(void *ctx, unsigned slot)
{
	struct copier *cp = ctx;
	uint64_t size = cp->parts[cp->slot_part[slot]].size;
	/* the run thread reads them while reporting (job-internal.h 3) */
	__atomic_fetch_add(&cp->job->progress.bytes_done, size, __ATOMIC_RELAXED);
	__atomic_fetch_add(&cp->job->progress.bytes_written, size, __ATOMIC_RELAXED);
	return 0;
}

static int copy_parts(struct copier *cp, unsigned nthreads)
{
	static const struct snap_pipeline_ops ops = {.work = copy_work, .sink = copy_sink};
	/* two slots a worker: one slow copy does not hold the others back at once */
	struct snap_pipeline_opts po = {.nworkers = nthreads, .nslots = 2 * nthreads};
	cp->slot_part = calloc(po.nslots, sizeof(*cp->slot_part));
	if (!cp->slot_part)
		return snap_job_fail(cp->job, -ENOMEM, "out of memory");
	struct snap_pipeline *p = NULL;
	int r = snap_pipeline_new(cp->job, &po, &ops, cp, &p);
	for (size_t i = 0; r == 0 && i < cp->nparts; i++) {
		unsigned slot;
		uint64_t seq;
		r = snap_pipeline_acquire(p, &slot, &seq);
		if (r == 0) {
			cp->slot_part[slot] = i;
			snap_pipeline_submit(p, false);
		}
	}
	if (r == 0)
		r = snap_pipeline_finish(p);
	snap_pipeline_free(p);
	free(cp->slot_part);
	cp->slot_part = NULL;
	return r;
}

/* The most bytes one CopyObject copies: S3's 5 GiB, or less for the tests of the UploadPartCopy
 * path (SNAPBUNDLE_TEST_COPY_PART_SIZE, at least SNAP_S3_MIN_PART_SIZE). */
static uint64_t single_copy_max(void)
{
	const char *e = getenv("SNAPBUNDLE_TEST_COPY_PART_SIZE");
	if (e && *e) {
		char *end;
		unsigned long long v = strtoull(e, &end, 10);
		if (!*end && v >= SNAP_S3_MIN_PART_SIZE && v <= SNAP_S3_MAX_PART_SIZE)
			return v;
	}
	return SNAP_S3_MAX_PART_SIZE;
}

int snap_migrate_bundle_run(struct snap_job *job)
{
	struct snap_s3_where src = {0}, dst = {0};
	struct snap_bundle_signer k = {0};
	struct snap_s3_list_objects *listed = NULL;
	struct copy_part *parts = NULL;
	struct snap_manifest_doc *m = NULL;
	char *map_text = NULL, *mkey = NULL, *dkey = NULL, *doc = NULL, *detail = NULL;
	char *text = NULL;
	size_t len = 0, dlen = 0, nparts = 0;
	char url[2200];
	const char *name = snap_job_string(job, SNAP_SPARAM_MANIFEST);
	if (!name || !*name)
		return snap_job_fail(job, -EINVAL, "no manifest name given");
	if (strchr(name, '/'))
		return snap_job_fail(job, -EINVAL, "manifest name %s is not a plain name", name);
	int r = where_parse(job, SNAP_SPARAM_S3_BUCKET, "source", &src);
	if (r >= 0)
		r = where_parse(job, SNAP_SPARAM_DEST_BUCKET, "destination", &dst);
	if (r < 0)
		goto out;
	if (!strcmp(src.bucket, dst.bucket) && !strcmp(src.prefix, dst.prefix)) {
		r = snap_job_fail(job, -EINVAL,
				  "source and destination are both s3://%s/%s: nothing to migrate",
				  src.bucket, src.prefix);
		goto out;
	}
	mkey = snap_s3_where_key(&src, name);
	dkey = snap_s3_where_key(&dst, name);
	if (!mkey || !dkey) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = prepare(job, &k, &map_text)) < 0)
		goto out;
	struct snap_s3_client *c;
	if ((r = snap_job_s3_client(job, &c)) < 0)
		goto out;

	/* the manifest, migrated before anything is copied (invariant 4) */
	snprintf(url, sizeof(url), "s3://%s/%s", src.bucket, mkey);
	if ((r = snap_bundle_manifest_get(job, c, src.bucket, mkey, &text, &len)) < 0 ||
	    (r = snap_bundle_manifest_parse(job, text, len, url, &m)) < 0 ||
	    (r = migrate_doc(job, &k, map_text, m, url, &doc, &dlen)) < 0)
		goto out;

	/* every part is in the source before anything is copied */
	if ((r = snap_job_s3_list(job, c, &src, &listed)) < 0)
		goto out;
	parts = calloc(m->nparts ? m->nparts : 1, sizeof(*parts));
	if (!parts) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	for (nparts = 0; nparts < m->nparts; nparts++) {
		struct copy_part *p = &parts[nparts];
		const char *pname = m->parts[nparts].filename;
		const struct snap_s3_object *o;
		r = snap_job_s3_listed_part(job, &src, listed, pname, url, &o);
		if (r >= 0) {
			p->src_key = strdup(o->key);
			p->dst_key = snap_s3_where_key(&dst, pname);
			if (!p->src_key || !p->dst_key)
				r = snap_job_fail(job, -ENOMEM, "out of memory");
		}
		if (r < 0) {
			nparts++;
			goto out;
		}
		p->size = o->size;
		p->src_etag = o->etag;
	}

	/* the destination bucket, made at --location when missing (a bucket that exists needs no
	 * CreateBucket permission) */
	struct snap_s3_list_objects *there = NULL;
	r = snap_s3_list_objects(c, dst.bucket, dst.prefix, &there, &detail);
	snap_s3_list_objects_free(there);
	if (r == -ENOENT) {
		free(detail);
		detail = NULL;
		const char *location = snap_job_string(job, SNAP_SPARAM_S3_LOCATION);
		if ((r = snap_job_s3_make_bucket(job, c, dst.bucket, location)) < 0)
			goto out;
		snap_info("made bucket %s%s%s", dst.bucket, location ? " at " : "",
			  location ? location : "");
	} else if (snap_job_s3_check(job, r, &detail, NULL) < 0) {
		goto out;
	}

	const char *acl = snap_job_s3_bundle_acl(job);
	snap_job_set_stage(job, SNAP_STAGE_DATA);
	unsigned nthreads = snap_job_s3_connections(job);
	if (nthreads > nparts)
		nthreads = nparts ? (unsigned)nparts : 1;
	uint64_t single_max = single_copy_max();
	struct copier cp = {
	    .job = job,
	    .c = c,
	    .src = &src,
	    .dst = &dst,
	    .acl = acl,
	    .parts = parts,
	    .nparts = nparts,
	    .single_max = single_max,
	    .range = single_max < SNAP_S3_MAX_PART_SIZE ? single_max : COPY_RANGE,
	};
	if ((r = copy_parts(&cp, nthreads)) < 0)
		goto out;

	/* the manifest last (invariant 4) */
	snap_job_set_stage(job, SNAP_STAGE_FINISH);
	struct snap_s3_put_options po = {.acl = acl, .content_type = "text/xml"};
	r = snap_s3_put_object(c, dst.bucket, dkey, doc, dlen, &po, NULL, &detail);
	if (snap_job_s3_check(job, r, &detail, NULL) < 0)
		goto out;
	snprintf(url, sizeof(url), "s3://%s/%s", dst.bucket, dkey);
	snap_job_set_result_string(job, SNAP_RESULT_OBJECT_URL, url);
	snap_job_set_result_string(job, SNAP_RESULT_MANIFEST_PATH, url);
	snap_job_set_result_u64(job, SNAP_RESULT_PARTS, nparts);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_TOTAL, job->progress.bytes_total);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, job->progress.bytes_written);
	r = 0;
out:
	for (size_t i = 0; parts && i < nparts; i++) {
		free(parts[i].src_key);
		free(parts[i].dst_key);
	}
	free(parts);
	snap_s3_list_objects_free(listed);
	snap_manifest_doc_free(m);
	free(doc);
	free(text);
	free(mkey);
	free(dkey);
	free(map_text);
	snap_bundle_signer_clear(&k);
	snap_s3_where_clear(&src);
	snap_s3_where_clear(&dst);
	return r;
}
