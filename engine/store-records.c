// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-records.c - the records a store writes around its frames (formats/STORE_FORMAT.md), from
 * the job's parameters and the volumes, for store.c (store-internal.h): the head (header, KEYS,
 * META: store_write_head) and the tail (INDEX, SIGNATURE, footer: store_write_tail); a
 * recipient's key slot for rekey.c too (store_recipient_slot). The records' bytes are encoded
 * by formats/store-format.c; what this file adds is what they say.
 *
 * Invariants:
 *  1. The keys decide the header: the ENCRYPTED feature bit is set from the KEYS built first,
 *     and SIGNATURE from whether a signing key is given; the META tag authenticates the header
 *     and KEYS before it when encrypted.
 *  2. The head's records are kept (s->keys_rec, s->meta_rec) for the signature, a replay of the
 *     head (store-s3.c invariant 3) and the checkpoint; META's offset, length and digest for the
 *     INDEX.
 *  3. The INDEX record is never held whole: it is encoded from the frame table in 256 KiB
 *     pieces, once for its tag and CRC, once more for the signature's digest when signed, and
 *     once as it is written, which must give the CRC of the first (store.c invariant 13).
 *  4. An S3 object is told its size (store_end_s3) before the INDEX is written, and the sources
 *     are thawed only after that, since a replay reads them again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "hex.h"
#include "job-internal.h"
#include "layout.h"
#include "log.h"
#include "store-internal.h"

/* ---- head ---- */

int store_recipient_slot(struct snap_job *job, const char *path, const char *what,
			 const uint8_t dk[SNAP_STORE_KEY_SIZE], struct snap_store_keyslot *ret)
{
	char *pem = NULL;
	size_t len = 0;
	const char *why = "";
	int r = snap_job_read_file(job, path, what, 1u << 20, &pem, &len);
	if (r < 0)
		return r;
	r = snap_store_slot_rsa_make(pem, len, dk, ret, &why);
	free(pem);
	if (r < 0)
		return snap_job_fail(job, r, "cannot use recipient %s: %s", path, why);
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
		/* readers accept what store writes (store-crypto.h); a shift by 64 or more would
		 * be undefined */
		int64_t log_n = snap_job_param(job, SNAP_PARAM_SCRYPT_LOG_N, 15);
		if (log_n < 1 || log_n > SNAP_STORE_SCRYPT_MAX_LOG_N) {
			r = snap_job_fail(job, -EINVAL,
					  "scrypt cost log2(N) must be 1 to %d, not %lld",
					  SNAP_STORE_SCRYPT_MAX_LOG_N, (long long)log_n);
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
		if ((r = store_recipient_slot(job, certs[i], NULL, s->dk, &k.slots[k.nslots])) < 0)
			goto out;
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

/* The AMI id the image and its S3 object are named after: SNAP_SPARAM_IMAGE_ID, else
 * ami- and 17 hex digits of the image id. */
const char *store_ami_id(const struct store_ctx *s, char buf[40])
{
	const char *id = snap_job_string(s->job, SNAP_SPARAM_IMAGE_ID);
	if (id)
		return id;
	memcpy(buf, "ami-", 4);
	snap_hex(buf + 4, s->image_id, 9);
	buf[21] = 0;
	return buf;
}

int store_meta(struct store_ctx *s, struct snap_store_meta *m)
{
	struct snap_job *job = s->job;
	uint64_t now = s->now;
	m->name = dup_or_null(snap_job_string(job, SNAP_SPARAM_NAME));
	m->description = dup_or_null(snap_job_string(job, SNAP_SPARAM_DESCRIPTION));
	m->arch = dup_or_null(snap_job_string(job, SNAP_SPARAM_ARCH));
	m->boot_mode = dup_or_null(snap_job_string(job, SNAP_SPARAM_BOOT_MODE));
	m->owner = dup_or_null(snap_job_string(job, SNAP_SPARAM_OWNER));
	char id[40];
	m->image_id = strdup(store_ami_id(s, id));
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

int store_write_head(struct store_ctx *s)
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
	if ((r = store_write_all(s, s->header, sizeof(s->header))) < 0)
		goto out;
	if (s->encrypted) {
		/* the KEYS record carries a plain SHA-256: the META tag authenticates it */
		r = snap_store_build_record(SNAP_STORE_REC_KEYS, keys_payload, keys_payload_len,
					    NULL, NULL, NULL, 0, &keys_rec, &keys_len);
		if (r < 0 || (r = store_write_all(s, keys_rec, keys_len)) < 0)
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
	if ((r = snap_store_sha256(meta_rec, meta_len, s->meta_digest)) < 0)
		goto out;
	r = store_write_all(s, meta_rec, meta_len);
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

/* ---- tail ---- */

/* The SIGNATURE record over header, KEYS, META and INDEX (formats/STORE_FORMAT.md); the INDEX
 * record by its SHA-256. */
static int store_sign(struct store_ctx *s, const uint8_t index_digest[SNAP_STORE_DIGEST_SIZE],
		      uint8_t **ret, size_t *ret_len)
{
	const char *keyfile = snap_job_string(s->job, SNAP_SPARAM_SIGNING_KEY);
	char *pem = NULL;
	size_t pem_len = 0;
	int r = snap_job_read_file(s->job, keyfile, NULL, 1u << 20, &pem, &pem_len);
	if (r < 0)
		return r;
	uint8_t msg[SNAP_STORE_SIGNED_MSG_SIZE];
	uint8_t *sig = NULL, *spki = NULL, *payload = NULL;
	size_t sl = 0, kl = 0, pl = 0;
	const char *why = "";
	r = snap_store_signed_message_digest(s->header, s->keys_rec, s->keys_len, s->meta_rec,
					     s->meta_len, index_digest, msg);
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

static int table_read(void *ctx, uint64_t first, size_t n, struct snap_store_index_frame *out)
{
	return store_table_read(ctx, first, n, out);
}

/* The INDEX of the frames in the table (read from it, not copied) and the volumes' extent
 * maps and digests. */
static int store_index(struct store_ctx *s, struct snap_store_index *ix)
{
	s->table_src = (struct snap_store_frame_source){table_read, s->table};
	*ix = (struct snap_store_index){
	    .meta_offset = s->meta_offset,
	    .meta_length = s->meta_length,
	    .nvolumes = (uint32_t)s->nvols,
	    .nframes = s->niframes,
	    .source = &s->table_src,
	};
	memcpy(ix->meta_digest, s->meta_digest, sizeof(ix->meta_digest));
	ix->vols = calloc(s->nvols, sizeof(*ix->vols));
	if (!ix->vols)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; i < s->nvols && r == 0; i++) {
		struct snap_store_index_volume *iv = &ix->vols[i];
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
		r = snap_store_volume_digest_source((uint32_t)i, snap_map_size(map), iv->extents,
						    iv->nextents, &s->table_src, iv->first_frame,
						    iv->nframes, iv->digest);
	}
	return r;
}

static int emit_write(void *ctx, const void *buf, size_t len)
{
	return store_write_all(ctx, buf, len);
}

/* The record's bytes as the seal saw them: the same frame table, the same CRC (its own field
 * read as zero, as the CRC covers it). */
static int store_write_index(struct store_ctx *s, const struct snap_store_index *ix,
			     const struct snap_store_record_seal *seal)
{
	uint32_t crc = 0;
	if (ix->nframes != s->niframes)
		return snap_job_fail(s->job, -EIO, "the index changed while it was written");
	int r = snap_store_index_record_stream(ix, seal, emit_write, s, &crc);
	if (r < 0) /* a write failed the job already */
		return r;
	if (crc != seal->crc)
		return snap_job_fail(s->job, -EIO, "the index changed while it was written");
	return 0;
}

/* The INDEX record is never held whole (bench/RESULTS.md, the end of a store): it is encoded
 * from the frame table in 256 KiB pieces, once for its tag and CRC, once more for the
 * signature's digest when signed, and once as it is written. */
int store_write_tail(struct store_ctx *s)
{
	struct snap_store_index ix;
	struct snap_store_record_seal seal;
	uint8_t *sig_rec = NULL;
	size_t sig_len = 0;
	int r = store_index(s, &ix);
	if (s->table && store_table_spilled(s->table))
		snap_debug("the frame table (%llu entries) was spilled to a temporary file",
			   (unsigned long long)s->niframes);
	if (r == 0)
		r = snap_store_index_record_seal(&ix, s->encrypted ? s->keys.mac : NULL, &seal);
	if (r < 0) {
		snap_store_index_clear(&ix);
		return snap_job_fail(s->job, r, "cannot build the index");
	}
	struct snap_store_footer ft = {
	    .index_offset = s->written,
	    .index_length = seal.length,
	    .image_size = s->written + seal.length + SNAP_STORE_FOOTER_SIZE,
	};
	memcpy(ft.image_id, s->image_id, SNAP_STORE_ID_SIZE);
	if (snap_job_string(s->job, SNAP_SPARAM_SIGNING_KEY)) {
		uint8_t digest[SNAP_STORE_DIGEST_SIZE];
		r = snap_store_index_record_digest(&ix, &seal, digest);
		if (r < 0)
			r = snap_job_fail(s->job, r, "cannot build the index");
		else
			r = store_sign(s, digest, &sig_rec, &sig_len);
	}
	ft.image_size += sig_len;
	uint8_t foot[SNAP_STORE_FOOTER_SIZE];
	snap_store_footer_encode(&ft, foot);
	if (r == 0 && s->url)
		r = store_end_s3(s, ft.image_size);
	if (r == 0) {
		/* the sources are read for the last time (store_end_s3) */
		for (size_t i = 0; i < s->nvols; i++)
			snap_layout_thaw(s->vols[i].layout);
		r = store_write_index(s, &ix, &seal);
	}
	snap_store_index_clear(&ix);
	if (r == 0 && sig_rec)
		r = store_write_all(s, sig_rec, sig_len);
	free(sig_rec);
	if (r == 0)
		r = store_write_all(s, foot, sizeof(foot));
	return r;
}
