#!/usr/bin/env bash
# Builds every image of k8s/images.tsv from the repository root with its Dockerfile and
# `--build-arg WORKSPACE=<workspace>`, tagged <image>:$K8S_IMAGE_TAG (default dev, the tag the
# manifests use). Prints the built references, one per line, on stdout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
tag="${K8S_IMAGE_TAG:-dev}"
command -v docker >/dev/null 2>&1 || { echo "build-images: docker is not installed (https://docs.docker.com/engine/install/)" >&2; exit 1; }
while IFS=$'\t' read -r image workspace dockerfile; do
  case "$image" in ''|'#'*) continue ;; esac
  echo "== docker build $image:$tag (workspace $workspace, $dockerfile)" >&2
  docker build -f "$dockerfile" --build-arg "WORKSPACE=$workspace" -t "$image:$tag" . >&2
  echo "$image:$tag"
done < k8s/images.tsv
