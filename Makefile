# The two set-up commands of the README. Both create .venv if missing and install
# edgecut with its dev extras; the install re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# Tests in this many processes (pytest-xdist; 0: one process). Most tests wait on brokers, hubs and
# links, so two workers halve the suite's time even on 2 cores.
TEST_WORKERS ?= 2

.PHONY: demo test test-stress check install

demo: $(STAMP)
	$(VENV)/bin/edgecut demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --cov --cov-report=term:skip-covered

# The suite three times in a row beside two CPU-burning processes, on each broker (scripts/stress-test).
test-stress: $(STAMP)
	PYTHON=$(VENV)/bin/python scripts/stress-test

check: $(STAMP)
	scripts/check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
