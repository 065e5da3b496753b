# make run   - install into .venv and start the server with the demo chat (no Redis needed)
# make test  - install everything the tests need, then lint, type-check and run the tests
# make bench - the benchmark suite against Node's socket.io (see benchmarks/README.md)

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: run test lint check setup system node bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.run: $(VENV)/bin/python setup.cfg
	$(PY) -m pip install -q .
	touch $@

$(VENV)/.test: $(VENV)/bin/python setup.cfg
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.run
	$(VENV)/bin/sio-push --demo

system:
	bash scripts/install-system-deps

node: system
	npm ci --prefix client_examples --no-audit --no-fund --loglevel=error
	npm ci --prefix benchmarks --no-audit --no-fund --loglevel=error

setup: system node $(VENV)/.test

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy sio_push tests benchmarks

test: setup lint
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) client_examples/node_modules benchmarks/node_modules
