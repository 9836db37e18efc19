"""Datasets: loading one by name, the folder format, and the leave-one-out split.

Every source (the embedded MovieLens-100K and the official Amazon 2014 files in ``sources.py``, a
"sequences + items" folder here) becomes a :class:`Dataset` (``dataset.py``): an item table with
one text per item and, per user, the items in time order. Everything downstream (tokenizer,
training, evaluation) reads only this shape. Imports flow one way: ``data`` uses ``sources``,
and both use ``dataset``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffgrm.dataset import MIN_SEQUENCE, Dataset, build_dataset
from diffgrm.errors import DiffGRMError
from diffgrm.safeio import parse_json, read_text

MAX_HISTORY = 50
"""Histories are truncated to their last 50 items (method.md section 5)."""

NAMED_DATASETS = ("movielens-100k", "amazon-beauty", "amazon-sports", "amazon-toys")


# --------------------------------------------------------------------------- folder format


def read_folder(path: str | Path, name: str | None = None) -> Dataset:
    """Read a "sequences + items" folder (the bring-your-own-data format).

    ``user_sequence.txt``: one line per user, ``user_id item_id item_id ...`` (whitespace
    separated, oldest first). ``items.jsonl``: one JSON object per item with an ``item_id`` (or
    ``asin``) and text fields among ``title``, ``year``, ``price``, ``brand``, ``categories``,
    ``genres``, ``description`` (or a ready ``text``). ``item_embeddings.npy`` (optional): one
    float vector per item, row i for the i-th item of ``items.jsonl``, from any encoder; ``prepare``
    then uses these vectors instead of embedding the texts.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DiffGRMError(f"{folder} is not a folder (expected user_sequence.txt and items.jsonl)")
    seq_file, item_file = folder / "user_sequence.txt", folder / "items.jsonl"
    for f in (seq_file, item_file):
        if not f.is_file():
            raise DiffGRMError(f"missing file {f}")
    items = list(_read_items_jsonl(item_file))
    known = {rec["item_id"] for rec in items}
    sequences = []
    for lineno, line in enumerate(read_text(seq_file).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        for iid in parts[1:]:
            if iid not in known:
                raise DiffGRMError(f"{seq_file}:{lineno}: item {iid!r} is not in {item_file.name}")
        sequences.append((parts[0], parts[1:]))
    if not sequences:
        raise DiffGRMError(f"{seq_file} holds no user sequences (expected lines 'user_id item_id item_id ...')")
    vectors = folder / EMBEDDINGS_FILE
    embeddings = read_embeddings(vectors, len(items)) if vectors.is_file() else None
    dataset = build_dataset(name or folder.name, items, sequences, source=str(folder), need_text=embeddings is None)
    dataset.embeddings = embeddings
    return dataset


EMBEDDINGS_FILE = "item_embeddings.npy"


def read_embeddings(path: Path, n_items: int, chunk: int = 1 << 16) -> np.ndarray:
    """``item_embeddings.npy`` as float32 ``[n_items, dim]``, checked: a 2-D float array (no
    pickles), one row per item of ``items.jsonl``, every value finite."""
    try:
        raw = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DiffGRMError(f"{path} is not a readable .npy array ({exc}); save it with numpy.save") from None
    if raw.ndim != 2 or raw.dtype.kind != "f":
        raise DiffGRMError(f"{path} must be a 2-D float array [items, dim], got {raw.dtype} of shape {raw.shape}")
    if raw.shape[0] != n_items:
        raise DiffGRMError(f"{path} has {raw.shape[0]:,} rows but items.jsonl has {n_items:,} items: "
                           "row i must be the vector of the i-th item")
    if raw.shape[1] < 2:
        raise DiffGRMError(f"{path} holds {raw.shape[1]}-d vectors; give at least 2 dimensions")
    out = np.empty(raw.shape, dtype=np.float32)
    for s in range(0, n_items, chunk):  # a chunk at a time: a million rows never sit in memory twice
        block = np.asarray(raw[s : s + chunk], dtype=np.float32)
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            raise DiffGRMError(f"{path}: row {s + int(np.argmax(bad))} holds NaN or infinite values")
        out[s : s + chunk] = block
    return out


ID_TYPES = (str, int)
"""An ``item_id`` may be a string or a whole number (kept as its decimal text)."""


def _read_items_jsonl(path: Path) -> Iterable[dict]:
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        rec = parse_json(line, path, dict, line=lineno)
        iid = rec.get("item_id", rec.get("asin"))
        if iid is None:
            raise DiffGRMError(f"{path}:{lineno}: the item has no 'item_id' (or 'asin') field")
        if isinstance(iid, bool) or not isinstance(iid, ID_TYPES):
            raise DiffGRMError(f"{path}:{lineno}: 'item_id' must be a string or a whole number, got {json.dumps(iid)[:40]}")
        iid = str(iid)
        if not iid.strip() or len(iid.split()) != 1 or iid != iid.strip():
            raise DiffGRMError(f"{path}:{lineno}: item_id {iid!r} is empty or holds whitespace, "
                               "so user_sequence.txt could not name it")
        for key in ("text", "title"):
            if key in rec and rec[key] is not None and not isinstance(rec[key], str):
                raise DiffGRMError(f"{path}:{lineno}: {key!r} must be a string, got {type(rec[key]).__name__} "
                                   f"{json.dumps(rec[key])[:40]}")
        yield {**rec, "item_id": iid}


def write_folder(dataset: Dataset, path: str | Path) -> Path:
    """Write a dataset in the folder format (item text goes in ``text``)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    ids = dataset.items["item_id"].tolist()
    with open(folder / "user_sequence.txt", "w", encoding="utf-8") as fh:
        for user, seq in zip(dataset.users, dataset.sequences):
            fh.write(" ".join([user, *(ids[i] for i in seq)]) + "\n")
    with open(folder / "items.jsonl", "w", encoding="utf-8") as fh:
        for row in dataset.items.itertuples(index=False):
            fh.write(json.dumps({"item_id": row.item_id, "title": row.title, "text": row.text}) + "\n")
    return folder


def load_dataset(name_or_folder: str | Path, *, raw_dir: str | Path | None = None, download: bool = True) -> Dataset:
    """A named dataset (see :data:`NAMED_DATASETS`) or a "sequences + items" folder."""
    from diffgrm import sources  # here, not above: reading a folder needs no downloader

    key = str(name_or_folder)
    if key == "movielens-100k":
        return sources.load_movielens_100k()
    if key in sources.AMAZON_CATEGORIES:
        return sources.load_amazon(key, raw_dir=raw_dir, download=download)
    if Path(key).is_dir():
        return read_folder(key)
    raise DiffGRMError(
        f"unknown dataset {key!r}: not a folder, and not one of {', '.join(NAMED_DATASETS)}"
    )


# --------------------------------------------------------------------------- split


@dataclass
class Samples:
    """(history, target) pairs of one split; ``users[i]`` is the user row the pair came from."""

    histories: list[np.ndarray]
    targets: np.ndarray
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.targets)


def leave_one_out(
    sequences: Sequence[np.ndarray], *, max_history: int = MAX_HISTORY, min_history: int = 2
) -> dict[str, Samples]:
    """The protocol of method.md section 5.

    For a sequence ``s`` of length L: test = (``s[:L-1]``, ``s[L-1]``), valid = (``s[:L-2]``,
    ``s[L-2]``); training samples are every prefix of the training part ``s[:L-2]`` with at least
    ``min_history`` history items, predicting the next training item. Histories keep their last
    ``max_history`` items.
    """
    out: dict[str, tuple[list, list, list]] = {k: ([], [], []) for k in ("train", "valid", "test")}

    def add(split: str, u: int, hist: np.ndarray, target: int) -> None:
        h, t, us = out[split]
        h.append(hist[-max_history:])
        t.append(int(target))
        us.append(u)

    for u, seq in enumerate(sequences):
        n = len(seq)
        if n < MIN_SEQUENCE:
            raise DiffGRMError(f"sequence {u} has {n} items; leave-one-out needs at least {MIN_SEQUENCE}")
        add("test", u, seq[: n - 1], seq[n - 1])
        add("valid", u, seq[: n - 2], seq[n - 2])
        for j in range(min_history, n - 2):
            add("train", u, seq[:j], seq[j])
    return {
        k: Samples(histories=h, targets=np.asarray(t, dtype=np.int64), users=np.asarray(us, dtype=np.int64))
        for k, (h, t, us) in out.items()
    }


def train_items(sequences: Sequence[np.ndarray]) -> np.ndarray:
    """Indices of the items that occur in some training part (all but the last two items)."""
    parts = [s[:-2] for s in sequences if len(s) > 2]
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(parts))
