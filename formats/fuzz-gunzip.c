// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-gunzip.c - libFuzzer target for the streaming gunzip of classic bundles (gzip-chunk.h:
 * snap_inflate_new, snap_gunzip_begin, snap_gunzip_more, snap_gunzip_step), driven the
 * way engine/unbundle.c drives it: the input is the gzip stream, fed in pieces of varying
 * size into a small output buffer, several members in a row while the next byte is 0x1f.
 * The piece and buffer sizes come from a generator seeded by the input's length, so a plain
 * gzip file is a seed and every run of one input is the same. It must not crash, must keep
 * its counters consistent, and must not loop without progress.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "gzip-chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Enough for any bomb libFuzzer's default -max_len can build; past it the input is done. */
#define FUZZ_GUNZIP_MAX_OUT (64u << 20)
#define FUZZ_GUNZIP_OUT_CAP 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct snap_inflate *inf;
	static uint8_t out[FUZZ_GUNZIP_OUT_CAP];
	if (!inf && snap_inflate_new(&inf) < 0)
		return 0;

	uint64_t rng = 0x9e3779b97f4a7c15ull ^ size;
	const uint8_t *src = data;
	size_t left = size;
	uint64_t total_out = 0;
	bool end = false;
	unsigned stalls = 0;

	snap_gunzip_begin(inf);
	while (left > 0 && total_out < FUZZ_GUNZIP_MAX_OUT) {
		const char *why = NULL;
		if (snap_gunzip_more(inf, src, left, &why) < 0)
			break; /* trailing junk: unbundle refuses it */
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		size_t piece = 1 + (size_t)(rng % 4096);
		size_t cap = 1 + (size_t)((rng >> 20) % FUZZ_GUNZIP_OUT_CAP);
		if (piece > left)
			piece = left;
		/* the unconsumed tail of a piece stays with the caller, as in unbundle */
		const uint8_t *p = src;
		size_t plen = piece, n = 0;
		int r = snap_gunzip_step(inf, &p, &plen, out, cap, &n, &end, &why);
		if (p < src || p > src + piece || plen > piece || p + plen != src + piece ||
		    n > cap || (r < 0 && !why))
			abort();
		if (r < 0)
			break;
		size_t used = piece - plen;
		src += used;
		left -= used;
		total_out += n;
		/* ISA-L keeps what it read but could not write: no progress means it is stuck */
		if (!used && !n && !end) {
			if (++stalls > 2)
				break;
		} else {
			stalls = 0;
		}
	}
	return 0;
}
