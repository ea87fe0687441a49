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
 *     every chunk: no allocation per chunk. Likewise an inflater's state (snap_inflate_new).
 *  4. This is the one file of the project that calls ISA-L (deflate, inflate, CRC-32) and
 *     translates its return codes; the .bin store frames (store-frame.c) and the classic
 *     bundle's gunzip (engine/unbundle.c) go through it.
 *  5. The same input deflates to the same bytes in every process: an input under
 *     SNAP_DEFLATE_SMALL bytes is deflated at level 0 whatever the compressor's level, because
 *     ISA-L 2.30's levels 1-3 give different (valid) bytes for small inputs in about one
 *     process in four to forty (docs/NOTES.md, "Deflate"), and a store's resume seals frames
 *     again in a new process and must get the bytes it uploaded.
 */
#ifndef SNAP_GZIP_CHUNK_H
#define SNAP_GZIP_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_GZIP_HEADER_SIZE 10
#define SNAP_GZIP_TRAILER_SIZE 8
#define SNAP_DEFLATE_MAX_LEVEL 3
#define SNAP_DEFLATE_SMALL (256u << 10) /* invariant 5 */

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

/* Compresses in[0..len) as one complete raw deflate stream (BFINAL set) without a CRC, into at
 * most out_cap bytes. 0, -ENOBUFS when it does not fit in out_cap (data that does not shrink,
 * when out_cap < len), -EINVAL, -EIO on another ISA-L error. */
int snap_deflate_raw(struct snap_deflate *d, const uint8_t *in, size_t len, uint8_t *out,
		     size_t out_cap, size_t *ret_len);

/* One thread's inflater (an ISA-L inflate state, allocated once). */
struct snap_inflate;
int snap_inflate_new(struct snap_inflate **ret);
struct snap_inflate *snap_inflate_free(struct snap_inflate *i);

/* Inflates the raw deflate stream in[0..len), which must decode to exactly out_len bytes with no
 * input left over. 0 or -EBADMSG. */
int snap_inflate_raw(struct snap_inflate *i, const uint8_t *in, size_t len, uint8_t *out,
		     size_t out_len);

/* Streaming gunzip (header, CRC-32 and ISIZE checked by ISA-L), one member at a time:
 * snap_gunzip_begin starts the stream, snap_gunzip_step consumes from *in (advancing *in and
 * *in_len) and writes up to out_cap bytes at out (*ret_out: how many). *ret_end is true when
 * the member ended (its trailer checked). 0; -EBADMSG for a CRC-32 or length mismatch,
 * -EUCLEAN for other corrupt data, with *ret_detail saying what. */
void snap_gunzip_begin(struct snap_inflate *i);
int snap_gunzip_step(struct snap_inflate *i, const uint8_t **in, size_t *in_len, uint8_t *out,
		     size_t out_cap, size_t *ret_out, bool *ret_end, const char **ret_detail);
/* Before each step of a stream of one or more members (gzip allows several): 1 to step on,
 * after starting the next member when the last one ended and in[0..in_len) begins another; 0
 * when it ended and no input is left (the stream may end here); -EUCLEAN when it ended and the
 * input does not begin a member (trailing junk), with *ret_detail saying so. */
int snap_gunzip_more(struct snap_inflate *i, const uint8_t *in, size_t in_len,
		     const char **ret_detail);
/* The last member stepped ended (*ret_end), and no other was started since. */
bool snap_gunzip_ended(const struct snap_inflate *i);

/* CRC-32 (gzip's) of buf, continuing from crc (0 to start). */
uint32_t snap_crc32(uint32_t crc, const uint8_t *buf, size_t len);
/* CRC of A||B from crc(A), crc(B) and len(B). */
uint32_t snap_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* The 10-byte header; xfl is 2 for the slowest level, 4 for the fastest, 0 otherwise. */
void snap_gzip_header(uint8_t out[SNAP_GZIP_HEADER_SIZE], int level);
void snap_gzip_trailer(uint8_t out[SNAP_GZIP_TRAILER_SIZE], uint32_t crc, uint64_t total_len);

#endif
