# pqproxy: `make demo` and `make test` set everything up on a fresh machine, then run.
PY       ?= $(shell ./scripts/pick-python.sh)
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: all setup peers system demo test test-fast lint typecheck bench clean captures probe-demo lab

all: test

# A venv made with another interpreter than $(PY) is made again (--clear), as if pyproject.toml had changed.
ifneq ($(shell cat $(VENV)/.python 2>/dev/null),$(PY))
$(shell rm -f $(STAMP))
endif

$(STAMP): pyproject.toml
	$(PY) -m venv --clear $(VENV)
	echo '$(PY)' > $(VENV)/.python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) peers system

peers:
	./scripts/install-peers.sh

system:
	./scripts/install-system.sh

demo: $(STAMP)
	$(BIN)/python -m pqproxy.demo

test: setup
	$(MAKE) lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --timeout=300 tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m 'not interop and not e2e' tests

lint: $(STAMP)
	$(BIN)/ruff check pqproxy tests benchmarks scripts
	$(BIN)/mypy pqproxy

typecheck: lint

bench: setup
	$(BIN)/python -m benchmarks.run

# Regenerates captures/ (real hellos from Chromium, Node 26, pqproxy client; root for tcpdump).
captures: setup
	$(BIN)/python -m pqproxy.probe.captures --out captures

clean:
	rm -rf $(VENV) .peers .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The middlebox lab: every scenario through `pqproxy probe`, expected against found (root; ~2 min).
lab: setup
	$(BIN)/python -m pqproxy lab run
