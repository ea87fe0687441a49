// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-store.c - `snapbundle store SOURCE[=DEVICE]... -o IMAGE.bin`: one .bin store image of
 * one or more volumes (formats/STORE_FORMAT.md), to a file, standard output or an S3 object
 * (-o s3://BUCKET/PREFIX/ names it PREFIX/AMI-ID.bin, as CreateStoreImageTask does).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: snapbundle store SOURCE[=DEVICE]... -o IMAGE.bin [OPTIONS]\n"
	       "\n"
	       "Stores one or more disks or disk images, one volume each, as a single .bin object\n"
	       "(formats/STORE_FORMAT.md). DEVICE names the volume (default /dev/xvda, "
	       "/dev/xvdb...).\n"
	       "\n"
	       "  -o, --output FILE          the .bin to write; - writes to stdout;\n"
	       "                             s3://BUCKET/PREFIX/ uploads PREFIX/AMI-ID.bin, and\n"
	       "                             s3://BUCKET/KEY.bin that key (multipart upload)\n"
	       "  --name NAME                image name\n"
	       "  --description TEXT\n"
	       "  --arch ARCH                i386, x86_64, arm64\n"
	       "  --boot-mode MODE           legacy-bios, uefi, uefi-preferred\n"
	       "  --owner ACCOUNT\n"
	       "  --image-id AMI             id the object is named after\n"
	       "  --tag KEY=VALUE            repeatable\n"
	       "  --block-device-mapping V=D repeatable\n"
	       "  --recipient CERT           encrypt for this X.509 certificate (repeatable)\n"
	       "  --passphrase-file FILE     encrypt with a key derived from the passphrase\n"
	       "  --sign-key KEY             sign header, keys, metadata, index (PEM private key)\n"
	       "  --level N                  compression level 0-3 (default 1)\n"
	       "  --threads N                worker threads (default: every CPU)\n"
	       "  --frame-size SIZE          bytes per frame (default 4M)\n"
	       "  --progress[=bar|json|none]\n"
	       "  --keep-unpartitioned       keep space outside every partition (default: unused)\n"
	       "  --no-fs-skip               keep filesystem free space (default: unused)\n"
	       "  --freeze                   freeze mounted filesystems (FIFREEZE) while reading\n"
	       "  --exact                    both: the restore is byte-identical to the source\n"
	       "  --no-direct                read and write through the page cache\n"
	       "  --force                    replace an existing output\n"
	       "S3 (-o s3://...):\n"
	       "  --part-size SIZE           multipart part size (default: the largest image the\n"
	       "                             volumes can make fits in 10,000 parts, at least 16M)\n"
	       "  --resume                   continue the upload a failed or killed store kept\n"
	       "                             (encrypted: with --passphrase-file or -k KEY, the\n"
	       "                             private key of a recipient)\n"
	       "  --no-resume                a failure aborts the upload instead of keeping it\n"
	       "  --debug                    debug log lines and stage timings on stderr\n");
	tool_s3_usage(f, false);
	tool_common_usage(f);
}

enum {
	OPT_NAME = 256,
	OPT_DESCRIPTION,
	OPT_ARCH,
	OPT_BOOT_MODE,
	OPT_OWNER,
	OPT_IMAGE_ID,
	OPT_TAG,
	OPT_BDM,
	OPT_RECIPIENT,
	OPT_LEVEL,
	OPT_FRAME_SIZE,
	OPT_TEST_SEED,
	OPT_CTIME,
	OPT_STIME,
	OPT_SCRYPT_LOG_N,
	OPT_KEEP_UNPARTITIONED,
	OPT_NO_FS_SKIP,
	OPT_FREEZE,
	OPT_EXACT,
	OPT_SIGN_KEY,
	OPT_PART_SIZE,
	OPT_RESUME,
	OPT_NO_RESUME,
};

int cmd_store(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"name", required_argument, NULL, OPT_NAME},
	    {"description", required_argument, NULL, OPT_DESCRIPTION},
	    {"arch", required_argument, NULL, OPT_ARCH},
	    {"boot-mode", required_argument, NULL, OPT_BOOT_MODE},
	    {"owner", required_argument, NULL, OPT_OWNER},
	    {"image-id", required_argument, NULL, OPT_IMAGE_ID},
	    {"tag", required_argument, NULL, OPT_TAG},
	    {"block-device-mapping", required_argument, NULL, OPT_BDM},
	    {"recipient", required_argument, NULL, OPT_RECIPIENT},
	    {"level", required_argument, NULL, OPT_LEVEL},
	    {"frame-size", required_argument, NULL, OPT_FRAME_SIZE},
	    {"keep-unpartitioned", no_argument, NULL, OPT_KEEP_UNPARTITIONED},
	    {"no-fs-skip", no_argument, NULL, OPT_NO_FS_SKIP},
	    {"freeze", no_argument, NULL, OPT_FREEZE},
	    {"exact", no_argument, NULL, OPT_EXACT},
	    {"sign-key", required_argument, NULL, OPT_SIGN_KEY},
	    {"part-size", required_argument, NULL, OPT_PART_SIZE},
	    {"resume", no_argument, NULL, OPT_RESUME},
	    {"no-resume", no_argument, NULL, OPT_NO_RESUME},
	    /* test-only: reproducible images for the golden vector (never for real images) */
	    {"test-seed", required_argument, NULL, OPT_TEST_SEED},
	    {"creation-time", required_argument, NULL, OPT_CTIME},
	    {"store-time", required_argument, NULL, OPT_STIME},
	    {"scrypt-log-n", required_argument, NULL, OPT_SCRYPT_LOG_N},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct snap_job *job = NULL;
	struct tool_args args;
	int c, ret = TOOL_EXIT_USAGE; /* until the options are checked */
	const char *output = NULL;
	tool_args_init(&args,
		       TOOL_SHARED_PASSPHRASE_FILE | TOOL_SHARED_THREADS | TOOL_SHARED_PROGRESS |
			   TOOL_SHARED_KEY | TOOL_SHARED_FORCE | TOOL_SHARED_NO_DIRECT |
			   TOOL_SHARED_DEBUG | TOOL_SHARED_S3,
		       "o:h", opts);
	if (snap_job_new(SNAP_JOB_STORE, &job) < 0) {
		tool_error("out of memory");
		return TOOL_EXIT_FAILURE;
	}
	tool_log_setup(false);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		long long v;
		switch (c) {
		case 'o':
			output = optarg;
			snap_job_set_string(job, SNAP_SPARAM_OUTPUT, optarg);
			break;
		case OPT_NAME:
			snap_job_set_string(job, SNAP_SPARAM_NAME, optarg);
			break;
		case OPT_DESCRIPTION:
			snap_job_set_string(job, SNAP_SPARAM_DESCRIPTION, optarg);
			break;
		case OPT_ARCH:
			snap_job_set_string(job, SNAP_SPARAM_ARCH, optarg);
			break;
		case OPT_BOOT_MODE:
			snap_job_set_string(job, SNAP_SPARAM_BOOT_MODE, optarg);
			break;
		case OPT_OWNER:
			snap_job_set_string(job, SNAP_SPARAM_OWNER, optarg);
			break;
		case OPT_IMAGE_ID:
			snap_job_set_string(job, SNAP_SPARAM_IMAGE_ID, optarg);
			break;
		case OPT_TAG:
			if (!strchr(optarg, '=')) {
				tool_error("invalid tag '%s': expected KEY=VALUE", optarg);
				goto out;
			}
			snap_job_add_string(job, SNAP_SPARAM_TAG, optarg);
			break;
		case OPT_BDM:
			snap_job_add_string(job, SNAP_SPARAM_BLOCK_DEVICE_MAPPING, optarg);
			break;
		case OPT_RECIPIENT:
			snap_job_add_string(job, SNAP_SPARAM_RECIPIENT_CERT, optarg);
			break;
		case OPT_LEVEL:
		case OPT_TEST_SEED:
		case OPT_CTIME:
		case OPT_STIME:
		case OPT_SCRYPT_LOG_N: {
			char *end;
			v = strtoll(optarg, &end, 10);
			if (*end || end == optarg || v < 0) {
				tool_error("invalid number '%s'", optarg);
				goto out;
			}
			int p = c == OPT_LEVEL	     ? SNAP_PARAM_LEVEL
				: c == OPT_TEST_SEED ? SNAP_PARAM_TEST_SEED
				: c == OPT_CTIME     ? SNAP_PARAM_CREATION_TIME
				: c == OPT_STIME     ? SNAP_PARAM_STORE_TIME
						     : SNAP_PARAM_SCRYPT_LOG_N;
			snap_job_set_param(job, p, v);
			break;
		}
		case OPT_FRAME_SIZE:
			if ((v = tool_parse_size(optarg)) <= 0) {
				tool_error("invalid size '%s'", optarg);
				goto out;
			}
			snap_job_set_param(job, SNAP_PARAM_FRAME_SIZE, v);
			break;
		case OPT_PART_SIZE:
			if ((v = tool_parse_size(optarg)) <= 0) {
				tool_error("invalid size '%s'", optarg);
				goto out;
			}
			snap_job_set_param(job, SNAP_PARAM_S3_PART_SIZE, v);
			break;
		case OPT_RESUME:
			snap_job_set_param(job, SNAP_PARAM_RESUME, 1);
			break;
		case OPT_NO_RESUME:
			snap_job_set_param(job, SNAP_PARAM_NO_RESUME, 1);
			break;
		case OPT_KEEP_UNPARTITIONED:
			snap_job_set_param(job, SNAP_PARAM_KEEP_UNPARTITIONED, 1);
			break;
		case OPT_SIGN_KEY:
			snap_job_set_string(job, SNAP_SPARAM_SIGNING_KEY, optarg);
			break;
		case OPT_FREEZE:
			snap_job_set_param(job, SNAP_PARAM_FREEZE, 1);
			break;
		case OPT_NO_FS_SKIP:
			snap_job_set_param(job, SNAP_PARAM_FS_SKIP, 0);
			break;
		case OPT_EXACT:
			snap_job_set_param(job, SNAP_PARAM_KEEP_UNPARTITIONED, 1);
			snap_job_set_param(job, SNAP_PARAM_FS_SKIP, 0);
			break;
		case 'h':
			usage(stdout);
			ret = 0;
			goto out;
		case TOOL_GETOPT_INVALID:
			goto out;
		default:
			usage(stderr);
			ret = 2;
			goto out;
		}
	}
	if (optind >= argc || !output) {
		usage(stderr);
		ret = 2;
		goto out;
	}
	ret = TOOL_EXIT_FAILURE;
	for (int i = optind; i < argc; i++) {
		char *arg = strdup(argv[i]);
		if (!arg)
			goto out;
		char *eq = strchr(arg, '=');
		if (eq)
			*eq = 0;
		int r = snap_job_add_source(job, arg, eq ? eq + 1 : NULL);
		free(arg);
		if (r < 0) {
			tool_error("cannot add source %s: %s", argv[i], snap_strerror(r));
			goto out;
		}
	}
	tool_args_apply(&args, job);
	if (!strcmp(output, "-"))
		tool_json_data_on_stdout(); /* the image is standard output */
	tool_result_string("output", output);
	int r = tool_run_job(job, args.progress, "store");
	ret = tool_exit_of(r);
	if (r < 0)
		goto out;
	uint64_t total = 0, written = 0, frames = 0;
	snap_job_result_u64(job, SNAP_RESULT_BYTES_TOTAL, &total);
	snap_job_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, &written);
	snap_job_result_u64(job, SNAP_RESULT_FRAMES, &frames);
	const char *out = snap_job_result_string(job, SNAP_RESULT_OBJECT_URL);
	if (!out)
		out = output;
	if (strcmp(out, "-") != 0) {
		char a[32], b[32];
		printf("stored %s: %s of volumes in %s (%llu frames)\n", out, tool_size(a, total),
		       tool_size(b, written), (unsigned long long)frames);
	}
	const char *etag = snap_job_result_string(job, SNAP_RESULT_ETAG);
	uint64_t up = 0;
	if (etag) {
		char a[32];
		snap_job_result_u64(job, SNAP_RESULT_BYTES_UPLOADED, &up);
		printf("object %s etag %s, %s uploaded\n", out, etag, tool_size(a, up));
	}
	const char *timings = snap_job_result_string(job, SNAP_RESULT_TIMINGS);
	if (args.debug && timings)
		fprintf(stderr, "snapbundle: debug: timings %s\n", timings);
out:
	tool_args_free(&args);
	snap_job_free(job);
	return ret;
}
