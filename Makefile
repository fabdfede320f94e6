# A newcomer needs only `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint typecheck bench loadtest install clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required (looked for '$(PYTHON)')"; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/plcert serve --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(VENV)/bin/ruff check plcore service worker tests bench examples
	$(VENV)/bin/ruff format --check plcore service worker tests bench examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The suite on every core, at most 4 pytest-xdist workers (tests marked `serial` run alone, see
# tests/xdist_turns.py); TEST_WORKERS=0 runs it in this one process (e.g. to use --pdb).
TEST_WORKERS ?= auto

test: $(STAMP) lint typecheck
	$(PY) -m pytest -n $(TEST_WORKERS) --maxprocesses=4 $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# 50 clients for 60 s against `plcert serve` and against API + 2 workers on Redis/PostgreSQL;
# writes its tables into docs/reliability.md (LOADTEST_ARGS="--modes embedded --duration 20").
loadtest: $(STAMP)
	$(PY) -m bench.loadtest $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
