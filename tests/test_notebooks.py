"""The tutorial notebooks: stored without outputs, in sync with their text twins, and runnable top to bottom.

Each ``notebooks/NN_name.ipynb`` is paired (jupytext, ``formats: ipynb,py:percent``) with
``notebooks/NN_name.py``, the same cells as plain Python: edit either one, then
``jupytext --sync notebooks/*.ipynb`` brings the other up to date.

Each notebook runs in a fresh kernel with ``DIFFGRM_QUICK=1`` (small sizes, about two minutes
each on a 2-core CPU), from the ``notebooks/`` folder as the notebooks expect. The wall time of
every run is written to ``test-artifacts/notebooks/times.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["00_quickstart.ipynb", "01_pse.ipynb", "02_ocn.ipynb", "03_cpd.ipynb", "04_evaluate.ipynb", "05_toy_world.ipynb"]
TIMES = Path(os.environ.get("DIFFGRM_ARTIFACTS", ROOT / "test-artifacts")) / "notebooks" / "times.json"


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_clean_and_framed(name):
    nb = _read(name)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "**Goal:**" in first.source, "the first cell must state the goal"
    last_md = [c for c in nb.cells if c.cell_type == "markdown"][-1]
    assert "What to try next" in last_md.source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "QUICK, RUNS = setup()" in code[0].source  # the shared set-up (diffgrm.tutorial): quick mode, outputs
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, "commit notebooks with outputs stripped"


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def test_every_notebook_has_a_text_twin():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)
    assert sorted(p.name for p in NOTEBOOKS.glob("*.py")) == sorted(name.replace(".ipynb", ".py") for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_and_its_py_have_the_same_cells(name):
    """Editing one side only (the .ipynb in Jupyter, or the .py as text) fails here until the pair is synced."""
    nb = _read(name)
    text_file = NOTEBOOKS / name.replace(".ipynb", ".py")
    text = jupytext.read(text_file)
    assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", f"{name} is not paired with its .py"
    assert "jupytext_version" not in text_file.read_text(), "keep jupytext's version out of the .py header"
    hint = f"{name} and {text_file.name} differ: run `jupytext --sync notebooks/*.ipynb` (it updates the older file)"
    ipynb_cells, py_cells = _cells(nb), _cells(text)
    for i, (a, b) in enumerate(zip(ipynb_cells, py_cells)):
        assert a == b, f"{hint}; first difference in cell {i}"
    assert len(ipynb_cells) == len(py_cells), f"{hint}; {len(ipynb_cells)} cells vs {len(py_cells)}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_quick_mode(name):
    from nbclient import NotebookClient

    nb = _read(name)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    env = {**os.environ, "DIFFGRM_QUICK": "1"}
    t0 = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError, naming the cell, if any cell fails
    seconds = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[0]
    TIMES.parent.mkdir(parents=True, exist_ok=True)
    times = json.loads(TIMES.read_text()) if TIMES.is_file() else {}
    times[name] = round(seconds, 1)
    TIMES.write_text(json.dumps(times, indent=2, sort_keys=True))
    print(f"{name}: {seconds:.0f} s")


@pytest.mark.parametrize("name", NAMES)
def test_every_notebook_has_exercises_answered_in_hidden_cells_that_check_themselves(name):
    """At least three "Exercise" headings, each followed by a collapsed code cell whose answer asserts."""
    cells = _read(name).cells
    found = 0
    for cell, nxt in zip(cells, cells[1:]):
        if cell.cell_type == "markdown" and cell.source.startswith("### Exercise"):
            found += 1
            assert nxt.cell_type == "code" and nxt.metadata.get("jupyter", {}).get("source_hidden") is True, name
            assert "assert " in nxt.source, f"{name}: the answer to '{cell.source.splitlines()[0]}' checks nothing"
    assert found >= 3, f"{name} has {found} exercises"
