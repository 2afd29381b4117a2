# selfheal: `make demo` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Reinstall when the project's declared dependencies change.
DEPS := pyproject.toml

.PHONY: demo test bench chaos lint services venv clean notebooks

demo: $(STAMP)
	$(VENV)/bin/selfheal demo
	$(VENV)/bin/selfheal demo --live --duration 150s

# Two workers, one per core: the tests that share the machine's Redis, PostgreSQL and Serve
# port run in order on one of them (tests/conftest.py); `pytest` alone runs on one.
test: $(STAMP) services lint
	$(PY) -m pytest -q -n 2

bench: $(STAMP) services
	$(PY) -m benchmarks

# The chaos and load suite on a running selfheal (about 40 minutes); writes
# benchmarks/chaos.json and the table in docs/chaos.md. Its own stores: no services needed.
chaos: $(STAMP)
	$(PY) -m benchmarks.chaos

# Run the analysts' notebooks (notebooks/*.py) and keep their rendered copies (*.ipynb, and
# the README's pictures in docs/notebooks/); make test runs them too.
notebooks: $(STAMP)
	cd notebooks && ../$(PY) render.py

lint: $(STAMP)
	$(VENV)/bin/ruff check healing learning simulation actors serve tests benchmarks notebooks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry .

venv: $(STAMP)

$(STAMP): $(DEPS)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,notebooks]'
	touch $(STAMP)

# The test suite talks to a real Redis and a real PostgreSQL on 127.0.0.1; start them when
# they are not running (the machine's own start commands).
services:
	@scripts/services.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .import_linter_cache *.egg-info
