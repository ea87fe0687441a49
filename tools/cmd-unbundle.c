// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-unbundle.c - `snapbundle unbundle`: a classic bundle back to an image file or a block
 * device, every check made before the output is renamed into place. ec2-unbundle's options
 * (-m, -k, -s, -d) mean what they mean there.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: snapbundle unbundle -m MANIFEST -k KEY [OPTIONS]\n"
	       "\n"
	       "Restores the image of a classic EC2 bundle (ec2-bundle-image or snapbundle\n"
	       "bundle). Every part's SHA-1 is checked before it is used, then the tar stream's\n"
	       "digest, the sizes and (with -c) the manifest signature; the output is written\n"
	       "under a temporary name and renamed only when all checks passed.\n"
	       "\n"
	       "  -m, --manifest PATH    the bundle's manifest (.manifest.xml), or\n"
	       "                         s3://BUCKET/KEY.manifest.xml: its parts are fetched\n"
	       "                         from beside it, several ahead, each checked before use\n"
	       "  -k, --privatekey PATH  the user's RSA private key (PEM) the bundle was made for\n"
	       "  -c, --cert PATH        the user's certificate: verify the manifest signature\n"
	       "  -s, --source DIR       directory (or s3://BUCKET/PREFIX/) holding the parts\n"
	       "                         (default: the manifest's)\n"
	       "  -d, --destination DIR  directory for the image (default: current directory)\n"
	       "  -o, --output PATH      image file or block device (default: DIR/<image name>)\n"
	       "      --force            replace an existing output file\n"
	       "      --no-verify        skip the digest and signature checks (not recommended)\n"
	       "      --no-direct        write through the page cache (default: O_DIRECT for\n"
	       "                         whole aligned blocks)\n"
	       "      --threads N        worker threads (default: every CPU)\n"
	       "      --progress[=MODE]  bar, json or none (default: a bar on a terminal)\n"
	       "      --debug            debug log lines on stderr\n"
	       "\n"
	       "S3 (-m s3://...):\n");
	tool_s3_usage(f, false);
	tool_common_usage(f);
}

int cmd_unbundle(int argc, char **argv)
{
	enum { OPT_NO_VERIFY = 256, OPT_HELP };
	static const struct option opts[] = {
	    {"manifest", required_argument, NULL, 'm'},
	    {"cert", required_argument, NULL, 'c'},
	    {"source", required_argument, NULL, 's'},
	    {"destination", required_argument, NULL, 'd'},
	    {"output", required_argument, NULL, 'o'},
	    {"no-verify", no_argument, NULL, OPT_NO_VERIFY},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	const char *manifest = NULL, *cert = NULL, *src = NULL, *dest = NULL, *output = NULL;
	bool no_verify = false;
	struct tool_args args;
	int c;
	tool_args_init(&args,
		       TOOL_SHARED_PRIVATEKEY | TOOL_SHARED_FORCE | TOOL_SHARED_NO_DIRECT |
			   TOOL_SHARED_THREADS | TOOL_SHARED_PROGRESS | TOOL_SHARED_DEBUG |
			   TOOL_SHARED_S3,
		       "m:c:s:d:o:h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case 'm':
			manifest = optarg;
			break;
		case 'c':
			cert = optarg;
			break;
		case 's':
			src = optarg;
			break;
		case 'd':
			dest = optarg;
			break;
		case 'o':
			output = optarg;
			break;
		case OPT_NO_VERIFY:
			no_verify = true;
			break;
		case 'h':
		case OPT_HELP:
			usage(stdout);
			return 0;
		case TOOL_GETOPT_INVALID:
			return 2;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		tool_error("unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (!manifest || !args.key) {
		tool_error("missing mandatory option %s", !manifest ? "-m MANIFEST" : "-k KEY");
		usage(stderr);
		return 2;
	}
	if (output && dest) {
		tool_error("-o and -d exclude each other");
		return 2;
	}
	tool_log_setup(args.debug);

	struct snap_job *job;
	int r = snap_job_new(SNAP_JOB_UNBUNDLE, &job);
	if (r < 0) {
		tool_error("cannot create the job: %s", snap_strerror(r));
		return 1;
	}
	r = snap_job_set_string(job, SNAP_SPARAM_MANIFEST, manifest);
	if (r >= 0 && cert)
		r = snap_job_set_string(job, SNAP_SPARAM_CERT, cert);
	if (r >= 0 && src)
		r = snap_job_set_string(job, SNAP_SPARAM_SOURCE_DIR, src);
	if (r >= 0 && dest)
		r = snap_job_set_string(job, SNAP_SPARAM_OUTPUT_DIR, dest);
	if (r >= 0 && output)
		r = snap_job_set_string(job, SNAP_SPARAM_OUTPUT, output);
	if (r >= 0)
		r = snap_job_set_param(job, SNAP_PARAM_NO_VERIFY, no_verify);
	if (r >= 0)
		r = tool_args_apply(&args, job);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		snap_job_free(job);
		return 1;
	}
	tool_result_string("manifest", manifest);
	tool_result_bool("verified", !no_verify);
	r = tool_run_job(job, args.progress, "unbundle");
	if (r >= 0) {
		uint64_t parts = 0, size = 0, written = 0;
		char a[32], b[32];
		snap_job_result_u64(job, SNAP_RESULT_PARTS, &parts);
		snap_job_result_u64(job, SNAP_RESULT_BYTES_TOTAL, &size);
		snap_job_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, &written);
		printf("unbundled %s: %llu parts, %s image, %s of data written%s\n",
		       snap_job_result_string(job, SNAP_RESULT_OUTPUT_PATH),
		       (unsigned long long)parts, tool_size(a, size), tool_size(b, written),
		       no_verify ? " (not verified)" : "");
		uint64_t down = 0;
		if (snap_job_result_u64(job, SNAP_RESULT_BYTES_DOWNLOADED, &down) == 0)
			printf("downloaded %s (%llu bytes)\n", tool_size(a, down),
			       (unsigned long long)down);
	}
	snap_job_free(job);
	return tool_exit_of(r);
}
