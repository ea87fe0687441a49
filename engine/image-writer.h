/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * image-writer.h - an image written from data runs into an output stream (output.h), the way
 * unbundle writes a bundle's tar member: runs in increasing offset order, what lies between
 * them and every all-zero 4 KiB block inside them made to read back as zeros, so a non-sparse
 * tar of a mostly empty disk still restores sparse.
 *
 * Invariants:
 *  1. Runs come in strictly increasing, non-overlapping offset order (the tar reader's order,
 *     tar-reader.h invariant 3); written_to is the end of the last one, and everything before
 *     it was written or zeroed.
 *  2. A run is cut into pieces that end on 4 KiB boundaries of the image; a piece of zeros
 *     goes out as snap_output_stream_zero (a hole in a fresh file, a zeroed range on a block
 *     device), the others as writes, in order, and consecutive pieces of one kind as one.
 *  3. Without a stream (verifying only) nothing is written, and the counters still count.
 *  4. The writer is one thread's (the sink that owns the stream); its first failure is
 *     recorded on the pipeline given (pipe) with the stream's own message when it has one
 *     (an earlier piece written in the background), else naming the output and the offset.
 */
#ifndef SNAP_IMAGE_WRITER_H
#define SNAP_IMAGE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "output.h"
#include "pipeline.h"

struct snap_image_writer {
	struct snap_output *out;
	struct snap_output_stream *ostream; /* writes and zeroes out, in order; NULL: count only */
	struct snap_pipeline *pipe;	    /* where a failure is recorded */
	uint64_t written_to; /* image bytes covered so far (data written or zeroed) */
	uint64_t bytes_done, bytes_written, bytes_skipped;
};

/* len bytes at off: the gap before them zeroed, then the run written (invariants 1, 2). */
int snap_image_writer_data(struct snap_image_writer *w, uint64_t off, const uint8_t *buf,
			   size_t len);
/* [off, off + len) made to read back as zeros (counted as skipped). */
int snap_image_writer_zero(struct snap_image_writer *w, uint64_t off, uint64_t len);
/* A failure r of the stream while it did `what` ("write", "zero") at off, recorded. */
int snap_image_writer_failed(struct snap_image_writer *w, int r, const char *what, uint64_t off);

#endif
