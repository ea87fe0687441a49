// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * manifest-read.c - classic bundle manifest reader on libxml2 (invariants in manifest-read.h).
 *
 * Steps (snap_manifest_read):
 *  1. parse: the hardened libxml2 parse of xml-parse.h (no network, no DTD, no entity
 *     substitution, a DOCTYPE stops the parser and is refused), after the size and NUL checks.
 *  2. screen the tree: root <manifest>, no comments, PIs, CDATA or entity references, count
 *     the <image> and <machine_configuration> elements (screen).
 *  3. read the fields by path (read_fields), version dispatch as ManifestWrapper does.
 *  4. take the signed text from the bytes (signed_text).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

#include "hex.h"
#include "manifest-read.h"
#include "strbuf.h"
#include "xml-parse.h"

#define MAX_MANIFEST (16u * 1024 * 1024)
#define MAX_PARTS 1000000u

struct reader {
	const uint8_t *buf;
	size_t len;
	struct snap_xml_status st;
	size_t n_image, n_mc;
};

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

struct snap_manifest_doc *snap_manifest_doc_free(struct snap_manifest_doc *m)
{
	if (!m)
		return NULL;
	free(m->version_text);
	free(m->bundler_name);
	free(m->bundler_version);
	free(m->bundler_release);
	free(m->architecture);
	for (size_t i = 0; i < m->nmappings; i++) {
		free(m->mappings[i].virtual_name);
		free(m->mappings[i].device);
	}
	free(m->mappings);
	free(m->kernel_id);
	free(m->ramdisk_id);
	free_strv(m->product_codes, m->nproduct_codes);
	free(m->name);
	free(m->user);
	free(m->type);
	free(m->kernel_name);
	free_strv(m->ancestors, m->nancestors);
	free(m->ec2_encrypted_key);
	free(m->user_encrypted_key);
	free(m->ec2_encrypted_iv);
	free(m->user_encrypted_iv);
	for (size_t i = 0; i < m->nparts; i++)
		free(m->parts[i].filename);
	free(m->parts);
	free(m->signature);
	free(m->signed_text);
	free(m);
	return NULL;
}

static bool is_named(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && !n->ns && !strcmp((const char *)n->name, name);
}

/* Step 2: only elements and text; count the elements whose text is signed. */
static int screen(struct reader *rd, xmlNodePtr n, int depth)
{
	if (depth > 16)
		return snap_xml_fail(&rd->st, -EUCLEAN, "manifest is nested too deeply");
	for (; n; n = n->next) {
		switch (n->type) {
		case XML_ELEMENT_NODE:
			if (n->ns)
				return snap_xml_fail(&rd->st, -EUCLEAN,
						     "manifest uses XML namespaces (element %s)",
						     (const char *)n->name);
			if (is_named(n, "image"))
				rd->n_image++;
			if (is_named(n, "machine_configuration"))
				rd->n_mc++;
			if (screen(rd, n->children, depth + 1) < 0)
				return rd->st.err;
			break;
		case XML_TEXT_NODE:
			break;
		case XML_COMMENT_NODE:
			return snap_xml_fail(&rd->st, -EUCLEAN,
					     "manifest contains a comment (line %d); refused, it "
					     "could hide text from the signature check",
					     n->line);
		case XML_CDATA_SECTION_NODE:
			return snap_xml_fail(&rd->st, -EUCLEAN,
					     "manifest contains a CDATA section (line %d)",
					     n->line);
		case XML_PI_NODE:
			return snap_xml_fail(&rd->st, -EUCLEAN,
					     "manifest contains a processing instruction");
		default: /* entity references among them */
			return snap_xml_refuse_node(&rd->st, "manifest", n);
		}
	}
	return 0;
}

/* The unique child element named name, NULL when absent; a second one is an error. */
static xmlNodePtr child(struct reader *rd, xmlNodePtr parent, const char *name, const char *path)
{
	xmlNodePtr found = NULL;
	if (!parent)
		return NULL;
	for (xmlNodePtr n = parent->children; n; n = n->next) {
		if (!is_named(n, name))
			continue;
		if (found) {
			snap_xml_fail(&rd->st, -EUCLEAN,
				      "invalid manifest, %s%s%s element appears twice", path,
				      *path ? "/" : "", name);
			return NULL;
		}
		found = n;
	}
	return found;
}

/* Text of a leaf element (text children only); NULL with rd->st.err set on error. */
static char *leaf_text(struct reader *rd, xmlNodePtr n, const char *path)
{
	for (xmlNodePtr c = n->children; c; c = c->next) {
		if (c->type != XML_TEXT_NODE) {
			snap_xml_fail(&rd->st, -EUCLEAN, "invalid manifest, %s must hold text only",
				      path);
			return NULL;
		}
	}
	xmlChar *t = xmlNodeGetContent(n);
	if (!t) {
		char *e = strdup("");
		if (!e)
			snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
		return e;
	}
	char *s = strdup((const char *)t);
	xmlFree(t);
	if (!s)
		snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
	return s;
}

/* Reads parent/name into *ret. mandatory: absent or empty is an error (Ruby's wording). */
static int field(struct reader *rd, xmlNodePtr parent, const char *ppath, const char *name,
		 bool mandatory, char **ret)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", ppath, name);
	xmlNodePtr n = child(rd, parent, name, ppath);
	if (rd->st.err)
		return rd->st.err;
	if (!n) {
		if (mandatory)
			return snap_xml_fail(&rd->st, -EUCLEAN,
					     "invalid manifest, %s element not present", path);
		return 0;
	}
	char *s = leaf_text(rd, n, path);
	if (!s)
		return rd->st.err;
	if (!*s && mandatory) {
		free(s);
		return snap_xml_fail(&rd->st, -EUCLEAN, "invalid manifest, %s element empty", path);
	}
	free(*ret);
	*ret = s;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Hex to bytes; want is the exact byte count, or 0 for any non-zero even length. */
static int unhex(struct reader *rd, const char *s, const char *path, size_t want, uint8_t **ret,
		 size_t *ret_len)
{
	size_t l = strlen(s);
	if (l == 0 || l % 2 || (want && l != want * 2)) {
		if (want)
			return snap_xml_fail(&rd->st, -EUCLEAN,
					     "invalid manifest, %s is not %zu hex characters", path,
					     want * 2);
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "invalid manifest, %s is not an even number of hex "
				     "characters",
				     path);
	}
	uint8_t *b = malloc(l / 2);
	if (!b)
		return snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
	for (size_t i = 0; i < l / 2; i++) {
		int h = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (h < 0 || lo < 0) {
			free(b);
			return snap_xml_fail(&rd->st, -EUCLEAN, "invalid manifest, %s is not hex",
					     path);
		}
		b[i] = (uint8_t)(h << 4 | lo);
	}
	*ret = b;
	*ret_len = l / 2;
	return 0;
}

static int hex_field(struct reader *rd, xmlNodePtr parent, const char *ppath, const char *name,
		     size_t want, uint8_t **ret, size_t *ret_len)
{
	char *s = NULL, path[128];
	snprintf(path, sizeof(path), "%s/%s", ppath, name);
	int r = field(rd, parent, ppath, name, true, &s);
	if (r >= 0)
		r = unhex(rd, s, path, want, ret, ret_len);
	free(s);
	return r;
}

/* digest elements carry algorithm='SHA1' (absent is accepted, anything else is not). */
static int digest_field(struct reader *rd, xmlNodePtr parent, const char *ppath, uint8_t out[20])
{
	char path[128];
	snprintf(path, sizeof(path), "%s/digest", ppath);
	xmlNodePtr n = child(rd, parent, "digest", ppath);
	if (rd->st.err)
		return rd->st.err;
	if (!n)
		return snap_xml_fail(&rd->st, -EUCLEAN, "invalid manifest, %s element not present",
				     path);
	xmlChar *alg = xmlGetNoNsProp(n, (const xmlChar *)"algorithm");
	if (alg && strcmp((const char *)alg, "SHA1")) {
		snap_xml_fail(&rd->st, -EOPNOTSUPP,
			      "manifest %s uses algorithm '%.40s'; only SHA1 is known", path,
			      (const char *)alg);
		xmlFree(alg);
		return rd->st.err;
	}
	xmlFree(alg);
	uint8_t *b = NULL;
	size_t bl;
	int r = hex_field(rd, parent, ppath, "digest", 20, &b, &bl);
	if (r < 0)
		return r;
	memcpy(out, b, 20);
	free(b);
	return 0;
}

static int u64_field(struct reader *rd, xmlNodePtr parent, const char *ppath, const char *name,
		     uint64_t *ret)
{
	char *s = NULL;
	int r = field(rd, parent, ppath, name, true, &s);
	if (r >= 0 && snap_xml_u64(s, ret) < 0)
		r = snap_xml_fail(&rd->st, -EUCLEAN,
				  "invalid manifest, %s/%s is not a decimal number: '%.40s'", ppath,
				  name, s);
	free(s);
	return r;
}

/* Every text of the repeated leaf elements parent/name. */
static int list_field(struct reader *rd, xmlNodePtr parent, const char *ppath, const char *name,
		      char ***ret, size_t *ret_n)
{
	if (!parent)
		return 0;
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", ppath, name);
	for (xmlNodePtr n = parent->children; n; n = n->next) {
		if (!is_named(n, name))
			continue;
		char *s = leaf_text(rd, n, path);
		if (!s)
			return rd->st.err;
		char **v = realloc(*ret, (*ret_n + 1) * sizeof(*v));
		if (!v) {
			free(s);
			return snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
		}
		v[(*ret_n)++] = s;
		*ret = v;
	}
	return 0;
}

static int version_of(struct reader *rd, const char *text, int *ret)
{
	if (!strcmp(text, "2007-10-10")) {
		*ret = SNAP_MANIFEST_V20071010;
	} else if (!strcmp(text, "2007-08-29") || !strcmp(text, "20070829")) {
		*ret = SNAP_MANIFEST_V20070829;
	} else if (!strcmp(text, "3")) {
		*ret = SNAP_MANIFEST_V3;
	} else {
		/* ManifestWrapper's integer conversion: leading digits only */
		long long v = 0;
		for (const char *p = text; *p >= '0' && *p <= '9' && v < 100000000000ll; p++)
			v = v * 10 + (*p - '0');
		if (v > 20071010)
			return snap_xml_fail(&rd->st, -EOPNOTSUPP,
					     "manifest version '%.40s' is too new for this "
					     "tool",
					     text);
		if (v < 3)
			return snap_xml_fail(&rd->st, -EOPNOTSUPP,
					     "manifest version '%.40s' is too old for this "
					     "tool",
					     text);
		return snap_xml_fail(&rd->st, -EOPNOTSUPP, "manifest version '%.40s' is not known",
				     text);
	}
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_parts(struct reader *rd, struct snap_manifest_doc *m, xmlNodePtr image)
{
	xmlNodePtr parts = child(rd, image, "parts", "image");
	if (rd->st.err)
		return rd->st.err;
	if (!parts)
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "invalid manifest, image/parts element not present");
	xmlChar *cnt = xmlGetNoNsProp(parts, (const xmlChar *)"count");
	uint64_t count;
	if (!cnt || snap_xml_u64((const char *)cnt, &count) < 0 || count > MAX_PARTS) {
		snap_xml_fail(&rd->st, -EUCLEAN,
			      "invalid manifest, image/parts/@count is %s%.40s%s", cnt ? "'" : "",
			      cnt ? (const char *)cnt : "missing", cnt ? "'" : "");
		xmlFree(cnt);
		return rd->st.err;
	}
	xmlFree(cnt);
	size_t n = 0;
	for (xmlNodePtr p = parts->children; p; p = p->next)
		n += is_named(p, "part");
	if (n != count)
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "invalid manifest, image/parts/@count is %llu but %zu "
				     "parts are listed",
				     (unsigned long long)count, n);
	if (n == 0)
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "invalid manifest, image/parts lists no part");
	m->parts = calloc(n, sizeof(*m->parts));
	if (!m->parts)
		return snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
	size_t i = 0;
	for (xmlNodePtr p = parts->children; p; p = p->next) {
		if (!is_named(p, "part"))
			continue;
		char path[64];
		snprintf(path, sizeof(path), "image/parts/part[%zu]", i);
		struct snap_manifest_read_part *pt = &m->parts[i];
		m->nparts = i + 1;
		xmlChar *idx = xmlGetNoNsProp(p, (const xmlChar *)"index");
		uint64_t index;
		if (!idx || snap_xml_u64((const char *)idx, &index) < 0) {
			snap_xml_fail(&rd->st, -EUCLEAN,
				      "invalid manifest, %s/@index is missing or not a number",
				      path);
			xmlFree(idx);
			return rd->st.err;
		}
		xmlFree(idx);
		/* document order must be index order: a reordered list is ambiguous (the Ruby tools
		 * follow @index, Nova follows the document) and so refused */
		if (index != i)
			return snap_xml_fail(&rd->st, -EUCLEAN,
					     "invalid manifest, parts are out of order: the "
					     "part listed at position %zu has index %llu",
					     i, (unsigned long long)index);
		pt->index = (uint32_t)index;
		if (field(rd, p, path, "filename", true, &pt->filename) < 0)
			return rd->st.err;
		const char *f = pt->filename;
		if (strchr(f, '/') || strstr(f, "..") || !strcmp(f, "."))
			return snap_xml_fail(
			    &rd->st, -EPERM,
			    "invalid manifest, %s/filename '%.200s' is not a plain "
			    "file name",
			    path, f);
		if (digest_field(rd, p, path, pt->digest) < 0)
			return rd->st.err;
		i++;
	}
	char **names = malloc(n * sizeof(*names));
	if (!names)
		return snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
	for (i = 0; i < n; i++)
		names[i] = m->parts[i].filename;
	qsort(names, n, sizeof(*names), cmp_names);
	for (i = 1; i < n; i++) {
		if (!strcmp(names[i - 1], names[i])) {
			snap_xml_fail(&rd->st, -EUCLEAN,
				      "invalid manifest, part file '%.200s' is listed twice",
				      names[i]);
			break;
		}
	}
	free(names);
	return rd->st.err;
}

static int read_fields(struct reader *rd, struct snap_manifest_doc *m, xmlNodePtr root)
{
	if (field(rd, root, "", "version", true, &m->version_text) < 0)
		return rd->st.err;
	if (version_of(rd, m->version_text, &m->version) < 0)
		return rd->st.err;
	xmlNodePtr bundler = child(rd, root, "bundler", "");
	if (rd->st.err)
		return rd->st.err;
	if (bundler && (field(rd, bundler, "bundler", "name", false, &m->bundler_name) < 0 ||
			field(rd, bundler, "bundler", "version", false, &m->bundler_version) < 0 ||
			field(rd, bundler, "bundler", "release", false, &m->bundler_release) < 0))
		return rd->st.err;

	xmlNodePtr mc = child(rd, root, "machine_configuration", "");
	if (rd->st.err)
		return rd->st.err;
	if (m->version >= SNAP_MANIFEST_V20070829 && !mc)
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "invalid manifest, machine_configuration element not "
				     "present");
	if (mc && m->version >= SNAP_MANIFEST_V20070829) {
		const char *p = "machine_configuration";
		if (field(rd, mc, p, "architecture", true, &m->architecture) < 0)
			return rd->st.err;
		xmlNodePtr bdm = child(rd, mc, "block_device_mapping", p);
		if (rd->st.err)
			return rd->st.err;
		for (xmlNodePtr n = bdm ? bdm->children : NULL; n; n = n->next) {
			if (!is_named(n, "mapping"))
				continue;
			struct snap_manifest_read_mapping *v =
			    realloc(m->mappings, (m->nmappings + 1) * sizeof(*v));
			if (!v)
				return snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
			m->mappings = v;
			struct snap_manifest_read_mapping *mp = &m->mappings[m->nmappings++];
			*mp = (struct snap_manifest_read_mapping){0};
			const char *mpath = "machine_configuration/block_device_mapping/mapping";
			if (field(rd, n, mpath, "virtual", true, &mp->virtual_name) < 0 ||
			    field(rd, n, mpath, "device", true, &mp->device) < 0)
				return rd->st.err;
		}
		if (field(rd, mc, p, "kernel_id", false, &m->kernel_id) < 0 ||
		    field(rd, mc, p, "ramdisk_id", false, &m->ramdisk_id) < 0)
			return rd->st.err;
		xmlNodePtr pc = child(rd, mc, "product_codes", p);
		if (rd->st.err ||
		    list_field(rd, pc, "machine_configuration/product_codes", "product_code",
			       &m->product_codes, &m->nproduct_codes) < 0)
			return rd->st.err;
	}

	xmlNodePtr image = child(rd, root, "image", "");
	if (rd->st.err)
		return rd->st.err;
	if (!image)
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "invalid manifest, image element not present");
	const char *ip = "image";
	if (field(rd, image, ip, "name", true, &m->name) < 0 ||
	    field(rd, image, ip, "user", true, &m->user) < 0)
		return rd->st.err;
	if (m->version == SNAP_MANIFEST_V20071010) {
		if (field(rd, image, ip, "type", false, &m->type) < 0 ||
		    field(rd, image, ip, "kernel_name", false, &m->kernel_name) < 0)
			return rd->st.err;
		xmlNodePtr anc = child(rd, image, "ancestry", ip);
		if (rd->st.err || list_field(rd, anc, "image/ancestry", "ancestor_ami_id",
					     &m->ancestors, &m->nancestors) < 0)
			return rd->st.err;
	}
	if (digest_field(rd, image, ip, m->digest) < 0)
		return rd->st.err;
	snap_hex(m->digest_hex, m->digest, 20);
	if (u64_field(rd, image, ip, "size", &m->size) < 0 ||
	    u64_field(rd, image, ip, "bundled_size", &m->bundled_size) < 0)
		return rd->st.err;
	if (hex_field(rd, image, ip, "ec2_encrypted_key", 0, &m->ec2_encrypted_key,
		      &m->ec2_encrypted_key_len) < 0 ||
	    hex_field(rd, image, ip, "user_encrypted_key", 0, &m->user_encrypted_key,
		      &m->user_encrypted_key_len) < 0 ||
	    hex_field(rd, image, ip, "ec2_encrypted_iv", 0, &m->ec2_encrypted_iv,
		      &m->ec2_encrypted_iv_len) < 0 ||
	    hex_field(rd, image, ip, "user_encrypted_iv", 0, &m->user_encrypted_iv,
		      &m->user_encrypted_iv_len) < 0)
		return rd->st.err;
	/* the key elements name their cipher; only AES-128-CBC exists in this format */
	const char *keys[] = {"ec2_encrypted_key", "user_encrypted_key"};
	for (int i = 0; i < 2; i++) {
		xmlNodePtr k = child(rd, image, keys[i], ip);
		xmlChar *alg = k ? xmlGetNoNsProp(k, (const xmlChar *)"algorithm") : NULL;
		if (alg && strcmp((const char *)alg, "AES-128-CBC")) {
			snap_xml_fail(&rd->st, -EOPNOTSUPP,
				      "manifest image/%s uses cipher '%.40s'; only "
				      "AES-128-CBC is known",
				      keys[i], (const char *)alg);
			xmlFree(alg);
			return rd->st.err;
		}
		xmlFree(alg);
	}
	if (read_parts(rd, m, image) < 0)
		return rd->st.err;

	xmlNodePtr sig = child(rd, root, "signature", "");
	if (rd->st.err)
		return rd->st.err;
	if (sig) {
		char *s = leaf_text(rd, sig, "signature");
		if (!s)
			return rd->st.err;
		int r = unhex(rd, s, "signature", 0, &m->signature, &m->signature_len);
		free(s);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Occurrences of needle in the document bytes, and the first one's offset. */
static size_t occurrences(struct reader *rd, const char *needle, size_t *ret_first)
{
	size_t n = 0, nl = strlen(needle);
	const uint8_t *p = rd->buf, *end = rd->buf + rd->len;
	while (p + nl <= end) {
		const uint8_t *h = memmem(p, (size_t)(end - p), needle, nl);
		if (!h)
			break;
		if (n++ == 0)
			*ret_first = (size_t)(h - rd->buf);
		p = h + nl;
	}
	return n;
}

/* §3: X(e) is from the literal "<e>" to the first following "</e>", both included. */
static int take_x(struct reader *rd, const char *e, bool required, struct snap_strbuf *out)
{
	char open_tag[64], close_tag[64];
	snprintf(open_tag, sizeof(open_tag), "<%s>", e);
	snprintf(close_tag, sizeof(close_tag), "</%s>", e);
	size_t a = 0, b = 0;
	size_t no = occurrences(rd, open_tag, &a), nc = occurrences(rd, close_tag, &b);
	if (no == 0 && nc == 0 && !required)
		return 0;
	if (no != 1 || nc != 1 || b < a)
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "manifest: the signed <%s> element must be written "
				     "exactly once as %s...%s",
				     e, open_tag, close_tag);
	snap_strbuf_add(out, rd->buf + a, b + strlen(close_tag) - a);
	if (out->err)
		return snap_xml_fail(&rd->st, out->err, "out of memory");
	return 0;
}

int snap_manifest_read(const uint8_t *buf, size_t len, struct snap_manifest_doc **ret,
		       char **ret_detail)
{
	struct reader rd = {.buf = buf, .len = len, .st.ret_detail = ret_detail};
	if (ret_detail)
		*ret_detail = NULL;
	if (len == 0)
		return snap_xml_fail(&rd.st, -EUCLEAN, "manifest is empty");
	if (len > MAX_MANIFEST)
		return snap_xml_fail(&rd.st, -EUCLEAN, "manifest is larger than %u bytes",
				     MAX_MANIFEST);
	if (memchr(buf, 0, len))
		return snap_xml_fail(&rd.st, -EUCLEAN,
				     "manifest contains a NUL byte (an encrypted pre-v3 "
				     "manifest is not supported)");
	struct snap_strbuf signed_text = SNAP_STRBUF_INIT;
	xmlDocPtr doc;
	if (snap_xml_parse(&rd.st, buf, len, "manifest", "a manifest never needs one", &doc) < 0)
		return rd.st.err;
	struct snap_manifest_doc *m = calloc(1, sizeof(*m));
	if (!m) {
		xmlFreeDoc(doc);
		return snap_xml_fail(&rd.st, -ENOMEM, "out of memory");
	}
	xmlNodePtr root = xmlDocGetRootElement(doc);
	if (!root || !is_named(root, "manifest")) {
		snap_xml_fail(&rd.st, -EUCLEAN,
			      "invalid manifest, the root element is <%s>, not <manifest>",
			      root ? (const char *)root->name : "");
		goto out;
	}
	for (xmlNodePtr n = doc->children; n; n = n->next)
		if (n != root && n->type != XML_ELEMENT_NODE && screen(&rd, n, 0) < 0)
			goto out;
	if (screen(&rd, root, 0) < 0)
		goto out;
	if (rd.n_image > 1 || rd.n_mc > 1) {
		snap_xml_fail(&rd.st, -EUCLEAN, "invalid manifest, more than one <%s> element",
			      rd.n_image > 1 ? "image" : "machine_configuration");
		goto out;
	}
	if (read_fields(&rd, m, root) < 0)
		goto out;
	/* whenever the document has the element, it is signed: a spelling the literal search
	 * misses (<machine_configuration >) is refused, never left out of the signed text */
	if (take_x(&rd, "machine_configuration", rd.n_mc > 0, &signed_text) < 0 ||
	    take_x(&rd, "image", true, &signed_text) < 0)
		goto out;
	char *t;
	if (snap_strbuf_take(&signed_text, &t, &m->signed_len) < 0) {
		snap_xml_fail(&rd.st, -ENOMEM, "out of memory");
		goto out;
	}
	m->signed_text = (uint8_t *)t;
out:
	snap_strbuf_release(&signed_text);
	xmlFreeDoc(doc);
	if (rd.st.err) {
		snap_manifest_doc_free(m);
		return rd.st.err;
	}
	*ret = m;
	return 0;
}
