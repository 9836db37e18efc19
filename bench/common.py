"""What every benchmark shares, written once.

- where things live: the repository, ``bench/results`` and Amazon Beauty in ``../shared``;
- a prepared folder made or reused (:func:`ensure_prepared`) and a run trained or reused
  (:func:`train_or_reuse`, finished when :func:`finished`);
- the one evaluation cache: every stored evaluation is ``RUN/eval-<split>-u<users>-b<beam>-s<passes>
  [-fixed][-unseen].json`` (:func:`eval_file`), made and read back by :func:`evaluate_cached`;
- a run's training history (:func:`read_history`) and its minutes;
- markdown table lines (:func:`md_table`), one table cell over seeds (:func:`mean_std`);
- a free TCP port, and the stamp of the machine and commit a measurement was made on.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
_BEAUTY_BESIDE = ROOT.parent / "shared" / "data" / "amazon-beauty"
_BEAUTY_INSIDE = ROOT / "shared" / "data" / "amazon-beauty"  # where a device machine's copy of the checkout has it
BEAUTY = _BEAUTY_BESIDE if _BEAUTY_BESIDE.is_dir() or not _BEAUTY_INSIDE.is_dir() else _BEAUTY_INSIDE


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- prepared folders and runs


def is_prepared(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "tokenizer_report.json").is_file() and (folder / "catalogue.safetensors").is_file()


def ensure_prepared(folder: str | Path, dataset: str | Path, *options: str) -> Path:
    """``folder`` as it is when prepared, else ``diffgrm prepare --dataset DATASET`` into it (``options``
    are passed on: ``--digits 8``, ``--no-repair`` ...)."""
    from diffgrm.cli import main as cli

    folder = Path(folder)
    if not is_prepared(folder):
        say(f"preparing {dataset} into {folder} ...")
        if cli(["prepare", "--dataset", str(dataset), "--out", str(folder), *options, "--quiet", "--force"]) != 0:
            raise SystemExit(f"error: preparing {folder} failed")
    return folder


def finished(run: str | Path) -> bool:
    """A complete run: its config was written last, and no resumable state is left."""
    run = Path(run)
    return (run / "config.json").is_file() and not (run / "resume.json").is_file()


def quick(cfg):
    """A training config cut to a few steps: the smoke runs' budget."""
    return replace(cfg, epochs=1, max_steps=3, eval_users=20, eval_beam=16, max_minutes=0)


def train_or_reuse(run: str | Path, prepared, model_cfg, cfg, *, device=None, progress: bool = True) -> bool:
    """Train into ``run`` unless a finished run is there (an unfinished one continues); True when trained."""
    from diffgrm.train import train

    run = Path(run)
    if finished(run):
        return False
    say(f"training {run} ({time.strftime('%H:%M')}) ...")
    train(prepared, model_cfg, cfg, run, device=device, progress=progress)
    return True


# --------------------------------------------------------------------------- the evaluation cache


def _run_kind(run: Path) -> tuple[str, int | None]:
    model = json.loads((run / "config.json").read_text())["model"]
    return model["kind"], model.get("n_digits")


def eval_file(run: str | Path, split: str, *, beam: int, users: int = 0, passes: int | None = None,
              order: str = "confidence", exclude_seen: bool = False) -> Path:
    """Where an evaluation of ``run`` is kept; ``passes`` None: one per digit (SASRec: no beam, no passes)."""
    run = Path(run)
    kind, n = _run_kind(run)
    name = f"eval-{split}-u{users or 'all'}"
    if kind != "sasrec":
        name += f"-b{beam}-s{passes or n}"
    return run / (name + ("-fixed" if order == "fixed" else "") + ("-unseen" if exclude_seen else "") + ".json")


def evaluate_cached(run: str | Path, prepared, split: str, *, beam: int = 32, users: int = 0,
                    passes: int | None = None, order: str = "confidence", exclude_seen: bool = False,
                    device=None, progress: bool = False, model=None) -> dict:
    """The metrics of ``run`` on a seeded sample of ``users`` users (0: all) of ``prepared``'s ``split``:
    read from :func:`eval_file` when there, else evaluated (``diffgrm.train.evaluate_split``, SASRec's
    own ranking for a SASRec run) and kept there. ``model``: the run's model when the caller holds it
    (else it is loaded with ``prepared``'s folder as its users)."""
    run = Path(run)
    path = eval_file(run, split, beam=beam, users=users, passes=passes, order=order, exclude_seen=exclude_seen)
    if path.is_file():
        return json.loads(path.read_text())
    say(f"evaluating {run}: {split}, beam {beam}, {passes or 'n'} passes"
        + (", history excluded" if exclude_seen else "") + f" ({time.strftime('%H:%M')})")
    if _run_kind(run)[0] == "sasrec":
        from diffgrm.sasrec import evaluate_sasrec, load_sasrec
        from diffgrm.train import subsample

        device = device or "cpu"
        metrics = evaluate_sasrec(load_sasrec(run, device=device), subsample(prepared.splits[split], users, seed=0),
                                  prepared.catalogue.codes, device=device, exclude_seen=exclude_seen)
    else:
        from diffgrm.train import evaluate_split, load_run

        if model is None:
            model, _, _ = load_run(run, data=prepared.path, device=device)
        metrics = evaluate_split(model, prepared, split, users=users, beam=beam, order=order, passes=passes,
                                 progress=progress, exclude_seen=exclude_seen)
    path.write_text(json.dumps(metrics, indent=1))
    return metrics


# --------------------------------------------------------------------------- training history


def read_history(run: str | Path) -> list[dict]:
    """The epochs of a run (``history.jsonl``), none when it has not trained one."""
    path = Path(run) / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def history_seconds(history: list[dict]) -> float:
    """Training plus validation seconds over a run's epochs (a reused run keeps its time)."""
    return sum(r.get("train_seconds", 0) + r.get("valid_seconds", 0) for r in history)


# --------------------------------------------------------------------------- tables


def md_table(headers: list[str], rows: list[list[object]]) -> list[str]:
    """Markdown lines of a table whose cells are already formatted."""
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def mean_std(values: list[float]) -> str:
    """One table cell: the value of one seed, or mean ± std over several (empty for none)."""
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


# --------------------------------------------------------------------------- machine and commit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine() -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}


def commit(short: bool = False) -> dict:
    """The checkout's commit, and whether ``diffgrm/`` had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", *(["--short"] if short else []), "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "diffgrm"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": head or None, "diffgrm_changed": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "diffgrm_changed": None}
