// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-migrate.c - drop-ins for ec2-migrate-manifest and ec2-migrate-bundle with their option
 * names and meanings. One difference: the original maps kernel and ramdisk ids to the target
 * region by asking the EC2 API; these take the ids from --kernel / --ramdisk or from a mapping
 * file (--mapping-file), and keep them with --no-mapping.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

static const char MAPPING_HELP[] =
    "Kernel and ramdisk ids: ec2-ami-tools asks the EC2 API for the ids of the target\n"
    "region; snapbundle cannot, so an id is taken from --kernel / --ramdisk, else from\n"
    "the mapping file for --region, else kept with --no-mapping. A manifest with a\n"
    "kernel or ramdisk and none of these is refused. The mapping file has one line per\n"
    "id: REGION SOURCE-ID DESTINATION-ID, separated by blanks; '#' starts a comment:\n"
    "    # region    old id          new id\n"
    "    eu-west-1   aki-12345678    aki-87654321\n";

/* The options both commands take besides the shared ones. */
enum {
	OPT_NO_MAPPING = 256,
	OPT_REGION,
	OPT_MAPPING_FILE,
	OPT_LOCATION,
};

#define MIGRATE_SHARED                                                                             \
	(TOOL_SHARED_CERT | TOOL_SHARED_PRIVATEKEY | TOOL_SHARED_EC2 | TOOL_SHARED_BATCH |         \
	 TOOL_SHARED_DEBUG)

struct migrate_opts {
	const char *manifest, *region, *mapping_file;
	bool no_mapping;
};

/* Handles c when it is one of the options both commands take: 1 handled, 0 not. */
static int common_opt(int c, struct migrate_opts *o)
{
	switch (c) {
	case 'm':
		o->manifest = optarg;
		return 1;
	case OPT_NO_MAPPING:
		o->no_mapping = true;
		return 1;
	case OPT_REGION:
		o->region = optarg;
		return 1;
	case OPT_MAPPING_FILE:
		o->mapping_file = optarg;
		return 1;
	default:
		return 0;
	}
}

/* After the options: no operand, and -c, -k, -m and the command's own n mandatory ones given;
 * false after saying why (the command exits with TOOL_EXIT_USAGE). */
static bool complete(int argc, char **argv, void (*usage)(FILE *f), const struct tool_args *args,
		     const struct migrate_opts *o, const char *bucket, const char *dest)
{
	static const char *const names[] = {"-c CERT", "-k PRIVATEKEY", "-m MANIFEST", "-b BUCKET",
					    "-d DESTINATION-BUCKET"};
	const char *const given[] = {args->cert, args->key, o->manifest, bucket, dest};
	return tool_args_complete(argc, argv, usage, 5, names, given);
}

/* What differs between the two commands once their options are parsed. */
struct migrate_cmd {
	enum snap_job_kind kind;
	const char *name;
	void (*print)(const struct snap_job *job); /* the line of a job that succeeded */
};

/* The job of either command: its n strings, the migrate ones and the shared options; the EC2
 * certificate defaults by region. Runs it and frees it: the exit code. */
static int run(const struct migrate_cmd *cmd, const struct tool_args *args,
	       const struct migrate_opts *o, size_t n, const int *sparams,
	       const char *const *values, int progress)
{
	char *ec2_default = NULL;
	if (!args->ec2cert && !(ec2_default = tool_default_ec2cert(o->region))) {
		tool_error("no EC2 certificate: give --ec2cert (cert-ec2.pem comes with Amazon's "
			   "ec2-ami-tools, or set EC2_AMITOOL_HOME)");
		return TOOL_EXIT_FAILURE;
	}
	int sp[8] = {SNAP_SPARAM_MANIFEST, SNAP_SPARAM_MIGRATE_REGION, SNAP_SPARAM_MAPPING_FILE,
		     SNAP_SPARAM_EC2_CERT};
	const char *v[8] = {o->manifest, o->region, o->mapping_file, ec2_default};
	for (size_t i = 0; i < n; i++) {
		sp[4 + i] = sparams[i];
		v[4 + i] = values[i];
	}
	struct snap_job *job = tool_job_make(cmd->kind, args, 4 + n, sp, v);
	free(ec2_default);
	if (!job)
		return TOOL_EXIT_FAILURE;
	int r = snap_job_set_param(job, SNAP_PARAM_NO_MAPPING, o->no_mapping);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		snap_job_free(job);
		return TOOL_EXIT_FAILURE;
	}
	r = tool_run_job(job, progress, cmd->name);
	if (r >= 0)
		cmd->print(job);
	snap_job_free(job);
	return tool_exit_of(r);
}

/* ---- migrate-manifest ---- */

static void manifest_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: snapbundle migrate-manifest -m MANIFEST -c CERT -k PRIVATEKEY [OPTIONS]\n"
	    "\n"
	    "Rewrites a classic bundle's manifest for another region or another kernel and\n"
	    "ramdisk (ec2-migrate-manifest): the bundle key is unwrapped with the private key\n"
	    "and wrapped again for the EC2 certificate and the user certificate, and the\n"
	    "manifest is signed again. No part changes. The manifest is replaced in place\n"
	    "(written aside, then renamed over it: a failure leaves it whole), or written to -o.\n"
	    "\n"
	    "  -m, --manifest PATH         the manifest\n"
	    "  -c, --cert PATH             user X.509 certificate (PEM)\n"
	    "  -k, --privatekey PATH       user RSA private key (PEM), which unwraps and signs\n"
	    "      --ec2cert PATH          EC2 certificate of the target region (default:\n"
	    "                              $EC2_AMITOOL_HOME/etc/ec2/amitools/cert-ec2*.pem)\n"
	    "      --kernel ID             the new kernel id\n"
	    "      --ramdisk ID            the new ramdisk id\n"
	    "      --region REGION         the target region of the mapping\n"
	    "      --mapping-file FILE     kernel and ramdisk ids per region (below)\n"
	    "      --no-mapping            keep kernel and ramdisk ids not given\n"
	    "  -o, --output PATH           write the migrated manifest there instead\n"
	    "      --force                 with -o: replace an existing file\n"
	    "  -a, --access-key KEY        accepted for ec2-migrate-manifest's sake; unused\n"
	    "  -s, --secret-key KEY        (the EC2 API is not asked)\n"
	    "      --batch                 accepted; nothing is ever asked\n"
	    "      --debug                 debug log lines on stderr\n"
	    "\n%s",
	    MAPPING_HELP);
}

static void manifest_print(const struct snap_job *job)
{
	printf("migrated %s\n", snap_job_result_string(job, SNAP_RESULT_MANIFEST_PATH));
}

int cmd_migrate_manifest(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"manifest", required_argument, NULL, 'm'},
	    {"no-mapping", no_argument, NULL, OPT_NO_MAPPING},
	    {"region", required_argument, NULL, OPT_REGION},
	    {"mapping-file", required_argument, NULL, OPT_MAPPING_FILE},
	    {"output", required_argument, NULL, 'o'},
	    {"access-key", required_argument, NULL, 'a'},
	    {"secret-key", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct migrate_opts o = {0};
	const char *output = NULL;
	struct tool_args args;
	int c;
	tool_args_init(&args, MIGRATE_SHARED | TOOL_SHARED_FORCE, "m:o:a:s:h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		if (common_opt(c, &o))
			continue;
		if (c == 'o')
			output = optarg;
		else if (c != 'a' && c != 's') /* -a, -s: the EC2 API's; nothing here asks it */
			return tool_getopt_other(c, manifest_usage, NULL);
	}
	if (!complete(argc, argv, manifest_usage, &args, &o, "", ""))
		return TOOL_EXIT_USAGE;
	tool_log_setup(args.debug);
	static const int sp[] = {SNAP_SPARAM_OUTPUT};
	const char *const v[] = {output};
	static const struct migrate_cmd cmd = {SNAP_JOB_MIGRATE_MANIFEST, "migrate-manifest",
					       manifest_print};
	return run(&cmd, &args, &o, 1, sp, v, TOOL_PROGRESS_NONE);
}

/* ---- migrate-bundle ---- */

static void bundle_usage(FILE *f)
{
	fprintf(f,
		"usage: snapbundle migrate-bundle -b SOURCE[/PREFIX] -d DESTINATION[/PREFIX]\n"
		"           -m MANIFEST -c CERT -k PRIVATEKEY [OPTIONS]\n"
		"\n"
		"Copies a classic bundle from one bucket to another (ec2-migrate-bundle) with\n"
		"server-side copies: no part passes through this machine (CopyObject, or\n"
		"UploadPartCopy ranges for a part over 5 GiB). Its manifest is migrated as\n"
		"migrate-manifest does, before anything is copied, and put last: the bundle\n"
		"exists in the destination only once every part is there. The source is only\n"
		"read.\n"
		"\n"
		"  -b, --bucket SOURCE[/PREFIX]          where the bundle is\n"
		"  -d, --destination-bucket DEST[/PREFIX]  where it goes (made when missing)\n"
		"  -m, --manifest NAME                   the manifest's name in the bucket\n"
		"  -c, --cert PATH                       user X.509 certificate (PEM)\n"
		"  -k, --privatekey PATH                 user RSA private key (PEM)\n"
		"      --ec2cert PATH                    EC2 certificate of the target region\n"
		"                                        (default: $EC2_AMITOOL_HOME's)\n"
		"      --kernel ID                       the new kernel id\n"
		"      --ramdisk ID                      the new ramdisk id\n"
		"      --region REGION                   the target region of the mapping\n"
		"                                        (default: --location)\n"
		"      --mapping-file FILE               kernel and ramdisk ids per region\n"
		"      --no-mapping                      keep kernel and ramdisk ids not given\n"
		"      --location LOCATION               where to make the destination bucket\n"
		"      --acl ACL                         canned ACL of every object (default\n"
		"                                        aws-exec-read, as ec2-migrate-bundle)\n"
		"  -a, --access-key KEY                  access key id (default: the AWS chain:\n"
		"                                        environment, profile, instance metadata)\n"
		"  -s, --secret-key KEY                  secret access key\n"
		"  -t, --session-token TOKEN             session token (also --delegation-token)\n"
		"      --url URL                         the S3 service, http(s)://host[:port]\n"
		"                                        (also --endpoint-url; default: the AWS\n"
		"                                        chain, else AWS's); the S3 region is the\n"
		"                                        AWS chain's (AWS_REGION, the profile's)\n"
		"      --profile NAME                    profile of ~/.aws/credentials and config\n"
		"      --connections N                   copies at once (default 8, at most 64)\n"
		"      --retry[=N]                       retries of each request (default 5)\n"
		"      --progress[=MODE]                 bar, json or none\n"
		"      --batch                           accepted; nothing is ever asked\n"
		"      --debug                           debug log lines on stderr\n"
		"\n%s",
		MAPPING_HELP);
}

static void bundle_print(const struct snap_job *job)
{
	uint64_t parts = 0, total = 0, reqs = 0, retries = 0;
	snap_job_result_u64(job, SNAP_RESULT_PARTS, &parts);
	snap_job_result_u64(job, SNAP_RESULT_BYTES_TOTAL, &total);
	snap_job_result_u64(job, SNAP_RESULT_S3_REQUESTS, &reqs);
	snap_job_result_u64(job, SNAP_RESULT_S3_RETRIES, &retries);
	char a[32];
	printf("migrated to %s: %llu parts (%s) copied by the service, %llu requests, %llu "
	       "retries\n",
	       snap_job_result_string(job, SNAP_RESULT_OBJECT_URL), (unsigned long long)parts,
	       tool_size(a, total), (unsigned long long)reqs, (unsigned long long)retries);
}

int cmd_migrate_bundle(int argc, char **argv)
{
	static const struct option opts[] = {
	    /* before the shared S3 options: --region is the mapping's target region here */
	    {"region", required_argument, NULL, OPT_REGION},
	    {"manifest", required_argument, NULL, 'm'},
	    {"bucket", required_argument, NULL, 'b'},
	    {"destination-bucket", required_argument, NULL, 'd'},
	    {"no-mapping", no_argument, NULL, OPT_NO_MAPPING},
	    {"mapping-file", required_argument, NULL, OPT_MAPPING_FILE},
	    {"location", required_argument, NULL, OPT_LOCATION},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct migrate_opts o = {0};
	const char *bucket = NULL, *dest = NULL, *location = NULL;
	struct tool_args args;
	int c;
	tool_args_init(
	    &args, MIGRATE_SHARED | TOOL_SHARED_S3 | TOOL_SHARED_S3_SHORT | TOOL_SHARED_PROGRESS,
	    "m:b:d:h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		if (common_opt(c, &o))
			continue;
		if (c == 'b')
			bucket = optarg;
		else if (c == 'd')
			dest = optarg;
		else if (c == OPT_LOCATION)
			location = optarg;
		else
			return tool_getopt_other(c, bundle_usage, NULL);
	}
	if (!complete(argc, argv, bundle_usage, &args, &o, bucket, dest))
		return TOOL_EXIT_USAGE;
	if (!o.region)
		o.region = location;
	tool_log_setup(args.debug);
	static const int sp[] = {SNAP_SPARAM_S3_BUCKET, SNAP_SPARAM_DEST_BUCKET,
				 SNAP_SPARAM_S3_LOCATION};
	const char *const v[] = {bucket, dest, location};
	static const struct migrate_cmd cmd = {SNAP_JOB_MIGRATE_BUNDLE, "migrate-bundle",
					       bundle_print};
	return run(&cmd, &args, &o, 3, sp, v, args.progress);
}
