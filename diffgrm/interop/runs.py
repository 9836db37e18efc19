"""An imported network becomes a diffgrm run folder: matched to the data's items, checked, written.

Both importers (:mod:`diffgrm.interop.cornac`, :mod:`diffgrm.interop.reference`) read their
source into an :class:`Imported` (the network's settings and weights in diffgrm's names, the SID
table in the source's item order, a label) and hand it to :func:`write_imported_run`. The run it
writes is an ordinary run folder (format 2, its own ``catalogue/``), so :func:`diffgrm.train.load_run`,
:class:`diffgrm.decode.Recommender`, :func:`diffgrm.train.evaluate_split` and the explorer read
it as any other. What sets it apart is recorded, never guessed:

- ``config.json`` holds ``source`` (``"cornac"`` or ``"reference"``), ``label`` (what the app
  shows: "diffgrm's CPD on a Cornac network") and ``imported`` (the source's own settings, the
  inputs' sha256, whether its SIDs equal the data folder's);
- the catalogue's report holds ``codebook_space_missing``: the source keeps no OPQ codebooks, so
  anything that asks the run for its codebook space gets that one line instead of a crash.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from diffgrm.checkpoint import save_checkpoint
from diffgrm.config import ModelConfig, TrainConfig
from diffgrm.data import leave_one_out, load_dataset
from diffgrm.errors import DiffGRMError
from diffgrm.model import build_model
from diffgrm.portable import Interactions, check_data, read_interactions
from diffgrm.prepare import TRAIN_MIN_HISTORY, Prepared, read_items
from diffgrm.pse import Catalogue
from diffgrm.safeio import check_output, output_lock, read_json, staged_folder, write_json

LABELS = {
    "cornac": "diffgrm's CPD on a Cornac network",
    "reference": "diffgrm's CPD on the reference code's network",
}
"""What the explorer calls a run of each source (``config.json``'s ``label``)."""
NO_CODEBOOKS = {
    "cornac": "this run was imported from Cornac, which does not keep its OPQ codebooks",
    "reference": "this run was imported from the reference code's checkpoint, which does not keep its OPQ codebooks",
}
"""The one line a codebook view gets for such a run (the catalogue report's ``codebook_space_missing``)."""


@dataclass
class Imported:
    """A source's network, read and renamed, before it meets the data."""

    source: str  # "cornac" or "reference"
    config: ModelConfig
    weights: dict[str, torch.Tensor]  # the network's state dict in diffgrm's names, without item_codes
    item_ids: list[str]  # the SID table's rows, in the source's order
    codes: np.ndarray  # [items, n] codes 0..K-1, in the source's order
    where: str  # the file the SID table came from, for messages
    train: dict = field(default_factory=dict)  # TrainConfig values the source's settings map onto
    details: dict = field(default_factory=dict)  # recorded as config.json's "imported"


def write_imported_run(imp: Imported, data: str | Path, out: str | Path, *, force: bool = False,
                       inputs: tuple[str | Path, ...] = ()) -> Path:
    """Write ``imp`` as a run folder ``out`` whose catalogue is ``data``'s items (a prepared
    folder, a dataset folder or a dataset name) with the source's SIDs, matched by item id.

    The SID table must cover exactly the data's items: an item either side lacks is one clear
    error. ``out`` is refused if it holds anything but a previous run (replaced with ``force``)."""
    check_data(data)
    with output_lock(out):
        check_output(out, "run", force=force, inputs=(*inputs, *([data] if Path(data).is_dir() else [])))
        inter, items, summary = read_data(data)
        codes = match_sids(imp.item_ids, imp.codes, inter.item_ids, imp.where, inter.source)
        model = build_model(imp.config, torch.from_numpy(codes))
        try:
            model.load_state_dict({**imp.weights, "item_codes": torch.from_numpy(codes)}, strict=True)
        except RuntimeError as exc:  # map_state_dict checked every tensor: this is a bug, said plainly
            raise DiffGRMError(f"{imp.where}: the weights do not fit the network ({str(exc).splitlines()[0][:200]})") from None
        cat = Catalogue(codes=codes, codes_raw=codes, codebook_size=imp.config.codebook_size)
        report = catalogue_report(imp, cat, summary, inter)
        details = {**imp.details, "sids_match_data": sids_match(data, codes)}
        with tempfile.TemporaryDirectory() as tmp:  # what the run's catalogue/dataset.json is made from
            write_json(Path(tmp) / "dataset.json", {**summary, "imported_from": imp.source})
            prepared = Prepared(path=Path(tmp), items=items, splits=inter.splits, users=inter.users, catalogue=cat,
                                embeddings=None, report=report, train_min_history=inter.train_min_history,
                                data=inter.source)
            extra = {"source": imp.source, "label": LABELS[imp.source], "imported": details}
            with staged_folder(out) as stage:
                save_checkpoint(stage, model.eval(), train_config(imp.train), prepared, extra=extra)
    return Path(out)


def read_data(data: str | Path) -> tuple[Interactions, pd.DataFrame, dict]:
    """The users, the item table and the summary of ``data``, read once."""
    path = Path(data)
    if path.is_dir() and (path / "splits").is_dir():  # a prepared folder
        inter = read_interactions(path)
        summary = read_json(path / "dataset.json") if (path / "dataset.json").is_file() else {}
        summary = {k: v for k, v in summary.items() if k != "sha256"}
        return inter, read_items(path / "items.jsonl"), summary
    ds = load_dataset(data, download=False)
    splits = leave_one_out(ds.sequences, min_history=TRAIN_MIN_HISTORY)
    source = str(path.resolve()) if path.is_dir() else str(data)
    inter = Interactions(ds.items["item_id"].tolist(), list(ds.users), splits, TRAIN_MIN_HISTORY, source)
    return inter, ds.items[["item_id", "title", "text"]].reset_index(drop=True), ds.summary()


def match_sids(source_ids: list[str], codes: np.ndarray, data_ids: list[str], where: str, data: str) -> np.ndarray:
    """The SID table's rows in the data's item order; an item missing on either side is one error."""
    index = {iid: i for i, iid in enumerate(source_ids)}
    if len(index) != len(source_ids):
        seen: set[str] = set()
        twice = next(iid for iid in source_ids if iid in seen or seen.add(iid))
        raise DiffGRMError(f"{where}: item {twice!r} has two rows in the SID table; the file is damaged")
    missing = [iid for iid in data_ids if iid not in index]
    if missing:
        raise DiffGRMError(f"{len(missing)} of the {len(data_ids)} items of {data} have no SID in {where} (e.g. "
                           f"{missing[0]!r}): the SID table does not match the data; pass the data the network was "
                           "trained on")
    if len(source_ids) != len(data_ids):
        data_set = set(data_ids)
        extra = [iid for iid in source_ids if iid not in data_set]
        raise DiffGRMError(f"{len(extra)} of the {len(source_ids)} items in {where} are not in {data} (e.g. "
                           f"{extra[0]!r}): the SID table does not match the data; pass the data the network was "
                           "trained on")
    return np.ascontiguousarray(codes[[index[iid] for iid in data_ids]], dtype=np.int64)


def sids_match(data: str | Path, codes: np.ndarray) -> bool | None:
    """Whether a prepared folder's own SIDs are the imported ones (None: the data has no SIDs)."""
    path = Path(data) / "catalogue.safetensors"
    if not path.is_file():
        return None
    from diffgrm.safeio import load_tensors

    own = load_tensors(path).get("codes")
    return bool(own is not None and own.shape == codes.shape and np.array_equal(own, codes))


def catalogue_report(imp: Imported, cat: Catalogue, summary: dict, inter: Interactions) -> dict:
    """The catalogue's ``tokenizer_report.json``: the health views' numbers from the codes alone
    (the SIDs are the source's, unrepaired: "before" and "after" repair are the same), and the
    line a codebook view shows instead of the codebooks."""
    train_items = np.unique(np.concatenate([*inter.splits["train"].histories, inter.splits["train"].targets]))
    return {
        **cat.report(),
        "dataset": summary.get("name", str(inter.source)),
        "n_users": len(inter.users),
        "n_items": int(len(cat.codes)),
        "n_interactions": int(summary.get("n_interactions", 0)),
        "skipped_users": int(summary.get("skipped_users", 0)),
        "tokenizer": f"{imp.source}'s SIDs (imported; codebooks not kept)",
        "encoder": "unknown (imported)",
        "embedding_dim": 0,
        "n_train_items": int(len(train_items)),
        "seconds": {"embedding": 0.0, "tokenizer": 0.0},
        "imported_from": imp.source,
        "codebook_space_missing": NO_CODEBOOKS[imp.source],
    }


def train_config(values: dict) -> TrainConfig:
    """The source's training settings as a :class:`TrainConfig` (what ``config.json`` records);
    a value diffgrm would not accept is left at diffgrm's default (the source's own settings are
    kept whole under ``imported``)."""
    kept = {}
    for key, value in values.items():
        try:
            TrainConfig(**{**kept, key: value})
        except (DiffGRMError, TypeError, ValueError):
            continue
        kept[key] = value
    return TrainConfig(**kept)
