// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * rekey.c - SNAP_JOB_REKEY: a .bin store image with new key slots (recipients and passphrase
 * added or removed), optionally under a new data key, without recompressing anything
 * (formats/STORE_FORMAT.md, section 14 "Re-keying").
 *
 * Invariants:
 *  1. Nothing is decompressed or recompressed. Without a new data key every frame record is
 *     copied byte for byte (its AAD holds no file offset, so it stays valid wherever it lands);
 *     with one, each frame's payload is opened with the old frame key and sealed with the new
 *     one under a fresh nonce: GCM keeps the length, so every frame keeps its record length.
 *  2. The source is checked as a reader checks it before anything is written: the data key is
 *     recovered from a slot, the META and INDEX tags verify (snap_store_image_unlock), and each
 *     frame's header matches its index entry and its stored bytes match their digest (and, with
 *     a new data key, its GCM tag verifies) before its bytes go out.
 *  3. The new image is header, KEYS, META (payload unchanged, tag under the new MAC key over
 *     the new header and KEYS), the frames, a new INDEX (file offsets moved by the change of
 *     the KEYS length, the new META digest, new frame digests and volume digests with a new
 *     data key, tag under the new MAC key) and a new footer. A signature cannot survive (it
 *     covers KEYS and INDEX): it is dropped, with a warning, and compat SIGNATURE cleared.
 *  4. The frames go through the one pipeline (pipeline.h): the run thread reads runs of
 *     consecutive frame records into slots of fixed size, workers check (and re-seal) them in
 *     any order, the sink appends them in order to the output's sequential writer. Memory is
 *     the slots, allocated once: bounded whatever the image size.
 *  5. The output follows output.h's commit policy: a temporary next to the target renamed
 *     over it only after everything was written and synced, or an S3 object that appears only
 *     at the completion. --in-place is that commit onto the source's own name: until the
 *     rename the name holds the old image (the old keys open it), after it the new one (the
 *     new keys open it); a crash in between leaves the old image and a temporary that the next
 *     run in that directory reclaims.
 *
 * State transitions (snap_rekey_run):
 *  1. prepare: source opened, keys recovered, index loaded (rekey_open); new slots made
 *     (rekey_keys); output opened (rekey_output).
 *  2. head written (rekey_head).
 *  3. data: frames through the pipeline (rekey_frames).
 *  4. finish: index and footer written, output committed (rekey_tail).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hex.h"
#include "job-internal.h"
#include "log.h"
#include "output.h"
#include "pipeline.h"
#include "s3.h"
#include "store-crypto.h"
#include "store-format.h"
#include "store-image.h"
#include "store-internal.h"

/* Bytes of frame records per slot (at least one whole frame record). */
#define REKEY_SLOT_BYTES (4u << 20)

struct rk_slot {
	uint8_t *buf;
	size_t len;
	uint64_t first; /* number of its first frame */
	size_t nframes;
};

struct rk_worker {
	struct snap_store_cipher *old_c, *new_c;
};

struct rk_ctx {
	struct snap_job *job;
	struct snap_store_image *img;
	const char *in, *out_path;
	bool in_place, new_dk;
	int opened_scrypt; /* the passphrase slot that opened the image, or -1 */
	const char *pass;
	uint8_t dk[SNAP_STORE_KEY_SIZE]; /* the data key of the new image */
	struct snap_store_keyset ks;	 /* derived from it */
	struct snap_store_rng rng;	 /* unseeded: RAND_bytes */
	uint8_t header[SNAP_STORE_HEADER_SIZE];
	uint8_t *keys_rec, *meta_rec;
	size_t keys_len, meta_len;
	uint64_t frames_start;		       /* file offset of the first frame in the new image */
	struct snap_store_index_frame *frames; /* the new index's frames */
	struct snap_pipeline *pipe;
	struct rk_slot *slots;
	unsigned nslots;
	size_t slot_cap;
	struct snap_output *out;
	struct snap_output_seq *seq;
	uint64_t size; /* of the new image */
	_Atomic uint64_t written, frames_done;
};

/* ---- keys ---- */

static int key_id_of(struct rk_ctx *c, const char *path, uint8_t out[SNAP_STORE_DIGEST_SIZE])
{
	char *pem = NULL;
	size_t len = 0;
	uint8_t *spki = NULL;
	size_t spki_len = 0;
	int r = snap_job_read_file(c->job, path, "certificate", 1u << 20, &pem, &len);
	if (r < 0)
		return r;
	r = snap_store_spki_from_pem(pem, len, &spki, &spki_len);
	free(pem);
	if (r < 0)
		return snap_job_fail(c->job, r, "cannot read a public key from %s", path);
	r = snap_store_sha256(spki, spki_len, out);
	free(spki);
	return r;
}

static int slots_push(struct snap_store_keys *k, const struct snap_store_keyslot *s)
{
	struct snap_store_keyslot *v = realloc(k->slots, (k->nslots + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	k->slots = v;
	v[k->nslots] = *s;
	if (s->type == SNAP_STORE_SLOT_RSA_OAEP && s->rsa) {
		if (!(v[k->nslots].rsa = malloc(s->rsa_len)))
			return -ENOMEM;
		memcpy(v[k->nslots].rsa, s->rsa, s->rsa_len);
	}
	k->nslots++;
	return 0;
}

/* The new KEYS payload: the old slots less those removed (and, with a new data key, re-made),
 * then the added passphrase and recipients. */
static int rekey_keys(struct rk_ctx *c, uint8_t **ret, size_t *ret_len)
{
	struct snap_job *job = c->job;
	const struct snap_store_keys *old = &c->img->keys;
	const char **adds = NULL, **removes = NULL;
	size_t nadd = snap_job_list(job, SNAP_SPARAM_RECIPIENT_CERT, &adds);
	size_t nrem = snap_job_list(job, SNAP_SPARAM_REMOVE_RECIPIENT, &removes);
	const char *add_pass = snap_job_string(job, SNAP_SPARAM_ADD_PASSPHRASE);
	bool rm_pass = snap_job_param(job, SNAP_PARAM_REMOVE_PASSPHRASE, 0);
	uint8_t(*add_ids)[32] = calloc(nadd + 1, 32), (*rem_ids)[32] = calloc(nrem + 1, 32);
	bool *rem_hit = calloc(nrem + 1, sizeof(bool));
	struct snap_store_keys k = {0};
	struct snap_store_keyslot s;
	int r = add_ids && rem_ids && rem_hit ? 0 : -ENOMEM;
	bool had_pass = false;
	for (size_t i = 0; i < nadd && r == 0; i++)
		r = key_id_of(c, adds[i], add_ids[i]);
	for (size_t i = 0; i < nrem && r == 0; i++)
		r = key_id_of(c, removes[i], rem_ids[i]);
	for (size_t i = 0; i < old->nslots && r == 0; i++) {
		const struct snap_store_keyslot *o = &old->slots[i];
		if (o->type == SNAP_STORE_SLOT_SCRYPT) {
			had_pass = true;
			if (rm_pass)
				continue;
			if (!c->new_dk) {
				r = slots_push(&k, o);
			} else if ((int)i == c->opened_scrypt) {
				/* the passphrase given wraps the new key too, at the same cost */
				memset(&s, 0, sizeof(s));
				r = snap_store_slot_scrypt_make(c->pass, strlen(c->pass), c->dk,
								c->img->hdr.image_id, &c->rng, o->n,
								&s);
				if (r == 0)
					r = slots_push(&k, &s);
			} else {
				r = snap_job_fail(
				    job, -EINVAL,
				    "cannot keep passphrase slot %zu under a new data key "
				    "without its passphrase: open the image with it, or "
				    "remove the passphrase",
				    i);
			}
			continue;
		}
		if (o->type == SNAP_STORE_SLOT_RSA_OAEP) {
			bool drop = false;
			for (size_t j = 0; j < nrem; j++)
				if (!memcmp(rem_ids[j], o->key_id, 32))
					rem_hit[j] = drop = true;
			for (size_t j = 0; j < nadd; j++)
				drop |= !memcmp(add_ids[j], o->key_id, 32); /* made again below */
			if (drop)
				continue;
		}
		if (!c->new_dk) {
			r = slots_push(&k, o);
			continue;
		}
		char hex[65];
		snap_hex(hex, o->key_id, 32);
		r = o->type == SNAP_STORE_SLOT_RSA_OAEP
			? snap_job_fail(job, -EINVAL,
					"cannot keep recipient %s under a new data key without its "
					"certificate: add it again with its certificate, or remove "
					"it",
					hex)
			: snap_job_fail(job, -EINVAL,
					"cannot keep key slot %zu of unknown type %u under a new "
					"data key",
					i, o->type);
	}
	for (size_t j = 0; j < nrem && r == 0; j++)
		if (!rem_hit[j])
			r = snap_job_fail(job, -ENOENT, "recipient %s holds no key slot of %s",
					  removes[j], c->in);
	if (r == 0 && rm_pass && !had_pass)
		r = snap_job_fail(job, -ENOENT, "%s has no passphrase to remove", c->in);
	if (r == 0 && add_pass) {
		int64_t log_n = snap_job_param(job, SNAP_PARAM_SCRYPT_LOG_N, 15);
		unsigned npass = 0;
		for (size_t i = 0; i < k.nslots; i++)
			npass += k.slots[i].type == SNAP_STORE_SLOT_SCRYPT;
		if (log_n < 1 || log_n > SNAP_STORE_SCRYPT_MAX_LOG_N)
			r = snap_job_fail(job, -EINVAL, "scrypt cost log2(N) must be 1 to %d",
					  SNAP_STORE_SCRYPT_MAX_LOG_N);
		else if (npass >= SNAP_STORE_SCRYPT_MAX_TRIES)
			r = snap_job_fail(
			    job, -E2BIG,
			    "cannot add a passphrase: %s has %u already, as many as a "
			    "reader tries",
			    c->in, npass);
		memset(&s, 0, sizeof(s));
		if (r == 0)
			r = snap_store_slot_scrypt_make(add_pass, strlen(add_pass), c->dk,
							c->img->hdr.image_id, &c->rng,
							1ull << log_n, &s);
		if (r == 0)
			r = slots_push(&k, &s);
	}
	for (size_t i = 0; i < nadd && r == 0; i++) {
		memset(&s, 0, sizeof(s));
		if ((r = store_recipient_slot(job, adds[i], "certificate", c->dk, &s)) == 0)
			r = slots_push(&k, &s);
		free(s.rsa);
	}
	if (r == 0 && k.nslots == 0)
		r = snap_job_fail(job, -EINVAL,
				  "refusing to remove every key slot of %s: nothing could open it",
				  c->in);
	if (r == 0)
		r = snap_store_keys_encode(&k, ret, ret_len);
	snap_store_keys_clear(&k);
	OPENSSL_cleanse(&s, sizeof(s));
	free(adds);
	free(removes);
	free(add_ids);
	free(rem_ids);
	free(rem_hit);
	return r;
}

/* ---- prepare ---- */

static int rekey_open(struct rk_ctx *c)
{
	struct snap_job *job = c->job;
	c->in = snap_job_string(job, SNAP_SPARAM_INPUT);
	if (!c->in)
		return snap_job_fail(job, -EINVAL, "no input image given");
	if (!strcmp(c->in, "-"))
		return snap_job_fail(job, -EINVAL, "cannot re-key standard input: give a file");
	int r = snap_store_image_new(&c->img);
	if (r < 0)
		return r;
	if (snap_s3_is_url(c->in)) {
		struct snap_s3_client *s3c = NULL;
		if (c->in_place)
			return snap_job_fail(job, -EINVAL,
					     "cannot re-key %s in place: an S3 object is replaced "
					     "whole, give -o",
					     c->in);
		if ((r = snap_job_s3_client(job, &s3c)) < 0)
			return snap_job_fail(job, r, "cannot reach S3 for %s: %s", c->in,
					     snap_strerror(r));
		r = store_image_open_s3(c->img, s3c, c->in);
	} else {
		int fd = open(c->in, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return snap_job_fail(job, -errno, "cannot open %s: %s", c->in,
					     strerror(errno));
		struct stat st;
		if (c->in_place && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
			close(fd);
			return snap_job_fail(
			    job, -EINVAL, "cannot re-key %s in place: not a regular file", c->in);
		}
		r = store_image_open_fd(c->img, fd, c->in, true);
	}
	if (r < 0)
		return snap_job_fail(job, r, "%s", snap_store_image_error(c->img));
	if (!c->img->keys_rec)
		return snap_job_fail(job, -EINVAL, "%s is not encrypted: it has no keys to change",
				     c->in);
	c->pass = snap_job_string(job, SNAP_SPARAM_PASSPHRASE);
	const char *key = snap_job_string(job, SNAP_SPARAM_PRIVATE_KEY);
	if (!!c->pass == !!key)
		return snap_job_fail(job, -EINVAL,
				     "give the key that opens %s: a passphrase or a private key, "
				     "one of them",
				     c->in);
	if ((r = snap_store_image_unlock(c->img, c->pass, key)) < 0 ||
	    (r = store_image_load_index(c->img)) < 0)
		return snap_job_fail(job, r, "%s", snap_store_image_error(c->img));
	/* the source's data key, from the slot unlock opened with the key given */
	c->opened_scrypt = c->img->dk_scrypt_slot;
	if (c->new_dk)
		r = snap_store_random(&c->rng, "data key", 0, c->dk, sizeof(c->dk));
	else
		memcpy(c->dk, c->img->dk, sizeof(c->dk));
	if (r == 0)
		r = snap_store_derive(c->dk, c->img->hdr.image_id, &c->ks);
	if (r < 0)
		return snap_job_fail(job, r, "cannot make the new data key");
	return 0;
}

static int rekey_output(struct rk_ctx *c)
{
	struct snap_job *job = c->job;
	unsigned flags = SNAP_OUTPUT_APPEND;
	char *detail = NULL;
	int r;
	c->out_path = c->in_place ? c->in : snap_job_string(job, SNAP_SPARAM_OUTPUT);
	if (!c->out_path)
		return snap_job_fail(job, -EINVAL, "no output given (-o or in place)");
	flags |= snap_output_job_flags(job) | (c->in_place ? SNAP_OUTPUT_FORCE : 0);
	if (snap_s3_is_url(c->out_path)) {
		struct snap_s3_client *s3c = NULL;
		if ((r = snap_job_s3_client(job, &s3c)) < 0)
			return snap_job_fail(job, r, "cannot reach S3 for %s: %s", c->out_path,
					     snap_strerror(r));
		if (snap_s3_is_url(c->in) && !strcmp(c->in, c->out_path))
			return snap_job_fail(
			    job, -EINVAL, "%s is the source of this re-key: refusing to replace it",
			    c->out_path);
		struct snap_s3_put_options po = {.acl = snap_job_string(job, SNAP_SPARAM_S3_ACL)};
		struct snap_output_s3 o = {
		    .client = s3c,
		    .put = &po,
		    .part_size = (uint64_t)snap_job_param(job, SNAP_PARAM_S3_PART_SIZE, 0),
		};
		r = snap_output_open_s3(c->out_path, flags, &o, &c->out, &detail);
	} else {
		struct stat st;
		if (!c->in_place && !snap_s3_is_url(c->in) && stat(c->in, &st) == 0 &&
		    snap_output_is_file(c->out_path, &st))
			return snap_job_fail(
			    job, -EINVAL,
			    "%s is the source of this re-key: refusing to replace it "
			    "(re-key it in place instead)",
			    c->out_path);
		r = snap_output_open(c->out_path, 0, flags, &c->out, &detail);
	}
	if (r == 0)
		r = snap_output_seq_new(false, false, &c->seq);
	if (r < 0) {
		r = snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
		free(detail);
		return r;
	}
	snap_output_seq_start(c->seq, c->out);
	if (snap_output_is_s3(c->out)) {
		uint64_t at = 0;
		/* the size is known before the first byte: tell the writer now */
		r = snap_output_seq_s3_rewind(c->seq, c->size, &at);
		if (r < 0 || at != 0)
			return snap_job_fail(
			    job, r < 0 ? r : -EIO, "cannot upload %s: %s", c->out_path,
			    snap_output_seq_error(c->seq) ? snap_output_seq_error(c->seq)
							  : snap_strerror(r < 0 ? r : -EIO));
	}
	return 0;
}

/* ---- head ---- */

/* Header, KEYS and META of the new image, and where its frames begin (invariant 3). */
static int rekey_build_head(struct rk_ctx *c)
{
	struct snap_store_image *img = c->img;
	uint8_t *payload = NULL;
	size_t plen = 0;
	struct snap_store_header h = img->hdr;
	if (h.compat & SNAP_STORE_COMPAT_SIGNATURE)
		snap_warn("%s: the signature covers the old keys and index: the re-keyed image is "
			  "not signed",
			  c->in);
	h.compat &= ~SNAP_STORE_COMPAT_SIGNATURE;
	snap_store_header_encode(&h, c->header);
	int r = rekey_keys(c, &payload, &plen);
	if (r < 0)
		return r;
	r = snap_store_build_record(SNAP_STORE_REC_KEYS, payload, plen, NULL, NULL, NULL, 0,
				    &c->keys_rec, &c->keys_len);
	free(payload);
	if (r < 0)
		return snap_job_fail(c->job, r, "cannot build the key slots");
	/* the metadata payload as it was; its tag binds the new header and KEYS */
	size_t mplen = img->meta_len - SNAP_STORE_PREFIX_SIZE - SNAP_STORE_TAG_SIZE;
	const void *pre[] = {c->header, c->keys_rec};
	const size_t pre_lens[] = {sizeof(c->header), c->keys_len};
	r = snap_store_build_record(SNAP_STORE_REC_META, img->meta_rec + SNAP_STORE_PREFIX_SIZE,
				    mplen, c->ks.mac, pre, pre_lens, 2, &c->meta_rec, &c->meta_len);
	if (r < 0)
		return snap_job_fail(c->job, r, "cannot build the metadata");
	c->frames_start = SNAP_STORE_HEADER_SIZE + c->keys_len + c->meta_len;
	return 0;
}

/* ---- data ---- */

static int rekey_worker_init(void *ctx, unsigned i, void **ret)
{
	struct rk_ctx *c = ctx;
	(void)i;
	struct rk_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	int r = snap_store_cipher_new(&c->img->ks, &w->old_c);
	if (r == 0 && c->new_dk)
		r = snap_store_cipher_new(&c->ks, &w->new_c);
	if (r < 0) {
		snap_store_cipher_free(w->old_c);
		free(w);
		return r;
	}
	*ret = w;
	return 0;
}

static void rekey_worker_free(void *ctx, void *state)
{
	(void)ctx;
	struct rk_worker *w = state;
	if (!w)
		return;
	snap_store_cipher_free(w->old_c);
	snap_store_cipher_free(w->new_c);
	free(w);
}

/* One frame record at rec, frame k: checked against the source's index (invariant 2), and
 * with a new data key opened and sealed again in place (invariant 1). */
static int rekey_frame(struct rk_ctx *c, struct rk_worker *w, uint8_t *rec, uint64_t k)
{
	const struct snap_store_index_frame *e = &c->img->ix.frames[k];
	const uint8_t *id = c->img->hdr.image_id;
	struct snap_store_frame f;
	const char *why = "";
	uint8_t d[SNAP_STORE_DIGEST_SIZE], aad[SNAP_STORE_FRAME_AAD_SIZE];
	int r = snap_store_frame_decode(rec, SNAP_STORE_FRAME_HEADER_SIZE, c->img->hdr.frame_size,
					&f, &why);
	if (r < 0)
		return snap_pipeline_fail(c->pipe, r, "%s: frame %llu: %s", c->in,
					  (unsigned long long)k, why);
	if (f.index != k || f.volume != e->volume || f.flags != e->flags || f.offset != e->offset ||
	    f.raw_len != e->raw_len || f.stored_len != e->stored_len ||
	    memcmp(f.digest, e->digest, sizeof(f.digest)) ||
	    !(f.flags & SNAP_STORE_FRAME_ENCRYPTED))
		return snap_pipeline_fail(c->pipe, -EUCLEAN,
					  "%s: frame %llu does not match its index entry", c->in,
					  (unsigned long long)k);
	uint8_t *payload = rec + SNAP_STORE_FRAME_HEADER_SIZE;
	uint8_t *tag = payload + f.stored_len;
	if ((r = snap_store_cipher_digest(w->old_c, payload, f.stored_len, d)) < 0)
		return snap_pipeline_fail(c->pipe, r, "cannot hash frame %llu",
					  (unsigned long long)k);
	if (!snap_store_ct_equal(d, f.digest, sizeof(d)))
		return snap_pipeline_fail(c->pipe, -EBADMSG, "%s: frame %llu: digest mismatch",
					  c->in, (unsigned long long)k);
	if (!c->new_dk)
		return 0; /* copied as it is, its index entry with it */
	snap_store_frame_aad(id, rec, aad);
	r = snap_store_cipher_open(w->old_c, f.nonce, aad, sizeof(aad), payload, f.stored_len, tag);
	if (r < 0)
		return snap_pipeline_fail(c->pipe, r, "%s: frame %llu: authentication failed",
					  c->in, (unsigned long long)k);
	memset(f.digest, 0, sizeof(f.digest));
	if ((r = snap_store_random(&c->rng, "frame nonce", k, f.nonce, sizeof(f.nonce))) < 0)
		return snap_pipeline_fail(c->pipe, r, "cannot draw a nonce");
	snap_store_frame_encode(&f, rec);
	snap_store_frame_aad(id, rec, aad);
	r = snap_store_cipher_seal(w->new_c, f.nonce, aad, sizeof(aad), payload, f.stored_len, tag);
	if (r == 0)
		r = snap_store_cipher_digest(w->new_c, payload, f.stored_len, f.digest);
	if (r < 0)
		return snap_pipeline_fail(c->pipe, r, "cannot seal frame %llu",
					  (unsigned long long)k);
	snap_store_frame_encode(&f, rec);
	memcpy(c->frames[k].digest, f.digest, sizeof(f.digest));
	return 0;
}

static int rekey_work(void *ctx, void *state, unsigned i)
{
	struct rk_ctx *c = ctx;
	struct rk_slot *sl = &c->slots[i];
	size_t at = 0;
	for (size_t j = 0; j < sl->nframes; j++) {
		const struct snap_store_index_frame *e = &c->img->ix.frames[sl->first + j];
		int r = rekey_frame(c, state, sl->buf + at, sl->first + j);
		if (r < 0)
			return r;
		at += SNAP_STORE_FRAME_HEADER_SIZE + e->stored_len + SNAP_STORE_GCM_TAG_SIZE;
	}
	return 0;
}

static int rekey_sink(void *ctx, unsigned i)
{
	struct rk_ctx *c = ctx;
	struct rk_slot *sl = &c->slots[i];
	int r = snap_output_seq_write(c->seq, sl->buf, sl->len);
	if (r < 0)
		return snap_pipeline_fail(c->pipe, r, "%s", snap_output_seq_error(c->seq));
	atomic_fetch_add(&c->written, sl->len);
	atomic_fetch_add(&c->frames_done, sl->nframes);
	return 0;
}

static void rekey_progress(void *ctx)
{
	struct rk_ctx *c = ctx;
	c->job->progress.bytes_done = atomic_load(&c->written);
	c->job->progress.bytes_written = c->job->progress.bytes_done;
}

static const struct snap_pipeline_ops rekey_ops = {
    .worker_init = rekey_worker_init,
    .worker_free = rekey_worker_free,
    .work = rekey_work,
    .sink = rekey_sink,
    .progress = rekey_progress,
};

static uint64_t frame_rec_len(const struct snap_store_index_frame *e)
{
	return snap_store_index_frame_end(e) - e->file_offset;
}

static int rekey_frames(struct rk_ctx *c)
{
	struct snap_store_image *img = c->img;
	uint64_t n = img->ix.nframes;
	unsigned nw = snap_job_threads(c->job);
	if (n == 0)
		return 0;
	c->slot_cap = REKEY_SLOT_BYTES;
	for (uint64_t k = 0; k < n; k++)
		if (frame_rec_len(&img->ix.frames[k]) > c->slot_cap)
			c->slot_cap = frame_rec_len(&img->ix.frames[k]);
	c->nslots = 2 * nw + 2;
	c->slots = calloc(c->nslots, sizeof(*c->slots));
	if (!c->slots)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nslots; i++)
		if (!(c->slots[i].buf = malloc(c->slot_cap)))
			return -ENOMEM;
	/* an S3 source fetches the frames, nothing else */
	uint64_t range[1][2] = {{img->ix.frames[0].file_offset, img->index_offset}};
	int r = store_image_plan(img, (const uint64_t(*)[2])range, 1);
	if (r < 0)
		return snap_job_fail(c->job, r, "%s", snap_store_image_error(img));
	struct snap_pipeline_opts po = {.nworkers = nw, .nslots = c->nslots, .nice_workers = 10};
	if ((r = snap_pipeline_new(c->job, &po, &rekey_ops, c, &c->pipe)) < 0)
		return snap_job_fail(c->job, r, "cannot start worker threads");
	for (uint64_t k = 0; k < n && r == 0;) {
		unsigned si;
		uint64_t seq;
		if ((r = snap_pipeline_acquire(c->pipe, &si, &seq)) < 0)
			break;
		struct rk_slot *sl = &c->slots[si];
		sl->first = k;
		sl->nframes = 0;
		sl->len = 0;
		while (k < n && sl->len + frame_rec_len(&img->ix.frames[k]) <= c->slot_cap) {
			sl->len += frame_rec_len(&img->ix.frames[k]);
			sl->nframes++;
			k++;
		}
		r = store_image_pread(img, sl->buf, sl->len, img->ix.frames[sl->first].file_offset,
				      "frames");
		if (r < 0) {
			snap_pipeline_fail(c->pipe, r, "%s", snap_store_image_error(img));
			break;
		}
		snap_pipeline_submit(c->pipe, false);
	}
	int r2 = snap_pipeline_finish(c->pipe);
	return r < 0 ? r : r2;
}

/* ---- tail ---- */

static int rekey_tail(struct rk_ctx *c, uint8_t **ret, size_t *ret_len)
{
	struct snap_store_image *img = c->img;
	struct snap_store_index ix = img->ix;
	uint8_t *payload = NULL;
	size_t plen = 0;
	int r = 0;
	struct snap_store_index_volume *vols = calloc(ix.nvolumes ? ix.nvolumes : 1, sizeof(*vols));
	if (!vols)
		return -ENOMEM;
	memcpy(vols, ix.vols, ix.nvolumes * sizeof(*vols));
	ix.vols = vols;
	ix.frames = c->frames;
	ix.meta_offset = SNAP_STORE_HEADER_SIZE + c->keys_len;
	ix.meta_length = c->meta_len;
	r = snap_store_sha256(c->meta_rec, c->meta_len, ix.meta_digest);
	for (uint32_t v = 0; v < ix.nvolumes && r == 0 && c->new_dk; v++)
		r = snap_store_volume_digest(v, img->meta.volumes[v].size, vols[v].extents,
					     vols[v].nextents, c->frames + vols[v].first_frame,
					     vols[v].nframes, vols[v].digest);
	if (r == 0)
		r = snap_store_index_encode(&ix, &payload, &plen);
	if (r == 0)
		r = snap_store_build_record(SNAP_STORE_REC_INDEX, payload, plen, c->ks.mac, NULL,
					    NULL, 0, ret, ret_len);
	free(payload);
	free(vols);
	return r;
}

static int rekey_write(struct rk_ctx *c, const void *buf, size_t len)
{
	int r = snap_output_seq_write(c->seq, buf, len);
	if (r < 0)
		return snap_job_fail(c->job, r, "%s", snap_output_seq_error(c->seq));
	atomic_fetch_add(&c->written, len);
	return 0;
}

int snap_rekey_run(struct snap_job *job)
{
	struct rk_ctx c = {
	    .job = job,
	    .in_place = snap_job_param(job, SNAP_PARAM_IN_PLACE, 0),
	    .new_dk = snap_job_param(job, SNAP_PARAM_NEW_DATA_KEY, 0),
	    .opened_scrypt = -1,
	};
	uint8_t *index_rec = NULL;
	size_t index_len = 0;
	mode_t mode = 0;
	bool keep_mode = false;
	int r;
	if (c.in_place && snap_job_string(job, SNAP_SPARAM_OUTPUT)) {
		r = snap_job_fail(job, -EINVAL, "give either an output or in place, not both");
		goto out;
	}
	if ((r = rekey_open(&c)) < 0 || (r = rekey_build_head(&c)) < 0)
		goto out;
	struct snap_store_image *img = c.img;
	uint64_t n = img->ix.nframes;
	c.frames = calloc(n ? n : 1, sizeof(*c.frames));
	if (!c.frames) {
		r = -ENOMEM;
		goto out;
	}
	uint64_t old_start = img->meta_offset + img->meta_len, data_len = 0;
	for (uint64_t k = 0; k < n; k++) {
		c.frames[k] = img->ix.frames[k];
		c.frames[k].file_offset =
		    img->ix.frames[k].file_offset - old_start + c.frames_start;
		data_len += frame_rec_len(&img->ix.frames[k]);
	}
	/* the index's length does not depend on its values: build it once for its size */
	if ((r = rekey_tail(&c, &index_rec, &index_len)) < 0)
		goto out;
	free(index_rec);
	index_rec = NULL;
	c.size = c.frames_start + data_len + index_len + SNAP_STORE_FOOTER_SIZE;
	if (c.in_place) {
		struct stat st;
		if (stat(c.in, &st) == 0) {
			mode = st.st_mode & 07777;
			keep_mode = true;
		}
	}
	if ((r = rekey_output(&c)) < 0)
		goto out;
	job->progress.bytes_total = c.size;
	snap_job_set_stage(job, SNAP_STAGE_DATA);
	if ((r = rekey_write(&c, c.header, sizeof(c.header))) < 0 ||
	    (r = rekey_write(&c, c.keys_rec, c.keys_len)) < 0 ||
	    (r = rekey_write(&c, c.meta_rec, c.meta_len)) < 0)
		goto out;
	if ((r = rekey_frames(&c)) < 0)
		goto out;
	snap_job_set_stage(job, SNAP_STAGE_FINISH);
	if ((r = rekey_tail(&c, &index_rec, &index_len)) < 0) {
		r = snap_job_fail(job, r, "cannot build the index");
		goto out;
	}
	struct snap_store_footer ft = {
	    .index_offset = c.frames_start + data_len,
	    .index_length = index_len,
	    .image_size = c.size,
	};
	memcpy(ft.image_id, img->hdr.image_id, SNAP_STORE_ID_SIZE);
	uint8_t foot[SNAP_STORE_FOOTER_SIZE];
	snap_store_footer_encode(&ft, foot);
	if ((r = rekey_write(&c, index_rec, index_len)) < 0 ||
	    (r = rekey_write(&c, foot, sizeof(foot))) < 0)
		goto out;
	if (atomic_load(&c.written) != c.size) {
		r = snap_job_fail(job, -EIO, "internal error: wrote %llu bytes, not %llu",
				  (unsigned long long)atomic_load(&c.written),
				  (unsigned long long)c.size);
		goto out;
	}
	if ((r = snap_output_seq_end(c.seq)) < 0) {
		r = snap_job_fail(job, r, "%s", snap_output_seq_error(c.seq));
		goto out;
	}
	if (snap_job_cancelled(job)) {
		r = -ECANCELED;
		goto out;
	}
	char *detail = NULL;
	/* in place: the rename over the source is the switch (invariant 5) */
	r = snap_output_commit(c.out, &detail);
	if (r < 0) {
		snap_job_fail(job, r, "%s", detail ? detail : snap_strerror(r));
		free(detail);
		goto out;
	}
	free(detail);
	if (keep_mode && chmod(c.in, mode) < 0)
		snap_warn("cannot keep the mode of %s: %s", c.in, strerror(errno));
	snap_job_set_result_string(job, SNAP_RESULT_OUTPUT_PATH, c.out_path);
	if (snap_output_is_s3(c.out)) {
		snap_job_set_result_string(job, SNAP_RESULT_OBJECT_URL, c.out_path);
		snap_job_set_result_string(job, SNAP_RESULT_ETAG, snap_output_s3_etag(c.out));
	}
	rekey_progress(&c);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_TOTAL, c.size);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, c.size);
	snap_job_set_result_u64(job, SNAP_RESULT_BYTES_READ, img->bytes_read);
	snap_job_set_result_u64(job, SNAP_RESULT_FRAMES, n);
out:
	if (r == -ENOMEM)
		snap_job_fail(job, r, "out of memory");
	c.pipe = snap_pipeline_free(c.pipe);
	c.seq = snap_output_seq_free(c.seq);
	c.out = snap_output_free(c.out); /* removes the temporary unless committed */
	for (unsigned i = 0; c.slots && i < c.nslots; i++)
		free(c.slots[i].buf);
	free(c.slots);
	free(c.frames);
	free(index_rec);
	free(c.keys_rec);
	free(c.meta_rec);
	OPENSSL_cleanse(c.dk, sizeof(c.dk));
	OPENSSL_cleanse(&c.ks, sizeof(c.ks));
	c.img = snap_store_image_free(c.img);
	return r;
}
