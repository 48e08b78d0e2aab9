# Every target creates or reuses .venv and installs what it needs, Debian packages included.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.floodwall-installed
# Services and data the tests, the demo and the benchmarks use (see README, "What gets installed").
DEBIAN_PACKAGES := nginx nftables iproute2 redis-server modsecurity-crs libloc-database location chromium wrk
BENCH_PACKAGES := goaccess
DEMO_OUT ?= demo-out

.PHONY: all demo test check lint typecheck bench sysdeps clean

all: check

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || PYTHON=python3; \
	  [ -x $(PY) ] || $$( command -v $(PYTHON) || echo python3 ) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

sysdeps:
	@scripts/ensure-debian-packages $(DEBIAN_PACKAGES)

demo: $(STAMP) sysdeps
	@scripts/demo $(DEMO_OUT)

test: $(STAMP) sysdeps
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: $(STAMP) sysdeps
	@scripts/ensure-debian-packages $(BENCH_PACKAGES)
	$(PY) benchmarks/bench_read.py --lines 1000000 --repeat 1
	$(PY) benchmarks/bench_analyze.py --scale 0.05 --repeat 1

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
