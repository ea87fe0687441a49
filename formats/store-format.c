// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-format.c - encoders and decoders of the .bin store records (formats/STORE_FORMAT.md).
 * Invariants in store-format.h. The CRC is zlib's CRC-32 (polynomial 0xEDB88320, as gzip and
 * Python's zlib.crc32), so any reader can check it without this code.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "store-crypto.h"
#include "store-format.h"
#include "strbuf.h"

/* On-disk sizes are fixed by the spec; these anchor the offsets used below. */
_Static_assert(SNAP_STORE_HEADER_SIZE == 128, "header is 128 bytes");
_Static_assert(SNAP_STORE_FOOTER_SIZE == 64, "footer is 64 bytes");
_Static_assert(SNAP_STORE_FRAME_HEADER_SIZE == 96, "frame header is 96 bytes");
_Static_assert(SNAP_STORE_INDEX_FRAME_SIZE == 8 + 4 + 4 + 8 + 4 + 4 + 32, "index frame entry");
_Static_assert(SNAP_STORE_INDEX_EXTENT_SIZE == 8 + 8 + 1 + 1 + 2 + 4, "index extent entry");
_Static_assert(SNAP_STORE_SCRYPT_SLOT_SIZE == 32 + 8 + 4 + 4 + 12 + 32 + 16, "scrypt slot");
_Static_assert(sizeof(SNAP_STORE_MAGIC) - 1 == 8 && sizeof(SNAP_STORE_FOOTER_MAGIC) - 1 == 8,
	       "magics are 8 bytes");

/* the layouts of store-format.h, pinned to STORE_FORMAT.md */
#define HDR(f) SNAP_STORE_AT(snap_store_disk_header, f)
#define PFX(f) SNAP_STORE_AT(snap_store_disk_prefix, f)
#define FRM(f) SNAP_STORE_AT(snap_store_disk_frame, f)
#define FTR(f) SNAP_STORE_AT(snap_store_disk_footer, f)
#define EXT(f) SNAP_STORE_AT(snap_store_disk_extent, f)
#define IFR(f) SNAP_STORE_AT(snap_store_disk_iframe, f)
_Static_assert(sizeof(struct snap_store_disk_header) == SNAP_STORE_HEADER_SIZE, "header");
_Static_assert(HDR(version) == 8 && HDR(header_size) == 12 && HDR(compat) == 16 &&
		   HDR(incompat) == 20 && HDR(ro_compat) == 24 && HDR(frame_size) == 28 &&
		   HDR(image_id) == 32 && HDR(volume_count) == 48 && HDR(block_size) == 52 &&
		   HDR(reserved) == 56 && HDR(crc) == 124,
	       "header fields");
_Static_assert(sizeof(struct snap_store_disk_prefix) == SNAP_STORE_PREFIX_SIZE, "prefix");
_Static_assert(PFX(type) == 0 && PFX(crc) == 4 && PFX(length) == 8, "prefix fields");
_Static_assert(sizeof(struct snap_store_disk_frame) == SNAP_STORE_FRAME_HEADER_SIZE, "frame");
_Static_assert(FRM(volume) == 16 && FRM(flags) == 20 && FRM(index) == 24 && FRM(offset) == 32 &&
		   FRM(raw_len) == 40 && FRM(stored_len) == 44 && FRM(nonce) == 48 &&
		   FRM(reserved) == 60 && FRM(digest) == 64,
	       "frame header fields");
_Static_assert(FRM(digest) + SNAP_STORE_ID_SIZE == SNAP_STORE_FRAME_AAD_SIZE, "AAD");
_Static_assert(sizeof(struct snap_store_disk_footer) == SNAP_STORE_FOOTER_SIZE, "footer");
_Static_assert(FTR(index_offset) == 8 && FTR(index_length) == 16 && FTR(image_size) == 24 &&
		   FTR(image_id) == 32 && FTR(reserved) == 48 && FTR(crc) == 60,
	       "footer fields");
_Static_assert(sizeof(struct snap_store_disk_extent) == SNAP_STORE_INDEX_EXTENT_SIZE, "extent");
_Static_assert(EXT(length) == 8 && EXT(kind) == 16 && EXT(layer) == 17 && EXT(reserved) == 18 &&
		   EXT(partition) == 20,
	       "index extent fields");
_Static_assert(sizeof(struct snap_store_disk_iframe) == SNAP_STORE_INDEX_FRAME_SIZE, "iframe");
_Static_assert(IFR(volume) == 8 && IFR(flags) == 12 && IFR(offset) == 16 && IFR(raw_len) == 24 &&
		   IFR(stored_len) == 28 && IFR(digest) == 32,
	       "index frame fields");

static uint32_t crc32_of(const uint8_t *buf, size_t len)
{
	return (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), buf, len);
}

/* CRC over buf with the 4 bytes at crc_at taken as zero. */
static uint32_t crc32_skip(const uint8_t *buf, size_t len, size_t crc_at)
{
	static const uint8_t zero[4];
	uLong c = crc32_z(crc32(0L, Z_NULL, 0), buf, crc_at);
	c = crc32(c, zero, 4);
	return (uint32_t)crc32_z(c, buf + crc_at + 4, len - crc_at - 4);
}

static void set_detail(const char **d, const char *s)
{
	if (d)
		*d = s;
}

/* ---- header ---- */

void snap_store_header_encode(const struct snap_store_header *h,
			      uint8_t out[SNAP_STORE_HEADER_SIZE])
{
	memset(out, 0, SNAP_STORE_HEADER_SIZE);
	memcpy(out + HDR(magic), SNAP_STORE_MAGIC, 8);
	snap_put_le32(out + HDR(version), h->version);
	snap_put_le32(out + HDR(header_size), SNAP_STORE_HEADER_SIZE);
	snap_put_le32(out + HDR(compat), h->compat);
	snap_put_le32(out + HDR(incompat), h->incompat);
	snap_put_le32(out + HDR(ro_compat), h->ro_compat);
	snap_put_le32(out + HDR(frame_size), h->frame_size);
	memcpy(out + HDR(image_id), h->image_id, SNAP_STORE_ID_SIZE);
	snap_put_le32(out + HDR(volume_count), h->volume_count);
	snap_put_le32(out + HDR(block_size), h->block_size);
	snap_put_le32(out + HDR(crc), crc32_of(out, HDR(crc)));
}

int snap_store_header_decode(const uint8_t *buf, size_t len, struct snap_store_header *ret,
			     const char **ret_detail)
{
	if (len < SNAP_STORE_HEADER_SIZE) {
		set_detail(ret_detail, "image shorter than its header (truncated)");
		return -EUCLEAN;
	}
	if (memcmp(buf + HDR(magic), SNAP_STORE_MAGIC, 8) != 0) {
		set_detail(ret_detail, "not a snapbundle store image (bad magic)");
		return -EUCLEAN;
	}
	if (crc32_of(buf, HDR(crc)) != snap_get_le32(buf + HDR(crc))) {
		set_detail(ret_detail, "header CRC mismatch");
		return -EBADMSG;
	}
	struct snap_store_header h = {
	    .version = snap_get_le32(buf + HDR(version)),
	    .compat = snap_get_le32(buf + HDR(compat)),
	    .incompat = snap_get_le32(buf + HDR(incompat)),
	    .ro_compat = snap_get_le32(buf + HDR(ro_compat)),
	    .frame_size = snap_get_le32(buf + HDR(frame_size)),
	    .volume_count = snap_get_le32(buf + HDR(volume_count)),
	    .block_size = snap_get_le32(buf + HDR(block_size)),
	};
	memcpy(h.image_id, buf + HDR(image_id), SNAP_STORE_ID_SIZE);
	if (h.version != SNAP_STORE_VERSION) {
		set_detail(ret_detail, "unsupported format version");
		return -EOPNOTSUPP;
	}
	if (h.incompat & ~SNAP_STORE_INCOMPAT_SUPPORTED) {
		set_detail(ret_detail, "unknown incompatible feature in header");
		return -EOPNOTSUPP;
	}
	if (snap_get_le32(buf + HDR(header_size)) != SNAP_STORE_HEADER_SIZE || h.frame_size == 0 ||
	    h.frame_size > SNAP_STORE_MAX_FRAME || h.block_size != SNAP_STORE_BLOCK_SIZE ||
	    h.volume_count == 0 || h.volume_count > 4096) {
		set_detail(ret_detail, "invalid header field");
		return -EUCLEAN;
	}
	*ret = h;
	return 0;
}

/* ---- record prefix ---- */

void snap_store_prefix_encode(uint8_t *out, uint32_t type, uint64_t length)
{
	snap_put_le32(out + PFX(type), type);
	snap_put_le32(out + PFX(crc), 0);
	snap_put_le64(out + PFX(length), length);
}

int snap_store_prefix_decode(const uint8_t *buf, size_t len, struct snap_store_prefix *ret)
{
	if (len < SNAP_STORE_PREFIX_SIZE)
		return -EUCLEAN;
	struct snap_store_prefix p = {
	    .type = snap_get_le32(buf + PFX(type)),
	    .crc = snap_get_le32(buf + PFX(crc)),
	    .length = snap_get_le64(buf + PFX(length)),
	};
	if (p.type < SNAP_STORE_REC_KEYS || p.type > SNAP_STORE_REC_SIGNATURE ||
	    p.length < SNAP_STORE_PREFIX_SIZE || p.length > SNAP_STORE_MAX_RECORD)
		return -EUCLEAN;
	*ret = p;
	return 0;
}

void snap_store_record_set_crc(uint8_t *rec, size_t len)
{
	snap_put_le32(rec + PFX(crc), crc32_skip(rec, len, PFX(crc)));
}

bool snap_store_record_crc_ok(const uint8_t *rec, size_t len)
{
	return len >= SNAP_STORE_PREFIX_SIZE &&
	       crc32_skip(rec, len, PFX(crc)) == snap_get_le32(rec + PFX(crc));
}

/* ---- frames ---- */

uint64_t snap_store_frame_record_len(const struct snap_store_frame *f)
{
	return SNAP_STORE_FRAME_HEADER_SIZE + (uint64_t)f->stored_len +
	       ((f->flags & SNAP_STORE_FRAME_ENCRYPTED) ? SNAP_STORE_GCM_TAG_SIZE : 0);
}

uint64_t snap_store_index_frame_end(const struct snap_store_index_frame *e)
{
	struct snap_store_frame f = {.flags = e->flags, .stored_len = e->stored_len};
	return e->file_offset + snap_store_frame_record_len(&f);
}

void snap_store_frame_encode(const struct snap_store_frame *f,
			     uint8_t out[SNAP_STORE_FRAME_HEADER_SIZE])
{
	memset(out, 0, SNAP_STORE_FRAME_HEADER_SIZE);
	snap_store_prefix_encode(out, SNAP_STORE_REC_FRAME, snap_store_frame_record_len(f));
	snap_put_le32(out + FRM(volume), f->volume);
	snap_put_le32(out + FRM(flags), f->flags);
	snap_put_le64(out + FRM(index), f->index);
	snap_put_le64(out + FRM(offset), f->offset);
	snap_put_le32(out + FRM(raw_len), f->raw_len);
	snap_put_le32(out + FRM(stored_len), f->stored_len);
	memcpy(out + FRM(nonce), f->nonce, SNAP_STORE_NONCE_SIZE);
	memcpy(out + FRM(digest), f->digest, SNAP_STORE_DIGEST_SIZE);
	snap_put_le32(out + FRM(prefix.crc),
		      crc32_skip(out, SNAP_STORE_FRAME_HEADER_SIZE, FRM(prefix.crc)));
}

void snap_store_frame_aad(const uint8_t image_id[SNAP_STORE_ID_SIZE],
			  const uint8_t header[SNAP_STORE_FRAME_HEADER_SIZE],
			  uint8_t out[SNAP_STORE_FRAME_AAD_SIZE])
{
	memcpy(out, image_id, SNAP_STORE_ID_SIZE);
	memcpy(out + SNAP_STORE_ID_SIZE, header, FRM(digest));
	memset(out + SNAP_STORE_ID_SIZE + FRM(prefix.crc), 0, 4);
}

bool snap_store_frame_lengths_ok(uint32_t flags, uint32_t raw_len, uint32_t stored_len,
				 uint32_t max_raw)
{
	if (raw_len == 0 || raw_len > max_raw || raw_len > UINT32_MAX - SNAP_STORE_FRAME_TRAILER_SIZE)
		return false;
	if (!(flags & SNAP_STORE_FRAME_DEFLATE))
		return stored_len == raw_len + SNAP_STORE_FRAME_TRAILER_SIZE;
	return stored_len > SNAP_STORE_FRAME_TRAILER_SIZE &&
	       stored_len - SNAP_STORE_FRAME_TRAILER_SIZE < raw_len;
}

int snap_store_frame_decode(const uint8_t *buf, size_t len, uint32_t max_raw,
			    struct snap_store_frame *ret, const char **ret_detail)
{
	if (len < SNAP_STORE_FRAME_HEADER_SIZE) {
		set_detail(ret_detail, "frame header truncated");
		return -EUCLEAN;
	}
	if (snap_get_le32(buf + FRM(prefix.type)) != SNAP_STORE_REC_FRAME) {
		set_detail(ret_detail, "not a frame record");
		return -EUCLEAN;
	}
	if (crc32_skip(buf, SNAP_STORE_FRAME_HEADER_SIZE, FRM(prefix.crc)) !=
	    snap_get_le32(buf + FRM(prefix.crc))) {
		set_detail(ret_detail, "frame header CRC mismatch");
		return -EBADMSG;
	}
	struct snap_store_frame f = {
	    .volume = snap_get_le32(buf + FRM(volume)),
	    .flags = snap_get_le32(buf + FRM(flags)),
	    .index = snap_get_le64(buf + FRM(index)),
	    .offset = snap_get_le64(buf + FRM(offset)),
	    .raw_len = snap_get_le32(buf + FRM(raw_len)),
	    .stored_len = snap_get_le32(buf + FRM(stored_len)),
	};
	memcpy(f.nonce, buf + FRM(nonce), SNAP_STORE_NONCE_SIZE);
	memcpy(f.digest, buf + FRM(digest), SNAP_STORE_DIGEST_SIZE);
	if (f.flags & ~SNAP_STORE_FRAME_KNOWN) {
		set_detail(ret_detail, "unknown frame flag");
		return -EOPNOTSUPP;
	}
	if (!snap_store_frame_lengths_ok(f.flags, f.raw_len, f.stored_len, max_raw) ||
	    snap_get_le64(buf + FRM(prefix.length)) != snap_store_frame_record_len(&f) ||
	    snap_get_le32(buf + FRM(reserved)) != 0 || f.offset > UINT64_MAX - f.raw_len) {
		set_detail(ret_detail, "invalid frame header field");
		return -EUCLEAN;
	}
	*ret = f;
	return 0;
}

/* ---- footer ---- */

void snap_store_footer_encode(const struct snap_store_footer *f,
			      uint8_t out[SNAP_STORE_FOOTER_SIZE])
{
	memset(out, 0, SNAP_STORE_FOOTER_SIZE);
	memcpy(out + FTR(magic), SNAP_STORE_FOOTER_MAGIC, 8);
	snap_put_le64(out + FTR(index_offset), f->index_offset);
	snap_put_le64(out + FTR(index_length), f->index_length);
	snap_put_le64(out + FTR(image_size), f->image_size);
	memcpy(out + FTR(image_id), f->image_id, SNAP_STORE_ID_SIZE);
	snap_put_le32(out + FTR(crc), crc32_of(out, FTR(crc)));
}

int snap_store_footer_decode(const uint8_t *buf, size_t len, struct snap_store_footer *ret,
			     const char **ret_detail)
{
	if (len < SNAP_STORE_FOOTER_SIZE ||
	    memcmp(buf + FTR(magic), SNAP_STORE_FOOTER_MAGIC, 8) != 0) {
		set_detail(ret_detail, "no footer at the end of the image (truncated object?)");
		return -EUCLEAN;
	}
	if (crc32_of(buf, FTR(crc)) != snap_get_le32(buf + FTR(crc))) {
		set_detail(ret_detail, "footer CRC mismatch");
		return -EBADMSG;
	}
	struct snap_store_footer f = {
	    .index_offset = snap_get_le64(buf + FTR(index_offset)),
	    .index_length = snap_get_le64(buf + FTR(index_length)),
	    .image_size = snap_get_le64(buf + FTR(image_size)),
	};
	memcpy(f.image_id, buf + FTR(image_id), SNAP_STORE_ID_SIZE);
	if (f.index_length < SNAP_STORE_PREFIX_SIZE + SNAP_STORE_TAG_SIZE ||
	    f.index_offset < SNAP_STORE_HEADER_SIZE || f.image_size < SNAP_STORE_FOOTER_SIZE ||
	    f.index_length > f.image_size - SNAP_STORE_FOOTER_SIZE ||
	    f.index_offset > f.image_size - SNAP_STORE_FOOTER_SIZE - f.index_length) {
		set_detail(ret_detail, "invalid footer field");
		return -EUCLEAN;
	}
	*ret = f;
	return 0;
}

/* ---- writing into a snap_strbuf, and a cursor ---- */

static void sb_le32(struct snap_strbuf *b, uint32_t v)
{
	uint8_t t[4];
	snap_put_le32(t, v);
	snap_strbuf_add(b, t, sizeof(t));
}

static void sb_le64(struct snap_strbuf *b, uint64_t v)
{
	uint8_t t[8];
	snap_put_le64(t, v);
	snap_strbuf_add(b, t, sizeof(t));
}

/* Hands a payload over as bytes (snap_strbuf_take: the sticky error, *ret untouched on it). */
static int sb_take(struct snap_strbuf *b, uint8_t **ret, size_t *ret_len)
{
	char *p;
	int r = snap_strbuf_take(b, &p, ret_len);
	if (r == 0)
		*ret = (uint8_t *)p;
	return r;
}

/* TLV: le16 key, le32 length, value. Keys with bit 15 set are critical. */
#define TLV_CRITICAL 0x8000u

static void tlv_raw(struct snap_strbuf *b, uint16_t key, const void *v, size_t n)
{
	uint8_t h[6] = {(uint8_t)key, (uint8_t)(key >> 8)};
	snap_put_le32(h + 2, (uint32_t)n);
	snap_strbuf_add(b, h, sizeof(h));
	snap_strbuf_add(b, v, n);
}

static void tlv_str(struct snap_strbuf *b, uint16_t key, const char *s)
{
	if (s)
		tlv_raw(b, key, s, strlen(s));
}

static void tlv_u64(struct snap_strbuf *b, uint16_t key, uint64_t v)
{
	uint8_t t[8];
	snap_put_le64(t, v);
	tlv_raw(b, key, t, 8);
}

static void tlv_u32(struct snap_strbuf *b, uint16_t key, uint32_t v)
{
	uint8_t t[4];
	snap_put_le32(t, v);
	tlv_raw(b, key, t, 4);
}

/* Nested TLV: reserves the header, the caller appends, tlv_end patches the length. */
static size_t tlv_begin(struct snap_strbuf *b, uint16_t key)
{
	tlv_raw(b, key, NULL, 0);
	return b->len;
}

static void tlv_end(struct snap_strbuf *b, size_t start)
{
	if (!b->err)
		snap_put_le32((uint8_t *)b->p + start - 4, (uint32_t)(b->len - start));
}

struct cur {
	const uint8_t *p;
	size_t len;
};

static int cur_tlv(struct cur *c, uint16_t *key, struct cur *val)
{
	if (c->len < 6)
		return -EUCLEAN;
	uint32_t n = snap_get_le32(c->p + 2);
	if (n > c->len - 6)
		return -EUCLEAN;
	*key = (uint16_t)(c->p[0] | c->p[1] << 8);
	*val = (struct cur){c->p + 6, n};
	c->p += 6 + n;
	c->len -= 6 + n;
	return 0;
}

static int val_str(const struct cur *v, char **ret)
{
	if (memchr(v->p, 0, v->len))
		return -EUCLEAN;
	char *s = malloc(v->len + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, v->p, v->len);
	s[v->len] = 0;
	free(*ret);
	*ret = s;
	return 0;
}

static int val_u64(const struct cur *v, uint64_t *ret)
{
	if (v->len != 8)
		return -EUCLEAN;
	*ret = snap_get_le64(v->p);
	return 0;
}

static int val_u32(const struct cur *v, uint32_t *ret)
{
	if (v->len != 4)
		return -EUCLEAN;
	*ret = snap_get_le32(v->p);
	return 0;
}

/* ---- KEYS ---- */

int snap_store_keys_encode(const struct snap_store_keys *k, uint8_t **ret, size_t *ret_len)
{
	struct snap_strbuf b = SNAP_STRBUF_INIT;
	sb_le32(&b, (uint32_t)k->nslots);
	for (size_t i = 0; i < k->nslots; i++) {
		const struct snap_store_keyslot *s = &k->slots[i];
		sb_le32(&b, s->type);
		if (s->type == SNAP_STORE_SLOT_SCRYPT) {
			sb_le32(&b, SNAP_STORE_SCRYPT_SLOT_SIZE);
			snap_strbuf_add(&b, s->salt, 32);
			sb_le64(&b, s->n);
			sb_le32(&b, s->r);
			sb_le32(&b, s->p);
			snap_strbuf_add(&b, s->nonce, SNAP_STORE_NONCE_SIZE);
			snap_strbuf_add(&b, s->wrapped, SNAP_STORE_KEY_SIZE);
			snap_strbuf_add(&b, s->tag, SNAP_STORE_GCM_TAG_SIZE);
		} else {
			sb_le32(&b, (uint32_t)(32 + s->rsa_len));
			snap_strbuf_add(&b, s->key_id, 32);
			snap_strbuf_add(&b, s->rsa, s->rsa_len);
		}
	}
	return sb_take(&b, ret, ret_len);
}

void snap_store_keys_clear(struct snap_store_keys *k)
{
	for (size_t i = 0; i < k->nslots; i++)
		free(k->slots[i].rsa);
	free(k->slots);
	memset(k, 0, sizeof(*k));
}

int snap_store_keys_decode(const uint8_t *buf, size_t len, struct snap_store_keys *ret)
{
	if (len < 4)
		return -EUCLEAN;
	uint32_t n = snap_get_le32(buf);
	if (n == 0 || n > 1024 || n > (len - 4) / 8)
		return -EUCLEAN;
	struct snap_store_keys k = {.slots = calloc(n, sizeof(*k.slots))};
	if (!k.slots)
		return -ENOMEM;
	size_t pos = 4;
	int r = -EUCLEAN;
	for (uint32_t i = 0; i < n; i++) {
		if (len - pos < 8)
			goto fail;
		struct snap_store_keyslot *s = &k.slots[k.nslots++];
		s->type = snap_get_le32(buf + pos);
		uint32_t sl = snap_get_le32(buf + pos + 4);
		pos += 8;
		if (sl > len - pos)
			goto fail;
		const uint8_t *p = buf + pos;
		if (s->type == SNAP_STORE_SLOT_SCRYPT) {
			if (sl != SNAP_STORE_SCRYPT_SLOT_SIZE)
				goto fail;
			memcpy(s->salt, p, 32);
			s->n = snap_get_le64(p + 32);
			s->r = snap_get_le32(p + 40);
			s->p = snap_get_le32(p + 44);
			memcpy(s->nonce, p + 48, 12);
			memcpy(s->wrapped, p + 60, 32);
			memcpy(s->tag, p + 92, 16);
		} else if (s->type == SNAP_STORE_SLOT_RSA_OAEP) {
			if (sl <= 32 || sl > 32 + 2048)
				goto fail;
			memcpy(s->key_id, p, 32);
			s->rsa_len = sl - 32;
			s->rsa = malloc(s->rsa_len);
			if (!s->rsa) {
				r = -ENOMEM;
				goto fail;
			}
			memcpy(s->rsa, p + 32, s->rsa_len);
		}
		/* unknown slot types are kept and skipped: another recipient may use them */
		pos += sl;
	}
	if (pos != len)
		goto fail;
	*ret = k;
	return 0;
fail:
	snap_store_keys_clear(&k);
	return r;
}

/* ---- META ---- */

/*
 * The fields of META and of its nested volume and partition entries, declared once: encode,
 * decode and clear all walk these tables. The encoder writes the fields in table order, which
 * is the order of STORE_FORMAT.md 4.2; key 0x800D (parent) is reserved for incremental images
 * and is left out, so a decoder refuses it as an unknown critical key.
 */
enum tlv_type {
	TLV_STR,  /* char *, written when not NULL */
	TLV_U32,  /* uint32_t, always written */
	TLV_U64,  /* uint64_t, always written */
	TLV_LIST, /* size_t count, then the array (items_at): one TLV per item, the key repeated */
};

struct tlv_record;
struct tlv_field {
	uint16_t key;
	uint8_t type;
	size_t at;		      /* offsetof the value; a TLV_LIST's: of its count */
	size_t items_at;	      /* TLV_LIST: offsetof its array */
	const struct tlv_record *rec; /* TLV_LIST: the items' nested record, NULL for strings */
	uint32_t max;		      /* TLV_LIST: the most items a decoder accepts */
	bool required;		      /* a decoder refuses an entry without it */
};

struct tlv_record {
	size_t size; /* of the struct the fields live in */
	size_t nfields;
	const struct tlv_field *fields;
};

/* offsetof(struct s, m), and a compile error unless m has type T */
#define TLV_AT(s, m, T) _Generic(((struct s *)0)->m, T : offsetof(struct s, m))
#define TLV_STR_AT(s, m) TLV_STR, TLV_AT(s, m, char *)
#define TLV_U32_AT(s, m) TLV_U32, TLV_AT(s, m, uint32_t)
#define TLV_U64_AT(s, m) TLV_U64, TLV_AT(s, m, uint64_t)
#define TLV_LIST_AT(s, n, v, T) TLV_LIST, TLV_AT(s, n, size_t), TLV_AT(s, v, T *)
#define TLV_NFIELDS(f) (sizeof(f) / sizeof(f[0]))

static const struct tlv_field part_fields[] = {
    {1, TLV_U32_AT(snap_store_partition, number)},
    {2, TLV_U64_AT(snap_store_partition, start)},
    {3, TLV_U64_AT(snap_store_partition, size)},
    {4, TLV_STR_AT(snap_store_partition, type)},
    {5, TLV_STR_AT(snap_store_partition, name)},
    {6, TLV_STR_AT(snap_store_partition, uuid)},
    {7, TLV_STR_AT(snap_store_partition, fs_type)},
    {8, TLV_STR_AT(snap_store_partition, fs_label)},
    {9, TLV_STR_AT(snap_store_partition, fs_uuid)},
    {10, TLV_U32_AT(snap_store_partition, bootable)},
};
static const struct tlv_record part_record = {sizeof(struct snap_store_partition),
					      TLV_NFIELDS(part_fields), part_fields};

static const struct tlv_field volume_fields[] = {
    {1, TLV_STR_AT(snap_store_volume, device), .required = true},
    {TLV_CRITICAL | 2, TLV_U64_AT(snap_store_volume, size), .required = true},
    {3, TLV_U32_AT(snap_store_volume, logical_sector)},
    {4, TLV_U32_AT(snap_store_volume, physical_sector)},
    {5, TLV_STR_AT(snap_store_volume, ptable_type)},
    {6, TLV_STR_AT(snap_store_volume, ptable_id)},
    {7, TLV_LIST_AT(snap_store_volume, nparts, parts, struct snap_store_partition),
     .rec = &part_record, .max = 4096},
};
static const struct tlv_record volume_record = {sizeof(struct snap_store_volume),
						TLV_NFIELDS(volume_fields), volume_fields};

static const struct tlv_field meta_fields[] = {
    {1, TLV_STR_AT(snap_store_meta, name)},
    {2, TLV_STR_AT(snap_store_meta, description)},
    {3, TLV_STR_AT(snap_store_meta, arch)},
    {4, TLV_STR_AT(snap_store_meta, boot_mode)},
    {5, TLV_STR_AT(snap_store_meta, owner)},
    {6, TLV_STR_AT(snap_store_meta, image_id)},
    {7, TLV_U64_AT(snap_store_meta, creation_time)},
    {8, TLV_U64_AT(snap_store_meta, store_time)},
    {9, TLV_LIST_AT(snap_store_meta, tags.n, tags.v, char *), .max = 65536},
    {10, TLV_LIST_AT(snap_store_meta, bdm.n, bdm.v, char *), .max = 65536},
    {11, TLV_LIST_AT(snap_store_meta, s3.n, s3.v, char *), .max = 65536},
    {TLV_CRITICAL | 12, TLV_LIST_AT(snap_store_meta, nvolumes, volumes, struct snap_store_volume),
     .rec = &volume_record, .max = 4096, .required = true},
};
static const struct tlv_record meta_record = {sizeof(struct snap_store_meta),
					      TLV_NFIELDS(meta_fields), meta_fields};

/* decode_record keeps the fields it saw in a 32-bit mask */
_Static_assert(TLV_NFIELDS(part_fields) <= 32 && TLV_NFIELDS(volume_fields) <= 32 &&
		   TLV_NFIELDS(meta_fields) <= 32,
	       "too many fields in a record kind");

/* A TLV_LIST's array pointer, whatever its item type (all object pointers look alike). */
static uint8_t *list_items(const void *obj, const struct tlv_field *f)
{
	uint8_t *items;
	memcpy(&items, (const uint8_t *)obj + f->items_at, sizeof(items));
	return items;
}

static size_t list_item_size(const struct tlv_field *f)
{
	return f->rec ? f->rec->size : sizeof(char *);
}

static void encode_record(struct snap_strbuf *b, const struct tlv_record *rec, const void *obj)
{
	for (const struct tlv_field *f = rec->fields; f < rec->fields + rec->nfields; f++) {
		const uint8_t *at = (const uint8_t *)obj + f->at;
		if (f->type == TLV_STR) {
			tlv_str(b, f->key, *(char *const *)at);
		} else if (f->type == TLV_U32) {
			tlv_u32(b, f->key, *(const uint32_t *)at);
		} else if (f->type == TLV_U64) {
			tlv_u64(b, f->key, *(const uint64_t *)at);
		} else {
			const uint8_t *items = list_items(obj, f);
			for (size_t i = 0; i < *(const size_t *)at; i++) {
				const uint8_t *item = items + i * list_item_size(f);
				if (!f->rec) {
					tlv_str(b, f->key, *(char *const *)item);
					continue;
				}
				size_t start = tlv_begin(b, f->key);
				encode_record(b, f->rec, item);
				tlv_end(b, start);
			}
		}
	}
}

/* Frees what the fields of obj own and zeroes it. */
static void clear_record(const struct tlv_record *rec, void *obj)
{
	for (const struct tlv_field *f = rec->fields; f < rec->fields + rec->nfields; f++) {
		uint8_t *at = (uint8_t *)obj + f->at;
		if (f->type == TLV_STR) {
			free(*(char **)at);
		} else if (f->type == TLV_LIST) {
			uint8_t *items = list_items(obj, f);
			for (size_t i = 0; i < *(size_t *)at; i++) {
				uint8_t *item = items + i * list_item_size(f);
				if (f->rec)
					clear_record(f->rec, item);
				else
					free(*(char **)item);
			}
			free(items);
		}
	}
	memset(obj, 0, rec->size);
}

static int decode_record(struct cur c, const struct tlv_record *rec, void *obj);

/* One more item at the end of a TLV_LIST, zeroed, then decoded from v. */
static int decode_item(const struct cur *v, const struct tlv_field *f, void *obj)
{
	size_t *n = (size_t *)((uint8_t *)obj + f->at), size = list_item_size(f);
	if (*n >= f->max)
		return -EUCLEAN;
	uint8_t *items = realloc(list_items(obj, f), (*n + 1) * size);
	if (!items)
		return -ENOMEM;
	memcpy((uint8_t *)obj + f->items_at, &items, sizeof(items));
	uint8_t *item = items + (*n)++ * size;
	memset(item, 0, size);
	return f->rec ? decode_record(*v, f->rec, item) : val_str(v, (char **)item);
}

static int decode_record(struct cur c, const struct tlv_record *rec, void *obj)
{
	uint32_t seen = 0; /* bit i: fields[i] was decoded */
	while (c.len > 0) {
		uint16_t key;
		struct cur v;
		int r = cur_tlv(&c, &key, &v);
		if (r < 0)
			return r;
		const struct tlv_field *f = rec->fields;
		while (f < rec->fields + rec->nfields && f->key != key)
			f++;
		if (f == rec->fields + rec->nfields) {
			if (key & TLV_CRITICAL)
				return -EOPNOTSUPP;
			continue;
		}
		uint8_t *at = (uint8_t *)obj + f->at;
		if (f->type == TLV_STR)
			r = val_str(&v, (char **)at);
		else if (f->type == TLV_U32)
			r = val_u32(&v, (uint32_t *)at);
		else if (f->type == TLV_U64)
			r = val_u64(&v, (uint64_t *)at);
		else
			r = decode_item(&v, f, obj);
		if (r < 0)
			return r;
		seen |= 1u << (f - rec->fields);
	}
	for (size_t i = 0; i < rec->nfields; i++)
		if (rec->fields[i].required && !(seen & 1u << i))
			return -EUCLEAN;
	return 0;
}

int snap_store_strlist_add(struct snap_store_strlist *l, const char *s)
{
	char **n = realloc(l->v, (l->n + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	l->v = n;
	if (!(l->v[l->n] = strdup(s)))
		return -ENOMEM;
	l->n++;
	return 0;
}

int snap_store_meta_encode(const struct snap_store_meta *m, uint8_t **ret, size_t *ret_len)
{
	struct snap_strbuf b = SNAP_STRBUF_INIT;
	encode_record(&b, &meta_record, m);
	return sb_take(&b, ret, ret_len);
}

void snap_store_meta_clear(struct snap_store_meta *m)
{
	clear_record(&meta_record, m);
}

int snap_store_meta_decode(const uint8_t *buf, size_t len, struct snap_store_meta *ret,
			   const char **ret_detail)
{
	struct snap_store_meta m = {0};
	int r = decode_record((struct cur){buf, len}, &meta_record, &m);
	if (r < 0) {
		set_detail(ret_detail, r == -EOPNOTSUPP ? "unknown critical metadata field"
							: "malformed metadata");
		snap_store_meta_clear(&m);
		return r;
	}
	*ret = m;
	return 0;
}

/* ---- INDEX ---- */

static void put_extent(uint8_t *p, const struct snap_extent *e)
{
	snap_put_le64(p + EXT(offset), e->offset);
	snap_put_le64(p + EXT(length), e->length);
	p[EXT(kind)] = e->kind;
	p[EXT(layer)] = e->layer;
	memset(p + EXT(reserved), 0, 2);
	snap_put_le32(p + EXT(partition), e->partition);
}

static void put_iframe(uint8_t *p, const struct snap_store_index_frame *f)
{
	snap_put_le64(p + IFR(file_offset), f->file_offset);
	snap_put_le32(p + IFR(volume), f->volume);
	snap_put_le32(p + IFR(flags), f->flags);
	snap_put_le64(p + IFR(offset), f->offset);
	snap_put_le32(p + IFR(raw_len), f->raw_len);
	snap_put_le32(p + IFR(stored_len), f->stored_len);
	memcpy(p + IFR(digest), f->digest, SNAP_STORE_DIGEST_SIZE);
}

uint64_t snap_store_index_payload_len(const struct snap_store_index *ix)
{
	uint64_t n = 64 + ix->nframes * SNAP_STORE_INDEX_FRAME_SIZE;
	for (uint32_t i = 0; i < ix->nvolumes; i++)
		n += 56 + ix->vols[i].nextents * SNAP_STORE_INDEX_EXTENT_SIZE;
	return n;
}

/* The encoder's staging: the payload goes out in pieces of at most this (4096 frame entries). */
#define INDEX_PIECE (256u << 10)
/* Entries read at once from a frame source (ix->frames NULL): 16 KiB on the stack. */
#define FRAME_BATCH 256u

struct piece {
	uint8_t *p;
	size_t len;
	snap_store_emit_fn emit;
	void *ctx;
	int err;
};

static int piece_flush(struct piece *b)
{
	if (b->err == 0 && b->len)
		b->err = b->emit(b->ctx, b->p, b->len);
	b->len = 0;
	return b->err;
}

/* Room for n (at most INDEX_PIECE) bytes, flushing what is staged first when they do not fit. */
static uint8_t *piece_room(struct piece *b, size_t n)
{
	if (b->len + n > INDEX_PIECE && piece_flush(b) < 0)
		return NULL;
	if (b->err)
		return NULL;
	uint8_t *r = b->p + b->len;
	b->len += n;
	return r;
}

int snap_store_index_stream(const struct snap_store_index *ix, snap_store_emit_fn emit, void *ctx)
{
	struct piece b = {.p = malloc(INDEX_PIECE), .emit = emit, .ctx = ctx};
	if (!b.p)
		return -ENOMEM;
	uint8_t *p = piece_room(&b, 64);
	if (p) {
		snap_put_le32(p, ix->nvolumes);
		snap_put_le32(p + 4, 0);
		snap_put_le64(p + 8, ix->nframes);
		snap_put_le64(p + 16, ix->meta_offset);
		snap_put_le64(p + 24, ix->meta_length);
		memcpy(p + 32, ix->meta_digest, 32);
	}
	for (uint32_t i = 0; i < ix->nvolumes && !b.err; i++) {
		const struct snap_store_index_volume *v = &ix->vols[i];
		if ((p = piece_room(&b, 56))) {
			snap_put_le64(p, v->nextents);
			snap_put_le64(p + 8, v->first_frame);
			snap_put_le64(p + 16, v->nframes);
			memcpy(p + 24, v->digest, 32);
		}
		for (size_t j = 0; j < v->nextents; j++)
			if ((p = piece_room(&b, SNAP_STORE_INDEX_EXTENT_SIZE)))
				put_extent(p, &v->extents[j]);
	}
	struct snap_store_index_frame batch[FRAME_BATCH];
	for (uint64_t i = 0; i < ix->nframes && !b.err;) {
		size_t n = ix->nframes - i < FRAME_BATCH ? (size_t)(ix->nframes - i) : FRAME_BATCH;
		const struct snap_store_index_frame *f = ix->frames ? ix->frames + i : batch;
		if (!ix->frames && (b.err = ix->source->read(ix->source->ctx, i, n, batch)) < 0)
			break;
		for (size_t j = 0; j < n; j++)
			if ((p = piece_room(&b, SNAP_STORE_INDEX_FRAME_SIZE)))
				put_iframe(p, &f[j]);
		i += n;
	}
	int r = piece_flush(&b);
	free(b.p);
	return r;
}

static int emit_strbuf(void *ctx, const void *buf, size_t len)
{
	struct snap_strbuf *b = ctx;
	snap_strbuf_add(b, buf, len);
	return b->err;
}

/* The whole payload in one buffer: the streaming encoder's pieces gathered (one definition of
 * the format). */
int snap_store_index_encode(const struct snap_store_index *ix, uint8_t **ret, size_t *ret_len)
{
	struct snap_strbuf b = SNAP_STRBUF_INIT;
	int r = snap_store_index_stream(ix, emit_strbuf, &b);
	if (r < 0) {
		snap_strbuf_release(&b);
		return r;
	}
	return sb_take(&b, ret, ret_len);
}

/* The first pass over an INDEX record: its tag and CRC are over what follows the prefix. */
struct seal_pass {
	struct snap_store_mac_ctx *mac;
	uLong crc;
};

static int emit_seal(void *ctx, const void *buf, size_t len)
{
	struct seal_pass *sp = ctx;
	sp->crc = crc32_z(sp->crc, buf, len);
	return snap_store_mac_update(sp->mac, buf, len);
}

int snap_store_index_record_seal(const struct snap_store_index *ix, const uint8_t *mac_key,
				 struct snap_store_record_seal *ret)
{
	uint64_t len =
	    SNAP_STORE_PREFIX_SIZE + snap_store_index_payload_len(ix) + SNAP_STORE_TAG_SIZE;
	uint8_t pfx[SNAP_STORE_PREFIX_SIZE];
	struct snap_store_record_seal seal = {.length = len};
	struct seal_pass sp = {.crc = crc32(0L, Z_NULL, 0)};
	int r = snap_store_mac_new(mac_key, &sp.mac);
	if (r < 0)
		return r;
	/* the tag and the CRC both see the prefix with its crc field as zero */
	snap_store_prefix_encode(pfx, SNAP_STORE_REC_INDEX, len);
	r = emit_seal(&sp, pfx, sizeof(pfx));
	if (r == 0)
		r = snap_store_index_stream(ix, emit_seal, &sp);
	if (r == 0)
		r = snap_store_mac_final(sp.mac, seal.tag);
	snap_store_mac_free(sp.mac);
	if (r < 0)
		return r;
	seal.crc = (uint32_t)crc32_z(sp.crc, seal.tag, sizeof(seal.tag));
	*ret = seal;
	return 0;
}

/* A stream pass that checks itself: the CRC of what it hands over, the prefix's crc field read
 * as zero, as the CRC is defined. */
struct crc_pass {
	snap_store_emit_fn emit;
	void *ctx;
	uLong crc;
};

static int emit_crc(void *ctx, const void *buf, size_t len)
{
	struct crc_pass *cp = ctx;
	cp->crc = crc32_z(cp->crc, buf, len);
	return cp->emit(cp->ctx, buf, len);
}

int snap_store_index_record_stream(const struct snap_store_index *ix,
				   const struct snap_store_record_seal *seal,
				   snap_store_emit_fn emit, void *ctx, uint32_t *ret_crc)
{
	uint8_t pfx[SNAP_STORE_PREFIX_SIZE];
	snap_store_prefix_encode(pfx, SNAP_STORE_REC_INDEX, seal->length);
	struct crc_pass cp = {emit, ctx, crc32_skip(pfx, sizeof(pfx), PFX(crc))};
	snap_put_le32(pfx + PFX(crc), seal->crc);
	int r = emit(ctx, pfx, sizeof(pfx));
	if (ret_crc) {
		emit = emit_crc;
		ctx = &cp;
	}
	if (r == 0)
		r = snap_store_index_stream(ix, emit, ctx);
	if (r == 0)
		r = emit(ctx, seal->tag, sizeof(seal->tag));
	if (r == 0 && ret_crc)
		*ret_crc = (uint32_t)cp.crc;
	return r;
}

static int emit_sha(void *ctx, const void *buf, size_t len)
{
	return snap_store_mac_update(ctx, buf, len);
}

int snap_store_index_record_digest(const struct snap_store_index *ix,
				   const struct snap_store_record_seal *seal,
				   uint8_t out[SNAP_STORE_DIGEST_SIZE])
{
	struct snap_store_mac_ctx *sha = NULL;
	int r = snap_store_mac_new(NULL, &sha);
	if (r == 0)
		r = snap_store_index_record_stream(ix, seal, emit_sha, sha, NULL);
	if (r == 0)
		r = snap_store_mac_final(sha, out);
	snap_store_mac_free(sha);
	return r;
}

void snap_store_index_clear(struct snap_store_index *ix)
{
	for (uint32_t i = 0; ix->vols && i < ix->nvolumes; i++)
		free(ix->vols[i].extents);
	free(ix->vols);
	free(ix->frames);
	memset(ix, 0, sizeof(*ix));
}

int snap_store_index_decode(const uint8_t *buf, size_t len, const uint64_t *vol_sizes,
			    size_t nvol_sizes, struct snap_store_index *ret,
			    const char **ret_detail)
{
	struct snap_store_index ix = {0};
	const char *why = "malformed index";
	int r = -EUCLEAN;
	if (len < 64)
		goto fail;
	ix.nvolumes = snap_get_le32(buf);
	ix.nframes = snap_get_le64(buf + 8);
	ix.meta_offset = snap_get_le64(buf + 16);
	ix.meta_length = snap_get_le64(buf + 24);
	memcpy(ix.meta_digest, buf + 32, 32);
	if (ix.nvolumes == 0 || ix.nvolumes > 4096 || snap_get_le32(buf + 4) != 0 ||
	    (vol_sizes && ix.nvolumes != nvol_sizes))
		goto fail;
	size_t pos = 64;
	ix.vols = calloc(ix.nvolumes, sizeof(*ix.vols));
	if (!ix.vols) {
		r = -ENOMEM;
		goto fail;
	}
	uint64_t expect_first = 0;
	for (uint32_t i = 0; i < ix.nvolumes; i++) {
		struct snap_store_index_volume *v = &ix.vols[i];
		if (len - pos < 56)
			goto fail;
		uint64_t ne = snap_get_le64(buf + pos);
		v->first_frame = snap_get_le64(buf + pos + 8);
		v->nframes = snap_get_le64(buf + pos + 16);
		memcpy(v->digest, buf + pos + 24, 32);
		pos += 56;
		if (ne == 0 || ne > (len - pos) / SNAP_STORE_INDEX_EXTENT_SIZE)
			goto fail;
		if (v->first_frame != expect_first || v->nframes > ix.nframes - expect_first) {
			why = "index volume frame ranges inconsistent";
			goto fail;
		}
		expect_first += v->nframes;
		v->extents = calloc(ne, sizeof(*v->extents));
		if (!v->extents) {
			r = -ENOMEM;
			goto fail;
		}
		v->nextents = ne;
		uint64_t end = 0;
		for (uint64_t j = 0; j < ne; j++, pos += SNAP_STORE_INDEX_EXTENT_SIZE) {
			const uint8_t *p = buf + pos;
			struct snap_extent *e = &v->extents[j];
			e->offset = snap_get_le64(p + EXT(offset));
			e->length = snap_get_le64(p + EXT(length));
			e->kind = p[EXT(kind)];
			e->layer = p[EXT(layer)];
			e->partition = snap_get_le32(p + EXT(partition));
			if (e->offset != end || e->length == 0 || e->kind > SNAP_EXTENT_UNUSED ||
			    e->length > UINT64_MAX - end) {
				why = "index extent map does not cover its volume";
				goto fail;
			}
			end += e->length;
		}
		if (vol_sizes && end != vol_sizes[i]) {
			why = "index extent map does not match the volume size";
			goto fail;
		}
	}
	if (expect_first != ix.nframes || ix.nframes != (len - pos) / SNAP_STORE_INDEX_FRAME_SIZE ||
	    (len - pos) % SNAP_STORE_INDEX_FRAME_SIZE != 0) {
		why = "index frame count does not match its size";
		goto fail;
	}
	ix.frames = calloc(ix.nframes ? ix.nframes : 1, sizeof(*ix.frames));
	if (!ix.frames) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint64_t i = 0; i < ix.nframes; i++, pos += SNAP_STORE_INDEX_FRAME_SIZE) {
		const uint8_t *p = buf + pos;
		struct snap_store_index_frame *f = &ix.frames[i];
		f->file_offset = snap_get_le64(p + IFR(file_offset));
		f->volume = snap_get_le32(p + IFR(volume));
		f->flags = snap_get_le32(p + IFR(flags));
		f->offset = snap_get_le64(p + IFR(offset));
		f->raw_len = snap_get_le32(p + IFR(raw_len));
		f->stored_len = snap_get_le32(p + IFR(stored_len));
		memcpy(f->digest, p + IFR(digest), SNAP_STORE_DIGEST_SIZE);
	}
	/* structure: frames in file order, each volume's frames its own, sorted, inside DATA */
	for (uint32_t vi = 0; vi < ix.nvolumes; vi++) {
		const struct snap_store_index_volume *v = &ix.vols[vi];
		size_t e = 0;
		uint64_t prev_end = 0, covered = 0;
		for (uint64_t k = v->first_frame; k < v->first_frame + v->nframes; k++) {
			const struct snap_store_index_frame *f = &ix.frames[k];
			if (f->volume != vi || f->offset < prev_end || f->raw_len == 0 ||
			    f->offset > UINT64_MAX - f->raw_len ||
			    (k > 0 && f->file_offset <= ix.frames[k - 1].file_offset)) {
				why = "index frames out of order";
				goto fail;
			}
			while (e < v->nextents &&
			       v->extents[e].offset + v->extents[e].length <= f->offset)
				e++;
			if (e == v->nextents || v->extents[e].kind != SNAP_EXTENT_DATA ||
			    f->offset + f->raw_len > v->extents[e].offset + v->extents[e].length) {
				why = "index frame outside the DATA extents of its volume";
				goto fail;
			}
			prev_end = f->offset + f->raw_len;
			covered += f->raw_len;
		}
		uint64_t data = 0;
		for (size_t j = 0; j < v->nextents; j++)
			if (v->extents[j].kind == SNAP_EXTENT_DATA)
				data += v->extents[j].length;
		if (covered != data) {
			why = "index frames do not cover the DATA extents of their volume";
			goto fail;
		}
	}
	*ret = ix;
	return 0;
fail:
	set_detail(ret_detail, why);
	snap_store_index_clear(&ix);
	return r;
}

static int array_read(void *ctx, uint64_t first, size_t n, struct snap_store_index_frame *out)
{
	memcpy(out, (const struct snap_store_index_frame *)ctx + first, n * sizeof(*out));
	return 0;
}

int snap_store_volume_digest(uint32_t volume, uint64_t size, const struct snap_extent *extents,
			     size_t nextents, const struct snap_store_index_frame *frames,
			     size_t nframes, uint8_t out[SNAP_STORE_DIGEST_SIZE])
{
	const struct snap_store_frame_source src = {array_read, (void *)frames};
	return snap_store_volume_digest_source(volume, size, extents, nextents, &src, 0, nframes,
					       out);
}

int snap_store_volume_digest_source(uint32_t volume, uint64_t size,
				    const struct snap_extent *extents, size_t nextents,
				    const struct snap_store_frame_source *src, uint64_t first,
				    uint64_t nframes, uint8_t out[SNAP_STORE_DIGEST_SIZE])
{
	static const char label[] = "snapbundle-volume-v1";
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), r = 0;
	uint8_t t[SNAP_STORE_INDEX_EXTENT_SIZE + 20];
	ok = ok && EVP_DigestUpdate(ctx, label, sizeof(label) - 1);
	snap_put_le32(t, volume);
	snap_put_le64(t + 4, size);
	ok = ok && EVP_DigestUpdate(ctx, t, 12);
	for (size_t i = 0; ok && i < nextents; i++) {
		put_extent(t, &extents[i]);
		ok = EVP_DigestUpdate(ctx, t, SNAP_STORE_INDEX_EXTENT_SIZE);
	}
	struct snap_store_index_frame batch[FRAME_BATCH];
	for (uint64_t i = 0; ok && r == 0 && i < nframes;) {
		size_t n = nframes - i < FRAME_BATCH ? (size_t)(nframes - i) : FRAME_BATCH;
		if ((r = src->read(src->ctx, first + i, n, batch)) < 0)
			break;
		for (size_t j = 0; ok && j < n; j++) {
			snap_put_le64(t, batch[j].offset);
			snap_put_le32(t + 8, batch[j].raw_len);
			ok = EVP_DigestUpdate(ctx, t, 12) &&
			     EVP_DigestUpdate(ctx, batch[j].digest, 32);
		}
		i += n;
	}
	unsigned int n = 0;
	ok = ok && r == 0 && EVP_DigestFinal_ex(ctx, out, &n);
	EVP_MD_CTX_free(ctx);
	return r < 0 ? r : ok ? 0 : -EIO;
}

/* ---- SIGNATURE ---- */

int snap_store_signature_encode(const struct snap_store_signature *s, uint8_t **ret,
				size_t *ret_len)
{
	struct snap_strbuf b = SNAP_STRBUF_INIT;
	sb_le32(&b, (uint32_t)s->spki_len);
	snap_strbuf_add(&b, s->spki, s->spki_len);
	sb_le32(&b, (uint32_t)s->sig_len);
	snap_strbuf_add(&b, s->sig, s->sig_len);
	return sb_take(&b, ret, ret_len);
}

int snap_store_signature_decode(const uint8_t *buf, size_t len, struct snap_store_signature *ret)
{
	if (len < 8)
		return -EUCLEAN;
	uint32_t kl = snap_get_le32(buf);
	if (kl == 0 || kl > 16384 || kl > len - 8)
		return -EUCLEAN;
	uint32_t sl = snap_get_le32(buf + 4 + kl);
	if (sl == 0 || sl > 16384 || sl != len - 8 - kl)
		return -EUCLEAN;
	*ret = (struct snap_store_signature){buf + 4, kl, buf + 8 + kl, sl};
	return 0;
}

int snap_store_build_record(uint32_t type, const uint8_t *payload, size_t len,
			    const uint8_t *mac_key, const void *const *pre, const size_t *pre_lens,
			    size_t npre, uint8_t **ret, size_t *ret_len)
{
	size_t total = SNAP_STORE_PREFIX_SIZE + len + SNAP_STORE_TAG_SIZE;
	uint8_t *rec = malloc(total);
	if (!rec)
		return -ENOMEM;
	snap_store_prefix_encode(rec, type, total);
	memcpy(rec + SNAP_STORE_PREFIX_SIZE, payload, len);
	const void *parts[4];
	size_t lens[4];
	size_t n = 0;
	for (size_t i = 0; i < npre && n < 3; i++, n++) {
		parts[n] = pre[i];
		lens[n] = pre_lens[i];
	}
	parts[n] = rec;
	lens[n++] = SNAP_STORE_PREFIX_SIZE + len;
	int r = snap_store_mac(mac_key, parts, lens, n, rec + SNAP_STORE_PREFIX_SIZE + len);
	if (r < 0) {
		free(rec);
		return r;
	}
	snap_store_record_set_crc(rec, total);
	*ret = rec;
	*ret_len = total;
	return 0;
}
