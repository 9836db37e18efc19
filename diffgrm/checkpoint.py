"""A run folder's checkpoint, for every model: written once training ends, read with every check.

A run folder holds ``model.safetensors`` (weights, no pickled code), ``config.json`` (model and
training configs, the catalogue's fingerprint, where its users' interactions came from, the
package version, the sha256 of ``model.safetensors``), ``history.jsonl`` (one line per epoch:
loss, validation metrics, time) and ``catalogue/``, its own SIDs and items
(:mod:`diffgrm.portable`), so that it decodes on any machine. ``config.json`` is written last: a
folder that has it is complete.

Reading is in three steps that every model shares: :func:`read_config` (the files are there and
``config.json`` is whole), :func:`run_catalogue` (the run's own catalogue, checked against the
fingerprint it was trained on, with its users) and :func:`load_weights` (the sha256, then the
tensors into a network built from the configs :func:`saved_configs` read).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from diffgrm import __version__
from diffgrm.config import ModelConfig, TrainConfig, UnknownSettings
from diffgrm.errors import DiffGRMError
from diffgrm.portable import CATALOGUE, RUN_FORMAT, dataset_name, load_run_data, read_run_catalogue, write_catalogue
from diffgrm.prepare import Prepared, load_prepared
from diffgrm.safeio import (atomic_write, file_checksums, load_tensors, read_json, require_keys, verify_checksums,
                            write_json)


def save_checkpoint(run: str | Path, model: torch.nn.Module, cfg: TrainConfig, prepared: Prepared,
                    extra: dict | None = None) -> Path:
    """Write the weights, the run's catalogue and (last) ``config.json``; ``model.config`` is its ModelConfig."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write(run / "model.safetensors", lambda p: save_model(model, str(p)))
    write_catalogue(prepared, run)
    meta = {
        "model": model.config.to_dict(),
        "train": cfg.to_dict(),
        "fingerprint": prepared.catalogue.fingerprint,
        "data": prepared.source,
        "dataset": dataset_name(prepared),
        "format": RUN_FORMAT,
        "diffgrm_version": __version__,
        **(extra or {}),
        "sha256": file_checksums(run, ("model.safetensors",)),  # checked on load: a flipped byte is an error
    }
    write_json(run / "config.json", meta)
    return run


def read_config(run: str | Path) -> dict:
    """``config.json`` of a run that holds a checkpoint; one clear error when it holds none."""
    run = Path(run)
    if not (run / "model.safetensors").is_file() or not (run / "config.json").is_file():
        hint = " (an unfinished run: train again with the same settings to continue it)" if (run / "resume.json").is_file() else ""
        raise DiffGRMError(f"{run} holds no checkpoint (model.safetensors + config.json){hint}; "
                           "train one with `diffgrm train`")
    meta = read_json(run / "config.json")
    require_keys(meta, ["model", "fingerprint", "data"], run / "config.json")
    if not isinstance(meta["model"], dict):
        raise DiffGRMError(f"{run / 'config.json'}: the model settings are damaged ('model' is not an object)")
    return meta


def saved_configs(run: str | Path, meta: dict, n_digits: int, codebook_size: int,
                  renamed: dict[str, str] | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs ``config.json`` recorded. A key neither config knows (nor
    lists as a legacy key) is one error naming it; a value out of range says the file is damaged.

    ``renamed`` (old training key -> model field) reads runs that kept model sizes among their
    training settings (SASRec runs written before SASRec shared these configs)."""
    path = Path(run) / "config.json"
    model, train = dict(meta["model"]), meta.get("train", {})
    if not isinstance(train, dict):
        raise DiffGRMError(f"{path}: the training settings are damaged ('train' is not an object)")
    for old, new in (renamed or {}).items():
        if old in train:
            model.setdefault(new, train[old])
    model.setdefault("n_digits", n_digits)
    model.setdefault("codebook_size", codebook_size)
    configs = []
    for cls, values, what in ((ModelConfig, model, "model"), (TrainConfig, train, "training")):
        try:
            configs.append(cls.from_dict(values, where=f"{path} '{'model' if cls is ModelConfig else 'train'}'"))
        except UnknownSettings:
            raise
        except (TypeError, ValueError, AttributeError, DiffGRMError) as exc:
            raise DiffGRMError(f"{path}: the {what} settings are damaged ({exc})") from None
    return configs[0], configs[1]


def run_catalogue(run: str | Path, meta: dict, data: str | Path | None = None, users: bool = True) -> Prepared:
    """The catalogue the run decodes, checked against the fingerprint it was trained on, joined with
    its users (from ``data``, or where it recorded them) unless ``users`` is false."""
    run = Path(run)
    if (run / CATALOGUE).is_dir():  # a run that carries its catalogue: its users are matched by item id
        return load_run_data(run, meta, data) if users else read_run_catalogue(run, meta)
    return _load_legacy_data(run, meta, data)


def _load_legacy_data(run: Path, meta: dict, data: str | Path | None) -> Prepared:
    """A run written before runs carried their catalogue: it decodes only with the prepared folder of
    the very SIDs it was trained on."""
    if data is None and not Path(meta["data"]).is_dir():
        raise DiffGRMError(f"the data this run was trained on ({meta['data']}, from {run / 'config.json'}) is gone; "
                           "pass --data with the prepared folder")
    prepared = load_prepared(data or meta["data"])
    if prepared.catalogue.fingerprint != meta["fingerprint"]:
        raise DiffGRMError(
            f"the checkpoint in {run} was trained on another catalogue (fingerprint {meta['fingerprint']}, "
            f"data has {prepared.catalogue.fingerprint}) and carries no catalogue of its own (an older diffgrm "
            "wrote it); prepare the same data on the machine that trained it, or retrain"
        )
    return prepared


def load_weights(run: str | Path, meta: dict, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` (built from the run's configs) with the run's weights, on ``device``, in eval mode.
    A flipped byte, a cut file or weights of another shape are each one clear error."""
    run = Path(run)
    verify_checksums(run, meta.get("sha256"), run / "config.json", "restore the file or retrain the run")
    load_tensors(run / "model.safetensors", framework="torch")  # a damaged file: its own clear error
    try:
        load_model(model, str(run / "model.safetensors"), device=str(device))  # re-ties shared weights
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise DiffGRMError(f"{run / 'model.safetensors'} does not match {run / 'config.json'} ({detail[:160]}); "
                           "the run folder is inconsistent: retrain it") from None
    return model.to(device).eval()


def check_companion(run: str | Path, meta: dict, ar: str | Path, ar_meta: dict, flag: str = "--ar ") -> None:
    """The run at ``ar`` (its config ``ar_meta``) is an AR run on the catalogue of ``run`` (``meta``),
    so the two decode the same SIDs and can be compared; one clear error otherwise. ``flag`` is how
    the error names ``ar`` (the option it came from)."""
    kind = (ar_meta.get("model") or {}).get("kind")
    if kind != "ar":
        raise DiffGRMError(f"{flag}{ar} is a {kind} run, not an autoregressive one")
    if ar_meta.get("fingerprint") != meta.get("fingerprint"):
        raise DiffGRMError(f"{flag}{ar} was trained on another catalogue than {run}: its SIDs are not comparable; "
                           "give an AR run trained on the same prepared data")
