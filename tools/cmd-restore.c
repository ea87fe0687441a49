// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-restore.c - `snapbundle restore IMAGE.bin|- -o TARGET`: a .bin store image (or one of its
 * volumes, partitions or byte ranges) back to an image file or block device.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: snapbundle restore IMAGE.bin|-|s3://BUCKET/KEY.bin -o TARGET [OPTIONS]\n"
	    "\n"
	    "Restores a .bin store image to an image file or block device, verifying every\n"
	    "frame digest and tag. With several volumes TARGET is a directory that receives one\n"
	    "DEVICE.img per volume. - reads the image from stdin; s3://BUCKET/KEY.bin from S3,\n"
	    "fetching only the frames the selection needs.\n"
	    "\n"
	    "  -o, --output TARGET        file, block device or directory\n"
	    "  --volume NAME              restore only this volume (/dev/sdb or sdb)\n"
	    "  --partition N              restore only partition N of the volume\n"
	    "  --range OFFSET:LENGTH      restore only these bytes of the volume\n"
	    "  --name NEW                 name of the restored image\n"
	    "  -k, --key KEY              PEM private key of a recipient\n"
	    "  --passphrase-file FILE\n"
	    "  --signer CERT              require a valid signature by this key\n"
	    "  --threads N\n"
	    "  --progress[=bar|json|none]\n"
	    "  --force                    replace an existing output\n"
	    "  --no-direct                write through the page cache (default: O_DIRECT\n"
	    "                             for whole aligned blocks)\n");
	tool_s3_usage(f, false);
	tool_common_usage(f);
}

enum {
	OPT_VOLUME = 256,
	OPT_PARTITION,
	OPT_RANGE,
	OPT_NAME,
};

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"volume", required_argument, NULL, OPT_VOLUME},
	    {"partition", required_argument, NULL, OPT_PARTITION},
	    {"range", required_argument, NULL, OPT_RANGE},
	    {"name", required_argument, NULL, OPT_NAME},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct snap_job *job = NULL;
	struct tool_args args;
	int c, ret = 1;
	const char *output = NULL;
	const char *name = NULL;
	tool_args_init(&args,
		       TOOL_SHARED_KEY | TOOL_SHARED_SIGNER | TOOL_SHARED_PASSPHRASE_FILE |
			   TOOL_SHARED_THREADS | TOOL_SHARED_PROGRESS | TOOL_SHARED_FORCE |
			   TOOL_SHARED_NO_DIRECT | TOOL_SHARED_DEBUG | TOOL_SHARED_S3,
		       "o:h", opts);
	if (snap_job_new(SNAP_JOB_RESTORE, &job) < 0) {
		tool_error("out of memory");
		return TOOL_EXIT_FAILURE;
	}
	tool_log_setup(false);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		char *end;
		long long v;
		switch (c) {
		case 'o':
			output = optarg;
			snap_job_set_string(job, SNAP_SPARAM_OUTPUT, optarg);
			break;
		case OPT_VOLUME:
			snap_job_set_string(job, SNAP_SPARAM_VOLUME, optarg);
			break;
		case OPT_NAME:
			name = optarg;
			snap_job_set_string(job, SNAP_SPARAM_NAME, optarg);
			break;
		case OPT_PARTITION:
			v = strtoll(optarg, &end, 10);
			if (*end || end == optarg || v < 1) {
				tool_error("invalid --partition '%s': want a partition number "
					   "(1 or more)",
					   optarg);
				ret = TOOL_EXIT_USAGE;
				goto out;
			}
			snap_job_set_param(job, SNAP_PARAM_PARTITION, v);
			break;
		case OPT_RANGE: {
			char *colon = strchr(optarg, ':');
			long long off = -1, len = -1;
			if (colon) {
				*colon = 0;
				off = tool_parse_size(optarg);
				len = tool_parse_size(colon + 1);
				*colon = ':';
			}
			if (off < 0 || len <= 0) {
				tool_error("invalid range '%s': expected OFFSET:LENGTH", optarg);
				ret = TOOL_EXIT_USAGE;
				goto out;
			}
			snap_job_set_param(job, SNAP_PARAM_RANGE_OFFSET, off);
			snap_job_set_param(job, SNAP_PARAM_RANGE_LENGTH, len);
			break;
		}
		case 'h':
			usage(stdout);
			ret = 0;
			goto out;
		case TOOL_GETOPT_INVALID:
			ret = TOOL_EXIT_USAGE;
			goto out;
		default:
			usage(stderr);
			ret = 2;
			goto out;
		}
	}
	if (optind != argc - 1 || !output) {
		usage(stderr);
		ret = 2;
		goto out;
	}
	snap_job_set_string(job, SNAP_SPARAM_INPUT, argv[optind]);
	tool_args_apply(&args, job);
	tool_result_string("image", argv[optind]);
	int r = tool_run_job(job, args.progress, "restore");
	ret = tool_exit_of(r);
	if (r < 0)
		goto out;
	uint64_t written = 0, frames = 0;
	snap_job_result_u64(job, SNAP_RESULT_BYTES_TOTAL, &written);
	snap_job_result_u64(job, SNAP_RESULT_FRAMES_READ, &frames);
	const char *path = snap_job_result_string(job, SNAP_RESULT_OUTPUT_PATH);
	char a[32];
	printf("restored %s%s%s to %s: %s, %llu frames read\n", name ? "image " : "",
	       name ? name : "", name ? "" : "image", path ? path : "?", tool_size(a, written),
	       (unsigned long long)frames);
	uint64_t down = 0;
	if (snap_job_result_u64(job, SNAP_RESULT_BYTES_DOWNLOADED, &down) == 0)
		printf("downloaded %llu bytes\n", (unsigned long long)down);
out:
	tool_args_free(&args);
	snap_job_free(job);
	return ret;
}
