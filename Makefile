# The course's two commands are `make book` and `make test`; everything they
# need (the virtual environment, MathJax, a fresh execution cache) is set up here.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
LOCK_HASH := $(shell sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)
VENV_STAMP := $(VENV)/.installed-$(LOCK_HASH)
MATHJAX := _build/assets/_static/mathjax/tex-chtml.js
HTML := _build/html
PYTEST_ARGS ?=
# Where torch comes from; empty means pip's configured indexes. Hosted CI that
# lacks a local CPU wheel sets https://download.pytorch.org/whl/cpu.
TORCH_INDEX ?=

.PHONY: help venv book serve test bench reader-report grade grade-report hub publish gh-pages lock clean

help:
	@echo "make book     build the book (every page executed) into $(HTML)"
	@echo "make test     run the whole test suite"
	@echo "make serve    serve $(HTML) on http://127.0.0.1:8000"
	@echo "make bench    run the benchmarks and write bench/RESULTS.md"
	@echo "make reader-report   axe counts, overflowing equations and page weight of the built book"
	@echo "make grade A=<assignment>   auto-grade an assignment's submissions"
	@echo "make grade-report A=<a>    write its class report again from the stored results"
	@echo "make hub      run a JupyterHub for the course on http://127.0.0.1:\$${HUB_PORT:-8000} (as root; Ctrl-C stops it)"
	@echo "make publish  push the built book to the gh-pages branch"

# The environment is rebuilt whenever the lock or pyproject changes. torch goes
# first and alone: pinned exactly it resolves to the CPU wheel.
$(VENV_STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$$(grep -E '^torch==' requirements.lock)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	rm -f $(VENV)/.installed-*
	touch $@

# The Python environment alone: enough to grade (make grade); the book also needs MathJax.
venv: $(VENV_STAMP)

# MathJax 3 comes from the npm registry at the version package-lock.json pins,
# and is served by the book itself (html_extra_path), so math renders offline.
$(MATHJAX): package-lock.json
	npm ci --silent --no-audit --no-fund
	rm -rf _build/assets/_static/mathjax && mkdir -p _build/assets/_static
	cp -r node_modules/mathjax/es5 _build/assets/_static/mathjax
	touch $@

# configurable-http-proxy, JupyterHub's proxy, from the npm registry at the pinned version.
PROXY := node_modules/.bin/configurable-http-proxy
$(PROXY): package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

lock:
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v -E "^(pip|coursekit)==" | sed "s/^torch==\(.*\)+cpu$$/torch==\1/" > requirements.lock

book: venv $(MATHJAX)
	$(BIN)/python -m coursekit.bookbuild --html $(HTML)

serve:
	@test -f $(HTML)/index.html || { echo "no built book: run make book first"; exit 1; }
	$(BIN)/python -m http.server 8000 --bind 127.0.0.1 --directory $(HTML)

# The package's bytecode is written once, here: where PYTHONDONTWRITEBYTECODE is set (as on the CI machines),
# every kernel, nbgrader command and grader the tests start would otherwise compile it again.
# tests/open_to_others.py opens the folders on the way to the checkout to other uids while pytest runs.
test: venv $(MATHJAX) $(PROXY)
	$(BIN)/python -m compileall -q coursekit bench
	$(BIN)/python tests/open_to_others.py $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv $(MATHJAX)
	$(BIN)/python -m bench.run_all

reader-report: venv $(MATHJAX)
	$(BIN)/python -m bench.reader_report --html $(HTML)

grade: venv
	@test -n "$(A)" || { echo "usage: make grade A=<assignment> [ARGS='--jobs 2']"; exit 2; }
	cd assignments && $(BIN)/coursekit grade $(A) $(ARGS)

grade-report: venv
	@test -n "$(A)" || { echo "usage: make grade-report A=<assignment>"; exit 2; }
	cd assignments && $(BIN)/coursekit report $(A)

# A JupyterHub for the course on this machine, in the foreground (see coursekit/hub/).
HUB_PORT ?= 8000
hub: venv $(PROXY)
	$(BIN)/python -m coursekit.hub $(if $(strip $(HUB_PORT)),--port '$(HUB_PORT)') --proxy $(abspath $(PROXY))

# Publishes the built book to the gh-pages branch of REMOTE (GitHub Pages serves it).
REMOTE ?= origin
publish: book
	$(MAKE) --no-print-directory gh-pages

# Pushes an already built $(HTML) (no rebuild), as one commit on gh-pages.
gh-pages:
	@test -f $(HTML)/index.html || { echo "no built book in $(HTML): run make book first"; exit 1; }
	$(BIN)/ghp-import --no-jekyll --push --force --remote $(REMOTE) --branch gh-pages \
		--message "Publish the book built from $$(git rev-parse --short HEAD)" $(HTML)

clean:
	rm -rf _build .pytest_cache .hypothesis
