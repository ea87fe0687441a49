/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manifest-write.h - the classic bundle manifest, version 2007-10-10, written byte for byte the
 * way ec2-bundle-image's REXML writes it (classic-bundle-format.md §2, §3), and part names.
 *
 * Invariants:
 *  1. The document is one line with no trailing newline: "<?xml version='1.0'?>" then
 *     <manifest>, no whitespace between elements, attributes in single quotes, text escaped
 *     & < > " ' as REXML does and nothing else.
 *  2. Elements come in §2.2's order; optional ones (block_device_mapping, kernel_id,
 *     ramdisk_id, product_codes, ancestry) are left out when empty, never written empty.
 *  3. Block device mappings are sorted by virtual name, plain byte-wise (strcmp), stably.
 *  4. The signed text is exactly <machine_configuration>...</machine_configuration> followed by
 *     <image>...</image> as they appear in the document; snap_manifest_build() writes those
 *     same bytes, so signing snap_manifest_signed_text() signs what is written.
 */
#ifndef SNAP_MANIFEST_WRITE_H
#define SNAP_MANIFEST_WRITE_H

#include <stddef.h>
#include <stdint.h>

struct snap_manifest_mapping {
	const char *virtual_name;
	const char *device;
};

struct snap_manifest_part {
	const char *filename;
	char digest[41]; /* lowercase hex SHA-1 of the part */
};

struct snap_manifest_info {
	const char *bundler_name, *bundler_version, *bundler_release;
	const char *arch;
	const struct snap_manifest_mapping *mappings; /* any order; written sorted */
	size_t nmappings;
	const char *kernel_id;	/* NULL: left out */
	const char *ramdisk_id; /* NULL: left out */
	const char *const *product_codes;
	size_t nproduct_codes;
	const char *name;
	const char *user;
	const char *const *ancestors;
	size_t nancestors;
	char digest[41]; /* SHA-1 of the tar stream */
	uint64_t size;
	uint64_t bundled_size;
	const char *ec2_encrypted_key, *user_encrypted_key; /* hex */
	const char *ec2_encrypted_iv, *user_encrypted_iv;   /* hex */
	const struct snap_manifest_part *parts;
	size_t nparts;
};

/* The text that is signed: machine_configuration + image as the document will hold them.
 * *ret is malloc'd and NUL-terminated. 0, -EINVAL (missing mandatory field), -ENOMEM. */
int snap_manifest_signed_text(const struct snap_manifest_info *m, char **ret, size_t *ret_len);
/* The whole document with signature_hex as <signature>. */
int snap_manifest_build(const struct snap_manifest_info *m, const char *signature_hex, char **ret,
			size_t *ret_len);

/* Parses "virtual=device" (spaces around either side trimmed, both non-empty, no spaces inside,
 * as ec2-bundle-image's -B accepts). Pointers into *buf, which the caller provides as a
 * writable copy. 0 or -EINVAL. */
int snap_manifest_parse_mapping(char *buf, struct snap_manifest_mapping *ret);

/* "<name>.part.<i>" with i zero-padded to the digits of count (§1.8). *ret is malloc'd. */
int snap_bundle_part_name(const char *name, uint64_t index, uint64_t count, char **ret);

#endif
