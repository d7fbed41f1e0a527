# The two commands of the README: `make book` and `make test`.
# Each creates (or reuses) the virtual environment .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch/torchvision are installed first, pinned, so that pip never resolves a different build.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: venv book test unit clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet -e ".[test,book]"
	touch $(STAMP)

venv: $(STAMP)

# Builds the HTML into _build/html. Warnings are errors; --all rebuilds every page, so warnings of
# unchanged pages are reported again instead of being hidden by Sphinx's incremental build.
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --all --warningiserror --keep-going

test: $(STAMP)
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf _build
