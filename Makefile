# The two commands a new machine needs: `make demo` and `make test`.
# Each creates .venv and installs the project (with dev tools) when missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench sandbox run check-config clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m bot demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench

sandbox: $(STAMP)
	$(PY) -m sandbox

check-config: $(STAMP)
	$(PY) -m bot check-config

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
