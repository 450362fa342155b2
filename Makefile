# Every target bootstraps .venv from a bare Python 3.11 with pip when it is missing or stale.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-delta clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=/path/to/python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[emulator,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m batch.demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check batch tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/throughput.py $(BENCH_FLAGS)

bench-delta: $(STAMP)
	$(BIN)/python bench/delta.py $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
