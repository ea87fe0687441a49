// SPDX-License-Identifier: LGPL-2.1-or-later
/* strbuf.c - the growable string / byte buffer (invariants in strbuf.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#define STRBUF_FIRST_CAP 256

int snap_strbuf_grow(struct snap_strbuf *b, size_t n)
{
	if (b->err)
		return b->err;
	if (n >= SIZE_MAX / 2 - b->len) {
		b->err = -ENOMEM; /* len + n + 1 and the doubling below would overflow */
		return b->err;
	}
	size_t need = b->len + n + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : STRBUF_FIRST_CAP;
	while (cap < need)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->err = -ENOMEM;
		return b->err;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

void snap_strbuf_add(struct snap_strbuf *b, const void *s, size_t n)
{
	if (snap_strbuf_grow(b, n) < 0)
		return;
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void snap_strbuf_str(struct snap_strbuf *b, const char *s)
{
	snap_strbuf_add(b, s, strlen(s));
}

void snap_strbuf_chr(struct snap_strbuf *b, char c)
{
	snap_strbuf_add(b, &c, 1);
}

void snap_strbuf_printf(struct snap_strbuf *b, const char *fmt, ...)
{
	if (b->err)
		return;
	/* first into the room there is; when that is short, grow to the size vsnprintf said */
	va_list ap;
	va_start(ap, fmt);
	size_t room = b->p ? b->cap - b->len : 0;
	int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = -ENOMEM; /* vsnprintf fails only on a conversion it cannot do */
		if (b->p)
			b->p[b->len] = 0;
		return;
	}
	if ((size_t)n >= room) {
		if (snap_strbuf_grow(b, (size_t)n) < 0) {
			if (b->p)
				b->p[b->len] = 0;
			return;
		}
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

int snap_strbuf_take(struct snap_strbuf *b, char **ret, size_t *ret_len)
{
	if (!b->err && !b->p) {
		b->p = strdup("");
		if (!b->p)
			b->err = -ENOMEM;
	}
	if (b->err) {
		int r = b->err;
		snap_strbuf_release(b);
		return r;
	}
	*ret = b->p;
	if (ret_len)
		*ret_len = b->len;
	*b = (struct snap_strbuf)SNAP_STRBUF_INIT;
	return 0;
}

void snap_strbuf_release(struct snap_strbuf *b)
{
	if (!b)
		return;
	free(b->p);
	*b = (struct snap_strbuf)SNAP_STRBUF_INIT;
}
