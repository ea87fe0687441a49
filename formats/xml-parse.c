// SPDX-License-Identifier: LGPL-2.1-or-later
/* xml-parse.c - the hardened libxml2 parse (invariants in xml-parse.h). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "xml-parse.h"

int snap_xml_fail(struct snap_xml_status *st, int err, const char *fmt, ...)
{
	if (st->err)
		return st->err;
	st->err = err;
	if (st->ret_detail && !*st->ret_detail) {
		va_list ap;
		va_start(ap, fmt);
		char *m = NULL;
		if (vasprintf(&m, fmt, ap) < 0)
			m = NULL;
		va_end(ap);
		*st->ret_detail = m;
	}
	return err;
}

/* SAX hooks (invariant 2): ctxt->_private is the flag the refusal is read from. */
static void on_internal_subset(void *ctx, const xmlChar *name, const xmlChar *ext,
			       const xmlChar *sys)
{
	(void)name;
	(void)ext;
	(void)sys;
	xmlParserCtxtPtr ctxt = ctx;
	bool *dtd = ctxt->_private;
	*dtd = true;
	xmlStopParser(ctxt);
}

static void on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *pub,
			   const xmlChar *sys, xmlChar *content)
{
	(void)name;
	(void)type;
	(void)pub;
	(void)sys;
	(void)content;
	on_internal_subset(ctx, NULL, NULL, NULL);
}

int snap_xml_parse(struct snap_xml_status *st, const void *buf, size_t len, const char *what,
		   const char *doctype_why, xmlDocPtr *ret_doc)
{
	if (len > INT_MAX)
		return snap_xml_fail(st, -E2BIG, "%s of %zu bytes is over the XML parser's limit",
				     what, len);
	xmlInitParser();
	xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
	if (!ctxt)
		return snap_xml_fail(st, -ENOMEM, "out of memory for the XML parser");
	bool dtd = false;
	ctxt->_private = &dtd;
	ctxt->sax->internalSubset = on_internal_subset;
	ctxt->sax->entityDecl = on_entity_decl;
	ctxt->sax->externalSubset = on_internal_subset;
	int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
	xmlDocPtr doc = xmlCtxtReadMemory(ctxt, buf, (int)len, NULL, NULL, opts);
	int r = 0;
	if (dtd) {
		r = snap_xml_fail(st, -EPERM,
				  "%s has a DOCTYPE (DTD or entity declarations); refused%s%s",
				  what, doctype_why ? ", " : "", doctype_why ? doctype_why : "");
	} else if (!doc || !ctxt->wellFormed) {
		const xmlError *e = xmlCtxtGetLastError(ctxt);
		char msg[200] = "not well-formed XML";
		if (e && e->message) {
			snprintf(msg, sizeof(msg), "%s", e->message);
			size_t l = strlen(msg);
			while (l && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
				msg[--l] = 0;
		}
		r = snap_xml_fail(st, -EUCLEAN, "%s is not valid XML (line %d): %s", what,
				  e ? e->line : 0, msg);
	} else if (doc->intSubset || doc->extSubset) {
		r = snap_xml_fail(st, -EPERM, "%s has a DOCTYPE; refused", what);
	}
	xmlFreeParserCtxt(ctxt);
	if (r < 0) {
		xmlFreeDoc(doc);
		return r;
	}
	*ret_doc = doc;
	return 0;
}

int snap_xml_refuse_node(struct snap_xml_status *st, const char *what, xmlNodePtr n)
{
	if (n->type == XML_ENTITY_REF_NODE || n->type == XML_ENTITY_NODE)
		return snap_xml_fail(st, -EPERM, "%s contains an entity reference", what);
	return snap_xml_fail(st, -EUCLEAN, "%s contains an unexpected node (type %d)", what,
			     (int)n->type);
}

int snap_xml_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;
	if (!*s)
		return -EUCLEAN;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return -EUCLEAN;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ret = v;
	return 0;
}
