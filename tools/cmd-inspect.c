// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-inspect.c - `snapbundle inspect SOURCE`: what is on a disk and what a bundle would read.
 *
 * The report is gathered once into struct report (public API only) and then printed either as
 * text or as one JSON object (schema in docs/inspect-json.md), so both always say the same.
 * Other kinds of input (store images) get their own report from one dispatch point,
 * inspect_path().
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

struct inspect_opts {
	bool json;
	const char *cert; /* a manifest's signature checked with it */
	bool extents;
	bool keep_unpartitioned;
	bool no_fs;
	bool min_gap_set;
	int64_t min_gap; /* -1: never merge */
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: snapbundle inspect SOURCE [OPTIONS]\n"
	    "       snapbundle inspect IMAGE.bin|s3://BUCKET/KEY [OPTIONS]  (see inspect "
	    "IMAGE.bin --help)\n"
	    "       snapbundle inspect NAME.manifest.xml|s3://BUCKET/NAME.manifest.xml [-c CERT]\n"
	    "\n"
	    "Shows a disk or disk image: size, sector sizes, partition table, partitions and\n"
	    "their filesystems, and the extent map a bundle would read. A .bin store image\n"
	    "gets its own report; a classic bundle's manifest its fields (no part is read;\n"
	    "-c CERT also checks its signature). --json says which it was (\"kind\").\n"
	    "\n"
	    "  -c, --cert PATH        a manifest's signature checked with this certificate\n"
	    "  --extents              list every extent of the map\n"
	    "  --keep-unpartitioned   keep space outside every partition as data\n"
	    "  --no-fs                do not skip filesystem free space\n"
	    "  --min-gap SIZE         merge data extents closer than SIZE (default 64K;\n"
	    "                         0 never merges)\n"
	    "  --debug                debug log lines on stderr\n");
	tool_common_usage(f);
}

/* ---------------------------------------------------------------------------------------- */
/* JSON output                                                                               */

static const char *bool_str(int v)
{
	return v ? "true" : "false";
}

static void json_partition(FILE *f, const struct snap_partition_info *p)
{
	fprintf(f, "{\"number\": %u, \"start\": %llu, \"size\": %llu, \"type\": ", p->number,
		(unsigned long long)p->start, (unsigned long long)p->size);
	tool_json_string(f, p->type);
	fputs(", \"type_name\": ", f);
	tool_json_string(f, p->type_name);
	fputs(", \"name\": ", f);
	tool_json_string(f, p->name);
	fputs(", \"uuid\": ", f);
	tool_json_string(f, p->uuid);
	fprintf(f, ", \"bootable\": %s, \"container\": %s, \"fs_type\": ", bool_str(p->bootable),
		bool_str(p->container));
	tool_json_string(f, p->fs_type);
	fputs(", \"fs_label\": ", f);
	tool_json_string(f, p->fs_label);
	fputs(", \"fs_uuid\": ", f);
	tool_json_string(f, p->fs_uuid);
	fprintf(f, ", \"fs_mapped\": %s, \"fs_used_bytes\": %llu, \"fs_skipped_bytes\": %llu",
		bool_str(p->fs_mapped), (unsigned long long)p->fs_used_bytes,
		(unsigned long long)p->fs_skipped);
	fputs(", \"fs_note\": ", f);
	tool_json_string(f, p->fs_note);
	fputc('}', f);
}

static void json_summary(FILE *f, const struct snap_map_summary *s)
{
	fprintf(f, "{\"extents\": %llu, \"bytes\": {", (unsigned long long)s->extents);
	for (int k = 0; k < 3; k++)
		fprintf(f, "%s\"%s\": %llu", k ? ", " : "", snap_extent_kind_name(k),
			(unsigned long long)s->bytes[k]);
	fputs("}, \"by_layer\": {", f);
	for (int k = 0; k < 3; k++) {
		fprintf(f, "%s\"%s\": {", k ? ", " : "", snap_extent_kind_name(k));
		bool first = true;
		for (int l = 0; l < SNAP_LAYER_COUNT; l++) {
			if (!s->by_layer[k][l])
				continue;
			fprintf(f, "%s\"%s\": %llu", first ? "" : ", ", snap_extent_layer_name(l),
				(unsigned long long)s->by_layer[k][l]);
			first = false;
		}
		fputc('}', f);
	}
	fputs("}}", f);
}

static int print_json(FILE *f, const char *path, const struct snap_disk *d,
		      const struct inspect_opts *o)
{
	struct snap_map_summary s = {.struct_size = sizeof(s)};
	snap_disk_summary(d, &s);

	fputs("{\"source\": ", f);
	tool_json_string(f, path);
	fprintf(f, ", \"size\": %llu, \"logical_sector_size\": %u, \"physical_sector_size\": %u",
		(unsigned long long)snap_disk_size(d), snap_disk_logical_sector_size(d),
		snap_disk_physical_sector_size(d));
	fprintf(f, ", \"block_device\": %s, \"partition_table\": ",
		bool_str(snap_disk_is_block_device(d)));
	if (snap_disk_ptable_type(d)) {
		fputs("{\"type\": ", f);
		tool_json_string(f, snap_disk_ptable_type(d));
		fputs(", \"id\": ", f);
		tool_json_string(f, snap_disk_ptable_id(d));
		fputc('}', f);
	} else {
		fputs("null", f);
	}
	fputs(",\n \"partitions\": [", f);
	for (size_t i = 0; i < snap_disk_partition_count(d); i++) {
		fputs(i ? ",\n  " : "\n  ", f);
		json_partition(f, snap_disk_partition(d, i));
	}
	fputs("],\n \"map\": ", f);
	json_summary(f, &s);
	if (o->extents) {
		fputs(",\n \"extents\": [", f);
		for (size_t i = 0; i < snap_disk_extent_count(d); i++) {
			struct snap_extent e = {.struct_size = sizeof(e)};
			if (snap_disk_extent(d, i, &e) < 0)
				break;
			fprintf(f,
				"%s{\"offset\": %llu, \"length\": %llu, \"kind\": \"%s\", "
				"\"layer\": \"%s\", \"partition\": %u}",
				i ? ",\n  " : "\n  ", (unsigned long long)e.offset,
				(unsigned long long)e.length, snap_extent_kind_name(e.kind),
				snap_extent_layer_name(e.layer), e.partition);
		}
		fputc(']', f);
	}
	fputs("}\n", f);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Text output                                                                               */

static void print_layers(FILE *f, const struct snap_map_summary *s, int kind)
{
	char b[32];
	bool first = true;
	for (int l = 0; l < SNAP_LAYER_COUNT; l++) {
		if (!s->by_layer[kind][l])
			continue;
		fprintf(f, "%s%s %s", first ? " (" : ", ", snap_extent_layer_name(l),
			tool_size(b, s->by_layer[kind][l]));
		first = false;
	}
	if (!first)
		fputc(')', f);
	fputc('\n', f);
}

static void print_text(FILE *f, const char *path, const struct snap_disk *d,
		       const struct inspect_opts *o)
{
	char b1[32], b2[32];
	struct snap_map_summary s = {.struct_size = sizeof(s)};
	snap_disk_summary(d, &s);

	fprintf(f, "source:           %s\n", path);
	fprintf(f, "size:             %llu bytes (%s)\n", (unsigned long long)snap_disk_size(d),
		tool_size(b1, snap_disk_size(d)));
	fprintf(f, "sector size:      %u logical, %u physical\n", snap_disk_logical_sector_size(d),
		snap_disk_physical_sector_size(d));
	fprintf(f, "block device:     %s\n", snap_disk_is_block_device(d) ? "yes" : "no");
	if (snap_disk_ptable_type(d))
		fprintf(f, "partition table:  %s, id %s\n", snap_disk_ptable_type(d),
			snap_disk_ptable_id(d) ? snap_disk_ptable_id(d) : "none");
	else
		fprintf(f, "partition table:  none\n");

	for (size_t i = 0; i < snap_disk_partition_count(d); i++) {
		const struct snap_partition_info *p = snap_disk_partition(d, i);
		if (p->number)
			fprintf(f, "\npartition %u:%s%s\n", p->number,
				p->container ? " (extended)" : "",
				p->bootable ? " (bootable)" : "");
		else
			fprintf(f, "\nwhole disk:\n");
		fprintf(f, "  start:          %llu (%s)\n", (unsigned long long)p->start,
			tool_size(b1, p->start));
		fprintf(f, "  size:           %llu (%s)\n", (unsigned long long)p->size,
			tool_size(b1, p->size));
		if (p->type)
			fprintf(f, "  type:           %s%s%s%s\n", p->type,
				p->type_name ? " (" : "", p->type_name ? p->type_name : "",
				p->type_name ? ")" : "");
		if (p->name)
			fprintf(f, "  name:           %s\n", p->name);
		if (p->uuid)
			fprintf(f, "  uuid:           %s\n", p->uuid);
		if (p->fs_type) {
			fprintf(f, "  filesystem:     %s", p->fs_type);
			if (p->fs_label)
				fprintf(f, ", label \"%s\"", p->fs_label);
			if (p->fs_uuid)
				fprintf(f, ", uuid %s", p->fs_uuid);
			fputc('\n', f);
		}
		if (p->fs_mapped)
			/* the two overlap: an empty journal is in use and skipped */
			fprintf(f,
				"  skipped:        %s (free space and empty metadata); the "
				"filesystem reports %s in use\n",
				tool_size(b1, p->fs_skipped), tool_size(b2, p->fs_used_bytes));
		if (p->fs_note)
			fprintf(f, "  note:           %s\n", p->fs_note);
	}

	fprintf(f, "\nmap:              %llu extents\n", (unsigned long long)s.extents);
	for (int k = 0; k < 3; k++) {
		fprintf(f, "  %-6s          %llu bytes (%s)", snap_extent_kind_name(k),
			(unsigned long long)s.bytes[k], tool_size(b1, s.bytes[k]));
		print_layers(f, &s, k);
	}
	if (!o->extents)
		return;
	fprintf(f, "\nextents:\n  %-16s %-16s %-7s %-9s %s\n", "offset", "length", "kind", "layer",
		"partition");
	for (size_t i = 0; i < snap_disk_extent_count(d); i++) {
		struct snap_extent e = {.struct_size = sizeof(e)};
		if (snap_disk_extent(d, i, &e) < 0)
			break;
		fprintf(f, "  %-16llu %-16llu %-7s %-9s %u\n", (unsigned long long)e.offset,
			(unsigned long long)e.length, snap_extent_kind_name(e.kind),
			snap_extent_layer_name(e.layer), e.partition);
	}
}

/* ---------------------------------------------------------------------------------------- */

static int inspect_disk(const char *path, const struct inspect_opts *o)
{
	struct snap_disk *d = NULL;
	int r = snap_disk_new(&d);
	if (r < 0) {
		tool_error("cannot inspect %s: %s", path, snap_strerror(r));
		return 1;
	}
	if (o->keep_unpartitioned)
		snap_disk_set_param(d, SNAP_DISK_KEEP_UNPARTITIONED, 1);
	if (o->no_fs)
		snap_disk_set_param(d, SNAP_DISK_FS_SKIP, 0);
	if (o->min_gap_set)
		snap_disk_set_param(d, SNAP_DISK_MIN_GAP, o->min_gap);
	/* metadata reads only: buffered I/O is enough and works on every filesystem */
	snap_disk_set_param(d, SNAP_DISK_NO_DIRECT, 1);
	r = snap_disk_open(d, path);
	if (r < 0) {
		const char *detail = snap_disk_error(d);
		if (*detail)
			tool_error("%s", detail);
		else
			tool_error("cannot inspect %s: %s", path, snap_strerror(r));
		snap_disk_free(d);
		return 1;
	}
	if (o->json) {
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		if (!f) {
			tool_error("cannot write the report: out of memory");
			snap_disk_free(d);
			return 1;
		}
		print_json(f, path, d, o);
		if (fclose(f) == 0) {
			tool_result_string("kind", "disk");
			tool_result_members(buf);
		}
		free(buf);
	} else {
		print_text(stdout, path, d, o);
	}
	snap_disk_free(d);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		tool_error("cannot write the report: output error");
		return 1;
	}
	return 0;
}

/* A classic bundle's manifest: its fields, read by a verify job that stops at the manifest
 * (SNAP_PARAM_MANIFEST_ONLY): no part is read. */
static int inspect_manifest(const char *path, const struct inspect_opts *o,
			    const struct tool_args *args)
{
	struct snap_job *job;
	int r = snap_job_new(SNAP_JOB_VERIFY_BUNDLE, &job);
	if (r < 0) {
		tool_error("cannot create the job: %s", snap_strerror(r));
		return TOOL_EXIT_FAILURE;
	}
	r = snap_job_set_string(job, SNAP_SPARAM_MANIFEST, path);
	if (r >= 0)
		r = snap_job_set_param(job, SNAP_PARAM_MANIFEST_ONLY, 1);
	if (r >= 0 && o->cert)
		r = snap_job_set_string(job, SNAP_SPARAM_CERT, o->cert);
	if (r >= 0)
		r = tool_args_apply(args, job);
	if (r < 0) {
		tool_error("cannot set up the job: %s", snap_strerror(r));
		snap_job_free(job);
		return TOOL_EXIT_FAILURE;
	}
	tool_result_string("kind", "bundle-manifest");
	tool_result_string("source", path);
	tool_result_bool("signature_checked", o->cert != NULL);
	r = tool_run_job(job, TOOL_PROGRESS_NONE, "inspect");
	const char *info = r >= 0 ? snap_job_result_string(job, SNAP_RESULT_MANIFEST_INFO) : NULL;
	if (info && o->json) {
		tool_result_raw("manifest", info);
	} else if (info) {
		uint64_t parts = 0;
		snap_job_result_u64(job, SNAP_RESULT_PARTS, &parts);
		printf("manifest:     %s\n", tool_safe(path));
		printf("kind:         classic bundle manifest (parts not read; check them with "
		       "snapbundle verify -m)\n");
		printf("parts:        %llu\n", (unsigned long long)parts);
		printf("digest:       %s\n", snap_job_result_string(job, SNAP_RESULT_DIGEST));
		printf("signature:    %s\n", o->cert ? "verified" : "not checked (give -c CERT)");
		printf("fields:       %s\n", tool_safe(info));
	}
	snap_job_free(job);
	return tool_exit_of(r);
}

/* Whether path names a classic bundle's manifest: a local XML file, or an S3 key ending in
 * .manifest.xml. */
static bool is_manifest(const char *path)
{
	size_t n = strlen(path), k = strlen(".manifest.xml");
	if (!strncmp(path, "s3://", 5))
		return n > k && !strcmp(path + n - k, ".manifest.xml");
	return tool_is_manifest(path);
}

int cmd_inspect(int argc, char **argv)
{
	enum { OPT_EXTENTS = 256, OPT_KEEP, OPT_NO_FS, OPT_MIN_GAP };
	static const struct option longopts[] = {
	    {"cert", required_argument, NULL, 'c'},
	    {"extents", no_argument, NULL, OPT_EXTENTS},
	    {"keep-unpartitioned", no_argument, NULL, OPT_KEEP},
	    {"no-fs", no_argument, NULL, OPT_NO_FS},
	    {"min-gap", required_argument, NULL, OPT_MIN_GAP},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct inspect_opts o = {0};
	struct tool_args args;
	int c;

	/* the one place that decides what kind of input this is: a manifest (local XML, or an
	 * S3 key ending in .manifest.xml), a store image (its magic, or any other S3 object),
	 * else a disk */
	bool manifest = false;
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] != '-' && is_manifest(argv[i])) {
			manifest = true;
			break;
		}
		if (argv[i][0] != '-' && snap_store_image_probe(argv[i]) == 1)
			return cmd_inspect_store(argc, argv);
		if (!strncmp(argv[i], "s3://", 5))
			return cmd_inspect_store(argc, argv);
	}

	o.json = tool_json_enabled();
	tool_args_init(&args, TOOL_SHARED_DEBUG | (manifest ? TOOL_SHARED_S3 : 0), "c:h", longopts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case 'c':
			if (!manifest) {
				tool_error("-c CERT checks a manifest's signature: %s is not a "
					   "manifest",
					   optind < argc ? argv[optind] : "the source");
				return TOOL_EXIT_USAGE;
			}
			o.cert = optarg;
			break;
		case OPT_EXTENTS:
			o.extents = true;
			break;
		case OPT_KEEP:
			o.keep_unpartitioned = true;
			break;
		case OPT_NO_FS:
			o.no_fs = true;
			break;
		case OPT_MIN_GAP: {
			long long v = tool_parse_size(optarg);
			if (v < 0) {
				tool_error("invalid --min-gap '%s': expected a size like 64K",
					   optarg);
				return 2;
			}
			o.min_gap_set = true;
			o.min_gap = v == 0 ? -1 : v;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		case TOOL_GETOPT_INVALID:
			return TOOL_EXIT_USAGE;
		default:
			usage(stderr);
			return TOOL_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		tool_error(optind >= argc ? "inspect needs a SOURCE" : "inspect takes one SOURCE");
		usage(stderr);
		return 2;
	}
	tool_log_setup(args.debug);
	if (manifest)
		return inspect_manifest(argv[optind], &o, &args);
	return inspect_disk(argv[optind], &o);
}
