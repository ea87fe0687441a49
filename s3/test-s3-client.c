// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-s3-client.c - the S3 transport against the real service of the tests (a Ceph RADOS
 * Gateway, tests/s3/rgw.sh), with awscli (/usr/bin/aws) as the outside judge where it applies.
 * The pure parts (the headers of a write, addressing) run without the gateway; the rest skips
 * (77) without SNAP_TEST_S3_ENDPOINT.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "s3-internal.h"
#include "s3.h"
#include "test-util.h"

#define MIB (1024 * 1024)

static struct snap_s3_config cfg;
static char bucket[64];
static char tmpdir[256];

/* Deterministic bytes, different for each seed. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- pure: without the gateway ---- */

static void check_put_headers(void)
{
	struct snap_s3_pair meta[] = {{"ami-name", "my image"}, {"ami-id", "ami-0123"}};
	struct snap_s3_pair tags[] = {{"team", "a b"}, {"k&", "v=1"}};
	struct snap_s3_put_options o = {
	    .acl = "public-read",
	    .meta = meta,
	    .nmeta = 2,
	    .tags = tags,
	    .ntags = 2,
	    .if_none_match = true,
	};
	struct snap_s3_hlist l = {0};
	REQUIRE(snap_s3_put_headers(&o, &l) == 0);
	const char *acl = snap_s3_hlist_get(&l, "x-amz-acl");
	CHECK(acl && !strcmp(acl, "public-read"), "x-amz-acl %s", acl ? acl : "(none)");
	const char *m = snap_s3_hlist_get(&l, "x-amz-meta-ami-name");
	CHECK(m && !strcmp(m, "my image"));
	m = snap_s3_hlist_get(&l, "x-amz-meta-ami-id");
	CHECK(m && !strcmp(m, "ami-0123"));
	const char *t = snap_s3_hlist_get(&l, "x-amz-tagging");
	CHECK(t && !strcmp(t, "team=a%20b&k%26=v%3D1"), "%s", t ? t : "(none)");
	const char *ct = snap_s3_hlist_get(&l, "content-type");
	CHECK(ct && !strcmp(ct, "application/octet-stream"));
	CHECK(snap_s3_hlist_get(&l, "If-None-Match") &&
	      !strcmp(snap_s3_hlist_get(&l, "If-None-Match"), "*"));
	snap_s3_hlist_clear(&l);

	/* no ACL: no header; a bad metadata name is refused and leaves the list alone */
	struct snap_s3_put_options none = {0};
	REQUIRE(snap_s3_put_headers(&none, &l) == 0);
	CHECK(!snap_s3_hlist_get(&l, "x-amz-acl"));
	size_t n = l.n;
	struct snap_s3_pair bad[] = {{"a b", "x"}};
	struct snap_s3_put_options ob = {.acl = "private", .meta = bad, .nmeta = 1};
	CHECK(snap_s3_put_headers(&ob, &l) == -EINVAL);
	struct snap_s3_pair badv[] = {{"a", "x\r\nInjected: 1"}};
	ob.meta = badv;
	CHECK(snap_s3_put_headers(&ob, &l) == -EINVAL);
	CHECK(l.n == n && !snap_s3_hlist_get(&l, "x-amz-acl"));
	snap_s3_hlist_clear(&l);
}

static void check_address(void)
{
	char *base, *host, *path;
	REQUIRE(snap_s3_address("http://127.0.0.1:7480", false, "us-east-1", "b1", "a/k x", &base,
				&host, &path) == 0);
	CHECK(!strcmp(base, "http://127.0.0.1:7480") && !strcmp(host, "127.0.0.1:7480") &&
		  !strcmp(path, "/b1/a/k x"),
	      "%s %s %s", base, host, path);
	free(base), free(host), free(path);
	/* AWS: virtual-hosted, in the region given */
	REQUIRE(snap_s3_address("https://s3.eu-west-1.amazonaws.com", true, "eu-west-1", "b1", "k",
				&base, &host, &path) == 0);
	CHECK(!strcmp(base, "https://b1.s3.eu-west-1.amazonaws.com") &&
		  !strcmp(host, "b1.s3.eu-west-1.amazonaws.com") && !strcmp(path, "/k"),
	      "%s %s %s", base, host, path);
	free(base), free(host), free(path);
	/* AWS, a dotted bucket: path style (the wildcard certificate does not cover it) */
	REQUIRE(snap_s3_address("https://s3.eu-west-1.amazonaws.com", true, "us-west-2", "a.b.c",
				"k", &base, &host, &path) == 0);
	CHECK(!strcmp(host, "s3.us-west-2.amazonaws.com") && !strcmp(path, "/a.b.c/k"), "%s %s",
	      host, path);
	free(base), free(host), free(path);
	/* a bucket operation */
	REQUIRE(snap_s3_address("http://h:1/", false, "r", "b", NULL, &base, &host, &path) == 0);
	CHECK(!strcmp(path, "/b") && !strcmp(host, "h:1"), "%s %s", path, host);
	free(base), free(host), free(path);
	CHECK(snap_s3_address("127.0.0.1:7480", false, "r", "b", "k", &base, &host, &path) ==
	      -EINVAL);
}

/* ---- against the gateway ---- */

static struct snap_s3_client *client(unsigned retries, const char *secret)
{
	struct snap_s3_config c = cfg;
	c.retries = retries;
	if (secret)
		c.secret_key = (char *)secret;
	struct snap_s3_client *cl = NULL;
	char *detail = NULL;
	int rc = snap_s3_client_new(&c, &cl, &detail);
	REQUIRE(rc == 0, "client: %d %s", rc, detail ? detail : "");
	return cl;
}

/* Runs awscli with the test's credentials; returns its exit status. */
__attribute__((format(printf, 1, 2))) static int aws(const char *fmt, ...)
{
	char *args;
	va_list ap;
	va_start(ap, fmt);
	REQUIRE(vasprintf(&args, fmt, ap) >= 0);
	va_end(ap);
	int st =
	    test_sh("AWS_CONFIG_FILE=%s/none AWS_SHARED_CREDENTIALS_FILE=%s/none "
		    "AWS_EC2_METADATA_DISABLED=true AWS_PAGER= AWS_ACCESS_KEY_ID=%s "
		    "AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=%s timeout 120 /usr/bin/aws "
		    "--endpoint-url %s %s",
		    tmpdir, tmpdir, cfg.access_key, cfg.secret_key, cfg.region, cfg.endpoint, args);
	free(args);
	return st;
}

static void check_roundtrip(struct snap_s3_client *c)
{
	size_t len = 3 * MIB + 17;
	uint8_t *data = malloc(len);
	REQUIRE(data);
	fill(data, len, 1);
	struct snap_s3_pair meta[] = {{"ami-name", "round trip"}, {"Ami-Id", "ami-42"}};
	struct snap_s3_put_options o = {.acl = "private", .meta = meta, .nmeta = 2};
	char *etag = NULL, *detail = NULL;
	int rc = snap_s3_put_object(c, bucket, "dir/obj 1.bin", data, len, &o, &etag, &detail);
	REQUIRE(rc == 0, "put: %d %s", rc, detail ? detail : "");
	CHECK(etag && etag[0] == '"' && strlen(etag) == 34, "etag %s", etag);

	struct snap_s3_head *h = NULL;
	rc = snap_s3_head_object(c, bucket, "dir/obj 1.bin", &h, &detail);
	REQUIRE(rc == 0, "head: %d %s", rc, detail ? detail : "");
	CHECK(h->size == len, "size %" PRIu64, h->size);
	CHECK(h->etag && !strcmp(h->etag, etag), "%s %s", h->etag, etag);
	CHECK(h->last_modified && *h->last_modified);
	int found = 0;
	for (size_t i = 0; i < h->nmeta; i++) {
		if (!strcmp(h->meta[i].name, "ami-name") && !strcmp(h->meta[i].value, "round trip"))
			found |= 1;
		if (!strcmp(h->meta[i].name, "ami-id") && !strcmp(h->meta[i].value, "ami-42"))
			found |= 2;
	}
	CHECK(found == 3, "metadata %d (%zu)", found, h->nmeta);
	snap_s3_head_free(h);

	void *back = NULL;
	size_t blen = 0;
	rc = snap_s3_get_object(c, bucket, "dir/obj 1.bin", len, &back, &blen, &detail);
	REQUIRE(rc == 0, "get: %d %s", rc, detail ? detail : "");
	CHECK(blen == len && !memcmp(back, data, len));
	free(back);

	/* get_object's max: one byte short is -EFBIG */
	rc = snap_s3_get_object(c, bucket, "dir/obj 1.bin", len - 1, &back, &blen, &detail);
	CHECK(rc == -EFBIG, "%d", rc);
	CHECK(detail && strstr(detail, "s3://") && strstr(detail, "dir/obj 1.bin"), "%s",
	      detail ? detail : "");
	free(detail);
	detail = NULL;

	/* ranges: odd offsets, the last byte, across the end */
	static const uint64_t ranges[][2] = {{0, 1}, {1, 4095}, {12345, 1 * MIB + 3}, {0, 0}};
	for (size_t i = 0; i < 3; i++) {
		uint8_t *b = malloc(ranges[i][1]);
		REQUIRE(b);
		rc = snap_s3_get_range(c, bucket, "dir/obj 1.bin", ranges[i][0], ranges[i][1], b,
				       &detail);
		CHECK(rc == 0 && !memcmp(b, data + ranges[i][0], ranges[i][1]), "range %zu: %d %s",
		      i, rc, detail ? detail : "");
		free(b);
	}
	uint8_t last[8];
	rc = snap_s3_get_range(c, bucket, "dir/obj 1.bin", len - 1, 1, last, &detail);
	CHECK(rc == 0 && last[0] == data[len - 1]);
	rc = snap_s3_get_range(c, bucket, "dir/obj 1.bin", len - 3, 8, last, &detail);
	CHECK(rc == -ENODATA, "across the end: %d", rc);
	CHECK(detail && strstr(detail, "dir/obj 1.bin"), "%s", detail ? detail : "");
	free(detail);
	detail = NULL;
	rc = snap_s3_get_range(c, bucket, "dir/obj 1.bin", len + 10, 8, last, &detail);
	CHECK(rc == -ENODATA, "past the end: %d %s", rc, detail ? detail : "");
	free(detail);
	detail = NULL;

	/* If-Match: the object's ETag reads, another one is -ESTALE */
	struct snap_s3_get *g = NULL;
	REQUIRE(snap_s3_get_start_if(c, bucket, "dir/obj 1.bin", 7, 10, 10, etag, &g) == 0);
	rc = snap_s3_get_wait(g, &back, &blen, &detail);
	CHECK(rc == 0 && blen == 10 && !memcmp(back, data + 7, 10), "if-match: %d", rc);
	free(back);
	REQUIRE(snap_s3_get_start_if(c, bucket, "dir/obj 1.bin", 7, 10, 10,
				     "\"0123456789abcdef0123456789abcdef\"", &g) == 0);
	rc = snap_s3_get_wait(g, &back, &blen, &detail);
	CHECK(rc == -ESTALE, "if-match another ETag: %d", rc);
	CHECK(detail && strstr(detail, "412"), "%s", detail ? detail : "");
	free(detail);
	detail = NULL;

	/* the outside judge reads the same bytes and metadata */
	char path[300];
	snprintf(path, sizeof(path), "%s/judge.bin", tmpdir);
	CHECK(aws("s3api get-object --bucket %s --key 'dir/obj 1.bin' %s >%s/judge.json", bucket,
		  path, tmpdir) == 0);
	size_t jlen = 0;
	void *j = test_read_file(path, &jlen);
	CHECK(jlen == len && !memcmp(j, data, len), "awscli read %zu bytes", jlen);
	free(j);
	CHECK(test_sh("grep -q '\"ami-name\": \"round trip\"' %s/judge.json", tmpdir) == 0);

	/* canned ACLs accepted by the service */
	rc = snap_s3_put_object(c, bucket, "acl-public", "x", 1,
				&(struct snap_s3_put_options){.acl = "public-read"}, NULL, &detail);
	CHECK(rc == 0, "public-read: %d %s", rc, detail ? detail : "");
	CHECK(aws("s3api get-object-acl --bucket %s --key acl-public --output text >%s/acl.txt",
		  bucket, tmpdir) == 0);
	CHECK(test_sh("grep -q AllUsers %s/acl.txt", tmpdir) == 0);
	/* a canned ACL the service refuses: a 400, final */
	rc = snap_s3_put_object(c, bucket, "acl-bad", "x", 1,
				&(struct snap_s3_put_options){.acl = "no-such-acl"}, NULL, &detail);
	CHECK(rc == -EINVAL, "bad ACL: %d", rc);
	CHECK(detail && strstr(detail, "HTTP 400"), "%s", detail ? detail : "");
	free(detail);
	detail = NULL;

	/* If-None-Match: * refuses to replace */
	rc =
	    snap_s3_put_object(c, bucket, "acl-public", "y", 1,
			       &(struct snap_s3_put_options){.if_none_match = true}, NULL, &detail);
	CHECK(rc == -EEXIST, "if-none-match: %d %s", rc, detail ? detail : "");
	free(detail);
	detail = NULL;

	/* delete, then missing; deleting a missing object is success */
	CHECK(snap_s3_delete_object(c, bucket, "acl-public", &detail) == 0);
	CHECK(snap_s3_delete_object(c, bucket, "acl-public", &detail) == 0);
	rc = snap_s3_head_object(c, bucket, "acl-public", &h, &detail);
	CHECK(rc == -ENOENT, "%d", rc);
	free(detail);
	detail = NULL;
	free(etag);
	free(data);
}

static void check_missing(struct snap_s3_client *c)
{
	char *detail = NULL;
	void *b = NULL;
	size_t l = 0;
	int rc = snap_s3_get_object(c, bucket, "no/such key", 100, &b, &l, &detail);
	CHECK(rc == -ENOENT, "%d", rc);
	char want[128];
	snprintf(want, sizeof(want), "s3://%s/no/such key", bucket);
	CHECK(detail && strstr(detail, want) && strstr(detail, "404") &&
		  strstr(detail, "NoSuchKey") && strstr(detail, "GetObject"),
	      "%s", detail ? detail : "");
	free(detail);
	detail = NULL;

	char other[80];
	snprintf(other, sizeof(other), "%s-missing", bucket);
	rc = snap_s3_get_object(c, other, "k", 100, &b, &l, &detail);
	CHECK(rc == -ENOENT, "%d", rc);
	CHECK(detail && strstr(detail, other) && strstr(detail, "NoSuchBucket"), "%s",
	      detail ? detail : "");
	free(detail);
	detail = NULL;
	struct snap_s3_head *h = NULL;
	rc = snap_s3_head_object(c, other, "k", &h, &detail);
	CHECK(rc == -ENOENT && detail && strstr(detail, other), "%d %s", rc, detail ? detail : "");
	free(detail);
	detail = NULL;
	rc = snap_s3_delete_object(c, other, "k", &detail);
	CHECK(rc == -ENOENT, "delete in a missing bucket: %d", rc);
	free(detail);
}

static void check_wrong_secret(void)
{
	char secret[200];
	snprintf(secret, sizeof(secret), "%sx", cfg.secret_key);
	struct snap_s3_client *c = client(5, secret);
	char *detail = NULL;
	struct snap_s3_head *h = NULL;
	int rc = snap_s3_head_object(c, bucket, "k", &h, &detail);
	CHECK(rc == -EACCES, "%d", rc);
	free(detail);
	detail = NULL;
	rc = snap_s3_put_object(c, bucket, "k", "abc", 3, NULL, NULL, &detail);
	CHECK(rc == -EACCES, "%d", rc);
	CHECK(detail && strstr(detail, "403") && strstr(detail, "SignatureDoesNotMatch") &&
		  strstr(detail, "/k"),
	      "%s", detail ? detail : "");
	free(detail);
	struct snap_s3_stats st;
	snap_s3_client_stats(c, &st);
	CHECK(st.requests == 2 && st.retries == 0, "requests %" PRIu64 " retries %" PRIu64,
	      st.requests, st.retries);
	snap_s3_client_free(c);
}

/* The fault hook: kind on the first `times` attempts of requests for keys starting with key. */
static struct {
	enum snap_s3_fault kind;
	const char *key;
	const char *method;
	unsigned times;
	unsigned asked;
} fault;

static enum snap_s3_fault fault_hook(void *ud, const char *method, const char *b, const char *key,
				     unsigned attempt)
{
	(void)ud;
	if (strcmp(b, bucket) || !fault.key || strncmp(key, fault.key, strlen(fault.key)) ||
	    (fault.method && strcmp(method, fault.method)))
		return SNAP_S3_FAULT_NONE;
	__atomic_fetch_add(&fault.asked, 1, __ATOMIC_RELAXED);
	return attempt < fault.times ? fault.kind : SNAP_S3_FAULT_NONE;
}

static void set_fault(enum snap_s3_fault kind, const char *key, const char *method, unsigned times)
{
	fault.kind = kind;
	fault.key = key;
	fault.method = method;
	fault.times = times;
	fault.asked = 0;
}

static const char *fault_name(enum snap_s3_fault f)
{
	static const char *const n[] = {"none", "500", "slowdown", "reset", "timeout", "corrupt"};
	return n[f];
}

/* Each fault on PUT, GET and HEAD: retried, the data right, the retries counted. */
static void check_faults(void)
{
	struct snap_s3_client *c = client(3, NULL);
	size_t len = 256 * 1024 + 3;
	uint8_t *data = malloc(len), *back = malloc(len);
	REQUIRE(data && back);
	for (enum snap_s3_fault f = SNAP_S3_FAULT_HTTP_500; f <= SNAP_S3_FAULT_CORRUPT; f++) {
		char key[64];
		snprintf(key, sizeof(key), "fault-%s", fault_name(f));
		fill(data, len, 100 + f);
		struct snap_s3_stats s0, s1;
		snap_s3_client_stats(c, &s0);
		char *detail = NULL;
		/* two faulty attempts, then the third goes through */
		set_fault(f, key, "PUT", 2);
		uint64_t t0 = ms_now();
		int rc = snap_s3_put_object(c, bucket, key, data, len, NULL, NULL, &detail);
		CHECK(rc == 0, "%s put: %d %s", key, rc, detail ? detail : "");
		free(detail);
		detail = NULL;
		snap_s3_client_stats(c, &s1);
		CHECK(s1.retries - s0.retries == 2, "%s: %" PRIu64 " retries", key,
		      s1.retries - s0.retries);
		CHECK(s1.requests - s0.requests == 3, "%s: %" PRIu64 " requests", key,
		      s1.requests - s0.requests);
		if (f == SNAP_S3_FAULT_TIMEOUT)
			CHECK(ms_now() - t0 >= 2000, "two injected timeouts took %" PRIu64 " ms",
			      ms_now() - t0);
		/* GETs: whole and ranged, through two faults each */
		if (f != SNAP_S3_FAULT_CORRUPT) {
			set_fault(f, key, "GET", 2);
			memset(back, 0, len);
			rc = snap_s3_get_range(c, bucket, key, 5, len - 5, back, &detail);
			CHECK(rc == 0 && !memcmp(back, data + 5, len - 5), "%s range: %d %s", key,
			      rc, detail ? detail : "");
			free(detail);
			detail = NULL;
			set_fault(f, key, "HEAD", 1);
			struct snap_s3_head *h = NULL;
			rc = snap_s3_head_object(c, bucket, key, &h, &detail);
			CHECK(rc == 0 && h->size == len, "%s head: %d %s", key, rc,
			      detail ? detail : "");
			snap_s3_head_free(h);
			free(detail);
			detail = NULL;
		}
		set_fault(SNAP_S3_FAULT_NONE, NULL, NULL, 0);
		/* what the service holds is what was meant, judged by awscli */
		char path[400];
		snprintf(path, sizeof(path), "%s/%s", tmpdir, key);
		CHECK(aws("s3api get-object --bucket %s --key %s %s >/dev/null", bucket, key,
			  path) == 0);
		size_t jl = 0;
		void *j = test_read_file(path, &jl);
		CHECK(jl == len && !memcmp(j, data, len), "%s: the stored object differs", key);
		free(j);
	}

	/* retries exhausted: -EIO naming the object, retries counted */
	struct snap_s3_stats s0, s1;
	snap_s3_client_stats(c, &s0);
	set_fault(SNAP_S3_FAULT_HTTP_500, "fault-500", "GET", 100);
	char *detail = NULL;
	int rc = snap_s3_get_range(c, bucket, "fault-500", 0, 10, back, &detail);
	snap_s3_client_stats(c, &s1);
	CHECK(rc == -EIO, "exhausted: %d", rc);
	CHECK(detail && strstr(detail, "/fault-500") && strstr(detail, "500") &&
		  strstr(detail, "InternalError"),
	      "%s", detail ? detail : "");
	CHECK(s1.retries - s0.retries == 3 && fault.asked == 4, "%" PRIu64 " retries, %u asked",
	      s1.retries - s0.retries, fault.asked);
	free(detail);
	detail = NULL;
	set_fault(SNAP_S3_FAULT_RESET, "fault-reset", "GET", 100);
	rc = snap_s3_get_range(c, bucket, "fault-reset", 0, 10, back, &detail);
	CHECK(rc == -EIO && detail && strstr(detail, "fault-reset") && strstr(detail, "reset"),
	      "%d %s", rc, detail ? detail : "");
	free(detail);
	detail = NULL;

	/* CORRUPT without retries: the service refuses the body; nothing replaced */
	struct snap_s3_client *c0 = client(SNAP_S3_NO_RETRIES, NULL);
	fill(data, len, 999);
	set_fault(SNAP_S3_FAULT_CORRUPT, "fault-corrupt", "PUT", 1);
	rc = snap_s3_put_object(c0, bucket, "fault-corrupt", data, len, NULL, NULL, &detail);
	CHECK(rc == -EBADMSG, "corrupt, no retry: %d %s", rc, detail ? detail : "");
	CHECK(detail &&
		  (strstr(detail, "BadDigest") || strstr(detail, "XAmzContentSHA256Mismatch")),
	      "%s", detail ? detail : "");
	free(detail);
	detail = NULL;
	set_fault(SNAP_S3_FAULT_CORRUPT, "fault-corrupt-new", "PUT", 1);
	rc = snap_s3_put_object(c0, bucket, "fault-corrupt-new", data, len, NULL, NULL, &detail);
	CHECK(rc == -EBADMSG, "%d", rc);
	free(detail);
	detail = NULL;
	set_fault(SNAP_S3_FAULT_NONE, NULL, NULL, 0);
	struct snap_s3_head *h = NULL;
	CHECK(snap_s3_head_object(c0, bucket, "fault-corrupt-new", &h, NULL) == -ENOENT);
	fill(data, len, 100 + SNAP_S3_FAULT_CORRUPT);
	rc = snap_s3_get_range(c0, bucket, "fault-corrupt", 0, len, back, NULL);
	CHECK(rc == 0 && !memcmp(back, data, len), "the earlier object was replaced: %d", rc);
	snap_s3_client_free(c0);
	free(data);
	free(back);
	snap_s3_client_free(c);
}

/* A real timeout: a listener that accepts the connection (the kernel does) and never answers. */
static void check_timeout(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(s >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	REQUIRE(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
	REQUIRE(listen(s, 16) == 0);
	socklen_t al = sizeof(a);
	REQUIRE(getsockname(s, (struct sockaddr *)&a, &al) == 0);
	char ep[64];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", ntohs(a.sin_port));
	struct snap_s3_config c2 = cfg;
	c2.endpoint = ep;
	c2.timeout_s = 1;
	c2.retries = 1;
	struct snap_s3_client *c = NULL;
	REQUIRE(snap_s3_client_new(&c2, &c, NULL) == 0);
	char *detail = NULL;
	uint64_t t0 = ms_now();
	struct snap_s3_head *h = NULL;
	int rc = snap_s3_head_object(c, bucket, "silent", &h, &detail);
	uint64_t dt = ms_now() - t0;
	CHECK(rc == -EIO && detail && strstr(detail, "silent"), "%d %s", rc, detail ? detail : "");
	/* two attempts of 1 s each (and a backoff of at most 200 ms) */
	CHECK(dt >= 1900 && dt < 6000, "%" PRIu64 " ms", dt);
	free(detail);
	struct snap_s3_stats st;
	snap_s3_client_stats(c, &st);
	CHECK(st.requests == 2 && st.retries == 1, "%" PRIu64 " %" PRIu64, st.requests, st.retries);
	snap_s3_client_free(c);
	close(s);

	/* a refused connection: retried, then -EIO */
	c2.endpoint = "http://127.0.0.1:1";
	REQUIRE(snap_s3_client_new(&c2, &c, NULL) == 0);
	rc = snap_s3_head_object(c, bucket, "refused", &h, &detail);
	CHECK(rc == -EIO && detail && strstr(detail, "refused"), "%d %s", rc, detail ? detail : "");
	free(detail);
	snap_s3_client_free(c);
}

/* A streamed body handed over in odd-sized pieces, with a pause (-EAGAIN) now and then. */
struct src {
	const uint8_t *data;
	size_t len, off;
	unsigned calls;
	struct snap_s3_put *put;
	bool pauses;
	int fail_at; /* > 0: fail the call with this number */
};

static long src_read(void *ud, void *buf, size_t room)
{
	struct src *s = ud;
	s->calls++;
	if (s->fail_at && (int)s->calls == s->fail_at)
		return -EPIPE;
	if (s->pauses && s->calls % 7 == 3) {
		/* resumed from another thread, later */
		return -EAGAIN;
	}
	size_t n = 1 + (s->calls * 7919u) % 40013u;
	if (n > room)
		n = room;
	if (n > s->len - s->off)
		n = s->len - s->off;
	memcpy(buf, s->data + s->off, n);
	s->off += n;
	return (long)n;
}

static void *resumer(void *arg)
{
	struct src *s = arg;
	while (__atomic_load_n(&s->pauses, __ATOMIC_RELAXED)) {
		snap_s3_put_resume(s->put);
		usleep(2000);
	}
	return NULL;
}

static void check_stream(struct snap_s3_client *c)
{
	size_t len = 5 * MIB + 12345;
	uint8_t *data = malloc(len), *back = malloc(len);
	REQUIRE(data && back);
	fill(data, len, 7);
	struct src s = {.data = data, .len = len, .pauses = true};
	char *etag = NULL, *detail = NULL;
	REQUIRE(snap_s3_put_stream_start(c, bucket, "stream/obj", NULL, 0, len, src_read, &s,
					 &s.put) == 0);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, resumer, &s) == 0);
	int rc = snap_s3_put_wait(s.put, &etag, &detail);
	__atomic_store_n(&s.pauses, false, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	CHECK(rc == 0, "stream: %d %s", rc, detail ? detail : "");
	CHECK(s.off == len && s.calls > 100, "%zu bytes in %u calls", s.off, s.calls);
	rc = snap_s3_get_range(c, bucket, "stream/obj", 0, len, back, &detail);
	CHECK(rc == 0 && !memcmp(back, data, len), "stream read back: %d", rc);
	free(etag);
	etag = NULL;

	/* an empty streamed body */
	struct src e = {.data = data, .len = 0};
	struct snap_s3_put *p = NULL;
	REQUIRE(snap_s3_put_stream_start(c, bucket, "stream/empty", NULL, 0, 0, src_read, &e, &p) ==
		0);
	rc = snap_s3_put_wait(p, NULL, &detail);
	CHECK(rc == 0, "empty stream: %d %s", rc, detail ? detail : "");
	struct snap_s3_head *h = NULL;
	CHECK(snap_s3_head_object(c, bucket, "stream/empty", &h, NULL) == 0 && h->size == 0);
	snap_s3_head_free(h);

	/* the source fails: the request fails with its error, not retried */
	struct snap_s3_stats s0, s1;
	snap_s3_client_stats(c, &s0);
	struct src f = {.data = data, .len = 1 * MIB, .fail_at = 20};
	REQUIRE(snap_s3_put_stream_start(c, bucket, "stream/failed", NULL, 0, f.len, src_read, &f,
					 &p) == 0);
	rc = snap_s3_put_wait(p, NULL, &detail);
	snap_s3_client_stats(c, &s1);
	CHECK(rc == -EPIPE && s1.requests - s0.requests == 1, "source failure: %d", rc);
	free(detail);
	detail = NULL;

	/* a corrupted chunk is refused (its chunk signature no longer matches): not stored */
	set_fault(SNAP_S3_FAULT_CORRUPT, "stream/corrupt", "PUT", 1);
	struct src k = {.data = data, .len = 300000};
	REQUIRE(snap_s3_put_stream_start(c, bucket, "stream/corrupt", NULL, 0, k.len, src_read, &k,
					 &p) == 0);
	rc = snap_s3_put_wait(p, NULL, &detail);
	set_fault(SNAP_S3_FAULT_NONE, NULL, NULL, 0);
	CHECK(rc < 0, "a corrupted stream was accepted");
	printf("corrupted stream: %d %s\n", rc, detail ? detail : "");
	free(detail);
	detail = NULL;
	CHECK(snap_s3_head_object(c, bucket, "stream/corrupt", &h, NULL) == -ENOENT);
	free(data);
	free(back);
}

/* Multipart: parts in memory and streamed, ListParts in pages, complete, the ETag "<hex>-N";
 * then an upload aborted leaves nothing in ListMultipartUploads. */
static void check_multipart(struct snap_s3_client *c)
{
	size_t psize = SNAP_S3_MIN_PART_SIZE, last = 1234567;
	size_t len = 2 * psize + last;
	uint8_t *data = malloc(len), *back = malloc(len);
	REQUIRE(data && back);
	fill(data, len, 11);
	struct snap_s3_pair meta[] = {{"ami-id", "ami-multi"}};
	struct snap_s3_put_options o = {.meta = meta, .nmeta = 1, .acl = "private"};
	char *uid = NULL, *detail = NULL;
	int rc = snap_s3_create_upload(c, bucket, "multi/obj", &o, &uid, &detail);
	REQUIRE(rc == 0, "create upload: %d %s", rc, detail ? detail : "");

	struct snap_s3_put *p[3];
	REQUIRE(snap_s3_put_start(c, bucket, "multi/obj", uid, 1, data, psize, NULL, &p[0]) == 0);
	struct src s = {.data = data + psize, .len = psize};
	REQUIRE(snap_s3_put_stream_start(c, bucket, "multi/obj", uid, 2, psize, src_read, &s,
					 &p[1]) == 0);
	REQUIRE(snap_s3_put_start(c, bucket, "multi/obj", uid, 3, data + 2 * psize, last, NULL,
				  &p[2]) == 0);
	struct snap_s3_part parts[3];
	for (int i = 0; i < 3; i++) {
		parts[i].part_number = (uint32_t)i + 1;
		parts[i].etag = NULL;
		rc = snap_s3_put_wait(p[i], &parts[i].etag, &detail);
		REQUIRE(rc == 0, "part %d: %d %s", i + 1, rc, detail ? detail : "");
	}

	snap_s3_client_set_page_size(c, 1);
	struct snap_s3_list_parts *lp = NULL;
	rc = snap_s3_list_parts(c, bucket, "multi/obj", uid, &lp, &detail);
	snap_s3_client_set_page_size(c, 0);
	REQUIRE(rc == 0, "list parts: %d %s", rc, detail ? detail : "");
	CHECK(lp->nparts == 3, "%zu parts", lp->nparts);
	for (size_t i = 0; i < lp->nparts && i < 3; i++)
		CHECK(lp->parts[i].part_number == i + 1 &&
			  !strcmp(lp->parts[i].etag, parts[i].etag) &&
			  lp->parts[i].size == (i < 2 ? psize : last),
		      "part %zu: %u %s %" PRIu64, i, lp->parts[i].part_number, lp->parts[i].etag,
		      lp->parts[i].size);
	snap_s3_list_parts_free(lp);

	struct snap_s3_list_uploads *lu = NULL;
	REQUIRE(snap_s3_list_uploads(c, bucket, "multi/", &lu, NULL) == 0);
	CHECK(lu->nuploads == 1 && !strcmp(lu->uploads[0].upload_id, uid));
	snap_s3_list_uploads_free(lu);

	char *etag = NULL;
	rc = snap_s3_complete_upload(c, bucket, "multi/obj", uid, parts, 3, &etag, &detail);
	REQUIRE(rc == 0, "complete: %d %s", rc, detail ? detail : "");
	size_t el = etag ? strlen(etag) : 0;
	CHECK(el == 36 && etag[0] == '"' && !strcmp(etag + 33, "-3\""), "etag %s", etag);
	rc = snap_s3_get_range(c, bucket, "multi/obj", 0, len, back, &detail);
	CHECK(rc == 0 && !memcmp(back, data, len), "multipart read back: %d", rc);
	/* awscli sees the multipart ETag and the metadata */
	CHECK(aws("s3api head-object --bucket %s --key multi/obj >%s/head.json", bucket, tmpdir) ==
	      0);
	CHECK(test_sh("grep -q '\"ETag\": \"\\\\\"[0-9a-f]\\{32\\}-3' %s/head.json && "
		      "grep -q '\"ami-id\": \"ami-multi\"' %s/head.json",
		      tmpdir, tmpdir) == 0);
	free(etag);
	for (int i = 0; i < 3; i++)
		free(parts[i].etag);
	free(uid);
	uid = NULL;

	/* abort: nothing left in the listing, no object */
	rc = snap_s3_create_upload(c, bucket, "multi/aborted", NULL, &uid, &detail);
	REQUIRE(rc == 0);
	REQUIRE(snap_s3_put_start(c, bucket, "multi/aborted", uid, 1, data, psize, NULL, &p[0]) ==
		0);
	REQUIRE(snap_s3_put_wait(p[0], NULL, NULL) == 0);
	rc = snap_s3_abort_upload(c, bucket, "multi/aborted", uid, &detail);
	CHECK(rc == 0, "abort: %d %s", rc, detail ? detail : "");
	REQUIRE(snap_s3_list_uploads(c, bucket, NULL, &lu, NULL) == 0);
	CHECK(lu->nuploads == 0, "%zu uploads left", lu->nuploads);
	snap_s3_list_uploads_free(lu);
	CHECK(aws("s3api list-multipart-uploads --bucket %s --output json >%s/mpu.json", bucket,
		  tmpdir) == 0);
	CHECK(test_sh("! grep -q multi/aborted %s/mpu.json", tmpdir) == 0);
	rc = snap_s3_abort_upload(c, bucket, "multi/aborted", uid, &detail);
	CHECK(rc == -ENOENT, "abort twice: %d", rc);
	free(detail);
	free(uid);
	free(data);
	free(back);
}

/* ListObjectsV2 in pages of 7 (and ListMultipartUploads in pages of 2). */
static void check_listing(struct snap_s3_client *c)
{
	int n = 23;
	for (int i = 0; i < n; i++) {
		char key[32];
		snprintf(key, sizeof(key), "list/k%03d", i);
		REQUIRE(snap_s3_put_object(c, bucket, key, key, strlen(key), NULL, NULL, NULL) ==
			0);
	}
	struct snap_s3_stats s0, s1;
	snap_s3_client_stats(c, &s0);
	snap_s3_client_set_page_size(c, 7);
	struct snap_s3_list_objects *l = NULL;
	char *detail = NULL;
	int rc = snap_s3_list_objects(c, bucket, "list/", &l, &detail);
	snap_s3_client_stats(c, &s1);
	REQUIRE(rc == 0, "%d %s", rc, detail ? detail : "");
	CHECK(l->nobjects == (size_t)n && s1.requests - s0.requests == 4,
	      "%zu objects, %" PRIu64 " requests", l->nobjects, s1.requests - s0.requests);
	for (size_t i = 0; i < l->nobjects; i++) {
		char key[32];
		snprintf(key, sizeof(key), "list/k%03zu", i);
		CHECK(!strcmp(l->objects[i].key, key) && l->objects[i].size == strlen(key));
	}
	snap_s3_list_objects_free(l);

	char *uids[5];
	for (int i = 0; i < 5; i++) {
		char key[32];
		snprintf(key, sizeof(key), "uploads/u%d", i % 3);
		REQUIRE(snap_s3_create_upload(c, bucket, key, NULL, &uids[i], NULL) == 0);
	}
	snap_s3_client_set_page_size(c, 2);
	struct snap_s3_list_uploads *u = NULL;
	rc = snap_s3_list_uploads(c, bucket, "uploads/", &u, &detail);
	REQUIRE(rc == 0, "%d %s", rc, detail ? detail : "");
	CHECK(u->nuploads == 5, "%zu uploads", u->nuploads);
	for (int i = 0; i < 5; i++) {
		int seen = 0;
		for (size_t j = 0; j < u->nuploads; j++)
			seen += !strcmp(u->uploads[j].upload_id, uids[i]);
		CHECK(seen == 1, "upload %d seen %d times", i, seen);
	}
	snap_s3_list_uploads_free(u);
	snap_s3_client_set_page_size(c, 0);
	for (int i = 0; i < 5; i++) {
		char key[32];
		snprintf(key, sizeof(key), "uploads/u%d", i % 3);
		CHECK(snap_s3_abort_upload(c, bucket, key, uids[i], NULL) == 0);
		free(uids[i]);
	}
}

/* Many asynchronous GETs and PUTs from several threads at once, on a client of 4 connections. */
struct worker {
	struct snap_s3_client *c;
	int id;
	int failures;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	enum { N = 12, LEN = 100000 };
	static uint8_t bufs[8][N][LEN];
	uint8_t(*mine)[LEN] = bufs[w->id];
	struct snap_s3_put *p[N];
	char key[N][48];
	for (int i = 0; i < N; i++) {
		fill(mine[i], LEN - (size_t)i, (uint32_t)(w->id * 1000 + i));
		snprintf(key[i], sizeof(key[i]), "conc/w%d-%d", w->id, i);
		if (snap_s3_put_start(w->c, bucket, key[i], NULL, 0, mine[i], LEN - (size_t)i, NULL,
				      &p[i]) < 0)
			w->failures++;
	}
	for (int i = 0; i < N; i++)
		if (snap_s3_put_wait(p[i], NULL, NULL) < 0)
			w->failures++;
	struct snap_s3_get *g[N];
	for (int i = 0; i < N; i++)
		if (snap_s3_get_start(w->c, bucket, key[i], i == 0 ? 0 : (uint64_t)i,
				      i == 0 ? UINT64_MAX : 1000, LEN, &g[i]) < 0)
			w->failures++;
	for (int i = 0; i < N; i++) {
		void *b = NULL;
		size_t l = 0;
		if (snap_s3_get_wait(g[i], &b, &l, NULL) < 0) {
			w->failures++;
			continue;
		}
		if (i == 0 ? l != LEN || memcmp(b, mine[0], LEN)
			   : l != 1000 || memcmp(b, mine[i] + i, 1000))
			w->failures++;
		free(b);
	}
	return NULL;
}

static void check_concurrent(void)
{
	struct snap_s3_config c2 = cfg;
	c2.connections = 4;
	struct snap_s3_client *c = NULL;
	REQUIRE(snap_s3_client_new(&c2, &c, NULL) == 0);
	struct worker w[8];
	pthread_t t[8];
	for (int i = 0; i < 8; i++) {
		w[i] = (struct worker){.c = c, .id = i};
		REQUIRE(pthread_create(&t[i], NULL, work, &w[i]) == 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		CHECK(w[i].failures == 0, "worker %d: %d failures", i, w[i].failures);
	}
	/* a GET abandoned before its end (get_free without wait) */
	struct snap_s3_get *g = NULL;
	REQUIRE(snap_s3_get_start(c, bucket, "conc/w0-0", 0, UINT64_MAX, 1 << 20, &g) == 0);
	snap_s3_get_free(g);
	snap_s3_client_free(c);
}

/* Cancel: what is in flight and what comes later fail with -ECANCELED, promptly. */
static void *cancel_later(void *arg)
{
	usleep(300 * 1000);
	snap_s3_client_cancel(arg);
	return NULL;
}

static void check_cancel(void)
{
	struct snap_s3_client *c = client(100, NULL);
	/* every attempt times out (1 s each, 100 retries): only cancel ends it */
	set_fault(SNAP_S3_FAULT_TIMEOUT, "cancel/", NULL, 1000);
	struct snap_s3_get *g[4];
	for (int i = 0; i < 4; i++) {
		char key[32];
		snprintf(key, sizeof(key), "cancel/%d", i);
		REQUIRE(snap_s3_get_start(c, bucket, key, 0, UINT64_MAX, 100, &g[i]) == 0);
	}
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, cancel_later, c) == 0);
	uint64_t t0 = ms_now();
	char *detail = NULL;
	for (int i = 0; i < 4; i++) {
		void *b = NULL;
		size_t l;
		int rc = snap_s3_get_wait(g[i], &b, &l, &detail);
		CHECK(rc == -ECANCELED && detail && strstr(detail, "cancel/"), "%d %s", rc,
		      detail ? detail : "");
		free(detail);
		detail = NULL;
	}
	uint64_t dt = ms_now() - t0;
	CHECK(dt < 2000, "cancel took %" PRIu64 " ms", dt);
	pthread_join(t, NULL);
	set_fault(SNAP_S3_FAULT_NONE, NULL, NULL, 0);
	struct snap_s3_head *h = NULL;
	CHECK(snap_s3_head_object(c, bucket, "x", &h, &detail) == -ECANCELED);
	free(detail);
	CHECK(snap_s3_budget_acquire(c, 1) == -ECANCELED);
	snap_s3_client_free(c);
}

static void check_budget(void)
{
	struct snap_s3_config c2 = cfg;
	c2.memory_budget = 100;
	struct snap_s3_client *c = NULL;
	REQUIRE(snap_s3_client_new(&c2, &c, NULL) == 0);
	CHECK(snap_s3_budget_acquire(c, 60) == 0);
	CHECK(snap_s3_budget_acquire(c, 40) == 0);
	snap_s3_budget_release(c, 100);
	/* larger than the whole budget: taken when nothing else is held */
	CHECK(snap_s3_budget_acquire(c, 1000) == 0);
	snap_s3_budget_release(c, 1000);
	snap_s3_client_free(c);
}

/* Region redirect (s3.h invariant 6). The gateway signs for any region, so a listener stands in
 * for AWS's answer to a request signed for the wrong region: 301 and x-amz-bucket-region, until
 * the request is signed for that region. Each connection serves one request. */
struct redirector {
	int fd;
	int served, redirected;
	char scope_seen[2][64];
};

static void *redirect_serve(void *arg)
{
	struct redirector *rd = arg;
	for (int i = 0; i < 2; i++) {
		int fd = accept(rd->fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		char req[8192];
		size_t n = 0;
		req[0] = 0;
		while (n < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
			ssize_t k = read(fd, req + n, sizeof(req) - 1 - n);
			if (k <= 0)
				break;
			n += (size_t)k;
			req[n] = 0;
		}
		const char *cred = strstr(req, "Credential=");
		const char *slash = cred ? strchr(cred, '/') : NULL;
		if (slash)
			snprintf(rd->scope_seen[i], sizeof(rd->scope_seen[i]), "%.*s",
				 (int)strcspn(slash, ","), slash);
		const char *a;
		if (strstr(rd->scope_seen[i], "/eu-test-1/")) {
			a = "HTTP/1.1 200 OK\r\nContent-Length: 42\r\nETag: \"x\"\r\n"
			    "Connection: close\r\n\r\n";
		} else {
			a = "HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-test-1\r\n"
			    "Content-Length: 0\r\nConnection: close\r\n\r\n";
			rd->redirected++;
		}
		if (write(fd, a, strlen(a)) < 0)
			perror("write");
		rd->served++;
		close(fd);
	}
	return NULL;
}

static char log_seen[512];

static void log_line(void *ud, int level, const char *msg)
{
	(void)ud;
	(void)level;
	if (strstr(msg, "region"))
		snprintf(log_seen, sizeof(log_seen), "%s", msg);
}

static void check_redirect(void)
{
	struct redirector rd = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
	REQUIRE(rd.fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	REQUIRE(bind(rd.fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	REQUIRE(listen(rd.fd, 4) == 0);
	socklen_t al = sizeof(a);
	REQUIRE(getsockname(rd.fd, (struct sockaddr *)&a, &al) == 0);
	char ep[64];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", ntohs(a.sin_port));
	struct snap_s3_config c2 = {
	    .endpoint = ep,
	    .region = "us-east-1",
	    .access_key = "AKIDEXAMPLE",
	    .secret_key = "secret",
	    .retries = 0,
	    .timeout_s = 5,
	};
	struct snap_s3_client *c = NULL;
	REQUIRE(snap_s3_client_new(&c2, &c, NULL) == 0);
	snap_s3_client_set_log(c, log_line, NULL);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, redirect_serve, &rd) == 0);
	struct snap_s3_head *h = NULL;
	char *detail = NULL;
	int rc = snap_s3_head_object(c, "bucket-elsewhere", "k", &h, &detail);
	pthread_join(t, NULL);
	CHECK(rc == 0 && h && h->size == 42, "redirect: %d %s", rc, detail ? detail : "");
	CHECK(rd.served == 2 && rd.redirected == 1, "%d served, %d redirected", rd.served,
	      rd.redirected);
	CHECK(strstr(rd.scope_seen[0], "/us-east-1/") && strstr(rd.scope_seen[1], "/eu-test-1/"),
	      "%s then %s", rd.scope_seen[0], rd.scope_seen[1]);
	CHECK(strstr(log_seen, "bucket-elsewhere") && strstr(log_seen, "eu-test-1"), "log: %s",
	      log_seen);
	snap_s3_head_free(h);
	free(detail);
	snap_s3_client_free(c);
	close(rd.fd);
}

/* Keys with characters that need encoding in the path (and that S3 keeps as they are). */
static void check_odd_keys(struct snap_s3_client *c)
{
	static const char *const keys[] = {"odd/a+b=c&d~e.bin", "odd/sp ace/%41/\xc3\xa9t\xc3\xa9",
					   "odd/./dots/../x", "odd//double"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char *detail = NULL;
		int rc = snap_s3_put_object(c, bucket, keys[i], keys[i], strlen(keys[i]), NULL,
					    NULL, &detail);
		CHECK(rc == 0, "put %s: %d %s", keys[i], rc, detail ? detail : "");
		free(detail);
		detail = NULL;
		void *b = NULL;
		size_t l = 0;
		rc = snap_s3_get_object(c, bucket, keys[i], 100, &b, &l, &detail);
		CHECK(rc == 0 && l == strlen(keys[i]) && !memcmp(b, keys[i], l), "get %s: %d %s",
		      keys[i], rc, detail ? detail : "");
		free(b);
		free(detail);
	}
	struct snap_s3_list_objects *l = NULL;
	REQUIRE(snap_s3_list_objects(c, bucket, "odd/", &l, NULL) == 0);
	CHECK(l->nobjects == 4, "%zu", l->nobjects);
	for (size_t i = 0; i < l->nobjects; i++) {
		int found = 0;
		for (size_t j = 0; j < 4; j++)
			found += !strcmp(l->objects[i].key, keys[j]);
		CHECK(found == 1, "listed %s", l->objects[i].key);
	}
	snap_s3_list_objects_free(l);
}

static void empty_bucket(struct snap_s3_client *c)
{
	struct snap_s3_list_uploads *u = NULL;
	if (snap_s3_list_uploads(c, bucket, NULL, &u, NULL) == 0) {
		for (size_t i = 0; i < u->nuploads; i++)
			snap_s3_abort_upload(c, bucket, u->uploads[i].key, u->uploads[i].upload_id,
					     NULL);
		snap_s3_list_uploads_free(u);
	}
	struct snap_s3_list_objects *l = NULL;
	if (snap_s3_list_objects(c, bucket, NULL, &l, NULL) == 0) {
		for (size_t i = 0; i < l->nobjects; i++)
			snap_s3_delete_object(c, bucket, l->objects[i].key, NULL);
		snap_s3_list_objects_free(l);
	}
}

int main(void)
{
	check_put_headers();
	check_address();
	check_redirect();

	const char *ep = getenv("SNAP_TEST_S3_ENDPOINT");
	if (!ep || !*ep) {
		printf("SKIP: SNAP_TEST_S3_ENDPOINT is not set (tests/s3/rgw.sh)\n");
		return test_failures ? 1 : 77;
	}
	cfg.endpoint = (char *)ep;
	cfg.access_key = getenv("SNAP_TEST_S3_ACCESS_KEY");
	cfg.secret_key = getenv("SNAP_TEST_S3_SECRET_KEY");
	cfg.region = getenv("SNAP_TEST_S3_REGION");
	REQUIRE(cfg.access_key && cfg.secret_key && cfg.region);
	const char *t = getenv("TMPDIR");
	char prefix[200];
	snprintf(prefix, sizeof(prefix), "%s/snaptest-s3-", t && *t ? t : "/tmp");
	test_mkdtemp(tmpdir, sizeof(tmpdir), prefix);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	snprintf(bucket, sizeof(bucket), "snaptest-client-%d-%d", (int)getpid(), rand() % 100000);

	struct snap_s3_client *c = client(0, NULL);
	char *detail = NULL;
	int rc = snap_s3_create_bucket(c, bucket, NULL, &detail);
	REQUIRE(rc == 0, "create bucket: %d %s", rc, detail ? detail : "");

	check_roundtrip(c);
	check_missing(c);
	check_odd_keys(c);
	check_wrong_secret();
	snap_s3_set_fault(fault_hook, NULL);
	check_faults();
	check_timeout();
	check_stream(c);
	check_multipart(c);
	check_listing(c);
	check_concurrent();
	check_cancel();
	check_budget();

	empty_bucket(c);
	rc = snap_s3_delete_bucket(c, bucket, &detail);
	CHECK(rc == 0, "delete bucket: %d %s", rc, detail ? detail : "");
	free(detail);
	snap_s3_client_free(c);
	test_sh("rm -rf '%s'", tmpdir);
	return test_failures ? 1 : 0;
}
