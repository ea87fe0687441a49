// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * snapbundle-bench.c - the benchmark program behind `snapbundle bench`.
 *
 * It is a program of its own, linked with the library's internals, because the stage
 * benchmarks measure internal pieces (the io_uring reader, the zero scan) that the public API
 * rightly does not expose; `snapbundle bench` (tools/cmd-bench.c, public API only) execs it.
 * The whole jobs run through the public snap_job API, exactly as any frontend runs them.
 *
 * Order of a run (each step's results feed the next):
 *  1. the source: the one given, or a generated disk (gen-disk.c) in the work directory;
 *  2. its extent map (source-map.c): DATA, ZERO, UNUSED bytes;
 *  3. the stages alone (stages.c), on a corpus sampled from the source;
 *  4. the jobs at each thread count (jobs.c), each in a child process;
 *  5. the model (model.c) next to each measured run;
 *  6. the reference tools (reference.c) with --reference;
 *  7. the outside bound (bound.c) with --bound;
 *  8. the reports: table or JSON on stdout (report.c), SVG chart (svg.c).
 * SIGINT and SIGTERM stop at the next step boundary; the work directory is always removed.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MIB (1024ull * 1024ull)

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

bool bench_interrupted(void)
{
	return interrupted != 0;
}

double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *bench_rate_str(char *buf, double bps)
{
	double mb = bps / 1e6;
	snprintf(buf, 32, mb >= 100 ? "%.0f MB/s" : "%.1f MB/s", mb);
	return buf;
}

void bench_remove_tree(const char *path)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		execlp("rm", "rm", "-rf", "--", path, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
}

static void err(const char *fmt, const char *a, const char *b)
{
	fputs("snapbundle: ", stderr);
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
}

static void note(const struct bench_report *rep, const char *msg)
{
	(void)rep;
	fprintf(stderr, "snapbundle bench: %s\n", msg);
}

static long long parse_size(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 0:
		break;
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	case 't':
	case 'T':
		shift = 40;
		end++;
		break;
	default:
		return -1;
	}
	if (*end == 'i' && shift)
		end++;
	if ((*end == 'B' || *end == 'b') && shift)
		end++;
	if (*end || (shift && v > (~0ull >> 1) >> shift))
		return -1;
	return (long long)(v << shift);
}

/* "1,2,4", "1-16", "1-4,8,16" -> sorted, deduplicated thread counts. */
static int parse_threads(const char *s, struct bench_opts *o)
{
	bool want[BENCH_MAX_THREADS + 1] = {false};
	const char *p = s;
	while (*p) {
		char *end;
		long a = strtol(p, &end, 10), b;
		if (end == p || a < 1 || a > BENCH_MAX_THREADS)
			return -EINVAL;
		b = a;
		if (*end == '-') {
			p = end + 1;
			b = strtol(p, &end, 10);
			if (end == p || b < a || b > BENCH_MAX_THREADS)
				return -EINVAL;
		}
		for (long i = a; i <= b; i++)
			want[i] = true;
		if (*end == ',')
			end++;
		else if (*end)
			return -EINVAL;
		p = end;
	}
	o->nthreads = 0;
	for (unsigned i = 1; i <= BENCH_MAX_THREADS; i++)
		if (want[i])
			o->threads[o->nthreads++] = i;
	return o->nthreads ? 0 : -EINVAL;
}

/* "bundle,store", "all", "none" -> o->skip_job[] */
static int parse_jobs(const char *s, struct bench_opts *o)
{
	static const char *const names[BENCH_JOB_KINDS] = {"bundle", "unbundle", "store",
							   "restore"};
	bool want[BENCH_JOB_KINDS] = {false};
	const char *p = s;
	while (*p) {
		size_t n = strcspn(p, ",");
		bool found = false;
		for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
			bool all = n == 3 && !strncmp(p, "all", 3);
			if (all || (strlen(names[k]) == n && !strncmp(p, names[k], n))) {
				want[k] = true;
				found = true;
			}
		}
		if (!found && !(n == 4 && !strncmp(p, "none", 4)))
			return -EINVAL;
		p += n;
		if (*p == ',')
			p++;
	}
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++)
		o->skip_job[k] = !want[k];
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: snapbundle bench [SOURCE] [OPTIONS]\n"
	      "\n"
	      "Measures each pipeline stage alone, the whole jobs (bundle, unbundle, store,\n"
	      "restore) at several thread counts, and compares them with a model of what this\n"
	      "machine allows. Without SOURCE a disk image of realistic content is generated.\n"
	      "\n"
	      "options:\n"
	      "  --size SIZE          size of the generated disk (default 4G, 256M with --quick)\n"
	      "  --threads LIST       thread counts of the job runs: 1,2,4 or 1-16 (default 1 to\n"
	      "                       the number of online CPUs; --quick: 1 and that number)\n"
	      "  --level N            compression level of the jobs, 0-3 (default 1)\n"
	      "  --quick              short runs: fewer read configurations, shorter stages\n"
	      "  --reference          also run the reference tools that are installed\n"
	      "                       (ec2-bundle-image pipeline, pigz, zstd -T0, qemu-img)\n"
	      "  --bound              also measure the outside bound of store, restore and\n"
	      "                       bundle: igzip, openssl and dd on the source's DATA\n"
	      "                       (bench/bound.c), beside the model\n"
	      "  --json               print the results as JSON (docs/bench-json.md)\n"
	      "  --svg FILE           draw stage throughput and thread scaling as an SVG chart\n"
	      "  --workdir DIR        where temporary files go (default $TMPDIR or /var/tmp)\n"
	      "  --uniform            generate a disk with the same content mix from start to end\n"
	      "                       (for comparing a long run's first and last quarter)\n"
	      "  --generate-only FILE write the generated disk to FILE and stop\n"
	      "  --jobs LIST          which jobs to run: bundle,unbundle,store,restore, all\n"
	      "                       (default) or none; the others are reported as not run\n"
	      "  --force              overwrite FILE of --svg or --generate-only\n"
	      "  -h, --help           this text\n",
	      f);
}

static void machine_info(struct bench_report *rep)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	rep->online_cpus = n > 0 ? (unsigned)n : 1;
	snprintf(rep->cpu_model, sizeof(rep->cpu_model), "unknown");
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "model name", 10)) {
			char *c = strchr(line, ':');
			if (c) {
				c += 1 + (c[1] == ' ');
				c[strcspn(c, "\n")] = 0;
				snprintf(rep->cpu_model, sizeof(rep->cpu_model), "%s", c);
			}
			break;
		}
	}
	if (f)
		fclose(f);
	if (getloadavg(rep->loadavg, 3) < 0)
		memset(rep->loadavg, 0, sizeof(rep->loadavg));
	struct utsname u;
	if (uname(&u) == 0)
		snprintf(rep->kernel, sizeof(rep->kernel), "%.20s %.80s %.20s", u.sysname,
			 u.release, u.machine);
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(rep->started, sizeof(rep->started), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--job-child"))
		return bench_job_child_main(argc, argv);

	static struct bench_report rep; /* large: static, not on the stack */
	struct bench_opts *o = &rep.opts;
	const char *generate_only = NULL, *threads_arg = NULL;
	bool force = false, size_given = false;
	o->level = 1;
	enum {
		OPT_SIZE = 256,
		OPT_THREADS,
		OPT_LEVEL,
		OPT_QUICK,
		OPT_REFERENCE,
		OPT_JSON,
		OPT_SVG,
		OPT_WORKDIR,
		OPT_GENERATE,
		OPT_FORCE,
		OPT_JOBS,
		OPT_UNIFORM,
		OPT_BOUND
	};
	static const struct option longopts[] = {
	    {"size", required_argument, NULL, OPT_SIZE},
	    {"threads", required_argument, NULL, OPT_THREADS},
	    {"level", required_argument, NULL, OPT_LEVEL},
	    {"quick", no_argument, NULL, OPT_QUICK},
	    {"reference", no_argument, NULL, OPT_REFERENCE},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"svg", required_argument, NULL, OPT_SVG},
	    {"workdir", required_argument, NULL, OPT_WORKDIR},
	    {"generate-only", required_argument, NULL, OPT_GENERATE},
	    {"force", no_argument, NULL, OPT_FORCE},
	    {"jobs", required_argument, NULL, OPT_JOBS},
	    {"uniform", no_argument, NULL, OPT_UNIFORM},
	    {"bound", no_argument, NULL, OPT_BOUND},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	long long v;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_SIZE:
			v = parse_size(optarg);
			if (v < (long long)(16 * MIB)) {
				err("invalid size '%s'%s: give at least 16M", optarg, "");
				return 2;
			}
			o->size = (uint64_t)v;
			size_given = true;
			break;
		case OPT_THREADS:
			threads_arg = optarg;
			if (parse_threads(optarg, o) < 0) {
				err("invalid thread list '%s'%s: give counts like 1,2,4 or 1-16",
				    optarg, "");
				return 2;
			}
			break;
		case OPT_LEVEL:
			if (strlen(optarg) != 1 || optarg[0] < '0' || optarg[0] > '3') {
				err("invalid level '%s'%s: give 0, 1, 2 or 3", optarg, "");
				return 2;
			}
			o->level = optarg[0] - '0';
			break;
		case OPT_QUICK:
			o->quick = true;
			break;
		case OPT_REFERENCE:
			o->reference = true;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_SVG:
			o->svg = optarg;
			break;
		case OPT_WORKDIR:
			o->workdir_parent = optarg;
			break;
		case OPT_GENERATE:
			generate_only = optarg;
			break;
		case OPT_JOBS:
			if (parse_jobs(optarg, o) < 0) {
				err("invalid job list '%s'%s: give bundle, unbundle, store, "
				    "restore, "
				    "all or none, comma-separated",
				    optarg, "");
				return 2;
			}
			break;
		case OPT_UNIFORM:
			o->uniform = true;
			break;
		case OPT_BOUND:
			o->bound = true;
			break;
		case OPT_FORCE:
			force = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind + 1 < argc) {
		err("too many arguments: '%s'%s", argv[optind + 1], "");
		return 2;
	}
	if (optind < argc)
		o->source = argv[optind];
	if (generate_only && o->source) {
		err("--generate-only makes a disk; it takes no SOURCE ('%s')%s", o->source, "");
		return 2;
	}
	const char *outputs[] = {o->svg, generate_only};
	for (size_t i = 0; i < 2; i++) {
		if (outputs[i] && exists(outputs[i]) && !force) {
			err("%s already exists%s", outputs[i], " (use --force to overwrite it)");
			return 1;
		}
	}
	if (!size_given)
		o->size = o->quick ? 256 * MIB : 4096 * MIB;
	if (generate_only) {
		char *detail = NULL;
		if (force && unlink(generate_only) < 0 && errno != ENOENT) {
			err("cannot remove %s: %s", generate_only, strerror(errno));
			return 1;
		}
		int r = bench_gen_disk(generate_only, o->size, o->uniform, &detail);
		if (r < 0) {
			err("%s%s", detail ? detail : snap_strerror(r), "");
			free(detail);
			return 1;
		}
		return 0;
	}

	machine_info(&rep);
	if (!threads_arg) {
		unsigned n =
		    rep.online_cpus < BENCH_MAX_THREADS ? rep.online_cpus : BENCH_MAX_THREADS;
		o->nthreads = 0;
		for (unsigned t = 1; t <= n; t++)
			if (!o->quick || t == 1 || t == n)
				o->threads[o->nthreads++] = t;
	}
	o->min_time = o->quick ? 0.1 : 0.5;
	o->read_budget = o->quick ? 64 * MIB : 1024 * MIB;
	o->write_budget = o->quick ? 32 * MIB : 512 * MIB;
	size_t corpus_bytes = o->quick ? 4 * MIB : 64 * MIB;

	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* the work directory (invariant 4 of bench.h) */
	const char *parent = o->workdir_parent ? o->workdir_parent : getenv("TMPDIR");
	if (!parent || !*parent)
		parent = "/var/tmp";
	char workdir[3800];
	snprintf(workdir, sizeof(workdir), "%s/snapbundle-bench.XXXXXX", parent);
	if (!mkdtemp(workdir)) {
		err("cannot create a work directory in %s: %s", parent, strerror(errno));
		return 1;
	}
	int status = 1;
	uint8_t *corpus = NULL;
	size_t corpus_len = 0;
	double t_start = bench_now();
	char msg[4400];

	struct bench_source *src = &rep.source;
	if (o->source) {
		if (!realpath(o->source, src->path)) {
			err("cannot open %s: %s", o->source, strerror(errno));
			goto out;
		}
	} else {
		char sz[32];
		snprintf(src->path, sizeof(src->path), "%s/bench-disk.img", workdir);
		snprintf(
		    msg, sizeof(msg), "generating a %s disk of realistic content in %s",
		    (snprintf(sz, sizeof(sz), "%llu MiB", (unsigned long long)(o->size / MIB)), sz),
		    workdir);
		note(&rep, msg);
		char *detail = NULL;
		int r = bench_gen_disk(src->path, o->size, o->uniform, &detail);
		if (r < 0) {
			err("%s%s", detail ? detail : snap_strerror(r), "");
			free(detail);
			goto out;
		}
		src->generated = true;
	}
	bench_map_source(src);
	rep.shared_device = bench_same_device(src->path, workdir, rep.device_note,
					      sizeof(rep.device_note)) == 1;
	if (src->size == 0) {
		err("cannot read %s: %s", src->path, "empty or unreadable");
		goto out;
	}
	int r = bench_sample_source(src, corpus_bytes, &corpus, &corpus_len);
	if (r < 0) {
		err("cannot sample %s: %s", src->path,
		    r == -ENODATA ? "it holds less than 1 MiB of data" : snap_strerror(r));
		goto out;
	}

	note(&rep, "measuring each stage alone");
	bench_run_stages(&rep, corpus, corpus_len, workdir);
	/* the host-speed probe's piece (stages.c invariant 6): pieces from the middle of the
	 * corpus, so of the source's typical content */
	rep.probe_len = corpus_len < 8 * MIB ? corpus_len : 8 * MIB;
	rep.probe = malloc(rep.probe_len);
	if (rep.probe) {
		memcpy(rep.probe, corpus + (corpus_len - rep.probe_len) / 2 / MIB * MIB,
		       rep.probe_len);
		rep.probe_base =
		    bench_probe(rep.probe, rep.probe_len, o->level, o->min_time / 2);
	}
	free(corpus);
	corpus = NULL;
	if (!interrupted) {
		note(&rep, "running the jobs");
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0) {
			err("cannot find this program: %s%s", strerror(errno), "");
			goto out;
		}
		self[n] = 0;
		bench_run_jobs(&rep, workdir, self);
		bench_model_apply(&rep);
	}
	if (!interrupted && o->reference) {
		note(&rep, "running the reference tools");
		bench_run_reference(&rep, workdir);
	}
	if (!interrupted && o->bound) {
		note(&rep, "measuring the outside bound (igzip, openssl, dd)");
		bench_bound_measure(&rep, workdir);
	}
	if (interrupted) {
		err("interrupted%s%s", "", "");
		status = 130;
		goto out;
	}
	rep.total_seconds = bench_now() - t_start;
	if (o->json) {
		if (bench_write_json(&rep, stdout) < 0 || fflush(stdout) != 0) {
			err("cannot write the JSON report: %s%s", strerror(errno), "");
			goto out;
		}
	} else {
		bench_print_table(&rep);
	}
	if (o->svg) {
		char *detail = NULL;
		if (bench_write_svg(&rep, o->svg, &detail) < 0) {
			err("%s%s", detail ? detail : "cannot write the SVG chart", "");
			free(detail);
			goto out;
		}
	}
	status = 0;
out:
	free(corpus);
	bench_source_free(&rep.source);
	bench_profile_free(&rep.profile);
	free(rep.probe);
	bench_remove_tree(workdir);
	return status;
}
