// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bundle-vol.c - the bundle-vol job (SNAP_JOB_BUNDLE_VOL), as ec2-bundle-vol: a mounted volume
 * -> a new sparse image with the same partitioning and filesystem (type, label, UUID) -> the
 * volume's file tree copied in by rsync, less the sensitive files -> a classic bundle made by
 * the bundle job (a local directory or s3://). With SNAP_PARAM_BV_SNAPSHOT, the volume's block
 * device itself is bundled while its filesystem is frozen. docs/bundle-vol.md.
 *
 * Invariants:
 *  1. The image is an output of the output layer (output.h: the temporary ".NAME.tmp-PID" in
 *     its directory, made O_EXCL and sized sparse), filled by other means (sfdisk, the loop
 *     device, mkfs, rsync): it holds what they write and nothing more. It is removed at the end,
 *     failure or not, unless --clone-only, which commits it to NAME under the layer's one commit
 *     policy (never over an existing file without SNAP_PARAM_FORCE) after it was unmounted.
 *  2. Every resource the job takes is given back on every path, in reverse order, by
 *     bvol_teardown: rsync killed and reaped, the image unmounted, its mount point removed, its
 *     loop device detached (LO_FLAGS_AUTOCLEAR: the kernel also detaches it when the process
 *     dies), the temporary removed.
 *  3. The copy never holds what the volume must not give away: the sensitive-file filter (the
 *     original's patterns, matched with fnmatch against each path from the volume's root, so
 *     '*' crosses '/') and the excludes are decided before rsync starts, by one walk of the
 *     volume, and given to rsync as anchored, escaped paths (--exclude-from, NUL-separated);
 *     the bundle destination, the image and its mount point are always excluded, and other
 *     filesystems are not crossed (rsync -x) unless SNAP_PARAM_BV_ALL, which still leaves out
 *     the content of virtual filesystems (proc, sysfs, devtmpfs, ...).
 *  4. A frozen filesystem is always thawed: the run thaws it itself after the bundle, on
 *     success, failure and cancellation (SIGINT/SIGTERM reach the job's cancel, which the inner
 *     bundle job sees through its progress callback); and a guard process forked before the
 *     freeze thaws it when the job's process dies without saying so (the pipe to the guard
 *     closes at exit, SIGKILL included). The guard is told "done" only after the run's own
 *     thaw, so it never thaws a freeze that is not ours.
 *  5. Nothing is written to the frozen filesystem: the destination must lie on another one
 *     (checked before the freeze), and the job writes nothing else.
 *  6. Where the image is made (the destination, or the scratch directory for s3://), the free
 *     space is checked before starting: the volume's used bytes must fit (statvfs).
 *
 * State transitions:
 *  1. prepare: the volume's mount, device, filesystem and partition found (bvol_probe), the
 *     checks of invariants 5 and 6 (bvol_check_space)
 *  2. copy: image made (bvol_make_image), partitioned (bvol_partition), loop-attached and
 *     formatted (bvol_format), mounted, filled (bvol_copy), unmounted (bvol_unmount)
 *  3. bundle: the bundle job over the image (bvol_bundle), or the rename (bvol_keep_image)
 *  4. snapshot instead of 2-3: guard, FIFREEZE, the bundle job over the device, FITHAW
 *     (bvol_snapshot)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <blkid/blkid.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "job-internal.h"
#include "layout.h" /* snap_mountinfo_unescape */
#include "log.h"
#include "output.h"
#include "util.h"

#define MiB ((uint64_t)1 << 20)
#define GPT_TAIL_SECTORS 34 /* backup GPT: 32 sectors of entries + header, and a spare */
#define BOOT_CODE_BYTES 440 /* MBR boot code, before the disk signature */
#define BOOT_AREA_MAX (16 * MiB)

/* The original's sensitive-file patterns (ec2-bundle-vol), matched against whole paths. */
static const char *const sensitive_patterns[] = {
    "*/#*#", "*/.#*", "*.sw", "*.swo", "*.swp", "*~", "*.pem", "*.priv", "*id_rsa*",
    "*id_dsa*", "*.gpg", "*.jks", "*/.ssh/authorized_keys", "*/.bash_history",
};

/* Filesystems whose content is never copied, even with SNAP_PARAM_BV_ALL. */
static const char *const virtual_fs[] = {
    "proc",	"sysfs",  "devtmpfs", "devpts", "tmpfs",  "cgroup",   "cgroup2", "securityfs",
    "debugfs",	"tracefs", "pstore",  "bpf",	"mqueue", "hugetlbfs", "configfs", "fusectl",
    "autofs",	"binfmt_misc", "efivarfs", "rpc_pipefs", "nsfs", "ramfs",
};

struct bvol {
	struct snap_job *job;
	/* the volume */
	char *volume;	  /* realpath of the mount point */
	dev_t fs_dev;	  /* st_dev of the volume's root */
	dev_t blk_dev;	  /* its block device (mountinfo) */
	char *device;	  /* /dev/... of blk_dev */
	char *fstype;	  /* as mounted */
	char *label, *uuid; /* blkid, may be NULL */
	uint64_t dev_size, used;
	/* the partition the volume lies in, when its disk has a table */
	char *disk;	  /* /dev/... of the whole disk */
	char *src_table;  /* "gpt" or "dos" */
	char *table_id, *part_type, *part_uuid, *part_name;
	uint64_t part_start; /* bytes */
	bool bootable;
	/* the new image */
	int table; /* enum snap_bv_partition, resolved: never AUTO */
	uint64_t size, fs_start, fs_size;
	char *dest, *name, *image_dir, *image_tmp, *image_final;
	bool s3, clone_only, snapshot;
	struct snap_output *image; /* invariant 1 */
	int image_fd;		   /* its descriptor, or -1 */
	int loop_fd;
	char loop_dev[32];
	char *mnt;
	bool mounted;
	pid_t child; /* rsync or mkfs while it runs */
	/* results */
	double t_image, t_copy, t_bundle;
	uint64_t filtered;
	struct snap_job *inner;
};

static double secs(uint64_t t0)
{
	return (double)(snap_now_ns() - t0) / 1e9;
}

static int fail_errno(struct bvol *v, const char *what, const char *path)
{
	int r = -errno;
	return snap_job_fail(v->job, r, "cannot %s %s: %s", what, path, snap_strerror(r));
}

/* ---------------------------------------------------------------------------------------- */
/* The volume: mountinfo, blkid                                                              */

struct mount_entry {
	unsigned maj, min;
	char *point, *fstype, *source;
};

/* Calls fn for every line of /proc/self/mountinfo, in order; stops at a non-zero return. */
static int each_mount(int (*fn)(void *ctx, const struct mount_entry *m), void *ctx)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	int r = 0;
	while (r == 0 && getline(&line, &cap, f) > 0) {
		char *save = NULL, *tok[10] = {0};
		int n = 0;
		bool dash = false;
		struct mount_entry m = {0};
		for (char *t = strtok_r(line, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
			if (!dash && !strcmp(t, "-")) {
				dash = true;
				n = 6;
				continue;
			}
			if (n < 10)
				tok[n] = t;
			n++;
		}
		if (!dash || !tok[2] || !tok[4] || !tok[6] || !tok[7] ||
		    sscanf(tok[2], "%u:%u", &m.maj, &m.min) != 2)
			continue;
		snap_mountinfo_unescape(tok[4]);
		snap_mountinfo_unescape(tok[7]);
		m.point = tok[4];
		m.fstype = tok[6];
		m.source = tok[7];
		r = fn(ctx, &m);
	}
	free(line);
	fclose(f);
	return r < 0 ? r : 0;
}

struct find_mount {
	const char *point;
	unsigned maj, min;
	char *fstype, *source;
};

static int find_mount_cb(void *ctx, const struct mount_entry *m)
{
	struct find_mount *f = ctx;
	if (strcmp(m->point, f->point))
		return 0;
	/* the last mount of a point is the one visible */
	free(f->fstype);
	free(f->source);
	f->maj = m->maj;
	f->min = m->min;
	f->fstype = strdup(m->fstype);
	f->source = strdup(m->source);
	return (!f->fstype || !f->source) ? -ENOMEM : 0;
}

static char *blkid_value(blkid_probe pr, const char *name)
{
	const char *v = NULL;
	if (blkid_probe_lookup_value(pr, name, &v, NULL) < 0 || !v)
		return NULL;
	return strdup(v);
}

/* The /dev name of block device maj:min, or with up "/.." of the disk it is a partition of, by
 * its sysfs link: -ENOENT without one. */
static int dev_name(unsigned maj, unsigned min, const char *up, char **ret)
{
	char sys[64], target[PATH_MAX], *name;
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u%s", maj, min, up);
	if (!realpath(sys, target))
		return -ENOENT;
	const char *base = strrchr(target, '/');
	if (asprintf(&name, "/dev/%s", base ? base + 1 : target) < 0)
		return -ENOMEM;
	*ret = name;
	return 0;
}

/* The whole disk of a partition device, and the partition's place in its table. */
static int probe_partition(struct bvol *v)
{
	char sys[64];
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/partition", major(v->blk_dev),
		 minor(v->blk_dev));
	if (access(sys, F_OK) < 0)
		return 0; /* a whole device: no table to copy */
	int r = dev_name(major(v->blk_dev), minor(v->blk_dev), "/..", &v->disk);
	if (r == -ENOMEM)
		return snap_job_fail(v->job, r, "out of memory");
	if (r < 0)
		return 0;
	blkid_probe pr = blkid_new_probe_from_filename(v->disk);
	if (!pr) {
		snap_warn("cannot read the partition table of %s: the image gets none", v->disk);
		free(v->disk);
		v->disk = NULL;
		return 0;
	}
	blkid_probe_enable_superblocks(pr, 0);
	blkid_probe_enable_partitions(pr, 1);
	blkid_partlist ls = blkid_probe_get_partitions(pr);
	blkid_parttable tab = ls ? blkid_partlist_get_table(ls) : NULL;
	blkid_partition par = ls ? blkid_partlist_devno_to_partition(ls, v->blk_dev) : NULL;
	if (tab && par && blkid_parttable_get_type(tab)) {
		const char *t = blkid_parttable_get_type(tab);
		const char *id = blkid_parttable_get_id(tab);
		v->src_table = strdup(t);
		v->table_id = id ? strdup(id) : NULL;
		v->part_start = (uint64_t)blkid_partition_get_start(par) * 512u;
		const char *ts = blkid_partition_get_type_string(par);
		if (ts)
			v->part_type = strdup(ts);
		else if (asprintf(&v->part_type, "%x", blkid_partition_get_type(par)) < 0)
			v->part_type = NULL;
		const char *u = blkid_partition_get_uuid(par);
		const char *n = blkid_partition_get_name(par);
		v->part_uuid = u ? strdup(u) : NULL;
		v->part_name = n ? strdup(n) : NULL;
		v->bootable = !strcmp(t, "dos") && (blkid_partition_get_flags(par) & 0x80);
	}
	blkid_free_probe(pr);
	return 0;
}

/* State 1: what the volume is. */
static int bvol_probe(struct bvol *v)
{
	struct snap_job *job = v->job;
	const char *vol = snap_job_string(job, SNAP_SPARAM_BV_VOLUME);
	char path[PATH_MAX];
	if (!realpath(vol && *vol ? vol : "/", path))
		return fail_errno(v, "find the volume", vol && *vol ? vol : "/");
	v->volume = strdup(path);
	if (!v->volume)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	struct stat st;
	if (stat(v->volume, &st) < 0)
		return fail_errno(v, "stat the volume", v->volume);
	v->fs_dev = st.st_dev;
	struct find_mount f = {.point = v->volume};
	int r = each_mount(find_mount_cb, &f);
	if (r < 0 || !f.fstype) {
		free(f.fstype);
		free(f.source);
		return snap_job_fail(job, r < 0 ? r : -EINVAL,
				     "%s is not a mount point: give the volume's mount point "
				     "with -v",
				     v->volume);
	}
	v->fstype = f.fstype;
	v->blk_dev = makedev(f.maj, f.min);
	struct stat bst;
	if (f.source[0] == '/' && stat(f.source, &bst) == 0 && S_ISBLK(bst.st_mode) &&
	    bst.st_rdev == v->blk_dev) {
		v->device = f.source;
	} else {
		free(f.source);
		r = dev_name(f.maj, f.min, "", &v->device);
		if (r == -ENOMEM)
			return snap_job_fail(job, r, "out of memory");
		if (r < 0)
			return snap_job_fail(job, -ENODEV,
					     "%s is not on a block device (%s, %u:%u): only block "
					     "devices can be copied like this",
					     v->volume, v->fstype, f.maj, f.min);
	}
	int fd = open(v->device, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail_errno(v, "open the volume's device", v->device);
	if (ioctl(fd, BLKGETSIZE64, &v->dev_size) < 0) {
		r = fail_errno(v, "get the size of", v->device);
		close(fd);
		return r;
	}
	close(fd);
	blkid_probe pr = blkid_new_probe_from_filename(v->device);
	if (pr) {
		blkid_probe_enable_superblocks(pr, 1);
		blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID |
							  BLKID_SUBLKS_TYPE);
		if (blkid_do_safeprobe(pr) == 0) {
			v->label = blkid_value(pr, "LABEL");
			v->uuid = blkid_value(pr, "UUID");
		}
		blkid_free_probe(pr);
	}
	struct statvfs sv;
	if (statvfs(v->volume, &sv) < 0)
		return fail_errno(v, "statvfs", v->volume);
	v->used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
	snap_info("volume %s: %s on %s (%" PRIu64 " bytes, %" PRIu64 " used), label %s, uuid %s",
		  v->volume, v->fstype, v->device, v->dev_size, v->used,
		  v->label ? v->label : "(none)", v->uuid ? v->uuid : "(none)");
	return probe_partition(v);
}

/* ---------------------------------------------------------------------------------------- */
/* Configuration and checks                                                                  */

/* Whether path is dir or below it (both absolute, normalized). */
static bool path_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	if (!strcmp(dir, "/"))
		return true;
	return !strncmp(path, dir, n) && (path[n] == 0 || path[n] == '/');
}

static int bvol_configure(struct bvol *v)
{
	struct snap_job *job = v->job;
	v->clone_only = snap_job_param(job, SNAP_PARAM_BV_CLONE_ONLY, 0) != 0;
	v->snapshot = snap_job_param(job, SNAP_PARAM_BV_SNAPSHOT, 0) != 0;
	const char *dest = snap_job_string(job, SNAP_SPARAM_DESTINATION);
	const char *prefix = snap_job_string(job, SNAP_SPARAM_PREFIX);
	v->name = strdup(prefix && *prefix ? prefix : "image");
	if (!v->name)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	if (strchr(v->name, '/') || !strcmp(v->name, ".") || !strcmp(v->name, "..") ||
	    strlen(v->name) > NAME_MAX - 40)
		return snap_job_fail(job, -EINVAL, "invalid bundle name '%s'", v->name);
	if (!dest || !*dest)
		dest = "/tmp";
	v->s3 = !strncmp(dest, "s3://", 5);
	if (v->s3) {
		if (v->clone_only)
			return snap_job_fail(job, -EINVAL,
					     "--clone-only keeps the image in a local directory, not "
					     "in %s",
					     dest);
		v->dest = strdup(dest);
	} else {
		v->dest = realpath(dest, NULL);
		if (!v->dest)
			return fail_errno(v, "use the destination", dest);
		struct stat st;
		if (stat(v->dest, &st) < 0 || !S_ISDIR(st.st_mode))
			return snap_job_fail(job, -ENOTDIR, "destination %s is not a directory",
					     v->dest);
	}
	if (!v->dest)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	const char *scratch = snap_job_string(job, SNAP_SPARAM_BV_SCRATCH_DIR);
	v->image_dir =
	    v->s3 ? realpath(scratch && *scratch ? scratch : "/tmp", NULL) : strdup(v->dest);
	if (!v->image_dir)
		return fail_errno(v, "use the scratch directory", scratch ? scratch : "/tmp");
	int64_t p = snap_job_param(job, SNAP_PARAM_BV_PARTITION, SNAP_BV_PARTITION_AUTO);
	if (p < SNAP_BV_PARTITION_AUTO || p > SNAP_BV_PARTITION_GPT)
		return snap_job_fail(job, -EINVAL, "invalid partition table kind %" PRId64, p);
	v->table = (int)p;
	return 0;
}

/* Invariant 6, and the image's geometry. */
static int bvol_check_space(struct bvol *v)
{
	struct snap_job *job = v->job;
	if (v->table == SNAP_BV_PARTITION_AUTO)
		v->table = !v->src_table		      ? SNAP_BV_PARTITION_NONE
			   : !strcmp(v->src_table, "gpt") ? SNAP_BV_PARTITION_GPT
							  : SNAP_BV_PARTITION_MBR;
	bool same_table = v->src_table && ((v->table == SNAP_BV_PARTITION_GPT &&
					    !strcmp(v->src_table, "gpt")) ||
					   (v->table == SNAP_BV_PARTITION_MBR &&
					    !strcmp(v->src_table, "dos")));
	if (v->table == SNAP_BV_PARTITION_NONE)
		v->fs_start = 0;
	else if (same_table && v->part_start >= MiB && v->part_start <= BOOT_AREA_MAX)
		v->fs_start = v->part_start; /* the boot area before it is kept */
	else
		v->fs_start = MiB;
	int64_t size = snap_job_param(job, SNAP_PARAM_BV_SIZE, 0);
	if (size < 0)
		return snap_job_fail(job, -EINVAL, "invalid image size %" PRId64, size);
	uint64_t tail = v->table == SNAP_BV_PARTITION_GPT ? GPT_TAIL_SECTORS * 512u : 0;
	v->size = size ? (uint64_t)size : v->fs_start + v->dev_size + (tail ? MiB : 0);
	if (v->size < v->fs_start + tail + 4 * MiB)
		return snap_job_fail(job, -EINVAL, "image size %" PRIu64 " bytes is too small",
				     v->size);
	/* the filesystem ends on a MiB boundary, before the backup GPT */
	v->fs_size = v->size - v->fs_start - tail;
	if (v->table != SNAP_BV_PARTITION_NONE)
		v->fs_size &= ~(MiB - 1);
	if (!snap_job_param(job, SNAP_PARAM_BV_NO_SIZE_CHECKS, 0) && !v->snapshot &&
	    v->fs_size < v->used)
		return snap_job_fail(job, -EFBIG,
				     "image size %" PRIu64 " MB is smaller than the %" PRIu64
				     " MB the volume %s uses (give a larger -s, or "
				     "--no-size-checks)",
				     v->size / MiB, (v->used + MiB - 1) / MiB, v->volume);
	if (v->snapshot) /* no image: nothing is written locally but the bundle */
		return 0;
	struct statvfs sv;
	if (statvfs(v->image_dir, &sv) < 0)
		return fail_errno(v, "statvfs", v->image_dir);
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	uint64_t need = v->used + v->fs_start + 16 * MiB; /* the tree, metadata, boot area */
	if (need > v->size)
		need = v->size;
	if (v->s3)
		snap_info("the image needs up to %" PRIu64 " MB of local space in %s (%" PRIu64
			  " MB free)",
			  (need + MiB - 1) / MiB, v->image_dir, avail / MiB);
	if (avail < need)
		return snap_job_fail(job, -ENOSPC,
				     "not enough space in %s for the image: it needs up to %" PRIu64
				     " MB, %" PRIu64 " MB are free",
				     v->image_dir, (need + MiB - 1) / MiB, avail / MiB);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Child processes                                                                           */

/* Runs argv (PATH lookup) with stdin from in_fd (-1: /dev/null) and stdout to stderr, polling
 * the job's cancel; returns the exit status, or -ECANCELED after killing it. */
static int run_child(struct bvol *v, char *const argv[], int in_fd)
{
	pid_t pid = fork();
	if (pid < 0)
		return snap_job_fail(v->job, -errno, "cannot run %s: %s", argv[0],
				     strerror(errno));
	if (pid == 0) {
		int in = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY);
		if (in < 0 || dup2(in, 0) < 0 || dup2(2, 1) < 0)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	v->child = pid;
	return 0;
}

/* Waits for the child started by run_child, killing it when the job is cancelled. */
static int wait_child(struct bvol *v, const char *what, int *ret_status)
{
	int status = 0;
	bool killed = false;
	for (;;) {
		pid_t w = waitpid(v->child, &status, WNOHANG);
		if (w == v->child)
			break;
		if (w < 0 && errno != EINTR) {
			v->child = 0;
			return snap_job_fail(v->job, -errno, "cannot wait for %s", what);
		}
		if (!killed && snap_job_cancelled(v->job)) {
			kill(v->child, SIGTERM);
			killed = true;
		}
		snap_job_report(v->job, false);
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	v->child = 0;
	if (killed)
		return -ECANCELED;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return snap_job_fail(v->job, -ENOENT, "cannot run %s: not installed?", what);
	*ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return 0;
}

/* Runs argv with the len bytes of in on its stdin (in NULL: /dev/null) and waits for it. */
static int run_wait(struct bvol *v, char *const argv[], const char *in, size_t len, int *ret_status)
{
	int pfd[2] = {-1, -1};
	if (in && pipe2(pfd, O_CLOEXEC) < 0)
		return fail_errno(v, "make a pipe for", argv[0]);
	int r = run_child(v, argv, pfd[0]);
	if (in) {
		close(pfd[0]);
		/* the child reads all of it (sfdisk's script, rsync's exclude list) before it
		 * writes anything; a failed write shows in its exit status */
		if (r == 0)
			(void)snap_write_all(pfd[1], in, len, NULL);
		close(pfd[1]);
	}
	return r < 0 ? r : wait_child(v, argv[0], ret_status);
}

static int run_checked(struct bvol *v, char *const argv[], const char *in, size_t len)
{
	int status = 0;
	int r = run_wait(v, argv, in, len, &status);
	if (r < 0)
		return r;
	if (status != 0)
		return snap_job_fail(v->job, -EIO, "%s failed (exit status %d) on %s", argv[0],
				     status, v->image_tmp);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The image                                                                                 */

/* State 2: the sparse temporary (invariant 1). */
static int bvol_make_image(struct bvol *v)
{
	if (asprintf(&v->image_final, "%s/%s", v->image_dir, v->name) < 0)
		return snap_job_fail(v->job, -ENOMEM, "out of memory");
	/* only --clone-only ever gives the image its name: otherwise a file of that name is no
	 * obstacle */
	unsigned flags = SNAP_OUTPUT_BUFFERED | snap_output_job_flags(v->job);
	if (!v->clone_only)
		flags |= SNAP_OUTPUT_FORCE;
	char *detail = NULL;
	int r = snap_output_open(v->image_final, v->size, flags, &v->image, &detail);
	if (r < 0) {
		snap_job_fail(v->job, r, "cannot make the image: %s",
			      detail ? detail : snap_strerror(r));
		free(detail);
		return r;
	}
	v->image_fd = snap_output_fd(v->image);
	if (!(v->image_tmp = strdup(snap_output_tmp_path(v->image))))
		return snap_job_fail(v->job, -ENOMEM, "out of memory");
	return 0;
}

/* The source disk's boot area (MBR boot code, the gap up to the first partition) into the
 * image, where the image has the same kind of table. */
static int copy_boot_area(struct bvol *v)
{
	if (!v->disk || v->fs_start != v->part_start)
		return 0;
	uint64_t table_end = v->table == SNAP_BV_PARTITION_GPT ? 34 * 512 : 512;
	int fd = open(v->disk, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snap_warn("cannot read the boot area of %s: %s", v->disk, strerror(errno));
		return 0;
	}
	size_t len = (size_t)v->part_start;
	uint8_t *buf = malloc(len);
	int r = 0;
	if (!buf) {
		r = snap_job_fail(v->job, -ENOMEM, "out of memory");
	} else if (pread(fd, buf, len, 0) != (ssize_t)len) {
		snap_warn("cannot read the boot area of %s", v->disk);
	} else {
		bool any = false;
		for (size_t i = 0; i < BOOT_CODE_BYTES && !any; i++)
			any = buf[i] != 0;
		if (pwrite(v->image_fd, buf, BOOT_CODE_BYTES, 0) != BOOT_CODE_BYTES ||
		    pwrite(v->image_fd, buf + table_end, len - table_end, (off_t)table_end) !=
			(ssize_t)(len - table_end))
			r = fail_errno(v, "write the boot area of", v->image_tmp);
		else
			snap_info("kept the boot area of %s (%zu bytes%s)", v->disk, len,
				  any ? ", boot code" : "");
	}
	free(buf);
	close(fd);
	return r;
}

/* State 2: the partition table, by sfdisk from a script. */
static int bvol_partition(struct bvol *v)
{
	if (v->table == SNAP_BV_PARTITION_NONE)
		return 0;
	bool gpt = v->table == SNAP_BV_PARTITION_GPT;
	bool same = v->src_table && !strcmp(v->src_table, gpt ? "gpt" : "dos");
	char *script = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&script, &len);
	if (!f)
		return snap_job_fail(v->job, -ENOMEM, "out of memory");
	fprintf(f, "label: %s\n", gpt ? "gpt" : "dos");
	if (same && v->table_id)
		fprintf(f, "label-id: %s\n", v->table_id);
	fprintf(f, "start=%" PRIu64 ", size=%" PRIu64, v->fs_start / 512, v->fs_size / 512);
	if (same && v->part_type)
		fprintf(f, ", type=%s", v->part_type);
	else
		fprintf(f, ", type=%s", gpt ? "0FC63DAF-8483-4772-8E79-3D69D8477DE4" : "83");
	if (same && gpt && v->part_uuid)
		fprintf(f, ", uuid=%s", v->part_uuid);
	if (same && gpt && v->part_name && !strpbrk(v->part_name, "\"\n\\"))
		fprintf(f, ", name=\"%s\"", v->part_name);
	if (same && v->bootable)
		fprintf(f, ", bootable");
	fputc('\n', f);
	if (fclose(f) != 0) {
		free(script);
		return snap_job_fail(v->job, -ENOMEM, "out of memory");
	}
	snap_debug("sfdisk script for %s:\n%s", v->image_tmp, script);
	char *argv[] = {"sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", v->image_tmp,
			NULL};
	int r = run_checked(v, argv, script, len);
	free(script);
	if (r < 0)
		return r;
	return same ? copy_boot_area(v) : 0;
}

/* A loop device over [fs_start, fs_start + fs_size) of the image (invariant 2). */
static int attach_loop(struct bvol *v)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return fail_errno(v, "open", "/dev/loop-control");
	int r = -EBUSY;
	for (int attempt = 0; attempt < 16 && r == -EBUSY; attempt++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0) {
			r = fail_errno(v, "find a free loop device for", v->image_tmp);
			break;
		}
		snprintf(v->loop_dev, sizeof(v->loop_dev), "/dev/loop%d", n);
		int fd = open(v->loop_dev, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			r = fail_errno(v, "open", v->loop_dev);
			break;
		}
		struct loop_config cfg = {.fd = (unsigned)v->image_fd};
		cfg.info.lo_offset = v->fs_start;
		cfg.info.lo_sizelimit = v->fs_size;
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
			v->loop_fd = fd;
			r = 0;
			break;
		}
		r = -errno;
		if (r == -EINVAL || r == -ENOTTY) { /* kernels before 5.8 */
			if (ioctl(fd, LOOP_SET_FD, v->image_fd) == 0) {
				if (ioctl(fd, LOOP_SET_STATUS64, &cfg.info) == 0) {
					v->loop_fd = fd;
					r = 0;
					break;
				}
				r = -errno;
				ioctl(fd, LOOP_CLR_FD, 0);
			} else {
				r = -errno;
			}
		}
		close(fd);
	}
	close(ctl);
	if (r < 0 && r != -EBUSY && !v->job->error_detail)
		snap_job_fail(v->job, r, "cannot attach %s to a loop device: %s", v->image_tmp,
			      snap_strerror(r));
	else if (r == -EBUSY)
		snap_job_fail(v->job, r, "cannot attach %s: every loop device is busy",
			      v->image_tmp);
	return r;
}

/* State 2: loop device, mkfs with the volume's type, label and UUID, mount. */
static int bvol_format(struct bvol *v)
{
	int r = attach_loop(v);
	if (r < 0)
		return r;
	const char *t = v->fstype;
	char mkfs[64], uuidopt[64];
	snprintf(mkfs, sizeof(mkfs), "mkfs.%s", t);
	bool ext = !strcmp(t, "ext2") || !strcmp(t, "ext3") || !strcmp(t, "ext4");
	bool xfs = !strcmp(t, "xfs");
	if (!ext && !xfs && strcmp(t, "btrfs"))
		return snap_job_fail(v->job, -EOPNOTSUPP,
				     "cannot make a %s filesystem like %s's: ext2/3/4, xfs and "
				     "btrfs are supported (or --snapshot --no-filter)",
				     t, v->volume);
	/* the three take -q, a force flag (mke2fs's -F, the others' -f) and -L alike; the UUID
	 * is mkfs.xfs's -m uuid=, the others' -U */
	char *argv[16];
	int n = 0;
	argv[n++] = mkfs;
	argv[n++] = "-q";
	argv[n++] = ext ? "-F" : "-f";
	if (v->label) {
		argv[n++] = "-L";
		argv[n++] = v->label;
	}
	if (v->uuid && xfs) {
		snprintf(uuidopt, sizeof(uuidopt), "uuid=%s", v->uuid);
		argv[n++] = "-m";
		argv[n++] = uuidopt;
	} else if (v->uuid) {
		argv[n++] = "-U";
		argv[n++] = v->uuid;
	}
	argv[n++] = v->loop_dev;
	argv[n] = NULL;
	r = run_checked(v, argv, NULL, 0);
	if (r < 0)
		return r;
	/* mkdtemp()'s template: six X that it replaces */
	char six[7];
	memset(six, 'X', 6);
	six[6] = 0;
	if (asprintf(&v->mnt, "%s/.%s.mnt-%s", v->image_dir, v->name, six) < 0) {
		v->mnt = NULL;
		return snap_job_fail(v->job, -ENOMEM, "out of memory");
	}
	if (!mkdtemp(v->mnt)) {
		r = fail_errno(v, "make a mount point", v->mnt);
		free(v->mnt);
		v->mnt = NULL;
		return r;
	}
	if (mount(v->loop_dev, v->mnt, t, 0, NULL) < 0)
		return fail_errno(v, "mount the image at", v->mnt);
	v->mounted = true;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The copy                                                                                  */

struct walk {
	struct bvol *v;
	FILE *out; /* the exclude list: NUL-separated anchored rsync patterns */
	bool filter, all;
	const char **excl, **incl;
	size_t nexcl, nincl;
	char **skip; /* absolute paths never walked nor copied (destination, image, mount) */
	size_t nskip;
	uint64_t filtered;
	int error;
};

static __thread struct walk *walk_ctx; /* nftw has no user pointer */

/* Writes "/rel" as an rsync pattern: wildcards escaped when there are any (rsync matches a
 * pattern without *, ? or [ literally, and one with them with backslash escapes). */
static void put_pattern(FILE *f, const char *rel, const char *suffix)
{
	bool wild = strpbrk(rel, "*?[") != NULL || (suffix && *suffix);
	for (const char *p = rel; *p; p++) {
		if (wild && strchr("*?[\\", *p))
			fputc('\\', f);
		fputc(*p, f);
	}
	if (suffix)
		fputs(suffix, f);
	fputc(0, f);
}

/* The path relative to the volume with a leading '/' (the volume's root is "/"). */
static const char *rel_path(const struct bvol *v, const char *path)
{
	size_t n = strlen(v->volume);
	if (!strcmp(v->volume, "/"))
		return path;
	return path[n] ? path + n : "/";
}

static bool listed(const char *abs, const char *rel, const char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i], abs) || !strcmp(list[i], rel))
			return true;
	return false;
}

static int walk_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	struct walk *w = walk_ctx;
	struct bvol *v = w->v;
	(void)type;
	if (ftw->level == 0)
		return FTW_CONTINUE;
	if (snap_job_cancelled(v->job)) {
		w->error = -ECANCELED;
		return FTW_STOP;
	}
	const char *rel = rel_path(v, path);
	for (size_t i = 0; i < w->nskip; i++) {
		if (!strcmp(path, w->skip[i])) {
			put_pattern(w->out, rel, NULL);
			return FTW_SKIP_SUBTREE;
		}
	}
	if (listed(path, rel, w->excl, w->nexcl)) {
		snap_debug("excluded %s", path);
		put_pattern(w->out, rel, NULL);
		return FTW_SKIP_SUBTREE;
	}
	/* another filesystem: rsync -x does not enter it; with --all only virtual ones are
	 * emptied (their mount point stays) */
	if (st->st_dev != v->fs_dev && S_ISDIR(st->st_mode) && !w->all)
		return FTW_SKIP_SUBTREE;
	if (w->filter && !listed(path, rel, w->incl, w->nincl)) {
		for (size_t i = 0; i < sizeof(sensitive_patterns) / sizeof(*sensitive_patterns);
		     i++) {
			if (fnmatch(sensitive_patterns[i], rel, 0) == 0) {
				snap_info("left out %s (matches %s)", path, sensitive_patterns[i]);
				put_pattern(w->out, rel, NULL);
				w->filtered++;
				return S_ISDIR(st->st_mode) ? FTW_SKIP_SUBTREE : FTW_CONTINUE;
			}
		}
	}
	return FTW_CONTINUE;
}

struct virt_ctx {
	struct bvol *v;
	FILE *out;
	struct walk *w;
};

static int virtual_cb(void *ctx, const struct mount_entry *m)
{
	struct virt_ctx *c = ctx;
	if (!path_under(m->point, c->v->volume) || !strcmp(m->point, c->v->volume))
		return 0;
	for (size_t i = 0; i < sizeof(virtual_fs) / sizeof(*virtual_fs); i++) {
		if (!strcmp(m->fstype, virtual_fs[i])) {
			put_pattern(c->out, rel_path(c->v, m->point), "/*");
			snap_debug("left out the content of %s (%s)", m->point, m->fstype);
			break;
		}
	}
	return 0;
}

static int add_skip(struct walk *w, const char *path)
{
	char **n = realloc(w->skip, (w->nskip + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	w->skip = n;
	w->skip[w->nskip] = strdup(path);
	return w->skip[w->nskip++] ? 0 : -ENOMEM;
}

/* Invariant 3: the exclude list, decided by one walk of the volume. */
static int build_excludes(struct bvol *v, char **ret_list, size_t *ret_len)
{
	struct snap_job *job = v->job;
	struct walk w = {.v = v};
	w.filter = !snap_job_param(job, SNAP_PARAM_BV_NO_FILTER, 0);
	w.all = snap_job_param(job, SNAP_PARAM_BV_ALL, 0) != 0;
	w.nexcl = snap_job_list(job, SNAP_SPARAM_BV_EXCLUDE, &w.excl);
	w.nincl = snap_job_list(job, SNAP_SPARAM_BV_INCLUDE, &w.incl);
	char *list = NULL;
	size_t len = 0;
	int r = 0;
	w.out = open_memstream(&list, &len);
	if (!w.out) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < w.nexcl; i++)
		if (w.excl[i][0] != '/') {
			r = snap_job_fail(job, -EINVAL, "exclude %s is not an absolute path",
					  w.excl[i]);
			goto out;
		}
	/* the bundle, the image and its mount point never go into the image */
	const char *own[] = {v->s3 ? NULL : v->dest, v->image_tmp, v->mnt};
	for (size_t i = 0; i < 3; i++) {
		if (own[i] && path_under(own[i], v->volume) && strcmp(own[i], v->volume)) {
			if (add_skip(&w, own[i]) < 0) {
				r = snap_job_fail(job, -ENOMEM, "out of memory");
				goto out;
			}
			put_pattern(w.out, rel_path(v, own[i]), NULL);
			if (i == 0)
				snap_info("left out the destination %s, which lies in the volume",
					  own[i]);
		}
	}
	if (w.all) {
		struct virt_ctx c = {.v = v, .out = w.out, .w = &w};
		each_mount(virtual_cb, &c);
	}
	walk_ctx = &w;
	int flags = FTW_PHYS | FTW_ACTIONRETVAL | (w.all ? 0 : FTW_MOUNT);
	if (nftw(v->volume, walk_cb, 64, flags) < 0 && !w.error)
		w.error = -errno;
	walk_ctx = NULL;
	if (w.error) {
		r = w.error == -ECANCELED ? w.error
					  : snap_job_fail(job, w.error, "cannot walk %s: %s",
							  v->volume, snap_strerror(w.error));
		goto out;
	}
	v->filtered = w.filtered;
out:
	if (w.out && fclose(w.out) != 0 && r == 0)
		r = snap_job_fail(job, -ENOMEM, "out of memory");
	for (size_t i = 0; i < w.nskip; i++)
		free(w.skip[i]);
	free(w.skip);
	free(w.excl);
	free(w.incl);
	if (r < 0) {
		free(list);
		return r;
	}
	*ret_list = list;
	*ret_len = len;
	return 0;
}

/* The image's /etc/fstab: the given file, or one line for the root filesystem. */
static int write_fstab(struct bvol *v)
{
	const char *src = snap_job_string(v->job, SNAP_SPARAM_BV_FSTAB);
	bool gen = snap_job_param(v->job, SNAP_PARAM_BV_GENERATE_FSTAB, 0) != 0;
	if (!src && !gen)
		return 0;
	char *text = NULL, *path = NULL;
	size_t len = 0;
	int r = 0;
	if (src) {
		r = snap_job_read_file(v->job, src, "fstab", 1u << 20, &text, &len);
		if (r < 0)
			return r;
	} else {
		const char *id = v->uuid ? v->uuid : v->label;
		int n = id ? asprintf(&text, "%s=%s\t/\t%s\tdefaults\t0\t1\n",
				      v->uuid ? "UUID" : "LABEL", id, v->fstype)
			   : -1;
		if (n < 0)
			return snap_job_fail(v->job, -EINVAL,
					     "cannot generate an fstab: the filesystem has neither "
					     "UUID nor label");
		len = (size_t)n;
	}
	if (asprintf(&path, "%s/etc/fstab", v->mnt) < 0) {
		free(text);
		return snap_job_fail(v->job, -ENOMEM, "out of memory");
	}
	char *slash = strrchr(path, '/');
	*slash = 0;
	mkdir(path, 0755); /* the image's /etc, when the tree had none */
	*slash = '/';
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len)
		r = fail_errno(v, "write", "the image's /etc/fstab");
	if (fd >= 0)
		close(fd);
	free(text);
	free(path);
	return r;
}

/* State 2: rsync the tree into the mounted image. */
static int bvol_copy(struct bvol *v)
{
	char *list = NULL;
	size_t len = 0;
	int r = build_excludes(v, &list, &len);
	if (r < 0)
		return r;
	char *src = NULL, *dst = NULL;
	if (asprintf(&src, "%s/", strcmp(v->volume, "/") ? v->volume : "") < 0 ||
	    asprintf(&dst, "%s/", v->mnt) < 0) {
		free(list);
		free(src);
		return snap_job_fail(v->job, -ENOMEM, "out of memory");
	}
	bool all = snap_job_param(v->job, SNAP_PARAM_BV_ALL, 0) != 0;
	char *argv[16];
	int n = 0;
	argv[n++] = "rsync";
	argv[n++] = "-aHAXS"; /* links, hard links, ACLs, xattrs (SELinux labels), holes */
	argv[n++] = "--numeric-ids";
	if (!all)
		argv[n++] = "-x";
	argv[n++] = "--from0";
	argv[n++] = "--exclude-from=-";
	argv[n++] = src;
	argv[n++] = dst;
	argv[n] = NULL;
	int status = 0;
	r = run_wait(v, argv, list, len, &status);
	if (r < 0)
		goto out;
	if (status == 24) {
		snap_warn("some files of %s vanished while they were copied", v->volume);
	} else if (status != 0) {
		r = snap_job_fail(v->job, -EIO,
				  "rsync of %s into the image failed (exit status %d)", v->volume,
				  status);
		goto out;
	}
	r = write_fstab(v);
out:
	free(list);
	free(src);
	free(dst);
	return r;
}

/* State 2: unmount, sync; the loop device goes with its last descriptor (AUTOCLEAR). */
static int bvol_unmount(struct bvol *v)
{
	int r = 0;
	if (v->mounted) {
		if (umount(v->mnt) < 0) {
			r = fail_errno(v, "unmount the image from", v->mnt);
			umount2(v->mnt, MNT_DETACH);
		}
		v->mounted = false;
	}
	if (v->mnt) {
		rmdir(v->mnt);
		free(v->mnt);
		v->mnt = NULL;
	}
	if (v->loop_fd >= 0) {
		ioctl(v->loop_fd, LOOP_CLR_FD, 0);
		close(v->loop_fd);
		v->loop_fd = -1;
	}
	if (v->image_fd >= 0 && r == 0 && fsync(v->image_fd) < 0)
		r = fail_errno(v, "sync", v->image_tmp);
	return r;
}

/* Invariant 2, on every path. */
static void bvol_teardown(struct bvol *v)
{
	if (v->child > 0) {
		kill(v->child, SIGTERM);
		waitpid(v->child, NULL, 0);
		v->child = 0;
	}
	bvol_unmount(v);
	v->image = snap_output_free(v->image); /* removes the temporary unless committed */
	v->image_fd = -1;
}

/* State 3 (--clone-only): the image under its final name. */
static int bvol_keep_image(struct bvol *v)
{
	char *detail = NULL;
	int r = snap_output_commit(v->image, &detail);
	if (r < 0) {
		snap_job_fail(v->job, r, "cannot keep the image: %s",
			      detail ? detail : snap_strerror(r));
		free(detail);
		return r;
	}
	snap_job_set_result_string(v->job, SNAP_RESULT_OUTPUT_PATH, v->image_final);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The bundle                                                                                */

/* The inner job's progress is the outer's, and the outer's cancel reaches the inner. */
static int inner_progress(void *userdata, const struct snap_progress *p)
{
	struct bvol *v = userdata;
	struct snap_progress *o = &v->job->progress;
	o->bytes_total = p->bytes_total;
	o->bytes_done = p->bytes_done;
	o->bytes_read = p->bytes_read;
	o->bytes_skipped = p->bytes_skipped;
	o->bytes_written = p->bytes_written;
	o->bytes_uploaded = p->bytes_uploaded;
	snap_job_report(v->job, false);
	return snap_job_cancelled(v->job) ? 1 : 0;
}

static const int pass_params[] = {
    SNAP_PARAM_THREADS,	       SNAP_PARAM_LEVEL,	  SNAP_PARAM_FORCE,
    SNAP_PARAM_FORCE_PREAD,    SNAP_PARAM_QUEUE_DEPTH,	  SNAP_PARAM_REQUEST_SIZE,
    SNAP_PARAM_NO_DIRECT,      SNAP_PARAM_FS_SKIP,	  SNAP_PARAM_MIN_GAP,
    SNAP_PARAM_PART_SIZE,      SNAP_PARAM_CHUNK_SIZE,	  SNAP_PARAM_KEEP_UNPARTITIONED,
    SNAP_PARAM_S3_CONNECTIONS, SNAP_PARAM_S3_RETRIES,	  SNAP_PARAM_PROGRESS_MS,
};
static const int pass_strings[] = {
    SNAP_SPARAM_CERT,		  SNAP_SPARAM_PRIVATE_KEY,   SNAP_SPARAM_USER,
    SNAP_SPARAM_ARCH,		  SNAP_SPARAM_EC2_CERT,	     SNAP_SPARAM_KERNEL,
    SNAP_SPARAM_RAMDISK,	  SNAP_SPARAM_S3_ENDPOINT,   SNAP_SPARAM_S3_REGION,
    SNAP_SPARAM_S3_ACCESS_KEY,	  SNAP_SPARAM_S3_SECRET_KEY, SNAP_SPARAM_S3_SESSION_TOKEN,
    SNAP_SPARAM_S3_PROFILE,	  SNAP_SPARAM_S3_ACL,
};
static const int pass_lists[] = {
    SNAP_SPARAM_BLOCK_DEVICE_MAPPING,
    SNAP_SPARAM_PRODUCT_CODES,
    SNAP_SPARAM_ANCESTOR,
};

static const int pass_results_u64[] = {
    SNAP_RESULT_BYTES_TOTAL,	 SNAP_RESULT_BYTES_READ,    SNAP_RESULT_BYTES_SKIPPED,
    SNAP_RESULT_BYTES_WRITTEN,	 SNAP_RESULT_PARTS,	    SNAP_RESULT_STREAM_BYTES,
};
static const int pass_results_str[] = {
    SNAP_RESULT_MANIFEST_PATH,
    SNAP_RESULT_DIGEST,
};

/* State 3: the bundle job over image (the temporary, or the device for a snapshot). */
static int bvol_bundle(struct bvol *v, const char *image)
{
	struct snap_job *job = v->job, *in;
	int r = snap_job_new(SNAP_JOB_BUNDLE, &in);
	if (r < 0)
		return snap_job_fail(job, r, "cannot create the bundle job: %s", snap_strerror(r));
	v->inner = in;
	for (size_t i = 0; i < sizeof(pass_params) / sizeof(*pass_params); i++) {
		int64_t x;
		if (snap_job_get_param(job, pass_params[i], &x) == 0 &&
		    (r = snap_job_set_param(in, pass_params[i], x)) < 0)
			return snap_job_fail(job, r, "out of memory");
	}
	for (size_t i = 0; i < sizeof(pass_strings) / sizeof(*pass_strings); i++) {
		const char *s = snap_job_string(job, pass_strings[i]);
		if (s && (r = snap_job_set_string(in, pass_strings[i], s)) < 0)
			return snap_job_fail(job, r, "out of memory");
	}
	for (size_t i = 0; i < sizeof(pass_lists) / sizeof(*pass_lists); i++) {
		const char **l;
		size_t n = snap_job_list(job, pass_lists[i], &l);
		for (size_t k = 0; k < n && r >= 0; k++)
			r = snap_job_add_string(in, pass_lists[i], l[k]);
		free(l);
		if (r < 0)
			return snap_job_fail(job, r, "out of memory");
	}
	if (snap_job_set_string(in, SNAP_SPARAM_IMAGE, image) < 0 ||
	    snap_job_set_string(in, SNAP_SPARAM_DESTINATION, v->dest) < 0 ||
	    snap_job_set_string(in, SNAP_SPARAM_PREFIX, v->name) < 0)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	snap_job_set_progress(in, inner_progress, v);
	uint64_t t0 = snap_now_ns();
	r = snap_job_run(in);
	v->t_bundle = secs(t0);
	if (r < 0) {
		if (r == -ECANCELED && snap_job_cancelled(job))
			return r;
		return snap_job_fail(job, r, "%s", snap_job_error(in));
	}
	for (size_t i = 0; i < sizeof(pass_results_u64) / sizeof(*pass_results_u64); i++) {
		uint64_t x;
		if (snap_job_result_u64(in, pass_results_u64[i], &x) == 0)
			snap_job_set_result_u64(job, pass_results_u64[i], x);
	}
	for (size_t i = 0; i < sizeof(pass_results_str) / sizeof(*pass_results_str); i++) {
		const char *s = snap_job_result_string(in, pass_results_str[i]);
		if (s)
			snap_job_set_result_string(job, pass_results_str[i], s);
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* --snapshot: the frozen block device                                                       */

/* Invariant 4: a process that thaws the volume unless told "done" (one byte) first. */
static int start_guard(struct bvol *v, int fs_fd, int *ret_pipe, pid_t *ret_pid)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return fail_errno(v, "make a pipe for", "the freeze guard");
	pid_t pid = fork();
	if (pid < 0) {
		int r = fail_errno(v, "start", "the freeze guard");
		close(pfd[0]);
		close(pfd[1]);
		return r;
	}
	if (pid == 0) {
		close(pfd[1]);
		/* a signal meant for the command (a terminal's ^C) must not stop the guard */
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		char c;
		ssize_t n;
		do
			n = read(pfd[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			ioctl(fs_fd, FITHAW, 0);
		_exit(0);
	}
	close(pfd[0]);
	*ret_pipe = pfd[1];
	*ret_pid = pid;
	return 0;
}

static int bvol_snapshot(struct bvol *v)
{
	struct snap_job *job = v->job;
	if (!snap_job_param(job, SNAP_PARAM_BV_NO_FILTER, 0))
		return snap_job_fail(job, -EINVAL,
				     "--snapshot bundles the block device bit for bit, so the "
				     "sensitive-file filter cannot apply: give --no-filter too");
	const char **excl, **incl;
	size_t nexcl = snap_job_list(job, SNAP_SPARAM_BV_EXCLUDE, &excl);
	size_t nincl = snap_job_list(job, SNAP_SPARAM_BV_INCLUDE, &incl);
	free(excl);
	free(incl);
	if (nexcl || nincl || snap_job_string(job, SNAP_SPARAM_BV_FSTAB) ||
	    snap_job_param(job, SNAP_PARAM_BV_GENERATE_FSTAB, 0)) {
		return snap_job_fail(job, -EINVAL,
				     "--snapshot copies no files: -e, -i, --fstab and "
				     "--generate-fstab do not apply");
	}
	if (v->clone_only)
		return snap_job_fail(job, -EINVAL, "--snapshot makes no image: --clone-only does "
						   "not apply");
	if (!v->s3) {
		struct stat st;
		if (stat(v->dest, &st) < 0)
			return fail_errno(v, "stat", v->dest);
		if (st.st_dev == v->fs_dev)
			return snap_job_fail(job, -EINVAL,
					     "destination %s lies on %s, which --snapshot freezes: "
					     "choose a directory on another filesystem",
					     v->dest, v->volume);
	}
	int fs_fd = open(v->volume, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs_fd < 0)
		return fail_errno(v, "open", v->volume);
	int guard_fd = -1;
	pid_t guard = 0;
	int r = start_guard(v, fs_fd, &guard_fd, &guard);
	if (r < 0) {
		close(fs_fd);
		return r;
	}
	if (ioctl(fs_fd, FIFREEZE, 0) < 0) {
		r = fail_errno(v, "freeze", v->volume);
	} else {
		snap_info("froze %s; bundling %s", v->volume, v->device);
		r = bvol_bundle(v, v->device);
		if (ioctl(fs_fd, FITHAW, 0) < 0) {
			int t = fail_errno(v, "thaw", v->volume);
			if (r == 0)
				r = t;
		} else {
			snap_info("thawed %s", v->volume);
		}
	}
	/* the run thawed (or never froze): the guard leaves the volume alone */
	char done = 1;
	if (write(guard_fd, &done, 1) != 1)
		snap_warn("cannot tell the freeze guard: it thaws %s again", v->volume);
	close(guard_fd);
	waitpid(guard, NULL, 0);
	close(fs_fd);
	return r;
}

/* ---------------------------------------------------------------------------------------- */

static void set_timings(struct bvol *v)
{
	char *t = NULL;
	const char *inner = v->inner ? snap_job_result_string(v->inner, SNAP_RESULT_TIMINGS) : NULL;
	if (asprintf(&t,
		     "{\"image\":%.6f,\"copy\":%.6f,\"bundle\":%.6f,\"filtered\":%" PRIu64
		     ",\"bundle_stages\":%s}",
		     v->t_image, v->t_copy, v->t_bundle, v->filtered, inner ? inner : "null") >=
	    0)
		snap_job_set_result_string(v->job, SNAP_RESULT_TIMINGS, t);
	free(t);
}

static void bvol_free(struct bvol *v)
{
	free(v->volume);
	free(v->device);
	free(v->fstype);
	free(v->label);
	free(v->uuid);
	free(v->disk);
	free(v->src_table);
	free(v->table_id);
	free(v->part_type);
	free(v->part_uuid);
	free(v->part_name);
	free(v->dest);
	free(v->name);
	free(v->image_dir);
	free(v->image_tmp);
	free(v->image_final);
	free(v->mnt);
	snap_job_free(v->inner);
}

int snap_bundle_vol_run(struct snap_job *job)
{
	struct bvol v = {.job = job, .image_fd = -1, .loop_fd = -1};
	int r = bvol_configure(&v);
	if (r == 0)
		r = bvol_probe(&v);
	if (r == 0)
		r = bvol_check_space(&v);
	if (r < 0)
		goto out;
	if (v.snapshot) {
		snap_job_set_stage(job, SNAP_STAGE_DATA);
		r = bvol_snapshot(&v);
		goto out;
	}
	uint64_t t0 = snap_now_ns();
	r = bvol_make_image(&v);
	if (r == 0)
		r = bvol_partition(&v);
	if (r == 0)
		r = bvol_format(&v);
	v.t_image = secs(t0);
	if (r < 0)
		goto out;
	snap_job_set_stage(job, SNAP_STAGE_DATA);
	t0 = snap_now_ns();
	r = bvol_copy(&v);
	if (r == 0)
		r = bvol_unmount(&v);
	v.t_copy = secs(t0);
	if (r == 0 && snap_job_cancelled(job))
		r = -ECANCELED;
	if (r < 0)
		goto out;
	snap_info("copied %s into %s in %.2f s (%" PRIu64 " sensitive files left out)", v.volume,
		  v.image_tmp, v.t_copy, v.filtered);
	if (v.clone_only) {
		snap_job_set_stage(job, SNAP_STAGE_FINISH);
		r = bvol_keep_image(&v);
	} else {
		r = bvol_bundle(&v, v.image_tmp);
	}
out:
	bvol_teardown(&v);
	if (r == 0)
		set_timings(&v);
	bvol_free(&v);
	return r;
}
