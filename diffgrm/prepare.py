"""``diffgrm prepare``: dataset -> item text -> embeddings -> PSE catalogue -> a folder on disk.

A prepared folder is everything training, evaluation and the app need, readable by people:

=========================  ==========================================================
``dataset.json``           name, source, counts, skipped users, encoder, the sha256 of the two
                           safetensors files (checked by :func:`load_prepared`)
``items.jsonl``            one item per line in index order: item_id, title, text
``splits/{train,valid,test}.tsv``  user, history (item indices, oldest first), target
``sids.tsv``               each item's SID after repair and before (``raw``)
``catalogue.safetensors``  the same codes plus the item embeddings, as arrays
``tokenizer.*``            the fitted tokenizer (safetensors + JSON config)
``collisions.json``        items that shared a SID before repair, and where they moved (largest groups)
``tokenizer_report.json``  counts, collision rates, per-digit usage / dead codes / entropy,
                           information per digit before and after repair (``information``)
=========================  ==========================================================
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import save_file

from diffgrm import __version__
from diffgrm.config import DEFAULT_ENCODER, TokenizerConfig
from diffgrm.data import EMBEDDINGS_FILE, Dataset, Samples, leave_one_out, train_items
from diffgrm.errors import DiffGRMError
from diffgrm.pse import Catalogue, PSETokenizer, build_catalogue, collision_groups
from diffgrm.safeio import (check_output, file_checksums, load_tensors, output_lock, read_json, read_text, require_keys,
                            staged_folder, verify_checksums)
from diffgrm.text import embed_texts

SPLITS = ("train", "valid", "test")
COLLISION_GROUPS_KEPT = 1000
"""``collisions.json`` lists the largest groups only (a million items can have tens of thousands);
``tokenizer_report.json`` counts them all."""
TRAIN_MIN_HISTORY = 1
"""``splits/train.tsv`` holds every prefix with at least this many history items; training picks
its own minimum (``TrainConfig.min_history``). Folders written before it existed start at 2."""
WEIGHT_FILES = ("catalogue.safetensors", "tokenizer.safetensors")
"""Hashed into ``dataset.json``; folders written before the hashes existed load as before."""


def prepare(
    dataset: Dataset,
    out: str | Path,
    config: TokenizerConfig,
    *,
    encoder: str | None = None,
    progress: bool = True,
    force: bool = False,
) -> dict[str, object]:
    """Tokenize ``dataset`` and write the prepared folder; returns the tokenizer report.

    The folder is written beside ``out`` and swapped in when complete, so an error or an
    interrupt leaves ``out`` as it was. A previous prepared folder is replaced only with ``force``.
    ``out`` is locked meanwhile: a second command writing it fails at once instead of mixing in.
    """
    with output_lock(out):
        return _prepare(dataset, Path(out), config, encoder=encoder, progress=progress, force=force)


def _prepare(dataset: Dataset, out: Path, config: TokenizerConfig, *, encoder: str | None, progress: bool,
             force: bool) -> dict[str, object]:
    inputs = (dataset.source,) if dataset.source and Path(dataset.source).is_dir() else ()
    check_output(out, "prepared", force=force, inputs=inputs)
    t0 = time.perf_counter()
    if dataset.embeddings is not None:  # the data folder brought its own vectors
        if encoder is not None:
            raise DiffGRMError(f"{dataset.source} carries {EMBEDDINGS_FILE}, so there is nothing to encode: drop "
                               f"the encoder, or remove the file to embed the item texts with {encoder}")
        embeddings, encoder_name = dataset.embeddings, EMBEDDINGS_FILE
    else:
        embeddings = embed_texts(dataset.items["text"].tolist(), encoder, progress=progress)
        encoder_name = encoder or DEFAULT_ENCODER
    t_embed = time.perf_counter() - t0

    train_idx = train_items(dataset.sequences)
    t1 = time.perf_counter()
    tokenizer = PSETokenizer(config)
    catalogue = build_catalogue(tokenizer, embeddings, train_idx)
    t_tok = time.perf_counter() - t1

    report = {
        "dataset": dataset.name,
        "n_items": dataset.n_items,
        "n_users": dataset.n_users,
        "n_interactions": dataset.n_interactions,
        "skipped_users": dataset.skipped_users,
        "n_train_items": int(len(train_idx)),
        "encoder": encoder_name,
        "embedding_dim": int(embeddings.shape[1]),
        "tokenizer": config.method,
        "seed": config.seed,
        **catalogue.report(),
        "seconds": {"embedding": round(t_embed, 2), "tokenizer": round(t_tok, 2)},
    }
    with staged_folder(out) as stage:
        _write(stage, dataset, embeddings, tokenizer, catalogue, report)
    return report


def _write(out: Path, ds: Dataset, emb: np.ndarray, tok: PSETokenizer, cat: Catalogue, report: dict) -> None:
    with open(out / "items.jsonl", "w", encoding="utf-8") as fh:
        for i, row in enumerate(ds.items.itertuples(index=False)):
            fh.write(json.dumps({"index": i, "item_id": row.item_id, "title": row.title, "text": row.text}) + "\n")
    (out / "splits").mkdir(exist_ok=True)
    for name, samples in leave_one_out(ds.sequences, min_history=TRAIN_MIN_HISTORY).items():
        with open(out / "splits" / f"{name}.tsv", "w", encoding="utf-8") as fh:
            fh.write("user\thistory\ttarget\n")
            for u, h, t in zip(samples.users, samples.histories, samples.targets):
                fh.write(f"{ds.users[u]}\t{' '.join(map(str, h))}\t{t}\n")
    n = cat.n_digits
    sids = pd.DataFrame({"index": np.arange(ds.n_items), "item_id": ds.items["item_id"]})
    for d in range(n):
        sids[f"d{d}"] = cat.codes[:, d]
    for d in range(n):
        sids[f"raw_d{d}"] = cat.codes_raw[:, d]
    sids.to_csv(out / "sids.tsv", sep="\t", index=False)
    save_file(
        {"codes": cat.codes, "codes_raw": cat.codes_raw, "embeddings": np.ascontiguousarray(emb)},
        str(out / "catalogue.safetensors"),
        metadata={"codebook_size": str(cat.codebook_size), "fingerprint": cat.fingerprint},
    )
    tok.save(out)
    summary = {**ds.summary(), "encoder": report["encoder"], "diffgrm_version": __version__,
               "train_min_history": TRAIN_MIN_HISTORY,
               "sha256": file_checksums(out, WEIGHT_FILES)}  # checked by load_prepared: a flipped byte is an error
    (out / "dataset.json").write_text(json.dumps(summary, indent=2))
    titles = ds.items["title"].tolist()
    ids = ds.items["item_id"].tolist()
    groups = [
        {
            "sid": cat.codes_raw[g[0]].tolist(),
            "items": [{"index": int(i), "item_id": ids[i], "title": titles[i], "new_sid": cat.codes[i].tolist()} for i in g],
        }
        for g in collision_groups(cat.codes_raw)[:COLLISION_GROUPS_KEPT]
    ]
    (out / "collisions.json").write_text(json.dumps(groups, indent=1))
    (out / "tokenizer_report.json").write_text(json.dumps(report, indent=2))


# --------------------------------------------------------------------------- reading back


@dataclass
class Prepared:
    """A catalogue and the interactions it is used with: a prepared folder loaded back, or a run's
    own catalogue joined with the interactions of its data (:mod:`diffgrm.portable`)."""

    path: Path  # the folder the catalogue was read from: a prepared folder or a run's catalogue/
    items: pd.DataFrame
    splits: dict[str, Samples]
    users: list[str]
    catalogue: Catalogue
    embeddings: np.ndarray | None  # the encoder's vectors (a prepared folder); a run carries its codebook space instead
    report: dict
    train_min_history: int = TRAIN_MIN_HISTORY  # the shortest history the training split was written with
    data: str = ""  # where the interactions were read from (a folder or a dataset name); ``path`` when empty
    space: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see codebook_space()

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def source(self) -> str:
        """Where the users' interactions came from: recorded by a run as its ``data``."""
        return self.data or str(Path(self.path).resolve())

    def tokenizer(self) -> PSETokenizer:
        if not (Path(self.path) / "tokenizer.safetensors").is_file():
            raise DiffGRMError(f"{self.path} is a run's catalogue: it carries the codebooks the views draw, not the "
                               "fitted tokenizer; load the prepared folder the run was trained on for that")
        return PSETokenizer.load(self.path)

    def codebook_space(self, max_items: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the codebook views draw: item sub-vectors ``[M, n_digits, dsub]``, the codebooks
        ``[n_digits, K, dsub]`` and the M item rows the sub-vectors belong to. A run carries them; a
        prepared folder computes them from its tokenizer (all items, or a seeded sample of
        ``max_items``)."""
        if self.space is not None:
            return self.space
        if self.report.get("codebook_space_missing"):  # a run imported from Cornac or the reference code
            raise DiffGRMError(str(self.report["codebook_space_missing"]))
        settings = Path(self.path) / "tokenizer.json"
        method = read_json(settings).get("method") if settings.is_file() else None
        if method not in (None, "opq", "pq"):
            raise DiffGRMError(f"the {method} tokenizer has no per-digit codebook spaces")
        tok = self.tokenizer()
        rows = np.arange(self.n_items)
        if max_items is not None and self.n_items > max_items:
            rows = np.sort(np.random.default_rng(0).choice(self.n_items, size=max_items, replace=False))
        space = (tok.subvectors(self.embeddings[rows]), np.asarray(tok.state["centroids"]), rows)
        if len(rows) == self.n_items:
            self.space = space
        return space

    def information(self) -> dict[str, dict[str, object]]:
        """The report's ``information`` (before/after repair), computed from the codes for older folders."""
        return self.report.get("information") or self.catalogue.information()  # type: ignore[return-value]


def load_prepared(folder: str | Path) -> Prepared:
    """Read a folder written by :func:`prepare`: every missing, damaged or inconsistent file is
    one clear error naming it (never a traceback from pandas or safetensors)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DiffGRMError(f"{folder} is not a folder; give a folder written by `diffgrm prepare`")
    need = ["items.jsonl", "catalogue.safetensors", "tokenizer_report.json"] + [f"splits/{s}.tsv" for s in SPLITS]
    missing = [f for f in need if not (folder / f).is_file()]
    if missing:
        raise DiffGRMError(f"{folder} is not a prepared dataset (missing {missing[0]}); run `diffgrm prepare` first")
    prepared, arrays = load_catalogue(folder, ["codes", "codes_raw", "embeddings"], "run `diffgrm prepare` again")
    if len(arrays["embeddings"]) != prepared.n_items:
        raise DiffGRMError(f"{folder}: items.jsonl has {prepared.n_items} items but catalogue.safetensors holds "
                           f"{len(arrays['embeddings'])} embeddings; the folder is inconsistent, run `diffgrm prepare` again")
    prepared.embeddings = arrays["embeddings"]
    prepared.users, prepared.splits = read_splits(folder, prepared.n_items)
    return prepared


def written_min_history(summary: dict) -> int:
    """The shortest training history a folder's ``dataset.json`` says its splits were written with
    (folders written before the field existed start at 2)."""
    return int(summary.get("train_min_history", 2))


def load_catalogue(folder: Path, keys: list[str], fix: str) -> tuple[Prepared, dict[str, np.ndarray]]:
    """The catalogue half of a prepared folder (or of a run's ``catalogue/``): items, SIDs and
    report, checked, as a :class:`Prepared` with no users yet; also the arrays it read."""
    report = read_json(folder / "tokenizer_report.json")
    require_keys(report, ["codebook_size", "n_digits", "dataset"], folder / "tokenizer_report.json")
    summary = read_json(folder / "dataset.json") if (folder / "dataset.json").is_file() else {}
    verify_checksums(folder, summary.get("sha256"), folder / "dataset.json", fix)
    arrays = load_tensors(folder / "catalogue.safetensors")
    require_keys(arrays, keys, folder / "catalogue.safetensors")
    items = read_items(folder / "items.jsonl")
    n = len(items)
    codes, raw = arrays["codes"], arrays["codes_raw"]
    if codes.ndim != 2 or codes.shape != raw.shape or len(codes) != n:
        raise DiffGRMError(f"{folder}: items.jsonl has {n} items but catalogue.safetensors holds {len(codes)} SIDs; "
                           f"the folder is inconsistent, {fix}")
    k = int(report["codebook_size"])
    if codes.size and (codes.min() < 0 or codes.max() >= k):
        raise DiffGRMError(f"{folder / 'catalogue.safetensors'}: codes outside 0..{k - 1}; the file is damaged")
    cat = Catalogue(codes=codes, codes_raw=raw, codebook_size=k)
    return Prepared(path=folder, items=items, splits={}, users=[], catalogue=cat, embeddings=None, report=report,
                    train_min_history=written_min_history(summary)), arrays


def read_splits(folder: Path, n: int) -> tuple[list[str], dict[str, Samples]]:
    """The users and the train/valid/test splits of a prepared folder whose catalogue has ``n`` items."""
    users: list[str] = []
    user_index: dict[str, int] = {}
    splits = {}
    for name in SPLITS:
        hist, targets, us = [], [], []
        path = folder / "splits" / f"{name}.tsv"
        for lineno, line in enumerate(read_text(path).splitlines()[1:], 2):
            try:
                user, h, t = line.split("\t")
                hist.append(np.array(h.split(), dtype=np.int64))
                targets.append(int(t))
            except ValueError:
                raise DiffGRMError(f"{path}:{lineno}: expected 'user<TAB>history<TAB>target'") from None
            if targets[-1] < 0 or targets[-1] >= n or (len(hist[-1]) and (hist[-1].min() < 0 or hist[-1].max() >= n)):
                raise DiffGRMError(f"{path}:{lineno}: item index outside 0..{n - 1}; the folder is inconsistent")
            if user not in user_index:
                user_index[user] = len(users)
                users.append(user)
            us.append(user_index[user])
        if not targets:
            raise DiffGRMError(f"{path} holds no samples; run `diffgrm prepare` again")
        splits[name] = Samples(histories=hist, targets=np.array(targets, dtype=np.int64), users=np.array(us, dtype=np.int64))
    return users, splits


def read_items(path: Path) -> pd.DataFrame:
    """``items.jsonl`` of a prepared folder: one item per line, in index order."""
    rows = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        try:
            rec = json.loads(line)
            rows.append((str(rec["item_id"]), str(rec["title"]), str(rec["text"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DiffGRMError(f"{path}:{lineno}: not an item record ({type(exc).__name__}); "
                               "the folder is damaged, run `diffgrm prepare` again") from None
    return pd.DataFrame(rows, columns=["item_id", "title", "text"])


def format_report(report: dict) -> str:
    """The tokenizer report as a short text table for the terminal."""
    lines = [
        f"dataset     {report['dataset']}: {report['n_users']:,} users, {report['n_items']:,} items, "
        f"{report['n_interactions']:,} interactions ({report['skipped_users']} users skipped: fewer than 3 items)",
        f"tokenizer   {report['tokenizer']}, {report['n_digits']} digits x {report['codebook_size']} codes, "
        f"encoder {report['encoder']} ({report['embedding_dim']}-d), fit on {report['n_train_items']:,} training items",
        f"collisions  {report['collision_rate_before']:.2%} of items shared a SID "
        f"({report['collision_groups_before']} groups, largest {report['largest_collision_group']}) "
        f"-> {report['collision_rate_after']:.2%} after repair ({report['moved_items']} items moved)",
        "",
        "digit  usage   dead  entropy (bits, max %.1f)" % np.log2(report["codebook_size"]),
    ]
    for row in report["per_digit"]:
        lines.append(f"{row['digit']:>5}  {row['usage']:6.1%}  {row['dead_codes']:>4}  {row['entropy_bits']:.2f}")
    if "information" in report:  # reports written before the SID information diagnostics lack it
        lines += ["", *_format_information(report["information"])]
    secs = report["seconds"]
    lines.append(f"\ntime        embedding {secs['embedding']:.1f} s, tokenizer {secs['tokenizer']:.1f} s")
    return "\n".join(lines)


def _format_information(info: dict) -> list[str]:
    """The ``information`` block: bits the first k digits carry, each digit's own bits, collisions."""
    before, after = info["before"], info["after"]

    def bits(xs: list[float]) -> str:
        return "  ".join(f"{x:5.2f}" for x in xs)

    return [
        f"information before repair, in bits (ceiling log2 {before['n_items']:,} items = {before['max_bits']:.2f})",
        f"  {'first k digits, k=1..' + str(len(before['prefix_bits'])):<24}{bits(before['prefix_bits'])}"
        f"   (after repair: {bits(after['prefix_bits']).strip()})",
        f"  {'H(digit | others)':<24}{bits(before['conditional_bits'])}",
        f"  collisions  {before['collision_rate_sharing']:.2%} of items share their SID with another item; "
        f"{before['collision_rate_beyond_first']:.2%} are beyond the first item of their SID",
    ]
