"""The demo the app opens on: MovieLens-100K prepared, a DiffGRM run and its AR companion trained
and scored on the test split beside popularity, each step only if missing (``make app``)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from diffgrm.safeio import write_json

DEMO_DATA = "runs/movielens-100k"
DEMO_RUN = "runs/ml-tiny"


DEMO_CHANGES = {"model": {"item_id_emb": True}, "train": {"epochs": 8, "patience": 3, "eval_users": 0, "max_minutes": 0},
                "ar_train": {"epochs": 6, "patience": 6},
                "label": "item-id embedding, up to 8 x 120 batches validated on all users (the AR companion: 6 x 120)"}
"""What the demo runs change in the `tiny` preset (chosen with bench/demo.py, see bench/results/demo.md)."""


def ensure_demo_data(data: str | Path = DEMO_DATA, progress: bool = True) -> Path:
    """MovieLens-100K prepared into ``data``, only if missing."""
    from diffgrm.config import DATASET_TOKENIZER_PRESET, tokenizer_preset
    from diffgrm.data import load_dataset
    from diffgrm.prepare import prepare

    data = Path(data)
    if not (data / "tokenizer_report.json").is_file():
        print(f"preparing movielens-100k into {data} ...", file=sys.stderr)
        prepare(load_dataset("movielens-100k"), data, tokenizer_preset(DATASET_TOKENIZER_PRESET["movielens-100k"]),
                progress=progress, force=True)  # only ever replaces an incomplete demo folder
    return data


def ensure_demo_run(run: str | Path = DEMO_RUN, data: str | Path = DEMO_DATA, progress: bool = True) -> Path:
    """The demo: MovieLens-100K prepared, the demo DiffGRM run and its AR companion (``RUN-ar``)
    trained and evaluated on the test split beside popularity, each only if missing."""
    from diffgrm.config import preset
    from diffgrm.prepare import load_prepared
    from diffgrm.train import evaluate_split, load_run, train

    run, data = Path(run), Path(data)
    prepared = load_prepared(ensure_demo_data(data, progress))
    cat = prepared.catalogue
    for kind, folder in (("diffgrm", run), ("ar", Path(f"{run}-ar"))):
        if (folder / "metrics.json").is_file():
            continue
        if not (folder / "model.safetensors").is_file():
            model_cfg, cfg = preset("tiny", kind=kind, n_digits=cat.n_digits, codebook_size=cat.codebook_size)
            model_cfg, cfg = replace(model_cfg, **DEMO_CHANGES["model"]), replace(cfg, **DEMO_CHANGES["train"])
            if kind == "ar":  # the companion only has to show another order: a shorter run keeps the demo quick
                cfg = replace(cfg, **DEMO_CHANGES["ar_train"])
            print(f"training the demo {kind} run into {folder} (a few minutes on a CPU) ...", file=sys.stderr)
            train(prepared, model_cfg, cfg, folder, progress=progress)
        print(f"evaluating {folder} on the test split ...", file=sys.stderr)
        metrics = evaluate_split(load_run(folder, data=data)[0], prepared, "test", beam=32, progress=progress)
        write_json(folder / "metrics.json", metrics)
    return run
