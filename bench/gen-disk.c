// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * gen-disk.c - a disk image of realistic content for the benchmark, written in C in one pass
 * (no mkfs, no root, no loop device).
 *
 * Invariants:
 *  1. The image is a sparse file of exactly size bytes (rounded down to a MiB, at least 16 MiB)
 *     with a valid GPT (protective MBR, primary and backup headers and entry arrays, CRC-32s)
 *     that sfdisk and libfdisk read without complaint.
 *  2. Content is deterministic: the same size always gives the same bytes (a fixed-seed
 *     xoshiro256** generator), so runs on different machines compare.
 *  3. Every kind of region a real disk has is present, in proportions of a used server disk:
 *       p1 "EFI System"  (3 %):  text-like and binary-like files, holes
 *       p2 "root"        (55 %): text (logs, sources, configs), binaries, some already
 *                                compressed data, written zero blocks, holes (never written)
 *       unpartitioned    (4 %):  deleted junk (random and text) that no partition covers,
 *                                which the partition-table layer marks UNUSED
 *       p3 "data"        (28 %): already-compressed media, binaries, text, holes
 *       the rest:                unpartitioned free space, a hole
 *  4. Text compresses about 3x with deflate, binary-like data about 1.6x, "compressed" data
 *     (uniform random bytes) not at all: the mix the compressor and the model meet in practice.
 *  5. With uniform, every partition gets the root partition's mix, so the content does not
 *     change along the disk: a long run's rate can then be compared between its first and
 *     last quarter without the data deciding the difference.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "bench.h"

#define MIB (1024ull * 1024ull)
#define SECTOR 512ull
#define GPT_ENTRIES 128
#define GPT_ENTRY_SIZE 128
#define GPT_ARRAY_SECTORS (GPT_ENTRIES * GPT_ENTRY_SIZE / SECTOR)

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

static inline unsigned rng_below(struct rng *r, unsigned n)
{
	return (unsigned)(((rng_next(r) >> 32) * n) >> 32);
}

static void fill_random(struct rng *r, uint8_t *buf, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = rng_next(r);
		memcpy(buf + i, &v, 8);
	}
	for (; i < len; i++)
		buf[i] = (uint8_t)rng_next(r);
}

static const char *const words[] = {
    "the",	   "of",	  "and",	 "to",
    "in",	   "is",	  "for",	 "on",
    "with",	   "as",	  "error",	 "warning",
    "info",	   "debug",	  "kernel",	 "systemd",
    "started",	   "stopped",	  "session",	 "user",
    "root",	   "connection",  "from",	 "port",
    "accepted",	   "publickey",	  "closed",	 "received",
    "request",	   "GET",	  "POST",	 "/api/v1/items",
    "/index.html", "HTTP/1.1",	  "200",	 "404",
    "500",	   "ms",	  "bytes",	 "static",
    "const",	   "int",	  "return",	 "if",
    "else",	   "struct",	  "void",	 "char",
    "unsigned",	   "size_t",	  "uint64_t",	 "#include",
    "<stdio.h>",   "{",		  "}",		 "(",
    ")",	   ";",		  "=",		 "==",
    "!=",	   "->",	  "buffer",	 "length",
    "offset",	   "device",	  "partition",	 "filesystem",
    "mount",	   "ext4",	  "xfs",	 "nvme0n1",
    "eth0",	   "link",	  "up",		 "down",
    "dhcp",	   "lease",	  "address",	 "10.0.0.12",
    "192.168.1.1", "cron",	  "job",	 "completed",
    "failed",	   "retry",	  "timeout",	 "config",
    "value",	   "true",	  "false",	 "null",
    "name",	   "version",	  "package",	 "install",
    "upgrade",	   "libc6",	  "openssl",	 "python3",
    "def",	   "self",	  "import",	 "class",
    "function",	   "var",	  "let",	 "export",
    "module",	   "require",	  "console.log", "print",
    "Lorem",	   "ipsum",	  "dolor",	 "sit",
    "amet",	   "consectetur", "adipiscing",	 "elit",
    "sed",	   "do",	  "eiusmod",	 "tempor",
    "incididunt",  "ut",	  "labore",	 "et",
    "dolore",	   "magna",	  "aliqua",	 "worker",
    "thread",	   "queue",	  "memory",	 "allocated",
    "freed",	   "cache",	  "hit",	 "miss",
    "latency",	   "throughput",  "MB/s",	 "checksum",
    "verified",	   "snapshot",	  "backup",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

/* Log lines, source code and prose: about 3-4x with deflate. */
static void fill_text(struct rng *r, uint8_t *buf, size_t len)
{
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	size_t i = 0;
	while (i < len) {
		char line[512];
		int n = snprintf(line, sizeof(line),
				 "%s %2u %02u:%02u:%02u host%u svc[%u]: ", months[rng_below(r, 12)],
				 1 + rng_below(r, 28), rng_below(r, 24), rng_below(r, 60),
				 rng_below(r, 60), rng_below(r, 4), 100 + rng_below(r, 30000));
		unsigned nw = 4 + rng_below(r, 12);
		for (unsigned w = 0; w < nw && n < 440; w++) {
			const char *s = words[rng_below(r, NWORDS)];
			size_t l = strlen(s);
			memcpy(line + n, s, l);
			n += (int)l;
			line[n++] = ' ';
		}
		line[n - 1] = '\n';
		size_t c = (size_t)n < len - i ? (size_t)n : len - i;
		memcpy(buf + i, line, c);
		i += c;
	}
}

/* Machine-code-like bytes: common opcodes and prefixes with low-entropy operands and the odd
 * random immediate, plus string tables: about 2x with deflate. */
static void fill_binary(struct rng *r, uint8_t *buf, size_t len)
{
	static const uint8_t ops[][4] = {
	    {0x48, 0x89, 0xe5, 0}, {0x48, 0x8b, 0x45, 0}, {0x48, 0x83, 0xec, 0}, {0xe8, 0, 0, 0},
	    {0x0f, 0x1f, 0x44, 0}, {0x89, 0xc7, 0, 0},	  {0x31, 0xc0, 0, 0},	 {0x74, 0, 0, 0},
	    {0x75, 0, 0, 0},	   {0xc3, 0, 0, 0},	  {0x55, 0, 0, 0},	 {0x5d, 0, 0, 0},
	    {0x41, 0x54, 0, 0},	   {0x48, 0x8d, 0x3d, 0}, {0xff, 0x15, 0, 0},	 {0x0f, 0x84, 0, 0},
	};
	static const uint8_t oplen[] = {3, 3, 3, 1, 3, 2, 2, 1, 1, 1, 1, 1, 2, 3, 2, 2};
	static const uint8_t imm_len[] = {1, 1, 1, 4, 1, 0, 0, 1, 1, 0, 0, 0, 0, 4, 4, 4};
	size_t i = 0;
	while (i < len) {
		if (rng_below(r, 64) == 0) { /* a string table entry */
			const char *s = words[rng_below(r, NWORDS)];
			size_t l = strlen(s) + 1;
			size_t c = l < len - i ? l : len - i;
			memcpy(buf + i, s, c);
			i += c;
			continue;
		}
		unsigned o = rng_below(r, 16);
		uint8_t ins[8];
		size_t n = oplen[o];
		memcpy(ins, ops[o], n);
		uint64_t v = rng_next(r);
		for (unsigned k = 0; k < imm_len[o]; k++) {
			/* displacements are mostly small, addresses share their high bytes */
			uint8_t b = (uint8_t)(v >> (8 * k));
			ins[n++] = k == 0 ? b : (k == 1 ? (b & 0x0f) : 0);
		}
		size_t c = n < len - i ? n : len - i;
		memcpy(buf + i, ins, c);
		i += c;
	}
}

enum seg_kind { SEG_TEXT, SEG_BINARY, SEG_COMPRESSED, SEG_ZEROS, SEG_HOLE, SEG_KINDS };

struct region {
	uint64_t start, length;
	unsigned weight[SEG_KINDS]; /* percent by kind */
};

static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int fill_region(int fd, struct rng *r, const struct region *reg, uint64_t seg, uint8_t *buf)
{
	for (uint64_t off = reg->start; off < reg->start + reg->length; off += seg) {
		uint64_t len =
		    reg->start + reg->length - off < seg ? reg->start + reg->length - off : seg;
		unsigned pick = rng_below(r, 100), kind = 0, acc = 0;
		for (kind = 0; kind < SEG_KINDS - 1; kind++) {
			acc += reg->weight[kind];
			if (pick < acc)
				break;
		}
		if (kind == SEG_HOLE)
			continue;
		for (uint64_t o = 0; o < len; o += MIB) {
			size_t n = len - o < MIB ? (size_t)(len - o) : (size_t)MIB;
			switch (kind) {
			case SEG_TEXT:
				fill_text(r, buf, n);
				break;
			case SEG_BINARY:
				fill_binary(r, buf, n);
				break;
			case SEG_COMPRESSED:
				fill_random(r, buf, n);
				break;
			default:
				memset(buf, 0, n);
				break;
			}
			int ret = write_all(fd, buf, n, off + o);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" -> the GPT on-disk byte order (first three fields
 * little-endian). */
static void put_guid(uint8_t *p, const char *s)
{
	uint8_t b[16];
	for (int i = 0, j = 0; i < 16; j++) {
		if (s[j] == '-')
			continue;
		char h[3] = {s[j], s[j + 1], 0};
		b[i++] = (uint8_t)strtoul(h, NULL, 16);
		j++;
	}
	static const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
	for (int i = 0; i < 16; i++)
		p[i] = b[order[i]];
}

static void random_guid(struct rng *r, uint8_t *p)
{
	fill_random(r, p, 16);
	p[7] = (uint8_t)((p[7] & 0x0f) | 0x40); /* version 4 (byte 7 is the high byte of field 3) */
	p[8] = (uint8_t)((p[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

struct gpt_part {
	const char *type;
	const char *name;
	uint64_t start, length; /* bytes */
};

static int write_gpt(int fd, struct rng *r, uint64_t size, const struct gpt_part *parts,
		     size_t nparts)
{
	uint64_t last_lba = size / SECTOR - 1;
	uint8_t mbr[SECTOR] = {0};
	uint8_t *pe = mbr + 446;
	pe[1] = 0x00, pe[2] = 0x02, pe[3] = 0x00; /* CHS of LBA 1 */
	pe[4] = 0xee;
	pe[5] = pe[6] = pe[7] = 0xff;
	put_le32(pe + 8, 1);
	put_le32(pe + 12, last_lba > 0xffffffffull ? 0xffffffffu : (uint32_t)last_lba);
	mbr[510] = 0x55;
	mbr[511] = 0xaa;

	static uint8_t entries[GPT_ENTRIES * GPT_ENTRY_SIZE];
	memset(entries, 0, sizeof(entries));
	for (size_t i = 0; i < nparts; i++) {
		uint8_t *e = entries + i * GPT_ENTRY_SIZE;
		put_guid(e, parts[i].type);
		random_guid(r, e + 16);
		put_le64(e + 32, parts[i].start / SECTOR);
		put_le64(e + 40, (parts[i].start + parts[i].length) / SECTOR - 1);
		for (size_t c = 0; parts[i].name[c] && c < 36; c++)
			put_le16(e + 56 + 2 * c, (uint16_t)parts[i].name[c]);
	}
	uint32_t entries_crc = (uint32_t)crc32(0, entries, sizeof(entries));

	uint8_t guid[16];
	random_guid(r, guid);
	int ret;
	for (int backup = 0; backup < 2; backup++) {
		uint8_t hdr[SECTOR] = {0};
		uint64_t my = backup ? last_lba : 1, alt = backup ? 1 : last_lba;
		uint64_t array = backup ? last_lba - GPT_ARRAY_SECTORS : 2;
		memcpy(hdr, "EFI PART", 8);
		put_le32(hdr + 8, 0x00010000);
		put_le32(hdr + 12, 92);
		put_le64(hdr + 24, my);
		put_le64(hdr + 32, alt);
		put_le64(hdr + 40, 2 + GPT_ARRAY_SECTORS);
		put_le64(hdr + 48, last_lba - GPT_ARRAY_SECTORS - 1);
		memcpy(hdr + 56, guid, 16);
		put_le64(hdr + 72, array);
		put_le32(hdr + 80, GPT_ENTRIES);
		put_le32(hdr + 84, GPT_ENTRY_SIZE);
		put_le32(hdr + 88, entries_crc);
		put_le32(hdr + 16, (uint32_t)crc32(0, hdr, 92));
		ret = write_all(fd, hdr, SECTOR, my * SECTOR);
		if (ret < 0)
			return ret;
		ret = write_all(fd, entries, sizeof(entries), array * SECTOR);
		if (ret < 0)
			return ret;
	}
	return write_all(fd, mbr, SECTOR, 0);
}

int bench_gen_disk(const char *path, uint64_t size, bool uniform, char **ret_detail)
{
	size = size / MIB * MIB;
	if (size < 16 * MIB) {
		if (ret_detail &&
		    asprintf(ret_detail, "a generated disk needs at least 16 MiB") < 0)
			*ret_detail = NULL;
		return -EINVAL;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		if (ret_detail &&
		    asprintf(ret_detail, "cannot create %s: %s", path, strerror(e)) < 0)
			*ret_detail = NULL;
		return -e;
	}
	uint8_t *buf = malloc(MIB);
	int ret = buf ? 0 : -ENOMEM;
	if (ret == 0 && ftruncate(fd, (off_t)size) < 0)
		ret = -errno;

	/* Proportions of invariant 3, in whole MiB. */
	uint64_t mib = size / MIB;
	uint64_t p1 = mib * 3 / 100 ? mib * 3 / 100 : 1;
	uint64_t p2 = mib * 55 / 100;
	uint64_t gap = mib * 4 / 100 ? mib * 4 / 100 : 1;
	uint64_t p3 = mib * 28 / 100;
	const struct gpt_part parts[] = {
	    {"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI System", 1 * MIB, p1 * MIB},
	    {"4F68BCE3-E8CD-4C31-B157-9C11E88CFC3F", "root", (1 + p1) * MIB, p2 * MIB},
	    {"0FC63DAF-8483-4772-8E79-3D69D8477DE4", "data", (1 + p1 + p2 + gap) * MIB, p3 * MIB},
	};
	/* Segments of 1/256 of the disk, between 256 KiB and 4 MiB: holes stay longer than the
	 * 64 KiB gap merging of the extent map. */
	uint64_t seg = size / 256;
	seg = seg < 256 * 1024 ? 256 * 1024 : seg > 4 * MIB ? 4 * MIB : seg;
	seg = seg / (64 * 1024) * (64 * 1024);
	struct region regions[] = {
	    {parts[0].start, parts[0].length, {45, 25, 0, 0, 30}},
	    {parts[1].start, parts[1].length, {35, 20, 10, 10, 25}},
	    {parts[1].start + parts[1].length, gap * MIB, {30, 0, 70, 0, 0}},
	    {parts[2].start, parts[2].length, {15, 15, 40, 0, 30}},
	};
	/* invariant 5: the root partition's mix in every partition */
	for (size_t i = 0; uniform && i < sizeof(regions) / sizeof(regions[0]); i++)
		if (i != 2)
			memcpy(regions[i].weight, regions[1].weight, sizeof(regions[i].weight));
	struct rng r;
	rng_seed(&r, 0x736e617062756e64ull ^ size); /* "snapbund" */
	for (size_t i = 0; ret == 0 && i < sizeof(regions) / sizeof(regions[0]); i++)
		ret = fill_region(fd, &r, &regions[i], seg, buf);
	if (ret == 0)
		ret = write_gpt(fd, &r, size, parts, sizeof(parts) / sizeof(parts[0]));
	/* On disk before anything is timed: write-back during the stage runs would distort them. */
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	free(buf);
	if (ret < 0) {
		unlink(path);
		if (ret_detail &&
		    asprintf(ret_detail, "cannot write %s: %s", path, strerror(-ret)) < 0)
			*ret_detail = NULL;
	}
	return ret;
}
