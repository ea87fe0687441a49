// SPDX-License-Identifier: LGPL-2.1-or-later
/* test-fs-util.c - the checksum conventions and the bitmap scanner of fs-util.c against
 * reference values and a naive reference at word and byte boundaries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs-util.h"
#include "test-util.h"

static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		for (int i = 0; i < 8; i++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return crc;
}

static void test_crc(void)
{
	static const char check[] = "123456789";
	uint8_t buf[4099];

	/* standard CRC-32C check value: pre- and post-inverted */
	CHECK(~snap_crc32c(~0u, check, 9) == 0xe3069283u);
	/* raw: no inversion inside, so chaining equals one pass */
	CHECK(snap_crc32c(snap_crc32c(~0u, check, 4), check + 4, 5) == snap_crc32c(~0u, check, 9));
	CHECK(snap_crc32c(0, check, 0) == 0);
	/* every length around ISA-L's block sizes against a bitwise reference */
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	static const size_t lens[] = {1,   7,	8,   9,	   15,	 16,   17,   63,   64,	 65,
				      255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097, 4099};
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		CHECK(snap_crc32c(0x12345678u, buf, lens[k]) ==
		      crc32c_bitwise(0x12345678u, buf, lens[k]));
	/* CRC-16/MODBUS (init 0xffff, reflected 0x8005, no final xor) == ext2fs_crc16(~0) */
	CHECK(snap_crc16(0xffff, check, 9) == 0x4b37);
	/* CRC-16/ARC (init 0) */
	CHECK(snap_crc16(0, check, 9) == 0xbb3d);
}

static size_t find_naive(const uint8_t *map, size_t nbits, size_t from, bool value)
{
	for (size_t i = from; i < nbits; i++)
		if (!!(map[i / 8] & (1u << (i & 7))) == value)
			return i;
	return nbits;
}

static void test_bitmap(void)
{
	uint8_t map[40];

	srand(1);
	for (int round = 0; round < 400; round++) {
		int mode = round % 4;
		for (size_t i = 0; i < sizeof(map); i++) {
			if (mode == 0)
				map[i] = (uint8_t)rand();
			else if (mode == 1)
				map[i] = (rand() % 8) ? 0xff : (uint8_t)rand();
			else if (mode == 2)
				map[i] = (rand() % 8) ? 0x00 : (uint8_t)rand();
			else
				map[i] = (i < 20) ? 0xff : 0x00;
		}
		size_t nbits = (size_t)(rand() % (int)(sizeof(map) * 8 + 1));
		for (size_t from = 0; from <= nbits; from++)
			for (int v = 0; v < 2; v++)
				CHECK(snap_bitmap_find(map, nbits, from, v) ==
				      find_naive(map, nbits, from, v));
	}
	memset(map, 0xff, sizeof(map));
	CHECK(snap_bitmap_find(map, 320, 0, false) == 320);
	map[39] = 0x7f;
	CHECK(snap_bitmap_find(map, 320, 0, false) == 319);
	CHECK(snap_bitmap_find(map, 319, 0, false) == 319);
	map[8] = 0xfe;
	CHECK(snap_bitmap_find(map, 320, 1, false) == 64);
}

struct rec {
	uint64_t off[8], len[8];
	int n;
};

static int record(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len)
{
	struct rec *r = ctx->priv;
	r->off[r->n] = off;
	r->len[r->n] = len;
	r->n++;
	return 0;
}

static void test_emitter(void)
{
	struct rec rec = {0};
	struct snap_fs_ctx ctx = {.priv = &rec};
	struct snap_fs_emitter em;

	snap_fs_emitter_init(&em, &ctx, record);
	CHECK(snap_fs_emit(&em, 0, 10) == 0);
	CHECK(snap_fs_emit(&em, 10, 5) == 0);
	CHECK(snap_fs_emit(&em, 20, 0) == 0);
	CHECK(snap_fs_emit(&em, 16, 4) == 0);
	CHECK(snap_fs_emit_flush(&em) == 0);
	CHECK(snap_fs_emit_flush(&em) == 0);
	CHECK(rec.n == 2);
	CHECK(rec.off[0] == 0 && rec.len[0] == 15);
	CHECK(rec.off[1] == 16 && rec.len[1] == 4);
	CHECK(em.total == 19);
	CHECK(snap_fs_fail(&ctx, -5, "group %d", 7) == -5 && !strcmp(ctx.note, "group 7"));
}

int main(void)
{
	test_crc();
	test_bitmap();
	test_emitter();
	if (test_failures)
		fprintf(stderr, "%d checks failed\n", test_failures);
	return test_failures ? 1 : 0;
}
