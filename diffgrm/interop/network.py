"""The released DiffGRM network, as Cornac's port and the reference code both lay it out.

diffgrm's own network (:class:`diffgrm.model.DiffGRM`) departs from the released one in four
places, and a checkpoint trained one way must be decoded the same way, so the released one is a
class of its own (:class:`diffgrm.model.ReleasedDiffGRM`):

================================  ==================================  ==================================
                                  diffgrm (``kind="diffgrm"``)        released (``kind="cornac-diffgrm"``)
================================  ==================================  ==================================
history positions                 count back from the newest item     count up from the oldest item
                                                                      (position 0 = the oldest kept)
decoder cross-attention           the history's items only            the whole ``max_history`` window:
                                                                      padding rows are zeros, so each
                                                                      adds a key of score 0 (value 0)
encoder output norm               its own LayerNorm                   the decoder's final LayerNorm
                                                                      (one norm for both), then the
                                                                      padding rows set to zero
attention projections             q, k, v with biases                 q, k, v without biases
================================  ==================================  ==================================

Everything else is the same computation: the code table with per-digit offsets, the item MLP over
an item's n digit embeddings, pre-LN blocks, bidirectional self-attention over the n slots, the
per-digit [MASK] embeddings and heads tied to the code table. So :class:`ReleasedDiffGRM` is a
:class:`~diffgrm.model.DiffGRM` with the four differences above, and diffgrm's CPD, traces,
evaluation and explorer run on it unchanged (it answers ``encode``, ``cross_kv``, ``denoise``,
``denoise_masked`` and ``denoise_selected`` like any DiffGRM). It is its own model kind
(``cornac-diffgrm``) rather than a flag, so that a diffgrm that does not know it refuses the run
instead of decoding it with the wrong network.

:func:`map_state_dict` renames a Cornac or reference state dict into ReleasedDiffGRM's names, with a
clear error for a missing, unexpected or misshapen tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffgrm.config import ModelConfig
from diffgrm.errors import DiffGRMError
from diffgrm.model import ReleasedDiffGRM

KIND = "cornac-diffgrm"
"""The model kind of the released network (:data:`diffgrm.config.MODEL_KINDS`)."""
__all__ = ["KIND", "LAYOUTS", "ReleasedDiffGRM", "expected_source_shapes", "map_state_dict"]


# --------------------------------------------------------------------------- state dicts


def _qkv(prefix: str, target: str, d: int) -> list[tuple[str, str, Callable]]:
    """A fused bias-free ``qkv`` [3d, d] split into diffgrm's ``q`` [d, d] and ``kv`` [2d, d]."""
    return [(f"{prefix}.qkv.weight", f"{target}.q.weight", lambda w: w[:d]),
            (f"{prefix}.qkv.weight", f"{target}.kv.weight", lambda w: w[d:])]


def _same(source: str, target: str) -> list[tuple[str, str, Callable]]:
    return [(f"{source}.weight", f"{target}.weight", _keep), (f"{source}.bias", f"{target}.bias", _keep)]


def _keep(w: torch.Tensor) -> torch.Tensor:
    return w


LAYOUTS: dict[str, dict[str, str]] = {
    # the names each source gives the same parts (None: the source has no such tensor)
    "cornac": {
        "codes": "code_embeddings", "mask": "mask_embeddings", "item_mlp": "item_projection",
        "positions": "history_positions.weight", "final_norm": "final_norm", "encoder": "encoder_blocks",
        "decoder": "decoder_blocks", "enc_norm1": "attention_norm", "enc_attn": "attention",
        "enc_norm2": "feed_forward_norm", "dec_norm1": "self_attention_norm", "self_attn": "self_attention",
        "dec_norm2": "cross_attention_norm", "cross_attn": "cross_attention", "dec_norm3": "feed_forward_norm",
        "out_proj": "projection", "ff": "feed_forward", "ff_in": "input", "ff_out": "output",
    },
    "reference": {
        "codes": "embedding.weight", "mask": "mask_emb_table.weight", "item_mlp": "item_mlp",
        "positions": "pos_emb_enc.weight", "final_norm": "ln_f", "encoder": "encoder_blocks",
        "decoder": "decoder_blocks", "enc_norm1": "ln_1", "enc_attn": "attn", "enc_norm2": "ln_2",
        "dec_norm1": "ln_1", "self_attn": "self_attn", "dec_norm2": "ln_2", "cross_attn": "cross_attn",
        "dec_norm3": "ln_3", "out_proj": "proj", "ff": "mlp", "ff_in": "c_fc", "ff_out": "c_proj",
    },
}
SPECIAL_TOKENS = 3
"""The reference's vocabulary starts with PAD, BOS and EOS: digit d's code c is token ``3 + d*K + c``."""


def _plan(layout: str, c: ModelConfig) -> list[tuple[str, str, Callable]]:
    """(source key, target key, transform) for every tensor of the released network."""
    names = LAYOUTS[layout]
    d, n, k = c.d_model, c.n_digits, c.codebook_size
    if layout == "cornac":
        codes = (names["codes"], "code_emb.weight", lambda w: w.reshape(n * k, d))
        mask = (names["mask"], "mask_emb.weight", _keep)
    else:  # one embedding table of 3 + n*K rows; the special tokens' rows are never read
        codes = (names["codes"], "code_emb.weight", lambda w: w[SPECIAL_TOKENS: SPECIAL_TOKENS + n * k])
        mask = (names["mask"], "mask_emb.weight", _keep)
    plan = [codes, mask, (names["positions"], "pos_emb.weight", _keep)]
    plan += _same(f"{names['item_mlp']}.0", "item_mlp.0") + _same(f"{names['item_mlp']}.2", "item_mlp.2")
    plan += _same(names["final_norm"], "dec_ln")
    attn, proj = names["out_proj"], names["ff"]
    for i in range(c.enc_layers):
        src, dst = f"{names['encoder']}.{i}", f"encoder.{i}"
        plan += _same(f"{src}.{names['enc_norm1']}", f"{dst}.ln1") + _same(f"{src}.{names['enc_norm2']}", f"{dst}.ln2")
        plan += _qkv(f"{src}.{names['enc_attn']}", f"{dst}.attn", d)
        plan += _same(f"{src}.{names['enc_attn']}.{attn}", f"{dst}.attn.o")
        plan += _same(f"{src}.{proj}.{names['ff_in']}", f"{dst}.ff.0")
        plan += _same(f"{src}.{proj}.{names['ff_out']}", f"{dst}.ff.3")
    for i in range(c.dec_layers):
        src, dst = f"{names['decoder']}.{i}", f"decoder.{i}"
        for norm, ln in (("dec_norm1", "ln1"), ("dec_norm2", "ln2"), ("dec_norm3", "ln3")):
            plan += _same(f"{src}.{names[norm]}", f"{dst}.{ln}")
        for part, target in (("self_attn", "self_attn"), ("cross_attn", "cross_attn")):
            plan += _qkv(f"{src}.{names[part]}", f"{dst}.{target}", d)
            plan += _same(f"{src}.{names[part]}.{attn}", f"{dst}.{target}.o")
        plan += _same(f"{src}.{proj}.{names['ff_in']}", f"{dst}.ff.0")
        plan += _same(f"{src}.{proj}.{names['ff_out']}", f"{dst}.ff.3")
    return plan


def expected_source_shapes(layout: str, c: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape every source tensor must have for the network ``c`` describes."""
    d, n, k, f = c.d_model, c.n_digits, c.codebook_size, c.d_ff
    names = LAYOUTS[layout]
    shapes = {names["codes"]: (n, k, d) if layout == "cornac" else (SPECIAL_TOKENS + n * k, d),
              names["mask"]: (n, d), names["positions"]: (c.max_history, d),
              f"{names['item_mlp']}.0.weight": (d, n * d), f"{names['item_mlp']}.0.bias": (d,),
              f"{names['item_mlp']}.2.weight": (d, d), f"{names['item_mlp']}.2.bias": (d,)}
    for source, _, _ in _plan(layout, c):
        if source in shapes:
            continue
        if source.endswith(".qkv.weight"):
            shapes[source] = (3 * d, d)
        elif f".{names['ff_in']}." in source:
            shapes[source] = (f, d) if source.endswith("weight") else (f,)
        elif f".{names['ff_out']}." in source:
            shapes[source] = (d, f) if source.endswith("weight") else (d,)
        elif source.endswith(f".{names['out_proj']}.weight"):
            shapes[source] = (d, d)
        else:  # layer norms and the output projections' biases
            shapes[source] = (d,)
    return shapes


def map_state_dict(state: dict[str, torch.Tensor], layout: str, c: ModelConfig, where: str,
                   ignore: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """``state`` (Cornac's or the reference's names) -> :class:`ReleasedDiffGRM`'s state dict
    (without ``item_codes``, which the importer sets from the matched SID table). A missing,
    unexpected or misshapen tensor is one :class:`DiffGRMError` naming it and ``where``."""
    shapes = expected_source_shapes(layout, c)
    for key, shape in shapes.items():
        if key not in state:
            raise DiffGRMError(f"{where}: missing tensor {key!r} (expected shape {list(shape)}); not a "
                               f"{'Cornac DiffGRM' if layout == 'cornac' else 'reference DIFF_GRM'} state dict")
        got = tuple(state[key].shape)
        if got != shape:
            raise DiffGRMError(f"{where}: tensor {key!r} has shape {list(got)}, expected {list(shape)} for "
                               f"{c.n_digits} digits x {c.codebook_size} codes, d_model {c.d_model}, "
                               f"FFN {c.d_ff}, history {c.max_history}")
        if not state[key].is_floating_point():
            raise DiffGRMError(f"{where}: tensor {key!r} is {state[key].dtype}, expected floating point")
    unexpected = sorted(set(state) - set(shapes) - set(ignore))
    if unexpected:
        raise DiffGRMError(f"{where}: unexpected tensor {unexpected[0]!r}"
                           f"{f' (and {len(unexpected) - 1} more)' if len(unexpected) > 1 else ''}; "
                           "this network has parts diffgrm does not know")
    out = {target: fn(state[source].detach().to(torch.float32)).clone() for source, target, fn in _plan(layout, c)}
    return out
