#!/usr/bin/env python3
"""Parses Dockerfiles with PyPI `dockerfile` (a binding of BuildKit's own Go parser) and prints
their instructions as JSON, so the k8s checks see exactly what `docker build` would parse.

Usage: dockerfile_info.py PATH...
Output: {"PATH": {"ok": true, "instructions": [{"cmd": "FROM", "flags": [...], "value": [...],
         "line": n}, ...]} | {"ok": false, "error": "..."}, ...}
"""
import json
import sys

import dockerfile


def describe(path):
    try:
        commands = dockerfile.parse_file(path)
    except (dockerfile.GoParseError, OSError) as e:
        return {'ok': False, 'error': str(e)}
    return {'ok': True, 'instructions': [
        {'cmd': c.cmd.upper(), 'flags': list(c.flags), 'value': list(c.value), 'line': c.start_line}
        for c in commands
    ]}


if __name__ == '__main__':
    json.dump({p: describe(p) for p in sys.argv[1:]}, sys.stdout)
