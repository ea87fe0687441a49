// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-bundle.c - `snapbundle bundle`: a disk or disk image into a classic EC2 bundle, with
 * ec2-bundle-image's options under the same names so existing scripts only change the command
 * name. Differences from ec2-bundle-image: no 10 GiB limit, no shell (any file name works),
 * parallel compression, free space and holes not stored.
 */
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
	    "usage: snapbundle bundle -i IMAGE -c CERT -k PRIVATEKEY -u USER [OPTIONS]\n"
	    "\n"
	    "Bundles a disk image or block device as a classic EC2 instance-store bundle\n"
	    "(NAME.part.* and NAME.manifest.xml), as ec2-bundle-image does.\n"
	    "\n"
	    "  -i, --image PATH            image file or block device to bundle\n"
	    "  -c, --cert PATH             user X.509 certificate (PEM)\n"
	    "  -k, --privatekey PATH       user RSA private key (PEM)\n"
	    "  -u, --user ACCOUNT          AWS account number (12 digits, hyphens allowed)\n"
	    "  -r, --arch ARCH             i386, x86_64 or arm64 (default: this machine's)\n"
	    "  -d, --destination DIR       where the bundle goes (default /tmp), or\n"
	    "                              s3://BUCKET/PREFIX/: parts uploaded as they are cut,\n"
	    "                              the manifest last, nothing written locally\n"
	    "  -p, --prefix NAME           bundle name (default: the image's file name)\n"
	    "      --ec2cert PATH          EC2 certificate the key is also wrapped for (default:\n"
	    "                              $EC2_AMITOOL_HOME/etc/ec2/amitools/cert-ec2.pem)\n"
	    "      --kernel ID             kernel id (aki-...)\n"
	    "      --ramdisk ID            ramdisk id (ari-...)\n"
	    "  -B, --block-device-mapping MAPS  virtual=device pairs, comma-separated\n"
	    "      --productcodes CODES    product codes\n"
	    "      --batch                 never prompt (snapbundle never does)\n"
	    "      --debug                 debug log lines and stage timings on stderr\n"
	    "      --level N               compression level 0-3 (default 2)\n"
	    "      --threads N             compression threads (default: every CPU)\n"
	    "      --keep-unpartitioned    keep space outside every partition\n"
	    "      --no-fs-skip            keep filesystem free space too\n"
	    "      --freeze                freeze mounted filesystems (FIFREEZE) while reading\n"
	    "      --progress[=MODE]       bar, json or none (default: a bar on a terminal)\n"
	    "      --force                 replace an existing bundle of the same name\n"
	    "      --no-direct             read and write through the page cache\n"
	    "      --part-size SIZE        part size (default 10M; for testing)\n"
	    "\n"
	    "S3 (-d s3://BUCKET/PREFIX/):\n");
	tool_s3_usage(f, false);
	fprintf(
	    f,
	    "      --acl ACL              canned ACL of every object (private, public-read, ...;\n"
	    "                             default: none, the bucket's default applies)\n"
	    "\n"
	    "To S3 (-d s3://...): the service and the credentials come from the options\n"
	    "above, else AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,\n"
	    "AWS_REGION, AWS_ENDPOINT_URL(_S3), else AWS_PROFILE's files, else instance\n"
	    "metadata. Objects get no canned ACL unless --acl gives one (upload-bundle's\n"
	    "default, aws-exec-read, is not applied here). A bundle is complete only once its\n"
	    "manifest is there: a failed or interrupted (SIGINT, SIGTERM) run deletes the parts\n"
	    "it uploaded; a killed one cannot, and leaves parts without a manifest, which a\n"
	    "rerun with --force or `snapbundle delete-bundle` removes. Part keys are padded to\n"
	    "the digits of the most parts the image could give (a key cannot be renamed once\n"
	    "the count is known); the manifest names each part.\n"
	    "\n"
	    "The EC2 certificate (cert-ec2.pem, and cert-ec2-gov.pem / cert-ec2-cn-north-1.pem "
	    "for\n"
	    "those regions) comes with Amazon's ec2-ami-tools, in etc/ec2/amitools/.\n");
	tool_common_usage(f);
}

enum {
	OPT_KEEP_UNPARTITIONED = 256,
	OPT_NO_FS_SKIP,
	OPT_FREEZE,
	OPT_CHUNK_SIZE,
};

/* with the bundle options of the shared table (TOOL_SHARED_BUNDLE and those below) */
static const struct option options[] = {
    {"image", required_argument, NULL, 'i'},
    {"keep-unpartitioned", no_argument, NULL, OPT_KEEP_UNPARTITIONED},
    {"no-fs-skip", no_argument, NULL, OPT_NO_FS_SKIP},
    {"freeze", no_argument, NULL, OPT_FREEZE},
    {"chunk-size", required_argument, NULL, OPT_CHUNK_SIZE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void print_summary(struct snap_job *job, const char *name, bool debug)
{
	uint64_t total = 0, read = 0, skipped = 0, written = 0, parts = 0, ns = 0, stream = 0;
	snap_job_result_u64(job, SNAP_RESULT_BYTES_TOTAL, &total);
	snap_job_result_u64(job, SNAP_RESULT_BYTES_READ, &read);
	snap_job_result_u64(job, SNAP_RESULT_BYTES_SKIPPED, &skipped);
	snap_job_result_u64(job, SNAP_RESULT_BYTES_WRITTEN, &written);
	snap_job_result_u64(job, SNAP_RESULT_PARTS, &parts);
	snap_job_result_u64(job, SNAP_RESULT_ELAPSED_NS, &ns);
	snap_job_result_u64(job, SNAP_RESULT_STREAM_BYTES, &stream);
	const char *manifest = snap_job_result_string(job, SNAP_RESULT_MANIFEST_PATH);
	const char *digest = snap_job_result_string(job, SNAP_RESULT_DIGEST);
	char a[32], b[32], c[32], d[32], e[32];
	double s = (double)ns / 1e9;
	printf("Bundle manifest is %s\n", manifest ? manifest : "?");
	printf("  bundle name:  %s\n", name);
	printf("  parts:        %" PRIu64 "\n", parts);
	printf("  image:        %s (read %s, skipped %s)\n", tool_size(a, total),
	       tool_size(b, read), tool_size(c, skipped));
	printf("  tar stream:   %s\n", tool_size(d, stream));
	printf("  bundled size: %s (%" PRIu64 " bytes)\n", tool_size(e, written), written);
	printf("  digest:       %s\n", digest ? digest : "?");
	printf("  time:         %.2f s (%s/s of image)\n", s,
	       tool_size(a, s > 0 ? (unsigned long long)((double)total / s) : 0));
	uint64_t up = 0, requests = 0, retries = 0;
	if (snap_job_result_u64(job, SNAP_RESULT_BYTES_UPLOADED, &up) == 0) {
		snap_job_result_u64(job, SNAP_RESULT_S3_REQUESTS, &requests);
		snap_job_result_u64(job, SNAP_RESULT_S3_RETRIES, &retries);
		printf("  uploaded:     %s (%" PRIu64 " bytes, %" PRIu64 " requests, %" PRIu64
		       " retries)\n",
		       tool_size(b, up), up, requests, retries);
	}
	const char *timings = snap_job_result_string(job, SNAP_RESULT_TIMINGS);
	if (debug && timings)
		fprintf(stderr, "snapbundle: debug: timings %s\n", timings);
}

int cmd_bundle(int argc, char **argv)
{
	const char *image = NULL;
	bool keep = false, no_fs_skip = false, freeze = false;
	long long chunk_size = 0;
	struct tool_args args;
	struct snap_job *job = NULL;
	int c, ret = TOOL_EXIT_USAGE; /* until the options are checked */

	tool_args_init(&args,
		       TOOL_SHARED_CERT | TOOL_SHARED_PRIVATEKEY | TOOL_SHARED_EC2 |
			   TOOL_SHARED_BUNDLE | TOOL_SHARED_BATCH | TOOL_SHARED_DEBUG |
			   TOOL_SHARED_NO_DIRECT | TOOL_SHARED_THREADS | TOOL_SHARED_PROGRESS |
			   TOOL_SHARED_FORCE | TOOL_SHARED_S3,
		       "i:h", options);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case 'i':
			image = optarg;
			break;
		case OPT_KEEP_UNPARTITIONED:
			keep = true;
			break;
		case OPT_NO_FS_SKIP:
			no_fs_skip = true;
			break;
		case OPT_FREEZE:
			freeze = true;
			break;
		case OPT_CHUNK_SIZE:
			chunk_size = tool_parse_size(optarg);
			if (chunk_size <= 0) {
				tool_error("invalid --chunk-size '%s'", optarg);
				goto out;
			}
			break;
		default:
			ret = tool_getopt_other(c, usage, "bundle");
			goto out;
		}
	}
	if (!tool_args_complete(argc, argv, usage, 0, NULL, NULL))
		goto out;
	if (!image || !*image) {
		tool_error("missing mandatory parameter: --image");
		fprintf(stderr, "Try 'snapbundle bundle --help'\n");
		goto out;
	}
	/* --no-size-checks is accepted: there are no size limits to turn off */
	if (!tool_bundle_check(&args, "bundle", true))
		goto out;
	tool_log_setup(args.debug);

	ret = TOOL_EXIT_FAILURE;
	static const int sparams[] = {SNAP_SPARAM_IMAGE};
	const char *const values[] = {image};
	job = tool_job_make(SNAP_JOB_BUNDLE, &args, 1, sparams, values);
	if (!job)
		goto out;
	snap_job_set_param(job, SNAP_PARAM_KEEP_UNPARTITIONED, keep);
	snap_job_set_param(job, SNAP_PARAM_FS_SKIP, !no_fs_skip);
	snap_job_set_param(job, SNAP_PARAM_FREEZE, freeze);
	if (chunk_size)
		snap_job_set_param(job, SNAP_PARAM_CHUNK_SIZE, chunk_size);

	const char *base = strrchr(image, '/');
	const char *name = args.prefix ? args.prefix : base ? base + 1 : image;
	tool_result_string("image", image);
	tool_result_string("destination", args.destination ? args.destination : "/tmp");
	tool_result_string("bundle_name", name);
	int r = tool_run_job(job, args.progress, "bundle");
	if (r >= 0)
		print_summary(job, name, args.debug);
	ret = tool_exit_of(r);
out:
	snap_job_free(job);
	tool_args_free(&args);
	return ret;
}
