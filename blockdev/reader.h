/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reader.h - reads a list of extents from a source, many requests in flight, and hands the
 * consumer chunks in offset order.
 *
 * Invariants:
 *  1. Chunks come back strictly in the order of the ranges given, each range cut into requests
 *     of at most request_size bytes; a chunk is never a mix of two ranges.
 *  2. Every byte delivered was read from the source: a failed or short read past the retries
 *     stops the reader with an error naming the byte offset, never zero fill.
 *  3. Memory is fixed at snap_reader_new: queue_depth buffers of request_size bytes (registered
 *     with io_uring when it is used). A chunk's buffer belongs to the consumer from
 *     snap_reader_next() until snap_reader_release(); the reader waits for a free buffer.
 *  4. The io_uring path and the pread path deliver identical chunks; the pread path is used
 *     when io_uring is unavailable (ENOSYS, EPERM, io_uring_disabled) or when forced by
 *     opts.force_pread or SNAPBUNDLE_FORCE_PREAD=1 in the environment.
 *
 * Threading: snap_reader_start/next are called from one thread; snap_reader_release may be
 * called from any thread.
 */
#ifndef SNAP_READER_H
#define SNAP_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "extent-map.h"
#include "source.h"

/* Test hook: called before each read is issued (retries and the rest of a short read
 * included) with the bytes asked for that the read covers, alignment padding left out; return
 * a negative errno to make that read fail as the device would (-EINTR and -EAGAIN are retried
 * like real ones). On the pread path it is called from helper threads. */
typedef int (*snap_reader_fault_fn)(void *userdata, uint64_t offset, size_t length);

struct snap_reader_opts {
	unsigned queue_depth; /* 0 = default (32) */
	size_t request_size;  /* 0 = default (1 MiB); rounded up to the source alignment */
	bool force_pread;
	snap_reader_fault_fn fault;
	void *fault_userdata;
};

struct snap_chunk {
	uint64_t offset;
	size_t length;
	const uint8_t *data;
	unsigned buffer; /* opaque to the consumer */
};

struct snap_reader;

int snap_reader_new(struct snap_src *src, const struct snap_reader_opts *opts,
		    struct snap_reader **ret);
struct snap_reader *snap_reader_free(struct snap_reader *reader);
/* True when the io_uring path is in use. */
bool snap_reader_uses_uring(const struct snap_reader *reader);
size_t snap_reader_request_size(const struct snap_reader *reader);
unsigned snap_reader_queue_depth(const struct snap_reader *reader);

/* Starts reading ranges (sorted, non-overlapping, within the source; the array is copied).
 * A reader can be started again after the previous list was fully consumed or on error. */
int snap_reader_start(struct snap_reader *reader, const struct snap_range *ranges, size_t n);
/* 1 and a chunk, 0 at the end of the list, or -errno (detail in snap_reader_error). */
int snap_reader_next(struct snap_reader *reader, struct snap_chunk *ret);
void snap_reader_release(struct snap_reader *reader, const struct snap_chunk *chunk);
/* "cannot read PATH at offset N: Input/output error" after a failure, else "". N is the first
 * byte of the failed request that could not be read (an end of file inside the source's size
 * is an Input/output error). */
const char *snap_reader_error(const struct snap_reader *reader);
/* Bytes read from the source so far (requests completed). */
uint64_t snap_reader_bytes_read(const struct snap_reader *reader);

/* True when every byte of buf[0..len) is zero; fast (word-wide, vectorised). */
bool snap_is_zero(const void *buf, size_t len);

#endif
