// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tool-common.c - messages, shared options, progress display, signal handling, exit codes and
 * the --json document, for the subcommands (a new command gets them by using these helpers).
 *
 *  1. One exit-code table (tool.h, enum tool_exit): tool_exit_of() maps a job's -EBADMSG to
 *     3 (verification failed) and a -ECANCELED caused by a signal to 128 + its number; a
 *     command maps its usage errors to 2 itself.
 *  2. With --json, standard output carries one document, written once (tool_json_emit), by
 *     main when the command returns or by tool_run_job before the process dies of a signal;
 *     meanwhile what printf writes goes to stderr (store -o -: the document goes to stderr).
 *  3. Every message of tool_error, tool_warn and the library's log is also in the document's
 *     errors or warnings; the lists are appended under list_lock (the library logs from its
 *     worker threads).
 *  4. --version and --json are options of every command that parses with tool_getopt.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

/* --json state: the result document's members, in the order they were added */
struct json_member {
	char *key; /* NULL: val is a run of members ("a":1,"b":2) */
	char *val; /* JSON text */
};
static struct {
	bool on, emitted;
	const char *command;
	FILE *out; /* the real standard output */
	struct json_member *members;
	size_t n, cap;
	char **errors, **warnings;
	size_t nerrors, nwarnings;
} json;

/* The library may log from its worker threads: the lists are appended under a lock. */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;

static void list_add(char ***list, size_t *n, const char *msg)
{
	pthread_mutex_lock(&list_lock);
	char **m = realloc(*list, (*n + 1) * sizeof(**list));
	if (m) {
		*list = m;
		if ((m[*n] = strdup(msg)))
			(*n)++;
	}
	pthread_mutex_unlock(&list_lock);
}

static void vmessage(const char *prefix, char ***list, size_t *n, const char *fmt, va_list ap)
{
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	fprintf(stderr, "snapbundle: %s%s\n", prefix, msg ? msg : "(out of memory)");
	if (json.on && msg)
		list_add(list, n, msg);
	free(msg);
}

void tool_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmessage("", &json.errors, &json.nerrors, fmt, ap);
	va_end(ap);
}

void tool_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmessage("warning: ", &json.warnings, &json.nwarnings, fmt, ap);
	va_end(ap);
}

static void log_to_stderr(void *userdata, enum snap_log_level level, const char *msg)
{
	(void)userdata;
	static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
	fprintf(stderr, "snapbundle: %s%s\n", prefix[level <= SNAP_LOG_DEBUG ? level : 0], msg);
	if (json.on && level == SNAP_LOG_ERROR)
		list_add(&json.errors, &json.nerrors, msg);
	else if (json.on && level == SNAP_LOG_WARNING)
		list_add(&json.warnings, &json.nwarnings, msg);
}

void tool_log_setup(bool debug)
{
	snap_set_log(log_to_stderr, NULL, debug ? SNAP_LOG_DEBUG : SNAP_LOG_WARNING);
}

void tool_print_version(void)
{
	printf("snapbundle %s\n", snap_version());
}

static volatile sig_atomic_t caught_signal;

int tool_exit_of(int r)
{
	if (r >= 0)
		return TOOL_EXIT_OK;
	if (r == -EBADMSG)
		return TOOL_EXIT_VERIFY;
	if (r == -ECANCELED && caught_signal)
		return caught_signal == SIGTERM ? TOOL_EXIT_SIGTERM : TOOL_EXIT_SIGINT;
	return TOOL_EXIT_FAILURE;
}

const char *tool_exit_class(int code)
{
	switch (code) {
	case TOOL_EXIT_OK:
		return "ok";
	case TOOL_EXIT_USAGE:
		return "usage";
	case TOOL_EXIT_VERIFY:
		return "verification-failed";
	case TOOL_EXIT_SIGINT:
	case TOOL_EXIT_SIGTERM:
		return "interrupted";
	default:
		return "failure";
	}
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

/* The length of the valid UTF-8 sequence at p (1-4), or 0. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = p[0] < 0x80 ? 1 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
		   : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
	    (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
		return 0; /* overlong, surrogate, past U+10FFFF */
	return n;
}

bool tool_is_manifest(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return false;
	FILE *f = fopen(path, "rb");
	char buf[256] = "";
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	const char *p = buf;
	if (!strncmp(p, "\xef\xbb\xbf", 3))
		p += 3;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	return !strncmp(p, "<?xml", 5) || !strncmp(p, "<manifest", 9);
}

void tool_json_string(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = utf8_len(p);
		if (n == 0) {
			fputs("\\ufffd", f);
			p++;
		} else if (n > 1) {
			fwrite(p, 1, n, f);
			p += n;
		} else {
			if (*p == '"' || *p == '\\')
				fprintf(f, "\\%c", *p);
			else if (*p == '\n')
				fputs("\\n", f);
			else if (*p == '\t')
				fputs("\\t", f);
			else if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
			p++;
		}
	}
	fputc('"', f);
}

void tool_json_start(const char *command)
{
	json.on = true;
	json.command = command;
	fflush(stdout);
	/* the document gets the real standard output; printf's human lines go to stderr */
	int fd = dup(STDOUT_FILENO);
	json.out = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!json.out) {
		if (fd >= 0)
			close(fd);
		json.out = stdout;
		return;
	}
	dup2(STDERR_FILENO, STDOUT_FILENO);
}

bool tool_json_enabled(void)
{
	return json.on;
}

void tool_json_data_on_stdout(void)
{
	if (!json.on || json.out == stdout || json.out == stderr)
		return;
	fflush(stdout);
	dup2(fileno(json.out), STDOUT_FILENO);
	fclose(json.out);
	json.out = stderr;
}

/* Takes val (malloc'd JSON text). */
static void member_set(const char *key, char *val)
{
	if (!json.on || !val) {
		free(val);
		return;
	}
	for (size_t i = 0; key && i < json.n; i++) {
		if (json.members[i].key && !strcmp(json.members[i].key, key)) {
			free(json.members[i].val);
			json.members[i].val = val;
			return;
		}
	}
	if (json.n == json.cap) {
		size_t cap = json.cap ? 2 * json.cap : 32;
		struct json_member *m = realloc(json.members, cap * sizeof(*m));
		if (!m) {
			free(val);
			return;
		}
		json.members = m;
		json.cap = cap;
	}
	char *k = key ? strdup(key) : NULL;
	if (key && !k) {
		free(val);
		return;
	}
	json.members[json.n++] = (struct json_member){k, val};
}

void tool_result_string(const char *key, const char *value)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return;
	tool_json_string(f, value);
	if (fclose(f) != 0) {
		free(buf);
		return;
	}
	member_set(key, buf);
}

void tool_result_u64(const char *key, unsigned long long value)
{
	char *v = NULL;
	member_set(key, asprintf(&v, "%llu", value) < 0 ? NULL : v);
}

void tool_result_double(const char *key, double value)
{
	char *v = NULL;
	member_set(key, asprintf(&v, "%.6f", value) < 0 ? NULL : v);
}

void tool_result_bool(const char *key, bool value)
{
	member_set(key, strdup(value ? "true" : "false"));
}

void tool_result_raw(const char *key, const char *value)
{
	member_set(key, strdup(value ? value : "null"));
}

void tool_result_members(const char *obj)
{
	const char *b = strchr(obj, '{'), *e = strrchr(obj, '}');
	if (!b || !e || e <= b)
		return;
	b++;
	while (b < e && strchr(" \t\r\n", *b))
		b++;
	while (e > b && strchr(" \t\r\n", e[-1]))
		e--;
	if (e > b)
		member_set(NULL, strndup(b, (size_t)(e - b)));
}

void tool_result_job(const struct snap_job *job)
{
	static const struct {
		int result;
		const char *key;
	} u64s[] = {
	    {SNAP_RESULT_BYTES_TOTAL, "bytes_total"},
	    {SNAP_RESULT_BYTES_READ, "bytes_read"},
	    {SNAP_RESULT_BYTES_SKIPPED, "bytes_skipped"},
	    {SNAP_RESULT_BYTES_WRITTEN, "bytes_written"},
	    {SNAP_RESULT_PARTS, "parts"},
	    {SNAP_RESULT_STREAM_BYTES, "stream_bytes"},
	    {SNAP_RESULT_FRAMES, "frames"},
	    {SNAP_RESULT_FRAMES_READ, "frames_read"},
	    {SNAP_RESULT_AUTHENTICATED, "authentication_level"},
	    {SNAP_RESULT_BYTES_UPLOADED, "bytes_uploaded"},
	    {SNAP_RESULT_BYTES_DOWNLOADED, "bytes_downloaded"},
	    {SNAP_RESULT_S3_REQUESTS, "s3_requests"},
	    {SNAP_RESULT_S3_RETRIES, "s3_retries"},
	    {SNAP_RESULT_PARTS_SKIPPED, "parts_skipped"},
	};
	static const struct {
		int result;
		const char *key;
	} strings[] = {
	    {SNAP_RESULT_MANIFEST_PATH, "manifest_path"},
	    {SNAP_RESULT_DIGEST, "digest"},
	    {SNAP_RESULT_OUTPUT_PATH, "output_path"},
	    {SNAP_RESULT_OBJECT_URL, "object_url"},
	    {SNAP_RESULT_ETAG, "etag"},
	};
	if (!json.on)
		return;
	uint64_t v;
	for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++)
		if (snap_job_result_u64(job, u64s[i].result, &v) == 0)
			tool_result_u64(u64s[i].key, v);
	if (snap_job_result_u64(job, SNAP_RESULT_ELAPSED_NS, &v) == 0)
		tool_result_double("elapsed_s", (double)v / 1e9);
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		const char *s = snap_job_result_string(job, strings[i].result);
		if (s)
			tool_result_string(strings[i].key, s);
	}
	const char *t = snap_job_result_string(job, SNAP_RESULT_TIMINGS);
	if (t && *t == '{')
		tool_result_raw("timings", t);
	const char *ab = snap_job_result_string(job, SNAP_RESULT_S3_ABORTED);
	if (ab) {
		/* "s3://BUCKET/KEY UPLOAD-ID" a line: [{"url": ..., "upload_id": ...}, ...] */
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		if (!f)
			return;
		fputc('[', f);
		for (const char *p = ab; *p;) {
			size_t n = strcspn(p, "\n");
			char *line = strndup(p, n);
			char *sp = line ? strrchr(line, ' ') : NULL;
			if (sp) {
				*sp = 0;
				fputs(p == ab ? "{\"url\":" : ",{\"url\":", f);
				tool_json_string(f, line);
				fputs(",\"upload_id\":", f);
				tool_json_string(f, sp + 1);
				fputc('}', f);
			}
			free(line);
			p += n;
			if (*p)
				p++;
		}
		fputc(']', f);
		if (fclose(f) == 0)
			member_set("aborted", buf);
		else
			free(buf);
	}
}

static void json_list(FILE *f, const char *key, char **list, size_t n)
{
	fprintf(f, ",\"%s\":[", key);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		tool_json_string(f, list[i]);
		free(list[i]);
	}
	fputc(']', f);
	free(list);
}

void tool_json_emit(int code)
{
	if (!json.on || json.emitted)
		return;
	json.emitted = true;
	fflush(stdout);
	pthread_mutex_lock(&list_lock);
	FILE *f = json.out ? json.out : stdout;
	fputs("{\"command\":", f);
	tool_json_string(f, json.command);
	fprintf(f, ",\"version\":\"%s\",\"exit_code\":%d,\"exit_class\":\"%s\"", snap_version(),
		code, tool_exit_class(code));
	for (size_t i = 0; i < json.n; i++) {
		fputc(',', f);
		if (json.members[i].key) {
			tool_json_string(f, json.members[i].key);
			fputc(':', f);
		}
		fputs(json.members[i].val, f);
		free(json.members[i].key);
		free(json.members[i].val);
	}
	free(json.members);
	json.members = NULL;
	json.n = json.cap = 0;
	json_list(f, "warnings", json.warnings, json.nwarnings);
	json_list(f, "errors", json.errors, json.nerrors);
	json.warnings = json.errors = NULL;
	json.nwarnings = json.nerrors = 0;
	pthread_mutex_unlock(&list_lock);
	fputs("}\n", f);
	fflush(f);
}

const char *tool_safe(const char *s)
{
	static char *ring[16];
	static unsigned next;
	if (!s)
		return NULL;
	size_t len = strlen(s);
	char *out = malloc(4 * len + 1), *o = out;
	if (!out)
		return "(out of memory)";
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = utf8_len(p);
		if (n == 1 && *p >= 0x20 && *p != 0x7f && *p != '\\') {
			*o++ = (char)*p++;
		} else if (n > 1) {
			memcpy(o, p, n);
			o += n;
			p += n;
		} else if (*p == '\\') {
			o += sprintf(o, "\\\\");
			p++;
		} else {
			o += sprintf(o, "\\x%02x", *p++);
		}
	}
	*o = 0;
	free(ring[next]);
	ring[next] = out;
	next = (next + 1) % 16;
	return out;
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

/* The first line of a file, without its newline. */
/* "-": the first line of standard input, read a byte at a time so that nothing after it is
 * consumed (restore - --passphrase-file - reads the image from the rest). */
static int read_stdin_line(char **ret)
{
	size_t cap = 256, n = 0;
	char *line = malloc(cap);
	for (;;) {
		char c;
		ssize_t k = line ? read(STDIN_FILENO, &c, 1) : -1;
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || c == '\n')
			break;
		if (n + 2 > cap && n < 64 * 1024) {
			char *m = realloc(line, cap *= 2);
			if (!m)
				break;
			line = m;
		}
		if (n + 2 <= cap)
			line[n++] = c;
	}
	if (!line)
		return -1;
	line[n] = 0;
	*ret = line;
	return 0;
}

int tool_read_passphrase(const char *path, char **ret)
{
	if (!strcmp(path, "-")) {
		char *line = NULL;
		if (read_stdin_line(&line) < 0) {
			tool_error("cannot read a passphrase from standard input");
			return -1;
		}
		size_t n = strlen(line);
		while (n > 0 && line[n - 1] == '\r')
			line[--n] = 0;
		if (n == 0) {
			free(line);
			tool_error("empty passphrase on standard input");
			return -1;
		}
		*ret = line;
		return 0;
	}
	FILE *f = fopen(path, "r");
	if (!f) {
		tool_error("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	fclose(f);
	if (n < 0) {
		free(line);
		tool_error("cannot read a passphrase from %s", path);
		return -1;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = 0;
	if (n == 0) {
		free(line);
		tool_error("empty passphrase in %s", path);
		return -1;
	}
	*ret = line;
	return 0;
}

/* getopt values of the shared options without a short name: clear of every command's own. */
enum {
	SHARED_OPT_THREADS = 0x1000,
	SHARED_OPT_PROGRESS,
	SHARED_OPT_DEBUG,
	SHARED_OPT_FORCE,
	SHARED_OPT_NO_DIRECT,
	SHARED_OPT_PASSPHRASE_FILE,
	SHARED_OPT_SIGNER,
	SHARED_OPT_ENDPOINT,
	SHARED_OPT_REGION,
	SHARED_OPT_ACCESS_KEY,
	SHARED_OPT_SECRET_KEY,
	SHARED_OPT_SESSION_TOKEN,
	SHARED_OPT_PROFILE,
	SHARED_OPT_CONNECTIONS,
	SHARED_OPT_RETRY,
	SHARED_OPT_ACL,
	SHARED_OPT_JSON,
	SHARED_OPT_VERSION,
	SHARED_OPT_BATCH,
	SHARED_OPT_EC2CERT,
	SHARED_OPT_KERNEL,
	SHARED_OPT_RAMDISK,
	SHARED_OPT_PRODUCTCODES,
	SHARED_OPT_LEVEL,
	SHARED_OPT_PART_SIZE,
	SHARED_OPT_NO_SIZE_CHECKS,
};

/* The one table of the shared options. */
static const struct {
	unsigned bit;
	const char *shortopt; /* its getopt short-option string, or NULL */
	struct option opt;
} shared_options[] = {
    {TOOL_SHARED_THREADS, NULL, {"threads", required_argument, NULL, SHARED_OPT_THREADS}},
    {TOOL_SHARED_PROGRESS, NULL, {"progress", optional_argument, NULL, SHARED_OPT_PROGRESS}},
    {TOOL_SHARED_DEBUG, NULL, {"debug", no_argument, NULL, SHARED_OPT_DEBUG}},
    {TOOL_SHARED_FORCE, NULL, {"force", no_argument, NULL, SHARED_OPT_FORCE}},
    {TOOL_SHARED_NO_DIRECT, NULL, {"no-direct", no_argument, NULL, SHARED_OPT_NO_DIRECT}},
    {TOOL_SHARED_KEY, "k:", {"key", required_argument, NULL, 'k'}},
    {TOOL_SHARED_PRIVATEKEY, "k:", {"privatekey", required_argument, NULL, 'k'}},
    {TOOL_SHARED_PASSPHRASE_FILE,
     NULL,
     {"passphrase-file", required_argument, NULL, SHARED_OPT_PASSPHRASE_FILE}},
    {TOOL_SHARED_SIGNER, NULL, {"signer", required_argument, NULL, SHARED_OPT_SIGNER}},
    {TOOL_SHARED_S3, NULL, {"endpoint-url", required_argument, NULL, SHARED_OPT_ENDPOINT}},
    {TOOL_SHARED_S3, NULL, {"url", required_argument, NULL, SHARED_OPT_ENDPOINT}},
    {TOOL_SHARED_S3, NULL, {"region", required_argument, NULL, SHARED_OPT_REGION}},
    {TOOL_SHARED_S3, NULL, {"access-key", required_argument, NULL, SHARED_OPT_ACCESS_KEY}},
    {TOOL_SHARED_S3, NULL, {"secret-key", required_argument, NULL, SHARED_OPT_SECRET_KEY}},
    {TOOL_SHARED_S3, NULL, {"session-token", required_argument, NULL, SHARED_OPT_SESSION_TOKEN}},
    {TOOL_SHARED_S3, NULL, {"profile", required_argument, NULL, SHARED_OPT_PROFILE}},
    {TOOL_SHARED_S3, NULL, {"connections", required_argument, NULL, SHARED_OPT_CONNECTIONS}},
    {TOOL_SHARED_S3, NULL, {"retry", optional_argument, NULL, SHARED_OPT_RETRY}},
    {TOOL_SHARED_S3, NULL, {"acl", required_argument, NULL, SHARED_OPT_ACL}},
    {TOOL_SHARED_S3_SHORT, "a:", {"access-key-id", required_argument, NULL, 'a'}},
    {TOOL_SHARED_S3_SHORT, "s:", {"secret-key-id", required_argument, NULL, 's'}},
    {TOOL_SHARED_S3_SHORT, "t:", {"delegation-token", required_argument, NULL, 't'}},
    {TOOL_SHARED_CERT, "c:", {"cert", required_argument, NULL, 'c'}},
    {TOOL_SHARED_BATCH, NULL, {"batch", no_argument, NULL, SHARED_OPT_BATCH}},
    {TOOL_SHARED_EC2, NULL, {"ec2cert", required_argument, NULL, SHARED_OPT_EC2CERT}},
    {TOOL_SHARED_EC2, NULL, {"kernel", required_argument, NULL, SHARED_OPT_KERNEL}},
    {TOOL_SHARED_EC2, NULL, {"ramdisk", required_argument, NULL, SHARED_OPT_RAMDISK}},
    {TOOL_SHARED_BUNDLE, "u:", {"user", required_argument, NULL, 'u'}},
    {TOOL_SHARED_BUNDLE, "r:", {"arch", required_argument, NULL, 'r'}},
    {TOOL_SHARED_BUNDLE, "d:", {"destination", required_argument, NULL, 'd'}},
    {TOOL_SHARED_BUNDLE, "p:", {"prefix", required_argument, NULL, 'p'}},
    {TOOL_SHARED_BUNDLE, "B:", {"block-device-mapping", required_argument, NULL, 'B'}},
    {TOOL_SHARED_BUNDLE, NULL, {"productcodes", required_argument, NULL, SHARED_OPT_PRODUCTCODES}},
    {TOOL_SHARED_BUNDLE, NULL, {"level", required_argument, NULL, SHARED_OPT_LEVEL}},
    {TOOL_SHARED_BUNDLE, NULL, {"part-size", required_argument, NULL, SHARED_OPT_PART_SIZE}},
    {TOOL_SHARED_BUNDLE, NULL, {"no-size-checks", no_argument, NULL, SHARED_OPT_NO_SIZE_CHECKS}},
};

/* The most --connections and --retry take. */
#define TOOL_S3_MAX_CONNECTIONS 64
#define TOOL_S3_MAX_RETRIES 100

void tool_s3_usage(FILE *f, bool short_names)
{
	if (short_names)
		fputs("  -a, --access-key KEY          access key id (default: the AWS chain:\n"
		      "                                environment, profile, instance metadata)\n"
		      "  -s, --secret-key KEY          secret access key\n"
		      "  -t, --session-token TOKEN     session token (also --delegation-token)\n",
		      f);
	else
		fputs("      --access-key KEY          access key id (default: the AWS chain:\n"
		      "                                environment, profile, instance metadata)\n"
		      "      --secret-key KEY          secret access key\n"
		      "      --session-token TOKEN     session token\n",
		      f);
	fprintf(f,
		"      --endpoint-url URL        the S3 service, http(s)://host[:port] (also --url;\n"
		"                                default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,\n"
		"                                the profile's endpoint_url, else AWS's)\n"
		"      --region REGION           (default: AWS_REGION, AWS_DEFAULT_REGION, the\n"
		"                                profile's, instance metadata, us-east-1)\n"
		"      --profile NAME            profile of ~/.aws/credentials and ~/.aws/config\n"
		"                                (default: AWS_PROFILE, else default)\n"
		"      --connections N           transfers at once (default %d, at most %d)\n"
		"      --retry[=N]               retries of each request (default %d; 0: none)\n",
		8, TOOL_S3_MAX_CONNECTIONS, 5);
}

void tool_common_usage(FILE *f)
{
	fputs("\nEvery command:\n"
	      "      --json                    one JSON document on stdout with the result\n"
	      "                                (docs/json.md; human lines go to stderr)\n"
	      "      --version                 print the version\n"
	      "  -h, --help                    this text\n"
	      "Exit status: 0 ok, 1 failure, 2 usage error, 3 verification failed (a digest,\n"
	      "tag or signature that does not match), 130/143 interrupted (docs/cli.md).\n",
	      f);
}

#define N_SHARED (sizeof(shared_options) / sizeof(shared_options[0]))

void tool_args_init(struct tool_args *a, unsigned shared, const char *shortopts,
		    const struct option *own)
{
	size_t n = 0, max = sizeof(a->longopts) / sizeof(a->longopts[0]) - 1;
	*a = (struct tool_args){.shared = shared,
				.progress = TOOL_PROGRESS_AUTO,
				.s3_connections = -1,
				.s3_retries = -1,
				.level = -1};
	snprintf(a->shortopts, sizeof(a->shortopts), "%s", shortopts);
	for (; own && own[n].name; n++)
		a->longopts[n] = own[n];
	for (size_t i = 0; i < N_SHARED; i++) {
		if (!(shared & shared_options[i].bit))
			continue;
		a->longopts[n++] = shared_options[i].opt;
		if (shared_options[i].shortopt)
			strncat(a->shortopts, shared_options[i].shortopt,
				sizeof(a->shortopts) - strlen(a->shortopts) - 1);
	}
	/* every command: --json and --version */
	a->longopts[n++] = (struct option){"json", no_argument, NULL, SHARED_OPT_JSON};
	a->longopts[n++] = (struct option){"version", no_argument, NULL, SHARED_OPT_VERSION};
	if (n > max)
		abort(); /* a programming error: longopts is too small */
	a->longopts[n] = (struct option){0};
	optind = 1;
}

int tool_getopt(struct tool_args *a, int argc, char **argv)
{
	for (;;) {
		int c = getopt_long(argc, argv, a->shortopts, a->longopts, NULL);
		switch (c) {
		case SHARED_OPT_THREADS:
			if (!tool_parse_int(optarg, 0, TOOL_THREADS_MAX, &a->threads)) {
				tool_error("invalid --threads '%s': want 0-%d", optarg,
					   TOOL_THREADS_MAX);
				return TOOL_GETOPT_INVALID;
			}
			break;
		case SHARED_OPT_PROGRESS:
			a->progress = tool_progress_mode_parse(optarg);
			if (a->progress < 0) {
				tool_error("invalid --progress '%s': want bar, json or none",
					   optarg);
				return TOOL_GETOPT_INVALID;
			}
			break;
		case SHARED_OPT_JSON:
			break; /* main saw it first: tool_json_start */
		case SHARED_OPT_VERSION:
			tool_print_version();
			tool_json_emit(TOOL_EXIT_OK);
			tool_args_free(a);
			fflush(NULL);
			exit(TOOL_EXIT_OK);
		case SHARED_OPT_DEBUG:
			a->debug = true;
			tool_log_setup(true);
			break;
		case SHARED_OPT_FORCE:
			a->force = true;
			break;
		case SHARED_OPT_NO_DIRECT:
			a->no_direct = true;
			break;
		case SHARED_OPT_PASSPHRASE_FILE:
			free(a->passphrase);
			a->passphrase = NULL;
			if (tool_read_passphrase(optarg, &a->passphrase) < 0)
				return TOOL_GETOPT_INVALID;
			break;
		case SHARED_OPT_SIGNER:
			a->signer = optarg;
			break;
		case 'k':
			if (!(a->shared & (TOOL_SHARED_KEY | TOOL_SHARED_PRIVATEKEY)))
				return c;
			a->key = optarg;
			break;
		case SHARED_OPT_ENDPOINT:
			a->s3_endpoint = optarg;
			break;
		case SHARED_OPT_REGION:
			a->s3_region = optarg;
			break;
		case SHARED_OPT_ACCESS_KEY:
			a->s3_access_key = optarg;
			break;
		case SHARED_OPT_SECRET_KEY:
			a->s3_secret_key = optarg;
			break;
		case SHARED_OPT_SESSION_TOKEN:
			a->s3_session_token = optarg;
			break;
		case SHARED_OPT_PROFILE:
			a->s3_profile = optarg;
			break;
		case SHARED_OPT_ACL:
			a->s3_acl = optarg;
			break;
		case SHARED_OPT_CONNECTIONS:
			if (!tool_parse_int(optarg, 1, TOOL_S3_MAX_CONNECTIONS,
					    &a->s3_connections)) {
				tool_error("invalid --connections '%s': want 1-%d", optarg,
					   TOOL_S3_MAX_CONNECTIONS);
				return TOOL_GETOPT_INVALID;
			}
			break;
		case SHARED_OPT_RETRY: {
			/* ec2-upload-bundle's --retry is a flag; "--retry N" and "--retry=N" give a
			 * count (a command with an S3 option takes no number as an operand) */
			const char *v = optarg;
			if (!v && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9')
				v = argv[optind++];
			if (!v) {
				a->s3_retries = 5;
			} else if (!tool_parse_int(v, 0, TOOL_S3_MAX_RETRIES, &a->s3_retries)) {
				tool_error("invalid --retry '%s': want 0-%d", v,
					   TOOL_S3_MAX_RETRIES);
				return TOOL_GETOPT_INVALID;
			}
			break;
		}
		case 'a':
		case 's':
		case 't':
			if (!(a->shared & TOOL_SHARED_S3_SHORT))
				return c;
			*(c == 'a'   ? &a->s3_access_key
			  : c == 's' ? &a->s3_secret_key
				     : &a->s3_session_token) = optarg;
			break;
		case 'c':
			if (!(a->shared & TOOL_SHARED_CERT))
				return c;
			a->cert = optarg;
			break;
		case SHARED_OPT_BATCH:
			break;
		case SHARED_OPT_EC2CERT:
			a->ec2cert = optarg;
			break;
		case SHARED_OPT_KERNEL:
			a->kernel = optarg;
			break;
		case SHARED_OPT_RAMDISK:
			a->ramdisk = optarg;
			break;
		case 'u':
		case 'r':
		case 'd':
		case 'p':
		case 'B':
			if (!(a->shared & TOOL_SHARED_BUNDLE))
				return c;
			*(c == 'u'   ? &a->user
			  : c == 'r' ? &a->arch
			  : c == 'd' ? &a->destination
			  : c == 'p' ? &a->prefix
				     : &a->bdm) = optarg;
			break;
		case SHARED_OPT_PRODUCTCODES:
			a->productcodes = optarg;
			break;
		case SHARED_OPT_LEVEL:
			if (!tool_parse_int(optarg, 0, 3, &a->level)) {
				tool_error("invalid --level '%s': want 0-3", optarg);
				return TOOL_GETOPT_INVALID;
			}
			break;
		case SHARED_OPT_PART_SIZE:
			a->part_size = tool_parse_size(optarg);
			if (a->part_size < 16) {
				tool_error("invalid --part-size '%s'", optarg);
				return TOOL_GETOPT_INVALID;
			}
			break;
		case SHARED_OPT_NO_SIZE_CHECKS:
			a->no_size_checks = true;
			break;
		default:
			return c;
		}
	}
}

/* The certificates' and the bundle options' parameters (TOOL_SHARED_CERT, _EC2, _BUNDLE). */
static int apply_bundle(const struct tool_args *a, struct snap_job *job)
{
	bool bundle = a->shared & TOOL_SHARED_BUNDLE;
	const char *dest = a->destination ? a->destination : bundle ? "/tmp" : NULL;
	const struct {
		int sparam;
		const char *v;
	} s[] = {
	    {SNAP_SPARAM_CERT, a->cert},     {SNAP_SPARAM_EC2_CERT, a->ec2cert},
	    {SNAP_SPARAM_KERNEL, a->kernel}, {SNAP_SPARAM_RAMDISK, a->ramdisk},
	    {SNAP_SPARAM_USER, a->user},     {SNAP_SPARAM_ARCH, a->arch},
	    {SNAP_SPARAM_DESTINATION, dest}, {SNAP_SPARAM_PREFIX, a->prefix},
	};
	int r = 0;
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]) && r >= 0; i++)
		if (s[i].v)
			r = snap_job_set_string(job, s[i].sparam, s[i].v);
	/* --productcodes: one value, not split: what ec2-bundle-image writes (§2.2) */
	if (r >= 0 && a->productcodes)
		r = snap_job_add_string(job, SNAP_SPARAM_PRODUCT_CODES, a->productcodes);
	if (r >= 0 && a->bdm)
		r = tool_job_add_list(job, SNAP_SPARAM_BLOCK_DEVICE_MAPPING, a->bdm);
	if (r >= 0 && a->level >= 0)
		r = snap_job_set_param(job, SNAP_PARAM_LEVEL, a->level);
	if (r >= 0 && a->part_size)
		r = snap_job_set_param(job, SNAP_PARAM_PART_SIZE, a->part_size);
	return r;
}

int tool_args_apply(const struct tool_args *a, struct snap_job *job)
{
	int r = 0;
	if (a->shared & TOOL_SHARED_THREADS)
		r = snap_job_set_param(job, SNAP_PARAM_THREADS, a->threads);
	if (r >= 0 && (a->shared & TOOL_SHARED_FORCE))
		r = snap_job_set_param(job, SNAP_PARAM_FORCE, a->force);
	if (r >= 0 && (a->shared & TOOL_SHARED_NO_DIRECT))
		r = snap_job_set_param(job, SNAP_PARAM_NO_DIRECT, a->no_direct);
	if (r >= 0 && a->key)
		r = snap_job_set_string(job, SNAP_SPARAM_PRIVATE_KEY, a->key);
	if (r >= 0 && a->passphrase)
		r = snap_job_set_string(job, SNAP_SPARAM_PASSPHRASE, a->passphrase);
	if (r >= 0 && a->signer)
		r = snap_job_set_string(job, SNAP_SPARAM_TRUSTED_SIGNER, a->signer);
	static const struct {
		int sparam;
		size_t off;
	} s3[] = {
	    {SNAP_SPARAM_S3_ENDPOINT, offsetof(struct tool_args, s3_endpoint)},
	    {SNAP_SPARAM_S3_REGION, offsetof(struct tool_args, s3_region)},
	    {SNAP_SPARAM_S3_ACCESS_KEY, offsetof(struct tool_args, s3_access_key)},
	    {SNAP_SPARAM_S3_SECRET_KEY, offsetof(struct tool_args, s3_secret_key)},
	    {SNAP_SPARAM_S3_SESSION_TOKEN, offsetof(struct tool_args, s3_session_token)},
	    {SNAP_SPARAM_S3_PROFILE, offsetof(struct tool_args, s3_profile)},
	    {SNAP_SPARAM_S3_ACL, offsetof(struct tool_args, s3_acl)},
	};
	for (size_t i = 0; i < sizeof(s3) / sizeof(s3[0]) && r >= 0; i++) {
		const char *v = *(const char *const *)((const char *)a + s3[i].off);
		if (v)
			r = snap_job_set_string(job, s3[i].sparam, v);
	}
	if (r >= 0 && a->s3_connections > 0)
		r = snap_job_set_param(job, SNAP_PARAM_S3_CONNECTIONS, a->s3_connections);
	if (r >= 0 && a->s3_retries >= 0)
		r = snap_job_set_param(job, SNAP_PARAM_S3_RETRIES, a->s3_retries);
	if (r >= 0)
		r = apply_bundle(a, job);
	return r < 0 ? r : 0;
}

void tool_args_free(struct tool_args *a)
{
	free(a->passphrase);
	a->passphrase = NULL;
	free(a->ec2cert_default);
	a->ec2cert_default = NULL;
}

static struct snap_job *volatile current_job;

static void on_signal(int sig)
{
	caught_signal = sig;
	if (current_job)
		snap_job_cancel(current_job);
}

struct progress_state {
	int mode;
	bool drew;
	bool based;		/* base_* hold the first sample of the data stage */
	double base_elapsed;	/* the rate and the ETA count from there: a job that counts */
	uint64_t base_done;	/* what it skips as done at the start is not a speed */
	uint64_t base_read;
	int reading; /* the stage that reads bytes_data: data, or verify for a verify job */
};

static const char *stage_name(int stage)
{
	static const char *const names[] = {"prepare", "data", "finish", "verify", "done"};
	return stage >= 0 && stage <= 4 ? names[stage] : "?";
}

static int on_progress(void *userdata, const struct snap_progress *p)
{
	struct progress_state *st = userdata;
	if (st->mode != TOOL_PROGRESS_BAR && st->mode != TOOL_PROGRESS_JSON)
		return 0;
	char a[32], b[32], c[32];
	if (!st->based && (p->stage == SNAP_STAGE_DATA || p->stage == SNAP_STAGE_VERIFY)) {
		st->based = true;
		st->reading = p->stage;
		st->base_elapsed = p->elapsed;
		st->base_done = p->bytes_done;
		st->base_read = p->bytes_read;
	}
	double dt = st->based ? p->elapsed - st->base_elapsed : 0;
	double rate = dt > 0 && p->bytes_done > st->base_done
			      ? (double)(p->bytes_done - st->base_done) / dt
			      : 0;
	double eta = rate > 0 && p->bytes_total > p->bytes_done
			     ? (double)(p->bytes_total - p->bytes_done) / rate
			     : 0;
	/* With the DATA total known (every job but a restore from a pipe), the bar's percentage,
	 * rate and ETA are over the bytes read of it, in the stage that reads them (data; verify
	 * for a verify of a .bin, which has no data stage): skipped space passes in an instant
	 * and is no speed. */
	double pct = p->percent;
	uint64_t shown_done = p->bytes_done, shown_total = p->bytes_total;
	if (p->bytes_data > 0 && st->based && p->stage == st->reading) {
		uint64_t rd = p->bytes_read < p->bytes_data ? p->bytes_read : p->bytes_data;
		pct = 100.0 * (double)rd / (double)p->bytes_data;
		if (pct > 99.9)
			pct = 99.9;
		rate = dt > 0 && rd > st->base_read ? (double)(rd - st->base_read) / dt : 0;
		eta = rate > 0 ? (double)(p->bytes_data - rd) / rate : 0;
		shown_done = rd;
		shown_total = p->bytes_data;
	}
	if (st->mode == TOOL_PROGRESS_JSON) {
		/* docs/schema/progress.json: rate and eta as the bar shows them (null until the
		 * data stage gave a rate) */
		fprintf(
		    stderr,
		    "{\"stage\":\"%s\",\"percent\":%.1f,\"bytes_total\":%llu,\"bytes_done\":%llu,"
		    "\"bytes_read\":%llu,\"bytes_skipped\":%llu,\"bytes_written\":%llu,"
		    "\"bytes_uploaded\":%llu,\"bytes_downloaded\":%llu,\"bytes_data\":%llu,"
		    "\"elapsed\":%.3f,",
		    stage_name(p->stage), p->percent, (unsigned long long)p->bytes_total,
		    (unsigned long long)p->bytes_done, (unsigned long long)p->bytes_read,
		    (unsigned long long)p->bytes_skipped, (unsigned long long)p->bytes_written,
		    (unsigned long long)p->bytes_uploaded, (unsigned long long)p->bytes_downloaded,
		    (unsigned long long)p->bytes_data, p->elapsed);
		if (rate > 0)
			fprintf(stderr, "\"rate\":%.0f,\"eta\":%.1f}\n", rate, eta);
		else
			fputs("\"rate\":null,\"eta\":null}\n", stderr);
		return 0;
	}
	/* The line fits the terminal (stderr's width, else $COLUMNS, else 80) with a column to
	 * spare, so no update wraps: the bar takes what the other fields (at most 62 columns)
	 * leave, and a terminal too narrow for a bar of 6 gets the numbers alone. */
	int cols = 80;
	struct winsize ws;
	const char *env = getenv("COLUMNS");
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		cols = ws.ws_col;
	else if (env && atoi(env) > 0)
		cols = atoi(env);
	char e[32];
	int secs = (int)eta;
	if (secs >= 3600)
		snprintf(e, sizeof(e), "%d:%02d:%02d", secs / 3600, secs / 60 % 60, secs % 60);
	else
		snprintf(e, sizeof(e), "%d:%02d", secs / 60, secs % 60);
	int width = cols - 1 - 62;
	if (width > 40)
		width = 40;
	if (width < 6) {
		fprintf(stderr, "\r%.7s %5.1f%% %s\033[K", stage_name(p->stage), pct, e);
	} else {
		int fill = (int)(pct / 100.0 * width);
		char bar[64];
		for (int i = 0; i < width; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[width] = 0;
		fprintf(stderr, "\r%-7s [%s] %5.1f%% %s/%s %s/s %s\033[K", stage_name(p->stage),
			bar, pct, tool_size(a, shown_done), tool_size(b, shown_total),
			tool_size(c, (unsigned long long)rate), e);
	}
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
	tool_result_job(job);
	/* S3 jobs say what the transfers took, failed or not: retries are the service's health */
	uint64_t reqs = 0, retries = 0;
	if (snap_job_result_u64(job, SNAP_RESULT_S3_REQUESTS, &reqs) >= 0 && reqs > 0) {
		(void)snap_job_result_u64(job, SNAP_RESULT_S3_RETRIES, &retries);
		fprintf(stderr, "s3: %llu requests, %llu retried\n", (unsigned long long)reqs,
			(unsigned long long)retries);
	}
	if (r == -ECANCELED && caught_signal) {
		tool_json_emit(tool_exit_of(r));
		/* the job cleaned up: every command now dies of the signal, as the shell expects
		 * (128 + the signal's number: 130 for SIGINT, 143 for SIGTERM) */
		fflush(NULL);
		signal(caught_signal, SIG_DFL);
		raise(caught_signal);
	}
	return r;
}
