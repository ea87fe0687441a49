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

/* $EC2_AMITOOL_HOME/etc/ec2/amitools/cert-ec2*.pem for the region (ec2-ami-tools' files), or
 * NULL. */
static char *default_ec2cert(const char *region)
{
	static const char *const vars[] = {"EC2_AMITOOL_HOME", "EC2_HOME"};
	const char *file = "cert-ec2.pem";
	if (region && !strncmp(region, "us-gov-", 7))
		file = "cert-ec2-gov.pem";
	else if (region && !strcmp(region, "cn-north-1"))
		file = "cert-ec2-cn-north-1.pem";
	for (size_t i = 0; i < 2; i++) {
		const char *home = getenv(vars[i]);
		char *path;
		if (!home || !*home || asprintf(&path, "%s/etc/ec2/amitools/%s", home, file) < 0)
			continue;
		if (access(path, R_OK) == 0)
			return path;
		free(path);
	}
	return NULL;
}

/* The options both commands share. */
enum {
	OPT_EC2CERT = 256,
	OPT_KERNEL,
	OPT_RAMDISK,
	OPT_NO_MAPPING,
	OPT_REGION,
	OPT_MAPPING_FILE,
	OPT_BATCH,
	OPT_LOCATION,
	OPT_HELP,
};

struct migrate_opts {
	const char *cert, *manifest, *ec2cert, *kernel, *ramdisk, *region, *mapping_file;
	bool no_mapping;
};

/* Handles c when it is one of the shared migrate options: 1 handled, 0 not. */
static int common_opt(int c, struct migrate_opts *o)
{
	switch (c) {
	case 'c':
		o->cert = optarg;
		return 1;
	case 'm':
		o->manifest = optarg;
		return 1;
	case OPT_EC2CERT:
		o->ec2cert = optarg;
		return 1;
	case OPT_KERNEL:
		o->kernel = optarg;
		return 1;
	case OPT_RAMDISK:
		o->ramdisk = optarg;
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
	case OPT_BATCH:
		return 1;
	default:
		return 0;
	}
}

/* Sets the job's migrate strings; the EC2 certificate defaults by region. 0, or -1 after saying
 * why. */
static int apply_common(struct snap_job *job, const struct migrate_opts *o, const char *key)
{
	char *ec2_default = NULL;
	const char *ec2 = o->ec2cert;
	if (!ec2)
		ec2 = ec2_default = default_ec2cert(o->region);
	if (!ec2) {
		tool_error("no EC2 certificate: give --ec2cert (cert-ec2.pem comes with Amazon's "
			   "ec2-ami-tools, or set EC2_AMITOOL_HOME)");
		return -1;
	}
	const struct {
		int sparam;
		const char *v;
	} s[] = {
	    {SNAP_SPARAM_CERT, o->cert},
	    {SNAP_SPARAM_PRIVATE_KEY, key},
	    {SNAP_SPARAM_MANIFEST, o->manifest},
	    {SNAP_SPARAM_EC2_CERT, ec2},
	    {SNAP_SPARAM_KERNEL, o->kernel},
	    {SNAP_SPARAM_RAMDISK, o->ramdisk},
	    {SNAP_SPARAM_MIGRATE_REGION, o->region},
	    {SNAP_SPARAM_MAPPING_FILE, o->mapping_file},
	};
	int r = 0;
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]) && r >= 0; i++)
		if (s[i].v)
			r = snap_job_set_string(job, s[i].sparam, s[i].v);
	if (r >= 0)
		r = snap_job_set_param(job, SNAP_PARAM_NO_MAPPING, o->no_mapping);
	free(ec2_default);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		return -1;
	}
	return 0;
}

static int missing(const struct migrate_opts *o, const char *key, const char *bucket,
		   const char *dest)
{
	const char *what = !o->cert	  ? "-c CERT"
			   : !key	  ? "-k PRIVATEKEY"
			   : !o->manifest ? "-m MANIFEST"
			   : !bucket	  ? "-b BUCKET"
			   : !dest	  ? "-d DESTINATION-BUCKET"
					  : NULL;
	if (what)
		tool_error("missing mandatory option %s", what);
	return what ? -1 : 0;
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

int cmd_migrate_manifest(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"cert", required_argument, NULL, 'c'},
	    {"manifest", required_argument, NULL, 'm'},
	    {"ec2cert", required_argument, NULL, OPT_EC2CERT},
	    {"kernel", required_argument, NULL, OPT_KERNEL},
	    {"ramdisk", required_argument, NULL, OPT_RAMDISK},
	    {"no-mapping", no_argument, NULL, OPT_NO_MAPPING},
	    {"region", required_argument, NULL, OPT_REGION},
	    {"mapping-file", required_argument, NULL, OPT_MAPPING_FILE},
	    {"output", required_argument, NULL, 'o'},
	    {"access-key", required_argument, NULL, 'a'},
	    {"secret-key", required_argument, NULL, 's'},
	    {"batch", no_argument, NULL, OPT_BATCH},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	struct migrate_opts o = {0};
	const char *output = NULL;
	struct tool_args args;
	int c;
	tool_args_init(&args, TOOL_SHARED_PRIVATEKEY | TOOL_SHARED_FORCE | TOOL_SHARED_DEBUG,
		       "c:m:o:a:s:k:h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		if (common_opt(c, &o))
			continue;
		switch (c) {
		case 'o':
			output = optarg;
			break;
		case 'a':
		case 's':
			break; /* the EC2 API's credentials: nothing here asks it */
		case 'h':
		case OPT_HELP:
			manifest_usage(stdout);
			return 0;
		case TOOL_GETOPT_INVALID:
			return 2;
		default:
			manifest_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		tool_error("unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (missing(&o, args.key, "", "") < 0) {
		manifest_usage(stderr);
		return 2;
	}
	tool_log_setup(args.debug);
	struct snap_job *job;
	int r = snap_job_new(SNAP_JOB_MIGRATE_MANIFEST, &job);
	if (r < 0) {
		tool_error("cannot create the job: %s", snap_strerror(r));
		return 1;
	}
	r = tool_args_apply(&args, job);
	if (r >= 0 && output)
		r = snap_job_set_string(job, SNAP_SPARAM_OUTPUT, output);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		snap_job_free(job);
		return 1;
	}
	if (apply_common(job, &o, args.key) < 0) {
		snap_job_free(job);
		return 1;
	}
	r = tool_run_job(job, TOOL_PROGRESS_NONE, "migrate-manifest");
	if (r >= 0)
		printf("migrated %s\n", snap_job_result_string(job, SNAP_RESULT_MANIFEST_PATH));
	snap_job_free(job);
	return tool_exit_of(r);
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

int cmd_migrate_bundle(int argc, char **argv)
{
	static const struct option opts[] = {
	    /* before the shared S3 options: --region is the mapping's target region here */
	    {"region", required_argument, NULL, OPT_REGION},
	    {"cert", required_argument, NULL, 'c'},
	    {"manifest", required_argument, NULL, 'm'},
	    {"bucket", required_argument, NULL, 'b'},
	    {"destination-bucket", required_argument, NULL, 'd'},
	    {"ec2cert", required_argument, NULL, OPT_EC2CERT},
	    {"kernel", required_argument, NULL, OPT_KERNEL},
	    {"ramdisk", required_argument, NULL, OPT_RAMDISK},
	    {"no-mapping", no_argument, NULL, OPT_NO_MAPPING},
	    {"mapping-file", required_argument, NULL, OPT_MAPPING_FILE},
	    {"location", required_argument, NULL, OPT_LOCATION},
	    {"batch", no_argument, NULL, OPT_BATCH},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	struct migrate_opts o = {0};
	const char *bucket = NULL, *dest = NULL, *location = NULL;
	struct tool_args args;
	int c;
	tool_args_init(&args,
		       TOOL_SHARED_S3 | TOOL_SHARED_S3_SHORT | TOOL_SHARED_PRIVATEKEY |
			   TOOL_SHARED_PROGRESS | TOOL_SHARED_DEBUG,
		       "c:m:b:d:k:h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		if (common_opt(c, &o))
			continue;
		switch (c) {
		case 'b':
			bucket = optarg;
			break;
		case 'd':
			dest = optarg;
			break;
		case OPT_LOCATION:
			location = optarg;
			break;
		case 'h':
		case OPT_HELP:
			bundle_usage(stdout);
			return 0;
		case TOOL_GETOPT_INVALID:
			return 2;
		default:
			bundle_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		tool_error("unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (missing(&o, args.key, bucket, dest) < 0) {
		bundle_usage(stderr);
		return 2;
	}
	if (!o.region)
		o.region = location;
	tool_log_setup(args.debug);
	struct snap_job *job;
	int r = snap_job_new(SNAP_JOB_MIGRATE_BUNDLE, &job);
	if (r < 0) {
		tool_error("cannot create the job: %s", snap_strerror(r));
		return 1;
	}
	r = tool_args_apply(&args, job);
	if (r >= 0)
		r = snap_job_set_string(job, SNAP_SPARAM_S3_BUCKET, bucket);
	if (r >= 0)
		r = snap_job_set_string(job, SNAP_SPARAM_DEST_BUCKET, dest);
	if (r >= 0 && location)
		r = snap_job_set_string(job, SNAP_SPARAM_S3_LOCATION, location);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		snap_job_free(job);
		return 1;
	}
	if (apply_common(job, &o, args.key) < 0) {
		snap_job_free(job);
		return 1;
	}
	r = tool_run_job(job, args.progress, "migrate-bundle");
	if (r >= 0) {
		uint64_t parts = 0, total = 0, reqs = 0, retries = 0;
		snap_job_result_u64(job, SNAP_RESULT_PARTS, &parts);
		snap_job_result_u64(job, SNAP_RESULT_BYTES_TOTAL, &total);
		snap_job_result_u64(job, SNAP_RESULT_S3_REQUESTS, &reqs);
		snap_job_result_u64(job, SNAP_RESULT_S3_RETRIES, &retries);
		char a[32];
		printf("migrated to %s: %llu parts (%s) copied by the service, %llu requests, %llu "
		       "retries\n",
		       snap_job_result_string(job, SNAP_RESULT_OBJECT_URL),
		       (unsigned long long)parts, tool_size(a, total), (unsigned long long)reqs,
		       (unsigned long long)retries);
	}
	snap_job_free(job);
	return tool_exit_of(r);
}
