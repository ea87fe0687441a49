// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * image-writer.c - an image written from data runs into an output stream, zero blocks as holes
 * (image-writer.h states the invariants).
 */
#include <stdbool.h>
#include <string.h>

#include "image-writer.h"
#include "reader.h"

/* A failure of the output stream: its own message names the piece that failed (perhaps an
 * earlier one, written in the background); otherwise this one. */
int snap_image_writer_failed(struct snap_image_writer *w, int r, const char *what, uint64_t off)
{
	const char *d = snap_output_stream_error(w->ostream);
	if (d)
		return snap_pipeline_fail(w->pipe, r, "%s", d);
	return snap_pipeline_fail(w->pipe, r, "cannot %s %s at offset %llu: %s", what,
				  snap_output_path(w->out), (unsigned long long)off, strerror(-r));
}

int snap_image_writer_zero(struct snap_image_writer *w, uint64_t off, uint64_t len)
{
	w->bytes_skipped += len;
	if (!w->ostream || !len)
		return 0;
	int r = snap_output_stream_zero(w->ostream, off, len);
	if (r < 0)
		return snap_image_writer_failed(w, r, "zero", off);
	return 0;
}

/* Data runs: all-zero 4 KiB blocks become holes (or zeroed ranges on a block device). */
int snap_image_writer_data(struct snap_image_writer *w, uint64_t off, const uint8_t *buf,
			   size_t len)
{
	int r;
	if ((r = snap_image_writer_zero(w, w->written_to, off - w->written_to)) < 0)
		return r;
	if (w->ostream) {
		size_t i = 0;
		while (i < len) {
			/* pieces end on 4 KiB boundaries of the image */
			size_t n = 4096 - (size_t)((off + i) % 4096);
			if (n > len - i)
				n = len - i;
			bool z = snap_is_zero(buf + i, n);
			size_t j = i + n;
			while (j < len) {
				size_t m = len - j < 4096 ? len - j : 4096;
				if (snap_is_zero(buf + j, m) != z)
					break;
				j += m;
			}
			if (z) {
				r = snap_image_writer_zero(w, off + i, j - i);
			} else {
				r = snap_output_stream_write(w->ostream, buf + i, j - i, off + i);
				if (r < 0)
					r = snap_image_writer_failed(w, r, "write", off + i);
				else
					w->bytes_written += j - i;
			}
			if (r < 0)
				return r;
			i = j;
		}
	}
	w->written_to = off + len;
	w->bytes_done = w->written_to;
	return 0;
}
