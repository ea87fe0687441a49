// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-store-table.c - the store's frame table against a plain array (the reference): kept in
 * memory and spilled at 0, 1, a block - 1, a block and a block + 1 entries, with appends across
 * several 4096-entry blocks, entries replaced below, inside and at the end of the file's part
 * (also while the read block holds them), reads that straddle the file and the block being
 * filled, and gets that walk backwards through the read block.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-internal.h"
#include "test-util.h"

static void entry(uint64_t k, uint32_t salt, struct snap_store_index_frame *e)
{
	memset(e, 0, sizeof(*e));
	e->file_offset = 1000 + k * 77;
	e->volume = (uint32_t)(k % 3);
	e->flags = salt;
	e->offset = k << 12;
	e->raw_len = 4096;
	e->stored_len = (uint32_t)(k % 5000) + 9;
	for (int i = 0; i < 32; i++)
		e->digest[i] = (uint8_t)(k * 13 + (uint64_t)i + salt);
}

static void check_table(uint64_t spill_at, uint64_t n)
{
	struct store_table *t = NULL;
	struct snap_store_index_frame *ref = calloc(n, sizeof(*ref)), e;
	REQUIRE(ref && store_table_new(NULL, spill_at, &t) == 0);
	for (uint64_t k = 0; k < n; k++) {
		entry(k, 0, &ref[k]);
		REQUIRE(store_table_put(t, k, &ref[k]) == 0);
	}
	CHECK(store_table_count(t) == n);
	CHECK(store_table_spilled(t) == (n > spill_at), " spill_at %llu n %llu",
	      (unsigned long long)spill_at, (unsigned long long)n);
	CHECK(store_table_put(t, n + 1, &e) == -EINVAL);
	/* replaced: the first, one inside, one at the last block's start, the last */
	uint64_t rep[] = {0, n / 3, n - n % 4096, n - 1};
	for (size_t i = 0; i < 4; i++)
		if (rep[i] < n) {
			entry(rep[i], 7, &ref[rep[i]]);
			CHECK(store_table_put(t, rep[i], &ref[rep[i]]) == 0);
		}
	CHECK(store_table_count(t) == n);
	/* gets, backwards (every get below the block being filled reloads the read block) */
	for (uint64_t k = n; k-- > 0;) {
		const struct snap_store_index_frame *g = NULL;
		REQUIRE(store_table_get(t, k, &g) == 0);
		if (memcmp(g, &ref[k], sizeof(e)) != 0) {
			CHECK(0, " get %llu of %llu (spill_at %llu)", (unsigned long long)k,
			      (unsigned long long)n, (unsigned long long)spill_at);
			break;
		}
	}
	const struct snap_store_index_frame *g;
	CHECK(store_table_get(t, n, &g) == -EINVAL);
	/* a replacement of an entry the read block holds shows in the next get */
	for (size_t i = 0; i < 4; i++)
		if (rep[i] < n) {
			REQUIRE(store_table_get(t, rep[i], &g) == 0);
			entry(rep[i], 9, &ref[rep[i]]);
			CHECK(store_table_put(t, rep[i], &ref[rep[i]]) == 0);
			REQUIRE(store_table_get(t, rep[i], &g) == 0);
			CHECK(!memcmp(g, &ref[rep[i]], sizeof(e)), " replaced %llu",
			      (unsigned long long)rep[i]);
		}
	/* reads of every size at every 1000th start, straddling the file and the block */
	struct snap_store_index_frame *buf = calloc(n + 1, sizeof(*buf));
	REQUIRE(buf != NULL);
	for (uint64_t first = 0; first < n; first += 1000) {
		size_t len = (size_t)(n - first);
		CHECK(store_table_read(t, first, len, buf) == 0);
		CHECK(!memcmp(buf, ref + first, len * sizeof(e)), " read %llu+%zu",
		      (unsigned long long)first, len);
	}
	CHECK(store_table_read(t, 0, (size_t)n, buf) == 0 && !memcmp(buf, ref, n * sizeof(e)));
	CHECK(store_table_read(t, n, 0, buf) == 0);
	CHECK(store_table_read(t, 1, (size_t)n, buf) == -EINVAL);
	free(buf);
	free(ref);
	t = store_table_free(t);
	CHECK(t == NULL);
}

int main(void)
{
	static const uint64_t spill_at[] = {0, 1, 4095, 4096, 4097, 1000000};
	for (size_t i = 0; i < sizeof(spill_at) / sizeof(spill_at[0]); i++) {
		check_table(spill_at[i], 1);
		check_table(spill_at[i], 4096);
		check_table(spill_at[i], 3 * 4096 + 17);
	}
	CHECK(store_table_free(NULL) == NULL);
	/* the threshold from the environment, read in one place */
	setenv("SNAPBUNDLE_STORE_SPILL_FRAMES", "12", 1);
	CHECK(store_table_spill_at() == 12);
	setenv("SNAPBUNDLE_STORE_SPILL_FRAMES", "12x", 1);
	CHECK(store_table_spill_at() == STORE_TABLE_SPILL_DEFAULT);
	unsetenv("SNAPBUNDLE_STORE_SPILL_FRAMES");
	CHECK(store_table_spill_at() == STORE_TABLE_SPILL_DEFAULT);
	if (test_failures)
		fprintf(stderr, "%d test_failures\n", test_failures);
	return test_failures ? 1 : 0;
}
