// SPDX-License-Identifier: LGPL-2.1-or-later
/* test-output.c - output targets: temporary names, no overwrite without force, abort leaves
 * nothing, holes stay holes, block devices zeroed and size-checked (loop device when the
 * machine allows one). */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output.h"

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	assert(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void test_file(void)
{
	char dir[] = "/tmp/snap-test-output-XXXXXX", path[256];
	assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	struct snap_output *o = NULL;
	char *detail = NULL;
	uint64_t size = 64ull << 20;

	/* abort: nothing left */
	assert(snap_output_open(path, size, false, &o, &detail) == 0);
	assert(count_entries(dir) == 1 && access(path, F_OK) != 0);
	assert(snap_output_write(o, "abc", 3, 10) == 0);
	o = snap_output_free(o);
	assert(count_entries(dir) == 0);

	/* commit: the file appears, sparse, with the bytes written */
	assert(snap_output_open(path, size, false, &o, &detail) == 0);
	assert(snap_output_write(o, "hello", 5, size - 5) == 0);
	assert(snap_output_write(o, "x", 1, size) == -ERANGE);
	assert(snap_output_zero(o, 0, 4096) == 0);
	assert(snap_output_commit(o, &detail) == 0);
	o = snap_output_free(o);
	struct stat st;
	assert(stat(path, &st) == 0 && (uint64_t)st.st_size == size);
	assert(st.st_blocks * 512 < 1 << 20); /* holes stayed holes */
	char buf[5];
	int fd = open(path, O_RDONLY);
	assert(pread(fd, buf, 5, (off_t)size - 5) == 5 && !memcmp(buf, "hello", 5));
	close(fd);
	assert(count_entries(dir) == 1);

	/* no overwrite without force; with force the old file is replaced only at commit */
	assert(snap_output_open(path, size, false, &o, &detail) == -EEXIST);
	assert(detail && strstr(detail, "already exists"));
	free(detail);
	detail = NULL;
	assert(snap_output_open(path, 4096, true, &o, &detail) == 0);
	assert(stat(path, &st) == 0 && (uint64_t)st.st_size == size);
	assert(snap_output_commit(o, &detail) == 0);
	o = snap_output_free(o);
	assert(stat(path, &st) == 0 && st.st_size == 4096);

	/* a directory and "-" are refused */
	assert(snap_output_open(dir, 1, true, &o, &detail) == -EISDIR);
	free(detail);
	detail = NULL;
	assert(snap_output_open("-", 1, true, &o, &detail) == -EINVAL);
	free(detail);
	unlink(path);
	rmdir(dir);
}

static void test_blockdev(void)
{
	char img[] = "/tmp/snap-test-output-dev-XXXXXX";
	int fd = mkstemp(img);
	assert(fd >= 0);
	/* junk everywhere, so zeroing is visible */
	char junk[4096];
	memset(junk, 0xa5, sizeof(junk));
	for (int i = 0; i < 1024; i++)
		assert(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
	close(fd);
	char cmd[512], dev[64] = "";
	snprintf(cmd, sizeof(cmd), "losetup --find --show %s 2>/dev/null", img);
	FILE *p = popen(cmd, "r");
	if (!p || !fgets(dev, sizeof(dev), p) || pclose(p) != 0) {
		printf("loop devices unavailable: block device part skipped\n");
		unlink(img);
		return;
	}
	dev[strcspn(dev, "\n")] = 0;
	struct snap_output *o = NULL;
	char *detail = NULL;
	assert(snap_output_open(dev, 8ull << 20, false, &o, &detail) == -ENOSPC);
	assert(detail && strstr(detail, "too small"));
	free(detail);
	detail = NULL;
	assert(snap_output_open(dev, 4ull << 20, false, &o, &detail) == 0);
	assert(snap_output_is_block_device(o));
	assert(snap_output_zero(o, 100, 1 << 20) == 0); /* unaligned edges */
	assert(snap_output_write(o, "data", 4, 0) == 0);
	assert(snap_output_commit(o, &detail) == 0);
	o = snap_output_free(o);
	snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
	assert(system(cmd) == 0);
	fd = open(img, O_RDONLY);
	static unsigned char back[(1 << 20) + 200];
	assert(pread(fd, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	close(fd);
	assert(!memcmp(back, "data", 4));
	for (size_t i = 4; i < 100; i++)
		assert(back[i] == 0xa5);
	for (size_t i = 100; i < 100 + (1 << 20); i++)
		assert(back[i] == 0);
	assert(back[100 + (1 << 20)] == 0xa5);
	unlink(img);
}

int main(void)
{
	test_file();
	if (geteuid() == 0)
		test_blockdev();
	printf("output: ok\n");
	return 0;
}
