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

static uint64_t result(const struct snap_job *job, int which)
{
	uint64_t v = 0;
	snap_job_result_u64(job, which, &v);
	return v;
}

/* Where c stands in the n options vals (getopt values), or -1: the string options a command hands
 * to its job as they are, vals[i] as its i-th job string. */
static int slot(const int *vals, size_t n, int c)
{
	for (size_t i = 0; i < n; i++)
		if (vals[i] == c)
			return (int)i;
	return -1;
}

#define S3_SHARED (TOOL_SHARED_S3 | TOOL_SHARED_S3_SHORT | TOOL_SHARED_PROGRESS | TOOL_SHARED_DEBUG)

/* The end of the usage of upload-bundle, download-bundle and delete-bundle. */
static void usage_end(FILE *f)
{
	tool_s3_usage(f, true);
	fprintf(f,
		"      --progress[=MODE]         bar, json or none (default: a bar on a terminal)\n"
		"      --debug                   debug log lines on stderr\n");
	tool_common_usage(f);
}

/* The line of an upload or a download that succeeded: "VERB WHAT: N parts, N skipped (WHERE),
 * SIZE of SIZE MOVED, N requests, N retries", the parts counted from first_part. */
static void print_transfer(const struct snap_job *job, const char *verb, const char *what,
			   uint64_t first_part, const char *where, const char *moved)
{
	char a[32], b[32];
	printf("%s %s: %llu parts, %llu skipped (%s), %s of %s %s, %llu requests, %llu retries\n",
	       verb, what, (unsigned long long)(result(job, SNAP_RESULT_PARTS) - first_part),
	       (unsigned long long)result(job, SNAP_RESULT_PARTS_SKIPPED), where,
	       tool_size(a, result(job, SNAP_RESULT_BYTES_WRITTEN)),
	       tool_size(b, result(job, SNAP_RESULT_BYTES_TOTAL)), moved,
	       (unsigned long long)result(job, SNAP_RESULT_S3_REQUESTS),
	       (unsigned long long)result(job, SNAP_RESULT_S3_RETRIES));
}

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
	usage_end(f);
}

int cmd_upload_bundle(int argc, char **argv)
{
	enum { OPT_SIGV = 256, OPT_LOCATION, OPT_PART, OPT_SKIPMANIFEST };
	static const struct option opts[] = {
	    {"bucket", required_argument, NULL, 'b'},
	    {"manifest", required_argument, NULL, 'm'},
	    {"directory", required_argument, NULL, 'd'},
	    {"sigv", required_argument, NULL, OPT_SIGV},
	    {"location", required_argument, NULL, OPT_LOCATION},
	    {"part", required_argument, NULL, OPT_PART},
	    {"skipmanifest", no_argument, NULL, OPT_SKIPMANIFEST},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const int own[] = {'b', 'm', 'd', OPT_LOCATION};
	static const int sp[] = {SNAP_SPARAM_S3_BUCKET, SNAP_SPARAM_MANIFEST,
				 SNAP_SPARAM_SOURCE_DIR, SNAP_SPARAM_S3_LOCATION};
	static const char *const names[] = {"-b BUCKET", "-m MANIFEST"};
	const char *v[] = {NULL, NULL, NULL, NULL}; /* as own and sp */
	long part = 0;
	bool skip_manifest = false;
	struct tool_args args;
	int c;
	tool_args_init(&args, S3_SHARED | TOOL_SHARED_BATCH, "b:m:d:h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		int i = slot(own, 4, c);
		if (i >= 0) {
			v[i] = optarg;
			continue;
		}
		switch (c) {
		case OPT_SIGV:
			if (strcmp(optarg, "4") && strcasecmp(optarg, "v4")) {
				tool_error(
				    "invalid --sigv '%s': only signature version 4 is supported",
				    optarg);
				return TOOL_EXIT_USAGE;
			}
			break;
		case OPT_PART:
			if (!tool_parse_int(optarg, 0, 1000000, &part)) {
				tool_error("invalid --part '%s': want a part number", optarg);
				return TOOL_EXIT_USAGE;
			}
			break;
		case OPT_SKIPMANIFEST:
			skip_manifest = true;
			break;
		default:
			return tool_getopt_other(c, upload_usage, NULL);
		}
	}
	if (!tool_args_complete(argc, argv, upload_usage, 2, names, v))
		return TOOL_EXIT_USAGE;
	tool_log_setup(args.debug);
	struct snap_job *job = tool_job_make(SNAP_JOB_UPLOAD_BUNDLE, &args, 4, sp, v);
	if (!job)
		return TOOL_EXIT_FAILURE;
	int r = snap_job_set_param(job, SNAP_PARAM_FIRST_PART, part);
	if (r >= 0)
		r = snap_job_set_param(job, SNAP_PARAM_SKIP_MANIFEST, skip_manifest);
	if (r >= 0)
		r = tool_run_job(job, args.progress, "upload-bundle");
	if (r >= 0) {
		const char *url = snap_job_result_string(job, SNAP_RESULT_OBJECT_URL);
		print_transfer(job, "uploaded", url ? url : "the parts (no manifest)",
			       (uint64_t)part, "already in the bucket", "sent");
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
	usage_end(f);
}

int cmd_download_bundle(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"bucket", required_argument, NULL, 'b'},	{"prefix", required_argument, NULL, 'p'},
	    {"manifest", required_argument, NULL, 'm'}, {"directory", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},		{NULL, 0, NULL, 0},
	};
	static const int own[] = {'b', 'p', 'm', 'd'};
	static const int sp[] = {SNAP_SPARAM_S3_BUCKET, SNAP_SPARAM_PREFIX, SNAP_SPARAM_MANIFEST,
				 SNAP_SPARAM_OUTPUT_DIR};
	static const char *const names[] = {"-b BUCKET"};
	const char *v[] = {NULL, NULL, NULL, NULL}; /* as own and sp */
	struct tool_args args;
	int c;
	tool_args_init(&args, S3_SHARED | TOOL_SHARED_PRIVATEKEY, "b:p:m:d:h", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		int i = slot(own, 4, c);
		if (i < 0)
			return tool_getopt_other(c, download_usage, NULL);
		v[i] = optarg;
	}
	if (!tool_args_complete(argc, argv, download_usage, 1, names, v))
		return TOOL_EXIT_USAGE;
	tool_log_setup(args.debug);
	struct snap_job *job = tool_job_make(SNAP_JOB_DOWNLOAD_BUNDLE, &args, 4, sp, v);
	if (!job)
		return TOOL_EXIT_FAILURE;
	int r = tool_run_job(job, args.progress, "download-bundle");
	if (r >= 0)
		print_transfer(job, "downloaded",
			       snap_job_result_string(job, SNAP_RESULT_MANIFEST_PATH), 0,
			       "already there", "received");
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
	usage_end(f);
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
	enum { OPT_CLEAR = 256 };
	static const struct option opts[] = {
	    {"bucket", required_argument, NULL, 'b'},
	    {"prefix", required_argument, NULL, 'p'},
	    {"manifest", required_argument, NULL, 'm'},
	    {"clear", no_argument, NULL, OPT_CLEAR},
	    {"yes", no_argument, NULL, 'y'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const int own[] = {'b', 'p', 'm'};
	static const int sp[] = {SNAP_SPARAM_S3_BUCKET, SNAP_SPARAM_PREFIX, SNAP_SPARAM_MANIFEST};
	static const char *const names[] = {"-b BUCKET"};
	const char *v[] = {NULL, NULL, NULL}; /* as own and sp */
	bool clear = false, yes = false;
	struct tool_args args;
	int c;
	tool_args_init(&args, S3_SHARED, "b:p:m:yh", opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		int i = slot(own, 3, c);
		if (i >= 0)
			v[i] = optarg;
		else if (c == OPT_CLEAR)
			clear = true;
		else if (c == 'y')
			yes = true;
		else
			return tool_getopt_other(c, delete_usage, NULL);
	}
	if (!tool_args_complete(argc, argv, delete_usage, 1, names, v))
		return TOOL_EXIT_USAGE;
	const char *name = v[2] ? v[2] : v[1]; /* -m, else -p */
	char what[1024];
	snprintf(what, sizeof(what), "the bundle %s in s3://%s (its parts, then its manifest)%s",
		 name ? name : "image", v[0], clear ? ", and the bucket if it is then empty" : "");
	if (!yes && !isatty(STDIN_FILENO)) {
		tool_error("refusing to delete without -y: standard input is not a terminal");
		return TOOL_EXIT_USAGE;
	}
	if (!yes && !confirm(what)) {
		fprintf(stderr, "nothing deleted\n");
		return TOOL_EXIT_FAILURE;
	}
	tool_log_setup(args.debug);
	struct snap_job *job = tool_job_make(SNAP_JOB_DELETE_BUNDLE, &args, 3, sp, v);
	if (!job)
		return TOOL_EXIT_FAILURE;
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
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct tool_args args;
	int c;
	tool_args_init(&args, TOOL_SHARED_S3 | TOOL_SHARED_DEBUG, "h", opts);
	if ((c = tool_getopt(&args, argc, argv)) != -1) /* it takes no option of its own */
		return tool_getopt_other(c, abort_usage, NULL);
	if (optind + 1 != argc) {
		if (optind == argc)
			tool_error("missing the s3://BUCKET/KEY to abort");
		else
			tool_error("unexpected argument '%s'", argv[optind + 1]);
		abort_usage(stderr);
		return TOOL_EXIT_USAGE;
	}
	const char *url = argv[optind];
	if (strncmp(url, "s3://", 5)) {
		tool_error("not an s3://BUCKET/KEY URL: %s", url);
		return TOOL_EXIT_USAGE;
	}
	tool_log_setup(args.debug);
	static const int sp[] = {SNAP_SPARAM_OUTPUT};
	struct snap_job *job = tool_job_make(SNAP_JOB_S3_ABORT, &args, 1, sp, &url);
	if (!job)
		return TOOL_EXIT_FAILURE;
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
