#!/usr/bin/env bash
# `make k8s-down`: removes what `make kind-up` / `make minikube-up` made, and nothing else:
# the namespace jwt-mesh (every object and Secret in it, the PostgreSQL volume claim included)
# in each cluster those targets used, then the kind cluster / minikube profile itself if (and
# only if) they created it (recorded under .run/k8s/). K8S_KEEP_CLUSTER=1 keeps the cluster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state_dir="$root/.run/k8s"
namespace=jwt-mesh

kubectl="${KUBECTL:-}"
if [ -z "$kubectl" ]; then
  if command -v kubectl >/dev/null 2>&1; then kubectl=kubectl
  elif [ -x "$root/.venv/k8s/bin/kubectl" ]; then kubectl="$root/.venv/k8s/bin/kubectl"
  else echo "k8s-down: kubectl not found (install it, or 'make k8s-tools')" >&2; exit 1
  fi
fi

contexts=()
kind_cluster="$(cat "$state_dir/kind-cluster" 2>/dev/null || true)"
minikube_profile="$(cat "$state_dir/minikube-profile" 2>/dev/null || true)"
contexts+=("kind-${KIND_CLUSTER_NAME:-${kind_cluster:-jwt-mesh}}" "${MINIKUBE_PROFILE:-${minikube_profile:-jwt-mesh}}")

found=0
for ctx in "${contexts[@]}"; do
  if "$kubectl" config get-contexts -o name 2>/dev/null | grep -qx "$ctx" \
     && "$kubectl" --context "$ctx" get namespace "$namespace" >/dev/null 2>&1; then
    found=1
    echo "k8s-down: deleting namespace $namespace in context $ctx" >&2
    "$kubectl" --context "$ctx" delete namespace "$namespace" --wait=true --timeout=180s
  fi
done
[ "$found" = 1 ] || echo "k8s-down: no namespace $namespace in ${contexts[*]}" >&2

if [ "${K8S_KEEP_CLUSTER:-0}" != 1 ]; then
  if [ -n "$kind_cluster" ] && command -v kind >/dev/null 2>&1; then
    echo "k8s-down: deleting kind cluster $kind_cluster (created by make kind-up)" >&2
    kind delete cluster --name "$kind_cluster"
    rm -f "$state_dir/kind-cluster"
  fi
  if [ -n "$minikube_profile" ] && command -v minikube >/dev/null 2>&1; then
    echo "k8s-down: deleting minikube profile $minikube_profile (created by make minikube-up)" >&2
    minikube delete -p "$minikube_profile"
    rm -f "$state_dir/minikube-profile"
  fi
fi
