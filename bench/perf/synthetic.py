"""What every section of ``python -m bench speed`` shares: the sizes, untrained models on synthetic
catalogues and the markdown table of numbers (the timer is ``bench.perf.decode.take_turns``).

The models are untrained ``cpu``-preset networks on random one-to-one SIDs (4 digits x 256 codes)
and random histories: the network's cost does not depend on its weights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from diffgrm.config import preset
from diffgrm.data import Samples
from diffgrm.model import build_model
from diffgrm.prepare import Prepared
from diffgrm.pse import Catalogue

N_DIGITS, CODEBOOK = 4, 256
TOPK = 10
CPD_FLOOR_TARGET = 1.5

# sizes: (full, quick)
SIZES = {
    "decode_items": (10_000, 1_000),
    "decode_users": (128, 8),
    "decode_batch": (32, 8),
    "decode_beam": (32, 16),
    "train_items": (10_000, 1_000),
    "train_steps": (12, 2),
    "train_batch": (256, 32),
    "embed_texts": (1_000, 16),
    "fit_items": (12_000, 512),
    "fit_codebook": (256, 16),
    "scale_items": ((1_000, 10_000, 100_000), (1_000,)),
    "scale_beams": ((16, 32, 64, 128), (16, 32)),
    "scale_users": (32, 4),
    "scale_steps": (6, 2),
    "passes_users": (64, 8),
    "passes_batch": (32, 8),
    "passes_beams": ((32, 256), (16, 32)),
    "repeats": (3, 1),
}


def size(name: str, quick: bool):
    return SIZES[name][1 if quick else 0]


# --------------------------------------------------------------------------- synthetic data


def random_catalogue(n_items: int, rng: np.random.Generator) -> np.ndarray:
    """``n_items`` distinct random SIDs, ``[n_items, 4]`` in 0..255 (one-to-one)."""
    flat = rng.choice(CODEBOOK**N_DIGITS, size=n_items, replace=False)
    return np.stack([(flat // CODEBOOK**d) % CODEBOOK for d in range(N_DIGITS)], axis=1).astype(np.int64)


def random_histories(n: int, n_items: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Histories of 8-20 random items, oldest first."""
    return [rng.integers(0, n_items, size=int(rng.integers(8, 21))) for _ in range(n)]


def synthetic_prepared(codes: np.ndarray, n_train: int, rng: np.random.Generator) -> Prepared:
    """A prepared dataset in memory: random training samples, a few validation users."""
    n_items = len(codes)

    def samples(n: int) -> Samples:
        return Samples(random_histories(n, n_items, rng), rng.integers(0, n_items, size=n), np.arange(n))

    items = pd.DataFrame({"item_id": [f"I{i}" for i in range(n_items)], "title": "", "text": ""})
    return Prepared(
        path=Path(tempfile.gettempdir()),
        items=items,
        splits={"train": samples(n_train), "valid": samples(8), "test": samples(8)},
        users=[f"U{u}" for u in range(n_train)],
        catalogue=Catalogue(codes, codes, CODEBOOK),
        embeddings=np.zeros((n_items, 1), dtype=np.float32),
        report={},
    )


def untrained(kind: str, codes: np.ndarray, seed: int = 0):
    torch.manual_seed(seed)
    model_cfg, _ = preset("cpu", kind=kind, n_digits=N_DIGITS, codebook_size=CODEBOOK)
    return build_model(model_cfg, torch.from_numpy(codes)).eval()


# --------------------------------------------------------------------------- the table


def table(headers: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "yes" if v else "**no**"
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
