// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-strbuf.c - the growable buffer (strbuf.h) against a plain reference array: appends that
 * end one byte before, at and after each capacity step (255/256/257 and the doublings after),
 * bytes with NULs inside, printf-append of strings shorter and much longer than the room left
 * (compared with snprintf's own output), the sticky error of a size that cannot be allocated
 * (invariant 2), and take / release leaving the buffer reusable (invariant 4).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "test-util.h"

/* The buffer holds exactly ref[0..n) followed by a NUL, within its capacity. */
static void same(const struct snap_strbuf *b, const char *ref, size_t n, const char *what)
{
	REQUIRE(b->err == 0, "%s: err %d", what, b->err);
	REQUIRE(b->len == n, "%s: len %zu, expected %zu", what, b->len, n);
	REQUIRE(b->p && b->len < b->cap, "%s: len %zu cap %zu", what, b->len, b->cap);
	CHECK(!memcmp(b->p, ref, n), "%s: contents differ", what);
	CHECK(b->p[n] == 0, "%s: no NUL after the contents", what);
}

/* Appends of sizes that straddle each capacity step, bytes 0..255 (NULs included). */
static void check_boundaries(void)
{
	static const size_t steps[] = {255,  256,  257,	 511,  512,  513,
				       1023, 1024, 1025, 4095, 4096, 4097};
	char *ref = malloc(1 << 20);
	REQUIRE(ref);
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		/* one append of exactly the step's size */
		struct snap_strbuf b = SNAP_STRBUF_INIT;
		for (size_t i = 0; i < steps[s]; i++)
			ref[i] = (char)(i * 7);
		snap_strbuf_add(&b, ref, steps[s]);
		char what[64];
		snprintf(what, sizeof(what), "one append of %zu", steps[s]);
		same(&b, ref, steps[s], what);
		/* then one more byte, and a string */
		snap_strbuf_chr(&b, 'x');
		ref[steps[s]] = 'x';
		snap_strbuf_str(&b, "tail");
		memcpy(ref + steps[s] + 1, "tail", 4);
		snprintf(what, sizeof(what), "%zu + chr + str", steps[s]);
		same(&b, ref, steps[s] + 5, what);
		snap_strbuf_release(&b);
		CHECK(!b.p && !b.len && !b.cap && !b.err, "release leaves the buffer zeroed");
	}
	/* byte by byte across many doublings: the capacity only grows, by doubling from 256 */
	struct snap_strbuf b = SNAP_STRBUF_INIT;
	size_t last_cap = 0, grows = 0;
	for (size_t i = 0; i < 100000; i++) {
		ref[i] = (char)(i % 251);
		snap_strbuf_chr(&b, ref[i]);
		if (b.cap != last_cap) {
			CHECK(b.cap == (last_cap ? last_cap * 2 : 256), "cap %zu after %zu", b.cap,
			      last_cap);
			CHECK(b.len + 1 > last_cap, "grew at len %zu with cap %zu", b.len,
			      last_cap);
			last_cap = b.cap;
			grows++;
		}
	}
	same(&b, ref, 100000, "100000 single bytes");
	CHECK(grows == 10, "%zu allocations for 100000 bytes, expected 10 (256 .. 131072)", grows);
	/* an empty append changes nothing but makes p a string */
	snap_strbuf_add(&b, NULL, 0);
	same(&b, ref, 100000, "empty append");
	snap_strbuf_release(&b);
	snap_strbuf_release(NULL);
	free(ref);
}

/* printf-append: short, exactly filling, and longer than the room (the second vsnprintf). */
static void check_printf(void)
{
	struct snap_strbuf b = SNAP_STRBUF_INIT;
	char ref[20000];
	size_t n = 0;
	snap_strbuf_printf(&b, "<parts count='%zu'>", (size_t)12);
	n += (size_t)snprintf(ref + n, sizeof(ref) - n, "<parts count='%zu'>", (size_t)12);
	same(&b, ref, n, "short printf");
	CHECK(!strcmp(b.p, "<parts count='12'>"), "%s", b.p);

	/* fill to one byte under the capacity, then a printf of exactly that one byte */
	size_t room = b.cap - b.len - 1;
	memset(ref + n, 'f', room);
	snap_strbuf_add(&b, ref + n, room);
	n += room;
	snap_strbuf_printf(&b, "%c", 'z');
	ref[n++] = 'z';
	same(&b, ref, n, "printf filling the last byte");

	/* a string longer than the whole buffer, through %s and a width */
	char longs[9000];
	for (size_t i = 0; i < sizeof(longs) - 1; i++)
		longs[i] = (char)('a' + i % 26);
	longs[sizeof(longs) - 1] = 0;
	size_t cap_before = b.cap;
	snap_strbuf_printf(&b, "[%s|%" PRIu64 "|%-12s]", longs, UINT64_MAX, "w");
	n += (size_t)snprintf(ref + n, sizeof(ref) - n, "[%s|%" PRIu64 "|%-12s]", longs, UINT64_MAX,
			      "w");
	same(&b, ref, n, "long printf");
	CHECK(b.cap > cap_before && b.cap >= n + 1, "cap %zu for %zu bytes", b.cap, n);
	/* an empty printf on a fresh buffer still makes a string */
	struct snap_strbuf e = SNAP_STRBUF_INIT;
	snap_strbuf_printf(&e, "%s", "");
	char *t = NULL;
	size_t tl = 99;
	REQUIRE(snap_strbuf_take(&e, &t, &tl) == 0);
	CHECK(t && !strcmp(t, "") && tl == 0, "empty printf gives \"\", %zu", tl);
	free(t);

	/* take hands the bytes over and leaves the buffer ready for reuse */
	t = NULL;
	tl = 0;
	REQUIRE(snap_strbuf_take(&b, &t, &tl) == 0);
	CHECK(t && tl == n && !memcmp(t, ref, n) && t[n] == 0, "take: %zu bytes", tl);
	CHECK(!b.p && !b.len && !b.cap && !b.err, "take leaves the buffer zeroed");
	free(t);
	snap_strbuf_str(&b, "again");
	same(&b, "again", 5, "reuse after take");
	snap_strbuf_release(&b);

	/* nothing added: take gives "" (a string, not NULL) */
	t = NULL;
	REQUIRE(snap_strbuf_take(&b, &t, NULL) == 0);
	CHECK(t && !*t, "take of nothing gives \"\"");
	free(t);
}

/* Invariant 2: a size that cannot be had sets the sticky -ENOMEM; later appends do nothing;
 * take reports it, frees, and leaves its out-parameters alone. */
static void check_failure(void)
{
	struct snap_strbuf b = SNAP_STRBUF_INIT;
	snap_strbuf_str(&b, "kept");
	char *p0 = b.p;
	CHECK(snap_strbuf_grow(&b, SIZE_MAX - 2) == -ENOMEM, "grow of SIZE_MAX - 2");
	CHECK(b.err == -ENOMEM && b.p == p0 && b.len == 4, "err %d len %zu", b.err, b.len);
	snap_strbuf_str(&b, "more");
	snap_strbuf_chr(&b, 'c');
	snap_strbuf_printf(&b, "%d", 42);
	CHECK(b.len == 4 && !strcmp(b.p, "kept"), "appends after the error changed the buffer");
	CHECK(snap_strbuf_grow(&b, 1) == -ENOMEM, "the error sticks");
	char *t = (char *)0x1;
	size_t tl = 77;
	CHECK(snap_strbuf_take(&b, &t, &tl) == -ENOMEM, "take reports the error");
	CHECK(t == (char *)0x1 && tl == 77, "take touched its out-parameters on failure");
	CHECK(!b.p && !b.err, "take after an error frees and resets");

	/* the same through add on a fresh buffer: nothing allocated, nothing leaked */
	struct snap_strbuf c = SNAP_STRBUF_INIT;
	snap_strbuf_add(&c, "x", SIZE_MAX / 2);
	CHECK(c.err == -ENOMEM && !c.p, "add of SIZE_MAX / 2: err %d", c.err);
	snap_strbuf_release(&c);
	/* the largest size that still passes the overflow check is not refused by it */
	struct snap_strbuf d = SNAP_STRBUF_INIT;
	CHECK(snap_strbuf_grow(&d, 1000) == 0 && d.cap == 1024, "grow 1000: cap %zu", d.cap);
	snap_strbuf_release(&d);
}

int main(void)
{
	check_boundaries();
	check_printf();
	check_failure();
	return test_failures ? 1 : 0;
}
