// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-abi.c - caller-allocated structs grow without breaking older callers (snapbundle.h,
 * "Caller-allocated structs"). For each struct the library fills: a caller that passes an older,
 * smaller struct_size gets the members it knows, equal to a full call's, and not one byte past
 * its size is written; a struct_size below sizeof(size_t) is -EINVAL with nothing written; a
 * newer caller's unknown tail is zeroed. The source disk is partitioned by sfdisk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapbundle.h"
#include "test-util.h"

#define CANARY 0xa5
#define SLACK 64

/* The struct a caller compiled against an older header holds: the first members only. */
struct old_store_info {
	size_t struct_size;
	uint32_t version, compat, incompat, ro_compat;
	uint32_t frame_size;
};

struct old_extent {
	size_t struct_size;
	uint64_t offset, length;
};

static int bytes_are(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

/*
 * CALL(p) fills the struct at p. Checks the three sizes: older (up to LAST, exclusive), too
 * small, newer (sizeof + 32); FIELD is a member before LAST whose value must equal the full
 * call's.
 */
#define CHECK_SIZES(T, LAST, FIELD, CALL)                                                          \
	do {                                                                                       \
		T full = {.struct_size = sizeof(T)};                                               \
		REQUIRE(CALL(&full) == 0);                                                         \
		_Alignas(16) unsigned char buf[sizeof(T) + SLACK];                                 \
		size_t sz = offsetof(T, LAST);                                                     \
		memset(buf, CANARY, sizeof(buf));                                                  \
		memcpy(buf, &sz, sizeof(sz));                                                      \
		CHECK(CALL((T *)buf) == 0, #T ": older size");                                     \
		CHECK(((T *)buf)->FIELD == full.FIELD, #T ": older size, " #FIELD);                \
		CHECK(bytes_are(buf + sz, sizeof(buf) - sz, CANARY), #T ": written past %zu", sz); \
		CHECK(!memcmp(buf, &sz, sizeof(sz)), #T ": struct_size changed");                  \
		sz = sizeof(size_t) - 1;                                                           \
		memset(buf, CANARY, sizeof(buf));                                                  \
		memcpy(buf, &sz, sizeof(sz));                                                      \
		CHECK(CALL((T *)buf) == -EINVAL, #T ": too small");                                \
		CHECK(bytes_are(buf + sizeof(sz), sizeof(buf) - sizeof(sz), CANARY),               \
		      #T ": written although too small");                                          \
		sz = sizeof(T) + 32;                                                               \
		memset(buf, CANARY, sizeof(buf));                                                  \
		memcpy(buf, &sz, sizeof(sz));                                                      \
		CHECK(CALL((T *)buf) == 0, #T ": newer size");                                     \
		CHECK(((T *)buf)->FIELD == full.FIELD, #T ": newer size, " #FIELD);                \
		CHECK(bytes_are(buf + sizeof(T), 32, 0), #T ": newer tail not zeroed");            \
		CHECK(bytes_are(buf + sizeof(T) + 32, SLACK - 32, CANARY),                         \
		      #T ": past newer size");                                                     \
		tested++;                                                                          \
	} while (0)

static struct snap_disk *disk;
static struct snap_store_image *img;

#define DISK_EXTENT(p) snap_disk_extent(disk, 1, p)
#define DISK_SUMMARY(p) snap_disk_summary(disk, p)
#define IMG_INFO(p) snap_store_image_info(img, p)
#define IMG_VOLUME(p) snap_store_image_volume(img, 0, p)
#define IMG_PARTITION(p) snap_store_image_partition(img, 0, 1, p)
#define IMG_EXTENT(p) snap_store_image_extent(img, 0, 1, p)
#define IMG_FRAME(p) snap_store_image_frame(img, 0, p)

int main(void)
{
	int tested = 0;

	if (!test_have("sfdisk")) {
		fprintf(stderr, "sfdisk missing\n");
		return 77;
	}
	const char *dir = test_mkdir();
	char src[300], out[300];
	snprintf(src, sizeof(src), "%s/src.img", dir);
	snprintf(out, sizeof(out), "%s/img.bin", dir);
	REQUIRE(test_sh("truncate -s 16M %s && printf 'label: gpt\\n,4M\\n,4M\\n' | "
			"sfdisk -q %s >/dev/null && "
			"dd if=/dev/urandom of=%s bs=64K count=8 seek=20 conv=notrunc status=none",
			src, src, src) == 0);

	REQUIRE(snap_disk_new(&disk) == 0);
	/* a disk reads no data: the reader's settings are a job's, never silently taken */
	REQUIRE(snap_disk_set_param(disk, SNAP_DISK_QUEUE_DEPTH, 8) == -EOPNOTSUPP);
	REQUIRE(snap_disk_set_param(disk, SNAP_DISK_REQUEST_SIZE, 4096) == -EOPNOTSUPP);
	REQUIRE(snap_disk_set_param(disk, SNAP_DISK_FORCE_PREAD, 1) == -EOPNOTSUPP);
	REQUIRE(snap_disk_set_param(disk, SNAP_DISK_NO_HOLES, 0) == 0);
	REQUIRE(snap_disk_open(disk, src) == 0);
	REQUIRE(snap_disk_partition_count(disk) == 2);
	const struct snap_partition_info *pi = snap_disk_partition(disk, 0);
	CHECK(pi && pi->struct_size == sizeof(struct snap_partition_info) && pi->number == 1);
	CHECK_SIZES(struct snap_extent, partition, length, DISK_EXTENT);
	CHECK_SIZES(struct snap_map_summary, extents, bytes[0], DISK_SUMMARY);

	/* the older caller's own struct type */
	struct snap_extent e = {.struct_size = sizeof(e)};
	struct old_extent oe = {.struct_size = sizeof(oe)};
	REQUIRE(snap_disk_extent(disk, 1, &e) == 0 && snap_disk_extent(disk, 1, (void *)&oe) == 0);
	CHECK(oe.offset == e.offset && oe.length == e.length && e.length > 0);

	struct snap_job *job = NULL;
	REQUIRE(snap_job_new(SNAP_JOB_STORE, &job) == 0);
	REQUIRE(snap_job_add_source(job, src, "/dev/sdf") == 0);
	REQUIRE(snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out) == 0);
	REQUIRE(snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, 64 * 1024) == 0);
	REQUIRE(snap_job_run(job) == 0, "%s", snap_job_error(job));
	job = snap_job_free(job);

	REQUIRE(snap_store_image_new(&img) == 0);
	REQUIRE(snap_store_image_open(img, out) == 0);
	CHECK_SIZES(struct snap_store_info, signer_key_id, frames, IMG_INFO);
	CHECK_SIZES(struct snap_store_volume_info, digest, size, IMG_VOLUME);
	CHECK_SIZES(struct snap_partition_info, fs_note, start, IMG_PARTITION);
	CHECK_SIZES(struct snap_extent, partition, length, IMG_EXTENT);
	CHECK_SIZES(struct snap_store_frame_info, digest, raw_len, IMG_FRAME);

	struct snap_store_info in = {.struct_size = sizeof(in)};
	struct old_store_info oin = {.struct_size = sizeof(oin)};
	REQUIRE(snap_store_image_info(img, &in) == 0 &&
		snap_store_image_info(img, (void *)&oin) == 0);
	CHECK(oin.version == in.version && oin.frame_size == in.frame_size &&
	      in.frame_size == 64 * 1024);

	img = snap_store_image_free(img);
	disk = snap_disk_free(disk);
	CHECK(tested == 7);
	if (test_failures)
		return 1;
	printf("ok: %d structs checked at older, too small and newer sizes\n", tested);
	return 0;
}
