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

/* Appends the S3 URI encoding of s[0..len) (RFC 3986 unreserved kept, '/' kept when keep_slash)
 * to out, which must hold 3 * len + 1 bytes; returns the length written (NUL excluded). */
size_t snap_sigv4_uri_encode(char *out, const char *s, size_t len, int keep_slash);

#endif
