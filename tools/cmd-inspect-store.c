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
			return 1;
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
