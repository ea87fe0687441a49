// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-bundle-vol.c - `snapbundle bundle-vol`: a mounted volume (the running system's root by
 * default) into a classic EC2 bundle, with ec2-bundle-vol's options under the same names. The
 * work is the library's SNAP_JOB_BUNDLE_VOL (engine/bundle-vol.c); docs/bundle-vol.md.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: snapbundle bundle-vol -c CERT -k PRIVATEKEY -u USER [OPTIONS]\n"
	    "\n"
	    "Copies a mounted volume's files into a new sparse image (same partitioning,\n"
	    "filesystem type, label and UUID), leaving out credentials, and bundles it as a\n"
	    "classic EC2 bundle, as ec2-bundle-vol does.\n"
	    "\n"
	    "  -c, --cert PATH             user X.509 certificate (PEM)\n"
	    "  -k, --privatekey PATH       user RSA private key (PEM)\n"
	    "  -u, --user ACCOUNT          AWS account number\n"
	    "  -d, --destination DIR|s3://BUCKET[/PREFIX]  where the bundle goes (default /tmp)\n"
	    "  -p, --prefix NAME           bundle and image name (default image)\n"
	    "  -r, --arch ARCH             i386, x86_64 or arm64 (default: this machine's)\n"
	    "  -s, --size MB               image size in MB (default: the volume's device)\n"
	    "  -v, --volume PATH           mount point of the volume (default /)\n"
	    "  -e, --exclude DIRS          absolute directories to leave out, comma-separated\n"
	    "  -i, --include FILES         absolute files to keep despite the filter\n"
	    "      --no-filter             keep the files the sensitive-file filter drops\n"
	    "  -a, --all                   also copy filesystems mounted below the volume\n"
	    "  -P, --partition mbr|gpt|none  the image's table (default: as the volume's disk)\n"
	    "      --fstab PATH            the image's /etc/fstab\n"
	    "      --generate-fstab        write an /etc/fstab for the image's root filesystem\n"
	    "      --no-inherit            do not read instance metadata (the default)\n"
	    "      --inherit               refused: snapbundle never reads instance metadata\n"
	    "      --ec2cert PATH          EC2 certificate (default: $EC2_AMITOOL_HOME's)\n"
	    "      --kernel ID             kernel id (aki-...)\n"
	    "      --ramdisk ID            ramdisk id (ari-...)\n"
	    "  -B, --block-device-mapping MAPS  virtual=device pairs, comma-separated\n"
	    "      --productcodes CODES    product codes\n"
	    "      --scratch-dir DIR       where the image is made for -d s3:// (default /tmp)\n"
	    "      --clone-only            stop after the image: DESTINATION/PREFIX\n"
	    "      --snapshot              bundle the volume's block device, frozen (FIFREEZE)\n"
	    "                              while it is read; needs --no-filter\n"
	    "      --no-size-checks        allow an image smaller than the used space\n"
	    "      --batch                 never prompt (snapbundle never does)\n"
	    "      --debug                 debug log lines and stage timings on stderr\n"
	    "      --threads N             compression threads (default: every CPU)\n"
	    "      --level N               compression level 0-3 (default 2)\n"
	    "      --progress[=MODE]       bar, json or none (default: a bar on a terminal)\n"
	    "      --force                 replace an existing bundle of the same name\n"
	    "      --no-direct             read and write through the page cache\n"
	    "      --part-size SIZE        part size (default 10M; for testing)\n");
	tool_s3_usage(f, false);
	fputs("      --acl ACL                 canned ACL of every object (default: none, the\n"
	      "                                bucket's default applies)\n",
	      f);
}

enum {
	OPT_NO_FILTER = 256,
	OPT_INHERIT,
	OPT_NO_INHERIT,
	OPT_FSTAB,
	OPT_GENERATE_FSTAB,
	OPT_CLONE_ONLY,
	OPT_SNAPSHOT,
	OPT_SCRATCH_DIR,
};

/* with the bundle options of the shared table (TOOL_SHARED_BUNDLE and those below) */
static const struct option options[] = {
    {"size", required_argument, NULL, 's'},
    {"volume", required_argument, NULL, 'v'},
    {"exclude", required_argument, NULL, 'e'},
    {"include", required_argument, NULL, 'i'},
    {"all", no_argument, NULL, 'a'},
    {"scratch-dir", required_argument, NULL, OPT_SCRATCH_DIR},
    {"no-filter", no_argument, NULL, OPT_NO_FILTER},
    {"partition", required_argument, NULL, 'P'},
    {"inherit", no_argument, NULL, OPT_INHERIT},
    {"no-inherit", no_argument, NULL, OPT_NO_INHERIT},
    {"fstab", required_argument, NULL, OPT_FSTAB},
    {"generate-fstab", no_argument, NULL, OPT_GENERATE_FSTAB},
    {"clone-only", no_argument, NULL, OPT_CLONE_ONLY},
    {"snapshot", no_argument, NULL, OPT_SNAPSHOT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void print_summary(struct snap_job *job, const char *name, bool clone_only, bool debug)
{
	const char *timings = snap_job_result_string(job, SNAP_RESULT_TIMINGS);
	if (clone_only) {
		const char *out = snap_job_result_string(job, SNAP_RESULT_OUTPUT_PATH);
		printf("Image is %s\n", out ? out : "?");
	} else {
		uint64_t parts = 0, written = 0;
		snap_job_result_u64(job, SNAP_RESULT_PARTS, &parts);
		snap_job_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, &written);
		const char *manifest = snap_job_result_string(job, SNAP_RESULT_MANIFEST_PATH);
		const char *digest = snap_job_result_string(job, SNAP_RESULT_DIGEST);
		char a[32];
		printf("Bundle manifest is %s\n", manifest ? manifest : "?");
		printf("  bundle name:  %s\n", name);
		printf("  parts:        %" PRIu64 "\n", parts);
		printf("  bundled size: %s (%" PRIu64 " bytes)\n", tool_size(a, written), written);
		printf("  digest:       %s\n", digest ? digest : "?");
	}
	if (timings)
		(debug ? fprintf(stderr, "snapbundle: debug: timings %s\n", timings)
		       : printf("  timings:      %s\n", timings));
}

int cmd_bundle_vol(int argc, char **argv)
{
	const char *volume = NULL, *scratch = NULL, *fstab = NULL;
	const char *excludes[64], *includes[64];
	size_t nexcl = 0, nincl = 0;
	bool no_filter = false, all = false, gen_fstab = false, clone_only = false;
	bool snapshot = false;
	long ptable = SNAP_BV_PARTITION_AUTO;
	long long size_mb = 0;
	struct tool_args args;
	int c, ret = TOOL_EXIT_USAGE; /* until the options are checked (docs/cli.md) */
	struct snap_job *job = NULL;

	tool_args_init(&args,
		       TOOL_SHARED_CERT | TOOL_SHARED_PRIVATEKEY | TOOL_SHARED_EC2 |
			   TOOL_SHARED_BUNDLE | TOOL_SHARED_BATCH | TOOL_SHARED_DEBUG |
			   TOOL_SHARED_NO_DIRECT | TOOL_SHARED_THREADS | TOOL_SHARED_PROGRESS |
			   TOOL_SHARED_FORCE | TOOL_SHARED_S3,
		       "s:v:e:i:aP:h", options);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case 's': {
			long v;
			if (!tool_parse_int(optarg, 1, 1L << 30, &v)) {
				tool_error("invalid --size '%s': want a number of MB", optarg);
				goto out;
			}
			size_mb = v;
			break;
		}
		case 'v':
			volume = optarg;
			break;
		case 'e':
		case 'i':
			if ((c == 'e' ? nexcl : nincl) >= 64) {
				tool_error("too many -%c options (at most 64; each takes a list)", c);
				goto out;
			}
			if (c == 'e')
				excludes[nexcl++] = optarg;
			else
				includes[nincl++] = optarg;
			break;
		case 'a':
			all = true;
			break;
		case OPT_SCRATCH_DIR:
			scratch = optarg;
			break;
		case OPT_NO_FILTER:
			no_filter = true;
			break;
		case 'P':
			if (!strcmp(optarg, "mbr"))
				ptable = SNAP_BV_PARTITION_MBR;
			else if (!strcmp(optarg, "gpt"))
				ptable = SNAP_BV_PARTITION_GPT;
			else if (!strcmp(optarg, "none"))
				ptable = SNAP_BV_PARTITION_NONE;
			else {
				tool_error("invalid --partition '%s': want mbr, gpt or none", optarg);
				goto out;
			}
			break;
		case OPT_INHERIT:
			tool_error("cannot --inherit: snapbundle does not read instance metadata; "
				   "give --kernel, --ramdisk, -B and --productcodes instead");
			goto out;
		case OPT_NO_INHERIT:
			break; /* what snapbundle always does */
		case OPT_FSTAB:
			fstab = optarg;
			break;
		case OPT_GENERATE_FSTAB:
			gen_fstab = true;
			break;
		case OPT_CLONE_ONLY:
			clone_only = true;
			break;
		case OPT_SNAPSHOT:
			snapshot = true;
			break;
		default:
			ret = tool_getopt_other(c, usage, "bundle-vol");
			goto out;
		}
	}
	if (!tool_args_complete(argc, argv, usage, 0, NULL, NULL))
		goto out;
	if (snapshot && !no_filter) {
		tool_error("--snapshot bundles the block device bit for bit, so the sensitive-file "
			   "filter cannot apply: give --no-filter too");
		goto out;
	}
	if (!clone_only && !tool_bundle_check(&args, "bundle-vol", false))
		goto out;
	if (!args.prefix)
		args.prefix = "image";
	tool_log_setup(args.debug);

	ret = TOOL_EXIT_FAILURE;
	static const int sparams[] = {SNAP_SPARAM_BV_VOLUME, SNAP_SPARAM_BV_SCRATCH_DIR,
				      SNAP_SPARAM_BV_FSTAB};
	const char *const values[] = {volume ? volume : "/", scratch, fstab};
	job = tool_job_make(SNAP_JOB_BUNDLE_VOL, &args, 3, sparams, values);
	if (!job)
		goto out;
	int r = 0;
	for (size_t i = 0; i < nexcl && r >= 0; i++)
		r = tool_job_add_list(job, SNAP_SPARAM_BV_EXCLUDE, excludes[i]);
	for (size_t i = 0; i < nincl && r >= 0; i++)
		r = tool_job_add_list(job, SNAP_SPARAM_BV_INCLUDE, includes[i]);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		goto out;
	}
	snap_job_set_param(job, SNAP_PARAM_BV_SIZE, size_mb * (1ll << 20));
	snap_job_set_param(job, SNAP_PARAM_BV_NO_FILTER, no_filter);
	snap_job_set_param(job, SNAP_PARAM_BV_ALL, all);
	snap_job_set_param(job, SNAP_PARAM_BV_PARTITION, ptable);
	snap_job_set_param(job, SNAP_PARAM_BV_CLONE_ONLY, clone_only);
	snap_job_set_param(job, SNAP_PARAM_BV_SNAPSHOT, snapshot);
	snap_job_set_param(job, SNAP_PARAM_BV_GENERATE_FSTAB, gen_fstab);
	snap_job_set_param(job, SNAP_PARAM_BV_NO_SIZE_CHECKS, args.no_size_checks);

	r = tool_run_job(job, args.progress, "bundle-vol");
	if (r >= 0)
		print_summary(job, args.prefix, clone_only, args.debug);
	ret = tool_exit_of(r);
out:
	snap_job_free(job);
	tool_args_free(&args);
	return ret;
}
