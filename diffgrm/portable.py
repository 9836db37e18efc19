"""Portable runs: a run carries its catalogue and reads its users' interactions by item id.

SIDs come out of floating-point work (the sentence encoder, the PCA, k-means) whose last bits
differ between processors, and k-means amplifies them: the same data and seed prepared on another
machine can give other SIDs, which a trained network cannot decode. So a run never rebuilds its
catalogue. It keeps it, in ``RUN/catalogue/``:

=========================  ==========================================================
``items.jsonl``            the items in the run's order: item_id, title, text
``catalogue.safetensors``  the SIDs after repair and before (``codes``, ``codes_raw``) and the
                           codebook space the views draw: the codebooks (``centroids``) and the
                           items' sub-vectors in half precision (``subvectors``, rows
                           ``space_items``: every item, or a seeded sample of a huge catalogue)
``tokenizer.json``         the tokenizer's settings
``tokenizer_report.json``  usage, dead codes, entropy, collisions and information per digit
``collisions.json``        the largest groups of items that shared a SID before repair
``dataset.json``           the dataset's summary and the sha256 of ``catalogue.safetensors``
=========================  ==========================================================

What a run reads from elsewhere is its users: their histories and the leave-one-out splits, from
a prepared folder, a "sequences + items" folder or a named dataset, each item matched to the
catalogue by its item id (never by SID). MovieLens-100K's interactions are fetched once
(``diffgrm fetch movielens-100k``), never redistributed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from diffgrm.data import NAMED_DATASETS, Samples, leave_one_out, load_dataset
from diffgrm.errors import DiffGRMError
from diffgrm.prepare import TRAIN_MIN_HISTORY, Prepared, load_catalogue, read_items, read_splits, written_min_history
from diffgrm.safeio import file_checksums, read_json, require_keys, staged_folder, verify_checksums, write_json

CATALOGUE = "catalogue"
"""The run's own catalogue: a subfolder of the run."""
RUN_FORMAT = 2
"""Runs that carry their catalogue; format 1 runs (no ``catalogue/``) decode only with the prepared
folder they were trained on, on a machine that rebuilds its SIDs bit for bit."""
SPACE_ITEMS = 50_000
"""At most this many items' sub-vectors are kept (a seeded sample beyond): the codebook map draws
5,000 of them, and a million items' sub-vectors would weigh half a gigabyte."""
COPIED = ("tokenizer.json", "collisions.json")


def flip_last_bits(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """The embeddings as another processor's kernels might round them: the last bit of each float32
    flipped at random. Tokenized, they show how far SIDs move between machines (and the tests use
    them to play another machine)."""
    bits = np.ascontiguousarray(embeddings, dtype=np.float32).copy().view(np.uint32)
    bits ^= np.random.default_rng(seed).integers(0, 2, size=bits.shape, dtype=np.uint32)
    return bits.view(np.float32)


def write_catalogue(prepared: Prepared, run: str | Path) -> Path:
    """Write ``RUN/catalogue/`` from ``prepared`` (a prepared folder, or a run's own catalogue)."""
    dest = Path(run) / CATALOGUE
    cat = prepared.catalogue
    with staged_folder(dest) as stage:
        with open(stage / "items.jsonl", "w", encoding="utf-8") as fh:
            for i, row in enumerate(prepared.items.itertuples(index=False)):
                fh.write(json.dumps({"index": i, "item_id": row.item_id, "title": row.title, "text": row.text}) + "\n")
        arrays = {"codes": np.ascontiguousarray(cat.codes, dtype=np.int64),
                  "codes_raw": np.ascontiguousarray(cat.codes_raw, dtype=np.int64)}
        try:
            sub, cent, rows = prepared.codebook_space(max_items=SPACE_ITEMS)
            arrays.update(subvectors=np.ascontiguousarray(sub, dtype=np.float16),
                          centroids=np.ascontiguousarray(cent, dtype=np.float32),
                          space_items=np.ascontiguousarray(rows, dtype=np.int64))
        except DiffGRMError:  # rq and random tokenizers have no per-digit spaces to draw
            pass
        # one metadata key: safetensors writes several in no fixed order, and the same catalogue should be the same bytes
        save_file(arrays, str(stage / "catalogue.safetensors"), metadata={"fingerprint": cat.fingerprint})
        for name in COPIED:
            if (Path(prepared.path) / name).is_file():
                shutil.copyfile(Path(prepared.path) / name, stage / name)
        write_json(stage / "tokenizer_report.json", prepared.report)
        summary = _summary(Path(prepared.path))
        write_json(stage / "dataset.json", {**summary, "sha256": file_checksums(stage, ("catalogue.safetensors",))})
    return dest


def _summary(folder: Path) -> dict:
    """A prepared folder's ``dataset.json`` without its checksums (they name other files)."""
    summary = read_json(folder / "dataset.json") if (folder / "dataset.json").is_file() else {}
    return {k: v for k, v in summary.items() if k != "sha256"}


def dataset_name(prepared: Prepared) -> str | None:
    """The named dataset (:data:`NAMED_DATASETS`) a catalogue was made from, if it was made from one:
    a run records it, so that it can read its users from that dataset where its data folder is gone."""
    summary = _summary(Path(prepared.path))
    name, source = summary.get("name"), summary.get("source")
    if name not in NAMED_DATASETS or (source and (Path(source) / "user_sequence.txt").is_file()):
        return None  # a "sequences + items" folder that happens to carry a dataset's name
    return name


# --------------------------------------------------------------------------- reading a run


@dataclass
class Interactions:
    """Users and their leave-one-out splits, with item indices into ``item_ids``."""

    item_ids: list[str]
    users: list[str]
    splits: dict[str, Samples]
    train_min_history: int
    source: str


def read_interactions(data: str | Path) -> Interactions:
    """The users of ``data``: a prepared folder (its splits), a "sequences + items" folder or a named
    dataset (split here, as ``diffgrm prepare`` splits it). Nothing is downloaded."""
    path = Path(data)
    if path.is_dir() and (path / "splits").is_dir():
        items = read_items(path / "items.jsonl")
        users, splits = read_splits(path, len(items))
        minimum = written_min_history(_summary(path))
        return Interactions(items["item_id"].tolist(), users, splits, minimum, str(path.resolve()))
    check_data(data)
    ds = load_dataset(data, download=False)
    splits = leave_one_out(ds.sequences, min_history=TRAIN_MIN_HISTORY)
    source = str(path.resolve()) if path.is_dir() else str(data)
    return Interactions(ds.items["item_id"].tolist(), list(ds.users), splits, TRAIN_MIN_HISTORY, source)


def check_data(data: str | Path) -> None:
    """``data`` names something a run can read users from (without reading it): a folder or a dataset name."""
    if not Path(data).is_dir() and str(data) not in NAMED_DATASETS:
        raise DiffGRMError(f"no data at {data}: give a prepared folder, a dataset folder (user_sequence.txt + "
                           f"items.jsonl) or a dataset name ({', '.join(NAMED_DATASETS)})")


def resolve_data(run: Path, meta: dict, data: str | Path | None = None) -> str:
    """Where a run's users come from: ``data`` when given, else the folder it recorded, else the
    named dataset it was made from."""
    if data is not None:
        return str(data)
    recorded = str(meta["data"])
    if Path(recorded).is_dir() or recorded in NAMED_DATASETS:
        return recorded
    if meta.get("dataset") in NAMED_DATASETS:
        return str(meta["dataset"])
    raise DiffGRMError(f"the data this run's users come from ({recorded}, from {run / 'config.json'}) is not on this "
                       "machine; pass --data with its prepared folder, its dataset folder or its name")


def match_items(prepared: Prepared, inter: Interactions) -> Prepared:
    """``prepared`` (a catalogue) with the users of ``inter``, their items re-indexed into the
    catalogue by item id; an item the catalogue lacks is a clear error, never dropped."""
    ids = prepared.items["item_id"].tolist()
    splits = inter.splits
    if inter.item_ids != ids:
        index = {iid: i for i, iid in enumerate(ids)}
        lut = np.array([index.get(iid, -1) for iid in inter.item_ids], dtype=np.int64)
        splits = {name: _reindex(s, lut, inter) for name, s in splits.items()}
    prepared.users, prepared.splits = inter.users, splits
    prepared.train_min_history, prepared.data = inter.train_min_history, inter.source
    return prepared


def _reindex(samples: Samples, lut: np.ndarray, inter: Interactions) -> Samples:
    lengths = np.array([len(h) for h in samples.histories], dtype=np.int64)
    flat = np.concatenate(samples.histories) if len(lengths) else np.zeros(0, dtype=np.int64)
    mapped, targets = lut[flat], lut[samples.targets]
    unknown = np.concatenate([flat[mapped < 0], samples.targets[targets < 0]])
    if unknown.size:
        names = sorted({inter.item_ids[i] for i in unknown.tolist()})
        raise DiffGRMError(f"{len(names)} item(s) of {inter.source} are not in this run's catalogue (e.g. "
                           f"{names[0]!r}): the run was trained on other items; pass --data with the data it was "
                           "trained on")
    histories = np.split(mapped, np.cumsum(lengths)[:-1]) if len(lengths) else []
    return Samples(histories=histories, targets=targets, users=samples.users)


def verify_run(run: str | Path, catalogue: str | Path | None = None, fix: str = "") -> dict:
    """Check a run folder without building its network: a config of this run format, the weights'
    and the catalogue's checksums, and the catalogue's fingerprint; returns the config.
    ``catalogue`` is the run's own (``RUN/catalogue``) unless given."""
    run = Path(run)
    folder = Path(catalogue) if catalogue is not None else run / CATALOGUE
    fix = fix or FIX
    meta = read_json(run / "config.json")
    require_keys(meta, ["model", "fingerprint", "data"], run / "config.json")
    if meta.get("format", 1) != RUN_FORMAT or not folder.is_dir():
        raise DiffGRMError(f"{run} was written by another diffgrm version (run format {meta.get('format', 1)}; "
                           f"this one reads {RUN_FORMAT})")
    if not (run / "model.safetensors").is_file():
        raise DiffGRMError(f"{run} holds no model.safetensors; {fix}")
    verify_checksums(run, meta.get("sha256"), run / "config.json", fix)
    _read_catalogue(folder, run, meta, fix)
    return meta


FIX = "the run is damaged: copy or unpack it again"


def _read_catalogue(folder: Path, run: Path, meta: dict, fix: str = FIX) -> Prepared:
    prepared, arrays = load_catalogue(folder, ["codes", "codes_raw"], fix)
    if prepared.catalogue.fingerprint != meta["fingerprint"]:
        raise DiffGRMError(f"{folder} holds another catalogue (fingerprint {prepared.catalogue.fingerprint}) than the "
                           f"one {run / 'config.json'} was trained on ({meta['fingerprint']}); {fix}")
    if {"subvectors", "centroids", "space_items"} <= set(arrays):
        prepared.space = (arrays["subvectors"], arrays["centroids"], arrays["space_items"])
    return prepared


def read_run_catalogue(run: str | Path, meta: dict) -> Prepared:
    """A portable run's own catalogue without its users, checked against the fingerprint it was trained on."""
    run = Path(run)
    return _read_catalogue(run / CATALOGUE, run, meta)


def load_run_data(run: str | Path, meta: dict, data: str | Path | None = None) -> Prepared:
    """A portable run's catalogue joined with its users (see the module's docstring)."""
    run = Path(run)
    return match_items(_read_catalogue(run / CATALOGUE, run, meta), read_interactions(resolve_data(run, meta, data)))


def load_data(folder: str | Path) -> Prepared:
    """What ``diffgrm train DIR`` trains on: a prepared folder, or a run folder's own catalogue with
    its users (so a companion trained on another machine shares the run's SIDs)."""
    folder = Path(folder)
    if (folder / CATALOGUE).is_dir() and (folder / "config.json").is_file():
        meta = read_json(folder / "config.json")
        require_keys(meta, ["model", "fingerprint", "data"], folder / "config.json")
        return load_run_data(folder, meta)
    from diffgrm.prepare import load_prepared

    return load_prepared(folder)
