# tollgate — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
UV_HOME ?= .uv
UV := $(UV_HOME)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PROFILE ?= embedded
PROTOS := $(shell find proto -name '*.proto')
export LITELLM_LOCAL_MODEL_COST_MAP := True
export LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS := True

.PHONY: help install browser promtool lock upgrade test-oldest test-clients proto proto-check run test test-unit test-integration test-e2e test-security test-agents fuzz docs docs-serve bench bench-litellm bench-credits soak faults lint fmt clean

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# uv, pinned by hash, in a folder of its own; everything else comes from uv.lock.
$(UV): requirements-uv.txt
	test -x $(UV_HOME)/bin/python || $(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install -q --no-deps --require-hashes -r requirements-uv.txt
	touch $@

$(VENV)/.installed: pyproject.toml uv.lock $(UV)
	@$(UV) lock --check -q || \
		{ echo "tollgate: pyproject.toml and uv.lock disagree: run 'make lock' and commit uv.lock" >&2; exit 1; }
	$(UV) sync --locked --python $(PYTHON) -q
	touch $@

install: $(VENV)/.installed ## Create the virtualenv from uv.lock (tollgate, its dependencies and dev tools)

# The console's browser tests drive Debian's Chromium through Playwright (its own browser download is not used).
CHROMIUM ?= /usr/bin/chromium

browser: ## Install Debian's Chromium for the console's browser tests (when /usr/bin/chromium is missing)
	@test -x $(CHROMIUM) || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

# The alert rules are checked by Prometheus's own promtool (Debian's prometheus package).
PROMTOOL ?= promtool

promtool: ## Install Debian's prometheus package for promtool (alert-rule and metrics checks), when it is missing
	@command -v $(PROMTOOL) >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends prometheus; }

lock: $(UV) ## Bring uv.lock (and bench/litellm/uv.lock, tests/clients/aider/uv.lock) in line with pyproject.toml, changing as little as it can
	$(UV) lock
	$(UV) lock --project bench/litellm
	$(UV) lock --project $(AIDER_PROJECT)

upgrade: $(UV) ## Re-resolve every dependency to its newest allowed release (then run make test and commit the locks)
	$(UV) lock --upgrade
	$(UV) lock --upgrade --project bench/litellm
	$(UV) lock --upgrade --project $(AIDER_PROJECT)

proto: $(VENV)/.installed ## Generate Python code and .pyi stubs from proto/ into tollgate/
	rm -rf tollgate
	PATH=$(BIN):$$PATH $(PY) -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. \
		--mypy_grpc_out=. $(PROTOS)
	find tollgate -type d -exec touch {}/__init__.py \;
	touch tollgate/py.typed

proto-check: proto ## Fail when the generated code in git is stale
	@git diff --exit-code --stat -- tollgate || (echo "generated code is stale: run 'make proto' and commit" && exit 1)
	@test -z "$$(git status --porcelain -- tollgate)" || (echo "untracked generated files: run 'make proto' and commit" && exit 1)

run: $(VENV)/.installed ## Start the whole suite (PROFILE=embedded: SQLite, no Redis; PROFILE=prod: local PostgreSQL + Redis)
	$(PY) -m services.launcher --profile $(PROFILE)

# Test files spread over this many processes (pytest-xdist; a file's tests stay together, so a module's suite
# starts once); 1 runs them in one process.
TEST_WORKERS ?= 2

test: $(VENV)/.installed browser promtool ## Run every test: unit, integration (PostgreSQL, Redis) and end-to-end (openai SDK, the console in Chromium)
	$(BIN)/pytest -q $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# The SDK lower bound claimed in pyproject.toml, tested in a second virtualenv: the lock, then that one release.
OPENAI_OLDEST := $(shell sed -n 's/.*"openai>=\([0-9.]*\)".*/\1/p' pyproject.toml)
SDK_TESTS := tests/e2e/test_sdk_chat.py tests/e2e/test_low_credits.py tests/e2e/test_secrets.py tests/unit/demo_upstream/test_server.py

test-oldest: $(VENV)/.installed ## The SDK tests on the oldest openai release pyproject.toml admits (.venv-oldest)
	UV_PROJECT_ENVIRONMENT=$(abspath .venv-oldest) $(UV) sync --locked -q --python $(PYTHON)
	$(UV) pip install -q --python .venv-oldest/bin/python "openai==$(OPENAI_OLDEST)"
	.venv-oldest/bin/pytest -q -p no:cacheprovider $(SDK_TESTS)

# Real client libraries (the `clients` group of pyproject.toml, resolved apart from `dev`) in a virtualenv of their own,
# and the aider CLI in another (.venv-aider, from tests/clients/aider/uv.lock: aider-chat pins exact releases of
# openai and litellm that no lock shared with tollgate can hold).
CLIENTS_VENV := .venv-clients
AIDER_VENV := .venv-aider
AIDER_PROJECT := tests/clients/aider

test-clients: $(UV) ## Real clients through the suite: langchain-openai, openai-agents, pydantic-ai, instructor, llm, aider (under 1 min once installed)
	UV_PROJECT_ENVIRONMENT=$(abspath $(CLIENTS_VENV)) $(UV) sync --locked -q --no-default-groups --group clients --python $(PYTHON)
	UV_PROJECT_ENVIRONMENT=$(abspath $(AIDER_VENV)) $(UV) sync --locked -q --python $(PYTHON) --project $(AIDER_PROJECT)
	TOLLGATE_CLIENT_TESTS=1 $(CLIENTS_VENV)/bin/pytest -q -p no:cacheprovider -W ignore::ResourceWarning \
		-W ignore::pytest.PytestUnraisableExceptionWarning -W ignore::DeprecationWarning tests/clients

test-unit: $(VENV)/.installed promtool ## Unit tests only
	$(BIN)/pytest -q tests/unit

test-integration: $(VENV)/.installed ## Integration tests (real PostgreSQL and Redis)
	$(BIN)/pytest -q tests/integration

test-e2e: $(VENV)/.installed browser promtool ## End-to-end tests: the suite as real processes, the openai SDK (and a browser) as client
	$(BIN)/pytest -q tests/e2e

test-security: $(VENV)/.installed ## Black-box checks of internal identities and access rules against the running suite
	$(BIN)/pytest -q tests/security

# Agent CLIs for `make test-agents`, pinned, from the npm registry into a git-ignored folder on first use
# (one install for all of them: an install with --no-save prunes what another one left).
AGENTS := .cache/agents
CLAUDE_CODE_VERSION := 2.1.332
CODEX_VERSION := 0.171.0
AGENT_PACKAGES := @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) @openai/codex@$(CODEX_VERSION)
AGENTS_STAMP := $(AGENTS)/.installed-claude-$(CLAUDE_CODE_VERSION)-codex-$(CODEX_VERSION)

$(AGENTS_STAMP):
	npm install --prefix $(AGENTS) --no-save --no-audit --no-fund -q $(AGENT_PACKAGES)
	touch $@

test-agents: $(VENV)/.installed $(AGENTS_STAMP) ## Real agent CLIs (Codex CLI, Claude Code) through the suite, offline, charged exactly; needs Node and npm
	TOLLGATE_AGENTS=1 $(BIN)/pytest -q tests/agents

fuzz: $(VENV)/.installed ## Fuzz every route from /openapi.json with a real key (about 10,000 cases): no 5xx, OpenAI-shaped errors, the status mix
	TOLLGATE_FUZZ_EXAMPLES=330 $(BIN)/pytest -q -s tests/e2e/test_fuzz.py

# The reference pages are generated from the code at build time (docgen/hooks.py); --strict fails on a broken link,
# a missing page or anchor, and a setting, route or command without its description.
DOCS_ADDR ?= 127.0.0.1:8000

docs: $(VENV)/.installed ## Build the documentation site (mkdocs-material, --strict) into site/
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: $(VENV)/.installed ## Serve the documentation site at http://$(DOCS_ADDR), rebuilt on every change
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --strict --dev-addr $(DOCS_ADDR)

bench: $(VENV)/.installed ## Benchmark the suite (production profile: local PostgreSQL + Redis); table + bench/results/<time>.json
	$(PY) -m bench.run

bench-litellm: $(VENV)/.installed ## The same scenarios against LiteLLM proxy too (own venv bench/.venv-litellm), as ratios
	$(PY) -m bench.run --litellm

bench-credits: $(VENV)/.installed ## Credits reserve+settle pairs/s on PostgreSQL: 1,000 accounts and one hot account
	$(PY) -m bench.credits_bench

soak: $(VENV)/.installed ## 100k requests at steady load; RSS of every service and its growth over the second half
	$(PY) -m bench.run --soak 100000

faults: $(VENV)/.installed ## kill -9 each service, restart PostgreSQL and Redis, bad providers, under load: a table of figures
	$(PY) -m bench.faults

lint: $(VENV)/.installed ## ruff and mypy over our code, generated stubs included
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(VENV)/.installed ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove the virtualenv, caches and local data
	rm -rf $(VENV) $(UV_HOME) .venv-oldest $(CLIENTS_VENV) $(AIDER_VENV) .cache data site .pytest_cache .mypy_cache .ruff_cache bench/results bench/.venv-litellm
