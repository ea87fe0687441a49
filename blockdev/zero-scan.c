// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * zero-scan.c - snap_is_zero(): is a buffer all zero bytes?
 *
 * Invariants:
 *  1. The answer is exactly that of a byte loop, for every length and every alignment of buf
 *     (test-zero-scan.c checks it at boundary sizes with one non-zero byte at every position).
 *  2. No byte outside buf[0..len) is read: loads go through memcpy() into vectors, which the
 *     compiler turns into unaligned vector loads, never past the end.
 *
 * The hot loop ORs 256 bytes into one 16-byte vector (GCC/Clang vector extensions: SSE2 on
 * x86-64, NEON on arm64, scalar pairs elsewhere) and tests it once, so the cost is one load
 * and one OR per 16 bytes plus one branch per 256: memory bandwidth, not the loop, is the
 * limit, and a non-zero block is noticed within 256 bytes.
 */
#include <stdint.h>
#include <string.h>

#include "reader.h"

typedef uint64_t snap_vec __attribute__((vector_size(16)));

static inline snap_vec load_vec(const uint8_t *p)
{
	snap_vec v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline bool vec_is_zero(snap_vec v)
{
	return (v[0] | v[1]) == 0;
}

bool snap_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len >= 256) {
		snap_vec a = load_vec(p) | load_vec(p + 16);
		snap_vec b = load_vec(p + 32) | load_vec(p + 48);
		snap_vec c = load_vec(p + 64) | load_vec(p + 80);
		snap_vec d = load_vec(p + 96) | load_vec(p + 112);
		snap_vec e = load_vec(p + 128) | load_vec(p + 144);
		snap_vec f = load_vec(p + 160) | load_vec(p + 176);
		snap_vec g = load_vec(p + 192) | load_vec(p + 208);
		snap_vec h = load_vec(p + 224) | load_vec(p + 240);
		if (!vec_is_zero((a | b) | (c | d) | (e | f) | (g | h)))
			return false;
		p += 256;
		len -= 256;
	}
	snap_vec acc = {0, 0};
	while (len >= 16) {
		acc |= load_vec(p);
		p += 16;
		len -= 16;
	}
	uint64_t rest = 0;
	if (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		rest |= w;
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		rest |= *p++;
		len--;
	}
	return vec_is_zero(acc) && rest == 0;
}
