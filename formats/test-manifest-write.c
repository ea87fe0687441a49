// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-manifest-write.c - the manifest's bytes: REXML style (declaration first, single quotes,
 * one line, no trailing newline), element order, escaping, sorted mappings, optional elements
 * left out, signed text equal to the document's machine_configuration + image, part names at
 * the padding boundaries; and the document parsed by an outside XML parser (Python's).
 */
#include <stdbool.h>

#include "manifest-write.h"
#include "test-util.h"

static void test_part_names(void)
{
	static const struct {
		uint64_t index, count;
		const char *want;
	} cases[] = {
	    {0, 1, "n.part.0"},	     {8, 9, "n.part.8"},       {0, 10, "n.part.00"},
	    {9, 10, "n.part.09"},    {10, 11, "n.part.10"},    {0, 100, "n.part.000"},
	    {99, 100, "n.part.099"}, {100, 101, "n.part.100"}, {5, 1025, "n.part.0005"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s;
		REQUIRE(snap_bundle_part_name("n", cases[i].index, cases[i].count, &s) == 0);
		if (strcmp(s, cases[i].want))
			fprintf(stderr, "got %s want %s\n", s, cases[i].want);
		REQUIRE(!strcmp(s, cases[i].want));
		free(s);
	}
	char *s;
	REQUIRE(snap_bundle_part_name("n", 1, 1, &s) == -EINVAL);
}

static void test_mapping_parse(void)
{
	char a[] = " root = /dev/sda1 ", b[] = "ami=sda1", c[] = "=sda1", d[] = "x y=z",
	     e[] = "noequals";
	struct snap_manifest_mapping m;
	REQUIRE(snap_manifest_parse_mapping(a, &m) == 0);
	REQUIRE(!strcmp(m.virtual_name, "root") && !strcmp(m.device, "/dev/sda1"));
	REQUIRE(snap_manifest_parse_mapping(b, &m) == 0);
	REQUIRE(snap_manifest_parse_mapping(c, &m) == -EINVAL);
	REQUIRE(snap_manifest_parse_mapping(d, &m) == -EINVAL);
	REQUIRE(snap_manifest_parse_mapping(e, &m) == -EINVAL);
}

int main(void)
{
	test_part_names();
	test_mapping_parse();

	struct snap_manifest_mapping maps[] = {
	    {"swap", "sda3"}, {"root", "/dev/sda1"}, {"ami", "sda1"}, {"ephemeral0", "sda2"}};
	const char *codes[] = {"ABCD1234,EFGH5678"};
	struct snap_manifest_part parts[2] = {{.filename = "my<ami>.part.0"},
					      {.filename = "my<ami>.part.1"}};
	memset(parts[0].digest, 'a', 40);
	memset(parts[1].digest, 'b', 40);
	struct snap_manifest_info m = {
	    .bundler_name = "snapbundle",
	    .bundler_version = "0.1",
	    .bundler_release = "0",
	    .arch = "x86_64",
	    .mappings = maps,
	    .nmappings = 4,
	    .kernel_id = "aki-12345678",
	    .ramdisk_id = NULL,
	    .product_codes = codes,
	    .nproduct_codes = 1,
	    .name = "my<ami>&'\"",
	    .user = "123456789012",
	    .size = 110100480,
	    .bundled_size = 110118064,
	    .ec2_encrypted_key = "c765",
	    .user_encrypted_key = "0294",
	    .ec2_encrypted_iv = "87f1",
	    .user_encrypted_iv = "74c9",
	    .parts = parts,
	    .nparts = 2,
	};
	memcpy(m.digest, "2f77814c9d952430225a0ed4d97f1a19fd61572b", 41);

	char *doc, *signed_text;
	size_t len, slen;
	REQUIRE(snap_manifest_signed_text(&m, &signed_text, &slen) == 0);
	REQUIRE(snap_manifest_build(&m, "7e8f", &doc, &len) == 0);
	REQUIRE(strlen(doc) == len);
	const char *want =
	    "<?xml version='1.0'?><manifest><version>2007-10-10</version>"
	    "<bundler><name>snapbundle</name><version>0.1</version><release>0</release></bundler>"
	    "<machine_configuration><architecture>x86_64</architecture>"
	    "<block_device_mapping><mapping><virtual>ami</virtual><device>sda1</device></mapping>"
	    "<mapping><virtual>ephemeral0</virtual><device>sda2</device></mapping>"
	    "<mapping><virtual>root</virtual><device>/dev/sda1</device></mapping>"
	    "<mapping><virtual>swap</virtual><device>sda3</device></mapping>"
	    "</block_device_mapping><kernel_id>aki-12345678</kernel_id>"
	    "<product_codes><product_code>ABCD1234,EFGH5678</product_code></product_codes>"
	    "</machine_configuration>"
	    "<image><name>my&lt;ami&gt;&amp;&apos;&quot;</name><user>123456789012</user>"
	    "<type>machine</type>"
	    "<digest algorithm='SHA1'>2f77814c9d952430225a0ed4d97f1a19fd61572b</digest>"
	    "<size>110100480</size><bundled_size>110118064</bundled_size>"
	    "<ec2_encrypted_key algorithm='AES-128-CBC'>c765</ec2_encrypted_key>"
	    "<user_encrypted_key algorithm='AES-128-CBC'>0294</user_encrypted_key>"
	    "<ec2_encrypted_iv>87f1</ec2_encrypted_iv><user_encrypted_iv>74c9</user_encrypted_iv>"
	    "<parts count='2'><part index='0'><filename>my&lt;ami&gt;.part.0</filename>"
	    "<digest algorithm='SHA1'>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</digest></part>"
	    "<part index='1'><filename>my&lt;ami&gt;.part.1</filename>"
	    "<digest algorithm='SHA1'>bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb</digest></part>"
	    "</parts></image><signature>7e8f</signature></manifest>";
	if (strcmp(doc, want))
		fprintf(stderr, "got:  %s\nwant: %s\n", doc, want);
	REQUIRE(!strcmp(doc, want));

	/* the signed text is the document's machine_configuration + image, byte for byte */
	const char *mc = strstr(doc, "<machine_configuration>");
	const char *img_end = strstr(doc, "</image>") + strlen("</image>");
	REQUIRE(mc && (size_t)(img_end - mc) == slen && !memcmp(mc, signed_text, slen));

	/* an outside parser reads it, with the escaped name intact */
	const char *dir = test_mkdir();
	char path[512];
	snprintf(path, sizeof(path), "%s/m.xml", dir);
	test_write_file(path, doc, len);
	REQUIRE(test_sh("python3 -c 'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1])"
		      ".getroot(); assert r.find(\"image/name\").text == \"my<ami>&\\x27\\x22\"; "
		      "assert r.find(\"image/parts\").get(\"count\") == \"2\"' '%s'",
		      path) == 0);
	free(doc);
	free(signed_text);

	/* optional parts left out entirely; missing mandatory fields refused */
	m.nmappings = 0;
	m.kernel_id = NULL;
	m.nproduct_codes = 0;
	REQUIRE(snap_manifest_build(&m, "00", &doc, &len) == 0);
	REQUIRE(strstr(doc, "<machine_configuration><architecture>x86_64</architecture>"
			  "</machine_configuration>") != NULL);
	REQUIRE(!strstr(doc, "block_device_mapping") && !strstr(doc, "kernel_id") &&
	      !strstr(doc, "product_codes") && !strstr(doc, "ancestry"));
	REQUIRE(doc[len - 1] == '>');
	free(doc);
	const char *anc[] = {"ami-11111111", "ami-22222222"};
	m.ancestors = anc;
	m.nancestors = 2;
	REQUIRE(snap_manifest_build(&m, "00", &doc, &len) == 0);
	REQUIRE(strstr(doc, "<type>machine</type><ancestry><ancestor_ami_id>ami-11111111"
			  "</ancestor_ami_id><ancestor_ami_id>ami-22222222</ancestor_ami_id>"
			  "</ancestry><digest algorithm='SHA1'>") != NULL);
	free(doc);
	m.arch = NULL;
	REQUIRE(snap_manifest_build(&m, "00", &doc, &len) == -EINVAL);
	printf("ok\n");
	return 0;
}
