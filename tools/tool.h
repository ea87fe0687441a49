/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tool.h - shared by the snapbundle subcommands (tools/cmd-*.c). Public API only: the command
 * is a frontend like any other, which keeps the library honest as a backend.
 */
#ifndef SNAP_TOOL_H
#define SNAP_TOOL_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "snapbundle.h"

/*
 * The exit codes of every command (docs/cli.md, README.md): one table, whatever the command.
 * A verification failure is a digest, tag or signature that does not match (the library's
 * -EBADMSG); a job cancelled by SIGINT or SIGTERM dies of that signal (128 + its number).
 */
enum tool_exit {
	TOOL_EXIT_OK = 0,
	TOOL_EXIT_FAILURE = 1,
	TOOL_EXIT_USAGE = 2,
	TOOL_EXIT_VERIFY = 3,
	TOOL_EXIT_SIGINT = 130,
	TOOL_EXIT_SIGTERM = 143,
};

/* The exit code of a job's result: 0 or -errno from snap_job_run (or a snap_ call). */
int tool_exit_of(int r);
/* "ok", "failure", "usage", "verification-failed", "interrupted" (the JSON exit_class). */
const char *tool_exit_class(int code);

enum tool_progress_mode {
	TOOL_PROGRESS_NONE = 0,
	TOOL_PROGRESS_AUTO = 1, /* a bar on a terminal, nothing otherwise */
	TOOL_PROGRESS_BAR = 2,
	TOOL_PROGRESS_JSON = 3, /* one JSON object per line on stderr, for frontends */
};

/* Parses the value of --progress[=bar|json|none]; NULL means "auto". -1 when invalid. */
int tool_progress_mode_parse(const char *s);

/* "snapbundle: <msg>" on stderr (lowercase, no trailing period). */
void tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tool_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * --json (docs/json.md): one JSON document on stdout with the result. The command's human
 * lines still written with printf go to stderr then (standard output is moved there by
 * tool_json_start), and tool_json_emit() writes the document to the real standard output:
 * the common members (command, version, exit_code, exit_class, errors, warnings) and the
 * members the command added with tool_result_*(). tool_run_job adds the job's results.
 */
/* Called once by main before the command runs, with the command's name. */
void tool_json_start(const char *command);
bool tool_json_enabled(void);
/* A command whose data goes to standard output (store -o -): the document goes to stderr. */
void tool_json_data_on_stdout(void);
/* Writes the document once (later calls do nothing); code is the exit code. */
void tool_json_emit(int code);
/* s as a JSON string to f; NULL is null; bytes that are not UTF-8 become U+FFFD. */
void tool_json_string(FILE *f, const char *s);
/* Members of the result document; a key given twice keeps its last value. */
void tool_result_string(const char *key, const char *value);
void tool_result_u64(const char *key, unsigned long long value);
void tool_result_double(const char *key, double value);
void tool_result_bool(const char *key, bool value);
/* json: one complete JSON value (object, array, ...), copied as it is */
void tool_result_raw(const char *key, const char *json);
/* Every member of the JSON object text obj (a command that builds its document itself). */
void tool_result_members(const char *obj);
/* The job's results (SNAP_RESULT_*) as members; tool_run_job calls it after every run. */
void tool_result_job(const struct snap_job *job);

/* Routes library log lines to stderr; debug lines only when debug. */
void tool_log_setup(bool debug);

/* Runs job with SIGINT/SIGTERM cancelling it and progress shown as mode. On failure prints
 * "<what> failed: <detail>" and returns the negative errno; cancelled by a signal, the process
 * dies of it (the JSON document written first). tool_exit_of() gives the exit code. */
int tool_run_job(struct snap_job *job, int progress_mode, const char *what);

/* Human sizes: "1.5 GiB". buf must hold 32 bytes. */
const char *tool_size(char *buf, unsigned long long bytes);
/* s made safe for a terminal: control characters, backslashes and bytes that are not UTF-8
 * written as \xNN (\\); for strings from untrusted images. The result lives until 16 more
 * calls; NULL gives NULL. */
const char *tool_safe(const char *s);
/* Whether path is a regular file that starts like a classic bundle's manifest (XML), so that a
 * command meant for disks or .bin images can say what to use instead. */
bool tool_is_manifest(const char *path);

/* A decimal integer in [lo, hi], nothing else on the string. */
bool tool_parse_int(const char *s, long lo, long hi, long *ret);

/* Parses "10M", "4G", "4096", "1T" into bytes; -1 when invalid. */
long long tool_parse_size(const char *s);

/*
 * The options several commands share, each parsed one way in one place (tool_getopt; the table
 * is in tool-common.c). A command names the ones it takes with TOOL_SHARED_* bits, handles its
 * own options as before, and finds the shared ones' values in struct tool_args.
 */
enum {
	TOOL_SHARED_THREADS = 1 << 0,	      /* --threads N: 0 (every CPU) to TOOL_THREADS_MAX */
	TOOL_SHARED_PROGRESS = 1 << 1,	      /* --progress[=bar|json|none] */
	TOOL_SHARED_DEBUG = 1 << 2,	      /* --debug: debug log lines from here on */
	TOOL_SHARED_FORCE = 1 << 3,	      /* --force */
	TOOL_SHARED_NO_DIRECT = 1 << 4,	      /* --no-direct */
	TOOL_SHARED_KEY = 1 << 5,	      /* -k, --key KEY: a store image's recipient key */
	TOOL_SHARED_PRIVATEKEY = 1 << 6,      /* -k, --privatekey KEY: a bundle's user key */
	TOOL_SHARED_PASSPHRASE_FILE = 1 << 7, /* --passphrase-file FILE (its first line) */
	TOOL_SHARED_SIGNER = 1 << 8,	      /* --signer CERT */
	/* S3: --endpoint-url URL (also --url), --region R, --access-key K, --secret-key S,
	 * --session-token T, --profile P, --connections N, --retry[=N] (also "--retry N"),
	 * --acl ACL; unset ones are left to the AWS chain (environment, ~/.aws, metadata) */
	TOOL_SHARED_S3 = 1 << 9,
	/* with TOOL_SHARED_S3, ec2-ami-tools' short names: -a ACCESS, -s SECRET, -t TOKEN
	 * (also --delegation-token) */
	TOOL_SHARED_S3_SHORT = 1 << 10,
	TOOL_SHARED_CERT = 1 << 11,  /* -c, --cert CERT: the user's X.509 certificate */
	TOOL_SHARED_BATCH = 1 << 12, /* --batch: accepted, nothing is ever asked */
	/* a manifest's EC2 side: --ec2cert CERT, --kernel ID, --ramdisk ID */
	TOOL_SHARED_EC2 = 1 << 13,
	/* what bundle and bundle-vol make a bundle with: -u, --user ACCOUNT, -r, --arch ARCH,
	 * -d, --destination DIR|s3://..., -p, --prefix NAME, -B, --block-device-mapping MAPS (the
	 * last one given, comma-separated), --productcodes CODES, --level N (0-3), --part-size SIZE
	 * (16 bytes at least), --no-size-checks; tool_bundle_check checks them */
	TOOL_SHARED_BUNDLE = 1 << 14,
};

/* The most --threads a command accepts: what the library caps SNAP_PARAM_THREADS at. */
#define TOOL_THREADS_MAX 1024

/* tool_getopt's answer for a shared option with an invalid value (the reason is printed): the
 * command exits with TOOL_EXIT_USAGE. Every command also takes --json (tool_json_enabled) and
 * --version (printed by tool_getopt, which then exits with 0). */
#define TOOL_GETOPT_INVALID (-2)

struct tool_args {
	unsigned shared; /* TOOL_SHARED_* */
	long threads;	 /* 0: every CPU */
	int progress;	 /* TOOL_PROGRESS_*, default AUTO */
	bool debug, force, no_direct;
	const char *key;  /* -k: --key or --privatekey */
	char *passphrase; /* read from --passphrase-file */
	const char *signer;
	/* TOOL_SHARED_S3: NULL or -1 when not given */
	const char *s3_endpoint, *s3_region, *s3_access_key, *s3_secret_key, *s3_session_token;
	const char *s3_profile, *s3_acl;
	long s3_connections, s3_retries;
	const char *cert;			/* TOOL_SHARED_CERT */
	const char *ec2cert, *kernel, *ramdisk; /* TOOL_SHARED_EC2 */
	/* TOOL_SHARED_BUNDLE: NULL, -1 (level) or 0 (part_size) when not given */
	const char *user, *arch, *destination, *prefix, *bdm, *productcodes;
	long level;
	long long part_size;
	bool no_size_checks;
	/* private to tool_getopt */
	char *ec2cert_default; /* the EC2 certificate tool_bundle_check found */
	struct option longopts[52];
	char shortopts[48];
};

/* Sets up a's parser: the command's own short and long options plus the shared ones it takes
 * (shared), and every shared value at its default. Resets getopt (optind = 1). */
void tool_args_init(struct tool_args *a, unsigned shared, const char *shortopts,
		    const struct option *own);

/* getopt_long over the command's and the shared options: returns the command's own options as
 * getopt_long does (and -1 at the end, '?' for an unknown one), handles every shared option
 * itself, and returns TOOL_GETOPT_INVALID after printing why a shared option's value is not
 * valid. */
int tool_getopt(struct tool_args *a, int argc, char **argv);

/* Sets the job parameters of the shared options the command takes (threads, force, no-direct,
 * key, passphrase, signer, the S3 ones, the certificates, the bundle ones: --destination
 * defaults to /tmp); the first negative errno, or 0. */
int tool_args_apply(const struct tool_args *a, struct snap_job *job);

void tool_args_free(struct tool_args *a);

/*
 * tool-command.c: what several commands do around tool_getopt, in one place.
 */
/* A tool_getopt answer the command does not take itself: -h (and --help given as 'h') prints
 * usage on standard output and gives TOOL_EXIT_OK; an invalid shared value (already said) gives
 * TOOL_EXIT_USAGE, and so does an unknown option, after usage on standard error, or with command
 * only "Try 'snapbundle COMMAND --help'". */
int tool_getopt_other(int c, void (*usage)(FILE *f), const char *command);

/* After the options: false, after saying why, when an operand is left ("unexpected argument
 * 'X'") or one of the n mandatory options is not given, given[i] NULL ("missing mandatory option
 * NAMES[i]" for the first one, then usage on standard error). */
bool tool_args_complete(int argc, char **argv, void (*usage)(FILE *f), size_t n,
			const char *const *names, const char *const *given);

/* A job of kind with the n strings values[i] as sparams[i] (NULL ones skipped) and the shared
 * options of a (tool_args_apply); NULL after saying why. */
struct snap_job *tool_job_make(enum snap_job_kind kind, const struct tool_args *a, size_t n,
			       const int *sparams, const char *const *values);

/* Adds each comma-separated item of list to the job's sparam; a negative errno, or 0. */
int tool_job_add_list(struct snap_job *job, int sparam, const char *list);

/* The EC2 certificate ec2-ami-tools install for region (NULL: cert-ec2.pem; us-gov-*:
 * cert-ec2-gov.pem; cn-north-1: cert-ec2-cn-north-1.pem) under $EC2_AMITOOL_HOME, else
 * $EC2_HOME, in etc/ec2/amitools/, when readable (free it); NULL otherwise. */
char *tool_default_ec2cert(const char *region);

/* The checks of bundle's and bundle-vol's options (TOOL_SHARED_CERT, _PRIVATEKEY, _EC2,
 * _BUNDLE) once parsed, in this order: -c, -k and -u given ("missing mandatory parameter");
 * --arch i386, x86_64 or arm64, this machine's when not given; with local_destination, a -d
 * that is not s3:// an existing directory; the EC2 certificate, tool_default_ec2cert's when not
 * given. false after saying why: the command exits with TOOL_EXIT_USAGE. */
bool tool_bundle_check(struct tool_args *a, const char *command, bool local_destination);

/* "snapbundle VERSION", what `snapbundle --version` and every `COMMAND --version` print. */
void tool_print_version(void);

/* Subcommands: each returns the process exit code (enum tool_exit). */
int cmd_inspect(int argc, char **argv);
int cmd_bundle(int argc, char **argv);
int cmd_bundle_vol(int argc, char **argv);
int cmd_unbundle(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_inspect_store(int argc, char **argv); /* inspect IMAGE.bin */
int cmd_verify_store(int argc, char **argv);  /* verify IMAGE.bin */
int cmd_rekey(int argc, char **argv);
/* cmd-s3.c: ec2-upload-bundle, ec2-download-bundle and ec2-delete-bundle drop-ins, and abort */
int cmd_upload_bundle(int argc, char **argv);
int cmd_download_bundle(int argc, char **argv);
int cmd_delete_bundle(int argc, char **argv);
int cmd_abort(int argc, char **argv);
/* cmd-migrate.c: ec2-migrate-manifest and ec2-migrate-bundle drop-ins */
int cmd_migrate_manifest(int argc, char **argv);
int cmd_migrate_bundle(int argc, char **argv);
/* The help lines of the S3 options (TOOL_SHARED_S3), for a command's usage; short: with -a, -s,
 * -t. */
void tool_s3_usage(FILE *f, bool short_names);

/* The help lines every command shares (--json, --version, --help, the exit codes), for the end
 * of a command's usage. */
void tool_common_usage(FILE *f);

/* The first line of path (without its newline) in *ret (free it); -1 after printing why. */
int tool_read_passphrase(const char *path, char **ret);

#endif
