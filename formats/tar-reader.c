// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tar-reader.c - streaming reader of a one-member tar archive (invariants in tar-reader.h).
 *
 * State transitions (all in snap_tar_reader_push):
 *  1. HEADER: 512 bytes gathered -> zero block: END; 'L' / 'x' / 'g': META; 'S' with
 *     isextended: SPARSE_EXT; regular or sparse member: MAP10 (PAX sparse 1.0), DATA or PAD
 *     (begin_member); anything else: failed.
 *  2. META: the header's payload gathered, then its padding skipped -> HEADER (end_meta).
 *  3. SPARSE_EXT: 512-byte extension blocks until one has isextended clear -> DATA.
 *  4. MAP10: the decimal map at the start of the data, whole 512-byte blocks -> DATA.
 *  5. DATA: stored bytes handed to ops->data along the sparse map -> PAD.
 *  6. PAD: padding to the next 512-byte boundary -> HEADER (where only zero blocks may follow).
 *  7. END: zero bytes only; snap_tar_reader_finish() checks two zero blocks were seen.
 *  8. any -> FAILED on the first error (sticky).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tar-reader.h"

#define BLOCK 512
/* Caps on metadata, far above what any tar writes for one image file. */
#define MAX_LONGNAME (64u * 1024)
#define MAX_PAX (64u * 1024 * 1024)
#define MAX_MAP10 (64u * 1024 * 1024)
#define MAX_ENTRIES (16u * 1024 * 1024)

enum tr_state { TR_HEADER, TR_META, TR_SPARSE_EXT, TR_MAP10, TR_DATA, TR_PAD, TR_END, TR_FAILED };

struct sparse_entry {
	uint64_t offset, length;
};

struct snap_tar_reader {
	struct snap_tar_ops ops;
	void *userdata;
	enum tr_state state;
	int error;
	char detail[320];
	uint64_t pos; /* stream bytes consumed */

	uint8_t block[BLOCK]; /* header or extension block being gathered */
	size_t blen;

	/* META: payload of an 'L', 'x' or 'g' header */
	char meta_type;
	uint8_t *meta;
	uint64_t meta_len, meta_need, meta_pad;

	/* pending: set by 'L' and 'x' for the next header */
	char *longname;
	char *pax_path;
	bool pax_size_set;
	uint64_t pax_size;
	char *sparse_name;
	int sparse_major, sparse_minor; /* -1 when not given */
	bool sparse_realsize_set;
	uint64_t sparse_realsize;
	bool sparse_map_given; /* GNU.sparse.map or .offset/.numbytes (0.x) */
	bool pending_offset;   /* 0.0: an offset waits for its numbytes */
	uint64_t pending_offset_value;

	/* the member */
	int members;
	char *name;
	uint64_t size;	 /* real size */
	uint64_t stored; /* bytes of data stored (after the 1.0 map) */
	bool stored_known; /* stored is this member's (old-GNU: from its header, before its map) */
	uint64_t remaining;
	uint64_t pad;
	struct sparse_entry *map;
	size_t nmap, map_cap;
	bool map_ended; /* a zero-length entry came: only the real size may follow it */
	size_t cur;	 /* current map entry */
	uint64_t in_cur; /* bytes of the current entry done */

	/* MAP10 */
	uint64_t map10_total; /* stored bytes including the map */
	uint64_t map10_lines; /* newlines gathered so far */
	uint64_t map10_want;  /* lines the map has (1 + 2 * entries), 0 until known */

	int zero_blocks;
	uint64_t zero_bytes;
};

static int fail(struct snap_tar_reader *tr, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct snap_tar_reader *tr, int err, const char *fmt, ...)
{
	if (tr->state == TR_FAILED)
		return tr->error;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(tr->detail, sizeof(tr->detail), "tar stream at offset %llu: %s",
		 (unsigned long long)tr->pos, msg);
	tr->state = TR_FAILED;
	tr->error = err;
	return err;
}

int snap_tar_reader_new(const struct snap_tar_ops *ops, void *userdata,
			struct snap_tar_reader **ret)
{
	struct snap_tar_reader *tr = calloc(1, sizeof(*tr));
	if (!tr)
		return -ENOMEM;
	if (ops)
		tr->ops = *ops;
	tr->userdata = userdata;
	tr->sparse_major = tr->sparse_minor = -1;
	*ret = tr;
	return 0;
}

static void clear_pending(struct snap_tar_reader *tr)
{
	free(tr->longname);
	free(tr->pax_path);
	free(tr->sparse_name);
	tr->longname = tr->pax_path = tr->sparse_name = NULL;
	tr->pax_size_set = false;
	tr->sparse_major = tr->sparse_minor = -1;
	tr->sparse_realsize_set = false;
	tr->sparse_map_given = false;
	tr->pending_offset = false;
	tr->nmap = 0; /* the next member's map starts empty */
	tr->map_ended = false;
	tr->stored_known = false;
}

struct snap_tar_reader *snap_tar_reader_free(struct snap_tar_reader *tr)
{
	if (!tr)
		return NULL;
	clear_pending(tr);
	free(tr->meta);
	free(tr->name);
	free(tr->map);
	free(tr);
	return NULL;
}

const char *snap_tar_reader_error(const struct snap_tar_reader *tr)
{
	return tr->detail;
}

/* Octal (leading spaces, ended by space or NUL) or GNU base-256 (first byte 0x80). An empty
 * field is 0. Negative base-256 values and values of 2^63 or more are refused. */
static int parse_num(const uint8_t *p, size_t n, uint64_t *ret)
{
	uint64_t v = 0;
	if (p[0] & 0x80) {
		if (p[0] != 0x80)
			return -1; /* negative (0xff) or undefined */
		for (size_t i = 1; i < n; i++) {
			if (v >> 55)
				return -1;
			v = (v << 8) | p[i];
		}
		if (v >> 63)
			return -1;
		*ret = v;
		return 0;
	}
	size_t i = 0;
	while (i < n && p[i] == ' ')
		i++;
	for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = (v << 3) | (uint64_t)(p[i] - '0');
	}
	for (; i < n; i++)
		if (p[i] != ' ' && p[i] != 0)
			return -1;
	*ret = v;
	return 0;
}

/* Decimal, digits only, for PAX values and the 1.0 map. */
static int parse_dec(const char *s, size_t n, uint64_t *ret)
{
	uint64_t v = 0;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX >> 1) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*ret = v;
	return 0;
}

static bool is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Refuses names that would land outside a destination directory. */
static int check_name(struct snap_tar_reader *tr, const char *name)
{
	if (!name[0])
		return fail(tr, -EUCLEAN, "member has an empty name");
	if (name[0] == '/')
		return fail(tr, -EPERM, "refused member name '%.200s': absolute path", name);
	const char *p = name;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == 2 && p[0] == '.' && p[1] == '.')
			return fail(tr, -EPERM, "refused member name '%.200s': '..' component",
				    name);
		p += l;
		while (*p == '/')
			p++;
	}
	return 0;
}

static char *strndup_field(const uint8_t *p, size_t n)
{
	size_t l = strnlen((const char *)p, n);
	return strndup((const char *)p, l);
}

/* Entries are checked as they arrive, so a hostile map costs no memory before it is refused:
 * in order and disjoint; a zero-length entry (GNU tar ends old-GNU maps with one at the real
 * size) is the last and is not kept; and no more entries than the member stores bytes, when
 * that is known (each entry kept holds at least one stored byte). */
static int map_add(struct snap_tar_reader *tr, uint64_t off, uint64_t len)
{
	uint64_t end = tr->nmap ? tr->map[tr->nmap - 1].offset + tr->map[tr->nmap - 1].length : 0;
	if (tr->map_ended)
		return fail(tr, -EUCLEAN, "sparse map entry at %llu after a zero-length entry",
			    (unsigned long long)off);
	if (off < end)
		return fail(tr, -EUCLEAN,
			    "sparse map entry %zu at %llu is out of order or overlaps the one before",
			    tr->nmap, (unsigned long long)off);
	if (len == 0) {
		tr->map_ended = true;
		return 0;
	}
	if (len > UINT64_MAX - off)
		return fail(tr, -EUCLEAN, "sparse map entry at %llu is too long",
			    (unsigned long long)off);
	if (tr->stored_known && tr->nmap >= tr->stored)
		return fail(tr, -EUCLEAN,
			    "sparse map has more entries than its member stores bytes (%llu)",
			    (unsigned long long)tr->stored);
	if (tr->nmap >= MAX_ENTRIES)
		return fail(tr, -EUCLEAN, "sparse map has more than %u entries", MAX_ENTRIES);
	if (tr->nmap == tr->map_cap) {
		size_t cap = tr->map_cap ? tr->map_cap * 2 : 8;
		struct sparse_entry *n = realloc(tr->map, cap * sizeof(*n));
		if (!n)
			return fail(tr, -ENOMEM, "out of memory for the sparse map");
		tr->map = n;
		tr->map_cap = cap;
	}
	tr->map[tr->nmap++] = (struct sparse_entry){off, len};
	return 0;
}

/* Old-GNU sparse entries: n entries of 12-byte offset + 12-byte length; an entry whose offset
 * field starts with NUL ends the list. */
static int gnu_entries(struct snap_tar_reader *tr, const uint8_t *p, int n)
{
	for (int i = 0; i < n; i++, p += 24) {
		if (p[0] == 0)
			break;
		uint64_t off, len;
		if (parse_num(p, 12, &off) < 0 || parse_num(p + 12, 12, &len) < 0)
			return fail(tr, -EUCLEAN, "bad number in old-GNU sparse map entry");
		int r = map_add(tr, off, len);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Sorted, non-overlapping, inside the real size, and the lengths add up to the stored bytes. */
static int check_map(struct snap_tar_reader *tr)
{
	uint64_t end = 0, sum = 0;
	for (size_t i = 0; i < tr->nmap; i++) {
		struct sparse_entry *e = &tr->map[i];
		if (e->offset < end)
			return fail(tr, -EUCLEAN, "sparse map entry %zu at %llu is out of order", i,
				    (unsigned long long)e->offset);
		if (e->length > tr->size || e->offset > tr->size - e->length)
			return fail(tr, -EUCLEAN,
				    "sparse map entry %zu (%llu+%llu) is past the real size %llu",
				    i, (unsigned long long)e->offset, (unsigned long long)e->length,
				    (unsigned long long)tr->size);
		end = e->offset + e->length;
		sum += e->length;
	}
	if (sum != tr->stored)
		return fail(tr, -EUCLEAN, "sparse map covers %llu bytes but the member stores %llu",
			    (unsigned long long)sum, (unsigned long long)tr->stored);
	return 0;
}

static int start_data(struct snap_tar_reader *tr)
{
	int r = check_map(tr);
	if (r < 0)
		return r;
	tr->cur = 0;
	tr->in_cur = 0;
	tr->remaining = tr->stored;
	if (tr->ops.member) {
		r = tr->ops.member(tr->userdata, tr->name, tr->size);
		if (r < 0)
			return fail(tr, r, "member '%.200s' refused by the consumer", tr->name);
	}
	tr->state = tr->remaining ? TR_DATA : TR_PAD;
	return 0;
}

static uint64_t pad_of(uint64_t n)
{
	return (BLOCK - n % BLOCK) % BLOCK;
}

static int header_checksum_ok(const uint8_t *h)
{
	uint64_t want;
	if (parse_num(h + 148, 8, &want) < 0)
		return 0;
	unsigned long u = 0;
	long s = 0;
	for (int i = 0; i < BLOCK; i++) {
		uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];
		u += c;
		s += (signed char)c;
	}
	/* some historic tars summed signed chars */
	return want == u || (long)want == s;
}

static int parse_pax(struct snap_tar_reader *tr, bool global)
{
	const char *p = (const char *)tr->meta, *end = p + tr->meta_len;
	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		uint64_t rlen;
		if (!sp || parse_dec(p, (size_t)(sp - p), &rlen) < 0 || rlen < 5 ||
		    rlen > (uint64_t)(end - p) || p[rlen - 1] != '\n')
			return fail(tr, -EUCLEAN, "malformed PAX record");
		const char *kv = sp + 1, *rend = p + rlen - 1;
		const char *eq = memchr(kv, '=', (size_t)(rend - kv));
		if (!eq || eq == kv)
			return fail(tr, -EUCLEAN, "malformed PAX record");
		size_t klen = (size_t)(eq - kv);
		const char *v = eq + 1;
		size_t vlen = (size_t)(rend - v);
		p += rlen;
		if (global)
			continue; /* 'g' records describe the archive, not our member */
#define KEY(s) (klen == sizeof(s) - 1 && !memcmp(kv, s, klen))
		uint64_t n;
		if (KEY("path")) {
			free(tr->pax_path);
			tr->pax_path = strndup(v, vlen);
			if (!tr->pax_path)
				return fail(tr, -ENOMEM, "out of memory");
			if (strlen(tr->pax_path) != vlen)
				return fail(tr, -EUCLEAN, "PAX path contains a NUL byte");
		} else if (KEY("GNU.sparse.name")) {
			free(tr->sparse_name);
			tr->sparse_name = strndup(v, vlen);
			if (!tr->sparse_name)
				return fail(tr, -ENOMEM, "out of memory");
			if (strlen(tr->sparse_name) != vlen)
				return fail(tr, -EUCLEAN,
					    "PAX GNU.sparse.name contains a NUL byte");
		} else if (KEY("size")) {
			if (parse_dec(v, vlen, &n) < 0)
				return fail(tr, -EUCLEAN, "bad PAX size '%.*s'",
					    (int)(vlen > 40 ? 40 : vlen), v);
			tr->pax_size = n;
			tr->pax_size_set = true;
		} else if (KEY("GNU.sparse.size") || KEY("GNU.sparse.realsize")) {
			if (parse_dec(v, vlen, &n) < 0)
				return fail(tr, -EUCLEAN, "bad PAX sparse size");
			tr->sparse_realsize = n;
			tr->sparse_realsize_set = true;
		} else if (KEY("GNU.sparse.major") || KEY("GNU.sparse.minor")) {
			if (parse_dec(v, vlen, &n) < 0 || n > 1000)
				return fail(tr, -EUCLEAN, "bad PAX sparse version");
			if (KEY("GNU.sparse.major"))
				tr->sparse_major = (int)n;
			else
				tr->sparse_minor = (int)n;
		} else if (KEY("GNU.sparse.numblocks")) {
			if (parse_dec(v, vlen, &n) < 0 || n > MAX_ENTRIES)
				return fail(tr, -EUCLEAN, "bad PAX GNU.sparse.numblocks");
		} else if (KEY("GNU.sparse.offset")) {
			/* 0.0: offset/numbytes pairs, in order */
			if (parse_dec(v, vlen, &n) < 0 || tr->pending_offset)
				return fail(tr, -EUCLEAN, "bad PAX GNU.sparse.offset");
			tr->pending_offset = true;
			tr->pending_offset_value = n;
			tr->sparse_map_given = true;
		} else if (KEY("GNU.sparse.numbytes")) {
			if (parse_dec(v, vlen, &n) < 0 || !tr->pending_offset)
				return fail(tr, -EUCLEAN, "bad PAX GNU.sparse.numbytes");
			tr->pending_offset = false;
			int r = map_add(tr, tr->pending_offset_value, n);
			if (r < 0)
				return r;
		} else if (KEY("GNU.sparse.map")) {
			/* 0.1: "off,len,off,len,..." */
			const char *q = v, *qe = v + vlen;
			tr->sparse_map_given = true;
			tr->nmap = 0;
			tr->map_ended = false;
			while (q < qe) {
				uint64_t o, l;
				const char *c1 = memchr(q, ',', (size_t)(qe - q));
				if (!c1 || parse_dec(q, (size_t)(c1 - q), &o) < 0)
					return fail(tr, -EUCLEAN, "bad PAX GNU.sparse.map");
				q = c1 + 1;
				const char *c2 = memchr(q, ',', (size_t)(qe - q));
				const char *le = c2 ? c2 : qe;
				if (parse_dec(q, (size_t)(le - q), &l) < 0)
					return fail(tr, -EUCLEAN, "bad PAX GNU.sparse.map");
				int r = map_add(tr, o, l);
				if (r < 0)
					return r;
				q = c2 ? c2 + 1 : qe;
				if (c2 && q == qe)
					return fail(tr, -EUCLEAN, "bad PAX GNU.sparse.map");
			}
		}
#undef KEY
	}
	if (tr->pending_offset)
		return fail(tr, -EUCLEAN, "PAX GNU.sparse.offset without numbytes");
	return 0;
}

static int end_meta(struct snap_tar_reader *tr)
{
	int r = 0;
	if (tr->meta_type == 'L') {
		free(tr->longname);
		tr->longname = strndup_field(tr->meta, tr->meta_len);
		if (!tr->longname)
			return fail(tr, -ENOMEM, "out of memory");
	} else {
		r = parse_pax(tr, tr->meta_type == 'g');
	}
	free(tr->meta);
	tr->meta = NULL;
	return r;
}

static const char *type_name(char t)
{
	switch (t) {
	case '1':
		return "a hard link";
	case '2':
		return "a symbolic link";
	case '3':
		return "a character device";
	case '4':
		return "a block device";
	case '5':
		return "a directory";
	case '6':
		return "a FIFO";
	case 'K':
		return "a GNU long link name";
	case 'D':
		return "a GNU directory dump";
	case 'M':
		return "a GNU multi-volume continuation";
	case 'V':
		return "a GNU volume label";
	case 'N':
		return "an old GNU long name";
	default:
		return NULL;
	}
}

/* A regular or sparse member's header: names, size and map, then on to its data. */
static int begin_member(struct snap_tar_reader *tr, const uint8_t *h, char type, bool posix)
{
	int r;
	char hname[257];
	size_t nl = strnlen((const char *)h, 100);
	if (posix && h[345]) {
		size_t pl = strnlen((const char *)h + 345, 155);
		memcpy(hname, h + 345, pl);
		hname[pl] = '/';
		memcpy(hname + pl + 1, h, nl);
		hname[pl + 1 + nl] = 0;
	} else {
		memcpy(hname, h, nl);
		hname[nl] = 0;
	}
	/* every name the archive gives must be safe, whichever one a tar would use */
	if ((r = check_name(tr, hname)) < 0)
		return r;
	if (tr->longname && (r = check_name(tr, tr->longname)) < 0)
		return r;
	if (tr->pax_path && (r = check_name(tr, tr->pax_path)) < 0)
		return r;
	if (tr->sparse_name && (r = check_name(tr, tr->sparse_name)) < 0)
		return r;
	const char *name = tr->sparse_name ? tr->sparse_name
			   : tr->pax_path  ? tr->pax_path
			   : tr->longname  ? tr->longname
					   : hname;
	if (name[strlen(name) - 1] == '/')
		return fail(tr, -EOPNOTSUPP,
			    "member '%.200s' is a directory; only a regular file "
			    "can be restored",
			    name);
	tr->name = strdup(name);
	if (!tr->name)
		return fail(tr, -ENOMEM, "out of memory");
	tr->members++;

	uint64_t hsize;
	if (parse_num(h + 124, 12, &hsize) < 0)
		return fail(tr, -EUCLEAN, "bad size field in the header of '%.200s'", tr->name);
	uint64_t stored = tr->pax_size_set ? tr->pax_size : hsize;
	tr->pad = pad_of(stored);

	if (type == 'S') {
		uint64_t real;
		if (tr->sparse_major >= 0 || tr->sparse_map_given)
			return fail(tr, -EUCLEAN, "old-GNU sparse member with a PAX sparse map");
		if (parse_num(h + 483, 12, &real) < 0)
			return fail(tr, -EUCLEAN, "bad old-GNU realsize of '%.200s'", tr->name);
		tr->size = real;
		tr->stored = stored;
		tr->stored_known = true;
		if ((r = gnu_entries(tr, h + 386, 4)) < 0)
			return r;
		if (h[482]) {
			tr->state = TR_SPARSE_EXT;
			return 0;
		}
		return start_data(tr);
	}

	if (tr->sparse_major >= 0 || tr->sparse_minor >= 0) {
		if (tr->sparse_major != 1 || tr->sparse_minor != 0)
			return fail(tr, -EOPNOTSUPP, "PAX sparse format %d.%d is not supported",
				    tr->sparse_major, tr->sparse_minor);
		if (!tr->sparse_realsize_set)
			return fail(tr, -EUCLEAN, "PAX sparse 1.0 member without a real size");
		if (tr->sparse_map_given)
			return fail(tr, -EUCLEAN, "PAX sparse 1.0 member with a 0.x map");
		tr->size = tr->sparse_realsize;
		tr->map10_total = stored;
		tr->stored = stored; /* a bound for the map's entries until the map is read */
		tr->stored_known = true;
		tr->state = TR_MAP10;
		return 0;
	}
	if (tr->sparse_map_given) {
		if (!tr->sparse_realsize_set)
			return fail(tr, -EUCLEAN, "PAX sparse 0.x member without a real size");
		tr->size = tr->sparse_realsize;
		tr->stored = stored;
		return start_data(tr);
	}
	tr->size = stored;
	tr->stored = stored;
	tr->nmap = 0;
	if (stored && (r = map_add(tr, 0, stored)) < 0)
		return r;
	return start_data(tr);
}

static int on_header(struct snap_tar_reader *tr)
{
	const uint8_t *h = tr->block;
	if (is_zero(h, BLOCK)) {
		if (tr->longname || tr->pax_path || tr->sparse_major >= 0 || tr->sparse_map_given)
			return fail(tr, -EUCLEAN, "extended header not followed by a member");
		tr->zero_blocks = 1;
		tr->state = TR_END;
		return 0;
	}
	if (!header_checksum_ok(h))
		return fail(tr, -EBADMSG, "header checksum mismatch");
	if (tr->members > 0) {
		char nm[101];
		memcpy(nm, h, 100);
		nm[100] = 0;
		return fail(tr, -EOPNOTSUPP,
			    "the archive holds more than one member (next: '%.100s'); a bundle "
			    "holds exactly one image",
			    nm);
	}
	bool posix = !memcmp(h + 257, "ustar\0", 6);
	char type = (char)h[156];
	uint64_t size;
	switch (type) {
	case 'L':
	case 'x':
	case 'g':
		if (parse_num(h + 124, 12, &size) < 0)
			return fail(tr, -EUCLEAN, "bad size field in a '%c' header", type);
		if (type == 'L' && size > MAX_LONGNAME)
			return fail(tr, -EUCLEAN, "GNU long name of %llu bytes is too long",
				    (unsigned long long)size);
		if (type != 'L' && size > MAX_PAX)
			return fail(tr, -EUCLEAN, "PAX header of %llu bytes is too long",
				    (unsigned long long)size);
		if (type == 'L' && tr->longname)
			return fail(tr, -EUCLEAN, "two GNU long names in a row");
		tr->meta_type = type;
		tr->meta_len = 0;
		tr->meta_need = size;
		tr->meta_pad = pad_of(size);
		tr->meta = malloc(size ? size : 1);
		if (!tr->meta)
			return fail(tr, -ENOMEM, "out of memory");
		tr->state = TR_META;
		if (!size && !tr->meta_pad)
			tr->state = TR_META; /* end_meta runs on the next push step */
		return 0;
	case '0':
	case '\0':
	case '7':
	case 'S':
		return begin_member(tr, h, type, posix);
	default: {
		const char *what = type_name(type);
		char nm[101];
		memcpy(nm, h, 100);
		nm[100] = 0;
		if (what)
			return fail(tr, -EOPNOTSUPP,
				    "member '%.100s' is %s; only a regular file "
				    "can be restored",
				    nm, what);
		return fail(tr, -EOPNOTSUPP, "member '%.100s' has unknown type 0x%02x", nm,
			    (unsigned)(uint8_t)type);
	}
	}
}

/* MAP10: gathered map text; returns 1 when complete (and the data state is entered). */
static int try_map10(struct snap_tar_reader *tr)
{
	const char *p = (const char *)tr->meta, *end = p + tr->meta_len;
	uint64_t count = 0, vals = 0, want = 0;
	size_t nmap_start = 0;
	tr->nmap = nmap_start;
	uint64_t off = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		uint64_t v;
		if (parse_dec(p, (size_t)(nl - p), &v) < 0)
			return fail(tr, -EUCLEAN, "malformed PAX sparse 1.0 map");
		p = nl + 1;
		if (vals == 0) {
			count = v;
			if (count > MAX_ENTRIES)
				return fail(tr, -EUCLEAN, "PAX sparse 1.0 map is too large");
			want = 1 + 2 * count;
		} else if (vals % 2 == 1) {
			off = v;
		} else {
			int r = map_add(tr, off, v);
			if (r < 0)
				return r;
		}
		vals++;
		if (vals == want) {
			uint64_t used = (uint64_t)(p - (const char *)tr->meta);
			uint64_t block = used + pad_of(used);
			if (block > tr->meta_len)
				return 0; /* the rest of the block has not arrived */
			if (block > tr->map10_total)
				return fail(tr, -EUCLEAN,
					    "PAX sparse 1.0 map is larger than the member");
			if (!is_zero((const uint8_t *)p, (size_t)(block - used)))
				return fail(tr, -EUCLEAN, "PAX sparse 1.0 map padding is not zero");
			tr->stored = tr->map10_total - block;
			free(tr->meta);
			tr->meta = NULL;
			int r = start_data(tr);
			return r < 0 ? r : 1;
		}
	}
	tr->nmap = nmap_start;
	if (tr->meta_len >= tr->map10_total)
		return fail(tr, -EUCLEAN, "PAX sparse 1.0 map runs past the member data");
	if (tr->meta_len >= MAX_MAP10)
		return fail(tr, -EUCLEAN, "PAX sparse 1.0 map is too large");
	return 0;
}

/* DATA: hands up to len bytes to ops->data along the map; returns bytes consumed. */
static int64_t feed_data(struct snap_tar_reader *tr, const uint8_t *buf, size_t len)
{
	size_t done = 0;
	while (done < len && tr->remaining) {
		while (tr->cur < tr->nmap && tr->in_cur == tr->map[tr->cur].length) {
			tr->cur++;
			tr->in_cur = 0;
		}
		/* check_map guarantees an entry with room while bytes remain */
		struct sparse_entry *e = &tr->map[tr->cur];
		uint64_t n = e->length - tr->in_cur;
		if (n > len - done)
			n = len - done;
		if (tr->ops.data) {
			int r = tr->ops.data(tr->userdata, e->offset + tr->in_cur, buf + done,
					     (size_t)n);
			if (r < 0)
				return fail(tr, r, "consumer failed at member offset %llu",
					    (unsigned long long)(e->offset + tr->in_cur));
		}
		tr->in_cur += n;
		tr->remaining -= n;
		done += (size_t)n;
		tr->pos += n;
	}
	if (!tr->remaining)
		tr->state = TR_PAD;
	return (int64_t)done;
}

int snap_tar_reader_push(struct snap_tar_reader *tr, const uint8_t *buf, size_t len)
{
	size_t i = 0;
	int r;
	while (i < len ||
	       (tr->state == TR_META && tr->meta_len == tr->meta_need && tr->meta_pad == 0)) {
		if (tr->state == TR_FAILED)
			return tr->error;
		size_t avail = len - i;
		switch (tr->state) {
		case TR_HEADER:
		case TR_SPARSE_EXT: {
			size_t n = BLOCK - tr->blen;
			if (n > avail)
				n = avail;
			memcpy(tr->block + tr->blen, buf + i, n);
			tr->blen += n;
			i += n;
			if (tr->blen < BLOCK) {
				tr->pos += n;
				break;
			}
			tr->blen = 0;
			uint64_t hdr_at = tr->pos + n - BLOCK;
			uint64_t save = tr->pos;
			tr->pos = hdr_at; /* errors name the header's offset */
			if (tr->state == TR_HEADER) {
				r = on_header(tr);
			} else {
				r = gnu_entries(tr, tr->block, 21);
				if (r >= 0 && !tr->block[504])
					r = start_data(tr);
			}
			if (r < 0)
				return r;
			tr->pos = save + n;
			break;
		}
		case TR_META: {
			if (tr->meta_len < tr->meta_need) {
				uint64_t n = tr->meta_need - tr->meta_len;
				if (n > avail)
					n = avail;
				memcpy(tr->meta + tr->meta_len, buf + i, (size_t)n);
				tr->meta_len += n;
				i += (size_t)n;
				tr->pos += n;
			} else if (tr->meta_pad) {
				uint64_t n = tr->meta_pad < avail ? tr->meta_pad : avail;
				i += (size_t)n;
				tr->pos += n;
				tr->meta_pad -= n;
			}
			if (tr->meta_len == tr->meta_need && tr->meta_pad == 0) {
				tr->state = TR_HEADER;
				if ((r = end_meta(tr)) < 0)
					return r;
			}
			break;
		}
		case TR_MAP10: {
			/* gather whole blocks; the map ends on a block boundary */
			if (!tr->meta) {
				tr->meta = malloc(BLOCK);
				tr->meta_len = 0;
				tr->meta_need = BLOCK;
				tr->map10_lines = 0;
				tr->map10_want = 0;
				if (!tr->meta)
					return fail(tr, -ENOMEM, "out of memory");
			}
			if (tr->meta_len == tr->meta_need) {
				if (tr->meta_need >= MAX_MAP10)
					return fail(tr, -EUCLEAN,
						    "PAX sparse 1.0 map is too large");
				uint8_t *n = realloc(tr->meta, (size_t)tr->meta_need * 2);
				if (!n)
					return fail(tr, -ENOMEM, "out of memory");
				tr->meta = n;
				tr->meta_need *= 2;
			}
			uint64_t blk_left = BLOCK - tr->meta_len % BLOCK;
			uint64_t n = blk_left < avail ? blk_left : avail;
			if (tr->meta_len + n > tr->map10_total)
				n = tr->map10_total - tr->meta_len;
			if (n == 0)
				return fail(tr, -EUCLEAN,
					    "PAX sparse 1.0 map runs past the member");
			memcpy(tr->meta + tr->meta_len, buf + i, (size_t)n);
			for (uint64_t k = 0; k < n; k++)
				tr->map10_lines += buf[i + k] == '\n';
			tr->meta_len += n;
			i += (size_t)n;
			tr->pos += n;
			if (!tr->map10_want && tr->map10_lines) {
				/* the first line is the entry count */
				const char *t = (const char *)tr->meta;
				const char *nl = memchr(t, '\n', (size_t)tr->meta_len);
				uint64_t count;
				if (parse_dec(t, (size_t)(nl - t), &count) < 0 ||
				    count > MAX_ENTRIES)
					return fail(tr, -EUCLEAN, "malformed PAX sparse 1.0 map");
				tr->map10_want = 1 + 2 * count;
			}
			bool at_end = tr->meta_len % BLOCK == 0 || tr->meta_len == tr->map10_total;
			if (at_end && ((tr->map10_want && tr->map10_lines >= tr->map10_want) ||
				       tr->meta_len == tr->map10_total)) {
				r = try_map10(tr);
				if (r < 0)
					return r;
			}
			break;
		}
		case TR_DATA: {
			int64_t n = feed_data(tr, buf + i, avail);
			if (n < 0)
				return (int)n;
			i += (size_t)n;
			break;
		}
		case TR_PAD: {
			uint64_t n = tr->pad < avail ? tr->pad : avail;
			i += (size_t)n;
			tr->pos += n;
			tr->pad -= n;
			if (!tr->pad) {
				clear_pending(tr);
				tr->state = TR_HEADER;
			}
			break;
		}
		case TR_END: {
			if (!is_zero(buf + i, avail)) {
				size_t k = 0;
				while (!buf[i + k])
					k++;
				tr->pos += k;
				return fail(tr, -EOPNOTSUPP,
					    "data after the end-of-archive blocks; a bundle holds "
					    "exactly one image");
			}
			/* count completed zero blocks after the first one */
			uint64_t before = tr->zero_bytes;
			tr->zero_bytes += avail;
			if (tr->zero_blocks < 2 && tr->zero_bytes / BLOCK > before / BLOCK)
				tr->zero_blocks = 2;
			tr->pos += avail;
			i = len;
			break;
		}
		case TR_FAILED:
			return tr->error;
		}
	}
	return tr->state == TR_FAILED ? tr->error : 0;
}

int snap_tar_reader_finish(struct snap_tar_reader *tr)
{
	if (tr->state == TR_FAILED)
		return tr->error;
	if (tr->state != TR_END && tr->state != TR_HEADER)
		return fail(tr, -EUCLEAN, "archive is truncated inside %s",
			    tr->members ? "the member" : "a header");
	if (tr->state == TR_HEADER && tr->blen)
		return fail(tr, -EUCLEAN, "archive is truncated inside a header");
	if (!tr->members)
		return fail(tr, -EUCLEAN, "archive holds no member");
	if (tr->state != TR_END || tr->zero_blocks < 2)
		return fail(tr, -EUCLEAN, "archive is truncated: end-of-archive blocks missing");
	return 0;
}
