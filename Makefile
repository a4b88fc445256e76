# agentmgr — every task starts here. `make help` lists them.
# The targets bootstrap themselves: a pinned uv in .tools/, the locked Python
# dependencies in .venv/ (uv.lock), the locked npm tools in node_modules/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
PROTO_FILES := $(wildcard protos/agentmgr/v1/*.proto)
WEB := services/gateway/web
WEB_SOURCES := $(shell find $(WEB)/src $(WEB)/public -type f 2>/dev/null) $(wildcard $(WEB)/index.html $(WEB)/*.ts $(WEB)/*.json)
CHROMIUM := /usr/bin/chromium

export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1

.PHONY: help install run test test-fast lint fmt proto proto-check bench bench-peer web web-test clean

help: ## list every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	@echo "bootstrapping uv $(UV_VERSION) into $(TOOLS)/"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@$(UV) sync --frozen --python $(PYTHON) --quiet
	@touch $@

# `npm install` rather than `npm ci`: npm 11 leaves buf's other-platform optional
# packages out of the lockfile and `npm ci` then refuses it; the versions are exact.
node_modules/.installed: package.json package-lock.json
	@npm install --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.synced node_modules/.installed ## create .venv and node_modules from the lockfiles

# The console is built with the machine's Node/npm, and only when its sources changed.
$(WEB)/dist/index.html: $(WEB_SOURCES)
	@if [ -f $(WEB)/package.json ]; then \
		echo "building the web console"; \
		cd $(WEB) && npm install --no-audit --no-fund --loglevel=error && npm run build --silent && touch dist/index.html; \
	fi

web: $(WEB)/dist/index.html ## build the web console (when its sources changed)

web-test: $(WEB)/dist/index.html ## the console's component tests (Vitest)
	@if [ -f $(WEB)/package.json ]; then cd $(WEB) && npm test --silent; fi

# Browser tests drive Debian's Chromium (Playwright never downloads a browser here).
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null

run: install web ## run the whole system (embedded PostgreSQL + NATS unless DATABASE_URL/NATS_URL)
	@$(VENV)/bin/agentmgr run

test: install lint web web-test $(CHROMIUM) ## lint, console tests, then the whole suite on real PostgreSQL and NATS
	@$(PY) -m pytest -q

test-fast: $(VENV)/.synced web ## the Python suite without lint (for a quick loop)
	@$(PY) -m pytest -q

lint: install proto-check ## ruff, mypy --strict, buf lint, generated code up to date
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy libs services tests bench
	@$(BUF) lint protos

fmt: install ## format the code (ruff) and the protos (buf)
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .
	@$(BUF) format -w protos

define protoc
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -I protos \
		--python_out=$(1) --grpc_python_out=$(1) --mypy_out=$(1) --mypy_grpc_out=$(1) $(PROTO_FILES) >/dev/null
endef

proto: $(VENV)/.synced ## regenerate the Python gRPC code in gen/ from protos/
	@$(call protoc,gen)
	@echo "regenerated gen/agentmgr/v1"

proto-check: $(VENV)/.synced ## fail when gen/ is not what protos/ generate
	@tmp=$$(mktemp -d); mkdir -p $$tmp/agentmgr/v1; \
	$(call protoc,$$tmp); \
	if ! diff -r -q -x __init__.py -x __pycache__ $$tmp/agentmgr gen/agentmgr; then \
		echo "gen/ is stale: run 'make proto' and commit the result"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp

bench: $(VENV)/.synced ## print the benchmark figures (latency, throughput, memory)
	@$(PY) -m bench

PEER := .bench-peer
LITELLM_VERSION := 1.108.5

$(PEER)/bin/litellm:
	@echo "installing LiteLLM $(LITELLM_VERSION) into $(PEER)/ (its own virtualenv)"
	@$(PYTHON) -m venv $(PEER)
	@$(PEER)/bin/pip install --quiet --disable-pip-version-check "litellm[proxy]==$(LITELLM_VERSION)"

bench-peer: $(VENV)/.synced $(PEER)/bin/litellm ## the same run load through LiteLLM's proxy, beside ours
	@$(PY) -m bench.peer --litellm $(PEER)/bin/litellm

clean: ## remove the virtualenv, tools and caches (keeps .agentmgr data)
	rm -rf $(VENV) $(TOOLS) $(PEER) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
