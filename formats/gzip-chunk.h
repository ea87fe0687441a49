/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * gzip-chunk.h - one gzip member made of independently compressed chunks (parallel gzip).
 *
 * Invariants:
 *  1. Each chunk is raw deflate from a fresh ISA-L stream, so it refers to no earlier chunk.
 *     A non-final chunk ends with a flush (an empty stored block), which leaves it byte
 *     aligned and without BFINAL; the final chunk alone ends with BFINAL. Chunks concatenated
 *     in order are therefore one valid deflate stream.
 *  2. The gzip header is 1f 8b 08 00 00000000 XFL 03 (no name, MTIME 0, Unix) and the trailer
 *     is CRC-32 and ISIZE (length mod 2^32) of the whole input, little-endian; the CRC of the
 *     whole is combined from the per-chunk CRCs (zlib's crc32_combine64).
 *  3. A compressor's ISA-L level buffer is allocated once, in snap_deflate_new, and reused for
 *     every chunk: no allocation per chunk.
 */
#ifndef SNAP_GZIP_CHUNK_H
#define SNAP_GZIP_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_GZIP_HEADER_SIZE 10
#define SNAP_GZIP_TRAILER_SIZE 8
#define SNAP_DEFLATE_MAX_LEVEL 3

struct snap_deflate;

/* level 0-3 (ISA-L's levels). -EINVAL for another level, -ENOMEM. */
int snap_deflate_new(int level, struct snap_deflate **ret);
struct snap_deflate *snap_deflate_free(struct snap_deflate *d);

/* Output bytes that always suffice for a chunk of len input bytes. */
size_t snap_deflate_bound(size_t len);

/* Compresses in[0..len) as one chunk; final marks the last chunk of the member. Writes at most
 * out_cap bytes (snap_deflate_bound(len) always suffices), sets *ret_len and *ret_crc (CRC-32
 * of the input). 0, -ENOBUFS when out_cap is too small, -EIO on an ISA-L error. */
int snap_deflate_chunk(struct snap_deflate *d, const uint8_t *in, size_t len, bool final,
		       uint8_t *out, size_t out_cap, size_t *ret_len, uint32_t *ret_crc);

/* CRC-32 (gzip's) of buf, continuing from crc (0 to start). */
uint32_t snap_crc32(uint32_t crc, const uint8_t *buf, size_t len);
/* CRC of A||B from crc(A), crc(B) and len(B). */
uint32_t snap_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* The 10-byte header; xfl is 2 for the slowest level, 4 for the fastest, 0 otherwise. */
void snap_gzip_header(uint8_t out[SNAP_GZIP_HEADER_SIZE], int level);
void snap_gzip_trailer(uint8_t out[SNAP_GZIP_TRAILER_SIZE], uint32_t crc, uint64_t total_len);

#endif
