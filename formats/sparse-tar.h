/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sparse-tar.h - the tar stream of a bundle: one member in the old-GNU format GNU tar writes
 * by default (--format=gnu, -b20), regular or old-GNU sparse ('S').
 *
 * Invariants:
 *  1. The stream is: [././@LongLink 'L' member when the name is 100 bytes or longer], the member
 *     header, its sparse extension blocks, the stored bytes (the data regions, in order, back to
 *     back), zero padding to 512, two zero blocks, zero padding to a multiple of 10240 bytes.
 *  2. Numbers that fit the field's octal digits are octal with a NUL terminator, as GNU tar
 *     writes them; larger ones use GNU base-256 (first byte 0x80, big-endian value), so sizes
 *     and offsets of any 64-bit source work.
 *  3. A member with regions that do not cover [0, realsize) in one piece is sparse: its map lists
 *     the data regions and ends, as GNU tar 1.34's does, with a zero-length entry at realsize (the
 *     entry that makes extractors extend the file over a trailing hole). 4 entries sit in the
 *     header, 21 in each extension block.
 *  4. Pure code over memory: nothing here reads or writes files.
 */
#ifndef SNAP_SPARSE_TAR_H
#define SNAP_SPARSE_TAR_H

#include <stddef.h>
#include <stdint.h>

#define SNAP_TAR_BLOCK 512u
#define SNAP_TAR_RECORD 10240u

/* A range of the member's bytes that is stored; everything else reads back as zeros. */
struct snap_tar_region {
	uint64_t offset;
	uint64_t length;
};

struct snap_tar_member {
	const char *name;  /* member name, stored as is (no directory part added) */
	uint32_t mode;	   /* permission bits (07777 is kept) */
	int64_t mtime;	   /* seconds since the epoch */
	uint64_t realsize; /* apparent size of the file */
	/* Stored regions: sorted, non-overlapping, non-empty, inside [0, realsize). One region
	 * covering everything (or realsize 0 and no region) gives a regular member. */
	const struct snap_tar_region *regions;
	size_t nregions;
};

/* Checks the member (sorted regions etc.): 0 or -EINVAL. */
int snap_tar_member_check(const struct snap_tar_member *m);
/* Whether the member is written as an old-GNU sparse member. */
int snap_tar_member_is_sparse(const struct snap_tar_member *m);
/* Bytes of header blocks (long-name member, header, extension blocks). */
size_t snap_tar_header_size(const struct snap_tar_member *m);
/* Bytes stored after the headers: the sum of the region lengths. */
uint64_t snap_tar_stored_size(const struct snap_tar_member *m);
/* Writes the header blocks into buf (snap_tar_header_size bytes): 0, -EINVAL, -ENOBUFS. */
int snap_tar_write_header(const struct snap_tar_member *m, uint8_t *buf, size_t len);
/* Zero bytes that follow the stored bytes: block padding, end-of-archive, record padding.
 * header_and_stored is snap_tar_header_size + snap_tar_stored_size. */
uint64_t snap_tar_trailer_size(uint64_t header_and_stored);
/* Total stream length. */
uint64_t snap_tar_stream_size(const struct snap_tar_member *m);

/* A number into a GNU tar numeric field of width bytes: octal with NUL when it fits in
 * width - 1 digits, else base-256. Exposed for tests. */
void snap_tar_number(uint8_t *field, size_t width, uint64_t value);

#endif
