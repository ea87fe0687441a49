// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-store-format.c - unit tests of the .bin store encoders, decoders and crypto: round
 * trips, every header byte flipped, frame lengths at frame_size - 1, frame_size and + 1, index
 * structure checks, GCM with a changed AAD, scrypt slots with a wrong passphrase.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-crypto.h"
#include "store-format.h"
#include "test-util.h"

static void test_header(void)
{
	struct snap_store_header h = {.version = SNAP_STORE_VERSION,
				      .incompat = SNAP_STORE_INCOMPAT_ENCRYPTED,
				      .frame_size = 1 << 20,
				      .volume_count = 3,
				      .block_size = 4096};
	memset(h.image_id, 0xab, sizeof(h.image_id));
	uint8_t b[SNAP_STORE_HEADER_SIZE];
	struct snap_store_header d;
	snap_store_header_encode(&h, b);
	CHECK(snap_store_header_decode(b, sizeof(b), &d, NULL) == 0);
	CHECK(d.frame_size == h.frame_size && d.volume_count == 3 &&
	      !memcmp(d.image_id, h.image_id, 16));
	CHECK(snap_store_header_decode(b, sizeof(b) - 1, &d, NULL) == -EUCLEAN);
	for (size_t i = 0; i < sizeof(b); i++) {
		b[i] ^= 0x10;
		CHECK(snap_store_header_decode(b, sizeof(b), &d, NULL) < 0);
		b[i] ^= 0x10;
	}
	h.incompat |= 0x100;
	snap_store_header_encode(&h, b);
	CHECK(snap_store_header_decode(b, sizeof(b), &d, NULL) == -EOPNOTSUPP);
}

static void test_frame(void)
{
	const uint32_t fs = 65536;
	for (uint32_t raw = fs - 1; raw <= fs + 1; raw++) {
		struct snap_store_frame f = {.volume = 2,
					     .flags = SNAP_STORE_FRAME_DEFLATE,
					     .index = 7,
					     .offset = 1ull << 40,
					     .raw_len = raw,
					     .stored_len = 100};
		uint8_t b[SNAP_STORE_FRAME_HEADER_SIZE];
		struct snap_store_frame d;
		snap_store_frame_encode(&f, b);
		int r = snap_store_frame_decode(b, sizeof(b), fs, &d, NULL);
		CHECK(raw <= fs ? r == 0 : r == -EUCLEAN);
		if (r == 0)
			CHECK(d.index == 7 && d.offset == f.offset && d.raw_len == raw);
		b[70] ^= 1;
		CHECK(snap_store_frame_decode(b, sizeof(b), fs, &d, NULL) == -EBADMSG);
	}
	/* payload = body + 4-byte CRC trailer: a raw body is exactly raw_len, a deflate body is
	 * shorter than raw_len and not empty */
	static const struct {
		uint32_t flags, stored_len;
		int want;
	} cases[] = {
	    {SNAP_STORE_FRAME_DEFLATE, 104, -EUCLEAN}, {SNAP_STORE_FRAME_DEFLATE, 103, 0},
	    {SNAP_STORE_FRAME_DEFLATE, 5, 0},	       {SNAP_STORE_FRAME_DEFLATE, 4, -EUCLEAN},
	    {SNAP_STORE_FRAME_DEFLATE, 0, -EUCLEAN},   {0, 104, 0},
	    {0, 100, -EUCLEAN},			       {0, 105, -EUCLEAN},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct snap_store_frame f = {
		    .raw_len = 100, .stored_len = cases[i].stored_len, .flags = cases[i].flags};
		uint8_t b[SNAP_STORE_FRAME_HEADER_SIZE];
		struct snap_store_frame d;
		snap_store_frame_encode(&f, b);
		CHECK(snap_store_frame_decode(b, sizeof(b), 4096, &d, NULL) == cases[i].want);
	}
	/* the AAD: image id, header bytes 0..63 with the crc zeroed; the digest left out */
	struct snap_store_frame f = {.raw_len = 100, .stored_len = 104, .index = 3};
	uint8_t b[SNAP_STORE_FRAME_HEADER_SIZE], id[SNAP_STORE_ID_SIZE], aad[SNAP_STORE_FRAME_AAD_SIZE];
	memset(id, 0x5a, sizeof(id));
	snap_store_frame_encode(&f, b);
	snap_store_frame_aad(id, b, aad);
	CHECK(sizeof(aad) == 80 && !memcmp(aad, id, 16) && !memcmp(aad + 16, b, 4) &&
	      snap_get_le32(aad + 20) == 0 && !memcmp(aad + 24, b + 8, 56));
}

static void test_meta(void)
{
	struct snap_store_meta m = {.name = "n", .owner = "o", .creation_time = 5};
	struct snap_store_partition p = {.number = 1, .start = 1048576, .size = 4096, .type = "83"};
	struct snap_store_volume v = {
	    .device = "/dev/xvda", .size = 1 << 20, .nparts = 1, .parts = &p};
	m.nvolumes = 1;
	m.volumes = &v;
	uint8_t *buf = NULL;
	size_t len = 0;
	CHECK(snap_store_meta_encode(&m, &buf, &len) == 0);
	struct snap_store_meta d;
	CHECK(snap_store_meta_decode(buf, len, &d, NULL) == 0);
	CHECK(!strcmp(d.name, "n") && d.nvolumes == 1 && d.volumes[0].size == 1 << 20 &&
	      d.volumes[0].nparts == 1 && d.volumes[0].parts[0].start == 1048576);
	snap_store_meta_clear(&d);
	for (size_t i = 1; i < len; i++)
		if (snap_store_meta_decode(buf, i, &d, NULL) == 0)
			snap_store_meta_clear(&d);
	/* an unknown critical key is refused, an unknown plain key skipped */
	uint8_t crit[] = {0x99, 0x80, 0, 0, 0, 0};
	uint8_t *b2 = malloc(len + sizeof(crit));
	memcpy(b2, buf, len);
	memcpy(b2 + len, crit, sizeof(crit));
	CHECK(snap_store_meta_decode(b2, len + sizeof(crit), &d, NULL) == -EOPNOTSUPP);
	b2[len + 1] = 0;
	CHECK(snap_store_meta_decode(b2, len + sizeof(crit), &d, NULL) == 0);
	snap_store_meta_clear(&d);
	free(b2);
	free(buf);
}

static void test_index(void)
{
	struct snap_extent ext[3] = {
	    {.offset = 0, .length = 8192, .kind = SNAP_EXTENT_DATA},
	    {.offset = 8192, .length = 4096, .kind = SNAP_EXTENT_ZERO},
	    {.offset = 12288, .length = 4096, .kind = SNAP_EXTENT_DATA},
	};
	struct snap_store_index_frame fr[2] = {
	    {.file_offset = 500, .offset = 0, .raw_len = 8192, .stored_len = 8192},
	    {.file_offset = 9000, .offset = 12288, .raw_len = 4096, .stored_len = 4096},
	};
	struct snap_store_index_volume vol = {.nframes = 2, .nextents = 3, .extents = ext};
	struct snap_store_index ix = {.nvolumes = 1, .vols = &vol, .nframes = 2, .frames = fr};
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t size = 16384;
	struct snap_store_index d;
	CHECK(snap_store_index_encode(&ix, &buf, &len) == 0);
	CHECK(snap_store_index_decode(buf, len, &size, 1, &d, NULL) == 0);
	CHECK(d.nframes == 2 && d.vols[0].nextents == 3 && d.frames[1].offset == 12288);
	snap_store_index_clear(&d);
	uint64_t wrong = 20000;
	CHECK(snap_store_index_decode(buf, len, &wrong, 1, &d, NULL) == -EUCLEAN);
	free(buf);
	/* a frame that does not cover its DATA extent (a dropped frame) is refused */
	ix.nframes = 1;
	vol.nframes = 1;
	CHECK(snap_store_index_encode(&ix, &buf, &len) == 0);
	CHECK(snap_store_index_decode(buf, len, &size, 1, &d, NULL) == -EUCLEAN);
	free(buf);
	/* a frame over a ZERO extent is refused */
	ix.nframes = 2;
	vol.nframes = 2;
	fr[1].offset = 8192;
	CHECK(snap_store_index_encode(&ix, &buf, &len) == 0);
	CHECK(snap_store_index_decode(buf, len, &size, 1, &d, NULL) == -EUCLEAN);
	free(buf);
}

static void test_crypto(void)
{
	uint8_t dk[32], id[16], nonce[12], tag[16];
	struct snap_store_rng rng = {.seeded = true, .seed = 9};
	CHECK(snap_store_random(&rng, "k", 0, dk, sizeof(dk)) == 0);
	CHECK(snap_store_random(&rng, "i", 0, id, sizeof(id)) == 0);
	CHECK(snap_store_random(&rng, "n", 0, nonce, sizeof(nonce)) == 0);
	struct snap_store_keyset ks;
	CHECK(snap_store_derive(dk, id, &ks) == 0);
	CHECK(memcmp(ks.enc, ks.mac, 32) != 0);
	struct snap_store_cipher *c = NULL;
	CHECK(snap_store_cipher_new(&ks, &c) == 0);
	uint8_t buf[1000], orig[1000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = orig[i] = (uint8_t)(i * 7);
	uint8_t aad[4] = {1, 2, 3, 4};
	CHECK(snap_store_cipher_seal(c, nonce, aad, 4, buf, sizeof(buf), tag) == 0);
	CHECK(memcmp(buf, orig, sizeof(buf)) != 0);
	uint8_t copy[1000];
	memcpy(copy, buf, sizeof(buf));
	aad[0] ^= 1;
	CHECK(snap_store_cipher_open(c, nonce, aad, 4, copy, sizeof(copy), tag) == -EBADMSG);
	aad[0] ^= 1;
	CHECK(snap_store_cipher_open(c, nonce, aad, 4, buf, sizeof(buf), tag) == 0);
	CHECK(memcmp(buf, orig, sizeof(buf)) == 0);
	uint8_t d1[32], d2[32];
	CHECK(snap_store_cipher_digest(c, orig, sizeof(orig), d1) == 0);
	CHECK(snap_store_cipher_digest(c, orig, sizeof(orig), d2) == 0);
	CHECK(memcmp(d1, d2, 32) == 0); /* the digest restarts each time */
	/* an outside judge: SHA-256 of "abc" (FIPS 180-2, appendix B.1) */
	static const uint8_t abc[32] = {
	    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
	    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
	CHECK(snap_store_cipher_digest(c, "abc", 3, d1) == 0 && memcmp(d1, abc, 32) == 0);
	c = snap_store_cipher_free(c);

	struct snap_store_keyslot s;
	uint8_t back[32];
	CHECK(snap_store_slot_scrypt_make("pw", 2, dk, id, &rng, 1024, &s) == 0);
	CHECK(snap_store_slot_scrypt_open(&s, "pw", 2, id, back) == 0 && !memcmp(back, dk, 32));
	CHECK(snap_store_slot_scrypt_open(&s, "px", 2, id, back) == -EKEYREJECTED);
	id[0] ^= 1; /* the wrapped key is bound to its image */
	CHECK(snap_store_slot_scrypt_open(&s, "pw", 2, id, back) == -EKEYREJECTED);
	s.n = 3; /* not a power of two */
	CHECK(snap_store_slot_scrypt_open(&s, "pw", 2, id, back) == -EUCLEAN);
}

/* snap_store_build_record: prefix, payload, tag over pre || record, CRC; plain and keyed. */
static void test_build_record(void)
{
	static const uint8_t payload[] = "the payload", pre[] = "a header";
	uint8_t key[SNAP_STORE_KEY_SIZE];
	memset(key, 7, sizeof(key));
	for (int keyed = 0; keyed < 2; keyed++) {
		const void *pres[] = {pre};
		const size_t pre_lens[] = {sizeof(pre)};
		uint8_t *rec = NULL;
		size_t len = 0;
		int r = snap_store_build_record(SNAP_STORE_REC_META, payload, sizeof(payload),
						keyed ? key : NULL, pres, pre_lens, 1, &rec, &len);
		CHECK(r == 0);
		if (r < 0)
			continue;
		CHECK(len == SNAP_STORE_PREFIX_SIZE + sizeof(payload) + SNAP_STORE_TAG_SIZE);
		struct snap_store_prefix p;
		CHECK(snap_store_prefix_decode(rec, len, &p) == 0);
		CHECK(p.type == SNAP_STORE_REC_META && p.length == len);
		CHECK(snap_store_record_crc_ok(rec, len));
		CHECK(!memcmp(rec + SNAP_STORE_PREFIX_SIZE, payload, sizeof(payload)));
		/* the tag as its reader computes it: over pre and the record with its crc 0 */
		uint8_t *z = malloc(len), tag[SNAP_STORE_DIGEST_SIZE];
		CHECK(z != NULL);
		memcpy(z, rec, len);
		snap_store_prefix_encode(z, SNAP_STORE_REC_META, len);
		const void *parts[] = {pre, z};
		const size_t lens[] = {sizeof(pre), SNAP_STORE_PREFIX_SIZE + sizeof(payload)};
		CHECK(snap_store_mac(keyed ? key : NULL, parts, lens, 2, tag) == 0);
		CHECK(!memcmp(tag, rec + SNAP_STORE_PREFIX_SIZE + sizeof(payload), sizeof(tag)));
		rec[SNAP_STORE_PREFIX_SIZE] ^= 1;
		CHECK(!snap_store_record_crc_ok(rec, len));
		free(z);
		free(rec);
	}
}

int main(void)
{
	test_build_record();
	test_header();
	test_frame();
	test_meta();
	test_index();
	test_crypto();
	if (test_failures)
		fprintf(stderr, "%d test_failures\n", test_failures);
	return test_failures ? 1 : 0;
}
