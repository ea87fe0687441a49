/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * s3-internal.h - the pieces of s3/ shared between its files and unit-tested alone: header
 * lists, the headers of a write, addressing, and a client knob for tests.
 *
 * Invariants:
 *  1. A header list owns its names and values; a failed add leaves the list as it was.
 *  2. snap_s3_address is the only place that decides path-style against virtual-hosted
 *     addressing (s3.h invariant 6): what it returns is what is sent and what is signed.
 */
#ifndef SNAP_S3_INTERNAL_H
#define SNAP_S3_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "s3.h"
#include "sigv4.h"

struct snap_s3_hlist {
	struct snap_sigv4_param *v; /* names and values malloc'd */
	size_t n, cap;
};

int snap_s3_hlist_add(struct snap_s3_hlist *l, const char *name, const char *value);
/* The value of the first header named name (case-insensitive), or NULL. */
const char *snap_s3_hlist_get(const struct snap_s3_hlist *l, const char *name);
void snap_s3_hlist_clear(struct snap_s3_hlist *l);

/* The headers of a PutObject or CreateMultipartUpload with options o (NULL: none): x-amz-acl,
 * x-amz-meta-NAME, x-amz-tagging (query-encoded), Content-Type, If-None-Match. -EINVAL for an
 * empty or non-token metadata name or a value with control bytes, -ENOMEM. */
int snap_s3_put_headers(const struct snap_s3_put_options *o, struct snap_s3_hlist *l);

/* Where a request for bucket (and key, may be NULL or "") goes: ret_base "scheme://host" of the
 * URL, ret_host the Host header, ret_path the unencoded path the signer takes ("/BUCKET/KEY" in
 * path style, "/KEY" virtual-hosted). aws: virtual-hosted at BUCKET.s3.REGION.amazonaws.com
 * unless the bucket name has a dot. -EINVAL for an endpoint without "scheme://host". */
int snap_s3_address(const char *endpoint, bool aws, const char *region, const char *bucket,
		    const char *key, char **ret_base, char **ret_host, char **ret_path);

/* Tests: the page size asked of the listings (max-keys, max-uploads, max-parts); 0: the
 * service's default (1000). */
void snap_s3_client_set_page_size(struct snap_s3_client *c, unsigned n);

#endif
