// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * report.c - the results as a table for people and as JSON for scripts (schema in
 * docs/bench-json.md; bump "schema" on any incompatible change).
 *
 * Invariants:
 *  1. Every stage and every job kind appears in both, available or not; what is missing says
 *     why.
 *  2. JSON numbers are finite (NaN and infinities are written as null); strings are escaped
 *     per RFC 8259.
 *  3. MB is 10^6 bytes, MiB 2^20, everywhere.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

/* ---- JSON ------------------------------------------------------------------------------- */

static void jstr(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

/* A string, or null when empty. */
static void jopt(FILE *f, const char *s)
{
	jstr(f, s && *s ? s : NULL);
}

static void jnum(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
}

/* A number, or null when not positive (unknown). */
static void jpos(FILE *f, double v)
{
	if (v > 0)
		jnum(f, v);
	else
		fputs("null", f);
}

static const char *jbool(bool b)
{
	return b ? "true" : "false";
}

static void json_stage(FILE *f, const struct bench_stage *st)
{
	fputs("    {\"name\": ", f);
	jstr(f, st->name);
	fputs(", \"group\": ", f);
	jstr(f, st->group);
	fprintf(f, ", \"available\": %s, \"reason\": ", jbool(st->available));
	jopt(f, st->available ? NULL : st->reason);
	fprintf(f, ", \"bytes\": %llu, \"seconds\": ", (unsigned long long)st->bytes);
	jnum(f, st->seconds);
	fputs(", \"mb_per_s\": ", f);
	jnum(f, st->rate / 1e6);
	fputs(", \"mb_per_cpu_s\": ", f);
	jpos(f, st->cpu_rate / 1e6);
	fputs(", \"ratio\": ", f);
	jpos(f, st->ratio);
	fputs(", \"io_cpu_seconds\": ", f);
	if (st->io_cpu_known)
		jnum(f, st->io_cpu_seconds);
	else
		fputs("null", f);
	if (!strcmp(st->group, "read")) {
		fputs(", \"read\": {\"engine\": ", f);
		jstr(f, st->engine);
		fprintf(f, ", \"direct\": %s, \"queue_depth\": %u, \"request_size\": %zu}",
			jbool(st->direct), st->queue_depth, st->request_size);
	}
	if (!strcmp(st->group, "write") && st->available)
		fprintf(f, ", \"write\": {\"direct\": %s, \"request_size\": %zu}",
			jbool(st->direct), st->request_size);
	fputc('}', f);
}

static void json_run(FILE *f, const struct bench_report *rep, const struct bench_job *job,
		     const struct bench_run *run)
{
	fprintf(f, "        {\"threads\": %u, \"ok\": %s, \"error\": ", run->threads,
		jbool(run->ok));
	jopt(f, run->ok ? NULL : run->error);
	fputs(", \"seconds\": ", f);
	jnum(f, run->seconds);
	fputs(", \"cpu_seconds\": ", f);
	jnum(f, run->cpu_seconds);
	fprintf(f, ", \"peak_rss_bytes\": %llu, \"bytes_read\": %llu, \"bytes_written\": %llu",
		(unsigned long long)run->peak_rss_kib * 1024, (unsigned long long)run->bytes_read,
		(unsigned long long)run->bytes_written);
	fputs(", \"mb_per_s\": ", f);
	jnum(f, run->rate / 1e6);
	fputs(", \"first_quarter_mb_per_s\": ", f);
	jpos(f, run->rate_first_quarter / 1e6);
	fputs(", \"last_quarter_mb_per_s\": ", f);
	jpos(f, run->rate_last_quarter / 1e6);
	fputs(", \"job_timings\": ", f);
	jopt(f, run->timings);
	fputs(",\n         \"model\": {\"limit_seconds\": ", f);
	jnum(f, run->model_seconds);
	fputs(", \"bound\": ", f);
	jstr(f, run->model_bound);
	fputs(", \"bound_share\": ", f);
	jpos(f, run->model_bound_share);
	fprintf(f, ", \"windows\": %zu, \"flat_limit_seconds\": ", run->model_windows);
	jnum(f, run->model_flat_seconds);
	fputs(", \"host_speed\": ", f);
	jpos(f, run->host_speed);
	fprintf(f, ", \"complete\": %s, \"percent_of_limit\": ", jbool(run->model_complete));
	jpos(f, run->percent_of_limit);
	fputs(", \"cpu_seconds\": ", f);
	jnum(f, run->model_cpu_seconds);
	fputs(", \"cpu_percent\": ", f);
	jpos(f, run->cpu_percent);
	fputs(", \"terms\": [", f);
	struct bench_term t[16];
	size_t n = bench_model_terms(rep, job->kind, run, t, 16);
	for (size_t i = 0; i < n; i++) {
		fputs(i ? ", {\"stage\": " : "{\"stage\": ", f);
		jstr(f, t[i].stage);
		fprintf(f, ", \"serial\": %s, \"io\": %s, \"seconds\": ", jbool(t[i].serial),
			jbool(t[i].io));
		if (t[i].available)
			jnum(f, t[i].seconds);
		else
			fputs("null", f);
		fputs(", \"cpu_seconds\": ", f);
		jpos(f, t[i].cpu_seconds);
		fputc('}', f);
	}
	fputs("]}}", f);
}

/* ---- the outside bound (bound.c) beside the model ---------------------------------------- */

static const char *const bound_kinds[] = {"store", "restore", "bundle"};

/* One job's row: the bound, the measured run at the bound's threads, the model. */
struct bound_row {
	double cpu, device, bound;
	const char *binds; /* "cpu" or "device" */
	const struct bench_run *run;
	double percent;	    /* bound / wall * 100; 0 without a run */
	double model_diff;  /* (model - bound) / bound * 100; meaningful with a run */
	const char *larger; /* "model", "bound", or NULL within 10 % */
};

static bool bound_row(const struct bench_report *rep, const char *kind, struct bound_row *ret)
{
	struct bound_row r = {0};
	if (bench_bound_job(&rep->bound, kind, &r.cpu, &r.device) < 0)
		return false;
	r.bound = r.cpu >= r.device ? r.cpu : r.device;
	r.binds = r.cpu >= r.device ? "cpu" : "device";
	r.run = bench_bound_run(rep, kind);
	if (r.run && r.run->seconds > 0)
		r.percent = r.bound / r.run->seconds * 100;
	if (r.run && r.run->model_seconds > 0 && r.bound > 0) {
		r.model_diff = (r.run->model_seconds - r.bound) / r.bound * 100;
		if (r.model_diff > 10)
			r.larger = "model";
		else if (r.model_diff < -10)
			r.larger = "bound";
	}
	*ret = r;
	return true;
}

static void json_bound(FILE *f, const struct bench_report *rep)
{
	const struct bench_bound *b = &rep->bound;
	fprintf(f, "  \"bound\": {\"available\": %s, \"reason\": ", jbool(b->available));
	jopt(f, b->available ? NULL : b->reason);
	fprintf(f, ", \"threads\": %u, \"data_bytes\": %llu, \"compressed_bytes\": %llu",
		b->threads, (unsigned long long)b->data_bytes,
		(unsigned long long)b->compressed_bytes);
	fputs(",\n    \"tools\": {\"igzip_deflate_cpu_seconds\": ", f);
	jnum(f, b->deflate_cpu);
	fputs(", \"igzip_inflate_cpu_seconds\": ", f);
	jnum(f, b->inflate_cpu);
	fputs(", \"sha256_cpu_seconds\": ", f);
	jnum(f, b->sha256_cpu);
	fputs(", \"sha1_cpu_seconds\": ", f);
	jnum(f, b->sha1_cpu);
	fputs(", \"aes128cbc_cpu_seconds\": ", f);
	jnum(f, b->cipher_cpu);
	fputs(", \"cipher_sha1_cpu_seconds\": ", f);
	jnum(f, b->cipher_sha1_cpu);
	fputs(",\n      \"dd_read_data_seconds\": ", f);
	jnum(f, b->read_data_seconds);
	fputs(", \"dd_write_compressed_seconds\": ", f);
	jnum(f, b->write_compressed_seconds);
	fputs(", \"dd_read_compressed_seconds\": ", f);
	jnum(f, b->read_compressed_seconds);
	fputs(", \"dd_write_data_seconds\": ", f);
	jnum(f, b->write_data_seconds);
	fputs("}, \"measured_in_seconds\": ", f);
	jnum(f, b->seconds);
	fputs(",\n    \"jobs\": [", f);
	for (size_t i = 0, n = 0; b->available && i < 3; i++) {
		struct bound_row r;
		if (!bound_row(rep, bound_kinds[i], &r))
			continue;
		fputs(n++ ? ",\n      {\"kind\": " : "\n      {\"kind\": ", f);
		jstr(f, bound_kinds[i]);
		fputs(", \"cpu_seconds\": ", f);
		jnum(f, r.cpu);
		fputs(", \"tools_cpu_seconds\": ", f);
		jnum(f, bench_bound_tools_cpu(b, bound_kinds[i]));
		fputs(", \"device_seconds\": ", f);
		jnum(f, r.device);
		fputs(", \"seconds\": ", f);
		jnum(f, r.bound);
		fputs(", \"binds\": ", f);
		jstr(f, r.binds);
		fputs(",\n       \"job_seconds\": ", f);
		jpos(f, r.run ? r.run->seconds : 0);
		fputs(", \"job_cpu_seconds\": ", f);
		jpos(f, r.run ? r.run->cpu_seconds : 0);
		fputs(", \"percent_of_bound\": ", f);
		jpos(f, r.percent);
		fputs(", \"model_seconds\": ", f);
		jpos(f, r.run ? r.run->model_seconds : 0);
		fputs(", \"model_vs_bound_percent\": ", f);
		if (r.run && r.run->model_seconds > 0)
			jnum(f, r.model_diff);
		else
			fputs("null", f);
		fputs(", \"larger\": ", f);
		jstr(f, r.larger);
		fputc('}', f);
	}
	fputs(b->available ? "\n    ]},\n" : "]},\n", f);
}

static void print_bound(const struct bench_report *rep)
{
	const struct bench_bound *b = &rep->bound;
	if (!b->available) {
		printf("\noutside bound: unavailable: %s\n", b->reason);
		return;
	}
	printf("\noutside bound (bench/bound.c: igzip -1/-d, openssl sha256/sha1/aes-128-cbc, dd "
	       "O_DIRECT 4 MiB)\n"
	       "on %llu bytes of DATA (%llu compressed) in %u pieces; bound = max(cpu, device);\n"
	       "%% bound = bound / job time; the job's run at %u threads\n",
	       (unsigned long long)b->data_bytes, (unsigned long long)b->compressed_bytes,
	       b->threads, b->threads);
	printf("  %-9s %9s %9s %9s %-7s %9s %9s %9s %9s %8s\n", "job", "cpu", "device", "bound",
	       "binds", "tools cpu", "time", "job cpu", "model", "% bound");
	for (size_t i = 0; i < 3; i++) {
		struct bound_row r;
		if (!bound_row(rep, bound_kinds[i], &r))
			continue;
		printf("  %-9s %7.2f s %7.2f s %7.2f s %-7s %7.2f s", bound_kinds[i], r.cpu,
		       r.device, r.bound, r.binds, bench_bound_tools_cpu(b, bound_kinds[i]));
		if (!r.run) {
			printf("  no run at %u threads\n", b->threads);
			continue;
		}
		printf(" %7.2f s %7.2f s %7.2f s %7.1f%%\n", r.run->seconds, r.run->cpu_seconds,
		       r.run->model_seconds, r.percent);
	}
	for (size_t i = 0; i < 3; i++) {
		struct bound_row r;
		if (!bound_row(rep, bound_kinds[i], &r) || !r.run || r.run->model_seconds <= 0)
			continue;
		if (r.larger)
			printf("  %s: the model and the outside bound disagree by %.1f %%: the %s "
			       "is larger (model %.2f s, bound %.2f s)\n",
			       bound_kinds[i], r.model_diff < 0 ? -r.model_diff : r.model_diff,
			       r.larger, r.run->model_seconds, r.bound);
		else
			printf("  %s: the model and the outside bound agree within 10 %% (%+.1f "
			       "%%)\n",
			       bound_kinds[i], r.model_diff);
	}
}

int bench_write_json(const struct bench_report *rep, FILE *f)
{
	const struct bench_opts *o = &rep->opts;
	const struct bench_source *s = &rep->source;
	fputs("{\n  \"schema\": \"snapbundle-bench/1\",\n  \"snapbundle_version\": ", f);
	jstr(f, snap_version());
	fputs(",\n  \"started\": ", f);
	jstr(f, rep->started);
	fputs(",\n  \"total_seconds\": ", f);
	jnum(f, rep->total_seconds);
	fputs(",\n  \"machine\": {\"cpu_model\": ", f);
	jstr(f, rep->cpu_model);
	fprintf(f, ", \"online_cpus\": %u, \"loadavg\": [", rep->online_cpus);
	jnum(f, rep->loadavg[0]);
	fputs(", ", f);
	jnum(f, rep->loadavg[1]);
	fputs(", ", f);
	jnum(f, rep->loadavg[2]);
	fputs("], \"kernel\": ", f);
	jstr(f, rep->kernel);
	fprintf(f, "},\n  \"config\": {\"quick\": %s, \"jobs\": [", jbool(o->quick));
	static const char *const kinds[BENCH_JOB_KINDS] = {"bundle", "unbundle", "store",
							   "restore"};
	for (size_t k = 0, n = 0; k < BENCH_JOB_KINDS; k++)
		if (!o->skip_job[k])
			fprintf(f, "%s\"%s\"", n++ ? ", " : "", kinds[k]);
	fprintf(f, "], \"uniform\": %s, \"level\": %d, \"threads\": [", jbool(o->uniform),
		o->level);
	for (size_t i = 0; i < o->nthreads; i++)
		fprintf(f, "%s%u", i ? ", " : "", o->threads[i]);
	fputs("], \"min_stage_seconds\": ", f);
	jnum(f, o->min_time);
	fprintf(
	    f, ", \"read_budget_bytes\": %llu, \"write_budget_bytes\": %llu, \"reference\": %s},\n",
	    (unsigned long long)o->read_budget, (unsigned long long)o->write_budget,
	    jbool(o->reference));

	fputs("  \"source\": {\"path\": ", f);
	jstr(f, s->path);
	fprintf(f, ", \"generated\": %s, \"size\": %llu, \"mapped\": %s, \"map_note\": ",
		jbool(s->generated), (unsigned long long)s->size, jbool(s->mapped));
	jopt(f, s->map_reason);
	fputs(", \"ptable\": ", f);
	jopt(f, s->ptable);
	fprintf(f, ", \"shares_disk_with_workdir\": %s, \"disk_note\": ",
		jbool(rep->shared_device));
	jopt(f, rep->device_note);
	fprintf(f,
		", \"partitions\": %zu, \"extents\": %llu, \"bytes\": {\"data\": %llu, "
		"\"zero\": %llu, \"unused\": %llu}},\n",
		s->partitions, (unsigned long long)s->extents,
		(unsigned long long)s->bytes[SNAP_EXTENT_DATA],
		(unsigned long long)s->bytes[SNAP_EXTENT_ZERO],
		(unsigned long long)s->bytes[SNAP_EXTENT_UNUSED]);

	fputs("  \"stages\": [\n", f);
	for (size_t i = 0; i < rep->nstages; i++) {
		json_stage(f, &rep->stages[i]);
		fputs(i + 1 < rep->nstages ? ",\n" : "\n", f);
	}
	fputs("  ],\n  \"jobs\": [\n", f);
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		const struct bench_job *job = &rep->jobs[k];
		fputs("    {\"kind\": ", f);
		jstr(f, job->kind);
		fprintf(f, ", \"available\": %s, \"reason\": ", jbool(job->available));
		jopt(f, job->reason);
		fputs(", \"output_identical\": ", f);
		fputs(job->identical < 0 ? "null" : jbool(job->identical == 1), f);
		fputs(", \"output_note\": ", f);
		jopt(f, job->mismatch);
		fputs(", \"runs\": [", f);
		for (size_t i = 0; i < job->nruns; i++) {
			fputs(i ? ",\n" : "\n", f);
			json_run(f, rep, job, &job->runs[i]);
		}
		fputs(job->nruns ? "\n    ]}" : "]}", f);
		fputs(k + 1 < BENCH_JOB_KINDS ? ",\n" : "\n", f);
	}
	fputs("  ],\n", f);
	if (o->bound)
		json_bound(f, rep);
	fputs("  \"reference\": [", f);
	for (size_t i = 0; i < rep->nrefs; i++) {
		const struct bench_ref *r = &rep->refs[i];
		fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", f);
		jstr(f, r->name);
		fputs(", \"command\": ", f);
		jstr(f, r->command);
		fprintf(f, ", \"available\": %s, \"ok\": %s, \"reason\": ", jbool(r->available),
			jbool(r->ok));
		jopt(f, r->ok ? NULL : r->reason);
		fputs(", \"seconds\": ", f);
		jnum(f, r->seconds);
		fputs(", \"cpu_seconds\": ", f);
		jnum(f, r->cpu_seconds);
		fprintf(f, ", \"peak_rss_bytes\": %llu, \"output_bytes\": %llu, \"mb_per_s\": ",
			(unsigned long long)r->peak_rss_kib * 1024,
			(unsigned long long)r->output_bytes);
		jpos(f, r->ok && r->seconds > 0
			    ? (double)s->bytes[SNAP_EXTENT_DATA] / r->seconds / 1e6
			    : 0);
		fputc('}', f);
	}
	fputs(rep->nrefs ? "\n  ]\n}\n" : "]\n}\n", f);
	return ferror(f) ? -EIO : 0;
}

/* ---- table ------------------------------------------------------------------------------ */

static const char *size_str(char *buf, uint64_t b)
{
	static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)b;
	int i = 0;
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(buf, 32, i ? "%.1f %s" : "%.0f %s", v, u[i]);
	return buf;
}

void bench_print_table(const struct bench_report *rep)
{
	const struct bench_source *s = &rep->source;
	char a[32], b[32], c[32], d[32], e[32];
	printf("snapbundle bench %s on %s, %u online CPUs, load %.2f %.2f %.2f, %s\n",
	       snap_version(), rep->cpu_model, rep->online_cpus, rep->loadavg[0], rep->loadavg[1],
	       rep->loadavg[2], rep->kernel);
	printf("source: %s%s, %s", s->generated ? "generated " : "", s->path, size_str(a, s->size));
	if (s->ptable[0])
		printf(", %s, %zu partitions", s->ptable, s->partitions);
	printf("\n        data %s, zero %s, unused %s%s%s\n", size_str(a, s->bytes[0]),
	       size_str(b, s->bytes[1]), size_str(c, s->bytes[2]),
	       s->map_reason[0] ? "\n        " : "", s->map_reason);
	printf("        %s%s\n", rep->device_note,
	       rep->shared_device ? ": reads and writes share its bandwidth" : "");

	printf("\nstages, one thread each (MB = 10^6 bytes)\n");
	for (size_t i = 0; i < rep->nstages; i++) {
		const struct bench_stage *st = &rep->stages[i];
		if (!st->available) {
			printf("  %-32s %12s  %s\n", st->name, "-", st->reason);
			continue;
		}
		printf("  %-32s %12s  %s in %.2f s", st->name, bench_rate_str(a, st->rate),
		       size_str(b, st->bytes), st->seconds);
		if (st->cpu_rate > 0)
			printf(", %s per CPU second", bench_rate_str(c, st->cpu_rate));
		if (st->ratio > 0)
			printf(", output %.1f%% of input", 100.0 * st->ratio);
		putchar('\n');
	}

	printf(
	    "\njobs at level %d (rate: source DATA bytes per second; model: the limit the stage\n"
	    "speeds allow, %% limit = model / time; %% cpu = CPU the stages need / CPU used)\n",
	    rep->opts.level);
	printf("  %-9s %7s %9s %9s %11s %10s %9s  %-16s %7s %6s\n", "job", "threads", "time", "cpu",
	       "rate", "peak RSS", "model", "bound", "% limit", "% cpu");
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		const struct bench_job *job = &rep->jobs[k];
		if (!job->available) {
			printf("  %-9s not run: %s\n", job->kind, job->reason);
			continue;
		}
		for (size_t i = 0; i < job->nruns; i++) {
			const struct bench_run *r = &job->runs[i];
			if (!r->ok) {
				printf("  %-9s %7u failed: %s\n", job->kind, r->threads, r->error);
				continue;
			}
			snprintf(c, sizeof(c), "%.2f s", r->seconds);
			snprintf(d, sizeof(d), "%.2f s", r->cpu_seconds);
			printf("  %-9s %7u %9s %9s %11s %10s %7.2f s  %-16s %6.0f%% %5.0f%%%s\n",
			       job->kind, r->threads, c, d, bench_rate_str(a, r->rate),
			       size_str(b, r->peak_rss_kib * 1024), r->model_seconds,
			       r->model_bound, r->percent_of_limit, r->cpu_percent,
			       r->model_complete ? "" : " (model incomplete)");
		}
		for (size_t i = 0; i < job->nruns; i++)
			if (job->runs[i].ok && job->runs[i].timings[0])
				printf("  %-9s %7u where the time went: %s\n", "",
				       job->runs[i].threads, job->runs[i].timings);
		if (job->identical == 0 || (job->identical < 0 && job->mismatch[0]))
			printf("  %-9s output: %s\n", "", job->mismatch);
		if (job->nruns && job->reason[0])
			printf("  %-9s %s\n", "", job->reason);
	}
	if (rep->opts.reference) {
		printf("\nreference tools on the same source\n");
		for (size_t i = 0; i < rep->nrefs; i++) {
			const struct bench_ref *r = &rep->refs[i];
			if (!r->available || !r->ok) {
				printf("  %-18s not run: %s\n", r->name, r->reason);
				continue;
			}
			snprintf(c, sizeof(c), "%.2f s", r->seconds);
			snprintf(d, sizeof(d), "%.2f s", r->cpu_seconds);
			printf("  %-18s %9s cpu %9s  %11s  peak RSS %9s  output %s\n", r->name, c,
			       d,
			       bench_rate_str(a, r->seconds > 0 ? (double)s->bytes[0] / r->seconds
								: 0),
			       size_str(b, r->peak_rss_kib * 1024), size_str(e, r->output_bytes));
		}
	}
	if (rep->opts.bound)
		print_bound(rep);
	printf("\ntotal %.1f s\n", rep->total_seconds);
}
