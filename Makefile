# ortpipe: `make demo` builds the default bundle and walks the seed example;
# `make test` runs the whole test suite. Both create .venv when missing.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.ortpipe-installed

.PHONY: demo test bench install docs docs-serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU build of torch, first: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ortpipe export
	$(BIN)/ortpipe doctor
	$(BIN)/ortpipe classify --explain "This course is amazing!" "I've been waiting for a HuggingFace course my whole life." "I hate this so much!"
	$(BIN)/ortpipe bench --quick

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/ortpipe bench --json bench.json --plot docs/bench.png

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .benchmarks
