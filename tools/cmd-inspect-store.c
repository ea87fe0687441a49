// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * cmd-inspect-store.c - `snapbundle inspect IMAGE.bin`: the metadata, volumes, extents, frames
 * and sizes of a .bin store image, and the S3 object metadata an uploader sets. Reads only the
 * head, footer and index (no frame data); with a key or passphrase the metadata and index of an
 * encrypted image are authenticated too.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: snapbundle inspect IMAGE.bin|s3://BUCKET/KEY [OPTIONS]\n"
		"\n"
		"  --extents                list every extent of each volume\n"
		"  --frames                 list every frame\n"
		"  -k, --key KEY            authenticate an encrypted image with a recipient key\n"
		"  --passphrase-file FILE   ... or with its passphrase\n");
	tool_s3_usage(f, false);
	tool_common_usage(f);
}

static const char *when(char *buf, uint64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

/* Strings of the image's metadata are not authenticated without a signature or the key:
 * escaped, whatever bytes they hold (tool_safe). */
static const char *or_none(const char *s)
{
	return s ? tool_safe(s) : "-";
}

/* "k=v" list l of img as a JSON object (the first '=' splits; a later key wins). */
static void json_list(FILE *f, const struct snap_store_image *img, int l)
{
	fputc('{', f);
	size_t n = snap_store_image_list_count(img, l);
	for (size_t i = 0; i < n; i++) {
		const char *kv = snap_store_image_list(img, l, i);
		const char *eq = kv ? strchr(kv, '=') : NULL;
		char *k = eq ? strndup(kv, (size_t)(eq - kv)) : NULL;
		if (i)
			fputc(',', f);
		tool_json_string(f, k ? k : kv ? kv : "");
		fputc(':', f);
		tool_json_string(f, eq ? eq + 1 : "");
		free(k);
	}
	fputc('}', f);
}

/* The report as members of the --json document (docs/json.md, "inspect: store-image"). */
static int json_report(const char *path, const struct snap_store_image *img,
		       const struct snap_store_info *in, bool extents, bool frames)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return -1;
	fputs("{\"kind\":\"store-image\",\"source\":", f);
	tool_json_string(f, path);
	fprintf(f,
		",\"format\":{\"version\":%u,\"compat\":%u,\"incompat\":%u,\"ro_compat\":%u}"
		",\"image_uuid\":",
		in->version, in->compat, in->incompat, in->ro_compat);
	tool_json_string(f, in->image_uuid);
	const char *const names[] = {"image_id", "name",      "description",
				     "arch",	 "boot_mode", "owner"};
	const char *const vals[] = {in->image_id, in->name,	 in->description,
				    in->arch,	  in->boot_mode, in->owner};
	for (size_t i = 0; i < 6; i++) {
		fprintf(f, ",\"%s\":", names[i]);
		tool_json_string(f, vals[i]);
	}
	fprintf(f,
		",\"creation_time\":%" PRIu64 ",\"store_time\":%" PRIu64
		",\"encrypted\":%s,\"keyslots\":%" PRIu64 ",\"authenticated\":%s"
		",\"signature\":\"%s\",\"signer_key_id\":",
		in->creation_time, in->store_time, in->encrypted ? "true" : "false", in->keyslots,
		in->authenticated ? "true" : "false",
		in->signed_image     ? "valid"
		: (in->compat & 0x1) ? "invalid"
				     : "none");
	tool_json_string(f, in->signed_image ? in->signer_key_id : NULL);
	fprintf(f,
		",\"frame_size\":%u,\"size\":%" PRIu64 ",\"logical_bytes\":%" PRIu64
		",\"data_bytes\":%" PRIu64 ",\"stored_bytes\":%" PRIu64 ",\"frame_count\":%" PRIu64,
		in->frame_size, in->image_size, in->logical_bytes, in->data_bytes, in->stored_bytes,
		in->frames);
	fputs(",\"tags\":", f);
	json_list(f, img, SNAP_STORE_LIST_TAGS);
	fputs(",\"block_device_mappings\":", f);
	json_list(f, img, SNAP_STORE_LIST_BLOCK_DEVICE_MAPPINGS);
	fputs(",\"s3_metadata\":", f);
	json_list(f, img, SNAP_STORE_LIST_S3_METADATA);
	fputs(",\"volumes\":[", f);
	for (size_t v = 0; v < in->volumes; v++) {
		struct snap_store_volume_info vi = {.struct_size = sizeof(vi)};
		if (snap_store_image_volume(img, v, &vi) < 0)
			continue;
		fputs(v ? ",{\"device\":" : "{\"device\":", f);
		tool_json_string(f, vi.device);
		fprintf(f,
			",\"size\":%" PRIu64
			",\"logical_sector_size\":%u,\"physical_sector_size\":%u"
			",\"partition_table\":",
			vi.size, vi.logical_sector, vi.physical_sector);
		if (vi.ptable_type) {
			fputs("{\"type\":", f);
			tool_json_string(f, vi.ptable_type);
			fputs(",\"id\":", f);
			tool_json_string(f, vi.ptable_id);
			fputc('}', f);
		} else {
			fputs("null", f);
		}
		fprintf(f,
			",\"map\":{\"extents\":%" PRIu64 ",\"bytes\":{\"data\":%" PRIu64
			",\"zero\":%" PRIu64 ",\"unused\":%" PRIu64 "}},\"first_frame\":%" PRIu64
			",\"frames\":%" PRIu64 ",\"stored_bytes\":%" PRIu64 ",\"digest\":",
			vi.extents, vi.bytes[0], vi.bytes[1], vi.bytes[2], vi.first_frame,
			vi.frames, vi.stored_bytes);
		tool_json_string(f, vi.digest);
		fputs(",\"partitions\":[", f);
		for (size_t p = 0; p < vi.partitions; p++) {
			struct snap_partition_info pi = {.struct_size = sizeof(pi)};
			if (snap_store_image_partition(img, v, p, &pi) < 0)
				continue;
			fprintf(f,
				"%s{\"number\":%u,\"start\":%" PRIu64 ",\"size\":%" PRIu64
				",\"type\":",
				p ? "," : "", pi.number, pi.start, pi.size);
			tool_json_string(f, pi.type);
			fputs(",\"name\":", f);
			tool_json_string(f, pi.name);
			fputs(",\"fs_type\":", f);
			tool_json_string(f, pi.fs_type);
			fputc('}', f);
		}
		fputc(']', f);
		if (extents) {
			fputs(",\"extents\":[", f);
			for (size_t e = 0; e < vi.extents; e++) {
				struct snap_extent x = {.struct_size = sizeof(x)};
				if (snap_store_image_extent(img, v, e, &x) < 0)
					continue;
				fprintf(f,
					"%s{\"offset\":%" PRIu64 ",\"length\":%" PRIu64
					",\"kind\":\"%s\",\"layer\":\"%s\"}",
					e ? "," : "", x.offset, x.length,
					snap_extent_kind_name(x.kind),
					snap_extent_layer_name(x.layer));
			}
			fputc(']', f);
		}
		fputc('}', f);
	}
	fputc(']', f);
	if (frames) {
		fputs(",\"frame_index\":[", f);
		for (uint64_t i = 0; i < in->frames; i++) {
			struct snap_store_frame_info fi = {.struct_size = sizeof(fi)};
			if (snap_store_image_frame(img, i, &fi) < 0)
				continue;
			fprintf(
			    f,
			    "%s{\"index\":%" PRIu64 ",\"file_offset\":%" PRIu64
			    ",\"volume\":%" PRIu64 ",\"offset\":%" PRIu64
			    ",\"raw_len\":%u,\"stored_len\":%u,\"compressed\":%s,\"encrypted\":%s"
			    ",\"digest\":\"",
			    i ? "," : "", fi.index, fi.file_offset, fi.volume, fi.offset,
			    fi.raw_len, fi.stored_len, fi.compressed ? "true" : "false",
			    fi.encrypted ? "true" : "false");
			for (int k = 0; k < 32; k++)
				fprintf(f, "%02x", fi.digest[k]);
			fputs("\"}", f);
		}
		fputc(']', f);
	}
	fputc('}', f);
	if (fclose(f) != 0) {
		free(buf);
		return -1;
	}
	tool_result_members(buf);
	free(buf);
	return 0;
}

int cmd_inspect_store(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"extents", no_argument, NULL, 'e'},
	    {"frames", no_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	bool extents = false, frames = false;
	struct tool_args args;
	int c, ret = 1;
	struct snap_store_image *img = NULL;
	struct snap_job *job = NULL; /* an S3 image's client (it outlives img) */
	tool_args_init(&args, TOOL_SHARED_KEY | TOOL_SHARED_PASSPHRASE_FILE | TOOL_SHARED_S3, "h",
		       opts);
	while ((c = tool_getopt(&args, argc, argv)) != -1) {
		switch (c) {
		case 'e':
			extents = true;
			break;
		case 'f':
			frames = true;
			break;
		case 'h':
			usage(stdout);
			tool_args_free(&args);
			return 0;
		case TOOL_GETOPT_INVALID:
			tool_args_free(&args);
			return TOOL_EXIT_USAGE;
		default:
			usage(stderr);
			tool_args_free(&args);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		tool_args_free(&args);
		return 2;
	}
	const char *path = argv[optind];
	if (snap_store_image_new(&img) < 0)
		goto out;
	int r;
	if (!strncmp(path, "s3://", 5)) {
		/* the job only carries the S3 settings (the options, else the AWS chain) */
		if ((r = snap_job_new(SNAP_JOB_VERIFY_STORE, &job)) < 0) {
			tool_error("out of memory");
			goto out;
		}
		tool_args_apply(&args, job);
		r = snap_store_image_open_s3(img, job, path);
	} else {
		r = snap_store_image_open(img, path);
	}
	if (r < 0) {
		tool_error("cannot inspect %s: %s", path, snap_store_image_error(img));
		goto out;
	}
	if ((args.key || args.passphrase) &&
	    (r = snap_store_image_unlock(img, args.passphrase, args.key)) < 0) {
		tool_error("%s", snap_store_image_error(img));
		goto out;
	}
	struct snap_store_info in = {.struct_size = sizeof(in)};
	snap_store_image_info(img, &in);
	if (tool_json_enabled()) {
		if (json_report(path, img, &in, extents, frames) < 0) {
			tool_error("cannot write the report: out of memory");
			goto out;
		}
		ret = 0;
		goto out;
	}
	char a[32], b[32], d[32], t[40];
	printf("image:        %s\n", tool_safe(path));
	printf("format:       snapbundle store v%u, features compat 0x%x incompat 0x%x "
	       "ro_compat 0x%x\n",
	       in.version, in.compat, in.incompat, in.ro_compat);
	printf("image uuid:   %s\n", in.image_uuid);
	printf("image id:     %s\n", or_none(in.image_id));
	printf("name:         %s\n", or_none(in.name));
	printf("description:  %s\n", or_none(in.description));
	printf("architecture: %s\n", or_none(in.arch));
	printf("boot mode:    %s\n", or_none(in.boot_mode));
	printf("owner:        %s\n", or_none(in.owner));
	printf("created:      %s\n", when(t, in.creation_time));
	printf("stored:       %s\n", when(t, in.store_time));
	printf("encryption:   %s\n", in.encrypted ? "AES-256-GCM" : "none");
	if (in.encrypted)
		printf("key slots:    %" PRIu64 "\n", in.keyslots);
	printf("authenticity: %s\n",
	       in.authenticated ? (in.encrypted ? "metadata and index authenticated (HMAC-SHA256)"
						: "metadata and index checked (SHA-256)")
				: "not checked (give -k KEY or --passphrase-file)");
	if (in.compat & 0x1)
		printf("signature:    %s\n", in.signed_image ? "valid" : "invalid");
	if (in.signed_image)
		printf("signer:       sha256 of public key %s\n", in.signer_key_id);
	printf("frame size:   %s\n", tool_size(a, in.frame_size));
	printf("size:         %s object, %s of volumes, %s in %" PRIu64 " frames, %s stored\n",
	       tool_size(a, in.image_size), tool_size(b, in.logical_bytes),
	       tool_size(d, in.data_bytes), in.frames, tool_size(t, in.stored_bytes));
	printf("ratio:        %.2f (object / volumes), %.2f (stored / data)\n",
	       in.logical_bytes ? (double)in.image_size / (double)in.logical_bytes : 0.0,
	       in.data_bytes ? (double)in.stored_bytes / (double)in.data_bytes : 0.0);
	static const struct {
		int list;
		const char *title;
	} lists[] = {
	    {SNAP_STORE_LIST_TAGS, "tags"},
	    {SNAP_STORE_LIST_BLOCK_DEVICE_MAPPINGS, "block device mappings"},
	    {SNAP_STORE_LIST_S3_METADATA, "S3 object metadata"},
	};
	for (size_t l = 0; l < 3; l++) {
		size_t n = snap_store_image_list_count(img, lists[l].list);
		if (!n)
			continue;
		printf("%s:\n", lists[l].title);
		for (size_t i = 0; i < n; i++) {
			/* escaping never makes an '=': the first one is the original's */
			const char *kv = tool_safe(snap_store_image_list(img, lists[l].list, i));
			const char *eq = kv ? strchr(kv, '=') : NULL;
			if (eq)
				printf("  %.*s: %s\n", (int)(eq - kv), kv, eq + 1);
			else
				printf("  %s\n", kv ? kv : "");
		}
	}
	for (size_t v = 0; v < in.volumes; v++) {
		struct snap_store_volume_info vi = {.struct_size = sizeof(vi)};
		if (snap_store_image_volume(img, v, &vi) < 0)
			continue;
		printf("volume %zu: %s\n", v, tool_safe(vi.device));
		printf("  size:        %s (%" PRIu64 " bytes), sectors %u/%u\n",
		       tool_size(a, vi.size), vi.size, vi.logical_sector, vi.physical_sector);
		printf("  table:       %s %s\n", or_none(vi.ptable_type), or_none(vi.ptable_id));
		printf("  map:         data %s, zero %s, unused %s in %" PRIu64 " extents\n",
		       tool_size(a, vi.bytes[0]), tool_size(b, vi.bytes[1]),
		       tool_size(t, vi.bytes[2]), vi.extents);
		printf("  frames:      %" PRIu64 " (from %" PRIu64 "), %s stored\n", vi.frames,
		       vi.first_frame, tool_size(a, vi.stored_bytes));
		printf("  digest:      %s\n", vi.digest);
		for (size_t p = 0; p < vi.partitions; p++) {
			struct snap_partition_info pi = {.struct_size = sizeof(pi)};
			if (snap_store_image_partition(img, v, p, &pi) < 0)
				continue;
			printf("  partition %u: start %" PRIu64 " size %s type %s fs %s%s%s\n",
			       pi.number, pi.start, tool_size(a, pi.size), or_none(pi.type),
			       or_none(pi.fs_type), pi.name ? " name " : "",
			       pi.name ? tool_safe(pi.name) : "");
		}
		for (size_t e = 0; extents && e < vi.extents; e++) {
			struct snap_extent x = {.struct_size = sizeof(x)};
			if (snap_store_image_extent(img, v, e, &x) < 0)
				continue;
			printf("  extent %12" PRIu64 " %12" PRIu64 " %-6s %s\n", x.offset, x.length,
			       snap_extent_kind_name(x.kind), snap_extent_layer_name(x.layer));
		}
	}
	for (uint64_t i = 0; frames && i < in.frames; i++) {
		struct snap_store_frame_info f = {.struct_size = sizeof(f)};
		if (snap_store_image_frame(img, i, &f) < 0)
			continue;
		printf("frame %" PRIu64 ": at %" PRIu64 " volume %" PRIu64 " offset %" PRIu64
		       " raw %u stored %u%s%s digest ",
		       f.index, f.file_offset, f.volume, f.offset, f.raw_len, f.stored_len,
		       f.compressed ? " deflate" : " raw", f.encrypted ? " aes-256-gcm" : "");
		for (int k = 0; k < 32; k++)
			printf("%02x", f.digest[k]);
		printf("\n");
	}
	ret = 0;
out:
	tool_args_free(&args);
	snap_store_image_free(img);
	snap_job_free(job);
	return ret;
}
