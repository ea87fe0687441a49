// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bundle-keys.c - key generation, key wrapping and signing for classic bundles (see
 * bundle-keys.h). OpenSSL errors are translated here: the caller gets -errno only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "bundle-keys.h"

void snap_hex(char *out, const uint8_t *bin, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bin[i] >> 4];
		out[2 * i + 1] = digits[bin[i] & 15];
	}
	out[2 * len] = 0;
}

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

int snap_pem_cert_public_key(const void *pem, size_t len, EVP_PKEY **ret)
{
	if (len > INT32_MAX)
		return -EINVAL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!cert) {
		ERR_clear_error();
		return -EBADMSG;
	}
	EVP_PKEY *key = X509_get_pubkey(cert);
	X509_free(cert);
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

int snap_pem_private_key(const void *pem, size_t len, EVP_PKEY **ret)
{
	if (len > INT32_MAX)
		return -EINVAL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	/* an empty passphrase callback result: encrypted keys fail instead of prompting */
	EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
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

static int to_hex(const uint8_t *bin, size_t len, char **ret_hex)
{
	char *hex = malloc(2 * len + 1);
	if (!hex)
		return -ENOMEM;
	snap_hex(hex, bin, len);
	*ret_hex = hex;
	return 0;
}

int snap_rsa_encrypt_hex(EVP_PKEY *pub, const void *text, size_t len, char **ret_hex)
{
	int r = -EIO;
	uint8_t *out = NULL;
	size_t outlen = 0;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
	if (!ctx)
		return -ENOMEM;
	if (EVP_PKEY_encrypt_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_PKEY_encrypt(ctx, NULL, &outlen, text, len) <= 0)
		goto out;
	out = malloc(outlen);
	if (!out) {
		r = -ENOMEM;
		goto out;
	}
	if (EVP_PKEY_encrypt(ctx, out, &outlen, text, len) <= 0)
		goto out;
	r = to_hex(out, outlen, ret_hex);
out:
	if (r == -EIO)
		ERR_clear_error();
	free(out);
	EVP_PKEY_CTX_free(ctx);
	return r;
}

int snap_rsa_sign_sha1_hex(EVP_PKEY *key, const void *data, size_t len, char **ret_hex)
{
	int r = -EIO;
	uint8_t *sig = NULL;
	size_t siglen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	if (!md)
		return -ENOMEM;
	if (EVP_DigestSignInit_ex(md, &pctx, "SHA1", NULL, NULL, key, NULL) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_DigestSign(md, NULL, &siglen, data, len) <= 0)
		goto out;
	sig = malloc(siglen);
	if (!sig) {
		r = -ENOMEM;
		goto out;
	}
	if (EVP_DigestSign(md, sig, &siglen, data, len) <= 0)
		goto out;
	r = to_hex(sig, siglen, ret_hex);
out:
	if (r == -EIO)
		ERR_clear_error();
	free(sig);
	EVP_MD_CTX_free(md);
	return r;
}
