// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * s3-xml.c - S3's XML answers and the CompleteMultipartUpload body (invariants in s3-xml.h).
 *
 * Steps (each snap_s3_*_parse):
 *  1. bound the size, then the hardened libxml2 parse of xml-parse.h (no network, no DTD, no
 *     entity substitution, a DOCTYPE stops the parser and is refused) (parse_doc).
 *  2. screen the tree: the root's name, namespaces, depth, element count, no entity references
 *     (screen).
 *  3. read the fields by name from the root and its repeated children (field, field_u64, ...).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

#include "s3-xml.h"
#include "xml-parse.h"

#define S3_NS "http://s3.amazonaws.com/doc/2006-03-01/"

struct reader {
	const void *buf;
	size_t len;
	struct snap_xml_status st;
	size_t nelem;
	xmlDocPtr doc;
};

static bool in_s3_ns(xmlNodePtr n)
{
	return !n->ns || (n->ns->href && !strcmp((const char *)n->ns->href, S3_NS));
}

static bool is_named(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && in_s3_ns(n) && !strcmp((const char *)n->name, name);
}

/* Step 2. */
static int screen(struct reader *rd, xmlNodePtr n, int depth)
{
	if (depth > SNAP_S3_XML_MAX_DEPTH)
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "S3 answer is nested deeper than %d elements",
				     SNAP_S3_XML_MAX_DEPTH);
	for (; n; n = n->next) {
		switch (n->type) {
		case XML_ELEMENT_NODE:
			if (!in_s3_ns(n))
				return snap_xml_fail(
				    &rd->st, -EUCLEAN,
				    "S3 answer has element %s in a foreign namespace",
				    (const char *)n->name);
			if (++rd->nelem > SNAP_S3_XML_MAX_ELEMENTS)
				return snap_xml_fail(&rd->st, -EUCLEAN,
						     "S3 answer has more than %u elements",
						     SNAP_S3_XML_MAX_ELEMENTS);
			if (screen(rd, n->children, depth + 1) < 0)
				return rd->st.err;
			break;
		case XML_TEXT_NODE:
		case XML_CDATA_SECTION_NODE:
		case XML_COMMENT_NODE:
		case XML_PI_NODE:
			break;
		default: /* entity references among them */
			return snap_xml_refuse_node(&rd->st, "S3 answer", n);
		}
	}
	return 0;
}

/* Steps 1 and 2: the root element, named root; NULL with rd->st.err set. */
static xmlNodePtr parse_doc(struct reader *rd, const char *root)
{
	if (!rd->buf && rd->len) {
		snap_xml_fail(&rd->st, -EINVAL, "no buffer");
		return NULL;
	}
	if (rd->len > SNAP_S3_XML_MAX_SIZE) {
		snap_xml_fail(&rd->st, -E2BIG, "S3 answer of %zu bytes is over the %u byte limit",
			      rd->len, SNAP_S3_XML_MAX_SIZE);
		return NULL;
	}
	if (!rd->len) {
		snap_xml_fail(&rd->st, -EUCLEAN, "S3 answer is empty, expected <%s>", root);
		return NULL;
	}
	xmlDocPtr doc;
	if (snap_xml_parse(&rd->st, rd->buf, rd->len, "S3 answer", NULL, &doc) < 0)
		return NULL;
	rd->doc = doc;
	xmlNodePtr r = xmlDocGetRootElement(doc);
	if (!r) {
		snap_xml_fail(&rd->st, -EUCLEAN, "S3 answer has no root element");
		return NULL;
	}
	if (screen(rd, r, 0) < 0)
		return NULL;
	if (!is_named(r, root)) {
		snap_xml_fail(&rd->st, -EUCLEAN, "S3 answer is <%s>, expected <%s>",
			      (const char *)r->name, root);
		return NULL;
	}
	return r;
}

/* The unique child element named name, NULL when absent (or twice, with rd->st.err set). */
static xmlNodePtr child(struct reader *rd, xmlNodePtr parent, const char *name)
{
	xmlNodePtr found = NULL;
	for (xmlNodePtr n = parent->children; n; n = n->next) {
		if (!is_named(n, name))
			continue;
		if (found) {
			snap_xml_fail(&rd->st, -EUCLEAN, "S3 answer has <%s> twice in <%s>", name,
				      (const char *)parent->name);
			return NULL;
		}
		found = n;
	}
	return found;
}

/* Text and CDATA of a leaf element (comments skipped); NULL with rd->st.err set. */
static char *leaf_text(struct reader *rd, xmlNodePtr n)
{
	size_t len = 0;
	for (xmlNodePtr c = n->children; c; c = c->next) {
		if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE)
			len += c->content ? strlen((const char *)c->content) : 0;
		else if (c->type == XML_ELEMENT_NODE) {
			snap_xml_fail(&rd->st, -EUCLEAN,
				      "S3 answer's <%s> holds element <%s>, expected text",
				      (const char *)n->name, (const char *)c->name);
			return NULL;
		}
	}
	char *s = malloc(len + 1);
	if (!s) {
		snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
		return NULL;
	}
	size_t o = 0;
	for (xmlNodePtr c = n->children; c; c = c->next) {
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
			size_t l = strlen((const char *)c->content);
			memcpy(s + o, c->content, l);
			o += l;
		}
	}
	s[o] = 0;
	return s;
}

#define OPTIONAL 0
#define REQUIRED 1
#define NONEMPTY 2

/* parent/name into *ret (NULL when absent and optional). */
static int field(struct reader *rd, xmlNodePtr parent, const char *name, int need, char **ret)
{
	xmlNodePtr n = child(rd, parent, name);
	if (rd->st.err)
		return rd->st.err;
	if (!n) {
		if (need)
			return snap_xml_fail(&rd->st, -EUCLEAN, "S3 answer's <%s> lacks <%s>",
					     (const char *)parent->name, name);
		return 0;
	}
	char *s = leaf_text(rd, n);
	if (!s)
		return rd->st.err;
	if (need == NONEMPTY && !*s) {
		free(s);
		return snap_xml_fail(&rd->st, -EUCLEAN, "S3 answer's <%s> has an empty <%s>",
				     (const char *)parent->name, name);
	}
	*ret = s;
	return 0;
}

/* A decimal number in 0..max; *present false when absent and optional. */
static int field_u64(struct reader *rd, xmlNodePtr parent, const char *name, bool required,
		     uint64_t max, uint64_t *ret, bool *present)
{
	char *s = NULL;
	if (field(rd, parent, name, required ? REQUIRED : OPTIONAL, &s) < 0)
		return rd->st.err;
	if (present)
		*present = s != NULL;
	if (!s)
		return 0;
	uint64_t v = 0;
	bool ok = snap_xml_u64(s, &v) >= 0;
	free(s);
	if (!ok || v > max)
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "S3 answer's <%s> has an invalid <%s> (not a number in "
				     "0..%llu)",
				     (const char *)parent->name, name, (unsigned long long)max);
	*ret = v;
	return 0;
}

/* IsTruncated: "true" or "false", false when absent. */
static int field_bool(struct reader *rd, xmlNodePtr parent, const char *name, bool *ret)
{
	char *s = NULL;
	if (field(rd, parent, name, OPTIONAL, &s) < 0)
		return rd->st.err;
	*ret = false;
	if (!s)
		return 0;
	int r = 0;
	if (!strcmp(s, "true"))
		*ret = true;
	else if (strcmp(s, "false"))
		r = snap_xml_fail(&rd->st, -EUCLEAN, "S3 answer's <%s> is neither true nor false",
				  name);
	free(s);
	return r;
}

/* Children of parent named name. */
static size_t count_named(xmlNodePtr parent, const char *name)
{
	size_t n = 0;
	for (xmlNodePtr c = parent->children; c; c = c->next)
		n += is_named(c, name);
	return n;
}

static int finish(struct reader *rd)
{
	xmlFreeDoc(rd->doc);
	rd->doc = NULL;
	return rd->st.err;
}

#define READER(b, l, d)                                                                            \
	{                                                                                          \
		.buf = (b), .len = (l), .st.ret_detail = (d)                                       \
	}

struct snap_s3_error *snap_s3_error_free(struct snap_s3_error *e)
{
	if (e) {
		free(e->code);
		free(e->message);
		free(e->resource);
		free(e->request_id);
		free(e);
	}
	return NULL;
}

int snap_s3_error_parse(const void *buf, size_t len, struct snap_s3_error **ret, char **ret_detail)
{
	struct reader rd = READER(buf, len, ret_detail);
	struct snap_s3_error *e = calloc(1, sizeof(*e));
	if (!e)
		return snap_xml_fail(&rd.st, -ENOMEM, "out of memory");
	xmlNodePtr r = parse_doc(&rd, "Error");
	if (r && field(&rd, r, "Code", NONEMPTY, &e->code) >= 0 &&
	    field(&rd, r, "Message", OPTIONAL, &e->message) >= 0 &&
	    field(&rd, r, "Resource", OPTIONAL, &e->resource) >= 0)
		field(&rd, r, "RequestId", OPTIONAL, &e->request_id);
	if (finish(&rd) < 0) {
		snap_s3_error_free(e);
		return rd.st.err;
	}
	*ret = e;
	return 0;
}

struct snap_s3_initiate *snap_s3_initiate_free(struct snap_s3_initiate *i)
{
	if (i) {
		free(i->bucket);
		free(i->key);
		free(i->upload_id);
		free(i);
	}
	return NULL;
}

int snap_s3_initiate_parse(const void *buf, size_t len, struct snap_s3_initiate **ret,
			   char **ret_detail)
{
	struct reader rd = READER(buf, len, ret_detail);
	struct snap_s3_initiate *i = calloc(1, sizeof(*i));
	if (!i)
		return snap_xml_fail(&rd.st, -ENOMEM, "out of memory");
	xmlNodePtr r = parse_doc(&rd, "InitiateMultipartUploadResult");
	if (r && field(&rd, r, "Bucket", NONEMPTY, &i->bucket) >= 0 &&
	    field(&rd, r, "Key", NONEMPTY, &i->key) >= 0)
		field(&rd, r, "UploadId", NONEMPTY, &i->upload_id);
	if (finish(&rd) < 0) {
		snap_s3_initiate_free(i);
		return rd.st.err;
	}
	*ret = i;
	return 0;
}

struct snap_s3_complete *snap_s3_complete_free(struct snap_s3_complete *c)
{
	if (c) {
		free(c->location);
		free(c->bucket);
		free(c->key);
		free(c->etag);
		free(c);
	}
	return NULL;
}

int snap_s3_complete_parse(const void *buf, size_t len, struct snap_s3_complete **ret,
			   char **ret_detail)
{
	struct reader rd = READER(buf, len, ret_detail);
	struct snap_s3_complete *c = calloc(1, sizeof(*c));
	if (!c)
		return snap_xml_fail(&rd.st, -ENOMEM, "out of memory");
	xmlNodePtr r = parse_doc(&rd, "CompleteMultipartUploadResult");
	if (r && field(&rd, r, "Location", OPTIONAL, &c->location) >= 0 &&
	    field(&rd, r, "Bucket", NONEMPTY, &c->bucket) >= 0 &&
	    field(&rd, r, "Key", NONEMPTY, &c->key) >= 0)
		/* present, but RGW 16 leaves it empty: the caller HEADs the object then */
		field(&rd, r, "ETag", REQUIRED, &c->etag);
	if (finish(&rd) < 0) {
		snap_s3_complete_free(c);
		return rd.st.err;
	}
	*ret = c;
	return 0;
}

struct snap_s3_copy_result *snap_s3_copy_result_free(struct snap_s3_copy_result *c)
{
	if (c) {
		free(c->etag);
		free(c->last_modified);
		free(c);
	}
	return NULL;
}

int snap_s3_copy_result_parse(const void *buf, size_t len, bool part,
			      struct snap_s3_copy_result **ret, char **ret_detail)
{
	struct reader rd = READER(buf, len, ret_detail);
	struct snap_s3_copy_result *c = calloc(1, sizeof(*c));
	if (!c)
		return snap_xml_fail(&rd.st, -ENOMEM, "out of memory");
	xmlNodePtr r = parse_doc(&rd, part ? "CopyPartResult" : "CopyObjectResult");
	if (r && field(&rd, r, "LastModified", OPTIONAL, &c->last_modified) >= 0)
		field(&rd, r, "ETag", NONEMPTY, &c->etag);
	if (finish(&rd) < 0) {
		snap_s3_copy_result_free(c);
		return rd.st.err;
	}
	*ret = c;
	return 0;
}

struct snap_s3_list_parts *snap_s3_list_parts_free(struct snap_s3_list_parts *l)
{
	if (l) {
		for (size_t i = 0; i < l->nparts; i++)
			free(l->parts[i].etag);
		free(l->parts);
		free(l);
	}
	return NULL;
}

static int read_parts(struct reader *rd, xmlNodePtr r, struct snap_s3_list_parts *l)
{
	size_t n = count_named(r, "Part");
	if (n && !(l->parts = calloc(n, sizeof(*l->parts))))
		return snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
	for (xmlNodePtr c = r->children; c; c = c->next) {
		if (!is_named(c, "Part"))
			continue;
		struct snap_s3_part *p = &l->parts[l->nparts++];
		uint64_t num = 0;
		if (field_u64(rd, c, "PartNumber", true, SNAP_S3_MAX_PART_NUMBER, &num, NULL) < 0 ||
		    field(rd, c, "ETag", NONEMPTY, &p->etag) < 0 ||
		    field_u64(rd, c, "Size", true, UINT64_MAX, &p->size, NULL) < 0)
			return rd->st.err;
		if (num == 0 || (l->nparts > 1 && num <= l->parts[l->nparts - 2].part_number))
			return snap_xml_fail(
			    &rd->st, -EUCLEAN,
			    "S3 answer's part %zu has part number %llu, not above the last "
			    "and in 1..%u",
			    l->nparts, (unsigned long long)num, SNAP_S3_MAX_PART_NUMBER);
		p->part_number = (uint32_t)num;
	}
	uint64_t marker = 0;
	bool have = false;
	if (field_bool(rd, r, "IsTruncated", &l->truncated) < 0 ||
	    field_u64(rd, r, "NextPartNumberMarker", false, SNAP_S3_MAX_PART_NUMBER, &marker,
		      &have) < 0)
		return rd->st.err;
	if (l->truncated && !have)
		return snap_xml_fail(&rd->st, -EUCLEAN,
				     "S3 answer is truncated without NextPartNumberMarker");
	l->next_part_number_marker = (uint32_t)marker;
	return 0;
}

int snap_s3_list_parts_parse(const void *buf, size_t len, struct snap_s3_list_parts **ret,
			     char **ret_detail)
{
	struct reader rd = READER(buf, len, ret_detail);
	struct snap_s3_list_parts *l = calloc(1, sizeof(*l));
	if (!l)
		return snap_xml_fail(&rd.st, -ENOMEM, "out of memory");
	xmlNodePtr r = parse_doc(&rd, "ListPartsResult");
	if (r)
		read_parts(&rd, r, l);
	if (finish(&rd) < 0) {
		snap_s3_list_parts_free(l);
		return rd.st.err;
	}
	*ret = l;
	return 0;
}

struct snap_s3_list_objects *snap_s3_list_objects_free(struct snap_s3_list_objects *l)
{
	if (l) {
		for (size_t i = 0; i < l->nobjects; i++) {
			free(l->objects[i].key);
			free(l->objects[i].etag);
		}
		free(l->objects);
		free(l->next_continuation_token);
		free(l);
	}
	return NULL;
}

static int read_objects(struct reader *rd, xmlNodePtr r, struct snap_s3_list_objects *l)
{
	size_t n = count_named(r, "Contents");
	if (n && !(l->objects = calloc(n, sizeof(*l->objects))))
		return snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
	for (xmlNodePtr c = r->children; c; c = c->next) {
		if (!is_named(c, "Contents"))
			continue;
		struct snap_s3_object *o = &l->objects[l->nobjects++];
		if (field(rd, c, "Key", NONEMPTY, &o->key) < 0 ||
		    field_u64(rd, c, "Size", true, UINT64_MAX, &o->size, NULL) < 0 ||
		    field(rd, c, "ETag", OPTIONAL, &o->etag) < 0)
			return rd->st.err;
	}
	if (field_bool(rd, r, "IsTruncated", &l->truncated) < 0 ||
	    field(rd, r, "NextContinuationToken", l->truncated ? NONEMPTY : OPTIONAL,
		  &l->next_continuation_token) < 0)
		return rd->st.err;
	return 0;
}

int snap_s3_list_objects_parse(const void *buf, size_t len, struct snap_s3_list_objects **ret,
			       char **ret_detail)
{
	struct reader rd = READER(buf, len, ret_detail);
	struct snap_s3_list_objects *l = calloc(1, sizeof(*l));
	if (!l)
		return snap_xml_fail(&rd.st, -ENOMEM, "out of memory");
	xmlNodePtr r = parse_doc(&rd, "ListBucketResult");
	if (r)
		read_objects(&rd, r, l);
	if (finish(&rd) < 0) {
		snap_s3_list_objects_free(l);
		return rd.st.err;
	}
	*ret = l;
	return 0;
}

struct snap_s3_list_uploads *snap_s3_list_uploads_free(struct snap_s3_list_uploads *l)
{
	if (l) {
		for (size_t i = 0; i < l->nuploads; i++) {
			free(l->uploads[i].key);
			free(l->uploads[i].upload_id);
		}
		free(l->uploads);
		free(l->next_key_marker);
		free(l->next_upload_id_marker);
		free(l);
	}
	return NULL;
}

static int read_uploads(struct reader *rd, xmlNodePtr r, struct snap_s3_list_uploads *l)
{
	size_t n = count_named(r, "Upload");
	if (n && !(l->uploads = calloc(n, sizeof(*l->uploads))))
		return snap_xml_fail(&rd->st, -ENOMEM, "out of memory");
	for (xmlNodePtr c = r->children; c; c = c->next) {
		if (!is_named(c, "Upload"))
			continue;
		struct snap_s3_upload *u = &l->uploads[l->nuploads++];
		if (field(rd, c, "Key", NONEMPTY, &u->key) < 0 ||
		    field(rd, c, "UploadId", NONEMPTY, &u->upload_id) < 0)
			return rd->st.err;
	}
	int need = OPTIONAL;
	if (field_bool(rd, r, "IsTruncated", &l->truncated) < 0)
		return rd->st.err;
	if (l->truncated)
		need = NONEMPTY;
	if (field(rd, r, "NextKeyMarker", need, &l->next_key_marker) < 0 ||
	    field(rd, r, "NextUploadIdMarker", need, &l->next_upload_id_marker) < 0)
		return rd->st.err;
	return 0;
}

int snap_s3_list_uploads_parse(const void *buf, size_t len, struct snap_s3_list_uploads **ret,
			       char **ret_detail)
{
	struct reader rd = READER(buf, len, ret_detail);
	struct snap_s3_list_uploads *l = calloc(1, sizeof(*l));
	if (!l)
		return snap_xml_fail(&rd.st, -ENOMEM, "out of memory");
	xmlNodePtr r = parse_doc(&rd, "ListMultipartUploadsResult");
	if (r)
		read_uploads(&rd, r, l);
	if (finish(&rd) < 0) {
		snap_s3_list_uploads_free(l);
		return rd.st.err;
	}
	*ret = l;
	return 0;
}

/* XML text escaping of the five special characters. */
static size_t escaped_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++) {
		switch (*s) {
		case '&':
			n += 5;
			break;
		case '<':
		case '>':
			n += 4;
			break;
		case '"':
		case '\'':
			n += 6;
			break;
		default:
			n++;
		}
	}
	return n;
}

static char *put_escaped(char *o, const char *s)
{
	for (; *s; s++) {
		const char *e = NULL;
		switch (*s) {
		case '&':
			e = "&amp;";
			break;
		case '<':
			e = "&lt;";
			break;
		case '>':
			e = "&gt;";
			break;
		case '"':
			e = "&quot;";
			break;
		case '\'':
			e = "&apos;";
			break;
		}
		if (e) {
			size_t l = strlen(e);
			memcpy(o, e, l);
			o += l;
		} else {
			*o++ = *s;
		}
	}
	return o;
}

#define BODY_HEAD "<CompleteMultipartUpload xmlns=\"" S3_NS "\">"
#define BODY_TAIL "</CompleteMultipartUpload>"
#define PART_FMT "<Part><PartNumber>%u</PartNumber><ETag>"
#define PART_TAIL "</ETag></Part>"

int snap_s3_complete_body(const struct snap_s3_part *parts, size_t n, char **ret, size_t *ret_len)
{
	if (!parts || !n || n > SNAP_S3_MAX_PART_NUMBER || !ret)
		return -EINVAL;
	size_t total = strlen(BODY_HEAD) + strlen(BODY_TAIL) + 1;
	for (size_t i = 0; i < n; i++) {
		const char *e = parts[i].etag;
		if (!parts[i].part_number || parts[i].part_number > SNAP_S3_MAX_PART_NUMBER ||
		    (i && parts[i].part_number <= parts[i - 1].part_number) || !e || !*e)
			return -EINVAL;
		for (const char *p = e; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return -EINVAL;
		total += strlen(PART_FMT) + 5 + strlen(PART_TAIL) + escaped_len(e);
	}
	char *body = malloc(total);
	if (!body)
		return -ENOMEM;
	char *o = body;
	o += sprintf(o, "%s", BODY_HEAD);
	for (size_t i = 0; i < n; i++) {
		o += sprintf(o, PART_FMT, parts[i].part_number);
		o = put_escaped(o, parts[i].etag);
		o += sprintf(o, "%s", PART_TAIL);
	}
	o += sprintf(o, "%s", BODY_TAIL);
	*ret = body;
	if (ret_len)
		*ret_len = (size_t)(o - body);
	return 0;
}
