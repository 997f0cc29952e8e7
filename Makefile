# Everything runs from the project's own virtualenv; `make run` and `make test`
# set it up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')
GEN_STAMP := gen/.generated

# promtool (Debian package prometheus) checks our metrics in the tests.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all setup protos system-deps run test soak bench lint clean

all: test

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	# The repo and the generated code are importable from the venv, like an editable install.
	printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/gen" > $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/kanban-dev.pth
	# The commands people type: .venv/bin/kanban-terminal and .venv/bin/kanbanctl.
	for tool in kanban-terminal:terminal kanbanctl:kanbanctl; do \
	  printf '#!/bin/sh\nexec "%s" -m clients.%s "$$@"\n' "$(CURDIR)/$(BIN)/python" "$${tool#*:}" > $(BIN)/$${tool%%:*}; \
	  chmod +x $(BIN)/$${tool%%:*}; \
	done
	touch $@

setup: $(STAMP) $(GEN_STAMP)

protos: $(GEN_STAMP)

$(GEN_STAMP): $(STAMP) $(PROTOS)
	rm -rf gen && mkdir -p gen
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)
	find gen -type d -exec touch {}/__init__.py \;
	touch $@

run: setup
	$(BIN)/python -m services.devstack

system-deps:
	@command -v promtool >/dev/null || { \
	  echo "Installing promtool (Debian package prometheus)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }

test: setup system-deps
	$(BIN)/pytest

# A bounded soak, minutes long and not part of `make test` (README.md, "make soak").
# SOAK_ARGS passes any other option of `python -m tools.soak --help`.
SOAK_MINUTES ?= 5
SOAK_RATE ?= 30
SOAK_TERMINALS ?= 50
soak: setup
	$(BIN)/python -m tools.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE) \
	  --terminals $(SOAK_TERMINALS) $(SOAK_ARGS)

# The benchmark, minutes long and not part of `make test` (README.md, "make bench").
# BENCH_ARGS passes the options of `python -m tools.bench --help` (--seconds, --out ...).
bench: setup
	@command -v h2load >/dev/null || { \
	  echo "Installing h2load (Debian package nghttp2-client) for the empty-call ceiling"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nghttp2-client; }
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/buf lint

clean:
	rm -rf gen var .pytest_cache .mypy_cache .ruff_cache
