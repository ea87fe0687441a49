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
 *  5. Unwrapping and verifying are the exact inverses of snap_rsa_encrypt_hex and
 *     snap_rsa_sign_sha1_hex over the binary ciphertext and signature (manifest-read.c decodes
 *     the hex); their failures come with a message naming what failed.
 *  6. The parts are AES-128-CBC of one gzip stream with PKCS#7 padding (§3): a piece of the
 *     ciphertext decrypts alone given the block before it as IV, so workers decrypt parts in
 *     any order (snap_bundle_cbc_decrypt), and only the stream's last block holds padding
 *     (snap_bundle_cbc_unpad).
 */
#ifndef SNAP_BUNDLE_KEYS_H
#define SNAP_BUNDLE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "hex.h"

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

/* Decrypts the manifest's user_encrypted_key and user_encrypted_iv (binary RSA PKCS#1 v1.5
 * ciphertexts of 32 hex characters each) with key_pem, an unencrypted PEM private key, into
 * key and iv. key_name names the key in messages (e.g. its path). 0; on failure a message in
 * why[0..why_size) and -EINVAL (not an unencrypted PEM private key, or not RSA), -EKEYREJECTED
 * (a value does not decrypt or is not 32 hex characters: the wrong key), -ENOMEM. */
int snap_bundle_key_unwrap(const void *key_pem, size_t pem_len, const uint8_t *enc_key,
			   size_t enc_key_len, const uint8_t *enc_iv, size_t enc_iv_len,
			   uint8_t key[16], uint8_t iv[16], const char *key_name, char *why,
			   size_t why_size);

/* Checks an RSA-SHA1 PKCS#1 v1.5 signature (binary) of text[0..text_len) under the public key of
 * cert_pem (a PEM X.509 certificate, or a bare PEM public key). 0; -EINVAL when cert_pem is
 * neither (*ret_detail: OpenSSL's reason), -EBADMSG when the signature does not verify,
 * -ENOMEM. */
int snap_bundle_verify_signature(const void *cert_pem, size_t pem_len, const uint8_t *sig,
				 size_t sig_len, const void *text, size_t text_len,
				 const char **ret_detail);

/* OpenSSL's reason for the last error (thread-local text), and the error queue cleared. */
const char *snap_ossl_reason(void);

/* AES-128-CBC decryption of data[0..n) in place (n a multiple of 16, no padding removed) with
 * ctx, a cipher context of the caller's thread. 0 or -EIO (snap_ossl_reason says why). */
int snap_bundle_cbc_decrypt(EVP_CIPHER_CTX *ctx, const uint8_t key[16], const uint8_t iv[16],
			    uint8_t *data, size_t n);

/* Removes the PKCS#7 padding at the end of the plaintext head[0..*head_len) followed by
 * body[0..*body_len) (the stream's last bytes, in two pieces) by shortening the lengths. 0;
 * -EUCLEAN when the two hold less than one AES block, -EBADMSG when the padding is invalid
 * (the wrong key or IV, or a damaged last block). */
int snap_bundle_cbc_unpad(const uint8_t *head, size_t *head_len, const uint8_t *body,
			  size_t *body_len);

#endif
