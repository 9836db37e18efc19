"""Checkpoints of the DiffGRM authors' reference code as diffgrm runs.

The reference code saves its network as ``pytorch_model.bin`` (a ``torch.save`` of the state
dict) and its SIDs as ``item_id2tokens_*.npy``: an int64 array ``[1 + items, n]`` whose row 0 is
padding and whose row i holds item i's tokens, digit d's code c being token ``3 + d*K + c``
(PAD, BOS and EOS come first). diffgrm reads the first with ``torch.load(weights_only=True)``
(tensors only, no code: torch >= 2.10 is required here) and the second with
``np.load(allow_pickle=False)``; the reference's ``.pkl`` files are never opened.

Its network is the released layout that Cornac's port follows (:mod:`diffgrm.interop.network`):
bias-free fused q/k/v, positions counted from the oldest of a window of ``max_history_len``
items, one final LayerNorm for the encoder's output and the decoder's, padding rows zeroed and
read by the cross-attention. So it imports into the same ``cornac-diffgrm`` kind; the mapping:

=================================================  ==========================================
reference                                          diffgrm (``cornac-diffgrm``)
=================================================  ==========================================
``embedding.weight`` rows ``3 .. 3+n*K``           ``code_emb.weight`` (rows 0..2 unused)
``mask_emb_table``, ``pos_emb_enc``, ``item_mlp``  ``mask_emb``, ``pos_emb``, ``item_mlp``
``*_blocks.i.ln_1/ln_2/ln_3``                      ``encoder/decoder.i.ln1/ln2/ln3``
``*.qkv.weight`` [3d, d]                           ``*.q.weight`` [d, d] + ``*.kv.weight`` [2d, d]
``*.proj``, ``mlp.c_fc``, ``mlp.c_proj``           ``*.o``, ``ff.0``, ``ff.3``
``ln_f``                                           ``dec_ln`` (the encoder's final norm too)
=================================================  ==========================================

The state dict does not say how many attention heads split ``d``: ``n_heads`` must be given
(the reference's ``--n_head``). An untied output head (``share_decoder_output_embedding=false``,
``output_adapter.weight``) is refused: diffgrm's heads are tied to the code table.

Which item a row is comes from the reference's dataset mapping: pass ``item_ids`` (one id per
line, or a JSON list, rows 1.. in order); without it, rows 1.. are taken to be the data's items
in its own order.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from diffgrm.config import ModelConfig
from diffgrm.errors import DiffGRMError
from diffgrm.interop.network import KIND, SPECIAL_TOKENS, map_state_dict
from diffgrm.interop.runs import Imported, read_data, write_imported_run
from diffgrm.safeio import file_sha256, parse_json, read_text

MIN_TORCH = (2, 10)
"""``torch.load(weights_only=True)`` is trusted from this torch on."""


def import_reference(state_dict_path: str | Path, item_tokens_path: str | Path, data: str | Path, out: str | Path,
                     *, n_heads: int, item_ids: str | Path | None = None, force: bool = False) -> Path:
    """Make the diffgrm run ``out`` from the reference's ``pytorch_model.bin``, its
    ``item_id2tokens`` array and ``data`` (a prepared folder, a dataset folder or a dataset name).
    ``n_heads``: the reference's ``--n_head``. Returns ``out``."""
    state_dict_path, item_tokens_path = Path(state_dict_path), Path(item_tokens_path)
    check_torch()
    for path in (state_dict_path, item_tokens_path, *([Path(item_ids)] if item_ids is not None else [])):
        if path.suffix == ".pkl":
            raise DiffGRMError(f"{path} is a pickle: diffgrm never reads .pkl files; give pytorch_model.bin and the "
                               "item_id2tokens .npy array")
    state = read_state_dict(state_dict_path)
    if "output_adapter.weight" in state:
        raise DiffGRMError(f"{state_dict_path}: the network has an untied output head (output_adapter.weight, "
                           "share_decoder_output_embedding=false); diffgrm's heads are tied to the code table")
    tokens = read_tokens(item_tokens_path)
    config = reference_config(state, tokens.shape[1], n_heads, str(state_dict_path))
    codes = tokens_to_codes(tokens, config.codebook_size, str(item_tokens_path))
    weights = map_state_dict(state, "reference", config, str(state_dict_path))
    ids = read_item_ids(item_ids, len(codes), data)
    details = {"from": "reference", "n_heads": n_heads, "item_ids": str(item_ids) if item_ids else "the data's order",
               "sha256": {state_dict_path.name: file_sha256(state_dict_path),
                          item_tokens_path.name: file_sha256(item_tokens_path)}}
    imp = Imported("reference", config, weights, ids, codes, str(item_tokens_path), {}, details)
    return write_imported_run(imp, data, out, force=force,
                              inputs=(state_dict_path.parent, item_tokens_path.parent))


def check_torch(version: str | None = None) -> None:
    """Refuse a torch older than :data:`MIN_TORCH` on this path (its ``weights_only`` loader is the safety)."""
    version = version or torch.__version__
    found = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    if found < MIN_TORCH:
        raise DiffGRMError(f"reading the reference's pytorch_model.bin needs torch >= {MIN_TORCH[0]}.{MIN_TORCH[1]} "
                           f"(its weights_only loader); this is torch {version}: pip install -U torch")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` as a flat dict of tensors (a ``module.`` prefix, as
    DataParallel writes, is dropped; a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is opened)."""
    if not path.is_file():
        raise DiffGRMError(f"missing file {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DiffGRMError(f"{path} is not a state dict that torch.load(weights_only=True) reads ({first})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not loaded or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise DiffGRMError(f"{path} holds {type(loaded).__name__}, not a state dict of named tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in loaded.items()}


def read_tokens(path: Path) -> np.ndarray:
    """The ``item_id2tokens`` array: 2-D integers, padding row first."""
    if not path.is_file():
        raise DiffGRMError(f"missing file {path}")
    try:
        tokens = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DiffGRMError(f"{path} is not a .npy array numpy reads without pickles ({str(exc)[:160]})") from None
    if not isinstance(tokens, np.ndarray) or tokens.ndim != 2 or tokens.dtype.kind not in "iu" or len(tokens) < 2:
        raise DiffGRMError(f"{path} must be an integer array [1 + items, digits], got "
                           f"{getattr(tokens, 'dtype', type(tokens).__name__)} of shape {getattr(tokens, 'shape', '?')}")
    return tokens.astype(np.int64)


def reference_config(state: dict[str, torch.Tensor], n_digits: int, n_heads: int, where: str) -> ModelConfig:
    """The network's sizes, read off the tensors' shapes (the head count excepted)."""
    for key in ("embedding.weight", "pos_emb_enc.weight", "encoder_blocks.0.mlp.c_fc.weight"):
        if key not in state or state[key].ndim != 2:
            raise DiffGRMError(f"{where}: missing tensor {key!r}; not a reference DIFF_GRM state dict")
    vocab, d = state["embedding.weight"].shape
    k, rest = divmod(vocab - SPECIAL_TOKENS, n_digits)
    if rest or k < 1:
        raise DiffGRMError(f"{where}: embedding.weight has {vocab} rows, which is not 3 + {n_digits} digits x K codes: "
                           "the item_id2tokens array is for another network")
    layers = {side: len({key.split(".")[1] for key in state if key.startswith(f"{side}_blocks.")})
              for side in ("encoder", "decoder")}
    try:
        return ModelConfig(kind=KIND, n_digits=n_digits, codebook_size=k, d_model=d, n_heads=n_heads,
                           d_ff=state["encoder_blocks.0.mlp.c_fc.weight"].shape[0], enc_layers=layers["encoder"],
                           dec_layers=layers["decoder"], max_history=state["pos_emb_enc.weight"].shape[0],
                           dropout=0.1, input_dropout=0.1)
    except (DiffGRMError, TypeError) as exc:
        raise DiffGRMError(f"{where}: {exc}") from None


def tokens_to_codes(tokens: np.ndarray, k: int, where: str) -> np.ndarray:
    """Rows 1.. of ``item_id2tokens`` as codes 0..K-1 (token ``3 + d*K + c`` -> c)."""
    codes = tokens[1:] - SPECIAL_TOKENS - np.arange(tokens.shape[1]) * k
    bad = np.argwhere((codes < 0) | (codes >= k))
    if len(bad):
        row, digit = (int(x) for x in bad[0])
        raise DiffGRMError(f"{where}: row {row + 1} digit {digit} holds token {int(tokens[row + 1, digit])}, not one of "
                           f"digit {digit}'s tokens ({SPECIAL_TOKENS + digit * k}..{SPECIAL_TOKENS + digit * k + k - 1})")
    return codes


def read_item_ids(path: str | Path | None, n: int, data: str | Path) -> list[str]:
    """The item id of each row 1..n: from ``path`` (one per line, or a JSON list), else the data's order."""
    if path is None:
        ids = read_data(data)[0].item_ids
        if len(ids) != n:
            raise DiffGRMError(f"the item_id2tokens array has {n} items but {data} has {len(ids)}: the SID table does "
                               "not match the data; pass --item-ids with the reference's item ids in row order")
        return list(ids)
    path = Path(path)
    text = read_text(path)
    if path.suffix == ".json":
        ids = parse_json(text, path, list)
    else:
        ids = [line.strip() for line in text.splitlines() if line.strip()]
    if len(ids) != n:
        raise DiffGRMError(f"{path} lists {len(ids)} item ids but the item_id2tokens array has {n} items (rows 1..)")
    return [str(i) for i in ids]
