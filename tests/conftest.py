"""Shared fixtures: small synthetic datasets built in code, and the location of ../shared."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DIFFGRM_SHARED", ROOT.parent / "shared"))
BEAUTY = SHARED / "data" / "amazon-beauty"


def load_script(path: str) -> ModuleType:
    """A script of the repository that is not a package module (``bench/quality.py``), freshly imported."""
    file = ROOT / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


def write_folder_dataset(path: Path, n_items: int = 120, n_users: int = 60, seed: int = 0, length: tuple[int, int] = (4, 9)) -> Path:
    """A "sequences + items" folder with titled items in a few themed groups."""
    rng = np.random.default_rng(seed)
    themes = ["lipstick", "shampoo", "perfume", "nail polish", "sunscreen", "eyeliner"]
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "items.jsonl", "w") as fh:
        for i in range(n_items):
            theme = themes[i % len(themes)]
            fh.write(json.dumps({"item_id": f"I{i}", "title": f"{theme.title()} number {i} &amp; more", "categories": [["Beauty", theme]]}) + "\n")
    with open(path / "user_sequence.txt", "w") as fh:
        for u in range(n_users):
            n = int(rng.integers(length[0], length[1] + 1))
            items = rng.choice(n_items, size=n, replace=False)
            fh.write(" ".join([f"U{u}", *(f"I{i}" for i in items)]) + "\n")
    return path


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "toy")


@pytest.fixture
def clustered_embeddings() -> np.ndarray:
    """600 unit vectors in 32-d around 12 centres: enough structure for k-means to find."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(12, 32))
    x = centres[rng.integers(0, 12, size=600)] + 0.3 * rng.normal(size=(600, 32))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFGRM_CACHE", str(cache))
    return cache


def write_chain_dataset(path: Path, n_items: int = 60, n_users: int = 150, seed: int = 0) -> Path:
    """Users walk item chains (i, i+1, i+2, ... mod n_items): the next item is learnable from the
    last one, while popularity is flat."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "items.jsonl", "w") as fh:
        for i in range(n_items):
            fh.write(json.dumps({"item_id": f"I{i}", "title": f"Chain item {i}", "categories": [f"group {i % 5}"]}) + "\n")
    with open(path / "user_sequence.txt", "w") as fh:
        for u in range(n_users):
            start, n = int(rng.integers(n_items)), int(rng.integers(5, 9))
            fh.write(" ".join([f"U{u}", *(f"I{(start + j) % n_items}" for j in range(n))]) + "\n")
    return path


@pytest.fixture(scope="session")
def chain_prepared(tmp_path_factory) -> Path:
    """The chain dataset prepared with a small codebook (8 codes x 4 digits)."""
    from diffgrm.cli import main

    root = tmp_path_factory.mktemp("chain")
    folder = write_chain_dataset(root / "raw")
    assert main(["prepare", "--dataset", str(folder), "--out", str(root / "prepared"), "--codebook", "8", "--quiet"]) == 0
    return root / "prepared"


@pytest.fixture(scope="session")
def chain_run(chain_prepared, tmp_path_factory) -> Path:
    """A DiffGRM run trained on the chain dataset until it follows the chains (about 10 s)."""
    from dataclasses import replace

    from diffgrm.config import preset
    from diffgrm.prepare import load_prepared
    from diffgrm.train import train

    run = tmp_path_factory.mktemp("chain_run") / "run"
    model_cfg, cfg = preset("tiny", n_digits=4, codebook_size=8)
    cfg = replace(cfg, **FAST_TRAIN)
    train(load_prepared(chain_prepared), model_cfg, cfg, run, device="cpu", progress=False)
    return run


@pytest.fixture(scope="session")
def chain_ar_run(chain_prepared, chain_run) -> Path:
    """An AR run on the same chain catalogue, saved next to ``chain_run`` as ``run-ar``."""
    from dataclasses import replace

    from diffgrm.config import preset
    from diffgrm.prepare import load_prepared
    from diffgrm.train import train

    run = chain_run.parent / "run-ar"
    model_cfg, cfg = preset("tiny", kind="ar", n_digits=4, codebook_size=8)
    train(load_prepared(chain_prepared), model_cfg, replace(cfg, **FAST_TRAIN), run, device="cpu", progress=False)
    return run


FAST_TRAIN = dict(epochs=40, batch_size=32, lr=5e-3, warmup_steps=20, eval_start=40, patience=5, eval_users=0, max_minutes=0)
"""Training settings that learn the chain dataset in seconds."""


def save_catalogue(folder: Path, arrays: dict) -> None:
    """Rewrite a prepared folder's catalogue as ``prepare`` would: the file and its recorded sha256."""
    import json

    from safetensors.numpy import save_file

    from diffgrm.safeio import file_checksums

    save_file(arrays, str(folder / "catalogue.safetensors"))
    meta = json.loads((folder / "dataset.json").read_text())
    meta["sha256"].update(file_checksums(folder, ("catalogue.safetensors",)))
    (folder / "dataset.json").write_text(json.dumps(meta))


def train_interrupted(prepared, model_cfg, cfg, run: Path, at_epoch: int = 3) -> None:
    """Train into ``run`` and stop with a KeyboardInterrupt once epoch ``at_epoch`` is done, as Ctrl-C would."""
    from diffgrm.train import train

    def interrupt(epoch, model, row):
        if epoch == at_epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(prepared, model_cfg, cfg, run, device="cpu", progress=False, on_epoch=interrupt)
