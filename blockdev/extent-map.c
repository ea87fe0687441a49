// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * extent-map.c - the extent map (invariants in extent-map.h).
 *
 * Every change is one linear pass that rebuilds the vector (apply()), so marking a million
 * sorted free-space runs from a filesystem bitmap costs O(extents + runs), not a memmove per
 * run. The reserved field of struct snap_extent carries the pinned flag internally; readers of
 * the public struct never look at it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "extent-map.h"

#define PINNED 1u

struct snap_map {
	uint64_t size;
	struct snap_extent *v;
	size_t n, cap;
};

enum op_kind { OP_MARK, OP_PIN, OP_PART };

struct op {
	enum op_kind op;
	int kind;
	int layer;
	uint32_t partition;
};

static int vec_push(struct snap_extent **v, size_t *n, size_t *cap, const struct snap_extent *e)
{
	if (e->length == 0)
		return 0;
	if (*n > 0) {
		struct snap_extent *last = &(*v)[*n - 1];
		if (last->kind == e->kind && last->layer == e->layer &&
		    last->partition == e->partition && last->reserved == e->reserved &&
		    last->offset + last->length == e->offset) {
			last->length += e->length;
			return 0;
		}
	}
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct snap_extent *nv = realloc(*v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = *e;
	return 0;
}

int snap_map_new(uint64_t size, struct snap_map **ret)
{
	struct snap_map *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->size = size;
	struct snap_extent e = {.offset = 0, .length = size, .kind = SNAP_EXTENT_DATA};
	if (vec_push(&m->v, &m->n, &m->cap, &e) < 0) {
		free(m);
		return -ENOMEM;
	}
	*ret = m;
	return 0;
}

struct snap_map *snap_map_free(struct snap_map *map)
{
	if (map) {
		free(map->v);
		free(map);
	}
	return NULL;
}

uint64_t snap_map_size(const struct snap_map *map)
{
	return map->size;
}

static void apply_op(struct snap_extent *x, const struct op *op)
{
	switch (op->op) {
	case OP_MARK:
		if (op->kind == SNAP_EXTENT_UNUSED) {
			if (!(x->reserved & PINNED) && x->kind != SNAP_EXTENT_UNUSED) {
				x->kind = SNAP_EXTENT_UNUSED;
				x->layer = (uint8_t)op->layer;
			}
		} else if (op->kind == SNAP_EXTENT_ZERO) {
			if (x->kind == SNAP_EXTENT_DATA) {
				x->kind = SNAP_EXTENT_ZERO;
				x->layer = (uint8_t)op->layer;
			}
		} else if (op->kind == SNAP_EXTENT_DATA) {
			/* only merge_gaps asks for this */
			x->kind = SNAP_EXTENT_DATA;
			x->layer = (uint8_t)op->layer;
		}
		break;
	case OP_PIN:
		x->reserved |= PINNED;
		if (x->kind == SNAP_EXTENT_UNUSED) {
			x->kind = SNAP_EXTENT_DATA;
			x->layer = (uint8_t)op->layer;
		}
		break;
	case OP_PART:
		x->partition = op->partition;
		break;
	}
}

static int cmp_range(const void *a, const void *b)
{
	const struct snap_range *x = a, *y = b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* ranges: any order, may overlap; clipped to the map. One pass over extents and ranges. */
static int apply(struct snap_map *m, struct snap_range *r, size_t nr, const struct op *op)
{
	if (nr == 0)
		return 0;
	qsort(r, nr, sizeof(*r), cmp_range);
	/* merge overlapping or touching ranges in place */
	size_t w = 0;
	for (size_t i = 0; i < nr; i++) {
		if (r[i].length == 0)
			continue;
		if (w > 0 && r[i].offset <= r[w - 1].offset + r[w - 1].length) {
			uint64_t end = r[i].offset + r[i].length;
			if (end > r[w - 1].offset + r[w - 1].length)
				r[w - 1].length = end - r[w - 1].offset;
		} else {
			r[w++] = r[i];
		}
	}
	nr = w;

	struct snap_extent *nv = NULL;
	size_t nn = 0, ncap = 0, j = 0;
	for (size_t i = 0; i < m->n; i++) {
		const struct snap_extent *e = &m->v[i];
		uint64_t pos = e->offset, end = e->offset + e->length;
		while (pos < end) {
			while (j < nr && r[j].offset + r[j].length <= pos)
				j++;
			struct snap_extent piece = *e;
			uint64_t piece_end;
			if (j < nr && r[j].offset <= pos) {
				uint64_t rend = r[j].offset + r[j].length;
				piece_end = rend < end ? rend : end;
				apply_op(&piece, op);
			} else {
				piece_end = (j < nr && r[j].offset < end) ? r[j].offset : end;
			}
			piece.offset = pos;
			piece.length = piece_end - pos;
			if (vec_push(&nv, &nn, &ncap, &piece) < 0) {
				free(nv);
				return -ENOMEM;
			}
			pos = piece_end;
		}
	}
	free(m->v);
	m->v = nv;
	m->n = nn;
	m->cap = ncap;
	return 0;
}

static int apply_one(struct snap_map *m, uint64_t off, uint64_t len, const struct op *op)
{
	if (off >= m->size || len == 0)
		return 0;
	if (len > m->size - off)
		len = m->size - off;
	struct snap_range r = {off, len};
	return apply(m, &r, 1, op);
}

int snap_map_mark(struct snap_map *map, uint64_t off, uint64_t len, int kind, int layer)
{
	if (kind < SNAP_EXTENT_DATA || kind > SNAP_EXTENT_UNUSED || kind == SNAP_EXTENT_DATA)
		return -EINVAL;
	struct op op = {.op = OP_MARK, .kind = kind, .layer = layer};
	return apply_one(map, off, len, &op);
}

int snap_map_mark_many(struct snap_map *map, struct snap_range *ranges, size_t n, int kind,
		       int layer)
{
	if (kind != SNAP_EXTENT_ZERO && kind != SNAP_EXTENT_UNUSED)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (ranges[i].offset >= map->size) {
			ranges[i].length = 0;
		} else if (ranges[i].length > map->size - ranges[i].offset) {
			ranges[i].length = map->size - ranges[i].offset;
		}
	}
	struct op op = {.op = OP_MARK, .kind = kind, .layer = layer};
	return apply(map, ranges, n, &op);
}

int snap_map_pin(struct snap_map *map, uint64_t off, uint64_t len, int layer)
{
	struct op op = {.op = OP_PIN, .layer = layer};
	return apply_one(map, off, len, &op);
}

int snap_map_set_partition(struct snap_map *map, uint64_t off, uint64_t len, uint32_t partition)
{
	struct op op = {.op = OP_PART, .partition = partition};
	return apply_one(map, off, len, &op);
}

int snap_map_merge_gaps(struct snap_map *map, uint64_t min_gap)
{
	struct snap_extent *nv = NULL;
	size_t nn = 0, ncap = 0;
	size_t i = 0;
	while (i < map->n) {
		const struct snap_extent *e = &map->v[i];
		if (e->kind == SNAP_EXTENT_DATA || nn == 0) {
			if (vec_push(&nv, &nn, &ncap, e) < 0)
				goto oom;
			i++;
			continue;
		}
		/* a run of non-DATA extents after a DATA one: measure it */
		size_t k = i;
		uint64_t gap = 0;
		while (k < map->n && map->v[k].kind != SNAP_EXTENT_DATA)
			gap += map->v[k++].length;
		bool merge = k < map->n && gap < min_gap && nv[nn - 1].kind == SNAP_EXTENT_DATA;
		for (; i < k; i++) {
			struct snap_extent x = map->v[i];
			if (merge) {
				x.kind = SNAP_EXTENT_DATA;
				x.layer = SNAP_LAYER_MERGE;
			}
			if (vec_push(&nv, &nn, &ncap, &x) < 0)
				goto oom;
		}
	}
	free(map->v);
	map->v = nv;
	map->n = nn;
	map->cap = ncap;
	return 0;
oom:
	free(nv);
	return -ENOMEM;
}

size_t snap_map_count(const struct snap_map *map)
{
	return map->n;
}

const struct snap_extent *snap_map_get(const struct snap_map *map, size_t i)
{
	return i < map->n ? &map->v[i] : NULL;
}

size_t snap_map_find(const struct snap_map *map, uint64_t off)
{
	size_t lo = 0, hi = map->n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (map->v[mid].offset <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

void snap_map_summary(const struct snap_map *map, struct snap_map_summary *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (size_t i = 0; i < map->n; i++) {
		const struct snap_extent *e = &map->v[i];
		ret->bytes[e->kind] += e->length;
		ret->by_layer[e->kind][e->layer < SNAP_LAYER_COUNT ? e->layer : 0] += e->length;
	}
	ret->extents = map->n;
}

uint64_t snap_map_bytes_in(const struct snap_map *map, uint64_t off, uint64_t len, int kind)
{
	if (map->n == 0 || off >= map->size)
		return 0;
	uint64_t end = len > map->size - off ? map->size : off + len, total = 0;
	for (size_t i = snap_map_find(map, off); i < map->n && map->v[i].offset < end; i++) {
		const struct snap_extent *e = &map->v[i];
		if (e->kind != kind)
			continue;
		uint64_t a = e->offset > off ? e->offset : off;
		uint64_t b = e->offset + e->length < end ? e->offset + e->length : end;
		if (b > a)
			total += b - a;
	}
	return total;
}
