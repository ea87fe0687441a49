// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-verify.c - `snapbundle verify`: every check of an unbundle or restore, nothing written.
 *
 * What is verified is chosen in one place, cmd_verify(), before any option is parsed (each kind
 * has options of its own): `-m MANIFEST` names a classic bundle (verify_bundle, here); anything
 * else is a .bin store image or "-" (cmd_verify_store, tools/cmd-verify-store.c).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

struct verify_opts {
	const char *manifest, *cert, *src;
	struct tool_args args; /* -k, --threads, --progress, --debug */
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: snapbundle verify -m MANIFEST [-k KEY] [-c CERT] [OPTIONS]\n"
	    "       snapbundle verify IMAGE.bin|- [OPTIONS]  (a store image; see verify IMAGE.bin "
	    "--help)\n"
	    "\n"
	    "Checks a classic bundle without writing anything: the manifest, every part's\n"
	    "SHA-1, parts/@count, bundled_size, and with -c the manifest signature. With -k the\n"
	    "parts are also decrypted, inflated and read as tar, and the image digest and\n"
	    "size are checked, exactly as unbundle does.\n"
	    "\n"
	    "  -m, --manifest PATH    the bundle's manifest (.manifest.xml), or\n"
	    "                         s3://BUCKET/KEY.manifest.xml (parts fetched from beside it)\n"
	    "  -k, --privatekey PATH  the user's RSA private key (PEM): check the contents too\n"
	    "  -c, --cert PATH        the user's certificate: verify the manifest signature\n"
	    "  -s, --source DIR       directory (or s3://BUCKET/PREFIX/) holding the parts\n"
	    "                         (default: the manifest's)\n"
	    "      --threads N        worker threads (default: every CPU)\n"
	    "      --progress[=MODE]  bar, json or none (default: a bar on a terminal)\n"
	    "      --debug            debug log lines on stderr\n"
	    "\n"
	    "S3 (-m s3://...):\n");
	tool_s3_usage(f, false);
	tool_common_usage(f);
}

static int verify_bundle(const struct verify_opts *o)
{
	struct snap_job *job;
	int r = snap_job_new(SNAP_JOB_VERIFY_BUNDLE, &job);
	if (r < 0) {
		tool_error("cannot create the job: %s", snap_strerror(r));
		return 1;
	}
	r = snap_job_set_string(job, SNAP_SPARAM_MANIFEST, o->manifest);
	if (r >= 0 && o->cert)
		r = snap_job_set_string(job, SNAP_SPARAM_CERT, o->cert);
	if (r >= 0 && o->src)
		r = snap_job_set_string(job, SNAP_SPARAM_SOURCE_DIR, o->src);
	if (r >= 0)
		r = tool_args_apply(&o->args, job);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		snap_job_free(job);
		return TOOL_EXIT_FAILURE;
	}
	tool_result_string("kind", "bundle");
	tool_result_string("manifest", o->manifest);
	tool_result_bool("signature_checked", o->cert != NULL);
	tool_result_bool("contents_checked", o->args.key != NULL);
	r = tool_run_job(job, o->args.progress, "verify");
	if (r >= 0) {
		uint64_t parts = 0;
		snap_job_result_u64(job, SNAP_RESULT_PARTS, &parts);
		printf("%s: OK: %llu parts%s%s\n", o->manifest, (unsigned long long)parts,
		       o->cert ? ", signature" : "", o->args.key ? ", image digest and size" : "");
		uint64_t down = 0;
		char a[32];
		if (snap_job_result_u64(job, SNAP_RESULT_BYTES_DOWNLOADED, &down) == 0)
			printf("downloaded %s (%llu bytes)\n", tool_size(a, down),
			       (unsigned long long)down);
		if (!o->args.key)
			printf("(without -k the image inside the parts was not checked)\n");
	}
	snap_job_free(job);
	return tool_exit_of(r);
}

/* True when the arguments name a manifest (-m, -mPATH, --manifest, --manifest=PATH). */
static bool names_manifest(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--"))
			break;
		if (!strncmp(a, "-m", 2) || !strcmp(a, "--manifest") ||
		    !strncmp(a, "--manifest=", 11))
			return true;
	}
	return false;
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

int cmd_verify(int argc, char **argv)
{
	enum { OPT_HELP = 256 };
	static const struct option opts[] = {
	    {"manifest", required_argument, NULL, 'm'},
	    {"cert", required_argument, NULL, 'c'},
	    {"source", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	/* the one dispatch point */
	if (!names_manifest(argc, argv)) {
		/* verify IMAGE.bin --help is the store image's help (its own options) */
		bool image = false;
		for (int i = 1; i < argc; i++)
			image |= argv[i][0] != '-' || !strcmp(argv[i], "-");
		for (int i = 1; i < argc; i++)
			if (argv[i][0] != '-' && tool_is_manifest(argv[i])) {
				tool_error("%s is a classic bundle's manifest: give it with -m "
					   "(snapbundle verify -m %s)",
					   argv[i], argv[i]);
				return 2;
			}
		if (argc < 2 || (wants_help(argc, argv) && !image)) {
			usage(argc < 2 ? stderr : stdout);
			return argc < 2 ? 2 : 0;
		}
		return cmd_verify_store(argc, argv);
	}
	struct verify_opts o = {0};
	int c;
	tool_args_init(&o.args,
		       TOOL_SHARED_PRIVATEKEY | TOOL_SHARED_THREADS | TOOL_SHARED_PROGRESS |
			   TOOL_SHARED_DEBUG | TOOL_SHARED_S3,
		       "m:c:s:h", opts);
	while ((c = tool_getopt(&o.args, argc, argv)) != -1) {
		switch (c) {
		case 'm':
			o.manifest = optarg;
			break;
		case 'c':
			o.cert = optarg;
			break;
		case 's':
			o.src = optarg;
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
	tool_log_setup(o.args.debug);
	if (optind < argc) {
		tool_error("give either -m MANIFEST or a store image path, not both");
		return 2;
	}
	if (!o.manifest) {
		tool_error("missing mandatory option -m MANIFEST");
		usage(stderr);
		return 2;
	}
	return verify_bundle(&o);
}
