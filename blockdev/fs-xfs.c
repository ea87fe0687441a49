// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fs-xfs.c - free space of XFS (v4 and v5) from each allocation group's by-block free-space
 * B+tree (bnobt).
 *
 * Invariants:
 *  1. Only a filesystem with a clean internal log is mapped: the log's head is found the way
 *     xlog_find_head() does (cycle numbers, binary search), the blocks on either side of it
 *     must agree with it (no torn writes), and the last record before the head must be an
 *     unmount record alone (xlog_check_unmount_rec()). An all-zero log is clean, as the kernel
 *     says. A log that is only "covered" (every record from the tail to the head rewrites the
 *     primary superblock and nothing else, as after a freeze) is accepted with a note: the
 *     free-space trees on disk are current. An external log, which we cannot see, refuses.
 *  2. Known feature bits only (v4 version and features2 bits, v5 ro_compat and incompat);
 *     needsrepair, an unfinished mkfs and any log_incompat bit refuse.
 *  3. On v5 every CRC on the way is verified: the primary superblock, each AGF, each AGFL and
 *     every bnobt block (which must also name its own disk address, AG and filesystem UUID).
 *  4. The bnobt records of an AG must come out sorted, non-overlapping, inside the AG and sum to
 *     the AGF's free block count. Anything else refuses with the AG named.
 *  5. Only bnobt extents are marked UNUSED; AG free-list (AGFL) blocks stay DATA. Every AG's
 *     header sectors (superblock copy, AGF, AGI, AGFL) and the internal log are pinned.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs-util.h"

#define XFS_SB_MAGIC 0x58465342u    /* XFSB */
#define XFS_AGF_MAGIC 0x58414746u   /* XAGF */
#define XFS_AGFL_MAGIC 0x5841464cu  /* XAFL */
#define XFS_ABTB_MAGIC 0x41425442u  /* ABTB: v4 bnobt */
#define XFS_ABTB3_MAGIC 0x41423342u /* AB3B: v5 bnobt */
#define XLOG_HEADER_MAGIC 0xfeedbabeu

#define XFS_SB_CRC_OFF 0xe0
#define XFS_AGF_CRC_OFF 0xd8
#define XFS_AGFL_CRC_OFF 0x20
#define XFS_BTREE_SBLOCK_LEN 16
#define XFS_BTREE_SBLOCK_CRC_LEN 56
#define XFS_BTREE_SBLOCK_CRC_OFF 52
#define XFS_BTREE_MAXLEVELS 9

/* v4 versionnum bits: ATTR NLINK QUOTA ALIGN DALIGN LOGV2 SECTOR EXTFLG DIRV2 MOREBITS.
 * SHARED (0x0200) and BORG (0x4000) refuse. */
#define XFS_SB_VERSION_KNOWN 0xbdf0
#define XFS_SB_VERSION2_KNOWN (0x0002 | 0x0008 | 0x0080 | 0x0100 | 0x0200)
#define XFS_SB_FEAT_RO_COMPAT_KNOWN (0x1 | 0x2 | 0x4 | 0x8) /* finobt rmapbt reflink inobtcnt */
#define XFS_SB_FEAT_INCOMPAT_NEEDSREPAIR 0x10
/* ftype spinodes meta_uuid bigtime nrext64 */
#define XFS_SB_FEAT_INCOMPAT_KNOWN (0x1 | 0x2 | 0x4 | 0x8 | 0x20)
#define XFS_SB_FEAT_INCOMPAT_META_UUID 0x4

#define XLOG_UNMOUNT_TRANS 0x20
#define XLOG_VERSION_2 0x2
#define XLOG_HEADER_CYCLE_SIZE (32 * 1024)
#define XLOG_MAX_RECORD_BBS 1024 /* 256 KiB record + 8 header sectors, with margin */
/* xlog_find_head() checks this far around the head for torn writes (XLOG_MAX_ICLOGS
 * records of XLOG_MAX_RECORD_BSIZE). */
#define XLOG_VERIFY_BBS (8 * 512)
#define BBSIZE 512

struct xfs_fs {
	struct snap_fs_ctx *ctx;
	uint8_t *sb;
	bool v5;
	uint32_t block_size, sect_size;
	uint64_t dblocks;
	uint32_t agblocks, agcount;
	uint8_t agblklog;
	const uint8_t *uuid; /* the UUID stamped in metadata (meta_uuid when set) */
	uint8_t *buf[XFS_BTREE_MAXLEVELS];
	struct snap_fs_emitter unused, pins;
	uint64_t free_blocks;
};

/* A v5 metadata CRC: crc32c over the buffer with the CRC field as zero, stored inverted and
 * little-endian (xfs_start_cksum_safe(), xfs_end_cksum()). */
static bool xfs_crc_ok(const uint8_t *buf, size_t len, size_t off)
{
	static const uint8_t zero[4];
	uint32_t c = snap_crc32c(~0u, buf, off);

	c = snap_crc32c(c, zero, 4);
	c = snap_crc32c(c, buf + off + 4, len - off - 4);
	return ~c == snap_get_le32(buf + off);
}

static uint64_t xfs_ag_byte(const struct xfs_fs *fs, uint32_t agno, uint64_t agbno)
{
	return ((uint64_t)agno * fs->agblocks + agbno) * fs->block_size;
}

static uint32_t xfs_ag_length(const struct xfs_fs *fs, uint32_t agno)
{
	uint64_t left = fs->dblocks - (uint64_t)agno * fs->agblocks;
	return left < fs->agblocks ? (uint32_t)left : fs->agblocks;
}

static int xfs_check_super(struct xfs_fs *fs)
{
	struct snap_fs_ctx *ctx = fs->ctx;
	const uint8_t *sb = fs->sb;

	uint16_t version = snap_get_be16(sb + 0x64);
	fs->v5 = (version & 0xf) == 5;
	if ((version & 0xf) != 4 && !fs->v5)
		return snap_fs_fail(ctx, -EOPNOTSUPP, "xfs: unknown superblock version %u",
				    version & 0xf);
	if (fs->v5 && !xfs_crc_ok(sb, fs->sect_size, XFS_SB_CRC_OFF))
		return snap_fs_fail(ctx, -EBADMSG, "xfs: superblock CRC mismatch");
	if (version & 0xfff0 & ~XFS_SB_VERSION_KNOWN)
		return snap_fs_fail(ctx, -EOPNOTSUPP, "xfs: unknown version bits 0x%04x",
				    version & 0xfff0 & ~XFS_SB_VERSION_KNOWN);
	uint32_t f2 = (version & 0x8000) ? snap_get_be32(sb + 0xc8) : 0;
	if (f2 & ~XFS_SB_VERSION2_KNOWN)
		return snap_fs_fail(ctx, -EOPNOTSUPP, "xfs: unknown features2 bits 0x%x",
				    f2 & ~XFS_SB_VERSION2_KNOWN);
	if (fs->v5) {
		uint32_t ro = snap_get_be32(sb + 0xd4), inc = snap_get_be32(sb + 0xd8),
			 log = snap_get_be32(sb + 0xdc);
		if (inc & XFS_SB_FEAT_INCOMPAT_NEEDSREPAIR)
			return snap_fs_fail(ctx, -EUCLEAN, "xfs: needs repair (xfs_repair)");
		if (inc & ~XFS_SB_FEAT_INCOMPAT_KNOWN)
			return snap_fs_fail(ctx, -EOPNOTSUPP,
					    "xfs: unknown incompatible features 0x%x",
					    inc & ~XFS_SB_FEAT_INCOMPAT_KNOWN);
		if (ro & ~XFS_SB_FEAT_RO_COMPAT_KNOWN)
			return snap_fs_fail(ctx, -EOPNOTSUPP,
					    "xfs: unknown read-only compatible features 0x%x",
					    ro & ~XFS_SB_FEAT_RO_COMPAT_KNOWN);
		if (log)
			return snap_fs_fail(ctx, -EUCLEAN,
					    "xfs: log incompatible features 0x%x in use (log not "
					    "clean)",
					    log);
		fs->uuid = sb + ((inc & XFS_SB_FEAT_INCOMPAT_META_UUID) ? 0xf8 : 0x20);
	} else {
		fs->uuid = sb + 0x20;
	}
	if (sb[0x7e])
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: mkfs did not finish (sb_inprogress)");

	fs->block_size = snap_get_be32(sb + 0x04);
	fs->dblocks = snap_get_be64(sb + 0x08);
	fs->agblocks = snap_get_be32(sb + 0x54);
	fs->agcount = snap_get_be32(sb + 0x58);
	fs->agblklog = sb[0x7c];
	if (fs->block_size < 512 || fs->block_size > 65536 ||
	    (fs->block_size & (fs->block_size - 1)) || sb[0x78] > 16 ||
	    fs->block_size != 1u << sb[0x78] || fs->block_size < fs->sect_size)
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: bad block size %u", fs->block_size);
	if (fs->agblocks < 16 || fs->agblklog > 31 || fs->agblocks > 1u << fs->agblklog ||
	    (fs->agblocks - 1) >> (fs->agblklog ? fs->agblklog - 1 : 0) != 1 || !fs->agcount ||
	    (uint64_t)fs->agcount * fs->agblocks < fs->dblocks ||
	    (uint64_t)(fs->agcount - 1) * fs->agblocks >= fs->dblocks)
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: bad allocation group geometry");
	if (fs->dblocks > ctx->part_size / fs->block_size)
		return snap_fs_fail(ctx, -EUCLEAN,
				    "xfs: filesystem (%" PRIu64 " blocks of %u) larger than its "
				    "partition (%" PRIu64 " bytes)",
				    fs->dblocks, fs->block_size, ctx->part_size);
	return 0;
}

/* The log's cycle number of basic block b (xlog_get_cycle()). */
static uint32_t xlog_cycle(const uint8_t *bb)
{
	if (snap_get_be32(bb) == XLOG_HEADER_MAGIC)
		return snap_get_be32(bb + 4);
	return snap_get_be32(bb);
}

struct xlog {
	struct xfs_fs *fs;
	uint64_t start; /* bytes */
	uint64_t nbb;	/* basic blocks */
	uint8_t *win;	/* XLOG_VERIFY_BBS basic blocks */
};

static int xlog_read(struct xlog *log, uint64_t bb, uint64_t n, uint8_t *buf)
{
	int r = log->fs->ctx->read(log->fs->ctx, log->start + bb * BBSIZE, buf, n * BBSIZE);
	if (r < 0)
		return snap_fs_fail(log->fs->ctx, r, "xfs: cannot read log block %" PRIu64, bb);
	return 0;
}

static int xlog_cycle_at(struct xlog *log, uint64_t bb, uint32_t *ret)
{
	uint8_t b[BBSIZE];
	int r = xlog_read(log, bb, 1, b);
	if (r < 0)
		return r;
	*ret = xlog_cycle(b);
	return 0;
}

/* Every basic block in [from, from + n) must carry cycle `want`. */
static int xlog_verify_range(struct xlog *log, uint64_t from, uint64_t n, uint32_t want)
{
	while (n) {
		uint64_t k = n < XLOG_VERIFY_BBS ? n : XLOG_VERIFY_BBS;
		int r = xlog_read(log, from, k, log->win);
		if (r < 0)
			return r;
		for (uint64_t i = 0; i < k; i++) {
			uint32_t c = xlog_cycle(log->win + i * BBSIZE);
			if (c != want)
				return snap_fs_fail(
				    log->fs->ctx, -EUCLEAN,
				    "xfs: log block %" PRIu64 " has cycle %u next to "
				    "the head's %u (torn log writes: log not clean)",
				    from + i, c, want);
		}
		from += k;
		n -= k;
	}
	return 0;
}

/* Log items as xfs_log_recover.c names them; their format structures are in the writing CPU's
 * byte order (little-endian here), the op headers around them big-endian. */
#define XFS_LI_BUF 0x123c
#define XFS_TRANS_HEADER_MAGIC 0x5452414eu /* TRAN */
#define XFS_TRANSACTION 0x69
#define XFS_LOG 0xaa
#define XLOG_START_TRANS 0x01
#define XLOG_COMMIT_TRANS 0x02
#define XLOG_CONTINUE_TRANS 0x04
#define XLOG_WAS_CONT_TRANS 0x08
#define XLOG_CYCLE_DATA_BBS (XLOG_HEADER_CYCLE_SIZE / BBSIZE)

/*
 * A log that is not clean may still be "covered": a frozen (or idle) filesystem's log holds,
 * from its tail to its head, only transactions that rewrite the primary superblock (the dummy
 * transactions of log covering, xfs_sync_sb()). Everything older than the tail is written back
 * in place, so the free-space trees on disk are current, and replaying those records touches
 * only sector 0, which is pinned. Anything else between tail and head (any other item, any
 * other block, an op continued across records, a record too large to check) refuses.
 */
static int xlog_check_covered(struct xlog *log, uint64_t head, const uint8_t *last)
{
	struct snap_fs_ctx *ctx = log->fs->ctx;
	uint64_t b = (uint32_t)snap_get_be64(last + 0x18); /* h_tail_lsn: cycle << 32 | block */
	uint8_t hb[BBSIZE];
	uint8_t *data = log->win; /* XLOG_VERIFY_BBS >= XLOG_CYCLE_DATA_BBS basic blocks */
	uint32_t regions_left = 0;
	int r;

	if (b >= log->nbb)
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: log tail outside the log");
	for (uint64_t n = 0; b != head; n++) {
		if (n > log->nbb)
			return snap_fs_fail(ctx, -EUCLEAN, "xfs: log records loop");
		r = xlog_read(log, b, 1, hb);
		if (r < 0)
			return r;
		uint32_t hlen = snap_get_be32(hb + 0x0c), nops = snap_get_be32(hb + 0x28);
		bool big = (snap_get_be32(hb + 0x08) & XLOG_VERSION_2) &&
			   snap_get_be32(hb + 0x140) > XLOG_HEADER_CYCLE_SIZE;
		if (snap_get_be32(hb) != XLOG_HEADER_MAGIC || big ||
		    hlen > XLOG_CYCLE_DATA_BBS * BBSIZE)
			return snap_fs_fail(ctx, -EUCLEAN,
					    "xfs: log not clean (record at log block %" PRIu64
					    " between tail and head cannot be checked)",
					    b);
		uint64_t nbbs = (hlen + BBSIZE - 1) / BBSIZE;
		for (uint64_t i = 0; i < nbbs; i++) {
			uint8_t *bb = data + i * BBSIZE;
			r = xlog_read(log, (b + 1 + i) % log->nbb, 1, bb);
			if (r < 0)
				return r;
			/* the first word of each data block holds the cycle; the header keeps
			 * the original */
			memcpy(bb, hb + 0x2c + 4 * i, 4);
		}
		size_t off = 0;
		for (uint32_t k = 0; k < nops; k++) {
			if (hlen - off < 12)
				return snap_fs_fail(ctx, -EUCLEAN, "xfs: log record ops overrun");
			const uint8_t *op = data + off;
			uint32_t len = snap_get_be32(op + 4);
			uint8_t client = op[8], flags = op[9];
			off += 12;
			if (len > hlen - off)
				return snap_fs_fail(ctx, -EUCLEAN, "xfs: log record ops overrun");
			const uint8_t *pay = data + off;
			off += len;
			if (client != XFS_TRANSACTION &&
			    (client != XFS_LOG || !(flags & XLOG_UNMOUNT_TRANS)))
				return snap_fs_fail(
				    ctx, -EUCLEAN,
				    "xfs: log not clean (unknown log op between tail "
				    "and head)");
			if (flags & (XLOG_CONTINUE_TRANS | XLOG_WAS_CONT_TRANS))
				return snap_fs_fail(
				    ctx, -EUCLEAN,
				    "xfs: log not clean (transactions span records)");
			if (flags & (XLOG_UNMOUNT_TRANS | XLOG_START_TRANS | XLOG_COMMIT_TRANS) ||
			    !len)
				continue;
			if (regions_left) {
				regions_left--; /* logged bytes of the superblock buffer */
				continue;
			}
			if (len >= 16 && snap_get_le32(pay) == XFS_TRANS_HEADER_MAGIC)
				continue;
			/* an item: only a buffer log format for the primary superblock */
			uint16_t type = snap_get_le16(pay);
			if (len < 24 || type != XFS_LI_BUF || snap_get_le64(pay + 8) != 0 ||
			    !snap_get_le16(pay + 2) ||
			    snap_get_le16(pay + 6) > log->fs->sect_size / BBSIZE)
				return snap_fs_fail(
				    ctx, -EUCLEAN,
				    "xfs: log not clean (pending changes beyond the "
				    "superblock): mount it or run xfs_repair");
			regions_left = snap_get_le16(pay + 2) - 1u;
		}
		b = (b + 1 + nbbs) % log->nbb;
	}
	snprintf(ctx->note, sizeof(ctx->note),
		 "xfs: log not clean but covered (only superblock updates pending, as after a "
		 "freeze)");
	return 0;
}

static int xlog_check_clean(struct xfs_fs *fs)
{
	struct snap_fs_ctx *ctx = fs->ctx;
	uint64_t logstart = snap_get_be64(fs->sb + 0x30);
	uint32_t logblocks = snap_get_be32(fs->sb + 0x60);

	if (!logstart)
		return snap_fs_fail(ctx, -EOPNOTSUPP,
				    "xfs: external log (cannot check it is clean)");
	uint32_t agno = (uint32_t)(logstart >> fs->agblklog);
	uint64_t agbno = logstart & ((1ull << fs->agblklog) - 1);
	if (agno >= fs->agcount || agbno + logblocks > xfs_ag_length(fs, agno) || logblocks < 2)
		return snap_fs_fail(ctx, -EUCLEAN,
				    "xfs: internal log outside its allocation group");

	struct xlog log = {
	    .fs = fs,
	    .start = xfs_ag_byte(fs, agno, agbno),
	    .nbb = (uint64_t)logblocks * (fs->block_size / BBSIZE),
	};
	int r = snap_fs_emit(&fs->pins, log.start, (uint64_t)logblocks * fs->block_size);
	if (r < 0)
		return r;
	log.win = malloc((size_t)XLOG_VERIFY_BBS * BBSIZE);
	if (!log.win)
		return snap_fs_fail(ctx, -ENOMEM, "xfs: out of memory");

	uint32_t first, last;
	uint64_t head;
	r = xlog_cycle_at(&log, 0, &first);
	if (r < 0)
		goto out;
	if (first == 0) {
		/* xlog_find_zeroed(): a log zeroed from the start has nothing to replay; a
		 * partly zeroed one has its head at the first zero block */
		r = xlog_cycle_at(&log, log.nbb - 1, &last);
		if (r < 0)
			goto out;
		r = last == 0 ? 0
			      : snap_fs_fail(ctx, -EUCLEAN, "xfs: log zeroed at its start only");
		goto out;
	}
	r = xlog_cycle_at(&log, log.nbb - 1, &last);
	if (r < 0)
		goto out;
	if (last == first) {
		/* written through to the end in this cycle: the head wraps to block 0, and
		 * nothing of the next cycle may have reached the start */
		head = log.nbb;
		uint64_t n = log.nbb < XLOG_VERIFY_BBS ? log.nbb : XLOG_VERIFY_BBS;
		r = xlog_verify_range(&log, 0, n, first);
		if (r >= 0)
			r = xlog_verify_range(&log, log.nbb - n, n, first);
	} else {
		if (last + 1 != first) {
			r = snap_fs_fail(ctx, -EUCLEAN, "xfs: log cycles %u and %u do not follow",
					 last, first);
			goto out;
		}
		/* first block whose cycle is not `first` (xlog_find_cycle_start()) */
		uint64_t lo = 0, hi = log.nbb - 1;
		while (hi - lo > 1) {
			uint64_t mid = lo + (hi - lo) / 2;
			uint32_t c;
			r = xlog_cycle_at(&log, mid, &c);
			if (r < 0)
				goto out;
			if (c == first)
				lo = mid;
			else
				hi = mid;
		}
		head = hi;
		uint64_t before = head < XLOG_VERIFY_BBS ? head : XLOG_VERIFY_BBS;
		uint64_t after =
		    log.nbb - head < XLOG_VERIFY_BBS ? log.nbb - head : XLOG_VERIFY_BBS;
		r = xlog_verify_range(&log, head - before, before, first);
		if (r >= 0)
			r = xlog_verify_range(&log, head, after, last);
	}
	if (r < 0)
		goto out;

	/* the last record header before the head (xlog_rseek_logrec_hdr()) */
	uint8_t h[BBSIZE];
	uint64_t rec = UINT64_MAX;
	for (uint64_t i = 1; i <= XLOG_MAX_RECORD_BBS && i <= log.nbb; i++) {
		uint64_t b = (head + log.nbb - i) % log.nbb;
		r = xlog_read(&log, b, 1, h);
		if (r < 0)
			goto out;
		if (snap_get_be32(h) == XLOG_HEADER_MAGIC) {
			rec = b;
			break;
		}
	}
	if (rec == UINT64_MAX) {
		r = snap_fs_fail(ctx, -EUCLEAN, "xfs: no log record before the log head");
		goto out;
	}
	uint32_t hlen = snap_get_be32(h + 0x0c), hsize = snap_get_be32(h + 0x140);
	uint64_t hblks = 1;
	if ((snap_get_be32(h + 0x08) & XLOG_VERSION_2) && hsize > XLOG_HEADER_CYCLE_SIZE)
		hblks = (hsize + XLOG_HEADER_CYCLE_SIZE - 1) / XLOG_HEADER_CYCLE_SIZE;
	uint64_t end = (rec + hblks + (hlen + BBSIZE - 1) / BBSIZE) % log.nbb;
	if (end != head % log.nbb) {
		r = snap_fs_fail(ctx, -EUCLEAN,
				 "xfs: log not clean (last record at log block %" PRIu64
				 " does not end at the head)",
				 rec);
		goto out;
	}
	if (snap_get_be32(h + 0x28) == 1) {
		uint8_t op[BBSIZE];
		r = xlog_read(&log, (rec + hblks) % log.nbb, 1, op);
		if (r < 0 || (op[9] & XLOG_UNMOUNT_TRANS))
			goto out; /* clean: an unmount record right before the head */
	}
	r = xlog_check_covered(&log, head % log.nbb, h);
out:
	free(log.win);
	return r;
}

struct xfs_walk {
	uint32_t agno, length;
	uint64_t next;	/* records must start at or after this AG block */
	uint64_t free;	/* blocks */
	uint64_t nodes; /* btree blocks visited: bounds the walk on a looping tree */
};

static int xfs_walk_bnobt(struct xfs_fs *fs, struct xfs_walk *w, uint32_t agbno, int level)
{
	struct snap_fs_ctx *ctx = fs->ctx;
	uint8_t *b = fs->buf[level];
	size_t hdr = fs->v5 ? XFS_BTREE_SBLOCK_CRC_LEN : XFS_BTREE_SBLOCK_LEN;
	int r;

	if ((uint64_t)agbno * fs->block_size < 4ull * fs->sect_size || agbno >= w->length ||
	    ++w->nodes > w->length)
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: AG %u free-space tree points at block %u",
				    w->agno, agbno);
	r = ctx->read(ctx, xfs_ag_byte(fs, w->agno, agbno), b, fs->block_size);
	if (r < 0)
		return snap_fs_fail(ctx, r, "xfs: cannot read AG %u block %u", w->agno, agbno);
	if (snap_get_be32(b) != (fs->v5 ? XFS_ABTB3_MAGIC : XFS_ABTB_MAGIC) ||
	    snap_get_be16(b + 4) != level)
		return snap_fs_fail(ctx, -EUCLEAN,
				    "xfs: AG %u block %u is not a level-%d bnobt "
				    "block",
				    w->agno, agbno, level);
	if (fs->v5) {
		if (!xfs_crc_ok(b, fs->block_size, XFS_BTREE_SBLOCK_CRC_OFF))
			return snap_fs_fail(ctx, -EBADMSG, "xfs: AG %u bnobt block %u CRC mismatch",
					    w->agno, agbno);
		if (snap_get_be64(b + 16) != xfs_ag_byte(fs, w->agno, agbno) / BBSIZE ||
		    memcmp(b + 32, fs->uuid, 16) || snap_get_be32(b + 48) != w->agno)
			return snap_fs_fail(ctx, -EUCLEAN,
					    "xfs: AG %u bnobt block %u belongs elsewhere", w->agno,
					    agbno);
	}
	uint32_t n = snap_get_be16(b + 6);
	size_t maxrecs = (fs->block_size - hdr) / (level ? 12 : 8);
	if (n > maxrecs)
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: AG %u bnobt block %u has %u records",
				    w->agno, agbno, n);
	if (level) {
		/* keys (8 bytes each, maxrecs of them) then pointers; a child overwrites
		 * only its own level's buffer */
		for (uint32_t i = 0; i < n; i++) {
			uint32_t child = snap_get_be32(fs->buf[level] + hdr + maxrecs * 8 + 4 * i);
			r = xfs_walk_bnobt(fs, w, child, level - 1);
			if (r < 0)
				return r;
		}
		return 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t start = snap_get_be32(b + hdr + 8 * i);
		uint64_t count = snap_get_be32(b + hdr + 8 * i + 4);
		if (!count || start < w->next || start + count > w->length)
			return snap_fs_fail(ctx, -EUCLEAN,
					    "xfs: AG %u free extent %" PRIu64 "+%" PRIu64
					    " out of order or outside the AG",
					    w->agno, start, count);
		w->next = start + count;
		w->free += count;
		r = snap_fs_emit(&fs->unused, xfs_ag_byte(fs, w->agno, start),
				 count * fs->block_size);
		if (r < 0)
			return r;
	}
	return 0;
}

static int xfs_map_ag(struct xfs_fs *fs, uint32_t agno, uint8_t *sect)
{
	struct snap_fs_ctx *ctx = fs->ctx;
	uint64_t ag0 = xfs_ag_byte(fs, agno, 0);
	int r;

	r = snap_fs_emit(&fs->pins, ag0, 4ull * fs->sect_size);
	if (r < 0)
		return r;

	/* AGFL (sector 3): only its CRC, its blocks stay DATA */
	if (fs->v5) {
		r = ctx->read(ctx, ag0 + 3ull * fs->sect_size, sect, fs->sect_size);
		if (r < 0)
			return snap_fs_fail(ctx, r, "xfs: cannot read AG %u AGFL", agno);
		if (snap_get_be32(sect) != XFS_AGFL_MAGIC || snap_get_be32(sect + 4) != agno ||
		    memcmp(sect + 8, fs->uuid, 16))
			return snap_fs_fail(ctx, -EUCLEAN, "xfs: AG %u AGFL header corrupt", agno);
		if (!xfs_crc_ok(sect, fs->sect_size, XFS_AGFL_CRC_OFF))
			return snap_fs_fail(ctx, -EBADMSG, "xfs: AG %u AGFL CRC mismatch", agno);
	}

	/* AGF (sector 1) */
	r = ctx->read(ctx, ag0 + fs->sect_size, sect, fs->sect_size);
	if (r < 0)
		return snap_fs_fail(ctx, r, "xfs: cannot read AG %u AGF", agno);
	if (snap_get_be32(sect) != XFS_AGF_MAGIC || snap_get_be32(sect + 4) != 1 ||
	    snap_get_be32(sect + 8) != agno)
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: AG %u AGF header corrupt", agno);
	if (fs->v5) {
		if (!xfs_crc_ok(sect, fs->sect_size, XFS_AGF_CRC_OFF))
			return snap_fs_fail(ctx, -EBADMSG, "xfs: AG %u AGF CRC mismatch", agno);
		if (memcmp(sect + 0x40, fs->uuid, 16))
			return snap_fs_fail(ctx, -EUCLEAN, "xfs: AG %u AGF of another filesystem",
					    agno);
	}
	struct xfs_walk w = {.agno = agno, .length = snap_get_be32(sect + 0x0c)};
	uint32_t root = snap_get_be32(sect + 0x10), levels = snap_get_be32(sect + 0x1c);
	uint32_t freeblks = snap_get_be32(sect + 0x34);
	if (w.length != xfs_ag_length(fs, agno) || !levels || levels > XFS_BTREE_MAXLEVELS ||
	    freeblks > w.length)
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: AG %u AGF geometry corrupt", agno);
	r = xfs_walk_bnobt(fs, &w, root, (int)levels - 1);
	if (r < 0)
		return r;
	if (w.free != freeblks)
		return snap_fs_fail(ctx, -EUCLEAN,
				    "xfs: AG %u free-space tree holds %" PRIu64
				    " blocks, its AGF says %u",
				    agno, w.free, freeblks);
	fs->free_blocks += w.free;
	return 0;
}

static int xfs_map(struct snap_fs_ctx *ctx)
{
	struct xfs_fs fs = {.ctx = ctx};
	uint8_t head[512];
	uint8_t *sect = NULL;
	int r;

	if (ctx->part_size < sizeof(head))
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: partition too small");
	r = ctx->read(ctx, 0, head, sizeof(head));
	if (r < 0)
		return snap_fs_fail(ctx, r, "xfs: cannot read the superblock");
	if (snap_get_be32(head) != XFS_SB_MAGIC)
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: no superblock magic");
	fs.sect_size = snap_get_be16(head + 0x66);
	if (fs.sect_size < 512 || fs.sect_size > 32768 || (fs.sect_size & (fs.sect_size - 1)) ||
	    head[0x79] > 15 || fs.sect_size != 1u << head[0x79] || fs.sect_size > ctx->part_size)
		return snap_fs_fail(ctx, -EUCLEAN, "xfs: bad sector size %u", fs.sect_size);
	fs.sb = malloc(fs.sect_size);
	sect = malloc(fs.sect_size);
	if (!fs.sb || !sect) {
		r = snap_fs_fail(ctx, -ENOMEM, "xfs: out of memory");
		goto out;
	}
	r = ctx->read(ctx, 0, fs.sb, fs.sect_size);
	if (r < 0) {
		r = snap_fs_fail(ctx, r, "xfs: cannot read the superblock");
		goto out;
	}
	r = xfs_check_super(&fs);
	if (r < 0)
		goto out;
	for (int i = 0; i < XFS_BTREE_MAXLEVELS; i++) {
		fs.buf[i] = malloc(fs.block_size);
		if (!fs.buf[i]) {
			r = snap_fs_fail(ctx, -ENOMEM, "xfs: out of memory");
			goto out;
		}
	}
	snap_fs_emitter_init(&fs.unused, ctx, ctx->mark_unused);
	snap_fs_emitter_init(&fs.pins, ctx, ctx->pin);
	r = xlog_check_clean(&fs);
	for (uint32_t agno = 0; agno < fs.agcount && r >= 0; agno++)
		r = xfs_map_ag(&fs, agno, sect);
	if (r >= 0)
		r = snap_fs_emit_flush(&fs.unused);
	if (r >= 0)
		r = snap_fs_emit_flush(&fs.pins);
	if (r >= 0)
		ctx->used_bytes = (fs.dblocks - fs.free_blocks) * fs.block_size;
out:
	for (int i = 0; i < XFS_BTREE_MAXLEVELS; i++)
		free(fs.buf[i]);
	free(sect);
	free(fs.sb);
	return r;
}

const struct snap_fs_driver snap_fs_xfs = {.name = "xfs", .map = xfs_map};
