/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sigv4.h - AWS Signature Version 4 (header-based, single chunk) for S3, as pure code: no I/O,
 * no clock (the caller passes the time), no allocation outside the result.
 *
 * Invariants:
 *  1. The canonical request follows the SigV4 rules as S3 applies them: the path is given
 *     unencoded and each byte outside RFC 3986 unreserved and '/' is percent-encoded exactly
 *     once (S3 neither normalises "." / ".." / "//" nor double-encodes); query names and values
 *     are encoded the same way ('/' too) and sorted by encoded name, then encoded value;
 *     header names are lowercased, values trimmed with inner runs of blanks collapsed to one
 *     space, repeated headers joined with ',' in the order given, then sorted by name.
 *  2. Every header the request carries is signed. The signer adds host, x-amz-date,
 *     x-amz-content-sha256 (service "s3" only: S3 requires it, the other services do not) and
 *     x-amz-security-token (when a session token is given); the caller must not pass those, nor
 *     Authorization: that is -EINVAL, as is any header name outside the HTTP token set or any
 *     value with CR, LF or another control byte but tab.
 *  3. The payload hash is 64 lowercase hex digits, "UNSIGNED-PAYLOAD" or "STREAMING-" followed by
 *     uppercase letters, digits and '-'; anything else is -EINVAL.
 *  4. A result is complete: canonical request, string to sign, signature, and the headers to add
 *     to the HTTP request (add[0..nadd)), each a name and a value owned by the result.
 *  5. A streamed body (payload hash STREAMING-AWS4-HMAC-SHA256-PAYLOAD, Content-Encoding:
 *     aws-chunked) is sent as chunks "HEX-SIZE;chunk-signature=SIG\r\nDATA\r\n" ending with an
 *     empty chunk; each chunk's signature chains the previous one (the request's signature
 *     first, the seed), so chunks cannot be reordered, dropped or altered.
 */
#ifndef SNAP_SIGV4_H
#define SNAP_SIGV4_H

#include <stddef.h>
#include <stdint.h>

/* A query parameter (value NULL or "": the name alone, canonical "name=") or a header. */
struct snap_sigv4_param {
	const char *name;
	const char *value;
};

struct snap_sigv4_request {
	const char *method; /* "GET", "PUT", ... */
	const char *path;   /* unencoded, starts with '/': "/bucket/my key" */
	const struct snap_sigv4_param *query;
	size_t nquery;
	const char *host; /* the Host header the request will carry */
	const struct snap_sigv4_param *headers;
	size_t nheaders;
	const char *payload_hash; /* invariant 3 */
	const char *access_key;
	const char *secret_key;
	const char *session_token; /* NULL: none */
	const char *region;	   /* "us-east-1" */
	const char *service;	   /* "s3" */
	int64_t time;		   /* seconds since the epoch, UTC */
};

#define SNAP_SIGV4_MAX_ADD 4

struct snap_sigv4_header {
	const char *name;
	char *value;
};

struct snap_sigv4_result {
	char *canonical_request;
	char *string_to_sign;
	char *signed_headers; /* "host;range;x-amz-content-sha256;x-amz-date" */
	char signature[65];   /* lowercase hex */
	char amz_date[17];    /* 20130524T000000Z */
	/* Authorization, x-amz-date, then x-amz-content-sha256 (s3), x-amz-security-token */
	struct snap_sigv4_header add[SNAP_SIGV4_MAX_ADD];
	size_t nadd;
};

/* Signs req; *ret_result is untouched on failure. -EINVAL on a malformed request (invariants 2,
 * 3, a path without a leading '/', a time outside years 1970..9999), -ENOMEM, -EIO when OpenSSL
 * fails. */
int snap_sigv4_sign(const struct snap_sigv4_request *req, struct snap_sigv4_result **ret_result);

struct snap_sigv4_result *snap_sigv4_result_free(struct snap_sigv4_result *r);

/* The chain of chunk signatures of one streamed body (invariant 5): the signing key, date and
 * scope of the request, and the previous signature. */
struct snap_sigv4_chunk {
	uint8_t key[32];
	char amz_date[17];
	char scope[128]; /* 20130524/us-east-1/s3/aws4_request */
	char prev[65];	 /* the seed, then the last chunk's signature */
};

/* Starts the chain of req, whose signature (the seed) snap_sigv4_sign gave in signed_req: -EINVAL
 * when req is malformed or its payload hash is not STREAMING-AWS4-HMAC-SHA256-PAYLOAD, -EIO when
 * OpenSSL fails. */
int snap_sigv4_chunk_init(struct snap_sigv4_chunk *ch, const struct snap_sigv4_request *req,
			  const struct snap_sigv4_result *signed_req);
/* The signature of the next chunk, data[0..len) (len 0: the final chunk), into ret_signature
 * (64 hex digits and a NUL); the chain moves on. -EIO when OpenSSL fails. */
int snap_sigv4_chunk_sign(struct snap_sigv4_chunk *ch, const void *data, size_t len,
			  char ret_signature[65]);
/* The length on the wire of a body of len bytes cut into chunks of chunk_size (> 0) bytes (the
 * last one shorter), final empty chunk included: the Content-Length of the request. */
uint64_t snap_sigv4_chunked_length(uint64_t len, uint64_t chunk_size);
/* Writes the header of a chunk of len bytes, "HEX;chunk-signature=SIG\r\n", into out (at least
 * SNAP_SIGV4_CHUNK_HEADER_MAX bytes); returns its length. */
#define SNAP_SIGV4_CHUNK_HEADER_MAX 100
size_t snap_sigv4_chunk_header(char *out, size_t len, const char signature[65]);

/* The payload hash of a streamed body (invariant 5). */
#define SNAP_SIGV4_STREAMING "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

/* The lowercase hex SHA-256 of data[0..len) (data may be NULL when len is 0) into out: a
 * payload hash (invariant 3), and the hashes inside the strings to sign. -EIO when OpenSSL
 * fails. */
int snap_sigv4_hex_sha256(const void *data, size_t len, char out[65]);

/* Appends the S3 URI encoding of s[0..len) (RFC 3986 unreserved kept, '/' kept when keep_slash)
 * to out, which must hold 3 * len + 1 bytes; returns the length written (NUL excluded). */
size_t snap_sigv4_uri_encode(char *out, const char *s, size_t len, int keep_slash);

#endif
