// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-rekey.c - `snapbundle rekey IMAGE.bin -k KEY | --passphrase-file F [--add-recipient
 * CERT]... [--remove-recipient CERT]... [--add-passphrase F] [--remove-passphrase]
 * [--new-data-key] (-o OUT | --in-place)`: new key slots for a .bin store image, or a new data
 * key, without recompressing it (formats/STORE_FORMAT.md, section 14).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: snapbundle rekey IMAGE.bin|s3://BUCKET/KEY.bin (-k KEY | --passphrase-file "
	       "F)\n"
	       "                        [OPTIONS] (-o OUTPUT | --in-place)\n"
	       "\n"
	       "Changes who can open an encrypted .bin store image, without recompressing it:\n"
	       "the key slots are rewritten and metadata and index authenticated again; with\n"
	       "--new-data-key every frame is also decrypted and encrypted again under a new key.\n"
	       "\n"
	       "  -k, --key KEY              PEM private key of a recipient: opens the image\n"
	       "  --passphrase-file FILE     or its passphrase (first line of FILE)\n"
	       "  --add-recipient CERT       wrap the data key for this X.509 certificate too\n"
	       "                             (repeatable)\n"
	       "  --remove-recipient CERT    remove this certificate's slot (repeatable)\n"
	       "  --add-passphrase FILE      add a passphrase slot (first line of FILE)\n"
	       "  --remove-passphrase        remove the passphrase slots\n"
	       "  --new-data-key             re-encrypt every frame under a new data key; every\n"
	       "                             recipient kept must be given again with\n"
	       "                             --add-recipient (a slot holds no certificate)\n"
	       "  --scrypt-log-n N           scrypt cost of an added passphrase (default 15)\n"
	       "  -o, --output OUTPUT        the new .bin (a file or s3://BUCKET/KEY.bin)\n"
	       "  --in-place                 replace IMAGE.bin (a local file) atomically: a crash\n"
	       "                             leaves the old image, never a broken one\n"
	       "  --threads N\n"
	       "  --progress[=bar|json|none]\n"
	       "  --force                    replace an existing output\n"
	       "  --no-direct                write through the page cache\n"
	       "  --part-size SIZE           -o s3://: multipart part size (default 10M)\n"
	       "  --debug                    debug log lines on stderr\n");
	tool_s3_usage(f, false);
}

enum {
	OPT_ADD_RECIPIENT = 256,
	OPT_REMOVE_RECIPIENT,
	OPT_ADD_PASSPHRASE,
	OPT_REMOVE_PASSPHRASE,
	OPT_NEW_DATA_KEY,
	OPT_IN_PLACE,
	OPT_SCRYPT_LOG_N,
	OPT_PART_SIZE,
};

int cmd_rekey(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"add-recipient", required_argument, NULL, OPT_ADD_RECIPIENT},
	    {"remove-recipient", required_argument, NULL, OPT_REMOVE_RECIPIENT},
	    {"add-passphrase", required_argument, NULL, OPT_ADD_PASSPHRASE},
	    {"remove-passphrase", no_argument, NULL, OPT_REMOVE_PASSPHRASE},
	    {"new-data-key", no_argument, NULL, OPT_NEW_DATA_KEY},
	    {"in-place", no_argument, NULL, OPT_IN_PLACE},
	    {"scrypt-log-n", required_argument, NULL, OPT_SCRYPT_LOG_N},
	    {"part-size", required_argument, NULL, OPT_PART_SIZE},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct snap_job *job = NULL;
	struct tool_args args;
	int c, ret = 1;
	const char *output = NULL;
	bool in_place = false, new_dk = false;
	char *add_pass = NULL;
	tool_args_init(&args,
		       TOOL_SHARED_PASSPHRASE_FILE | TOOL_SHARED_THREADS | TOOL_SHARED_PROGRESS |
			   TOOL_SHARED_KEY | TOOL_SHARED_FORCE | TOOL_SHARED_NO_DIRECT |
			   TOOL_SHARED_DEBUG | TOOL_SHARED_S3,
		       "o:h", opts);
	if (snap_job_new(SNAP_JOB_REKEY, &job) < 0) {
		tool_error("out of memory");
		return 1;
	}
	tool_log_setup(false);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		long v;
		switch (c) {
		case 'o':
			output = optarg;
			snap_job_set_string(job, SNAP_SPARAM_OUTPUT, optarg);
			break;
		case OPT_ADD_RECIPIENT:
			snap_job_add_string(job, SNAP_SPARAM_RECIPIENT_CERT, optarg);
			break;
		case OPT_REMOVE_RECIPIENT:
			snap_job_add_string(job, SNAP_SPARAM_REMOVE_RECIPIENT, optarg);
			break;
		case OPT_ADD_PASSPHRASE:
			free(add_pass);
			add_pass = NULL;
			if (tool_read_passphrase(optarg, &add_pass) < 0)
				goto out;
			snap_job_set_string(job, SNAP_SPARAM_ADD_PASSPHRASE, add_pass);
			break;
		case OPT_REMOVE_PASSPHRASE:
			snap_job_set_param(job, SNAP_PARAM_REMOVE_PASSPHRASE, 1);
			break;
		case OPT_NEW_DATA_KEY:
			new_dk = true;
			snap_job_set_param(job, SNAP_PARAM_NEW_DATA_KEY, 1);
			break;
		case OPT_IN_PLACE:
			in_place = true;
			snap_job_set_param(job, SNAP_PARAM_IN_PLACE, 1);
			break;
		case OPT_SCRYPT_LOG_N:
			if (!tool_parse_int(optarg, 1, 18, &v)) {
				tool_error("invalid scrypt cost '%s': expected 1 to 18", optarg);
				goto out;
			}
			snap_job_set_param(job, SNAP_PARAM_SCRYPT_LOG_N, v);
			break;
		case OPT_PART_SIZE: {
			long long sz = tool_parse_size(optarg);
			if (sz <= 0) {
				tool_error("invalid size '%s'", optarg);
				goto out;
			}
			snap_job_set_param(job, SNAP_PARAM_S3_PART_SIZE, sz);
			break;
		}
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
	if (optind + 1 != argc || !!output == in_place) {
		if (optind + 1 == argc)
			tool_error("give either -o OUTPUT or --in-place");
		usage(stderr);
		ret = 2;
		goto out;
	}
	snap_job_set_string(job, SNAP_SPARAM_INPUT, argv[optind]);
	tool_args_apply(&args, job);
	int r = tool_run_job(job, args.progress, "rekey");
	if (r < 0) {
		ret = tool_exit_of(r); /* a tag that does not match: 3 (docs/cli.md) */
		goto out;
	}
	uint64_t written = 0, frames = 0;
	snap_job_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, &written);
	snap_job_result_u64(job, SNAP_RESULT_FRAMES, &frames);
	char a[32];
	printf("re-keyed %s: %s (%llu frames)%s\n", in_place ? argv[optind] : output,
	       tool_size(a, written), (unsigned long long)frames,
	       new_dk ? " under a new data key" : "");
	ret = 0;
out:
	if (add_pass) {
		memset(add_pass, 0, strlen(add_pass));
		free(add_pass);
	}
	tool_args_free(&args);
	snap_job_free(job);
	return ret;
}
