// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tool-command.c - what several commands do around tool_getopt: the answers they leave to it,
 * the checks once the options are parsed, the job made from them, and the defaults of the
 * bundle options (tool.h).
 *
 *  1. A usage error exits with TOOL_EXIT_USAGE, after one message that says why (tool_error);
 *     only -h and --help print the usage on standard output.
 *  2. Defaults that are looked for (this machine's architecture, the EC2 certificate) are looked
 *     for once the options are parsed, and only when the option is not given.
 *  3. A job is made whole or not at all: tool_job_make frees what it made when a parameter is
 *     refused.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "tool.h"

int tool_getopt_other(int c, void (*usage)(FILE *f), const char *command)
{
	if (c == 'h') {
		usage(stdout);
		return TOOL_EXIT_OK;
	}
	if (c != TOOL_GETOPT_INVALID && command)
		fprintf(stderr, "Try 'snapbundle %s --help'\n", command);
	else if (c != TOOL_GETOPT_INVALID)
		usage(stderr);
	return TOOL_EXIT_USAGE;
}

bool tool_args_complete(int argc, char **argv, void (*usage)(FILE *f), size_t n,
			const char *const *names, const char *const *given)
{
	if (optind < argc) {
		tool_error("unexpected argument '%s'", argv[optind]);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!given[i]) {
			tool_error("missing mandatory option %s", names[i]);
			usage(stderr);
			return false;
		}
	}
	return true;
}

struct snap_job *tool_job_make(enum snap_job_kind kind, const struct tool_args *a, size_t n,
			       const int *sparams, const char *const *values)
{
	struct snap_job *job;
	int r = snap_job_new(kind, &job);
	if (r < 0) {
		tool_error("cannot create the job: %s", snap_strerror(r));
		return NULL;
	}
	for (size_t i = 0; i < n && r >= 0; i++)
		if (values[i])
			r = snap_job_set_string(job, sparams[i], values[i]);
	if (r >= 0)
		r = tool_args_apply(a, job);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		return snap_job_free(job);
	}
	return job;
}

int tool_job_add_list(struct snap_job *job, int sparam, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	if (!copy)
		return -ENOMEM;
	int r = 0;
	for (char *t = strtok_r(copy, ",", &save); t && r >= 0; t = strtok_r(NULL, ",", &save))
		r = snap_job_add_string(job, sparam, t);
	free(copy);
	return r;
}

char *tool_default_ec2cert(const char *region)
{
	static const char *const vars[] = {"EC2_AMITOOL_HOME", "EC2_HOME"};
	const char *file = "cert-ec2.pem";
	if (region && !strncmp(region, "us-gov-", 7))
		file = "cert-ec2-gov.pem";
	else if (region && !strcmp(region, "cn-north-1"))
		file = "cert-ec2-cn-north-1.pem";
	for (size_t i = 0; i < 2; i++) {
		const char *home = getenv(vars[i]);
		char *path;
		if (!home || !*home || asprintf(&path, "%s/etc/ec2/amitools/%s", home, file) < 0)
			continue;
		if (access(path, R_OK) == 0)
			return path;
		free(path);
	}
	return NULL;
}

/* The --arch of this machine's kind, or NULL. */
static const char *default_arch(void)
{
	struct utsname u;
	if (uname(&u) < 0)
		return NULL;
	if (!strcmp(u.machine, "x86_64"))
		return "x86_64";
	if (u.machine[0] == 'i' && !strcmp(u.machine + 2, "86"))
		return "i386";
	if (!strcmp(u.machine, "aarch64") || !strcmp(u.machine, "arm64"))
		return "arm64";
	return NULL;
}

/* -d names the directory the bundle goes to: an existing one. */
static bool destination_ok(const char *dest)
{
	struct stat st;
	if (!dest || !strncmp(dest, "s3://", 5))
		return true;
	if (stat(dest, &st) < 0 && errno == ENOENT) {
		tool_error("destination %s: No such file or directory: -d takes the directory the "
			   "bundle goes to; create it first (mkdir -p %s)",
			   dest, dest);
		return false;
	}
	if (stat(dest, &st) == 0 && !S_ISDIR(st.st_mode)) {
		tool_error("destination %s is not a directory: -d takes the directory the bundle "
			   "goes to, -p the bundle's name",
			   dest);
		return false;
	}
	return true;
}

bool tool_bundle_check(struct tool_args *a, const char *command, bool local_destination)
{
	static const char *const names[] = {"--cert", "--privatekey", "--user"};
	const char *given[] = {a->cert, a->key, a->user};
	for (size_t i = 0; i < 3; i++) {
		if (!given[i] || !*given[i]) {
			tool_error("missing mandatory parameter: %s", names[i]);
			fprintf(stderr, "Try 'snapbundle %s --help'\n", command);
			return false;
		}
	}
	if (!a->arch)
		a->arch = default_arch();
	if (!a->arch) {
		tool_error("cannot tell this machine's architecture: give --arch");
		return false;
	}
	if (strcmp(a->arch, "i386") && strcmp(a->arch, "x86_64") && strcmp(a->arch, "arm64")) {
		tool_error("invalid --arch '%s': want i386, x86_64 or arm64", a->arch);
		return false;
	}
	if (local_destination && !destination_ok(a->destination))
		return false;
	if (!a->ec2cert)
		a->ec2cert = a->ec2cert_default = tool_default_ec2cert(NULL);
	if (!a->ec2cert) {
		tool_error("no EC2 certificate: give --ec2cert (cert-ec2.pem comes with Amazon's "
			   "ec2-ami-tools, in etc/ec2/amitools/)");
		return false;
	}
	return true;
}
