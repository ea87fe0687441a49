/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bundle-keys.h - the key material of a classic bundle (classic-bundle-format.md §1.2, §3, §4),
 * with OpenSSL 3 EVP interfaces only.
 *
 * Invariants:
 *  1. Key and IV are 16 bytes each from OpenSSL's CSPRNG (RAND_bytes), used everywhere as 32
 *     lowercase hex characters: the AES key and IV are those bytes, and the hex text is what is
 *     RSA-encrypted into the manifest.
 *  2. Wrapping is RSA PKCS#1 v1.5 encryption of the hex text (not the raw bytes); the
 *     ciphertext is modulus-sized and written as lowercase hex.
 *  3. The signature is RSASSA-PKCS1-v1_5 with SHA-1 over the given bytes, lowercase hex.
 *  4. PEM input is parsed from memory buffers; nothing here touches files.
 */
#ifndef SNAP_BUNDLE_KEYS_H
#define SNAP_BUNDLE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

struct snap_bundle_key {
	uint8_t key[16], iv[16];
	char key_hex[33], iv_hex[33];
};

/* Fresh key and IV. -EIO when the CSPRNG fails. */
int snap_bundle_key_generate(struct snap_bundle_key *ret);

/* The RSA public key of a PEM X.509 certificate. -EBADMSG when it is not one, -EOPNOTSUPP
 * when the key is not RSA. */
int snap_pem_cert_public_key(const void *pem, size_t len, EVP_PKEY **ret);
/* An RSA private key in PEM (PKCS#1 or PKCS#8, unencrypted). */
int snap_pem_private_key(const void *pem, size_t len, EVP_PKEY **ret);

/* RSA PKCS#1 v1.5 encryption of text[0..len) with pub, as lowercase hex (malloc'd). */
int snap_rsa_encrypt_hex(EVP_PKEY *pub, const void *text, size_t len, char **ret_hex);
/* RSA-SHA1 PKCS#1 v1.5 signature of data[0..len) with key, as lowercase hex (malloc'd). */
int snap_rsa_sign_sha1_hex(EVP_PKEY *key, const void *data, size_t len, char **ret_hex);

/* Lowercase hex of bin[0..len) into out (2 * len + 1 bytes). */
void snap_hex(char *out, const uint8_t *bin, size_t len);

#endif
