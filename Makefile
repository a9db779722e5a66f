# Two commands for a fresh machine: `make book` and `make test`.
# `make setup` creates .venv from this repository's files; it is idempotent and
# returns at once when .venv is already up to date with pyproject.toml.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# On x86_64 Linux these two releases are the ones this project is tested with (pip takes them
# from the local wheel cache when it has them). Elsewhere pip resolves the ranges in pyproject.toml.
TORCH_PIN ?= $(shell [ "$$(uname -s)-$$(uname -m)" = "Linux-x86_64" ] && echo "torch==2.14.1 torchvision==0.29.1")
export PYTHONHASHSEED := 0

.PHONY: setup book test lint test-unit test-notebooks test-book student bench clean help book-from-origin colab-cells

help:
	@echo "make book    set up .venv, then build the book into book/_build/html"
	@echo "make test    set up .venv, then run every test (lint, unit, notebooks, book build, browser)"
	@echo "make lint    ruff: formatting and lint of the package, tests, scripts, book extensions, notebooks"
	@echo "make student student notebooks (answer cells, checks, no solutions) in student/ and their site"
	@echo "make bench   run the benchmarks (ours vs torchvision)"
	@echo "make book-from-origin  build the book with launch buttons for \`git remote get-url origin\` (GitHub)"
	@echo "make colab-cells       write every notebook's Colab install cell from the repository setting"

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_PIN)" ]; then $(PY) -m pip install --quiet $(TORCH_PIN); fi
	$(PY) -m pip install --quiet -e ".[book,video,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

book: setup
	@start=$$(date +%s); \
	$(VENV)/bin/jupyter-book build -W -n --keep-going book/ && \
	echo "book built in $$(( $$(date +%s) - start )) s: book/_build/html/index.html"

# The one formatter and linter (pyproject.toml [tool.ruff]; the notebooks at 76 columns: book/ruff.toml).
# Fix with `.venv/bin/ruff format PATHS && .venv/bin/ruff check --fix PATHS`.
LINT_PATHS := mvit tests benchmarks data_scripts book/_ext $(wildcard book/*.ipynb)

lint: setup
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/ruff check $(LINT_PATHS)

# Lint first: it takes a second and fails before the long steps.
test: setup
	$(MAKE) lint
	$(PY) -m pytest tests -q --ignore=tests/browser
	$(MAKE) test-notebooks
	$(MAKE) book
	$(PY) -m pytest tests/browser -q -p no:cacheprovider

test-unit: setup
	$(PY) -m pytest tests -q --ignore=tests/browser

# MVIT_EXERCISES=strict: a check cell whose answer is wrong fails the notebook (mvit/exercises.py), so the
# book's own solutions must pass their checks.
test-notebooks: setup
	MVIT_EXERCISES=strict MVIT_PROFILE=cpu $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider book/*.ipynb -q

# The public repository of the launch buttons and the Colab install cell: `repository` in _config.yml,
# or for one build `MVIT_BOOK_REPO=https://github.com/OWNER/NAME make book` (see mvit/booktools.py).
book-from-origin: setup
	MVIT_BOOK_REPO="$$($(PY) -m mvit.booktools repository --from-git)" && export MVIT_BOOK_REPO && $(MAKE) book

colab-cells: setup
	$(PY) -m mvit.booktools colab-cell --write book

# The student edition: student/*.ipynb (each solution replaced by an answer cell and a stub for its check) and
# the student site, student/_build/html, built from them with solutions hidden. Its checks print "not answered
# yet", which is not an error unless MVIT_EXERCISES=strict, so the build runs with that variable empty.
student: setup
	$(PY) -m mvit.student book student
	@start=$$(date +%s); \
	MVIT_EXERCISES= $(VENV)/bin/jupyter-book build -W -n --keep-going student/ && \
	echo "student site built in $$(( $$(date +%s) - start )) s: student/_build/html/index.html"

bench: setup
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf book/_build student
