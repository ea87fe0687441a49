/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * s3-xml.h - S3's XML answers read from memory, and the one XML body a client sends
 * (CompleteMultipartUpload): pure code, no I/O.
 *
 * Invariants:
 *  1. Documents are parsed by libxml2 with no network, no DTD loading and no entity
 *     substitution; a DOCTYPE stops the parser where it stands and is refused (-EPERM), so
 *     entity expansion costs nothing. Documents over SNAP_S3_XML_MAX_SIZE bytes, over
 *     SNAP_S3_XML_MAX_ELEMENTS elements or nested deeper than SNAP_S3_XML_MAX_DEPTH are refused
 *     before any field is read (-EUCLEAN, or -E2BIG for the size).
 *  2. The root element must be the one asked for; elements are in no namespace or in S3's
 *     (http://s3.amazonaws.com/doc/2006-03-01/), any other is refused. Unknown child elements
 *     are skipped (S3 adds fields); a known field present twice, holding elements, or out of
 *     range is refused with -EUCLEAN. Every refusal comes with a detail string (unless memory
 *     ran out) saying which element.
 *  3. A returned answer is complete: the fields marked required below are present; part
 *     numbers are 1..10000 and strictly increasing; sizes are decimal without sign; a truncated
 *     listing carries its marker / continuation token.
 */
#ifndef SNAP_S3_XML_H
#define SNAP_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_S3_XML_MAX_SIZE (8u * 1024 * 1024)
#define SNAP_S3_XML_MAX_ELEMENTS 200000u
#define SNAP_S3_XML_MAX_DEPTH 16
#define SNAP_S3_MAX_PART_NUMBER 10000u

/* <Error>: code required; the others NULL when absent, "" when empty. */
struct snap_s3_error {
	char *code, *message, *resource, *request_id;
};

/* <InitiateMultipartUploadResult>: all required, upload_id not empty. */
struct snap_s3_initiate {
	char *bucket, *key, *upload_id;
};

/* <CompleteMultipartUploadResult>: bucket, key, etag required (etag "" when the service leaves it
 * empty, as Ceph RGW 16 does); location may be NULL. */
struct snap_s3_complete {
	char *location, *bucket, *key, *etag;
};

/* <CopyObjectResult> (CopyObject) or <CopyPartResult> (UploadPartCopy): etag required and not
 * empty (quotes included, as S3 writes it), last_modified may be NULL. */
struct snap_s3_copy_result {
	char *etag, *last_modified;
};

/* A part of <ListPartsResult> (all required); also the input of snap_s3_complete_body (size
 * unused). */
struct snap_s3_part {
	uint32_t part_number;
	char *etag; /* as S3 writes it, quotes included */
	uint64_t size;
};

struct snap_s3_list_parts {
	struct snap_s3_part *parts;
	size_t nparts;
	bool truncated;
	uint32_t next_part_number_marker; /* required when truncated, else 0 if absent */
};

/* <Contents> of <ListBucketResult> (ListObjectsV2): key and size required, etag may be NULL. */
struct snap_s3_object {
	char *key;
	uint64_t size;
	char *etag;
};

struct snap_s3_list_objects {
	struct snap_s3_object *objects;
	size_t nobjects;
	bool truncated;
	char *next_continuation_token; /* required when truncated */
};

/* <Upload> of <ListMultipartUploadsResult>: both required. */
struct snap_s3_upload {
	char *key, *upload_id;
};

struct snap_s3_list_uploads {
	struct snap_s3_upload *uploads;
	size_t nuploads;
	bool truncated;
	char *next_key_marker, *next_upload_id_marker; /* required when truncated */
};

/* Each parser: 0 and *ret set, or -errno with *ret untouched and *ret_detail (when not NULL)
 * set to a malloc'd message. */
int snap_s3_error_parse(const void *buf, size_t len, struct snap_s3_error **ret, char **ret_detail);
int snap_s3_initiate_parse(const void *buf, size_t len, struct snap_s3_initiate **ret,
			   char **ret_detail);
int snap_s3_complete_parse(const void *buf, size_t len, struct snap_s3_complete **ret,
			   char **ret_detail);
int snap_s3_list_parts_parse(const void *buf, size_t len, struct snap_s3_list_parts **ret,
			     char **ret_detail);
/* part: the root is <CopyPartResult> (UploadPartCopy), else <CopyObjectResult>. S3 may answer a
 * copy 200 and then an <Error>: that root is refused here like any other (-EUCLEAN), and the
 * caller reads it with snap_s3_error_parse. */
int snap_s3_copy_result_parse(const void *buf, size_t len, bool part,
			      struct snap_s3_copy_result **ret, char **ret_detail);
int snap_s3_list_objects_parse(const void *buf, size_t len, struct snap_s3_list_objects **ret,
			       char **ret_detail);
int snap_s3_list_uploads_parse(const void *buf, size_t len, struct snap_s3_list_uploads **ret,
			       char **ret_detail);

struct snap_s3_error *snap_s3_error_free(struct snap_s3_error *e);
struct snap_s3_initiate *snap_s3_initiate_free(struct snap_s3_initiate *i);
struct snap_s3_complete *snap_s3_complete_free(struct snap_s3_complete *c);
struct snap_s3_copy_result *snap_s3_copy_result_free(struct snap_s3_copy_result *c);
struct snap_s3_list_parts *snap_s3_list_parts_free(struct snap_s3_list_parts *l);
struct snap_s3_list_objects *snap_s3_list_objects_free(struct snap_s3_list_objects *l);
struct snap_s3_list_uploads *snap_s3_list_uploads_free(struct snap_s3_list_uploads *l);

/* The CompleteMultipartUpload request body for parts[0..n) (part_number and etag): n in
 * 1..10000, part numbers 1..10000 strictly increasing, ETags non-empty without control bytes
 * (-EINVAL otherwise); text is XML-escaped. *ret is a malloc'd NUL-terminated string,
 * *ret_len its length. */
int snap_s3_complete_body(const struct snap_s3_part *parts, size_t n, char **ret, size_t *ret_len);

#endif
