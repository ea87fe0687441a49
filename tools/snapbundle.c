// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * snapbundle.c - the command: dispatch to subcommands, by the first argument or, when run through
 * one of ec2-ami-tools' names (the links meson's -Dec2-names=true installs), by that name.
 *
 *  1. Every command exits with a code of the one table of tool.h (enum tool_exit).
 *  2. With --json anywhere before "--" (bench aside: its program writes its own document,
 *     docs/bench-json.md), standard output carries one JSON document, written here once the
 *     command returned (or by tool_run_job before the process dies of a signal).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	tool_print_version();
	return TOOL_EXIT_OK;
}

struct subcommand {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct subcommand commands[] = {
	{"version", cmd_version, "print the version"},
	{"bench", cmd_bench, "measure stages, jobs and thread scaling on this machine"},
	{"bundle", cmd_bundle, "bundle a disk or image as a classic EC2 bundle"},
	{"bundle-vol", cmd_bundle_vol, "bundle a mounted volume's files, credentials left out (ec2-bundle-vol)"},
	{"inspect", cmd_inspect, "show a disk's partitions, filesystems and extent map"},
	{"store", cmd_store, "store disks as one .bin store image"},
	{"restore", cmd_restore, "restore a .bin store image to files or block devices"},
	/* further subcommands are added here as each job lands */
	{"unbundle", cmd_unbundle, "restore the image of a classic bundle"},
	{"verify", cmd_verify, "check a bundle or a .bin store image without writing anything"},
	{"upload-bundle", cmd_upload_bundle, "upload a classic bundle to S3 (ec2-upload-bundle)"},
	{"download-bundle", cmd_download_bundle,
	 "download a classic bundle from S3 (ec2-download-bundle)"},
	{"delete-bundle", cmd_delete_bundle, "delete a classic bundle from S3 (ec2-delete-bundle)"},
	{"rekey", cmd_rekey, "change the keys of a .bin store image without recompressing it"},
	{"abort", cmd_abort, "abort the multipart uploads left under an s3:// URL"},
	{"migrate-manifest", cmd_migrate_manifest,
	 "rewrite a bundle's manifest for another region or kernel (ec2-migrate-manifest)"},
	{"migrate-bundle", cmd_migrate_bundle,
	 "copy a bundle between buckets server-side (ec2-migrate-bundle)"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ec2-ami-tools' names and the command each runs; the list tools/meson.build installs as links
 * (keep the two in step). */
static const struct {
	const char *ec2, *command;
} ec2_names[] = {
    {"ec2-bundle-image", "bundle"},
    {"ec2-bundle-vol", "bundle-vol"},
    {"ec2-unbundle", "unbundle"},
    {"ec2-upload-bundle", "upload-bundle"},
    {"ec2-download-bundle", "download-bundle"},
    {"ec2-delete-bundle", "delete-bundle"},
    {"ec2-migrate-manifest", "migrate-manifest"},
    {"ec2-migrate-bundle", "migrate-bundle"},
};

static const struct subcommand *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(name, commands[i].name))
			return &commands[i];
	return NULL;
}

/* --json among argv[1..] (before "--"): the document of command, written by tool_json_emit. */
static void json_start(const char *command, int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--json")) {
			tool_json_start(command);
			return;
		}
	}
}

/* Runs the command an ec2-* name stands for, with the original's common options: --manual and
 * -h give the command's help, --version ours, --batch is accepted (nothing is ever asked),
 * --debug goes to the command (every one takes it). Options after "--" are left alone. */
static int run_ec2_name(const char *ec2, const char *command, int argc, char **argv)
{
	const struct subcommand *cmd = find_command(command);
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	if (!args) {
		tool_error("out of memory");
		return 1;
	}
	int n = 0;
	bool dashdash = false;
	args[n++] = (char *)command;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!dashdash && !strcmp(a, "--")) {
			dashdash = true;
		} else if (!dashdash && !strcmp(a, "--version")) {
			printf("%s (snapbundle %s)\n", ec2, snap_version());
			free(args);
			return 0;
		} else if (!dashdash && !strcmp(a, "--batch")) {
			continue;
		} else if (!dashdash && (!strcmp(a, "--manual") || !strcmp(a, "-h"))) {
			args[n++] = (char *)"--help";
			continue;
		}
		args[n++] = argv[i];
	}
	args[n] = NULL;
	if (!cmd) {
		tool_error("%s: this build of snapbundle has no %s command", ec2, command);
		free(args);
		return 2;
	}
	json_start(command, n, args);
	int r = cmd->fn(n, args);
	free(args);
	tool_json_emit(r);
	return r;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: snapbundle COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-17s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'snapbundle COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
	const char *self = argc > 0 ? strrchr(argv[0], '/') : NULL;
	self = self ? self + 1 : argc > 0 ? argv[0] : "";
	for (size_t i = 0; i < sizeof(ec2_names) / sizeof(ec2_names[0]); i++)
		if (!strcmp(self, ec2_names[i].ec2))
			return run_ec2_name(ec2_names[i].ec2, ec2_names[i].command, argc, argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	if (strcmp(argv[1], "bench") != 0)
		json_start(argv[1], argc, argv);
	const struct subcommand *cmd = find_command(argv[1]);
	int ret = TOOL_EXIT_USAGE;
	if (cmd) {
		ret = cmd->fn(argc - 1, argv + 1);
	} else {
		tool_error("unknown command '%s'", argv[1]);
		usage(stderr);
	}
	tool_json_emit(ret);
	return ret;
}
