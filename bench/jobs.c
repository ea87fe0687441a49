// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * jobs.c - the whole jobs (bundle, unbundle, store, restore) through the public snap_job API,
 * at each thread count, each run in a child process of its own.
 *
 * Invariants:
 *  1. A run is a fresh exec of this program in job-child mode ("--job-child KIND ..."): its
 *     peak RSS (wait4's ru_maxrss) and CPU time are the job's alone, not the parent's corpus
 *     and buffers that a plain fork would carry.
 *  2. Availability is asked of the library, not assumed: a job kind whose runner is not in the
 *     build answers -EOPNOTSUPP to an empty job, and is reported with the library's reason.
 *     A job that depends on another's output (unbundle on bundle, restore on store) names that
 *     dependency as its reason when it cannot run.
 *  3. The child prints one result line on stdout: space-separated key=value pairs, with
 *     "error=" last because its value is free text; then, when the job reports them, a
 *     "timings=" line with the library's SNAP_RESULT_TIMINGS.
 *  4. The first output of unbundle and restore is compared with the source byte for byte,
 *     except in UNUSED extents (their content does not matter and comes back as zeros); a
 *     mismatch is reported (a fast wrong answer is not a result).
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define MIB (1024ull * 1024ull)

static const struct {
	const char *name;
	enum snap_job_kind kind;
} job_kinds[BENCH_JOB_KINDS] = {
    {"bundle", SNAP_JOB_BUNDLE},
    {"unbundle", SNAP_JOB_UNBUNDLE},
    {"store", SNAP_JOB_STORE},
    {"restore", SNAP_JOB_RESTORE},
};

/* ---- keys ------------------------------------------------------------------------------- */

/* A throw-away RSA key and self-signed certificate (user and EC2 certificate alike). */
int bench_make_keys(const char *dir, char **ret_detail)
{
	char path[4200];
	int r = -EIO;
	EVP_PKEY *pkey = EVP_RSA_gen(2048);
	X509 *x = X509_new();
	FILE *f = NULL;
	if (!pkey || !x)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"snapbundle-bench", -1, -1, 0);
	if (!X509_set_issuer_name(x, name) || !X509_set_pubkey(x, pkey) ||
	    !X509_sign(x, pkey, EVP_sha256()))
		goto out;
	snprintf(path, sizeof(path), "%s/key.pem", dir);
	f = fopen(path, "wx");
	if (!f || !PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) || fclose(f) != 0) {
		f = NULL;
		goto out;
	}
	snprintf(path, sizeof(path), "%s/cert.pem", dir);
	f = fopen(path, "wx");
	if (!f || !PEM_write_X509(f, x) || fclose(f) != 0) {
		f = NULL;
		goto out;
	}
	f = NULL;
	r = 0;
out:
	if (f)
		fclose(f);
	if (r < 0 && ret_detail && asprintf(ret_detail, "cannot make a test key in %s", dir) < 0)
		*ret_detail = NULL;
	X509_free(x);
	EVP_PKEY_free(pkey);
	return r;
}

/* ---- the child: one job run -------------------------------------------------------------- */

#define MAX_SAMPLES 8192

struct samples {
	double t[MAX_SAMPLES];
	uint64_t read[MAX_SAMPLES];
	size_t n;
};

static int on_progress(void *userdata, const struct snap_progress *p)
{
	struct samples *s = userdata;
	if (p->stage != SNAP_STAGE_DATA)
		return 0;
	if (s->n == MAX_SAMPLES) { /* keep every other sample: bounded, still even */
		for (size_t i = 0; i < MAX_SAMPLES / 2; i++) {
			s->t[i] = s->t[2 * i];
			s->read[i] = s->read[2 * i];
		}
		s->n = MAX_SAMPLES / 2;
	}
	s->t[s->n] = p->elapsed;
	s->read[s->n++] = p->bytes_read;
	return 0;
}

/* Time at which bytes_read reached target, interpolated between samples; -1 if never. */
static double time_at(const struct samples *s, uint64_t target)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->read[i] >= target) {
			if (i == 0 || s->read[i] == s->read[i - 1])
				return s->t[i];
			double f = (double)(target - s->read[i - 1]) /
				   (double)(s->read[i] - s->read[i - 1]);
			return s->t[i - 1] + f * (s->t[i] - s->t[i - 1]);
		}
	}
	return -1;
}

struct child_args {
	const char *kind, *source, *dir, *keys;
	unsigned threads;
	int level;
	bool probe;
};

static int configure(struct snap_job *job, const struct child_args *a)
{
	char p[4200], q[4200], k[4200], c[4200];
	int r = 0;
	snprintf(k, sizeof(k), "%s/key.pem", a->keys);
	snprintf(c, sizeof(c), "%s/cert.pem", a->keys);
	r |= snap_job_set_param(job, SNAP_PARAM_THREADS, a->threads);
	r |= snap_job_set_param(job, SNAP_PARAM_FORCE, 1);
	r |= snap_job_set_param(job, SNAP_PARAM_PROGRESS_MS, 100);
	switch (snap_job_kind(job)) {
	case SNAP_JOB_BUNDLE:
		snprintf(p, sizeof(p), "%s/bundle", a->dir);
		r |= snap_job_set_param(job, SNAP_PARAM_LEVEL, a->level);
		r |= snap_job_set_string(job, SNAP_SPARAM_IMAGE, a->source);
		r |= snap_job_set_string(job, SNAP_SPARAM_DESTINATION, p);
		r |= snap_job_set_string(job, SNAP_SPARAM_PREFIX, "bench");
		r |= snap_job_set_string(job, SNAP_SPARAM_CERT, c);
		r |= snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, k);
		r |= snap_job_set_string(job, SNAP_SPARAM_EC2_CERT, c);
		r |= snap_job_set_string(job, SNAP_SPARAM_USER, "000000000000");
		r |= snap_job_set_string(job, SNAP_SPARAM_ARCH, "x86_64");
		break;
	case SNAP_JOB_UNBUNDLE:
		snprintf(p, sizeof(p), "%s/bundle", a->dir);
		snprintf(q, sizeof(q), "%s/bundle/bench.manifest.xml", a->dir);
		r |= snap_job_set_string(job, SNAP_SPARAM_MANIFEST, q);
		r |= snap_job_set_string(job, SNAP_SPARAM_SOURCE_DIR, p);
		r |= snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, k);
		r |= snap_job_set_string(job, SNAP_SPARAM_CERT, c); /* verify the signature too */
		snprintf(p, sizeof(p), "%s/unbundled.img", a->dir);
		r |= snap_job_set_string(job, SNAP_SPARAM_OUTPUT, p);
		r |= snap_job_set_string(job, SNAP_SPARAM_OUTPUT_DIR, a->dir);
		break;
	case SNAP_JOB_STORE:
		snprintf(p, sizeof(p), "%s/bench.bin", a->dir);
		r |= snap_job_set_param(job, SNAP_PARAM_LEVEL, a->level);
		r |= snap_job_set_param(job, SNAP_PARAM_ENCRYPT, 1);
		r |= snap_job_set_param(job, SNAP_PARAM_CREATION_TIME, 1700000000);
		r |= snap_job_set_param(job, SNAP_PARAM_STORE_TIME, 1700000000);
		r |= snap_job_add_source(job, a->source, "/dev/xvda");
		r |= snap_job_set_string(job, SNAP_SPARAM_OUTPUT, p);
		r |= snap_job_set_string(job, SNAP_SPARAM_NAME, "snapbundle-bench");
		r |= snap_job_set_string(job, SNAP_SPARAM_IMAGE_ID, "ami-0123456789abcdef0");
		r |= snap_job_set_string(job, SNAP_SPARAM_ARCH, "x86_64");
		r |= snap_job_add_string(job, SNAP_SPARAM_RECIPIENT_CERT, c);
		break;
	case SNAP_JOB_RESTORE:
		snprintf(p, sizeof(p), "%s/bench.bin", a->dir);
		r |= snap_job_set_string(job, SNAP_SPARAM_INPUT, p);
		r |= snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, k);
		snprintf(p, sizeof(p), "%s/restored.img", a->dir);
		r |= snap_job_set_string(job, SNAP_SPARAM_OUTPUT, p);
		break;
	default:
		return -EINVAL;
	}
	/* the setters only fail for lack of memory */
	return r ? -ENOMEM : 0;
}

/* Prints one line (invariant 3); exit 0 whatever the job's outcome, non-zero only when the
 * child itself could not work. */
int bench_job_child_main(int argc, char **argv)
{
	struct child_args a = {.level = 1, .threads = 1};
	for (int i = 2; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--probe"))
			a.probe = true;
		else if (!strcmp(argv[i], "--kind") && v)
			a.kind = argv[++i];
		else if (!strcmp(argv[i], "--source") && v)
			a.source = argv[++i];
		else if (!strcmp(argv[i], "--dir") && v)
			a.dir = argv[++i];
		else if (!strcmp(argv[i], "--keys") && v)
			a.keys = argv[++i];
		else if (!strcmp(argv[i], "--threads") && v)
			a.threads = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--level") && v)
			a.level = atoi(argv[++i]);
		else
			return 2;
	}
	enum snap_job_kind kind = 0;
	for (size_t i = 0; a.kind && i < BENCH_JOB_KINDS; i++)
		if (!strcmp(a.kind, job_kinds[i].name))
			kind = job_kinds[i].kind;
	if (!kind || (!a.probe && (!a.source || !a.dir || !a.keys)))
		return 2;
	struct snap_job *job = NULL;
	int r = snap_job_new(kind, &job);
	if (r < 0) {
		printf("rc=%d error=%s\n", r, snap_strerror(r));
		return 0;
	}
	struct samples *s = calloc(1, sizeof(*s));
	if (!s) {
		snap_job_free(job);
		return 1;
	}
	if (!a.probe) {
		r = configure(job, &a);
		snap_job_set_progress(job, on_progress, s);
	}
	if (r >= 0)
		r = snap_job_run(job);
	uint64_t ns = 0, rd = 0, wr = 0;
	snap_job_result_u64(job, SNAP_RESULT_ELAPSED_NS, &ns);
	snap_job_result_u64(job, SNAP_RESULT_BYTES_READ, &rd);
	snap_job_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, &wr);
	/* rates of the first and last quarter of what was read: no collapse over a long run */
	double q1 = 0, q4 = 0;
	/* over what the DATA-stage samples saw: a job's last DATA sample may come before its
	 * final byte count (bundle reports the rest in its FINISH stage) */
	uint64_t seen = s->n ? s->read[s->n - 1] : 0;
	if (r >= 0 && s->n >= 8 && seen > 0) {
		double t25 = time_at(s, seen / 4), t75 = time_at(s, seen / 4 * 3),
		       t100 = time_at(s, seen);
		if (t25 > 0 && t75 >= 0 && t100 > t75) {
			q1 = (double)(seen / 4) / t25;
			q4 = (double)(seen - seen / 4 * 3) / (t100 - t75);
		}
	}
	const char *err = r < 0 ? snap_job_error(job) : "";
	const char *timings = snap_job_result_string(job, SNAP_RESULT_TIMINGS);
	printf(
	    "rc=%d elapsed_ns=%llu bytes_read=%llu bytes_written=%llu q1=%.0f q4=%.0f error=%s\n",
	    r, (unsigned long long)ns, (unsigned long long)rd, (unsigned long long)wr, q1, q4,
	    *err ? err : (r < 0 ? snap_strerror(r) : ""));
	/* the job's own account of where the time went, one line, as the library gave it */
	if (r >= 0 && timings && !strpbrk(timings, "\n"))
		printf("timings=%s\n", timings);
	free(s);
	snap_job_free(job);
	return 0;
}

/* ---- the parent ------------------------------------------------------------------------- */

struct child_result {
	bool ran; /* the child printed its line */
	int rc;
	uint64_t elapsed_ns, bytes_read, bytes_written;
	double q1, q4;
	char error[256];
	char timings[1024];
	struct rusage ru;
};

static int spawn_child(const char *self_exe, char *const argv[], struct child_result *res)
{
	memset(res, 0, sizeof(*res));
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(fds[0]);
		close(fds[1]);
		return -e;
	}
	if (pid == 0) {
		/* a job never reads the terminal (a restore without input would read stdin) */
		int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(fds[1], STDOUT_FILENO);
		execv(self_exe, argv);
		_exit(127);
	}
	close(fds[1]);
	char line[4096];
	size_t len = 0;
	ssize_t n;
	while ((n = read(fds[0], line + len, sizeof(line) - 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t)n;
		if (len == sizeof(line) - 1)
			break;
	}
	close(fds[0]);
	line[len] = 0;
	int status;
	while (wait4(pid, &status, 0, &res->ru) < 0)
		if (errno != EINTR)
			return -errno;
	unsigned long long ns, rd, wr;
	int used = 0;
	const char *tl = strstr(line, "\ntimings=");
	if (tl) {
		snprintf(res->timings, sizeof(res->timings), "%s", tl + 9);
		res->timings[strcspn(res->timings, "\n")] = 0;
	}
	if (sscanf(line,
		   "rc=%d elapsed_ns=%llu bytes_read=%llu bytes_written=%llu q1=%lf q4=%lf %n",
		   &res->rc, &ns, &rd, &wr, &res->q1, &res->q4, &used) >= 6 &&
	    used > 0) {
		res->ran = true;
		res->elapsed_ns = ns;
		res->bytes_read = rd;
		res->bytes_written = wr;
		const char *e = strstr(line + used, "error=");
		if (e) {
			snprintf(res->error, sizeof(res->error), "%s", e + 6);
			res->error[strcspn(res->error, "\n")] = 0;
		}
	} else if (sscanf(line, "rc=%d %n", &res->rc, &used) >= 1 && used > 0) {
		res->ran = true;
		const char *e = strstr(line, "error=");
		snprintf(res->error, sizeof(res->error), "%s", e ? e + 6 : "");
		res->error[strcspn(res->error, "\n")] = 0;
	} else if (WIFSIGNALED(status)) {
		snprintf(res->error, sizeof(res->error), "the job process died of signal %d",
			 WTERMSIG(status));
	} else {
		snprintf(res->error, sizeof(res->error), "the job process exited with status %d",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	return 0;
}

static int compare_range(int fa, int fb, uint8_t *ba, uint8_t *bb, uint64_t off, uint64_t end,
			 uint64_t *ret_diff_at)
{
	while (off < end) {
		/* where neither file has data both read as zeros: skip it (a 4 TiB sparse image
		 * compares in moments) */
		off_t da = lseek(fa, (off_t)off, SEEK_DATA);
		int ea = da < 0 ? errno : 0;
		off_t db = lseek(fb, (off_t)off, SEEK_DATA);
		int eb = db < 0 ? errno : 0;
		uint64_t next = UINT64_MAX;
		if ((da < 0 && ea != ENXIO) || (db < 0 && eb != ENXIO)) {
			next = off; /* no SEEK_DATA here: compare everything */
		} else {
			if (da >= 0)
				next = (uint64_t)da;
			if (db >= 0 && (uint64_t)db < next)
				next = (uint64_t)db;
		}
		if (next >= end)
			return 1;
		if (next > off)
			off = next;
		size_t n = end - off < MIB ? (size_t)(end - off) : (size_t)MIB;
		ssize_t na = pread(fa, ba, n, (off_t)off), nb = pread(fb, bb, n, (off_t)off);
		if (na < 0 || nb < 0)
			return -errno;
		if (na != (ssize_t)n || nb != (ssize_t)n || memcmp(ba, bb, n) != 0) {
			size_t i = 0;
			while (i < (size_t)na && i < (size_t)nb && ba[i] == bb[i])
				i++;
			*ret_diff_at = off + i;
			return 0;
		}
		off += n;
	}
	return 1;
}

/* Byte comparison of the source and an image restored from it, outside the source's UNUSED
 * extents (invariant 4); 1 identical, 0 different, -errno. */
static int same_content(const struct bench_source *src, const char *b, uint64_t *ret_diff_at)
{
	int fa = open(src->path, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
	uint8_t *ba = malloc(MIB), *bb = malloc(MIB);
	int r = 1;
	struct stat sb;
	if (fa < 0 || fb < 0 || !ba || !bb || fstat(fb, &sb) < 0) {
		r = fa < 0 || fb < 0 ? -errno : -ENOMEM;
		goto out;
	}
	if ((uint64_t)sb.st_size != src->size) {
		*ret_diff_at = (uint64_t)sb.st_size < src->size ? (uint64_t)sb.st_size : src->size;
		r = 0;
		goto out;
	}
	uint64_t off = 0;
	for (size_t i = 0; i <= src->nunused && r == 1; i++) {
		uint64_t end = i < src->nunused ? src->unused[i].offset : src->size;
		if (end > off)
			r = compare_range(fa, fb, ba, bb, off, end, ret_diff_at);
		if (i < src->nunused)
			off = src->unused[i].offset + src->unused[i].length;
	}
out:
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	free(ba);
	free(bb);
	return r;
}

void bench_run_jobs(struct bench_report *rep, const char *workdir, const char *self_exe)
{
	char dir[4200], keys[4200], sub[4300], out_path[4300];
	char *detail = NULL;
	snprintf(dir, sizeof(dir), "%s/jobs", workdir);
	snprintf(keys, sizeof(keys), "%s/keys", workdir);
	bool keys_ok = mkdir(keys, 0700) == 0 && bench_make_keys(keys, &detail) == 0;
	bool dir_ok = mkdir(dir, 0700) == 0;
	snprintf(sub, sizeof(sub), "%s/bundle", dir);
	dir_ok = dir_ok && mkdir(sub, 0700) == 0;
	bool produced[BENCH_JOB_KINDS] = {false};
	uint64_t data = rep->source.bytes[SNAP_EXTENT_DATA];

	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		struct bench_job *job = &rep->jobs[k];
		job->kind = job_kinds[k].name;
		job->job_kind = job_kinds[k].kind;
		job->identical = -1;
		/* free the disk space of a bundle once unbundle is past, whether it ran or not */
		if (job->job_kind == SNAP_JOB_STORE)
			bench_remove_tree(sub);
		if (bench_interrupted()) {
			snprintf(job->reason, sizeof(job->reason), "interrupted");
			continue;
		}
		if (!keys_ok || !dir_ok) {
			snprintf(job->reason, sizeof(job->reason), "%s",
				 detail ? detail : "cannot set up the job directory");
			continue;
		}
		if (rep->opts.skip_job[k]) {
			snprintf(job->reason, sizeof(job->reason), "not selected (--jobs)");
			continue;
		}
		/* invariant 2: is the runner in the build? */
		struct child_result res;
		char *probe_argv[] = {(char *)self_exe, "--job-child",	   "--probe",
				      "--kind",		(char *)job->kind, NULL};
		if (spawn_child(self_exe, probe_argv, &res) < 0 || !res.ran) {
			snprintf(job->reason, sizeof(job->reason),
				 "cannot run a job process: %.200s", res.error);
			continue;
		}
		if (res.rc == -EOPNOTSUPP) {
			snprintf(job->reason, sizeof(job->reason), "%s", res.error);
			continue;
		}
		if ((job->job_kind == SNAP_JOB_UNBUNDLE && !produced[0]) ||
		    (job->job_kind == SNAP_JOB_RESTORE && !produced[2])) {
			snprintf(job->reason, sizeof(job->reason),
				 "needs the output of the %s job, which did not run: %.180s",
				 k == 1 ? "bundle" : "store",
				 rep->jobs[k - 1].reason[0] ? rep->jobs[k - 1].reason
							    : "it failed");
			continue;
		}
		job->available = true;
		for (size_t t = 0; t < rep->opts.nthreads && !bench_interrupted(); t++) {
			struct bench_run *run = &job->runs[job->nruns++];
			char threads[16], level[16];
			snprintf(threads, sizeof(threads), "%u", rep->opts.threads[t]);
			snprintf(level, sizeof(level), "%d", rep->opts.level);
			char *argv[] = {(char *)self_exe,
					"--job-child",
					"--kind",
					(char *)job->kind,
					"--source",
					rep->source.path,
					"--dir",
					dir,
					"--keys",
					keys,
					"--threads",
					threads,
					"--level",
					level,
					NULL};
			run->threads = rep->opts.threads[t];
			/* a fresh target, as a first store has: replacing the previous run's image
			 * would charge this run for freeing it */
			if (job->job_kind == SNAP_JOB_STORE) {
				snprintf(out_path, sizeof(out_path), "%s/bench.bin", dir);
				unlink(out_path);
			}
			/* the previous run's output (gigabytes of bundle parts) is written back now,
			 * not while this run is timed */
			sync();
			/* the host's speed now against the stages' (stages.c invariant 6) */
			if (rep->probe && rep->probe_base > 0) {
				double now = bench_probe(rep->probe, rep->probe_len, rep->opts.level,
							 rep->opts.min_time / 2);
				run->host_speed = now > 0 ? now / rep->probe_base : 0;
			}
			int r = spawn_child(self_exe, argv, &res);
			run->ok = r == 0 && res.ran && res.rc >= 0;
			if (!run->ok) {
				snprintf(run->error, sizeof(run->error), "%s",
					 r < 0 ? snap_strerror(r) : res.error);
				continue;
			}
			produced[k] = true;
			run->seconds = (double)res.elapsed_ns / 1e9;
			run->cpu_seconds =
			    (double)res.ru.ru_utime.tv_sec + (double)res.ru.ru_utime.tv_usec / 1e6 +
			    (double)res.ru.ru_stime.tv_sec + (double)res.ru.ru_stime.tv_usec / 1e6;
			run->peak_rss_kib = (uint64_t)res.ru.ru_maxrss;
			run->bytes_read = res.bytes_read;
			run->bytes_written = res.bytes_written;
			run->rate = run->seconds > 0 ? (double)data / run->seconds : 0;
			memcpy(run->timings, res.timings, sizeof(run->timings));
			run->rate_first_quarter = res.q1;
			run->rate_last_quarter = res.q4;

			/* invariant 4, on the first output only (it costs a full read) */
			const char *img = job->job_kind == SNAP_JOB_UNBUNDLE  ? "unbundled.img"
					  : job->job_kind == SNAP_JOB_RESTORE ? "restored.img"
									      : NULL;
			if (img) {
				snprintf(out_path, sizeof(out_path), "%s/%s", dir, img);
				if (job->identical < 0) {
					uint64_t at = 0;
					int same = same_content(&rep->source, out_path, &at);
					job->identical = same < 0 ? -1 : same;
					if (same == 0)
						snprintf(job->mismatch, sizeof(job->mismatch),
							 "differs from the source at byte %llu",
							 (unsigned long long)at);
					else if (same < 0)
						snprintf(job->mismatch, sizeof(job->mismatch),
							 "cannot compare with the source: %s",
							 snap_strerror(same));
				}
				unlink(out_path);
			}
		}
		if (job->nruns > 0 && !produced[k]) {
			char first[sizeof(job->runs[0].error)];
			memcpy(first, job->runs[0].error, sizeof(first));
			snprintf(job->reason, sizeof(job->reason), "every run failed: %.200s",
				 first);
		}
	}
	snprintf(out_path, sizeof(out_path), "%s/bench.bin", dir);
	unlink(out_path);
	free(detail);
}
