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

# The GPU check (bench/gpu_check/run.sh): what travels to a lent GPU machine, in build/gpu-check.
# `make wheelhouse` needs a Python 3.12 (PYTHON312=...) and the package registry; the rehearsal
# runs the whole check here on the CPU first.
.PHONY: wheelhouse device-data gpu-check-rehearsal
wheelhouse:
	bash bench/gpu_check/prepare.sh wheelhouse

device-data:
	bash bench/gpu_check/prepare.sh data

gpu-check-rehearsal: wheelhouse device-data
	bash bench/gpu_check/rehearse.sh
