// SPDX-License-Identifier: LGPL-2.1-or-later
/* tool-common.c - messages, progress display and signal handling for the subcommands. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

void tool_error(const char *fmt, ...)
{
	va_list ap;
	fputs("snapbundle: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void tool_warn(const char *fmt, ...)
{
	va_list ap;
	fputs("snapbundle: warning: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void log_to_stderr(void *userdata, enum snap_log_level level, const char *msg)
{
	(void)userdata;
	static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
	fprintf(stderr, "snapbundle: %s%s\n", prefix[level <= SNAP_LOG_DEBUG ? level : 0], msg);
}

void tool_log_setup(bool debug)
{
	snap_set_log(log_to_stderr, NULL, debug ? SNAP_LOG_DEBUG : SNAP_LOG_WARNING);
}

int tool_progress_mode_parse(const char *s)
{
	if (!s || !strcmp(s, "auto"))
		return TOOL_PROGRESS_AUTO;
	if (!strcmp(s, "bar"))
		return TOOL_PROGRESS_BAR;
	if (!strcmp(s, "json"))
		return TOOL_PROGRESS_JSON;
	if (!strcmp(s, "none"))
		return TOOL_PROGRESS_NONE;
	return -1;
}

const char *tool_size(char *buf, unsigned long long bytes)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)bytes;
	int u = 0;
	while (v >= 1024.0 && u < 5) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, 32, "%llu B", bytes);
	else
		snprintf(buf, 32, "%.1f %s", v, units[u]);
	return buf;
}

bool tool_parse_int(const char *s, long lo, long hi, long *ret)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*ret = v;
	return true;
}

long long tool_parse_size(const char *s)
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
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default:
		return -1;
	}
	if (*end == 'i' && shift)
		end++;
	if ((*end == 'B' || *end == 'b') && shift)
		end++;
	if (*end)
		return -1;
	if (shift && v > (~0ull >> 1) >> shift)
		return -1;
	return (long long)(v << shift);
}

static struct snap_job *volatile current_job;

static void on_signal(int sig)
{
	(void)sig;
	if (current_job)
		snap_job_cancel(current_job);
}

struct progress_state {
	int mode;
	bool drew;
};

static const char *stage_name(int stage)
{
	static const char *const names[] = {"prepare", "data", "finish", "verify", "done"};
	return stage >= 0 && stage <= 4 ? names[stage] : "?";
}

static int on_progress(void *userdata, const struct snap_progress *p)
{
	struct progress_state *st = userdata;
	if (st->mode == TOOL_PROGRESS_JSON) {
		fprintf(stderr,
			"{\"stage\":\"%s\",\"percent\":%.1f,\"bytes_total\":%llu,\"bytes_done\":%llu,"
			"\"bytes_read\":%llu,\"bytes_skipped\":%llu,\"bytes_written\":%llu,"
			"\"elapsed\":%.3f}\n",
			stage_name(p->stage), p->percent, (unsigned long long)p->bytes_total,
			(unsigned long long)p->bytes_done, (unsigned long long)p->bytes_read,
			(unsigned long long)p->bytes_skipped, (unsigned long long)p->bytes_written,
			p->elapsed);
		return 0;
	}
	if (st->mode != TOOL_PROGRESS_BAR)
		return 0;
	char a[32], b[32], c[32];
	double rate = p->elapsed > 0 ? (double)p->bytes_done / p->elapsed : 0;
	double eta = rate > 0 && p->bytes_total > p->bytes_done
			     ? (double)(p->bytes_total - p->bytes_done) / rate
			     : 0;
	int width = 30, fill = (int)(p->percent / 100.0 * width);
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = 0;
	fprintf(stderr, "\r%-7s [%s] %5.1f%% %s/%s %s/s ETA %02d:%02d   ", stage_name(p->stage),
		bar, p->percent, tool_size(a, p->bytes_done), tool_size(b, p->bytes_total),
		tool_size(c, (unsigned long long)rate), (int)eta / 60, (int)eta % 60);
	st->drew = true;
	return 0;
}

int tool_run_job(struct snap_job *job, int progress_mode, const char *what)
{
	struct progress_state st = {.mode = progress_mode};
	if (st.mode == TOOL_PROGRESS_AUTO)
		st.mode = isatty(STDERR_FILENO) ? TOOL_PROGRESS_BAR : TOOL_PROGRESS_NONE;
	if (st.mode != TOOL_PROGRESS_NONE)
		snap_job_set_progress(job, on_progress, &st);

	struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	current_job = job;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	int r = snap_job_run(job);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	current_job = NULL;
	if (st.drew)
		fputc('\n', stderr);
	if (r < 0) {
		const char *d = snap_job_error(job);
		tool_error("%s failed: %s", what, *d ? d : snap_strerror(r));
	}
	return r;
}
