// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-replay.c - the replay main of the fuzz targets of formats/ and blockdev/ (fuzz-fs has
 * its own, for its gzipped disk images): runs every
 * file of the corpus directories given as arguments through LLVMFuzzerTestOneInput, so a fuzz
 * target's corpus is an ordinary test (the way util-linux's
 * src/fuzz.c and systemd's fuzz-main.c do). Sanitizer builds turn any memory error into a
 * failure; the target itself never fails on bad input, it only must not crash.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* --mutate: besides each input as is, every prefix of it and a flipped top bit at each of its
 * first 4096 bytes: cheap, deterministic mutations of real inputs. */
static int mutate;

static void run_mutations(uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		LLVMFuzzerTestOneInput(buf, i);
	for (size_t i = 1; i < len && i < 4096; i++) {
		buf[i] ^= 0x80;
		LLVMFuzzerTestOneInput(buf, len);
		buf[i] ^= 0x80;
	}
}

static int run_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(path);
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size > (64 << 20)) {
		close(fd);
		fprintf(stderr, "%s: unreadable or too large\n", path);
		return -1;
	}
	size_t len = (size_t)st.st_size;
	uint8_t *buf = malloc(len ? len : 1);
	size_t got = 0;
	while (buf && got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (!buf || got != len) {
		free(buf);
		fprintf(stderr, "%s: short read\n", path);
		return -1;
	}
	LLVMFuzzerTestOneInput(buf, len);
	if (mutate)
		run_mutations(buf, len);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mutate")) {
			mutate = 1;
			continue;
		}
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]) < 0)
				return 1;
			files++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		if (!d) {
			perror(argv[i]);
			return 1;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			if (run_file(path) < 0) {
				closedir(d);
				return 1;
			}
			files++;
		}
		closedir(d);
	}
	printf("replayed %d inputs\n", files);
	return files ? 0 : 1;
}
