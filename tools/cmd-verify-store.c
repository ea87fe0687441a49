// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-verify-store.c - `snapbundle verify IMAGE.bin|-`: every check a restore makes (CRCs,
 * tags, frame digests, index, volume digests), nothing written.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "tool.h"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: snapbundle verify IMAGE.bin|-|s3://BUCKET/KEY [-k KEY | "
	    "--passphrase-file FILE] [--signer CERT] "
	    "[--threads N] [--progress[=MODE]]\n"
	    "       snapbundle verify IMAGE.bin|-|s3://BUCKET/KEY --without-key [--signer CERT]\n"
	    "\n"
	    "  --without-key   check an encrypted image without its key: every frame's stored\n"
	    "                  bytes against its digest and the index, the index's structure\n"
	    "                  and volume digests, and the signature when the image has one.\n"
	    "                  Nothing is decrypted; the metadata and index are authenticated\n"
	    "                  only by a signature (use --signer to require its signer).\n");
	tool_s3_usage(f, false);
	tool_common_usage(f);
}

enum { OPT_WITHOUT_KEY = 256 };

int cmd_verify_store(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"without-key", no_argument, NULL, OPT_WITHOUT_KEY},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct snap_job *job = NULL;
	struct tool_args args;
	int c, ret = 1;
	tool_args_init(&args,
		       TOOL_SHARED_KEY | TOOL_SHARED_SIGNER | TOOL_SHARED_PASSPHRASE_FILE |
			   TOOL_SHARED_THREADS | TOOL_SHARED_PROGRESS | TOOL_SHARED_DEBUG |
			   TOOL_SHARED_S3,
		       "h", opts);
	if (snap_job_new(SNAP_JOB_VERIFY_STORE, &job) < 0)
		return 1;
	tool_log_setup(false);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case OPT_WITHOUT_KEY:
			snap_job_set_param(job, SNAP_PARAM_WITHOUT_KEY, 1);
			break;
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
	if (optind != argc - 1) {
		usage(stderr);
		ret = 2;
		goto out;
	}
	snap_job_set_string(job, SNAP_SPARAM_INPUT, argv[optind]);
	tool_args_apply(&args, job);
	tool_result_string("kind", "store-image");
	tool_result_string("image", argv[optind]);
	int r = tool_run_job(job, args.progress, "verify");
	ret = tool_exit_of(r);
	if (r < 0)
		goto out;
	uint64_t frames = 0, auth = 2;
	snap_job_result_u64(job, SNAP_RESULT_FRAMES_READ, &frames);
	snap_job_result_u64(job, SNAP_RESULT_AUTHENTICATED, &auth);
	if (auth == 2)
		printf("%s: ok, %llu frames verified\n", argv[optind], (unsigned long long)frames);
	else
		printf("%s: ok without the key, %llu frames' stored bytes match the index; %s\n",
		       argv[optind], (unsigned long long)frames,
		       auth == 1 ? "metadata and index authenticated by the signature"
				 : "metadata and index NOT authenticated (no key, no signature): "
				   "this shows integrity, not who made the image");
	uint64_t down = 0;
	if (snap_job_result_u64(job, SNAP_RESULT_BYTES_DOWNLOADED, &down) == 0)
		printf("downloaded %llu bytes\n", (unsigned long long)down);
out:
	tool_args_free(&args);
	snap_job_free(job);
	return ret;
}
