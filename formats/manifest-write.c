// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * manifest-write.c - REXML-identical serialisation of the 2007-10-10 manifest (see
 * manifest-write.h). Built in a snap_strbuf (strbuf.h); the document is a few KiB plus ~120
 * bytes per part.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest-write.h"
#include "strbuf.h"

/* REXML's text escaping: these five and nothing else (UTF-8, CR, TAB as is). */
static void sb_text(struct snap_strbuf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			snap_strbuf_str(b, "&amp;");
			break;
		case '<':
			snap_strbuf_str(b, "&lt;");
			break;
		case '>':
			snap_strbuf_str(b, "&gt;");
			break;
		case '"':
			snap_strbuf_str(b, "&quot;");
			break;
		case '\'':
			snap_strbuf_str(b, "&apos;");
			break;
		default:
			snap_strbuf_add(b, s, 1);
			break;
		}
	}
}

static void sb_elem(struct snap_strbuf *b, const char *name, const char *text)
{
	snap_strbuf_str(b, "<");
	snap_strbuf_str(b, name);
	snap_strbuf_str(b, ">");
	sb_text(b, text);
	snap_strbuf_str(b, "</");
	snap_strbuf_str(b, name);
	snap_strbuf_str(b, ">");
}

static void sb_u64(struct snap_strbuf *b, const char *name, uint64_t v)
{
	snap_strbuf_printf(b, "<%s>%" PRIu64 "</%s>", name, v, name); /* digits need no escaping */
}

static bool present(const char *s)
{
	return s && s[0];
}

static int cmp_mapping(const void *a, const void *b)
{
	const struct snap_manifest_mapping *const *x = a, *const *y = b;
	int c = strcmp((*x)->virtual_name, (*y)->virtual_name);
	if (c)
		return c;
	/* stable: keep the order given among equal names */
	return *x < *y ? -1 : *x > *y;
}

static int check(const struct snap_manifest_info *m)
{
	if (!present(m->arch) || !present(m->name) || !present(m->user) ||
	    !present(m->ec2_encrypted_key) || !present(m->user_encrypted_key) ||
	    !present(m->ec2_encrypted_iv) || !present(m->user_encrypted_iv) || !m->digest[0])
		return -EINVAL;
	for (size_t i = 0; i < m->nmappings; i++)
		if (!present(m->mappings[i].virtual_name) || !present(m->mappings[i].device))
			return -EINVAL;
	for (size_t i = 0; i < m->nparts; i++)
		if (!present(m->parts[i].filename) || !m->parts[i].digest[0])
			return -EINVAL;
	return 0;
}

static void write_machine_configuration(struct snap_strbuf *b, const struct snap_manifest_info *m)
{
	snap_strbuf_str(b, "<machine_configuration>");
	sb_elem(b, "architecture", m->arch);
	if (m->nmappings) {
		const struct snap_manifest_mapping **sorted = calloc(m->nmappings, sizeof(*sorted));
		if (!sorted) {
			b->err = -ENOMEM;
			return;
		}
		for (size_t i = 0; i < m->nmappings; i++)
			sorted[i] = &m->mappings[i];
		qsort(sorted, m->nmappings, sizeof(*sorted), cmp_mapping);
		snap_strbuf_str(b, "<block_device_mapping>");
		for (size_t i = 0; i < m->nmappings; i++) {
			snap_strbuf_str(b, "<mapping>");
			sb_elem(b, "virtual", sorted[i]->virtual_name);
			sb_elem(b, "device", sorted[i]->device);
			snap_strbuf_str(b, "</mapping>");
		}
		snap_strbuf_str(b, "</block_device_mapping>");
		free(sorted);
	}
	if (present(m->kernel_id))
		sb_elem(b, "kernel_id", m->kernel_id);
	if (present(m->ramdisk_id))
		sb_elem(b, "ramdisk_id", m->ramdisk_id);
	bool any = false;
	for (size_t i = 0; i < m->nproduct_codes; i++) {
		if (!present(m->product_codes[i]))
			continue;
		if (!any)
			snap_strbuf_str(b, "<product_codes>");
		any = true;
		sb_elem(b, "product_code", m->product_codes[i]);
	}
	if (any)
		snap_strbuf_str(b, "</product_codes>");
	snap_strbuf_str(b, "</machine_configuration>");
}

static void write_image(struct snap_strbuf *b, const struct snap_manifest_info *m)
{
	snap_strbuf_str(b, "<image>");
	sb_elem(b, "name", m->name);
	sb_elem(b, "user", m->user);
	sb_elem(b, "type", "machine");
	bool any = false;
	for (size_t i = 0; i < m->nancestors; i++) {
		if (!present(m->ancestors[i]))
			continue;
		if (!any)
			snap_strbuf_str(b, "<ancestry>");
		any = true;
		sb_elem(b, "ancestor_ami_id", m->ancestors[i]);
	}
	if (any)
		snap_strbuf_str(b, "</ancestry>");
	snap_strbuf_str(b, "<digest algorithm='SHA1'>");
	sb_text(b, m->digest);
	snap_strbuf_str(b, "</digest>");
	sb_u64(b, "size", m->size);
	sb_u64(b, "bundled_size", m->bundled_size);
	snap_strbuf_str(b, "<ec2_encrypted_key algorithm='AES-128-CBC'>");
	sb_text(b, m->ec2_encrypted_key);
	snap_strbuf_str(b, "</ec2_encrypted_key><user_encrypted_key algorithm='AES-128-CBC'>");
	sb_text(b, m->user_encrypted_key);
	snap_strbuf_str(b, "</user_encrypted_key>");
	sb_elem(b, "ec2_encrypted_iv", m->ec2_encrypted_iv);
	sb_elem(b, "user_encrypted_iv", m->user_encrypted_iv);
	snap_strbuf_printf(b, "<parts count='%zu'>", m->nparts);
	for (size_t i = 0; i < m->nparts; i++) {
		snap_strbuf_printf(b, "<part index='%zu'>", i);
		sb_elem(b, "filename", m->parts[i].filename);
		snap_strbuf_str(b, "<digest algorithm='SHA1'>");
		sb_text(b, m->parts[i].digest);
		snap_strbuf_str(b, "</digest></part>");
	}
	snap_strbuf_str(b, "</parts></image>");
}

int snap_manifest_signed_text(const struct snap_manifest_info *m, char **ret, size_t *ret_len)
{
	int r = check(m);
	if (r < 0)
		return r;
	struct snap_strbuf b = SNAP_STRBUF_INIT;
	write_machine_configuration(&b, m);
	write_image(&b, m);
	return snap_strbuf_take(&b, ret, ret_len);
}

int snap_manifest_build(const struct snap_manifest_info *m, const char *signature_hex, char **ret,
			size_t *ret_len)
{
	int r = check(m);
	if (r < 0)
		return r;
	if (!present(signature_hex))
		return -EINVAL; /* EC2 answers a manifest without a signature with InvalidManifest
				 */
	struct snap_strbuf b = SNAP_STRBUF_INIT;
	snap_strbuf_str(&b, "<?xml version='1.0'?><manifest>");
	sb_elem(&b, "version", "2007-10-10");
	if (present(m->bundler_name) || present(m->bundler_version) ||
	    present(m->bundler_release)) {
		snap_strbuf_str(&b, "<bundler>");
		if (present(m->bundler_name))
			sb_elem(&b, "name", m->bundler_name);
		if (present(m->bundler_version))
			sb_elem(&b, "version", m->bundler_version);
		if (present(m->bundler_release))
			sb_elem(&b, "release", m->bundler_release);
		snap_strbuf_str(&b, "</bundler>");
	}
	write_machine_configuration(&b, m);
	write_image(&b, m);
	sb_elem(&b, "signature", signature_hex);
	snap_strbuf_str(&b, "</manifest>");
	return snap_strbuf_take(&b, ret, ret_len);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

int snap_manifest_parse_mapping(char *buf, struct snap_manifest_mapping *ret)
{
	char *eq = strchr(buf, '=');
	if (!eq)
		return -EINVAL;
	*eq = 0;
	char *v = trim(buf), *d = trim(eq + 1);
	if (!*v || !*d)
		return -EINVAL;
	for (const char *p = v; *p; p++)
		if (isspace((unsigned char)*p))
			return -EINVAL;
	for (const char *p = d; *p; p++)
		if (isspace((unsigned char)*p) || *p == '=')
			return -EINVAL;
	ret->virtual_name = v;
	ret->device = d;
	return 0;
}

int snap_bundle_part_name(const char *name, uint64_t index, uint64_t count, char **ret)
{
	if (index >= count)
		return -EINVAL;
	int digits = 1;
	for (uint64_t c = count; c >= 10; c /= 10)
		digits++;
	if (asprintf(ret, "%s.part.%0*" PRIu64, name, digits, index) < 0)
		return -ENOMEM;
	return 0;
}
