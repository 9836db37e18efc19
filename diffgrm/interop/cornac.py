"""Runs trained with Cornac's DiffGRM (``cornac.models.diffgrm``, Cornac >= 3.0.1) as diffgrm runs.

Two steps, one on each side, and nothing is ever unpickled:

1. :func:`export_cornac`, run in the Cornac session that trained the model, writes a folder:
   ``weights.safetensors`` (the network's state dict, Cornac's names) and ``export.json`` (the
   export format and version, Cornac's settings, its item ids in index order, its SID table and
   the weights' sha256). It only duck-types the model: this module imports nothing from Cornac,
   so diffgrm works without Cornac installed.
2. :func:`import_cornac`, anywhere diffgrm runs, turns that folder and the users' data into a
   diffgrm run of kind ``cornac-diffgrm`` (:mod:`diffgrm.interop.network`), matched to the data by
   item id (:mod:`diffgrm.interop.runs`).

The network then computes what Cornac's does (the released layout); the search over it is
diffgrm's CPD, not Cornac's ``cpd_decode``: with a beam wide enough to keep every candidate both
rank the catalogue alike (each item by the best chain-rule log-probability over fill orders).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from diffgrm.config import ModelConfig
from diffgrm.errors import DiffGRMError
from diffgrm.interop.network import KIND, map_state_dict
from diffgrm.interop.runs import Imported, write_imported_run
from diffgrm.safeio import file_checksums, load_tensors, read_json, verify_checksums, write_json

EXPORT_FORMAT = "diffgrm-cornac-export"
EXPORT_VERSION = 1
"""The version of the export this diffgrm writes and reads; a newer one is refused, not guessed at."""
WEIGHTS, SETTINGS = "weights.safetensors", "export.json"
NETWORK = ("n_digit", "codebook_size", "d_model", "encoder_n_layer", "decoder_n_layer", "n_head", "n_inner",
           "dropout", "activation", "layer_norm_eps", "max_len")
"""The settings the network's shape and computation depend on: an export must have them all."""
RECORDED = NETWORK + ("min_history", "masking_strategy", "confidence_method", "random_mask_prob", "n_views",
                      "label_smoothing", "view_loss_reduction", "n_epochs", "learning_rate", "weight_decay",
                      "batch_size", "max_grad_norm", "lr_schedule", "warmup_steps", "scoring", "beam_size",
                      "collision_policy", "model_selection", "val_k", "val_beam_size", "seed", "name")
"""Cornac's settings an export keeps (for the record and for ``config.json``'s training settings)."""
FITTED = ("best_epoch", "stopped_epoch", "training_time_", "loss_history_", "sid_hash_", "sid_collision_count_")
"""What Cornac learnt while fitting, kept for the record when present."""
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")
"""The first bytes of a pickle and of ``torch.save``'s zip: what a weights file must not be."""


def export_cornac(model: Any, out: str | Path) -> Path:
    """Write a fitted Cornac ``DiffGRM`` to the folder ``out`` (created if needed) for
    :func:`import_cornac`; returns ``out``. Run it where the model was trained::

        from diffgrm.interop import export_cornac
        export_cornac(cornac_model, "exports/beauty-cornac")
    """
    net = getattr(model, "model", None)
    if net is None or not hasattr(net, "state_dict"):
        raise DiffGRMError(f"{type(model).__name__} holds no trained network (.model): fit the Cornac DiffGRM first")
    sid_table, iid_map = getattr(model, "sid_table", None), getattr(model, "iid_map", None)
    if sid_table is None or iid_map is None:
        raise DiffGRMError(f"{type(model).__name__} has no SID table or item map (.sid_table, .iid_map): "
                           "is it a fitted cornac.models.diffgrm.DiffGRM?")
    missing = [name for name in NETWORK if not hasattr(model, name)]
    if missing:
        raise DiffGRMError(f"{type(model).__name__} lacks the setting {missing[0]!r}: not a Cornac DiffGRM this "
                           f"diffgrm knows (it reads Cornac 3.0.1's)")
    table = np.asarray(sid_table, dtype=np.int64)
    order = sorted(iid_map.items(), key=lambda pair: int(pair[1]))
    if [int(i) for _, i in order] != list(range(len(table))):
        raise DiffGRMError(f"the item map has {len(order)} items but the SID table {len(table)} rows: the model is "
                           "inconsistent (refit it)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    meta = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "cornac_version": getattr(sys.modules.get("cornac"), "__version__", None),
        "network": type(net).__name__,
        "settings": {name: _plain(getattr(model, name)) for name in RECORDED if hasattr(model, name)},
        "fitted": {name: _plain(getattr(model, name)) for name in FITTED if getattr(model, name, None) is not None},
        "item_ids": [str(iid) for iid, _ in order],
        "sid_table": table.tolist(),
        "sha256": file_checksums(out, (WEIGHTS,)),
    }
    write_json(out / SETTINGS, meta, indent=None)
    return out


def _plain(value: Any) -> Any:
    """A setting as plain JSON (numpy scalars and arrays, tuples)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def import_cornac(export_dir: str | Path, data: str | Path, out: str | Path, *, force: bool = False) -> Path:
    """Make the diffgrm run ``out`` from the folder :func:`export_cornac` wrote and ``data`` (a
    prepared folder, a dataset folder or a dataset name: its users, and the items the SID table
    is matched to by item id). Returns ``out``; every bad input is one :class:`DiffGRMError`."""
    return write_imported_run(read_export(export_dir), data, out, force=force, inputs=(export_dir,))


def read_export(export_dir: str | Path) -> Imported:
    """An export folder, read and checked, in diffgrm's names."""
    folder = Path(export_dir)
    if not folder.is_dir():
        raise DiffGRMError(f"{folder} is not a folder: give the folder export_cornac wrote ({WEIGHTS} + {SETTINGS})")
    meta = read_json(folder / SETTINGS)
    where = folder / SETTINGS
    if meta.get("format") != EXPORT_FORMAT:
        raise DiffGRMError(f"{where} is not a diffgrm export of a Cornac model (format {meta.get('format')!r})")
    version = meta.get("version")
    if version != EXPORT_VERSION:
        raise DiffGRMError(f"{where} has export version {version!r}; this diffgrm reads version {EXPORT_VERSION} "
                           "(export it again with this diffgrm, or update diffgrm)")
    for key in ("settings", "item_ids", "sid_table"):
        if key not in meta:
            raise DiffGRMError(f"{where} lacks {key!r}; the file is damaged: export it again")
    settings = meta["settings"]
    config = model_config(settings, where)
    codes = sid_table(meta, config, where)
    state = read_weights(folder / WEIGHTS, meta.get("sha256"), where)
    check_item_codes(state.pop("item_codes", None), codes, folder / WEIGHTS)
    weights = map_state_dict(state, "cornac", config, str(folder / WEIGHTS))
    train = {"epochs": settings.get("n_epochs"), "batch_size": settings.get("batch_size"),
             "lr": settings.get("learning_rate"), "weight_decay": settings.get("weight_decay"),
             "warmup_steps": settings.get("warmup_steps"), "grad_clip": settings.get("max_grad_norm"),
             "label_smoothing": settings.get("label_smoothing"), "min_history": settings.get("min_history"),
             "seed": settings.get("seed"), "select": "sid" if settings.get("model_selection") == "best" else "item",
             "noising": {"guided": "ocn", "random": "random", "coherent": "sequential"}.get(
                 settings.get("masking_strategy"))}
    details = {"from": "cornac", "cornac_version": meta.get("cornac_version"), "export_version": version,
               "settings": settings, "fitted": meta.get("fitted", {}),
               "sha256": {SETTINGS: file_checksums(folder, (SETTINGS,))[SETTINGS], **(meta.get("sha256") or {})}}
    return Imported("cornac", config, weights, [str(i) for i in meta["item_ids"]], codes, str(where),
                    {k: v for k, v in train.items() if v is not None}, details)


def model_config(settings: dict, where: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` of a Cornac network, or one error naming the setting diffgrm cannot honour."""
    if not isinstance(settings, dict):
        raise DiffGRMError(f"{where}: 'settings' is not an object; the file is damaged")
    missing = [name for name in NETWORK if name not in settings]
    if missing:
        raise DiffGRMError(f"{where}: the setting {missing[0]!r} is missing; export the model again")
    if settings["activation"] != "gelu":
        raise DiffGRMError(f"{where}: activation={settings['activation']!r}; diffgrm's network uses GELU, so a "
                           "network trained with another activation cannot be imported")
    if settings["layer_norm_eps"] != 1e-5:
        raise DiffGRMError(f"{where}: layer_norm_eps={settings['layer_norm_eps']!r}; diffgrm's network uses 1e-5, "
                           "so a network trained with another epsilon cannot be imported")
    ints = [name for name in NETWORK if name not in ("dropout", "activation", "layer_norm_eps")
            and (isinstance(settings[name], bool) or not isinstance(settings[name], int))]
    if ints:
        raise DiffGRMError(f"{where}: the setting {ints[0]!r} should be a whole number, got {settings[ints[0]]!r}")
    try:
        return ModelConfig(kind=KIND, n_digits=settings["n_digit"], codebook_size=settings["codebook_size"],
                           d_model=settings["d_model"], n_heads=settings["n_head"], d_ff=settings["n_inner"],
                           enc_layers=settings["encoder_n_layer"], dec_layers=settings["decoder_n_layer"],
                           dropout=settings["dropout"], max_history=settings["max_len"],
                           input_dropout=settings["dropout"])
    except (DiffGRMError, TypeError) as exc:
        raise DiffGRMError(f"{where}: the network settings are out of range ({exc})") from None


def sid_table(meta: dict, config: ModelConfig, where: str | Path) -> np.ndarray:
    """The export's SID table ``[items, n]``, checked against the item ids and the codebook."""
    ids, rows = meta["item_ids"], meta["sid_table"]
    try:
        codes = np.asarray(rows, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DiffGRMError(f"{where}: 'sid_table' is not a table of whole numbers; the file is damaged") from None
    if not isinstance(ids, list) or codes.ndim != 2 or codes.shape != (len(ids), config.n_digits):
        raise DiffGRMError(f"{where}: 'sid_table' has shape {list(codes.shape)}, expected [{len(ids)} items, "
                           f"{config.n_digits} digits]; the file is damaged")
    if codes.size and (codes.min() < 0 or codes.max() >= config.codebook_size):
        raise DiffGRMError(f"{where}: 'sid_table' holds codes outside 0..{config.codebook_size - 1}")
    return codes


def read_weights(path: Path, recorded: object, where: str | Path) -> dict:
    """The export's tensors (torch), refusing a pickle and a file whose sha256 differs."""
    if not path.is_file():
        raise DiffGRMError(f"missing file {path}: the export is incomplete, export the model again")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(PICKLE_MAGIC[0]) or head == PICKLE_MAGIC[1]:
        raise DiffGRMError(f"{path} is a pickle (torch.save), not safetensors: diffgrm never unpickles; write the "
                           "export with diffgrm.interop.export_cornac")
    verify_checksums(path.parent, recorded, where, "export the model again")
    return dict(load_tensors(path, framework="torch"))


def check_item_codes(buffer, codes: np.ndarray, where: Path) -> None:
    """Cornac keeps the SID table in the network too (plus a padding row): the two must agree."""
    if buffer is None:
        return
    table = buffer.cpu().numpy()
    if table.shape != (len(codes) + 1, codes.shape[1]) or not np.array_equal(table[:-1], codes):
        raise DiffGRMError(f"{where}: the network's item_codes ({list(table.shape)}) differ from the SID table of "
                           f"{SETTINGS} ({len(codes)} items + a padding row); the export is inconsistent")
