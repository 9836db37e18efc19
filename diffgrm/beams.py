"""What both searches do with their beams: rank them, finish them into items, and record them.

CPD (``cpd.py``) and the autoregressive baseline (``ar.py``) differ in which children a beam may
have; everything after that is the same and lives here, once: telling the first copy of a key
from its repeats, putting one tier of candidates before another, turning complete SIDs into a
padded Top-K (:func:`finish`), the runners-up of a fill, the fills a step weighed and what
became of them (:func:`weighed_fills`), and stacking the per-step records into one
:class:`~diffgrm.trace.DenoisingTrace` per user (:func:`assemble_traces`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import MASK, SIDIndex
from diffgrm.trace import KEPT, DenoisingTrace, SearchResult, Weighed

NEG_INF = float("-inf")


def check_logprobs(logp, want: tuple[int, ...], name: str, layout: str) -> torch.Tensor:
    """Insist that a network wrapper returned float log-probs of shape ``want``: a wrong shape
    would broadcast silently into the scores. ``layout`` names the axes in the error."""
    if not isinstance(logp, torch.Tensor) or tuple(logp.shape) != tuple(want) or not logp.is_floating_point():
        got = f"{logp.dtype} of shape {tuple(logp.shape)}" if isinstance(logp, torch.Tensor) else type(logp).__name__
        raise DiffGRMError(f"{name} must return float log-probs of shape {tuple(want)} ({layout}), got {got}")
    return logp


def first_per_group(keys: torch.Tensor) -> torch.Tensor:
    """Bool, shaped like ``keys [..., M]``: is this column the first (leftmost) one with its key in
    its row? Columns are best-first in the searches, so this keeps the best copy of each key."""
    order = torch.sort(keys, dim=-1, stable=True).indices  # equal keys stay in column order
    ranked = keys.gather(-1, order)
    first = torch.ones_like(keys, dtype=torch.bool)
    first[..., 1:] = ranked[..., 1:] != ranked[..., :-1]
    return torch.zeros_like(first).scatter(-1, order, first)


def by_tier(tier: torch.Tensor) -> torch.Tensor:
    """Column order ``[B, M]`` that puts tier 0 first, then tier 1, ..., keeping the column order
    (best-first) inside each tier: ``tier`` is a small whole number per column."""
    return torch.sort(tier.to(torch.uint8), dim=1, stable=True).indices


def finish(index: SIDIndex, tokens: torch.Tensor, scores: torch.Tensor, topk: int) -> SearchResult:
    """Final beams -> the Top-``topk`` items per user, best first: dead beams, SIDs outside the
    catalogue and repeated items dropped; padded with item -1, score -inf and an all-MASK SID."""
    b, r, n = tokens.shape
    items = index.item_of(tokens)  # [B, R]
    valid = torch.isfinite(scores) & (items >= 0)
    unique_neg = -1 - torch.arange(r, device=items.device).expand_as(items)  # invalid ones never repeat
    valid &= first_per_group(torch.where(valid, items, unique_neg))
    ranked = torch.where(valid, scores, torch.full_like(scores, NEG_INF))
    if r < topk:  # a catalogue smaller than the Top-K: pad before ranking
        ranked = torch.cat([ranked, ranked.new_full((b, topk - r), NEG_INF)], 1)
        items = torch.cat([items, items.new_full((b, topk - r), -1)], 1)
        tokens = torch.cat([tokens, tokens.new_full((b, topk - r, n), MASK)], 1)
    top, pick = torch.sort(ranked, dim=1, descending=True, stable=True)
    top, pick = top[:, :topk], pick[:, :topk]
    alive = torch.isfinite(top)
    items = torch.where(alive, items.gather(1, pick), torch.full_like(pick, -1))
    sids = tokens.gather(1, pick[..., None].expand(-1, -1, n))
    sids = torch.where(alive[..., None], sids, torch.full_like(sids, MASK))
    return SearchResult(items=items, scores=top, sids=sids)


def runners_up(rows: torch.Tensor, code: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The next-best ``count`` codes after ``code [B, R]`` in ``rows [B, R, K]`` (catalogue-masked
    log-probs of the filled digit) and their probabilities; code -1 and probability 0 where
    there are fewer allowed codes."""
    b, r, k = rows.shape
    others = rows.scatter(2, code[..., None], NEG_INF)
    lp, codes = others.topk(min(count, k), dim=2)
    if count > k:
        lp = torch.cat([lp, lp.new_full((b, r, count - k), NEG_INF)], dim=2)
        codes = torch.cat([codes, codes.new_full((b, r, count - k), -1)], dim=2)
    ok = torch.isfinite(lp)
    return torch.where(ok, codes, torch.full_like(codes, -1)), torch.where(ok, lp.exp(), torch.zeros_like(lp))


def weighed_fills(raw: torch.Tensor, status: torch.Tensor, at, parent_scores: torch.Tensor, limit: int,
                  count_items=None) -> dict[str, torch.Tensor]:
    """A step's fills for the trace: every kept one and the best ``limit`` others by beam score.

    ``raw [B, C]`` is each candidate's beam score before any catalogue or history rule (-inf: the
    network rules it out or its parent is dead; never recorded), ``status [B, C]`` what became of
    it, ``at(cols)`` its (parent, digit, code) and ``count_items(parent, digit, code)`` how many
    catalogue items its partial SID matches (None: not counted)."""
    b, c = raw.shape
    kept = int((status == KEPT).sum(1).max()) if b else 0
    width = min(c, limit + kept)
    first = torch.where(status == KEPT, torch.full_like(raw, float("inf")), raw)  # kept ones always listed
    cols = first.topk(width, dim=1).indices
    par, digit, code = at(cols)
    score = raw.gather(1, cols)
    stat = torch.where(torch.isfinite(score), status.gather(1, cols), torch.full_like(cols, -1))
    items = count_items(par, digit, code) if count_items is not None else torch.full_like(cols, -1)
    return {"w_parent": par, "w_digit": digit, "w_code": code, "w_logp": score - parent_scores.gather(1, par),
            "w_score": score, "w_status": stat, "w_items": items}


_DEAD = {"parent": -1, "digit": -1, "code": -1, "prob": 0.0, "score": NEG_INF, "tokens": MASK, "alive": False,
         "runner_up_codes": -1, "runner_up_probs": 0.0, "distributions": 0.0,
         "w_parent": 0, "w_digit": 0, "w_code": 0, "w_logp": NEG_INF, "w_score": NEG_INF, "w_status": -1, "w_items": -1}
"""What a trace holds where a beam is dead (or a step had fewer beams or weighed fills than others)."""


def assemble_traces(records: list[dict[str, torch.Tensor]], result: SearchResult, *, decoder: str, order: str,
                    beam: int, passes: Sequence[int] | None = None) -> list[DenoisingTrace]:
    """Stack the per-step records (``[B, R_s, ...]`` each, ``R_s <= beam``) into one trace per user,
    ``[step, beam, ...]``: missing beams and dead ones hold :data:`_DEAD`'s values."""
    b = result.items.shape[0]
    stacked = {}
    for name in records[0]:
        parts = [r[name].detach().cpu().numpy() for r in records]
        wide = beam if not name.startswith("w_") else max(p.shape[1] for p in parts)
        arr = np.full((b, len(parts), wide, *parts[0].shape[2:]), _DEAD[name], dtype=parts[0].dtype)
        for s, part in enumerate(parts):
            arr[:, s, : part.shape[1]] = part
        stacked[name] = arr
    dead = ~stacked["alive"]
    for name, arr in stacked.items():
        if not name.startswith("w_") and name != "alive":
            arr[dead] = _DEAD[name]
    step_passes = None if passes is None else np.repeat(np.arange(len(passes)), passes)
    items, item_scores = result.items.cpu().numpy(), result.scores.cpu().numpy()
    traces = []
    for u in range(b):
        fields = {name: np.ascontiguousarray(arr[u]) for name, arr in stacked.items() if not name.startswith("w_")}
        weighed = None
        if "w_status" in stacked:
            weighed = Weighed(**{name[2:]: np.ascontiguousarray(stacked[name][u]) for name in stacked
                                 if name.startswith("w_")})
        traces.append(DenoisingTrace(decoder=decoder, order=order, items=items[u], item_scores=item_scores[u],
                                     passes=step_passes, weighed=weighed, **fields))
    return traces
