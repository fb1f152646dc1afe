# atomserve — the README's two commands are `make run` and `make test`; everything else is a step
# of theirs. Each target installs what it needs when it is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

CARGO        ?= cargo
DENO         := tools/node_modules/.bin/deno
VENV         := .tools/venv
DEPLOY_VENV  := .tools/deploy-venv
LOOM_MAX_PREEMPTIONS ?= 3
ARGS         ?=

export DENO_NO_UPDATE_CHECK := 1
export DENO_NO_PROMPT := 1
export CARGO_TERM_COLOR := never

.PHONY: lint imports-check docs-check run test release compare-tokio frontend frontend-test browser deps-browser h11 loom loom-mutants bench bench-load bench-reload deps-node deps-test deps-prometheus deploy-check deps-deploy deps-systemd deps-slowhttptest clean

## make run: build the front end and the release server, serve frontend/dist on 127.0.0.1:8080.
run: frontend release
	./target/release/atomserve --root frontend/dist --listen 127.0.0.1:8080 $(ARGS)

## make test: every test — unit, end-to-end over loopback (on epoll, under --seccomp, on io_uring),
## the h11 conformance suite, loom models.
test: lint imports-check docs-check frontend frontend-test browser deps-test deps-prometheus deps-systemd deps-slowhttptest
	$(CARGO) build --bins
	ATOMSERVE_FRONTEND_DIST=$(CURDIR)/frontend/dist ATOMSERVE_REQUIRE_PROMETHEUS=1 ATOMSERVE_REQUIRE_SYSTEMD=1 \
	  ATOMSERVE_REQUIRE_SLOWHTTPTEST=1 $(CARGO) test --workspace --all-targets
	# --all-targets leaves out the doc examples: each building block's asserting examples run here.
	$(CARGO) test --doc -p atomserve
	ATOMSERVE_BIN=$(CURDIR)/target/debug/atomserve $(VENV)/bin/pytest -q tests/h11 tests/otlp
	# The same integration suite (and the OTLP tests) again with the --seccomp allow-list on: a
	# syscall missing from src/sys/seccomp.rs kills a server and fails its test.
	ATOMSERVE_SECCOMP=true ATOMSERVE_FRONTEND_DIST=$(CURDIR)/frontend/dist ATOMSERVE_REQUIRE_PROMETHEUS=1 \
	  ATOMSERVE_REQUIRE_SYSTEMD=1 ATOMSERVE_REQUIRE_SLOWHTTPTEST=1 $(CARGO) test -p atomserve --tests
	ATOMSERVE_SECCOMP=true ATOMSERVE_BIN=$(CURDIR)/target/debug/atomserve $(VENV)/bin/pytest -q tests/otlp
	# Once more on the io_uring backend (--io uring): every behaviour of the epoll one must hold,
	# under --seccomp too, so that the ring's syscalls on the allow-list are checked as well.
	ATOMSERVE_IO=uring ATOMSERVE_SECCOMP=true ATOMSERVE_FRONTEND_DIST=$(CURDIR)/frontend/dist \
	  ATOMSERVE_REQUIRE_PROMETHEUS=1 ATOMSERVE_REQUIRE_SYSTEMD=1 ATOMSERVE_REQUIRE_SLOWHTTPTEST=1 \
	  $(CARGO) test -p atomserve --tests
	ATOMSERVE_IO=uring ATOMSERVE_BIN=$(CURDIR)/target/debug/atomserve $(VENV)/bin/pytest -q tests/h11 tests/otlp
	ATOMSERVE_IO=uring node --test tests/browser/dashboard.test.mjs
	$(MAKE) deploy-check
	$(MAKE) loom

release:
	$(CARGO) build --release --bin atomserve

## make compare-tokio: the minimal tokio server docs/rust.md compares atomserve with (its own
## crate and lock file, outside the workspace), built into target/compare/release/tokio-static.
compare-tokio:
	$(CARGO) build --release --manifest-path benches/compare/tokio-static/Cargo.toml --target-dir target/compare

## make docs-check: every code reference in docs/*.md and README.md resolves in the tree, and every
## `sh try` lesson runs against a fresh server with the output it promises (each checker also
## proves it fails on a broken reference or a wrong expectation).
## make imports-check: the import graph has no cycle, between files or between src/ folders.
## make lint: rustfmt's check, clippy with every warning an error, and the API docs built without
## a warning (private items included: the docs are a course that reads them too).
lint:
	$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --document-private-items -p atomserve

imports-check:
	python3 tools/imports_check.py --self-test
	python3 tools/imports_check.py

docs-check: frontend deps-test compare-tokio
	python3 tools/docs_check.py --self-test
	python3 tools/docs_check.py
	$(CARGO) build --bin atomserve
	python3 tools/docs_try.py --self-test
	python3 tools/docs_try.py

## The front end: Deno from the npm registry (pinned in tools/package.json), then vite.
frontend: frontend/dist/index.html

frontend/dist/index.html: $(DENO) frontend/deno.json frontend/deno.lock frontend/vite.config.ts frontend/index.html $(shell find frontend/src frontend/public -type f 2>/dev/null)
	cd frontend && ../$(DENO) install --frozen && ../$(DENO) task build

## The dashboard's unit tests: the stats → view-model code (frontend/src/stats_test.ts), type-checked.
frontend-test: $(DENO)
	cd frontend && ../$(DENO) install --frozen && ../$(DENO) task test

## The dashboard in Debian's chromium driven by playwright-core (tests/browser/), against
## target/debug/atomserve; the screenshot and the server's log go to target/browser/.
browser: frontend deps-browser
	$(CARGO) build --bin atomserve
	node --test tests/browser/dashboard.test.mjs

## chromium with its recommended packages (fonts), so that the screenshot shows text.
deps-browser: tests/browser/node_modules/.package-lock.json
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

tests/browser/node_modules/.package-lock.json: tests/browser/package.json tests/browser/package-lock.json | deps-node
	npm ci --prefix tests/browser --no-audit --no-fund
	touch $@

$(DENO): tools/package.json tools/package-lock.json | deps-node
	npm ci --prefix tools --no-audit --no-fund
	touch $@

deps-node:
	@command -v npm >/dev/null || { apt-get update && apt-get install -y --no-install-recommends nodejs npm; }

## Python tools for the tests (h11, pytest, opentelemetry-proto, httplint), pinned in tests/requirements.txt;
## iproute2's `ss`, which tests/bigfiles.rs reads a server socket's TCP_INFO with.
deps-test: $(VENV)/.installed
	@command -v ss >/dev/null || { apt-get update && apt-get install -y --no-install-recommends iproute2; }

$(VENV)/.installed: tests/requirements.txt
	@command -v python3 >/dev/null || { apt-get update && apt-get install -y --no-install-recommends python3 python3-venv; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

## Prometheus's own promtool and server, from Debian, for the /metrics tests.
deps-prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }

## deploy/: the Dockerfile (hadolint), the Kubernetes manifests (kubernetes-validate, strict, with
## the schemas it bundles) and their cross-checks. The systemd units are checked by tests/systemd.rs
## (systemd-analyze verify and security), which `cargo test` runs.
deploy-check: deps-deploy
	$(DEPLOY_VENV)/bin/hadolint Dockerfile
	$(DEPLOY_VENV)/bin/kubernetes-validate --strict --quiet deploy/k8s/*.yaml
	$(DEPLOY_VENV)/bin/python deploy/check.py

deps-deploy: $(DEPLOY_VENV)/.installed

$(DEPLOY_VENV)/.installed: deploy/requirements.txt
	@command -v python3 >/dev/null || { apt-get update && apt-get install -y --no-install-recommends python3 python3-venv; }
	python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
	touch $@

## systemd-socket-activate and systemd-analyze, from Debian's systemd package (tests/systemd.rs).
deps-systemd:
	@command -v systemd-socket-activate >/dev/null && command -v systemd-analyze >/dev/null || { apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd; }

## slowhttptest, from Debian, for the slowloris and slow-read attacks (tests/slowloris.rs).
deps-slowhttptest:
	@command -v slowhttptest >/dev/null || { apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slowhttptest; }

h11: deps-test
	$(CARGO) build --bin atomserve
	ATOMSERVE_BIN=$(CURDIR)/target/debug/atomserve $(VENV)/bin/pytest -q tests/h11

## loom models of every atomic protocol, on the real code built with --cfg atomserve_loom.
loom:
	python3 loom-tests/mutants.py --self-test
	RUSTFLAGS="--cfg atomserve_loom" LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS) \
	  $(CARGO) test --release -p loom-tests --target-dir target/loom

## Weakens each atomic ordering in src/ in turn and reports which ones a loom model catches.
loom-mutants:
	python3 loom-tests/mutants.py

bench:
	$(CARGO) bench

## make bench-load: atomserve vs nginx, lighttpd, h2o and the syscall floor, interleaved rounds on
## loopback (benches/load/peers.sh; installs the peers and tools from Debian when missing).
## ROUNDS, DURATION, CASES…: see the script's header.
bench-load: release
	benches/load/peers.sh

## make bench-reload: the cold path — start -> first byte, a Vite rebuild under --watch, wrk during
## background compression (benches/load/reload.py; BASE=old-binary interleaves an older build).
BASE ?=
bench-reload: release
	python3 benches/load/reload.py $(if $(BASE),--base $(BASE))

## make fuzz: the cargo-fuzz targets in fuzz/ (nightly), one after another, FUZZ_SECONDS each on
## one core; not part of `make test`. Corpora grow in fuzz/corpus/, crashes land in fuzz/artifacts/.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := request head chunked path range accept_encoding date conditional
.PHONY: fuzz
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t && \
	  nice -n 10 cargo +nightly fuzz run $$t corpus/$$t seeds/$$t -- \
	    -jobs=1 -workers=1 -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

clean:
	$(CARGO) clean
	rm -rf frontend/dist frontend/node_modules tools/node_modules tests/browser/node_modules $(VENV)
