# SkyLink: run `make help` for the targets. Every stage target passes CONFIG and WORKDIR to the CLI.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SKYLINK := $(VENV)/bin/skylink
CONFIG ?= assets/configs/demo.yaml
WORKDIR ?= work/$(basename $(notdir $(CONFIG)))
ARGS ?=
STAMP := $(VENV)/.stamp-setup
STAGES := data reconstruct render enhance train index evaluate report
SYSTEM_PACKAGES := libusb-1.0-0 libvulkan1 mesa-vulkan-drivers libgl1 libgomp1 chromium

.PHONY: help setup system-deps demo test bench rebuild-3d inspect clean run $(STAGES)

help: ## list the targets
	@echo "SkyLink make targets (CONFIG=$(CONFIG) WORKDIR=$(WORKDIR)):"
	@grep -E '^[a-zA-Z0-9_ -]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-28s %s\n", $$1, $$2}'
	@echo "  data reconstruct render enhance train index evaluate report   one stage each (cached)"

setup: $(STAMP) ## create .venv and install SkyLink with its dependencies

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel on this machine's disk; a plain `torch` requirement would pull a multi-GB CUDA build
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps: ## (root on Debian) the system libraries open3d and the report test need
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; \
	else echo "not root on Debian: make sure these are installed: $(SYSTEM_PACKAGES)"; fi

demo: $(STAMP) ## run the whole pipeline on the embedded default region (assets/configs/demo.yaml)
	$(SKYLINK) run --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

run: $(STAMP) ## the whole pipeline with CONFIG and WORKDIR
	$(SKYLINK) run --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

$(STAGES): $(STAMP)
	$(SKYLINK) $@ --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

test: $(STAMP) ## run the test suite (installs what it needs first)
	$(PY) -m pytest -q $(ARGS)

bench: $(STAMP) ## run the benchmarks; results in bench/results.json
	$(PY) -m bench.run_all $(ARGS)

rebuild-3d: $(STAMP) ## rebuild the 3D cache of a new or changed region: make rebuild-3d REGION=DIR
	@test -n "$(REGION)" || { echo "usage: make rebuild-3d REGION=DIR [WORKDIR=...]"; exit 2; }
	$(SKYLINK) rebuild-3d --region $(REGION) --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

inspect: $(STAMP) ## open a reconstruction in Open3D: make inspect BUILDING=0001 [ARGS="--scale 2"]
	@test -n "$(BUILDING)" || { echo "usage: make inspect BUILDING=ID [ARGS='--scale 2 --screenshot x.png']"; exit 2; }
	$(SKYLINK) inspect $(BUILDING) --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

clean: ## remove work dirs, test data and caches (keeps .venv)
	rm -rf work tests/data bench/out .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
