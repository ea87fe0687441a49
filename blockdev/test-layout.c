// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-layout.c - the layout's own layers on files made here: holes and merging through
 * snap_layout_build, and the filesystem layer's contract (fs.h) with drivers of our own that
 * succeed, fail, overreach and flood, so any real driver plugged into fs.c is held to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout-internal.h"
#include "test-util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

static char path[256];

static int make_file(uint64_t size)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(path, sizeof(path), "%s/test-layout-XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		perror("test file");
		exit(1);
	}
	return fd;
}

static void fill(int fd, uint64_t off, uint64_t len, unsigned char byte)
{
	unsigned char buf[64 * 1024];
	memset(buf, byte, sizeof(buf));
	while (len) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
			perror("pwrite");
			exit(1);
		}
		off += n;
		len -= n;
	}
}

/* The kind and layer at off. */
static const struct snap_extent *at(const struct snap_map *m, uint64_t off)
{
	return snap_map_get(m, snap_map_find(m, off));
}

static bool sparse_supported(int fd, uint64_t data_end)
{
	off_t h = lseek(fd, 0, SEEK_HOLE);
	return h >= 0 && (uint64_t)h <= data_end;
}

static void test_holes_and_merge(void)
{
	/* data [0,64K) hole 1M-64K, data [1M,1M+4K), hole 32K, data [1M+36K,1M+40K), hole to
	 * the end, whose size is not a multiple of 4K */
	uint64_t size = 8 * MiB + 100;
	int fd = make_file(size);
	fill(fd, 0, 64 * KiB, 0xa5);
	fill(fd, 1 * MiB, 4 * KiB, 0xa5);
	fill(fd, 1 * MiB + 36 * KiB, 4 * KiB, 0xa5);
	fsync(fd);
	if (!sparse_supported(fd, 2 * MiB)) {
		fprintf(stderr, "no SEEK_HOLE on %s: holes test skipped\n", path);
		close(fd);
		unlink(path);
		return;
	}
	struct snap_src *src = NULL;
	struct snap_layout *l = NULL;
	char *detail = NULL;
	CHECK(snap_src_open(path, SNAP_SRC_NO_DIRECT, &src, &detail) == 0);
	struct snap_layout_opts opts = {0};
	CHECK(snap_layout_build(src, &opts, &l, &detail) == 0);
	CHECK(l->ptable_type == NULL && l->nparts == 0);
	const struct snap_map *m = l->map;
	CHECK(at(m, 0)->kind == SNAP_EXTENT_DATA && at(m, 0)->length == 64 * KiB);
	CHECK(at(m, 64 * KiB)->kind == SNAP_EXTENT_ZERO);
	CHECK(at(m, 64 * KiB)->layer == SNAP_LAYER_HOLE);
	CHECK(at(m, 1 * MiB)->kind == SNAP_EXTENT_DATA);
	/* the 32K hole between two DATA extents is merged (default min gap 64K) */
	CHECK(at(m, 1 * MiB + 8 * KiB)->kind == SNAP_EXTENT_DATA);
	CHECK(at(m, 1 * MiB + 8 * KiB)->layer == SNAP_LAYER_MERGE);
	CHECK(at(m, 2 * MiB)->kind == SNAP_EXTENT_ZERO);
	CHECK(at(m, size - 1)->kind == SNAP_EXTENT_ZERO);
	struct snap_map_summary s;
	snap_map_summary(m, &s);
	CHECK(s.bytes[SNAP_EXTENT_DATA] == 64 * KiB + 40 * KiB);
	CHECK(s.bytes[SNAP_EXTENT_DATA] + s.bytes[SNAP_EXTENT_ZERO] == size);
	l = snap_layout_free(l);

	/* merging disabled: the 32K hole stays */
	opts.min_gap = UINT64_MAX;
	CHECK(snap_layout_build(src, &opts, &l, &detail) == 0);
	CHECK(at(l->map, 1 * MiB + 8 * KiB)->kind == SNAP_EXTENT_ZERO);
	l = snap_layout_free(l);

	/* no holes: everything DATA */
	opts.no_holes = true;
	CHECK(snap_layout_build(src, &opts, &l, &detail) == 0);
	CHECK(snap_map_count(l->map) == 1);
	l = snap_layout_free(l);

	snap_src_free(src);
	free(detail);
	close(fd);
	unlink(path);
}

/* ---------------------------------------------------------------------------------------- */
/* Filesystem drivers of our own                                                             */

#define PART_START (1 * MiB)

static int good_map(struct snap_fs_ctx *ctx)
{
	unsigned char buf[4096];
	if (ctx->read(ctx, 0, buf, sizeof(buf)) < 0 || buf[0] != 0x5a || buf[4095] != 0x5a)
		return -EIO;
	/* reading past the partition is refused, not served from the next partition */
	if (ctx->read(ctx, ctx->part_size - 1, buf, 2) != -EUCLEAN)
		return -EINVAL;
	/* one free run reported in two pieces, a run too short to bother, a run with a pin */
	ctx->mark_unused(ctx, 4 * MiB, 2 * MiB);
	ctx->mark_unused(ctx, 6 * MiB, 2 * MiB);
	ctx->mark_unused(ctx, 10 * MiB, 4 * KiB);
	ctx->mark_unused(ctx, 12 * MiB, 4 * MiB);
	ctx->pin(ctx, 13 * MiB, 4 * KiB);
	ctx->used_bytes = 123 * KiB;
	snprintf(ctx->note, sizeof(ctx->note), "journal kept");
	return 0;
}

static int failing_map(struct snap_fs_ctx *ctx)
{
	ctx->mark_unused(ctx, 0, ctx->part_size);
	snprintf(ctx->note, sizeof(ctx->note), "journal needs recovery");
	return -EUCLEAN;
}

static int overreaching_map(struct snap_fs_ctx *ctx)
{
	ctx->mark_unused(ctx, 1 * MiB, 1 * MiB);
	ctx->mark_unused(ctx, ctx->part_size - 1 * MiB, 2 * MiB); /* past the end */
	return 0;
}

static uint64_t flood_calls;

/* Three million separate 4K free runs: the collection must stay bounded. */
static int flooding_map(struct snap_fs_ctx *ctx)
{
	for (uint64_t off = 0; off + 8 * KiB <= ctx->part_size; off += 8 * KiB) {
		ctx->mark_unused(ctx, off + 4 * KiB, 4 * KiB);
		flood_calls++;
	}
	/* and one big run at the end, which must survive the coarsening */
	ctx->mark_unused(ctx, ctx->part_size - 64 * MiB, 64 * MiB);
	return 0;
}

static const struct snap_fs_driver good = {"testfs", good_map};
static const struct snap_fs_driver failing = {"testfs", failing_map};
static const struct snap_fs_driver overreaching = {"testfs", overreaching_map};
static const struct snap_fs_driver flooding = {"testfs", flooding_map};

static char last_warning[512];

static void on_warn(void *userdata, const char *msg)
{
	(void)userdata;
	snprintf(last_warning, sizeof(last_warning), "%s", msg);
}

static bool same_map(const struct snap_map *a, const struct snap_extent *b, size_t nb)
{
	if (snap_map_count(a) != nb)
		return false;
	for (size_t i = 0; i < nb; i++)
		if (memcmp(snap_map_get(a, i), &b[i], sizeof(b[i])))
			return false;
	return true;
}

static void test_fs_layer(void)
{
	uint64_t part_size = 32 * MiB;
	int fd = make_file(64 * MiB);
	fill(fd, PART_START, 4 * KiB, 0x5a);
	fill(fd, PART_START + part_size, 4 * KiB, 0x77); /* what lies after the partition */
	struct snap_src *src = NULL;
	struct snap_layout *l = NULL;
	char *detail = NULL;
	CHECK(snap_src_open(path, SNAP_SRC_NO_DIRECT, &src, &detail) == 0);
	struct snap_layout_opts opts = {.no_holes = true, .warn = on_warn};
	CHECK(snap_layout_build(src, &opts, &l, &detail) == 0);
	struct snap_partition_info p = {.number = 7, .start = PART_START, .size = part_size};
	const struct snap_map *m = l->map;

	/* a driver that succeeds: its runs and pins reach the map */
	CHECK(snap_layout_fs_apply(l, &p, &good, &opts, 64 * KiB) == 0);
	CHECK(p.fs_mapped == 1);
	CHECK(p.fs_used_bytes == 123 * KiB);
	CHECK(p.fs_note && !strcmp(p.fs_note, "journal kept"));
	CHECK(p.fs_skipped == 4 * MiB + 4 * MiB - 4 * KiB);
	CHECK(at(m, PART_START + 4 * MiB)->kind == SNAP_EXTENT_UNUSED);
	CHECK(at(m, PART_START + 4 * MiB)->layer == SNAP_LAYER_FS);
	CHECK(at(m, PART_START + 4 * MiB)->length == 4 * MiB);
	CHECK(at(m, PART_START + 10 * MiB)->kind == SNAP_EXTENT_DATA);
	CHECK(at(m, PART_START + 12 * MiB)->kind == SNAP_EXTENT_UNUSED);
	CHECK(at(m, PART_START + 13 * MiB)->kind == SNAP_EXTENT_DATA);
	CHECK(at(m, PART_START + 13 * MiB)->length == 4 * KiB);
	CHECK(at(m, PART_START + 13 * MiB + 4 * KiB)->kind == SNAP_EXTENT_UNUSED);
	free((char *)p.fs_note);

	/* drivers that fail or overreach: the map stays exactly as it was */
	size_t n = snap_map_count(m);
	struct snap_extent *before = malloc(n * sizeof(*before));
	for (size_t i = 0; i < n; i++)
		before[i] = *snap_map_get(m, i);

	p = (struct snap_partition_info){
	    .number = 7, .start = PART_START, .size = part_size, .fs_type = "testfs"};
	CHECK(snap_layout_fs_apply(l, &p, &failing, &opts, 64 * KiB) == 0);
	CHECK(same_map(m, before, n));
	CHECK(p.fs_mapped == 0 && p.fs_skipped == 0);
	CHECK(p.fs_note && !strcmp(p.fs_note, "journal needs recovery"));
	CHECK(!strcmp(last_warning, "partition 7 (testfs): copied whole: journal needs recovery"));
	free((char *)p.fs_note);

	p = (struct snap_partition_info){.number = 7, .start = PART_START, .size = part_size};
	CHECK(snap_layout_fs_apply(l, &p, &overreaching, &opts, 64 * KiB) == 0);
	CHECK(same_map(m, before, n));
	CHECK(p.fs_mapped == 0);
	CHECK(p.fs_note && strstr(p.fs_note, "outside the partition"));
	free((char *)p.fs_note);
	free(before);

	l = snap_layout_free(l);
	snap_src_free(src);
	close(fd);
	unlink(path);
}

static void test_fs_flood(void)
{
	/* 24 GiB apparent, never written: 3M runs of 4K */
	uint64_t part_size = 24 * 1024 * MiB;
	int fd = make_file(part_size + 2 * MiB);
	struct snap_src *src = NULL;
	struct snap_layout *l = NULL;
	char *detail = NULL;
	CHECK(snap_src_open(path, SNAP_SRC_NO_DIRECT, &src, &detail) == 0);
	struct snap_layout_opts opts = {.no_holes = true, .warn = on_warn};
	CHECK(snap_layout_build(src, &opts, &l, &detail) == 0);
	struct snap_partition_info p = {.number = 1, .start = 1 * MiB, .size = part_size};
	/* min_gap 1: only the bound on the collection drops runs */
	CHECK(snap_layout_fs_apply(l, &p, &flooding, &opts, 1) == 0);
	CHECK(flood_calls == part_size / (8 * KiB));
	CHECK(p.fs_mapped == 1);
	CHECK(snap_map_count(l->map) <= 2 * (1u << 20) + 8);
	/* the big run at the end is never dropped */
	CHECK(at(l->map, 1 * MiB + part_size - 32 * MiB)->kind == SNAP_EXTENT_UNUSED);
	CHECK(p.fs_skipped >= 64 * MiB);
	free((char *)p.fs_note);
	l = snap_layout_free(l);
	snap_src_free(src);
	close(fd);
	unlink(path);
}

static void test_empty(void)
{
	int fd = make_file(0);
	struct snap_src *src = NULL;
	struct snap_layout *l = NULL;
	char *detail = NULL;
	CHECK(snap_src_open(path, SNAP_SRC_NO_DIRECT, &src, &detail) == 0);
	CHECK(snap_layout_build(src, NULL, &l, &detail) == -EINVAL);
	CHECK(l == NULL);
	CHECK(detail && strstr(detail, "empty"));
	free(detail);
	snap_src_free(src);
	close(fd);
	unlink(path);
}

int main(void)
{
	test_holes_and_merge();
	test_fs_layer();
	test_fs_flood();
	test_empty();
	if (test_failures) {
		fprintf(stderr, "%d checks failed\n", test_failures);
		return 1;
	}
	printf("test-layout: all checks passed\n");
	return 0;
}
