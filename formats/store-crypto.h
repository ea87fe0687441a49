/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store-crypto.h - the cryptography of .bin store images (formats/STORE_FORMAT.md, "Keys"),
 * over memory buffers only: OpenSSL 3 EVP, no I/O.
 *
 * Invariants:
 *  1. The data key (DK, 32 bytes) never encrypts or authenticates anything itself: the frame key
 *     and the MAC key are derived from it with HKDF-SHA256, salted with the image id, so frames
 *     of two images never verify under each other's keys even when DK was reused.
 *  2. A frame cipher context (struct snap_store_cipher) belongs to one thread; it holds its own
 *     EVP contexts, made once per worker, so the hot path does not allocate.
 *  3. Every failure of OpenSSL is translated: authentication failures are -EBADMSG, a wrong
 *     passphrase or key -EKEYREJECTED, anything else -EIO.
 */
#ifndef SNAP_STORE_CRYPTO_H
#define SNAP_STORE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store-format.h"

struct snap_store_keyset {
	uint8_t enc[SNAP_STORE_KEY_SIZE]; /* AES-256-GCM key of the frames */
	uint8_t mac[SNAP_STORE_KEY_SIZE]; /* HMAC-SHA256 key of the META and INDEX tags */
};

int snap_store_derive(const uint8_t dk[SNAP_STORE_KEY_SIZE],
		      const uint8_t image_id[SNAP_STORE_ID_SIZE], struct snap_store_keyset *ret);

/* Randomness. With a seed (test-only, for golden vectors) the bytes are
 * SHA-256(le64 seed || purpose || le64 index) repeated with a counter: independent of thread
 * timing. Without one they come from RAND_bytes. */
struct snap_store_rng {
	bool seeded;
	uint64_t seed;
};
int snap_store_random(const struct snap_store_rng *rng, const char *purpose, uint64_t index,
		      void *out, size_t len);

/* One thread's frame cipher. */
struct snap_store_cipher;
int snap_store_cipher_new(const struct snap_store_keyset *keys, struct snap_store_cipher **ret);
struct snap_store_cipher *snap_store_cipher_free(struct snap_store_cipher *c);
/* Digest of a frame's payload as stored (ciphertext when encrypted, GCM tag excluded): SHA-256.
 * Unkeyed on purpose: anyone can check an image's frames against its index without the key. */
int snap_store_cipher_digest(struct snap_store_cipher *c, const void *payload, size_t len,
			     uint8_t out[SNAP_STORE_DIGEST_SIZE]);
/* AES-256-GCM in place over buf; tag written to tag. */
int snap_store_cipher_seal(struct snap_store_cipher *c, const uint8_t nonce[12], const void *aad,
			   size_t aad_len, uint8_t *buf, size_t len, uint8_t tag[16]);
/* -EBADMSG when the tag does not verify. */
int snap_store_cipher_open(struct snap_store_cipher *c, const uint8_t nonce[12], const void *aad,
			   size_t aad_len, uint8_t *buf, size_t len, const uint8_t tag[16]);

/* SHA-256 or HMAC-SHA256 (key non-NULL) over the concatenation of n buffers. */
int snap_store_mac(const uint8_t *key, const void *const *parts, const size_t *lens, size_t n,
		   uint8_t out[SNAP_STORE_DIGEST_SIZE]);
/* SHA-256 of one buffer. */
int snap_store_sha256(const void *buf, size_t len, uint8_t out[SNAP_STORE_DIGEST_SIZE]);
/* The same, incrementally: for a record written piece by piece (snap_store_index_record_*). */
struct snap_store_mac_ctx;
int snap_store_mac_new(const uint8_t *key, struct snap_store_mac_ctx **ret);
int snap_store_mac_update(struct snap_store_mac_ctx *m, const void *buf, size_t len);
int snap_store_mac_final(struct snap_store_mac_ctx *m, uint8_t out[SNAP_STORE_DIGEST_SIZE]);
struct snap_store_mac_ctx *snap_store_mac_free(struct snap_store_mac_ctx *m);
bool snap_store_ct_equal(const void *a, const void *b, size_t n);

/* Key slots. */
int snap_store_slot_scrypt_make(const char *pass, size_t pass_len,
				const uint8_t dk[SNAP_STORE_KEY_SIZE],
				const uint8_t image_id[SNAP_STORE_ID_SIZE],
				const struct snap_store_rng *rng, uint64_t n_cost,
				struct snap_store_keyslot *ret);
/* What a reader spends on a passphrase slot, whatever the image asks (a hostile image chooses
 * the cost): store writes r = 8, p = 1 and N up to 2^SNAP_STORE_SCRYPT_MAX_LOG_N, so scrypt's
 * 128 * N * r bytes stay within 256 MiB; readers accept N * r up to that, p up to 2 (twice the
 * work of the dearest slot store writes), and try at most SNAP_STORE_SCRYPT_MAX_TRIES slots. */
#define SNAP_STORE_SCRYPT_MAX_LOG_N 18
#define SNAP_STORE_SCRYPT_MAX_NR (8ull << SNAP_STORE_SCRYPT_MAX_LOG_N)
#define SNAP_STORE_SCRYPT_MAX_P 2
#define SNAP_STORE_SCRYPT_MAX_TRIES 4
/* Whether a reader accepts a slot's scrypt cost (the bounds above). */
bool snap_store_slot_scrypt_allowed(const struct snap_store_keyslot *s);
/* -EKEYREJECTED when the passphrase is wrong; -EUCLEAN when the cost is not allowed. */
int snap_store_slot_scrypt_open(const struct snap_store_keyslot *s, const char *pass,
				size_t pass_len, const uint8_t image_id[SNAP_STORE_ID_SIZE],
				uint8_t ret_dk[SNAP_STORE_KEY_SIZE]);
/* cert_pem: an X.509 certificate with an RSA key. */
int snap_store_slot_rsa_make(const void *cert_pem, size_t len,
			     const uint8_t dk[SNAP_STORE_KEY_SIZE], struct snap_store_keyslot *ret,
			     const char **ret_detail);
/* key_pem: the recipient's private key. -ENOKEY when no slot is for this key,
 * -EKEYREJECTED when the slot does not decrypt. */
int snap_store_slots_rsa_open(const struct snap_store_keys *k, const void *key_pem, size_t len,
			      uint8_t ret_dk[SNAP_STORE_KEY_SIZE], const char **ret_detail);

#define SNAP_STORE_SIGNED_MSG_SIZE (sizeof(SNAP_STORE_SIGNATURE_LABEL) - 1 + 128 + 3 * 32)
/* The signed message: label || header || SHA-256(KEYS record, or of nothing) ||
 * SHA-256(META record) || SHA-256(INDEX record). */
int snap_store_signed_message(const uint8_t header[SNAP_STORE_HEADER_SIZE], const uint8_t *keys,
			      size_t keys_len, const uint8_t *meta, size_t meta_len,
			      const uint8_t *index, size_t index_len,
			      uint8_t out[SNAP_STORE_SIGNED_MSG_SIZE]);
/* The same with the INDEX record given by its SHA-256 (a writer that streams the record). */
int snap_store_signed_message_digest(const uint8_t header[SNAP_STORE_HEADER_SIZE],
				     const uint8_t *keys, size_t keys_len, const uint8_t *meta,
				     size_t meta_len,
				     const uint8_t index_digest[SNAP_STORE_DIGEST_SIZE],
				     uint8_t out[SNAP_STORE_SIGNED_MSG_SIZE]);

/* Signs msg with a PEM private key (RSA: PKCS#1 v1.5, EC: ECDSA, both over SHA-256; Ed25519
 * as itself). ret_sig and ret_spki (the signer's DER SubjectPublicKeyInfo) are malloc'd. */
int snap_store_sign(const void *key_pem, size_t key_len, const void *msg, size_t msg_len,
		    uint8_t **ret_sig, size_t *ret_sig_len, uint8_t **ret_spki,
		    size_t *ret_spki_len, const char **ret_detail);
/* -EBADMSG when the signature does not verify under the DER public key. */
int snap_store_verify(const uint8_t *spki, size_t spki_len, const void *msg, size_t msg_len,
		      const uint8_t *sig, size_t sig_len);
/* DER SubjectPublicKeyInfo of a PEM certificate or public key (or private key). */
int snap_store_spki_from_pem(const void *pem, size_t len, uint8_t **ret, size_t *ret_len);

#endif
