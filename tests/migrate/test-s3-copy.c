// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-s3-copy.c - the S3 client's server-side copies (snap_s3_copy_object,
 * snap_s3_upload_part_copy) against the gateway: a copy of a key that needs URL-encoding is
 * byte-equal with the source's ETag; a copy answered 500 once is retried and succeeds; one that
 * keeps failing gives up naming CopyObject; a missing source is -ENOENT; two UploadPartCopy
 * ranges completed give the source back byte for byte with a 2-part ETag; bad ranges and part
 * numbers are refused before any request. Skips (77) without SNAP_TEST_S3_ENDPOINT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "s3.h"
#include "test-util.h"

static struct snap_s3_config cfg;
static char bucket[64];

static struct {
	const char *key;
	enum snap_s3_fault kind;
	unsigned times, asked;
} fault;

static enum snap_s3_fault fault_hook(void *ud, const char *method, const char *b, const char *key,
				     unsigned attempt)
{
	(void)ud;
	if (strcmp(method, "PUT") || strcmp(b, bucket) || !fault.key || !key ||
	    strcmp(key, fault.key))
		return SNAP_S3_FAULT_NONE;
	__atomic_fetch_add(&fault.asked, 1, __ATOMIC_RELAXED);
	return attempt < fault.times ? fault.kind : SNAP_S3_FAULT_NONE;
}

static struct snap_s3_client *client(unsigned retries)
{
	struct snap_s3_config c = cfg;
	c.retries = retries;
	struct snap_s3_client *cl = NULL;
	char *detail = NULL;
	int rc = snap_s3_client_new(&c, &cl, &detail);
	REQUIRE(rc == 0, "client: %d %s", rc, detail ? detail : "");
	return cl;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* key holds exactly buf[0..len). */
static void check_object(struct snap_s3_client *c, const char *key, const uint8_t *buf, size_t len)
{
	void *got = NULL;
	size_t glen = 0;
	char *d = NULL;
	int rc = snap_s3_get_object(c, bucket, key, len + 1, &got, &glen, &d);
	CHECK(rc == 0, "get %s: %d %s", key, rc, d ? d : "");
	CHECK(rc != 0 || (glen == len && !memcmp(got, buf, len)), "%s: %zu bytes differ from %zu",
	      key, glen, len);
	free(got);
	free(d);
}

static void check_copy(struct snap_s3_client *c)
{
	static uint8_t buf[100000];
	fill(buf, sizeof(buf), 1);
	char *etag = NULL, *copy_etag = NULL, *d = NULL;
	const char *src = "src/a b+c%d=é.part.0", *dst = "dst/a b+c%d=é.part.0";
	int rc = snap_s3_put_object(c, bucket, src, buf, sizeof(buf), NULL, &etag, &d);
	REQUIRE(rc == 0, "put: %d %s", rc, d ? d : "");
	rc = snap_s3_copy_object(c, bucket, src, bucket, dst, "private", &copy_etag, &d);
	REQUIRE(rc == 0, "copy: %d %s", rc, d ? d : "");
	CHECK(!strcmp(etag, copy_etag), "copy ETag %s, source %s", copy_etag, etag);
	check_object(c, dst, buf, sizeof(buf));
	free(copy_etag);
	copy_etag = NULL;

	/* 500 once: retried, and the retry is counted */
	struct snap_s3_stats before, after;
	snap_s3_client_stats(c, &before);
	fault = (typeof(fault)){.key = "dst/retry", .kind = SNAP_S3_FAULT_HTTP_500, .times = 1};
	rc = snap_s3_copy_object(c, bucket, src, bucket, "dst/retry", NULL, &copy_etag, &d);
	CHECK(rc == 0, "copy after one 500: %d %s", rc, d ? d : "");
	snap_s3_client_stats(c, &after);
	CHECK(after.retries == before.retries + 1 && fault.asked == 2, "retries %llu, asked %u",
	      (unsigned long long)(after.retries - before.retries), fault.asked);
	CHECK(copy_etag && !strcmp(copy_etag, etag));
	check_object(c, "dst/retry", buf, sizeof(buf));
	free(copy_etag);
	copy_etag = NULL;

	/* SlowDown every time with one retry: gives up, naming the operation and the object */
	struct snap_s3_client *one = client(1);
	fault = (typeof(fault)){.key = "dst/slow", .kind = SNAP_S3_FAULT_SLOWDOWN, .times = 100};
	rc = snap_s3_copy_object(one, bucket, src, bucket, "dst/slow", NULL, &copy_etag, &d);
	CHECK(rc < 0 && !copy_etag && fault.asked == 2, "copy under SlowDown: %d, asked %u", rc,
	      fault.asked);
	CHECK(d && strstr(d, "CopyObject") && strstr(d, "dst/slow"), "%s", d ? d : "");
	free(d);
	d = NULL;
	fault = (typeof(fault)){0};
	snap_s3_client_free(one);

	/* a missing source */
	rc = snap_s3_copy_object(c, bucket, "src/none", bucket, "dst/none", NULL, &copy_etag, &d);
	CHECK(rc == -ENOENT && !copy_etag, "copy of a missing source: %d", rc);
	CHECK(d && strstr(d, "CopyObject") && strstr(d, "404"), "%s", d ? d : "");
	free(d);
	d = NULL;
	CHECK(snap_s3_copy_object(c, bucket, "", bucket, "x", NULL, NULL, &d) == -EINVAL);
	free(d);
	free(etag);
}

static void check_part_copy(struct snap_s3_client *c)
{
	const size_t len = SNAP_S3_MIN_PART_SIZE + 123457;
	uint8_t *buf = malloc(len);
	REQUIRE(buf);
	fill(buf, len, 7);
	char *etag = NULL, *d = NULL, *upload = NULL;
	int rc = snap_s3_put_object(c, bucket, "src/big", buf, len, NULL, NULL, &d);
	REQUIRE(rc == 0, "put big: %d %s", rc, d ? d : "");
	rc = snap_s3_create_upload(c, bucket, "dst/big", NULL, &upload, &d);
	REQUIRE(rc == 0, "create upload: %d %s", rc, d ? d : "");

	/* refused before any request */
	CHECK(snap_s3_upload_part_copy(c, bucket, "src/big", 0, 0, bucket, "dst/big", upload, 1,
				       &etag, &d) == -EINVAL);
	free(d);
	d = NULL;
	CHECK(snap_s3_upload_part_copy(c, bucket, "src/big", 0, 10, bucket, "dst/big", upload, 0,
				       &etag, &d) == -EINVAL);
	free(d);
	d = NULL;

	struct snap_s3_part parts[2] = {{.part_number = 1}, {.part_number = 2}};
	fault = (typeof(fault)){.key = "dst/big", .kind = SNAP_S3_FAULT_HTTP_500, .times = 1};
	rc = snap_s3_upload_part_copy(c, bucket, "src/big", 0, SNAP_S3_MIN_PART_SIZE, bucket,
				      "dst/big", upload, 1, &parts[0].etag, &d);
	CHECK(rc == 0 && fault.asked == 2, "part 1 after a 500: %d %s", rc, d ? d : "");
	fault = (typeof(fault)){0};
	rc = snap_s3_upload_part_copy(c, bucket, "src/big", SNAP_S3_MIN_PART_SIZE,
				      len - SNAP_S3_MIN_PART_SIZE, bucket, "dst/big", upload, 2,
				      &parts[1].etag, &d);
	CHECK(rc == 0, "part 2: %d %s", rc, d ? d : "");
	rc = snap_s3_complete_upload(c, bucket, "dst/big", upload, parts, 2, &etag, &d);
	CHECK(rc == 0, "complete: %d %s", rc, d ? d : "");
	CHECK(etag && strstr(etag, "-2"), "ETag %s", etag ? etag : "(none)");
	check_object(c, "dst/big", buf, len);

	/* a range past the source's end */
	char *u2 = NULL, *e2 = NULL;
	REQUIRE(snap_s3_create_upload(c, bucket, "dst/past", NULL, &u2, &d) == 0);
	rc = snap_s3_upload_part_copy(c, bucket, "src/big", len, 100, bucket, "dst/past", u2, 1,
				      &e2, &d);
	CHECK(rc < 0 && !e2, "a range past the end: %d", rc);
	free(d);
	d = NULL;
	CHECK(snap_s3_abort_upload(c, bucket, "dst/past", u2, &d) == 0);
	free(d);
	free(u2);
	free(parts[0].etag);
	free(parts[1].etag);
	free(etag);
	free(upload);
	free(buf);
}

int main(void)
{
	const char *ep = getenv("SNAP_TEST_S3_ENDPOINT");
	if (!ep || !*ep) {
		printf("SKIP: SNAP_TEST_S3_ENDPOINT is not set (tests/s3/rgw.sh)\n");
		return 77;
	}
	cfg.endpoint = (char *)ep;
	cfg.access_key = getenv("SNAP_TEST_S3_ACCESS_KEY");
	cfg.secret_key = getenv("SNAP_TEST_S3_SECRET_KEY");
	cfg.region = getenv("SNAP_TEST_S3_REGION");
	cfg.connections = SNAP_S3_DEFAULT_CONNECTIONS;
	cfg.timeout_s = SNAP_S3_DEFAULT_TIMEOUT_S;
	cfg.memory_budget = SNAP_S3_DEFAULT_MEMORY_BUDGET;
	REQUIRE(cfg.access_key && cfg.secret_key && cfg.region);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	snprintf(bucket, sizeof(bucket), "snaptest-copy-%d-%d", (int)getpid(), rand() % 100000);
	snap_s3_set_fault(fault_hook, NULL);

	struct snap_s3_client *c = client(SNAP_S3_DEFAULT_RETRIES);
	char *d = NULL;
	int rc = snap_s3_create_bucket(c, bucket, NULL, &d);
	REQUIRE(rc == 0, "create bucket: %d %s", rc, d ? d : "");
	check_copy(c);
	check_part_copy(c);

	struct snap_s3_list_objects *l = NULL;
	if (snap_s3_list_objects(c, bucket, "", &l, NULL) == 0) {
		for (size_t i = 0; i < l->nobjects; i++)
			snap_s3_delete_object(c, bucket, l->objects[i].key, NULL);
		snap_s3_list_objects_free(l);
	}
	rc = snap_s3_delete_bucket(c, bucket, &d);
	CHECK(rc == 0, "delete bucket: %d %s", rc, d ? d : "");
	free(d);
	snap_s3_client_free(c);
	return test_failures ? 1 : 0;
}
