// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * snapbundle.c - the command: dispatch to subcommands.
 *
 *  1. Every command exits with a code of the one table of tool.h (enum tool_exit).
 *  2. With --json anywhere before "--" (bench aside: its program writes its own document,
 *     docs/bench-json.md), standard output carries one JSON document, written here once the
 *     command returned (or by tool_run_job before the process dies of a signal).
 */
#include <stdio.h>
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
	{"abort", cmd_abort, "abort the multipart uploads left under an s3:// URL"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: snapbundle COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'snapbundle COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
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
	if (strcmp(argv[1], "bench") != 0) {
		for (int i = 2; i < argc && strcmp(argv[i], "--"); i++) {
			if (!strcmp(argv[i], "--json")) {
				tool_json_start(argv[1]);
				break;
			}
		}
	}
	int ret = TOOL_EXIT_USAGE;
	size_t i = 0;
	for (; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			break;
	if (i < sizeof(commands) / sizeof(commands[0])) {
		ret = commands[i].fn(argc - 1, argv + 1);
	} else {
		tool_error("unknown command '%s'", argv[1]);
		usage(stderr);
	}
	tool_json_emit(ret);
	return ret;
}
