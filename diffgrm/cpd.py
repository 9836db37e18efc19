"""Confidence-guided Parallel Denoising (CPD): the search that turns digit predictions into items.

The network (``model.py``) only answers "given this partial SID, how likely is every code of every
digit?". This module is the scheduler around it, kept apart like a diffusers scheduler so that the
search can be tested, traced and swapped without touching the network.

The search starts from a fully masked SID and fills one digit per step, ``n`` steps in all. At
every step each beam may fill *any* still-masked digit with any code, so the digits the network is
most confident about are committed first ("confidence" order); the ablations restrict each step to
one scheduled digit ("fixed" or per-user "random" order). A candidate's score is the beam's score
plus the log-probability of the new (digit, code): the chain rule along the chosen fill order, with
no renormalisation after the validity mask. The same partial SID can be reached through different
fill orders; only its best-scoring copy is kept, so a final score is the best chain over the orders
the beam explored (over all ``n!`` of them when the beam covers everything). Different partial SIDs
can also lead to the same items only (``{d0=a, d1=b}`` and ``{d2=c, d3=e}`` after two steps, when
one item matches both): such a *redundant* child gets a beam only when no child that still
reaches a new item is left, so a constrained beam of K returns K distinct items whenever the
catalogue holds them.

Everything is batched over users and beams; the only Python loop is the one over the ``n`` steps.

This file is the search a reader follows top to bottom: :func:`cpd_search`, a loop of steps. One
step, as a scheduler's step with named outputs, is in ``cpd_step.py`` (make the candidates, then
select the new beams); how the ``n`` fills are split over fewer network passes is in
``cpd_passes.py``; which children the catalogue allows and which items a beam can still reach is
in ``cpd_validity.py``; the finish and the trace assembly, shared with the AR search, are in
``beams.py``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from diffgrm.beams import NEG_INF, assemble_traces, by_tier, check_logprobs, finish, first_per_group
from diffgrm.config import ORDERS  # noqa: F401  (re-exported: the fill orders this search knows)
from diffgrm.cpd_passes import _Prediction, pass_sizes
from diffgrm.cpd_step import make_candidates, select, trace_record
from diffgrm.errors import DiffGRMError
from diffgrm.seen import Seen
from diffgrm.sid_index import MASK, SIDIndex
from diffgrm.trace import SearchResult, check_search_sizes

LogProbFn = Callable[[torch.Tensor], torch.Tensor]
"""``tokens [B, R, n]`` long (``MASK`` where masked) -> log-probs ``[B, R, n, K]`` for every digit
(or, with ``masked_only=True``, ``[B, R, m, K]`` for the m masked digits in ascending order)."""

StepHook = Callable[[int, torch.Tensor, torch.Tensor], None]
"""``(step, tokens [B, R, n], scores [B, R])``: a search's beams after each step."""



def cpd_search(
    logprob_fn: LogProbFn,
    index: SIDIndex,
    batch_size: int,
    *,
    beam: int,
    topk: int,
    order: str = "confidence",
    fixed_order: Sequence[int] | None = None,
    seed: int = 0,
    constrain: bool = True,
    trace: bool = False,
    runners_up: int = 3,
    weigh: int = 200,
    masked_only: bool = False,
    passes: int | None = None,
    seen: torch.Tensor | None = None,
    on_step: StepHook | None = None,
) -> SearchResult:
    """Beam search over partial SIDs for ``batch_size`` users; returns the Top-``topk`` items per user.

    ``passes`` (S, 1 <= S <= n, default n) is how many network passes the search takes. With S < n
    a pass fills several digits from one prediction: its fills are chained (digit, code) choices
    scored by the pass's log-probabilities, each pruned to the beam and kept inside the catalogue,
    so a pass ranks joint choices of its digits by their summed log-probabilities. Every pass but
    the last fills one digit; the last fills the remaining ``n - S + 1`` (:func:`pass_sizes`).
    S = n is the one-digit-per-pass search.

    ``order``: "confidence" lets every beam fill any masked digit; "fixed" fills the digits in
    ``fixed_order`` (default ``0..n-1``); "random" draws one digit order per user from ``seed``.
    ``constrain`` keeps every beam inside the catalogue (``SIDIndex.allowed``); without it the
    search is free and SIDs that name no item are dropped at the end, so fewer than ``topk`` items
    may come back. With ``constrain`` a beam of at least ``topk`` returns ``topk`` distinct items
    whenever the catalogue holds that many that the network does not rule out (log-prob ``-inf``).
    Missing results are padded with item ``-1``, score ``-inf`` and an all-``MASK`` SID.

    ``masked_only=True`` promises that ``logprob_fn`` returns the masked digits only, ``[B, R,
    n - s, K]`` for a pass that starts with s digits filled, in ascending digit order: the search
    reads nothing else, so the network may skip the filled slots (``DiffGRM.denoise_masked``). A trace needs every digit's prediction, so it cannot be combined with
    ``masked_only``.

    With ``trace=True`` one :class:`DenoisingTrace` per user is attached. Step 0 has a single,
    virtual parent (the all-masked SID): ``parent[0, r] = 0`` refers to it, and its prediction is
    broadcast to ``distributions[0, r]`` for every beam ``r``. Beams of the last step are sorted by
    score, so with ``constrain=True`` last-step beam ``k`` is ``items[k]`` (``lineage(k)`` follows it).
    The trace also keeps the fills each step weighed, every kept one and the best ``weigh`` others,
    with what became of each (``DenoisingTrace.fills_table``).

    ``seen`` (item indices ``[B, L]``, -1 pads: each user's history) keeps those items out of the
    result inside the search: a child that completes a SID naming a seen item is no candidate, so
    its beam slot goes to the next best one, and (with ``constrain``) a partial SID whose items
    are all seen is pruned once it matches fewer items than the beam.

    ``on_step(s, tokens, scores)`` is called after every step with its beams (``[B, R, n]``, best
    first, and ``[B, R]``): diagnostics follow an item through the search without a trace. Every
    step then keeps its whole beam, the last one included.
    """
    n, k = index.n_digits, index.codebook_size
    schedule = _schedule(order, fixed_order, seed, batch_size, n)
    check_search_sizes(batch_size, beam, topk, runners_up)
    fills = pass_sizes(n, n if passes is None else passes)
    if trace and masked_only:
        raise DiffGRMError("a trace records every digit's prediction: use masked_only=False with trace=True")
    device = index.codes.device
    schedule = schedule.to(device) if schedule is not None else None
    seen_items = Seen(index, seen, batch_size) if seen is not None else None

    tokens = torch.full((batch_size, 1, n), MASK, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, 1, device=device)
    records: list[dict[str, torch.Tensor]] = []
    s = 0
    for pass_no, size in enumerate(fills):
        whole_last = trace or on_step is not None  # the last step's every beam is asked for
        if pass_no == len(fills) - 1 and size == 1 and constrain and not whole_last and topk < tokens.shape[1]:
            tokens, scores = _last_digit_topk(logprob_fn, index, tokens, scores, s, schedule, topk, masked_only,
                                              seen_items)
            s += 1
            break
        logp = _call(logprob_fn, tokens, n - s if masked_only else n, k)
        if scores.device != logp.device:  # follow the network's device from the first call on
            tokens, scores = tokens.to(logp.device), scores.to(logp.device)
            schedule = schedule.to(logp.device) if schedule is not None else None
        pred = _Prediction(logp, tokens if masked_only else None)
        for fill in range(size):  # one prediction, `size` chained fills: each child reads its ancestor's row
            cand = make_candidates(index, tokens, scores, pred, s, schedule, constrain=constrain, trace=trace)
            sel = select(index, cand, tokens, s, beam, constrain=constrain, scheduled=schedule is not None,
                         seen=seen_items)
            if trace:
                records.append(trace_record(index, cand, sel, pred, scores, runners_up, weigh, seen_items,
                                            last=s == n - 1))
            if fill < size - 1:
                pred = pred.follow(sel.parent)
            tokens, scores = sel.tokens, sel.scores
            if on_step is not None:
                on_step(s, tokens, scores)
            s += 1

    result = finish(index, tokens, scores, topk)
    if trace:
        result.traces = assemble_traces(records, result, decoder="cpd", order=order, beam=beam, passes=fills)
    return result


LAST_CHUNK = 32
"""Beams the last step decodes at once when only the Top-K is asked for."""


def _last_digit_topk(logprob_fn: LogProbFn, index: SIDIndex, tokens: torch.Tensor, scores: torch.Tensor, s: int,
                     schedule: torch.Tensor | None, topk: int, masked_only: bool, seen: Seen | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The last digit when only the Top-``topk`` complete SIDs are needed (no trace; kept in the
    catalogue, so every complete SID names an item).

    Beams arrive best-first and a child never scores above its parent (log-probabilities are at
    most 0), so the network reads the beams :data:`LAST_CHUNK` at a time and stops once no unread
    beam of any user scores above that user's ``topk``-th best complete SID so far: the same
    Top-K as decoding every beam, for a fraction of the last pass.
    """
    b, p, n = tokens.shape
    k = index.codebook_size
    best_t, best_s = tokens[:, :0], scores[:, :0]
    for start in range(0, p, LAST_CHUNK):
        part_t, part_s = tokens[:, start : start + LAST_CHUNK], scores[:, start : start + LAST_CHUNK]
        if best_s.shape[1] >= topk and not bool((part_s[:, 0] > best_s[:, topk - 1]).any()):
            break  # every unread beam is below its user's Top-K already
        logp = _call(logprob_fn, part_t, 1 if masked_only else n, k)
        pred = _Prediction(logp, part_t if masked_only else None)
        cand = make_candidates(index, part_t, part_s, pred, s, schedule, constrain=True, trace=False)
        sel = select(index, cand, part_t, s, topk, constrain=True, scheduled=schedule is not None, seen=seen)
        child_t, child_s = sel.tokens, sel.scores
        # merge with the best so far: best first, one copy of each complete SID
        all_t, all_s = torch.cat([best_t, child_t], 1), torch.cat([best_s, child_s], 1)
        order = torch.sort(all_s, dim=1, descending=True, stable=True).indices
        all_t, all_s = all_t.gather(1, order[..., None].expand(-1, -1, n)), all_s.gather(1, order)
        first = first_per_group(index.keys(all_t)) & torch.isfinite(all_s)
        keep = by_tier(~first)[:, :topk]
        best_t, best_s = all_t.gather(1, keep[..., None].expand(-1, -1, n)), all_s.gather(1, keep)
        best_s = torch.where(first.gather(1, keep), best_s, torch.full_like(best_s, NEG_INF))
    return best_t, best_s


# --- checks -------------------------------------------------------------------------------------


def _schedule(order: str, fixed_order: Sequence[int] | None, seed: int, batch: int, n: int) -> torch.Tensor | None:
    """Digit filled at each step per user, ``[B, n]``; ``None`` for confidence order (any digit)."""
    if order == "confidence":
        return None
    if order == "fixed":
        digits = list(range(n)) if fixed_order is None else [int(d) for d in fixed_order]
        if sorted(digits) != list(range(n)):
            raise DiffGRMError(f"fixed_order must be a permutation of 0..{n - 1}, got {list(fixed_order or [])}")
        return torch.tensor(digits, dtype=torch.long).expand(batch, n)
    if order == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(batch, n, generator=gen).argsort(dim=1)
    raise DiffGRMError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")


def _call(logprob_fn: LogProbFn, tokens: torch.Tensor, digits: int, k: int) -> torch.Tensor:
    """Run the network and insist on ``[B, R, digits, K]`` floats: a wrong shape would broadcast silently."""
    layout = "batch, beams, " + ("the masked digits only, codes" if digits < tokens.shape[2] else "digits, codes")
    return check_logprobs(logprob_fn(tokens), (*tokens.shape[:2], digits, k), "logprob_fn", layout)
