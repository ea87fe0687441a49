/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * strbuf.h - the one growable string / byte buffer of formats/ (canonical requests, string to
 * sign, manifests, the signed text of a manifest, the store's KEYS, META, INDEX and SIGNATURE
 * payloads): append bytes, strings, characters and printf output, then hand the result over.
 *
 * Invariants:
 *  1. A buffer starts zeroed (SNAP_STRBUF_INIT); p is NULL until the first byte is added, and
 *     from then on p[0..len) holds what was added, followed by a NUL at p[len] (len < cap), so
 *     p is a C string whenever what was added holds no NUL.
 *  2. The first failure sticks: err becomes -ENOMEM (allocation, or a size that would overflow),
 *     every later append is a no-op, and snap_strbuf_take reports it. Callers append freely and
 *     check once at the end.
 *  3. The capacity only grows, by doubling from 256 bytes, so n appends of one byte cost
 *     O(log n) allocations.
 *  4. The buffer owns p until snap_strbuf_take hands it over or snap_strbuf_release frees it;
 *     both leave the buffer zeroed, ready to be used again.
 */
#ifndef SNAP_STRBUF_H
#define SNAP_STRBUF_H

#include <stddef.h>

struct snap_strbuf {
	char *p;
	size_t len, cap;
	int err; /* 0, or -ENOMEM once an append failed (invariant 2) */
};

#define SNAP_STRBUF_INIT                                                                           \
	{                                                                                          \
		0                                                                                  \
	}

/* Room for n more bytes and the NUL; 0 or the sticky error. */
int snap_strbuf_grow(struct snap_strbuf *b, size_t n);
/* Appends s[0..n) (bytes, NULs included). */
void snap_strbuf_add(struct snap_strbuf *b, const void *s, size_t n);
void snap_strbuf_str(struct snap_strbuf *b, const char *s);
void snap_strbuf_chr(struct snap_strbuf *b, char c);
void snap_strbuf_printf(struct snap_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Hands the contents over ("" when nothing was added) and zeroes b; on the sticky error frees
 * them, leaves *ret and *ret_len untouched and returns it. ret_len may be NULL. */
int snap_strbuf_take(struct snap_strbuf *b, char **ret, size_t *ret_len);
/* Frees the contents and zeroes b (invariant 4); b may be NULL. */
void snap_strbuf_release(struct snap_strbuf *b);

#endif
