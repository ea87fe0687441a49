/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xml-parse.h - the one hardened libxml2 parse of formats/ (S3's answers in s3-xml.c, bundle
 * manifests in manifest-read.c), the first-failure-sticks error of the readers built on it, and
 * the decimal number both read from a field (snap_xml_u64).
 *
 * Invariants:
 *  1. libxml2 reads the document with XML_PARSE_NONET and never XML_PARSE_NOENT, DTDLOAD,
 *     DTDATTR, DTDVALID or HUGE: no network, no DTD loaded, no entity substituted, and libxml2's
 *     own limits on depth and text size stay on.
 *  2. A DOCTYPE stops the parser where it stands (the SAX internalSubset, externalSubset and
 *     entityDecl hooks), before any declaration in it is processed, and is refused with -EPERM;
 *     so an entity expansion bomb or an external entity costs nothing. A tree that still holds a
 *     DTD is refused the same way.
 *  3. libxml2 never prints (NOERROR, NOWARNING): its last error, line and message, becomes the
 *     detail of an -EUCLEAN refusal. Documents over INT_MAX bytes (libxml2's limit) are -E2BIG;
 *     each caller bounds the size far below that first, with its own message.
 *  4. Every message starts with the caller's name of the document ("manifest", "S3 answer").
 *     The first failure sticks (struct snap_xml_status): its code and one detail string; later
 *     failures return that code and change nothing.
 *  5. A parsed document goes to the caller, which frees it with xmlFreeDoc; on a refusal nothing
 *     is left allocated but the detail string.
 */
#ifndef SNAP_XML_PARSE_H
#define SNAP_XML_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <libxml/tree.h>

/* The first failure of a reader (invariant 4). ret_detail may be NULL: no detail is kept. */
struct snap_xml_status {
	int err;
	char **ret_detail;
};

/* Records err and the formatted detail unless a failure is already recorded; returns the
 * recorded code. */
int snap_xml_fail(struct snap_xml_status *st, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses buf[0..len) (invariants 1-3) into *ret_doc. what names the document in messages;
 * doctype_why, when not NULL, is said after the DOCTYPE refusal. Returns 0, or the recorded
 * failure with *ret_doc untouched. */
int snap_xml_parse(struct snap_xml_status *st, const void *buf, size_t len, const char *what,
		   const char *doctype_why, xmlDocPtr *ret_doc);

/* Refuses node n, one no reader takes: an entity reference (-EPERM; invariant 2 leaves none, this
 * is the second line of defence) or a node type other than element, text, CDATA, comment and
 * processing instruction (-EUCLEAN). Returns the recorded failure. */
int snap_xml_refuse_node(struct snap_xml_status *st, const char *what, xmlNodePtr n);

/* A decimal number of a field's text: digits only (no sign, no space), at least one, below
 * 2^64 - 9 at the last digit's turn; -EUCLEAN otherwise, *ret untouched. */
int snap_xml_u64(const char *s, uint64_t *ret);

#endif
