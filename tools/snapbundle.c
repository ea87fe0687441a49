// SPDX-License-Identifier: LGPL-2.1-or-later
/* snapbundle.c - the command: dispatch to subcommands. */
#include <stdio.h>
#include <string.h>

#include "tool.h"

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("snapbundle %s\n", snap_version());
	return 0;
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
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	tool_error("unknown command '%s'", argv[1]);
	usage(stderr);
	return 2;
}
