// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * sparse-tar.c - old-GNU tar headers for the one member of a bundle (see sparse-tar.h for the
 * stream layout). Field offsets are those of GNU tar's `struct oldgnu_header`; a test compares
 * our bytes with what GNU tar itself writes.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "sparse-tar.h"

/* Offsets inside a 512-byte old-GNU header block. */
enum {
	H_NAME = 0,
	H_MODE = 100,
	H_UID = 108,
	H_GID = 116,
	H_SIZE = 124,
	H_MTIME = 136,
	H_CHKSUM = 148,
	H_TYPEFLAG = 156,
	H_MAGIC = 257, /* "ustar  \0": old-GNU magic and version together */
	H_UNAME = 265,
	H_GNAME = 297,
	H_SPARSE = 386, /* 4 entries of offset[12] + numbytes[12] */
	H_ISEXTENDED = 482,
	H_REALSIZE = 483,
};
#define HEADER_SPARSE_ENTRIES 4
#define EXT_SPARSE_ENTRIES 21 /* an extension block: 21 * 24 bytes, then isextended at 504 */
#define EXT_ISEXTENDED 504
#define NAME_FIELD 100

_Static_assert(H_SPARSE + HEADER_SPARSE_ENTRIES * 24 == H_ISEXTENDED, "old-GNU header layout");
_Static_assert(EXT_SPARSE_ENTRIES * 24 == EXT_ISEXTENDED, "old-GNU extension block layout");

void snap_tar_number(uint8_t *field, size_t width, uint64_t value)
{
	/* width - 1 octal digits hold values below 8^(width-1) */
	unsigned bits = 3u * (unsigned)(width - 1);
	if (bits >= 64 || value < (1ull << bits)) {
		field[width - 1] = 0;
		for (size_t i = width - 1; i-- > 0;) {
			field[i] = (uint8_t)('0' + (value & 7));
			value >>= 3;
		}
		return;
	}
	/* GNU base-256: 0x80 marks it, the value is big-endian in the remaining bytes */
	memset(field, 0, width);
	field[0] = 0x80;
	for (size_t i = width - 1; i > 0 && value; i--) {
		field[i] = (uint8_t)(value & 0xff);
		value >>= 8;
	}
}

int snap_tar_member_check(const struct snap_tar_member *m)
{
	if (!m || !m->name || !m->name[0] || (m->nregions && !m->regions))
		return -EINVAL;
	uint64_t end = 0;
	for (size_t i = 0; i < m->nregions; i++) {
		const struct snap_tar_region *r = &m->regions[i];
		if (r->length == 0 || r->offset < end || r->offset > m->realsize ||
		    r->length > m->realsize - r->offset)
			return -EINVAL;
		end = r->offset + r->length;
	}
	return 0;
}

int snap_tar_member_is_sparse(const struct snap_tar_member *m)
{
	if (m->nregions == 0)
		return m->realsize != 0;
	return !(m->nregions == 1 && m->regions[0].offset == 0 &&
		 m->regions[0].length == m->realsize);
}

/* Map entries of a sparse member: the regions plus the terminating zero-length entry. */
static size_t map_entries(const struct snap_tar_member *m)
{
	return m->nregions + 1;
}

static size_t ext_blocks(const struct snap_tar_member *m)
{
	if (!snap_tar_member_is_sparse(m))
		return 0;
	size_t n = map_entries(m);
	if (n <= HEADER_SPARSE_ENTRIES)
		return 0;
	return (n - HEADER_SPARSE_ENTRIES + EXT_SPARSE_ENTRIES - 1) / EXT_SPARSE_ENTRIES;
}

static size_t longname_blocks(const struct snap_tar_member *m)
{
	size_t len = strlen(m->name);
	if (len < NAME_FIELD)
		return 0;
	return 1 + (len + 1 + SNAP_TAR_BLOCK - 1) / SNAP_TAR_BLOCK;
}

size_t snap_tar_header_size(const struct snap_tar_member *m)
{
	return (longname_blocks(m) + 1 + ext_blocks(m)) * SNAP_TAR_BLOCK;
}

uint64_t snap_tar_stored_size(const struct snap_tar_member *m)
{
	uint64_t s = 0;
	for (size_t i = 0; i < m->nregions; i++)
		s += m->regions[i].length;
	return s;
}

uint64_t snap_tar_trailer_size(uint64_t header_and_stored)
{
	uint64_t pos = (header_and_stored + SNAP_TAR_BLOCK - 1) / SNAP_TAR_BLOCK * SNAP_TAR_BLOCK;
	pos += 2 * SNAP_TAR_BLOCK; /* end-of-archive */
	pos = (pos + SNAP_TAR_RECORD - 1) / SNAP_TAR_RECORD * SNAP_TAR_RECORD;
	return pos - header_and_stored;
}

uint64_t snap_tar_stream_size(const struct snap_tar_member *m)
{
	uint64_t hs = snap_tar_header_size(m) + snap_tar_stored_size(m);
	return hs + snap_tar_trailer_size(hs);
}

static void finish_checksum(uint8_t *h)
{
	memset(h + H_CHKSUM, ' ', 8);
	unsigned sum = 0;
	for (unsigned i = 0; i < SNAP_TAR_BLOCK; i++)
		sum += h[i];
	/* GNU tar: six octal digits, NUL, space */
	char tmp[8];
	snprintf(tmp, sizeof(tmp), "%06o", sum & 0777777u);
	memcpy(h + H_CHKSUM, tmp, 6);
	h[H_CHKSUM + 6] = 0;
	h[H_CHKSUM + 7] = ' ';
}

/* The fields every header of ours shares; name is copied up to 100 bytes (no NUL needed). */
static void fill_common(uint8_t *h, const char *name, uint32_t mode, uint64_t size, uint64_t mtime,
			char typeflag)
{
	memset(h, 0, SNAP_TAR_BLOCK);
	size_t len = strlen(name);
	memcpy(h + H_NAME, name, len < NAME_FIELD ? len : NAME_FIELD);
	snap_tar_number(h + H_MODE, 8, mode & 07777);
	snap_tar_number(h + H_UID, 8, 0);
	snap_tar_number(h + H_GID, 8, 0);
	snap_tar_number(h + H_SIZE, 12, size);
	snap_tar_number(h + H_MTIME, 12, mtime);
	h[H_TYPEFLAG] = (uint8_t)typeflag;
	memcpy(h + H_MAGIC, "ustar  ", 8); /* with its NUL: old-GNU magic + version */
	memcpy(h + H_UNAME, "root", 4);
	memcpy(h + H_GNAME, "root", 4);
}

static void put_entry(uint8_t *p, uint64_t offset, uint64_t length)
{
	snap_tar_number(p, 12, offset);
	snap_tar_number(p + 12, 12, length);
}

int snap_tar_write_header(const struct snap_tar_member *m, uint8_t *buf, size_t len)
{
	int r = snap_tar_member_check(m);
	if (r < 0)
		return r;
	size_t need = snap_tar_header_size(m);
	if (len < need)
		return -ENOBUFS;
	memset(buf, 0, need);
	uint8_t *h = buf;
	uint64_t mtime = m->mtime < 0 ? 0 : (uint64_t)m->mtime;

	size_t namelen = strlen(m->name);
	if (longname_blocks(m)) {
		/* GNU's long-name member: the name with its NUL as the contents */
		fill_common(h, "././@LongLink", 0644, namelen + 1, 0, 'L');
		finish_checksum(h);
		memcpy(h + SNAP_TAR_BLOCK, m->name, namelen);
		h += longname_blocks(m) * SNAP_TAR_BLOCK;
	}

	bool sparse = snap_tar_member_is_sparse(m);
	fill_common(h, m->name, m->mode, sparse ? snap_tar_stored_size(m) : m->realsize, mtime,
		    sparse ? 'S' : '0');
	if (!sparse) {
		finish_checksum(h);
		return 0;
	}

	size_t n = map_entries(m), next = 0;
	for (; next < n && next < HEADER_SPARSE_ENTRIES; next++) {
		uint8_t *e = h + H_SPARSE + next * 24;
		if (next < m->nregions)
			put_entry(e, m->regions[next].offset, m->regions[next].length);
		else
			put_entry(e, m->realsize, 0);
	}
	h[H_ISEXTENDED] = next < n ? 1 : 0;
	snap_tar_number(h + H_REALSIZE, 12, m->realsize);
	finish_checksum(h);

	uint8_t *x = h + SNAP_TAR_BLOCK;
	while (next < n) {
		for (unsigned i = 0; i < EXT_SPARSE_ENTRIES && next < n; i++, next++) {
			if (next < m->nregions)
				put_entry(x + i * 24, m->regions[next].offset,
					  m->regions[next].length);
			else
				put_entry(x + i * 24, m->realsize, 0);
		}
		x[EXT_ISEXTENDED] = next < n ? 1 : 0;
		x += SNAP_TAR_BLOCK;
	}
	return 0;
}
