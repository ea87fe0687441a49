// SPDX-License-Identifier: LGPL-2.1-or-later
/* test-zero-scan.c - snap_is_zero() against a byte loop at boundary sizes, at every start
 * alignment, with one non-zero byte at every position (every position near the edges and the
 * 256-byte block boundaries for the large sizes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reader.h"

static bool ref_is_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static unsigned long checks;

static void check(const unsigned char *p, size_t len, const char *what, size_t pos)
{
	bool want = ref_is_zero(p, len), got = snap_is_zero(p, len);
	checks++;
	if (want != got) {
		fprintf(stderr, "FAIL: %s: len %zu pos %zu: snap_is_zero %d, byte loop %d\n", what,
			len, pos, got, want);
		exit(1);
	}
}

/* Positions worth a non-zero byte: all of them for small sizes; else the edges, both sides
 * of every 16- and 256-byte boundary, and a stride through the middle. */
static bool interesting(size_t pos, size_t len)
{
	if (len <= 1100 || pos < 300 || len - pos <= 300)
		return true;
	size_t m = pos % 256;
	if (m <= 1 || m >= 254)
		return true;
	if (len > 9000)
		return pos % 997 == 0;
	return pos % 16 == 0 || pos % 16 == 15 || pos % 97 == 0;
}

int main(void)
{
	static const size_t big[] = {4095, 4096, 4097, 8191, 8192, 8193, 65535, 65536, 65537};
	size_t sizes[601 + sizeof(big) / sizeof(big[0])], nsizes = 0;
	for (size_t s = 0; s <= 600; s++)
		sizes[nsizes++] = s;
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
		sizes[nsizes++] = big[i];

	/* Guard bytes around the tested window must never change the answer. */
	size_t cap = 65537 + 64 + 32;
	unsigned char *mem = malloc(cap);
	if (!mem)
		return 1;
	static const unsigned char values[] = {0x01, 0x80, 0xff};

	for (size_t si = 0; si < nsizes; si++) {
		size_t len = sizes[si];
		for (size_t shift = 0; shift < 17; shift += (len > 1100 ? 5 : 1)) {
			memset(mem, 0xff, cap);
			unsigned char *p = mem + 16 + shift;
			memset(p, 0, len);
			check(p, len, "all zero", 0);
			for (size_t pos = 0; pos < len; pos++) {
				if (!interesting(pos, len))
					continue;
				p[pos] = values[pos % 3];
				check(p, len, "one byte", pos);
				p[pos] = 0;
			}
		}
	}
	free(mem);
	printf("snap_is_zero: %lu checks against the byte loop\n", checks);
	return 0;
}
