#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Makes a classic bundle the way ec2-bundle-image does (docs/classic-bundle-format.md §1-§4),
from outside tools only, as the judge for snapbundle unbundle:

  tar -c -h -S --owner 0 --group 0 | gzip -9 | openssl enc -e -aes-128-cbc -K KEY -iv IV

split into parts of --part-size bytes named NAME.part.<zero-padded i>, and a manifest
serialised like REXML (single quotes, one line, no trailing newline) whose signature is made
with `openssl dgst -sha1 -sign` over X(machine_configuration) + X(image). Keys are wrapped with
`openssl pkeyutl -encrypt` (PKCS#1 v1.5) as 32-character hex strings.

usage: mkbundle.py IMAGE DESTDIR --cert USER.pem --key USER.key --ec2-cert EC2.pem
       [--name NAME] [--part-size N] [--version 2007-10-10|2007-08-29|20070829|3]
       [--tar-args 'ARGS'] [--tar-cmd 'COMMAND writing a tar on stdout'] [--gzip-crc-flip]
       [--tar-file TAR] [--size N] [--sub REGEX REPL]... [--manifest-sub REGEX REPL]...

As a forger (the checks behind the digests): --tar-file (or --tar-cmd) gives ANY tar stream,
encrypted, digested and split as a real one; --size sets <size> (default: IMAGE's size; IMAGE
need not exist then); --sub applies re.sub(REGEX, REPL) to the signed text
(machine_configuration + image, after the parts, sizes and digests are filled in) BEFORE it is
signed, so any manifest text carries a valid signature; --manifest-sub edits the whole manifest
after signing. Python helpers for ANY tar stream: tests/unbundle/forge-tar.py.
"""
import argparse
import hashlib
import os
import re
import secrets
import shlex
import subprocess
import sys


def run(cmd, data=None):
    r = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, check=True)
    return r.stdout


def wrap(cert, text):
    return run(['openssl', 'pkeyutl', '-encrypt', '-certin', '-inkey', cert,
                '-pkeyopt', 'rsa_padding_mode:pkcs1'], text.encode()).hex()


def esc(s):
    return (s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace('"', '&quot;').replace("'", '&apos;'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('image')
    ap.add_argument('dest')
    ap.add_argument('--cert', required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--ec2-cert', required=True)
    ap.add_argument('--name')
    ap.add_argument('--part-size', type=int, default=10 * 1024 * 1024)
    ap.add_argument('--version', default='2007-10-10')
    ap.add_argument('--tar-args', default='-S')
    ap.add_argument('--tar-cmd')
    ap.add_argument('--gzip-crc-flip', action='store_true')
    ap.add_argument('--tar-file')
    ap.add_argument('--size', type=int)
    ap.add_argument('--sub', nargs=2, action='append', default=[])
    ap.add_argument('--manifest-sub', nargs=2, action='append', default=[])
    a = ap.parse_args()

    os.makedirs(a.dest, exist_ok=True)
    name = a.name or os.path.basename(a.image)
    key = secrets.token_hex(16)
    iv = secrets.token_hex(16)
    if a.tar_file:
        tar_cmd = ['cat', a.tar_file]
    elif a.tar_cmd:
        tar_cmd = ['bash', '-c', a.tar_cmd]
    else:
        tar_cmd = (['tar', '-c', '-h'] + shlex.split(a.tar_args) +
                   ['--owner', '0', '--group', '0', '-C', os.path.dirname(os.path.abspath(a.image)),
                    os.path.basename(a.image)])
    enc_path = os.path.join(a.dest, name + '.tar.gz.enc')
    tar = subprocess.Popen(tar_cmd, stdout=subprocess.PIPE)
    gz = subprocess.Popen(['gzip', '-9'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    digest = hashlib.sha1()
    gz_bytes = bytearray()
    # the digest is taken at tee, before gzip (§1.5)
    import threading
    def collect():
        while True:
            c = gz.stdout.read(1 << 20)
            if not c:
                break
            gz_bytes.extend(c)
    t = threading.Thread(target=collect)
    t.start()
    while True:
        c = tar.stdout.read(1 << 20)
        if not c:
            break
        digest.update(c)
        gz.stdin.write(c)
    gz.stdin.close()
    t.join()
    if tar.wait() != 0 or gz.wait() != 0:
        sys.exit('mkbundle: tar or gzip failed')
    if a.gzip_crc_flip:
        gz_bytes[-8] ^= 0x01  # the CRC-32 in the gzip trailer
    enc = run(['openssl', 'enc', '-e', '-aes-128-cbc', '-K', key, '-iv', iv], bytes(gz_bytes))
    with open(enc_path, 'wb') as f:
        f.write(enc)

    # split as §1.8
    n = (len(enc) + a.part_size - 1) // a.part_size
    width = len(str(n))
    parts = []
    for i in range(n):
        chunk = enc[i * a.part_size:(i + 1) * a.part_size]
        fn = '%s.part.%0*d' % (name, width, i)
        with open(os.path.join(a.dest, fn), 'wb') as f:
            f.write(chunk)
        parts.append((fn, hashlib.sha1(chunk).hexdigest()))
    os.unlink(enc_path)

    size = a.size if a.size is not None else os.stat(a.image).st_size
    v = a.version
    if v == '2007-10-10':
        mc = ("<machine_configuration><architecture>x86_64</architecture>"
              "<block_device_mapping><mapping><virtual>ami</virtual><device>sda1</device>"
              "</mapping><mapping><virtual>root</virtual><device>/dev/sda1</device></mapping>"
              "</block_device_mapping></machine_configuration>")
    elif v in ('2007-08-29', '20070829'):
        mc = "<machine_configuration><architecture>i386</architecture></machine_configuration>"
    else:
        mc = ''
    image = "<image><name>%s</name><user>123456789012</user>" % esc(name)
    if v == '2007-10-10':
        image += "<type>machine</type>"
    image += ("<digest algorithm='SHA1'>%s</digest><size>%d</size><bundled_size>%d"
              "</bundled_size>" % (digest.hexdigest(), size, len(enc)))
    image += ("<ec2_encrypted_key algorithm='AES-128-CBC'>%s</ec2_encrypted_key>"
              "<user_encrypted_key algorithm='AES-128-CBC'>%s</user_encrypted_key>"
              "<ec2_encrypted_iv>%s</ec2_encrypted_iv><user_encrypted_iv>%s</user_encrypted_iv>"
              % (wrap(a.ec2_cert, key), wrap(a.cert, key), wrap(a.ec2_cert, iv), wrap(a.cert, iv)))
    image += "<parts count='%d'>" % n
    for i, (fn, d) in enumerate(parts):
        image += ("<part index='%d'><filename>%s</filename><digest algorithm='SHA1'>%s</digest>"
                  "</part>" % (i, esc(fn), d))
    image += "</parts></image>"
    for pat, repl in a.sub:
        mc, image = re.sub(pat, repl, mc), re.sub(pat, repl, image)
    signed = (mc + image).encode()
    sig = run(['openssl', 'dgst', '-sha1', '-sign', a.key], signed).hex()
    bundler = ("<bundler><name>ec2-ami-tools</name><version>1.5</version><release>7</release>"
               "</bundler>")
    doc = ("<?xml version='1.0'?><manifest><version>%s</version>%s%s%s<signature>%s</signature>"
           "</manifest>" % (v, bundler, mc, image, sig))
    for pat, repl in a.manifest_sub:
        doc = re.sub(pat, repl, doc)
    mpath = os.path.join(a.dest, name + '.manifest.xml')
    with open(mpath, 'w') as f:
        f.write(doc)
    # what the test needs to check the signature independently
    with open(os.path.join(a.dest, name + '.signed'), 'wb') as f:
        f.write(signed)
    print(mpath)


if __name__ == '__main__':
    main()
