// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-s3-objects.c - the object writer (W1-W3) and reader (R1-R3) of s3.h against the gateway
 * of the tests (tests/s3/rgw.sh), judged by our own reader and by /usr/bin/aws: multipart sizes
 * at the part boundaries, the multipart ETag (computed here from the parts' MD5s and compared
 * with what aws heads), metadata and tags, streamed parts, abort, keep and resume, the single
 * PUT, the memory budget, ranged reads with read-ahead and plans, a replaced object, reads past
 * the end, concurrent reads, and faults injected through the transport's hook.
 * Skips (77) without SNAP_TEST_S3_ENDPOINT & co.
 */
#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>

#include "s3.h"
#include "test-util.h"

#define MiB (1ull << 20)
#define PART (5 * MiB)

static const char *endpoint, *access_key, *secret_key, *region;
static char bucket[64];
static const char *tmpdir;
static bool bucket_made, bucket_removed;
static bool have_aws;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint8_t *random_bytes(size_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	REQUIRE(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(rnd() >> 24);
	return b;
}

static struct snap_s3_client *client(unsigned connections, uint64_t budget, unsigned retries)
{
	struct snap_s3_config cfg = {
	    .endpoint = (char *)endpoint,
	    .region = (char *)region,
	    .access_key = (char *)access_key,
	    .secret_key = (char *)secret_key,
	    .source = (char *)"test",
	    .connections = connections,
	    .retries = retries,
	    .timeout_s = 30,
	    .memory_budget = budget,
	};
	struct snap_s3_client *c = NULL;
	char *detail = NULL;
	int r = snap_s3_client_new(&cfg, &c, &detail);
	REQUIRE(r >= 0, "client: %d %s", r, detail ? detail : "");
	return c;
}

/* Output of an aws command (NULL when it fails); the caller frees. */
__attribute__((format(printf, 1, 2))) static char *aws(const char *fmt, ...)
{
	char *args, *cmd;
	va_list ap;
	va_start(ap, fmt);
	REQUIRE(vasprintf(&args, fmt, ap) >= 0);
	va_end(ap);
	REQUIRE(asprintf(&cmd,
			 "timeout 120 /usr/bin/aws --endpoint-url '%s' --cli-read-timeout 60 %s",
			 endpoint, args) >= 0);
	FILE *f = popen(cmd, "r");
	REQUIRE(f);
	size_t cap = 4096, n = 0;
	char *out = malloc(cap);
	REQUIRE(out);
	size_t k;
	while ((k = fread(out + n, 1, cap - n - 1, f)) > 0) {
		n += k;
		if (cap - n < 2) {
			cap *= 2;
			out = realloc(out, cap);
			REQUIRE(out);
		}
	}
	out[n] = 0;
	int st = pclose(f);
	if (st != 0) {
		fprintf(stderr, "aws failed (%d): %s\n", st, cmd);
		free(out);
		out = NULL;
	} else {
		while (n && isspace((unsigned char)out[n - 1]))
			out[--n] = 0;
	}
	free(cmd);
	free(args);
	return out;
}

static void md5(const void *p, size_t n, uint8_t out[16])
{
	unsigned len = 16;
	REQUIRE(EVP_Digest(p, n, out, &len, EVP_md5(), NULL) == 1);
}

/* S3's multipart ETag: "MD5(MD5(part 1) || ... || MD5(part n))-n". */
static void multipart_etag(const uint8_t *data, uint64_t size, uint64_t part, char *out)
{
	uint64_t n = size ? (size + part - 1) / part : 1;
	uint8_t *all = malloc(16 * n), d[16];
	REQUIRE(all);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t len = size - i * part < part ? size - i * part : part;
		md5(data + i * part, size ? len : 0, all + 16 * i);
	}
	md5(all, 16 * n, d);
	free(all);
	char *p = out;
	p += sprintf(p, "\"");
	for (int i = 0; i < 16; i++)
		p += sprintf(p, "%02x", d[i]);
	sprintf(p, "-%llu\"", (unsigned long long)n);
}

struct parts_seen {
	uint32_t n;
	uint32_t numbers[64];
	uint64_t ends[64];
	char *etags[64];
};

static void on_part(void *userdata, uint32_t number, const char *etag, uint64_t end)
{
	struct parts_seen *s = userdata;
	if (s->n < 64) {
		s->numbers[s->n] = number;
		s->ends[s->n] = end;
		s->etags[s->n] = strdup(etag);
		s->n++;
	}
}

static void parts_seen_clear(struct parts_seen *s)
{
	for (uint32_t i = 0; i < s->n; i++)
		free(s->etags[i]);
	memset(s, 0, sizeof(*s));
}

/* Writes data in random pieces of 1..max bytes. */
static int write_random(struct snap_s3_writer *w, const uint8_t *data, uint64_t size, size_t max)
{
	uint64_t off = 0;
	while (off < size) {
		size_t n = 1 + rnd() % max;
		if (n > size - off)
			n = size - off;
		int r = snap_s3_writer_write(w, data + off, n);
		if (r < 0)
			return r;
		off += n;
	}
	return 0;
}

/* Reads the whole object with our reader and compares. */
static void check_object(struct snap_s3_client *c, const char *key, const uint8_t *data,
			 uint64_t size)
{
	struct snap_s3_reader *r = NULL;
	char *detail = NULL;
	int e = snap_s3_reader_open(c, bucket, key, &r, &detail);
	REQUIRE(e >= 0, "open %s: %d %s", key, e, detail ? detail : "");
	CHECK(snap_s3_reader_size(r) == size, "%s: size %llu, want %llu", key,
	      (unsigned long long)snap_s3_reader_size(r), (unsigned long long)size);
	if (size) {
		uint8_t *back = malloc(size);
		REQUIRE(back);
		e = snap_s3_reader_pread(r, back, size, 0, &detail);
		CHECK(e >= 0, "pread %s: %d %s", key, e, detail ? detail : "");
		CHECK(e < 0 || memcmp(back, data, size) == 0, "%s: bytes differ", key);
		free(back);
	}
	free(detail);
	snap_s3_reader_free(r);
}

/* aws s3 cp of the object compared with data; aws head-object's ETag compared with etag. */
static void judge_aws(const char *key, const uint8_t *data, uint64_t size, const char *etag)
{
	if (!have_aws)
		return;
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, key);
	char *out = aws("s3 cp --only-show-errors 's3://%s/%s' '%s'", bucket, key, path);
	CHECK(out, "aws s3 cp %s failed", key);
	free(out);
	if (!out)
		return;
	size_t n = 0;
	void *back = test_read_file(path, &n);
	CHECK(n == size && memcmp(back, data, size) == 0, "aws s3 cp %s: %zu bytes differ", key, n);
	free(back);
	unlink(path);
	char *got =
	    aws("s3api head-object --bucket %s --key %s --query ETag --output text", bucket, key);
	CHECK(got && strcmp(got, etag) == 0, "aws head-object %s: ETag %s, ours %s", key,
	      got ? got : "(failed)", etag);
	free(got);
}

/* W1: multipart objects of sizes around the part boundaries, written in random pieces. */
static void test_multipart_sizes(struct snap_s3_client *c)
{
	static const uint64_t sizes[] = {0, 1, PART, PART + 1, 3 * PART + 12345};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t size = sizes[i];
		char key[64], want[64], *detail = NULL, *etag = NULL;
		snprintf(key, sizeof(key), "multi-%llu", (unsigned long long)size);
		uint8_t *data = random_bytes(size);
		struct snap_s3_writer *w = NULL;
		struct parts_seen seen = {0};
		int r = snap_s3_writer_new(c, bucket, key, SNAP_S3_WRITER_MULTIPART, PART, NULL, &w,
					   &detail);
		REQUIRE(r >= 0, "writer %s: %d %s", key, r, detail ? detail : "");
		CHECK(snap_s3_writer_upload_id(w) != NULL);
		snap_s3_writer_on_part(w, on_part, &seen);
		r = write_random(w, data, size, i % 2 ? 1 << 20 : 70000);
		CHECK(r >= 0, "write %s: %d %s", key, r, snap_s3_writer_error(w));
		CHECK(snap_s3_writer_offset(w) == size);
		r = snap_s3_writer_commit(w, &etag);
		REQUIRE(r >= 0, "commit %s: %d %s", key, r, snap_s3_writer_error(w));
		multipart_etag(data, size, PART, want);
		CHECK(strcmp(etag, want) == 0, "%s: ETag %s, want %s", key, etag, want);
		uint32_t nparts = size ? (size + PART - 1) / PART : 1;
		CHECK(seen.n == nparts, "%s: on_part %u times, want %u", key, seen.n, nparts);
		for (uint32_t k = 0; k < seen.n; k++) {
			uint64_t end = (k + 1) * PART < size ? (k + 1) * PART : size;
			CHECK(seen.numbers[k] == k + 1 && seen.ends[k] == end,
			      "%s: on_part %u: part %u end %llu", key, k, seen.numbers[k],
			      (unsigned long long)seen.ends[k]);
		}
		snap_s3_writer_free(w);
		check_object(c, key, data, size);
		if (size == 1 || size == PART + 1 || size == 0)
			judge_aws(key, data, size, etag);
		parts_seen_clear(&seen);
		free(etag);
		free(data);
	}
}

/* W1: metadata, tags and a canned ACL given at new, seen by aws. */
static void test_meta_tags(struct snap_s3_client *c)
{
	struct snap_s3_pair meta[] = {{"ami-name", "test-image"}, {"ami-id", "ami-0123"}};
	struct snap_s3_pair tags[] = {{"purpose", "snap test"}};
	struct snap_s3_put_options o = {
	    .acl = "private", .meta = meta, .nmeta = 2, .tags = tags, .ntags = 1};
	uint8_t *data = random_bytes(PART + 100);
	struct snap_s3_writer *w = NULL;
	char *detail = NULL;
	int r =
	    snap_s3_writer_new(c, bucket, "meta", SNAP_S3_WRITER_MULTIPART, PART, &o, &w, &detail);
	REQUIRE(r >= 0, "writer: %d %s", r, detail ? detail : "");
	CHECK(snap_s3_writer_write(w, data, PART + 100) >= 0);
	CHECK(snap_s3_writer_commit(w, NULL) >= 0, "%s", snap_s3_writer_error(w));
	snap_s3_writer_free(w);

	struct snap_s3_head *h = NULL;
	REQUIRE(snap_s3_head_object(c, bucket, "meta", &h, NULL) >= 0);
	bool found = false;
	for (size_t i = 0; i < h->nmeta; i++)
		found |=
		    !strcmp(h->meta[i].name, "ami-name") && !strcmp(h->meta[i].value, "test-image");
	CHECK(found, "x-amz-meta-ami-name not in our HEAD");
	snap_s3_head_free(h);

	/* Single PUT with the same options. */
	r = snap_s3_writer_new(c, bucket, "meta-single", 0, 0, &o, &w, &detail);
	REQUIRE(r >= 0);
	CHECK(snap_s3_writer_write(w, data, 1000) >= 0);
	CHECK(snap_s3_writer_commit(w, NULL) >= 0, "%s", snap_s3_writer_error(w));
	snap_s3_writer_free(w);
	free(data);

	if (!have_aws)
		return;
	for (int k = 0; k < 2; k++) {
		const char *key = k ? "meta-single" : "meta";
		char *m =
		    aws("s3api head-object --bucket %s --key %s --query Metadata --output json",
			bucket, key);
		CHECK(m && strstr(m, "\"ami-name\": \"test-image\"") &&
			  strstr(m, "\"ami-id\": \"ami-0123\""),
		      "%s: aws head-object Metadata: %s", key, m ? m : "(failed)");
		free(m);
		char *t = aws("s3api get-object-tagging --bucket %s --key %s --query "
			      "'TagSet[?Key==`purpose`].Value' --output text",
			      bucket, key);
		CHECK(t && strcmp(t, "snap test") == 0, "%s: aws tag purpose: %s", key,
		      t ? t : "(failed)");
		free(t);
	}
}

/* W1 streamed: every part through the ring (SNAP_S3_WRITER_STREAM). */
static void test_stream(struct snap_s3_client *c)
{
	/* sizes: within the ring; a short last part within the ring; a last part longer than
	 * the ring (the size told ahead) */
	static const uint64_t sizes[] = {1, PART + 1, 2 * PART + 4 * MiB + 512 * 1024 + 3};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t size = sizes[i];
		char key[64], want[64], *detail = NULL, *etag = NULL;
		snprintf(key, sizeof(key), "stream-%llu", (unsigned long long)size);
		uint8_t *data = random_bytes(size);
		struct snap_s3_writer *w = NULL;
		int r = snap_s3_writer_new(c, bucket, key,
					   SNAP_S3_WRITER_MULTIPART | SNAP_S3_WRITER_STREAM, PART,
					   NULL, &w, &detail);
		REQUIRE(r >= 0, "writer %s: %d %s", key, r, detail ? detail : "");
		if (i == 2)
			CHECK(snap_s3_writer_set_size(w, size) >= 0);
		r = write_random(w, data, size, 300000);
		CHECK(r >= 0, "write %s: %d %s", key, r, snap_s3_writer_error(w));
		r = snap_s3_writer_commit(w, &etag);
		REQUIRE(r >= 0, "commit %s: %d %s", key, r, snap_s3_writer_error(w));
		multipart_etag(data, size, PART, want);
		CHECK(strcmp(etag, want) == 0, "%s: ETag %s, want %s", key, etag, want);
		CHECK(snap_s3_writer_peak_held(w) <= 4 * MiB, "%s: held %llu", key,
		      (unsigned long long)snap_s3_writer_peak_held(w));
		snap_s3_writer_free(w);
		check_object(c, key, data, size);
		if (i == 2)
			judge_aws(key, data, size, etag);
		free(etag);
		free(data);
	}

	/* Parts larger than SNAP_S3_MAX_BUFFERED_PART stream without the flag. */
	{
		uint64_t part = SNAP_S3_MAX_BUFFERED_PART + MiB, size = part + 2 * MiB + 7;
		uint8_t *data = random_bytes(size);
		struct snap_s3_writer *w = NULL;
		char *etag = NULL, want[64];
		REQUIRE(snap_s3_writer_new(c, bucket, "stream-large", SNAP_S3_WRITER_MULTIPART,
					   part, NULL, &w, NULL) >= 0);
		CHECK(write_random(w, data, size, 3 << 20) >= 0, "%s", snap_s3_writer_error(w));
		CHECK(snap_s3_writer_commit(w, &etag) >= 0, "%s", snap_s3_writer_error(w));
		multipart_etag(data, size, part, want);
		CHECK(etag && strcmp(etag, want) == 0, "stream-large: ETag %s, want %s", etag,
		      want);
		CHECK(snap_s3_writer_peak_held(w) <= 4 * MiB, "stream-large: held %llu",
		      (unsigned long long)snap_s3_writer_peak_held(w));
		snap_s3_writer_free(w);
		check_object(c, "stream-large", data, size);
		free(etag);
		free(data);
	}

	/* Without the size, an object that ends inside a streamed part already started fails
	 * clearly, and leaves no upload. */
	uint64_t size = PART + 4 * MiB + 100;
	uint8_t *data = random_bytes(size);
	struct snap_s3_writer *w = NULL;
	REQUIRE(snap_s3_writer_new(c, bucket, "stream-nosize",
				   SNAP_S3_WRITER_MULTIPART | SNAP_S3_WRITER_STREAM, PART, NULL, &w,
				   NULL) >= 0);
	CHECK(write_random(w, data, size, 1 << 20) >= 0);
	int r = snap_s3_writer_commit(w, NULL);
	CHECK(r == -EINVAL, "commit: %d", r);
	CHECK(snap_s3_writer_error(w) && strstr(snap_s3_writer_error(w), "part 2") &&
		  strstr(snap_s3_writer_error(w), "stream-nosize"),
	      "error: %s", snap_s3_writer_error(w));
	snap_s3_writer_free(w);
	struct snap_s3_list_uploads *l = NULL;
	REQUIRE(snap_s3_list_uploads(c, bucket, "stream-nosize", &l, NULL) >= 0);
	CHECK(l->nuploads == 0, "%zu uploads left", l->nuploads);
	snap_s3_list_uploads_free(l);
	free(data);
}

static size_t count_uploads(struct snap_s3_client *c, const char *key)
{
	struct snap_s3_list_uploads *l = NULL;
	REQUIRE(snap_s3_list_uploads(c, bucket, key, &l, NULL) >= 0);
	size_t n = l->nuploads;
	snap_s3_list_uploads_free(l);
	return n;
}

/* W1 abort, KEEP and resume. */
static void test_abort_resume(struct snap_s3_client *c)
{
	uint64_t size = 4 * PART + 777;
	uint8_t *data = random_bytes(size);
	struct snap_s3_writer *w = NULL;
	struct snap_s3_head *h = NULL;
	char *detail = NULL;

	/* abort: no upload, no object */
	REQUIRE(snap_s3_writer_new(c, bucket, "aborted", SNAP_S3_WRITER_MULTIPART, PART, NULL, &w,
				   NULL) >= 0);
	CHECK(snap_s3_writer_write(w, data, 2 * PART + 10) >= 0);
	CHECK(count_uploads(c, "aborted") == 1);
	snap_s3_writer_abort(w);
	CHECK(snap_s3_writer_write(w, data, 1) == -ECANCELED);
	snap_s3_writer_free(w);
	CHECK(count_uploads(c, "aborted") == 0);
	CHECK(snap_s3_head_object(c, bucket, "aborted", &h, NULL) == -ENOENT);
	if (have_aws) {
		char *u = aws("s3api list-multipart-uploads --bucket %s --prefix aborted "
			      "--query 'length(Uploads || `[]`)' --output text",
			      bucket);
		CHECK(u && strcmp(u, "0") == 0, "aws list-multipart-uploads: %s",
		      u ? u : "(failed)");
		free(u);
	}

	/* free without commit aborts too */
	REQUIRE(snap_s3_writer_new(c, bucket, "freed", SNAP_S3_WRITER_MULTIPART, PART, NULL, &w,
				   NULL) >= 0);
	CHECK(snap_s3_writer_write(w, data, PART + 10) >= 0);
	snap_s3_writer_free(w);
	CHECK(count_uploads(c, "freed") == 0);

	/* KEEP: the upload stays, its parts reported */
	struct parts_seen seen = {0};
	REQUIRE(snap_s3_writer_new(c, bucket, "resumed",
				   SNAP_S3_WRITER_MULTIPART | SNAP_S3_WRITER_KEEP, PART, NULL, &w,
				   NULL) >= 0);
	snap_s3_writer_on_part(w, on_part, &seen);
	char *upload_id = strdup(snap_s3_writer_upload_id(w));
	CHECK(write_random(w, data, 3 * PART + 1000, 1 << 20) >= 0);
	snap_s3_writer_abort(w);
	snap_s3_writer_free(w);
	CHECK(count_uploads(c, "resumed") == 1);
	CHECK(seen.n == 3, "%u parts acknowledged", seen.n);
	REQUIRE(seen.n >= 2);
	if (have_aws) {
		char *u = aws("s3api list-multipart-uploads --bucket %s --prefix resumed "
			      "--query 'Uploads[0].UploadId' --output text",
			      bucket);
		CHECK(u && strcmp(u, upload_id) == 0, "aws: upload %s", u ? u : "(failed)");
		free(u);
	}

	/* resume with a wrong ETag: -ESTALE naming the part */
	struct snap_s3_part parts[2] = {{1, seen.etags[0], PART}, {2, seen.etags[0], PART}};
	int r = snap_s3_writer_resume(c, bucket, "resumed", upload_id, parts, 2, PART, &w, &detail);
	CHECK(r == -ESTALE, "resume with a wrong ETag: %d", r);
	CHECK(detail && strstr(detail, "part 2"), "detail: %s", detail ? detail : "(none)");
	free(detail);
	detail = NULL;
	CHECK(count_uploads(c, "resumed") == 1);

	/* no part left to write */
	struct snap_s3_part *many = calloc(SNAP_S3_MAX_PARTS, sizeof(*many));
	REQUIRE(many);
	r = snap_s3_writer_resume(c, bucket, "resumed", upload_id, many, SNAP_S3_MAX_PARTS, PART,
				  &w, &detail);
	CHECK(r == -EFBIG, "resume after 10000 parts: %d", r);
	CHECK(detail && strstr(detail, "/resumed"), "detail: %s", detail ? detail : "(none)");
	free(detail);
	detail = NULL;
	free(many);

	/* resume after part 2: the rest written from 2 * PART */
	parts[1].etag = seen.etags[1];
	r = snap_s3_writer_resume(c, bucket, "resumed", upload_id, parts, 2, PART, &w, &detail);
	REQUIRE(r >= 0, "resume: %d %s", r, detail ? detail : "");
	CHECK(snap_s3_writer_offset(w) == 2 * PART);
	CHECK(write_random(w, data + 2 * PART, size - 2 * PART, 1 << 20) >= 0);
	char *etag = NULL, want[64];
	r = snap_s3_writer_commit(w, &etag);
	REQUIRE(r >= 0, "commit: %d %s", r, snap_s3_writer_error(w));
	multipart_etag(data, size, PART, want);
	CHECK(strcmp(etag, want) == 0, "resumed: ETag %s, want %s", etag, want);
	snap_s3_writer_free(w);
	check_object(c, "resumed", data, size);
	judge_aws("resumed", data, size, etag);
	CHECK(count_uploads(c, "resumed") == 0);
	free(etag);

	/* abort after a multipart commit deletes the object (a set committed in order, undone) */
	REQUIRE(snap_s3_writer_new(c, bucket, "undone", SNAP_S3_WRITER_MULTIPART, PART, NULL, &w,
				   NULL) >= 0);
	CHECK(snap_s3_writer_write(w, data, PART + 1) >= 0);
	CHECK(snap_s3_writer_commit(w, NULL) >= 0, "%s", snap_s3_writer_error(w));
	CHECK(snap_s3_head_object(c, bucket, "undone", &h, NULL) >= 0);
	h = snap_s3_head_free(h);
	snap_s3_writer_abort(w);
	snap_s3_writer_free(w);
	CHECK(snap_s3_head_object(c, bucket, "undone", &h, NULL) == -ENOENT,
	      "abort after commit left the object");
	free(upload_id);
	parts_seen_clear(&seen);
	free(data);
}

/* W2: the single PUT: ETag, -EFBIG past 32 MiB, abort after the PUT deletes. */
static void test_single(struct snap_s3_client *c)
{
	uint8_t *data = random_bytes(100000), d[16];
	struct snap_s3_writer *w = NULL;
	struct snap_s3_head *h = NULL;
	char *etag = NULL, want[40];

	REQUIRE(snap_s3_writer_new(c, bucket, "single", 0, 0, NULL, &w, NULL) >= 0);
	CHECK(snap_s3_writer_upload_id(w) == NULL);
	CHECK(write_random(w, data, 100000, 9000) >= 0);
	CHECK(snap_s3_writer_commit(w, &etag) >= 0, "%s", snap_s3_writer_error(w));
	md5(data, 100000, d);
	char *p = want;
	p += sprintf(p, "\"");
	for (int i = 0; i < 16; i++)
		p += sprintf(p, "%02x", d[i]);
	sprintf(p, "\"");
	CHECK(etag && strcmp(etag, want) == 0, "single: ETag %s, want %s", etag, want);
	check_object(c, "single", data, 100000);
	judge_aws("single", data, 100000, etag);
	free(etag);
	snap_s3_writer_abort(w);
	snap_s3_writer_free(w);
	CHECK(snap_s3_head_object(c, bucket, "single", &h, NULL) == -ENOENT,
	      "abort after commit left the object");

	/* free after commit keeps it; an empty object */
	REQUIRE(snap_s3_writer_new(c, bucket, "single-empty", 0, 0, NULL, &w, NULL) >= 0);
	CHECK(snap_s3_writer_commit(w, NULL) >= 0);
	snap_s3_writer_free(w);
	check_object(c, "single-empty", data, 0);

	/* Writers ended and not yet committed (a bundle's parts, committed together at the end)
	 * hold no budget once their PUT is done: eight of 1.5 MiB within a budget of 4 MiB. */
	{
		struct snap_s3_client *small = client(4, 4 * MiB, 0);
		struct snap_s3_writer *ws[8];
		size_t n = 3 * MiB / 2;
		uint8_t *part = random_bytes(n);
		for (int i = 0; i < 8; i++) {
			char key[32];
			snprintf(key, sizeof(key), "single-set-%d", i);
			REQUIRE(snap_s3_writer_new(small, bucket, key, 0, 0, NULL, &ws[i], NULL) >=
				0);
			part[0] = (uint8_t)i;
			CHECK(write_random(ws[i], part, n, 200000) >= 0);
			CHECK(snap_s3_writer_end(ws[i]) >= 0, "%s", snap_s3_writer_error(ws[i]));
		}
		for (int i = 0; i < 8; i++) {
			CHECK(snap_s3_writer_commit(ws[i], NULL) >= 0, "%s",
			      snap_s3_writer_error(ws[i]));
			CHECK(snap_s3_writer_peak_held(ws[i]) <= 2 * MiB);
			snap_s3_writer_free(ws[i]);
		}
		part[0] = 7;
		check_object(small, "single-set-7", part, n);
		free(part);
		snap_s3_client_free(small);
	}

	/* past 32 MiB */
	REQUIRE(snap_s3_writer_new(c, bucket, "single-big", 0, 0, NULL, &w, NULL) >= 0);
	uint8_t *big = calloc(1, SNAP_S3_MAX_BUFFERED_PART);
	REQUIRE(big);
	CHECK(snap_s3_writer_write(w, big, SNAP_S3_MAX_BUFFERED_PART) >= 0);
	CHECK(snap_s3_writer_write(w, big, 1) == -EFBIG);
	CHECK(snap_s3_writer_commit(w, NULL) == -EFBIG);
	CHECK(strstr(snap_s3_writer_error(w), "single-big"), "%s", snap_s3_writer_error(w));
	snap_s3_writer_free(w);
	CHECK(snap_s3_head_object(c, bucket, "single-big", &h, NULL) == -ENOENT);
	free(big);
	free(data);
}

/* Invariant 5: a writer never holds more than the client's budget; with room, several parts
 * are in flight at once. */
static void test_memory(void)
{
	uint64_t size = 8 * PART + 5;
	uint8_t *data = random_bytes(size);
	for (int k = 0; k < 2; k++) {
		uint64_t budget = k ? 160 * MiB : 12 * MiB;
		struct snap_s3_client *c = client(4, budget, 0);
		struct snap_s3_writer *w = NULL;
		char key[32], *etag = NULL, want[64];
		snprintf(key, sizeof(key), "memory-%d", k);
		REQUIRE(snap_s3_writer_new(c, bucket, key, SNAP_S3_WRITER_MULTIPART, PART, NULL, &w,
					   NULL) >= 0);
		CHECK(write_random(w, data, size, 1 << 20) >= 0);
		CHECK(snap_s3_writer_commit(w, &etag) >= 0, "%s", snap_s3_writer_error(w));
		multipart_etag(data, size, PART, want);
		CHECK(etag && strcmp(etag, want) == 0, "%s: ETag %s, want %s", key, etag, want);
		uint64_t peak = snap_s3_writer_peak_held(w);
		if (!k)
			CHECK(peak <= budget && peak >= PART, "budget 12 MiB: held %llu",
			      (unsigned long long)peak);
		else
			CHECK(peak >= 2 * PART && peak <= 5 * PART,
			      "budget 160 MiB, 4 connections: held %llu (parts in flight)",
			      (unsigned long long)peak);
		snap_s3_writer_free(w);
		free(etag);
		snap_s3_client_free(c);
	}
	free(data);
}

struct thread_arg {
	struct snap_s3_reader *r;
	const uint8_t *data;
	uint64_t size, seed;
	int failures;
};

static void *reader_thread(void *p)
{
	struct thread_arg *a = p;
	uint64_t s = a->seed;
	uint8_t *buf = malloc(300000);
	for (int i = 0; i < 60; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t off = (s >> 20) % a->size;
		size_t len = 1 + (s >> 8) % 300000;
		if (len > a->size - off)
			len = a->size - off;
		char *detail = NULL;
		int e = snap_s3_reader_pread(a->r, buf, len, off, &detail);
		if (e < 0 || memcmp(buf, a->data + off, len)) {
			fprintf(stderr, "thread pread %zu at %llu: %d %s\n", len,
				(unsigned long long)off, e, detail ? detail : "");
			a->failures++;
		}
		free(detail);
	}
	free(buf);
	return NULL;
}

/* R1-R3. */
static void test_reader(struct snap_s3_client *c)
{
	const uint64_t chunk = 256 * 1024;
	uint64_t size = 3 * MiB + 54321;
	uint8_t *data = random_bytes(size), *buf = malloc(size);
	struct snap_s3_reader *r = NULL;
	char *detail = NULL;
	int e;
	REQUIRE(buf);
	REQUIRE(snap_s3_put_object(c, bucket, "read", data, size, NULL, NULL, NULL) >= 0);

	/* a missing object */
	e = snap_s3_reader_open(c, bucket, "read-missing", &r, &detail);
	CHECK(e == -ENOENT, "open a missing object: %d", e);
	CHECK(detail && strstr(detail, "/read-missing"), "detail: %s", detail ? detail : "(none)");
	free(detail);
	detail = NULL;

	/* random reads */
	REQUIRE(snap_s3_reader_open(c, bucket, "read", &r, &detail) >= 0);
	CHECK(snap_s3_reader_set_chunk_size(r, chunk) >= 0);
	for (int i = 0; i < 200; i++) {
		uint64_t off = rnd() % size;
		size_t len = 1 + rnd() % (i % 10 ? 5000 : 700000);
		if (len > size - off)
			len = size - off;
		e = snap_s3_reader_pread(r, buf, len, off, &detail);
		CHECK(e >= 0 && memcmp(buf, data + off, len) == 0, "pread %zu at %llu: %d %s", len,
		      (unsigned long long)off, e, detail ? detail : "");
	}
	/* past the end */
	e = snap_s3_reader_pread(r, buf, 20, size - 10, &detail);
	char offs[32];
	snprintf(offs, sizeof(offs), "%llu", (unsigned long long)(size - 10));
	CHECK(e == -ENODATA, "pread past the end: %d", e);
	CHECK(detail && strstr(detail, "s3://") && strstr(detail, "/read") && strstr(detail, offs),
	      "detail: %s", detail ? detail : "(none)");
	free(detail);
	detail = NULL;
	CHECK(snap_s3_reader_pread(r, buf, 1, size, NULL) == -ENODATA);
	CHECK(snap_s3_reader_pread(r, buf, 10, size - 10, NULL) >= 0);
	snap_s3_reader_free(r);

	/* read-ahead: the first read fetches its chunk and `connections` (4) more; reads within
	 * them fetch nothing; a read elsewhere fetches its one chunk */
	REQUIRE(snap_s3_reader_open(c, bucket, "read", &r, NULL) >= 0);
	CHECK(snap_s3_reader_set_chunk_size(r, chunk) >= 0);
	CHECK(snap_s3_reader_pread(r, buf, 1000, 0, NULL) >= 0);
	CHECK(snap_s3_reader_fetched(r) == 5 * chunk, "read-ahead fetched %llu",
	      (unsigned long long)snap_s3_reader_fetched(r));
	CHECK(snap_s3_reader_pread(r, buf, 1000, 3 * chunk, NULL) >= 0 &&
	      !memcmp(buf, data + 3 * chunk, 1000));
	CHECK(snap_s3_reader_fetched(r) == 5 * chunk, "fetched %llu",
	      (unsigned long long)snap_s3_reader_fetched(r));
	CHECK(snap_s3_reader_pread(r, buf, 1000, 10 * chunk + 5, NULL) >= 0 &&
	      !memcmp(buf, data + 10 * chunk + 5, 1000));
	CHECK(snap_s3_reader_fetched(r) == 6 * chunk, "fetched %llu",
	      (unsigned long long)snap_s3_reader_fetched(r));
	/* sequential to the end */
	uint64_t off = 10 * chunk + 1005;
	while (off < size) {
		size_t len = size - off < 100000 ? size - off : 100000;
		CHECK(snap_s3_reader_pread(r, buf, len, off, NULL) >= 0 &&
		      !memcmp(buf, data + off, len));
		off += len;
	}
	snap_s3_reader_free(r);

	/* plan: only the planned bytes are fetched */
	const uint64_t plan[][2] = {{300000, 310000}, {1500000, 1800000}, {3000000, 3000001}};
	REQUIRE(snap_s3_reader_open(c, bucket, "read", &r, NULL) >= 0);
	CHECK(snap_s3_reader_set_chunk_size(r, chunk) >= 0);
	CHECK(snap_s3_reader_plan(r, plan, 3) >= 0);
	for (int i = 0; i < 3; i++) {
		for (off = plan[i][0]; off < plan[i][1]; off += 7000) {
			size_t len = plan[i][1] - off < 7000 ? plan[i][1] - off : 7000;
			CHECK(snap_s3_reader_pread(r, buf, len, off, NULL) >= 0 &&
			      !memcmp(buf, data + off, len));
		}
	}
	CHECK(snap_s3_reader_fetched(r) == 10000 + 300000 + 1, "plan fetched %llu",
	      (unsigned long long)snap_s3_reader_fetched(r));
	snap_s3_reader_free(r);

	/* 4 threads at once */
	REQUIRE(snap_s3_reader_open(c, bucket, "read", &r, NULL) >= 0);
	CHECK(snap_s3_reader_set_chunk_size(r, chunk) >= 0);
	pthread_t t[4];
	struct thread_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){r, data, size, 1000 + i, 0};
		REQUIRE(pthread_create(&t[i], NULL, reader_thread, &args[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(args[i].failures == 0, "thread %d: %d failures", i, args[i].failures);
	}
	snap_s3_reader_free(r);

	/* replaced while read: -ESTALE (chunk 10 is not fetched ahead of a read at 0) */
	REQUIRE(snap_s3_reader_open(c, bucket, "read", &r, NULL) >= 0);
	CHECK(snap_s3_reader_set_chunk_size(r, chunk) >= 0);
	CHECK(snap_s3_reader_pread(r, buf, 100, 0, NULL) >= 0);
	data[5 * MiB / 2] ^= 1;
	REQUIRE(snap_s3_put_object(c, bucket, "read", data, size, NULL, NULL, NULL) >= 0);
	e = snap_s3_reader_pread(r, buf, 100, 5 * MiB / 2, &detail);
	CHECK(e == -ESTALE, "replaced object: %d %s", e, detail ? detail : "");
	CHECK(detail && strstr(detail, "/read"), "detail: %s", detail ? detail : "(none)");
	free(detail);
	snap_s3_reader_free(r);

	free(buf);
	free(data);
}

/* Faults: 500, 503 SlowDown and resets on parts are retried and the data is right; with no
 * retries the writer's error names the object and the part. */
static atomic_uint fault_count;
static enum snap_s3_fault fault_fn(void *userdata, const char *method, const char *b,
				   const char *key, unsigned attempt)
{
	(void)userdata;
	(void)b;
	if (strncmp(key, "faulty", 6) || attempt)
		return SNAP_S3_FAULT_NONE;
	if (!strcmp(key, "faulty-fatal"))
		return !strcmp(method, "PUT") ? SNAP_S3_FAULT_HTTP_500 : SNAP_S3_FAULT_NONE;
	static const enum snap_s3_fault kinds[] = {SNAP_S3_FAULT_HTTP_500, SNAP_S3_FAULT_SLOWDOWN,
						   SNAP_S3_FAULT_RESET};
	if (strcmp(method, "PUT") && strcmp(method, "GET"))
		return SNAP_S3_FAULT_NONE;
	return kinds[atomic_fetch_add(&fault_count, 1) % 3];
}

static void test_faults(void)
{
	struct snap_s3_client *c = client(4, 0, 0);
	uint64_t size = 3 * PART + 999;
	uint8_t *data = random_bytes(size);
	struct snap_s3_writer *w = NULL;
	struct snap_s3_stats st;
	char *etag = NULL, want[64];

	snap_s3_set_fault(fault_fn, NULL);
	REQUIRE(snap_s3_writer_new(c, bucket, "faulty", SNAP_S3_WRITER_MULTIPART, PART, NULL, &w,
				   NULL) >= 0);
	CHECK(write_random(w, data, size, 1 << 20) >= 0);
	CHECK(snap_s3_writer_commit(w, &etag) >= 0, "%s", snap_s3_writer_error(w));
	multipart_etag(data, size, PART, want);
	CHECK(etag && strcmp(etag, want) == 0, "faulty: ETag %s, want %s", etag, want);
	snap_s3_writer_free(w);
	free(etag);
	snap_s3_client_stats(c, &st);
	CHECK(st.retries >= 4, "retries %llu", (unsigned long long)st.retries);
	/* the reader's GETs fail once each too */
	check_object(c, "faulty", data, size);
	snap_s3_client_stats(c, &st);
	CHECK(st.retries >= 5, "retries %llu", (unsigned long long)st.retries);
	snap_s3_client_free(c);

	c = client(4, 0, SNAP_S3_NO_RETRIES);
	REQUIRE(snap_s3_writer_new(c, bucket, "faulty-fatal", SNAP_S3_WRITER_MULTIPART, PART, NULL,
				   &w, NULL) >= 0);
	int r = write_random(w, data, 2 * PART + 1, 1 << 20);
	if (r >= 0)
		r = snap_s3_writer_commit(w, NULL);
	CHECK(r < 0, "a part refused with 500 and no retries: %d", r);
	const char *err = snap_s3_writer_error(w);
	CHECK(err && strstr(err, "s3://") && strstr(err, "/faulty-fatal") && strstr(err, "part ") &&
		  strstr(err, "bytes "),
	      "error: %s", err ? err : "(none)");
	CHECK(snap_s3_writer_write(w, data, 1) == r, "a later call returns the first failure");
	snap_s3_writer_free(w);
	CHECK(count_uploads(c, "faulty-fatal") == 0);
	snap_s3_set_fault(NULL, NULL);
	snap_s3_client_free(c);
	free(data);
}

/* Every object and upload in the bucket, then the bucket. */
static void cleanup_bucket(struct snap_s3_client *c)
{
	struct snap_s3_list_objects *lo = NULL;
	struct snap_s3_list_uploads *lu = NULL;
	if (snap_s3_list_uploads(c, bucket, "", &lu, NULL) >= 0) {
		for (size_t i = 0; i < lu->nuploads; i++)
			snap_s3_abort_upload(c, bucket, lu->uploads[i].key,
					     lu->uploads[i].upload_id, NULL);
		snap_s3_list_uploads_free(lu);
	}
	if (snap_s3_list_objects(c, bucket, "", &lo, NULL) >= 0) {
		for (size_t i = 0; i < lo->nobjects; i++)
			snap_s3_delete_object(c, bucket, lo->objects[i].key, NULL);
		snap_s3_list_objects_free(lo);
	}
	char *detail = NULL;
	int r = snap_s3_delete_bucket(c, bucket, &detail);
	CHECK(r >= 0, "delete bucket: %d %s", r, detail ? detail : "");
	free(detail);
	bucket_removed = r >= 0;
}

/* A test that stopped at a REQUIRE leaves no bucket behind either. */
static void cleanup_at_exit(void)
{
	if (!bucket_made || bucket_removed)
		return;
	snap_s3_set_fault(NULL, NULL);
	struct snap_s3_client *c = client(4, 0, 0);
	cleanup_bucket(c);
	snap_s3_client_free(c);
}

int main(void)
{
	endpoint = getenv("SNAP_TEST_S3_ENDPOINT");
	access_key = getenv("SNAP_TEST_S3_ACCESS_KEY");
	secret_key = getenv("SNAP_TEST_S3_SECRET_KEY");
	region = getenv("SNAP_TEST_S3_REGION");
	if (!endpoint || !*endpoint || !access_key || !secret_key || !region) {
		printf("SKIP: SNAP_TEST_S3_* not set (tests/s3/rgw.sh start DIR, then source "
		       "DIR/env)\n");
		return 77;
	}
	rng_state ^= (uint64_t)getpid() << 20;
	snprintf(bucket, sizeof(bucket), "snaptest-objects-%d-%u", (int)getpid(),
		 (unsigned)(rnd() % 100000));
	have_aws = access("/usr/bin/aws", X_OK) == 0;
	if (have_aws) {
		/* Only what this test sets: no profile, credentials or config from home. */
		tmpdir = test_mkdir(); /* removed at exit */
		char none[300];
		snprintf(none, sizeof(none), "%s/none", tmpdir);
		setenv("AWS_CONFIG_FILE", none, 1);
		setenv("AWS_SHARED_CREDENTIALS_FILE", none, 1);
		setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
		setenv("AWS_PAGER", "", 1);
		setenv("AWS_ACCESS_KEY_ID", access_key, 1);
		setenv("AWS_SECRET_ACCESS_KEY", secret_key, 1);
		setenv("AWS_DEFAULT_REGION", region, 1);
		unsetenv("AWS_PROFILE");
		unsetenv("AWS_SESSION_TOKEN");
		unsetenv("AWS_ENDPOINT_URL");
	} else {
		printf("note: /usr/bin/aws missing, judging with our reader only\n");
	}

	struct snap_s3_client *c = client(4, 0, 0);
	char *detail = NULL;
	int r = snap_s3_create_bucket(c, bucket, NULL, &detail);
	REQUIRE(r >= 0, "create bucket %s: %d %s", bucket, r, detail ? detail : "");
	bucket_made = true;
	atexit(cleanup_at_exit);

	const char *only = getenv("SNAP_TEST_ONLY");
#define RUN(name, call)                                                                            \
	do {                                                                                       \
		if (!only || strstr(only, name)) {                                                 \
			printf("-- %s\n", name);                                                   \
			fflush(stdout);                                                            \
			call;                                                                      \
		}                                                                                  \
	} while (0)
	RUN("multipart", test_multipart_sizes(c));
	RUN("meta", test_meta_tags(c));
	RUN("stream", test_stream(c));
	RUN("resume", test_abort_resume(c));
	RUN("single", test_single(c));
	RUN("memory", test_memory());
	RUN("reader", test_reader(c));
	RUN("faults", test_faults());

	cleanup_bucket(c);
	snap_s3_client_free(c);
	printf("%s\n", test_failures ? "FAIL" : "OK");
	return test_failures ? 1 : 0;
}
