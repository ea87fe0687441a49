// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * layout.c - builds a source's layout and extent map, layer by layer (order in layout.h).
 *
 * Invariants:
 *  1. Each layer may only weaken what the layers before it decided (extent-map.h invariant 3),
 *     and pinned critical regions survive every later layer.
 *  2. A filesystem driver's marks are collected aside and reach the map only when the driver
 *     returned 0 (fs.h safety contract); a failure copies the partition whole and says why.
 *  3. Memory is bounded whatever the source: free-space runs and holes are collected with a
 *     minimum length that doubles whenever a collection passes COLLECT_MAX entries, and the
 *     merge gap doubles while the map holds more than MAP_MAX extents. Dropping a short free
 *     run or hole only ever keeps more data, never less.
 *  4. Filesystems frozen for the read are listed in frozen_fds until snap_layout_thaw, which
 *     only uses async-signal-safe calls so an atexit or signal path can run it.
 */
#include <blkid/blkid.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fs.h"
#include "layout-internal.h"
#include "log.h"
#include "ptable.h"

#define DEFAULT_MIN_GAP (64u * 1024)
#define COLLECT_MAX (1u << 20) /* ranges held per collection (16 MiB) */
#define MAP_MAX (1u << 20)     /* extents the finished map may hold */
#define PIN_MAX (1u << 20)     /* pinned ranges one filesystem may ask for */

/* ---------------------------------------------------------------------------------------- */
/* Bounded range collections                                                                 */

struct collect {
	struct snap_range *v;
	size_t n, cap;
	uint64_t min_len; /* shorter runs are dropped (kept DATA) */
	size_t max;	  /* past this many entries min_len doubles; 0 = fail instead */
	int err;
};

static void collect_compact(struct collect *c)
{
	size_t w = 0;
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].length >= c->min_len)
			c->v[w++] = c->v[i];
	c->n = w;
}

/*
 * Adds [off, off+len). A run touching the last one extends it, so a free run a driver reports
 * in pieces (one per block group) is judged by its whole length; the last entry is only judged
 * when the next, separate one arrives (and at collect_finish).
 */
static int collect_add(struct collect *c, uint64_t off, uint64_t len)
{
	if (c->err)
		return c->err;
	if (len == 0)
		return 0;
	if (c->n > 0) {
		struct snap_range *last = &c->v[c->n - 1];
		if (last->offset + last->length == off) {
			last->length += len;
			return 0;
		}
		if (last->length < c->min_len) {
			*last = (struct snap_range){off, len};
			return 0;
		}
	}
	if (c->n == c->cap) {
		if (c->max && c->n >= c->max) {
			while (c->n >= c->max / 2 && c->min_len < UINT64_MAX / 2) {
				c->min_len = c->min_len ? c->min_len * 2 : 4096;
				collect_compact(c);
			}
		}
		if (c->n == c->cap) {
			size_t ncap = c->cap ? c->cap * 2 : 256;
			if (!c->max && ncap > PIN_MAX)
				return c->err = -E2BIG;
			struct snap_range *nv = realloc(c->v, ncap * sizeof(*nv));
			if (!nv)
				return c->err = -ENOMEM;
			c->v = nv;
			c->cap = ncap;
		}
	}
	c->v[c->n++] = (struct snap_range){off, len};
	return 0;
}

static void collect_finish(struct collect *c)
{
	if (c->n > 0 && c->v[c->n - 1].length < c->min_len)
		c->n--;
}

static void collect_free(struct collect *c)
{
	free(c->v);
	*c = (struct collect){0};
}

/* ---------------------------------------------------------------------------------------- */
/* Filesystem layer                                                                          */

struct fs_priv {
	const struct snap_src *src;
	uint64_t start;
	struct collect unused, pins, zero;
};

static int fs_read(struct snap_fs_ctx *ctx, uint64_t off, void *buf, size_t len)
{
	struct fs_priv *p = ctx->priv;
	if (off > ctx->part_size || len > ctx->part_size - off)
		return -EUCLEAN; /* metadata pointing outside its partition */
	return snap_src_pread(p->src, buf, len, p->start + off);
}

static int fs_mark_unused(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len)
{
	struct fs_priv *p = ctx->priv;
	if (off > ctx->part_size || len > ctx->part_size - off)
		return p->unused.err = -EUCLEAN; /* free space past the end: a damaged map */
	return collect_add(&p->unused, p->start + off, len);
}

static int fs_mark_zero(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len)
{
	struct fs_priv *p = ctx->priv;
	if (off > ctx->part_size || len > ctx->part_size - off)
		return p->zero.err = -EUCLEAN; /* zeros past the end: a damaged map */
	return collect_add(&p->zero, p->start + off, len);
}

static int fs_pin(struct snap_fs_ctx *ctx, uint64_t off, uint64_t len)
{
	struct fs_priv *p = ctx->priv;
	if (off >= ctx->part_size)
		return 0; /* nothing of ours to keep there */
	if (len > ctx->part_size - off)
		len = ctx->part_size - off;
	return collect_add(&p->pins, p->start + off, len);
}

__attribute__((format(printf, 2, 3))) static void warn(const struct snap_layout_opts *opts,
						       const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (opts->warn)
		opts->warn(opts->warn_userdata, msg);
	else
		snap_warn("%s", msg);
}

static int set_note(struct snap_partition_info *p, const char *note)
{
	free((char *)p->fs_note);
	p->fs_note = NULL;
	if (!note || !*note)
		return 0;
	p->fs_note = strdup(note);
	return p->fs_note ? 0 : -ENOMEM;
}

int snap_layout_fs_apply(struct snap_layout *l, struct snap_partition_info *p,
			 const struct snap_fs_driver *drv, const struct snap_layout_opts *opts,
			 uint64_t min_gap)
{
	static const struct snap_layout_opts no_opts = {0};
	int r;

	if (!opts)
		opts = &no_opts;
	struct fs_priv priv = {
	    .src = l->src,
	    .start = p->start,
	    .unused = {.min_len = min_gap == UINT64_MAX ? 0 : min_gap, .max = COLLECT_MAX},
	    .pins = {.min_len = 0, .max = 0},
	    .zero = {.min_len = 0, .max = 0},
	};
	struct snap_fs_ctx ctx = {
	    .part_size = p->size,
	    .read = fs_read,
	    .mark_unused = fs_mark_unused,
	    .pin = fs_pin,
	    .mark_zero = fs_mark_zero,
	    .priv = &priv,
	};
	r = drv->map(&ctx);
	ctx.note[sizeof(ctx.note) - 1] = '\0';
	if (r >= 0 && (priv.unused.err || priv.pins.err || priv.zero.err)) {
		r = priv.unused.err ? priv.unused.err
		    : priv.pins.err ? priv.pins.err
				    : priv.zero.err;
		snprintf(ctx.note, sizeof(ctx.note), "%s",
			 r == -EUCLEAN ? "free space reported outside the partition"
				       : "too many ranges to keep");
	}
	if (r < 0) {
		if (!ctx.note[0])
			snprintf(ctx.note, sizeof(ctx.note), "%s", strerror(-r));
		warn(opts, "partition %u (%s): copied whole: %s", p->number,
		     p->fs_type ? p->fs_type : drv->name, ctx.note);
		r = set_note(p, ctx.note);
		goto out;
	}
	collect_finish(&priv.unused);
	uint64_t before = snap_map_bytes_in(l->map, p->start, p->size, SNAP_EXTENT_UNUSED) +
			  snap_map_bytes_in(l->map, p->start, p->size, SNAP_EXTENT_ZERO);
	for (size_t i = 0; i < priv.pins.n; i++) {
		r = snap_map_pin(l->map, priv.pins.v[i].offset, priv.pins.v[i].length,
				 SNAP_LAYER_FS);
		if (r < 0)
			goto out;
	}
	r = snap_map_mark_many(l->map, priv.unused.v, priv.unused.n, SNAP_EXTENT_UNUSED,
			       SNAP_LAYER_FS);
	if (r < 0)
		goto out;
	/* after the pins: zeros the filesystem vouches for may lie inside pinned metadata */
	r = snap_map_mark_many(l->map, priv.zero.v, priv.zero.n, SNAP_EXTENT_ZERO, SNAP_LAYER_FS);
	if (r < 0)
		goto out;
	p->fs_mapped = 1;
	p->fs_used_bytes = ctx.used_bytes;
	p->fs_skipped = snap_map_bytes_in(l->map, p->start, p->size, SNAP_EXTENT_UNUSED) +
			snap_map_bytes_in(l->map, p->start, p->size, SNAP_EXTENT_ZERO) - before;
	r = set_note(p, ctx.note);
out:
	collect_free(&priv.unused);
	collect_free(&priv.pins);
	collect_free(&priv.zero);
	return r;
}

/* Runs the driver for p's filesystem, if there is one. */
static int fs_layer(struct snap_layout *l, struct snap_partition_info *p,
		    const struct snap_layout_opts *opts, uint64_t min_gap)
{
	const struct snap_fs_driver *drv = snap_fs_driver_find(p->fs_type);
	if (!drv) {
		char note[300];
		snprintf(note, sizeof(note), "no free-space map for %s", p->fs_type);
		return set_note(p, note);
	}
	return snap_layout_fs_apply(l, p, drv, opts, min_gap);
}

/* ---------------------------------------------------------------------------------------- */
/* Mounted filesystems                                                                       */

/* The device number of partition `number` of the whole-disk block device src (0: src). */
static int part_devno(const struct snap_src *src, uint32_t number, dev_t *ret)
{
	char path[64];
	if (number == 0) {
		*ret = src->rdev;
		return 0;
	}
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u", major(src->rdev), minor(src->rdev));
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -ENOMEM;
	}
	int r = -ENOENT;
	struct dirent *de;
	while ((de = readdir(d))) {
		char file[NAME_MAX + 16], buf[32];
		unsigned maj, min, n;
		snprintf(file, sizeof(file), "%s/partition", de->d_name);
		int fd = openat(dfd, file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t k = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (k <= 0)
			continue;
		buf[k] = '\0';
		if (sscanf(buf, "%u", &n) != 1 || n != number)
			continue;
		snprintf(file, sizeof(file), "%s/dev", de->d_name);
		fd = openat(dfd, file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		k = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (k <= 0)
			continue;
		buf[k] = '\0';
		if (sscanf(buf, "%u:%u", &maj, &min) == 2) {
			*ret = makedev(maj, min);
			r = 0;
			break;
		}
	}
	closedir(d);
	return r;
}

void snap_mountinfo_unescape(char *s)
{
	char *w = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*w++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
			p += 3;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
}

static bool opts_rw(const char *opts)
{
	return !strncmp(opts, "rw", 2) && (opts[2] == ',' || opts[2] == '\0' || opts[2] == '\n');
}

/* Whether dev is mounted read-write; *ret_mnt gets one of its mount points (caller frees). */
static bool mounted_rw(dev_t dev, char **ret_mnt)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	bool rw = false;
	if (!f)
		return false;
	while (!rw && getline(&line, &cap, f) > 0) {
		unsigned maj, min;
		int mnt_at = 0, mnt_end = 0, opt_at = 0;
		if (sscanf(line, "%*u %*u %u:%u %*s %n%*s%n %n", &maj, &min, &mnt_at, &mnt_end,
			   &opt_at) < 2 ||
		    !opt_at || makedev(maj, min) != dev)
			continue;
		const char *sep = strstr(line, " - ");
		char *super = NULL;
		if (sep) {
			/* " - fstype source superoptions" */
			const char *q = sep + 3;
			for (int i = 0; i < 2 && q; i++) {
				q = strchr(q, ' ');
				if (q)
					q++;
			}
			super = (char *)q;
		}
		if (!opts_rw(line + opt_at) && !(super && opts_rw(super)))
			continue;
		rw = true;
		line[mnt_end] = '\0';
		char *mnt = strdup(line + mnt_at);
		if (mnt)
			snap_mountinfo_unescape(mnt);
		*ret_mnt = mnt;
	}
	free(line);
	fclose(f);
	return rw;
}

static int frozen_add(struct snap_layout *l, int fd)
{
	int *v = realloc(l->frozen_fds, (l->nfrozen + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->frozen_fds = v;
	l->frozen_fds[l->nfrozen++] = fd;
	return 0;
}

/*
 * For a block device: false when p's filesystem is mounted read-write and not frozen (its map
 * would be a moving target), with the reason in p->fs_note.
 */
static int mount_check(struct snap_layout *l, struct snap_partition_info *p,
		       const struct snap_layout_opts *opts, bool *ret_ok)
{
	dev_t dev = 0;
	char *mnt = NULL;
	char note[300];
	int r;

	*ret_ok = true;
	if (!l->src->block_device || part_devno(l->src, p->number, &dev) < 0)
		return 0;
	if (!mounted_rw(dev, &mnt))
		return 0;
	*ret_ok = false;
	if (!mnt)
		return -ENOMEM;
	if (!opts->freeze) {
		snprintf(note, sizeof(note), "mounted read-write at %s; use --freeze", mnt);
		r = set_note(p, note);
		goto out;
	}
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, FIFREEZE, 0) < 0) {
		snprintf(note, sizeof(note), "mounted read-write at %s; cannot freeze: %s", mnt,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		warn(opts, "partition %u (%s): copied whole: %s", p->number, p->fs_type, note);
		r = set_note(p, note);
		goto out;
	}
	r = frozen_add(l, fd);
	if (r < 0) {
		ioctl(fd, FITHAW, 0);
		close(fd);
		goto out;
	}
	snap_debug("froze %s for partition %u", mnt, p->number);
	*ret_ok = true;
out:
	free(mnt);
	return r;
}

void snap_layout_thaw(struct snap_layout *layout)
{
	if (!layout)
		return;
	for (size_t i = 0; i < layout->nfrozen; i++) {
		/* exchange, so a signal handler and the main path never thaw one fd twice */
		int fd = __atomic_exchange_n(&layout->frozen_fds[i], -1, __ATOMIC_SEQ_CST);
		if (fd >= 0) {
			ioctl(fd, FITHAW, 0);
			close(fd);
		}
	}
}

/* ---------------------------------------------------------------------------------------- */
/* libblkid                                                                                  */

static int probe(const struct snap_src *src, struct snap_partition_info *p, bool whole)
{
	blkid_probe pr = blkid_new_probe();
	const char *v;
	int r = 0;

	if (!pr)
		return -ENOMEM;
	if (blkid_probe_set_device(pr, src->fd_buffered, whole ? 0 : (blkid_loff_t)p->start,
				   whole ? 0 : (blkid_loff_t)p->size) < 0)
		goto out; /* nothing to probe (an empty partition) */
	blkid_probe_enable_partitions(pr, 0);
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL |
						  BLKID_SUBLKS_UUID);
	int rc = blkid_do_safeprobe(pr);
	if (rc == -2) {
		r = set_note(p, "ambivalent filesystem signatures");
		goto out;
	}
	if (rc != 0)
		goto out;
	if (blkid_probe_lookup_value(pr, "TYPE", &v, NULL) == 0 && !(p->fs_type = strdup(v)))
		r = -ENOMEM;
	if (blkid_probe_lookup_value(pr, "LABEL", &v, NULL) == 0 && !(p->fs_label = strdup(v)))
		r = -ENOMEM;
	if (blkid_probe_lookup_value(pr, "UUID", &v, NULL) == 0 && !(p->fs_uuid = strdup(v)))
		r = -ENOMEM;
out:
	blkid_free_probe(pr);
	return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Holes                                                                                     */

static int holes_layer(struct snap_layout *l)
{
	const struct snap_src *src = l->src;
	/* every hole is kept (merge_gaps then says which it merged), unless there are so many
	 * that the bound of invariant 3 drops the shortest */
	struct collect c = {.min_len = 0, .max = COLLECT_MAX};
	uint64_t off = 0;
	int r;

	while (off < src->size) {
		off_t data = lseek(src->fd_buffered, (off_t)off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO) { /* only a hole up to the end */
				collect_add(&c, off, src->size - off);
				break;
			}
			/* EINVAL: no SEEK_DATA here; every byte stays DATA, which is safe */
			snap_debug("%s: SEEK_DATA at %llu: %s; holes not detected", src->path,
				   (unsigned long long)off, strerror(errno));
			collect_free(&c);
			return 0;
		}
		if ((uint64_t)data >= src->size) { /* data past st_size (file grew): ignore */
			collect_add(&c, off, src->size - off);
			break;
		}
		if ((uint64_t)data > off)
			collect_add(&c, off, (uint64_t)data - off);
		off_t hole = lseek(src->fd_buffered, data, SEEK_HOLE);
		if (hole < 0 || hole <= data) {
			/* a file shrunk under us, or no answer: keep the rest as DATA */
			break;
		}
		off = (uint64_t)hole;
	}
	r = c.err;
	if (r >= 0) {
		collect_finish(&c);
		r = snap_map_mark_many(l->map, c.v, c.n, SNAP_EXTENT_ZERO, SNAP_LAYER_HOLE);
	}
	collect_free(&c);
	return r;
}

/* ---------------------------------------------------------------------------------------- */

static void free_part_strings(struct snap_partition_info *p)
{
	free((char *)p->type);
	free((char *)p->type_name);
	free((char *)p->name);
	free((char *)p->uuid);
	free((char *)p->fs_type);
	free((char *)p->fs_label);
	free((char *)p->fs_uuid);
	free((char *)p->fs_note);
}

static void free_parts(struct snap_partition_info *parts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free_part_strings(&parts[i]);
	free(parts);
}

struct snap_layout *snap_layout_free(struct snap_layout *layout)
{
	if (!layout)
		return NULL;
	snap_layout_thaw(layout);
	free(layout->frozen_fds);
	free_parts(layout->parts, layout->nparts);
	free(layout->ptable_type);
	free(layout->ptable_id);
	snap_map_free(layout->map);
	free(layout);
	return NULL;
}

/*
 * Merges gaps shorter than *min_gap, doubling it while the map holds more than MAP_MAX extents
 * (invariant 3). With force false it only acts when the map is over the bound.
 */
static int bound_map(struct snap_layout *l, uint64_t *min_gap, bool force)
{
	int r = 0;
	if (!force && snap_map_count(l->map) <= MAP_MAX)
		return 0;
	if (*min_gap == UINT64_MAX) {
		if (snap_map_count(l->map) <= MAP_MAX)
			return 0;
		/* merging was turned off, but the bound holds regardless */
		*min_gap = DEFAULT_MIN_GAP;
	}
	r = snap_map_merge_gaps(l->map, *min_gap);
	while (r >= 0 && snap_map_count(l->map) > MAP_MAX && *min_gap < l->src->size) {
		*min_gap *= 2;
		r = snap_map_merge_gaps(l->map, *min_gap);
	}
	return r;
}

static int filesystems(struct snap_layout *l, const struct snap_layout_opts *opts,
		       uint64_t *min_gap)
{
	int r;
	for (size_t i = 0; i < l->nparts; i++) {
		struct snap_partition_info *p = &l->parts[i];
		bool ok;
		if (p->container || p->size == 0)
			continue;
		if (!p->fs_type) {
			r = probe(l->src, p, false);
			if (r < 0)
				return r;
		}
		if (!p->fs_type)
			continue;
		if (opts->no_fs_skip) {
			r = set_note(p, "filesystem layer disabled");
			if (r < 0)
				return r;
			continue;
		}
		r = mount_check(l, p, opts, &ok);
		if (r < 0)
			return r;
		if (!ok)
			continue;
		r = fs_layer(l, p, opts, *min_gap);
		if (r < 0)
			return r;
		/* many partitions with fragmented free space must not add up past the bound */
		r = bound_map(l, min_gap, false);
		if (r < 0)
			return r;
	}
	return 0;
}

int snap_layout_build(struct snap_src *src, const struct snap_layout_opts *opts,
		      struct snap_layout **ret, char **ret_detail)
{
	static const struct snap_layout_opts defaults = {0};
	struct snap_layout *l = calloc(1, sizeof(*l));
	struct snap_ptable *pt = NULL;
	struct snap_partition_info whole = {.number = 0, .start = 0, .size = src->size};
	const char *what = "cannot build the map of";
	int r;

	if (!opts)
		opts = &defaults;
	uint64_t min_gap = opts->min_gap ? opts->min_gap : DEFAULT_MIN_GAP;
	if (!l)
		return -ENOMEM;
	l->src = src;
	if (src->size == 0) {
		/* nothing to bundle, and no map can cover it */
		if (ret_detail && asprintf(ret_detail, "cannot use %s: it is empty", src->path) < 0)
			*ret_detail = NULL;
		free(l);
		return -EINVAL;
	}

	/* 1. everything DATA */
	r = snap_map_new(src->size, &l->map);
	if (r < 0)
		goto fail;

	/* 2. partition table */
	r = snap_ptable_read(src, &pt, ret_detail);
	if (r < 0) {
		snap_layout_free(l);
		return r;
	}
	/*
	 * A filesystem on the whole disk next to a partition table: libfdisk takes the boot
	 * sector of a FAT filesystem (0x55aa) for an empty MBR, and hybrid ISO images carry both.
	 * Without partitions the filesystem wins; with them, space outside the partitions may be
	 * the filesystem's, so it is kept.
	 */
	r = probe(src, &whole, true);
	if (r < 0)
		goto fail;
	bool keep = opts->keep_unpartitioned;
	if (whole.fs_type && pt->type && pt->nparts == 0) {
		snap_debug("%s: empty %s label over a whole-disk %s: no partition table", src->path,
			   pt->type, whole.fs_type);
		free(pt->type);
		free(pt->id);
		pt->type = pt->id = NULL;
	} else if (whole.fs_type && pt->type && !keep) {
		warn(opts,
		     "%s: the whole disk also carries a filesystem signature (%s): space "
		     "outside the partitions kept",
		     src->path, whole.fs_type);
		keep = true;
	}
	r = snap_ptable_apply(pt, l->map, keep);
	if (r < 0)
		goto fail;
	l->ptable_type = pt->type;
	l->ptable_id = pt->id;
	l->parts = pt->parts;
	l->nparts = pt->nparts;
	pt->type = pt->id = NULL;
	pt->parts = NULL;
	pt->nparts = 0;
	pt = snap_ptable_free(pt);

	/* A disk without a partition table may hold one filesystem: partition 0, the whole. */
	if (!l->ptable_type && whole.fs_type) {
		free_parts(l->parts, l->nparts); /* the empty label's (no entries) */
		l->nparts = 0;
		l->parts = calloc(1, sizeof(*l->parts));
		if (!l->parts) {
			r = -ENOMEM;
			goto fail;
		}
		l->parts[0] = whole;
		l->nparts = 1;
	} else {
		free_part_strings(&whole);
	}
	whole = (struct snap_partition_info){0}; /* owned by l->parts now, or freed */

	/* 3. filesystems */
	what = "cannot map the filesystems of";
	r = filesystems(l, opts, &min_gap);
	if (r < 0)
		goto fail;

	/* 4. holes */
	what = "cannot map the holes of";
	if (!src->block_device && !opts->no_holes) {
		r = holes_layer(l);
		if (r < 0)
			goto fail;
	}

	/* 5. merge small gaps, coarser until the map is small enough (invariant 3) */
	what = "cannot merge the map of";
	r = bound_map(l, &min_gap, min_gap != UINT64_MAX);
	if (r < 0)
		goto fail;
	snap_debug("%s: map of %zu extents (min gap %llu)", src->path, snap_map_count(l->map),
		   min_gap == UINT64_MAX ? 0ull : (unsigned long long)min_gap);
	*ret = l;
	return 0;
fail:
	if (ret_detail && asprintf(ret_detail, "%s %s: %s", what, src->path, strerror(-r)) < 0)
		*ret_detail = NULL;
	free_part_strings(&whole);
	snap_ptable_free(pt);
	snap_layout_free(l);
	return r;
}
