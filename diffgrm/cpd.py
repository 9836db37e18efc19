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

This file is the search a reader follows top to bottom: :func:`cpd_search`, then one step
(:func:`_step`), the finish and the trace. Two parts live beside it: how the ``n`` fills are
split over fewer network passes (``cpd_passes.py``) and which children the catalogue allows and
which items a beam can still reach (``cpd_validity.py``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from diffgrm.cpd_passes import _Prediction, pass_sizes
from diffgrm.cpd_validity import _blocked, _listed_children, _matches
from diffgrm.errors import DiffGRMError
from diffgrm.seen import Seen
from diffgrm.sid_index import MASK, SIDIndex, masked_digits
from diffgrm.trace import DenoisingTrace, SearchResult, check_search_sizes

LogProbFn = Callable[[torch.Tensor], torch.Tensor]
"""``tokens [B, R, n]`` long (``MASK`` where masked) -> log-probs ``[B, R, n, K]`` for every digit
(or, with ``masked_only=True``, ``[B, R, m, K]`` for the m masked digits in ascending order)."""

ORDERS = ("confidence", "fixed", "random")
NEG_INF = float("-inf")


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
    masked_only: bool = False,
    passes: int | None = None,
    seen: torch.Tensor | None = None,
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

    ``seen`` (item indices ``[B, L]``, -1 pads: each user's history) keeps those items out of the
    result inside the search: a child that completes a SID naming a seen item is no candidate, so
    its beam slot goes to the next best one, and (with ``constrain``) a partial SID whose items
    are all seen is pruned once it matches fewer items than the beam.
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
        if pass_no == len(fills) - 1 and size == 1 and constrain and not trace and topk < tokens.shape[1]:
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
            tokens, scores, step, par = _step(index, tokens, scores, pred, s, schedule, beam, constrain, trace,
                                              runners_up, seen_items)
            if fill < size - 1:
                pred = pred.follow(par)
            s += 1
            if trace:
                records.append(step)

    result = _finish(index, tokens, scores, topk)
    if trace:
        result.traces = _traces(records, result, order, fills)
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
        child_t, child_s, _, _ = _step(index, part_t, part_s, pred, s, schedule, topk, True, False, 0, seen)
        # merge with the best so far: best first, one copy of each complete SID
        all_t, all_s = torch.cat([best_t, child_t], 1), torch.cat([best_s, child_s], 1)
        order = torch.sort(all_s, dim=1, descending=True, stable=True).indices
        all_t, all_s = all_t.gather(1, order[..., None].expand(-1, -1, n)), all_s.gather(1, order)
        first = _first_occurrence(index.keys(all_t)) & torch.isfinite(all_s)
        keep = torch.sort((~first).to(torch.uint8), dim=1, stable=True).indices[:, :topk]
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
    logp = logprob_fn(tokens)
    want = (*tokens.shape[:2], digits, k)
    if not isinstance(logp, torch.Tensor) or tuple(logp.shape) != want or not logp.is_floating_point():
        got = tuple(logp.shape) if isinstance(logp, torch.Tensor) else type(logp).__name__
        raise DiffGRMError(
            f"logprob_fn must return float log-probs of shape {want} (batch, beams, digits, codes), got {got}"
            + (" (masked_only: the still-masked digits only)" if digits < tokens.shape[2] else "")
        )
    return logp


# --- one denoising step -------------------------------------------------------------------------


def _step(
    index: SIDIndex,
    tokens: torch.Tensor,  # [B, P, n] parents, each with exactly s filled digits
    scores: torch.Tensor,  # [B, P]
    pred: _Prediction,  # the pass's log-probs and the row each parent reads
    s: int,
    schedule: torch.Tensor | None,
    beam: int,
    constrain: bool,
    trace: bool,
    runners_up: int,
    seen: Seen | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Expand every parent by one (digit, code), keep the best ``beam`` distinct children per user;
    returns their tokens, scores, the trace record and each child's parent ``[B, beam]``.

    All parents of a step have the same number of masked digits (one fill per step), so the
    candidate digits form a dense ``[B, P, m]`` tensor: the ``n - s`` masked digits (confidence) or
    the one scheduled digit. Scoring only those keeps the work at ``m * K`` per parent rather than
    ``n * K``, and the validity lookup touches no filled digit. A child that completes a SID
    naming a ``seen`` item is dead, and more candidates are read until ``beam`` live ones are found.
    """
    b, p, n = tokens.shape
    k = pred.logp.shape[-1]
    device = pred.logp.device
    if schedule is None:  # masked digits first, in ascending digit order
        digits = masked_digits(tokens, n - s)
    else:
        digits = schedule[:, s, None, None].expand(b, p, 1)
    m = digits.shape[-1]

    parent_keys = index.keys(tokens)  # [B, P]
    dtype = torch.promote_types(pred.logp.dtype, scores.dtype)  # >= float32 sums
    # Deep in the search a parent matches a handful of items: list the children they allow and
    # score only those. Otherwise (and for a trace, which records the masked distributions),
    # score every (parent, digit, code) and mask what the catalogue rules out. Same candidates,
    # same scores.
    listed = _listed_children(index, tokens, parent_keys, digits) if constrain and not trace else None
    lookup = blocked = None
    if listed is not None:
        lookup, valid = listed  # [B, T] flat indices into the dense [B, P * m * K] candidates
        lpar, lrest = lookup // (m * k), lookup % (m * k)
        ldigit = digits.reshape(b, -1).gather(1, lpar * m + lrest // k)
        value = pred.values(lpar, ldigit, lrest % k).to(dtype) + scores.gather(1, lpar)
        cand = torch.where(valid, value, torch.full_like(value, NEG_INF))
    else:
        lp = pred.at(digits)
        lp = pred.logp if lp is None else lp  # [B, P, m, K]
        cand = lp.to(dtype) + scores[..., None, None]
        blocked = _blocked(index, tokens, parent_keys, digits) if constrain else None
        if blocked is not None:
            cand.masked_fill_(blocked, NEG_INF)
        cand = cand.reshape(b, -1)  # [B, C], C = P * m * K

    # A child with s + 1 filled digits has at most s + 1 distinct parents, so the best `beam`
    # distinct children are the first distinct ones among the top (s + 1) * beam candidates.
    c_total = cand.shape[1]
    if c_total < beam:  # too few candidates: pad with dead ones (score -inf)
        cand = torch.cat([cand, cand.new_full((b, beam - c_total), NEG_INF)], dim=1)
    # Confidence order: children with different filled digits can match the same items, so beams
    # must also be told apart by the items they can still reach (see _Matches.novel). Not needed
    # at the last step (distinct complete SIDs name distinct items) nor in a scheduled order (a
    # user's children all fill the same digits, so distinct ones match disjoint sets of items),
    # except to prune children whose items are all seen.
    listing = schedule is None or seen is not None
    matches = _matches(index, device) if constrain and listing and s < n - 1 else None
    width = min((s + 1) * beam, cand.shape[1])
    while True:
        top_scores, top_idx = cand.topk(width, dim=1)
        top_idx = top_idx % c_total  # padded slots point at some real candidate; they stay dead
        if lookup is not None:
            top_idx = lookup.gather(1, top_idx)
        par, rest = top_idx // (m * k), top_idx % (m * k)
        slot, code = rest // k, rest % k
        digit = digits.reshape(b, -1).gather(1, par * m + slot)
        keys = index.child_keys(parent_keys.gather(1, par), digit, code)  # the children's keys
        same = keys
        if not (constrain or index.packed):  # children outside the catalogue may share the key ABSENT
            same = index.ids(tokens.gather(1, par[..., None].expand(b, width, n)).scatter(2, digit[..., None],
                                                                                          code[..., None]))
        live = torch.isfinite(top_scores) & _first_occurrence(same)
        if seen is not None and s == n - 1:
            live &= ~seen.holds(index.item_of_keys(keys))
        if matches is None:
            tier = (~live).to(torch.uint8)  # 0: a distinct live child, 1: dead or a repeat
            # with seen items: read more candidates while a user has fewer than `beam` live ones
            short = (live.sum(1) < beam) & torch.isfinite(top_scores[:, -1])
            if seen is None or s < n - 1 or width == cand.shape[1] or not bool(short.any()):
                break
            width = min(4 * width, cand.shape[1])
            continue
        novel, reach, hollow = matches.novel(keys, live, beam, seen)
        live &= ~hollow
        # Look at more candidates only for users whose kept beams would reach fewer than `beam`
        # items, and only while they have candidates left (the last one looked at is alive).
        done = (novel.sum(1) >= beam) | (reach >= beam) | ~torch.isfinite(top_scores[:, -1])
        if width == cand.shape[1] or bool(done.all()):
            tier = 2 - live.to(torch.uint8) - novel.to(torch.uint8)  # 0 novel, 1 redundant, 2 dead
            break
        width = min(4 * width, cand.shape[1])
    top_scores = top_scores.masked_fill(~live, NEG_INF)

    # Novel children first, then redundant ones, each best-first (ties kept in topk's order); the
    # first `beam` are the new beams, ordered best-first.
    keep = torch.sort(tier, dim=1, stable=True).indices[:, :beam]
    new_scores, order = torch.sort(top_scores.gather(1, keep), dim=1, descending=True, stable=True)
    keep = keep.gather(1, order)
    par, slot, code, digit = par.gather(1, keep), slot.gather(1, keep), code.gather(1, keep), digit.gather(1, keep)
    new_tokens = tokens.gather(1, par[..., None].expand(b, beam, n)).scatter(2, digit[..., None], code[..., None])

    step: dict[str, torch.Tensor] = {}
    if trace:
        if blocked is not None:
            lp = lp.masked_fill(blocked, NEG_INF)
        step = _trace_step(pred.full(), lp, par, slot, digit, code, new_scores, new_tokens, runners_up)
    return new_tokens, new_scores, step, par


def _first_occurrence(keys: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, M]``: is this the first (best-scoring, as columns are best-first) copy of its key?"""
    order = torch.sort(keys, dim=1, stable=True).indices
    sorted_keys = keys.gather(1, order)
    first = torch.ones_like(keys, dtype=torch.bool)
    first[:, 1:] = sorted_keys[:, 1:] != sorted_keys[:, :-1]
    return torch.zeros_like(first).scatter(1, order, first)


# --- finish -------------------------------------------------------------------------------------


def _finish(index: SIDIndex, tokens: torch.Tensor, scores: torch.Tensor, topk: int) -> SearchResult:
    """Complete SIDs -> items, best first; drop dead beams, SIDs outside the catalogue and repeats."""
    items = index.item_of(tokens)  # [B, R]
    valid = torch.isfinite(scores) & (items >= 0)
    # beams are distinct partial SIDs already; the item-level check keeps the contract explicit
    unique_neg = -1 - torch.arange(items.shape[1], device=items.device).expand_as(items)
    valid &= _first_occurrence(torch.where(valid, items, unique_neg))
    ranked = torch.where(valid, scores, torch.full_like(scores, NEG_INF))
    top, pick = torch.sort(ranked, dim=1, descending=True, stable=True)
    top, pick = top[:, :topk], pick[:, :topk]
    alive = torch.isfinite(top)
    items = torch.where(alive, items.gather(1, pick), torch.full_like(pick, -1))
    sids = tokens.gather(1, pick[..., None].expand(-1, -1, tokens.shape[2]))
    sids = torch.where(alive[..., None], sids, torch.full_like(sids, MASK))
    return SearchResult(items=items, scores=top, sids=sids)


# --- trace --------------------------------------------------------------------------------------


def _trace_step(logp, lp, par, slot, digit, code, scores, tokens, runners_up) -> dict[str, torch.Tensor]:
    """What one step did, per user and new beam, kept on the CPU until the traces are assembled."""
    b, beam = par.shape
    k = lp.shape[-1]
    rows = lp[torch.arange(b, device=par.device)[:, None], par, slot]  # [B, R, K] logp of the filled digit, masked
    prob = rows.gather(2, code[..., None]).squeeze(2).exp()
    others = rows.scatter(2, code[..., None], NEG_INF)
    ru_lp, ru_codes = others.topk(min(runners_up, k), dim=2)
    if runners_up > k:  # fewer codes than runners-up asked for
        ru_lp = torch.cat([ru_lp, ru_lp.new_full((b, beam, runners_up - k), NEG_INF)], dim=2)
        ru_codes = torch.cat([ru_codes, ru_codes.new_full((b, beam, runners_up - k), -1)], dim=2)
    ru_ok = torch.isfinite(ru_lp)  # codes outside the catalogue (or the filled one) are no runners-up
    dist = logp.float().softmax(-1)  # [B, P, n, K] prediction for each parent
    return {
        "parent": par.cpu(),
        "digit": digit.cpu(),
        "code": code.cpu(),
        "prob": prob.cpu(),
        "score": scores.cpu(),
        "tokens": tokens.cpu(),
        "alive": torch.isfinite(scores).cpu(),
        "runner_up_codes": torch.where(ru_ok, ru_codes, torch.full_like(ru_codes, -1)).cpu(),
        "runner_up_probs": torch.where(ru_ok, ru_lp.exp(), torch.zeros_like(ru_lp)).cpu(),
        # the parent's prediction; at step 0 the single root is broadcast to every beam
        "distributions": dist.gather(1, par[..., None, None].expand(b, beam, *dist.shape[2:])).cpu(),
    }


def _traces(steps: list[dict[str, torch.Tensor]], result: SearchResult, order: str,
            fills: Sequence[int]) -> list[DenoisingTrace]:
    """Stack the per-step records into one ``[step, beam, ...]`` trace per user."""
    passes = np.repeat(np.arange(len(fills)), fills)
    stacked = {name: torch.stack([st[name] for st in steps], dim=1).numpy() for name in steps[0]}  # [B, S, ...]
    items, item_scores = result.items.cpu().numpy(), result.scores.cpu().numpy()
    traces = []
    for u in range(items.shape[0]):
        fields = {name: np.ascontiguousarray(arr[u]) for name, arr in stacked.items()}
        traces.append(DenoisingTrace(decoder="cpd", order=order, items=items[u], item_scores=item_scores[u],
                                     passes=passes, **fields))
    return traces
