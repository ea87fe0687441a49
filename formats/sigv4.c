// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * sigv4.c - AWS Signature Version 4 for S3 (invariants in sigv4.h).
 *
 * Steps (snap_sigv4_sign):
 *  1. check the request (check_request) and format the date from the injected time.
 *  2. canonical headers: the caller's, lowercased and trimmed, plus the ones the signer adds;
 *     stable sort by name, repeated names joined with ',' (canon_headers).
 *  3. canonical request: method, encoded path, sorted encoded query, headers, signed header
 *     names, payload hash (canon_query, canonical_request).
 *  4. string to sign: algorithm, date, scope, SHA-256 of step 3.
 *  5. signing key: HMAC-SHA256 chain "AWS4" + secret -> date -> region -> service ->
 *     "aws4_request"; signature: HMAC of step 4 with it, in hex.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "hex.h"
#include "sigv4.h"
#include "strbuf.h"

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

size_t snap_sigv4_uri_encode(char *out, const char *s, size_t len, int keep_slash)
{
	static const char hexu[] = "0123456789ABCDEF";
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_unreserved(c) || (keep_slash && c == '/')) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hexu[c >> 4];
			out[o++] = hexu[c & 15];
		}
	}
	out[o] = 0;
	return o;
}

/* Percent-encodes s into a new string (NULL: out of memory). */
static char *encode_dup(const char *s, bool keep_slash)
{
	size_t n = strlen(s);
	if (n > (SIZE_MAX - 1) / 3)
		return NULL;
	char *out = malloc(3 * n + 1);
	if (out)
		snap_sigv4_uri_encode(out, s, n, keep_slash);
	return out;
}

/* RFC 9110 token characters. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (!is_tchar((unsigned char)*s))
			return false;
	return true;
}

/* A header value: no control bytes but tab (so no CR / LF to split the request with). */
static bool is_field_value(const char *s)
{
	if (!s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static bool is_payload_hash(const char *h)
{
	if (!h)
		return false;
	if (!strcmp(h, "UNSIGNED-PAYLOAD"))
		return true;
	if (!strncmp(h, "STREAMING-", 10)) {
		if (!h[10])
			return false;
		for (const char *p = h + 10; *p; p++)
			if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'))
				return false;
		return true;
	}
	size_t i;
	for (i = 0; h[i]; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return false;
	return i == 64;
}

/* Headers the signer writes itself (invariant 2). */
static bool is_reserved_header(const char *name)
{
	static const char *const reserved[] = {"host", "x-amz-date", "x-amz-content-sha256",
					       "x-amz-security-token", "authorization"};
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (!strcasecmp(name, reserved[i]))
			return true;
	return false;
}

/* A scope part (region, service, key id): printable, no '/' or blanks. */
static bool is_scope_part(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '/')
			return false;
	return true;
}

static int check_request(const struct snap_sigv4_request *q)
{
	if (!is_token(q->method) || !q->path || q->path[0] != '/' || !q->host || !*q->host ||
	    !is_field_value(q->host) || !is_payload_hash(q->payload_hash) ||
	    !is_scope_part(q->access_key) || !q->secret_key || !is_scope_part(q->region) ||
	    !is_scope_part(q->service))
		return -EINVAL;
	if (q->session_token && (!*q->session_token || !is_field_value(q->session_token)))
		return -EINVAL;
	if ((q->nquery && !q->query) || (q->nheaders && !q->headers))
		return -EINVAL;
	for (size_t i = 0; i < q->nquery; i++)
		if (!q->query[i].name)
			return -EINVAL;
	for (size_t i = 0; i < q->nheaders; i++)
		if (!is_token(q->headers[i].name) || is_reserved_header(q->headers[i].name) ||
		    !is_field_value(q->headers[i].value))
			return -EINVAL;
	/* 1970-01-01 .. 9999-12-31, so the date is always 16 characters */
	if (q->time < 0 || q->time > 253402300799LL)
		return -EINVAL;
	return 0;
}

struct hdr {
	char *name; /* lowercased */
	const char *value;
	size_t order; /* position given, for a stable sort */
};

static int cmp_hdr(const void *a, const void *b)
{
	const struct hdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Appends value trimmed, with each inner run of blanks collapsed to one space. */
static void add_trimmed(struct snap_strbuf *b, const char *v)
{
	bool blank = false, any = false;
	for (; *v; v++) {
		if (*v == ' ' || *v == '\t') {
			blank = true;
			continue;
		}
		if (blank && any)
			snap_strbuf_chr(b, ' ');
		snap_strbuf_chr(b, *v);
		blank = false;
		any = true;
	}
}

/* Step 2: the canonical header lines into canon, the signed header names into names. */
static int canon_headers(const struct snap_sigv4_request *q, const char *amz_date,
			 struct snap_strbuf *canon, struct snap_strbuf *names)
{
	size_t n = q->nheaders + 4;
	struct hdr *h = calloc(n, sizeof(*h));
	if (!h)
		return -ENOMEM;
	size_t k = 0;
	int r = 0;
	for (size_t i = 0; i < q->nheaders; i++) {
		h[k].name = strdup(q->headers[i].name);
		if (!h[k].name) {
			r = -ENOMEM;
			goto out;
		}
		for (char *c = h[k].name; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		h[k].value = q->headers[i].value;
		h[k].order = k;
		k++;
	}
	const char *extra[4][2] = {{"host", q->host}, {"x-amz-date", amz_date}};
	size_t nextra = 2;
	if (!strcmp(q->service, "s3")) {
		extra[nextra][0] = "x-amz-content-sha256";
		extra[nextra++][1] = q->payload_hash;
	}
	if (q->session_token) {
		extra[nextra][0] = "x-amz-security-token";
		extra[nextra++][1] = q->session_token;
	}
	for (size_t i = 0; i < nextra; i++) {
		h[k].name = strdup(extra[i][0]);
		if (!h[k].name) {
			r = -ENOMEM;
			goto out;
		}
		h[k].value = extra[i][1];
		h[k].order = k;
		k++;
	}
	qsort(h, k, sizeof(*h), cmp_hdr);
	for (size_t i = 0; i < k; i++) {
		bool first = i == 0 || strcmp(h[i - 1].name, h[i].name);
		bool last = i + 1 == k || strcmp(h[i + 1].name, h[i].name);
		if (first) {
			snap_strbuf_str(canon, h[i].name);
			snap_strbuf_chr(canon, ':');
			if (names->len)
				snap_strbuf_chr(names, ';');
			snap_strbuf_str(names, h[i].name);
		} else {
			snap_strbuf_chr(canon, ',');
		}
		add_trimmed(canon, h[i].value);
		if (last)
			snap_strbuf_chr(canon, '\n');
	}
out:
	for (size_t i = 0; i < k; i++)
		free(h[i].name);
	free(h);
	return r;
}

struct qp {
	char *name, *value; /* encoded */
};

static int cmp_qp(const void *a, const void *b)
{
	const struct qp *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->value, y->value);
}

/* Step 3's query line: encoded name=value pairs sorted, joined with '&'. */
static int canon_query(const struct snap_sigv4_request *q, struct snap_strbuf *b)
{
	if (!q->nquery)
		return 0;
	struct qp *p = calloc(q->nquery, sizeof(*p));
	if (!p)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; i < q->nquery; i++) {
		const char *v = q->query[i].value ? q->query[i].value : "";
		p[i].name = encode_dup(q->query[i].name, false);
		p[i].value = encode_dup(v, false);
		if (!p[i].name || !p[i].value) {
			r = -ENOMEM;
			goto out;
		}
	}
	qsort(p, q->nquery, sizeof(*p), cmp_qp);
	for (size_t i = 0; i < q->nquery; i++) {
		if (i)
			snap_strbuf_chr(b, '&');
		snap_strbuf_str(b, p[i].name);
		snap_strbuf_chr(b, '=');
		snap_strbuf_str(b, p[i].value);
	}
out:
	for (size_t i = 0; i < q->nquery; i++) {
		free(p[i].name);
		free(p[i].value);
	}
	free(p);
	return r;
}

int snap_sigv4_hex_sha256(const void *data, size_t len, char out[65])
{
	uint8_t d[32];
	unsigned int l = 0;
	if (!EVP_Digest(len ? data : "", len, d, &l, EVP_sha256(), NULL) || l != 32)
		return -EIO;
	snap_hex(out, d, 32);
	return 0;
}

static int hmac256(const void *key, size_t klen, const void *data, size_t dlen, uint8_t out[32])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};
	size_t l = 0;
	int ok = ctx && EVP_MAC_init(ctx, key, klen, params) && EVP_MAC_update(ctx, data, dlen) &&
		 EVP_MAC_final(ctx, out, &l, 32) && l == 32;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return ok ? 0 : -EIO;
}

/* Step 5. */
static int signing_key(const struct snap_sigv4_request *q, const char *date8, uint8_t key[32])
{
	size_t slen = strlen(q->secret_key);
	char *k0 = malloc(slen + 5);
	if (!k0)
		return -ENOMEM;
	memcpy(k0, "AWS4", 4);
	memcpy(k0 + 4, q->secret_key, slen + 1);
	int r = hmac256(k0, slen + 4, date8, strlen(date8), key);
	OPENSSL_cleanse(k0, slen + 4);
	free(k0);
	if (r >= 0)
		r = hmac256(key, 32, q->region, strlen(q->region), key);
	if (r >= 0)
		r = hmac256(key, 32, q->service, strlen(q->service), key);
	if (r >= 0)
		r = hmac256(key, 32, "aws4_request", 12, key);
	return r;
}

struct snap_sigv4_result *snap_sigv4_result_free(struct snap_sigv4_result *r)
{
	if (!r)
		return NULL;
	free(r->canonical_request);
	free(r->string_to_sign);
	free(r->signed_headers);
	for (size_t i = 0; i < r->nadd; i++)
		free(r->add[i].value);
	free(r);
	return NULL;
}

static int add_header(struct snap_sigv4_result *res, const char *name, const char *value)
{
	char *v = strdup(value);
	if (!v)
		return -ENOMEM;
	res->add[res->nadd].name = name;
	res->add[res->nadd++].value = v;
	return 0;
}

int snap_sigv4_sign(const struct snap_sigv4_request *q, struct snap_sigv4_result **ret_result)
{
	if (!q || !ret_result)
		return -EINVAL;
	int r = check_request(q);
	if (r < 0)
		return r;

	struct snap_sigv4_result *res = calloc(1, sizeof(*res));
	if (!res)
		return -ENOMEM;
	time_t t = (time_t)q->time;
	struct tm tm;
	if (!gmtime_r(&t, &tm) ||
	    strftime(res->amz_date, sizeof(res->amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16) {
		r = -EINVAL;
		goto fail;
	}
	char date8[9];
	memcpy(date8, res->amz_date, 8);
	date8[8] = 0;

	/* steps 2 and 3 */
	struct snap_strbuf hdrs = SNAP_STRBUF_INIT, names = SNAP_STRBUF_INIT, cr = SNAP_STRBUF_INIT,
			   sts = SNAP_STRBUF_INIT, scope = SNAP_STRBUF_INIT,
			   auth = SNAP_STRBUF_INIT;
	r = canon_headers(q, res->amz_date, &hdrs, &names);
	if (r < 0)
		goto out_bufs;
	char *path = encode_dup(q->path, true);
	if (!path) {
		r = -ENOMEM;
		goto out_bufs;
	}
	snap_strbuf_str(&cr, q->method);
	snap_strbuf_chr(&cr, '\n');
	snap_strbuf_str(&cr, path);
	snap_strbuf_chr(&cr, '\n');
	free(path);
	r = canon_query(q, &cr);
	if (r < 0)
		goto out_bufs;
	snap_strbuf_chr(&cr, '\n');
	if (hdrs.p)
		snap_strbuf_str(&cr, hdrs.p);
	snap_strbuf_chr(&cr, '\n');
	if (names.p)
		snap_strbuf_str(&cr, names.p);
	snap_strbuf_chr(&cr, '\n');
	snap_strbuf_str(&cr, q->payload_hash);
	r = cr.err ? cr.err : names.err ? names.err : hdrs.err;
	if (r < 0)
		goto out_bufs;

	/* step 4 */
	char hex[65];
	r = snap_sigv4_hex_sha256(cr.p, cr.len, hex);
	if (r < 0)
		goto out_bufs;
	snap_strbuf_str(&sts, "AWS4-HMAC-SHA256\n");
	snap_strbuf_str(&sts, res->amz_date);
	snap_strbuf_chr(&sts, '\n');
	snap_strbuf_printf(&scope, "%s/%s/%s/aws4_request", date8, q->region, q->service);
	if (scope.err) {
		r = scope.err;
		goto out_bufs;
	}
	snap_strbuf_str(&sts, scope.p);
	snap_strbuf_chr(&sts, '\n');
	snap_strbuf_str(&sts, hex);
	if (sts.err) {
		r = sts.err;
		goto out_bufs;
	}

	/* step 5 */
	uint8_t key[32], sig[32];
	r = signing_key(q, date8, key);
	if (r >= 0)
		r = hmac256(key, 32, sts.p, sts.len, sig);
	OPENSSL_cleanse(key, sizeof(key));
	if (r < 0)
		goto out_bufs;
	snap_hex(res->signature, sig, 32);

	snap_strbuf_str(&auth, "AWS4-HMAC-SHA256 Credential=");
	snap_strbuf_str(&auth, q->access_key);
	snap_strbuf_chr(&auth, '/');
	snap_strbuf_str(&auth, scope.p);
	snap_strbuf_str(&auth, ", SignedHeaders=");
	snap_strbuf_str(&auth, names.p);
	snap_strbuf_str(&auth, ", Signature=");
	snap_strbuf_str(&auth, res->signature);
	r = auth.err;
	if (r >= 0)
		r = snap_strbuf_take(&cr, &res->canonical_request, NULL);
	if (r >= 0)
		r = snap_strbuf_take(&sts, &res->string_to_sign, NULL);
	if (r >= 0)
		r = snap_strbuf_take(&names, &res->signed_headers, NULL);
	if (r >= 0)
		r = add_header(res, "Authorization", auth.p);
	if (r >= 0)
		r = add_header(res, "x-amz-date", res->amz_date);
	if (r >= 0 && !strcmp(q->service, "s3"))
		r = add_header(res, "x-amz-content-sha256", q->payload_hash);
	if (r >= 0 && q->session_token)
		r = add_header(res, "x-amz-security-token", q->session_token);
out_bufs:
	snap_strbuf_release(&hdrs);
	snap_strbuf_release(&names);
	snap_strbuf_release(&cr);
	snap_strbuf_release(&sts);
	snap_strbuf_release(&scope);
	snap_strbuf_release(&auth);
	if (r >= 0) {
		*ret_result = res;
		return 0;
	}
fail:
	snap_sigv4_result_free(res);
	return r;
}

/* Invariant 5: the chunk's string to sign is "AWS4-HMAC-SHA256-PAYLOAD", the date, the scope,
 * the previous signature, the SHA-256 of nothing (no chunk extensions) and the SHA-256 of the
 * chunk's data, one per line. */
int snap_sigv4_chunk_init(struct snap_sigv4_chunk *ch, const struct snap_sigv4_request *req,
			  const struct snap_sigv4_result *signed_req)
{
	if (!ch || !req || !signed_req)
		return -EINVAL;
	int r = check_request(req);
	if (r < 0)
		return r;
	if (strcmp(req->payload_hash, SNAP_SIGV4_STREAMING) ||
	    strlen(signed_req->signature) != 64 || strlen(signed_req->amz_date) != 16)
		return -EINVAL;
	struct snap_sigv4_chunk c = {0};
	memcpy(c.amz_date, signed_req->amz_date, sizeof(c.amz_date));
	int n = snprintf(c.scope, sizeof(c.scope), "%.8s/%s/%s/aws4_request", c.amz_date,
			 req->region, req->service);
	if (n < 0 || (size_t)n >= sizeof(c.scope))
		return -EINVAL;
	char date8[9];
	memcpy(date8, c.amz_date, 8);
	date8[8] = 0;
	r = signing_key(req, date8, c.key);
	if (r < 0) {
		OPENSSL_cleanse(&c, sizeof(c));
		return r;
	}
	memcpy(c.prev, signed_req->signature, sizeof(c.prev));
	*ch = c;
	OPENSSL_cleanse(&c, sizeof(c));
	return 0;
}

int snap_sigv4_chunk_sign(struct snap_sigv4_chunk *ch, const void *data, size_t len,
			  char ret_signature[65])
{
	static const char empty[] =
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
	uint8_t sig[32];
	char hex[65];
	int r = snap_sigv4_hex_sha256(data, len, hex);
	if (r < 0)
		return r;
	/* 24 + 1 + 16 + 1 + scope + 1 + 64 + 1 + 64 + 1 + 64 */
	char sts[400];
	int n = snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n%s\n%s\n%s",
			 ch->amz_date, ch->scope, ch->prev, empty, hex);
	if (n < 0 || (size_t)n >= sizeof(sts))
		return -EINVAL;
	r = hmac256(ch->key, sizeof(ch->key), sts, (size_t)n, sig);
	if (r < 0)
		return r;
	snap_hex(ch->prev, sig, 32);
	memcpy(ret_signature, ch->prev, 65);
	return 0;
}

static size_t hex_digits(uint64_t v)
{
	size_t n = 1;
	while (v >>= 4)
		n++;
	return n;
}

/* ";chunk-signature=" + 64 hex + CRLF, then CRLF after the data */
#define CHUNK_OVERHEAD (17 + 64 + 2 + 2)

uint64_t snap_sigv4_chunked_length(uint64_t len, uint64_t chunk_size)
{
	uint64_t full = len / chunk_size, rest = len % chunk_size;
	uint64_t total = full * (hex_digits(chunk_size) + CHUNK_OVERHEAD + chunk_size);
	if (rest)
		total += hex_digits(rest) + CHUNK_OVERHEAD + rest;
	return total + 1 + CHUNK_OVERHEAD;
}

size_t snap_sigv4_chunk_header(char *out, size_t len, const char signature[65])
{
	int n = snprintf(out, SNAP_SIGV4_CHUNK_HEADER_MAX, "%zx;chunk-signature=%.64s\r\n", len,
			 signature);
	return n < 0 ? 0 : (size_t)n;
}
