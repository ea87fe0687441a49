/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bundle-manifest.h - the classic bundle manifest on the engine side (bundle-manifest.c): the
 * keys it is signed and wrapped with, its inputs checked before any data moves, its building
 * and signing (bundle.c, migrate.c), and its checking and reading (unbundle.c; the key also
 * migrate.c and s3-bundle.c); its GET from a bucket (those three) and its parsing, named
 * (s3-bundle.c, migrate.c).
 */
#ifndef SNAP_BUNDLE_MANIFEST_H
#define SNAP_BUNDLE_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "bundle-keys.h"
#include "manifest-read.h"
#include "manifest-write.h"

struct snap_job;
struct snap_output;
struct snap_s3_client;

#define MAX_MANIFEST_FILE (16u << 20)

/* A part as the bundle job writes it and the manifest names it. */
struct snap_bundle_part {
	struct snap_output *out; /* written as .NAME.part.I.tmp-PID, named at commit */
	char *final_name;
	uint64_t size;
	char digest[41];
};

/* The user's certificate and private key, and the EC2 certificate. */
struct snap_bundle_signer {
	EVP_PKEY *user_pub, *ec2_pub, *priv;
	char *priv_pem; /* the private key's PEM when kept (to unwrap a manifest's key with) */
	size_t priv_len;
};

/* Reads the three PEM files the job names (at most max bytes each) into s, and checks that the
 * private key is the certificate's; keep_pem keeps the private key's PEM. signed_what names
 * what could not be verified otherwise ("the bundle's signature"). 0 or -errno, the job failed;
 * s holds what was read either way (snap_bundle_signer_clear). */
int snap_bundle_signer_load(struct snap_job *job, size_t max, bool keep_pem,
			    const char *signed_what, struct snap_bundle_signer *s);
void snap_bundle_signer_clear(struct snap_bundle_signer *s);

/* Checks what the manifest needs before any data moves: the user (12 digits once hyphens are
 * removed, *ret_user malloc'd), the architecture, the block device mappings. */
int snap_bundle_manifest_inputs(struct snap_job *job, char **ret_user);

/* m's four encrypted fields from key_hex and iv_hex (32 hex digits each) wrapped for EC2 and
 * the user, then the document signed with the private key; a failure to build it is "cannot
 * build WHAT NAME: reason". *ret_doc malloc'd. */
int snap_bundle_manifest_sign(struct snap_job *job, const struct snap_bundle_signer *s,
			      struct snap_manifest_info *m, const char *key_hex, const char *iv_hex,
			      const char *what, const char *name, char **ret_doc, size_t *ret_len);

/* The bundle job's manifest: the job's architecture, mappings, kernel, ramdisk, product codes
 * and ancestors, the bundle's name, user, size, tar digest and parts, key and IV wrapped,
 * signed. */
int snap_bundle_manifest_build(struct snap_job *job, const struct snap_bundle_signer *s,
			       const struct snap_bundle_key *key, const char *name,
			       const char *user, uint64_t size, const char digest[41],
			       const struct snap_bundle_part *parts, size_t nparts, char **ret_doc,
			       size_t *ret_len);

/* The manifest's signature under the certificate (or public key) at cert_path. */
int snap_bundle_manifest_verify(struct snap_job *job, const struct snap_manifest_doc *m,
				const char *manifest_path, const char *cert_path);

/* Key and IV: the manifest's user_encrypted_key and user_encrypted_iv unwrapped (§4) with the
 * private key at key_path (snap_bundle_manifest_key_for; unbundle names no manifest). */
int snap_bundle_manifest_unwrap(struct snap_job *job, const struct snap_manifest_doc *m,
				const char *key_path, const char *name, uint8_t ret_key[16],
				uint8_t ret_iv[16]);

/* Key and IV unwrapped with the private key pem[0, len) read from key_path, into ret_key and
 * ret_iv unless NULL (a check only); a manifest not for this key fails "manifest NAME is not
 * for the key KEY_PATH: why" (migrate, download-bundle -k), or "why" with name NULL. */
int snap_bundle_manifest_key_for(struct snap_job *job, const struct snap_manifest_doc *m,
				 const char *name, const void *pem, size_t len,
				 const char *key_path, uint8_t ret_key[16], uint8_t ret_iv[16]);

/* The manifest s3://BUCKET/KEY with the client c: whole, at most MAX_MANIFEST_FILE bytes into
 * *ret (malloc'd). A failure fails the job naming the object ("no manifest s3://BUCKET/KEY: why"
 * when it is missing). */
int snap_bundle_manifest_get(struct snap_job *job, struct snap_s3_client *c, const char *bucket,
			     const char *key, char **ret, size_t *ret_len);

/* The manifest text[0, len) parsed; a failure is "manifest NAME is not a bundle manifest: why". */
int snap_bundle_manifest_parse(struct snap_job *job, const void *text, size_t len, const char *name,
			       struct snap_manifest_doc **ret);

/* SNAP_RESULT_MANIFEST_INFO: the manifest's fields as one JSON object. */
int snap_bundle_manifest_info(struct snap_job *job, const struct snap_manifest_doc *m);

#endif
