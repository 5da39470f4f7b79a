# tiefwatch — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CATALOG ?= ../shared/data/watch-catalog-dev

.PHONY: demo test lint venv bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch and torchvision are pinned together: on this machine pip takes both from local disk.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev,onnx]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tiefwatch demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Retrieval benchmark on the shared dev catalogue; writes docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python tools/bench_retrieval.py --catalog $(CATALOG)

clean:
	rm -rf $(VENV) .tiefwatch .pytest_cache .ruff_cache *.egg-info
