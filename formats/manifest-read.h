/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manifest-read.h - reads a classic bundle manifest (versions 2007-10-10, 2007-08-29 /
 * 20070829 and 3; docs/classic-bundle-format.md §2, §3) from memory: pure code, no I/O.
 *
 * Invariants:
 *  1. The document is parsed by libxml2 with no network, no DTD loading and no entity
 *     substitution; a document with a DOCTYPE (internal subset, entity declarations) is refused
 *     as soon as the parser meets it, so entity expansion bombs cost nothing. Comments,
 *     processing instructions and CDATA sections are refused as well.
 *  2. Fields are read from the tree by element path, never by string matching. The only text
 *     search is the one §3 defines for the signed bytes, and it is made unambiguous first: the
 *     document must hold exactly one <image> element (and at most one <machine_configuration>),
 *     each written exactly once as a bare start tag and once as an end tag, so the signed text
 *     is the text of the very elements the fields came from.
 *  3. A returned manifest is complete: every field ec2-unbundle requires is present and well
 *     formed (digests 20 bytes, numbers in range), parts/@count equals the number of parts,
 *     part indices run 0..count-1 in document order, and part file names are plain names (no
 *     '/', no "..", no duplicates).
 */
#ifndef SNAP_MANIFEST_READ_H
#define SNAP_MANIFEST_READ_H

#include <stddef.h>
#include <stdint.h>

#define SNAP_MANIFEST_V3 3
#define SNAP_MANIFEST_V20070829 20070829
#define SNAP_MANIFEST_V20071010 20071010

struct snap_manifest_read_part {
	uint32_t index;
	char *filename;
	uint8_t digest[20]; /* SHA-1 of the part file (ciphertext) */
};

struct snap_manifest_read_mapping {
	char *virtual_name;
	char *device;
};

struct snap_manifest_doc {
	int version; /* SNAP_MANIFEST_V* */
	char *version_text;
	char *bundler_name, *bundler_version, *bundler_release; /* may be NULL */

	/* machine_configuration (NULL or empty for version 3) */
	char *architecture;
	struct snap_manifest_read_mapping *mappings;
	size_t nmappings;
	char *kernel_id, *ramdisk_id;
	char **product_codes;
	size_t nproduct_codes;

	/* image */
	char *name;
	char *user;
	char *type;	   /* NULL before 2007-10-10 */
	char *kernel_name; /* NULL unless type is kernel */
	char **ancestors;
	size_t nancestors;
	uint8_t digest[20]; /* SHA-1 of the tar stream */
	char digest_hex[41];
	uint64_t size, bundled_size;
	uint8_t *ec2_encrypted_key, *user_encrypted_key, *ec2_encrypted_iv, *user_encrypted_iv;
	size_t ec2_encrypted_key_len, user_encrypted_key_len, ec2_encrypted_iv_len,
	    user_encrypted_iv_len;
	struct snap_manifest_read_part *parts;
	size_t nparts;

	uint8_t *signature; /* NULL when the manifest has none */
	size_t signature_len;
	/* §3: X(machine_configuration) || X(image), copied from the document's bytes */
	uint8_t *signed_text;
	size_t signed_len;
};

/* Parses len bytes. On failure returns -EUCLEAN (malformed or incomplete), -EOPNOTSUPP
 * (unknown version, digest algorithm), -EPERM (DTD or entities) or -ENOMEM, and *ret_detail
 * (malloc'd, may be NULL) says what and where, e.g. "image/parts/part[3]/digest is not 40 hex
 * characters". */
int snap_manifest_read(const uint8_t *buf, size_t len, struct snap_manifest_doc **ret,
		       char **ret_detail);
struct snap_manifest_doc *snap_manifest_doc_free(struct snap_manifest_doc *m);

#endif
