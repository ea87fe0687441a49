// SPDX-License-Identifier: LGPL-2.1-or-later
/* test-extent-map.c - the extent map's invariants, checked after every operation against a
 * byte-per-unit model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extent-map.h"
#include "test-util.h"

#define N 4096 /* model units */

static unsigned char kind_of[N], pinned[N];

static void check(const struct snap_map *m, const char *what)
{
	uint64_t pos = 0;
	for (size_t i = 0; i < snap_map_count(m); i++) {
		const struct snap_extent *e = snap_map_get(m, i);
		if (e->offset != pos || e->length == 0) {
			fprintf(stderr, "%s: extent %zu at %llu, expected %llu\n", what, i,
				(unsigned long long)e->offset, (unsigned long long)pos);
			exit(1);
		}
		if (i > 0) {
			const struct snap_extent *p = snap_map_get(m, i - 1);
			if (p->kind == e->kind && p->layer == e->layer &&
			    p->partition == e->partition && p->reserved == e->reserved) {
				fprintf(stderr, "%s: extents %zu and %zu not coalesced\n", what, i - 1,
					i);
				exit(1);
			}
		}
		for (uint64_t u = e->offset; u < e->offset + e->length; u++) {
			if (kind_of[u] != e->kind) {
				fprintf(stderr, "%s: unit %llu kind %d, model %d\n", what,
					(unsigned long long)u, e->kind, kind_of[u]);
				exit(1);
			}
		}
		pos += e->length;
	}
	if (pos != N) {
		fprintf(stderr, "%s: map covers %llu of %d\n", what, (unsigned long long)pos, N);
		exit(1);
	}
}

int main(void)
{
	struct snap_map *m;
	srand(12345);
	REQUIRE(snap_map_new(N, &m) == 0);
	check(m, "new");

	for (int round = 0; round < 3000; round++) {
		uint64_t off = (uint64_t)(rand() % (N + 64)), len = (uint64_t)(rand() % 300);
		int op = rand() % 5;
		char what[64];
		snprintf(what, sizeof(what), "round %d op %d [%llu+%llu]", round, op,
			 (unsigned long long)off, (unsigned long long)len);
		uint64_t end = off + len > N ? N : off + len;
		if (op <= 1) { /* UNUSED */
			REQUIRE(snap_map_mark(m, off, len, SNAP_EXTENT_UNUSED, SNAP_LAYER_FS) == 0);
			for (uint64_t u = off; u < end; u++)
				if (!pinned[u])
					kind_of[u] = SNAP_EXTENT_UNUSED;
		} else if (op == 2) { /* ZERO */
			REQUIRE(snap_map_mark(m, off, len, SNAP_EXTENT_ZERO, SNAP_LAYER_HOLE) == 0);
			for (uint64_t u = off; u < end; u++)
				if (kind_of[u] == SNAP_EXTENT_DATA)
					kind_of[u] = SNAP_EXTENT_ZERO;
		} else if (op == 3) { /* pin */
			REQUIRE(snap_map_pin(m, off, len, SNAP_LAYER_PTABLE) == 0);
			for (uint64_t u = off; u < end; u++) {
				pinned[u] = 1;
				if (kind_of[u] == SNAP_EXTENT_UNUSED)
					kind_of[u] = SNAP_EXTENT_DATA;
			}
		} else { /* many UNUSED ranges at once, unsorted and overlapping */
			struct snap_range r[8];
			for (int k = 0; k < 8; k++) {
				r[k].offset = (uint64_t)(rand() % N);
				r[k].length = (uint64_t)(rand() % 40);
				uint64_t e2 = r[k].offset + r[k].length > N ? N : r[k].offset + r[k].length;
				for (uint64_t u = r[k].offset; u < e2; u++)
					if (!pinned[u])
						kind_of[u] = SNAP_EXTENT_UNUSED;
			}
			REQUIRE(snap_map_mark_many(m, r, 8, SNAP_EXTENT_UNUSED, SNAP_LAYER_FS) == 0);
		}
		check(m, what);
		if (round % 500 == 499) { /* reset now and then so all kinds stay present */
			snap_map_free(m);
			REQUIRE(snap_map_new(N, &m) == 0);
			memset(kind_of, 0, sizeof(kind_of));
			memset(pinned, 0, sizeof(pinned));
		}
	}

	/* bytes_in and summary agree with the model */
	struct snap_map_summary s;
	snap_map_summary(m, &s);
	uint64_t cnt[3] = {0, 0, 0};
	for (int u = 0; u < N; u++)
		cnt[kind_of[u]]++;
	for (int k = 0; k < 3; k++) {
		REQUIRE(s.bytes[k] == cnt[k]);
		REQUIRE(snap_map_bytes_in(m, 0, N, k) == cnt[k]);
	}

	/* merge_gaps: gaps below the threshold between DATA become DATA, others stay */
	snap_map_free(m);
	REQUIRE(snap_map_new(1000, &m) == 0);
	REQUIRE(snap_map_mark(m, 100, 10, SNAP_EXTENT_ZERO, SNAP_LAYER_HOLE) == 0);
	REQUIRE(snap_map_mark(m, 110, 5, SNAP_EXTENT_UNUSED, SNAP_LAYER_FS) == 0);
	REQUIRE(snap_map_mark(m, 500, 100, SNAP_EXTENT_UNUSED, SNAP_LAYER_FS) == 0);
	REQUIRE(snap_map_mark(m, 950, 50, SNAP_EXTENT_UNUSED, SNAP_LAYER_FS) == 0); /* tail */
	REQUIRE(snap_map_merge_gaps(m, 20) == 0);
	REQUIRE(snap_map_bytes_in(m, 0, 1000, SNAP_EXTENT_DATA) == 1000 - 100 - 50);
	REQUIRE(snap_map_get(m, snap_map_find(m, 105))->layer == SNAP_LAYER_MERGE);
	REQUIRE(snap_map_get(m, snap_map_find(m, 960))->kind == SNAP_EXTENT_UNUSED);
	REQUIRE(snap_map_find(m, 0) == 0);
	snap_map_free(m);
	printf("extent map: ok\n");
	return 0;
}
