/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tool.h - shared by the snapbundle subcommands (tools/cmd-*.c). Public API only: the command
 * is a frontend like any other, which keeps the library honest as a backend.
 */
#ifndef SNAP_TOOL_H
#define SNAP_TOOL_H

#include <stdbool.h>

#include "snapbundle.h"

enum tool_progress_mode {
	TOOL_PROGRESS_NONE = 0,
	TOOL_PROGRESS_AUTO = 1, /* a bar on a terminal, nothing otherwise */
	TOOL_PROGRESS_BAR = 2,
	TOOL_PROGRESS_JSON = 3, /* one JSON object per line on stderr, for frontends */
};

/* Parses the value of --progress[=bar|json|none]; NULL means "auto". -1 when invalid. */
int tool_progress_mode_parse(const char *s);

/* "snapbundle: <msg>" on stderr (lowercase, no trailing period). */
void tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tool_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Routes library log lines to stderr; debug lines only when debug. */
void tool_log_setup(bool debug);

/* Runs job with SIGINT/SIGTERM cancelling it and progress shown as mode. On failure prints
 * "<what> failed: <detail>" and returns the negative errno. */
int tool_run_job(struct snap_job *job, int progress_mode, const char *what);

/* Human sizes: "1.5 GiB". buf must hold 32 bytes. */
const char *tool_size(char *buf, unsigned long long bytes);

/* A decimal integer in [lo, hi], nothing else on the string. */
bool tool_parse_int(const char *s, long lo, long hi, long *ret);

/* Parses "10M", "4G", "4096", "1T" into bytes; -1 when invalid. */
long long tool_parse_size(const char *s);

/* Subcommands: each returns the process exit code. */
int cmd_inspect(int argc, char **argv);
int cmd_bundle(int argc, char **argv);
int cmd_unbundle(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_inspect_store(int argc, char **argv); /* inspect IMAGE.bin */
int cmd_verify_store(int argc, char **argv);  /* verify IMAGE.bin */

/* The first line of path (without its newline) in *ret (free it); -1 after printing why. */
int tool_read_passphrase(const char *path, char **ret);

#endif
