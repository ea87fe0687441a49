// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * svg.c - one chart a person reads at a glance: on the left, each stage's throughput on one
 * core as horizontal bars on a log scale (read speeds and compressor speeds differ by 100x);
 * on the right, each job's throughput against the thread count (solid, with points) next to
 * the model's limit (dashed, same colour), and under it what bounds each job at the highest
 * thread count, how close it came to the limit, and its peak RSS. With --reference, a third
 * panel across the width: the jobs that do the reference tools' work (bundle and store: read
 * the source, compress, write) at their fastest thread count, next to each reference tool, as
 * bars on one linear scale of source DATA MB/s (the unit of the job lines and of the report's
 * mb_per_s), with seconds, CPU seconds and output size.
 *
 * Invariants:
 *  1. Hand-written SVG 1.1, no scripts, no external fonts or files: any browser or rsvg
 *     renders it, and XML parsers accept it (every text is escaped).
 *  2. Every stage has a row and every job a line or a "not run" note: nothing is dropped
 *     because it is missing.
 *  3. The file is written under a temporary name and renamed: never a half chart.
 *  4. A reference tool that did not run is named with its reason, never left out; without
 *     --reference there is no reference panel at all.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define W 1240
#define ROW 19
#define LEFT_X 240  /* bar origin */
#define LEFT_W 340  /* bar area width */
#define RIGHT_X 740 /* plot origin */
#define RIGHT_W 390
#define TOP 92

static const char *const job_colors[BENCH_JOB_KINDS] = {"#1f77b4", "#2ca02c", "#d62728", "#9467bd"};

static const char *group_color(const char *group)
{
	static const struct {
		const char *g, *c;
	} map[] = {
	    {"read", "#4c78a8"},    {"zero", "#9d9d9d"},    {"hash", "#b279a2"},
	    {"deflate", "#f58518"}, {"inflate", "#54a24b"}, {"cipher", "#e45756"},
	    {"write", "#8c6d31"},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(map[i].g, group))
			return map[i].c;
	return "#777777";
}

static void esc(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '&':
			fputs("&amp;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		default:
			/* control characters are not allowed in XML 1.0 */
			fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
		}
	}
}

static void text(FILE *f, double x, double y, const char *attrs, const char *s)
{
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" %s>", x, y, attrs);
	esc(f, s);
	fputs("</text>\n", f);
}

static void mbs(char *buf, size_t len, double bps)
{
	double v = bps / 1e6;
	snprintf(buf, len, v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f", v);
}

/* What one core does: the CPU-time rate of a compute stage (on a busy machine its wall rate is
 * only what this process got), the wall rate of I/O. */
static double core_rate(const struct bench_stage *st)
{
	return st->cpu_rate > 0 ? st->cpu_rate : st->rate;
}

/* Left panel; returns its bottom y. */
static double stage_panel(FILE *f, const struct bench_report *rep)
{
	double lo = 1e12, hi = 0;
	for (size_t i = 0; i < rep->nstages; i++) {
		const struct bench_stage *st = &rep->stages[i];
		if (st->available && st->rate > 0) {
			lo = fmin(lo, core_rate(st) / 1e6);
			hi = fmax(hi, core_rate(st) / 1e6);
		}
	}
	if (hi <= 0)
		lo = 10, hi = 1000;
	double d0 = floor(log10(lo)), d1 = ceil(log10(hi));
	if (d1 <= d0)
		d1 = d0 + 1;
	double y0 = TOP + 44, h = (double)rep->nstages * ROW;
	text(f, 20, TOP, "class=\"h\"", "Each stage alone on one core (MB/s, log scale)");
	text(f, 20, TOP + 16, "class=\"ax\"", "compute: per CPU second; read and write: wall time");
	for (double dd = d0; dd <= d1; dd++) {
		double x = LEFT_X + (dd - d0) / (d1 - d0) * LEFT_W;
		char lab[32];
		snprintf(lab, sizeof(lab), "%.0f", pow(10, dd));
		fprintf(f,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n",
			x, y0 - 6, x, y0 + h);
		text(f, x, y0 - 10, "class=\"ax\" text-anchor=\"middle\"", lab);
	}
	for (size_t i = 0; i < rep->nstages; i++) {
		const struct bench_stage *st = &rep->stages[i];
		double y = y0 + (double)i * ROW;
		text(f, LEFT_X - 8, y + 13, "class=\"lab\" text-anchor=\"end\"", st->name);
		if (i > 0 && strcmp(st->group, rep->stages[i - 1].group) != 0)
			fprintf(f,
				"<line x1=\"20\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
				"class=\"grid\"/>\n",
				y, LEFT_X + LEFT_W + 60, y);
		if (!st->available) {
			char why[200];
			snprintf(why, sizeof(why), "not available: %.46s%s", st->reason,
				 strlen(st->reason) > 46 ? "..." : "");
			text(f, LEFT_X + 4, y + 13, "class=\"na\"", why);
			continue;
		}
		double v = log10(core_rate(st) / 1e6);
		double w = (v - d0) / (d1 - d0) * LEFT_W;
		if (w < 2)
			w = 2;
		fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n",
			LEFT_X, y + 2, w, ROW - 5, group_color(st->group));
		char lab[64];
		mbs(lab, sizeof(lab), core_rate(st));
		if (st->cpu_rate > 0 && st->rate < 0.9 * st->cpu_rate) {
			/* the machine is busy: say what this process got too */
			size_t n = strlen(lab);
			char wall[16];
			mbs(wall, sizeof(wall), st->rate);
			snprintf(lab + n, sizeof(lab) - n, " (wall %s)", wall);
		}
		if (st->ratio > 0) {
			size_t n = strlen(lab);
			snprintf(lab + n, sizeof(lab) - n, "  (out %.0f%%)", 100 * st->ratio);
		}
		/* a long bar carries its label inside, so it never runs into the other panel */
		if (w + 8 + 7.0 * (double)strlen(lab) > LEFT_W + 60)
			text(f, LEFT_X + w - 4, y + 13,
			     "class=\"val\" text-anchor=\"end\" style=\"fill:#ffffff\"", lab);
		else
			text(f, LEFT_X + w + 4, y + 13, "class=\"val\"", lab);
	}
	/* legend of the groups */
	static const char *const groups[] = {"read",	"zero",	  "hash", "deflate",
					     "inflate", "cipher", "write"};
	double ly = y0 + h + 22, lx = 20;
	for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
		fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>\n",
			lx, ly - 9, group_color(groups[g]));
		text(f, lx + 14, ly, "class=\"ax\"", groups[g]);
		lx += 22 + 7.0 * (double)strlen(groups[g]);
	}
	return ly + 10;
}

/* Right panel; returns its bottom y. */
static double job_panel(FILE *f, const struct bench_report *rep)
{
	double px = RIGHT_X, py = TOP + 32, ph = 260;
	text(f, RIGHT_X - 50, TOP, "class=\"h\"", "Whole jobs by threads (MB/s of source data)");
	text(f, RIGHT_X - 50, TOP + 16, "class=\"ax\"",
	     "solid with points: measured; dashed: the model's limit, same colour");
	unsigned tmax = 1;
	double ymax = 0, label_y[BENCH_JOB_KINDS] = {0};
	size_t ran = 0;
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		const struct bench_job *job = &rep->jobs[k];
		for (size_t i = 0; i < job->nruns; i++) {
			const struct bench_run *r = &job->runs[i];
			if (!r->ok)
				continue;
			ran++;
			tmax = r->threads > tmax ? r->threads : tmax;
			ymax = fmax(ymax, r->rate);
			if (r->model_seconds > 0)
				ymax = fmax(ymax, (double)rep->source.bytes[0] / r->model_seconds);
		}
	}
	for (size_t i = 0; i < rep->opts.nthreads; i++)
		tmax = rep->opts.threads[i] > tmax ? rep->opts.threads[i] : tmax;
	/* a round top for the y axis */
	double ytop = 1;
	ymax /= 1e6;
	while (ytop < ymax)
		ytop *= ytop * 2 < ymax ? 10 : 2;
	if (ymax > 0 && ytop / 2 >= ymax)
		ytop /= 2;
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" class=\"frame\"/>\n",
		px, py, RIGHT_W, ph);
	for (int g = 0; g <= 4 && ran > 0; g++) {
		double y = py + ph - ph * g / 4.0;
		char lab[32];
		snprintf(lab, sizeof(lab), ytop >= 40 ? "%.0f" : "%.1f", ytop * g / 4.0);
		fprintf(f,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n",
			px, y, px + RIGHT_W, y);
		text(f, px - 6, y + 4, "class=\"ax\" text-anchor=\"end\"", lab);
	}
#define XOF(t)                                                                                     \
	(tmax > 1 ? px + 20 + ((double)(t)-1) / (tmax - 1) * (RIGHT_W - 40) : px + RIGHT_W / 2.0)
#define YOF(v) (py + ph - (v) / 1e6 / ytop * ph)
	for (size_t i = 0; i < rep->opts.nthreads; i++) {
		unsigned t = rep->opts.threads[i];
		char lab[16];
		snprintf(lab, sizeof(lab), "%u", t);
		text(f, XOF(t), py + ph + 15, "class=\"ax\" text-anchor=\"middle\"", lab);
	}
	text(f, px + RIGHT_W / 2.0, py + ph + 31, "class=\"ax\" text-anchor=\"middle\"", "threads");
	if (ran > 0) {
		fprintf(f,
			"<text x=\"0\" y=\"0\" class=\"ax\" text-anchor=\"middle\" "
			"transform=\"translate(%.1f,%.1f) rotate(-90)\">MB/s</text>\n",
			px - 62, py + ph / 2);
	}
	if (ran == 0)
		text(f, px + RIGHT_W / 2.0, py + ph / 2, "class=\"na\" text-anchor=\"middle\"",
		     "no job ran in this build (see below)");
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		const struct bench_job *job = &rep->jobs[k];
		for (int model = 0; model < 2; model++) {
			bool first = true;
			for (size_t i = 0; i < job->nruns; i++) {
				const struct bench_run *r = &job->runs[i];
				double v =
				    model ? (r->model_seconds > 0
						 ? (double)rep->source.bytes[0] / r->model_seconds
						 : 0)
					  : r->rate;
				if (!r->ok || v <= 0)
					continue;
				if (first)
					fprintf(f,
						"<polyline fill=\"none\" stroke=\"%s\" "
						"stroke-width=\"%s\"%s points=\"",
						job_colors[k], model ? "1.5" : "2.5",
						model ? " stroke-dasharray=\"6 4\"" : "");
				fprintf(f, "%s%.1f,%.1f", first ? "" : " ", XOF(r->threads),
					YOF(v));
				first = false;
			}
			if (!first)
				fputs("\"/>\n", f);
		}
		for (size_t i = 0; i < job->nruns; i++) {
			const struct bench_run *r = &job->runs[i];
			if (r->ok && r->rate > 0) {
				fprintf(f,
					"<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
					XOF(r->threads), YOF(r->rate), job_colors[k]);
				label_y[k] = YOF(r->rate) + 4;
			}
		}
	}
#undef XOF
#undef YOF
	/* name each line at its end; labels that would overlap are pushed apart */
	size_t order[BENCH_JOB_KINDS], nl = 0;
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++)
		if (label_y[k] > 0)
			order[nl++] = k;
	for (size_t i = 1; i < nl; i++) /* insertion sort by y */
		for (size_t j = i; j > 0 && label_y[order[j]] < label_y[order[j - 1]]; j--) {
			size_t tmp = order[j];
			order[j] = order[j - 1];
			order[j - 1] = tmp;
		}
	for (size_t i = 1; i < nl; i++)
		if (label_y[order[i]] < label_y[order[i - 1]] + 13)
			label_y[order[i]] = label_y[order[i - 1]] + 13;
	for (size_t i = 0; i < nl; i++) {
		char attrs[64];
		snprintf(attrs, sizeof(attrs), "class=\"lab\" style=\"fill:%s\"",
			 job_colors[order[i]]);
		text(f, px + RIGHT_W + 6, label_y[order[i]], attrs, rep->jobs[order[i]].kind);
	}
	/* per job: the line at the highest thread count, or why it did not run */
	double y = py + ph + 56;
	text(f, px - 50, y, "class=\"lab\" font-weight=\"bold\"",
	     "job        threads  MB/s  bound          % limit  % cpu  peak RSS");
	y += 18;
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		const struct bench_job *job = &rep->jobs[k];
		const struct bench_run *last = NULL;
		for (size_t i = 0; i < job->nruns; i++)
			if (job->runs[i].ok)
				last = &job->runs[i];
		fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"4\" fill=\"%s\"/>\n",
			px - 68, y - 6, job_colors[k]);
		char line[256];
		if (last)
			snprintf(line, sizeof(line),
				 "%-10s %7u %5.0f  %-14s %6.0f%% %5.0f%% %5.1f MiB", job->kind,
				 last->threads, last->rate / 1e6, last->model_bound,
				 last->percent_of_limit, last->cpu_percent,
				 (double)last->peak_rss_kib / 1024);
		else
			snprintf(line, sizeof(line), "%-10s not run: %.48s%s", job->kind,
				 job->reason[0] ? job->reason : "every run failed",
				 strlen(job->reason) > 48 ? "..." : "");
		text(f, px - 50, y, last ? "class=\"lab\"" : "class=\"na\"", line);
		y += 18;
	}
	return y;
}

/* The jobs set next to the reference tools: those that read the source and write a compressed
 * image, as every reference tool does. */
static bool compared_job(const struct bench_job *job)
{
	return !strcmp(job->kind, "bundle") || !strcmp(job->kind, "store");
}

static size_t reference_rows(const struct bench_report *rep)
{
	if (!rep->opts.reference)
		return 0;
	size_t n = rep->nrefs;
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++)
		n += compared_job(&rep->jobs[k]);
	return n;
}

#define REF_BAR_X 300
#define REF_BAR_W 520

static double ref_rate(const struct bench_report *rep, const struct bench_ref *r)
{
	return r->ok && r->seconds > 0 ? (double)rep->source.bytes[SNAP_EXTENT_DATA] / r->seconds
				       : 0;
}

static const struct bench_run *fastest_run(const struct bench_job *job)
{
	const struct bench_run *best = NULL;
	for (size_t i = 0; i < job->nruns; i++)
		if (job->runs[i].ok && job->runs[i].rate > 0 &&
		    (!best || job->runs[i].rate > best->rate))
			best = &job->runs[i];
	return best;
}

static void ref_bar(FILE *f, double y, double rate, double top, const char *color, const char *name,
		    const char *value)
{
	double w = rate / top * REF_BAR_W;
	if (w < 2)
		w = 2;
	fprintf(f,
		"<rect class=\"refbar\" x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" "
		"fill=\"%s\"><title>",
		REF_BAR_X, y + 2, w, ROW - 5, color);
	esc(f, name);
	fputs("</title></rect>\n", f);
	text(f, REF_BAR_X + w + 6, y + 13, "class=\"val\"", value);
}

/* Bottom panel, from y0 (only with --reference); returns its bottom y. */
static double reference_panel(FILE *f, const struct bench_report *rep, double y0)
{
	double top = 0;
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		const struct bench_run *r = fastest_run(&rep->jobs[k]);
		if (compared_job(&rep->jobs[k]) && r)
			top = fmax(top, r->rate);
	}
	for (size_t i = 0; i < rep->nrefs; i++)
		top = fmax(top, ref_rate(rep, &rep->refs[i]));
	if (top <= 0)
		top = 1e6;
	fprintf(f, "<g id=\"reference\">\n");
	text(f, 20, y0, "class=\"h\"",
	     "snapbundle next to the reference tools on the same source (MB/s of source data)");
	text(f, 20, y0 + 16, "class=\"ax\"",
	     "our jobs at their fastest thread count; the tools as --reference ran them; "
	     "linear scale, longer is faster");
	double y = y0 + 30;
	char name[96], value[200], a[32], b[32];
	for (size_t k = 0; k < BENCH_JOB_KINDS; k++) {
		const struct bench_job *job = &rep->jobs[k];
		if (!compared_job(job))
			continue;
		const struct bench_run *r = fastest_run(job);
		snprintf(name, sizeof(name), "snapbundle %s", job->kind);
		text(f, REF_BAR_X - 8, y + 13, "class=\"lab\" text-anchor=\"end\"", name);
		if (r) {
			mbs(a, sizeof(a), r->rate);
			snprintf(value, sizeof(value), "%s MB/s  %u threads  %.2f s", a, r->threads,
				 r->seconds);
			ref_bar(f, y, r->rate, top, job_colors[k], name, value);
		} else {
			snprintf(value, sizeof(value), "not run: %.60s",
				 job->reason[0] ? job->reason : "every run failed");
			text(f, REF_BAR_X + 4, y + 13, "class=\"na\"", value);
		}
		y += ROW;
	}
	for (size_t i = 0; i < rep->nrefs; i++) {
		const struct bench_ref *r = &rep->refs[i];
		text(f, REF_BAR_X - 8, y + 13, "class=\"lab\" text-anchor=\"end\"", r->name);
		if (r->available && r->ok) {
			mbs(a, sizeof(a), ref_rate(rep, r));
			mbs(b, sizeof(b), (double)r->output_bytes);
			snprintf(value, sizeof(value), "%s MB/s  %.2f s  cpu %.2f s  output %s MB",
				 a, r->seconds, r->cpu_seconds, b);
			ref_bar(f, y, ref_rate(rep, r), top, "#8c8c8c", r->name, value);
		} else {
			snprintf(value, sizeof(value), "not run: %.80s", r->reason);
			text(f, REF_BAR_X + 4, y + 13, "class=\"na\"", value);
		}
		y += ROW;
	}
	fputs("</g>\n", f);
	return y;
}

int bench_write_svg(const struct bench_report *rep, const char *path, char **ret_detail)
{
	char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0)
		return -ENOMEM;
	int fd = mkstemp(tmp);
	if (fd >= 0) { /* mkstemp makes 0600; a chart is an ordinary file */
		mode_t mask = umask(0);
		umask(mask);
		fchmod(fd, 0666 & ~mask);
	}
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		int e = errno;
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		if (ret_detail &&
		    asprintf(ret_detail, "cannot create %s: %s", path, strerror(e)) < 0)
			*ret_detail = NULL;
		free(tmp);
		return -e;
	}
	/* the taller panel decides the height, known from the row counts before drawing */
	double left_h = TOP + 44 + (double)rep->nstages * ROW + 40;
	double right_h = TOP + 28 + 260 + 56 + 18 * (BENCH_JOB_KINDS + 1);
	double panels_h = left_h > right_h ? left_h : right_h;
	size_t nref = reference_rows(rep);
	double h = panels_h + 36 + (nref ? 30 + 30 + (double)nref * ROW + 10 : 0);
	fprintf(f,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" xml:space=\"preserve\" "
		"width=\"%d\" "
		"height=\"%.0f\" viewBox=\"0 0 %d %.0f\">\n",
		W, h, W, h);
	fputs("<style>text{font-family:DejaVu Sans Mono,Menlo,Consolas,monospace;font-size:12px;"
	      "fill:#222}.t{font-size:17px;font-weight:bold}.s{font-size:12px;fill:#555}"
	      ".h{font-size:14px;font-weight:bold}.ax{font-size:11px;fill:#555}"
	      ".lab{font-size:12px}.val{font-size:11px;fill:#333}.na{font-size:11px;fill:#999;"
	      "font-style:italic}.grid{stroke:#ddd;stroke-width:1}"
	      ".frame{fill:none;stroke:#bbb;stroke-width:1}</style>\n",
	      f);
	fprintf(f, "<rect width=\"%d\" height=\"%.0f\" fill=\"#ffffff\"/>\n", W, h);
	char line[600], a[32];
	snprintf(line, sizeof(line), "snapbundle bench %s: %s, %u CPUs, load %.2f", snap_version(),
		 rep->cpu_model, rep->online_cpus, rep->loadavg[0]);
	text(f, 20, 28, "class=\"t\"", line);
	const struct bench_source *s = &rep->source;
	snprintf(line, sizeof(line),
		 "source: %s%.0f MiB (data %.0f MiB, zero %.0f MiB, unused %.0f MiB)%s, level %d, "
		 "%s, %s",
		 s->generated ? "generated disk, " : "", (double)s->size / 1048576.0,
		 (double)s->bytes[0] / 1048576.0, (double)s->bytes[1] / 1048576.0,
		 (double)s->bytes[2] / 1048576.0, s->mapped ? "" : " (map from holes only)",
		 rep->opts.level, rep->opts.quick ? "quick run" : "full run", rep->started);
	text(f, 20, 50, "class=\"s\"", line);
	const struct bench_stage *best = bench_stage_best_read(rep);
	if (best) {
		snprintf(line, sizeof(line), "best read: %s at %s; MB = 10^6 bytes", best->name,
			 bench_rate_str(a, best->rate));
		text(f, 20, 68, "class=\"s\"", line);
	}
	double bottom = fmax(stage_panel(f, rep), job_panel(f, rep));
	if (nref)
		reference_panel(f, rep, fmax(bottom, panels_h) + 36);
	fputs("</svg>\n", f);
	int r = 0;
	if (fflush(f) != 0 || ferror(f))
		r = -errno ? -errno : -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		if (ret_detail &&
		    asprintf(ret_detail, "cannot write %s: %s", path, strerror(-r)) < 0)
			*ret_detail = NULL;
	}
	free(tmp);
	return r;
}
