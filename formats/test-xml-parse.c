// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-xml-parse.c - the hardened libxml2 parse (xml-parse.h): a plain document goes through
 * with its text (predefined entities and character references included); an internal DTD, a
 * billion laughs, an external entity naming a file this test wrote (its contents must never
 * show), an external DTD and a bare DOCTYPE are each refused with -EPERM and the caller's
 * words; a document nested deeper than libxml2's limit, a truncated one and a NUL inside are
 * -EUCLEAN with libxml2's line and message (no trailing newline); a length over INT_MAX is
 * -E2BIG before the buffer is read; the first failure sticks and *ret_doc is never touched on
 * a refusal; an entity reference node and a node of another type are refused with the caller's
 * words.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

#include "test-util.h"
#include "xml-parse.h"

#define L(s) strlen(s)

/* Parses s; on success checks the root's name and frees the tree. */
static int parse(const char *s, size_t len, const char *why, char **ret_detail, const char *root)
{
	struct snap_xml_status st = {.ret_detail = ret_detail};
	xmlDocPtr doc = (xmlDocPtr)0x1;
	int r = snap_xml_parse(&st, s, len, "test doc", why, &doc);
	CHECK(r == st.err, "returned %d, recorded %d", r, st.err);
	if (r < 0) {
		CHECK(doc == (xmlDocPtr)0x1, "ret_doc touched on failure");
		CHECK(!ret_detail || *ret_detail, "refusal %d without a detail", r);
		return r;
	}
	xmlNodePtr n = xmlDocGetRootElement(doc);
	CHECK(n && root && !strcmp((const char *)n->name, root), "root %s", n ? n->name : NULL);
	xmlFreeDoc(doc);
	return r;
}

static void check_plain(void)
{
	const char *s = "<?xml version='1.0'?><a><b x='1'>t&amp;u&#65;&lt;</b><!--c--></a>";
	struct snap_xml_status st = {0};
	xmlDocPtr doc = NULL;
	REQUIRE(snap_xml_parse(&st, s, L(s), "doc", NULL, &doc) == 0 && doc && st.err == 0);
	xmlNodePtr b = xmlDocGetRootElement(doc)->children;
	REQUIRE(b && b->type == XML_ELEMENT_NODE && !strcmp((const char *)b->name, "b"));
	xmlChar *t = xmlNodeGetContent(b);
	CHECK(t && !strcmp((const char *)t, "t&uA<"), "text %s", t);
	xmlFree(t);
	CHECK(!doc->intSubset && !doc->extSubset);
	xmlFreeDoc(doc);
}

static void refused(const char *what, const char *s, const char *why, int err, const char *want)
{
	char *d = NULL;
	int r = parse(s, L(s), why, &d, NULL);
	CHECK(r == err, "%s: %d, expected %d (%s)", what, r, err, d ? d : "");
	CHECK(d && !strcmp(d, want), "%s: detail '%s', expected '%s'", what, d, want);
	free(d);
}

static void check_doctype(void)
{
	const char *dtd = "test doc has a DOCTYPE (DTD or entity declarations); refused";
	refused("internal DTD", "<!DOCTYPE a [<!ELEMENT a (#PCDATA)>]><a>x</a>", NULL, -EPERM, dtd);
	refused("bare DOCTYPE", "<!DOCTYPE a><a>x</a>", NULL, -EPERM, dtd);
	refused("billion laughs",
		"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY l 'lol'>"
		"<!ENTITY l1 '&l;&l;&l;&l;&l;&l;&l;&l;&l;&l;'>"
		"<!ENTITY l2 '&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;'>"
		"<!ENTITY l3 '&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;'>]><a>&l3;</a>",
		"it never needs one", -EPERM,
		"test doc has a DOCTYPE (DTD or entity declarations); refused, it never needs one");

	/* an external entity naming a file with a secret: refused, and the secret never read */
	char dir[256], path[300], doc[800];
	test_mkdtemp(dir, sizeof(dir), "/tmp/test-xml-parse.");
	atexit(test_cleanup);
	snprintf(path, sizeof(path), "%s/secret", dir);
	FILE *f = fopen(path, "w");
	REQUIRE(f && fputs("SECRET-XYZZY", f) >= 0 && fclose(f) == 0);
	snprintf(doc, sizeof(doc), "<!DOCTYPE a [<!ENTITY x SYSTEM 'file://%s'>]><a>&x;</a>", path);
	char *d = NULL;
	CHECK(parse(doc, L(doc), NULL, &d, NULL) == -EPERM);
	CHECK(d && !strstr(d, "SECRET") && !strcmp(d, dtd), "%s", d);
	free(d);
	/* an external DTD that declares an entity the body uses: neither loaded nor expanded */
	snprintf(path, sizeof(path), "%s/ext.dtd", dir);
	f = fopen(path, "w");
	REQUIRE(f && fputs("<!ENTITY s 'SECRET-XYZZY'>", f) >= 0 && fclose(f) == 0);
	snprintf(doc, sizeof(doc), "<!DOCTYPE a SYSTEM 'file://%s'><a>&s;</a>", path);
	d = NULL;
	CHECK(parse(doc, L(doc), NULL, &d, NULL) == -EPERM);
	CHECK(d && !strstr(d, "SECRET") && !strcmp(d, dtd), "%s", d);
	free(d);
	/* an entity never declared is an error, not a fetch */
	d = NULL;
	CHECK(parse("<a>&x;</a>", 10, NULL, &d, NULL) == -EUCLEAN && d &&
		  !strncmp(d, "test doc is not valid XML (line 1): ", 36),
	      "%s", d);
	free(d);
}

/* A document n elements deep. */
static char *nested(size_t n)
{
	char *s = malloc(7 * n + 1), *p = s;
	REQUIRE(s);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "<e>");
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "</e>");
	return s;
}

static void check_limits(void)
{
	/* libxml2's own depth limit (256 without XML_PARSE_HUGE) stays on */
	char *s = nested(200);
	CHECK(parse(s, L(s), NULL, NULL, "e") == 0, "200 deep refused");
	free(s);
	s = nested(5000);
	char *d = NULL;
	CHECK(parse(s, L(s), NULL, &d, NULL) == -EUCLEAN, "5000 deep: %s", d);
	CHECK(d && strstr(d, "test doc is not valid XML (line 1): ") == d && strstr(d, "depth"),
	      "%s", d);
	CHECK(d && d[strlen(d) - 1] != '\n' && d[strlen(d) - 1] != ' ', "'%s'", d);
	free(d);
	free(s);

	/* over INT_MAX: refused before the buffer is looked at */
	d = NULL;
	CHECK(parse("<a/>", (size_t)INT_MAX + 1, NULL, &d, NULL) == -E2BIG);
	CHECK(d && strstr(d, "test doc of 2147483648 bytes"), "%s", d);
	free(d);

	/* truncated on line 2, a NUL inside, empty */
	d = NULL;
	CHECK(parse("<a>\n<b>", 7, NULL, &d, NULL) == -EUCLEAN);
	CHECK(d && strstr(d, "(line 2): "), "%s", d);
	free(d);
	d = NULL;
	CHECK(parse("<a>x\0y</a>", 10, NULL, &d, NULL) == -EUCLEAN && d, "%s", d);
	free(d);
	d = NULL;
	CHECK(parse("", 0, NULL, &d, NULL) == -EUCLEAN && d, "%s", d);
	free(d);
}

static void check_sticky(void)
{
	char *d = NULL;
	struct snap_xml_status st = {.ret_detail = &d};
	CHECK(snap_xml_fail(&st, -EINVAL, "first %d", 1) == -EINVAL);
	CHECK(snap_xml_fail(&st, -ENOMEM, "second") == -EINVAL);
	xmlDocPtr doc = (xmlDocPtr)0x1;
	CHECK(snap_xml_parse(&st, "<!DOCTYPE a><a/>", 16, "x", NULL, &doc) == -EINVAL);
	CHECK(doc == (xmlDocPtr)0x1 && st.err == -EINVAL);
	CHECK(d && !strcmp(d, "first 1"), "%s", d);
	free(d);
	/* no detail kept when the caller asks for none */
	struct snap_xml_status quiet = {0};
	CHECK(snap_xml_fail(&quiet, -EUCLEAN, "x") == -EUCLEAN && quiet.err == -EUCLEAN);
}

/* The nodes no reader takes: an entity reference and a node of another type. */
static void check_refuse_node(void)
{
	xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
	REQUIRE(doc);
	xmlNodePtr ref = xmlNewReference(doc, (const xmlChar *)"&x;");
	xmlNodePtr frag = xmlNewDocFragment(doc);
	REQUIRE(ref && ref->type == XML_ENTITY_REF_NODE && frag);
	char *d = NULL;
	struct snap_xml_status st = {.ret_detail = &d};
	CHECK(snap_xml_refuse_node(&st, "doc", ref) == -EPERM);
	CHECK(d && !strcmp(d, "doc contains an entity reference"), "%s", d);
	free(d);
	d = NULL;
	st = (struct snap_xml_status){.ret_detail = &d};
	CHECK(snap_xml_refuse_node(&st, "doc", frag) == -EUCLEAN);
	CHECK(d && !strcmp(d, "doc contains an unexpected node (type 11)"), "%s", d);
	free(d);
	xmlFreeNode(ref);
	xmlFreeNode(frag);
	xmlFreeDoc(doc);
}

/* snap_xml_u64 at its edges: the largest it takes, the first it refuses, no sign or space. */
static void check_u64(void)
{
	static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "12a", "0x10",
					  "18446744073709551610", "99999999999999999999"};
	uint64_t v = 7;
	CHECK(snap_xml_u64("0", &v) == 0 && v == 0);
	CHECK(snap_xml_u64("0042", &v) == 0 && v == 42);
	CHECK(snap_xml_u64("18446744073709551609", &v) == 0 && v == UINT64_MAX - 6, "%llu",
	      (unsigned long long)v);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 7;
		CHECK(snap_xml_u64(bad[i], &v) == -EUCLEAN && v == 7, "'%s' taken as %llu", bad[i],
		      (unsigned long long)v);
	}
}

int main(void)
{
	check_u64();
	check_plain();
	check_doctype();
	check_limits();
	check_sticky();
	check_refuse_node();
	return test_failures ? 1 : 0;
}
