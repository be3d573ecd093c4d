# Two set-up commands for a fresh machine: `make demo` and `make test`.
# Both bootstrap uv into .tools/ and install the locked environment into .venv/.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON := $(PYTHON)
RUN := $(UV) run --frozen --no-sync

.PHONY: demo test quick check bench lint typecheck clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen
	rm -f $(VENV)/.bench-synced
	touch $@

# Benchmarks also need the peers (Feast), kept out of the test and demo environment.
$(VENV)/.bench-synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --group bench
	rm -f $(VENV)/.synced
	touch $@

demo: $(VENV)/.synced
	$(RUN) offerloop demo --data-dir .offerloop-demo --fresh --json .offerloop-demo/demo.json

check: $(VENV)/.synced
	$(RUN) ruff check src tests bench scripts
	$(RUN) ruff format --check src tests bench scripts
	$(RUN) mypy

# The dashboard's browser test drives Debian's chromium (Playwright's own download is not
# reachable here); installed once, with sudo when not root.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y --no-install-recommends chromium)

# promtool (from Debian's prometheus package; no server is started) checks the alert rules
# and the Grafana dashboard's queries in deploy/.
PROMTOOL ?= /usr/bin/promtool

$(PROMTOOL):
	$(SUDO) apt-get install -y --no-install-recommends prometheus \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y --no-install-recommends prometheus)

test: check $(CHROMIUM) $(PROMTOOL)
	CHROMIUM_PATH=$(CHROMIUM) $(RUN) pytest

# The developer loop (about a minute): everything but the tests marked slow (real server
# processes, long runs, the PostgreSQL + Redis variants), a fifth of the Hypothesis examples.
quick: check $(PROMTOOL)
	HYPOTHESIS_PROFILE=dev $(RUN) pytest -m "not slow" -q

# Load generators for bench/load_test.py and bench/soak.py, from Debian's packages.
/usr/bin/hey /usr/bin/wrk:
	$(SUDO) apt-get install -y --no-install-recommends hey wrk \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y --no-install-recommends hey wrk)

bench: $(VENV)/.bench-synced /usr/bin/hey /usr/bin/wrk
	$(RUN) python bench/run.py

clean:
	rm -rf $(TOOLS) $(VENV) .offerloop-demo .pytest_cache .mypy_cache .ruff_cache test-output
