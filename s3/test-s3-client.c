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

__attribute__((unused)) static uint64_t ms_now(void)
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
	int st = test_sh("AWS_CONFIG_FILE=%s/none AWS_SHARED_CREDENTIALS_FILE=%s/none "
			 "AWS_EC2_METADATA_DISABLED=true AWS_PAGER= AWS_ACCESS_KEY_ID=%s "
			 "AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=%s timeout 120 /usr/bin/aws "
			 "--endpoint-url %s %s",
			 tmpdir, tmpdir, cfg.access_key, cfg.secret_key, cfg.region, cfg.endpoint,
			 args);
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
		if (!strcmp(h->meta[i].name, "ami-name") &&
		    !strcmp(h->meta[i].value, "round trip"))
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
	rc = snap_s3_put_object(c, bucket, "acl-public", "y", 1,
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
	check_wrong_secret();

	empty_bucket(c);
	rc = snap_s3_delete_bucket(c, bucket, &detail);
	CHECK(rc == 0, "delete bucket: %d %s", rc, detail ? detail : "");
	free(detail);
	snap_s3_client_free(c);
	test_sh("rm -rf '%s'", tmpdir);
	return test_failures ? 1 : 0;
}
