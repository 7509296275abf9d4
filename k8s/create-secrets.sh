#!/usr/bin/env bash
# Creates the Secrets the jwt-mesh manifests reference and the repository never contains:
#
#   mesh-<workload>      for edge authz auth orders inventory profile: the workload's mesh certificate
#                        (X.509-SVID, URI SAN spiffe://jwt-mesh.local/ns/jwt-mesh/sa/<workload>)
#                        as tls.crt, its key as tls.key, the mesh CA as ca.crt (type
#                        kubernetes.io/tls: the same layout cert-manager writes)
#   mesh-edge-https      the edge's HTTPS server certificate (localhost + the edge Service names)
#   postgres-credentials password, database-url   (random; kept when the Secret already exists:
#                        PostgreSQL keeps the password it was initialised with)
#   redis-issuer-credentials    username, password   the auth-service's Redis ACL user (jwtmesh-issuer)
#   redis-verifier-credentials  username, password   the verifiers' read-only Redis ACL user (jwtmesh-verifier)
#   redis-acl            users.acl: the Redis server's ACL file (default user off, both users with
#                        their least-privilege rules and SHA-256 passwords; the same rules as the
#                        core's redisAclRules('jwtmesh:')). The three are made together from random
#                        passwords, and kept together when they all exist.
#
# The certificates come from `make certs` (envoy/src/certs.ts: a development CA made on this
# machine; keys never leave it except into these Secrets). With cert-manager issuing the mesh
# certificates (k8s/components/cert-manager), pass --credentials-only.
#
# Usage: k8s/create-secrets.sh [options]
#   --certs-dir DIR       where `make certs` wrote ca.crt, <workload>.crt|.key (default: <repo>/certs)
#   --namespace NS        default jwt-mesh (the namespace must exist: kubectl apply -f k8s/base/namespace.yaml)
#   --credentials-only    only postgres-credentials and the three Redis Secrets
#   --dry-run             print the Secrets as YAML instead of applying them (no cluster needed;
#                         random passwords are new on every run)
#   --list                print the names of the Secrets this script manages, one per line
# Environment: KUBECTL (default: kubectl on PATH, else the project's .venv/k8s/bin/kubectl),
#   KUBECTL_CONTEXT (passed as --context when set).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

MESH_WORKLOADS=(edge authz auth orders inventory profile)
CREDENTIAL_SECRETS=(postgres-credentials redis-acl redis-issuer-credentials redis-verifier-credentials)
REDIS_SECRETS=(redis-acl redis-issuer-credentials redis-verifier-credentials)
# Least-privilege Redis ACL rules for the key prefix jwtmesh: (k8s/test checks them against the
# core's redisAclRules): the issuer writes, the verifiers only read and subscribe.
REDIS_ISSUER_RULES='resetkeys resetchannels ~jwtmesh:rv:* ~jwtmesh:rl:* &jwtmesh:revocations -@all +get +mget +set +del +exists +ttl +incr +pexpire +pttl +eval +evalsha +publish +subscribe +info +ping +select +client|setname'
REDIS_VERIFIER_RULES='resetkeys resetchannels %R~jwtmesh:rv:jti:* %R~jwtmesh:rv:sid:* %R~jwtmesh:rv:sub:* %R~jwtmesh:rv:synced &jwtmesh:revocations -@all +mget +info +subscribe +ping +select +client|setname'

certs_dir="$root/certs"
namespace=jwt-mesh
credentials_only=0
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --certs-dir) certs_dir="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --credentials-only) credentials_only=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --list)
      for w in "${MESH_WORKLOADS[@]}"; do echo "mesh-$w"; done
      echo mesh-edge-https
      printf '%s\n' "${CREDENTIAL_SECRETS[@]}"
      exit 0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "create-secrets: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

kubectl="${KUBECTL:-}"
if [ -z "$kubectl" ]; then
  if command -v kubectl >/dev/null 2>&1; then kubectl=kubectl
  elif [ -x "$root/.venv/k8s/bin/kubectl" ]; then kubectl="$root/.venv/k8s/bin/kubectl"
  else echo "create-secrets: kubectl not found (install it, or run 'make k8s-tools' for the project's copy)" >&2; exit 1
  fi
fi
kc=("$kubectl")
if [ -n "${KUBECTL_CONTEXT:-}" ]; then kc+=(--context "$KUBECTL_CONTEXT"); fi
command -v openssl >/dev/null 2>&1 || { echo "create-secrets: openssl is needed for the random passwords" >&2; exit 1; }

# emit NAME ARGS...: `kubectl create secret generic` rendered client-side, then printed
# (--dry-run) or applied (so re-running updates the certificates in place).
emit() {
  local name="$1"; shift
  local yaml
  yaml="$("${kc[@]}" create secret generic "$name" --namespace "$namespace" "$@" --dry-run=client -o yaml)"
  if [ "$dry_run" = 1 ]; then
    printf -- '---\n%s\n' "$yaml"
  else
    printf '%s\n' "$yaml" | "${kc[@]}" apply -f - >/dev/null
    echo "create-secrets: applied secret/$name in namespace $namespace" >&2
  fi
}

exists() {
  [ "$dry_run" = 0 ] && "${kc[@]}" get secret "$1" --namespace "$namespace" >/dev/null 2>&1
}

if [ "$credentials_only" = 0 ]; then
  missing=()
  for f in ca.crt edge-https.crt edge-https.key; do [ -f "$certs_dir/$f" ] || missing+=("$f"); done
  for w in "${MESH_WORKLOADS[@]}"; do
    for ext in crt key; do [ -f "$certs_dir/$w.$ext" ] || missing+=("$w.$ext"); done
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "create-secrets: missing in $certs_dir: ${missing[*]}. Run 'make certs' first (or pass --certs-dir)." >&2
    exit 1
  fi
  for w in "${MESH_WORKLOADS[@]}"; do
    emit "mesh-$w" --type=kubernetes.io/tls \
      --from-file=tls.crt="$certs_dir/$w.crt" --from-file=tls.key="$certs_dir/$w.key" --from-file=ca.crt="$certs_dir/ca.crt"
  done
  emit mesh-edge-https --type=kubernetes.io/tls \
    --from-file=tls.crt="$certs_dir/edge-https.crt" --from-file=tls.key="$certs_dir/edge-https.key" --from-file=ca.crt="$certs_dir/ca.crt"
fi

if exists postgres-credentials; then
  echo "create-secrets: secret/postgres-credentials exists, kept (PostgreSQL was initialised with it)" >&2
else
  pg_password="$(openssl rand -hex 24)"
  emit postgres-credentials --from-literal=password="$pg_password" \
    --from-literal=database-url="postgresql://jwt_mesh:${pg_password}@postgres.${namespace}.svc.cluster.local:5432/jwt_mesh"
fi
redis_existing=0
for s in "${REDIS_SECRETS[@]}"; do if exists "$s"; then redis_existing=$((redis_existing + 1)); fi; done
if [ "$redis_existing" = "${#REDIS_SECRETS[@]}" ]; then
  echo "create-secrets: secrets ${REDIS_SECRETS[*]} exist, kept" >&2
elif [ "$redis_existing" != 0 ]; then
  echo "create-secrets: only some of ${REDIS_SECRETS[*]} exist; their passwords must match the ACL file." >&2
  echo "  Delete them all (kubectl delete secret --namespace $namespace ${REDIS_SECRETS[*]}) and run again." >&2
  exit 1
else
  issuer_password="$(openssl rand -hex 24)"
  verifier_password="$(openssl rand -hex 24)"
  sha256() { printf '%s' "$1" | openssl dgst -sha256 -r | cut -d' ' -f1; }
  acl_file="$(printf 'user default off resetkeys resetchannels -@all\nuser jwtmesh-issuer on #%s %s\nuser jwtmesh-verifier on #%s %s\n' \
    "$(sha256 "$issuer_password")" "$REDIS_ISSUER_RULES" "$(sha256 "$verifier_password")" "$REDIS_VERIFIER_RULES")"
  emit redis-acl --from-literal=users.acl="$acl_file"
  emit redis-issuer-credentials --from-literal=username=jwtmesh-issuer --from-literal=password="$issuer_password"
  emit redis-verifier-credentials --from-literal=username=jwtmesh-verifier --from-literal=password="$verifier_password"
fi
