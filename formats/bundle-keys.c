// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bundle-keys.c - key generation, key wrapping and signing for classic bundles, and the
 * AES-128-CBC of their parts (see bundle-keys.h). OpenSSL errors are translated here: the
 * caller gets -errno only, and the reason as text (snap_ossl_reason).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "bundle-keys.h"

int snap_bundle_key_generate(struct snap_bundle_key *ret)
{
	struct snap_bundle_key k;
	if (RAND_bytes(k.key, sizeof(k.key)) != 1 || RAND_bytes(k.iv, sizeof(k.iv)) != 1) {
		ERR_clear_error();
		return -EIO;
	}
	snap_hex(k.key_hex, k.key, sizeof(k.key));
	snap_hex(k.iv_hex, k.iv, sizeof(k.iv));
	*ret = k;
	OPENSSL_cleanse(&k, sizeof(k));
	return 0;
}

/* The RSA key of a PEM certificate (cert) or private key: -EBADMSG when there is none, and
 * -EOPNOTSUPP for another kind of key. */
static int pem_rsa_key(const void *pem, size_t len, bool cert, EVP_PKEY **ret)
{
	if (len > INT32_MAX)
		return -EINVAL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	EVP_PKEY *key;
	if (cert) {
		X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		key = x ? X509_get_pubkey(x) : NULL;
		X509_free(x);
	} else {
		/* an empty passphrase callback result: encrypted keys fail instead of prompting */
		key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
	}
	BIO_free(bio);
	if (!key) {
		ERR_clear_error();
		return -EBADMSG;
	}
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
		EVP_PKEY_free(key);
		return -EOPNOTSUPP;
	}
	*ret = key;
	return 0;
}

int snap_pem_cert_public_key(const void *pem, size_t len, EVP_PKEY **ret)
{
	return pem_rsa_key(pem, len, true, ret);
}

int snap_pem_private_key(const void *pem, size_t len, EVP_PKEY **ret)
{
	return pem_rsa_key(pem, len, false, ret);
}

/* RSA PKCS#1 v1.5 of in under key, in hex: a signature of its SHA-1 (sign), or its encryption.
 * The one-shot is called twice: the first call sizes the output, the second makes it. */
static int rsa_pkcs1_hex(EVP_PKEY *key, bool sign, const void *in, size_t len, char **ret_hex)
{
	EVP_MD_CTX *md = sign ? EVP_MD_CTX_new() : NULL;
	/* a signing context belongs to md */
	EVP_PKEY_CTX *ctx = sign ? NULL : EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	if (!md && !ctx)
		return -ENOMEM;
	int r = -EIO;
	uint8_t *out = NULL;
	size_t outlen = 0;
	if ((sign ? EVP_DigestSignInit_ex(md, &ctx, "SHA1", NULL, NULL, key, NULL)
		  : EVP_PKEY_encrypt_init(ctx)) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
		goto out;
	for (int pass = 0; pass < 2; pass++) {
		if ((sign ? EVP_DigestSign(md, out, &outlen, in, len)
			  : EVP_PKEY_encrypt(ctx, out, &outlen, in, len)) <= 0)
			goto out;
		if (!out && !(out = malloc(outlen))) {
			r = -ENOMEM;
			goto out;
		}
	}
	char *hex = malloc(2 * outlen + 1);
	if (!hex) {
		r = -ENOMEM;
		goto out;
	}
	snap_hex(hex, out, outlen);
	*ret_hex = hex;
	r = 0;
out:
	if (r == -EIO)
		ERR_clear_error();
	free(out);
	if (md)
		EVP_MD_CTX_free(md);
	else
		EVP_PKEY_CTX_free(ctx);
	return r;
}

int snap_rsa_encrypt_hex(EVP_PKEY *pub, const void *text, size_t len, char **ret_hex)
{
	return rsa_pkcs1_hex(pub, false, text, len, ret_hex);
}

int snap_rsa_sign_sha1_hex(EVP_PKEY *key, const void *data, size_t len, char **ret_hex)
{
	return rsa_pkcs1_hex(key, true, data, len, ret_hex);
}

const char *snap_ossl_reason(void)
{
	static __thread char msg[160];
	unsigned long e = ERR_peek_last_error();
	if (!e)
		snprintf(msg, sizeof(msg), "unknown OpenSSL error");
	else
		ERR_error_string_n(e, msg, sizeof(msg));
	ERR_clear_error();
	return msg;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Decrypts one wrapped value: RSA PKCS#1 v1.5 of a 32-character hex string (§4). */
static int unwrap(EVP_PKEY *pkey, const char *key_name, const char *what, const uint8_t *ct,
		  size_t ctlen, uint8_t out[16], char *why, size_t why_size)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	uint8_t plain[1024];
	size_t plen = sizeof(plain);
	int r = 0;
	if (!ctx || EVP_PKEY_decrypt_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1) {
		snprintf(why, why_size, "%s is not an RSA private key: %s", key_name,
			 snap_ossl_reason());
		r = -EINVAL;
		goto out;
	}
	if (!ct || (size_t)EVP_PKEY_get_size(pkey) != ctlen ||
	    EVP_PKEY_decrypt(ctx, plain, &plen, ct, ctlen) != 1) {
		ERR_clear_error();
		snprintf(why, why_size,
			 "cannot decrypt the manifest's %s with %s: wrong private key (it must be "
			 "the one of the certificate the bundle was made for)",
			 what, key_name);
		r = -EKEYREJECTED;
		goto out;
	}
	bool ok = plen == 32;
	for (size_t i = 0; ok && i < 32; i++)
		ok = (plain[i] >= '0' && plain[i] <= '9') || (plain[i] >= 'a' && plain[i] <= 'f') ||
		     (plain[i] >= 'A' && plain[i] <= 'F');
	if (!ok) {
		snprintf(why, why_size,
			 "the manifest's %s decrypted with %s is not 32 hex characters: wrong "
			 "private key",
			 what, key_name);
		r = -EKEYREJECTED;
		goto out;
	}
	for (size_t i = 0; i < 16; i++) {
		char h[3] = {(char)plain[2 * i], (char)plain[2 * i + 1], 0};
		out[i] = (uint8_t)strtoul(h, NULL, 16);
	}
out:
	OPENSSL_cleanse(plain, sizeof(plain));
	EVP_PKEY_CTX_free(ctx);
	return r;
}

int snap_bundle_key_unwrap(const void *key_pem, size_t pem_len, const uint8_t *enc_key,
			   size_t enc_key_len, const uint8_t *enc_iv, size_t enc_iv_len,
			   uint8_t key[16], uint8_t iv[16], const char *key_name, char *why,
			   size_t why_size)
{
	if (pem_len > INT32_MAX) {
		snprintf(why, why_size, "%s is too large", key_name);
		return -EINVAL;
	}
	BIO *bio = BIO_new_mem_buf(key_pem, (int)pem_len);
	if (!bio) {
		snprintf(why, why_size, "out of memory");
		return -ENOMEM;
	}
	EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (!pkey) {
		snprintf(why, why_size, "%s is not an unencrypted PEM private key: %s", key_name,
			 snap_ossl_reason());
		return -EINVAL;
	}
	int r = unwrap(pkey, key_name, "user_encrypted_key", enc_key, enc_key_len, key, why,
		       why_size);
	if (r >= 0)
		r = unwrap(pkey, key_name, "user_encrypted_iv", enc_iv, enc_iv_len, iv, why,
			   why_size);
	EVP_PKEY_free(pkey);
	return r;
}

int snap_bundle_verify_signature(const void *cert_pem, size_t pem_len, const uint8_t *sig,
				 size_t sig_len, const void *text, size_t text_len,
				 const char **ret_detail)
{
	*ret_detail = NULL;
	if (pem_len > INT32_MAX)
		return -EINVAL;
	BIO *bio = BIO_new_mem_buf(cert_pem, (int)pem_len);
	if (!bio)
		return -ENOMEM;
	EVP_PKEY *pkey = NULL;
	X509 *x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	if (x) {
		pkey = X509_get_pubkey(x);
		X509_free(x);
	} else {
		/* a bare public key is accepted too */
		ERR_clear_error();
		(void)BIO_reset(bio);
		pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	}
	BIO_free(bio);
	if (!pkey) {
		*ret_detail = snap_ossl_reason();
		return -EINVAL;
	}
	int r = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md) {
		r = -ENOMEM;
		goto out;
	}
	int ok = sig && EVP_DigestVerifyInit(md, NULL, EVP_sha1(), NULL, pkey) == 1 &&
		 EVP_DigestVerify(md, sig, sig_len, text, text_len) == 1;
	EVP_MD_CTX_free(md);
	if (!ok) {
		ERR_clear_error();
		r = -EBADMSG;
	}
out:
	EVP_PKEY_free(pkey);
	return r;
}

int snap_bundle_cbc_decrypt(EVP_CIPHER_CTX *ctx, const uint8_t key[16], const uint8_t iv[16],
			    uint8_t *data, size_t n)
{
	int outl = 0;
	if (n == 0)
		return 0;
	if (!EVP_DecryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key, iv) ||
	    !EVP_CIPHER_CTX_set_padding(ctx, 0) ||
	    !EVP_DecryptUpdate(ctx, data, &outl, data, (int)n) || (size_t)outl != n)
		return -EIO;
	return 0;
}

/* PKCS#7: the last plaintext byte n (1..16) and n bytes equal to it. */
int snap_bundle_cbc_unpad(const uint8_t *head, size_t *head_len, const uint8_t *body,
			  size_t *body_len)
{
	size_t hl = *head_len, bl = *body_len, total = hl + bl;
	uint8_t tail[16];
	if (total < 16)
		return -EUCLEAN;
	for (size_t i = 0; i < 16; i++) {
		size_t at = total - 16 + i;
		tail[i] = at < hl ? head[at] : body[at - hl];
	}
	uint8_t n = tail[15];
	bool ok = n >= 1 && n <= 16;
	for (size_t i = 16 - (ok ? n : 0); ok && i < 16; i++)
		ok = tail[i] == n;
	if (!ok)
		return -EBADMSG;
	if (n <= bl) {
		*body_len = bl - n;
	} else {
		*head_len = hl - (n - bl);
		*body_len = 0;
	}
	return 0;
}
