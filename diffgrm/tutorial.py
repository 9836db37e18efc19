"""What every tutorial notebook does first, in one place: quick or full mode, where its outputs
go, and MovieLens-100K prepared once per tokenizer setting.

The notebooks (``notebooks/0N_*.ipynb``) run from ``notebooks/`` and write under the repository's
``runs/notebooks`` (git ignores it); ``DIFFGRM_QUICK=1``, which the tests set, keeps each within
about two minutes on a 2-core CPU.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from diffgrm.config import TokenizerConfig


def setup(runs: str | Path = "../runs/notebooks") -> tuple[bool, Path]:
    """Quick mode (``DIFFGRM_QUICK=1``) or not, and the outputs folder (created); prints both, and
    sets the display options the notebooks share (wide pandas columns, no ipywidgets warning)."""
    import pandas as pd

    quick = os.environ.get("DIFFGRM_QUICK") == "1"
    folder = Path(runs)
    folder.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.max_colwidth", 70)
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets: no bars shown
    print("quick mode" if quick else "full mode", "| outputs go to", folder.resolve())
    return quick, folder


def prepared_movielens(folder: str | Path, config: TokenizerConfig):
    """MovieLens-100K prepared with ``config`` in ``folder``; a folder prepared earlier with the same
    config is reused, one with another config is prepared again (a notebook's re-run never mixes them)."""
    from diffgrm.data import load_dataset
    from diffgrm.prepare import load_prepared, prepare

    folder = Path(folder)
    saved = folder / "tokenizer.json"
    same = (saved.is_file() and (folder / "tokenizer_report.json").is_file()
            and json.loads(saved.read_text()) == config.to_dict())
    if not same:
        prepare(load_dataset("movielens-100k"), folder, config, progress=False, force=True)
    return load_prepared(folder)


def source(obj) -> str:
    """The package's own lines for ``obj`` (a function, method or class), headed by file and line
    numbers: a notebook shows the code that implements an equation, never a retyped copy."""
    import inspect

    lines, start = inspect.getsourcelines(obj)
    where = Path(inspect.getsourcefile(obj)).resolve()
    package = Path(__file__).resolve().parent
    name = where.relative_to(package.parent) if where.is_relative_to(package.parent) else where.name
    return f"# {name}, lines {start}-{start + len(lines) - 1}\n" + "".join(lines)


def seeds_table(results: str | Path, variants: dict[str, str], metrics: tuple[str, ...] = ("ndcg@10", "recall@10")):
    """Rows of a committed benchmark (``bench/results/quality.json``'s ``results``: variant -> one entry
    per seed) as mean and standard deviation over the seeds, item level: the evidence a notebook
    sets beside the idea it teaches, read from the file rather than retyped."""
    import statistics

    import pandas as pd

    saved = json.loads(Path(results).read_text())
    rows = []
    for label, key in variants.items():
        runs = saved["results"][key]
        row = {"variant": label, "seeds": len(runs)}
        for metric in metrics:
            values = [r["item"][metric] for r in runs]
            row[metric] = statistics.mean(values)
            row[f"{metric} std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")
