"""A toy world small enough to see the whole search: 2 digits x 8 codes, 64 SIDs on one 8 x 8 lattice.

Every item is one cell of the lattice: digit 0 is its *genre* (8 of them), digit 1 its *level*
(1 to 8). Each user has a favourite genre and a favourite level: their items keep the genre (now
and then they stray to another) and land on the level or one either side of it. So a user's next
item has an easy digit (the genre: one answer) and a harder one (the level: three about equally
likely answers), and a DiffGRM that learns it is sure of digit 0 and unsure of digit 1. A
``tiny`` DiffGRM learns it in seconds on a CPU.
The SIDs are the lattice itself, written down rather than made by PSE, so that a cell's position
*is* its SID: the toy teaches OCN and CPD, not the tokenizer.

:func:`make_toy_world` writes the data (a "sequences + items" folder) and trains the run; the
notebook ``05_toy_world`` and the explorer's "Toy world" mode draw it with
``diffgrm.viz.lattice_figure``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from diffgrm.data import leave_one_out, load_dataset
from diffgrm.prepare import TRAIN_MIN_HISTORY, Prepared
from diffgrm.pse import Catalogue

CODES = 8
GENRES = ("action", "comedy", "drama", "horror", "mystery", "romance", "sci-fi", "western")
STRAY = 0.1
"""How often a user's next item is of another genre (a random one)."""


def lattice_codes() -> np.ndarray:
    """Every (genre, level) cell, as ``[64, 2]`` codes: item i is genre ``i // 8``, level ``i % 8``."""
    return np.array([(g, lv) for g in range(CODES) for lv in range(CODES)], dtype=np.int64)


def write_data(folder: str | Path, users: int = 400, seed: int = 0) -> Path:
    """The toy world's users and items as a "sequences + items" folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(folder / "items.jsonl", "w", encoding="utf-8") as fh:
        for g, lv in lattice_codes().tolist():
            fh.write(json.dumps({"item_id": f"{GENRES[g]}-{lv + 1}", "title": f"{GENRES[g].title()} level {lv + 1}",
                                 "genres": [GENRES[g]]}) + "\n")
    with open(folder / "user_sequence.txt", "w", encoding="utf-8") as fh:
        for u in range(users):
            genre, level, seq = int(rng.integers(CODES)), int(rng.integers(CODES)), []
            for _ in range(int(rng.integers(5, 9))):
                g = int(rng.integers(CODES)) if rng.random() < STRAY else genre
                lv = int(np.clip(level + rng.integers(-1, 2), 0, CODES - 1))
                seq.append(f"{GENRES[g]}-{lv + 1}")
            fh.write(" ".join([f"U{u}", *seq]) + "\n")
    return folder


def toy_prepared(data: str | Path) -> Prepared:
    """The toy data with the lattice as its catalogue (what training needs; no tokenizer)."""
    ds = load_dataset(data)
    ids = ds.items["item_id"].tolist()
    lattice = {f"{GENRES[g]}-{lv + 1}": (g, lv) for g, lv in lattice_codes().tolist()}
    codes = np.array([lattice[i] for i in ids], dtype=np.int64)
    cat = Catalogue(codes=codes, codes_raw=codes.copy(), codebook_size=CODES)
    report = {**cat.report(), "dataset": "toy world", "n_items": len(ids), "n_users": len(ds.users)}
    splits = leave_one_out(ds.sequences, min_history=TRAIN_MIN_HISTORY)
    return Prepared(path=Path(data), items=ds.items, splits=splits, users=list(ds.users), catalogue=cat,
                    embeddings=None, report=report, data=str(Path(data).resolve()))


def make_toy_world(folder: str | Path, *, users: int = 2000, epochs: int = 10, seed: int = 0,
                   progress: bool = False) -> Path:
    """Write the toy data into ``folder/data`` and train a small DiffGRM into ``folder/run`` (about
    fifteen seconds on a 2-core CPU); a finished run there is kept. Returns the run folder."""
    from diffgrm.config import preset
    from diffgrm.train import train

    folder = Path(folder)
    run = folder / "run"
    if (run / "config.json").is_file():
        return run
    prepared = toy_prepared(write_data(folder / "data", users=users, seed=seed))
    model_cfg, cfg = preset("tiny", n_digits=2, codebook_size=CODES)
    model_cfg = replace(model_cfg, dropout=0.0, max_history=8)  # a short taste, nothing to regularise
    cfg = replace(cfg, epochs=epochs, max_steps=0, eval_users=500, max_minutes=0, eval_start=epochs, batch_size=32,
                  lr=3e-3, warmup_steps=20, patience=epochs, label_smoothing=0.0, seed=seed)
    train(prepared, model_cfg, cfg, run, device="cpu", progress=progress)
    return run


def supervision(prepared: Prepared) -> pd.DataFrame:
    """How often OCN supervised each cell: per training target, the masked positions of its n views
    (1 + 2 + ... + n), counted on the target's (genre, level) cell."""
    n = prepared.catalogue.n_digits
    targets = prepared.catalogue.codes[prepared.splits["train"].targets]
    counts = np.zeros((CODES, CODES), dtype=np.int64)
    np.add.at(counts, (targets[:, 0], targets[:, 1]), n * (n + 1) // 2)
    return pd.DataFrame(counts, index=list(GENRES), columns=[f"level {lv + 1}" for lv in range(CODES)])
