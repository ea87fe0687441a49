// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-checkpoint.c - the checkpoint of a store into S3 (store-checkpoint.h): a small local text
 * file, one record per line:
 *
 *	snapbundle-store-checkpoint 1
 *	url s3://BUCKET/KEY
 *	upload UPLOAD-ID
 *	part-size N / frame-size N / level N / nonce-seed N
 *	volume SIZE MTIME-NS PATH             (one per source, in order)
 *	head HEX                              (header, KEYS with the wrapped data key, META)
 *	meta OFFSET LENGTH
 *	part NUMBER END ETAG                  (appended as the service acknowledges each part)
 *	frame FILE-OFFSET VOLUME FLAGS OFFSET RAW STORED DIGEST   (appended as each is sunk)
 *
 * Invariants:
 *  1. The file only grows after store_ckpt_create: every record is one write() of one whole
 *     line with O_APPEND, under the checkpoint's lock, so a killed process leaves at most its
 *     last line cut short, which the loader ignores.
 *  2. Frames are recorded by the store's sink before their bytes reach the writer, so every
 *     frame of an acknowledged part is in the file: a resume trusts parts (their ETags checked
 *     by ListParts) and only the frames they cover.
 *  3. It holds nothing secret: the data key only as the image has it, wrapped in KEYS; the
 *     seed of the frame nonces, which the image's frame headers show anyway.
 *  4. create replaces a previous file through a temporary name and a rename, so a crash leaves
 *     the old checkpoint or the new one, never a mix.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hex.h"
#include "log.h"
#include "store-checkpoint.h"
#include "store-crypto.h"
#include "util.h"

#define MAGIC "snapbundle-store-checkpoint 1"

struct store_ckpt {
	int fd;
	char *path;
	pthread_mutex_t mu;
	bool failed; /* logged once */
};

void store_ckpt_state_clear(struct store_ckpt_state *st)
{
	free(st->url);
	free(st->upload_id);
	for (size_t i = 0; i < st->nvols; i++)
		free(st->vols[i].path);
	free(st->vols);
	free(st->head);
	for (size_t i = 0; i < st->nparts; i++)
		free(st->parts[i].etag);
	free(st->parts);
	free(st->part_ends);
	free(st->frames);
	memset(st, 0, sizeof(*st));
}

static int mkdir_p(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		int r = mkdir(path, 0700) < 0 && errno != EEXIST ? -errno : 0;
		*p = '/';
		if (r < 0)
			return r;
	}
	return mkdir(path, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

int store_ckpt_path(const char *url, char **ret)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	char *dir = NULL;
	if (xdg && *xdg == '/') {
		if (asprintf(&dir, "%s/snapbundle", xdg) < 0)
			return -ENOMEM;
	} else if (home && *home) {
		if (asprintf(&dir, "%s/.local/state/snapbundle", home) < 0)
			return -ENOMEM;
	} else {
		return -ENOENT;
	}
	int r = mkdir_p(dir);
	if (r < 0) {
		free(dir);
		return r;
	}
	uint8_t d[SNAP_STORE_DIGEST_SIZE];
	char hex[2 * SNAP_STORE_DIGEST_SIZE + 1];
	r = snap_store_sha256(url, strlen(url), d);
	if (r == 0) {
		snap_hex(hex, d, 12);
		if (asprintf(ret, "%s/store-%s.checkpoint", dir, hex) < 0)
			r = -ENOMEM;
	}
	free(dir);
	return r;
}

/* One whole line in one write (invariant 1). */
static int put_line(int fd, const char *line)
{
	return snap_write_all(fd, line, strlen(line), NULL);
}

static char *part_line(uint32_t part_number, uint64_t end, const char *etag)
{
	char *line = NULL;
	if (asprintf(&line, "part %u %llu %s\n", part_number, (unsigned long long)end, etag) < 0)
		return NULL;
	return line;
}

static char *frame_line(const struct snap_store_index_frame *f)
{
	char dg[2 * SNAP_STORE_DIGEST_SIZE + 1];
	snap_hex(dg, f->digest, sizeof(f->digest));
	char *line = NULL;
	if (asprintf(&line, "frame %llu %u %u %llu %u %u %s\n", (unsigned long long)f->file_offset,
		     f->volume, f->flags, (unsigned long long)f->offset, f->raw_len, f->stored_len,
		     dg) < 0)
		return NULL;
	return line;
}

static int write_state(int fd, const struct store_ckpt_state *st)
{
	char *hex = malloc(2 * st->head_len + 1);
	if (!hex)
		return -ENOMEM;
	snap_hex(hex, st->head, st->head_len);
	char *s = NULL;
	int r =
	    asprintf(&s,
		     MAGIC "\nurl %s\nupload %s\npart-size %llu\nframe-size %u\nlevel %d\n"
			   "nonce-seed %llu\nhead %s\nmeta %llu %llu\n",
		     st->url, st->upload_id, (unsigned long long)st->part_size, st->frame_size,
		     st->level, (unsigned long long)st->nonce_seed, hex,
		     (unsigned long long)st->meta_offset, (unsigned long long)st->meta_length) < 0
		? -ENOMEM
		: 0;
	free(hex);
	if (r == 0)
		r = put_line(fd, s);
	free(s);
	for (size_t i = 0; i < st->nvols && r == 0; i++) {
		if (asprintf(&s, "volume %llu %lld %s\n", (unsigned long long)st->vols[i].size,
			     (long long)st->vols[i].mtime_ns, st->vols[i].path) < 0)
			return -ENOMEM;
		r = put_line(fd, s);
		free(s);
	}
	for (size_t i = 0; i < st->nparts && r == 0; i++) {
		if (!(s = part_line(st->parts[i].part_number, st->part_ends[i], st->parts[i].etag)))
			return -ENOMEM;
		r = put_line(fd, s);
		free(s);
	}
	for (uint64_t i = 0; i < st->nframes && r == 0; i++) {
		if (!(s = frame_line(&st->frames[i])))
			return -ENOMEM;
		r = put_line(fd, s);
		free(s);
	}
	return r;
}

int store_ckpt_create(const char *path, const struct store_ckpt_state *st, struct store_ckpt **ret,
		      char **ret_detail)
{
	struct store_ckpt *ck = calloc(1, sizeof(*ck));
	char *tmp = NULL;
	if (!ck || !(ck->path = strdup(path)) ||
	    asprintf(&tmp, "%s.tmp-%ld", path, (long)getpid()) < 0) {
		if (ck)
			free(ck->path);
		free(ck);
		return -ENOMEM;
	}
	pthread_mutex_init(&ck->mu, NULL);
	int r = 0;
	ck->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (ck->fd < 0)
		r = -errno;
	if (r == 0)
		r = write_state(ck->fd, st);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		if (asprintf(ret_detail, "cannot write the checkpoint %s: %s", path, strerror(-r)) <
		    0)
			*ret_detail = NULL;
		unlink(tmp);
		free(tmp);
		store_ckpt_close(ck, 0);
		return r;
	}
	free(tmp);
	*ret = ck;
	return 0;
}

static void append(struct store_ckpt *ck, char *line)
{
	pthread_mutex_lock(&ck->mu);
	int r = line ? put_line(ck->fd, line) : -ENOMEM;
	if (r < 0 && !ck->failed) {
		ck->failed = true;
		snap_warn(
		    "cannot write the checkpoint %s: %s (a resume goes only as far as it got)",
		    ck->path, strerror(-r));
	}
	pthread_mutex_unlock(&ck->mu);
	free(line);
}

void store_ckpt_part(struct store_ckpt *ck, uint32_t part_number, const char *etag, uint64_t end)
{
	append(ck, part_line(part_number, end, etag));
}

void store_ckpt_frame(struct store_ckpt *ck, const struct snap_store_index_frame *f)
{
	append(ck, frame_line(f));
}

const char *store_ckpt_file(const struct store_ckpt *ck)
{
	return ck->path;
}

struct store_ckpt *store_ckpt_close(struct store_ckpt *ck, int remove)
{
	if (!ck)
		return NULL;
	if (ck->fd >= 0)
		close(ck->fd);
	if (remove)
		unlink(ck->path);
	pthread_mutex_destroy(&ck->mu);
	free(ck->path);
	free(ck);
	return NULL;
}

/* ---- loading ---- */

static int unhex(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -EUCLEAN;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static int grow(void **p, size_t n, size_t *cap, size_t size)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 64;
	void *q = realloc(*p, c * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

static int parse_line(struct store_ckpt_state *st, char *line, size_t *cap_parts,
		      size_t *cap_frames, size_t *cap_vols)
{
	char *sp = strchr(line, ' ');
	if (!sp)
		return -EUCLEAN;
	*sp = 0;
	const char *k = line, *v = sp + 1;
	unsigned long long a, b;
	int n = 0;
	if (!strcmp(k, "url"))
		return (st->url = strdup(v)) ? 0 : -ENOMEM;
	if (!strcmp(k, "upload"))
		return (st->upload_id = strdup(v)) ? 0 : -ENOMEM;
	if (!strcmp(k, "part-size"))
		return sscanf(v, "%llu%n", &a, &n) == 1 && !v[n] ? (st->part_size = a, 0)
								 : -EUCLEAN;
	if (!strcmp(k, "frame-size"))
		return sscanf(v, "%llu%n", &a, &n) == 1 && !v[n] ? (st->frame_size = (uint32_t)a, 0)
								 : -EUCLEAN;
	if (!strcmp(k, "level"))
		return sscanf(v, "%llu%n", &a, &n) == 1 && !v[n] ? (st->level = (int)a, 0)
								 : -EUCLEAN;
	if (!strcmp(k, "nonce-seed"))
		return sscanf(v, "%llu%n", &a, &n) == 1 && !v[n] ? (st->nonce_seed = a, 0)
								 : -EUCLEAN;
	if (!strcmp(k, "meta"))
		return sscanf(v, "%llu %llu%n", &a, &b, &n) == 2 && !v[n]
			   ? (st->meta_offset = a, st->meta_length = b, 0)
			   : -EUCLEAN;
	if (!strcmp(k, "head")) {
		size_t len = strlen(v);
		if (len % 2 || st->head)
			return -EUCLEAN;
		if (!(st->head = malloc(len / 2 + 1)))
			return -ENOMEM;
		st->head_len = len / 2;
		return unhex(v, len / 2, st->head);
	}
	if (!strcmp(k, "volume")) {
		long long m;
		if (sscanf(v, "%llu %lld %n", &a, &m, &n) != 2 || !v[n])
			return -EUCLEAN;
		if (grow((void **)&st->vols, st->nvols, cap_vols, sizeof(*st->vols)) < 0)
			return -ENOMEM;
		struct store_ckpt_volume *cv = &st->vols[st->nvols];
		*cv = (struct store_ckpt_volume){.size = a, .mtime_ns = m, .path = strdup(v + n)};
		if (!cv->path)
			return -ENOMEM;
		st->nvols++;
		return 0;
	}
	if (!strcmp(k, "part")) {
		unsigned num;
		if (sscanf(v, "%u %llu %n", &num, &a, &n) != 2 || !v[n] || !num)
			return -EUCLEAN;
		if (grow((void **)&st->parts, st->nparts, cap_parts, sizeof(*st->parts)) < 0)
			return -ENOMEM;
		size_t c2 = *cap_parts;
		uint64_t *e = realloc(st->part_ends, c2 * sizeof(*e));
		if (!e)
			return -ENOMEM;
		st->part_ends = e;
		st->parts[st->nparts] =
		    (struct snap_s3_part){.part_number = num, .etag = strdup(v + n)};
		if (!st->parts[st->nparts].etag)
			return -ENOMEM;
		st->part_ends[st->nparts++] = a;
		return 0;
	}
	if (!strcmp(k, "frame")) {
		struct snap_store_index_frame f = {0};
		unsigned long long fo, off;
		unsigned vol, flags, raw, stored;
		char dg[2 * SNAP_STORE_DIGEST_SIZE + 1];
		if (sscanf(v, "%llu %u %u %llu %u %u %64s%n", &fo, &vol, &flags, &off, &raw,
			   &stored, dg, &n) != 7 ||
		    v[n] || strlen(dg) != 2 * SNAP_STORE_DIGEST_SIZE)
			return -EUCLEAN;
		f = (struct snap_store_index_frame){.file_offset = fo,
						    .volume = vol,
						    .flags = flags,
						    .offset = off,
						    .raw_len = raw,
						    .stored_len = stored};
		if (unhex(dg, SNAP_STORE_DIGEST_SIZE, f.digest) < 0)
			return -EUCLEAN;
		size_t nf = (size_t)st->nframes;
		if (grow((void **)&st->frames, nf, cap_frames, sizeof(*st->frames)) < 0)
			return -ENOMEM;
		st->frames[st->nframes++] = f;
		return 0;
	}
	return -EUCLEAN;
}

int store_ckpt_load(const char *path, struct store_ckpt_state *ret, char **ret_detail)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	struct store_ckpt_state st = {0};
	size_t cap_parts = 0, cap_frames = 0, cap_vols = 0, lineno = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int r = 0;
	while (r == 0 && (n = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (line[n - 1] != '\n')
			break; /* cut short by a killed process (invariant 1) */
		line[n - 1] = 0;
		if (lineno == 1)
			r = strcmp(line, MAGIC) ? -EUCLEAN : 0;
		else
			r = parse_line(&st, line, &cap_parts, &cap_frames, &cap_vols);
	}
	free(line);
	fclose(f);
	if (r == 0 && (!st.url || !st.upload_id || !st.head || !st.frame_size || !st.nvols ||
		       st.meta_offset + st.meta_length != st.head_len))
		r = -EUCLEAN;
	if (r < 0) {
		if (r == -EUCLEAN &&
		    asprintf(ret_detail, "checkpoint %s is corrupt (line %zu)", path, lineno) < 0)
			*ret_detail = NULL;
		store_ckpt_state_clear(&st);
		return r;
	}
	*ret = st;
	return 0;
}
