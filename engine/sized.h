/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Copying a filled struct into a caller-allocated one that begins with `size_t struct_size`
 * (snapbundle.h, "Caller-allocated structs").
 *
 * Invariants:
 * 1. The caller's struct_size is read before anything is written; below sizeof(size_t) the
 *    call fails with -EINVAL and the caller's struct is untouched.
 * 2. Only the first min(caller struct_size, library size) bytes after struct_size are copied: an
 *    older caller's struct is never written past its end.
 * 3. Bytes past the library's own struct, up to the caller's struct_size, are zeroed: a
 *    newer caller reads the members this library does not know as zero.
 * 4. The struct_size member itself is never written.
 */
#ifndef SNAP_SIZED_H
#define SNAP_SIZED_H

#include <errno.h>
#include <stddef.h>
#include <string.h>

static inline int snap_sized_check(const void *ret)
{
	size_t have;

	if (!ret)
		return -EINVAL;
	memcpy(&have, ret, sizeof(have));
	return have < sizeof(size_t) ? -EINVAL : 0;
}

/* full: the library's complete struct of full_size bytes. Call after snap_sized_check. */
static inline void snap_sized_copy(void *ret, const void *full, size_t full_size)
{
	size_t have, n;

	memcpy(&have, ret, sizeof(have));
	n = have < full_size ? have : full_size;
	memcpy((char *)ret + sizeof(size_t), (const char *)full + sizeof(size_t),
	       n - sizeof(size_t));
	if (have > full_size)
		memset((char *)ret + full_size, 0, have - full_size);
}

#endif /* SNAP_SIZED_H */
