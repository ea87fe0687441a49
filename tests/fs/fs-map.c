// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fs-map.c - test harness: runs one filesystem driver (fs.h) over an image file that is the
 * whole partition and prints what it decided as one JSON object:
 *   {"driver": "ext4", "result": 0, "error": "", "note": "", "size": N, "used_bytes": N,
 *    "unused": [[off, len], ...], "pinned": [[off, len], ...], "zero": [[off, len], ...],
 *    "reads": N, "bytes_read": N, "unused_bytes": N, "pinned_bytes": N, "zero_bytes": N,
 *    "kept_bytes": N}
 * kept_bytes is what a copy would read: everything outside (unused minus pinned) and outside
 * zero (zero over unused counted once), or the whole
 * partition when the driver refused (the caller then drops its marks). The ranges
 * are as the driver gave them; the harness checks each lies inside the partition.
 *
 * Usage: fs-map DRIVER IMAGE
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"

struct ranges {
	uint64_t (*r)[2];
	size_t n, cap;
};

struct harness {
	int fd;
	struct ranges unused, pinned, zero;
	int bad; /* a range outside the partition */
	uint64_t reads, bytes_read;
};

static int add(struct ranges *rs, uint64_t off, uint64_t len)
{
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 256;
		void *p = realloc(rs->r, cap * sizeof(*rs->r));
		if (!p)
			return -ENOMEM;
		rs->r = p;
		rs->cap = cap;
	}
	rs->r[rs->n][0] = off;
	rs->r[rs->n][1] = len;
	rs->n++;
	return 0;
}

static int do_read(struct snap_fs_ctx *ctx, uint64_t off, void *buf, size_t len)
{
	struct harness *h = ctx->priv;

	if (off > ctx->part_size || len > ctx->part_size - off)
		return -EIO;
	h->reads++;
	h->bytes_read += len;
	while (len) {
		ssize_t n = pread(h->fd, buf, len, (off_t)off);
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		buf = (char *)buf + n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int check(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len)
{
	struct harness *h = ctx->priv;

	if (!len || off > ctx->part_size || len > ctx->part_size - off) {
		fprintf(stderr, "fs-map: range %" PRIu64 "+%" PRIu64 " outside the partition\n",
			off, len);
		h->bad = 1;
	}
	return 0;
}

static int do_unused(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len)
{
	check(ctx, off, len);
	return add(&((struct harness *)ctx->priv)->unused, off, len);
}

static int do_pin(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len)
{
	check(ctx, off, len);
	return add(&((struct harness *)ctx->priv)->pinned, off, len);
}

static int do_zero(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len)
{
	check(ctx, off, len);
	return add(&((struct harness *)ctx->priv)->zero, off, len);
}

static int cmp_range(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sorts and merges overlapping ranges in place; returns the bytes covered. */
static uint64_t normalize(struct ranges *rs)
{
	size_t k = 0;
	uint64_t total = 0;

	if (!rs->n)
		return 0;
	qsort(rs->r, rs->n, sizeof(*rs->r), cmp_range);
	for (size_t i = 1; i < rs->n; i++) {
		uint64_t end = rs->r[k][0] + rs->r[k][1];
		if (rs->r[i][0] <= end) {
			uint64_t e2 = rs->r[i][0] + rs->r[i][1];
			if (e2 > end)
				rs->r[k][1] = e2 - rs->r[k][0];
		} else {
			rs->r[++k][0] = rs->r[i][0];
			rs->r[k][1] = rs->r[i][1];
		}
	}
	rs->n = k + 1;
	for (size_t i = 0; i < rs->n; i++)
		total += rs->r[i][1];
	return total;
}

/* Bytes of the (normalized) unused ranges that the (normalized) pins take back. */
static uint64_t overlap(const struct ranges *a, const struct ranges *b)
{
	uint64_t total = 0;
	size_t j = 0;

	for (size_t i = 0; i < a->n; i++) {
		uint64_t s = a->r[i][0], e = s + a->r[i][1];
		while (j < b->n && b->r[j][0] + b->r[j][1] <= s)
			j++;
		for (size_t k = j; k < b->n && b->r[k][0] < e; k++) {
			uint64_t s2 = b->r[k][0] > s ? b->r[k][0] : s;
			uint64_t e2 = b->r[k][0] + b->r[k][1] < e ? b->r[k][0] + b->r[k][1] : e;
			if (e2 > s2)
				total += e2 - s2;
		}
	}
	return total;
}

static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_ranges(const char *name, const struct ranges *rs)
{
	printf(", \"%s\": [", name);
	for (size_t i = 0; i < rs->n; i++)
		printf("%s[%" PRIu64 ", %" PRIu64 "]", i ? ", " : "", rs->r[i][0], rs->r[i][1]);
	putchar(']');
}

int main(int argc, char **argv)
{
	struct harness h = {.fd = -1};
	struct snap_fs_ctx ctx = {.read = do_read,
				  .mark_unused = do_unused,
				  .pin = do_pin,
				  .mark_zero = do_zero,
				  .priv = &h};
	struct stat st;

	if (argc != 3) {
		fprintf(stderr, "usage: fs-map DRIVER IMAGE\n");
		return 2;
	}
	const struct snap_fs_driver *drv = snap_fs_driver_find(argv[1]);
	if (!drv) {
		fprintf(stderr, "fs-map: no driver for %s\n", argv[1]);
		return 2;
	}
	h.fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (h.fd < 0 || fstat(h.fd, &st) < 0) {
		fprintf(stderr, "fs-map: cannot open %s: %s\n", argv[2], strerror(errno));
		return 2;
	}
	ctx.part_size = (uint64_t)st.st_size;

	int r = drv->map(&ctx);

	uint64_t unused = normalize(&h.unused);
	uint64_t pinned = normalize(&h.pinned);
	uint64_t taken_back = overlap(&h.unused, &h.pinned);
	uint64_t zero = normalize(&h.zero);
	uint64_t zero_in_unused = overlap(&h.zero, &h.unused);
	printf("{\"driver\": \"%s\", \"result\": %d, \"error\": ", drv->name, r);
	print_json_string(r < 0 ? strerror(-r) : "");
	printf(", \"note\": ");
	print_json_string(ctx.note);
	printf(", \"size\": %" PRIu64 ", \"used_bytes\": %" PRIu64, ctx.part_size, ctx.used_bytes);
	print_ranges("unused", &h.unused);
	print_ranges("pinned", &h.pinned);
	print_ranges("zero", &h.zero);
	printf(", \"reads\": %" PRIu64 ", \"bytes_read\": %" PRIu64, h.reads, h.bytes_read);
	printf(", \"unused_bytes\": %" PRIu64 ", \"pinned_bytes\": %" PRIu64
	       ", \"zero_bytes\": %" PRIu64 ", \"kept_bytes\": %" PRIu64 "}\n",
	       unused, pinned, zero,
	       r < 0 ? ctx.part_size
		     : ctx.part_size - (unused - taken_back) - (zero - zero_in_unused));
	free(h.unused.r);
	free(h.pinned.r);
	free(h.zero.r);
	close(h.fd);
	return h.bad ? 3 : 0;
}
