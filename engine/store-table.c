// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-table.c - a store's frame table, spilled to an unlinked temporary file past a
 * threshold so that a store's memory does not grow with its DATA. Invariants in
 * store-internal.h.
 *
 * State transitions:
 *  1. in memory: entries appended to one array (store_table_put)
 *  2. spilled: the append that would pass spill_at writes the array to a new O_TMPFILE
 *     (table_spill) and frees it; appends then fill a block flushed to the file when full,
 *     reads come from the file through a read block (store_table_get, store_table_read)
 *  3. freed: the file closed, which removes it (store_table_free)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store-internal.h"
#include "util.h"

#define ENTRY sizeof(struct snap_store_index_frame)
_Static_assert(sizeof(struct snap_store_index_frame) == 64, "an entry is 64 bytes in the file");

struct store_table {
	uint64_t n, spill_at;
	char *dir;
	/* in memory */
	struct snap_store_index_frame *mem;
	uint64_t cap;
	/* spilled: entries [0, blk0) in the file at k * ENTRY, [blk0, n) in blk */
	int fd;
	struct snap_store_index_frame *blk, *rd;
	uint64_t blk0;
	uint64_t rd0; /* rd holds [rd0, rd0 + nrd) of the file */
	size_t nrd;
};

uint64_t store_table_spill_at(void)
{
	const char *v = getenv("SNAPBUNDLE_STORE_SPILL_FRAMES");
	char *end = NULL;
	if (!v || !*v)
		return STORE_TABLE_SPILL_DEFAULT;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	return errno || *end ? STORE_TABLE_SPILL_DEFAULT : n;
}

int store_table_new(const char *dir, uint64_t spill_at, struct store_table **ret)
{
	struct store_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->fd = -1;
	t->spill_at = spill_at;
	if (dir && !(t->dir = strdup(dir))) {
		free(t);
		return -ENOMEM;
	}
	*ret = t;
	return 0;
}

struct store_table *store_table_free(struct store_table *t)
{
	if (t) {
		if (t->fd >= 0)
			close(t->fd);
		free(t->mem);
		free(t->blk);
		free(t->rd);
		free(t->dir);
		free(t);
	}
	return NULL;
}

uint64_t store_table_count(const struct store_table *t)
{
	return t->n;
}

bool store_table_spilled(const struct store_table *t)
{
	return t->fd >= 0;
}

/* our own file cannot end early: a short read is an I/O error */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	int r = snap_pread_all(fd, buf, len, off, NULL);
	return r == -ENODATA ? -EIO : r;
}

static int table_open_file(const struct store_table *t)
{
	const char *tmp = getenv("TMPDIR");
	const char *dirs[] = {t->dir, tmp && *tmp ? tmp : NULL, "/var/tmp"};
	int err = -ENOENT;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (!dirs[i])
			continue;
		int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		err = -errno;
	}
	return err;
}

/* The array goes to the file; from now on memory holds the two blocks only. */
static int table_spill(struct store_table *t)
{
	t->blk = malloc(STORE_TABLE_BLOCK * ENTRY);
	t->rd = malloc(STORE_TABLE_BLOCK * ENTRY);
	if (!t->blk || !t->rd) {
		free(t->blk);
		free(t->rd);
		t->blk = t->rd = NULL;
		return -ENOMEM;
	}
	int fd = table_open_file(t);
	int r = fd < 0 ? fd : 0;
	if (r == 0 && t->n)
		r = snap_pwrite_all(fd, t->mem, t->n * ENTRY, 0, NULL);
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		free(t->blk);
		free(t->rd);
		t->blk = t->rd = NULL;
		return r;
	}
	t->fd = fd;
	t->blk0 = t->n;
	t->nrd = 0;
	free(t->mem);
	t->mem = NULL;
	t->cap = 0;
	return 0;
}

int store_table_put(struct store_table *t, uint64_t k, const struct snap_store_index_frame *e)
{
	if (k > t->n)
		return -EINVAL;
	int r;
	if (t->fd < 0 && k == t->n && t->n >= t->spill_at && (r = table_spill(t)) < 0)
		return r;
	if (t->fd < 0) {
		if (k == t->cap) {
			uint64_t cap = t->cap ? t->cap * 2 : 1024;
			if (cap > t->spill_at && t->spill_at >= t->n + 1)
				cap = t->spill_at;
			struct snap_store_index_frame *m = realloc(t->mem, cap * ENTRY);
			if (!m)
				return -ENOMEM;
			t->mem = m;
			t->cap = cap;
		}
		t->mem[k] = *e;
	} else if (k >= t->blk0) {
		if (k == t->blk0 + STORE_TABLE_BLOCK) {
			r = snap_pwrite_all(t->fd, t->blk, STORE_TABLE_BLOCK * ENTRY,
					    t->blk0 * ENTRY, NULL);
			if (r < 0)
				return r;
			t->blk0 += STORE_TABLE_BLOCK;
		}
		t->blk[k - t->blk0] = *e;
	} else {
		if ((r = snap_pwrite_all(t->fd, e, ENTRY, k * ENTRY, NULL)) < 0)
			return r;
		if (k >= t->rd0 && k < t->rd0 + t->nrd)
			t->rd[k - t->rd0] = *e;
	}
	if (k == t->n)
		t->n++;
	return 0;
}

int store_table_get(struct store_table *t, uint64_t k, const struct snap_store_index_frame **ret)
{
	if (k >= t->n)
		return -EINVAL;
	if (t->fd < 0) {
		*ret = &t->mem[k];
		return 0;
	}
	if (k >= t->blk0) {
		*ret = &t->blk[k - t->blk0];
		return 0;
	}
	if (k < t->rd0 || k >= t->rd0 + t->nrd) {
		size_t n =
		    t->blk0 - k < STORE_TABLE_BLOCK ? (size_t)(t->blk0 - k) : STORE_TABLE_BLOCK;
		t->nrd = 0;
		int r = pread_all(t->fd, t->rd, n * ENTRY, k * ENTRY);
		if (r < 0)
			return r;
		t->rd0 = k;
		t->nrd = n;
	}
	*ret = &t->rd[k - t->rd0];
	return 0;
}

int store_table_read(struct store_table *t, uint64_t first, size_t n,
		     struct snap_store_index_frame *out)
{
	if (first > t->n || n > t->n - first)
		return -EINVAL;
	if (t->fd < 0) {
		memcpy(out, t->mem + first, n * ENTRY);
		return 0;
	}
	size_t in_file = first >= t->blk0 ? 0 : t->blk0 - first < n ? (size_t)(t->blk0 - first) : n;
	if (in_file) {
		int r = pread_all(t->fd, out, in_file * ENTRY, first * ENTRY);
		if (r < 0)
			return r;
	}
	if (n > in_file)
		memcpy(out + in_file, t->blk + (first + in_file - t->blk0), (n - in_file) * ENTRY);
	return 0;
}
