// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ptable.c - the partition table layer (ptable.h): libfdisk lists the partitions; the critical
 * regions libfdisk does not expose (the backup GPT entries, the EBR chain) we locate by reading
 * the GPT headers and walking the EBRs ourselves, through snap_src_pread.
 *
 * Every on-disk number we read is untrusted: ranges are clipped to the source by the map, the
 * EBR walk is bounded, and a damaged structure only ever makes us keep more, never less.
 */
#include <ctype.h>
#include <errno.h>
#include <libfdisk/libfdisk.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ptable.h"

#define EBR_MAX 1024	  /* more logical partitions than any tool creates */
#define GPT_HEADER_MIN 92 /* bytes of a GPT header we read */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int crit_add(struct snap_ptable *pt, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	struct snap_range *v = realloc(pt->crit, (pt->ncrit + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	pt->crit = v;
	pt->crit[pt->ncrit++] = (struct snap_range){off, len};
	return 0;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

static void free_part(struct snap_partition_info *p)
{
	free((char *)p->type);
	free((char *)p->type_name);
	free((char *)p->name);
	free((char *)p->uuid);
}

struct snap_ptable *snap_ptable_free(struct snap_ptable *pt)
{
	if (!pt)
		return NULL;
	for (size_t i = 0; i < pt->nparts; i++)
		free_part(&pt->parts[i]);
	free(pt->parts);
	free(pt->crit);
	free(pt->type);
	free(pt->id);
	free(pt);
	return NULL;
}

static int cmp_part(const void *a, const void *b)
{
	const struct snap_partition_info *x = a, *y = b;
	return x->number < y->number ? -1 : x->number > y->number;
}

/* Reads a GPT header at lba; true when its signature is there. */
static bool gpt_header(const struct snap_src *src, uint32_t ss, uint64_t lba, uint8_t *hdr)
{
	if (ss < GPT_HEADER_MIN || src->size / ss < 2 || lba > src->size / ss - 1)
		return false;
	if (snap_src_pread(src, hdr, GPT_HEADER_MIN, lba * ss) < 0)
		return false;
	return !memcmp(hdr, "EFI PART", 8);
}

/* Bytes of the entry array a header describes, rounded up to whole sectors. */
static uint64_t gpt_entries_bytes(const uint8_t *hdr, uint32_t ss)
{
	uint64_t bytes = (uint64_t)le32(hdr + 80) * le32(hdr + 84);
	return (bytes + ss - 1) / ss * ss;
}

/*
 * Both GPT structures. The primary header sits at LBA 1 and names its entry array and the
 * backup header (alternate LBA); the backup header names its own entry array. When the primary
 * is damaged libfdisk used the backup at the last LBA, and so do we.
 */
static int gpt_crit(struct snap_ptable *pt, const struct snap_src *src)
{
	uint32_t ss = pt->sector_size;
	uint8_t prim[GPT_HEADER_MIN], back[GPT_HEADER_MIN];
	int r;

	if (src->size / ss < 2)
		return 0;
	uint64_t last = src->size / ss - 1;

	bool have_prim = gpt_header(src, ss, 1, prim);
	uint64_t alt = have_prim ? le64(prim + 32) : last;
	if (have_prim) {
		uint64_t end = le64(prim + 72) * ss + gpt_entries_bytes(prim, ss);
		r = crit_add(pt, 0, end > 2 * (uint64_t)ss ? end : 2 * (uint64_t)ss);
		if (r < 0)
			return r;
	} else {
		r = crit_add(pt, 0, 2 * (uint64_t)ss);
		if (r < 0)
			return r;
	}
	if (alt > last) {
		/* the image was truncated after partitioning: keep where the backup belongs now */
		snap_debug("%s: GPT backup header LBA %llu is past the end", src->path,
			   (unsigned long long)alt);
		alt = last;
	}
	if (gpt_header(src, ss, alt, back)) {
		uint64_t eoff = le64(back + 72) * ss;
		r = crit_add(pt, eoff, gpt_entries_bytes(back, ss));
		if (r < 0)
			return r;
	} else if (have_prim) {
		/* no readable backup: keep where it should be (entries just before the header) */
		uint64_t bytes = gpt_entries_bytes(prim, ss);
		uint64_t hoff = alt * ss;
		r = crit_add(pt, hoff > bytes ? hoff - bytes : 0, hoff > bytes ? bytes : hoff);
		if (r < 0)
			return r;
	}
	return crit_add(pt, alt * ss, ss);
}

static bool mbr_is_extended(uint8_t type)
{
	return type == 0x05 || type == 0x0f || type == 0x85;
}

/*
 * The EBR chain. Each EBR's first entry is its logical partition (relative to the EBR), its
 * second entry links the next EBR (relative to the start of the extended partition).
 */
static int ebr_crit(struct snap_ptable *pt, const struct snap_src *src)
{
	uint32_t ss = pt->sector_size;
	uint8_t sec[512];
	int r;

	if (src->size < 512 || snap_src_pread(src, sec, sizeof(sec), 0) < 0)
		return 0;
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = sec + 446 + 16 * i;
		if (!mbr_is_extended(e[4]))
			continue;
		uint64_t ext = le32(e + 8);
		uint64_t cur = ext, prev = UINT64_MAX;
		for (int k = 0; k < EBR_MAX && cur != prev; k++) {
			uint8_t ebr[512];
			if (cur * ss + ss > src->size)
				break;
			/* the first EBR's sector is kept even when its chain is empty */
			r = crit_add(pt, cur * ss, ss);
			if (r < 0)
				return r;
			if (snap_src_pread(src, ebr, sizeof(ebr), cur * ss) < 0)
				break;
			if (ebr[510] != 0x55 || ebr[511] != 0xaa)
				break;
			const uint8_t *link = ebr + 446 + 16;
			if (!mbr_is_extended(link[4]) || le32(link + 8) == 0)
				break;
			prev = cur;
			cur = ext + le32(link + 8);
		}
	}
	return 0;
}

static int read_partitions(struct snap_ptable *pt, struct fdisk_context *cxt, bool gpt,
			   uint64_t *ret_first)
{
	struct fdisk_table *tb = NULL;
	struct fdisk_iter *itr = NULL;
	struct fdisk_partition *pa;
	uint64_t first = UINT64_MAX;
	int r;

	r = fdisk_get_partitions(cxt, &tb);
	if (r < 0)
		return r;
	itr = fdisk_new_iter(FDISK_ITER_FORWARD);
	if (!itr) {
		r = -ENOMEM;
		goto out;
	}
	size_t n = (size_t)fdisk_table_get_nents(tb);
	pt->parts = calloc(n ? n : 1, sizeof(*pt->parts));
	if (!pt->parts) {
		r = -ENOMEM;
		goto out;
	}
	while (pt->nparts < n && fdisk_table_next_partition(tb, itr, &pa) == 0) {
		if (!fdisk_partition_has_start(pa) || !fdisk_partition_has_size(pa))
			continue;
		struct snap_partition_info *p = &pt->parts[pt->nparts++];
		char *type = NULL;
		p->number = (uint32_t)fdisk_partition_get_partno(pa) + 1;
		p->start = (uint64_t)fdisk_partition_get_start(pa) * pt->sector_size;
		p->size = (uint64_t)fdisk_partition_get_size(pa) * pt->sector_size;
		p->container = fdisk_partition_is_container(pa) ? 1 : 0;
		p->bootable = fdisk_partition_is_bootable(pa) ? 1 : 0;
		/* the same text sfdisk prints: a GUID for GPT, "%x" of the code for MBR */
		if (fdisk_partition_to_string(pa, cxt, FDISK_FIELD_TYPEID, &type) == 0 && type) {
			if (gpt)
				for (char *c = type; *c; c++)
					*c = (char)toupper((unsigned char)*c);
			p->type = type;
		}
		struct fdisk_parttype *t = fdisk_partition_get_type(pa);
		if (t)
			p->type_name = dup_or_null(fdisk_parttype_get_name(t));
		if (gpt) {
			p->name = dup_or_null(fdisk_partition_get_name(pa));
			p->uuid = dup_or_null(fdisk_partition_get_uuid(pa));
		}
		if ((fdisk_partition_get_type(pa) && !p->type) ||
		    (fdisk_partition_get_name(pa) && gpt && *fdisk_partition_get_name(pa) &&
		     !p->name)) {
			r = -ENOMEM;
			goto out;
		}
		if (p->size && p->start < first)
			first = p->start;
	}
	qsort(pt->parts, pt->nparts, sizeof(*pt->parts), cmp_part);
	*ret_first = first;
	r = 0;
out:
	fdisk_free_iter(itr);
	fdisk_unref_table(tb);
	return r;
}

int snap_ptable_read(struct snap_src *src, struct snap_ptable **ret, char **ret_detail)
{
	struct snap_ptable *pt = calloc(1, sizeof(*pt));
	struct fdisk_context *cxt = NULL;
	const char *what = "cannot read the partition table of";
	int r;

	if (!pt)
		return -ENOMEM;
	pt->sector_size = 512;
	if (src->size < 512) { /* no room for any table; libfdisk would refuse the device */
		*ret = pt;
		return 0;
	}
	cxt = fdisk_new_context();
	if (!cxt) {
		r = -ENOMEM;
		goto fail;
	}
	r = fdisk_assign_device(cxt, src->path, 1);
	if (r < 0)
		goto fail;
	pt->sector_size = (uint32_t)fdisk_get_sector_size(cxt);
	if (pt->sector_size < 512)
		pt->sector_size = 512;
	if (!fdisk_has_label(cxt))
		goto done;

	const char *name = fdisk_label_get_name(fdisk_get_label(cxt, NULL));
	bool gpt = fdisk_is_label(cxt, GPT), dos = fdisk_is_label(cxt, DOS);
	pt->type = strdup(name ? name : "unknown");
	if (!pt->type) {
		r = -ENOMEM;
		goto fail;
	}
	pt->known = gpt || dos;
	char *id = NULL;
	if (fdisk_get_disklabel_id(cxt, &id) == 0)
		pt->id = id;

	uint64_t first;
	r = read_partitions(pt, cxt, gpt, &first);
	if (r < 0)
		goto fail;
	if (first == UINT64_MAX) /* no partitions: keep what the label reserves for itself */
		first = (uint64_t)fdisk_get_first_lba(cxt) * pt->sector_size;
	what = "cannot read the partition table structures of";
	r = crit_add(pt, 0, first);
	if (r < 0)
		goto fail;
	if (gpt)
		r = gpt_crit(pt, src);
	else if (dos)
		r = ebr_crit(pt, src);
	if (r < 0)
		goto fail;
done:
	fdisk_unref_context(cxt);
	*ret = pt;
	return 0;
fail:
	if (ret_detail && asprintf(ret_detail, "%s %s: %s", what, src->path, strerror(-r)) < 0)
		*ret_detail = NULL;
	fdisk_unref_context(cxt);
	snap_ptable_free(pt);
	return r;
}

static int cmp_range(const void *a, const void *b)
{
	const struct snap_range *x = a, *y = b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int snap_ptable_apply(const struct snap_ptable *pt, struct snap_map *map, int keep_unpartitioned)
{
	uint64_t size = snap_map_size(map);
	int r;

	if (!pt->type)
		return 0;
	/*
	 * Critical regions: this is the first layer over an all-DATA map, so marking a region
	 * UNUSED and pinning it at once only records that the partition table decided it (pinning
	 * turns UNUSED back into DATA under our layer) and protects it from every later layer.
	 */
	for (size_t i = 0; i < pt->ncrit; i++) {
		r = snap_map_mark(map, pt->crit[i].offset, pt->crit[i].length, SNAP_EXTENT_UNUSED,
				  SNAP_LAYER_PTABLE);
		if (r < 0)
			return r;
		r = snap_map_pin(map, pt->crit[i].offset, pt->crit[i].length, SNAP_LAYER_PTABLE);
		if (r < 0)
			return r;
	}

	/* Partition numbers: extended containers first, so their logicals overwrite them. */
	for (int pass = 1; pass >= 0; pass--)
		for (size_t i = 0; i < pt->nparts; i++) {
			const struct snap_partition_info *p = &pt->parts[i];
			if (p->container != pass)
				continue;
			r = snap_map_set_partition(map, p->start, p->size, p->number);
			if (r < 0)
				return r;
		}

	/* An unknown label (BSD, SGI, Sun) may keep data outside its partitions: keep it. */
	if (keep_unpartitioned || !pt->known)
		return 0;
	struct snap_range *used = calloc(pt->nparts + 1, sizeof(*used));
	struct snap_range *gaps = calloc(pt->nparts + 1, sizeof(*gaps));
	size_t nused = 0, ngaps = 0;
	r = -ENOMEM;
	if (!used || !gaps)
		goto out;
	for (size_t i = 0; i < pt->nparts; i++)
		if (!pt->parts[i].container && pt->parts[i].size)
			used[nused++] = (struct snap_range){pt->parts[i].start, pt->parts[i].size};
	qsort(used, nused, sizeof(*used), cmp_range);
	uint64_t pos = 0;
	for (size_t i = 0; i < nused && pos < size; i++) {
		if (used[i].offset > pos)
			gaps[ngaps++] = (struct snap_range){pos, used[i].offset - pos};
		uint64_t end = used[i].offset + used[i].length;
		if (end < used[i].offset) /* overflow in a hostile table */
			end = UINT64_MAX;
		if (end > pos)
			pos = end;
	}
	if (pos < size)
		gaps[ngaps++] = (struct snap_range){pos, size - pos};
	r = snap_map_mark_many(map, gaps, ngaps, SNAP_EXTENT_UNUSED, SNAP_LAYER_PTABLE);
out:
	free(used);
	free(gaps);
	return r;
}
