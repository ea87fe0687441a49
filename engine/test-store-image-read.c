// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-store-image-read.c - snap_store_reader_pread against the source disk it was stored from:
 * reads at and across frame boundaries, inside a zero range (no frame read), past the end, the
 * cache (a frame read once for many small reads, again once evicted), an encrypted image before
 * unlocking, with a wrong and with the right passphrase, and a tampered frame (refused, the
 * frame and its file offset named, the frames around it still served).
 */
#include <stdbool.h>
#include <stdint.h>

#include "snapbundle.h"
#include "store-image.h"
#include "test-util.h"

#define FS (64u << 10) /* frame size of the test images */
/* the source: random data [0, 300K), a hole [300K, 1M), random [1M, 1.5M), text [1.5M, 2M),
 * 4 KiB more random data: the last frame is short */
#define HOLE_START (300u << 10)
#define HOLE_END (1u << 20)
#define SIZE ((2u << 20) + 4096)

static uint8_t src_data[SIZE];

static void make_source(const char *path)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < SIZE; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		src_data[i] = (uint8_t)x;
	}
	memset(src_data + HOLE_START, 0, HOLE_END - HOLE_START);
	for (size_t i = 3u << 19; i < (2u << 20); i++)
		src_data[i] = "the quick brown fox jumps over the lazy dog\n"[i % 44];
	test_write_file(path, src_data, SIZE);
}

static void store(const char *src, const char *out, const char *pass)
{
	struct snap_job *job = NULL;
	REQUIRE(snap_job_new(SNAP_JOB_STORE, &job) == 0);
	REQUIRE(snap_job_add_source(job, src, "/dev/xvda") == 0);
	snap_job_set_string(job, SNAP_SPARAM_OUTPUT, out);
	snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, FS);
	snap_job_set_param(job, SNAP_PARAM_THREADS, 2);
	if (pass) {
		snap_job_set_string(job, SNAP_SPARAM_PASSPHRASE, pass);
		snap_job_set_param(job, SNAP_PARAM_SCRYPT_LOG_N, 10);
	}
	int r = snap_job_run(job);
	REQUIRE(r == 0, "store: %s", snap_job_error(job));
	snap_job_free(job);
}

static struct snap_store_image *open_image(const char *path)
{
	struct snap_store_image *img = NULL;
	REQUIRE(snap_store_image_new(&img) == 0);
	int r = snap_store_image_open(img, path);
	REQUIRE(r == 0, "open %s: %s", path, snap_store_image_error(img));
	return img;
}

/* [off, off + len) read through rd equals the source. */
static void check_range(struct snap_store_reader *rd, uint64_t off, size_t len)
{
	static uint8_t buf[SIZE];
	memset(buf, 0xa5, len);
	int r = snap_store_reader_pread(rd, buf, len, off);
	CHECK(r == 0, "read %zu at %llu: %d", len, (unsigned long long)off, r);
	CHECK(r < 0 || !memcmp(buf, src_data + off, len), "bytes differ: %zu at %llu", len,
	      (unsigned long long)off);
}

static void plain_reads(const char *bin)
{
	struct snap_store_image *img = open_image(bin);
	struct snap_store_reader *rd = NULL;
	CHECK(snap_store_reader_new(img, 1, &rd) == -EINVAL && !rd);
	REQUIRE(snap_store_reader_new(img, 0, &rd) == 0);
	/* the layout the cases below rely on: frames of FS bytes, none inside the hole */
	struct snap_store_volume_info vi = {.struct_size = sizeof(vi)};
	REQUIRE(snap_store_image_volume(img, 0, &vi) == 0);
	CHECK(vi.size == SIZE);
	for (uint64_t k = 0; k < vi.frames; k++) {
		struct snap_store_frame_info fi = {.struct_size = sizeof(fi)};
		REQUIRE(snap_store_image_frame(img, vi.first_frame + k, &fi) == 0);
		CHECK(fi.offset % FS == 0 && (fi.offset >= HOLE_END || fi.offset < HOLE_START));
	}

	check_range(rd, 0, SIZE);
	check_range(rd, FS - 1, 2);		   /* the last byte of frame 0, the first of 1 */
	check_range(rd, FS, FS);		   /* exactly frame 1 */
	check_range(rd, 100u << 10, 150u << 10);   /* across three frames */
	check_range(rd, HOLE_START - 100, 200);	   /* the end of the data into the hole */
	check_range(rd, HOLE_END - 5, 4096);	   /* the hole into data */
	check_range(rd, SIZE - 4096, 4096);	   /* the short last frame */
	check_range(rd, (3u << 19) + 7, 3u << 16); /* compressed frames */
	check_range(rd, 12345, 0);

	/* inside the hole: zeros, and no frame read at all */
	uint64_t before = img->bytes_read;
	check_range(rd, HOLE_START + 4096, 512u << 10);
	CHECK(img->bytes_read == before, "the hole read %llu bytes of the image",
	      (unsigned long long)(img->bytes_read - before));

	/* the cache: 16 reads of 4 KiB across frame 20 read its record once */
	uint64_t f20 = 20ull * FS;
	check_range(rd, f20, 4096);
	before = img->bytes_read;
	CHECK(before > 0);
	for (uint64_t off = f20 + 4096; off < f20 + FS; off += 4096)
		check_range(rd, off, 4096);
	CHECK(img->bytes_read == before, "a cached frame was read again");
	/* SNAP_STORE_READER_CACHE other frames evict it: it is read again */
	for (unsigned i = 1; i <= SNAP_STORE_READER_CACHE; i++)
		check_range(rd, f20 + i * FS, 10);
	before = img->bytes_read;
	check_range(rd, f20, 10);
	CHECK(img->bytes_read > before, "frame 20 was not evicted");
	/* the least recently used goes: the cache holds 22, 23, 24 and 20 (read last); 25 takes
	 * 22's place, and 20, 23 and 24 stay */
	check_range(rd, f20 + (SNAP_STORE_READER_CACHE + 1) * FS, 10);
	before = img->bytes_read;
	check_range(rd, f20, 10);
	check_range(rd, f20 + 3 * FS, 10);
	check_range(rd, f20 + 4 * FS, 10);
	CHECK(img->bytes_read == before, "a recently read frame was evicted");
	check_range(rd, f20 + 2 * FS, 10);
	CHECK(img->bytes_read > before, "frame 22, the least recent, was kept");

	/* past the end: refused, nothing written */
	uint8_t b[32] = {0};
	CHECK(snap_store_reader_pread(rd, b, 20, SIZE - 10) == -EINVAL);
	CHECK(strstr(snap_store_image_error(img), "past the end of volume /dev/xvda"), "error: %s",
	      snap_store_image_error(img));
	CHECK(snap_store_reader_pread(rd, b, 1, SIZE) == -EINVAL);
	CHECK(snap_store_reader_pread(rd, b, 1, UINT64_MAX) == -EINVAL);
	CHECK(snap_store_reader_pread(rd, b, 0, SIZE) == 0);
	CHECK(!*snap_store_image_error(img), "a good read left the error: %s",
	      snap_store_image_error(img));

	/* no signature: a required signer is refused */
	CHECK(snap_store_image_check_signer(img, "/nonexistent.pem") < 0);
	rd = snap_store_reader_free(rd);
	CHECK(snap_store_reader_free(NULL) == NULL);
	snap_store_image_free(img);
}

static void encrypted_reads(const char *bin)
{
	struct snap_store_image *img = open_image(bin);
	struct snap_store_reader *rd = NULL;
	CHECK(snap_store_reader_new(img, 0, &rd) == -ENOKEY && !rd);
	CHECK(snap_store_image_unlock(img, "wrong", NULL) == -EKEYREJECTED);
	CHECK(snap_store_reader_new(img, 0, &rd) == -ENOKEY && !rd);
	snap_store_image_free(img);

	img = open_image(bin);
	REQUIRE(snap_store_image_unlock(img, "right", NULL) == 0, "%s",
		snap_store_image_error(img));
	REQUIRE(snap_store_reader_new(img, 0, &rd) == 0);
	check_range(rd, 0, SIZE);
	check_range(rd, FS - 3, FS + 6);
	check_range(rd, HOLE_START + 1, 1000);
	snap_store_reader_free(rd);
	snap_store_image_free(img);
}

/* One byte of frame 3's stored payload flipped: the frame is refused by its digest. */
static void tampered_reads(const char *bin, const char *pass)
{
	struct snap_store_image *img = open_image(bin);
	struct snap_store_frame_info fi = {.struct_size = sizeof(fi)};
	REQUIRE(snap_store_image_frame(img, 3, &fi) == 0);
	snap_store_image_free(img);
	int fd = open(bin, O_RDWR);
	REQUIRE(fd >= 0);
	uint8_t c;
	off_t at = (off_t)fi.file_offset + SNAP_STORE_FRAME_HEADER_SIZE + 100;
	REQUIRE(pread(fd, &c, 1, at) == 1);
	c ^= 0x40;
	REQUIRE(pwrite(fd, &c, 1, at) == 1);
	close(fd);

	img = open_image(bin); /* the index is intact: opening succeeds */
	REQUIRE(snap_store_image_unlock(img, pass, NULL) == 0);
	struct snap_store_reader *rd = NULL;
	REQUIRE(snap_store_reader_new(img, 0, &rd) == 0);
	uint8_t buf[1024];
	memset(buf, 0, sizeof(buf));
	char want[128];
	snprintf(want, sizeof(want),
		 "frame 3 at offset %llu (volume /dev/xvda, offset %llu): digest mismatch",
		 (unsigned long long)fi.file_offset, (unsigned long long)fi.offset);
	for (int i = 0; i < 2; i++) { /* a failed frame is not cached: refused again */
		CHECK(snap_store_reader_pread(rd, buf, sizeof(buf), fi.offset + 10) == -EBADMSG);
		CHECK(strstr(snap_store_image_error(img), want), "error: %s",
		      snap_store_image_error(img));
		check_range(rd, fi.offset - 100, 100); /* its neighbours are served */
		CHECK(!*snap_store_image_error(img));
	}
	/* a read across it fails too */
	CHECK(snap_store_reader_pread(rd, buf, 200, fi.offset - 100) == -EBADMSG);
	snap_store_reader_free(rd);
	snap_store_image_free(img);
}

int main(void)
{
	const char *dir = test_mkdir();
	char src[512], plain[512], enc[512];
	snprintf(src, sizeof(src), "%s/src.img", dir);
	snprintf(plain, sizeof(plain), "%s/plain.bin", dir);
	snprintf(enc, sizeof(enc), "%s/enc.bin", dir);
	make_source(src);
	/* the hole as a hole: store maps it as a zero extent without reading it */
	REQUIRE(test_sh("fallocate -p -o %u -l %u '%s' 2>/dev/null || true", HOLE_START,
			HOLE_END - HOLE_START, src) == 0);
	store(src, plain, NULL);
	store(src, enc, "right");
	plain_reads(plain);
	encrypted_reads(enc);
	tampered_reads(plain, NULL);
	tampered_reads(enc, "right");
	return test_failures ? 1 : 0;
}
