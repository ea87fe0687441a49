/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store-internal.h - what store.c shares with its helpers: the frame table (store-table.c).
 *
 * Invariants:
 *  1. The table holds one struct snap_store_index_frame per frame, in frame order, entry k at
 *     position k. Up to spill_at entries it is one array in memory; past it the entries go to
 *     an unlinked temporary file (O_TMPFILE) in blocks of STORE_TABLE_BLOCK, and memory holds
 *     one block being filled and one block read back: 2 x 256 KiB, whatever the count.
 *  2. One thread at a time uses a table (the sink while the pipeline runs, the run thread
 *     otherwise); a pointer from store_table_get is valid until the next call on the table.
 *  3. The bytes of the image do not depend on whether or where the table spilled.
 */
#ifndef SNAP_STORE_INTERNAL_H
#define SNAP_STORE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "store-format.h"

#define STORE_TABLE_BLOCK 4096u /* entries: 256 KiB */
/* Entries held in memory before the table spills: 64 MiB, 4 TiB of DATA at 4 MiB frames. */
#define STORE_TABLE_SPILL_DEFAULT (1ull << 20)

/* The threshold: SNAPBUNDLE_STORE_SPILL_FRAMES from the environment (a count of entries, for
 * tests; 0 spills from the first entry), else STORE_TABLE_SPILL_DEFAULT. Read here only. */
uint64_t store_table_spill_at(void);

struct store_table;
/* dir: where the temporary file goes when the table spills (the output's directory), NULL or
 * refused: $TMPDIR, then /var/tmp. */
int store_table_new(const char *dir, uint64_t spill_at, struct store_table **ret);
struct store_table *store_table_free(struct store_table *t);
uint64_t store_table_count(const struct store_table *t);
bool store_table_spilled(const struct store_table *t);
/* Entry k: k < count replaces it, k == count appends. */
int store_table_put(struct store_table *t, uint64_t k, const struct snap_store_index_frame *e);
/* Entry k < count. */
int store_table_get(struct store_table *t, uint64_t k, const struct snap_store_index_frame **ret);
/* Entries [first, first + n), all below count, into out. */
int store_table_read(struct store_table *t, uint64_t first, size_t n,
		     struct snap_store_index_frame *out);

#endif
