# diffgrm: two commands on a fresh clone (see README.md)
#   make app    set up, prepare the embedded MovieLens-100K and print its tokenizer report
#   make test   set up and run the whole test suite
#
# TORCH is what pip installs before everything else. The default pins the CPU wheel that this
# project's machines keep on disk; elsewhere `make app TORCH=torch` lets pip pick your platform's
# build (CUDA on Linux with an NVIDIA GPU, MPS-capable on macOS).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.diffgrm-installed
RUNS   ?= runs

.PHONY: setup data app test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $(STAMP)

# MovieLens-100K ships in the recbole wheel on PyPI: fetched once, read from the zip, never installed.
data: setup
	$(BIN)/diffgrm fetch movielens-100k --quiet

app: data
	$(BIN)/diffgrm prepare --dataset movielens-100k --out $(RUNS)/movielens-100k

test: data
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(RUNS) test-artifacts
