/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* util.h - small helpers the job runners share. */
#ifndef SNAP_UTIL_H
#define SNAP_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Reads the whole of a small file (a key, a certificate, a manifest, a passphrase) into a
 * NUL-terminated buffer (free it). FIFOs and /dev/stdin work. -EFBIG when it holds more than
 * max bytes, -errno otherwise. */
int snap_read_small_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* pwrite of all len bytes of buf at off: short writes go on, EINTR retries. 0, or -errno
 * (-EIO for a write of nothing); *done (when not NULL) says how many bytes were written either
 * way, so the failing offset is off + *done. */
int snap_pwrite_all(int fd, const void *buf, size_t len, uint64_t off, size_t *done);

/* pread of all len bytes at off into buf, the same way: 0, -errno, or -ENODATA when the file
 * ends first; *done (when not NULL) says how many bytes were read either way. */
int snap_pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *done);

/* write and read of all len bytes at the descriptor's position (a pipe, standard output), the
 * same way: -EIO for a write of nothing, -ENODATA when the input ends first. */
int snap_write_all(int fd, const void *buf, size_t len, size_t *done);
int snap_read_all(int fd, void *buf, size_t len, size_t *done);

#endif
