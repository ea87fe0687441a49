/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tar-reader.h - a streaming (push) reader for the tar stream inside a classic bundle: pure
 * code over buffers, no I/O.
 *
 * Invariants:
 *  1. The archive holds exactly one member, a regular file ('0', '\0', '7') or a sparse one
 *     (old-GNU 'S' with extension headers; PAX sparse 0.0, 0.1 and 1.0), optionally preceded by
 *     GNU long-name ('L') and PAX ('x', 'g') headers, and followed by at least two zero blocks
 *     and zero padding only. Anything else is refused: links, devices, directories, FIFOs,
 *     unknown types, absolute names or names with a ".." component, a second member, a header
 *     whose checksum does not match, a sparse map that is unsorted, overlapping, past the real
 *     size or disagrees with the stored size, and a stream that ends early.
 *  2. Nothing is trusted before its header's checksum matched; every length is bounded by the
 *     bytes actually pushed, so memory use is proportional to the metadata read (with caps).
 *  3. ops->member is called once, before any data, with the member's real (apparent) size.
 *     ops->data is called with runs in strictly increasing, non-overlapping offset order, each
 *     inside [0, size); bytes not covered by a run are zeros (holes). Runs point into the
 *     pushed buffer and are valid only during the call.
 *  4. After the first failure every call returns the same error; snap_tar_reader_error()
 *     names what and at which stream offset.
 */
#ifndef SNAP_TAR_READER_H
#define SNAP_TAR_READER_H

#include <stddef.h>
#include <stdint.h>

struct snap_tar_reader;

struct snap_tar_ops {
	/* The member's header is complete. Return < 0 to stop. */
	int (*member)(void *userdata, const char *name, uint64_t size);
	/* len bytes of member data that belong at offset. Return < 0 to stop. */
	int (*data)(void *userdata, uint64_t offset, const uint8_t *buf, size_t len);
};

int snap_tar_reader_new(const struct snap_tar_ops *ops, void *userdata,
			struct snap_tar_reader **ret);
struct snap_tar_reader *snap_tar_reader_free(struct snap_tar_reader *tr);

/* Consumes len bytes of the tar stream. 0 or -errno: -EBADMSG for a header checksum mismatch,
 * -EUCLEAN for malformed or truncated structure, -EOPNOTSUPP for member types and formats that
 * are refused, -EPERM for unsafe names, or what a callback returned. */
int snap_tar_reader_push(struct snap_tar_reader *tr, const uint8_t *buf, size_t len);

/* The stream ended: 0 when exactly one member was read completely and the end-of-archive
 * blocks were seen, -EUCLEAN otherwise. */
int snap_tar_reader_finish(struct snap_tar_reader *tr);

/* What failed and where, or "". */
const char *snap_tar_reader_error(const struct snap_tar_reader *tr);

#endif
