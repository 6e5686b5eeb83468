# banditlake: `make run` starts the service on the embedded default, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
RUN_LOCK := requirements/run.lock
DEV_LOCK := requirements/dev.lock
UV_VERSION := 0.13.9

.PHONY: run test lint typecheck pytest install install-dev bench clean browser lock

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "banditlake needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs come from the hash-pinned locks (`make lock` writes them from pyproject.toml's
# ranges, which stay loose for library users); the project itself goes in without deps.
$(VENV)/.installed: $(RUN_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r $(RUN_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(DEV_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/banditlake migrate
	$(BIN)/banditlake demo --port $(PORT)
	$(BIN)/banditlake serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# The dashboard's browser test drives Debian's Chromium (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else echo "chromium is not installed and cannot be installed here: the browser test will be skipped"; fi; }

pytest: $(VENV)/.installed-dev browser
	$(BIN)/pytest -q -n 2 --dist loadfile

test: lint typecheck pytest

# Regenerate both locks from pyproject.toml: the dev lock holds the dev and demo extras,
# the run lock the demo extra, constrained by the dev lock so `make run` and `make test`
# agree (other extras, such as notebooks, install from pyproject's ranges). Resolved with
# hashes from PyPI only, for CPython 3.11 on x86_64 Linux (glibc 2.28 or newer): what CI
# runs. A universal resolution would pin numba 0.53 (2021) for shap, because newer numba
# caps requires-python and pyproject's range has no cap. Pins already in a lock are kept
# unless pyproject.toml rules them out; `make lock UPGRADE=1` moves everything to the
# newest. tests/test_lock.py checks the result.
UV_COMPILE = $(VENV)/lock-tools/bin/uv pip compile pyproject.toml --quiet \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	--index-url https://pypi.org/simple --custom-compile-command 'make lock' \
	$(if $(UPGRADE),--upgrade)

lock: | $(BIN)/python
	@test -x $(VENV)/lock-tools/bin/uv || { $(BIN)/python -m venv $(VENV)/lock-tools && \
	  $(VENV)/lock-tools/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	$(UV_COMPILE) --extra dev --extra demo --output-file $(DEV_LOCK)
	$(UV_COMPILE) --extra demo --constraint $(DEV_LOCK) --output-file $(RUN_LOCK)

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/serving.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
