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

/* A META with every field of every record kind set, two volumes, two partitions. */
static void full_meta(struct snap_store_meta *m, struct snap_store_volume v[2],
		      struct snap_store_partition p[2])
{
	static char *tags[] = {"purpose=test", "team=storage"}, *bdm[] = {"ami=/dev/xvda"},
		    *s3[] = {"x-amz-meta-a=1", "x-amz-meta-b=2", "x-amz-meta-c=3"};
	p[0] = (struct snap_store_partition){.number = 1,
					     .start = 1 << 20,
					     .size = 1 << 24,
					     .bootable = 1,
					     .type = "0fc63daf",
					     .name = "root",
					     .uuid = "9c9c",
					     .fs_type = "ext4",
					     .fs_label = "cloudimg-rootfs",
					     .fs_uuid = "7e7e"};
	p[1] = (struct snap_store_partition){
	    .number = 15, .start = 1 << 24, .size = 4096, .type = "ef00"};
	v[0] = (struct snap_store_volume){.device = "/dev/xvda",
					  .size = 1ull << 33,
					  .logical_sector = 512,
					  .physical_sector = 4096,
					  .ptable_type = "gpt",
					  .ptable_id = "a1b2c3d4",
					  .nparts = 2,
					  .parts = p};
	v[1] = (struct snap_store_volume){.device = "/dev/xvdb", .size = 8192};
	*m = (struct snap_store_meta){.name = "name",
				      .description = "a description",
				      .arch = "x86_64",
				      .boot_mode = "uefi",
				      .owner = "111122223333",
				      .image_id = "ami-0123456789abcdef0",
				      .creation_time = 1700000000,
				      .store_time = 1700003600,
				      .tags = {2, tags},
				      .bdm = {1, bdm},
				      .s3 = {3, s3},
				      .nvolumes = 2,
				      .volumes = v};
}

/* Every field through encode and decode, the bytes pinned (they are what META is on disk), the
 * limits and the required fields of a volume. */
static void test_meta_fields(void)
{
	struct snap_store_meta m, d;
	struct snap_store_volume v[2];
	struct snap_store_partition p[2];
	full_meta(&m, v, p);
	uint8_t *buf = NULL, sha[32];
	size_t len = 0;
	REQUIRE(snap_store_meta_encode(&m, &buf, &len) == 0);
	static const uint8_t want[32] = {0xae, 0xc9, 0xe6, 0x8a, 0x9e, 0x82, 0x86, 0xde,
					 0x58, 0xfd, 0x85, 0x4c, 0x3a, 0xc7, 0x25, 0x24,
					 0x06, 0xa7, 0xa8, 0x79, 0x35, 0xd9, 0x70, 0xac,
					 0x9f, 0x0b, 0x37, 0xdd, 0x39, 0x32, 0x42, 0xba};
	CHECK(len == 565 && snap_store_sha256(buf, len, sha) == 0 && !memcmp(sha, want, 32),
	      "META bytes changed (len %zu)", len);
	const char *why = NULL;
	REQUIRE(snap_store_meta_decode(buf, len, &d, &why) == 0);
	CHECK(!strcmp(d.name, "name") && !strcmp(d.description, "a description") &&
	      !strcmp(d.arch, "x86_64") && !strcmp(d.boot_mode, "uefi") &&
	      !strcmp(d.owner, "111122223333") && !strcmp(d.image_id, "ami-0123456789abcdef0") &&
	      d.creation_time == 1700000000 && d.store_time == 1700003600);
	CHECK(d.tags.n == 2 && !strcmp(d.tags.v[1], "team=storage") && d.bdm.n == 1 &&
	      !strcmp(d.bdm.v[0], "ami=/dev/xvda") && d.s3.n == 3 &&
	      !strcmp(d.s3.v[2], "x-amz-meta-c=3"));
	REQUIRE(d.nvolumes == 2 && d.volumes[0].nparts == 2 && d.volumes[1].nparts == 0);
	const struct snap_store_volume *dv = d.volumes;
	CHECK(!strcmp(dv->device, "/dev/xvda") && dv->size == 1ull << 33 &&
	      dv->logical_sector == 512 && dv->physical_sector == 4096 &&
	      !strcmp(dv->ptable_type, "gpt") && !strcmp(dv->ptable_id, "a1b2c3d4"));
	const struct snap_store_partition *dp = dv->parts;
	CHECK(dp->number == 1 && dp->start == 1 << 20 && dp->size == 1 << 24 && dp->bootable == 1 &&
	      !strcmp(dp->type, "0fc63daf") && !strcmp(dp->name, "root") &&
	      !strcmp(dp->uuid, "9c9c") && !strcmp(dp->fs_type, "ext4") &&
	      !strcmp(dp->fs_label, "cloudimg-rootfs") && !strcmp(dp->fs_uuid, "7e7e"));
	CHECK(dp[1].number == 15 && !strcmp(dp[1].type, "ef00") && !dp[1].name && !dp[1].fs_uuid);
	CHECK(!strcmp(dv[1].device, "/dev/xvdb") && dv[1].size == 8192 && !dv[1].ptable_type);
	snap_store_meta_clear(&d);
	CHECK(d.name == NULL && d.nvolumes == 0 && d.volumes == NULL && d.tags.n == 0);
	free(buf);

	/* a volume needs its device and its size; META needs a volume */
	v[1].device = NULL;
	REQUIRE(snap_store_meta_encode(&m, &buf, &len) == 0);
	CHECK(snap_store_meta_decode(buf, len, &d, &why) == -EUCLEAN &&
	      !strcmp(why, "malformed metadata"));
	free(buf);
	v[1].device = "/dev/xvdb";
	m.nvolumes = 0;
	REQUIRE(snap_store_meta_encode(&m, &buf, &len) == 0);
	CHECK(snap_store_meta_decode(buf, len, &d, &why) == -EUCLEAN);
	free(buf);
	m.nvolumes = 2;
	/* the size is the one field the encoder always writes: drop it by hand (key 0x8002) */
	uint8_t vol[] = {0x0c, 0x80, 10, 0, 0, 0, 1, 0, 4, 0, 0, 0, 'x', 'v', 'd', 'a'};
	why = NULL;
	CHECK(snap_store_meta_decode(vol, sizeof(vol), &d, &why) == -EUCLEAN &&
	      !strcmp(why, "malformed metadata"));
	/* an unknown critical key inside a partition is refused with its own detail */
	uint8_t crit[] = {0x0c, 0x80, 33, 0, 0, 0,				 /* volume */
			  1,	0,    1,  0, 0, 0, 'v',				 /* device */
			  2,	0x80, 8,  0, 0, 0, 0,	 2,    0, 0, 0, 0, 0, 0, /* size 512 */
			  7,	0,    6,  0, 0, 0, 0x42, 0x80, 0, 0, 0, 0};	 /* partition */
	CHECK(snap_store_meta_decode(crit, sizeof(crit), &d, &why) == -EOPNOTSUPP &&
	      !strcmp(why, "unknown critical metadata field"));
	crit[sizeof(crit) - 5] = 0; /* the same key without bit 15 is skipped */
	REQUIRE(snap_store_meta_decode(crit, sizeof(crit), &d, &why) == 0);
	CHECK(d.nvolumes == 1 && d.volumes[0].size == 512 && d.volumes[0].nparts == 1);
	snap_store_meta_clear(&d);

	/* the limits: 65536 entries of a string list, 4096 volumes, 4096 partitions a volume */
	const struct {
		size_t *n, ok;
	} lim[] = {{&m.tags.n, 65536}, {&m.nvolumes, 4096}, {&v[0].nparts, 4096}};
	for (size_t i = 0; i < 3; i++) {
		size_t keep = *lim[i].n;
		char **strs = calloc(lim[i].ok + 1, sizeof(char *));
		struct snap_store_volume *vols = calloc(lim[i].ok + 1, sizeof(*vols));
		struct snap_store_partition *parts = calloc(lim[i].ok + 1, sizeof(*parts));
		REQUIRE(strs && vols && parts);
		for (size_t j = 0; j <= lim[i].ok; j++) {
			strs[j] = "k=v";
			vols[j] = v[1];
			parts[j] = p[1];
		}
		char **keep_tags = m.tags.v;
		struct snap_store_volume *keep_vols = m.volumes;
		struct snap_store_partition *keep_parts = v[0].parts;
		m.tags.v = strs;
		v[0].parts = parts;
		if (i == 1)
			m.volumes = vols;
		for (size_t extra = 0; extra < 2; extra++) {
			*lim[i].n = lim[i].ok + extra;
			REQUIRE(snap_store_meta_encode(&m, &buf, &len) == 0);
			int r = snap_store_meta_decode(buf, len, &d, &why);
			CHECK(r == (extra ? -EUCLEAN : 0), "limit %zu, %zu more: %d", i, extra, r);
			if (r == 0)
				snap_store_meta_clear(&d);
			free(buf);
		}
		*lim[i].n = keep;
		m.tags.v = keep_tags;
		m.volumes = keep_vols;
		v[0].parts = keep_parts;
		free(strs);
		free(vols);
		free(parts);
	}
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

/* ---- the streamed INDEX record against the whole-buffer one (store_write_tail streams it) ---- */

/* Collects what an encoder emits: the bytes, how many pieces, the largest, an injected error. */
struct sink {
	uint8_t *p;
	size_t len, cap, pieces, largest, first;
	size_t fail_at; /* return -ENOSPC on this piece (1-based), 0 never */
};

static int sink_emit(void *ctx, const void *buf, size_t len)
{
	struct sink *k = ctx;
	if (++k->pieces == k->fail_at)
		return -ENOSPC;
	if (k->pieces == 1)
		k->first = len;
	if (len > k->largest)
		k->largest = len;
	if (k->len + len > k->cap) {
		k->cap = (k->len + len) * 2;
		k->p = realloc(k->p, k->cap);
		REQUIRE(k->p != NULL);
	}
	memcpy(k->p + k->len, buf, len);
	k->len += len;
	return 0;
}

/* The payload as formats/STORE_FORMAT.md 4.4 lays it out, written field by field here: a
 * reference that does not share the library's encoder. */
static uint8_t *spec_index_payload(const struct snap_store_index *ix, size_t *ret_len)
{
	size_t n = 64 + (size_t)ix->nframes * 64;
	for (uint32_t i = 0; i < ix->nvolumes; i++)
		n += 56 + ix->vols[i].nextents * 24;
	uint8_t *b = calloc(1, n), *p = b;
	REQUIRE(b != NULL);
	snap_put_le32(p, ix->nvolumes);
	snap_put_le64(p + 8, ix->nframes);
	snap_put_le64(p + 16, ix->meta_offset);
	snap_put_le64(p + 24, ix->meta_length);
	memcpy(p + 32, ix->meta_digest, 32);
	p += 64;
	for (uint32_t i = 0; i < ix->nvolumes; i++) {
		const struct snap_store_index_volume *v = &ix->vols[i];
		snap_put_le64(p, v->nextents);
		snap_put_le64(p + 8, v->first_frame);
		snap_put_le64(p + 16, v->nframes);
		memcpy(p + 24, v->digest, 32);
		p += 56;
		for (size_t j = 0; j < v->nextents; j++, p += 24) {
			snap_put_le64(p, v->extents[j].offset);
			snap_put_le64(p + 8, v->extents[j].length);
			p[16] = v->extents[j].kind;
			p[17] = v->extents[j].layer;
			snap_put_le32(p + 20, v->extents[j].partition);
		}
	}
	for (uint64_t i = 0; i < ix->nframes; i++, p += 64) {
		const struct snap_store_index_frame *f = &ix->frames[i];
		snap_put_le64(p, f->file_offset);
		snap_put_le32(p + 8, f->volume);
		snap_put_le32(p + 12, f->flags);
		snap_put_le64(p + 16, f->offset);
		snap_put_le32(p + 24, f->raw_len);
		snap_put_le32(p + 28, f->stored_len);
		memcpy(p + 32, f->digest, 32);
	}
	*ret_len = n;
	return b;
}

/* An index of nvol volumes, each of its DATA extents cut into frames of 4 blocks: volume v has
 * nframes[v] frames, every other one followed by a ZERO extent; digests and offsets vary. */
static void make_index(uint32_t nvol, const uint64_t *nframes, struct snap_store_index *ix)
{
	uint64_t total = 0;
	for (uint32_t v = 0; v < nvol; v++)
		total += nframes[v];
	*ix = (struct snap_store_index){.meta_offset = 128, .meta_length = 777, .nvolumes = nvol};
	for (int i = 0; i < 32; i++)
		ix->meta_digest[i] = (uint8_t)(0xa0 + i);
	ix->vols = calloc(nvol, sizeof(*ix->vols));
	ix->frames = calloc(total ? total : 1, sizeof(*ix->frames));
	REQUIRE(ix->vols && ix->frames);
	uint64_t k = 0, file = 905;
	for (uint32_t v = 0; v < nvol; v++) {
		struct snap_store_index_volume *iv = &ix->vols[v];
		iv->first_frame = k;
		iv->nframes = nframes[v];
		memset(iv->digest, 0x10 + (int)v, 32);
		iv->extents = calloc(2 * nframes[v] + 1, sizeof(*iv->extents));
		REQUIRE(iv->extents != NULL);
		uint64_t off = 0;
		for (uint64_t f = 0; f < nframes[v]; f++) {
			iv->extents[iv->nextents++] =
			    (struct snap_extent){.offset = off,
						 .length = 16384,
						 .kind = SNAP_EXTENT_DATA,
						 .partition = (uint32_t)(f % 3)};
			struct snap_store_index_frame *fr = &ix->frames[k++];
			fr->file_offset = file;
			fr->volume = v;
			fr->flags = (uint32_t)(f % 4);
			fr->offset = off;
			fr->raw_len = 16384;
			fr->stored_len = 1000 + (uint32_t)(f % 5000);
			for (int i = 0; i < 32; i++)
				fr->digest[i] = (uint8_t)(f * 31 + (uint64_t)i + v);
			file += SNAP_STORE_FRAME_HEADER_SIZE + fr->stored_len;
			off += 16384;
			if (f % 2) {
				iv->extents[iv->nextents++] =
				    (struct snap_extent){.offset = off,
							 .length = 4096,
							 .kind = SNAP_EXTENT_ZERO,
							 .layer = 2};
				off += 4096;
			}
		}
		/* a volume without frames is one ZERO extent */
		if (!nframes[v])
			iv->extents[iv->nextents++] = (struct snap_extent){
			    .offset = 0, .length = 1 << 20, .kind = SNAP_EXTENT_ZERO};
	}
	ix->nframes = total;
}

static void check_index_stream(const char *shape, const struct snap_store_index *ix)
{
	uint8_t key[SNAP_STORE_KEY_SIZE];
	memset(key, 0x5c, sizeof(key));
	uint8_t *payload = NULL;
	size_t plen = 0, slen = 0;
	REQUIRE(snap_store_index_encode(ix, &payload, &plen) == 0);
	uint8_t *spec = spec_index_payload(ix, &slen);
	CHECK(plen == slen && !memcmp(payload, spec, plen), " %s: payload differs from the spec",
	      shape);
	CHECK(snap_store_index_payload_len(ix) == plen, " %s", shape);
	free(spec);
	for (int keyed = 0; keyed < 2; keyed++) {
		const uint8_t *mk = keyed ? key : NULL;
		uint8_t *rec = NULL;
		size_t rlen = 0;
		REQUIRE(snap_store_build_record(SNAP_STORE_REC_INDEX, payload, plen, mk, NULL, NULL,
						0, &rec, &rlen) == 0);
		struct snap_store_record_seal seal;
		REQUIRE(snap_store_index_record_seal(ix, mk, &seal) == 0);
		CHECK(seal.length == rlen, " %s keyed %d: length %llu, not %zu", shape, keyed,
		      (unsigned long long)seal.length, rlen);
		struct sink k = {0};
		uint32_t crc = 0;
		CHECK(snap_store_index_record_stream(ix, &seal, sink_emit, &k, &crc) == 0);
		CHECK(k.len == rlen && !memcmp(k.p, rec, rlen),
		      " %s keyed %d: streamed record differs", shape, keyed);
		/* the stream's CRC is the seal's; an index changed between them gives another */
		CHECK(crc == seal.crc && crc == snap_get_le32(rec + 4), " %s keyed %d: crc %08x",
		      shape, keyed, crc);
		uint8_t d1[SNAP_STORE_DIGEST_SIZE], d2[SNAP_STORE_DIGEST_SIZE];
		CHECK(snap_store_index_record_digest(ix, &seal, d1) == 0 &&
			  snap_store_sha256(rec, rlen, d2) == 0 && !memcmp(d1, d2, sizeof(d1)),
		      " %s keyed %d: record digest differs", shape, keyed);
		struct sink k2 = {0};
		struct snap_store_index changed = *ix;
		changed.meta_length++;
		CHECK(snap_store_index_record_stream(&changed, &seal, sink_emit, &k2, &crc) == 0 &&
			  crc != seal.crc,
		      " %s keyed %d: a changed index kept the crc", shape, keyed);
		free(k2.p);
		CHECK(k.first == SNAP_STORE_PREFIX_SIZE && k.largest <= (256u << 10), " %s", shape);
		CHECK(k.len == rlen && snap_store_record_crc_ok(k.p, k.len), " %s", shape);
		/* large indexes go out in several pieces, never as one */
		if (plen > (256u << 10))
			CHECK(k.pieces > 3 && k.largest < plen, " %s: %zu pieces", shape, k.pieces);
		/* signed and not: the signed message from the record and from its streamed one */
		static const uint8_t hdr[SNAP_STORE_HEADER_SIZE] = {1, 2, 3};
		static const uint8_t keys_rec[] = "keys", meta_rec[] = "meta";
		uint8_t m1[SNAP_STORE_SIGNED_MSG_SIZE], m2[SNAP_STORE_SIGNED_MSG_SIZE];
		uint8_t d[SNAP_STORE_DIGEST_SIZE];
		const void *parts[] = {k.p};
		const size_t lens[] = {k.len};
		CHECK(snap_store_mac(NULL, parts, lens, 1, d) == 0);
		CHECK(snap_store_signed_message(hdr, keyed ? keys_rec : NULL, sizeof(keys_rec),
						meta_rec, sizeof(meta_rec), rec, rlen, m1) == 0);
		CHECK(snap_store_signed_message_digest(hdr, keyed ? keys_rec : NULL,
						       sizeof(keys_rec), meta_rec, sizeof(meta_rec),
						       d, m2) == 0);
		CHECK(!memcmp(m1, m2, sizeof(m1)), " %s keyed %d: signed messages differ", shape,
		      keyed);
		/* the record decodes to the index it came from */
		struct snap_store_index back;
		const char *why = NULL;
		int r = snap_store_index_decode(
		    k.p + SNAP_STORE_PREFIX_SIZE,
		    k.len - SNAP_STORE_PREFIX_SIZE - SNAP_STORE_TAG_SIZE, NULL, 0, &back, &why);
		CHECK(r == 0 && back.nframes == ix->nframes, " %s: %s", shape, why ? why : "");
		if (r == 0)
			snap_store_index_clear(&back);
		/* an emit error stops the encoder and comes back, in the first piece or later */
		for (size_t at = 1; at <= 3; at++) {
			struct sink e = {.fail_at = at};
			CHECK(snap_store_index_record_stream(ix, &seal, sink_emit, &e, NULL) ==
			      -ENOSPC);
			CHECK(e.pieces == at, " %s: %zu pieces after the error", shape, e.pieces);
			free(e.p);
		}
		free(k.p);
		free(rec);
	}
	free(payload);
}

static void free_index(struct snap_store_index *ix)
{
	snap_store_index_clear(ix);
}

static void test_index_stream(void)
{
	static const struct {
		const char *shape;
		uint32_t nvol;
		uint64_t nframes[6];
	} cases[] = {
	    {"one frame", 1, {1}},
	    {"no frames", 1, {0}},
	    {"many volumes", 6, {3, 0, 1, 4100, 2, 9}},
	    {"pieces at the boundary", 1, {4094}}, /* header and volume fill the rest */
	    {"many frames", 2, {9000, 7001}},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct snap_store_index ix;
		make_index(cases[c].nvol, cases[c].nframes, &ix);
		check_index_stream(cases[c].shape, &ix);
		free_index(&ix);
	}
}

int main(void)
{
	test_build_record();
	test_header();
	test_frame();
	test_meta();
	test_meta_fields();
	test_index();
	test_index_stream();
	test_crypto();
	if (test_failures)
		fprintf(stderr, "%d test_failures\n", test_failures);
	return test_failures ? 1 : 0;
}
