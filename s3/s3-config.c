// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * s3-config.c - where the service is and who we are: the AWS configuration chain of s3.h
 * (snap_s3_config_resolve), and s3:// URLs.
 *
 * Invariants:
 *  1. Each field is resolved on its own, first source wins: the options, the environment, the
 *     profile (credentials file, then config file), instance metadata. Credentials are the
 *     exception: access key, secret key and session token come as a whole from the first source
 *     that has an access key or a secret key; a source that has only one of the two is an error
 *     (-EINVAL naming the source), never completed from another source.
 *  2. A profile named by the options or AWS_PROFILE must exist in one of the two files; the
 *     implicit "default" may be absent. Files that do not exist are skipped; a file that exists
 *     but cannot be read, or does not parse, fails the whole resolve with FILE:LINE in the
 *     detail (as the AWS CLI does), whatever section the fault is in.
 *  3. Instance metadata is asked only when needed: for credentials when no other source has
 *     them, for the region when no other source has one and the endpoint is AWS's. Every
 *     request carries the IMDSv2 session token obtained first (PUT /latest/api/token); no
 *     request is sent without it. A failure there is not fatal by itself: it becomes part of
 *     the -ENOKEY detail (credentials) or leaves the region at its default.
 *  4. The result is complete (s3.h): every string set but session_token; endpoint is
 *     scheme://host[:port] without a path or a trailing '/'.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "s3.h"

/* ---- small strings ---- */

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* A malloc'd detail (NULL when out of memory, which the caller then reports as -ENOMEM). */
__attribute__((format(printf, 2, 3))) static void set_detail(char **ret_detail, const char *fmt,
							     ...)
{
	if (!ret_detail)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *s;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	free(*ret_detail);
	*ret_detail = s;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static bool is_true(const char *v)
{
	return v && !strcasecmp(v, "true");
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = 0;
	return s;
}

/* ---- the shared files (~/.aws/credentials, ~/.aws/config) ---- */

/* One "name = value" of the section asked for; nested ones ("s3 =" followed by indented
 * "endpoint_url = ...") are named "s3.endpoint_url". */
struct ini_kv {
	char *name, *value;
};

struct ini {
	char *path; /* as resolved, for messages */
	bool exists;
	bool found; /* the section asked for is there */
	struct ini_kv *kv;
	size_t nkv;
};

static void ini_clear(struct ini *f)
{
	for (size_t i = 0; i < f->nkv; i++) {
		free(f->kv[i].name);
		free(f->kv[i].value);
	}
	free(f->kv);
	free(f->path);
	*f = (struct ini){0};
}

static const char *ini_get(const struct ini *f, const char *name)
{
	for (size_t i = 0; i < f->nkv; i++)
		if (!strcmp(f->kv[i].name, name))
			return f->kv[i].value;
	return NULL;
}

static int ini_add(struct ini *f, const char *prefix, const char *name, const char *value)
{
	struct ini_kv *n = realloc(f->kv, (f->nkv + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	f->kv = n;
	char *full;
	if (asprintf(&full, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", name) < 0)
		return -ENOMEM;
	char *v = strdup(value);
	if (!v) {
		free(full);
		return -ENOMEM;
	}
	/* a name given twice: the last wins, as in the AWS CLI */
	for (size_t i = 0; i < f->nkv; i++) {
		if (!strcmp(f->kv[i].name, full)) {
			free(f->kv[i].value);
			f->kv[i].value = v;
			free(full);
			return 0;
		}
	}
	f->kv[f->nkv++] = (struct ini_kv){full, v};
	return 0;
}

/* The file named by variable, or ~/.aws/NAME. */
static char *shared_file_path(const char *variable, const char *name)
{
	const char *v = env(variable);
	const char *home = env("HOME");
	if (!home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : "/";
	}
	char *p;
	if (v && (v[0] != '~' || (v[1] && v[1] != '/')))
		return strdup(v);
	if (v && asprintf(&p, "%s%s", home, v + 1) < 0)
		return NULL;
	if (!v && asprintf(&p, "%s/.aws/%s", home, name) < 0)
		return NULL;
	return p;
}

/* Whether header (the text between the brackets, trimmed) is the section of profile in a
 * credentials file (config false: "[NAME]") or a config file ("[profile NAME]", and "[default]"
 * for the default profile). */
static bool section_matches(const char *header, const char *profile, bool config)
{
	if (!config)
		return !strcmp(header, profile);
	if (!strcmp(profile, "default") && !strcmp(header, "default"))
		return true;
	if (strncmp(header, "profile", 7) || (header[7] != ' ' && header[7] != '\t'))
		return false;
	const char *p = header + 7;
	while (*p == ' ' || *p == '\t')
		p++;
	return !strcmp(p, profile);
}

/* Reads path (a missing file is not an error: exists stays false) and keeps the values of the
 * profile's section. Every line of the file must parse (invariant 2). */
static int ini_load(struct ini *f, char *path, const char *profile, bool config, char **ret_detail)
{
	*f = (struct ini){.path = path};
	if (!path)
		return -ENOMEM;
	FILE *in = fopen(path, "re");
	if (!in) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		int r = -errno;
		set_detail(ret_detail, "cannot read %s: %s", path, strerror(-r));
		return r;
	}
	f->exists = true;
	char *line = NULL, *parent = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	bool in_section = false, any_section = false, parent_open = false;
	int r = 0;
	ssize_t len;
	while ((len = getline(&line, &cap, in)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = 0;
		if (strlen(line) != (size_t)len) {
			set_detail(ret_detail, "%s:%u: a NUL byte in the line", path, lineno);
			r = -EINVAL;
			break;
		}
		bool indented = line[0] == ' ' || line[0] == '\t';
		char *s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');
			if (indented || !end || *trim(end + 1)) {
				set_detail(ret_detail, "%s:%u: malformed section header '%s'", path,
					   lineno, s);
				r = -EINVAL;
				break;
			}
			*end = 0;
			char *name = trim(s + 1);
			any_section = true;
			in_section = section_matches(name, profile, config);
			f->found |= in_section;
			parent_open = false;
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq || eq == s) {
			set_detail(ret_detail,
				   "%s:%u: expected 'name = value' or '[section]', not '%s'", path,
				   lineno, s);
			r = -EINVAL;
			break;
		}
		if (!any_section) {
			set_detail(ret_detail, "%s:%u: outside any [section]: '%s'", path, lineno,
				   s);
			r = -EINVAL;
			break;
		}
		*eq = 0;
		char *name = trim(s), *value = trim(eq + 1);
		if (indented && !parent_open) {
			set_detail(
			    ret_detail,
			    "%s:%u: does not follow a 'name =' without a value: indented '%s'",
			    path, lineno, name);
			r = -EINVAL;
			break;
		}
		if (!indented) {
			/* "s3 =" opens a nested block of indented lines */
			parent_open = !*value;
			free(parent);
			parent = parent_open ? strdup(name) : NULL;
			if (parent_open && !parent) {
				r = -ENOMEM;
				break;
			}
		}
		if (in_section && (r = ini_add(f, indented ? parent : NULL, name, value)) < 0)
			break;
	}
	if (r == 0 && ferror(in)) {
		r = -EIO;
		set_detail(ret_detail, "cannot read %s: %s", path, strerror(EIO));
	}
	free(line);
	free(parent);
	fclose(in);
	return r;
}

/* ---- instance metadata (IMDSv2) ---- */

#define IMDS_MAX_BODY (64u * 1024)
#define IMDS_TOKEN_TTL "21600"

struct body {
	char *buf;
	size_t len;
	bool overflow;
};

static size_t body_write(char *p, size_t size, size_t n, void *userdata)
{
	struct body *b = userdata;
	size_t add = size * n;
	if (b->len + add > IMDS_MAX_BODY) {
		b->overflow = true;
		return 0;
	}
	char *m = realloc(b->buf, b->len + add + 1);
	if (!m)
		return 0;
	memcpy(m + b->len, p, add);
	b->buf = m;
	b->len += add;
	b->buf[b->len] = 0;
	return add;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* One IMDS request: PUT the token request (token NULL, put true) or GET path with the token.
 * The body (NUL-terminated) in *ret. Failures are described in *ret_detail. */
static int imds_request(const char *endpoint, const char *path, bool put, const char *token,
			char **ret, char **ret_detail)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK) {
		set_detail(ret_detail, "libcurl does not start: %s",
			   curl_easy_strerror(curl_init_result));
		return -EIO;
	}
	CURL *h = curl_easy_init();
	if (!h)
		return -ENOMEM;
	char *url = NULL, *hdr = NULL;
	struct curl_slist *headers = NULL;
	struct body b = {0};
	int r = -ENOMEM;
	if (asprintf(&url, "%s%s", endpoint, path) < 0) {
		url = NULL;
		goto out;
	}
	if (asprintf(&hdr,
		     put ? "X-aws-ec2-metadata-token-ttl-seconds: %s"
			 : "X-aws-ec2-metadata-token: %s",
		     put ? IMDS_TOKEN_TTL : token) < 0) {
		hdr = NULL;
		goto out;
	}
	struct curl_slist *l = curl_slist_append(NULL, hdr);
	if (!l)
		goto out;
	headers = l;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROXY, ""); /* the metadata service is never behind a proxy */
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (put) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
	}
	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK) {
		set_detail(ret_detail, "%s %s: %s", put ? "PUT" : "GET", url,
			   b.overflow ? "answer larger than 64 KiB" : curl_easy_strerror(cc));
		r = -EIO;
		goto out;
	}
	if (status != 200) {
		set_detail(ret_detail, "%s %s: HTTP %ld", put ? "PUT" : "GET", url, status);
		r = status == 404 ? -ENOENT : -EIO;
		goto out;
	}
	*ret = b.buf ? b.buf : strdup("");
	b.buf = NULL;
	r = *ret ? 0 : -ENOMEM;
out:
	free(b.buf);
	curl_slist_free_all(headers);
	free(hdr);
	free(url);
	curl_easy_cleanup(h);
	return r;
}

/* ---- the JSON of the role's credentials: one flat object ---- */

struct json {
	const char *p, *end;
};

static void json_ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int hexval(int c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

static int json_u16(struct json *j, unsigned *ret)
{
	if (j->end - j->p < 4)
		return -EPROTO;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval((unsigned char)j->p[i]);
		if (h < 0)
			return -EPROTO;
		v = v << 4 | (unsigned)h;
	}
	j->p += 4;
	*ret = v;
	return 0;
}

/* A string (at j->p, on its opening quote) decoded to UTF-8 in *ret (ret NULL: skipped). */
static int json_string(struct json *j, char **ret)
{
	if (j->p >= j->end || *j->p != '"')
		return -EPROTO;
	j->p++;
	size_t cap = (size_t)(j->end - j->p) + 1, n = 0;
	char *out = ret ? malloc(cap) : NULL;
	if (ret && !out)
		return -ENOMEM;
	int r = -EPROTO;
	while (j->p < j->end) {
		unsigned char c = (unsigned char)*j->p++;
		if (c == '"') {
			if (ret) {
				out[n] = 0;
				*ret = out;
			}
			return 0;
		}
		if (c < 0x20)
			goto fail;
		if (c != '\\') {
			if (out)
				out[n] = (char)c;
			n++;
			continue;
		}
		if (j->p >= j->end)
			goto fail;
		char e = *j->p++;
		const char *simple = strchr("\"\\/bfnrt", e);
		if (e && simple) {
			static const char map[] = "\"\\/\b\f\n\r\t";
			if (out)
				out[n] = map[simple - "\"\\/bfnrt"];
			n++;
			continue;
		}
		if (e != 'u')
			goto fail;
		unsigned u, lo;
		if (json_u16(j, &u) < 0)
			goto fail;
		if (u >= 0xdc00 && u <= 0xdfff)
			goto fail; /* a lone low surrogate */
		if (u >= 0xd800 && u <= 0xdbff) {
			if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
				goto fail;
			j->p += 2;
			if (json_u16(j, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
				goto fail;
			u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
		}
		if (u == 0)
			goto fail; /* a NUL would cut the value short */
		/* UTF-8 is never longer than the 6 or 12 escape bytes it replaces */
		char tmp[4];
		size_t k = u < 0x80 ? 1 : u < 0x800 ? 2 : u < 0x10000 ? 3 : 4;
		if (k == 1) {
			tmp[0] = (char)u;
		} else if (k == 2) {
			tmp[0] = (char)(0xc0 | u >> 6);
			tmp[1] = (char)(0x80 | (u & 0x3f));
		} else if (k == 3) {
			tmp[0] = (char)(0xe0 | u >> 12);
			tmp[1] = (char)(0x80 | ((u >> 6) & 0x3f));
			tmp[2] = (char)(0x80 | (u & 0x3f));
		} else {
			tmp[0] = (char)(0xf0 | u >> 18);
			tmp[1] = (char)(0x80 | ((u >> 12) & 0x3f));
			tmp[2] = (char)(0x80 | ((u >> 6) & 0x3f));
			tmp[3] = (char)(0x80 | (u & 0x3f));
		}
		if (out)
			memcpy(out + n, tmp, k);
		n += k;
	}
fail:
	free(out);
	return r;
}

/* Skips any value, nested at most depth levels. */
static int json_skip(struct json *j, int depth)
{
	json_ws(j);
	if (j->p >= j->end)
		return -EPROTO;
	char c = *j->p;
	if (c == '"')
		return json_string(j, NULL);
	if (c == '{' || c == '[') {
		if (depth <= 0)
			return -EPROTO;
		char close = c == '{' ? '}' : ']';
		j->p++;
		json_ws(j);
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return 0;
		}
		for (;;) {
			if (c == '{') {
				json_ws(j);
				if (json_string(j, NULL) < 0)
					return -EPROTO;
				json_ws(j);
				if (j->p >= j->end || *j->p++ != ':')
					return -EPROTO;
			}
			if (json_skip(j, depth - 1) < 0)
				return -EPROTO;
			json_ws(j);
			if (j->p >= j->end)
				return -EPROTO;
			if (*j->p == ',') {
				j->p++;
				continue;
			}
			if (*j->p++ != close)
				return -EPROTO;
			return 0;
		}
	}
	/* numbers, true, false, null: their characters */
	const char *start = j->p;
	while (j->p < j->end && (isalnum((unsigned char)*j->p) || strchr("+-.", *j->p)))
		j->p++;
	size_t n = (size_t)(j->p - start);
	if (n == 0)
		return -EPROTO;
	if (isalpha((unsigned char)*start) &&
	    !((n == 4 && !strncmp(start, "true", 4)) || (n == 5 && !strncmp(start, "false", 5)) ||
	      (n == 4 && !strncmp(start, "null", 4))))
		return -EPROTO;
	return 0;
}

struct imds_creds {
	char *access_key, *secret_key, *token, *code;
};

static void imds_creds_clear(struct imds_creds *c)
{
	free(c->access_key);
	free(c->secret_key);
	free(c->token);
	free(c->code);
	*c = (struct imds_creds){0};
}

/* The object's AccessKeyId, SecretAccessKey, Token and Code; other members are skipped. A
 * member given twice, or a string where a member holds something else, is refused. */
static int json_creds(const char *text, size_t len, struct imds_creds *ret)
{
	struct json j = {text, text + len};
	struct imds_creds c = {0};
	json_ws(&j);
	if (j.p >= j.end || *j.p++ != '{')
		return -EPROTO;
	json_ws(&j);
	bool first = true;
	while (j.p < j.end && *j.p != '}') {
		if (!first) {
			if (*j.p++ != ',')
				goto fail;
			json_ws(&j);
		}
		first = false;
		char *name;
		if (json_string(&j, &name) < 0)
			goto fail;
		json_ws(&j);
		if (j.p >= j.end || *j.p++ != ':') {
			free(name);
			goto fail;
		}
		json_ws(&j);
		char **slot = !strcmp(name, "AccessKeyId")	 ? &c.access_key
			      : !strcmp(name, "SecretAccessKey") ? &c.secret_key
			      : !strcmp(name, "Token")		 ? &c.token
			      : !strcmp(name, "Code")		 ? &c.code
								 : NULL;
		free(name);
		if (slot && (*slot || json_string(&j, slot) < 0))
			goto fail;
		if (!slot && json_skip(&j, 8) < 0)
			goto fail;
		json_ws(&j);
	}
	if (j.p >= j.end || *j.p++ != '}')
		goto fail;
	json_ws(&j);
	if (j.p != j.end)
		goto fail;
	*ret = c;
	return 0;
fail:
	imds_creds_clear(&c);
	return -EPROTO;
}

struct imds {
	char *endpoint;
	char *token;
	char *error; /* why it gave nothing */
	bool asked;
};

static void imds_clear(struct imds *m)
{
	free(m->endpoint);
	free(m->token);
	free(m->error);
}

static int imds_session(struct imds *m)
{
	if (m->token)
		return 0;
	if (m->error)
		return -EIO;
	m->asked = true;
	const char *ep = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	m->endpoint = strdup(ep ? ep : "http://169.254.169.254");
	if (!m->endpoint)
		return -ENOMEM;
	size_t n = strlen(m->endpoint);
	while (n > 0 && m->endpoint[n - 1] == '/')
		m->endpoint[--n] = 0;
	int r = imds_request(m->endpoint, "/latest/api/token", true, NULL, &m->token, &m->error);
	if (r == 0 && (!*m->token || strpbrk(m->token, "\r\n"))) {
		free(m->token);
		m->token = NULL;
		set_detail(&m->error, "PUT %s/latest/api/token: not a token", m->endpoint);
		r = -EPROTO;
	}
	return r;
}

/* The role's credentials. */
static int imds_credentials(struct imds *m, struct imds_creds *ret)
{
	int r = imds_session(m);
	if (r < 0)
		return r;
	char *roles = NULL, *doc = NULL, *path = NULL;
	const char *base = "/latest/meta-data/iam/security-credentials/";
	r = imds_request(m->endpoint, base, false, m->token, &roles, &m->error);
	if (r < 0)
		return r;
	roles[strcspn(roles, "\r\n")] = 0;
	char *role = trim(roles);
	if (!*role || strchr(role, '/')) {
		set_detail(&m->error, "GET %s%s: %s", m->endpoint, base,
			   *role ? "not a role name" : "no role attached to the instance");
		free(roles);
		return -ENOENT;
	}
	if (asprintf(&path, "%s%s", base, role) < 0) {
		free(roles);
		return -ENOMEM;
	}
	r = imds_request(m->endpoint, path, false, m->token, &doc, &m->error);
	if (r == 0) {
		struct imds_creds c;
		r = json_creds(doc, strlen(doc), &c);
		if (r < 0) {
			set_detail(&m->error, "GET %s%s: the answer is not the JSON of credentials",
				   m->endpoint, path);
		} else if ((c.code && strcmp(c.code, "Success")) || !c.access_key ||
			   !*c.access_key || !c.secret_key || !*c.secret_key) {
			set_detail(&m->error, "GET %s%s: %s", m->endpoint, path,
				   c.code && strcmp(c.code, "Success")
				       ? "Code is not Success"
				       : "no AccessKeyId or SecretAccessKey");
			imds_creds_clear(&c);
			r = -EPROTO;
		} else {
			*ret = c;
		}
	}
	free(doc);
	free(path);
	free(roles);
	return r;
}

static int imds_region(struct imds *m, char **ret)
{
	int r = imds_session(m);
	if (r < 0)
		return r;
	char *region = NULL;
	r = imds_request(m->endpoint, "/latest/meta-data/placement/region", false, m->token,
			 &region, &m->error);
	if (r < 0)
		return r;
	char *t = trim(region);
	if (!*t || strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(t)) {
		free(region);
		return -EPROTO;
	}
	memmove(region, t, strlen(t) + 1);
	*ret = region;
	return 0;
}

/* ---- endpoints ---- */

/* "scheme://host[:port]" from s (a trailing '/' allowed, no other path), in *ret. */
static int endpoint_normalize(const char *s, const char *from, char **ret, char **ret_detail)
{
	const char *host = !strncasecmp(s, "https://", 8)  ? s + 8
			   : !strncasecmp(s, "http://", 7) ? s + 7
							   : NULL;
	if (!host) {
		set_detail(ret_detail, "endpoint '%s' (%s) is not an http:// or https:// URL", s,
			   from);
		return -EINVAL;
	}
	size_t n = strcspn(host, "/?#");
	if (n == 0 || strspn(host + n, "/") != strlen(host + n) || strcspn(host, " \t\r\n@") < n) {
		set_detail(ret_detail,
			   "endpoint '%s' (%s) must be scheme://host[:port] without a path", s,
			   from);
		return -EINVAL;
	}
	char *e = strndup(s, (size_t)(host - s) + n);
	if (!e)
		return -ENOMEM;
	for (char *p = e; p < e + (host - s); p++)
		*p = (char)tolower((unsigned char)*p);
	*ret = e;
	return 0;
}

/* Whether the endpoint's host is AWS's (virtual-hosted addressing). */
static bool endpoint_is_aws(const char *endpoint)
{
	const char *host = strstr(endpoint, "://") + 3;
	size_t n = strcspn(host, ":");
	static const char *const suffixes[] = {".amazonaws.com", ".amazonaws.com.cn"};
	for (size_t i = 0; i < 2; i++) {
		size_t k = strlen(suffixes[i]);
		if (n > k && !strncasecmp(host + n - k, suffixes[i], k))
			return true;
	}
	return false;
}

/* ---- the chain ---- */

struct snap_s3_config *snap_s3_config_free(struct snap_s3_config *c)
{
	if (!c)
		return NULL;
	free(c->endpoint);
	free(c->region);
	free(c->access_key);
	if (c->secret_key)
		explicit_bzero(c->secret_key, strlen(c->secret_key));
	free(c->secret_key);
	free(c->session_token);
	free(c->source);
	free(c);
	return NULL;
}

/* Takes the credentials of one source (invariant 1): 1 when taken, 0 when the source has none,
 * -EINVAL when it has half. */
static int take_credentials(struct snap_s3_config *c, const char *ak, const char *sk,
			    const char *token, const char *source, char **ret_detail)
{
	if (!ak && !sk)
		return 0;
	if (!ak || !sk) {
		set_detail(ret_detail, "%s has %s but no %s", source,
			   ak ? "an access key" : "a secret key", ak ? "secret key" : "access key");
		return -EINVAL;
	}
	c->access_key = strdup(ak);
	c->secret_key = strdup(sk);
	c->session_token = xstrdup(token);
	c->source = strdup(source);
	if (!c->access_key || !c->secret_key || (token && !c->session_token) || !c->source)
		return -ENOMEM;
	return 1;
}

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

int snap_s3_config_resolve(const struct snap_s3_options *opts, struct snap_s3_config **ret,
			   char **ret_detail)
{
	static const struct snap_s3_options none = {0};
	if (!opts)
		opts = &none;
	struct snap_s3_config *c = calloc(1, sizeof(*c));
	struct ini cred = {0}, conf = {0};
	struct imds m = {0};
	char *detail = NULL, *source = NULL, *imds_region_value = NULL;
	int r = -ENOMEM;
	if (!c)
		goto out;

	const bool named = nonempty(opts->profile) || env("AWS_PROFILE");
	const char *profile = nonempty(opts->profile) ? opts->profile
			      : env("AWS_PROFILE")    ? env("AWS_PROFILE")
						      : "default";
	r = ini_load(&cred, shared_file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials"), profile,
		     false, &detail);
	if (r < 0)
		goto out;
	r = ini_load(&conf, shared_file_path("AWS_CONFIG_FILE", "config"), profile, true, &detail);
	if (r < 0)
		goto out;
	if (named && !cred.found && !conf.found) {
		set_detail(&detail, "profile %s is not in %s nor in %s", profile, cred.path,
			   conf.path);
		r = -ENOENT;
		goto out;
	}

	/* credentials, as a whole from one source */
	r = take_credentials(c, nonempty(opts->access_key), nonempty(opts->secret_key),
			     nonempty(opts->session_token), "options", &detail);
	if (r == 0)
		r = take_credentials(c, env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"),
				     env("AWS_SESSION_TOKEN"), "environment", &detail);
	for (int i = 0; i < 2 && r == 0; i++) {
		const struct ini *f = i == 0 ? &cred : &conf;
		if (!f->found)
			continue;
		free(source);
		if (asprintf(&source, "profile %s (%s)", profile, f->path) < 0) {
			source = NULL;
			r = -ENOMEM;
			goto out;
		}
		r = take_credentials(c, nonempty(ini_get(f, "aws_access_key_id")),
				     nonempty(ini_get(f, "aws_secret_access_key")),
				     nonempty(ini_get(f, "aws_session_token")), source, &detail);
	}
	if (r == 0 && !is_true(env("AWS_EC2_METADATA_DISABLED"))) {
		struct imds_creds ic = {0};
		r = imds_credentials(&m, &ic);
		if (r == 0)
			r = take_credentials(c, ic.access_key, ic.secret_key, ic.token,
					     "instance metadata", &detail);
		else if (r != -ENOMEM)
			r = 0; /* described in m.error, part of the -ENOKEY detail */
		imds_creds_clear(&ic);
	}
	if (r < 0)
		goto out;
	if (r == 0) {
		set_detail(&detail,
			   "no credentials found: not in the options, not in the environment "
			   "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), not in profile %s (%s%s, "
			   "%s%s), %s%s",
			   profile, cred.path, cred.exists ? "" : " missing", conf.path,
			   conf.exists ? "" : " missing",
			   m.asked ? "not from instance metadata: "
				   : "instance metadata disabled (AWS_EC2_METADATA_DISABLED)",
			   m.asked ? (m.error ? m.error : "no answer") : "");
		r = -ENOKEY;
		goto out;
	}

	/* the endpoint */
	const char *ep = nonempty(opts->endpoint), *ep_from = "options";
	if (!ep && (ep = env("AWS_ENDPOINT_URL_S3")))
		ep_from = "AWS_ENDPOINT_URL_S3";
	if (!ep && (ep = env("AWS_ENDPOINT_URL")))
		ep_from = "AWS_ENDPOINT_URL";
	if (!ep && (ep = nonempty(ini_get(&conf, "s3.endpoint_url"))))
		ep_from = conf.path;
	if (!ep && (ep = nonempty(ini_get(&conf, "endpoint_url"))))
		ep_from = conf.path;
	if (ep && (r = endpoint_normalize(ep, ep_from, &c->endpoint, &detail)) < 0)
		goto out;

	/* the region */
	const char *region = nonempty(opts->region);
	if (!region)
		region = env("AWS_REGION");
	if (!region)
		region = env("AWS_DEFAULT_REGION");
	if (!region)
		region = nonempty(ini_get(&conf, "region"));
	if (!region && !ep && !is_true(env("AWS_EC2_METADATA_DISABLED"))) {
		r = imds_region(&m, &imds_region_value);
		if (r == -ENOMEM)
			goto out;
		region = imds_region_value;
	}
	c->region = strdup(region ? region : "us-east-1");
	if (!c->region) {
		r = -ENOMEM;
		goto out;
	}
	if (strspn(c->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(c->region)) {
		set_detail(&detail, "region '%s' is not a region name", c->region);
		r = -EINVAL;
		goto out;
	}
	if (!c->endpoint && asprintf(&c->endpoint, "https://s3.%s.amazonaws.com%s", c->region,
				     !strncmp(c->region, "cn-", 3) ? ".cn" : "") < 0) {
		c->endpoint = NULL;
		r = -ENOMEM;
		goto out;
	}
	c->aws = endpoint_is_aws(c->endpoint);

	c->connections = opts->connections ? opts->connections : SNAP_S3_DEFAULT_CONNECTIONS;
	c->retries = opts->retries == SNAP_S3_NO_RETRIES ? 0
		     : opts->retries			 ? opts->retries
							 : SNAP_S3_DEFAULT_RETRIES;
	c->timeout_s = opts->timeout_s ? opts->timeout_s : SNAP_S3_DEFAULT_TIMEOUT_S;
	c->memory_budget =
	    opts->memory_budget ? opts->memory_budget : SNAP_S3_DEFAULT_MEMORY_BUDGET;
	*ret = c;
	c = NULL;
	r = 0;
out:
	if (r < 0 && ret_detail) {
		free(*ret_detail);
		*ret_detail = detail;
		detail = NULL;
	}
	free(detail);
	free(source);
	free(imds_region_value);
	imds_clear(&m);
	ini_clear(&cred);
	ini_clear(&conf);
	snap_s3_config_free(c);
	return r;
}

/* ---- s3:// URLs ---- */

#define S3_MAX_KEY 1024

bool snap_s3_is_url(const char *s)
{
	return s && !strncmp(s, "s3://", 5);
}

bool snap_s3_key_names_object(const char *key)
{
	return *key && key[strlen(key) - 1] != '/';
}

/* Bucket names as S3 allows them: 3-63 of [a-z0-9.-], a letter or digit at each end, no "..",
 * no ".-" or "-." (label rules), not an IPv4 address. */
static const char *bucket_invalid(const char *b, size_t n)
{
	if (n < 3 || n > 63)
		return "a bucket name is 3 to 63 characters";
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789.-", b[i]) || !b[i])
			return "a bucket name has only lowercase letters, digits, '.' and '-'";
	if (!isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
		return "a bucket name begins and ends with a letter or a digit";
	for (size_t i = 0; i + 1 < n; i++)
		if (((b[i] == '.' || b[i] == '-') && b[i + 1] == '.') ||
		    (b[i] == '.' && b[i + 1] == '-'))
			return "a bucket name has no '..', '.-' or '-.'";
	unsigned a, b2, c, d;
	char tail;
	char tmp[64];
	memcpy(tmp, b, n);
	tmp[n] = 0;
	if (sscanf(tmp, "%u.%u.%u.%u%c", &a, &b2, &c, &d, &tail) == 4)
		return "a bucket name is not an IP address";
	return NULL;
}

int snap_s3_url_parse(const char *url, char **ret_bucket, char **ret_key, char **ret_detail)
{
	if (!snap_s3_is_url(url)) {
		set_detail(ret_detail, "'%s' is not an s3://BUCKET/KEY URL", url ? url : "");
		return -EINVAL;
	}
	const char *b = url + 5;
	size_t n = strcspn(b, "/");
	const char *why = bucket_invalid(b, n);
	if (why) {
		set_detail(ret_detail, "invalid bucket in %s: %s", url, why);
		return -EINVAL;
	}
	const char *key = b[n] == '/' ? b + n + 1 : b + n;
	if (strlen(key) > S3_MAX_KEY) {
		set_detail(ret_detail, "invalid key in %s: longer than %d bytes", url, S3_MAX_KEY);
		return -EINVAL;
	}
	for (const char *p = key; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			set_detail(ret_detail, "invalid key in %s: a control character", url);
			return -EINVAL;
		}
	}
	char *bucket = strndup(b, n), *k = strdup(key);
	if (!bucket || !k) {
		free(bucket);
		free(k);
		return -ENOMEM;
	}
	*ret_bucket = bucket;
	*ret_key = k;
	return 0;
}
