# Entry points for people and CI. `make demo` runs the whole pipeline on the synthetic demo;
# `make test` runs the unit tests. Both create the virtualenv first if needed.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-pyproject
PYTHON ?= $(shell command -v python3.11 || command -v python3)

.PHONY: venv demo test lint report

venv: $(STAMP)

# Reinstall only when pyproject.toml changed since the last install (or the venv is new).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(VENV)/bin/snakemake --cores all --profile profiles/default

test: venv
	$(VENV)/bin/pytest -q --durations=15

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/snakemake --lint

# HTML report of the last run (after `make demo` or any full run).
report: venv
	$(VENV)/bin/snakemake --report report.html
