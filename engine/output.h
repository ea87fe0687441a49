/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * output.h - the one output layer: every file a job writes (an image file or block device that
 * unbundle and restore fill at any offset, a store image, bundle parts and the manifest written
 * from start to end, standard output), with one commit policy.
 *
 * Invariants:
 *  1. A file target is written under a temporary name in the same directory
 *     (".NAME.tmp-PID", created O_EXCL) and only renamed to NAME by snap_output_commit(), after the
 *     caller verified everything. snap_output_free() without a commit removes it: a failed
 *     job never leaves a file that looks complete.
 *  2. An existing file is never replaced unless force was given: not at open (lstat: a
 *     dangling symbolic link exists too) and not at commit, where the rename is
 *     RENAME_NOREPLACE (or link() where the filesystem lacks it), so a file that appeared
 *     meanwhile (a concurrent run) is not replaced either. A symbolic link is followed only
 *     to a block device.
 *  2a. The commit policy (snap_output_commit, snap_output_commit_all): fsync the data, rename
 *     into place as invariant 2 says, fsync the directory; a directory fsync that fails fails
 *     the commit and removes what was renamed, so nothing is reported written that a crash
 *     could take back. A set of outputs (a bundle's parts, then its manifest) is renamed in
 *     order, the last one last, and undone as a whole on failure.
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
 *  6. An S3 object (snap_output_open_s3, "s3://BUCKET/KEY") is an APPEND output written by a
 *     snap_output_seq into an s3 writer (s3/s3.h W1-W3): a multipart upload, or one PUT of a
 *     body held in memory for small outputs (a bundle's parts, its manifest). The object
 *     appears only at the commit (CompleteMultipartUpload; a single PUT made at seq_end, or at
 *     the commit for one opened put_at_commit, which makes a manifest appear last). An
 *     existing object is refused at open (HEAD) unless force; the commit itself cannot be
 *     conditional (the gateway of the tests ignores If-None-Match on a completion), so an
 *     object that appears meanwhile is replaced. free without a commit aborts the upload, or
 *     keeps it for a resume when opened keep; a committed object of a set whose later member
 *     fails is deleted (invariant 2a).
 */
#ifndef SNAP_OUTPUT_H
#define SNAP_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "s3.h"

struct snap_job;
struct snap_output;

enum {
	SNAP_OUTPUT_FORCE = 1 << 0,    /* replace an existing file (at commit) */
	SNAP_OUTPUT_BUFFERED = 1 << 1, /* page cache only: no O_DIRECT descriptor */
	/* written from start to end by a snap_output_seq, size unknown at open (size is
	 * ignored); "-" is accepted and means standard output, which needs no commit */
	SNAP_OUTPUT_APPEND = 1 << 2,
	/* the caller reclaimed the directory's debris itself (a bundle, once for all its parts):
	 * open does not scan it (snap_output_reclaim) */
	SNAP_OUTPUT_NO_RECLAIM = 1 << 3,
};

/* What a job's parameters ask of its outputs: SNAP_OUTPUT_FORCE for SNAP_PARAM_FORCE,
 * SNAP_OUTPUT_BUFFERED for SNAP_PARAM_NO_DIRECT. */
unsigned snap_output_job_flags(const struct snap_job *job);

/* The memory alignment that makes a congruent buffer eligible for the direct path (any
 * alignment the kernel reports for O_DIRECT divides it on every machine we know of). */
#define SNAP_OUTPUT_MEM_ALIGN 4096u

/* "-" is not accepted (restores go to a seekable target). detail (malloc'd) names the path.
 * flags: SNAP_OUTPUT_*; a bool "force" passed here means SNAP_OUTPUT_FORCE. */
int snap_output_open(const char *path, uint64_t size, unsigned flags, struct snap_output **ret,
		     char **ret_detail);
bool snap_output_is_block_device(const struct snap_output *out);
/* One output per volume of a restore: out itself for one; for several, out is a directory
 * (created when missing: *ret_made_dir says so, for the caller to remove it should its job
 * fail) holding NAME.img per volume, NAME the last component of its device name,
 * which must be usable and unique. An output that names the regular file src_fd reads (src,
 * the image) is refused. On failure every output opened is aborted and the directory made is
 * removed. */
struct snap_output_vol {
	const char *device; /* NULL: no output for this volume */
	uint64_t size;
};
int snap_output_open_volumes(const char *out, const struct snap_output_vol *vols, size_t n,
			     unsigned flags, const char *src, int src_fd, struct snap_output **outs,
			     bool *ret_made_dir, char **ret_detail);
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

/* The commit policy (invariant 2a) for one output (block device: fsync only). */
int snap_output_commit(struct snap_output *out, char **ret_detail);
/* The commit policy for n outputs as one: every one synced, renamed in order, directories
 * synced; a failure removes those already renamed. */
int snap_output_commit_all(struct snap_output *const *outs, size_t n, char **ret_detail);

/* Removes the temporaries a killed run left in dir: entries ".PREFIX*.tmp-PID" whose process
 * is gone (a live owner's are kept). Returns how many were removed. */
int snap_output_reclaim(const char *dir, const char *prefix);

/* Whether path names the file st describes (the same inode): a job never replaces its own
 * source. */
bool snap_output_is_file(const char *path, const struct stat *st);

/* A fault hook for tests, process-wide: asked before each O_DIRECT write (with its offset) and
 * each directory fsync of a commit; a non-zero return is the errno that call then fails with. */
enum snap_output_fault_point {
	SNAP_OUTPUT_FAULT_DIRECT_WRITE = 1,
	SNAP_OUTPUT_FAULT_DIR_SYNC = 2,
};
typedef int (*snap_output_fault_fn)(void *userdata, enum snap_output_fault_point point,
				    const char *path, uint64_t off);
void snap_output_set_fault(snap_output_fault_fn fn, void *userdata);

/* A sequential writer for outputs opened with SNAP_OUTPUT_APPEND, one after another (a store
 * image; a bundle's parts), for one producer thread:
 *  Q1. Bytes are staged in an aligned STAGE (4 MiB) buffer, filled by copy (seq_write) or in
 *      place (seq_space + seq_put: a cipher encrypts straight into it). Full stages go out in
 *      whole blocks through the O_DIRECT descriptor at increasing offsets; an output's last
 *      block is padded and the output truncated to its length at seq_end. Without a direct
 *      descriptor (refused, buffered, a pipe) the stage goes through the page cache, with
 *      writeback started every 64 MiB.
 *  Q2. A direct write refused with EINVAL (output.h invariant 5) turns O_DIRECT off for the
 *      rest of the sequence (every later output too), and the bytes are written buffered.
 *  Q3. With async, full stages are written by the sequence's own thread (3 stages: one being
 *      filled, two being written), so the producer never waits for the device; without, by
 *      the producer. The first failure stops the writing; every later call returns it, and
 *      snap_output_seq_error() names the output and the offset.
 *  Q4. Memory is fixed at snap_output_seq_new. */
struct snap_output_seq;
int snap_output_seq_new(bool async, bool close_at_end, struct snap_output_seq **ret);
/* Starts writing out (opened SNAP_OUTPUT_APPEND) at its offset 0; the previous one ended. */
void snap_output_seq_start(struct snap_output_seq *q, struct snap_output *out);
/* Room in the stage at its end, at least 1 byte (a full stage is flushed first). */
uint8_t *snap_output_seq_space(struct snap_output_seq *q, size_t *ret_room);
/* n bytes written at seq_space's pointer belong to the output. */
int snap_output_seq_put(struct snap_output_seq *q, size_t n);
int snap_output_seq_write(struct snap_output_seq *q, const void *buf, size_t len);
/* The current output is complete: its last block out, the output truncated to its length
 * (closed with close_at_end). With async that happens on the thread: seq_flush waits. */
int snap_output_seq_end(struct snap_output_seq *q);
/* Waits until everything handed over was written; the first failure. */
int snap_output_seq_flush(struct snap_output_seq *q);
/* An S3 output's total size, known only at its end (a store's frames are compressed): the
 * staged bytes go to the s3 writer, which is told size (snap_s3_writer_rewind). *ret_offset is
 * the writer's offset after that: below the bytes written so far when a streamed part was
 * started for more bytes than the object has, and the producer must write the same bytes
 * from there again. */
int snap_output_seq_s3_rewind(struct snap_output_seq *q, uint64_t size, uint64_t *ret_offset);
const char *snap_output_seq_error(const struct snap_output_seq *q);
/* Wall time spent writing (after seq_flush: all of it). */
uint64_t snap_output_seq_write_ns(const struct snap_output_seq *q);
/* Whether direct writes are (still) used. */
bool snap_output_seq_direct(const struct snap_output_seq *q);
/* Stops the thread (after what is queued), frees. */
struct snap_output_seq *snap_output_seq_free(struct snap_output_seq *q);
/* Aborts unless committed, closes, frees. */
struct snap_output *snap_output_free(struct snap_output *out);
/* An S3 object as an output (invariant 6). The client must outlive the output. */
struct snap_output_s3 {
	struct snap_s3_client *client;
	const struct snap_s3_put_options *put; /* ACL, metadata, tags; NULL: none */
	bool single;	    /* one PUT of the whole body (at most SNAP_S3_MAX_BUFFERED_PART) */
	bool put_at_commit; /* single: PUT only at the commit (a set's last object) */
	uint64_t part_size; /* multipart: 0 is SNAP_S3_DEFAULT_PART_SIZE */
	bool keep;	    /* multipart: a failure keeps the upload for a resume */
	/* multipart: every part streams whatever its size (SNAP_S3_WRITER_STREAM), as parts
	 * over SNAP_S3_MAX_BUFFERED_PART do: for tests of the streamed path at small sizes */
	bool stream;
	/* multipart: continue upload_id, whose parts[0, nparts) are done (a resume) */
	const char *upload_id;
	const struct snap_s3_part *parts;
	size_t nparts;
	/* multipart: called as each part is acknowledged, from the transport (a checkpoint) */
	snap_s3_part_done_fn on_part;
	void *on_part_userdata;
};
/* flags: SNAP_OUTPUT_FORCE (replace an existing object); SNAP_OUTPUT_APPEND is implied. The
 * detail names the object and the operation. */
int snap_output_open_s3(const char *url, unsigned flags, const struct snap_output_s3 *s3,
			struct snap_output **ret, char **ret_detail);
bool snap_output_is_s3(const struct snap_output *out);
/* The object's ETag once committed (multipart: "HEX-N"), else NULL. */
const char *snap_output_s3_etag(const struct snap_output *out);
/* The multipart upload's id, or NULL (single PUT). */
const char *snap_output_s3_upload_id(const struct snap_output *out);

/* The path the output will have (or has) once committed. */
const char *snap_output_path(const struct snap_output *out);
/* For an output filled by other means (bundle-vol's image: sfdisk, a loop device, mkfs): its
 * page-cache descriptor, and the temporary name it has until the commit (NULL for a block
 * device, standard output or an object). The commit policy stays the layer's. */
int snap_output_fd(const struct snap_output *out);
const char *snap_output_tmp_path(const struct snap_output *out);
/* Names the file the commit renames to, when it is decided only after writing (a bundle's part
 * names depend on the number of parts): in the same directory, whose fsync ends the commit;
 * the temporary keeps its name. */
int snap_output_set_path(struct snap_output *out, const char *path);

#endif
