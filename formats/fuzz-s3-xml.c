// SPDX-License-Identifier: LGPL-2.1-or-later
/* fuzz-s3-xml.c - libFuzzer target for the S3 answer parsers: every parser on every input. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3-xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every refusal must say why (unless memory ran out). */
static void check_refusal(int r, char *detail)
{
	if (r < 0 && !detail && r != -ENOMEM)
		abort();
	free(detail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *d = NULL;
	struct snap_s3_error *e = NULL;
	int r = snap_s3_error_parse(data, size, &e, &d);
	if (r >= 0 && (!e || !e->code || !*e->code))
		abort();
	check_refusal(r, d);
	snap_s3_error_free(e);

	d = NULL;
	struct snap_s3_initiate *in = NULL;
	r = snap_s3_initiate_parse(data, size, &in, &d);
	if (r >= 0 && (!in->bucket || !in->key || !in->upload_id || !*in->upload_id))
		abort();
	check_refusal(r, d);
	snap_s3_initiate_free(in);

	d = NULL;
	struct snap_s3_complete *c = NULL;
	r = snap_s3_complete_parse(data, size, &c, &d);
	if (r >= 0 && (!c->bucket || !c->key || !c->etag))
		abort();
	check_refusal(r, d);
	snap_s3_complete_free(c);

	for (int part = 0; part < 2; part++) {
		d = NULL;
		struct snap_s3_copy_result *cr = NULL;
		r = snap_s3_copy_result_parse(data, size, part, &cr, &d);
		if (r >= 0 && (!cr->etag || !*cr->etag))
			abort();
		check_refusal(r, d);
		snap_s3_copy_result_free(cr);
	}

	d = NULL;
	struct snap_s3_list_parts *lp = NULL;
	r = snap_s3_list_parts_parse(data, size, &lp, &d);
	if (r >= 0) {
		for (size_t i = 0; i < lp->nparts; i++)
			if (!lp->parts[i].etag || !lp->parts[i].part_number ||
			    lp->parts[i].part_number > SNAP_S3_MAX_PART_NUMBER ||
			    (i && lp->parts[i].part_number <= lp->parts[i - 1].part_number))
				abort();
		/* what was read can be sent back */
		if (lp->nparts) {
			char *body = NULL;
			size_t blen = 0;
			int b = snap_s3_complete_body(lp->parts, lp->nparts, &body, &blen);
			if (b == 0 && strlen(body) != blen)
				abort();
			free(body);
		}
	}
	check_refusal(r, d);
	snap_s3_list_parts_free(lp);

	d = NULL;
	struct snap_s3_list_objects *lo = NULL;
	r = snap_s3_list_objects_parse(data, size, &lo, &d);
	if (r >= 0 && lo->truncated && !lo->next_continuation_token)
		abort();
	check_refusal(r, d);
	snap_s3_list_objects_free(lo);

	d = NULL;
	struct snap_s3_list_uploads *lu = NULL;
	r = snap_s3_list_uploads_parse(data, size, &lu, &d);
	if (r >= 0)
		for (size_t i = 0; i < lu->nuploads; i++)
			if (!lu->uploads[i].key || !lu->uploads[i].upload_id)
				abort();
	check_refusal(r, d);
	snap_s3_list_uploads_free(lu);
	return 0;
}
