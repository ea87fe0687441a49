// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-store-frame.c - seal then open .bin frames at boundary sizes (1, 4095, 4096, 4097 and
 * 1 MiB + 1 bytes), every level, plain and encrypted, over zeros, text and random data (kept
 * raw). Outside judges: the header decodes with snap_store_frame_decode, a deflated body
 * inflates with zlib, the trailer is zlib's crc32. Tampering is named: digest, tag, inflate,
 * CRC.
 */
#include <stdbool.h>
#include <stdint.h>

#include <zlib.h>

#include "gzip-chunk.h"
#include "store-frame.h"
#include "test-util.h"

static const uint8_t image_id[SNAP_STORE_ID_SIZE] = "0123456789abcdef";

static void fill(uint8_t *b, size_t len, int kind, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = kind == 0   ? 0
		       : kind == 1 ? (uint8_t)("snapshot "[i % 9])
				   : (uint8_t)(x >> 24);
	}
}

static uint64_t fake_ns;
static uint64_t fake_clock(void)
{
	return fake_ns += 10;
}

static void zlib_raw_check(const uint8_t *body, size_t blen, const uint8_t *raw, size_t len)
{
	z_stream s = {0};
	REQUIRE(inflateInit2(&s, -15) == Z_OK);
	uint8_t *out = malloc(len + 1);
	REQUIRE(out != NULL);
	s.next_in = (uint8_t *)body;
	s.avail_in = (uInt)blen;
	s.next_out = out;
	s.avail_out = (uInt)len + 1;
	REQUIRE(inflate(&s, Z_FINISH) == Z_STREAM_END);
	REQUIRE(s.total_out == len && s.avail_in == 0 && !memcmp(out, raw, len));
	inflateEnd(&s);
	free(out);
}

/* Seals raw with c, checks the record, opens it with o. Returns the record (malloc'd). */
static uint8_t *roundtrip(struct snap_frame_codec *c, struct snap_frame_codec *o, bool keyed,
			  const uint8_t *raw, uint32_t len, struct snap_store_frame *ret)
{
	struct snap_store_rng rng = {.seeded = true, .seed = 42};
	uint8_t *rec = malloc(SNAP_STORE_FRAME_MAX_RECORD(len));
	uint8_t *dst = malloc(len);
	REQUIRE(rec && dst);
	struct snap_store_frame f = {.volume = 1, .index = 7, .offset = 1 << 20, .raw_len = len};
	struct snap_frame_times t = {.clock = fake_clock};
	size_t rlen = 0;
	REQUIRE(snap_store_frame_seal(c, image_id, &rng, &f, raw, rec, &rlen, &t) == 0);
	REQUIRE(t.crc_ns == 10 && t.deflate_ns == 10 && t.seal_ns == 10 && t.digest_ns == 10);
	REQUIRE(rlen == snap_store_frame_record_len(&f) && rlen <= SNAP_STORE_FRAME_MAX_RECORD(len));
	REQUIRE(!!(f.flags & SNAP_STORE_FRAME_ENCRYPTED) == keyed);
	struct snap_store_frame g;
	const char *why = NULL;
	REQUIRE(snap_store_frame_decode(rec, rlen, SNAP_STORE_MAX_FRAME, &g, &why) == 0);
	REQUIRE(g.volume == 1 && g.index == 7 && g.offset == 1 << 20 && g.raw_len == len);
	REQUIRE(g.flags == f.flags && g.stored_len == f.stored_len);
	REQUIRE(!memcmp(g.digest, f.digest, sizeof(g.digest)));
	uint8_t *payload = rec + SNAP_STORE_FRAME_HEADER_SIZE;
	uint32_t body = f.stored_len - SNAP_STORE_FRAME_TRAILER_SIZE;
	if (!keyed) {
		/* outside judges over the plain payload */
		REQUIRE(snap_get_le32(payload + body) == (uint32_t)crc32(0, raw, len));
		if (f.flags & SNAP_STORE_FRAME_DEFLATE) {
			REQUIRE(body < len);
			zlib_raw_check(payload, body, raw, len);
		} else {
			REQUIRE(body == len && !memcmp(payload, raw, len));
		}
	}
	REQUIRE(snap_store_frame_check_digest(o, rec, &g, &why) == 0);
	const uint8_t *got = NULL;
	uint8_t *copy = malloc(rlen);
	REQUIRE(copy != NULL);
	memcpy(copy, rec, rlen);
	REQUIRE(snap_store_frame_open(o, image_id, copy, &g, dst, &got, &why) == 0);
	REQUIRE(!memcmp(got, raw, len));
	if (f.flags & SNAP_STORE_FRAME_DEFLATE)
		REQUIRE(got == dst);
	else
		REQUIRE(got == copy + SNAP_STORE_FRAME_HEADER_SIZE); /* no copy */
	free(copy);
	free(dst);
	*ret = g;
	return rec;
}

static void expect_fail(struct snap_frame_codec *o, const uint8_t *id, const uint8_t *rec,
			size_t rlen, const struct snap_store_frame *f, int err, const char *text)
{
	uint8_t *copy = malloc(rlen), *dst = malloc(f->raw_len);
	REQUIRE(copy && dst);
	memcpy(copy, rec, rlen);
	const uint8_t *got;
	const char *why = NULL;
	int r = snap_store_frame_open(o, id, copy, f, dst, &got, &why);
	if (r != err || !why || strcmp(why, text))
		fprintf(stderr, "want %d '%s', got %d '%s'\n", err, text, r, why ? why : "");
	REQUIRE(r == err && !strcmp(why, text));
	free(copy);
	free(dst);
}

/* Recomputes the digest of a tampered plain record so the later checks are reached. */
static void redigest(struct snap_frame_codec *c, uint8_t *rec, struct snap_store_frame *f)
{
	uint8_t d[SNAP_STORE_DIGEST_SIZE];
	const void *parts[] = {rec + SNAP_STORE_FRAME_HEADER_SIZE};
	size_t lens[] = {f->stored_len};
	(void)c;
	REQUIRE(snap_store_mac(NULL, parts, lens, 1, d) == 0);
	memcpy(f->digest, d, sizeof(d));
}

int main(void)
{
	static const uint32_t sizes[] = {1, 2, 4095, 4096, 4097, 65536, (1u << 20) + 1};
	uint8_t dk[SNAP_STORE_KEY_SIZE];
	memset(dk, 0x5a, sizeof(dk));
	struct snap_store_keyset ks;
	REQUIRE(snap_store_derive(dk, image_id, &ks) == 0);
	struct snap_frame_codec *o, *okeyed, *c;
	REQUIRE(snap_frame_codec_new(-1, NULL, &o) == 0);
	REQUIRE(snap_frame_codec_new(-1, &ks, &okeyed) == 0);
	REQUIRE(snap_frame_codec_new(4, NULL, &c) == -EINVAL);
	REQUIRE(snap_frame_codec_new(-2, NULL, &c) == -EINVAL);

	uint8_t *raw = malloc((1u << 20) + 1);
	REQUIRE(raw != NULL);
	for (int level = 0; level <= SNAP_DEFLATE_MAX_LEVEL; level++) {
		for (int keyed = 0; keyed < 2; keyed++) {
			REQUIRE(snap_frame_codec_new(level, keyed ? &ks : NULL, &c) == 0);
			for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
				for (int kind = 0; kind < 3; kind++) {
					uint32_t len = sizes[s];
					fill(raw, len, kind, (unsigned)s);
					struct snap_store_frame f;
					uint8_t *rec =
					    roundtrip(c, keyed ? okeyed : o, keyed, raw, len, &f);
					/* random data never shrinks: kept raw; 1 byte: raw */
					if (kind == 2 || len == 1)
						REQUIRE(!(f.flags & SNAP_STORE_FRAME_DEFLATE));
					if (kind == 0 && len >= 4096)
						REQUIRE(f.flags & SNAP_STORE_FRAME_DEFLATE);
					free(rec);
				}
			}
			snap_frame_codec_free(c);
		}
	}
	/* an open-only codec cannot seal */
	struct snap_store_frame f = {.raw_len = 10};
	size_t rl;
	uint8_t out[SNAP_STORE_FRAME_MAX_RECORD(10)];
	REQUIRE(snap_store_frame_seal(o, image_id, NULL, &f, raw, out, &rl, NULL) == -EINVAL);

	/* tampering, plain: digest, then inflate, then CRC */
	REQUIRE(snap_frame_codec_new(1, NULL, &c) == 0);
	fill(raw, 8192, 1, 0);
	struct snap_store_frame g;
	uint8_t *rec = roundtrip(c, o, false, raw, 8192, &g);
	size_t rlen = snap_store_frame_record_len(&g);
	REQUIRE(g.flags & SNAP_STORE_FRAME_DEFLATE);
	uint8_t *payload = rec + SNAP_STORE_FRAME_HEADER_SIZE;
	uint32_t body = g.stored_len - SNAP_STORE_FRAME_TRAILER_SIZE;
	payload[body] ^= 1; /* CRC trailer */
	expect_fail(o, image_id, rec, rlen, &g, -EBADMSG, "digest mismatch (corrupt frame)");
	redigest(c, rec, &g);
	expect_fail(o, image_id, rec, rlen, &g, -EBADMSG,
		    "CRC mismatch of the restored data (corrupt frame)");
	payload[body] ^= 1;
	memset(payload, 0xff, body); /* not deflate any more */
	redigest(c, rec, &g);
	expect_fail(o, image_id, rec, rlen, &g, -EBADMSG, "corrupt compressed data");
	free(rec);
	snap_frame_codec_free(c);

	/* tampering, encrypted: tag, wrong image, no key */
	REQUIRE(snap_frame_codec_new(0, &ks, &c) == 0);
	fill(raw, 4097, 2, 1);
	rec = roundtrip(c, okeyed, true, raw, 4097, &g);
	rlen = snap_store_frame_record_len(&g);
	static const char *auth = "authentication failed (tampered frame, or a frame swapped in "
				  "from another image)";
	uint8_t other[SNAP_STORE_ID_SIZE] = "0123456789abcdeX";
	expect_fail(okeyed, other, rec, rlen, &g, -EBADMSG, auth);
	expect_fail(o, image_id, rec, rlen, &g, -ENOKEY,
		    "the frame is encrypted and no key was given");
	rec[rlen - 1] ^= 1; /* the tag: not covered by the digest */
	expect_fail(okeyed, image_id, rec, rlen, &g, -EBADMSG, auth);
	free(rec);
	snap_frame_codec_free(c);

	snap_frame_codec_free(o);
	snap_frame_codec_free(okeyed);
	free(raw);
	printf("ok\n");
	return 0;
}
