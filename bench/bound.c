// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bound.c - the outside bound: what outside tools (igzip, openssl, dd) need for the work the
 * formats require, on the same DATA bytes the jobs read. It is the one definition of the bound;
 * bench/limit.sh runs `snapbundle bench --bound --json` and prints its medians.
 *
 * Invariants:
 *  1. The bound of a job is the larger of two figures:
 *     - CPU: the user CPU seconds the tools spend, divided by the threads (the largest count of
 *       --threads), never less than the longest serial chain:
 *         store:   igzip -1 of the DATA bytes (one piece per thread, in parallel), then
 *                  openssl dgst -sha256 of the compressed pieces;
 *         restore: igzip -d of those pieces, and the same sha256;
 *         bundle:  igzip -1, openssl dgst -sha1 of the DATA, openssl enc -aes-128-cbc of the
 *                  compressed stream and sha1 of the ciphertext; the serial chain is the larger
 *                  of the DATA's sha1 and the cipher plus its sha1;
 *     - device: the wall time of dd with O_DIRECT and 4 MiB blocks, reading and writing the
 *       bytes the job must move on the work directory's filesystem (store and bundle: read
 *       DATA, write the compressed size; restore: read the compressed size, write DATA).
 *  2. bench_bound_job() is the only place that turns the tools' figures into a job's bound.
 *  3. A bound that cannot be measured (a tool missing, a tool failing, no extent map) is
 *     reported as unavailable with the reason; nothing is guessed.
 *  4. Everything lives in the work directory's "bound" folder, removed before returning.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define BLOCK (4ull << 20)

static const char *const bound_tools[] = {"igzip", "openssl", "dd", "cat"};

/* 0 when name is an executable in a directory of $PATH, else -ENOENT. */
static int find_on_path(const char *name)
{
	const char *path = getenv("PATH");
	if (!path || !*path)
		return -ENOENT;
	char buf[4400];
	while (*path) {
		size_t n = strcspn(path, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)(n ? n : 1), n ? path : ".", name);
		if (access(buf, X_OK) == 0)
			return 0;
		path += n + (path[n] == ':');
	}
	return -ENOENT;
}

/* Runs the shell commands cmds[0..n) in parallel; *ret_user: their summed user CPU seconds;
 * *ret_wall: the wall time until the last exits. 0, or -EIO when one fails (why in err). */
static int run_parallel(char *const *cmds, size_t n, double *ret_user, double *ret_wall, char *err,
			size_t err_len)
{
	pid_t pids[BENCH_MAX_THREADS];
	double user = 0, t0 = bench_now();
	int r = 0;
	size_t started = 0;
	fflush(NULL);
	for (; started < n; started++) {
		pid_t pid = fork();
		if (pid < 0) {
			snprintf(err, err_len, "cannot start '%s': %s", cmds[started],
				 strerror(errno));
			r = -errno;
			break;
		}
		if (pid == 0) {
			execl("/bin/sh", "sh", "-c", cmds[started], (char *)NULL);
			_exit(127);
		}
		pids[started] = pid;
	}
	for (size_t i = 0; i < started; i++) {
		int status;
		struct rusage ru;
		while (wait4(pids[i], &status, 0, &ru) < 0) {
			if (errno != EINTR) {
				status = -1;
				break;
			}
		}
		user += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
		if (!r && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			snprintf(err, err_len, "'%s' failed", cmds[i]);
			r = -EIO;
		}
	}
	if (r == 0) {
		*ret_user = user;
		*ret_wall = bench_now() - t0;
	}
	return r;
}

static int run_one(const char *cmd, double *ret_user, double *ret_wall, char *err, size_t len)
{
	char *c = (char *)cmd;
	return run_parallel(&c, 1, ret_user, ret_wall, err, len);
}

/* dd of nbytes in 4 MiB blocks; *ret_wall: its wall time. */
static int dd(const char *in, const char *out, uint64_t nbytes, bool direct_in, bool direct_out,
	      double *ret_wall, char *err, size_t len)
{
	char cmd[9000];
	double user;
	snprintf(cmd, sizeof(cmd), "dd if='%s' of='%s' bs=4M count=%llu status=none%s%s", in, out,
		 (unsigned long long)((nbytes + BLOCK - 1) / BLOCK),
		 direct_in ? " iflag=direct" : "", direct_out ? " oflag=direct" : "");
	return run_one(cmd, &user, ret_wall, err, len);
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The DATA bytes in threads pieces, data.0 .. data.N-1, and their concatenation, data. */
static int split_data(const struct bench_source *src, const char *dir, unsigned threads,
		      uint64_t total, char *err, size_t err_len)
{
	char path[4200];
	int in = open(src->path, O_RDONLY | O_CLOEXEC), whole = -1, piece = -1;
	snprintf(path, sizeof(path), "%s/data", dir);
	if (in >= 0)
		whole = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	uint8_t *buf = malloc(BLOCK);
	uint64_t per = (total + threads - 1) / threads, done = 0;
	int r = in < 0 || whole < 0 || !buf ? -errno : 0;
	unsigned cur = ~0u;
	for (size_t i = 0; !r && i < src->ndata; i++) {
		uint64_t off = src->data[i].offset, n = src->data[i].length;
		while (!r && n) {
			unsigned idx = (unsigned)(done / per);
			if (idx >= threads)
				idx = threads - 1;
			if (idx != cur) {
				if (piece >= 0)
					close(piece);
				snprintf(path, sizeof(path), "%s/data.%u", dir, idx);
				piece = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
				if (piece < 0) {
					r = -errno;
					break;
				}
				cur = idx;
			}
			uint64_t k = n < BLOCK ? n : BLOCK;
			if (idx + 1 < threads && k > per - done % per)
				k = per - done % per;
			ssize_t got = pread(in, buf, k, (off_t)off);
			if (got <= 0) {
				r = got < 0 ? -errno : -EIO;
				break;
			}
			if (write(piece, buf, (size_t)got) != got ||
			    write(whole, buf, (size_t)got) != got) {
				r = -EIO;
				break;
			}
			off += (uint64_t)got;
			n -= (uint64_t)got;
			done += (uint64_t)got;
		}
	}
	/* the written pages reach the disk now, not during dd's timing */
	if (!r && fsync(whole) < 0)
		r = -errno;
	if (piece >= 0)
		close(piece);
	if (whole >= 0)
		close(whole);
	if (in >= 0)
		close(in);
	free(buf);
	if (r)
		snprintf(err, err_len, "cannot copy the DATA bytes of %.200s into %.200s: %s",
			 src->path, dir, strerror(-r));
	return r;
}

static int measure(struct bench_bound *b, const struct bench_source *src, const char *dir)
{
	char *cmds[BENCH_MAX_THREADS] = {NULL};
	char list[BENCH_MAX_THREADS * 16], path[4200], err[sizeof(b->reason)];
	char *buf = malloc((size_t)BENCH_MAX_THREADS * 9000);
	double wall;
	int r = buf ? 0 : -ENOMEM;
	unsigned n = b->threads;
	err[0] = 0;
	if (!r)
		r = split_data(src, dir, n, b->data_bytes, err, sizeof(err));
	for (unsigned i = 0; !r && i < n; i++) {
		cmds[i] = buf + (size_t)i * 9000;
		snprintf(cmds[i], 9000, "igzip -1 -c -T 1 '%s/data.%u' > '%s/data.%u.gz'", dir, i,
			 dir, i);
	}
	if (!r)
		r = run_parallel(cmds, n, &b->deflate_cpu, &wall, err, sizeof(err));
	list[0] = 0;
	b->compressed_bytes = 0;
	for (unsigned i = 0; !r && i < n; i++) {
		size_t l = strlen(list);
		snprintf(list + l, sizeof(list) - l, " data.%u.gz", i);
		snprintf(path, sizeof(path), "%s/data.%u.gz", dir, i);
		b->compressed_bytes += file_size(path);
	}
	if (!r) {
		snprintf(buf, 9000, "cd '%s' && cat%s | openssl dgst -sha256 > /dev/null", dir,
			 list);
		r = run_one(buf, &b->sha256_cpu, &wall, err, sizeof(err));
	}
	for (unsigned i = 0; !r && i < n; i++)
		snprintf(cmds[i], 9000, "igzip -d -c '%s/data.%u.gz' > /dev/null", dir, i);
	if (!r)
		r = run_parallel(cmds, n, &b->inflate_cpu, &wall, err, sizeof(err));
	if (!r) {
		snprintf(buf, 9000, "openssl dgst -sha1 '%s/data' > /dev/null", dir);
		r = run_one(buf, &b->sha1_cpu, &wall, err, sizeof(err));
	}
	if (!r) {
		snprintf(buf, 9000,
			 "cd '%s' && cat%s | openssl enc -aes-128-cbc -K "
			 "000102030405060708090a0b0c0d0e0f "
			 "-iv 000102030405060708090a0b0c0d0e0f -out '%s/enc'",
			 dir, list, dir);
		r = run_one(buf, &b->cipher_cpu, &wall, err, sizeof(err));
	}
	if (!r) {
		snprintf(buf, 9000, "openssl dgst -sha1 '%s/enc' > /dev/null", dir);
		r = run_one(buf, &b->cipher_sha1_cpu, &wall, err, sizeof(err));
	}
	char data[4200], enc[4200], w[4200];
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(enc, sizeof(enc), "%s/enc", dir);
	snprintf(w, sizeof(w), "%s/w", dir);
	if (!r)
		r = dd(data, "/dev/null", b->data_bytes, true, false, &b->read_data_seconds, err,
		       sizeof(err));
	if (!r)
		r = dd("/dev/zero", w, b->compressed_bytes, false, true,
		       &b->write_compressed_seconds, err, sizeof(err));
	if (!r)
		r = dd(enc, "/dev/null", b->compressed_bytes, true, false,
		       &b->read_compressed_seconds, err, sizeof(err));
	if (!r)
		r = dd("/dev/zero", w, b->data_bytes, false, true, &b->write_data_seconds, err,
		       sizeof(err));
	if (r)
		snprintf(b->reason, sizeof(b->reason), "%s",
			 err[0] ? err : "cannot measure: out of memory");
	free(buf);
	return r;
}

void bench_bound_measure(struct bench_report *rep, const char *workdir)
{
	struct bench_bound *b = &rep->bound;
	const struct bench_source *src = &rep->source;
	const struct bench_opts *o = &rep->opts;
	b->threads = o->nthreads ? o->threads[o->nthreads - 1] : 1;
	b->available = false;
	for (size_t i = 0; i < sizeof(bound_tools) / sizeof(*bound_tools); i++) {
		if (find_on_path(bound_tools[i]) < 0) {
			snprintf(b->reason, sizeof(b->reason), "%s not found on PATH%s",
				 bound_tools[i],
				 strcmp(bound_tools[i], "igzip") ? "" : " (Debian package isal)");
			return;
		}
	}
	if (!src->mapped || !src->ndata) {
		snprintf(b->reason, sizeof(b->reason), "the source has no extent map of its DATA");
		return;
	}
	b->data_bytes = 0;
	for (size_t i = 0; i < src->ndata; i++)
		b->data_bytes += src->data[i].length;
	char dir[3900]; /* workdir is shorter than 3800 (snapbundle-bench.c) */
	snprintf(dir, sizeof(dir), "%s/bound", workdir);
	if (strchr(dir, '\'')) {
		snprintf(b->reason, sizeof(b->reason), "the work directory's path holds a quote");
		return;
	}
	if (mkdir(dir, 0700) < 0) {
		snprintf(b->reason, sizeof(b->reason), "cannot create %.300s: %s", dir,
			 strerror(errno));
		return;
	}
	double t0 = bench_now();
	if (measure(b, src, dir) == 0)
		b->available = true;
	b->seconds = bench_now() - t0;
	bench_remove_tree(dir);
}

int bench_bound_job(const struct bench_bound *b, const char *kind, double *ret_cpu,
		    double *ret_device)
{
	double t = b->threads ? b->threads : 1, cpu, device;
	if (!b->available)
		return -ENODATA;
	if (!strcmp(kind, "store")) {
		cpu = (b->deflate_cpu + b->sha256_cpu) / t;
		device = b->read_data_seconds + b->write_compressed_seconds;
	} else if (!strcmp(kind, "restore")) {
		cpu = (b->inflate_cpu + b->sha256_cpu) / t;
		device = b->read_compressed_seconds + b->write_data_seconds;
	} else if (!strcmp(kind, "bundle")) {
		double chain = b->cipher_cpu + b->cipher_sha1_cpu;
		cpu = (b->deflate_cpu + b->sha1_cpu + chain) / t;
		if (cpu < b->sha1_cpu)
			cpu = b->sha1_cpu;
		if (cpu < chain)
			cpu = chain;
		device = b->read_data_seconds + b->write_compressed_seconds;
	} else {
		return -EINVAL;
	}
	*ret_cpu = cpu;
	*ret_device = device;
	return 0;
}

double bench_bound_tools_cpu(const struct bench_bound *b, const char *kind)
{
	if (!strcmp(kind, "store"))
		return b->deflate_cpu + b->sha256_cpu;
	if (!strcmp(kind, "restore"))
		return b->inflate_cpu + b->sha256_cpu;
	return b->deflate_cpu + b->sha1_cpu + b->cipher_cpu + b->cipher_sha1_cpu;
}

const struct bench_run *bench_bound_run(const struct bench_report *rep, const char *kind)
{
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		const struct bench_job *job = &rep->jobs[k];
		if (!job->kind || strcmp(job->kind, kind) || !job->available)
			continue;
		for (size_t i = 0; i < job->nruns; i++)
			if (job->runs[i].ok && job->runs[i].threads == rep->bound.threads)
				return &job->runs[i];
	}
	return NULL;
}
