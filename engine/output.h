/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * output.h - the target of unbundle and restore: a sparse image file or a block device.
 *
 * Invariants:
 *  1. A file target is written under a temporary name in the same directory
 *     (".NAME.snapbundle-XXXXXX") and only renamed to NAME by snap_output_commit(), after the
 *     caller verified everything. snap_output_abort() (and snap_output_free() without a commit)
 *     removes it: a failed job never leaves a file that looks complete.
 *  2. An existing file is never replaced unless force was given.
 *  3. A block device target is opened O_EXCL (which the kernel refuses while it is mounted or
 *     in use), must be at least size bytes, and every ZERO range is written as zeros
 *     (BLKZEROOUT, or writes where the ioctl is refused); a file target is created empty and
 *     truncated to size, so ZERO and UNUSED ranges stay holes and cost no disk.
 *  4. Writes are positional (pwrite), so workers may write frames out of order.
 *  5. A regular file or block device target also gets an O_DIRECT descriptor of the same inode
 *     (unless SNAP_OUTPUT_BUFFERED, the environment variable SNAPBUNDLE_OUTPUT_BUFFERED=1, or
 *     the kernel refuses it). snap_output_write() sends the whole aligned blocks of a piece
 *     whose memory is congruent with its offset through it, bypassing the page cache, and the
 *     unaligned head and tail (or all of a piece whose memory is not congruent) through the
 *     page cache. Callers that want the direct path allocate their buffers aligned to
 *     SNAP_OUTPUT_MEM_ALIGN and place the byte destined for offset off at buffer + off %
 *     SNAP_OUTPUT_MEM_ALIGN. Why mixing the two is safe is stated in output.c.
 */
#ifndef SNAP_OUTPUT_H
#define SNAP_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct snap_output;

enum {
	SNAP_OUTPUT_FORCE = 1 << 0,    /* replace an existing file (at commit) */
	SNAP_OUTPUT_BUFFERED = 1 << 1, /* page cache only: no O_DIRECT descriptor */
};

/* The memory alignment that makes a congruent buffer eligible for the direct path (any
 * alignment the kernel reports for O_DIRECT divides it on every machine we know of). */
#define SNAP_OUTPUT_MEM_ALIGN 4096u

/* "-" is not accepted (restores go to a seekable target). detail (malloc'd) names the path.
 * flags: SNAP_OUTPUT_*; a bool "force" passed here means SNAP_OUTPUT_FORCE. */
int snap_output_open(const char *path, uint64_t size, unsigned flags, struct snap_output **ret,
		     char **ret_detail);
bool snap_output_is_block_device(const struct snap_output *out);
/* SNAPBUNDLE_OUTPUT_BUFFERED is set (and not "0"): every output keeps the page cache (store's
 * image too). */
bool snap_output_env_buffered(void);
/* Exactly len bytes at off; safe from several threads at once for disjoint ranges. */
int snap_output_write(struct snap_output *out, const void *buf, size_t len, uint64_t off);
/* Whether the O_DIRECT descriptor is open, and the offset granularity of direct writes
 * (0 without one). */
bool snap_output_is_direct(const struct snap_output *out);
uint32_t snap_output_direct_block(const struct snap_output *out);
/* Bytes written so far through the O_DIRECT descriptor and through the page cache (tests check
 * which path was taken with these). */
uint64_t snap_output_direct_bytes(const struct snap_output *out);
uint64_t snap_output_buffered_bytes(const struct snap_output *out);
/* Makes [off, off+len) read back as zeros: nothing for a fresh file, BLKZEROOUT or writes for
 * a block device. */
int snap_output_zero(struct snap_output *out, uint64_t off, uint64_t len);
/* Writes zeros (no ioctl): for targets whose content must be overwritten. */
int snap_output_zero_write(struct snap_output *out, uint64_t off, uint64_t len);
/* A sequential writer for one producer thread (unbundle): pieces are copied into aligned
 * buffers at the address congruent with their offset, so that their whole blocks take the
 * direct path whatever the alignment of the producer's memory, and written in order by the
 * stream's own thread, so that the producer never waits for the device. Memory is fixed:
 * nbufs buffers of bufsize bytes (a multiple of SNAP_OUTPUT_MEM_ALIGN). Contiguous pieces
 * share a buffer. The first failure of the writer thread is returned by the following calls,
 * and snap_output_stream_error() says which path and offset. */
struct snap_output_stream;
int snap_output_stream_new(struct snap_output *out, size_t bufsize, unsigned nbufs,
			   struct snap_output_stream **ret);
int snap_output_stream_write(struct snap_output_stream *s, const void *buf, size_t len,
			     uint64_t off);
/* snap_output_zero, in order with the writes (a no-op for a file target). */
int snap_output_stream_zero(struct snap_output_stream *s, uint64_t off, uint64_t len);
/* Waits until everything handed over was written; returns the first failure. */
int snap_output_stream_flush(struct snap_output_stream *s);
/* The first failure's message ("cannot write PATH at offset N: ..."), or NULL. */
const char *snap_output_stream_error(const struct snap_output_stream *s);
/* Waits for the write in progress, drops what is still queued (call flush first to keep it),
 * stops the thread, frees. */
struct snap_output_stream *snap_output_stream_free(struct snap_output_stream *s);

/* fsync and rename the temporary file into place (block device: fsync). */
int snap_output_commit(struct snap_output *out, char **ret_detail);
/* Gives a freshly created file (mkostemp makes 0600) the mode open(O_CREAT, 0666) would: 0666
 * less the process umask. */
int snap_file_mode_default(int fd);
/* Removes the temporary file. Idempotent. */
void snap_output_abort(struct snap_output *out);
/* Aborts unless committed, closes, frees. */
struct snap_output *snap_output_free(struct snap_output *out);
/* The path the output will have (or has) once committed. */
const char *snap_output_path(const struct snap_output *out);

#endif
