// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-s3.c - drop-ins for ec2-upload-bundle, ec2-download-bundle and ec2-delete-bundle, with
 * their option names and meanings (scripts switch by changing the command name), and
 * `snapbundle abort`, which aborts the multipart uploads a store left in a bucket.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tool.h"

/* Creates the job, sets its strings (pairs of sparam and value, value NULL skipped) and the
 * shared options; NULL after printing why. */
static struct snap_job *make_job(enum snap_job_kind kind, const struct tool_args *args,
				 const int *sparams, const char *const *values, size_t n)
{
	struct snap_job *job;
	int r = snap_job_new(kind, &job);
	if (r < 0) {
		tool_error("cannot create the job: %s", snap_strerror(r));
		return NULL;
	}
	for (size_t i = 0; i < n && r >= 0; i++)
		if (values[i])
			r = snap_job_set_string(job, sparams[i], values[i]);
	if (r >= 0)
		r = tool_args_apply(args, job);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		return snap_job_free(job);
	}
	return job;
}

static uint64_t result(const struct snap_job *job, int which)
{
	uint64_t v = 0;
	snap_job_result_u64(job, which, &v);
	return v;
}

static int no_operands(int argc, char **argv)
{
	if (optind < argc) {
		tool_error("unexpected argument '%s'", argv[optind]);
		return -1;
	}
	return 0;
}

#define S3_SHARED (TOOL_SHARED_S3 | TOOL_SHARED_S3_SHORT | TOOL_SHARED_PROGRESS | TOOL_SHARED_DEBUG)

/* ---- upload-bundle ---- */

static void upload_usage(FILE *f)
{
	fprintf(f,
		"usage: snapbundle upload-bundle -b BUCKET[/PREFIX] -m MANIFEST [OPTIONS]\n"
		"\n"
		"Uploads a classic bundle (ec2-upload-bundle): its parts in parallel, then the\n"
		"manifest, so the bundle is complete only when everything arrived. A part the\n"
		"bucket holds already with the same MD5 is skipped, so a run that failed resumes\n"
		"part by part. Each part is checked against the manifest's SHA-1 first.\n"
		"\n"
		"  -b, --bucket BUCKET[/PREFIX]  where the bundle goes\n"
		"  -m, --manifest PATH           the bundle's manifest\n"
		"  -d, --directory DIR           where the parts are (default: the manifest's)\n"
		"      --acl ACL                 canned ACL of every object (default\n"
		"                                aws-exec-read, as ec2-upload-bundle)\n"
		"      --location LOCATION       create the bucket there if it is missing\n"
		"      --part N                  begin with part N (0 is the first)\n"
		"      --skipmanifest            upload the parts only\n"
		"      --sigv 4                  the signature version (only 4)\n"
		"      --batch                   accepted; nothing is ever asked\n");
	tool_s3_usage(f, true);
	fprintf(f,
		"      --progress[=MODE]         bar, json or none (default: a bar on a terminal)\n"
		"      --debug                   debug log lines on stderr\n");
	tool_common_usage(f);
}

int cmd_upload_bundle(int argc, char **argv)
{
	enum { OPT_SIGV = 256, OPT_LOCATION, OPT_PART, OPT_SKIPMANIFEST, OPT_BATCH, OPT_HELP };
	static const struct option opts[] = {
	    {"bucket", required_argument, NULL, 'b'},
	    {"manifest", required_argument, NULL, 'm'},
	    {"directory", required_argument, NULL, 'd'},
	    {"sigv", required_argument, NULL, OPT_SIGV},
	    {"location", required_argument, NULL, OPT_LOCATION},
	    {"part", required_argument, NULL, OPT_PART},
	    {"skipmanifest", no_argument, NULL, OPT_SKIPMANIFEST},
	    {"batch", no_argument, NULL, OPT_BATCH},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	const char *bucket = NULL, *manifest = NULL, *dir = NULL, *location = NULL;
	long part = 0;
	bool skip_manifest = false;
	struct tool_args args;
	int c;
	tool_args_init(&args, S3_SHARED, "b:m:d:h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case 'b':
			bucket = optarg;
			break;
		case 'm':
			manifest = optarg;
			break;
		case 'd':
			dir = optarg;
			break;
		case OPT_SIGV:
			if (strcmp(optarg, "4") && strcasecmp(optarg, "v4")) {
				tool_error(
				    "invalid --sigv '%s': only signature version 4 is supported",
				    optarg);
				return 2;
			}
			break;
		case OPT_LOCATION:
			location = optarg;
			break;
		case OPT_PART:
			if (!tool_parse_int(optarg, 0, 1000000, &part)) {
				tool_error("invalid --part '%s': want a part number", optarg);
				return 2;
			}
			break;
		case OPT_SKIPMANIFEST:
			skip_manifest = true;
			break;
		case OPT_BATCH:
			break;
		case 'h':
		case OPT_HELP:
			upload_usage(stdout);
			return 0;
		case TOOL_GETOPT_INVALID:
			return 2;
		default:
			upload_usage(stderr);
			return 2;
		}
	}
	if (no_operands(argc, argv) < 0)
		return 2;
	if (!bucket || !manifest) {
		tool_error("missing mandatory option %s", !bucket ? "-b BUCKET" : "-m MANIFEST");
		upload_usage(stderr);
		return 2;
	}
	tool_log_setup(args.debug);
	static const int sp[] = {SNAP_SPARAM_S3_BUCKET, SNAP_SPARAM_MANIFEST,
				 SNAP_SPARAM_SOURCE_DIR, SNAP_SPARAM_S3_LOCATION};
	const char *const v[] = {bucket, manifest, dir, location};
	struct snap_job *job = make_job(SNAP_JOB_UPLOAD_BUNDLE, &args, sp, v, 4);
	if (!job)
		return 1;
	int r = snap_job_set_param(job, SNAP_PARAM_FIRST_PART, part);
	if (r >= 0)
		r = snap_job_set_param(job, SNAP_PARAM_SKIP_MANIFEST, skip_manifest);
	if (r >= 0)
		r = tool_run_job(job, args.progress, "upload-bundle");
	if (r >= 0) {
		char a[32], b[32];
		const char *url = snap_job_result_string(job, SNAP_RESULT_OBJECT_URL);
		printf("uploaded %s: %llu parts, %llu skipped (already in the bucket), %s of %s "
		       "sent, %llu requests, %llu retries\n",
		       url ? url : "the parts (no manifest)",
		       (unsigned long long)(result(job, SNAP_RESULT_PARTS) - (uint64_t)part),
		       (unsigned long long)result(job, SNAP_RESULT_PARTS_SKIPPED),
		       tool_size(a, result(job, SNAP_RESULT_BYTES_WRITTEN)),
		       tool_size(b, result(job, SNAP_RESULT_BYTES_TOTAL)),
		       (unsigned long long)result(job, SNAP_RESULT_S3_REQUESTS),
		       (unsigned long long)result(job, SNAP_RESULT_S3_RETRIES));
	}
	snap_job_free(job);
	return tool_exit_of(r);
}

/* ---- download-bundle ---- */

static void download_usage(FILE *f)
{
	fprintf(
	    f, "usage: snapbundle download-bundle -b BUCKET[/PREFIX] [OPTIONS]\n"
	       "\n"
	       "Downloads a classic bundle (ec2-download-bundle): the manifest first, then the\n"
	       "parts in parallel, each checked against the manifest's SHA-1 and renamed into\n"
	       "place only then. A part already in the directory with the right size and\n"
	       "SHA-1 is not fetched again, so a run that failed resumes part by part.\n"
	       "\n"
	       "  -b, --bucket BUCKET[/PREFIX]  where the bundle is\n"
	       "  -p, --prefix PREFIX           the bundle's name: PREFIX.manifest.xml (default\n"
	       "                                image)\n"
	       "  -m, --manifest NAME           the manifest's name in the bucket (instead of -p)\n"
	       "  -k, --privatekey PATH         the user's private key: check that the bundle\n"
	       "                                was made for it (its key must decrypt)\n"
	       "  -d, --directory DIR           where to write (default: current directory)\n");
	tool_s3_usage(f, true);
	fprintf(f,
		"      --progress[=MODE]         bar, json or none (default: a bar on a terminal)\n"
		"      --debug                   debug log lines on stderr\n");
	tool_common_usage(f);
}

int cmd_download_bundle(int argc, char **argv)
{
	enum { OPT_HELP = 256 };
	static const struct option opts[] = {
	    {"bucket", required_argument, NULL, 'b'},	{"prefix", required_argument, NULL, 'p'},
	    {"manifest", required_argument, NULL, 'm'}, {"directory", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, OPT_HELP},	{NULL, 0, NULL, 0},
	};
	const char *bucket = NULL, *prefix = NULL, *manifest = NULL, *dir = NULL;
	struct tool_args args;
	int c;
	tool_args_init(&args, S3_SHARED | TOOL_SHARED_PRIVATEKEY, "b:p:m:d:h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case 'b':
			bucket = optarg;
			break;
		case 'p':
			prefix = optarg;
			break;
		case 'm':
			manifest = optarg;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'h':
		case OPT_HELP:
			download_usage(stdout);
			return 0;
		case TOOL_GETOPT_INVALID:
			return 2;
		default:
			download_usage(stderr);
			return 2;
		}
	}
	if (no_operands(argc, argv) < 0)
		return 2;
	if (!bucket) {
		tool_error("missing mandatory option -b BUCKET");
		download_usage(stderr);
		return 2;
	}
	tool_log_setup(args.debug);
	static const int sp[] = {SNAP_SPARAM_S3_BUCKET, SNAP_SPARAM_PREFIX, SNAP_SPARAM_MANIFEST,
				 SNAP_SPARAM_OUTPUT_DIR};
	const char *const v[] = {bucket, prefix, manifest, dir};
	struct snap_job *job = make_job(SNAP_JOB_DOWNLOAD_BUNDLE, &args, sp, v, 4);
	if (!job)
		return 1;
	int r = tool_run_job(job, args.progress, "download-bundle");
	if (r >= 0) {
		char a[32], b[32];
		printf("downloaded %s: %llu parts, %llu skipped (already there), %s of %s "
		       "received, %llu requests, %llu retries\n",
		       snap_job_result_string(job, SNAP_RESULT_MANIFEST_PATH),
		       (unsigned long long)result(job, SNAP_RESULT_PARTS),
		       (unsigned long long)result(job, SNAP_RESULT_PARTS_SKIPPED),
		       tool_size(a, result(job, SNAP_RESULT_BYTES_WRITTEN)),
		       tool_size(b, result(job, SNAP_RESULT_BYTES_TOTAL)),
		       (unsigned long long)result(job, SNAP_RESULT_S3_REQUESTS),
		       (unsigned long long)result(job, SNAP_RESULT_S3_RETRIES));
	}
	snap_job_free(job);
	return tool_exit_of(r);
}

/* ---- delete-bundle ---- */

static void delete_usage(FILE *f)
{
	fprintf(
	    f, "usage: snapbundle delete-bundle -b BUCKET[/PREFIX] [OPTIONS]\n"
	       "\n"
	       "Deletes a classic bundle from a bucket (ec2-delete-bundle): the parts the\n"
	       "manifest lists, then the manifest. Asks first unless -y; without -y standard\n"
	       "input must be a terminal.\n"
	       "\n"
	       "  -b, --bucket BUCKET[/PREFIX]  where the bundle is\n"
	       "  -p, --prefix PREFIX           the bundle's name: PREFIX.manifest.xml (default\n"
	       "                                image)\n"
	       "  -m, --manifest NAME           the manifest's name in the bucket (instead of -p)\n"
	       "      --clear                   also remove the bucket when it is then empty\n"
	       "  -y, --yes                     do not ask\n");
	tool_s3_usage(f, true);
	fprintf(f,
		"      --progress[=MODE]         bar, json or none (default: a bar on a terminal)\n"
		"      --debug                   debug log lines on stderr\n");
	tool_common_usage(f);
}

/* "delete ...? [y/N]" on the terminal: true for y or yes. */
static bool confirm(const char *what)
{
	fprintf(stderr, "delete %s? [y/N] ", what);
	fflush(stderr);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		return false;
	line[strcspn(line, "\r\n")] = 0;
	return !strcasecmp(line, "y") || !strcasecmp(line, "yes");
}

int cmd_delete_bundle(int argc, char **argv)
{
	enum { OPT_CLEAR = 256, OPT_HELP };
	static const struct option opts[] = {
	    {"bucket", required_argument, NULL, 'b'},
	    {"prefix", required_argument, NULL, 'p'},
	    {"manifest", required_argument, NULL, 'm'},
	    {"clear", no_argument, NULL, OPT_CLEAR},
	    {"yes", no_argument, NULL, 'y'},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	const char *bucket = NULL, *prefix = NULL, *manifest = NULL;
	bool clear = false, yes = false;
	struct tool_args args;
	int c;
	tool_args_init(&args, S3_SHARED, "b:p:m:yh", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case 'b':
			bucket = optarg;
			break;
		case 'p':
			prefix = optarg;
			break;
		case 'm':
			manifest = optarg;
			break;
		case OPT_CLEAR:
			clear = true;
			break;
		case 'y':
			yes = true;
			break;
		case 'h':
		case OPT_HELP:
			delete_usage(stdout);
			return 0;
		case TOOL_GETOPT_INVALID:
			return 2;
		default:
			delete_usage(stderr);
			return 2;
		}
	}
	if (no_operands(argc, argv) < 0)
		return 2;
	if (!bucket) {
		tool_error("missing mandatory option -b BUCKET");
		delete_usage(stderr);
		return 2;
	}
	char what[1024];
	snprintf(what, sizeof(what), "the bundle %s in s3://%s (its parts, then its manifest)%s",
		 manifest ? manifest
		 : prefix ? prefix
			  : "image",
		 bucket, clear ? ", and the bucket if it is then empty" : "");
	if (!yes && !isatty(STDIN_FILENO)) {
		tool_error("refusing to delete without -y: standard input is not a terminal");
		return TOOL_EXIT_USAGE;
	}
	if (!yes && !confirm(what)) {
		fprintf(stderr, "nothing deleted\n");
		return 1;
	}
	tool_log_setup(args.debug);
	static const int sp[] = {SNAP_SPARAM_S3_BUCKET, SNAP_SPARAM_PREFIX, SNAP_SPARAM_MANIFEST};
	const char *const v[] = {bucket, prefix, manifest};
	struct snap_job *job = make_job(SNAP_JOB_DELETE_BUNDLE, &args, sp, v, 3);
	if (!job)
		return 1;
	int r = snap_job_set_param(job, SNAP_PARAM_CLEAR, clear);
	if (r >= 0)
		r = tool_run_job(job, args.progress, "delete-bundle");
	if (r >= 0)
		printf("deleted %s: %llu parts and the manifest\n", what + strlen("the "),
		       (unsigned long long)result(job, SNAP_RESULT_PARTS));
	snap_job_free(job);
	return tool_exit_of(r);
}

/* ---- abort ---- */

static void abort_usage(FILE *f)
{
	fprintf(f,
		"usage: snapbundle abort s3://BUCKET/KEY [OPTIONS]\n"
		"\n"
		"Aborts every multipart upload in progress for KEY (a store that failed or was\n"
		"interrupted keeps its upload for --resume), or for every key under KEY when it\n"
		"ends in '/'. Prints what it aborted.\n"
		"\n");
	tool_s3_usage(f, false);
	fprintf(f, "      --debug                   debug log lines on stderr\n");
	tool_common_usage(f);
}

int cmd_abort(int argc, char **argv)
{
	enum { OPT_HELP = 256 };
	static const struct option opts[] = {
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	struct tool_args args;
	int c;
	tool_args_init(&args, TOOL_SHARED_S3 | TOOL_SHARED_DEBUG, "h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case 'h':
		case OPT_HELP:
			abort_usage(stdout);
			return 0;
		case TOOL_GETOPT_INVALID:
			return 2;
		default:
			abort_usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		if (optind == argc)
			tool_error("missing the s3://BUCKET/KEY to abort");
		else
			tool_error("unexpected argument '%s'", argv[optind + 1]);
		abort_usage(stderr);
		return 2;
	}
	const char *url = argv[optind];
	if (strncmp(url, "s3://", 5)) {
		tool_error("not an s3://BUCKET/KEY URL: %s", url);
		return 2;
	}
	tool_log_setup(args.debug);
	static const int sp[] = {SNAP_SPARAM_OUTPUT};
	const char *const v[] = {url};
	struct snap_job *job = make_job(SNAP_JOB_S3_ABORT, &args, sp, v, 1);
	if (!job)
		return 1;
	int r = tool_run_job(job, TOOL_PROGRESS_NONE, "abort");
	if (r >= 0) {
		const char *list = snap_job_result_string(job, SNAP_RESULT_S3_ABORTED);
		if (!list || !*list)
			printf("no multipart upload in progress for %s\n", url);
		for (const char *p = list; p && *p;) {
			size_t n = strcspn(p, "\n");
			printf("aborted %.*s\n", (int)n, p);
			p += n + (p[n] == '\n');
		}
	}
	snap_job_free(job);
	return tool_exit_of(r);
}
