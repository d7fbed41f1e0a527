# The two commands of the README: `make book` and `make test`.
# Each creates (or reuses) the virtual environment .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch/torchvision are installed first, pinned, so that pip never resolves a different build.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: venv book test unit lab clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet -e ".[test,book]"
	touch $(STAMP)

venv: $(STAMP)

# book/build.py executes every chapter (notebooks/NN_*.ipynb) with papermill on a profile into
# _build/<profile>/, then builds the HTML from those executed copies (warnings are errors, every
# page rebuilt). `make book`: the default profile, into _build/html.
book: $(STAMP)
	$(PY) book/build.py --profile default

# The ci-profile book that `make test` executes, checks and opens in a browser.
CI_BOOK := _build/ci

# JupyterLab and jupyterlab-myst (the lab extra), installed once beside the book's packages:
# for `make lab`, and for `make test`, whose last browser test runs a chapter live in JupyterLab.
LAB_STAMP := $(VENV)/.lab-installed

# 1. unit tests; 2. every chapter executed on the ci profile and built into a book; 3. nbval runs
# the executed chapters again and compares the cells tagged `nbval-check-output` (lax mode:
# other cells only have to run); 4. the browser tests on that book, and chapter 2 run in
# JupyterLab with its live explorer (tests/test_lab.py, on the runs the ci build cached).
test: $(LAB_STAMP)
	$(PY) -m pytest --ignore=tests/test_book_html.py --ignore=tests/test_lab.py
	$(PY) book/build.py --profile ci
	$(PY) -m pytest --nbval-lax --nbval-current-env $(CI_BOOK)/notebooks
	GAIN_BOOK_HTML=$(CI_BOOK)/_build/html $(PY) -m pytest tests/test_book_html.py tests/test_lab.py

# JupyterLab on the chapters. In a chapter, set `live_explorer = True` (chapter 2) for sliders
# the kernel recomputes.
$(LAB_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[test,book,lab]"
	touch $(LAB_STAMP)

lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab notebooks/

unit: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf _build
