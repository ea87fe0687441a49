// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-bench.c - `snapbundle bench`: runs the benchmark program, snapbundle-bench.
 *
 * The benchmark measures internal stages (the io_uring reader, the zero scan) that the public
 * API does not expose, so it is a program of its own linked with the library's internals;
 * this command stays on the public API and only finds and execs it, in this order:
 *  1. $SNAPBUNDLE_BENCH;
 *  2. snapbundle-bench next to this program (an installed tree that keeps them together);
 *  3. ../bench/snapbundle-bench from this program (the build tree);
 *  4. LIBEXECDIR/snapbundle/snapbundle-bench (where meson installs it).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

#ifndef SNAP_LIBEXECDIR
#define SNAP_LIBEXECDIR "/usr/local/libexec"
#endif

static bool find_bench(char *buf, size_t len)
{
	const char *env = getenv("SNAPBUNDLE_BENCH");
	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return access(buf, X_OK) == 0;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = 0;
			snprintf(buf, len, "%s/snapbundle-bench", self);
			if (access(buf, X_OK) == 0)
				return true;
			snprintf(buf, len, "%s/../bench/snapbundle-bench", self);
			if (access(buf, X_OK) == 0)
				return true;
		}
	}
	snprintf(buf, len, "%s/snapbundle/snapbundle-bench", SNAP_LIBEXECDIR);
	return access(buf, X_OK) == 0;
}

int cmd_bench(int argc, char **argv)
{
	char path[PATH_MAX + 64];
	/* the benchmark program has options of its own; --version is every command's */
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--version")) {
			tool_print_version();
			return TOOL_EXIT_OK;
		}
	}
	if (!find_bench(path, sizeof(path))) {
		tool_error(
		    "cannot run the benchmark: %s not found (set SNAPBUNDLE_BENCH to its path)",
		    path);
		return 1;
	}
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	if (!args) {
		tool_error("cannot run the benchmark: out of memory");
		return 1;
	}
	args[0] = path;
	for (int i = 1; i < argc; i++)
		args[i] = argv[i];
	execv(path, args);
	tool_error("cannot run %s: %s", path, strerror(errno));
	free(args);
	return 1;
}
