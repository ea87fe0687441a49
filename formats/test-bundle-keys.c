// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-bundle-keys.c - key material against the openssl CLI: the wrapped key decrypts with
 * `openssl pkeyutl -decrypt` to the 32-character lowercase hex text, the signature verifies
 * with `openssl dgst -sha1 -verify`, PKCS#1 and PKCS#8 keys both load, a non-certificate is
 * refused. Unwrap and verify are the inverses of wrap and sign (round trips, PKCS#1 and PKCS#8,
 * certificate and bare public key), and a wrong key or a tampered text or ciphertext fails with
 * a message naming it.
 */
#include <ctype.h>
#include <stdbool.h>

#include <openssl/evp.h>

#include "bundle-keys.h"
#include "test-util.h"

static uint8_t *unhex(const char *hex, size_t *ret_len)
{
	size_t n = strlen(hex) / 2;
	uint8_t *b = malloc(n);
	REQUIRE(b != NULL);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		REQUIRE(sscanf(hex + 2 * i, "%2x", &v) == 1);
		b[i] = (uint8_t)v;
	}
	*ret_len = n;
	return b;
}

static void hex_to_file(const char *hex, const char *path)
{
	size_t n;
	uint8_t *b = unhex(hex, &n);
	test_write_file(path, b, n);
	free(b);
}

/* wrap then unwrap, sign then verify, and their failures */
static void test_roundtrip(const char *dir, EVP_PKEY *pub, const char *cert, size_t cert_len)
{
	struct snap_bundle_key k;
	REQUIRE(snap_bundle_key_generate(&k) == 0);
	char *wk, *wi;
	REQUIRE(snap_rsa_encrypt_hex(pub, k.key_hex, 32, &wk) == 0);
	REQUIRE(snap_rsa_encrypt_hex(pub, k.iv_hex, 32, &wi) == 0);
	size_t lk, li;
	uint8_t *bk = unhex(wk, &lk), *bi = unhex(wi, &li);
	char p[512], why[512];
	size_t len;
	static const char *const keys[] = {"pk8.pem", "pk1.pem"};
	const char *text = "<machine_configuration>x</machine_configuration><image>y</image>";
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, keys[i]);
		char *kp = test_read_file(p, &len);
		uint8_t key[16], iv[16];
		REQUIRE(snap_bundle_key_unwrap(kp, len, bk, lk, bi, li, key, iv, "k.pem", why,
					     sizeof(why)) == 0);
		REQUIRE(!memcmp(key, k.key, 16) && !memcmp(iv, k.iv, 16));
		/* key and IV swapped decrypt, but to the other value */
		REQUIRE(snap_bundle_key_unwrap(kp, len, bi, li, bk, lk, key, iv, "k.pem", why,
					     sizeof(why)) == 0);
		REQUIRE(!memcmp(key, k.iv, 16) && !memcmp(iv, k.key, 16));
		/* a tampered ciphertext */
		bi[li / 2] ^= 1;
		REQUIRE(snap_bundle_key_unwrap(kp, len, bk, lk, bi, li, key, iv, "k.pem", why,
					     sizeof(why)) == -EKEYREJECTED);
		REQUIRE(strstr(why, "user_encrypted_iv") && strstr(why, "wrong private key"));
		bi[li / 2] ^= 1;
		REQUIRE(snap_bundle_key_unwrap(kp, len, bk, lk - 1, bi, li, key, iv, "k.pem", why,
					     sizeof(why)) == -EKEYREJECTED);
		REQUIRE(strstr(why, "user_encrypted_key") != NULL);

		EVP_PKEY *priv;
		REQUIRE(snap_pem_private_key(kp, len, &priv) == 0);
		char *sig;
		REQUIRE(snap_rsa_sign_sha1_hex(priv, text, strlen(text), &sig) == 0);
		size_t sl;
		uint8_t *bs = unhex(sig, &sl);
		const char *detail;
		REQUIRE(snap_bundle_verify_signature(cert, cert_len, bs, sl, text, strlen(text),
						   &detail) == 0);
		snprintf(p, sizeof(p), "%s/pub.pem", dir);
		char *pubpem = test_read_file(p, &len);
		REQUIRE(snap_bundle_verify_signature(pubpem, len, bs, sl, text, strlen(text),
						   &detail) == 0);
		/* a tampered text, a tampered signature, no signature */
		REQUIRE(snap_bundle_verify_signature(cert, cert_len, bs, sl, text, strlen(text) - 1,
						   &detail) == -EBADMSG);
		bs[7] ^= 0x10;
		REQUIRE(snap_bundle_verify_signature(cert, cert_len, bs, sl, text, strlen(text),
						   &detail) == -EBADMSG);
		REQUIRE(snap_bundle_verify_signature(cert, cert_len, NULL, 0, text, strlen(text),
						   &detail) == -EBADMSG);
		REQUIRE(snap_bundle_verify_signature("junk", 4, bs, sl, text, strlen(text),
						   &detail) == -EINVAL);
		REQUIRE(detail != NULL);
		free(pubpem);
		free(bs);
		free(sig);
		EVP_PKEY_free(priv);
		free(kp);
	}
	/* the wrong key: another RSA key; not a key at all */
	snprintf(p, sizeof(p), "%s/other.pem", dir);
	char *op = test_read_file(p, &len);
	uint8_t key[16], iv[16];
	REQUIRE(snap_bundle_key_unwrap(op, len, bk, lk, bi, li, key, iv, "other.pem", why,
				     sizeof(why)) == -EKEYREJECTED);
	REQUIRE(strstr(why, "cannot decrypt the manifest's user_encrypted_key with other.pem") ==
	      why);
	REQUIRE(snap_bundle_key_unwrap(cert, cert_len, bk, lk, bi, li, key, iv, "cert.pem", why,
				     sizeof(why)) == -EINVAL);
	REQUIRE(strstr(why, "cert.pem is not an unencrypted PEM private key") == why);
	/* signed by the other key: does not verify under the certificate */
	EVP_PKEY *other;
	REQUIRE(snap_pem_private_key(op, len, &other) == 0);
	char *sig;
	REQUIRE(snap_rsa_sign_sha1_hex(other, text, strlen(text), &sig) == 0);
	size_t sl;
	uint8_t *bs = unhex(sig, &sl);
	const char *detail;
	REQUIRE(snap_bundle_verify_signature(cert, cert_len, bs, sl, text, strlen(text), &detail) ==
	      -EBADMSG);
	free(bs);
	free(sig);
	EVP_PKEY_free(other);
	free(op);
	free(bk);
	free(bi);
	free(wk);
	free(wi);
}

int main(void)
{
	if (!test_have("openssl"))
		return 77;
	const char *dir = test_mkdir();
	REQUIRE(
	    test_sh(
		"cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout pk8.pem "
		"-out cert.pem -days 1 -subj /CN=test 2>/dev/null && "
		"openssl rsa -in pk8.pem -traditional -out pk1.pem 2>/dev/null && "
		"openssl x509 -in cert.pem -pubkey -noout > pub.pem && "
		"openssl genrsa -out other.pem 2048 2>/dev/null && "
		"openssl ecparam -name prime256v1 -genkey -noout -out ec.pem 2>/dev/null && "
		"openssl req -x509 -key ec.pem -out eccert.pem -days 1 -subj /CN=ec 2>/dev/null",
		dir) == 0);
	char p[512];
	size_t len;

	struct snap_bundle_key k, k2;
	REQUIRE(snap_bundle_key_generate(&k) == 0);
	REQUIRE(snap_bundle_key_generate(&k2) == 0);
	REQUIRE(strlen(k.key_hex) == 32 && strlen(k.iv_hex) == 32);
	REQUIRE(strcmp(k.key_hex, k2.key_hex) && strcmp(k.key_hex, k.iv_hex));
	for (int i = 0; i < 32; i++)
		REQUIRE(isxdigit((unsigned char)k.key_hex[i]) &&
		      !isupper((unsigned char)k.key_hex[i]));
	char hx[33];
	snap_hex(hx, k.key, 16);
	REQUIRE(!strcmp(hx, k.key_hex));

	snprintf(p, sizeof(p), "%s/cert.pem", dir);
	char *pem = test_read_file(p, &len);
	EVP_PKEY *pub;
	REQUIRE(snap_pem_cert_public_key(pem, len, &pub) == 0);
	EVP_PKEY *bad;
	REQUIRE(snap_pem_cert_public_key("junk", 4, &bad) == -EBADMSG);

	char *wrapped;
	REQUIRE(snap_rsa_encrypt_hex(pub, k.key_hex, 32, &wrapped) == 0);
	REQUIRE(strlen(wrapped) == 512); /* modulus-sized: 2048 bits */
	snprintf(p, sizeof(p), "%s/wrapped.bin", dir);
	hex_to_file(wrapped, p);
	REQUIRE(
	    test_sh("cd '%s' && openssl pkeyutl -decrypt -inkey pk8.pem -in wrapped.bin "
		    "-pkeyopt rsa_padding_mode:pkcs1 > key.txt && printf %%s '%s' | cmp - key.txt",
		    dir, k.key_hex) == 0);

	static const char *const keys[] = {"pk8.pem", "pk1.pem"};
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, keys[i]);
		char *kp = test_read_file(p, &len);
		EVP_PKEY *priv;
		REQUIRE(snap_pem_private_key(kp, len, &priv) == 0);
		const char *text =
		    "<machine_configuration>x</machine_configuration><image>y</image>";
		char *sig;
		REQUIRE(snap_rsa_sign_sha1_hex(priv, text, strlen(text), &sig) == 0);
		REQUIRE(strlen(sig) == 512);
		snprintf(p, sizeof(p), "%s/text", dir);
		test_write_file(p, text, strlen(text));
		snprintf(p, sizeof(p), "%s/sig.bin", dir);
		hex_to_file(sig, p);
		REQUIRE(
		    test_sh("cd '%s' && openssl dgst -sha1 -verify pub.pem -signature sig.bin text "
			    "| grep -q 'Verified OK'",
			    dir) == 0);
		/* and a changed text does not verify */
		REQUIRE(test_sh("cd '%s' && printf x >> text && ! openssl dgst -sha1 -verify pub.pem "
			      "-signature sig.bin text >/dev/null 2>&1",
			      dir) == 0);
		free(sig);
		EVP_PKEY_free(priv);
		free(kp);
	}
	EVP_PKEY *priv;
	REQUIRE(snap_pem_private_key(pem, strlen(pem), &priv) == -EBADMSG);
	/* an EC key is a key, but not one a bundle can use */
	static const char *const ec[] = {"ec.pem", "eccert.pem"};
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, ec[i]);
		char *e = test_read_file(p, &len);
		REQUIRE((i ? snap_pem_cert_public_key(e, len, &bad)
			   : snap_pem_private_key(e, len, &bad)) == -EOPNOTSUPP);
		free(e);
	}
	test_roundtrip(dir, pub, pem, strlen(pem));
	free(wrapped);
	EVP_PKEY_free(pub);
	free(pem);
	printf("ok\n");
	return 0;
}
