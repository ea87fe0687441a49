// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-bundle-keys.c - key material against the openssl CLI: the wrapped key decrypts with
 * `openssl pkeyutl -decrypt` to the 32-character lowercase hex text, the signature verifies
 * with `openssl dgst -sha1 -verify`, PKCS#1 and PKCS#8 keys both load, a non-certificate is
 * refused.
 */
#include <ctype.h>
#include <stdbool.h>

#include <openssl/evp.h>

#include "bundle-keys.h"
#include "test-util.h"

static void hex_to_file(const char *hex, const char *path)
{
	size_t n = strlen(hex) / 2;
	uint8_t *b = malloc(n);
	REQUIRE(b != NULL);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		REQUIRE(sscanf(hex + 2 * i, "%2x", &v) == 1);
		b[i] = (uint8_t)v;
	}
	test_write_file(path, b, n);
	free(b);
}

int main(void)
{
	if (!test_have("openssl"))
		return 77;
	const char *dir = test_mkdir();
	REQUIRE(test_sh("cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout pk8.pem "
		      "-out cert.pem -days 1 -subj /CN=test 2>/dev/null && "
		      "openssl rsa -in pk8.pem -traditional -out pk1.pem 2>/dev/null && "
		      "openssl x509 -in cert.pem -pubkey -noout > pub.pem",
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
	free(wrapped);
	EVP_PKEY_free(pub);
	free(pem);
	printf("ok\n");
	return 0;
}
