/**
 * Fixed locations inside the repository, resolved from this file so that every entry point
 * (tests, `make k8s-validate`, `make k8s-render`) works from any working directory.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `k8s/` */
export const K8S_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The repository root. */
export const REPO_ROOT = resolve(K8S_DIR, '..');
/** `k8s/base/` */
export const BASE_DIR = resolve(K8S_DIR, 'base');
/** `k8s/components/tracing/`: the optional tracing component (collector, Jaeger, traced Envoy configs). */
export const TRACING_COMPONENT_DIR = resolve(K8S_DIR, 'components/tracing');
/** The overlays `make k8s-validate` renders and checks, by name. */
export const OVERLAYS = {
  kind: resolve(K8S_DIR, 'overlays/kind'),
  minikube: resolve(K8S_DIR, 'overlays/minikube'),
  'kind-cert-manager': resolve(K8S_DIR, 'overlays/kind-cert-manager'),
  'kind-tracing': resolve(K8S_DIR, 'overlays/kind-tracing'),
} as const;
export type OverlayName = keyof typeof OVERLAYS;
/** The table of images jwt-mesh builds (image, workspace, Dockerfile). */
export const IMAGES_TSV = resolve(K8S_DIR, 'images.tsv');
