// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-fs-replay.c - runs the gzipped corpus files given as arguments (or the files of the
 * directories given) through fuzz-fs's LLVMFuzzerTestOneInput, each as is and then with
 * SNAP_FUZZ_MUTATIONS (default 200) deterministic mutations: a few bytes flipped, half of them
 * where the image holds anything but zeros (its metadata). A sanitizer build turns any memory
 * error into a failure; the target aborts on a contract violation.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic across runs, so a failure reproduces */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint8_t *load(const char *path, size_t *ret_len)
{
	gzFile f = gzopen(path, "rb");
	size_t cap = 1 << 20, len = 0;
	uint8_t *buf = malloc(cap);

	if (!f || !buf) {
		if (f)
			gzclose(f);
		free(buf);
		return NULL;
	}
	for (;;) {
		if (len == cap) {
			uint8_t *p = realloc(buf, cap * 2);
			if (!p || cap > (256u << 20)) {
				free(p ? p : buf);
				gzclose(f);
				return NULL;
			}
			buf = p;
			cap *= 2;
		}
		int n = gzread(f, buf + len, (unsigned)(cap - len));
		if (n < 0) {
			free(buf);
			gzclose(f);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	gzclose(f);
	*ret_len = len;
	return buf;
}

static int run_file(const char *path, unsigned mutations)
{
	size_t len = 0;
	uint8_t *orig = load(path, &len);
	if (!orig) {
		fprintf(stderr, "%s: cannot load\n", path);
		return -1;
	}
	LLVMFuzzerTestOneInput(orig, len);
	if (len < 2) { /* libFuzzer's merge keeps tiny inputs too: nothing to mutate */
		free(orig);
		return 0;
	}

	/* offsets of non-zero bytes (sampled), where the metadata is */
	size_t nz_cap = 65536, nnz = 0;
	size_t *nz = malloc(nz_cap * sizeof(*nz));
	uint8_t *mut = malloc(len);
	if (!nz || !mut) {
		free(nz);
		free(mut);
		free(orig);
		return -1;
	}
	for (size_t i = 1; i < len; i++) {
		if (!orig[i])
			continue;
		if (nnz < nz_cap)
			nz[nnz++] = i;
		else if (rng() % (i + 1) < nz_cap)
			nz[rng() % nz_cap] = i; /* reservoir sample */
	}
	for (unsigned m = 0; m < mutations; m++) {
		memcpy(mut, orig, len);
		unsigned flips = 1 + (unsigned)(rng() % 8);
		for (unsigned k = 0; k < flips; k++) {
			size_t at =
			    (nnz && rng() % 2) ? nz[rng() % nnz] : 1 + (size_t)(rng() % (len - 1));
			mut[at] ^= (uint8_t)(1 + rng() % 255);
		}
		LLVMFuzzerTestOneInput(mut, len);
		/* and cut short, as a partition smaller than its filesystem */
		if (m % 16 == 0)
			LLVMFuzzerTestOneInput(mut, 1 + (size_t)(rng() % (len - 1)));
	}
	free(nz);
	free(mut);
	free(orig);
	return 0;
}

int main(int argc, char **argv)
{
	const char *env = getenv("SNAP_FUZZ_MUTATIONS");
	unsigned mutations = env ? (unsigned)strtoul(env, NULL, 10) : 200;
	int files = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i], mutations) < 0)
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
			if (run_file(path, mutations) < 0) {
				closedir(d);
				return 1;
			}
			files++;
		}
		closedir(d);
	}
	printf("replayed %d inputs with %u mutations each\n", files, mutations);
	return files ? 0 : 1;
}
