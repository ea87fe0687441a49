// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-image-read.c - random reads of one volume's logical bytes from an opened .bin store
 * image (snap_store_reader_*), what a block device server serves without a restore; and the
 * signer check such a server makes before it serves (snap_store_image_check_signer).
 *
 * Invariants:
 *  1. No byte of a frame is returned before the whole frame passed restore's checks, made by
 *     the same calls restore makes: its header CRC and agreement with the authenticated index
 *     (store_image_read_frame), then digest, GCM tag, inflate to exactly raw_len and the CRC-32
 *     of the data (snap_store_frame_open). A frame that fails any of them is not cached.
 *  2. A volume's frames are listed in offset order and never overlap (STORE_FORMAT.md, "Index";
 *     snap_store_index_decode refuses anything else): the first frame a read needs is found by
 *     binary search. Bytes no frame holds (zero and unused extents, unpartitioned space) read
 *     as zeros, as a restore to a file leaves them.
 *  3. Memory is fixed when the reader is made: SNAP_STORE_READER_CACHE opened frames of up to
 *     frame_size bytes each and one frame record buffer. Reading allocates nothing; the least
 *     recently used frame makes room for the next.
 *  4. A reader belongs to one thread at a time and reads through its image, whose file or S3
 *     reader, byte counters and error it updates: one image and one reader per thread.
 *  5. Each read starts with the image's error cleared, so after a failure the image's error
 *     (store-image.c invariant 3) names this read's cause, with the frame and its file offset,
 *     not that of an earlier read.
 *
 * State transitions:
 *  1. opened image (snap_store_image_open or _open_s3, then snap_store_image_unlock) -> reader
 *     (snap_store_reader_new: volume checked, cache and codec allocated)
 *  2. frame k: not cached -> cached (open_frame), cached -> evicted (pick_slot: least recently
 *     used) or dropped (open_frame failed on its slot)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store-frame.h"
#include "store-image.h"

struct cached_frame {
	uint64_t frame; /* index of the frame held, UINT64_MAX none */
	uint64_t used;	/* the reader's clock when last read: least recently used goes first */
	uint8_t *data;	/* its raw_len bytes, checked */
};

struct snap_store_reader {
	struct snap_store_image *img;
	uint32_t volume;
	uint64_t size;		 /* of the volume */
	uint64_t first, nframes; /* the volume's frames in the index */
	struct snap_frame_codec *codec;
	uint8_t *rec; /* one frame record, as read */
	uint64_t clock;
	struct cached_frame cache[SNAP_STORE_READER_CACHE];
};

int snap_store_reader_new(struct snap_store_image *img, size_t volume,
			  struct snap_store_reader **ret)
{
	if (!img || !img->index_rec || !img->meta_decoded || volume >= img->ix.nvolumes)
		return -EINVAL;
	if (img->keys_rec && !img->unlocked)
		return -ENOKEY;
	struct snap_store_reader *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->img = img;
	rd->volume = (uint32_t)volume;
	rd->size = img->meta.volumes[volume].size;
	rd->first = img->ix.vols[volume].first_frame;
	rd->nframes = img->ix.vols[volume].nframes;
	int r = snap_frame_codec_new(-1, img->unlocked ? &img->ks : NULL, &rd->codec);
	if (r < 0) {
		free(rd);
		return r;
	}
	rd->rec = malloc(store_image_record_max(img));
	bool ok = rd->rec != NULL;
	for (size_t i = 0; i < SNAP_STORE_READER_CACHE; i++) {
		rd->cache[i].frame = UINT64_MAX;
		rd->cache[i].data = ok ? malloc(img->hdr.frame_size) : NULL;
		ok = ok && rd->cache[i].data;
	}
	if (!ok) {
		snap_store_reader_free(rd);
		return -ENOMEM;
	}
	*ret = rd;
	return 0;
}

struct snap_store_reader *snap_store_reader_free(struct snap_store_reader *rd)
{
	if (!rd)
		return NULL;
	snap_frame_codec_free(rd->codec);
	free(rd->rec);
	for (size_t i = 0; i < SNAP_STORE_READER_CACHE; i++)
		free(rd->cache[i].data);
	free(rd);
	return NULL;
}

/* The first frame of the volume that ends after off (invariant 2); rd->first + rd->nframes
 * when none does. */
static uint64_t find_frame(const struct snap_store_reader *rd, uint64_t off)
{
	const struct snap_store_index_frame *fr = rd->img->ix.frames;
	uint64_t lo = rd->first, hi = rd->first + rd->nframes;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (fr[mid].offset + fr[mid].raw_len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The cache slot for frame k: the one holding it, else an empty one or the least recently
 * used (invariant 3; an empty slot's clock is 0). */
static struct cached_frame *pick_slot(struct snap_store_reader *rd, uint64_t k)
{
	struct cached_frame *victim = &rd->cache[0];
	for (size_t i = 0; i < SNAP_STORE_READER_CACHE; i++) {
		if (rd->cache[i].frame == k)
			return &rd->cache[i];
		if (rd->cache[i].used < victim->used)
			victim = &rd->cache[i];
	}
	return victim;
}

/* Reads and checks frame k into slot c (invariant 1), the way restore does. */
static int open_frame(struct snap_store_reader *rd, uint64_t k, struct cached_frame *c)
{
	struct snap_store_image *img = rd->img;
	struct snap_store_frame f;
	c->frame = UINT64_MAX;
	c->used = 0;
	int r = store_image_read_frame(img, k, rd->rec, &f);
	if (r < 0)
		return r;
	const uint8_t *raw;
	const char *why = "";
	r = snap_store_frame_open(rd->codec, img->hdr.image_id, rd->rec, &f, c->data, &raw, &why);
	if (r < 0)
		return store_image_fail(
		    img, r, "%s: frame %llu at offset %llu (volume %s, offset %llu): %s", img->path,
		    (unsigned long long)k, (unsigned long long)img->ix.frames[k].file_offset,
		    img->meta.volumes[rd->volume].device, (unsigned long long)f.offset, why);
	if (raw != c->data) /* a frame stored raw: its data is inside the record */
		memcpy(c->data, raw, f.raw_len);
	c->frame = k;
	return 0;
}

int snap_store_reader_pread(struct snap_store_reader *rd, void *buf, size_t len, uint64_t offset)
{
	struct snap_store_image *img = rd->img;
	free(img->error); /* invariant 5 */
	img->error = NULL;
	img->errcode = 0;
	if (offset > rd->size || len > rd->size - offset)
		return store_image_fail(img, -EINVAL,
					"%s: read of %zu bytes at offset %llu is past the end of "
					"volume %s (%llu bytes)",
					img->path, len, (unsigned long long)offset,
					img->meta.volumes[rd->volume].device,
					(unsigned long long)rd->size);
	const struct snap_store_index_frame *fr = img->ix.frames;
	uint64_t last = rd->first + rd->nframes;
	uint64_t k = find_frame(rd, offset);
	uint8_t *out = buf;
	uint64_t pos = offset, end = offset + len;
	while (pos < end) {
		if (k == last || fr[k].offset >= end) { /* no frame holds the rest */
			memset(out, 0, (size_t)(end - pos));
			break;
		}
		if (fr[k].offset > pos) { /* a gap before frame k */
			memset(out, 0, (size_t)(fr[k].offset - pos));
			out += fr[k].offset - pos;
			pos = fr[k].offset;
		}
		struct cached_frame *c = pick_slot(rd, k);
		if (c->frame != k) {
			int r = open_frame(rd, k, c);
			if (r < 0)
				return r;
		}
		c->used = ++rd->clock;
		uint64_t fend = fr[k].offset + fr[k].raw_len;
		size_t n = (size_t)((fend < end ? fend : end) - pos);
		memcpy(out, c->data + (pos - fr[k].offset), n);
		out += n;
		pos += n;
		k++;
	}
	return 0;
}

int snap_store_image_check_signer(struct snap_store_image *img, const char *pem_path)
{
	if (!img || !pem_path || !img->index_rec)
		return -EINVAL;
	return store_image_check_signer(img, pem_path);
}
