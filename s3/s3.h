/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * s3.h - the S3 client: where the service is and who we are (the AWS configuration chain), a
 * transport over libcurl's multi interface, and the objects the engine's sinks and sources are
 * built on (a streaming object writer, a ranged reader with read-ahead, whole-object fetches).
 * Internal to the library: engine/ and tools/ (through engine/) use it; it uses formats/
 * (sigv4.c signs, s3-xml.c parses) and never blockdev/.
 *
 * Invariants:
 *  1. Every request is signed with SigV4 (formats/sigv4.c) at the moment it is sent (a retry is
 *     signed again with the clock of that attempt) and carries its payload hash: the SHA-256 of
 *     a body held in memory, or the aws-chunked streaming signature (STREAMING-AWS4-HMAC-SHA256-
 *     PAYLOAD) for a body streamed through; the service refuses a corrupted body.
 *  2. One transport thread per client runs curl_multi with at most `connections` transfers at
 *     once, reusing connections (keep-alive). Every function below may be called from any
 *     thread, several at once; the synchronous ones block their caller only.
 *  3. Retries are per request (a part, a range), never per object: exponential backoff with full
 *     jitter (base 100 ms, cap 20 s) on 5xx, 429/503 SlowDown, timeouts (no byte for
 *     `timeout_s`), connection resets and refused connections, a body the service found damaged
 *     (400 BadDigest, XAmzContentSHA256Mismatch), at most `retries` times. 4xx other
 *     than those is final at once (a wrong secret is one request, not a storm). A streamed body
 *     cannot be replayed: its request fails at the first error.
 *  4. Failures are -errno plus a detail naming the object (s3://BUCKET/KEY), the operation, the
 *     HTTP status and S3's error code: -ENOENT NoSuchKey/NoSuchBucket/404, -EACCES 403
 *     (AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId), -EEXIST 412 on a conditional
 *     write, -EIO for transport failures after retries, -EPROTO for an answer that does not
 *     parse, -ENODATA for an object shorter than asked (truncated), -ECANCELED after
 *     snap_s3_client_cancel.
 *  5. Memory is bounded by the client, whatever the object size: bodies in flight (part buffers,
 *     read-ahead chunks) take at most `memory_budget` bytes; a writer or reader that would exceed
 *     it waits for a transfer to finish. Parts larger than SNAP_S3_MAX_BUFFERED_PART stream
 *     (invariant 1's chunked signature) and are never held whole.
 *  6. Addressing: path style (http(s)://ENDPOINT/BUCKET/KEY) for a custom endpoint and for a
 *     bucket name with dots; virtual-hosted (https://BUCKET.s3.REGION.amazonaws.com/KEY) for AWS.
 *     A 301 PermanentRedirect / 400 AuthorizationHeaderMalformed naming another region is
 *     followed once per client, with a log line saying which region the bucket is in.
 */
#ifndef SNAP_S3_H
#define SNAP_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3-xml.h"

#define SNAP_S3_DEFAULT_CONNECTIONS 8
#define SNAP_S3_DEFAULT_RETRIES 5
#define SNAP_S3_DEFAULT_TIMEOUT_S 30
#define SNAP_S3_DEFAULT_MEMORY_BUDGET (96ull << 20)
#define SNAP_S3_MIN_PART_SIZE (5ull << 20)   /* S3: every part of a multipart upload but the last */
#define SNAP_S3_MAX_PART_SIZE (5ull << 30)
#define SNAP_S3_MAX_PARTS 10000u
#define SNAP_S3_MAX_BUFFERED_PART (32ull << 20)
#define SNAP_S3_DEFAULT_PART_SIZE (16ull << 20)

/* ---- configuration: the AWS chain (s3/s3-config.c) ---- */

/* What the frontend gives (the options); NULL / 0 fields are looked up by the chain. */
struct snap_s3_options {
	const char *endpoint; /* "http://127.0.0.1:7480", "https://s3.eu-west-1.amazonaws.com" */
	const char *region;
	const char *access_key, *secret_key, *session_token;
	const char *profile;	  /* AWS_PROFILE's meaning */
	unsigned connections;	  /* 0: SNAP_S3_DEFAULT_CONNECTIONS */
	unsigned retries;	  /* 0: default; use SNAP_S3_NO_RETRIES for none */
	unsigned timeout_s;	  /* 0: default */
	uint64_t memory_budget;	  /* 0: default */
};
#define SNAP_S3_NO_RETRIES UINT32_MAX

/* The resolved configuration (every field set but session_token, which may be NULL). */
struct snap_s3_config {
	char *endpoint; /* scheme://host[:port], no trailing '/' */
	bool aws;	/* the endpoint is AWS's: virtual-hosted addressing */
	char *region;
	char *access_key, *secret_key, *session_token;
	char *source; /* where the credentials came from: "options", "environment",
		       * "profile NAME (FILE)", "instance metadata" */
	unsigned connections, retries, timeout_s;
	uint64_t memory_budget;
};

/* Resolves, in this order (first found wins, per field): the options; AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION,
 * AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL; AWS_PROFILE (or "default") in
 * AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) and AWS_CONFIG_FILE (~/.aws/config: region,
 * endpoint_url, [profile NAME] sections); EC2 instance metadata with IMDSv2 tokens
 * (AWS_EC2_METADATA_SERVICE_ENDPOINT, default http://169.254.169.254; skipped when
 * AWS_EC2_METADATA_DISABLED=true; 1 s connect timeout). Credentials are taken as a whole from one
 * source (an access key never pairs with another source's secret). Region defaults to us-east-1,
 * endpoint to AWS's for the region. -ENOKEY with a detail listing where it looked when no
 * credentials are found. */
int snap_s3_config_resolve(const struct snap_s3_options *opts, struct snap_s3_config **ret,
			   char **ret_detail);
struct snap_s3_config *snap_s3_config_free(struct snap_s3_config *c);

/* "s3://BUCKET/KEY" (KEY may be empty or end in '/'): bucket names as S3 allows them (3-63 of
 * [a-z0-9.-]); -EINVAL with a detail otherwise. */
bool snap_s3_is_url(const char *s);
int snap_s3_url_parse(const char *url, char **ret_bucket, char **ret_key, char **ret_detail);
/* Whether a parsed KEY names an object: not empty and not ending in '/' (a folder, which the
 * sinks and sources refuse and s3-abort reads as "everything under it"). */
bool snap_s3_key_names_object(const char *key);

/* ---- the client and its transport (s3/s3-client.c) ---- */

struct snap_s3_client;

/* A log line for the frontend (region redirect followed, retries): level as snapbundle.h's. */
typedef void (*snap_s3_log_fn)(void *userdata, int level, const char *msg);

int snap_s3_client_new(const struct snap_s3_config *cfg, struct snap_s3_client **ret,
		       char **ret_detail);
struct snap_s3_client *snap_s3_client_free(struct snap_s3_client *c);
void snap_s3_client_set_log(struct snap_s3_client *c, snap_s3_log_fn fn, void *userdata);
/* Every request in flight and every later one fails with -ECANCELED (a job's cancel). */
void snap_s3_client_cancel(struct snap_s3_client *c);

struct snap_s3_stats {
	uint64_t bytes_up, bytes_down; /* payload bytes, retries included */
	uint64_t requests, retries;
};
void snap_s3_client_stats(const struct snap_s3_client *c, struct snap_s3_stats *ret);
/* The client's memory budget (invariant 5), taken by writers and readers for the bodies they
 * hold: acquire waits until bytes fit (a request larger than the whole budget waits until
 * nothing else is held), or returns -ECANCELED after snap_s3_client_cancel. */
int snap_s3_budget_acquire(struct snap_s3_client *c, uint64_t bytes);
void snap_s3_budget_release(struct snap_s3_client *c, uint64_t bytes);
/* The connections and memory budget the client runs with: they size the writers' parts in
 * flight and the readers' read-ahead. */
unsigned snap_s3_client_connections(const struct snap_s3_client *c);
uint64_t snap_s3_client_budget(const struct snap_s3_client *c);

/* The fault hook of the tests, process-wide: asked before each attempt of each request with
 * its method, bucket, key and attempt number (0 first); returns what that attempt does. */
enum snap_s3_fault {
	SNAP_S3_FAULT_NONE = 0,
	SNAP_S3_FAULT_HTTP_500 = 1,  /* answered 500 InternalError without being sent */
	SNAP_S3_FAULT_SLOWDOWN = 2,  /* answered 503 SlowDown */
	SNAP_S3_FAULT_RESET = 3,     /* the connection is reset halfway through the body */
	SNAP_S3_FAULT_TIMEOUT = 4,   /* no byte arrives: the attempt times out (after 1 s) */
	SNAP_S3_FAULT_CORRUPT = 5,   /* one byte of the body sent is flipped after signing */
};
typedef enum snap_s3_fault (*snap_s3_fault_fn)(void *userdata, const char *method,
					       const char *bucket, const char *key,
					       unsigned attempt);
void snap_s3_set_fault(snap_s3_fault_fn fn, void *userdata);

/* Object metadata and tags for writes. */
struct snap_s3_pair {
	const char *name, *value;
};
struct snap_s3_put_options {
	const char *acl;		 /* canned ACL (x-amz-acl), NULL: none */
	const struct snap_s3_pair *meta; /* x-amz-meta-NAME: VALUE */
	size_t nmeta;
	const struct snap_s3_pair *tags; /* x-amz-tagging */
	size_t ntags;
	const char *content_type; /* NULL: application/octet-stream */
	bool if_none_match;	  /* If-None-Match: * (refuse to replace; -EEXIST) */
};

/* HEAD: -ENOENT when missing. etag as S3 writes it, quotes included. */
struct snap_s3_head {
	uint64_t size;
	char *etag;
	char *last_modified;
	struct snap_s3_pair *meta; /* x-amz-meta-* without the prefix, names lowercase; owned */
	size_t nmeta;
};
int snap_s3_head_object(struct snap_s3_client *c, const char *bucket, const char *key,
			struct snap_s3_head **ret, char **ret_detail);
struct snap_s3_head *snap_s3_head_free(struct snap_s3_head *h);

/* A single PUT of a body in memory (Content-MD5 and SHA-256 sent); *ret_etag optional. */
int snap_s3_put_object(struct snap_s3_client *c, const char *bucket, const char *key,
		       const void *buf, size_t len, const struct snap_s3_put_options *o,
		       char **ret_etag, char **ret_detail);
/* Exactly len bytes at off into buf (-ENODATA when the object ends before). */
int snap_s3_get_range(struct snap_s3_client *c, const char *bucket, const char *key,
		      uint64_t off, size_t len, void *buf, char **ret_detail);
/* The whole object, at most max bytes (-EFBIG beyond). */
int snap_s3_get_object(struct snap_s3_client *c, const char *bucket, const char *key, size_t max,
		       void **ret_buf, size_t *ret_len, char **ret_detail);
/* -ENOENT is success for delete (S3 answers 204 either way). */
int snap_s3_delete_object(struct snap_s3_client *c, const char *bucket, const char *key,
			  char **ret_detail);
/* PutObjectTagging: the object's tags become tags[0..n) (the writer sets a multipart object's
 * tags so after completing it: RGW 16 ignores x-amz-tagging on CreateMultipartUpload). */
int snap_s3_put_tagging(struct snap_s3_client *c, const char *bucket, const char *key,
			const struct snap_s3_pair *tags, size_t n, char **ret_detail);
/* Every object under prefix (all pages of ListObjectsV2). */
int snap_s3_list_objects(struct snap_s3_client *c, const char *bucket, const char *prefix,
			 struct snap_s3_list_objects **ret, char **ret_detail);
/* The listed object named key, or NULL (l may be NULL). */
const struct snap_s3_object *snap_s3_list_objects_find(const struct snap_s3_list_objects *l,
						       const char *key);
/* ETags compared as S3 writes them: quotes optional, hex case ignored. */
bool snap_s3_etag_equal(const char *a, const char *b);
/* Whether etag (NULL: no) is a single PUT's, the MD5 of the body: 32 hex digits; a multipart
 * object's ends in "-N". */
bool snap_s3_etag_is_md5(const char *etag);
/* Every multipart upload in progress under prefix; and aborting one. */
int snap_s3_list_uploads(struct snap_s3_client *c, const char *bucket, const char *prefix,
			 struct snap_s3_list_uploads **ret, char **ret_detail);
int snap_s3_abort_upload(struct snap_s3_client *c, const char *bucket, const char *key,
			 const char *upload_id, char **ret_detail);
/* Every part of an upload in progress (all pages of ListParts). */
int snap_s3_list_parts(struct snap_s3_client *c, const char *bucket, const char *key,
		       const char *upload_id, struct snap_s3_list_parts **ret, char **ret_detail);

/* An asynchronous GET (whole object when len is UINT64_MAX, at most max bytes), for fetching
 * ahead: start returns at once, wait returns the body (malloc'd) and frees the handle; free
 * without wait cancels it. */
struct snap_s3_get;
int snap_s3_get_start(struct snap_s3_client *c, const char *bucket, const char *key, uint64_t off,
		      uint64_t len, size_t max, struct snap_s3_get **ret);
/* The same carrying If-Match: if_match (an ETag, quotes included; NULL: none), for the reader's
 * R1: an object replaced since fails with -ESTALE (412). */
int snap_s3_get_start_if(struct snap_s3_client *c, const char *bucket, const char *key,
			 uint64_t off, uint64_t len, size_t max, const char *if_match,
			 struct snap_s3_get **ret);
int snap_s3_get_wait(struct snap_s3_get *g, void **ret_buf, size_t *ret_len, char **ret_detail);
struct snap_s3_get *snap_s3_get_free(struct snap_s3_get *g);

/* Asynchronous puts, for the writer: a PutObject (upload_id NULL) or an UploadPart of a body in
 * memory (buf must stay valid until wait), or streamed from a callback that fills exactly len
 * bytes in total (chunked signature, invariant 1; never retried). wait returns the ETag. */
struct snap_s3_put;
int snap_s3_put_start(struct snap_s3_client *c, const char *bucket, const char *key,
		      const char *upload_id, uint32_t part_number, const void *buf, size_t len,
		      const struct snap_s3_put_options *o, struct snap_s3_put **ret);
/* Called on the client's transport thread (blocking in it stalls the client's other transfers):
 * returns bytes placed in buf (> 0), -EAGAIN when none are ready yet (the request pauses until
 * snap_s3_put_resume), or another -errno to fail the request. */
typedef long (*snap_s3_read_fn)(void *userdata, void *buf, size_t room);
int snap_s3_put_stream_start(struct snap_s3_client *c, const char *bucket, const char *key,
			     const char *upload_id, uint32_t part_number, uint64_t len,
			     snap_s3_read_fn read, void *userdata, struct snap_s3_put **ret);
/* A streamed put paused by -EAGAIN goes on (its callback is called again); any thread. */
void snap_s3_put_resume(struct snap_s3_put *p);
int snap_s3_put_wait(struct snap_s3_put *p, char **ret_etag, char **ret_detail);
/* CreateMultipartUpload (with the put options) and CompleteMultipartUpload. */
int snap_s3_create_upload(struct snap_s3_client *c, const char *bucket, const char *key,
			  const struct snap_s3_put_options *o, char **ret_upload_id,
			  char **ret_detail);
int snap_s3_complete_upload(struct snap_s3_client *c, const char *bucket, const char *key,
			    const char *upload_id, const struct snap_s3_part *parts, size_t n,
			    char **ret_etag, char **ret_detail);
/* Server-side copies (no byte passes through the client), retried as any request (a copy is
 * idempotent). CopyObject: bucket/key becomes a copy of src_bucket/src_key (at most
 * SNAP_S3_MAX_PART_SIZE bytes, S3's limit for one copy) with the source's metadata and the
 * canned acl (NULL: none); *ret_etag (optional) is the copy's ETag, quoted as HEAD gives it
 * (RGW answers it bare). UploadPartCopy: part part_number of upload_id is bytes
 * [off, off + len) of the source (len 1..SNAP_S3_MAX_PART_SIZE), its ETag likewise. A missing
 * source is -ENOENT. S3 may answer 200 and then an <Error>: that is a failure, mapped
 * like the same error with a status (invariant 4). */
int snap_s3_copy_object(struct snap_s3_client *c, const char *src_bucket, const char *src_key,
			const char *bucket, const char *key, const char *acl, char **ret_etag,
			char **ret_detail);
int snap_s3_upload_part_copy(struct snap_s3_client *c, const char *src_bucket, const char *src_key,
			     uint64_t off, uint64_t len, const char *bucket, const char *key,
			     const char *upload_id, uint32_t part_number, char **ret_etag,
			     char **ret_detail);
/* PUT Bucket (LocationConstraint unless NULL or us-east-1); -EEXIST when it is ours already. */
int snap_s3_create_bucket(struct snap_s3_client *c, const char *bucket, const char *location,
			  char **ret_detail);
int snap_s3_delete_bucket(struct snap_s3_client *c, const char *bucket, char **ret_detail);

/* ---- an object written from start to end (s3/s3-writer.c) ----
 * W1. Multipart (SNAP_S3_WRITER_MULTIPART): CreateMultipartUpload at new (with the put options:
 *     ACL, metadata, tags); bytes fill part buffers of part_size; a full part is uploaded in the
 *     background (several at once, within the client's budget) while the caller goes on; end
 *     uploads the last part (which may be short); commit waits for every part and completes
 *     the upload (the object appears only then). abort (or free before commit) aborts the
 *     upload, unless SNAP_S3_WRITER_KEEP, which leaves it for a resume.
 * W2. Single (no flag): the body is held (at most SNAP_S3_MAX_BUFFERED_PART bytes, else -EFBIG)
 *     and PUT at end, in the background; commit waits for it. abort after the PUT succeeded
 *     deletes the object (a bundle's parts when the bundle fails); so does abort after a
 *     multipart commit. free after commit keeps the object.
 * W3. The first failure is kept: every later call returns it, and error() names the object and
 *     the part. */
enum {
	SNAP_S3_WRITER_MULTIPART = 1 << 0,
	SNAP_S3_WRITER_KEEP = 1 << 1, /* abort leaves a multipart upload in place (resume) */
	/* every part streams (invariant 5) whatever its size: for tests of the streamed path */
	SNAP_S3_WRITER_STREAM = 1 << 2,
};
struct snap_s3_writer;
int snap_s3_writer_new(struct snap_s3_client *c, const char *bucket, const char *key,
		       unsigned flags, uint64_t part_size, const struct snap_s3_put_options *o,
		       struct snap_s3_writer **ret, char **ret_detail);
/* Continues upload_id (multipart): parts 1..nparts are taken as done (ListParts checks their
 * sizes and ETags against parts[]; a mismatch is -ESTALE naming the part), and writing goes on
 * with part nparts + 1 at offset nparts * part_size. The writer keeps the upload on abort, as
 * SNAP_S3_WRITER_KEEP. */
int snap_s3_writer_resume(struct snap_s3_client *c, const char *bucket, const char *key,
			  const char *upload_id, const struct snap_s3_part *parts, size_t nparts,
			  uint64_t part_size, struct snap_s3_writer **ret, char **ret_detail);
int snap_s3_writer_write(struct snap_s3_writer *w, const void *buf, size_t len);
/* Bytes taken so far (resumed parts included). */
uint64_t snap_s3_writer_offset(const struct snap_s3_writer *w);
/* Called after each part is acknowledged, from the writer's own thread, in part order (each
 * after every earlier part): part number and ETag, for a checkpoint. */
typedef void (*snap_s3_part_done_fn)(void *userdata, uint32_t part_number, const char *etag,
				     uint64_t end_offset);
void snap_s3_writer_on_part(struct snap_s3_writer *w, snap_s3_part_done_fn fn, void *userdata);
/* The object's total size, when the caller knows it before the end: a streamed part commits to
 * its length when its request starts, before its bytes exist, so only a writer that knows the
 * size can end inside a streamed part already started (else end fails that part with -EINVAL);
 * a part that ends within the ring (a few MiB) needs no size. Writing past the size is -EFBIG. */
int snap_s3_writer_set_size(struct snap_s3_writer *w, uint64_t size);
/* The object's size, told when the caller knows it only at the end (a store: its frames are
 * compressed). When a streamed part's request already started for more bytes than are left,
 * that request is abandoned and the writer goes back to the part's first byte:
 * *ret_offset < offset, and the caller writes the same bytes from there again (then to size).
 * Else as set_size, *ret_offset the offset. */
int snap_s3_writer_rewind(struct snap_s3_writer *w, uint64_t size, uint64_t *ret_offset);
/* The most bytes of the client's budget this writer held at once (tests of invariant 5). */
uint64_t snap_s3_writer_peak_held(const struct snap_s3_writer *w);
int snap_s3_writer_end(struct snap_s3_writer *w);
/* Waits; the object's ETag (multipart: "HEX-N"). */
int snap_s3_writer_commit(struct snap_s3_writer *w, char **ret_etag);
void snap_s3_writer_abort(struct snap_s3_writer *w);
const char *snap_s3_writer_upload_id(const struct snap_s3_writer *w);
const char *snap_s3_writer_error(const struct snap_s3_writer *w);
struct snap_s3_writer *snap_s3_writer_free(struct snap_s3_writer *w);

/* ---- an object read at any offset (s3/s3-reader.c) ----
 * R1. open HEADs the object (size, ETag); every ranged GET then carries If-Match: ETAG, so an
 *     object replaced while read fails (-ESTALE) instead of mixing two versions.
 * R2. Reads are served from chunks of chunk_size bytes (default 8 MiB) fetched by ranged GETs;
 *     a read at the end of the previous one starts read-ahead of up to `connections` chunks
 *     (within the client's budget). A caller that knows what it will read next says so with
 *     snap_s3_reader_plan (restore: the frames of one partition), and only those chunks are
 *     fetched.
 * R3. pread may be called from several threads at once. */
struct snap_s3_reader;
int snap_s3_reader_open(struct snap_s3_client *c, const char *bucket, const char *key,
			struct snap_s3_reader **ret, char **ret_detail);
uint64_t snap_s3_reader_size(const struct snap_s3_reader *r);
const struct snap_s3_head *snap_s3_reader_head(const struct snap_s3_reader *r);
/* The ranges (sorted, disjoint) the caller will read, in order: read-ahead follows them. */
int snap_s3_reader_plan(struct snap_s3_reader *r, const uint64_t (*ranges)[2], size_t n);
int snap_s3_reader_pread(struct snap_s3_reader *r, void *buf, size_t len, uint64_t off,
			 char **ret_detail);
/* Bytes fetched from the service for this reader (the ranges of the GETs it started). */
uint64_t snap_s3_reader_fetched(const struct snap_s3_reader *r);
/* Chunks of size bytes (>= 4 KiB) instead of 8 MiB, before the first read (tests). */
int snap_s3_reader_set_chunk_size(struct snap_s3_reader *r, uint64_t size);
struct snap_s3_reader *snap_s3_reader_free(struct snap_s3_reader *r);

#endif
