// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-manifest-read.c - the manifest reader on manifests shaped like ec2-bundle-image's
 * (REXML serialisation, §2.1), for each version, and on every refusal: DTDs and entity bombs,
 * comments that could hide a second <image>, reordered or miscounted parts, bad hex, unsafe
 * part names, duplicate elements, unknown versions. The signed text is checked byte for byte
 * against the substring §3 defines. (The integration tests check the signatures themselves with
 * the openssl CLI as the judge.)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest-read.h"
#include "test-util.h"

#define D40 "029bd448ecb0455bfe3c5f06406b25d1dcf38411"
#define D40B "dad50f85ecb0455bfe3c5f06406b25d1dcf38411"
#define TD "2f77814c9d952430225a0ed4d97f1a19fd61572b"

static const char *MC =
    "<machine_configuration><architecture>x86_64</architecture>"
    "<block_device_mapping><mapping><virtual>ami</virtual><device>sda1</device></mapping>"
    "<mapping><virtual>root</virtual><device>/dev/sda1</device></mapping>"
    "</block_device_mapping><kernel_id>aki-12345678</kernel_id>"
    "<ramdisk_id>ari-87654321</ramdisk_id><product_codes><product_code>ABCD1234,EFGH5678"
    "</product_code></product_codes></machine_configuration>";

static const char *PARTS =
    "<parts count='2'><part index='0'><filename>myami.part.0</filename>"
    "<digest algorithm='SHA1'>" D40 "</digest></part><part index='1'>"
    "<filename>myami.part.1</filename><digest algorithm='SHA1'>" D40B "</digest></part>"
    "</parts>";

/* An image element; type only for 2007-10-10. */
static char *image(int with_type, const char *parts)
{
	char *s;
	if (asprintf(&s,
		     "<image><name>myami</name><user>123456789012</user>%s"
		     "<ancestry><ancestor_ami_id>ami-1</ancestor_ami_id><ancestor_ami_id>ami-2"
		     "</ancestor_ami_id></ancestry>"
		     "<digest algorithm='SHA1'>" TD "</digest><size>110100480</size>"
		     "<bundled_size>110118064</bundled_size>"
		     "<ec2_encrypted_key algorithm='AES-128-CBC'>c765a64e</ec2_encrypted_key>"
		     "<user_encrypted_key algorithm='AES-128-CBC'>0294612f</user_encrypted_key>"
		     "<ec2_encrypted_iv>87f148e2</ec2_encrypted_iv>"
		     "<user_encrypted_iv>74c99d36</user_encrypted_iv>%s</image>",
		     with_type ? "<type>machine</type>" : "", parts) < 0)
		abort();
	return s;
}

static char *manifest(const char *version, const char *mc, const char *img)
{
	char *s;
	if (asprintf(&s,
		     "<?xml version='1.0'?><manifest><version>%s</version><bundler><name>"
		     "ec2-ami-tools</name><version>1.5</version><release>7</release></bundler>"
		     "%s%s<signature>7e8f5590</signature></manifest>",
		     version, mc, img) < 0)
		abort();
	return s;
}

static struct snap_manifest_doc *ok(const char *label, const char *doc)
{
	struct snap_manifest_doc *m = NULL;
	char *detail = NULL;
	int r = snap_manifest_read((const uint8_t *)doc, strlen(doc), &m, &detail);
	CHECK(r == 0, "%s: %d %s", label, r, detail ? detail : "");
	free(detail);
	return r == 0 ? m : NULL;
}

static void refused(const char *label, const char *doc, int want, const char *text)
{
	struct snap_manifest_doc *m = NULL;
	char *detail = NULL;
	int r = snap_manifest_read((const uint8_t *)doc, strlen(doc), &m, &detail);
	CHECK(r == want, "%s: got %d (%s), want %d", label, r, detail ? detail : "", want);
	CHECK(detail && strstr(detail, text), "%s: detail '%s' lacks '%s'", label,
	      detail ? detail : "(none)", text);
	CHECK(!m, "%s: a manifest was returned", label);
	free(detail);
	snap_manifest_doc_free(m);
}

/* doc with the first occurrence of from replaced by to */
static char *edit(const char *doc, const char *from, const char *to)
{
	const char *p = strstr(doc, from);
	if (!p)
		abort();
	char *s;
	if (asprintf(&s, "%.*s%s%s", (int)(p - doc), doc, to, p + strlen(from)) < 0)
		abort();
	return s;
}

int main(void)
{
	char *img = image(1, PARTS), *img_v = image(0, PARTS);
	char *full = manifest("2007-10-10", MC, img);
	struct snap_manifest_doc *m = ok("2007-10-10", full);
	if (m) {
		CHECK(m->version == SNAP_MANIFEST_V20071010, "version %d", m->version);
		CHECK(!strcmp(m->architecture, "x86_64"), "architecture");
		CHECK(m->nmappings == 2 && !strcmp(m->mappings[1].virtual_name, "root") &&
			  !strcmp(m->mappings[1].device, "/dev/sda1"),
		      "mappings");
		CHECK(!strcmp(m->kernel_id, "aki-12345678") &&
			  !strcmp(m->ramdisk_id, "ari-87654321"),
		      "kernel/ramdisk");
		CHECK(m->nproduct_codes == 1 && !strcmp(m->product_codes[0], "ABCD1234,EFGH5678"),
		      "product codes are never split");
		CHECK(!strcmp(m->name, "myami") && !strcmp(m->user, "123456789012") &&
			  !strcmp(m->type, "machine"),
		      "image fields");
		CHECK(m->nancestors == 2 && !strcmp(m->ancestors[1], "ami-2"), "ancestry");
		CHECK(!strcmp(m->digest_hex, TD), "digest %s", m->digest_hex);
		CHECK(m->size == 110100480 && m->bundled_size == 110118064, "sizes");
		CHECK(m->user_encrypted_key_len == 4 && m->user_encrypted_key[0] == 0x02 &&
			  m->ec2_encrypted_iv[3] == 0xe2,
		      "keys");
		CHECK(m->nparts == 2 && !strcmp(m->parts[1].filename, "myami.part.1") &&
			  m->parts[1].digest[0] == 0xda,
		      "parts");
		CHECK(m->signature_len == 4 && m->signature[0] == 0x7e, "signature");
		CHECK(!strcmp(m->bundler_name, "ec2-ami-tools") && !strcmp(m->bundler_release, "7"),
		      "bundler");
		char *want;
		if (asprintf(&want, "%s%s", MC, img) < 0)
			abort();
		CHECK(m->signed_len == strlen(want) && !memcmp(m->signed_text, want, m->signed_len),
		      "signed text is X(machine_configuration) || X(image)");
		free(want);
		snap_manifest_doc_free(m);
	}
	/* older versions */
	const char *mc_arch = "<machine_configuration><architecture>i386</architecture>"
			      "</machine_configuration>";
	const char *v0829[] = {"2007-08-29", "20070829"};
	for (int i = 0; i < 2; i++) {
		char *d = manifest(v0829[i], mc_arch, img_v);
		m = ok(v0829[i], d);
		if (m) {
			CHECK(m->version == SNAP_MANIFEST_V20070829 && !m->type, "%s", v0829[i]);
			char *want;
			if (asprintf(&want, "%s%s", mc_arch, img_v) < 0)
				abort();
			CHECK(m->signed_len == strlen(want) &&
				  !memcmp(m->signed_text, want, m->signed_len),
			      "signed text");
			free(want);
		}
		snap_manifest_doc_free(m);
		free(d);
	}
	/* signature wrapping: every spelling of the start tag that libxml2 accepts puts the
	 * element in the DOM, so it must be in the signed text or the manifest refused */
	const char *spellings[] = {"<machine_configuration >", "<machine_configuration\n>",
				   "<machine_configuration\t>", "<machine_configuration\r\n >",
				   "<machine_configuration a='b'>", "<machine_configuration  a=\"b\" >"};
	for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
		/* the end tag canonical, then spelled with whitespace too (</e > is XML) */
		char *mc1 = edit(MC, "<machine_configuration>", spellings[i]);
		char *mc = i % 2 ? edit(mc1, "</machine_configuration>", "</machine_configuration >")
				 : edit(mc1, "</machine_configuration>", "</machine_configuration\n>");
		free(mc1);
		char *d = manifest("2007-10-10", mc, img);
		struct snap_manifest_doc *w = NULL;
		char *detail = NULL;
		int r = snap_manifest_read((const uint8_t *)d, strlen(d), &w, &detail);
		CHECK(r < 0 || (w->architecture && memmem(w->signed_text, w->signed_len,
							  "x86_64", 6)),
		      " (%s: the architecture is read but not signed)", spellings[i]);
		CHECK(r == -EUCLEAN && detail && strstr(detail, "machine_configuration"),
		      " (%s: %d %s)", spellings[i], r, detail ? detail : "");
		snap_manifest_doc_free(w);
		free(detail);
		free(d);
		free(mc);
	}
	char *v3 = manifest("3", "", img_v);
	m = ok("3", v3);
	if (m) {
		CHECK(m->version == SNAP_MANIFEST_V3 && !m->architecture, "v3");
		CHECK(m->signed_len == strlen(img_v) &&
			  !memcmp(m->signed_text, img_v, m->signed_len),
		      "v3 signs the image only");
	}
	snap_manifest_doc_free(m);
	/* pretty-printed with a double-quoted declaration: still read */
	char *pretty = edit(full, "<image>", "\n  <image>");
	m = ok("whitespace", pretty);
	snap_manifest_doc_free(m);
	free(pretty);

	/* refusals */
	const char *bomb =
	    "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
	    "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
	    "<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>"
	    "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"
	    "<!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>"
	    "<!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>"
	    "<!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>"
	    "<!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>"
	    "<!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>"
	    "<!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>"
	    "]><manifest><version>&lol9;</version></manifest>";
	refused("billion laughs", bomb, -EPERM, "DOCTYPE");
	refused("external entity",
		"<?xml version='1.0'?><!DOCTYPE m [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
		"<manifest><version>&x;</version></manifest>",
		-EPERM, "DOCTYPE");
	refused("external DTD",
		"<?xml version='1.0'?><!DOCTYPE manifest SYSTEM 'http://example.com/x.dtd'>"
		"<manifest/>",
		-EPERM, "DOCTYPE");
	refused("not XML", "<manifest><version>", -EUCLEAN, "not valid XML");
	refused("empty", "", -EUCLEAN, "empty");
	refused("wrong root", "<?xml version='1.0'?><nope/>", -EUCLEAN, "root element");

	char *d;
	/* a comment holding the original <image> ahead of an edited one (§8.1 item 10) */
	char *hidden;
	if (asprintf(&hidden, "<!--%s-->%s", img, img) < 0)
		abort();
	d = manifest("2007-10-10", MC, hidden);
	refused("image hidden in a comment", d, -EUCLEAN, "comment");
	free(d);
	free(hidden);
	d = edit(full, "<name>myami</name>", "<name><![CDATA[myami]]></name>");
	refused("CDATA", d, -EUCLEAN, "CDATA");
	free(d);
	d = edit(full, "<image>", "<image >");
	refused("unsearchable image tag", d, -EUCLEAN, "exactly once");
	free(d);
	d = edit(full, "</architecture>", "</architecture><image></image>");
	refused("nested second image", d, -EUCLEAN, "more than one <image>");
	free(d);
	char *t = edit(full, "<part index='0'>", "<part index='1'>");
	d = edit(t, "<part index='1'><filename>myami.part.1",
		 "<part index='0'><filename>myami.part.1");
	free(t);
	refused("parts out of order", d, -EUCLEAN, "out of order");
	free(d);
	d = edit(full, "count='2'", "count='3'");
	refused("count", d, -EUCLEAN, "@count is 3 but 2 parts");
	free(d);
	d = edit(full, "myami.part.1", "../etc/passwd");
	refused("part path", d, -EPERM, "not a plain file name");
	free(d);
	d = edit(full, "myami.part.1", "myami.part.0");
	refused("duplicate part", d, -EUCLEAN, "listed twice");
	free(d);
	d = edit(full, D40, "029bd448ecb0455bfe3c5f06406b25d1dcf3841");
	refused("short part digest", d, -EUCLEAN, "part[0]/digest is not 40 hex");
	free(d);
	d = edit(full, TD, "2f77814c9d952430225a0ed4d97f1a19fd61572x");
	refused("bad hex", d, -EUCLEAN, "not hex");
	free(d);
	d = edit(full, "<digest algorithm='SHA1'>" TD, "<digest algorithm='MD5'>" TD);
	refused("digest algorithm", d, -EOPNOTSUPP, "only SHA1");
	free(d);
	d = edit(full, "<size>110100480</size>", "<size>-1</size>");
	refused("negative size", d, -EUCLEAN, "image/size is not a decimal number");
	free(d);
	d = edit(full, "<size>110100480</size>", "<size>99999999999999999999999</size>");
	refused("huge size", d, -EUCLEAN, "image/size is not a decimal number");
	free(d);
	d = edit(full, "<size>110100480</size>", "");
	refused("missing size", d, -EUCLEAN, "image/size element not present");
	free(d);
	d = edit(full, "<name>myami</name>", "<name>myami</name><name>other</name>");
	refused("duplicate name", d, -EUCLEAN, "image/name element appears twice");
	free(d);
	d = edit(full, "<user>123456789012</user>", "<user></user>");
	refused("empty user", d, -EUCLEAN, "image/user element empty");
	free(d);
	d = edit(full, "2007-10-10", "20080101");
	refused("too new", d, -EOPNOTSUPP, "too new");
	free(d);
	d = edit(full, "2007-10-10", "2");
	refused("too old", d, -EOPNOTSUPP, "too old");
	free(d);
	d = manifest("2007-10-10", "", img);
	refused("no machine_configuration", d, -EUCLEAN, "machine_configuration element not");
	free(d);

	free(full);
	free(v3);
	free(img);
	free(img_v);
	if (test_failures) {
		fprintf(stderr, "%d test_failures\n", test_failures);
		return 1;
	}
	printf("manifest reader: all versions read, every refusal refused\n");
	return 0;
}
