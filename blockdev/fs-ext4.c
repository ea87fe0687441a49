// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fs-ext4.c - free space of ext2/3/4 from its block (cluster) bitmaps.
 *
 * Invariants:
 *  1. Only a filesystem we fully understand is mapped: known incompatible and read-only
 *     compatible features only; cleanly unmounted (or journalled with an empty journal); no
 *     errors, no orphans, no journal needing recovery. Anything else refuses (fs.h contract).
 *  2. With metadata_csum every checksum on the way is verified (superblock, each group
 *     descriptor, each initialised block bitmap); with gdt_csum the descriptors' crc16.
 *     A mismatch refuses with the group named.
 *  3. Each group's free-cluster count from its bitmap must equal the count in its
 *     descriptor; any disagreement refuses, since it means a bitmap we cannot trust.
 *  4. BLOCK_UNINIT groups (only honoured with a descriptor checksum, as the kernel does) are
 *     free except their own base metadata (superblock backup, descriptors, reserved GDT) and
 *     their own bitmaps and inode table, computed as ext4_init_block_bitmap() does.
 *  5. Superblock copies, descriptor blocks, reserved GDT blocks, every group's bitmaps and inode
 *     table, and the MMP block are pinned whatever a bitmap says.
 *  6. Nothing past the filesystem's last block is marked; a filesystem larger than its
 *     partition refuses.
 *  7. The journal is marked ZERO, except its first block (the jbd2 superblock), only when it is
 *     empty and fully vouched for: an internal journal whose inode (read from the inode table)
 *     has the same in-inode extent list (depth 0) as the superblock's backup copy, covering
 *     exactly i_size; a jbd2 superblock of this block size, with the same length, known
 *     features, a valid checksum when it has one, and s_start 0 (nothing to replay). jbd2 and
 *     e2fsck read only the superblock of an empty journal; zeros (what mke2fs writes) never
 *     look like a journal block, whereas leftover bytes could hold an older or newer copy of
 *     this very journal whose transactions a later recovery might replay. Any doubt keeps the
 *     journal as it is.
 *  8. Inode-table blocks holding only inodes past bg_itable_unused are marked ZERO, only with a
 *     descriptor checksum (verified, invariant 2) and a count no larger than the group's free
 *     inodes, and only when the group's inode bitmap (checksum verified with metadata_csum;
 *     not read for INODE_UNINIT groups, which the kernel treats as all free) has no inode in
 *     use there. The kernel and e2fsck never read those inodes as such, and zeros are what
 *     mke2fs and the kernel's lazy init leave there (INODE_ZEROED), so a later check that
 *     distrusts the descriptors finds empty inodes, not stale ones.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs-util.h"

#define EXT4_SB_OFFSET 1024
#define EXT4_SB_SIZE 1024
#define EXT4_MAGIC 0xef53

#define EXT4_STATE_VALID 0x0001
#define EXT4_STATE_ERROR 0x0002
#define EXT4_STATE_ORPHAN 0x0004

#define EXT4_COMPAT_HAS_JOURNAL 0x0004
#define EXT4_COMPAT_SPARSE_SUPER2 0x0200

#define EXT4_INCOMPAT_COMPRESSION 0x0001
#define EXT4_INCOMPAT_FILETYPE 0x0002
#define EXT4_INCOMPAT_RECOVER 0x0004
#define EXT4_INCOMPAT_JOURNAL_DEV 0x0008
#define EXT4_INCOMPAT_META_BG 0x0010
#define EXT4_INCOMPAT_EXTENTS 0x0040
#define EXT4_INCOMPAT_64BIT 0x0080
#define EXT4_INCOMPAT_MMP 0x0100
#define EXT4_INCOMPAT_FLEX_BG 0x0200
#define EXT4_INCOMPAT_EA_INODE 0x0400
#define EXT4_INCOMPAT_DIRDATA 0x1000
#define EXT4_INCOMPAT_CSUM_SEED 0x2000
#define EXT4_INCOMPAT_LARGEDIR 0x4000
#define EXT4_INCOMPAT_INLINE_DATA 0x8000
#define EXT4_INCOMPAT_ENCRYPT 0x10000
#define EXT4_INCOMPAT_CASEFOLD 0x20000

/* Features whose on-disk effect on block allocation we understand. RECOVER is handled on its
 * own (it is the journal-needs-recovery flag); COMPRESSION, JOURNAL_DEV and DIRDATA refuse. */
#define EXT4_INCOMPAT_KNOWN                                                                        \
	(EXT4_INCOMPAT_FILETYPE | EXT4_INCOMPAT_RECOVER | EXT4_INCOMPAT_META_BG |                  \
	 EXT4_INCOMPAT_EXTENTS | EXT4_INCOMPAT_64BIT | EXT4_INCOMPAT_MMP | EXT4_INCOMPAT_FLEX_BG | \
	 EXT4_INCOMPAT_EA_INODE | EXT4_INCOMPAT_CSUM_SEED | EXT4_INCOMPAT_LARGEDIR |               \
	 EXT4_INCOMPAT_INLINE_DATA | EXT4_INCOMPAT_ENCRYPT | EXT4_INCOMPAT_CASEFOLD)

#define EXT4_RO_COMPAT_SPARSE_SUPER 0x0001
#define EXT4_RO_COMPAT_LARGE_FILE 0x0002
#define EXT4_RO_COMPAT_BTREE_DIR 0x0004
#define EXT4_RO_COMPAT_HUGE_FILE 0x0008
#define EXT4_RO_COMPAT_GDT_CSUM 0x0010
#define EXT4_RO_COMPAT_DIR_NLINK 0x0020
#define EXT4_RO_COMPAT_EXTRA_ISIZE 0x0040
#define EXT4_RO_COMPAT_HAS_SNAPSHOT 0x0080
#define EXT4_RO_COMPAT_QUOTA 0x0100
#define EXT4_RO_COMPAT_BIGALLOC 0x0200
#define EXT4_RO_COMPAT_METADATA_CSUM 0x0400
#define EXT4_RO_COMPAT_REPLICA 0x0800
#define EXT4_RO_COMPAT_READONLY 0x1000
#define EXT4_RO_COMPAT_PROJECT 0x2000
#define EXT4_RO_COMPAT_SHARED_BLOCKS 0x4000
#define EXT4_RO_COMPAT_VERITY 0x8000
#define EXT4_RO_COMPAT_ORPHAN_PRESENT 0x10000

/* HAS_SNAPSHOT (next3 snapshots keep blocks outside the bitmaps' usual meaning), REPLICA and
 * ORPHAN_PRESENT (the orphan file holds inodes being deleted) refuse, as does anything new. */
#define EXT4_RO_COMPAT_KNOWN                                                                       \
	(EXT4_RO_COMPAT_SPARSE_SUPER | EXT4_RO_COMPAT_LARGE_FILE | EXT4_RO_COMPAT_BTREE_DIR |      \
	 EXT4_RO_COMPAT_HUGE_FILE | EXT4_RO_COMPAT_GDT_CSUM | EXT4_RO_COMPAT_DIR_NLINK |           \
	 EXT4_RO_COMPAT_EXTRA_ISIZE | EXT4_RO_COMPAT_QUOTA | EXT4_RO_COMPAT_BIGALLOC |             \
	 EXT4_RO_COMPAT_METADATA_CSUM | EXT4_RO_COMPAT_READONLY | EXT4_RO_COMPAT_PROJECT |         \
	 EXT4_RO_COMPAT_SHARED_BLOCKS | EXT4_RO_COMPAT_VERITY)

#define EXT4_BG_INODE_UNINIT 0x0001
#define EXT4_BG_BLOCK_UNINIT 0x0002

#define EXT4_DESC_CSUM_OFF 0x1e
#define EXT4_DESC_BBITMAP_CSUM_HI_END 0x3c
#define EXT4_DESC_IBITMAP_CSUM_HI_END 0x40

#define EXT4_INODE_EXTENTS_FL 0x80000
#define EXT4_S_IFMT 0xf000
#define EXT4_S_IFREG 0x8000
#define EXT4_JNL_BACKUP_BLOCKS 1

#define JBD2_MAGIC 0xc03b3998u
#define JBD2_SUPERBLOCK_V1 3
#define JBD2_SUPERBLOCK_V2 4
#define JBD2_SB_SIZE 1024
#define JBD2_INCOMPAT_CSUM_V2 0x08
#define JBD2_INCOMPAT_CSUM_V3 0x10
/* revoke, 64bit, async_commit, csum v2, csum v3, fast_commit */
#define JBD2_INCOMPAT_KNOWN 0x3fu
#define EXT4_EXTENT_MAGIC 0xf30a

/* Blocks read per window when walking bitmaps: with flex_bg they sit side by side, so one
 * read serves many groups. */
#define EXT4_WINDOW_BYTES (1u << 20)

struct ext4_fs {
	struct snap_fs_ctx *ctx;
	uint8_t sb[EXT4_SB_SIZE];
	uint32_t block_size;
	uint32_t ratio; /* blocks per cluster */
	uint64_t blocks;
	uint32_t first_data_block;
	uint32_t blocks_per_group;
	uint32_t clusters_per_group;
	uint32_t ngroups;
	uint32_t desc_size;
	uint32_t desc_per_block;
	uint32_t gdt_blocks;
	uint32_t first_meta_bg;
	uint32_t incompat, ro_compat, compat;
	uint32_t csum_seed;
	bool metadata_csum, gdt_csum;
	uint8_t *gdt; /* ngroups * desc_size */
	uint8_t *window;
	uint64_t win_block, win_count;
	struct snap_fs_emitter unused, pins, zero;
};

static bool ext4_is_power_of(uint32_t n, uint32_t base)
{
	if (n == 0)
		return false;
	while (n % base == 0)
		n /= base;
	return n == 1;
}

/* ext4_bg_has_super() */
static bool ext4_group_has_super(const struct ext4_fs *fs, uint32_t g)
{
	if (g == 0)
		return true;
	if (fs->compat & EXT4_COMPAT_SPARSE_SUPER2)
		return g == snap_get_le32(fs->sb + 0x24c) || g == snap_get_le32(fs->sb + 0x250);
	if (g <= 1 || !(fs->ro_compat & EXT4_RO_COMPAT_SPARSE_SUPER))
		return true;
	if (!(g & 1))
		return false;
	return ext4_is_power_of(g, 3) || ext4_is_power_of(g, 5) || ext4_is_power_of(g, 7);
}

static uint64_t ext4_group_first_block(const struct ext4_fs *fs, uint32_t g)
{
	return fs->first_data_block + (uint64_t)g * fs->blocks_per_group;
}

static uint64_t ext4_group_blocks(const struct ext4_fs *fs, uint32_t g)
{
	uint64_t first = ext4_group_first_block(fs, g);
	uint64_t n = fs->blocks - first;
	return n < fs->blocks_per_group ? n : fs->blocks_per_group;
}

/* The block of the primary superblock: 0 with blocks > 1 KiB, 1 with 1 KiB blocks (also with
 * bigalloc, where first_data_block is 0 and block 0 is the boot block). */
static uint64_t ext4_sb_block(const struct ext4_fs *fs)
{
	return fs->block_size == 1024 ? 1 : 0;
}

/* Location of primary descriptor block i (ext2fs_descriptor_block_loc2()). */
static uint64_t ext4_desc_block(const struct ext4_fs *fs, uint32_t i)
{
	if (!(fs->incompat & EXT4_INCOMPAT_META_BG) || i < fs->first_meta_bg)
		return ext4_sb_block(fs) + 1 + i;
	uint32_t g = i * fs->desc_per_block;
	if (g == 0)
		return ext4_sb_block(fs) + 1;
	return ext4_group_first_block(fs, g) + (ext4_group_has_super(fs, g) ? 1 : 0);
}

/* Blocks at the start of group g holding a superblock copy, descriptors and reserved GDT
 * blocks (ext4_num_base_meta_blocks()). */
static uint64_t ext4_base_meta_blocks(const struct ext4_fs *fs, uint32_t g)
{
	uint64_t n = ext4_group_has_super(fs, g) ? 1 : 0;

	if (!(fs->incompat & EXT4_INCOMPAT_META_BG) || g / fs->desc_per_block < fs->first_meta_bg) {
		if (n) {
			n += (fs->incompat & EXT4_INCOMPAT_META_BG) ? fs->first_meta_bg
								    : fs->gdt_blocks;
			n += snap_get_le16(fs->sb + 0xce);
		}
	} else {
		uint32_t r = g % fs->desc_per_block;
		if (r == 0 || r == 1 || r == fs->desc_per_block - 1)
			n++;
	}
	return n;
}

static const uint8_t *ext4_desc(const struct ext4_fs *fs, uint32_t g)
{
	return fs->gdt + (size_t)g * fs->desc_size;
}

static uint64_t ext4_desc_field(const struct ext4_fs *fs, uint32_t g, size_t lo, size_t hi)
{
	const uint8_t *d = ext4_desc(fs, g);
	uint64_t v = snap_get_le32(d + lo);

	if (fs->desc_size >= 64)
		v |= (uint64_t)snap_get_le32(d + hi) << 32;
	return v;
}

static uint64_t ext4_block_bitmap(const struct ext4_fs *fs, uint32_t g)
{
	return ext4_desc_field(fs, g, 0x00, 0x20);
}

static uint64_t ext4_inode_bitmap(const struct ext4_fs *fs, uint32_t g)
{
	return ext4_desc_field(fs, g, 0x04, 0x24);
}

static uint64_t ext4_inode_table(const struct ext4_fs *fs, uint32_t g)
{
	return ext4_desc_field(fs, g, 0x08, 0x28);
}

static uint32_t ext4_free_clusters(const struct ext4_fs *fs, uint32_t g)
{
	const uint8_t *d = ext4_desc(fs, g);
	uint32_t v = snap_get_le16(d + 0x0c);

	if (fs->desc_size >= 64)
		v |= (uint32_t)snap_get_le16(d + 0x2c) << 16;
	return v;
}

static uint64_t ext4_inode_size(const struct ext4_fs *fs)
{
	/* revision 0 has 128-byte inodes and no s_inode_size */
	return snap_get_le32(fs->sb + 0x4c) ? snap_get_le16(fs->sb + 0x58) : 128;
}

static uint64_t ext4_itable_blocks(const struct ext4_fs *fs)
{
	uint64_t isize = ext4_inode_size(fs);
	return ((uint64_t)snap_get_le32(fs->sb + 0x28) * isize + fs->block_size - 1) /
	       fs->block_size;
}

static int ext4_read(struct ext4_fs *fs, uint64_t block, void *buf, size_t len)
{
	int r = fs->ctx->read(fs->ctx, block * fs->block_size, buf, len);
	if (r < 0)
		return snap_fs_fail(fs->ctx, r, "ext4: cannot read block %" PRIu64, block);
	return 0;
}

/* Group g's bitmap at loc(fs, g) (block or inode bitmap) through a read window: a miss reads
 * the same bitmaps of the groups that follow too, as long as they sit in consecutive blocks
 * (flex_bg puts them side by side; without it each group's bitmap lives in its own group and is
 * read alone). */
static int ext4_window_block(struct ext4_fs *fs, uint32_t g,
			     uint64_t (*loc)(const struct ext4_fs *fs, uint32_t g),
			     const uint8_t **ret)
{
	uint64_t block = loc(fs, g);

	if (block < fs->win_block || block >= fs->win_block + fs->win_count) {
		uint64_t max = EXT4_WINDOW_BYTES / fs->block_size, n = 1;
		while (n < max && g + n < fs->ngroups && loc(fs, g + n) == block + n)
			n++;
		int r = ext4_read(fs, block, fs->window, n * fs->block_size);
		if (r < 0) {
			fs->win_count = 0;
			return r;
		}
		fs->win_block = block;
		fs->win_count = n;
	}
	*ret = fs->window + (block - fs->win_block) * fs->block_size;
	return 0;
}

static int ext4_pin_blocks(struct ext4_fs *fs, uint64_t block, uint64_t n)
{
	return snap_fs_emit(&fs->pins, block * fs->block_size, n * fs->block_size);
}

static int ext4_check_super(struct ext4_fs *fs)
{
	struct snap_fs_ctx *ctx = fs->ctx;
	const uint8_t *sb = fs->sb;

	if (snap_get_le16(sb + 0x38) != EXT4_MAGIC)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: no superblock magic");

	fs->compat = snap_get_le32(sb + 0x5c);
	fs->incompat = snap_get_le32(sb + 0x60);
	fs->ro_compat = snap_get_le32(sb + 0x64);
	uint32_t rev = snap_get_le32(sb + 0x4c);
	if (rev == 0)
		fs->compat = fs->incompat = fs->ro_compat = 0; /* revision 0 has no feature words */
	else if (rev > 1)
		return snap_fs_fail(ctx, -EOPNOTSUPP, "ext4: unknown revision %u", rev);

	fs->metadata_csum = fs->ro_compat & EXT4_RO_COMPAT_METADATA_CSUM;
	fs->gdt_csum = !fs->metadata_csum && (fs->ro_compat & EXT4_RO_COMPAT_GDT_CSUM);
	if (fs->metadata_csum) {
		if (sb[0x175] != 1)
			return snap_fs_fail(ctx, -EOPNOTSUPP, "ext4: unknown checksum type %u",
					    sb[0x175]);
		uint32_t want = snap_get_le32(sb + 0x3fc);
		uint32_t got = snap_crc32c(~0u, sb, 0x3fc);
		if (want != got)
			return snap_fs_fail(
			    ctx, -EBADMSG,
			    "ext4: superblock checksum mismatch (0x%08x, expected 0x%08x)", got,
			    want);
	}

	if (fs->incompat & ~EXT4_INCOMPAT_KNOWN)
		return snap_fs_fail(ctx, -EOPNOTSUPP, "ext4: unknown incompatible features 0x%x",
				    fs->incompat & ~EXT4_INCOMPAT_KNOWN);
	if (fs->ro_compat & ~EXT4_RO_COMPAT_KNOWN)
		return snap_fs_fail(ctx, -EOPNOTSUPP,
				    "ext4: unsupported read-only compatible features 0x%x",
				    fs->ro_compat & ~EXT4_RO_COMPAT_KNOWN);
	if (fs->incompat & EXT4_INCOMPAT_RECOVER)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: journal needs recovery");

	uint16_t state = snap_get_le16(sb + 0x3a);
	if (state & EXT4_STATE_ERROR)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: filesystem has errors (fsck needed)");
	if (state & EXT4_STATE_ORPHAN)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: orphan inodes being recovered");
	if (snap_get_le32(sb + 0xe8))
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: orphan inode list not empty");
	/* A mounted (or frozen) journalled filesystem is not marked valid on disk, but its
	 * bitmaps are consistent once the journal is empty (RECOVER clear, checked again on the
	 * journal itself below). Without a journal only a clean unmount is trusted. */
	if (!(state & EXT4_STATE_VALID) && !(fs->compat & EXT4_COMPAT_HAS_JOURNAL))
		return snap_fs_fail(ctx, -EUCLEAN,
				    "ext4: not cleanly unmounted and has no journal (fsck needed)");

	uint32_t log_bs = snap_get_le32(sb + 0x18), log_cs = snap_get_le32(sb + 0x1c);
	if (log_bs > 6)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: bad block size shift %u", log_bs);
	fs->block_size = 1024u << log_bs;
	if (fs->ro_compat & EXT4_RO_COMPAT_BIGALLOC) {
		if (log_cs < log_bs || log_cs - log_bs > 16)
			return snap_fs_fail(ctx, -EUCLEAN, "ext4: bad cluster size shift %u",
					    log_cs);
		fs->ratio = 1u << (log_cs - log_bs);
	} else {
		fs->ratio = 1;
	}

	fs->blocks = snap_get_le32(sb + 0x04);
	if (fs->incompat & EXT4_INCOMPAT_64BIT)
		fs->blocks |= (uint64_t)snap_get_le32(sb + 0x150) << 32;
	fs->first_data_block = snap_get_le32(sb + 0x14);
	fs->blocks_per_group = snap_get_le32(sb + 0x20);
	fs->clusters_per_group = fs->ratio > 1 ? snap_get_le32(sb + 0x24) : fs->blocks_per_group;
	if (fs->first_data_block != (fs->block_size == 1024 && fs->ratio == 1 ? 1u : 0u))
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: bad first data block %u",
				    fs->first_data_block);
	if (!fs->clusters_per_group || fs->clusters_per_group > 8 * fs->block_size ||
	    fs->clusters_per_group % 8 ||
	    (uint64_t)fs->clusters_per_group * fs->ratio != fs->blocks_per_group)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: bad blocks per group %u",
				    fs->blocks_per_group);
	if (fs->blocks <= fs->first_data_block)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: bad block count %" PRIu64, fs->blocks);
	if (fs->blocks > ctx->part_size / fs->block_size)
		return snap_fs_fail(ctx, -EUCLEAN,
				    "ext4: filesystem (%" PRIu64 " blocks of %u) larger than its "
				    "partition (%" PRIu64 " bytes)",
				    fs->blocks, fs->block_size, ctx->part_size);
	uint64_t ngroups =
	    (fs->blocks - fs->first_data_block + fs->blocks_per_group - 1) / fs->blocks_per_group;
	if (ngroups > UINT32_MAX || ngroups * snap_get_le32(sb + 0x28) != snap_get_le32(sb + 0x00))
		return snap_fs_fail(ctx, -EUCLEAN,
				    "ext4: inode count does not match %" PRIu64 " groups", ngroups);
	fs->ngroups = (uint32_t)ngroups;

	if (fs->incompat & EXT4_INCOMPAT_64BIT) {
		fs->desc_size = snap_get_le16(sb + 0xfe);
		if (fs->desc_size < 64 || fs->desc_size > 1024 || fs->desc_size > fs->block_size ||
		    (fs->desc_size & (fs->desc_size - 1)))
			return snap_fs_fail(ctx, -EUCLEAN, "ext4: bad descriptor size %u",
					    fs->desc_size);
	} else {
		fs->desc_size = 32;
	}
	fs->desc_per_block = fs->block_size / fs->desc_size;
	fs->gdt_blocks = (fs->ngroups + fs->desc_per_block - 1) / fs->desc_per_block;
	fs->first_meta_bg = snap_get_le32(sb + 0x104);
	if ((fs->incompat & EXT4_INCOMPAT_META_BG) && fs->first_meta_bg > fs->gdt_blocks)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: bad first meta_bg %u", fs->first_meta_bg);
	if (snap_get_le16(sb + 0xce) > fs->block_size / 4)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: bad reserved GDT block count");

	if (fs->incompat & EXT4_INCOMPAT_CSUM_SEED)
		fs->csum_seed = snap_get_le32(sb + 0x270);
	else
		fs->csum_seed = snap_crc32c(~0u, sb + 0x68, 16);
	return 0;
}

static int ext4_check_desc(struct ext4_fs *fs, uint32_t g)
{
	const uint8_t *d = ext4_desc(fs, g);
	uint16_t want = snap_get_le16(d + EXT4_DESC_CSUM_OFF), got;
	uint8_t le_group[4];

	snap_put_le32(le_group, g);
	if (fs->metadata_csum) {
		static const uint8_t zero[2];
		uint32_t c = snap_crc32c(fs->csum_seed, le_group, 4);
		c = snap_crc32c(c, d, EXT4_DESC_CSUM_OFF);
		c = snap_crc32c(c, zero, 2);
		c = snap_crc32c(c, d + EXT4_DESC_CSUM_OFF + 2,
				fs->desc_size - EXT4_DESC_CSUM_OFF - 2);
		got = (uint16_t)c;
	} else if (fs->gdt_csum) {
		got = snap_crc16(0xffff, fs->sb + 0x68, 16);
		got = snap_crc16(got, le_group, 4);
		got = snap_crc16(got, d, EXT4_DESC_CSUM_OFF);
		got = snap_crc16(got, d + EXT4_DESC_CSUM_OFF + 2,
				 fs->desc_size - EXT4_DESC_CSUM_OFF - 2);
	} else {
		return 0;
	}
	if (got != want)
		return snap_fs_fail(fs->ctx, -EBADMSG,
				    "ext4: group %u descriptor checksum mismatch (0x%04x, expected "
				    "0x%04x)",
				    g, got, want);
	return 0;
}

static int ext4_load_gdt(struct ext4_fs *fs)
{
	fs->gdt = malloc((size_t)fs->gdt_blocks * fs->block_size);
	if (!fs->gdt)
		return snap_fs_fail(fs->ctx, -ENOMEM,
				    "ext4: out of memory for %u descriptor blocks", fs->gdt_blocks);
	/* one read per run of consecutive descriptor blocks (all of them without meta_bg) */
	for (uint32_t i = 0, n; i < fs->gdt_blocks; i += n) {
		uint64_t b = ext4_desc_block(fs, i);
		for (n = 1; i + n < fs->gdt_blocks && ext4_desc_block(fs, i + n) == b + n; n++)
			;
		if (b >= fs->blocks || n > fs->blocks - b)
			return snap_fs_fail(fs->ctx, -EUCLEAN,
					    "ext4: descriptor block %u outside the filesystem", i);
		int r = ext4_read(fs, b, fs->gdt + (size_t)i * fs->block_size,
				  (size_t)n * fs->block_size);
		if (r < 0)
			return r;
	}
	for (uint32_t g = 0; g < fs->ngroups; g++) {
		int r = ext4_check_desc(fs, g);
		if (r < 0)
			return r;
		uint64_t itb = ext4_itable_blocks(fs);
		uint64_t bb = ext4_block_bitmap(fs, g), ib = ext4_inode_bitmap(fs, g),
			 it = ext4_inode_table(fs, g);
		if (bb < fs->first_data_block || bb >= fs->blocks || ib < fs->first_data_block ||
		    ib >= fs->blocks || it < fs->first_data_block || itb > fs->blocks ||
		    it > fs->blocks - itb)
			return snap_fs_fail(fs->ctx, -EUCLEAN,
					    "ext4: group %u metadata outside the filesystem", g);
	}
	return 0;
}

/* Superblock copies, descriptor blocks and reserved GDT blocks of every group; each group's
 * bitmaps and inode table; the MMP block. */
static int ext4_pin_metadata(struct ext4_fs *fs)
{
	int r;

	/* block 0 holds the boot sector and, with blocks > 1 KiB, the primary superblock */
	r = snap_fs_emit(&fs->pins, 0, EXT4_SB_OFFSET + EXT4_SB_SIZE);
	for (uint32_t g = 0; g < fs->ngroups && r >= 0; g++) {
		uint64_t first = g == 0 ? ext4_sb_block(fs) : ext4_group_first_block(fs, g);
		uint64_t n = ext4_base_meta_blocks(fs, g);
		if (n)
			r = ext4_pin_blocks(fs, first, n);
	}
	/* meta_bg descriptor blocks live in the groups counted above; the primary ones again in
	 * case the group arithmetic and the locations disagree */
	for (uint32_t i = 0; i < fs->gdt_blocks && r >= 0; i++)
		r = ext4_pin_blocks(fs, ext4_desc_block(fs, i), 1);
	r = r < 0 ? r : snap_fs_emit_flush(&fs->pins);
	uint64_t itb = ext4_itable_blocks(fs);
	for (uint32_t g = 0; g < fs->ngroups && r >= 0; g++) {
		r = ext4_pin_blocks(fs, ext4_block_bitmap(fs, g), 1);
		if (r >= 0)
			r = ext4_pin_blocks(fs, ext4_inode_bitmap(fs, g), 1);
	}
	for (uint32_t g = 0; g < fs->ngroups && r >= 0; g++)
		r = ext4_pin_blocks(fs, ext4_inode_table(fs, g), itb);
	if (r >= 0 && (fs->incompat & EXT4_INCOMPAT_MMP)) {
		uint64_t mmp = snap_get_le64(fs->sb + 0x168);
		if (mmp >= fs->blocks)
			return snap_fs_fail(fs->ctx, -EUCLEAN,
					    "ext4: MMP block outside the filesystem");
		r = ext4_pin_blocks(fs, mmp, 1);
	}
	if (r >= 0)
		r = snap_fs_emit_flush(&fs->pins);
	return r;
}

/* With an internal journal whose inode's block map is a shallow extent tree (as mke2fs makes
 * it), check the journal itself is empty: s_start != 0 means transactions to replay even if the
 * superblock flag says otherwise. */
static int ext4_check_journal(struct ext4_fs *fs)
{
	const uint8_t *sb = fs->sb;

	if (!(fs->compat & EXT4_COMPAT_HAS_JOURNAL) || !snap_get_le32(sb + 0xe0))
		return 0;
	const uint8_t *iblock = sb + 0x10c; /* s_jnl_blocks: a copy of the inode's i_block */
	if (sb[0xfd] != 1 || snap_get_le16(iblock) != EXT4_EXTENT_MAGIC ||
	    snap_get_le16(iblock + 2) == 0 || snap_get_le16(iblock + 6) != 0)
		return 0; /* block-mapped or deep tree: rely on the superblock flag */
	/* first extent: ee_block, ee_len, ee_start_hi (16), ee_start_lo (32) */
	const uint8_t *ext = iblock + 12;
	if (snap_get_le32(ext) != 0)
		return 0;
	uint64_t start = (uint64_t)snap_get_le16(ext + 6) << 32 | snap_get_le32(ext + 8);
	if (start >= fs->blocks)
		return snap_fs_fail(fs->ctx, -EUCLEAN, "ext4: journal outside the filesystem");
	uint8_t jsb[1024];
	int r = ext4_read(fs, start, jsb, sizeof(jsb));
	if (r < 0)
		return r;
	if (snap_get_be32(jsb) != JBD2_MAGIC)
		return snap_fs_fail(fs->ctx, -EUCLEAN, "ext4: journal superblock has no magic");
	if (snap_get_be32(jsb + 0x1c) != 0)
		return snap_fs_fail(fs->ctx, -EUCLEAN, "ext4: journal needs recovery (not empty)");
	return 0;
}

/* Free clusters of group g (bitmap bits, 1 = used) to the unused emitter; returns the count. */
static int ext4_emit_free(struct ext4_fs *fs, uint32_t g, const uint8_t *bitmap, uint64_t nbits,
			  uint64_t *ret_free)
{
	uint64_t cluster0 = (uint64_t)g * fs->clusters_per_group;
	uint64_t fs_end = fs->blocks * fs->block_size;
	uint64_t nfree = 0;
	size_t i = 0;

	for (;;) {
		i = snap_bitmap_find(bitmap, nbits, i, false);
		if (i >= nbits)
			break;
		size_t j = snap_bitmap_find(bitmap, nbits, i, true);
		uint64_t off = ((cluster0 + i) * fs->ratio + fs->first_data_block) * fs->block_size;
		uint64_t end = ((cluster0 + j) * fs->ratio + fs->first_data_block) * fs->block_size;
		if (end > fs_end)
			end = fs_end;
		nfree += j - i;
		if (off < end) {
			int r = snap_fs_emit(&fs->unused, off, end - off);
			if (r < 0)
				return r;
		}
		i = j;
	}
	*ret_free = nfree;
	return 0;
}

/* ext4_init_block_bitmap(): a BLOCK_UNINIT group's bitmap as the kernel would make it. */
static void ext4_uninit_bitmap(const struct ext4_fs *fs, uint32_t g, uint8_t *bitmap,
			       uint64_t nbits)
{
	uint64_t first = ext4_group_first_block(fs, g);
	uint64_t meta = (ext4_base_meta_blocks(fs, g) + fs->ratio - 1) / fs->ratio;
	uint64_t own[3][2] = {
	    {ext4_block_bitmap(fs, g), 1},
	    {ext4_inode_bitmap(fs, g), 1},
	    {ext4_inode_table(fs, g), ext4_itable_blocks(fs)},
	};

	memset(bitmap, 0, (nbits + 7) / 8);
	for (uint64_t i = 0; i < meta && i < nbits; i++)
		bitmap[i / 8] |= (uint8_t)(1u << (i & 7));
	for (int k = 0; k < 3; k++) {
		for (uint64_t b = own[k][0]; b < own[k][0] + own[k][1]; b++) {
			if (b < first || b >= first + ext4_group_blocks(fs, g))
				continue;
			uint64_t i = (b - first) / fs->ratio;
			bitmap[i / 8] |= (uint8_t)(1u << (i & 7));
		}
	}
}

static int ext4_walk_groups(struct ext4_fs *fs, uint64_t *ret_free)
{
	uint32_t bitmap_bytes = fs->clusters_per_group / 8;
	uint8_t *uninit = malloc(bitmap_bytes);
	uint64_t total_free = 0;
	int r = 0;

	if (!uninit)
		return snap_fs_fail(fs->ctx, -ENOMEM, "ext4: out of memory");
	for (uint32_t g = 0; g < fs->ngroups; g++) {
		uint64_t nbits = (ext4_group_blocks(fs, g) + fs->ratio - 1) / fs->ratio;
		const uint8_t *d = ext4_desc(fs, g);
		const uint8_t *bitmap;
		bool csum = fs->metadata_csum || fs->gdt_csum;

		if (csum && (snap_get_le16(d + 0x12) & EXT4_BG_BLOCK_UNINIT)) {
			if (g == 0) {
				r = snap_fs_fail(fs->ctx, -EUCLEAN,
						 "ext4: group 0 marked BLOCK_UNINIT");
				break;
			}
			ext4_uninit_bitmap(fs, g, uninit, nbits);
			bitmap = uninit;
		} else {
			r = ext4_window_block(fs, g, ext4_block_bitmap, &bitmap);
			if (r < 0)
				break;
			if (fs->metadata_csum) {
				uint32_t c = snap_crc32c(fs->csum_seed, bitmap, bitmap_bytes);
				uint32_t want = snap_get_le16(d + 0x18);
				if (fs->desc_size >= EXT4_DESC_BBITMAP_CSUM_HI_END)
					want |= (uint32_t)snap_get_le16(d + 0x38) << 16;
				else
					c &= 0xffff;
				if (c != want) {
					r = snap_fs_fail(fs->ctx, -EBADMSG,
							 "ext4: group %u block bitmap checksum "
							 "mismatch (0x%08x, expected 0x%08x)",
							 g, c, want);
					break;
				}
			}
		}
		uint64_t nfree;
		r = ext4_emit_free(fs, g, bitmap, nbits, &nfree);
		if (r < 0)
			break;
		if (nfree != ext4_free_clusters(fs, g)) {
			r = snap_fs_fail(fs->ctx, -EUCLEAN,
					 "ext4: group %u bitmap has %" PRIu64
					 " free clusters, its descriptor says %u",
					 g, nfree, ext4_free_clusters(fs, g));
			break;
		}
		total_free += nfree;
	}
	free(uninit);
	if (r >= 0)
		r = snap_fs_emit_flush(&fs->unused);
	*ret_free = total_free;
	return r;
}

static int ext4_zero_blocks(struct ext4_fs *fs, uint64_t block, uint64_t n)
{
	return snap_fs_emit(&fs->zero, block * fs->block_size, n * fs->block_size);
}

/* Invariant 7: the journal's blocks after its superblock, as ZERO. Returns 0 without marking
 * anything whenever the journal is not vouched for. */
static int ext4_zero_journal(struct ext4_fs *fs)
{
	const uint8_t *sb = fs->sb;
	uint32_t ino = snap_get_le32(sb + 0xe0), ipg = snap_get_le32(sb + 0x28);
	uint64_t isize = ext4_inode_size(fs), bs = fs->block_size;
	uint8_t inode[128];
	struct {
		uint64_t start, len;
	} ext[4];
	int r;

	if (!(fs->compat & EXT4_COMPAT_HAS_JOURNAL) || !ino || !ipg ||
	    ino > snap_get_le32(sb + 0x00) || isize < sizeof(inode) || isize > bs ||
	    sb[0xfd] != EXT4_JNL_BACKUP_BLOCKS)
		return 0;
	uint32_t g = (ino - 1) / ipg, idx = (ino - 1) % ipg;
	r = fs->ctx->read(fs->ctx, ext4_inode_table(fs, g) * bs + idx * isize, inode,
			  sizeof(inode));
	if (r < 0)
		return snap_fs_fail(fs->ctx, r, "ext4: cannot read the journal inode %u", ino);
	const uint8_t *eh = inode + 0x28; /* i_block */
	uint16_t n = snap_get_le16(eh + 2);
	if ((snap_get_le16(inode) & EXT4_S_IFMT) != EXT4_S_IFREG ||
	    !(snap_get_le32(inode + 0x20) & EXT4_INODE_EXTENTS_FL) ||
	    memcmp(eh, sb + 0x10c, 60) != 0 || snap_get_le16(eh) != EXT4_EXTENT_MAGIC ||
	    snap_get_le16(eh + 6) != 0 || n == 0 || n > 4)
		return 0;
	uint64_t size = snap_get_le32(inode + 0x04) | (uint64_t)snap_get_le32(inode + 0x6c) << 32;
	uint64_t lblk = 0;
	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *e = eh + 12 + 12 * i;
		uint64_t len = snap_get_le16(e + 4);
		uint64_t start = (uint64_t)snap_get_le16(e + 6) << 32 | snap_get_le32(e + 8);
		/* lengths over 32768 are unwritten extents: not a journal mke2fs made */
		if (snap_get_le32(e) != lblk || len == 0 || len > 32768 ||
		    start < fs->first_data_block || start >= fs->blocks || len > fs->blocks - start)
			return 0;
		ext[i].start = start;
		ext[i].len = len;
		lblk += len;
	}
	if (size % bs || size / bs != lblk || lblk < 2)
		return 0;

	uint8_t jsb[JBD2_SB_SIZE];
	r = ext4_read(fs, ext[0].start, jsb, sizeof(jsb));
	if (r < 0)
		return r;
	uint32_t type = snap_get_be32(jsb + 0x04);
	if (snap_get_be32(jsb) != JBD2_MAGIC ||
	    (type != JBD2_SUPERBLOCK_V1 && type != JBD2_SUPERBLOCK_V2) ||
	    snap_get_be32(jsb + 0x0c) != bs || snap_get_be32(jsb + 0x10) != lblk ||
	    snap_get_be32(jsb + 0x14) == 0 || snap_get_be32(jsb + 0x14) >= lblk ||
	    snap_get_be32(jsb + 0x1c) != 0)
		return 0;
	if (type == JBD2_SUPERBLOCK_V2) {
		uint32_t incompat = snap_get_be32(jsb + 0x28);
		if ((incompat & ~JBD2_INCOMPAT_KNOWN) || snap_get_be32(jsb + 0x40) > 1)
			return 0;
		if (incompat & (JBD2_INCOMPAT_CSUM_V2 | JBD2_INCOMPAT_CSUM_V3)) {
			static const uint8_t zero[4];
			uint32_t c = snap_crc32c(~0u, jsb, 0xfc);
			c = snap_crc32c(c, zero, 4);
			c = snap_crc32c(c, jsb + 0x100, sizeof(jsb) - 0x100);
			if (jsb[0x50] != 4 || c != snap_get_be32(jsb + 0xfc))
				return 0;
		}
	}
	for (uint16_t i = 0; i < n && r >= 0; i++) {
		uint64_t skip = i == 0 ? 1 : 0;
		if (ext[i].len > skip)
			r = ext4_zero_blocks(fs, ext[i].start + skip, ext[i].len - skip);
	}
	return r;
}

/* Invariant 8: inode-table blocks past every group's bg_itable_unused, as ZERO. */
static int ext4_zero_itables(struct ext4_fs *fs)
{
	uint32_t ipg = snap_get_le32(fs->sb + 0x28);
	uint64_t isize = ext4_inode_size(fs), itb = ext4_itable_blocks(fs);
	int r = 0;

	if (!fs->metadata_csum && !fs->gdt_csum)
		return 0;
	if (!ipg || ipg > 8 * fs->block_size || isize < 128 || isize > fs->block_size)
		return 0;
	for (uint32_t g = 0; g < fs->ngroups && r >= 0; g++) {
		const uint8_t *d = ext4_desc(fs, g);
		uint32_t unused = snap_get_le16(d + 0x1c), free_inodes = snap_get_le16(d + 0x0e);
		if (fs->desc_size >= 64) {
			unused |= (uint32_t)snap_get_le16(d + 0x32) << 16;
			free_inodes |= (uint32_t)snap_get_le16(d + 0x2e) << 16;
		}
		if (!unused || unused > ipg || unused > free_inodes)
			continue;
		uint32_t used = ipg - unused;
		if (!(snap_get_le16(d + 0x12) & EXT4_BG_INODE_UNINIT)) {
			const uint8_t *bitmap;
			r = ext4_window_block(fs, g, ext4_inode_bitmap, &bitmap);
			if (r < 0)
				break;
			if (fs->metadata_csum) {
				uint32_t c = snap_crc32c(fs->csum_seed, bitmap, ipg / 8);
				uint32_t want = snap_get_le16(d + 0x1a);
				if (fs->desc_size >= EXT4_DESC_IBITMAP_CSUM_HI_END)
					want |= (uint32_t)snap_get_le16(d + 0x3a) << 16;
				else
					c &= 0xffff;
				if (c != want)
					continue;
			}
			if (snap_bitmap_find(bitmap, ipg, used, true) < ipg)
				continue;
		}
		uint64_t first = ((uint64_t)used * isize + fs->block_size - 1) / fs->block_size;
		if (first < itb)
			r = ext4_zero_blocks(fs, ext4_inode_table(fs, g) + first, itb - first);
	}
	return r;
}

static int ext4_map(struct snap_fs_ctx *ctx)
{
	struct ext4_fs fs = {.ctx = ctx};
	uint64_t nfree = 0;
	int r;

	snap_fs_emitter_init(&fs.unused, ctx, ctx->mark_unused);
	snap_fs_emitter_init(&fs.pins, ctx, ctx->pin);
	if (ctx->mark_zero)
		snap_fs_emitter_init(&fs.zero, ctx, ctx->mark_zero);
	if (ctx->part_size < EXT4_SB_OFFSET + EXT4_SB_SIZE)
		return snap_fs_fail(ctx, -EUCLEAN, "ext4: partition too small for a superblock");
	r = ctx->read(ctx, EXT4_SB_OFFSET, fs.sb, EXT4_SB_SIZE);
	if (r < 0)
		return snap_fs_fail(ctx, r, "ext4: cannot read the superblock");
	r = ext4_check_super(&fs);
	if (r < 0)
		return r;
	fs.window = malloc(EXT4_WINDOW_BYTES > fs.block_size ? EXT4_WINDOW_BYTES : fs.block_size);
	if (!fs.window) {
		r = snap_fs_fail(ctx, -ENOMEM, "ext4: out of memory");
		goto out;
	}
	r = ext4_load_gdt(&fs);
	if (r >= 0)
		r = ext4_check_journal(&fs);
	if (r >= 0)
		r = ext4_pin_metadata(&fs);
	if (r >= 0)
		r = ext4_walk_groups(&fs, &nfree);
	if (r >= 0 && ctx->mark_zero) {
		r = ext4_zero_journal(&fs);
		if (r >= 0)
			r = ext4_zero_itables(&fs);
		if (r >= 0)
			r = snap_fs_emit_flush(&fs.zero);
	}
	if (r >= 0) {
		uint64_t clusters = (fs.blocks - fs.first_data_block + fs.ratio - 1) / fs.ratio;
		uint64_t used = clusters > nfree ? clusters - nfree : 0;
		ctx->used_bytes =
		    used * fs.ratio * fs.block_size + (uint64_t)fs.first_data_block * fs.block_size;
		if (!(snap_get_le16(fs.sb + 0x3a) & EXT4_STATE_VALID))
			snprintf(ctx->note, sizeof(ctx->note),
				 "ext4: not marked clean (mounted or frozen), journal empty");
	}
out:
	free(fs.window);
	free(fs.gdt);
	return r;
}

const struct snap_fs_driver snap_fs_ext2 = {.name = "ext2", .map = ext4_map};
const struct snap_fs_driver snap_fs_ext3 = {.name = "ext3", .map = ext4_map};
const struct snap_fs_driver snap_fs_ext4 = {.name = "ext4", .map = ext4_map};
