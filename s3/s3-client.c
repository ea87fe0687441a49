// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * s3-client.c - the S3 transport (s3.h, "the client and its transport"): requests queued by any
 * thread, run by one transport thread per client over curl_multi.
 *
 * Invariants:
 *  1. Only the transport thread touches curl (the multi handle, every easy handle) and a
 *     request's attempt state; callers touch a request only before it is queued and after it is
 *     done. Both sides meet under the client's lock: the pending list, done / rc / detail, the
 *     abandoned and resume flags, cancel, the budget, the region.
 *  2. A request is signed at the start of each attempt with the clock of that moment; its
 *     payload hash (SHA-256) is computed once, by the caller, when it is made. The service
 *     checks it against the body, so a data body (PutObject, UploadPart: most of the bytes
 *     uploaded) carries no Content-MD5 as well: MD5 would cost the client about half as much
 *     CPU again for no check the SHA-256 does not make (bench/RESULTS.md); the small control
 *     bodies keep it. A streamed body is signed chunk by chunk (sigv4.h invariant 5) as curl reads it.
 *  3. An attempt ends in exactly one of: success (2xx), a final failure, a retry scheduled as a
 *     timer of the transport thread (exponential backoff, full jitter), or a region redirect
 *     re-attempted at once (once per client). Nothing sleeps but curl_multi_poll.
 *  4. The fault hook is asked once per attempt; its fault is applied inside the attempt:
 *     HTTP_500 and SLOWDOWN answer without sending, TIMEOUT holds the attempt 1 s then fails it
 *     as a timeout, RESET cuts the body halfway (sent or received), CORRUPT flips one byte of the
 *     body sent after it was hashed and signed.
 *  5. A request ends once: finish() sets done, wakes the waiters, and frees the request itself
 *     when its owner abandoned it (snap_s3_get_free before wait).
 *
 * Life of a request: req_new (caller) -> submit (pending) -> start_attempt (thread: sign, add
 * to multi) -> attempt_done (thread: classify) -> [schedule_retry -> start_attempt]... ->
 * finish -> req_wait (caller) -> req_free.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "s3-internal.h"
#include "s3-xml.h"
#include "s3.h"
#include "sigv4.h"

#define RETRY_BASE_MS 100
#define RETRY_CAP_MS 20000
#define FAULT_TIMEOUT_MS 1000
#define CHUNK_SIZE (64u * 1024)	    /* the data of one aws-chunked chunk */
#define ERROR_BODY_MAX (64u * 1024) /* what is kept of an error answer */
#define XML_BODY_MAX SNAP_S3_XML_MAX_SIZE

/* ---- header lists, put headers, addressing (s3-internal.h) ---- */

int snap_s3_hlist_add(struct snap_s3_hlist *l, const char *name, const char *value)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		struct snap_sigv4_param *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	char *n = strdup(name), *v = strdup(value ? value : "");
	if (!n || !v) {
		free(n);
		free(v);
		return -ENOMEM;
	}
	l->v[l->n].name = n;
	l->v[l->n++].value = v;
	return 0;
}

const char *snap_s3_hlist_get(const struct snap_s3_hlist *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcasecmp(l->v[i].name, name))
			return l->v[i].value;
	return NULL;
}

void snap_s3_hlist_clear(struct snap_s3_hlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free((char *)l->v[i].name);
		free((char *)l->v[i].value);
	}
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static bool is_token(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", c)))
			return false;
	}
	return true;
}

static bool is_value(const char *s)
{
	if (!s)
		return false;
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return false;
	return true;
}

/* Appends s to the string *p (realloc'd), query-encoded when encode. */
static int append(char **p, size_t *len, const char *s, bool encode)
{
	size_t n = strlen(s);
	char *q = realloc(*p, *len + 3 * n + 1);
	if (!q)
		return -ENOMEM;
	*p = q;
	if (encode) {
		*len += snap_sigv4_uri_encode(q + *len, s, n, 0);
	} else {
		memcpy(q + *len, s, n + 1);
		*len += n;
	}
	return 0;
}

int snap_s3_put_headers(const struct snap_s3_put_options *o, struct snap_s3_hlist *l)
{
	struct snap_s3_hlist h = {0};
	int r = 0;
	if (!o)
		return 0;
	if (o->acl && (r = snap_s3_hlist_add(&h, "x-amz-acl", o->acl)) < 0)
		goto fail;
	for (size_t i = 0; i < o->nmeta; i++) {
		if (!is_token(o->meta[i].name) || !is_value(o->meta[i].value)) {
			r = -EINVAL;
			goto fail;
		}
		char name[256];
		int n = snprintf(name, sizeof(name), "x-amz-meta-%s", o->meta[i].name);
		if (n < 0 || (size_t)n >= sizeof(name)) {
			r = -EINVAL;
			goto fail;
		}
		if ((r = snap_s3_hlist_add(&h, name, o->meta[i].value)) < 0)
			goto fail;
	}
	if (o->ntags) {
		char *t = NULL;
		size_t len = 0;
		for (size_t i = 0; i < o->ntags && r >= 0; i++) {
			if (i)
				r = append(&t, &len, "&", false);
			if (r >= 0)
				r = append(&t, &len, o->tags[i].name ? o->tags[i].name : "", true);
			if (r >= 0)
				r = append(&t, &len, "=", false);
			if (r >= 0)
				r = append(&t, &len, o->tags[i].value ? o->tags[i].value : "",
					   true);
		}
		if (r >= 0)
			r = snap_s3_hlist_add(&h, "x-amz-tagging", t);
		free(t);
		if (r < 0)
			goto fail;
	}
	if (o->content_type && !is_value(o->content_type)) {
		r = -EINVAL;
		goto fail;
	}
	r = snap_s3_hlist_add(&h, "Content-Type",
			      o->content_type ? o->content_type : "application/octet-stream");
	if (r >= 0 && o->if_none_match)
		r = snap_s3_hlist_add(&h, "If-None-Match", "*");
	if (r < 0)
		goto fail;
	for (size_t i = 0; i < h.n; i++) {
		r = snap_s3_hlist_add(l, h.v[i].name, h.v[i].value);
		if (r < 0) {
			/* take back what was added */
			while (i-- > 0) {
				l->n--;
				free((char *)l->v[l->n].name);
				free((char *)l->v[l->n].value);
			}
			goto fail;
		}
	}
fail:
	snap_s3_hlist_clear(&h);
	return r;
}

int snap_s3_address(const char *endpoint, bool aws, const char *region, const char *bucket,
		    const char *key, char **ret_base, char **ret_host, char **ret_path)
{
	const char *sep = strstr(endpoint, "://");
	if (!sep || sep == endpoint || !sep[3])
		return -EINVAL;
	size_t slen = (size_t)(sep - endpoint);
	const char *hp = sep + 3;
	size_t hlen = strcspn(hp, "/");
	if (!hlen)
		return -EINVAL;
	bool virt = aws && bucket && *bucket && !strchr(bucket, '.');
	char *host = NULL, *base = NULL, *path = NULL;
	int r;
	if (aws)
		r = virt ? asprintf(&host, "%s.s3.%s.amazonaws.com", bucket, region)
			 : asprintf(&host, "s3.%s.amazonaws.com", region);
	else
		r = asprintf(&host, "%.*s", (int)hlen, hp);
	if (r < 0)
		return -ENOMEM;
	if (asprintf(&base, "%.*s://%s", (int)slen, endpoint, host) < 0)
		goto oom;
	const char *k = key ? key : "";
	if (virt)
		r = asprintf(&path, "/%s", k);
	else if (bucket && *bucket)
		r = *k ? asprintf(&path, "/%s/%s", bucket, k) : asprintf(&path, "/%s", bucket);
	else
		r = asprintf(&path, "/");
	if (r < 0)
		goto oom;
	*ret_base = base;
	*ret_host = host;
	*ret_path = path;
	return 0;
oom:
	free(host);
	free(base);
	return -ENOMEM;
}

/* ---- the client ---- */

struct req;

struct snap_s3_client {
	char *endpoint, *access_key, *secret_key, *session_token;
	bool aws;
	unsigned connections, retries, timeout_s;
	uint64_t budget_total;
	unsigned page_size;

	CURLM *multi;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* a request done, budget released, cancel */
	char *region;	     /* the signing region: changes once, on a redirect */
	bool redirected;
	bool stop, cancelled;
	struct req *pending, **pending_tail;
	uint64_t budget_used;
	snap_s3_log_fn log_fn;
	void *log_ud;

	/* counted with atomics: callbacks update them without the lock */
	struct snap_s3_stats stats;

	/* the transport thread's own */
	struct req *active; /* waiting for a timer or in the multi handle */
	uint64_t rng;
};

enum body_kind { BODY_NONE, BODY_MEM, BODY_STREAM };

struct req {
	struct snap_s3_client *c;
	struct req *next;
	const char *op; /* S3's name of the operation, for details */
	const char *method;
	char *bucket, *key;
	struct snap_s3_hlist query, headers;

	/* what is sent */
	enum body_kind body_kind;
	const uint8_t *body;
	size_t body_len;
	uint8_t *body_owned;
	char payload_hash[65];
	snap_s3_read_fn read_fn;
	void *read_ud;
	uint64_t stream_len;

	/* an attempt (transport thread) */
	unsigned attempt;
	enum snap_s3_fault fault;
	bool fault_hit;	   /* the injected reset or timeout happened */
	bool fake_timeout; /* waiting holds a TIMEOUT fault */
	bool waiting;	   /* a timer is set: due_ms */
	uint64_t due_ms;
	CURL *easy;
	struct curl_slist *slist;
	char errbuf[CURL_ERROR_SIZE];
	uint64_t sent; /* body bytes given to curl */
	int local_err; /* a callback's refusal: final */
	bool streamed_any;
	/* streamed body: the chunk being sent */
	struct snap_sigv4_chunk chain;
	uint8_t *chunk;
	size_t chunk_len, chunk_off;
	char chunk_hdr[SNAP_SIGV4_CHUNK_HEADER_MAX];
	size_t hdr_len, hdr_off, tail_off;
	bool final_done;
	bool paused; /* the read callback asked for a pause (-EAGAIN) */

	/* what comes back */
	long status;
	char *etag, *last_modified, *bucket_region;
	uint64_t content_length;
	bool have_length;
	struct snap_s3_hlist meta;
	uint8_t *dst; /* direct: exactly dst_cap bytes wanted here */
	size_t dst_cap;
	uint8_t *buf; /* else: the body, at most max bytes */
	size_t len, cap, max;
	uint64_t got; /* body bytes of this attempt */
	uint8_t *err;
	size_t err_len;

	/* the outcome (under the lock) */
	bool done, abandoned, resume;
	int rc;
	char *detail;
};

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static snap_s3_fault_fn fault_fn;
static void *fault_ud;

void snap_s3_set_fault(snap_s3_fault_fn fn, void *userdata)
{
	pthread_mutex_lock(&fault_lock);
	fault_fn = fn;
	fault_ud = userdata;
	pthread_mutex_unlock(&fault_lock);
}

static enum snap_s3_fault ask_fault(const struct req *r)
{
	pthread_mutex_lock(&fault_lock);
	enum snap_s3_fault f = SNAP_S3_FAULT_NONE;
	if (fault_fn)
		f = fault_fn(fault_ud, r->method, r->bucket, r->key ? r->key : "", r->attempt);
	pthread_mutex_unlock(&fault_lock);
	return f;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void stat_add(uint64_t *p, uint64_t n)
{
	__atomic_fetch_add(p, n, __ATOMIC_RELAXED);
}

__attribute__((format(printf, 3, 4))) static void client_log(struct snap_s3_client *c, int level,
							     const char *fmt, ...)
{
	pthread_mutex_lock(&c->lock);
	snap_s3_log_fn fn = c->log_fn;
	void *ud = c->log_ud;
	pthread_mutex_unlock(&c->lock);
	if (!fn)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fn(ud, level, msg);
}

/* ---- requests (caller side) ---- */

static struct req *req_new(struct snap_s3_client *c, const char *op, const char *method,
			   const char *bucket, const char *key)
{
	if (!bucket || !*bucket)
		return NULL;
	struct req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->c = c;
	r->op = op;
	r->method = method;
	r->bucket = strdup(bucket);
	r->key = key ? strdup(key) : NULL;
	if (!r->bucket || (key && !r->key)) {
		free(r->bucket);
		free(r->key);
		free(r);
		return NULL;
	}
	/* SHA-256 of nothing */
	memcpy(r->payload_hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	       65);
	return r;
}

static void reset_response(struct req *r)
{
	r->status = 0;
	free(r->etag);
	free(r->last_modified);
	free(r->bucket_region);
	r->etag = r->last_modified = r->bucket_region = NULL;
	r->content_length = 0;
	r->have_length = false;
	snap_s3_hlist_clear(&r->meta);
	r->len = 0;
	r->got = 0;
	r->err_len = 0;
}

static void req_free(struct req *r)
{
	if (!r)
		return;
	snap_s3_hlist_clear(&r->query);
	snap_s3_hlist_clear(&r->headers);
	reset_response(r);
	free(r->bucket);
	free(r->key);
	free(r->body_owned);
	free(r->chunk);
	free(r->buf);
	free(r->err);
	free(r->detail);
	free(r);
}

/* A body in memory: its SHA-256 (the payload hash) and, for a PUT, its Content-MD5. */
static int req_body(struct req *r, const void *buf, size_t len, bool md5)
{
	r->body_kind = BODY_MEM;
	r->body = buf;
	r->body_len = len;
	if (snap_sigv4_hex_sha256(buf, len, r->payload_hash) < 0)
		return -EIO;
	if (md5) {
		uint8_t m[16];
		unsigned int l = 0;
		char b64[32];
		if (!EVP_Digest(len ? buf : "", len, m, &l, EVP_md5(), NULL) || l != 16)
			return -EIO;
		EVP_EncodeBlock((unsigned char *)b64, m, 16);
		return snap_s3_hlist_add(&r->headers, "Content-MD5", b64);
	}
	return 0;
}

static int submit(struct snap_s3_client *c, struct req *r)
{
	pthread_mutex_lock(&c->lock);
	if (c->cancelled || c->stop) {
		r->done = true;
		r->rc = -ECANCELED;
		pthread_mutex_unlock(&c->lock);
		return -ECANCELED;
	}
	r->next = NULL;
	*c->pending_tail = r;
	c->pending_tail = &r->next;
	pthread_mutex_unlock(&c->lock);
	curl_multi_wakeup(c->multi);
	return 0;
}

/* Waits for r; its rc (detail moved to *ret_detail when asked and failed). */
static int req_wait(struct req *r, char **ret_detail)
{
	struct snap_s3_client *c = r->c;
	pthread_mutex_lock(&c->lock);
	while (!r->done)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	if (r->rc < 0 && ret_detail) {
		if (!r->detail)
			asprintf(&r->detail, "%s s3://%s/%s: %s", r->op, r->bucket,
				 r->key ? r->key : "", strerror(-r->rc));
		*ret_detail = r->detail;
		r->detail = NULL;
	}
	return r->rc;
}

/* Runs r to its end. */
static int run(struct snap_s3_client *c, struct req *r, char **ret_detail)
{
	int rc = submit(c, r);
	if (rc < 0) {
		if (ret_detail)
			asprintf(ret_detail, "%s s3://%s/%s: cancelled", r->op, r->bucket,
				 r->key ? r->key : "");
		return rc;
	}
	return req_wait(r, ret_detail);
}

/* ---- the transport thread ---- */

static void finish(struct snap_s3_client *c, struct req *r, int rc, char *detail)
{
	if (r->easy) {
		curl_multi_remove_handle(c->multi, r->easy);
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
	}
	curl_slist_free_all(r->slist);
	r->slist = NULL;
	r->waiting = false;
	for (struct req **p = &c->active; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			break;
		}
	r->next = NULL;
	pthread_mutex_lock(&c->lock);
	bool abandoned = r->abandoned;
	r->rc = rc;
	free(r->detail);
	r->detail = detail;
	r->done = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (abandoned)
		req_free(r);
}

static const char *key_of(const struct req *r)
{
	return r->key ? r->key : "";
}

static int map_error(const struct req *r, long status, const char *code)
{
	static const struct {
		const char *code;
		int err;
	} codes[] = {
	    {"NoSuchKey", -ENOENT},
	    {"NoSuchBucket", -ENOENT},
	    {"NoSuchUpload", -ENOENT},
	    {"AccessDenied", -EACCES},
	    {"SignatureDoesNotMatch", -EACCES},
	    {"InvalidAccessKeyId", -EACCES},
	    {"BucketAlreadyOwnedByYou", -EEXIST},
	    {"BucketAlreadyExists", -EEXIST},
	    {"BucketNotEmpty", -ENOTEMPTY},
	    {"BadDigest", -EBADMSG},
	    {"XAmzContentSHA256Mismatch", -EBADMSG},
	    {"InvalidDigest", -EBADMSG},
	    {"InvalidRange", -ENODATA},
	    {"EntityTooLarge", -EFBIG},
	    {"NotImplemented", -EOPNOTSUPP},
	};
	if (code)
		for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
			if (!strcmp(code, codes[i].code))
				return codes[i].err;
	switch (status) {
	case 404:
		return -ENOENT;
	case 403:
		return -EACCES;
	case 412:
		/* a conditional write refused; a conditional read of a replaced object */
		return strcmp(r->method, "GET") && strcmp(r->method, "HEAD") ? -EEXIST : -ESTALE;
	case 416:
		return -ENODATA;
	case 400:
		return -EINVAL;
	default:
		return -EIO;
	}
}

/* The final failure of an answer with status >= 300. */
static void finish_http(struct snap_s3_client *c, struct req *r)
{
	struct snap_s3_error *e = NULL;
	if (r->err_len)
		snap_s3_error_parse(r->err, r->err_len, &e, NULL);
	const char *code = e ? e->code : NULL;
	int rc = map_error(r, r->status, code);
	char *detail = NULL;
	char retried[48] = "";
	if (r->attempt)
		snprintf(retried, sizeof(retried), " (after %u retr%s)", r->attempt,
			 r->attempt == 1 ? "y" : "ies");
	asprintf(&detail, "%s s3://%s/%s: HTTP %ld%s%s%s%s%s", r->op, r->bucket, key_of(r),
		 r->status, code ? " " : "", code ? code : "",
		 e && e->message && *e->message ? ": " : "", e && e->message ? e->message : "",
		 retried);
	snap_s3_error_free(e);
	finish(c, r, rc, detail);
}

static void finish_transport(struct snap_s3_client *c, struct req *r, CURLcode cc)
{
	char *detail = NULL;
	const char *what = r->fault_hit
			       ? (r->fault == SNAP_S3_FAULT_TIMEOUT ? "timed out (injected)"
								    : "connection reset (injected)")
			       : curl_easy_strerror(cc);
	/* errbuf holds the first failure of the attempt, which may not be the one returned */
	bool first = !r->fault_hit && r->errbuf[0] && strcmp(r->errbuf, what);
	asprintf(&detail, "%s s3://%s/%s: %s%s%s%s%s after %u retr%s", r->op, r->bucket, key_of(r),
		 what, first ? " (" : "", first ? r->errbuf : "", first ? ")" : "",
		 r->body_kind == BODY_STREAM ? " (a streamed body is not retried)" : "", r->attempt,
		 r->attempt == 1 ? "y" : "ies");
	finish(c, r, -EIO, detail);
}

static uint64_t rng_next(struct snap_s3_client *c)
{
	/* xorshift64*: jitter, not secrets */
	uint64_t x = c->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	c->rng = x;
	return x * 2685821657736338717ull;
}

static void start_attempt(struct snap_s3_client *c, struct req *r);

/* Invariant 3: a retry as a timer, full jitter over min(cap, base * 2^attempt). */
static void schedule_retry(struct snap_s3_client *c, struct req *r, const char *why)
{
	uint64_t ceil_ms = RETRY_CAP_MS;
	if (r->attempt < 20)
		ceil_ms = (uint64_t)RETRY_BASE_MS << r->attempt;
	if (ceil_ms > RETRY_CAP_MS)
		ceil_ms = RETRY_CAP_MS;
	uint64_t delay = rng_next(c) % (ceil_ms + 1);
	r->attempt++;
	stat_add(&c->stats.retries, 1);
	client_log(c, 2, "s3: %s s3://%s/%s: %s, retry %u in %" PRIu64 " ms", r->op, r->bucket,
		   key_of(r), why, r->attempt, delay);
	if (r->easy) {
		curl_multi_remove_handle(c->multi, r->easy);
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
	}
	curl_slist_free_all(r->slist);
	r->slist = NULL;
	r->fake_timeout = false;
	r->waiting = true;
	r->due_ms = now_ms() + delay;
}

static bool retryable_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SEND_FAIL_REWIND: /* a reused connection died under a body: send it afresh */
		return true;
	default:
		return false;
	}
}

static bool retryable_status(const struct req *r, const char **ret_code)
{
	*ret_code = NULL;
	if (r->status >= 500 || r->status == 429)
		return true;
	if (r->status != 400 || !r->err_len)
		return false;
	/* a body damaged on the way (the payload hash caught it) or an idle connection closed by
	 * the service: sending it again is the cure */
	struct snap_s3_error *e = NULL;
	bool again = false;
	if (snap_s3_error_parse(r->err, r->err_len, &e, NULL) == 0)
		again = !strcmp(e->code, "BadDigest") ||
			!strcmp(e->code, "XAmzContentSHA256Mismatch") ||
			!strcmp(e->code, "RequestTimeout");
	snap_s3_error_free(e);
	return again;
}

/* A region named by a redirect (301 PermanentRedirect, 400 AuthorizationHeaderMalformed). */
static bool follow_redirect(struct snap_s3_client *c, struct req *r)
{
	if (!r->bucket_region || !(r->status == 301 || r->status == 400))
		return false;
	pthread_mutex_lock(&c->lock);
	bool go = !c->redirected && strcmp(c->region, r->bucket_region);
	char *old = NULL;
	if (go) {
		char *n = strdup(r->bucket_region);
		if (n) {
			old = c->region;
			c->region = n;
			c->redirected = true;
		} else {
			go = false;
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (go) {
		client_log(c, 1, "s3: bucket %s is in region %s, not %s: following the redirect",
			   r->bucket, r->bucket_region, old);
		free(old);
	}
	return go;
}

static void attempt_done(struct snap_s3_client *c, struct req *r, CURLcode cc)
{
	if (r->local_err) {
		char *detail = NULL;
		if (r->local_err == -EFBIG)
			asprintf(&detail, "%s s3://%s/%s: larger than %zu bytes", r->op, r->bucket,
				 key_of(r), r->max);
		else if (r->local_err == -EPROTO)
			asprintf(&detail, "%s s3://%s/%s: HTTP %ld: more bytes than asked", r->op,
				 r->bucket, key_of(r), r->status);
		else
			asprintf(&detail, "%s s3://%s/%s: the body's source failed: %s", r->op,
				 r->bucket, key_of(r), strerror(-r->local_err));
		finish(c, r, r->local_err, detail);
		return;
	}
	bool replayable = r->body_kind != BODY_STREAM;
	if (cc != CURLE_OK || r->fault_hit) {
		if ((r->fault_hit || retryable_curl(cc)) && replayable && r->attempt < c->retries) {
			schedule_retry(c, r,
				       r->fault_hit ? "injected fault" : curl_easy_strerror(cc));
			return;
		}
		finish_transport(c, r, cc);
		return;
	}
	if (r->status >= 200 && r->status < 300) {
		finish(c, r, 0, NULL);
		return;
	}
	if (follow_redirect(c, r)) {
		curl_multi_remove_handle(c->multi, r->easy);
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
		curl_slist_free_all(r->slist);
		r->slist = NULL;
		if (replayable) {
			start_attempt(c, r);
			return;
		}
	}
	const char *code;
	if (retryable_status(r, &code) && replayable && r->attempt < c->retries) {
		char why[32];
		snprintf(why, sizeof(why), "HTTP %ld", r->status);
		schedule_retry(c, r, why);
		return;
	}
	finish_http(c, r);
}

/* -- curl callbacks (transport thread) -- */

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct req *r = ud;
	size_t len = size * n;
	if (r->fault == SNAP_S3_FAULT_RESET && r->body_kind == BODY_NONE &&
	    strcmp(r->method, "GET")) {
		r->fault_hit = true;
		return 0;
	}
	if (len >= 5 && !strncmp(p, "HTTP/", 5)) {
		/* a status line: a new answer starts (after a 100 Continue, for one) */
		const char *sp = memchr(p, ' ', len);
		reset_response(r);
		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return len;
	}
	const char *colon = memchr(p, ':', len);
	if (!colon)
		return len;
	size_t nlen = (size_t)(colon - p);
	const char *v = colon + 1, *end = p + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t vlen = (size_t)(end - v);
#define IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(p, name, nlen))
	char **slot = NULL;
	if (IS("ETag"))
		slot = &r->etag;
	else if (IS("Last-Modified"))
		slot = &r->last_modified;
	else if (IS("x-amz-bucket-region"))
		slot = &r->bucket_region;
	if (slot) {
		free(*slot);
		*slot = strndup(v, vlen);
	} else if (IS("Content-Length")) {
		char tmp[24];
		if (vlen && vlen < sizeof(tmp)) {
			memcpy(tmp, v, vlen);
			tmp[vlen] = 0;
			char *e;
			unsigned long long x = strtoull(tmp, &e, 10);
			if (!*e) {
				r->content_length = x;
				r->have_length = true;
			}
		}
	} else if (nlen > 11 && !strncasecmp(p, "x-amz-meta-", 11)) {
		char *name = strndup(p + 11, nlen - 11), *val = strndup(v, vlen);
		if (name && val) {
			for (char *q = name; *q; q++)
				if (*q >= 'A' && *q <= 'Z')
					*q = (char)(*q - 'A' + 'a');
			snap_s3_hlist_add(&r->meta, name, val);
		}
		free(name);
		free(val);
	}
#undef IS
	return len;
}

static bool grow(uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return true;
	size_t c = *cap ? *cap : 4096;
	while (c < need)
		c = c > SIZE_MAX / 2 ? need : 2 * c;
	uint8_t *q = realloc(*p, c);
	if (!q)
		return false;
	*p = q;
	*cap = c;
	return true;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
	struct req *r = ud;
	size_t len = size * n;
	if (r->status < 200 || r->status >= 300) {
		size_t keep = len;
		if (r->err_len + keep > ERROR_BODY_MAX)
			keep = ERROR_BODY_MAX - r->err_len;
		if (!r->err)
			r->err = malloc(ERROR_BODY_MAX);
		if (keep && r->err) {
			memcpy(r->err + r->err_len, p, keep);
			r->err_len += keep;
		}
		return len;
	}
	if (r->fault == SNAP_S3_FAULT_RESET && r->body_kind == BODY_NONE) {
		/* cut halfway through the body received */
		uint64_t half = r->have_length ? r->content_length / 2 : 0;
		if (r->got + len > half) {
			r->fault_hit = true;
			return 0;
		}
	}
	stat_add(&r->c->stats.bytes_down, len);
	if (r->dst) {
		if (r->got + len > r->dst_cap) {
			r->local_err = -EPROTO;
			return 0;
		}
		memcpy(r->dst + r->got, p, len);
		r->got += len;
		return len;
	}
	if (r->len + len > r->max) {
		r->local_err = -EFBIG;
		return 0;
	}
	size_t need = r->len + len;
	if (r->have_length && r->content_length <= r->max && r->content_length > need)
		need = (size_t)r->content_length;
	if (!grow(&r->buf, &r->cap, need)) {
		r->local_err = -ENOMEM;
		return 0;
	}
	memcpy(r->buf + r->len, p, len);
	r->len += len;
	r->got += len;
	return len;
}

static size_t read_mem(char *p, size_t size, size_t n, void *ud)
{
	struct req *r = ud;
	size_t room = size * n, left = r->body_len - (size_t)r->sent;
	size_t take = room < left ? room : left;
	if (r->fault == SNAP_S3_FAULT_RESET && r->sent >= r->body_len / 2 && left) {
		r->fault_hit = true;
		return CURL_READFUNC_ABORT;
	}
	if (r->fault == SNAP_S3_FAULT_RESET && take > r->body_len / 2 - r->sent &&
	    r->sent < r->body_len / 2)
		take = r->body_len / 2 - (size_t)r->sent;
	if (take)
		memcpy(p, r->body + r->sent, take);
	size_t flip = r->body_len / 2;
	if (r->fault == SNAP_S3_FAULT_CORRUPT && flip >= r->sent && flip < r->sent + take)
		p[flip - r->sent] ^= 0x20;
	r->sent += take;
	stat_add(&r->c->stats.bytes_up, take);
	return take;
}

/* libcurl resends a request by itself when a kept-alive connection it reused turns out dead
 * ("Connection died, retrying a fresh connect"): a body in memory goes back to any offset. */
static int seek_mem(void *ud, curl_off_t offset, int origin)
{
	struct req *r = ud;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->sent = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* The streamed body: chunks of CHUNK_SIZE filled from the caller's callback, each signed as it
 * is complete, then "HEX;chunk-signature=SIG\r\n" DATA "\r\n", then the final empty chunk. */
static size_t read_stream(char *p, size_t size, size_t n, void *ud)
{
	struct req *r = ud;
	size_t room = size * n, out = 0;
	while (out < room) {
		if (r->hdr_off < r->hdr_len) {
			size_t k = r->hdr_len - r->hdr_off;
			if (k > room - out)
				k = room - out;
			memcpy(p + out, r->chunk_hdr + r->hdr_off, k);
			r->hdr_off += k;
			out += k;
			continue;
		}
		if (r->hdr_len && r->chunk_off < r->chunk_len) {
			size_t k = r->chunk_len - r->chunk_off;
			if (k > room - out)
				k = room - out;
			if (r->fault == SNAP_S3_FAULT_RESET && r->sent >= r->stream_len / 2) {
				r->fault_hit = true;
				return CURL_READFUNC_ABORT;
			}
			memcpy(p + out, r->chunk + r->chunk_off, k);
			r->chunk_off += k;
			r->sent += k;
			out += k;
			stat_add(&r->c->stats.bytes_up, k);
			continue;
		}
		if (r->hdr_len && r->tail_off < 2) {
			size_t k = 2 - r->tail_off;
			if (k > room - out)
				k = room - out;
			memcpy(p + out, "\r\n" + r->tail_off, k);
			r->tail_off += k;
			out += k;
			continue;
		}
		if (r->final_done)
			break;
		/* the next chunk (the previous one is out): fill it, sign it */
		if (r->hdr_len) {
			r->hdr_len = 0;
			r->chunk_len = 0;
		}
		uint64_t left = r->stream_len - r->sent;
		size_t want = left < CHUNK_SIZE ? (size_t)left : CHUNK_SIZE;
		while (r->chunk_len < want) {
			long k =
			    r->read_fn(r->read_ud, r->chunk + r->chunk_len, want - r->chunk_len);
			if (k == -EAGAIN) {
				if (out)
					return out;
				r->paused = true;
				return CURL_READFUNC_PAUSE;
			}
			if (k <= 0 || (size_t)k > want - r->chunk_len) {
				r->local_err = k < 0 ? (int)k : -EIO;
				return CURL_READFUNC_ABORT;
			}
			r->chunk_len += (size_t)k;
		}
		char sig[65];
		if (snap_sigv4_chunk_sign(&r->chain, r->chunk, r->chunk_len, sig) < 0) {
			r->local_err = -EIO;
			return CURL_READFUNC_ABORT;
		}
		if (r->fault == SNAP_S3_FAULT_CORRUPT && r->chunk_len && !r->streamed_any)
			r->chunk[r->chunk_len / 2] ^= 0x20;
		r->streamed_any = true;
		r->hdr_len = snap_sigv4_chunk_header(r->chunk_hdr, r->chunk_len, sig);
		r->hdr_off = 0;
		r->chunk_off = 0;
		r->tail_off = 0;
		if (!r->chunk_len)
			r->final_done = true;
	}
	return out;
}

/* -- an attempt -- */

static int build_url(struct req *r, const char *base, const char *path, char **ret)
{
	size_t plen = strlen(path);
	size_t need = strlen(base) + 3 * plen + 2;
	for (size_t i = 0; i < r->query.n; i++)
		need += 3 * (strlen(r->query.v[i].name) + strlen(r->query.v[i].value)) + 2;
	char *u = malloc(need);
	if (!u)
		return -ENOMEM;
	size_t o = (size_t)sprintf(u, "%s", base);
	o += snap_sigv4_uri_encode(u + o, path, plen, 1);
	for (size_t i = 0; i < r->query.n; i++) {
		u[o++] = i ? '&' : '?';
		o +=
		    snap_sigv4_uri_encode(u + o, r->query.v[i].name, strlen(r->query.v[i].name), 0);
		if (*r->query.v[i].value) {
			u[o++] = '=';
			o += snap_sigv4_uri_encode(u + o, r->query.v[i].value,
						   strlen(r->query.v[i].value), 0);
		}
	}
	u[o] = 0;
	*ret = u;
	return 0;
}

static int slist_add(struct curl_slist **l, const char *name, const char *value)
{
	char *line = NULL;
	if (asprintf(&line, "%s: %s", name, value) < 0)
		return -ENOMEM;
	struct curl_slist *n = curl_slist_append(*l, line);
	free(line);
	if (!n)
		return -ENOMEM;
	*l = n;
	return 0;
}

/* Signs the request with the clock of now and hands it to curl. */
static int prepare(struct snap_s3_client *c, struct req *r)
{
	char *base = NULL, *host = NULL, *path = NULL, *url = NULL;
	struct snap_sigv4_result *sig = NULL;
	pthread_mutex_lock(&c->lock);
	char *region = strdup(c->region);
	pthread_mutex_unlock(&c->lock);
	int rc = region ? snap_s3_address(c->endpoint, c->aws, region, r->bucket, r->key, &base,
					  &host, &path)
			: -ENOMEM;
	if (rc < 0)
		goto out;
	if ((rc = build_url(r, base, path, &url)) < 0)
		goto out;
	struct snap_sigv4_request q = {
	    .method = r->method,
	    .path = path,
	    .query = r->query.v,
	    .nquery = r->query.n,
	    .host = host,
	    .headers = r->headers.v,
	    .nheaders = r->headers.n,
	    .payload_hash = r->payload_hash,
	    .access_key = c->access_key,
	    .secret_key = c->secret_key,
	    .session_token = c->session_token,
	    .region = region,
	    .service = "s3",
	    .time = (int64_t)time(NULL),
	};
	if ((rc = snap_sigv4_sign(&q, &sig)) < 0)
		goto out;
	if (r->body_kind == BODY_STREAM) {
		if ((rc = snap_sigv4_chunk_init(&r->chain, &q, sig)) < 0)
			goto out;
		if (!r->chunk && !(r->chunk = malloc(CHUNK_SIZE))) {
			rc = -ENOMEM;
			goto out;
		}
		r->chunk_len = r->chunk_off = r->hdr_len = r->hdr_off = r->tail_off = 0;
		r->final_done = false;
	}

	rc = slist_add(&r->slist, "Host", host);
	for (size_t i = 0; i < r->headers.n && rc >= 0; i++)
		rc = slist_add(&r->slist, r->headers.v[i].name, r->headers.v[i].value);
	for (size_t i = 0; i < sig->nadd && rc >= 0; i++)
		rc = slist_add(&r->slist, sig->add[i].name, sig->add[i].value);
	/* no 100-continue round trip; no curl default Content-Type on a POST */
	struct curl_slist *n = rc >= 0 ? curl_slist_append(r->slist, "Expect:") : NULL;
	if (n)
		r->slist = n;
	if (n && !snap_s3_hlist_get(&r->headers, "Content-Type"))
		n = curl_slist_append(r->slist, "Content-Type:");
	if (!n) {
		rc = -ENOMEM;
		goto out;
	}
	r->slist = n;

	CURL *e = curl_easy_init();
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	r->easy = e;
	r->errbuf[0] = 0;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->slist);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)c->timeout_s);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)c->timeout_s);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_off_t blen = r->body_kind == BODY_MEM ? (curl_off_t)r->body_len
			  : r->body_kind == BODY_STREAM
			      ? (curl_off_t)snap_sigv4_chunked_length(r->stream_len, CHUNK_SIZE)
			      : 0;
	if (!strcmp(r->method, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(r->method, "PUT")) {
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, blen);
	} else if (!strcmp(r->method, "POST")) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, blen);
	} else if (strcmp(r->method, "GET")) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (r->body_kind != BODY_NONE || !strcmp(r->method, "PUT") || !strcmp(r->method, "POST")) {
		curl_easy_setopt(e, CURLOPT_READFUNCTION,
				 r->body_kind == BODY_STREAM ? read_stream : read_mem);
		curl_easy_setopt(e, CURLOPT_READDATA, r);
		if (r->body_kind != BODY_STREAM) {
			curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_mem);
			curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
		}
	}
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		r->easy = NULL;
		rc = -ENOMEM;
	}
out:
	snap_sigv4_result_free(sig);
	free(region);
	free(base);
	free(host);
	free(path);
	free(url);
	return rc;
}

static void start_attempt(struct snap_s3_client *c, struct req *r)
{
	r->waiting = false;
	r->fake_timeout = false;
	r->fault_hit = false;
	r->local_err = 0;
	r->sent = 0;
	r->paused = false;
	reset_response(r);
	r->fault = ask_fault(r);
	stat_add(&c->stats.requests, 1);
	switch (r->fault) {
	case SNAP_S3_FAULT_HTTP_500:
	case SNAP_S3_FAULT_SLOWDOWN: {
		static const char e500[] = "<Error><Code>InternalError</Code>"
					   "<Message>injected</Message></Error>";
		static const char e503[] = "<Error><Code>SlowDown</Code>"
					   "<Message>injected</Message></Error>";
		bool slow = r->fault == SNAP_S3_FAULT_SLOWDOWN;
		const char *b = slow ? e503 : e500;
		r->status = slow ? 503 : 500;
		size_t bl = strlen(b);
		if (!r->err)
			r->err = malloc(ERROR_BODY_MAX);
		if (r->err) {
			memcpy(r->err, b, bl);
			r->err_len = bl;
		}
		attempt_done(c, r, CURLE_OK);
		return;
	}
	case SNAP_S3_FAULT_TIMEOUT:
		r->waiting = true;
		r->fake_timeout = true;
		r->due_ms = now_ms() + FAULT_TIMEOUT_MS;
		return;
	default:
		break;
	}
	int rc = prepare(c, r);
	if (rc < 0) {
		char *detail = NULL;
		asprintf(&detail, "%s s3://%s/%s: cannot make the request: %s", r->op, r->bucket,
			 key_of(r), strerror(-rc));
		curl_slist_free_all(r->slist);
		r->slist = NULL;
		finish(c, r, rc, detail);
	}
}

static void fail_cancelled(struct snap_s3_client *c, struct req *r)
{
	char *detail = NULL;
	asprintf(&detail, "%s s3://%s/%s: cancelled", r->op, r->bucket, key_of(r));
	finish(c, r, -ECANCELED, detail);
}

static void *transport(void *arg)
{
	struct snap_s3_client *c = arg;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		struct req *taken = c->pending;
		c->pending = NULL;
		c->pending_tail = &c->pending;
		bool cancelled = c->cancelled, stop = c->stop;
		/* requests their owner gave up, paused streams to resume */
		struct req *drop[64], *cont[64];
		size_t ndrop = 0, ncont = 0;
		for (struct req *r = c->active; r; r = r->next) {
			if (r->abandoned && ndrop < 64)
				drop[ndrop++] = r;
			else if (r->resume && r->easy && ncont < 64) {
				r->resume = false;
				cont[ncont++] = r;
			}
		}
		pthread_mutex_unlock(&c->lock);
		/* outside the lock: curl may call the read callback at once */
		for (size_t i = 0; i < ncont; i++) {
			cont[i]->paused = false;
			curl_easy_pause(cont[i]->easy, CURLPAUSE_CONT);
		}

		while (taken) {
			struct req *r = taken;
			taken = r->next;
			r->next = c->active;
			c->active = r;
			if (cancelled)
				fail_cancelled(c, r);
			else
				start_attempt(c, r);
		}
		for (size_t i = 0; i < ndrop; i++)
			fail_cancelled(c, drop[i]);
		if (cancelled)
			while (c->active)
				fail_cancelled(c, c->active);
		if (stop && !c->active)
			break;

		int running = 0;
		curl_multi_perform(c->multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(c->multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct req *r = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
			attempt_done(c, r, m->data.result);
		}

		/* timers: retries due, injected timeouts over */
		uint64_t now = now_ms(), next = now + 1000;
		for (struct req *r = c->active, *nx; r; r = nx) {
			nx = r->next;
			if (!r->waiting)
				continue;
			if (r->due_ms > now) {
				if (r->due_ms < next)
					next = r->due_ms;
				continue;
			}
			if (r->fake_timeout) {
				r->waiting = r->fake_timeout = false;
				r->fault_hit = true;
				attempt_done(c, r, CURLE_OPERATION_TIMEDOUT);
			} else {
				start_attempt(c, r);
			}
			next = now; /* the list changed: look again at once */
			break;
		}
		int wait_ms = (int)(next > now ? next - now : 0);
		if (wait_ms)
			curl_multi_poll(c->multi, NULL, 0, wait_ms, NULL);
	}
	return NULL;
}

/* ---- the client's life ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void init_curl(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int snap_s3_client_new(const struct snap_s3_config *cfg, struct snap_s3_client **ret,
		       char **ret_detail)
{
	if (!cfg || !ret || !cfg->endpoint || !cfg->region || !cfg->access_key || !cfg->secret_key)
		return -EINVAL;
	pthread_once(&curl_once, init_curl);
	if (curl_init_rc != CURLE_OK) {
		if (ret_detail)
			asprintf(ret_detail, "cannot initialise libcurl: %s",
				 curl_easy_strerror(curl_init_rc));
		return -EIO;
	}
	char *b, *h, *p;
	if (snap_s3_address(cfg->endpoint, cfg->aws, cfg->region, "bucket", NULL, &b, &h, &p) < 0) {
		if (ret_detail)
			asprintf(ret_detail, "endpoint %s is not scheme://host[:port]",
				 cfg->endpoint);
		return -EINVAL;
	}
	free(b);
	free(h);
	free(p);
	struct snap_s3_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->endpoint = strdup(cfg->endpoint);
	c->region = strdup(cfg->region);
	c->access_key = strdup(cfg->access_key);
	c->secret_key = strdup(cfg->secret_key);
	c->session_token = cfg->session_token ? strdup(cfg->session_token) : NULL;
	c->aws = cfg->aws;
	c->connections = cfg->connections ? cfg->connections : SNAP_S3_DEFAULT_CONNECTIONS;
	c->retries = cfg->retries == SNAP_S3_NO_RETRIES ? 0
		     : cfg->retries			? cfg->retries
							: SNAP_S3_DEFAULT_RETRIES;
	c->timeout_s = cfg->timeout_s ? cfg->timeout_s : SNAP_S3_DEFAULT_TIMEOUT_S;
	c->budget_total = cfg->memory_budget ? cfg->memory_budget : SNAP_S3_DEFAULT_MEMORY_BUDGET;
	c->pending_tail = &c->pending;
	if (getrandom(&c->rng, sizeof(c->rng), 0) != sizeof(c->rng) || !c->rng)
		c->rng = (uint64_t)time(NULL) * 6364136223846793005ull + 1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	int rc = -ENOMEM;
	if (!c->endpoint || !c->region || !c->access_key || !c->secret_key ||
	    (cfg->session_token && !c->session_token))
		goto fail;
	c->multi = curl_multi_init();
	if (!c->multi)
		goto fail;
	curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)c->connections);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->connections);
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)c->connections);
	rc = -pthread_create(&c->thread, NULL, transport, c);
	if (rc < 0)
		goto fail;
	c->thread_started = true;
	*ret = c;
	return 0;
fail:
	if (ret_detail)
		asprintf(ret_detail, "cannot start the S3 client: %s", strerror(-rc));
	snap_s3_client_free(c);
	return rc;
}

struct snap_s3_client *snap_s3_client_free(struct snap_s3_client *c)
{
	if (!c)
		return NULL;
	if (c->thread_started) {
		pthread_mutex_lock(&c->lock);
		c->stop = true;
		c->cancelled = true;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		curl_multi_wakeup(c->multi);
		pthread_join(c->thread, NULL);
	}
	if (c->multi)
		curl_multi_cleanup(c->multi);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c->endpoint);
	free(c->region);
	free(c->access_key);
	if (c->secret_key)
		memset(c->secret_key, 0, strlen(c->secret_key));
	free(c->secret_key);
	free(c->session_token);
	free(c);
	return NULL;
}

void snap_s3_client_set_log(struct snap_s3_client *c, snap_s3_log_fn fn, void *userdata)
{
	pthread_mutex_lock(&c->lock);
	c->log_fn = fn;
	c->log_ud = userdata;
	pthread_mutex_unlock(&c->lock);
}

void snap_s3_client_set_page_size(struct snap_s3_client *c, unsigned n)
{
	c->page_size = n;
}

void snap_s3_client_cancel(struct snap_s3_client *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->cancelled = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	curl_multi_wakeup(c->multi);
}

void snap_s3_client_stats(const struct snap_s3_client *c, struct snap_s3_stats *ret)
{
	ret->bytes_up = __atomic_load_n(&c->stats.bytes_up, __ATOMIC_RELAXED);
	ret->bytes_down = __atomic_load_n(&c->stats.bytes_down, __ATOMIC_RELAXED);
	ret->requests = __atomic_load_n(&c->stats.requests, __ATOMIC_RELAXED);
	ret->retries = __atomic_load_n(&c->stats.retries, __ATOMIC_RELAXED);
}

unsigned snap_s3_client_connections(const struct snap_s3_client *c)
{
	return c->connections;
}

uint64_t snap_s3_client_budget(const struct snap_s3_client *c)
{
	return c->budget_total;
}

int snap_s3_budget_acquire(struct snap_s3_client *c, uint64_t bytes)
{
	pthread_mutex_lock(&c->lock);
	while (!c->cancelled && c->budget_used && c->budget_used + bytes > c->budget_total)
		pthread_cond_wait(&c->cond, &c->lock);
	int rc = c->cancelled ? -ECANCELED : 0;
	if (!rc)
		c->budget_used += bytes;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void snap_s3_budget_release(struct snap_s3_client *c, uint64_t bytes)
{
	pthread_mutex_lock(&c->lock);
	c->budget_used = bytes > c->budget_used ? 0 : c->budget_used - bytes;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* ---- operations ---- */

static int fail_detail(char **ret_detail, int rc, const char *op, const char *bucket,
		       const char *key, const char *what)
{
	if (ret_detail)
		asprintf(ret_detail, "%s s3://%s/%s: %s", op, bucket ? bucket : "", key ? key : "",
			 what);
	return rc;
}

/* The failure of a request that could not be made. */
static int no_req(char **ret_detail, const char *op, const char *bucket, const char *key)
{
	bool b = bucket && *bucket;
	return fail_detail(ret_detail, b ? -ENOMEM : -EINVAL, op, bucket, key,
			   b ? "out of memory" : "no bucket");
}

static void take_meta(struct req *r, struct snap_s3_pair **ret, size_t *ret_n)
{
	struct snap_s3_pair *m = calloc(r->meta.n ? r->meta.n : 1, sizeof(*m));
	if (!m)
		return;
	for (size_t i = 0; i < r->meta.n; i++) {
		m[i].name = r->meta.v[i].name;
		m[i].value = r->meta.v[i].value;
	}
	*ret = m;
	*ret_n = r->meta.n;
	free(r->meta.v);
	r->meta.v = NULL;
	r->meta.n = r->meta.cap = 0;
}

int snap_s3_head_object(struct snap_s3_client *c, const char *bucket, const char *key,
			struct snap_s3_head **ret, char **ret_detail)
{
	struct req *r = req_new(c, "HeadObject", "HEAD", bucket, key);
	if (!r)
		return no_req(ret_detail, "HeadObject", bucket, key);
	int rc = run(c, r, ret_detail);
	if (rc >= 0) {
		struct snap_s3_head *h = calloc(1, sizeof(*h));
		if (!h) {
			rc = fail_detail(ret_detail, -ENOMEM, r->op, bucket, key, "out of memory");
		} else {
			h->size = r->content_length;
			h->etag = r->etag;
			h->last_modified = r->last_modified;
			r->etag = r->last_modified = NULL;
			take_meta(r, &h->meta, &h->nmeta);
			if (!h->meta || !r->have_length) {
				rc = fail_detail(ret_detail, h->meta ? -EPROTO : -ENOMEM, r->op,
						 bucket, key,
						 h->meta ? "no Content-Length" : "out of memory");
				snap_s3_head_free(h);
			} else {
				*ret = h;
			}
		}
	}
	req_free(r);
	return rc;
}

struct snap_s3_head *snap_s3_head_free(struct snap_s3_head *h)
{
	if (!h)
		return NULL;
	free(h->etag);
	free(h->last_modified);
	for (size_t i = 0; h->meta && i < h->nmeta; i++) {
		free((char *)h->meta[i].name);
		free((char *)h->meta[i].value);
	}
	free(h->meta);
	free(h);
	return NULL;
}

static int add_part_query(struct req *r, const char *upload_id, uint32_t part_number)
{
	if (!upload_id)
		return 0;
	char pn[16];
	snprintf(pn, sizeof(pn), "%" PRIu32, part_number);
	int rc = snap_s3_hlist_add(&r->query, "partNumber", pn);
	return rc < 0 ? rc : snap_s3_hlist_add(&r->query, "uploadId", upload_id);
}

int snap_s3_put_start(struct snap_s3_client *c, const char *bucket, const char *key,
		      const char *upload_id, uint32_t part_number, const void *buf, size_t len,
		      const struct snap_s3_put_options *o, struct snap_s3_put **ret)
{
	if (!c || !key || !ret || (len && !buf) ||
	    (upload_id && (part_number < 1 || part_number > SNAP_S3_MAX_PARTS)))
		return -EINVAL;
	struct req *r = req_new(c, upload_id ? "UploadPart" : "PutObject", "PUT", bucket, key);
	if (!r)
		return bucket && *bucket ? -ENOMEM : -EINVAL;
	int rc = add_part_query(r, upload_id, part_number);
	if (rc >= 0 && !upload_id)
		rc = snap_s3_put_headers(o, &r->headers);
	if (rc >= 0)
		rc = req_body(r, buf, len, false);
	if (rc >= 0)
		rc = submit(c, r);
	if (rc < 0) {
		req_free(r);
		return rc;
	}
	*ret = (struct snap_s3_put *)r;
	return 0;
}

int snap_s3_put_stream_start(struct snap_s3_client *c, const char *bucket, const char *key,
			     const char *upload_id, uint32_t part_number, uint64_t len,
			     snap_s3_read_fn read, void *userdata, struct snap_s3_put **ret)
{
	if (!c || !key || !ret || !read ||
	    (upload_id && (part_number < 1 || part_number > SNAP_S3_MAX_PARTS)))
		return -EINVAL;
	struct req *r = req_new(c, upload_id ? "UploadPart" : "PutObject", "PUT", bucket, key);
	if (!r)
		return bucket && *bucket ? -ENOMEM : -EINVAL;
	/* nothing to stream (and RGW refuses an aws-chunked body of the final chunk alone): an
	 * empty body in memory */
	if (!len) {
		int rc = add_part_query(r, upload_id, part_number);
		if (rc >= 0)
			rc = req_body(r, NULL, 0, true);
		if (rc >= 0)
			rc = submit(c, r);
		if (rc < 0) {
			req_free(r);
			return rc;
		}
		*ret = (struct snap_s3_put *)r;
		return 0;
	}
	r->body_kind = BODY_STREAM;
	r->read_fn = read;
	r->read_ud = userdata;
	r->stream_len = len;
	memcpy(r->payload_hash, SNAP_SIGV4_STREAMING, sizeof(SNAP_SIGV4_STREAMING));
	char dl[24];
	snprintf(dl, sizeof(dl), "%" PRIu64, len);
	int rc = add_part_query(r, upload_id, part_number);
	if (rc >= 0)
		rc = snap_s3_hlist_add(&r->headers, "Content-Encoding", "aws-chunked");
	if (rc >= 0)
		rc = snap_s3_hlist_add(&r->headers, "x-amz-decoded-content-length", dl);
	if (rc >= 0 && !upload_id)
		rc = snap_s3_hlist_add(&r->headers, "Content-Type", "application/octet-stream");
	if (rc >= 0)
		rc = submit(c, r);
	if (rc < 0) {
		req_free(r);
		return rc;
	}
	*ret = (struct snap_s3_put *)r;
	return 0;
}

void snap_s3_put_resume(struct snap_s3_put *p)
{
	struct req *r = (struct req *)p;
	if (!r)
		return;
	pthread_mutex_lock(&r->c->lock);
	r->resume = true;
	pthread_mutex_unlock(&r->c->lock);
	curl_multi_wakeup(r->c->multi);
}

int snap_s3_put_wait(struct snap_s3_put *p, char **ret_etag, char **ret_detail)
{
	struct req *r = (struct req *)p;
	if (!r)
		return -EINVAL;
	int rc = req_wait(r, ret_detail);
	if (rc >= 0 && ret_etag) {
		if (!r->etag)
			rc = fail_detail(ret_detail, -EPROTO, r->op, r->bucket, r->key,
					 "no ETag in the answer");
		else
			*ret_etag = r->etag, r->etag = NULL;
	}
	req_free(r);
	return rc;
}

int snap_s3_put_object(struct snap_s3_client *c, const char *bucket, const char *key,
		       const void *buf, size_t len, const struct snap_s3_put_options *o,
		       char **ret_etag, char **ret_detail)
{
	struct snap_s3_put *p = NULL;
	int rc = snap_s3_put_start(c, bucket, key, NULL, 0, buf, len, o, &p);
	if (rc < 0)
		return fail_detail(ret_detail, rc, "PutObject", bucket, key,
				   rc == -ECANCELED ? "cancelled" : strerror(-rc));
	return snap_s3_put_wait(p, ret_etag, ret_detail);
}

static int set_range(struct req *r, uint64_t off, uint64_t len)
{
	char range[64];
	if (len == UINT64_MAX) {
		if (!off)
			return 0;
		snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", off);
	} else {
		snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
	}
	return snap_s3_hlist_add(&r->headers, "Range", range);
}

int snap_s3_get_range(struct snap_s3_client *c, const char *bucket, const char *key, uint64_t off,
		      size_t len, void *buf, char **ret_detail)
{
	if (!len)
		return 0;
	if (off > UINT64_MAX - len)
		return fail_detail(ret_detail, -EINVAL, "GetObject", bucket, key,
				   "range overflows");
	struct req *r = req_new(c, "GetObject", "GET", bucket, key);
	if (!r)
		return no_req(ret_detail, "GetObject", bucket, key);
	r->dst = buf;
	r->dst_cap = len;
	int rc = set_range(r, off, len);
	if (rc >= 0)
		rc = run(c, r, ret_detail);
	else
		fail_detail(ret_detail, rc, r->op, bucket, key, "out of memory");
	if (rc >= 0 && r->status == 200 && off)
		rc = fail_detail(ret_detail, -EPROTO, r->op, bucket, key,
				 "HTTP 200: the range was not honoured");
	else if (rc >= 0 && r->got < len) {
		char what[160];
		snprintf(what, sizeof(what),
			 "object ends before %" PRIu64 " (%" PRIu64 " bytes of %zu at %" PRIu64 ")",
			 off + len, r->got, len, off);
		rc = fail_detail(ret_detail, -ENODATA, r->op, bucket, key, what);
	}
	req_free(r);
	return rc;
}

struct snap_s3_get {
	struct req *r;
	uint64_t off, len;
};

int snap_s3_get_start(struct snap_s3_client *c, const char *bucket, const char *key, uint64_t off,
		      uint64_t len, size_t max, struct snap_s3_get **ret)
{
	return snap_s3_get_start_if(c, bucket, key, off, len, max, NULL, ret);
}

int snap_s3_get_start_if(struct snap_s3_client *c, const char *bucket, const char *key,
			 uint64_t off, uint64_t len, size_t max, const char *if_match,
			 struct snap_s3_get **ret)
{
	if (!c || !key || !ret || (len != UINT64_MAX && (!len || off > UINT64_MAX - len)))
		return -EINVAL;
	if (len != UINT64_MAX && len > max)
		return -EFBIG;
	struct snap_s3_get *g = calloc(1, sizeof(*g));
	struct req *r = g ? req_new(c, "GetObject", "GET", bucket, key) : NULL;
	if (!r) {
		free(g);
		return bucket && *bucket ? -ENOMEM : -EINVAL;
	}
	g->r = r;
	g->off = off;
	g->len = len;
	r->max = len == UINT64_MAX ? max : (size_t)len;
	int rc = set_range(r, off, len);
	if (rc >= 0 && if_match)
		rc = snap_s3_hlist_add(&r->headers, "If-Match", if_match);
	if (rc >= 0)
		rc = submit(c, r);
	if (rc < 0) {
		req_free(r);
		free(g);
		return rc;
	}
	*ret = g;
	return 0;
}

int snap_s3_get_wait(struct snap_s3_get *g, void **ret_buf, size_t *ret_len, char **ret_detail)
{
	if (!g)
		return -EINVAL;
	struct req *r = g->r;
	int rc = req_wait(r, ret_detail);
	if (rc >= 0 && r->status == 200 && g->off)
		rc = fail_detail(ret_detail, -EPROTO, r->op, r->bucket, r->key,
				 "HTTP 200: the range was not honoured");
	else if (rc >= 0 && g->len != UINT64_MAX && r->len < g->len) {
		char what[160];
		snprintf(what, sizeof(what),
			 "object ends before %" PRIu64 " (%zu bytes of %" PRIu64 " at %" PRIu64 ")",
			 g->off + g->len, r->len, g->len, g->off);
		rc = fail_detail(ret_detail, -ENODATA, r->op, r->bucket, r->key, what);
	}
	if (rc >= 0) {
		if (!r->buf && !(r->buf = malloc(1))) {
			rc = fail_detail(ret_detail, -ENOMEM, r->op, r->bucket, r->key,
					 "out of memory");
		} else {
			*ret_buf = r->buf;
			*ret_len = r->len;
			r->buf = NULL;
		}
	}
	req_free(r);
	free(g);
	return rc;
}

struct snap_s3_get *snap_s3_get_free(struct snap_s3_get *g)
{
	if (!g)
		return NULL;
	struct req *r = g->r;
	struct snap_s3_client *c = r->c;
	pthread_mutex_lock(&c->lock);
	bool done = r->done;
	r->abandoned = true;
	pthread_mutex_unlock(&c->lock);
	if (done)
		req_free(r);
	else
		curl_multi_wakeup(c->multi);
	free(g);
	return NULL;
}

int snap_s3_get_object(struct snap_s3_client *c, const char *bucket, const char *key, size_t max,
		       void **ret_buf, size_t *ret_len, char **ret_detail)
{
	struct snap_s3_get *g = NULL;
	int rc = snap_s3_get_start(c, bucket, key, 0, UINT64_MAX, max, &g);
	if (rc < 0)
		return fail_detail(ret_detail, rc, "GetObject", bucket, key,
				   rc == -ECANCELED ? "cancelled" : strerror(-rc));
	return snap_s3_get_wait(g, ret_buf, ret_len, ret_detail);
}

int snap_s3_delete_object(struct snap_s3_client *c, const char *bucket, const char *key,
			  char **ret_detail)
{
	struct req *r = req_new(c, "DeleteObject", "DELETE", bucket, key);
	if (!r)
		return no_req(ret_detail, "DeleteObject", bucket, key);
	char *detail = NULL;
	int rc = run(c, r, &detail);
	if (rc == -ENOENT && r->status == 404 && key && *key) {
		/* the object is gone either way; a missing bucket is still an error */
		struct snap_s3_error *e = NULL;
		bool no_bucket = r->err_len &&
				 snap_s3_error_parse(r->err, r->err_len, &e, NULL) == 0 &&
				 !strcmp(e->code, "NoSuchBucket");
		snap_s3_error_free(e);
		if (!no_bucket)
			rc = 0;
	}
	if (rc < 0 && ret_detail)
		*ret_detail = detail, detail = NULL;
	free(detail);
	req_free(r);
	return rc;
}

/* A GET whose answer is an XML document (held in r->buf). */
static int run_xml(struct snap_s3_client *c, struct req *r, char **ret_detail)
{
	r->max = XML_BODY_MAX;
	return run(c, r, ret_detail);
}

/* Prefixes a parser's detail with the request. */
static int parse_failed(struct req *r, int rc, char *pdetail, char **ret_detail)
{
	if (ret_detail)
		asprintf(ret_detail, "%s s3://%s/%s: the answer does not parse: %s", r->op,
			 r->bucket, key_of(r), pdetail ? pdetail : strerror(-rc));
	free(pdetail);
	return -EPROTO;
}

/* One page of a listing (ListObjectsV2, ListMultipartUploads, ListParts): a GET of bucket (and
 * key) with the query pairs whose value is not NULL, in order, then the client's page size as
 * max_name; where names the listing in messages (the prefix, or ListParts' key). */
static int list_page(struct snap_s3_client *c, const char *op, const char *bucket, const char *key,
		     const char *where, const char *const (*query)[2], size_t nquery,
		     const char *max_name, struct req **ret, char **ret_detail)
{
	struct req *r = req_new(c, op, "GET", bucket, key);
	if (!r)
		return fail_detail(ret_detail, -ENOMEM, op, bucket, where, "out of memory");
	char ps[16];
	snprintf(ps, sizeof(ps), "%u", c->page_size);
	int rc = 0;
	for (size_t i = 0; i < nquery && rc >= 0; i++)
		if (query[i][1])
			rc = snap_s3_hlist_add(&r->query, query[i][0], query[i][1]);
	if (rc >= 0 && c->page_size)
		rc = snap_s3_hlist_add(&r->query, max_name, ps);
	if (rc >= 0)
		rc = run_xml(c, r, ret_detail);
	else
		fail_detail(ret_detail, rc, op, bucket, where, "out of memory");
	if (rc < 0) {
		req_free(r);
		return rc;
	}
	*ret = r;
	return 0;
}

/* The items of a listing so far (nall of size bytes, one spare slot kept) with a page's n items
 * moved to its end; NULL when out of memory (all is then unchanged). */
static void *list_append(void *all, size_t nall, const void *items, size_t n, size_t size)
{
	char *p = realloc(all, (nall + n + 1) * size);
	if (p && n)
		memcpy(p + nall * size, items, n * size);
	return p;
}

int snap_s3_list_objects(struct snap_s3_client *c, const char *bucket, const char *prefix,
			 struct snap_s3_list_objects **ret, char **ret_detail)
{
	struct snap_s3_list_objects *all = calloc(1, sizeof(*all));
	if (!all)
		return fail_detail(ret_detail, -ENOMEM, "ListObjectsV2", bucket, prefix,
				   "out of memory");
	char *token = NULL;
	int rc;
	do {
		const char *const q[][2] = {{"list-type", "2"},
					    {"prefix", prefix && *prefix ? prefix : NULL},
					    {"continuation-token", token}};
		struct req *r = NULL;
		struct snap_s3_list_objects *page = NULL;
		char *pd = NULL;
		rc = list_page(c, "ListObjectsV2", bucket, NULL, prefix, q, 3, "max-keys", &r,
			       ret_detail);
		if (rc >= 0 && (rc = snap_s3_list_objects_parse(r->buf, r->len, &page, &pd)) < 0)
			rc = parse_failed(r, rc, pd, ret_detail);
		req_free(r);
		free(token);
		token = NULL;
		if (rc < 0)
			break;
		struct snap_s3_object *o = list_append(all->objects, all->nobjects, page->objects,
						       page->nobjects, sizeof(*o));
		if (!o) {
			snap_s3_list_objects_free(page);
			rc = fail_detail(ret_detail, -ENOMEM, "ListObjectsV2", bucket, prefix,
					 "out of memory");
			break;
		}
		all->objects = o;
		all->nobjects += page->nobjects;
		page->nobjects = 0;
		if (page->truncated) {
			token = page->next_continuation_token;
			page->next_continuation_token = NULL;
		}
		snap_s3_list_objects_free(page);
	} while (token);
	if (rc < 0) {
		snap_s3_list_objects_free(all);
		return rc;
	}
	*ret = all;
	return 0;
}

const struct snap_s3_object *snap_s3_list_objects_find(const struct snap_s3_list_objects *l,
						       const char *key)
{
	for (size_t i = 0; l && i < l->nobjects; i++)
		if (!strcmp(l->objects[i].key, key))
			return &l->objects[i];
	return NULL;
}

static const char *etag_unquote(const char *etag, size_t *ret_len)
{
	size_t n = strlen(etag);
	if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
		*ret_len = n - 2;
		return etag + 1;
	}
	*ret_len = n;
	return etag;
}

bool snap_s3_etag_equal(const char *a, const char *b)
{
	size_t na, nb;
	const char *ua = etag_unquote(a, &na), *ub = etag_unquote(b, &nb);
	return na == nb && !strncasecmp(ua, ub, na);
}

bool snap_s3_etag_is_md5(const char *etag)
{
	if (!etag)
		return false;
	size_t n = strlen(etag);
	if (n == 34 && etag[0] == '"' && etag[33] == '"')
		etag++, n -= 2;
	if (n != 32)
		return false;
	for (size_t i = 0; i < 32; i++)
		if (!strchr("0123456789abcdefABCDEF", etag[i]))
			return false;
	return true;
}

int snap_s3_list_uploads(struct snap_s3_client *c, const char *bucket, const char *prefix,
			 struct snap_s3_list_uploads **ret, char **ret_detail)
{
	struct snap_s3_list_uploads *all = calloc(1, sizeof(*all));
	if (!all)
		return fail_detail(ret_detail, -ENOMEM, "ListMultipartUploads", bucket, prefix,
				   "out of memory");
	char *kmark = NULL, *umark = NULL;
	int rc;
	do {
		const char *const q[][2] = {{"uploads", ""},
					    {"prefix", prefix && *prefix ? prefix : NULL},
					    {"key-marker", kmark},
					    {"upload-id-marker", umark}};
		struct req *r = NULL;
		struct snap_s3_list_uploads *page = NULL;
		char *pd = NULL;
		rc = list_page(c, "ListMultipartUploads", bucket, NULL, prefix, q, 4, "max-uploads",
			       &r, ret_detail);
		if (rc >= 0 && (rc = snap_s3_list_uploads_parse(r->buf, r->len, &page, &pd)) < 0)
			rc = parse_failed(r, rc, pd, ret_detail);
		req_free(r);
		free(kmark);
		free(umark);
		kmark = umark = NULL;
		if (rc < 0)
			break;
		struct snap_s3_upload *u = list_append(all->uploads, all->nuploads, page->uploads,
						       page->nuploads, sizeof(*u));
		if (!u) {
			snap_s3_list_uploads_free(page);
			rc = fail_detail(ret_detail, -ENOMEM, "ListMultipartUploads", bucket,
					 prefix, "out of memory");
			break;
		}
		all->uploads = u;
		all->nuploads += page->nuploads;
		page->nuploads = 0;
		if (page->truncated) {
			kmark = page->next_key_marker;
			umark = page->next_upload_id_marker;
			page->next_key_marker = page->next_upload_id_marker = NULL;
		}
		snap_s3_list_uploads_free(page);
	} while (kmark);
	free(umark);
	if (rc < 0) {
		snap_s3_list_uploads_free(all);
		return rc;
	}
	*ret = all;
	return 0;
}

int snap_s3_list_parts(struct snap_s3_client *c, const char *bucket, const char *key,
		       const char *upload_id, struct snap_s3_list_parts **ret, char **ret_detail)
{
	if (!upload_id)
		return fail_detail(ret_detail, -EINVAL, "ListParts", bucket, key, "no upload id");
	struct snap_s3_list_parts *all = calloc(1, sizeof(*all));
	if (!all)
		return fail_detail(ret_detail, -ENOMEM, "ListParts", bucket, key, "out of memory");
	uint32_t marker = 0;
	bool more;
	int rc;
	do {
		more = false;
		char mk[16];
		snprintf(mk, sizeof(mk), "%" PRIu32, marker);
		const char *const q[][2] = {{"uploadId", upload_id},
					    {"part-number-marker", marker ? mk : NULL}};
		struct req *r = NULL;
		struct snap_s3_list_parts *page = NULL;
		char *pd = NULL;
		rc = list_page(c, "ListParts", bucket, key, key, q, 2, "max-parts", &r, ret_detail);
		if (rc >= 0 && (rc = snap_s3_list_parts_parse(r->buf, r->len, &page, &pd)) < 0)
			rc = parse_failed(r, rc, pd, ret_detail);
		if (rc >= 0 && page->nparts && all->nparts &&
		    page->parts[0].part_number <= all->parts[all->nparts - 1].part_number) {
			snap_s3_list_parts_free(page);
			rc = parse_failed(r, -EUCLEAN, strdup("part numbers go back across pages"),
					  ret_detail);
		}
		req_free(r);
		if (rc < 0)
			break;
		struct snap_s3_part *p =
		    list_append(all->parts, all->nparts, page->parts, page->nparts, sizeof(*p));
		if (!p) {
			snap_s3_list_parts_free(page);
			rc = fail_detail(ret_detail, -ENOMEM, "ListParts", bucket, key,
					 "out of memory");
			break;
		}
		all->parts = p;
		all->nparts += page->nparts;
		page->nparts = 0;
		if (page->truncated && page->next_part_number_marker > marker) {
			marker = page->next_part_number_marker;
			more = true;
		}
		snap_s3_list_parts_free(page);
	} while (more);
	if (rc < 0) {
		snap_s3_list_parts_free(all);
		return rc;
	}
	*ret = all;
	return 0;
}

int snap_s3_abort_upload(struct snap_s3_client *c, const char *bucket, const char *key,
			 const char *upload_id, char **ret_detail)
{
	if (!upload_id || !key)
		return fail_detail(ret_detail, -EINVAL, "AbortMultipartUpload", bucket, key,
				   "no upload id");
	struct req *r = req_new(c, "AbortMultipartUpload", "DELETE", bucket, key);
	if (!r)
		return no_req(ret_detail, "AbortMultipartUpload", bucket, key);
	int rc = snap_s3_hlist_add(&r->query, "uploadId", upload_id);
	rc = rc < 0 ? fail_detail(ret_detail, rc, r->op, bucket, key, "out of memory")
		    : run(c, r, ret_detail);
	req_free(r);
	return rc;
}

int snap_s3_create_upload(struct snap_s3_client *c, const char *bucket, const char *key,
			  const struct snap_s3_put_options *o, char **ret_upload_id,
			  char **ret_detail)
{
	if (!key || !*key || !ret_upload_id)
		return fail_detail(ret_detail, -EINVAL, "CreateMultipartUpload", bucket, key,
				   "no key");
	struct req *r = req_new(c, "CreateMultipartUpload", "POST", bucket, key);
	if (!r)
		return no_req(ret_detail, "CreateMultipartUpload", bucket, key);
	int rc = snap_s3_hlist_add(&r->query, "uploads", "");
	if (rc >= 0)
		rc = snap_s3_put_headers(o, &r->headers);
	if (rc < 0) {
		fail_detail(ret_detail, rc, r->op, bucket, key,
			    rc == -EINVAL ? "invalid metadata" : "out of memory");
		req_free(r);
		return rc;
	}
	r->body_kind = BODY_MEM;
	rc = run_xml(c, r, ret_detail);
	struct snap_s3_initiate *in = NULL;
	char *pd = NULL;
	if (rc >= 0 && (rc = snap_s3_initiate_parse(r->buf, r->len, &in, &pd)) < 0)
		rc = parse_failed(r, rc, pd, ret_detail);
	if (rc >= 0) {
		*ret_upload_id = in->upload_id;
		in->upload_id = NULL;
		snap_s3_initiate_free(in);
	}
	req_free(r);
	return rc;
}

int snap_s3_complete_upload(struct snap_s3_client *c, const char *bucket, const char *key,
			    const char *upload_id, const struct snap_s3_part *parts, size_t n,
			    char **ret_etag, char **ret_detail)
{
	char *body = NULL;
	size_t blen = 0;
	if (!upload_id || !key)
		return fail_detail(ret_detail, -EINVAL, "CompleteMultipartUpload", bucket, key,
				   "no upload id");
	int rc = snap_s3_complete_body(parts, n, &body, &blen);
	if (rc < 0)
		return fail_detail(ret_detail, rc, "CompleteMultipartUpload", bucket, key,
				   "invalid part list");
	struct req *r = req_new(c, "CompleteMultipartUpload", "POST", bucket, key);
	if (!r) {
		free(body);
		return fail_detail(ret_detail, -ENOMEM, "CompleteMultipartUpload", bucket, key,
				   "out of memory");
	}
	r->body_owned = (uint8_t *)body;
	rc = snap_s3_hlist_add(&r->query, "uploadId", upload_id);
	if (rc >= 0)
		rc = snap_s3_hlist_add(&r->headers, "Content-Type", "application/xml");
	if (rc >= 0)
		rc = req_body(r, body, blen, true);
	if (rc < 0) {
		fail_detail(ret_detail, rc, r->op, bucket, key, "out of memory");
		req_free(r);
		return rc;
	}
	rc = run_xml(c, r, ret_detail);
	struct snap_s3_complete *done = NULL;
	char *pd = NULL;
	if (rc >= 0 && (rc = snap_s3_complete_parse(r->buf, r->len, &done, &pd)) < 0) {
		/* S3 may answer 200 and then an <Error> (the body arrives late) */
		struct snap_s3_error *e = NULL;
		if (snap_s3_error_parse(r->buf, r->len, &e, NULL) == 0) {
			free(pd);
			rc = map_error(r, 500, e->code);
			if (ret_detail)
				asprintf(ret_detail, "%s s3://%s/%s: HTTP 200 %s%s%s", r->op,
					 bucket, key, e->code,
					 e->message && *e->message ? ": " : "",
					 e->message ? e->message : "");
			snap_s3_error_free(e);
		} else {
			rc = parse_failed(r, rc, pd, ret_detail);
		}
	}
	if (rc >= 0 && ret_etag && !*done->etag) {
		/* RGW 16 answers an empty <ETag>: the object's HEAD has it */
		struct snap_s3_head *h = NULL;
		rc = snap_s3_head_object(c, bucket, key, &h, ret_detail);
		if (rc >= 0) {
			free(done->etag);
			done->etag = h->etag;
			h->etag = NULL;
			snap_s3_head_free(h);
			if (!done->etag)
				rc = fail_detail(ret_detail, -EPROTO, r->op, bucket, key,
						 "no ETag in the answer nor in HEAD");
		}
	}
	if (rc >= 0 && ret_etag) {
		*ret_etag = done->etag;
		done->etag = NULL;
	}
	snap_s3_complete_free(done);
	req_free(r);
	return rc;
}

/* ---- server-side copies ---- */

/* x-amz-copy-source: "/BUCKET/KEY", the key URL-encoded with its slashes kept. */
static int add_copy_source(struct req *r, const char *src_bucket, const char *src_key)
{
	size_t n = strlen(src_key);
	char *enc = malloc(n * 3 + 1);
	if (!enc)
		return -ENOMEM;
	size_t len = snap_sigv4_uri_encode(enc, src_key, n, 1);
	enc[len] = 0;
	char *v = NULL;
	int rc = asprintf(&v, "/%s/%s", src_bucket, enc) < 0 ? -ENOMEM : 0;
	free(enc);
	if (rc >= 0)
		rc = snap_s3_hlist_add(&r->headers, "x-amz-copy-source", v);
	free(v);
	return rc;
}

/* Runs a copy request to its CopyObjectResult / CopyPartResult and returns its ETag; rc is how
 * adding its headers went (a failure is out of memory). Frees r. A copy answered 200 can still
 * fail: its body is then an <Error>. */
static int run_copy(struct snap_s3_client *c, struct req *r, int rc, bool part, char **ret_etag,
		    char **ret_detail)
{
	if (rc >= 0)
		rc = req_body(r, NULL, 0, false);
	if (rc < 0) {
		fail_detail(ret_detail, rc, r->op, r->bucket, key_of(r), "out of memory");
		req_free(r);
		return rc;
	}
	rc = run_xml(c, r, ret_detail);
	struct snap_s3_copy_result *res = NULL;
	char *pd = NULL;
	if (rc >= 0 && (rc = snap_s3_copy_result_parse(r->buf, r->len, part, &res, &pd)) < 0) {
		struct snap_s3_error *e = NULL;
		if (snap_s3_error_parse(r->buf, r->len, &e, NULL) == 0) {
			free(pd);
			rc = map_error(r, 500, e->code);
			if (ret_detail)
				asprintf(ret_detail, "%s s3://%s/%s: HTTP 200 %s%s%s", r->op,
					 r->bucket, key_of(r), e->code,
					 e->message && *e->message ? ": " : "",
					 e->message ? e->message : "");
			snap_s3_error_free(e);
		} else {
			rc = parse_failed(r, rc, pd, ret_detail);
		}
	}
	if (rc >= 0 && ret_etag) {
		/* quoted as HEAD and PUT give it: RGW 16 leaves a copy's ETag bare */
		size_t n = strlen(res->etag);
		if (n < 2 || res->etag[0] != '"' || res->etag[n - 1] != '"') {
			char *q = NULL;
			if (asprintf(&q, "\"%s\"", res->etag) < 0)
				rc = fail_detail(ret_detail, -ENOMEM, r->op, r->bucket, key_of(r),
						 "out of memory");
			else
				free(res->etag), res->etag = q;
		}
		if (rc >= 0) {
			*ret_etag = res->etag;
			res->etag = NULL;
		}
	}
	snap_s3_copy_result_free(res);
	req_free(r);
	return rc;
}

int snap_s3_copy_object(struct snap_s3_client *c, const char *src_bucket, const char *src_key,
			const char *bucket, const char *key, const char *acl, char **ret_etag,
			char **ret_detail)
{
	if (!src_bucket || !*src_bucket || !src_key || !*src_key || !key || !*key)
		return fail_detail(ret_detail, -EINVAL, "CopyObject", bucket, key,
				   "no source or no key");
	struct req *r = req_new(c, "CopyObject", "PUT", bucket, key);
	if (!r)
		return no_req(ret_detail, "CopyObject", bucket, key);
	int rc = add_copy_source(r, src_bucket, src_key);
	if (rc >= 0)
		rc = snap_s3_hlist_add(&r->headers, "x-amz-metadata-directive", "COPY");
	if (rc >= 0 && acl)
		rc = snap_s3_hlist_add(&r->headers, "x-amz-acl", acl);
	return run_copy(c, r, rc, false, ret_etag, ret_detail);
}

int snap_s3_upload_part_copy(struct snap_s3_client *c, const char *src_bucket, const char *src_key,
			     uint64_t off, uint64_t len, const char *bucket, const char *key,
			     const char *upload_id, uint32_t part_number, char **ret_etag,
			     char **ret_detail)
{
	if (!src_bucket || !*src_bucket || !src_key || !*src_key || !key || !*key || !upload_id ||
	    part_number < 1 || part_number > SNAP_S3_MAX_PARTS || !len ||
	    len > SNAP_S3_MAX_PART_SIZE || off > UINT64_MAX - len)
		return fail_detail(ret_detail, -EINVAL, "UploadPartCopy", bucket, key,
				   "invalid source, range or part");
	struct req *r = req_new(c, "UploadPartCopy", "PUT", bucket, key);
	if (!r)
		return no_req(ret_detail, "UploadPartCopy", bucket, key);
	char range[64];
	snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
	int rc = add_part_query(r, upload_id, part_number);
	if (rc >= 0)
		rc = add_copy_source(r, src_bucket, src_key);
	if (rc >= 0)
		rc = snap_s3_hlist_add(&r->headers, "x-amz-copy-source-range", range);
	return run_copy(c, r, rc, true, ret_etag, ret_detail);
}

/* s XML-escaped at the end of *b (open_memstream). */
static void put_xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default: fputc(*s, f);
		}
	}
}

int snap_s3_put_tagging(struct snap_s3_client *c, const char *bucket, const char *key,
			const struct snap_s3_pair *tags, size_t n, char **ret_detail)
{
	char *body = NULL;
	size_t blen = 0;
	FILE *f = open_memstream(&body, &blen);
	if (!f)
		return fail_detail(ret_detail, -ENOMEM, "PutObjectTagging", bucket, key,
				   "out of memory");
	fputs("<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet>", f);
	for (size_t i = 0; i < n; i++) {
		fputs("<Tag><Key>", f);
		put_xml_text(f, tags[i].name);
		fputs("</Key><Value>", f);
		put_xml_text(f, tags[i].value);
		fputs("</Value></Tag>", f);
	}
	fputs("</TagSet></Tagging>", f);
	if (fclose(f) != 0) {
		free(body);
		return fail_detail(ret_detail, -ENOMEM, "PutObjectTagging", bucket, key,
				   "out of memory");
	}
	struct req *r = req_new(c, "PutObjectTagging", "PUT", bucket, key);
	if (!r) {
		free(body);
		return no_req(ret_detail, "PutObjectTagging", bucket, key);
	}
	r->body_owned = (uint8_t *)body;
	int rc = snap_s3_hlist_add(&r->query, "tagging", "");
	if (rc >= 0)
		rc = snap_s3_hlist_add(&r->headers, "Content-Type", "application/xml");
	if (rc >= 0)
		rc = req_body(r, body, blen, true);
	if (rc < 0)
		fail_detail(ret_detail, rc, r->op, bucket, key, "out of memory");
	else
		rc = run(c, r, ret_detail);
	req_free(r);
	return rc;
}

int snap_s3_create_bucket(struct snap_s3_client *c, const char *bucket, const char *location,
			  char **ret_detail)
{
	struct req *r = req_new(c, "CreateBucket", "PUT", bucket, NULL);
	if (!r)
		return no_req(ret_detail, "CreateBucket", bucket, NULL);
	int rc = 0;
	if (location && *location && strcmp(location, "us-east-1")) {
		char *body = NULL;
		int n = asprintf(&body,
				 "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/"
				 "2006-03-01/\"><LocationConstraint>%s</LocationConstraint>"
				 "</CreateBucketConfiguration>",
				 location);
		if (n < 0) {
			rc = -ENOMEM;
		} else {
			r->body_owned = (uint8_t *)body;
			rc = req_body(r, body, (size_t)n, true);
		}
	}
	rc = rc < 0 ? fail_detail(ret_detail, rc, r->op, bucket, "", "out of memory")
		    : run(c, r, ret_detail);
	req_free(r);
	return rc;
}

int snap_s3_delete_bucket(struct snap_s3_client *c, const char *bucket, char **ret_detail)
{
	struct req *r = req_new(c, "DeleteBucket", "DELETE", bucket, NULL);
	if (!r)
		return no_req(ret_detail, "DeleteBucket", bucket, NULL);
	int rc = run(c, r, ret_detail);
	req_free(r);
	return rc;
}
