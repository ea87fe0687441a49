// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-s3-config.c - the AWS configuration chain (s3/s3-config.c): the precedence of every
 * source, profile sections, missing and malformed files, session tokens, region and endpoint
 * defaults and the aws flag, s3:// URLs, and IMDSv2 through tests/s3/imds.py (a stand-in for
 * the instance metadata service that answers nothing to a request without the session token).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "s3.h"
#include "test-util.h"

static char dir[256];
static char cred_path[320], conf_path[320];

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	REQUIRE(f, "cannot write %s", path);
	fputs(text, f);
	fclose(f);
}

/* Nothing from the environment: every AWS_ variable unset, the shared files pointing at
 * missing files, instance metadata disabled. */
static void clean_env(void)
{
	static const char *const vars[] = {
	    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	    "AWS_REGION",	 "AWS_DEFAULT_REGION",	  "AWS_ENDPOINT_URL_S3",
	    "AWS_ENDPOINT_URL",	 "AWS_PROFILE",		  "AWS_EC2_METADATA_SERVICE_ENDPOINT",
	};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	snprintf(cred_path, sizeof(cred_path), "%s/credentials", dir);
	snprintf(conf_path, sizeof(conf_path), "%s/config", dir);
	unlink(cred_path);
	unlink(conf_path);
	setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
	setenv("AWS_CONFIG_FILE", conf_path, 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	setenv("HOME", dir, 1);
}

static struct snap_s3_config *resolve_ok(const struct snap_s3_options *o)
{
	struct snap_s3_config *c = NULL;
	char *detail = NULL;
	int r = snap_s3_config_resolve(o, &c, &detail);
	REQUIRE(r == 0, "resolve: %d %s", r, detail ? detail : "");
	REQUIRE(c && !detail);
	return c;
}

/* Resolves expecting err; the detail must contain want. */
static void resolve_fail(const struct snap_s3_options *o, int err, const char *want)
{
	struct snap_s3_config *c = (struct snap_s3_config *)0x1;
	char *detail = NULL;
	int r = snap_s3_config_resolve(o, &c, &detail);
	CHECK(r == err, "got %d (%s), want %d", r, detail ? detail : "", err);
	CHECK(c == (struct snap_s3_config *)0x1, "ret touched on failure");
	CHECK(detail && strstr(detail, want), "detail '%s' lacks '%s'", detail ? detail : "(null)",
	      want);
	free(detail);
}

static void test_defaults_and_options(void)
{
	clean_env();
	struct snap_s3_options o = {.access_key = "AK", .secret_key = "SK"};
	struct snap_s3_config *c = resolve_ok(&o);
	CHECK(!strcmp(c->access_key, "AK") && !strcmp(c->secret_key, "SK"));
	CHECK(c->session_token == NULL);
	CHECK(!strcmp(c->source, "options"), "%s", c->source);
	CHECK(!strcmp(c->region, "us-east-1"), "%s", c->region);
	CHECK(!strcmp(c->endpoint, "https://s3.us-east-1.amazonaws.com"), "%s", c->endpoint);
	CHECK(c->aws);
	CHECK(c->connections == SNAP_S3_DEFAULT_CONNECTIONS);
	CHECK(c->retries == SNAP_S3_DEFAULT_RETRIES);
	CHECK(c->timeout_s == SNAP_S3_DEFAULT_TIMEOUT_S);
	CHECK(c->memory_budget == SNAP_S3_DEFAULT_MEMORY_BUDGET);
	snap_s3_config_free(c);

	o = (struct snap_s3_options){.access_key = "AK",
				     .secret_key = "SK",
				     .session_token = "ST",
				     .region = "eu-west-1",
				     .connections = 3,
				     .retries = SNAP_S3_NO_RETRIES,
				     .timeout_s = 7,
				     .memory_budget = 1 << 20};
	c = resolve_ok(&o);
	CHECK(!strcmp(c->session_token, "ST"));
	CHECK(!strcmp(c->endpoint, "https://s3.eu-west-1.amazonaws.com"), "%s", c->endpoint);
	CHECK(c->aws && c->connections == 3 && c->retries == 0 && c->timeout_s == 7 &&
	      c->memory_budget == 1 << 20);
	snap_s3_config_free(c);

	o = (struct snap_s3_options){
	    .access_key = "AK", .secret_key = "SK", .region = "cn-north-1", .retries = 2};
	c = resolve_ok(&o);
	CHECK(!strcmp(c->endpoint, "https://s3.cn-north-1.amazonaws.com.cn"), "%s", c->endpoint);
	CHECK(c->aws && c->retries == 2);
	snap_s3_config_free(c);

	/* custom endpoints: path style, normalised */
	o = (struct snap_s3_options){
	    .access_key = "AK", .secret_key = "SK", .endpoint = "HTTP://127.0.0.1:7480/"};
	c = resolve_ok(&o);
	CHECK(!strcmp(c->endpoint, "http://127.0.0.1:7480"), "%s", c->endpoint);
	CHECK(!c->aws);
	CHECK(!strcmp(c->region, "us-east-1"));
	snap_s3_config_free(c);
	o.endpoint = "https://s3.eu-central-1.amazonaws.com";
	c = resolve_ok(&o);
	CHECK(c->aws, "an AWS endpoint given as an option is still AWS's");
	snap_s3_config_free(c);
	o.endpoint = "http://minio.example:9000/bucket";
	resolve_fail(&o, -EINVAL, "without a path");
	o.endpoint = "ftp://x";
	resolve_fail(&o, -EINVAL, "not an http:// or https:// URL");
	o.endpoint = NULL;
	o.region = "Eu West";
	resolve_fail(&o, -EINVAL, "not a region name");

	/* half a pair is an error, never completed from elsewhere */
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSK", 1);
	o = (struct snap_s3_options){.access_key = "AK"};
	resolve_fail(&o, -EINVAL, "options has an access key but no secret key");
	unsetenv("AWS_SECRET_ACCESS_KEY");
}

static void test_none(void)
{
	clean_env();
	resolve_fail(NULL, -ENOKEY, "no credentials found");
	resolve_fail(NULL, -ENOKEY, "instance metadata disabled");
	resolve_fail(NULL, -ENOKEY, "missing");
}

static void test_environment(void)
{
	clean_env();
	setenv("AWS_ACCESS_KEY_ID", "ENVAK", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSK", 1);
	setenv("AWS_SESSION_TOKEN", "ENVST", 1);
	struct snap_s3_config *c = resolve_ok(NULL);
	CHECK(!strcmp(c->access_key, "ENVAK") && !strcmp(c->secret_key, "ENVSK") &&
	      !strcmp(c->session_token, "ENVST"));
	CHECK(!strcmp(c->source, "environment"));
	snap_s3_config_free(c);

	/* the options win, as a whole: the environment's session token is not mixed in */
	struct snap_s3_options o = {.access_key = "AK", .secret_key = "SK"};
	c = resolve_ok(&o);
	CHECK(!strcmp(c->access_key, "AK") && !c->session_token && !strcmp(c->source, "options"));
	snap_s3_config_free(c);

	/* region and endpoint, in order */
	setenv("AWS_DEFAULT_REGION", "eu-north-1", 1);
	c = resolve_ok(NULL);
	CHECK(!strcmp(c->region, "eu-north-1"), "%s", c->region);
	snap_s3_config_free(c);
	setenv("AWS_REGION", "ap-south-1", 1);
	c = resolve_ok(NULL);
	CHECK(!strcmp(c->region, "ap-south-1"), "%s", c->region);
	CHECK(!strcmp(c->endpoint, "https://s3.ap-south-1.amazonaws.com"));
	snap_s3_config_free(c);
	o = (struct snap_s3_options){.region = "us-west-2"};
	c = resolve_ok(&o);
	CHECK(!strcmp(c->region, "us-west-2") && !strcmp(c->source, "environment"));
	snap_s3_config_free(c);

	setenv("AWS_ENDPOINT_URL", "http://generic:1", 1);
	c = resolve_ok(NULL);
	CHECK(!strcmp(c->endpoint, "http://generic:1") && !c->aws, "%s", c->endpoint);
	snap_s3_config_free(c);
	setenv("AWS_ENDPOINT_URL_S3", "http://s3only:2", 1);
	c = resolve_ok(NULL);
	CHECK(!strcmp(c->endpoint, "http://s3only:2"), "%s", c->endpoint);
	snap_s3_config_free(c);
	o = (struct snap_s3_options){.endpoint = "http://opt:3"};
	c = resolve_ok(&o);
	CHECK(!strcmp(c->endpoint, "http://opt:3"), "%s", c->endpoint);
	snap_s3_config_free(c);

	/* half a pair in the environment */
	clean_env();
	setenv("AWS_ACCESS_KEY_ID", "ENVAK", 1);
	resolve_fail(NULL, -EINVAL, "environment has an access key but no secret key");
}

static void test_profiles(void)
{
	clean_env();
	write_text(cred_path, "# the default profile\n"
			      "[default]\n"
			      "aws_access_key_id = DEFAK\n"
			      "aws_secret_access_key=DEFSK  \n"
			      "\n"
			      "[dev]\n"
			      "  ; indented comment\n"
			      "aws_access_key_id = DEVAK\n"
			      "aws_secret_access_key = DEVSK\n"
			      "aws_session_token = DEVST\n"
			      "[half]\n"
			      "aws_access_key_id = HALFAK\n");
	write_text(conf_path, "[default]\n"
			      "region = eu-west-2\n"
			      "[profile dev]\n"
			      "region = sa-east-1\n"
			      "endpoint_url = http://generic.dev:80\n"
			      "s3 =\n"
			      "  endpoint_url = http://s3.dev:81\n"
			      "  addressing_style = path\n"
			      "[profile cfgonly]\n"
			      "aws_access_key_id = CFGAK\n"
			      "aws_secret_access_key = CFGSK\n"
			      "region = ca-central-1\n"
			      "endpoint_url = http://generic.cfg:82/\n"
			      "[dev]\n"
			      "region = not-this-one\n");

	struct snap_s3_config *c = resolve_ok(NULL);
	char want[400];
	snprintf(want, sizeof(want), "profile default (%s)", cred_path);
	CHECK(!strcmp(c->source, want), "%s", c->source);
	CHECK(!strcmp(c->access_key, "DEFAK") && !strcmp(c->secret_key, "DEFSK") &&
	      !c->session_token);
	CHECK(!strcmp(c->region, "eu-west-2"), "%s", c->region);
	CHECK(c->aws && !strcmp(c->endpoint, "https://s3.eu-west-2.amazonaws.com"));
	snap_s3_config_free(c);

	/* AWS_PROFILE, and the options' profile over it */
	setenv("AWS_PROFILE", "cfgonly", 1);
	c = resolve_ok(NULL);
	snprintf(want, sizeof(want), "profile cfgonly (%s)", conf_path);
	CHECK(!strcmp(c->source, want), "%s", c->source);
	CHECK(!strcmp(c->access_key, "CFGAK") && !strcmp(c->region, "ca-central-1"));
	CHECK(!strcmp(c->endpoint, "http://generic.cfg:82") && !c->aws, "%s", c->endpoint);
	snap_s3_config_free(c);

	struct snap_s3_options o = {.profile = "dev"};
	c = resolve_ok(&o);
	CHECK(!strcmp(c->access_key, "DEVAK") && !strcmp(c->session_token, "DEVST"));
	CHECK(!strcmp(c->region, "sa-east-1"), "[dev] of the config file is not [profile dev]");
	CHECK(!strcmp(c->endpoint, "http://s3.dev:81"), "nested s3 endpoint_url: %s", c->endpoint);
	snap_s3_config_free(c);

	/* environment over profile, per field */
	setenv("AWS_ACCESS_KEY_ID", "ENVAK", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSK", 1);
	c = resolve_ok(&o);
	CHECK(!strcmp(c->access_key, "ENVAK") && !c->session_token &&
		  !strcmp(c->source, "environment"),
	      "the profile's token mixed in");
	CHECK(!strcmp(c->region, "sa-east-1"));
	snap_s3_config_free(c);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");

	/* a named profile must exist; half a pair is refused */
	o.profile = "nosuch";
	resolve_fail(&o, -ENOENT, "profile nosuch is not in");
	o.profile = "half";
	resolve_fail(&o, -EINVAL, "has an access key but no secret key");
	unsetenv("AWS_PROFILE");

	/* the credentials file wins over credentials in the config file */
	write_text(conf_path, "[default]\naws_access_key_id = CA\naws_secret_access_key = CS\n");
	c = resolve_ok(NULL);
	CHECK(!strcmp(c->access_key, "DEFAK"), "%s", c->access_key);
	snap_s3_config_free(c);
	unlink(cred_path);
	c = resolve_ok(NULL);
	CHECK(!strcmp(c->access_key, "CA"), "%s", c->access_key);
	snap_s3_config_free(c);

	/* ~ in the variables, and ~/.aws by default */
	clean_env();
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	unsetenv("AWS_CONFIG_FILE");
	char aws_dir[300], p[320];
	snprintf(aws_dir, sizeof(aws_dir), "%s/.aws", dir);
	mkdir(aws_dir, 0700);
	snprintf(p, sizeof(p), "%s/credentials", aws_dir);
	write_text(p, "[default]\naws_access_key_id = HOMEAK\naws_secret_access_key = HOMESK\n");
	c = resolve_ok(NULL);
	CHECK(!strcmp(c->access_key, "HOMEAK"));
	snprintf(want, sizeof(want), "profile default (%s)", p);
	CHECK(!strcmp(c->source, want), "%s", c->source);
	snap_s3_config_free(c);
	setenv("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials", 1);
	c = resolve_ok(NULL);
	CHECK(!strcmp(c->source, want), "%s", c->source);
	snap_s3_config_free(c);
	unlink(p);
}

static void test_malformed(void)
{
	static const struct {
		const char *text;
		int line;
		const char *why;
	} cases[] = {
	    {"[default\naws_access_key_id = A\n", 1, "malformed section header"},
	    {"[default]\naws_access_key_id = A\njust words\n", 3, "expected 'name = value'"},
	    {"aws_access_key_id = A\n[default]\n", 1, "outside any [section]"},
	    {"[default]\n  endpoint_url = x\n", 2, "does not follow"},
	    {"[other]\nx = 1\n[default] trailing\n", 3, "malformed section header"},
	    {"[other]\n= value\n", 2, "expected 'name = value'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		clean_env();
		write_text(conf_path, cases[i].text);
		char want[400];
		snprintf(want, sizeof(want), "%s:%d: %s", conf_path, cases[i].line, cases[i].why);
		resolve_fail(NULL, -EINVAL, want);
		/* even when the credentials come from elsewhere: a broken file is not ignored */
		struct snap_s3_options o = {.access_key = "AK", .secret_key = "SK"};
		resolve_fail(&o, -EINVAL, want);
	}
	/* a file that exists but cannot be read */
	clean_env();
	REQUIRE(mkdir(cred_path, 0700) == 0);
	struct snap_s3_options o = {.access_key = "AK", .secret_key = "SK"};
	resolve_fail(&o, -EIO, cred_path);
	rmdir(cred_path);
}

/* ---- IMDSv2 through tests/s3/imds.py ---- */

static pid_t imds_pid;
static char imds_log[320];

static void imds_stop(void)
{
	if (imds_pid > 0) {
		kill(imds_pid, SIGTERM);
		waitpid(imds_pid, NULL, 0);
		imds_pid = 0;
	}
}

/* Starts the stand-in in mode; sets AWS_EC2_METADATA_SERVICE_ENDPOINT. */
static void imds_start(const char *mode)
{
	const char *src = getenv("SRCDIR");
	REQUIRE(src, "SRCDIR (where tests/s3/imds.py is) is not set");
	char script[512];
	snprintf(script, sizeof(script), "%s/tests/s3/imds.py", src);
	char portfile[320];
	snprintf(portfile, sizeof(portfile), "%s/imds-port", dir);
	snprintf(imds_log, sizeof(imds_log), "%s/imds-log", dir);
	unlink(portfile);
	unlink(imds_log);
	imds_pid = fork();
	REQUIRE(imds_pid >= 0);
	if (imds_pid == 0) {
		execlp("python3", "python3", script, portfile, imds_log, mode, (char *)NULL);
		_exit(127);
	}
	FILE *f = NULL;
	for (int i = 0; i < 200 && !(f = fopen(portfile, "r")); i++)
		usleep(50000);
	REQUIRE(f, "imds.py did not start");
	int port = 0;
	REQUIRE(fscanf(f, "%d", &port) == 1 && port > 0);
	fclose(f);
	char ep[64];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/", port);
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", ep, 1);
	unsetenv("AWS_EC2_METADATA_DISABLED");
}

/* The request log so far, and whether every GET in it carried the token. */
static char *imds_requests(bool *all_tokens)
{
	size_t len;
	char *text = NULL;
	FILE *f = fopen(imds_log, "r");
	if (!f) {
		*all_tokens = true;
		return strdup("");
	}
	text = calloc(1, 65536);
	len = fread(text, 1, 65535, f);
	fclose(f);
	text[len] = 0;
	*all_tokens = true;
	for (char *l = text; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l))
		if (!strncmp(l, "GET ", 4) && strstr(l, "token=no") < strchr(l, '\n') &&
		    strstr(l, "token=no"))
			*all_tokens = false;
	return text;
}

static void test_imds(void)
{
	clean_env();
	imds_start("ok");
	struct snap_s3_config *c = resolve_ok(NULL);
	CHECK(!strcmp(c->source, "instance metadata"), "%s", c->source);
	CHECK(!strcmp(c->access_key, "IMDSKEY") && !strcmp(c->secret_key, "IMDSSECRET") &&
	      c->session_token && !strcmp(c->session_token, "IMDSTOKEN"));
	CHECK(!strcmp(c->region, "eu-west-3"), "region from the metadata: %s", c->region);
	CHECK(!strcmp(c->endpoint, "https://s3.eu-west-3.amazonaws.com"));
	snap_s3_config_free(c);
	bool tokens;
	char *log = imds_requests(&tokens);
	CHECK(!strncmp(log, "PUT /latest/api/token token=no\n", 31), "first request: %s", log);
	CHECK(strstr(log, "GET /latest/meta-data/iam/security-credentials/ token=yes\n"), "%s",
	      log);
	CHECK(strstr(log, "GET /latest/meta-data/iam/security-credentials/snap-role token=yes\n"),
	      "%s", log);
	CHECK(strstr(log, "GET /latest/meta-data/placement/region token=yes\n"), "%s", log);
	CHECK(tokens, "a GET without the token: %s", log);
	/* one session token for the whole resolve */
	CHECK(strstr(log, "PUT") == strrchr(log, 'P') || !strstr(strstr(log, "PUT") + 1, "PUT"),
	      "%s", log);
	free(log);

	/* a custom endpoint: no region is asked */
	unlink(imds_log);
	struct snap_s3_options o = {.endpoint = "http://127.0.0.1:1"};
	c = resolve_ok(&o);
	CHECK(!strcmp(c->region, "us-east-1") && !strcmp(c->access_key, "IMDSKEY"));
	snap_s3_config_free(c);
	log = imds_requests(&tokens);
	CHECK(!strstr(log, "placement/region"), "%s", log);
	free(log);

	/* other sources first: the metadata is not asked at all */
	unlink(imds_log);
	setenv("AWS_ACCESS_KEY_ID", "ENVAK", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSK", 1);
	setenv("AWS_REGION", "eu-west-1", 1);
	c = resolve_ok(NULL);
	CHECK(!strcmp(c->source, "environment"));
	snap_s3_config_free(c);
	log = imds_requests(&tokens);
	CHECK(!*log, "asked the metadata service: %s", log);
	free(log);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_REGION");

	/* disabled */
	setenv("AWS_EC2_METADATA_DISABLED", "TRUE", 1);
	resolve_fail(NULL, -ENOKEY, "instance metadata disabled");
	log = imds_requests(&tokens);
	CHECK(!*log, "asked the metadata service while disabled: %s", log);
	free(log);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	imds_stop();

	imds_start("norole");
	resolve_fail(NULL, -ENOKEY, "security-credentials/: HTTP 404");
	imds_stop();
	imds_start("badjson");
	resolve_fail(NULL, -ENOKEY, "not the JSON of credentials");
	imds_stop();

	/* nobody listening: quick, and said */
	uint64_t t0 = (uint64_t)time(NULL);
	resolve_fail(NULL, -ENOKEY, "not from instance metadata: PUT http://127.0.0.1:");
	CHECK((uint64_t)time(NULL) - t0 < 5);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static void url_ok(const char *url, const char *bucket, const char *key)
{
	char *b = NULL, *k = NULL, *d = NULL;
	CHECK(snap_s3_is_url(url));
	int r = snap_s3_url_parse(url, &b, &k, &d);
	CHECK(r == 0, "%s: %d %s", url, r, d ? d : "");
	if (r == 0)
		CHECK(!strcmp(b, bucket) && !strcmp(k, key), "%s: '%s' '%s'", url, b, k);
	free(b);
	free(k);
	free(d);
}

static void url_bad(const char *url, const char *why)
{
	char *b = (char *)0x1, *k = (char *)0x1, *d = NULL;
	int r = snap_s3_url_parse(url, &b, &k, &d);
	CHECK(r == -EINVAL, "%s: %d", url, r);
	CHECK(b == (char *)0x1 && k == (char *)0x1);
	CHECK(d && strstr(d, why), "%s: '%s' lacks '%s'", url, d ? d : "(null)", why);
	free(d);
}

static void test_urls(void)
{
	url_ok("s3://bucket/key", "bucket", "key");
	url_ok("s3://my.bucket-1/a/b/c.manifest.xml", "my.bucket-1", "a/b/c.manifest.xml");
	url_ok("s3://abc/", "abc", "");
	url_ok("s3://abc", "abc", "");
	url_ok("s3://abc/prefix/", "abc", "prefix/");
	url_ok("s3://abc//double", "abc", "/double");
	url_ok("s3://abc/sp ace+é", "abc", "sp ace+é");
	char longname[70];
	memset(longname, 'a', 63);
	longname[63] = 0;
	char u[2048];
	snprintf(u, sizeof(u), "s3://%s/k", longname);
	url_ok(u, longname, "k");

	CHECK(!snap_s3_is_url("/tmp/x") && !snap_s3_is_url("S3://x/y") && !snap_s3_is_url(NULL));
	CHECK(snap_s3_key_names_object("k") && snap_s3_key_names_object("a/b") &&
	      snap_s3_key_names_object("/k") && snap_s3_key_names_object("a//b"));
	CHECK(!snap_s3_key_names_object("") && !snap_s3_key_names_object("/") &&
	      !snap_s3_key_names_object("a/") && !snap_s3_key_names_object("a//"));
	url_bad("/tmp/file", "is not an s3://BUCKET/KEY URL");
	url_bad("s3://", "3 to 63");
	url_bad("s3://ab/k", "3 to 63");
	longname[63] = 'a';
	longname[64] = 0;
	snprintf(u, sizeof(u), "s3://%s/k", longname);
	url_bad(u, "3 to 63");
	url_bad("s3://Bucket/k", "lowercase");
	url_bad("s3://buck_et/k", "lowercase");
	url_bad("s3://-bucket/k", "begins and ends");
	url_bad("s3://bucket./k", "begins and ends");
	url_bad("s3://a..b/k", "no '..'");
	url_bad("s3://a.-b/k", "no '..'");
	url_bad("s3://192.168.1.1/k", "IP address");
	url_bad("s3://bucket/a\nb", "control character");
	memset(u, 'k', sizeof(u));
	memcpy(u, "s3://bkt/", 9);
	u[9 + 1025] = 0;
	url_bad(u, "longer than 1024");
}

int main(void)
{
	snprintf(dir, sizeof(dir), "%s", test_mkdir());
	test_defaults_and_options();
	test_none();
	test_environment();
	test_profiles();
	test_malformed();
	test_imds();
	test_urls();
	imds_stop();
	if (test_failures)
		fprintf(stderr, "%d checks failed\n", test_failures);
	return test_failures ? 1 : 0;
}
