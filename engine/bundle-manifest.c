// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bundle-manifest.c - the classic bundle manifest on the engine side (classic-bundle-format.md
 * §2-4): the keys it is signed and wrapped with, what it needs checked before any data moves,
 * its building and signing for the bundle job (bundle.c) and for a migration (migrate.c), and
 * its checking for unbundle and inspect (unbundle.c): signature, key, fields as JSON; the key
 * is also unwrapped for a migration and for download-bundle -k (s3-bundle.c). Its GET from a
 * bucket (unbundle.c through bundle-parts.c, s3-bundle.c, migrate.c) and its parsing
 * (s3-bundle.c, migrate.c) fail with messages that name it. The document's bytes are
 * formats/manifest-write.c's; its parsing is formats/manifest-read.c's.
 *
 * Invariants:
 *  1. The manifest is signed with the private key and checked with the certificate: a pair
 *     that does not match fails the job when the keys are read (snap_bundle_signer_load),
 *     before any data moves, since it would make a manifest no one can verify.
 *  2. The AES key and IV are wrapped four times (key and IV, each for the EC2 certificate and
 *     for the user's) and signed over exactly the text the document holds
 *     (manifest-write.h invariant 4): one path for a new bundle and a migrated one
 *     (snap_bundle_manifest_sign).
 *  3. Private keys' PEM text and unwrapped keys are cleansed before their memory is freed.
 *  4. Every failure fails the job with a message naming the file or the manifest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "bundle-manifest.h"
#include "hex.h"
#include "job-internal.h"
#include "s3.h"

#define BUNDLER_NAME "snapbundle"

int snap_bundle_signer_load(struct snap_job *job, size_t max, bool keep_pem,
			    const char *signed_what, struct snap_bundle_signer *s)
{
	const char *cert = snap_job_string(job, SNAP_SPARAM_CERT);
	const char *ec2 = snap_job_string(job, SNAP_SPARAM_EC2_CERT);
	const char *pk = snap_job_string(job, SNAP_SPARAM_PRIVATE_KEY);
	if (!cert || !*cert)
		return snap_job_fail(job, -EINVAL, "no user certificate given");
	if (!ec2 || !*ec2)
		return snap_job_fail(job, -EINVAL, "no EC2 certificate given");
	if (!pk || !*pk)
		return snap_job_fail(job, -EINVAL, "no private key given");
	const struct {
		const char *path, *what;
		EVP_PKEY **key;
		bool priv;
	} files[] = {
	    {cert, "certificate", &s->user_pub, false},
	    {ec2, "EC2 certificate", &s->ec2_pub, false},
	    {pk, "private key", &s->priv, true},
	};
	for (size_t i = 0; i < 3; i++) {
		char *pem = NULL;
		size_t len = 0;
		int r = snap_job_read_file(job, files[i].path, files[i].what, max, &pem, &len);
		if (r < 0)
			return r;
		r = files[i].priv ? snap_pem_private_key(pem, len, files[i].key)
				  : snap_pem_cert_public_key(pem, len, files[i].key);
		if (files[i].priv && keep_pem) {
			s->priv_pem = pem;
			s->priv_len = len;
		} else {
			OPENSSL_cleanse(pem, len);
			free(pem);
		}
		if (r == -EOPNOTSUPP)
			return snap_job_fail(job, r, "%s %s: not an RSA key", files[i].what,
					     files[i].path);
		if (r < 0)
			return snap_job_fail(
			    job, r, "%s %s: not a PEM %s", files[i].what, files[i].path,
			    files[i].priv ? "RSA private key" : "X.509 certificate");
	}
	/* invariant 1 */
	if (EVP_PKEY_eq(s->user_pub, s->priv) != 1)
		return snap_job_fail(job, -EINVAL,
				     "private key %s does not match certificate %s: %s could not "
				     "be verified",
				     pk, cert, signed_what);
	return 0;
}

void snap_bundle_signer_clear(struct snap_bundle_signer *s)
{
	EVP_PKEY_free(s->user_pub);
	EVP_PKEY_free(s->ec2_pub);
	EVP_PKEY_free(s->priv);
	if (s->priv_pem) {
		OPENSSL_cleanse(s->priv_pem, s->priv_len);
		free(s->priv_pem);
	}
	*s = (struct snap_bundle_signer){0};
}

static void mappings_free(struct snap_manifest_mapping *maps, char **copies, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(copies[i]);
	free(copies);
	free(maps);
}

/* The job's block device mappings, parsed into *ret_maps (pointing into *ret_copies). */
static int job_mappings(struct snap_job *job, struct snap_manifest_mapping **ret_maps,
			char ***ret_copies, size_t *ret_n)
{
	const char **bdm = NULL;
	size_t nbdm = snap_job_list(job, SNAP_SPARAM_BLOCK_DEVICE_MAPPING, &bdm);
	struct snap_manifest_mapping *maps = calloc(nbdm ? nbdm : 1, sizeof(*maps));
	char **copies = calloc(nbdm ? nbdm : 1, sizeof(*copies));
	int r = maps && copies ? 0 : snap_job_fail(job, -ENOMEM, "out of memory");
	for (size_t i = 0; i < nbdm && r >= 0; i++) {
		copies[i] = strdup(bdm[i]);
		if (!copies[i])
			r = snap_job_fail(job, -ENOMEM, "out of memory");
		else if (snap_manifest_parse_mapping(copies[i], &maps[i]) < 0)
			r = snap_job_fail(job, -EINVAL,
					  "invalid block device mapping '%s' (want virtual=device)",
					  bdm[i]);
	}
	free(bdm);
	if (r < 0) {
		mappings_free(maps, copies, copies ? nbdm : 0);
		return r;
	}
	*ret_maps = maps;
	*ret_copies = copies;
	*ret_n = nbdm;
	return 0;
}

/* Validates what the manifest needs before any data moves: a failure here costs nothing. */
int snap_bundle_manifest_inputs(struct snap_job *job, char **ret_user)
{
	const char *user = snap_job_string(job, SNAP_SPARAM_USER);
	const char *arch = snap_job_string(job, SNAP_SPARAM_ARCH);
	if (!user || !*user)
		return snap_job_fail(job, -EINVAL, "no user (AWS account number) given");
	if (!arch || !*arch)
		return snap_job_fail(job, -EINVAL, "no architecture given");
	/* ec2-bundle-image removes hyphens and wants 12 digits */
	char *u = malloc(strlen(user) + 1);
	if (!u)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	size_t n = 0;
	for (const char *p = user; *p; p++)
		if (*p != '-')
			u[n++] = *p;
	u[n] = 0;
	bool ok = n == 12;
	for (size_t i = 0; i < n; i++)
		ok = ok && u[i] >= '0' && u[i] <= '9';
	if (!ok) {
		free(u);
		return snap_job_fail(job, -EINVAL, "user '%s' is not a 12-digit AWS account number",
				     user);
	}
	/* mappings are checked now, not after the data has streamed */
	struct snap_manifest_mapping *maps;
	char **copies;
	size_t nbdm;
	int r = job_mappings(job, &maps, &copies, &nbdm);
	if (r < 0) {
		free(u);
		return r;
	}
	mappings_free(maps, copies, nbdm);
	*ret_user = u;
	return 0;
}

int snap_bundle_manifest_sign(struct snap_job *job, const struct snap_bundle_signer *s,
			      struct snap_manifest_info *m, const char *key_hex, const char *iv_hex,
			      const char *what, const char *name, char **ret_doc, size_t *ret_len)
{
	char *wrapped[4] = {NULL, NULL, NULL, NULL};
	char *signed_text = NULL, *sig = NULL, *doc = NULL;
	size_t slen = 0, dlen = 0;
	int r = 0;
	/* invariant 2: key for EC2, key for the user, IV for EC2, IV for the user */
	const char *const txt[4] = {key_hex, key_hex, iv_hex, iv_hex};
	EVP_PKEY *const to[4] = {s->ec2_pub, s->user_pub, s->ec2_pub, s->user_pub};
	for (int i = 0; i < 4 && r >= 0; i++)
		r = snap_rsa_encrypt_hex(to[i], txt[i], 32, &wrapped[i]);
	if (r < 0) {
		r = snap_job_fail(job, r, "RSA encryption of the bundle key failed");
		goto out;
	}
	m->ec2_encrypted_key = wrapped[0];
	m->user_encrypted_key = wrapped[1];
	m->ec2_encrypted_iv = wrapped[2];
	m->user_encrypted_iv = wrapped[3];
	r = snap_manifest_signed_text(m, &signed_text, &slen);
	if (r >= 0)
		r = snap_rsa_sign_sha1_hex(s->priv, signed_text, slen, &sig);
	if (r >= 0)
		r = snap_manifest_build(m, sig, &doc, &dlen);
	m->ec2_encrypted_key = m->user_encrypted_key = NULL;
	m->ec2_encrypted_iv = m->user_encrypted_iv = NULL;
	if (r < 0) {
		r = snap_job_fail(job, r, "cannot build %s%s: %s", what, name, snap_strerror(r));
		goto out;
	}
	*ret_doc = doc;
	*ret_len = dlen;
	r = 0;
out:
	for (int i = 0; i < 4; i++)
		free(wrapped[i]);
	free(signed_text);
	free(sig);
	return r;
}

int snap_bundle_manifest_build(struct snap_job *job, const struct snap_bundle_signer *s,
			       const struct snap_bundle_key *key, const char *name,
			       const char *user, uint64_t size, const char digest[41],
			       const struct snap_bundle_part *parts, size_t nparts, char **ret_doc,
			       size_t *ret_len)
{
	const char **codes = NULL, **anc = NULL;
	struct snap_manifest_mapping *maps = NULL;
	char **bdm_copy = NULL;
	size_t nbdm = 0;
	int r = job_mappings(job, &maps, &bdm_copy, &nbdm);
	if (r < 0)
		return r;
	size_t ncodes = snap_job_list(job, SNAP_SPARAM_PRODUCT_CODES, &codes);
	size_t nanc = snap_job_list(job, SNAP_SPARAM_ANCESTOR, &anc);
	struct snap_manifest_part *mparts = calloc(nparts ? nparts : 1, sizeof(*mparts));
	if (!mparts) {
		r = snap_job_fail(job, -ENOMEM, "out of memory");
		goto out;
	}
	uint64_t bundled = 0;
	for (size_t i = 0; i < nparts; i++) {
		mparts[i].filename = parts[i].final_name;
		memcpy(mparts[i].digest, parts[i].digest, 41);
		bundled += parts[i].size;
	}
	struct snap_manifest_info m = {
	    .bundler_name = BUNDLER_NAME,
	    .bundler_version = SNAP_VERSION_STRING,
	    .bundler_release = "0",
	    .arch = snap_job_string(job, SNAP_SPARAM_ARCH),
	    .mappings = maps,
	    .nmappings = nbdm,
	    .kernel_id = snap_job_string(job, SNAP_SPARAM_KERNEL),
	    .ramdisk_id = snap_job_string(job, SNAP_SPARAM_RAMDISK),
	    .product_codes = codes,
	    .nproduct_codes = ncodes,
	    .name = name,
	    .user = user,
	    .ancestors = anc,
	    .nancestors = nanc,
	    .size = size,
	    .bundled_size = bundled,
	    .parts = mparts,
	    .nparts = nparts,
	};
	memcpy(m.digest, digest, 41);
	r = snap_bundle_manifest_sign(job, s, &m, key->key_hex, key->iv_hex, "the manifest", "",
				      ret_doc, ret_len);
out:
	mappings_free(maps, bdm_copy, nbdm);
	free(mparts);
	free(codes);
	free(anc);
	return r;
}

#define MAX_PEM_FILE (1u << 20)

int snap_bundle_manifest_verify(struct snap_job *job, const struct snap_manifest_doc *m,
				const char *manifest_path, const char *cert_path)
{
	char *pem;
	size_t len;
	int r = snap_job_read_file(job, cert_path, "certificate", MAX_PEM_FILE, &pem, &len);
	if (r < 0)
		return r;
	const char *detail;
	r = snap_bundle_verify_signature(pem, len, m->signature, m->signature_len, m->signed_text,
					 m->signed_len, &detail);
	free(pem);
	if (r == -EINVAL)
		return snap_job_fail(job, r, "%s is not a PEM certificate or public key: %s",
				     cert_path, detail);
	if (r == -EBADMSG && !m->signature)
		return snap_job_fail(job, r, "manifest %s has no signature", manifest_path);
	if (r == -EBADMSG)
		return snap_job_fail(
		    job, r,
		    "manifest %s fails authentication: its signature does not match "
		    "the signed text (machine_configuration and image) with the key of "
		    "%s; the manifest was edited or signed by another key",
		    manifest_path, cert_path);
	if (r < 0)
		return snap_job_fail(job, r, "out of memory");
	return 0;
}

int snap_bundle_manifest_key_for(struct snap_job *job, const struct snap_manifest_doc *m,
				 const char *name, const void *pem, size_t len,
				 const char *key_path, uint8_t ret_key[16], uint8_t ret_iv[16])
{
	uint8_t key[16], iv[16];
	char why[512] = "";
	int r = snap_bundle_key_unwrap(pem, len, m->user_encrypted_key, m->user_encrypted_key_len,
				       m->user_encrypted_iv, m->user_encrypted_iv_len, key, iv,
				       key_path, why, sizeof(why));
	if (r >= 0 && ret_key) {
		memcpy(ret_key, key, 16);
		memcpy(ret_iv, iv, 16);
	}
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));
	if (r < 0 && !name)
		return snap_job_fail(job, r, "%s", why);
	if (r < 0)
		return snap_job_fail(job, r, "manifest %s is not for the key %s: %s", name,
				     key_path, why[0] ? why : snap_strerror(r));
	return 0;
}

int snap_bundle_manifest_unwrap(struct snap_job *job, const struct snap_manifest_doc *m,
				const char *key_path, const char *name, uint8_t ret_key[16],
				uint8_t ret_iv[16])
{
	char *pem;
	size_t len;
	int r = snap_job_read_file(job, key_path, "private key", MAX_PEM_FILE, &pem, &len);
	if (r < 0)
		return r;
	r = snap_bundle_manifest_key_for(job, m, name, pem, len, key_path, ret_key, ret_iv);
	OPENSSL_cleanse(pem, len);
	free(pem);
	return r;
}

int snap_bundle_manifest_get(struct snap_job *job, struct snap_s3_client *c, const char *bucket,
			     const char *key, char **ret, size_t *ret_len)
{
	char *detail = NULL;
	void *buf = NULL;
	size_t len = 0;
	int r = snap_s3_get_object(c, bucket, key, MAX_MANIFEST_FILE, &buf, &len, &detail);
	if (r == -EFBIG) {
		free(detail);
		return snap_job_fail(job, r, "manifest s3://%s/%s is larger than %u MiB", bucket,
				     key, MAX_MANIFEST_FILE >> 20);
	}
	if (r < 0) {
		char what[2200];
		snprintf(what, sizeof(what), "%s s3://%s/%s",
			 r == -ENOENT ? "no manifest" : "cannot fetch manifest", bucket, key);
		return snap_job_s3_fail(job, r, detail, what);
	}
	free(detail);
	*ret = buf;
	*ret_len = len;
	return 0;
}

int snap_bundle_manifest_parse(struct snap_job *job, const void *text, size_t len, const char *name,
			       struct snap_manifest_doc **ret)
{
	char *detail = NULL;
	int r = snap_manifest_read(text, len, ret, &detail);
	if (r < 0)
		snap_job_fail(job, r, "manifest %s is not a bundle manifest: %s", name,
			      detail ? detail : snap_strerror(r));
	free(detail);
	return r;
}

/* s as a JSON string (the manifest's text is UTF-8: libxml2 decoded it); NULL is null. */
static void json_string(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			fprintf(f, "\\%c", *c);
		else if (*c < 0x20 || *c == 0x7f)
			fprintf(f, "\\u%04x", *c);
		else
			fputc(*c, f);
	}
	fputc('"', f);
}

/* What comes before a value (key: ",\"name\":", say), then the value as a JSON string. */
static void json_field(FILE *f, const char *key, const char *value)
{
	fputs(key, f);
	json_string(f, value);
}

int snap_bundle_manifest_info(struct snap_job *job, const struct snap_manifest_doc *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return snap_job_fail(job, -ENOMEM, "out of memory");
	json_field(f, "{\"version\":", m->version_text);
	json_field(f, ",\"bundler\":{\"name\":", m->bundler_name);
	json_field(f, ",\"version\":", m->bundler_version);
	json_field(f, ",\"release\":", m->bundler_release);
	json_field(f, "},\"arch\":", m->architecture);
	json_field(f, ",\"kernel_id\":", m->kernel_id);
	json_field(f, ",\"ramdisk_id\":", m->ramdisk_id);
	fputs(",\"product_codes\":[", f);
	for (size_t i = 0; i < m->nproduct_codes; i++)
		json_field(f, i ? "," : "", m->product_codes[i]);
	fputs("],\"block_device_mappings\":{", f);
	for (size_t i = 0; i < m->nmappings; i++) {
		json_field(f, i ? "," : "", m->mappings[i].virtual_name);
		json_field(f, ":", m->mappings[i].device);
	}
	json_field(f, "},\"name\":", m->name);
	json_field(f, ",\"user\":", m->user);
	json_field(f, ",\"type\":", m->type);
	fprintf(f, ",\"size\":%llu,\"bundled_size\":%llu,\"digest\":\"%s\",\"parts\":[",
		(unsigned long long)m->size, (unsigned long long)m->bundled_size, m->digest_hex);
	for (size_t i = 0; i < m->nparts; i++) {
		char d[41];
		snap_hex(d, m->parts[i].digest, 20);
		fprintf(f, "%s{\"index\":%u", i ? "," : "", m->parts[i].index);
		json_field(f, ",\"filename\":", m->parts[i].filename);
		fprintf(f, ",\"digest\":\"%s\"}", d);
	}
	fprintf(f, "],\"signed\":%s}", m->signature ? "true" : "false");
	if (fclose(f) != 0) {
		free(buf);
		return snap_job_fail(job, -ENOMEM, "out of memory");
	}
	int r = snap_job_set_result_string(job, SNAP_RESULT_MANIFEST_INFO, buf);
	free(buf);
	return r < 0 ? snap_job_fail(job, r, "out of memory") : 0;
}
