// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-image.c - reading a .bin store image: its head (header, KEYS, META), its tail (INDEX,
 * footer), key recovery and authentication; a job's input opened (store_image_open_input). Used
 * by restore.c and rekey.c (a selection and its frames: store-image-data.c) and by the public
 * inspection API (snap_store_image_*).
 *
 * Invariants:
 *  1. Nothing decoded is trusted before its CRC was checked, and nothing is reported as
 *     authenticated before its tag was: SHA-256 for unencrypted images at once, HMAC-SHA256
 *     only after the data key was recovered (snap_store_image_unlock).
 *  2. The head is read with sequential reads only (store_image_read), so the same code serves
 *     a pipe; the tail needs a seekable input (footer first, then one read of the index).
 *  3. The first failure wins: img->error keeps the root cause, named by part and offset.
 *  4. An s3:// image is read through an s3 reader only (img->s3, fd unused): the same head,
 *     tail and frame reads become ranged GETs of the object as it was when opened; an object
 *     shorter than it said is truncated (-EUCLEAN, as a short file), one replaced meanwhile
 *     fails with -ESTALE.
 *
 * State transitions:
 *  1. new (snap_store_image_new) -> head read (snap_store_image_open / store_image_open_fd:
 *     header, KEYS, META)
 *  2. head read -> unlocked (snap_store_image_unlock: data key, META tag checked)
 *  3. head read -> indexed (store_image_load_index: footer, INDEX, structure checked)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hex.h"
#include "job-internal.h"
#include "sized.h"
#include "store-image.h"
#include "util.h"

int store_image_fail(struct snap_store_image *img, int err, const char *fmt, ...)
{
	if (err >= 0)
		err = -EIO;
	if (img->error)
		return err;
	img->errcode = err;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&img->error, fmt, ap) < 0)
		img->error = NULL;
	va_end(ap);
	return err;
}

int snap_store_image_new(struct snap_store_image **ret)
{
	struct snap_store_image *img = calloc(1, sizeof(*img));
	if (!img)
		return -ENOMEM;
	img->fd = -1;
	img->dk_scrypt_slot = -1;
	*ret = img;
	return 0;
}

struct snap_store_image *snap_store_image_free(struct snap_store_image *img)
{
	if (!img)
		return NULL;
	if (img->own_fd && img->fd >= 0)
		close(img->fd);
	snap_s3_reader_free(img->s3);
	free(img->seen);
	free(img->path);
	free(img->error);
	free(img->keys_rec);
	free(img->meta_rec);
	free(img->index_rec);
	free(img->sig_rec);
	snap_store_keys_clear(&img->keys);
	snap_store_meta_clear(&img->meta);
	snap_store_index_clear(&img->ix);
	OPENSSL_cleanse(&img->ks, sizeof(img->ks));
	OPENSSL_cleanse(img->dk, sizeof(img->dk));
	free(img->vol_digest_hex);
	free(img);
	return NULL;
}

const char *snap_store_image_error(const struct snap_store_image *img)
{
	return img->error ? img->error : "";
}

int store_image_plan(struct snap_store_image *img, const uint64_t (*ranges)[2], size_t n)
{
	return img->s3 ? snap_s3_reader_plan(img->s3, ranges, n) : 0;
}

int store_image_read(struct snap_store_image *img, void *buf, size_t len, const char *what)
{
	if (img->s3) {
		int r = store_image_pread(img, buf, len, img->pos, what);
		if (r == 0)
			img->pos += len;
		return r;
	}
	size_t got = 0;
	int r = snap_read_all(img->fd, buf, len, &got);
	if (r == -ENODATA)
		return store_image_fail(img, -EUCLEAN,
					"image truncated: end of %s at offset %llu inside the %s",
					img->path, (unsigned long long)(img->pos + got), what);
	if (r < 0)
		return store_image_fail(img, r, "cannot read %s at offset %llu: %s", img->path,
					(unsigned long long)(img->pos + got), strerror(-r));
	img->pos += len;
	img->bytes_read += len;
	return 0;
}

/* A file, or an object through the s3 reader (invariant 4): len bytes at off, counted once
 * read. */
int store_image_pread(struct snap_store_image *img, void *buf, size_t len, uint64_t off,
		      const char *what)
{
	char *d = NULL;
	size_t got = 0;
	int r;
	if (img->s3) {
		r = snap_s3_reader_pread(img->s3, buf, len, off, &d);
		if (r == 0 && off + len > snap_s3_reader_size(img->s3))
			r = -ENODATA;
	} else {
		r = snap_pread_all(img->fd, buf, len, off, &got);
	}
	if (r == -ENODATA)
		r = store_image_fail(img, -EUCLEAN,
				     "image truncated: %s at offset %llu of %s is missing", what,
				     (unsigned long long)(off + got), img->path);
	else if (r == -ESTALE && img->s3)
		r = store_image_fail(img, r, "%s changed while it was read (%s at offset %llu): %s",
				     img->path, what, (unsigned long long)off,
				     d ? d : strerror(-r));
	else if (r < 0)
		r = store_image_fail(img, r, "cannot read %s at offset %llu: %s", img->path,
				     (unsigned long long)(off + got), d ? d : strerror(-r));
	free(d);
	if (r == 0)
		img->bytes_read += len;
	return r;
}

int store_image_read_rest(struct snap_store_image *img, const uint8_t *pre, size_t len,
			  const char *what, uint8_t **ret)
{
	uint8_t *rec = malloc(len);
	if (!rec)
		return -ENOMEM;
	memcpy(rec, pre, SNAP_STORE_PREFIX_SIZE);
	int r =
	    store_image_read(img, rec + SNAP_STORE_PREFIX_SIZE, len - SNAP_STORE_PREFIX_SIZE, what);
	if (r < 0) {
		free(rec);
		return r;
	}
	*ret = rec;
	return 0;
}

/* Whether rec is one whole record of type, len bytes with room for its tag: 0, -EUCLEAN (a
 * bad prefix) or -EBADMSG (a CRC mismatch). */
static int record_check(const uint8_t *rec, size_t len, uint32_t type)
{
	struct snap_store_prefix p;
	if (snap_store_prefix_decode(rec, len, &p) < 0 || p.type != type || p.length != len ||
	    len < SNAP_STORE_PREFIX_SIZE + SNAP_STORE_TAG_SIZE)
		return -EUCLEAN;
	return snap_store_record_crc_ok(rec, len) ? 0 : -EBADMSG;
}

/* Reads one whole non-frame record of the expected type; checks its CRC. */
static int read_record(struct snap_store_image *img, uint32_t type, const char *what, uint8_t **ret,
		       size_t *ret_len)
{
	uint8_t pre[SNAP_STORE_PREFIX_SIZE];
	struct snap_store_prefix p;
	uint64_t at = img->pos;
	int r = store_image_read(img, pre, sizeof(pre), what);
	if (r < 0)
		return r;
	if (snap_store_prefix_decode(pre, sizeof(pre), &p) < 0 || p.type != type ||
	    p.length < SNAP_STORE_PREFIX_SIZE + SNAP_STORE_TAG_SIZE || p.length > (256u << 20))
		return store_image_fail(img, -EUCLEAN,
					"%s record at offset %llu is corrupt (bad prefix)", what,
					(unsigned long long)at);
	uint8_t *rec = NULL;
	if ((r = store_image_read_rest(img, pre, p.length, what, &rec)) < 0)
		return r;
	if (!snap_store_record_crc_ok(rec, p.length)) {
		free(rec);
		return store_image_fail(img, -EBADMSG,
					"%s record at offset %llu is corrupt (CRC mismatch)", what,
					(unsigned long long)at);
	}
	*ret = rec;
	*ret_len = p.length;
	return 0;
}

/* Checks the tag at the end of a record: MAC over pre buffers and the record up to the tag,
 * its CRC field read as zero. The record is fed in pieces around that field rather than
 * copied: an index can be tens of MiB. */
static int check_tag(struct snap_store_image *img, const uint8_t *rec, size_t len,
		     const void *const *pre, const size_t *pre_lens, size_t npre, const char *what)
{
	static const uint8_t zero_crc[4];
	const void *parts[5];
	size_t lens[5], n = 0;
	for (size_t i = 0; i < npre && i < 2; i++, n++) {
		parts[n] = pre[i];
		lens[n] = pre_lens[i];
	}
	uint8_t t[SNAP_STORE_TAG_SIZE];
	parts[n] = rec; /* type */
	lens[n++] = 4;
	parts[n] = zero_crc;
	lens[n++] = sizeof(zero_crc);
	parts[n] = rec + 8;
	lens[n++] = len - 8 - SNAP_STORE_TAG_SIZE;
	int r = snap_store_mac(img->unlocked ? img->ks.mac : NULL, parts, lens, n, t);
	if (r < 0)
		return r;
	if (!snap_store_ct_equal(t, rec + len - SNAP_STORE_TAG_SIZE, sizeof(t)))
		return store_image_fail(img, -EBADMSG, "%s authentication failed (tampered %s)",
					what, what);
	return 0;
}

static int check_meta_tag(struct snap_store_image *img)
{
	const void *pre[] = {img->header_raw, img->keys_rec};
	const size_t lens[] = {sizeof(img->header_raw), img->keys_len};
	int r = check_tag(img, img->meta_rec, img->meta_len, pre, lens, img->keys_rec ? 2 : 1,
			  "metadata");
	if (r == 0)
		img->meta_authenticated = true;
	return r;
}

/* Idempotent. Before the tag was checked only for display (inspect without a key). */
int store_image_decode_meta(struct snap_store_image *img)
{
	if (img->meta_decoded)
		return 0;
	const char *why = "";
	int r = snap_store_meta_decode(img->meta_rec + SNAP_STORE_PREFIX_SIZE,
				       img->meta_len - SNAP_STORE_PREFIX_SIZE - SNAP_STORE_TAG_SIZE,
				       &img->meta, &why);
	if (r < 0)
		return store_image_fail(img, r, "metadata record is corrupt: %s", why);
	img->meta_decoded = true;
	if (img->meta.nvolumes != img->hdr.volume_count)
		return store_image_fail(img, -EUCLEAN, "metadata lists %zu volumes, header %u",
					img->meta.nvolumes, img->hdr.volume_count);
	return 0;
}

/* Header, KEYS and META, read in order from img->pos (invariant 2). */
static int read_head(struct snap_store_image *img)
{
	const char *path = img->path;
	int r = store_image_read(img, img->header_raw, sizeof(img->header_raw), "header");
	if (r < 0)
		return r;
	const char *why = NULL;
	r = snap_store_header_decode(img->header_raw, sizeof(img->header_raw), &img->hdr, &why);
	if (r == -EOPNOTSUPP) {
		uint32_t incompat = snap_get_le32(img->header_raw + 20);
		if (snap_get_le32(img->header_raw + 8) != SNAP_STORE_VERSION)
			return store_image_fail(img, r, "%s: unsupported format version %u", path,
						snap_get_le32(img->header_raw + 8));
		return store_image_fail(
		    img, r, "%s: unsupported incompatible feature 0x%x (this version reads 0x%x)",
		    path, incompat & ~SNAP_STORE_INCOMPAT_SUPPORTED, SNAP_STORE_INCOMPAT_SUPPORTED);
	}
	if (r < 0)
		return store_image_fail(img, r, "%s: %s", path, why);
	if (img->hdr.incompat & SNAP_STORE_INCOMPAT_ENCRYPTED) {
		r = read_record(img, SNAP_STORE_REC_KEYS, "key", &img->keys_rec, &img->keys_len);
		if (r < 0)
			return r;
		if (check_tag(img, img->keys_rec, img->keys_len, NULL, NULL, 0, "key block") < 0 ||
		    snap_store_keys_decode(img->keys_rec + SNAP_STORE_PREFIX_SIZE,
					   img->keys_len - SNAP_STORE_PREFIX_SIZE -
					       SNAP_STORE_TAG_SIZE,
					   &img->keys) < 0)
			return store_image_fail(img, -EUCLEAN, "key record is corrupt");
	}
	img->meta_offset = img->pos;
	r = read_record(img, SNAP_STORE_REC_META, "metadata", &img->meta_rec, &img->meta_len);
	if (r < 0)
		return r;
	if (img->keys_rec)
		return 0; /* decoded once the tag was checked (snap_store_image_unlock) */
	if ((r = check_meta_tag(img)) < 0)
		return r;
	return store_image_decode_meta(img);
}

int store_image_open_fd(struct snap_store_image *img, int fd, const char *path, bool own_fd)
{
	img->fd = fd;
	img->own_fd = own_fd;
	img->path = strdup(path);
	if (!img->path)
		return -ENOMEM;
	struct stat st;
	img->seekable = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	if (img->seekable) {
		img->file_size = (uint64_t)st.st_size;
		off_t cur = lseek(fd, 0, SEEK_CUR);
		img->pos = cur > 0 ? (uint64_t)cur : 0;
	}
	return read_head(img);
}

/* What an S3 image plans for its head: header, KEYS and META are smaller on every image a
 * store writes (reads past it are still served, by the bytes they ask). */
#define HEAD_PLAN (256u << 10)

int store_image_open_s3(struct snap_store_image *img, struct snap_s3_client *c, const char *url)
{
	if (img->path)
		return -EBUSY;
	if (!(img->path = strdup(url)))
		return -ENOMEM;
	char *bucket = NULL, *key = NULL, *d = NULL;
	int r = snap_s3_url_parse(url, &bucket, &key, &d);
	if (r == 0 && !snap_s3_key_names_object(key)) {
		r = -EINVAL;
		free(d);
		d = strdup("a key is needed after the bucket");
	}
	if (r == 0)
		r = snap_s3_reader_open(c, bucket, key, &img->s3, &d);
	free(bucket);
	free(key);
	if (r < 0) {
		r = r == -ENOENT
			? store_image_fail(img, r, "%s does not exist: %s", url,
					   d ? d : "not found")
			: store_image_fail(img, r, "cannot open %s: %s", url, d ? d : strerror(-r));
		free(d);
		return r;
	}
	img->seekable = true;
	img->file_size = snap_s3_reader_size(img->s3);
	img->pos = 0;
	/* the head and the footer only: without a plan the reader's read-ahead of the head
	 * would fetch chunks of frames that a restore of one partition never needs */
	uint64_t head = img->file_size < HEAD_PLAN ? img->file_size : HEAD_PLAN;
	uint64_t foot = img->file_size > SNAP_STORE_FOOTER_SIZE ? SNAP_STORE_FOOTER_SIZE : 0;
	const uint64_t plan[2][2] = {{0, head}, {img->file_size - foot, img->file_size}};
	if ((r = snap_s3_reader_plan(img->s3, plan, foot && head < plan[1][0] ? 2 : 1)) < 0)
		return store_image_fail(img, r, "cannot read %s: %s", url, strerror(-r));
	return read_head(img);
}

int snap_store_image_open(struct snap_store_image *img, const char *path)
{
	if (img->path)
		return -EBUSY;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return store_image_fail(img, -errno, "cannot open %s: %s", path, strerror(errno));
	int r = store_image_open_fd(img, fd, path, true);
	if (r < 0 || (r = store_image_decode_meta(img)) < 0)
		return r;
	if (!img->seekable)
		return store_image_fail(img, -ESPIPE, "%s is not a regular file", path);
	return store_image_load_index(img);
}

/* An S3 image through the job's client (its failure is the job's already: the same text). */
static int open_job_s3(struct snap_store_image *img, struct snap_job *job, const char *url)
{
	struct snap_s3_client *c = NULL;
	int r = snap_job_s3_client(job, &c);
	if (r < 0)
		return store_image_fail(img, r, "cannot reach S3 for %s: %s", url,
					*snap_job_error(job) ? snap_job_error(job)
							     : snap_strerror(r));
	return store_image_open_s3(img, c, url);
}

int snap_store_image_open_s3(struct snap_store_image *img, struct snap_job *job, const char *url)
{
	if (img->path)
		return -EBUSY;
	int r = open_job_s3(img, job, url);
	if (r < 0 || (r = store_image_decode_meta(img)) < 0)
		return r;
	return store_image_load_index(img);
}

int store_image_open_input(struct snap_store_image *img, struct snap_job *job, const char *in)
{
	if (snap_s3_is_url(in))
		return open_job_s3(img, job, in);
	int fd;
	bool own = true;
	if (!strcmp(in, "-")) {
		fd = STDIN_FILENO;
		own = false;
	} else if ((fd = open(in, O_RDONLY | O_CLOEXEC)) < 0) {
		return store_image_fail(img, -errno, "cannot open %s: %s", in, strerror(errno));
	}
	int r = store_image_open_fd(img, fd, !strcmp(in, "-") ? "stdin" : in, own);
	if (r < 0)
		return r;
	/* a pipe is read once, in order; a file is read by random access */
	if (!strcmp(in, "-"))
		img->seekable = false;
	return 0;
}

static int read_file(struct snap_store_image *img, const char *path, char **ret, size_t *ret_len)
{
	int r = snap_read_small_file(path, 1u << 20, ret, ret_len);
	if (r < 0)
		return store_image_fail(img, r, "cannot read %s: %s", path,
					r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
	return 0;
}

int snap_store_image_unlock(struct snap_store_image *img, const char *passphrase,
			    const char *private_key_path)
{
	if (!img->keys_rec)
		return 0; /* not encrypted: the SHA-256 tags were checked at open */
	if (img->unlocked)
		return 0;
	uint8_t dk[SNAP_STORE_KEY_SIZE];
	int r = -ENOKEY, opened = -1;
	bool have_scrypt = false;
	for (size_t i = 0; i < img->keys.nslots; i++)
		have_scrypt |= img->keys.slots[i].type == SNAP_STORE_SLOT_SCRYPT;
	if (private_key_path) {
		char *pem = NULL;
		size_t len = 0;
		const char *why = "";
		if ((r = read_file(img, private_key_path, &pem, &len)) < 0)
			return r;
		r = snap_store_slots_rsa_open(&img->keys, pem, len, dk, &why);
		OPENSSL_cleanse(pem, len);
		free(pem);
		if (r < 0)
			return store_image_fail(img, r, "wrong key %s: %s", private_key_path, why);
	} else if (passphrase) {
		if (!have_scrypt)
			return store_image_fail(
			    img, -ENOKEY,
			    "the image has no passphrase slot (give a recipient key)");
		unsigned tries = 0;
		for (size_t i = 0; i < img->keys.nslots; i++) {
			const struct snap_store_keyslot *s = &img->keys.slots[i];
			if (s->type != SNAP_STORE_SLOT_SCRYPT)
				continue;
			if (!snap_store_slot_scrypt_allowed(s))
				return store_image_fail(
				    img, -EUCLEAN,
				    "%s: passphrase slot %zu asks for scrypt N=%llu r=%u "
				    "p=%u, more than a reader spends (N*r <= %llu, p <= %d)",
				    img->path, i, (unsigned long long)s->n, s->r, s->p,
				    SNAP_STORE_SCRYPT_MAX_NR, SNAP_STORE_SCRYPT_MAX_P);
			if (++tries > SNAP_STORE_SCRYPT_MAX_TRIES)
				return store_image_fail(
				    img, -EUCLEAN, "%s: more than %d passphrase slots; refused",
				    img->path, SNAP_STORE_SCRYPT_MAX_TRIES);
			r = snap_store_slot_scrypt_open(s, passphrase, strlen(passphrase),
							img->hdr.image_id, dk);
			if (r == 0) {
				opened = (int)i;
				break;
			}
		}
		if (r == -EKEYREJECTED)
			return store_image_fail(img, r, "wrong passphrase for %s", img->path);
		if (r < 0)
			return store_image_fail(img, r,
						"cannot derive the key from the passphrase");
	} else {
		return store_image_fail(
		    img, -ENOKEY, "%s is encrypted: give a passphrase or a private key", img->path);
	}
	r = snap_store_derive(dk, img->hdr.image_id, &img->ks);
	memcpy(img->dk, dk, sizeof(dk));
	img->dk_scrypt_slot = opened;
	OPENSSL_cleanse(dk, sizeof(dk));
	if (r < 0)
		return store_image_fail(img, r, "cannot derive the image keys");
	img->unlocked = true;
	if ((r = check_meta_tag(img)) < 0 || (r = store_image_decode_meta(img)) < 0)
		return r;
	if (img->index_rec && !img->index_authenticated) {
		r = check_tag(img, img->index_rec, img->index_len, NULL, NULL, 0, "index");
		if (r < 0)
			return r;
		img->index_authenticated = true;
	}
	return 0;
}

int store_image_set_index(struct snap_store_image *img, uint8_t *rec, size_t len, uint64_t at)
{
	int r = record_check(rec, len, SNAP_STORE_REC_INDEX);
	if (r < 0) {
		free(rec);
		return store_image_fail(img, r, "%s: index record at offset %llu is corrupt (%s)",
					img->path, (unsigned long long)at,
					r == -EUCLEAN ? "bad prefix" : "CRC mismatch");
	}
	img->index_rec = rec;
	img->index_len = len;
	img->index_offset = at;
	if (!img->keys_rec || img->unlocked) {
		r = check_tag(img, rec, len, NULL, NULL, 0, "index");
		if (r < 0)
			return r;
		img->index_authenticated = true;
	}
	uint64_t *sizes = calloc(img->meta.nvolumes, sizeof(*sizes));
	if (!sizes)
		return -ENOMEM;
	for (size_t i = 0; i < img->meta.nvolumes; i++)
		sizes[i] = img->meta.volumes[i].size;
	const char *why = "";
	r = snap_store_index_decode(rec + SNAP_STORE_PREFIX_SIZE,
				    len - SNAP_STORE_PREFIX_SIZE - SNAP_STORE_TAG_SIZE, sizes,
				    img->meta.nvolumes, &img->ix, &why);
	free(sizes);
	if (r < 0)
		return store_image_fail(img, r, "index is corrupt: %s", why);
	uint8_t md[SNAP_STORE_DIGEST_SIZE];
	if ((r = snap_store_sha256(img->meta_rec, img->meta_len, md)) < 0)
		return r;
	if (img->ix.meta_offset != img->meta_offset || img->ix.meta_length != img->meta_len ||
	    !snap_store_ct_equal(md, img->ix.meta_digest, sizeof(md)))
		return store_image_fail(img, -EBADMSG,
					"index does not belong to this metadata (spliced image)");
	/* frames are contiguous from the end of META to the index: nothing inserted or lost */
	uint64_t expect = img->meta_offset + img->meta_len;
	for (uint64_t i = 0; i < img->ix.nframes; i++) {
		const struct snap_store_index_frame *f = &img->ix.frames[i];
		if ((f->flags & ~SNAP_STORE_FRAME_KNOWN) ||
		    !(f->flags & SNAP_STORE_FRAME_ENCRYPTED) != !img->keys_rec ||
		    !snap_store_frame_lengths_ok(f->flags, f->raw_len, f->stored_len,
						 img->hdr.frame_size) ||
		    f->file_offset != expect)
			return store_image_fail(img, -EUCLEAN,
						"index entry of frame %llu is inconsistent",
						(unsigned long long)i);
		expect = snap_store_index_frame_end(f);
	}
	if (expect != at)
		return store_image_fail(img, -EUCLEAN,
					"index does not account for every byte before it");
	/* volume digests recomputed from the frame digests: no serial pass over the data */
	for (uint32_t v = 0; v < img->ix.nvolumes; v++) {
		const struct snap_store_index_volume *iv = &img->ix.vols[v];
		r = snap_store_volume_digest(v, img->meta.volumes[v].size, iv->extents,
					     iv->nextents, img->ix.frames + iv->first_frame,
					     iv->nframes, md);
		if (r < 0)
			return r;
		if (!snap_store_ct_equal(md, iv->digest, sizeof(md)))
			return store_image_fail(img, -EBADMSG,
						"volume %s: digest mismatch in the index",
						img->meta.volumes[v].device);
	}
	return 0;
}

int store_image_load_index(struct snap_store_image *img)
{
	uint8_t foot[SNAP_STORE_FOOTER_SIZE];
	if (img->file_size < SNAP_STORE_HEADER_SIZE + SNAP_STORE_FOOTER_SIZE)
		return store_image_fail(img, -EUCLEAN, "image truncated: %s has no footer",
					img->path);
	int r = store_image_pread(img, foot, sizeof(foot), img->file_size - sizeof(foot), "footer");
	if (r < 0)
		return r;
	const char *why = "";
	r = snap_store_footer_decode(foot, sizeof(foot), &img->ft, &why);
	if (r == -EUCLEAN && memcmp(foot, SNAP_STORE_FOOTER_MAGIC, 8) != 0)
		return store_image_fail(img, r, "image truncated: no footer at the end of %s",
					img->path);
	if (r < 0)
		return store_image_fail(img, r, "footer is corrupt: %s", why);
	if (img->ft.image_size != img->file_size)
		return store_image_fail(img, -EUCLEAN,
					"image truncated or extended: footer says %llu bytes, "
					"%s has %llu",
					(unsigned long long)img->ft.image_size, img->path,
					(unsigned long long)img->file_size);
	if (memcmp(img->ft.image_id, img->hdr.image_id, SNAP_STORE_ID_SIZE) != 0)
		return store_image_fail(img, -EBADMSG, "footer belongs to another image");
	if (img->ft.index_length > (1ull << 34))
		return store_image_fail(img, -EUCLEAN, "index too large");
	uint8_t *rec = malloc(img->ft.index_length);
	if (!rec)
		return -ENOMEM;
	/* an S3 image fetches the index and what follows it, nothing around it */
	const uint64_t tail[1][2] = {{img->ft.index_offset, img->file_size}};
	if (img->ft.index_offset < img->file_size && (r = store_image_plan(img, tail, 1)) < 0) {
		free(rec);
		return store_image_fail(img, r, "cannot read %s: %s", img->path, strerror(-r));
	}
	r = store_image_pread(img, rec, img->ft.index_length, img->ft.index_offset, "index");
	if (r < 0) {
		free(rec);
		return r;
	}
	r = store_image_set_index(img, rec, img->ft.index_length, img->ft.index_offset);
	if (r < 0)
		return r;
	/* between INDEX and footer: a SIGNATURE record when the header announces one, else
	 * nothing at all */
	uint64_t end = img->ft.index_offset + img->ft.index_length;
	uint64_t gap = img->ft.image_size - SNAP_STORE_FOOTER_SIZE - end;
	if (!(img->hdr.compat & SNAP_STORE_COMPAT_SIGNATURE)) {
		if (gap != 0)
			return store_image_fail(img, -EUCLEAN,
						"%llu unexpected bytes after the index",
						(unsigned long long)gap);
		return 0;
	}
	if (gap < SNAP_STORE_PREFIX_SIZE + SNAP_STORE_TAG_SIZE || gap > (1u << 20))
		return store_image_fail(img, -EUCLEAN, "signature record missing or malformed");
	uint8_t *srec = malloc(gap);
	if (!srec)
		return -ENOMEM;
	r = store_image_pread(img, srec, gap, end, "signature");
	if (r < 0) {
		free(srec);
		return r;
	}
	return store_image_set_signature(img, srec, gap);
}

int store_image_set_signature(struct snap_store_image *img, uint8_t *rec, size_t len)
{
	img->sig_rec = rec;
	img->sig_len = len;
	int r = record_check(rec, len, SNAP_STORE_REC_SIGNATURE);
	if (r < 0)
		return store_image_fail(img, r, "signature record is corrupt (%s)",
					r == -EUCLEAN ? "bad prefix" : "CRC mismatch");
	bool unlocked = img->unlocked;
	img->unlocked = false; /* the SIGNATURE tag is a plain SHA-256, like KEYS */
	r = check_tag(img, rec, len, NULL, NULL, 0, "signature record");
	img->unlocked = unlocked;
	if (r < 0)
		return r;
	if (snap_store_signature_decode(rec + SNAP_STORE_PREFIX_SIZE,
					len - SNAP_STORE_PREFIX_SIZE - SNAP_STORE_TAG_SIZE,
					&img->sig) < 0)
		return store_image_fail(img, -EUCLEAN, "signature record is corrupt");
	uint8_t msg[SNAP_STORE_SIGNED_MSG_SIZE];
	r = snap_store_signed_message(img->header_raw, img->keys_rec, img->keys_len, img->meta_rec,
				      img->meta_len, img->index_rec, img->index_len, msg);
	if (r < 0)
		return r;
	r = snap_store_verify(img->sig.spki, img->sig.spki_len, msg, sizeof(msg), img->sig.sig,
			      img->sig.sig_len);
	if (r == -EUCLEAN)
		return store_image_fail(img, r, "signature record holds no valid public key");
	if (r < 0)
		return store_image_fail(
		    img, -EBADMSG, "signature verification failed (tampered image or signature)");
	uint8_t id[SNAP_STORE_DIGEST_SIZE];
	if ((r = snap_store_sha256(img->sig.spki, img->sig.spki_len, id)) < 0)
		return r;
	snap_hex(img->signer_hex, id, sizeof(id));
	img->signature_valid = true;
	return 0;
}

int store_image_check_signer(struct snap_store_image *img, const char *pem_path)
{
	char *pem = NULL;
	size_t len = 0;
	int r = read_file(img, pem_path, &pem, &len);
	if (r < 0)
		return r;
	uint8_t *spki = NULL;
	size_t sl = 0;
	r = snap_store_spki_from_pem(pem, len, &spki, &sl);
	free(pem);
	if (r < 0)
		return store_image_fail(img, r, "%s holds no certificate or key", pem_path);
	bool same =
	    img->signature_valid && sl == img->sig.spki_len && memcmp(spki, img->sig.spki, sl) == 0;
	free(spki);
	if (!img->signature_valid)
		return store_image_fail(img, -EKEYREJECTED,
					"%s is not signed (a signature by %s is required)",
					img->path, pem_path);
	if (!same)
		return store_image_fail(img, -EKEYREJECTED,
					"%s is signed by another key than %s (signer %s)",
					img->path, pem_path, img->signer_hex);
	return 0;
}

/* ---- public inspection API ---- */

int snap_store_image_info(const struct snap_store_image *img, struct snap_store_info *ret)
{
	if (!img->meta_rec || snap_sized_check(ret) < 0)
		return -EINVAL;
	struct snap_store_info in = {
	    .version = img->hdr.version,
	    .compat = img->hdr.compat,
	    .incompat = img->hdr.incompat,
	    .ro_compat = img->hdr.ro_compat,
	    .frame_size = img->hdr.frame_size,
	    .encrypted = img->keys_rec != NULL,
	    .authenticated = img->meta_authenticated && img->index_authenticated,
	    .name = img->meta.name,
	    .description = img->meta.description,
	    .arch = img->meta.arch,
	    .boot_mode = img->meta.boot_mode,
	    .owner = img->meta.owner,
	    .image_id = img->meta.image_id,
	    .creation_time = img->meta.creation_time,
	    .store_time = img->meta.store_time,
	    .image_size = img->file_size,
	    .volumes = img->meta.nvolumes,
	    .frames = img->ix.nframes,
	    .keyslots = img->keys.nslots,
	};
	snap_hex(((struct snap_store_image *)img)->uuid_hex, img->hdr.image_id, SNAP_STORE_ID_SIZE);
	in.image_uuid = img->uuid_hex;
	in.signed_image = img->signature_valid;
	in.signer_key_id = img->signature_valid ? img->signer_hex : NULL;
	for (size_t i = 0; i < img->meta.nvolumes; i++)
		in.logical_bytes += img->meta.volumes[i].size;
	for (uint64_t i = 0; i < img->ix.nframes; i++) {
		in.data_bytes += img->ix.frames[i].raw_len;
		in.stored_bytes += img->ix.frames[i].stored_len;
	}
	snap_sized_copy(ret, &in, sizeof(in));
	return 0;
}

size_t snap_store_image_list_count(const struct snap_store_image *img, int list)
{
	switch (list) {
	case SNAP_STORE_LIST_TAGS:
		return img->meta.tags.n;
	case SNAP_STORE_LIST_BLOCK_DEVICE_MAPPINGS:
		return img->meta.bdm.n;
	case SNAP_STORE_LIST_S3_METADATA:
		return img->meta.s3.n;
	default:
		return 0;
	}
}

const char *snap_store_image_list(const struct snap_store_image *img, int list, size_t i)
{
	const struct snap_store_strlist *l = list == SNAP_STORE_LIST_TAGS ? &img->meta.tags
					     : list == SNAP_STORE_LIST_BLOCK_DEVICE_MAPPINGS
						 ? &img->meta.bdm
					     : list == SNAP_STORE_LIST_S3_METADATA ? &img->meta.s3
										   : NULL;
	return l && i < l->n ? l->v[i] : NULL;
}

int snap_store_image_volume(const struct snap_store_image *img, size_t i,
			    struct snap_store_volume_info *ret)
{
	if (i >= img->meta.nvolumes || !img->ix.vols || snap_sized_check(ret) < 0)
		return -EINVAL;
	const struct snap_store_volume *v = &img->meta.volumes[i];
	const struct snap_store_index_volume *iv = &img->ix.vols[i];
	struct snap_store_volume_info in = {
	    .device = v->device,
	    .size = v->size,
	    .logical_sector = v->logical_sector,
	    .physical_sector = v->physical_sector,
	    .ptable_type = v->ptable_type,
	    .ptable_id = v->ptable_id,
	    .partitions = v->nparts,
	    .extents = iv->nextents,
	    .first_frame = iv->first_frame,
	    .frames = iv->nframes,
	};
	for (size_t k = 0; k < iv->nextents; k++)
		in.bytes[iv->extents[k].kind] += iv->extents[k].length;
	for (uint64_t k = iv->first_frame; k < iv->first_frame + iv->nframes; k++)
		in.stored_bytes += img->ix.frames[k].stored_len;
	struct snap_store_image *m = (struct snap_store_image *)img;
	free(m->vol_digest_hex);
	m->vol_digest_hex = malloc(2 * SNAP_STORE_DIGEST_SIZE + 1);
	if (!m->vol_digest_hex)
		return -ENOMEM;
	snap_hex(m->vol_digest_hex, iv->digest, SNAP_STORE_DIGEST_SIZE);
	in.digest = m->vol_digest_hex;
	snap_sized_copy(ret, &in, sizeof(in));
	return 0;
}

int snap_store_image_partition(const struct snap_store_image *img, size_t vol, size_t i,
			       struct snap_partition_info *ret)
{
	if (vol >= img->meta.nvolumes || i >= img->meta.volumes[vol].nparts ||
	    snap_sized_check(ret) < 0)
		return -EINVAL;
	const struct snap_store_partition *p = &img->meta.volumes[vol].parts[i];
	const struct snap_partition_info in = {
	    .number = p->number,
	    .start = p->start,
	    .size = p->size,
	    .type = p->type,
	    .name = p->name,
	    .uuid = p->uuid,
	    .bootable = (int)p->bootable,
	    .fs_type = p->fs_type,
	    .fs_label = p->fs_label,
	    .fs_uuid = p->fs_uuid,
	};
	snap_sized_copy(ret, &in, sizeof(in));
	return 0;
}

int snap_store_image_extent(const struct snap_store_image *img, size_t vol, size_t i,
			    struct snap_extent *ret)
{
	if (vol >= img->ix.nvolumes || i >= img->ix.vols[vol].nextents || snap_sized_check(ret) < 0)
		return -EINVAL;
	snap_sized_copy(ret, &img->ix.vols[vol].extents[i], sizeof(struct snap_extent));
	return 0;
}

int snap_store_image_frame(const struct snap_store_image *img, uint64_t i,
			   struct snap_store_frame_info *ret)
{
	if (i >= img->ix.nframes || snap_sized_check(ret) < 0)
		return -EINVAL;
	const struct snap_store_index_frame *f = &img->ix.frames[i];
	struct snap_store_frame_info in = {
	    .index = i,
	    .file_offset = f->file_offset,
	    .volume = f->volume,
	    .offset = f->offset,
	    .raw_len = f->raw_len,
	    .stored_len = f->stored_len,
	    .compressed = (f->flags & SNAP_STORE_FRAME_DEFLATE) != 0,
	    .encrypted = (f->flags & SNAP_STORE_FRAME_ENCRYPTED) != 0,
	};
	memcpy(in.digest, f->digest, sizeof(in.digest));
	snap_sized_copy(ret, &in, sizeof(in));
	return 0;
}

int snap_store_image_probe(const char *path)
{
	uint8_t magic[sizeof(SNAP_STORE_MAGIC) - 1];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = pread(fd, magic, sizeof(magic), 0);
	int err = errno;
	close(fd);
	if (n < 0)
		return -err;
	return n == (ssize_t)sizeof(magic) && !memcmp(magic, SNAP_STORE_MAGIC, sizeof(magic));
}
