// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-replay-store.c - plain main() for fuzz-store.c: runs every file of the corpus
 * directories given as arguments through LLVMFuzzerTestOneInput, so the corpus is an ordinary
 * test (under ASan/UBSan in tests/run.sh), plus every one-byte truncation and bit flip of each.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open %s\n", path);
		return -1;
	}
	uint8_t *buf = malloc(1 << 20);
	size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
	fclose(f);
	if (!buf)
		return -1;
	LLVMFuzzerTestOneInput(buf, n);
	/* every prefix, and a bit flip at every position: cheap mutations of a real input */
	for (size_t i = 0; i < n; i++)
		LLVMFuzzerTestOneInput(buf, i);
	for (size_t i = 1; i < n && i < 4096; i++) {
		buf[i] ^= 0x80;
		LLVMFuzzerTestOneInput(buf, n);
		buf[i] ^= 0x80;
	}
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0;
	for (int a = 1; a < argc; a++) {
		DIR *d = opendir(argv[a]);
		if (!d) {
			if (run_file(argv[a]) < 0)
				return 1;
			files++;
			continue;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[a], e->d_name);
			if (run_file(path) < 0) {
				closedir(d);
				return 1;
			}
			files++;
		}
		closedir(d);
	}
	printf("replayed %d inputs\n", files);
	return files > 0 ? 0 : 1;
}
