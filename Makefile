# Every target bootstraps .venv from a bare Python 3.11 with pip when it is missing or stale.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The locks (requirements/*.txt, with hashes, for Python 3.11 on Linux x86_64) pin what the
# tests, the container (docker/install.sh) and CI install; pyproject.toml's ranges stay loose
# for library users. `make lock` brings both in line with pyproject.toml after a change to it
# (pins already there stay); `make lock LOCK_UPGRADE=--upgrade` moves every pin to the newest.
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
              --custom-compile-command "make lock" --quiet
UV_VERSION ?= 0.13.9
LOCK_UPGRADE ?=
LOCK_VENV  := .venv-lock

.PHONY: demo test lint docs lock bench bench-delta clean browser screenshot

$(STAMP): pyproject.toml requirements/dev-lock.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=/path/to/python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

lock:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 2; }
	test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && \
	  $(LOCK_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml requirements/build.in --extra emulator \
	  $(LOCK_FLAGS) $(LOCK_UPGRADE) -o requirements/lock.txt
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml requirements/build.in --extra emulator \
	  --extra html --extra dev $(LOCK_FLAGS) $(LOCK_UPGRADE) -o requirements/dev-lock.txt

# The documentation site (mkdocs.yml, docs/): broken links, anchors and nav entries fail the
# build. Not --quiet: it hides the warnings from --strict too, and a broken link then passes.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

demo: $(STAMP)
	$(BIN)/python -m batch.commands.demo

# The suite in parallel (pytest-xdist), one emulator per worker. About a third of its time is
# tests waiting (on the emulator's quota, a subprocess, Chromium) rather than computing, so one
# worker more than the cores fills those waits (2 cores: 3 workers), up to 8. `make test
# TEST_WORKERS=0` runs it in one process; `pytest tests/test_x.py` (no -n: it is not in
# addopts) runs in one too, without the workers' start-up.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 8 ? n + 1 : 8 )))

test: $(STAMP) browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# The HTML report's browser test needs a real Chromium: Debian's package, installed here when
# absent and possible (root, or sudo without a password, and apt-get). When it cannot be, the
# install does not fail the target: the browser test is skipped and says why.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "browser: no chromium and no apt-get: the browser test will be skipped"; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "browser: no chromium, and no root to install it: the browser test will be skipped"; exit 0; fi; \
	  echo "browser: installing Debian's chromium for the HTML report's browser test"; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; } >/dev/null 2>&1 \
	    && echo "browser: $$(chromium --version 2>/dev/null)" \
	    || echo "browser: could not install chromium: the browser test will be skipped"; \
	fi

# docs/report.png: the demo run's HTML report as headless Chromium shows it.
screenshot: demo browser
	$(BIN)/python docs/screenshot.py reports/demo.report.html docs/report.png

lint: $(STAMP)
	$(BIN)/ruff check batch tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/throughput.py $(BENCH_FLAGS)

bench-delta: $(STAMP)
	$(BIN)/python bench/delta.py $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache build *.egg-info site
