#!/usr/bin/env python3
"""Validates Kubernetes objects against the JSON schemas that PyPI `kubernetes-validate` ships
(generated from the Kubernetes OpenAPI spec), in strict mode: unknown fields are errors.

Input: a JSON array of objects on stdin. Output: a JSON array on stdout, one entry per object:
  {"index": n, "kind": ..., "name": ..., "status": "valid" | "invalid" | "no-schema",
   "schemaVersion": "1.37", "errors": [{"path": "spec.template...", "message": ...}]}
"no-schema" means the library has no schema for that apiVersion/kind (custom resources such as
cert-manager's): the caller validates those another way.

Unlike the `kubernetes-validate` command line, which stops at the first error of an object, this
reports every error (jsonschema's iter_errors), using the library's own schema lookup.

Usage: schema_validate.py [--kubernetes-version 1.37] < objects.json
"""
import argparse
import json
import re
import sys

import jsonschema
from referencing import Registry, Resource

from kubernetes_validate import utils


def schema_for(obj, version):
    """(schema, definitions, version used) for obj, or None when there is no schema."""
    wanted = utils.major_minor(version)
    candidates = [v for v in utils.all_versions() if utils.major_minor(v) <= wanted]
    if not candidates:
        raise utils.VersionNotSupportedError(version=wanted)
    used = candidates[-1]
    api_version = re.sub(r'^([^./]*)(?:\.[^/]*)?/', r'\1-', obj['apiVersion'])
    schema_dir = 'v%s-local-strict' % used
    try:
        schema = utils.schema_contents('kubernetes-json-schema/%s/%s-%s.json'
                                       % (schema_dir, obj['kind'].lower(), api_version), version)
    except FileNotFoundError:
        return None
    definitions = utils.schema_contents('kubernetes-json-schema/%s/_definitions.json' % schema_dir, version)
    return schema, definitions, utils.major_minor(used)


def validate(index, obj, version):
    kind = obj.get('kind') if isinstance(obj, dict) else None
    name = (obj.get('metadata') or {}).get('name') if isinstance(obj, dict) else None
    result = {'index': index, 'kind': kind, 'name': name, 'errors': []}
    if not isinstance(obj, dict) or not isinstance(obj.get('apiVersion'), str) or not isinstance(kind, str):
        result.update(status='invalid', errors=[{'path': '', 'message': 'not an object with apiVersion and kind'}])
        return result
    found = schema_for(obj, version)
    if found is None:
        result['status'] = 'no-schema'
        return result
    schema, definitions, used = found
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    result['schemaVersion'] = used
    result['status'] = 'invalid' if errors else 'valid'
    result['errors'] = [{'path': '.'.join(map(str, e.absolute_path)), 'message': e.message} for e in errors]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--kubernetes-version', default=utils.latest_version())
    args = parser.parse_args()
    objects = json.load(sys.stdin)
    if not isinstance(objects, list):
        print('schema_validate: expected a JSON array on stdin', file=sys.stderr)
        return 2
    json.dump([validate(i, o, args.kubernetes_version) for i, o in enumerate(objects)], sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())
