// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * store-crypto.c - HKDF, HMAC, AES-256-GCM, scrypt and RSA-OAEP for .bin store images, through
 * OpenSSL 3 EVP. Invariants in store-crypto.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "store-crypto.h"

/* One derivation of out_len bytes by the OpenSSL KDF name, with its parameters. */
static int kdf_derive(const char *name, const OSSL_PARAM *params, uint8_t *out, size_t out_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, name, NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	int r = ctx && EVP_KDF_derive(ctx, out, out_len, params) == 1 ? 0 : -EIO;
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return r;
}

static int hkdf(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
		const char *info, uint8_t *out, size_t out_len)
{
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info)),
	    OSSL_PARAM_construct_end(),
	};
	return kdf_derive("HKDF", params, out, out_len);
}

int snap_store_derive(const uint8_t dk[SNAP_STORE_KEY_SIZE],
		      const uint8_t image_id[SNAP_STORE_ID_SIZE], struct snap_store_keyset *ret)
{
	struct snap_store_keyset k;
	int r = hkdf(dk, SNAP_STORE_KEY_SIZE, image_id, SNAP_STORE_ID_SIZE,
		     "snapbundle-store-v1 frame key", k.enc, sizeof(k.enc));
	if (r == 0)
		r = hkdf(dk, SNAP_STORE_KEY_SIZE, image_id, SNAP_STORE_ID_SIZE,
			 "snapbundle-store-v1 mac key", k.mac, sizeof(k.mac));
	if (r == 0)
		*ret = k;
	OPENSSL_cleanse(&k, sizeof(k));
	return r;
}

int snap_store_random(const struct snap_store_rng *rng, const char *purpose, uint64_t index,
		      void *out, size_t len)
{
	if (!rng || !rng->seeded) {
		if (len > INT32_MAX || RAND_bytes(out, (int)len) != 1)
			return -EIO;
		return 0;
	}
	uint8_t *o = out;
	for (uint32_t ctr = 0; len > 0; ctr++) {
		uint8_t t[20], d[32];
		snap_put_le64(t, rng->seed);
		snap_put_le64(t + 8, index);
		snap_put_le32(t + 16, ctr);
		const void *parts[] = {t, purpose};
		const size_t lens[] = {sizeof(t), strlen(purpose)};
		int r = snap_store_mac(NULL, parts, lens, 2, d);
		if (r < 0)
			return r;
		size_t n = len < 32 ? len : 32;
		memcpy(o, d, n);
		o += n;
		len -= n;
	}
	return 0;
}

/* One of the two is set: a plain SHA-256, or HMAC-SHA256 under a key. */
struct snap_store_mac_ctx {
	EVP_MD_CTX *md;
	EVP_MAC *mac;
	EVP_MAC_CTX *hmac;
};

struct snap_store_mac_ctx *snap_store_mac_free(struct snap_store_mac_ctx *m)
{
	if (m) {
		EVP_MD_CTX_free(m->md);
		EVP_MAC_CTX_free(m->hmac);
		EVP_MAC_free(m->mac);
		free(m);
	}
	return NULL;
}

int snap_store_mac_new(const uint8_t *key, struct snap_store_mac_ctx **ret)
{
	struct snap_store_mac_ctx *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	int ok;
	if (!key) {
		m->md = EVP_MD_CTX_new();
		ok = m->md && EVP_DigestInit_ex(m->md, EVP_sha256(), NULL);
	} else {
		OSSL_PARAM params[] = {
		    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		    OSSL_PARAM_construct_end(),
		};
		m->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		m->hmac = m->mac ? EVP_MAC_CTX_new(m->mac) : NULL;
		ok = m->hmac && EVP_MAC_init(m->hmac, key, SNAP_STORE_KEY_SIZE, params);
	}
	if (!ok) {
		snap_store_mac_free(m);
		return -EIO;
	}
	*ret = m;
	return 0;
}

int snap_store_mac_update(struct snap_store_mac_ctx *m, const void *buf, size_t len)
{
	int ok = m->md ? EVP_DigestUpdate(m->md, buf, len) : EVP_MAC_update(m->hmac, buf, len);
	return ok ? 0 : -EIO;
}

int snap_store_mac_final(struct snap_store_mac_ctx *m, uint8_t out[SNAP_STORE_DIGEST_SIZE])
{
	int ok;
	if (m->md) {
		unsigned int l = 0;
		ok = EVP_DigestFinal_ex(m->md, out, &l) && l == SNAP_STORE_DIGEST_SIZE;
	} else {
		size_t l = 0;
		ok = EVP_MAC_final(m->hmac, out, &l, SNAP_STORE_DIGEST_SIZE) &&
		     l == SNAP_STORE_DIGEST_SIZE;
	}
	return ok ? 0 : -EIO;
}

int snap_store_mac(const uint8_t *key, const void *const *parts, const size_t *lens, size_t n,
		   uint8_t out[SNAP_STORE_DIGEST_SIZE])
{
	struct snap_store_mac_ctx *m = NULL;
	int r = snap_store_mac_new(key, &m);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = snap_store_mac_update(m, parts[i], lens[i]);
	if (r == 0)
		r = snap_store_mac_final(m, out);
	snap_store_mac_free(m);
	return r;
}

int snap_store_sha256(const void *buf, size_t len, uint8_t out[SNAP_STORE_DIGEST_SIZE])
{
	return snap_store_mac(NULL, &buf, &len, 1, out);
}

bool snap_store_ct_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

struct snap_store_cipher {
	bool keyed;
	struct snap_store_keyset keys;
	EVP_CIPHER_CTX *gcm;
	EVP_MD_CTX *md;
};

int snap_store_cipher_new(const struct snap_store_keyset *keys, struct snap_store_cipher **ret)
{
	struct snap_store_cipher *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->md = EVP_MD_CTX_new();
	if (!c->md)
		goto fail;
	if (keys) {
		c->keyed = true;
		c->keys = *keys;
		c->gcm = EVP_CIPHER_CTX_new();
		if (!c->gcm)
			goto fail;
	}
	*ret = c;
	return 0;
fail:
	snap_store_cipher_free(c);
	return -ENOMEM;
}

struct snap_store_cipher *snap_store_cipher_free(struct snap_store_cipher *c)
{
	if (!c)
		return NULL;
	EVP_CIPHER_CTX_free(c->gcm);
	EVP_MD_CTX_free(c->md);
	OPENSSL_cleanse(&c->keys, sizeof(c->keys));
	free(c);
	return NULL;
}

int snap_store_cipher_digest(struct snap_store_cipher *c, const void *payload, size_t len,
			     uint8_t out[SNAP_STORE_DIGEST_SIZE])
{
	unsigned int l = 0;
	if (!EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(c->md, payload, len) || !EVP_DigestFinal_ex(c->md, out, &l))
		return -EIO;
	return 0;
}

static int gcm_run(EVP_CIPHER_CTX *ctx, bool enc, const uint8_t *key, const uint8_t nonce[12],
		   const void *aad, size_t aad_len, uint8_t *buf, size_t len, uint8_t tag[16])
{
	int l = 0;
	if (len > INT32_MAX || aad_len > INT32_MAX)
		return -EINVAL;
	if (!EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, enc ? 1 : 0))
		return -EIO;
	if (aad_len && !EVP_CipherUpdate(ctx, NULL, &l, aad, (int)aad_len))
		return -EIO;
	if (len && !EVP_CipherUpdate(ctx, buf, &l, buf, (int)len))
		return -EIO;
	if (enc) {
		if (!EVP_CipherFinal_ex(ctx, buf + len, &l) ||
		    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag))
			return -EIO;
		return 0;
	}
	if (!EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag))
		return -EIO;
	return EVP_CipherFinal_ex(ctx, buf + len, &l) == 1 ? 0 : -EBADMSG;
}

int snap_store_cipher_seal(struct snap_store_cipher *c, const uint8_t nonce[12], const void *aad,
			   size_t aad_len, uint8_t *buf, size_t len, uint8_t tag[16])
{
	if (!c->keyed)
		return -EINVAL;
	return gcm_run(c->gcm, true, c->keys.enc, nonce, aad, aad_len, buf, len, tag);
}

int snap_store_cipher_open(struct snap_store_cipher *c, const uint8_t nonce[12], const void *aad,
			   size_t aad_len, uint8_t *buf, size_t len, const uint8_t tag[16])
{
	if (!c->keyed)
		return -EINVAL;
	uint8_t t[16];
	memcpy(t, tag, 16);
	return gcm_run(c->gcm, false, c->keys.enc, nonce, aad, aad_len, buf, len, t);
}

static bool scrypt_cost_allowed(uint64_t n, uint32_t r, uint32_t p)
{
	return n >= 2 && !(n & (n - 1)) && r >= 1 && p >= 1 && p <= SNAP_STORE_SCRYPT_MAX_P &&
	       n <= SNAP_STORE_SCRYPT_MAX_NR / r;
}

bool snap_store_slot_scrypt_allowed(const struct snap_store_keyslot *s)
{
	return scrypt_cost_allowed(s->n, s->r, s->p);
}

static int scrypt_kek(const char *pass, size_t pass_len, const uint8_t salt[32], uint64_t n,
		      uint32_t r, uint32_t p, uint8_t out[32])
{
	/* bounds keep a hostile image from choosing what we spend (store-crypto.h) */
	if (!scrypt_cost_allowed(n, r, p))
		return -EUCLEAN;
	uint64_t maxmem = 128ull * n * r * p + (64ull << 20);
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pass, pass_len),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, 32),
	    OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
	    OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
	    OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
	    OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
	    OSSL_PARAM_construct_end(),
	};
	return kdf_derive("SCRYPT", params, out, 32);
}

int snap_store_slot_scrypt_make(const char *pass, size_t pass_len,
				const uint8_t dk[SNAP_STORE_KEY_SIZE],
				const uint8_t image_id[SNAP_STORE_ID_SIZE],
				const struct snap_store_rng *rng, uint64_t n_cost,
				struct snap_store_keyslot *ret)
{
	struct snap_store_keyslot s = {.type = SNAP_STORE_SLOT_SCRYPT, .n = n_cost, .r = 8, .p = 1};
	uint8_t kek[32];
	int r = snap_store_random(rng, "scrypt salt", 0, s.salt, sizeof(s.salt));
	if (r == 0)
		r = snap_store_random(rng, "key wrap nonce", 0, s.nonce, sizeof(s.nonce));
	if (r == 0)
		r = scrypt_kek(pass, pass_len, s.salt, s.n, s.r, s.p, kek);
	if (r == 0) {
		EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
		memcpy(s.wrapped, dk, SNAP_STORE_KEY_SIZE);
		r = ctx ? gcm_run(ctx, true, kek, s.nonce, image_id, SNAP_STORE_ID_SIZE, s.wrapped,
				  SNAP_STORE_KEY_SIZE, s.tag)
			: -ENOMEM;
		EVP_CIPHER_CTX_free(ctx);
	}
	OPENSSL_cleanse(kek, sizeof(kek));
	if (r == 0)
		*ret = s;
	return r;
}

int snap_store_slot_scrypt_open(const struct snap_store_keyslot *s, const char *pass,
				size_t pass_len, const uint8_t image_id[SNAP_STORE_ID_SIZE],
				uint8_t ret_dk[SNAP_STORE_KEY_SIZE])
{
	uint8_t kek[32], dk[32], tag[16];
	int r = scrypt_kek(pass, pass_len, s->salt, s->n, s->r, s->p, kek);
	if (r < 0)
		return r;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	memcpy(dk, s->wrapped, 32);
	memcpy(tag, s->tag, 16);
	r = ctx ? gcm_run(ctx, false, kek, s->nonce, image_id, SNAP_STORE_ID_SIZE, dk, 32, tag)
		: -ENOMEM;
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(kek, sizeof(kek));
	if (r == -EBADMSG)
		r = -EKEYREJECTED;
	if (r == 0)
		memcpy(ret_dk, dk, 32);
	OPENSSL_cleanse(dk, sizeof(dk));
	return r;
}

/* The DER SubjectPublicKeyInfo of pk, malloc'd: how a key is named and carried (key_id, spki). */
static int spki_der(EVP_PKEY *pk, uint8_t **ret, size_t *ret_len)
{
	int n = i2d_PUBKEY(pk, NULL);
	if (n <= 0)
		return -EIO;
	uint8_t *der = malloc((size_t)n), *p = der;
	if (!der)
		return -ENOMEM;
	if (i2d_PUBKEY(pk, &p) != n) {
		free(der);
		return -EIO;
	}
	*ret = der;
	*ret_len = (size_t)n;
	return 0;
}

static int pubkey_id(EVP_PKEY *pk, uint8_t out[32])
{
	uint8_t *der;
	size_t n;
	int r = spki_der(pk, &der, &n);
	if (r < 0)
		return r;
	r = snap_store_sha256(der, n, out);
	free(der);
	return r;
}

static EVP_PKEY_CTX *oaep_ctx(EVP_PKEY *pk, bool enc)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
	if (!ctx)
		return NULL;
	if ((enc ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int snap_store_slot_rsa_make(const void *cert_pem, size_t len,
			     const uint8_t dk[SNAP_STORE_KEY_SIZE], struct snap_store_keyslot *ret,
			     const char **ret_detail)
{
	struct snap_store_keyslot s = {.type = SNAP_STORE_SLOT_RSA_OAEP};
	BIO *bio = BIO_new_mem_buf(cert_pem, (int)len);
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	EVP_PKEY *pk = x ? X509_get_pubkey(x) : NULL;
	EVP_PKEY_CTX *ctx = NULL;
	int r = -EINVAL;
	if (!pk) {
		*ret_detail = "not a PEM X.509 certificate";
		goto out;
	}
	if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		*ret_detail = "certificate key is not RSA";
		goto out;
	}
	r = -EIO;
	*ret_detail = "RSA-OAEP encryption failed";
	if (pubkey_id(pk, s.key_id) < 0 || !(ctx = oaep_ctx(pk, true)))
		goto out;
	size_t outlen = 0;
	if (EVP_PKEY_encrypt(ctx, NULL, &outlen, dk, SNAP_STORE_KEY_SIZE) != 1 || outlen > 2048 ||
	    !(s.rsa = malloc(outlen)))
		goto out;
	if (EVP_PKEY_encrypt(ctx, s.rsa, &outlen, dk, SNAP_STORE_KEY_SIZE) != 1) {
		free(s.rsa);
		goto out;
	}
	s.rsa_len = outlen;
	*ret = s;
	r = 0;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(bio);
	return r;
}

int snap_store_slots_rsa_open(const struct snap_store_keys *k, const void *key_pem, size_t len,
			      uint8_t ret_dk[SNAP_STORE_KEY_SIZE], const char **ret_detail)
{
	BIO *bio = BIO_new_mem_buf(key_pem, (int)len);
	EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	EVP_PKEY_CTX *ctx = NULL;
	/* OpenSSL wants room for a whole modulus: slots hold up to 2048 bytes (16384-bit keys);
	 * 512 made every key above 4096 bits fail to open its own slot */
	uint8_t id[32], dk[2048];
	int r = -EINVAL;
	*ret_detail = "not a PEM private key";
	if (!pk || pubkey_id(pk, id) < 0)
		goto out;
	r = -ENOKEY;
	*ret_detail = "the key is not one of the image's recipients";
	for (size_t i = 0; i < k->nslots; i++) {
		const struct snap_store_keyslot *s = &k->slots[i];
		if (s->type != SNAP_STORE_SLOT_RSA_OAEP || memcmp(s->key_id, id, 32) != 0)
			continue;
		size_t outlen = sizeof(dk);
		r = -EKEYREJECTED;
		*ret_detail = "the key does not decrypt its recipient slot";
		if (!(ctx = oaep_ctx(pk, false)))
			goto out;
		if (EVP_PKEY_decrypt(ctx, dk, &outlen, s->rsa, s->rsa_len) == 1 &&
		    outlen == SNAP_STORE_KEY_SIZE) {
			memcpy(ret_dk, dk, SNAP_STORE_KEY_SIZE);
			r = 0;
		}
		break;
	}
out:
	OPENSSL_cleanse(dk, sizeof(dk));
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	return r;
}

static bool is_raw_signer(EVP_PKEY *pk)
{
	int id = EVP_PKEY_get_base_id(pk);
	return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448;
}

int snap_store_sign(const void *key_pem, size_t key_len, const void *msg, size_t msg_len,
		    uint8_t **ret_sig, size_t *ret_sig_len, uint8_t **ret_spki,
		    size_t *ret_spki_len, const char **ret_detail)
{
	BIO *bio = BIO_new_mem_buf(key_pem, (int)key_len);
	EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	EVP_MD_CTX *ctx = NULL;
	uint8_t *sig = NULL;
	size_t sl = 0;
	int r = -EINVAL;
	*ret_detail = "not a PEM private key";
	if (!pk)
		goto out;
	r = -EIO;
	*ret_detail = "signing failed";
	ctx = EVP_MD_CTX_new();
	if (!ctx ||
	    EVP_DigestSignInit(ctx, NULL, is_raw_signer(pk) ? NULL : EVP_sha256(), NULL, pk) != 1 ||
	    EVP_DigestSign(ctx, NULL, &sl, msg, msg_len) != 1 || !(sig = malloc(sl)) ||
	    EVP_DigestSign(ctx, sig, &sl, msg, msg_len) != 1)
		goto out;
	r = spki_der(pk, ret_spki, ret_spki_len);
	if (r < 0)
		goto out;
	*ret_sig = sig;
	*ret_sig_len = sl;
	sig = NULL;
out:
	free(sig);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	return r;
}

int snap_store_verify(const uint8_t *spki, size_t spki_len, const void *msg, size_t msg_len,
		      const uint8_t *sig, size_t sig_len)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)spki_len);
	if (!pk || p != spki + spki_len) {
		EVP_PKEY_free(pk);
		return -EUCLEAN;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int r = -EBADMSG;
	if (ctx &&
	    EVP_DigestVerifyInit(ctx, NULL, is_raw_signer(pk) ? NULL : EVP_sha256(), NULL, pk) ==
		1 &&
	    EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1)
		r = 0;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return r;
}

int snap_store_spki_from_pem(const void *pem, size_t len, uint8_t **ret, size_t *ret_len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *pk = NULL;
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	if (x) {
		pk = X509_get_pubkey(x);
	} else if (bio) {
		BIO_reset(bio);
		pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		if (!pk) {
			BIO_reset(bio);
			pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		}
	}
	/* any failure, allocation included, reads as a key that is not there */
	int r = pk && spki_der(pk, ret, ret_len) == 0 ? 0 : -EINVAL;
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(bio);
	return r;
}

int snap_store_signed_message(const uint8_t header[SNAP_STORE_HEADER_SIZE], const uint8_t *keys,
			      size_t keys_len, const uint8_t *meta, size_t meta_len,
			      const uint8_t *index, size_t index_len,
			      uint8_t out[SNAP_STORE_SIGNED_MSG_SIZE])
{
	uint8_t d[SNAP_STORE_DIGEST_SIZE];
	int r = snap_store_sha256(index, index_len, d);
	if (r == 0)
		r = snap_store_signed_message_digest(header, keys, keys_len, meta, meta_len, d,
						     out);
	return r;
}

int snap_store_signed_message_digest(const uint8_t header[SNAP_STORE_HEADER_SIZE],
				     const uint8_t *keys, size_t keys_len, const uint8_t *meta,
				     size_t meta_len,
				     const uint8_t index_digest[SNAP_STORE_DIGEST_SIZE],
				     uint8_t out[SNAP_STORE_SIGNED_MSG_SIZE])
{
	size_t l = sizeof(SNAP_STORE_SIGNATURE_LABEL) - 1;
	memcpy(out, SNAP_STORE_SIGNATURE_LABEL, l);
	memcpy(out + l, header, SNAP_STORE_HEADER_SIZE);
	uint8_t *d = out + l + SNAP_STORE_HEADER_SIZE;
	const void *p[] = {keys ? (const void *)keys : (const void *)"", meta};
	const size_t n[] = {keys ? keys_len : 0, meta_len};
	for (int i = 0; i < 2; i++) {
		int r = snap_store_mac(NULL, &p[i], &n[i], 1, d + 32 * i);
		if (r < 0)
			return r;
	}
	memcpy(d + 64, index_digest, SNAP_STORE_DIGEST_SIZE);
	return 0;
}
