#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""validate-json.py SCHEMA FILE...: each FILE is one JSON document (or, with --lines, one
document a line) that must validate against SCHEMA, a file of docs/schema/ whose "$ref"s name
its neighbours ("envelope.json"). Exit 0 when all do, 1 otherwise (each error printed), 77
when python3-jsonschema is missing. --examples MARKDOWN: every ```json block of MARKDOWN that
a "<!-- schema: NAME.json -->" line precedes validates against that schema."""
import json
import pathlib
import re
import sys

try:
    import jsonschema
except ImportError:
    print("skip: python3-jsonschema missing")
    sys.exit(77)


def validator(schema_path):
    path = pathlib.Path(schema_path).resolve()
    schema = json.loads(path.read_text())
    store = {p.resolve().as_uri(): json.loads(p.read_text()) for p in path.parent.glob("*.json")}
    try:  # jsonschema >= 4.18: the referencing library
        import referencing

        def retrieve(uri):
            return referencing.Resource.from_contents(
                store[uri], default_specification=referencing.jsonschema.DRAFT202012)

        import referencing.jsonschema
        registry = referencing.Registry(retrieve=retrieve)
        schema = dict(schema, **{"$id": path.as_uri()})
        return jsonschema.Draft202012Validator(schema, registry=registry)
    except ImportError:  # Debian 12's 4.10: RefResolver
        resolver = jsonschema.RefResolver(base_uri=path.as_uri(), referrer=schema, store=store)
        return jsonschema.Draft202012Validator(schema, resolver=resolver)


def check(v, doc, where):
    errors = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        print(f"{where}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}")
    return not errors


def main(argv):
    ok = True
    if argv[1] == "--examples":
        text = pathlib.Path(argv[2]).read_text()
        schemadir = pathlib.Path(argv[3])
        blocks = re.findall(r"<!-- schema: ([\w.-]+) -->\s*```json\n(.*?)```", text, re.S)
        if not blocks:
            print(f"{argv[2]}: no example")
            return 1
        for i, (name, body) in enumerate(blocks):
            v = validator(schemadir / name)
            ok &= check(v, json.loads(body), f"{argv[2]} example {i + 1} ({name})")
        print(f"{len(blocks)} examples")
        return 0 if ok else 1
    lines = argv[1] == "--lines"
    if lines:
        argv = argv[1:]
    v = validator(argv[1])
    for f in argv[2:]:
        text = pathlib.Path(f).read_text()
        if lines:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            docs = [json.loads(text)]
        if not docs:
            print(f"{f}: empty")
            ok = False
        for i, doc in enumerate(docs):
            ok &= check(v, doc, f"{f}" + (f" line {i + 1}" if lines else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
