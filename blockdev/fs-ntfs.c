// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fs-ntfs.c - free clusters of NTFS from $Bitmap, found through $MFT's own data runs.
 *
 * Invariants:
 *  1. Every MFT record read has its update sequence (fixups) verified and undone; a torn
 *     record refuses.
 *  2. A dirty volume ($Volume's VOLUME_IS_DIRTY, or chkdsk underway) and a $LogFile whose
 *     newest restart area is not marked clean (Windows hibernated, fast startup, a crash)
 *     refuse. An emptied $LogFile (all 0xff, as ntfsfix and mkntfs leave it) is clean.
 *  3. $Bitmap's $DATA must be non-resident, uncompressed, unencrypted, not sparse, start at
 *     VCN 0 in the base record and have runs covering its whole size.
 *  4. Pinned: the boot sector ($Boot's first 8 KiB), the backup boot sector in the partition's
 *     last sector (and at the boot sector's total_sectors, where the volume is smaller than
 *     its partition), $MFT, $MFTMirr and $LogFile. A free run in $Bitmap that touches one of
 *     them refuses: the bitmap would be lying.
 *  5. Clusters past the volume's cluster count, and whatever follows the volume in the
 *     partition, are not marked.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fs-util.h"

#define NTFS_BLOCK 512 /* fixup stride, whatever the sector size */
#define NTFS_BOOT_BYTES 8192
#define NTFS_BITMAP_CHUNK (1u << 20)
#define NTFS_MAX_RUNS 4096

#define NTFS_AT_DATA 0x80
#define NTFS_AT_VOLUME_INFORMATION 0x70
#define NTFS_AT_END 0xffffffffu
#define NTFS_ATTR_COMPRESSED 0x0001
#define NTFS_ATTR_ENCRYPTED 0x4000
#define NTFS_ATTR_SPARSE 0x8000

#define NTFS_VOLUME_IS_DIRTY 0x0001
#define NTFS_VOLUME_CHKDSK_UNDERWAY 0x4000
#define NTFS_RESTART_VOLUME_IS_CLEAN 0x0002
#define NTFS_LOGFILE_NO_CLIENT 0xffff

enum { NTFS_MFT = 0, NTFS_MFTMIRR = 1, NTFS_LOGFILE = 2, NTFS_VOLUME = 3, NTFS_BITMAP = 6 };

struct ntfs_run {
	uint64_t vcn, lcn, len; /* clusters */
};

struct ntfs_runs {
	struct ntfs_run r[NTFS_MAX_RUNS];
	size_t n;
	uint64_t data_size; /* bytes of the attribute's value */
};

struct ntfs_vol {
	struct snap_fs_ctx *ctx;
	uint32_t bps, cluster;
	uint64_t clusters;
	uint32_t rec_size;
	uint64_t mft_lcn;
	struct ntfs_runs mft; /* $MFT's data runs (base record) */
	uint8_t *rec;
	/* system files' runs, for the bitmap's sanity check */
	struct ntfs_run sys[64];
	size_t nsys;
};

static int ntfs_fixup(struct ntfs_vol *v, uint8_t *buf, size_t size, const char *magic,
		      const char *what)
{
	struct snap_fs_ctx *ctx = v->ctx;

	if (memcmp(buf, magic, 4))
		return snap_fs_fail(ctx, -EUCLEAN, "ntfs: %s has no %s magic", what, magic);
	uint16_t ofs = snap_get_le16(buf + 4), count = snap_get_le16(buf + 6);
	if (count != size / NTFS_BLOCK + 1 || ofs & 1 || (size_t)ofs + 2u * count > NTFS_BLOCK)
		return snap_fs_fail(ctx, -EUCLEAN, "ntfs: %s has a bad update sequence", what);
	uint16_t usn = snap_get_le16(buf + ofs);
	for (uint16_t i = 1; i < count; i++) {
		uint8_t *tail = buf + (size_t)i * NTFS_BLOCK - 2;
		if (snap_get_le16(tail) != usn)
			return snap_fs_fail(ctx, -EUCLEAN, "ntfs: %s is torn (update sequence)",
					    what);
		memcpy(tail, buf + ofs + 2 * i, 2);
	}
	return 0;
}

/* Decodes a mapping-pairs array into runs (sparse runs refuse: no system file is sparse). */
static int ntfs_decode_runs(struct ntfs_vol *v, const uint8_t *p, const uint8_t *end, uint64_t vcn,
			    struct ntfs_runs *out, const char *what)
{
	uint64_t lcn = 0; /* unsigned: a corrupt delta wraps and fails the range check */

	out->n = 0;
	while (p < end && *p) {
		unsigned lsz = *p & 0xf, osz = *p >> 4;
		p++;
		if (!lsz || lsz > 8 || osz > 8 || end - p < (ptrdiff_t)(lsz + osz))
			return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: %s has a bad run list", what);
		uint64_t len = 0;
		for (unsigned i = 0; i < lsz; i++)
			len |= (uint64_t)p[i] << (8 * i);
		p += lsz;
		if (!osz)
			return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: %s is sparse", what);
		uint64_t d = 0;
		for (unsigned i = 0; i < osz; i++)
			d |= (uint64_t)p[i] << (8 * i);
		if (osz < 8 && (p[osz - 1] & 0x80))
			d |= ~0ull << (8 * osz); /* sign-extend */
		p += osz;
		lcn += d;
		if (!len || lcn >= v->clusters || len > v->clusters - lcn)
			return snap_fs_fail(v->ctx, -EUCLEAN,
					    "ntfs: %s has a run outside the volume", what);
		if (out->n == NTFS_MAX_RUNS)
			return snap_fs_fail(v->ctx, -EOPNOTSUPP, "ntfs: %s is too fragmented",
					    what);
		out->r[out->n++] = (struct ntfs_run){.vcn = vcn, .lcn = lcn, .len = len};
		vcn += len;
	}
	return 0;
}

/* Finds attribute `type` (unnamed) in a fixed-up record; returns its offset or 0. */
static size_t ntfs_find_attr(const uint8_t *rec, size_t size, uint32_t type)
{
	size_t off = snap_get_le16(rec + 0x14);
	uint32_t used = snap_get_le32(rec + 0x18);
	if (used > size)
		return 0;
	while (off + 16 <= used) {
		uint32_t t = snap_get_le32(rec + off), len = snap_get_le32(rec + off + 4);
		if (t == NTFS_AT_END || len < 16 || len > used - off)
			return 0;
		if (t == type && rec[off + 9] == 0)
			return off;
		off += len;
	}
	return 0;
}

static int ntfs_read_record(struct ntfs_vol *v, uint64_t recno, const char *what)
{
	uint64_t byte = recno * v->rec_size;
	uint64_t vcn = byte / v->cluster, in = byte % v->cluster;
	int r;

	/* records 0..15 always live in $MFT's first extent, so each record is one read */
	for (size_t i = 0; i < v->mft.n; i++) {
		const struct ntfs_run *run = &v->mft.r[i];
		if (vcn < run->vcn || vcn >= run->vcn + run->len)
			continue;
		uint64_t off = (run->lcn + (vcn - run->vcn)) * v->cluster + in;
		if (v->rec_size > v->cluster &&
		    (vcn - run->vcn + v->rec_size / v->cluster) > run->len)
			break;
		r = v->ctx->read(v->ctx, off, v->rec, v->rec_size);
		if (r < 0)
			return snap_fs_fail(v->ctx, r, "ntfs: cannot read %s", what);
		r = ntfs_fixup(v, v->rec, v->rec_size, "FILE", what);
		if (r < 0)
			return r;
		if (!(snap_get_le16(v->rec + 0x16) & 0x0001))
			return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: %s record not in use", what);
		return 0;
	}
	return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: %s outside $MFT's first extent", what);
}

/* The unnamed $DATA of the record in v->rec, as runs. */
static int ntfs_data_runs(struct ntfs_vol *v, struct ntfs_runs *out, const char *what)
{
	size_t a = ntfs_find_attr(v->rec, v->rec_size, NTFS_AT_DATA);
	if (!a)
		return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: %s has no $DATA in its base record",
				    what);
	const uint8_t *at = v->rec + a;
	uint32_t len = snap_get_le32(at + 4);
	if (!at[8] || len < 0x40)
		return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: %s $DATA is resident", what);
	if (snap_get_le16(at + 0x0c) &
	    (NTFS_ATTR_COMPRESSED | NTFS_ATTR_ENCRYPTED | NTFS_ATTR_SPARSE))
		return snap_fs_fail(v->ctx, -EOPNOTSUPP,
				    "ntfs: %s $DATA is compressed, encrypted or sparse", what);
	if (snap_get_le64(at + 0x10) != 0)
		return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: %s $DATA does not start at VCN 0",
				    what);
	uint16_t mp = snap_get_le16(at + 0x20);
	if (mp >= len)
		return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: %s has a bad run list offset", what);
	out->data_size = snap_get_le64(at + 0x30);
	return ntfs_decode_runs(v, at + mp, at + len, 0, out, what);
}

static uint64_t ntfs_runs_clusters(const struct ntfs_runs *runs)
{
	return runs->n ? runs->r[runs->n - 1].vcn + runs->r[runs->n - 1].len : 0;
}

static int ntfs_pin_runs(struct ntfs_vol *v, const struct ntfs_runs *runs)
{
	for (size_t i = 0; i < runs->n; i++) {
		int r =
		    v->ctx->pin(v->ctx, runs->r[i].lcn * v->cluster, runs->r[i].len * v->cluster);
		if (r < 0)
			return r;
		if (v->nsys < sizeof(v->sys) / sizeof(v->sys[0]))
			v->sys[v->nsys++] = runs->r[i];
	}
	return 0;
}

/* Reads [off, off+len) of an attribute through its runs. */
static int ntfs_read_runs(struct ntfs_vol *v, const struct ntfs_runs *runs, uint64_t off,
			  uint8_t *buf, size_t len, const char *what)
{
	while (len) {
		uint64_t vcn = off / v->cluster;
		size_t i;
		for (i = 0; i < runs->n; i++)
			if (vcn >= runs->r[i].vcn && vcn < runs->r[i].vcn + runs->r[i].len)
				break;
		if (i == runs->n)
			return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: %s is shorter than its size",
					    what);
		uint64_t run_end = (runs->r[i].vcn + runs->r[i].len) * v->cluster;
		size_t n = run_end - off < len ? (size_t)(run_end - off) : len;
		uint64_t dev = (runs->r[i].lcn - runs->r[i].vcn) * v->cluster + off;
		int r = v->ctx->read(v->ctx, dev, buf, n);
		if (r < 0)
			return snap_fs_fail(v->ctx, r, "ntfs: cannot read %s", what);
		buf += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int ntfs_check_volume(struct ntfs_vol *v)
{
	int r = ntfs_read_record(v, NTFS_VOLUME, "$Volume");
	if (r < 0)
		return r;
	size_t a = ntfs_find_attr(v->rec, v->rec_size, NTFS_AT_VOLUME_INFORMATION);
	if (!a || v->rec[a + 8])
		return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: $Volume has no volume information");
	const uint8_t *at = v->rec + a;
	uint32_t vlen = snap_get_le32(at + 0x10);
	uint16_t voff = snap_get_le16(at + 0x14);
	if (vlen < 12 || (uint64_t)voff + vlen > snap_get_le32(at + 4))
		return snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: bad volume information");
	const uint8_t *vi = at + voff;
	uint8_t major = vi[8];
	uint16_t flags = snap_get_le16(vi + 10);
	if (major != 1 && major != 3)
		return snap_fs_fail(v->ctx, -EOPNOTSUPP, "ntfs: unknown NTFS version %u.%u", major,
				    vi[9]);
	if (flags & (NTFS_VOLUME_IS_DIRTY | NTFS_VOLUME_CHKDSK_UNDERWAY))
		return snap_fs_fail(v->ctx, -EUCLEAN,
				    "ntfs: volume marked dirty (flags 0x%04x): run chkdsk", flags);
	return 0;
}

/* ntfs-3g's ntfs_check_logfile() + ntfs_is_logfile_clean(), for the two restart pages. */
static int ntfs_check_logfile(struct ntfs_vol *v, const struct ntfs_runs *log)
{
	uint8_t *page = malloc(2 * 4096);
	uint64_t best_lsn = 0;
	int best = -1, r = 0;
	uint16_t best_flags = 0, best_clients = 0;

	if (!page)
		return snap_fs_fail(v->ctx, -ENOMEM, "ntfs: out of memory");
	if (log->data_size < 2 * 4096) {
		r = snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: $LogFile too small");
		goto out;
	}
	r = ntfs_read_runs(v, log, 0, page, 4096, "$LogFile");
	if (r < 0)
		goto out;
	uint32_t psize = snap_get_le32(page + 0x10);
	if (!memcmp(page, "RSTR", 4)) {
		if (psize < 512 || psize > 8192 || (psize & (psize - 1))) {
			r = snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: bad $LogFile page size %u",
					 psize);
			goto out;
		}
	} else {
		/* emptied: all 0xff across the restart pages */
		for (size_t i = 0; i < 4096; i++) {
			if (page[i] != 0xff) {
				r = snap_fs_fail(
				    v->ctx, -EUCLEAN,
				    "ntfs: $LogFile has no restart page (log not clean)");
				goto out;
			}
		}
		goto out;
	}
	free(page);
	page = malloc(psize);
	if (!page) {
		r = snap_fs_fail(v->ctx, -ENOMEM, "ntfs: out of memory");
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		r = ntfs_read_runs(v, log, (uint64_t)i * psize, page, psize, "$LogFile");
		if (r < 0)
			goto out;
		if (memcmp(page, "RSTR", 4))
			continue; /* the other copy may be the good one */
		r = ntfs_fixup(v, page, psize, "RSTR", "$LogFile restart page");
		if (r < 0)
			goto out;
		uint16_t ra = snap_get_le16(page + 0x18);
		if ((size_t)ra + 0x30 > psize) {
			r = snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: bad $LogFile restart area");
			goto out;
		}
		uint64_t lsn = snap_get_le64(page + ra);
		if (best < 0 || lsn > best_lsn) {
			best = i;
			best_lsn = lsn;
			best_clients = snap_get_le16(page + ra + 0x0c);
			best_flags = snap_get_le16(page + ra + 0x0e);
		}
	}
	if (best < 0)
		r = snap_fs_fail(v->ctx, -EUCLEAN, "ntfs: $LogFile has no valid restart page");
	else if (best_clients != NTFS_LOGFILE_NO_CLIENT &&
		 !(best_flags & NTFS_RESTART_VOLUME_IS_CLEAN))
		r = snap_fs_fail(v->ctx, -EUCLEAN,
				 "ntfs: $LogFile not clean (Windows hibernated, fast startup or a "
				 "crash)");
out:
	free(page);
	return r;
}

/* A free run must not cover a system file's clusters. */
static int ntfs_check_free(struct ntfs_vol *v, uint64_t lcn, uint64_t n)
{
	for (size_t i = 0; i < v->nsys; i++) {
		if (lcn < v->sys[i].lcn + v->sys[i].len && v->sys[i].lcn < lcn + n)
			return snap_fs_fail(v->ctx, -EUCLEAN,
					    "ntfs: $Bitmap marks system file clusters %" PRIu64
					    "+%" PRIu64 " free",
					    v->sys[i].lcn, v->sys[i].len);
	}
	return 0;
}

static int ntfs_walk_bitmap(struct ntfs_vol *v, const struct ntfs_runs *bm, uint64_t *ret_free)
{
	struct snap_fs_emitter em;
	uint8_t *buf = malloc(NTFS_BITMAP_CHUNK);
	uint64_t nfree = 0;
	int r = 0;

	if (!buf)
		return snap_fs_fail(v->ctx, -ENOMEM, "ntfs: out of memory");
	snap_fs_emitter_init(&em, v->ctx, v->ctx->mark_unused);
	uint64_t bytes = (v->clusters + 7) / 8;
	for (uint64_t off = 0; off < bytes && r >= 0; off += NTFS_BITMAP_CHUNK) {
		size_t n =
		    bytes - off < NTFS_BITMAP_CHUNK ? (size_t)(bytes - off) : NTFS_BITMAP_CHUNK;
		r = ntfs_read_runs(v, bm, off, buf, n, "$Bitmap");
		if (r < 0)
			break;
		uint64_t base = off * 8;
		size_t nbits =
		    base + (uint64_t)n * 8 > v->clusters ? (size_t)(v->clusters - base) : n * 8;
		for (size_t i = 0;;) {
			i = snap_bitmap_find(buf, nbits, i, false);
			if (i >= nbits)
				break;
			size_t j = snap_bitmap_find(buf, nbits, i, true);
			r = ntfs_check_free(v, base + i, j - i);
			if (r >= 0)
				r = snap_fs_emit(&em, (base + i) * v->cluster,
						 (uint64_t)(j - i) * v->cluster);
			if (r < 0)
				break;
			nfree += j - i;
			i = j;
		}
	}
	if (r >= 0)
		r = snap_fs_emit_flush(&em);
	free(buf);
	*ret_free = nfree;
	return r;
}

static int ntfs_parse_boot(struct ntfs_vol *v, const uint8_t *bs)
{
	struct snap_fs_ctx *ctx = v->ctx;

	if (memcmp(bs + 3, "NTFS    ", 8) || snap_get_le16(bs + 510) != 0xaa55)
		return snap_fs_fail(ctx, -EUCLEAN, "ntfs: no NTFS boot sector");
	v->bps = snap_get_le16(bs + 0x0b);
	if (v->bps < 256 || v->bps > 4096 || (v->bps & (v->bps - 1)))
		return snap_fs_fail(ctx, -EUCLEAN, "ntfs: bad sector size %u", v->bps);
	uint8_t spc = bs[0x0d];
	uint64_t cluster =
	    spc <= 0x80 ? (uint64_t)spc * v->bps : (spc >= 0xe0 ? 1ull << (256 - spc) : 0);
	if (!cluster || (cluster & (cluster - 1)) || cluster > (2u << 20))
		return snap_fs_fail(ctx, -EUCLEAN, "ntfs: bad cluster size");
	v->cluster = (uint32_t)cluster;
	uint64_t sectors = snap_get_le64(bs + 0x28);
	if (!sectors || sectors > ctx->part_size / v->bps)
		return snap_fs_fail(ctx, -EUCLEAN,
				    "ntfs: volume (%" PRIu64 " sectors) larger than its partition",
				    sectors);
	v->clusters = sectors * v->bps / v->cluster;
	int8_t cpr = (int8_t)bs[0x40];
	uint64_t rec =
	    cpr > 0 ? (uint64_t)cpr * v->cluster : (cpr < 0 && cpr > -31 ? 1ull << -cpr : 0);
	if (rec < NTFS_BLOCK || rec > 65536 || (rec & (rec - 1)))
		return snap_fs_fail(ctx, -EUCLEAN, "ntfs: bad MFT record size");
	v->rec_size = (uint32_t)rec;
	v->mft_lcn = snap_get_le64(bs + 0x30);
	if (v->mft_lcn >= v->clusters || snap_get_le64(bs + 0x38) >= v->clusters)
		return snap_fs_fail(ctx, -EUCLEAN, "ntfs: $MFT outside the volume");
	return 0;
}

static int ntfs_map(struct snap_fs_ctx *ctx)
{
	struct ntfs_vol *v = calloc(1, sizeof(*v));
	struct ntfs_runs *tmp = malloc(sizeof(*tmp));
	uint8_t bs[512];
	uint64_t nfree = 0;
	int r;

	if (!v || !tmp) {
		r = snap_fs_fail(ctx, -ENOMEM, "ntfs: out of memory");
		goto out;
	}
	v->ctx = ctx;
	if (ctx->part_size < NTFS_BOOT_BYTES) {
		r = snap_fs_fail(ctx, -EUCLEAN, "ntfs: partition too small");
		goto out;
	}
	r = ctx->read(ctx, 0, bs, sizeof(bs));
	if (r < 0) {
		r = snap_fs_fail(ctx, r, "ntfs: cannot read the boot sector");
		goto out;
	}
	r = ntfs_parse_boot(v, bs);
	if (r < 0)
		goto out;
	v->rec = malloc(v->rec_size);
	if (!v->rec) {
		r = snap_fs_fail(ctx, -ENOMEM, "ntfs: out of memory");
		goto out;
	}

	/* $MFT's record 0, read at the boot sector's MFT LCN, gives $MFT's own runs */
	r = ctx->read(ctx, v->mft_lcn * v->cluster, v->rec, v->rec_size);
	if (r < 0) {
		r = snap_fs_fail(ctx, r, "ntfs: cannot read $MFT");
		goto out;
	}
	r = ntfs_fixup(v, v->rec, v->rec_size, "FILE", "$MFT");
	if (r >= 0)
		r = ntfs_data_runs(v, &v->mft, "$MFT");
	if (r >= 0 && (!v->mft.n || v->mft.r[0].lcn != v->mft_lcn))
		r = snap_fs_fail(ctx, -EUCLEAN,
				 "ntfs: $MFT does not start at the boot sector's LCN");
	if (r < 0)
		goto out;

	/* pins: boot sector(s), $MFT, $MFTMirr, $LogFile */
	r = ctx->pin(ctx, 0, NTFS_BOOT_BYTES > v->cluster ? NTFS_BOOT_BYTES : v->cluster);
	if (r >= 0)
		r = ctx->pin(ctx, ctx->part_size - v->bps, v->bps);
	uint64_t backup = snap_get_le64(bs + 0x28) * v->bps;
	if (r >= 0 && backup + v->bps <= ctx->part_size)
		r = ctx->pin(ctx, backup, v->bps);
	if (r >= 0)
		r = ntfs_pin_runs(v, &v->mft);
	if (r >= 0)
		r = ntfs_read_record(v, NTFS_MFTMIRR, "$MFTMirr");
	if (r >= 0)
		r = ntfs_data_runs(v, tmp, "$MFTMirr");
	if (r >= 0)
		r = ntfs_pin_runs(v, tmp);
	if (r >= 0)
		r = ntfs_read_record(v, NTFS_LOGFILE, "$LogFile");
	if (r >= 0)
		r = ntfs_data_runs(v, tmp, "$LogFile");
	if (r >= 0)
		r = ntfs_pin_runs(v, tmp);
	if (r >= 0)
		r = ntfs_check_logfile(v, tmp);
	if (r >= 0)
		r = ntfs_check_volume(v);
	if (r >= 0)
		r = ntfs_read_record(v, NTFS_BITMAP, "$Bitmap");
	if (r >= 0)
		r = ntfs_data_runs(v, tmp, "$Bitmap");
	if (r < 0)
		goto out;
	if (tmp->data_size < (v->clusters + 7) / 8 ||
	    ntfs_runs_clusters(tmp) * v->cluster < (v->clusters + 7) / 8) {
		r = snap_fs_fail(ctx, -EUCLEAN, "ntfs: $Bitmap smaller than the volume");
		goto out;
	}
	/* $Bitmap's own clusters must be in use too */
	for (size_t i = 0; i < tmp->n && v->nsys < sizeof(v->sys) / sizeof(v->sys[0]); i++)
		v->sys[v->nsys++] = tmp->r[i];
	r = ntfs_walk_bitmap(v, tmp, &nfree);
	if (r >= 0)
		ctx->used_bytes = (v->clusters - nfree) * v->cluster;
out:
	if (v)
		free(v->rec);
	free(v);
	free(tmp);
	return r;
}

const struct snap_fs_driver snap_fs_ntfs = {.name = "ntfs", .map = ntfs_map};
