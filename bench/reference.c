// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * reference.c - the tools users compare snapbundle with, run on the same source in the same
 * run (--reference): the ec2-bundle-image pipeline of classic-bundle-format.md §1.3 (tar -S |
 * tee to SHA-1 | gzip -9 | openssl enc, then split into 10 MiB parts and a SHA-1 of each, as
 * the Ruby tool does), pigz, zstd -T0 and qemu-img convert -c -O qcow2.
 *
 * Invariants:
 *  1. A tool that is not installed is reported with available = false and that reason.
 *  2. Each runs through bash with the paths passed as positional parameters, never pasted into
 *     the script, so any file name is safe; wait4 on bash gives wall and CPU time of the whole
 *     pipeline and the peak RSS of its largest process.
 *  3. Outputs go to the work directory and are removed after each tool.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static bool have(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/bin:/bin";
	char *copy = strdup(path), *save = NULL;
	bool found = false;
	for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d && !found;
	     d = strtok_r(NULL, ":", &save)) {
		char p[4200];
		snprintf(p, sizeof(p), "%s/%s", d, prog);
		found = access(p, X_OK) == 0;
	}
	free(copy);
	return found;
}

static uint64_t dir_bytes(const char *dir)
{
	uint64_t total = 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
		    S_ISREG(st.st_mode))
			total += (uint64_t)st.st_size;
	}
	closedir(d);
	return total;
}

struct ref_def {
	const char *name;
	const char *needs[6];
	const char *script; /* $1 source, $2 its directory, $3 its basename, $4 output dir,
			       $5 threads, $6 key hex, $7 iv hex */
	const char *shown;  /* the command as the report shows it */
	bool needs_file;    /* tar of a device node stores the node, not the disk */
};

static const struct ref_def refs[] = {
    {"ec2-bundle-image",
     {"tar", "gzip", "openssl", "split", "sha1sum", "mkfifo"},
     "set -o pipefail; mkfifo \"$4/fifo\" && "
     "{ openssl sha1 < \"$4/fifo\" > \"$4/digest\" & } && "
     "tar -c -h -S --owner 0 --group 0 -C \"$2\" \"$3\" | tee \"$4/fifo\" | gzip -9 | "
     "openssl enc -e -aes-128-cbc -K \"$6\" -iv \"$7\" > \"$4/img.tar.gz.enc\" && wait && "
     "split -b 10485760 -d -a 3 \"$4/img.tar.gz.enc\" \"$4/img.part.\" && "
     "rm -f \"$4/img.tar.gz.enc\" \"$4/fifo\" \"$4/digest\" && "
     "sha1sum \"$4\"/img.part.* > /dev/null",
     "openssl sha1 < FIFO & tar -c -h -S --owner 0 --group 0 -C DIR IMG | tee FIFO | "
     "gzip -9 | openssl enc -e -aes-128-cbc -K KEY -iv IV > IMG.tar.gz.enc; "
     "split -b 10485760; sha1sum parts",
     true},
    {"pigz", {"pigz"}, "pigz -c -p \"$5\" < \"$1\" > \"$4/img.gz\"", "pigz -c -p THREADS", false},
    {"zstd -T0", {"zstd"}, "zstd -T0 -q -c < \"$1\" > \"$4/img.zst\"", "zstd -T0 -q -c", false},
    {"qemu-img qcow2",
     {"qemu-img"},
     "qemu-img convert -c -O qcow2 \"$1\" \"$4/img.qcow2\"",
     "qemu-img convert -c -O qcow2",
     false},
};

void bench_run_reference(struct bench_report *rep, const char *workdir)
{
	char out[4200], src_copy[4096], src_copy2[4096], threads[16], key[33], iv[33];
	unsigned char raw[32];
	snprintf(out, sizeof(out), "%s/reference", workdir);
	snprintf(src_copy, sizeof(src_copy), "%s", rep->source.path);
	snprintf(src_copy2, sizeof(src_copy2), "%s", rep->source.path);
	const char *dir = dirname(src_copy), *base = basename(src_copy2);
	unsigned maxt = rep->opts.nthreads ? rep->opts.threads[rep->opts.nthreads - 1] : 1;
	snprintf(threads, sizeof(threads), "%u", maxt);
	RAND_bytes(raw, sizeof(raw));
	for (int i = 0; i < 16; i++) {
		snprintf(key + 2 * i, 3, "%02x", raw[i]);
		snprintf(iv + 2 * i, 3, "%02x", raw[16 + i]);
	}
	struct stat st;
	bool is_file = stat(rep->source.path, &st) == 0 && S_ISREG(st.st_mode);

	for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]) && rep->nrefs < BENCH_MAX_REFS; i++) {
		struct bench_ref *ref = &rep->refs[rep->nrefs++];
		memset(ref, 0, sizeof(*ref));
		snprintf(ref->name, sizeof(ref->name), "%s", refs[i].name);
		snprintf(ref->command, sizeof(ref->command), "%s", refs[i].shown);
		ref->available = true;
		for (size_t k = 0; k < 6 && refs[i].needs[k]; k++) {
			if (!have(refs[i].needs[k])) {
				ref->available = false;
				snprintf(ref->reason, sizeof(ref->reason), "%s is not installed",
					 refs[i].needs[k]);
				break;
			}
		}
		if (ref->available && refs[i].needs_file && !is_file) {
			ref->available = false;
			snprintf(ref->reason, sizeof(ref->reason),
				 "the pipeline tars an image file; the source is not one");
		}
		if (!ref->available || bench_interrupted())
			continue;
		if (mkdir(out, 0700) < 0) {
			ref->available = false;
			snprintf(ref->reason, sizeof(ref->reason),
				 "cannot create its output directory: %s", strerror(errno));
			continue;
		}
		fflush(NULL);
		double t0 = bench_now();
		pid_t pid = fork();
		if (pid == 0) {
			int devnull = open("/dev/null", O_RDWR);
			if (devnull >= 0) {
				dup2(devnull, STDIN_FILENO);
				dup2(devnull, STDOUT_FILENO);
			}
			execlp("bash", "bash", "-c", refs[i].script, "bash", rep->source.path, dir,
			       base, out, threads, key, iv, (char *)NULL);
			_exit(127);
		}
		struct rusage ru;
		int status = 0;
		if (pid > 0)
			while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
				;
		double t1 = bench_now();
		ref->ok = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
		if (!ref->ok)
			snprintf(ref->reason, sizeof(ref->reason), "the command failed (status %d)",
				 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		ref->seconds = t1 - t0;
		if (pid > 0) {
			ref->cpu_seconds = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
					   (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
			ref->peak_rss_kib = (uint64_t)ru.ru_maxrss;
		}
		ref->output_bytes = dir_bytes(out);
		bench_remove_tree(out);
	}
}
