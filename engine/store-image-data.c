// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-image-data.c - what a job reads of a .bin store image's data: a selection (every volume,
 * one volume, a partition or a byte range of it) and the frames it wants, and the frame records
 * themselves, read by the index (random access: a file or an S3 object) or in file order from a
 * pipe, where the index, the signature and the footer come last. The head, the index and the
 * keys are store-image.c's.
 *
 * Invariants:
 *  1. A frame record is handed out only after its header decoded (CRC) and agreed with what is
 *     known of it: its index entry (random access), or the sequence (sequential: its number is
 *     the count read so far, volumes ascend, frames of a volume neither overlap nor end past
 *     it, and it is encrypted exactly when the image is).
 *  2. Sequential reading keeps every frame's header as it arrived (img->seen); the tail checks
 *     the authenticated index against them one by one, file offsets included, then the
 *     signature (when the header announces one), the footer, and the end of the input: a byte
 *     after the footer is an error.
 *  3. A selection is checked against the metadata before anything is sized from it: a volume
 *     named twice, a partition that is empty, wraps around or starts past its volume's end, a
 *     range outside the volume are refused. A partition that runs past the end (a truncated
 *     disk) is read as far as the volume goes.
 *  4. Failures are recorded on the image (store-image.c invariant 3), named by path, frame and
 *     offset; -ENOMEM is returned bare.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store-image.h"
#include "util.h"

/* ---- selection ---- */

int snap_store_image_find_volume(struct snap_store_image *img, const char *name, size_t *ret)
{
	const struct snap_store_meta *m = &img->meta;
	size_t vi = SIZE_MAX;
	for (size_t i = 0; i < m->nvolumes; i++) {
		const char *d = m->volumes[i].device;
		const char *base = strrchr(d, '/');
		if (!strcmp(d, name) || (base && !strcmp(base + 1, name))) {
			if (vi != SIZE_MAX) /* a forged image: store refuses this */
				return store_image_fail(img, -EUCLEAN,
							"%s: volumes %s and %s both match %s",
							img->path, m->volumes[vi].device, d, name);
			vi = i;
		}
	}
	if (vi == SIZE_MAX)
		return store_image_fail(img, -ENOENT, "the image has no volume %s", name);
	*ret = vi;
	return 0;
}

int store_image_select(struct snap_store_image *img, const char *volname, int64_t part,
		       int64_t roff, int64_t rlen, struct store_image_sel *sel)
{
	const struct snap_store_meta *m = &img->meta;
	size_t vi = SIZE_MAX;
	int r;
	if (volname && (r = snap_store_image_find_volume(img, volname, &vi)) < 0)
		return r;
	for (size_t i = 0; i < m->nvolumes; i++) {
		sel[i].selected = vi == SIZE_MAX || vi == i;
		sel[i].lo = 0;
		sel[i].hi = m->volumes[i].size;
	}
	if (part <= 0 && roff < 0 && rlen < 0)
		return 0;
	if (vi == SIZE_MAX) {
		if (m->nvolumes != 1)
			return store_image_fail(img, -EINVAL,
						"the image has %zu volumes: name one to restore "
						"a partition or range",
						m->nvolumes);
		vi = 0;
	}
	const struct snap_store_volume *v = &m->volumes[vi];
	struct store_image_sel *s = &sel[vi];
	if (part > 0) {
		size_t k;
		for (k = 0; k < v->nparts; k++)
			if (v->parts[k].number == (uint32_t)part)
				break;
		if (k == v->nparts)
			return store_image_fail(img, -ENOENT, "volume %s has no partition %lld",
						v->device, (long long)part);
		const struct snap_store_partition *p = &v->parts[k];
		/* the metadata of an unencrypted image is only as good as its SHA-256 (invariant
		 * 3): refused here rather than sizing an output from it */
		if (p->size == 0 || p->start >= v->size || p->size > UINT64_MAX - p->start)
			return store_image_fail(
			    img, -EUCLEAN,
			    "%s: partition %lld of volume %s (start %llu, size %llu) lies outside "
			    "the volume (%llu bytes)",
			    img->path, (long long)part, v->device, (unsigned long long)p->start,
			    (unsigned long long)p->size, (unsigned long long)v->size);
		s->lo = p->start;
		s->hi = p->start + p->size < v->size ? p->start + p->size : v->size;
	} else {
		if (roff < 0 || rlen <= 0 || (uint64_t)roff > v->size ||
		    (uint64_t)rlen > v->size - (uint64_t)roff)
			return store_image_fail(img, -EINVAL,
						"range %lld:%lld is outside volume %s (%llu bytes)",
						(long long)roff, (long long)rlen, v->device,
						(unsigned long long)v->size);
		s->lo = (uint64_t)roff;
		s->hi = (uint64_t)roff + (uint64_t)rlen; /* no int64 overflow: size > 2^63 */
	}
	return 0;
}

uint64_t store_image_sel_clip(const struct store_image_sel *s, uint64_t off, uint64_t len,
			      uint64_t *ret_at)
{
	uint64_t a = off > s->lo ? off : s->lo;
	uint64_t b = off + len < s->hi ? off + len : s->hi;
	*ret_at = a;
	return a < b ? b - a : 0;
}

bool store_image_frame_wanted(const struct store_image_sel *sel, bool all,
			      const struct snap_store_index_frame *e)
{
	const struct store_image_sel *v = &sel[e->volume];
	return (v->selected || all) && e->offset + e->raw_len > v->lo && e->offset < v->hi;
}

/* The records of the wanted frames: their bytes, and with ranges their file ranges, adjacent
 * ones merged (*n of them). The index lists every volume's frames in file order. */
static uint64_t wanted_records(const struct snap_store_image *img,
			       const struct store_image_sel *sel, bool all, uint64_t (*ranges)[2],
			       size_t *n)
{
	uint64_t bytes = 0;
	for (uint64_t k = 0; k < img->ix.nframes; k++) {
		const struct snap_store_index_frame *e = &img->ix.frames[k];
		uint64_t a = e->file_offset, len = snap_store_index_frame_end(e) - a;
		if (!store_image_frame_wanted(sel, all, e))
			continue;
		bytes += len;
		if (ranges && *n && ranges[*n - 1][1] == a)
			ranges[*n - 1][1] = a + len;
		else if (ranges)
			ranges[*n][0] = a, ranges[(*n)++][1] = a + len;
	}
	return bytes;
}

uint64_t store_image_sel_bytes(const struct snap_store_image *img,
			       const struct store_image_sel *sel, bool all)
{
	return img->bytes_read + wanted_records(img, sel, all, NULL, NULL);
}

/* An S3 image's reader fetches about the wanted frames (store-image.c invariant 4), not the
 * whole object. */
int store_image_plan_sel(struct snap_store_image *img, const struct store_image_sel *sel, bool all)
{
	if (!img->s3)
		return 0;
	uint64_t(*ranges)[2] = calloc(img->ix.nframes + 1, sizeof(*ranges));
	size_t n = 0;
	if (!ranges)
		return -ENOMEM;
	wanted_records(img, sel, all, ranges, &n);
	int r = n ? store_image_plan(img, (const uint64_t(*)[2])ranges, n) : 0;
	free(ranges);
	if (r < 0)
		return store_image_fail(img, r, "cannot plan the reads of %s: %s", img->path,
					snap_strerror(r));
	return 0;
}

/* ---- frame records ---- */

size_t store_image_record_max(const struct snap_store_image *img)
{
	return (size_t)img->hdr.frame_size + SNAP_STORE_FRAME_HEADER_SIZE +
	       SNAP_STORE_FRAME_TRAILER_SIZE + SNAP_STORE_GCM_TAG_SIZE;
}

/* What the index lists for frame f when its record is at file offset at. */
static struct snap_store_index_frame index_entry(const struct snap_store_frame *f, uint64_t at)
{
	struct snap_store_index_frame e = {
	    .file_offset = at,
	    .volume = f->volume,
	    .flags = f->flags,
	    .offset = f->offset,
	    .raw_len = f->raw_len,
	    .stored_len = f->stored_len,
	};
	memcpy(e.digest, f->digest, sizeof(e.digest));
	return e;
}

static bool same_entry(const struct snap_store_index_frame *a,
		       const struct snap_store_index_frame *b)
{
	return a->file_offset == b->file_offset && a->volume == b->volume && a->flags == b->flags &&
	       a->offset == b->offset && a->raw_len == b->raw_len &&
	       a->stored_len == b->stored_len && !memcmp(a->digest, b->digest, sizeof(a->digest));
}

int store_image_read_frame(struct snap_store_image *img, uint64_t k, uint8_t *rec,
			   struct snap_store_frame *f)
{
	const struct snap_store_index_frame *e = &img->ix.frames[k];
	struct snap_store_frame hdrf = {.flags = e->flags, .stored_len = e->stored_len};
	size_t len = (size_t)snap_store_frame_record_len(&hdrf);
	if (len > store_image_record_max(img))
		return store_image_fail(img, -EUCLEAN, "%s: index entry of frame %llu is too long",
					img->path, (unsigned long long)k);
	int r = store_image_pread(img, rec, len, e->file_offset, "frame");
	if (r < 0)
		return r;
	const char *why = "";
	r = snap_store_frame_decode(rec, len, img->hdr.frame_size, f, &why);
	if (r < 0)
		return store_image_fail(img, r, "%s: frame %llu at offset %llu: %s", img->path,
					(unsigned long long)k, (unsigned long long)e->file_offset,
					why);
	struct snap_store_index_frame got = index_entry(f, e->file_offset);
	if (f->index != k || !same_entry(&got, e))
		return store_image_fail(img, -EBADMSG,
					"%s: frame %llu at offset %llu does not match "
					"the index (moved, swapped or reordered frame)",
					img->path, (unsigned long long)k,
					(unsigned long long)e->file_offset);
	return 0;
}

static int add_seen(struct snap_store_image *img, const struct snap_store_frame *f, uint64_t at)
{
	if (img->nseen == img->cap_seen) {
		uint64_t cap = img->cap_seen ? img->cap_seen * 2 : 1024;
		struct snap_store_index_frame *n = realloc(img->seen, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		img->seen = n;
		img->cap_seen = cap;
	}
	img->seen[img->nseen++] = index_entry(f, at);
	return 0;
}

int store_image_next_frame(struct snap_store_image *img, uint8_t *rec, struct snap_store_frame *f)
{
	uint64_t at = img->pos;
	int r = store_image_read(img, rec, SNAP_STORE_PREFIX_SIZE, "frames");
	if (r < 0)
		return r;
	uint32_t type = snap_get_le32(rec);
	if (type == SNAP_STORE_REC_INDEX) {
		/* the tail reads the rest of the record */
		memcpy(img->index_prefix, rec, SNAP_STORE_PREFIX_SIZE);
		return 0;
	}
	if (type != SNAP_STORE_REC_FRAME)
		return store_image_fail(img, -EUCLEAN,
					"%s: unexpected record type %u at offset %llu", img->path,
					type, (unsigned long long)at);
	r = store_image_read(img, rec + SNAP_STORE_PREFIX_SIZE,
			     SNAP_STORE_FRAME_HEADER_SIZE - SNAP_STORE_PREFIX_SIZE, "frame");
	if (r < 0)
		return r;
	const char *why = "";
	r = snap_store_frame_decode(rec, SNAP_STORE_FRAME_HEADER_SIZE, img->hdr.frame_size, f,
				    &why);
	if (r < 0)
		return store_image_fail(img, r, "%s: frame at offset %llu: %s", img->path,
					(unsigned long long)at, why);
	if (f->index != img->nseen)
		return store_image_fail(
		    img, -EBADMSG,
		    "%s: frames out of order at offset %llu: expected frame %llu, "
		    "found frame %llu (reordered, dropped or inserted frame)",
		    img->path, (unsigned long long)at, (unsigned long long)img->nseen,
		    (unsigned long long)f->index);
	if (f->volume >= img->meta.nvolumes || f->volume < img->seq_vol ||
	    (f->volume == img->seq_vol && f->offset < img->seq_end) ||
	    f->offset + f->raw_len > img->meta.volumes[f->volume].size ||
	    !(f->flags & SNAP_STORE_FRAME_ENCRYPTED) != !img->keys_rec)
		return store_image_fail(
		    img, -EBADMSG, "%s: frame %llu at offset %llu is out of place (moved frame)",
		    img->path, (unsigned long long)f->index, (unsigned long long)at);
	img->seq_vol = f->volume;
	img->seq_end = f->offset + f->raw_len;
	size_t rest = (size_t)snap_store_frame_record_len(f) - SNAP_STORE_FRAME_HEADER_SIZE;
	r = store_image_read(img, rec + SNAP_STORE_FRAME_HEADER_SIZE, rest, "frame");
	if (r < 0)
		return r;
	if ((r = add_seen(img, f, at)) < 0)
		return r;
	return 1;
}

int store_image_read_tail(struct snap_store_image *img)
{
	uint64_t at = img->pos - SNAP_STORE_PREFIX_SIZE;
	struct snap_store_prefix p;
	if (snap_store_prefix_decode(img->index_prefix, SNAP_STORE_PREFIX_SIZE, &p) < 0 ||
	    p.type != SNAP_STORE_REC_INDEX || p.length > (1ull << 34) ||
	    p.length < SNAP_STORE_PREFIX_SIZE + SNAP_STORE_TAG_SIZE)
		return store_image_fail(img, -EUCLEAN,
					"%s: index record at offset %llu is corrupt (bad prefix)",
					img->path, (unsigned long long)at);
	uint8_t *rec = NULL;
	int r = store_image_read_rest(img, img->index_prefix, p.length, "index", &rec);
	if (r < 0 || (r = store_image_set_index(img, rec, p.length, at)) < 0)
		return r;
	const struct snap_store_index *ix = &img->ix;
	if (ix->nframes != img->nseen)
		return store_image_fail(img, -EBADMSG,
					"%s: the index lists %llu frames, the image holds %llu "
					"(dropped frames)",
					img->path, (unsigned long long)ix->nframes,
					(unsigned long long)img->nseen);
	for (uint64_t k = 0; k < ix->nframes; k++) /* numbered in order as they came */
		if (!same_entry(&img->seen[k], &ix->frames[k]))
			return store_image_fail(
			    img, -EBADMSG, "%s: frame %llu at offset %llu does not match the index",
			    img->path, (unsigned long long)k,
			    (unsigned long long)img->seen[k].file_offset);
	if (img->hdr.compat & SNAP_STORE_COMPAT_SIGNATURE) {
		uint8_t pre[SNAP_STORE_PREFIX_SIZE];
		struct snap_store_prefix sp;
		if ((r = store_image_read(img, pre, sizeof(pre), "signature")) < 0)
			return r;
		if (snap_store_prefix_decode(pre, sizeof(pre), &sp) < 0 ||
		    sp.type != SNAP_STORE_REC_SIGNATURE || sp.length > (1u << 20))
			return store_image_fail(
			    img, -EUCLEAN, "%s: signature record missing or malformed", img->path);
		uint8_t *srec = NULL;
		r = store_image_read_rest(img, pre, sp.length, "signature", &srec);
		if (r < 0 || (r = store_image_set_signature(img, srec, sp.length)) < 0)
			return r;
	}
	uint8_t foot[SNAP_STORE_FOOTER_SIZE];
	if ((r = store_image_read(img, foot, sizeof(foot), "footer")) < 0)
		return r;
	const char *why = "";
	struct snap_store_footer ft;
	if ((r = snap_store_footer_decode(foot, sizeof(foot), &ft, &why)) < 0)
		return store_image_fail(img, r, "%s: footer is corrupt: %s", img->path, why);
	if (ft.index_offset != at || ft.index_length != p.length || ft.image_size != img->pos ||
	    memcmp(ft.image_id, img->hdr.image_id, SNAP_STORE_ID_SIZE) != 0)
		return store_image_fail(img, -EBADMSG, "%s: footer does not match the image",
					img->path);
	uint8_t extra;
	if (snap_read_all(img->fd, &extra, 1, NULL) != -ENODATA)
		return store_image_fail(img, -EUCLEAN, "data after the footer of %s", img->path);
	return 0;
}
