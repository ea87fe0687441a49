#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A stand-in for the EC2 instance metadata service (IMDSv2 only), for the tests of the AWS
configuration chain (s3/test-s3-config.c): the real one cannot run here.

    imds.py PORTFILE LOGFILE [MODE]

Listens on 127.0.0.1 on a free port, writes the port to PORTFILE once it listens, and appends
one line per request to LOGFILE ("METHOD PATH token=yes|no"). As IMDSv2 requires, every GET
without a valid X-aws-ec2-metadata-token header is answered 401, so a client that skips the
PUT /latest/api/token step gets nothing. MODE:
  ok       (default) role "snap-role" with AccessKeyId IMDSKEY, SecretAccessKey IMDSSECRET,
           Token IMDSTOKEN; region eu-west-3
  norole   no role attached (404 on the role list)
  badjson  the role's document is not JSON
Runs until killed.
"""
import http.server
import json
import secrets
import sys

TOKEN = secrets.token_hex(16)
ROLE = "snap-role"
CREDS = {
    "Code": "Success",
    "LastUpdated": "2026-01-01T00:00:00Z",
    "Type": "AWS-HMAC",
    "AccessKeyId": "IMDSKEY",
    "SecretAccessKey": "IMDSSECRET",
    "Token": "IMDSTOKEN",
    "Expiration": "2036-01-01T00:00:00Z",
    "Nested": {"a": [1, 2.5e3, True, False, None, "x\u00e9"]},
}


class Handler(http.server.BaseHTTPRequestHandler):
    mode = "ok"
    log = None

    def log_message(self, fmt, *args):
        pass

    def record(self, valid):
        with open(self.log, "a") as f:
            f.write("%s %s token=%s\n" % (self.command, self.path, "yes" if valid else "no"))

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self.record(False)
        if self.path != "/latest/api/token" or not ttl or not ttl.isdigit():
            self.answer(400, "")
            return
        self.answer(200, TOKEN)

    def do_GET(self):
        valid = self.headers.get("X-aws-ec2-metadata-token") == TOKEN
        self.record(valid)
        if not valid:
            self.answer(401, "")
            return
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == base:
            if self.mode == "norole":
                self.answer(404, "")
            else:
                self.answer(200, ROLE + "\n")
        elif self.path == base + ROLE and self.mode != "norole":
            if self.mode == "badjson":
                self.answer(200, '{"AccessKeyId": "IMDSKEY", "SecretAccessKey": ')
            else:
                self.answer(200, json.dumps(CREDS, indent=2))
        elif self.path == "/latest/meta-data/placement/region":
            self.answer(200, "eu-west-3")
        else:
            self.answer(404, "")


def main():
    portfile, logfile = sys.argv[1], sys.argv[2]
    Handler.mode = sys.argv[3] if len(sys.argv) > 3 else "ok"
    Handler.log = logfile
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % server.server_address[1])
    import os
    os.rename(portfile + ".tmp", portfile)
    server.serve_forever()


if __name__ == "__main__":
    main()
