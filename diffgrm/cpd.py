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
the beam explored (over all ``n!`` of them when the beam covers everything).

Everything is batched over users and beams; the only Python loop is the one over the ``n`` steps.
"""

from __future__ import annotations

import weakref
from typing import Callable, Sequence

import numpy as np
import torch

from diffgrm.errors import DiffGRMError
from diffgrm.sid_index import MASK, SIDIndex
from diffgrm.trace import DenoisingTrace, SearchResult, check_search_sizes

LogProbFn = Callable[[torch.Tensor], torch.Tensor]
"""``tokens [B, R, n]`` long (``MASK`` where masked) -> log-probs ``[B, R, n, K]`` for every digit."""

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
) -> SearchResult:
    """Beam search over partial SIDs for ``batch_size`` users; returns the Top-``topk`` items per user.

    ``order``: "confidence" lets every beam fill any masked digit; "fixed" fills the digits in
    ``fixed_order`` (default ``0..n-1``); "random" draws one digit order per user from ``seed``.
    ``constrain`` keeps every beam inside the catalogue (``SIDIndex.allowed``); without it the
    search is free and SIDs that name no item are dropped at the end, so fewer than ``topk`` items
    may come back. Missing results are padded with item ``-1``, score ``-inf`` and an all-``MASK``
    SID.

    With ``trace=True`` one :class:`DenoisingTrace` per user is attached. Step 0 has a single,
    virtual parent (the all-masked SID): ``parent[0, r] = 0`` refers to it, and its prediction is
    broadcast to ``distributions[0, r]`` for every beam ``r``. Beams of the last step are sorted by
    score, so with ``constrain=True`` last-step beam ``k`` is ``items[k]`` (``lineage(k)`` follows it).
    """
    n, k = index.n_digits, index.codebook_size
    schedule = _schedule(order, fixed_order, seed, batch_size, n)
    check_search_sizes(batch_size, beam, topk, runners_up)
    device = index.codes.device
    schedule = schedule.to(device) if schedule is not None else None

    tokens = torch.full((batch_size, 1, n), MASK, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, 1, device=device)
    steps: list[dict[str, torch.Tensor]] = []
    for s in range(n):
        logp = _call(logprob_fn, tokens, n, k)
        if scores.device != logp.device:  # follow the network's device from the first call on
            tokens, scores = tokens.to(logp.device), scores.to(logp.device)
            schedule = schedule.to(logp.device) if schedule is not None else None
        tokens, scores, step = _step(index, tokens, scores, logp, s, schedule, beam, constrain, trace, runners_up)
        if trace:
            steps.append(step)

    result = _finish(index, tokens, scores, topk)
    if trace:
        result.traces = _traces(steps, result, order)
    return result


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


def _call(logprob_fn: LogProbFn, tokens: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Run the network and insist on ``[B, R, n, K]`` floats: a wrong shape would broadcast silently."""
    logp = logprob_fn(tokens)
    want = (*tokens.shape, k)
    if not isinstance(logp, torch.Tensor) or tuple(logp.shape) != want or not logp.is_floating_point():
        got = tuple(logp.shape) if isinstance(logp, torch.Tensor) else type(logp).__name__
        raise DiffGRMError(
            f"logprob_fn must return float log-probs of shape {want} (batch, beams, digits, codes), got {got}"
        )
    return logp


# --- one denoising step -------------------------------------------------------------------------


def _step(
    index: SIDIndex,
    tokens: torch.Tensor,  # [B, P, n] parents, each with exactly s filled digits
    scores: torch.Tensor,  # [B, P]
    logp: torch.Tensor,  # [B, P, n, K]
    s: int,
    schedule: torch.Tensor | None,
    beam: int,
    constrain: bool,
    trace: bool,
    runners_up: int,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Expand every parent by one (digit, code), keep the best ``beam`` distinct children per user.

    All parents of a step have the same number of masked digits (one fill per step), so the
    candidate digits form a dense ``[B, P, m]`` tensor: the ``n - s`` masked digits (confidence) or
    the one scheduled digit. Scoring only those keeps the work at ``m * K`` per parent rather than
    ``n * K``, and the validity lookup touches no filled digit.
    """
    b, p, n = tokens.shape
    k = logp.shape[-1]
    device = logp.device
    if schedule is None:  # masked digits first, in ascending digit order
        digits = torch.sort((tokens != MASK).to(torch.uint8), dim=-1, stable=True).indices[..., : n - s]
    else:
        digits = schedule[:, s, None, None].expand(b, p, 1)
    m = digits.shape[-1]

    lp = logp.gather(2, digits[..., None].expand(b, p, m, k))  # [B, P, m, K]
    parent_keys = index.keys(tokens)  # [B, P]
    cand = lp.to(torch.promote_types(lp.dtype, scores.dtype)) + scores[..., None, None]  # >= float32 sums
    blocked = _blocked(index, tokens, parent_keys, digits) if constrain else None
    if blocked is not None:
        cand.masked_fill_(blocked, NEG_INF)
    cand = cand.reshape(b, -1)  # [B, C], C = P * m * K

    # A child with s + 1 filled digits has at most s + 1 distinct parents, so the best `beam`
    # distinct children are the first distinct ones among the top (s + 1) * beam candidates.
    c_total = cand.shape[1]
    if c_total < beam:  # too few candidates: pad with dead ones (score -inf)
        cand = torch.cat([cand, cand.new_full((b, beam - c_total), NEG_INF)], dim=1)
    top_scores, top_idx = cand.topk(min((s + 1) * beam, cand.shape[1]), dim=1)
    top_idx = top_idx % c_total  # padded slots point at some real candidate; they stay dead
    par, rest = top_idx // (m * k), top_idx % (m * k)
    slot, code = rest // k, rest % k
    digit = digits.reshape(b, -1).gather(1, par * m + slot)
    keys = parent_keys.gather(1, par) + (code + 1) * index.base.to(device)[digit]  # the children's keys
    top_scores = top_scores.masked_fill(~_first_occurrence(keys), NEG_INF)

    # Best-first, ties kept in topk's order; the first `beam` are the new beams.
    new_scores, keep = torch.sort(top_scores, dim=1, descending=True, stable=True)
    new_scores, keep = new_scores[:, :beam], keep[:, :beam]
    par, slot, code, digit = par.gather(1, keep), slot.gather(1, keep), code.gather(1, keep), digit.gather(1, keep)
    new_tokens = tokens.gather(1, par[..., None].expand(b, beam, n)).scatter(2, digit[..., None], code[..., None])

    step: dict[str, torch.Tensor] = {}
    if trace:
        if blocked is not None:
            lp = lp.masked_fill(blocked, NEG_INF)
        step = _trace_step(logp, lp, par, slot, digit, code, new_scores, new_tokens, runners_up)
    return new_tokens, new_scores, step


def _first_occurrence(keys: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, M]``: is this the first (best-scoring, as columns are best-first) copy of its key?"""
    order = torch.sort(keys, dim=1, stable=True).indices
    sorted_keys = keys.gather(1, order)
    first = torch.ones_like(keys, dtype=torch.bool)
    first[:, 1:] = sorted_keys[:, 1:] != sorted_keys[:, :-1]
    return torch.zeros_like(first).scatter(1, order, first)


# --- validity mask ------------------------------------------------------------------------------


class _Matches:
    """Which catalogue items match a partial SID, as a contiguous run of one sorted array.

    The validity mask is ``SIDIndex.allowed`` restricted to the candidate digits. Asking the index
    per candidate binary-searches ``beams x digits x codes`` keys (millions per step, the bulk of
    the search time). Deep in the search a beam matches only a handful of items, so it is much
    cheaper to list those items and mark the codes they carry: the same mask, built by a scatter.
    Items are sorted once per subset of filled digits; ``subset * (K + 1) ** n + key`` makes all
    subsets one sorted array, so a beam's matches are found by two ``searchsorted`` calls.
    """

    def __init__(self, index: SIDIndex, device: torch.device) -> None:
        n = index.n_digits
        codes = index.codes.to(device)
        self.codes = codes
        self.span = (index.codebook_size + 1) ** n
        keys, items = [], []
        for subset in range(1 << n):
            filled = torch.tensor([(subset >> d) & 1 == 1 for d in range(n)], device=device)
            keys.append(subset * self.span + index.keys(torch.where(filled, codes, MASK)))
            items.append(torch.arange(len(codes), device=device))
        keys_all = torch.cat(keys)
        order = torch.argsort(keys_all)
        self.sorted_keys, self.items = keys_all[order], torch.cat(items)[order]
        self.bits = (1 << torch.arange(n, device=device))

    def ranges(self, tokens: torch.Tensor, parent_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First position and number of matching items per partial SID."""
        subset = ((tokens != MASK).long() * self.bits).sum(-1)
        q = subset * self.span + parent_keys
        lo = torch.searchsorted(self.sorted_keys, q)
        hi = torch.searchsorted(self.sorted_keys, q, right=True)
        return lo, hi - lo


_MATCHES: "weakref.WeakKeyDictionary[SIDIndex, dict[torch.device, _Matches]]" = weakref.WeakKeyDictionary()


def _blocked(index: SIDIndex, tokens: torch.Tensor, parent_keys: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, P, m, K]``: is code c in digit ``digits[b, p, j]`` outside the catalogue for parent ``[b, p]``?

    The complement of ``SIDIndex.allowed`` on the candidate digits only.
    """
    b, p, m = digits.shape
    k, n = index.codebook_size, index.n_digits
    device = tokens.device
    per_device = _MATCHES.setdefault(index, {})
    if device not in per_device:  # subset-tagged keys must fit int64; otherwise ask the index
        per_device[device] = _Matches(index, device) if (1 << n) * (k + 1) ** n < 2**63 else None
    matches = per_device[device]
    if matches is not None:
        lo, count = matches.ranges(tokens, parent_keys)
        count = count.reshape(-1)
        total = int(count.sum())
        if total <= b * p * k:  # listing the matches is no more work than checking every code
            owner = torch.repeat_interleave(torch.arange(b * p, device=device), count, output_size=total)
            start = torch.cumsum(count, 0) - count
            pos = lo.reshape(-1)[owner] + torch.arange(total, device=device) - start[owner]
            dig = digits.reshape(b * p, m)[owner]  # [T, m]
            code = matches.codes[matches.items[pos][:, None], dig]  # [T, m] codes the matching items carry
            blocked = torch.ones(b * p, m, k, dtype=torch.bool, device=device)
            blocked[owner[:, None], torch.arange(m, device=device), code] = False
            return blocked.reshape(b, p, m, k)
    child_step = (torch.arange(k, device=device) + 1) * index.base.to(device)[digits][..., None]
    return ~index.exists_keys(parent_keys[..., None, None] + child_step)


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


def _traces(steps: list[dict[str, torch.Tensor]], result: SearchResult, order: str) -> list[DenoisingTrace]:
    """Stack the per-step records into one ``[step, beam, ...]`` trace per user."""
    stacked = {name: torch.stack([st[name] for st in steps], dim=1).numpy() for name in steps[0]}  # [B, S, ...]
    items, item_scores = result.items.cpu().numpy(), result.scores.cpu().numpy()
    traces = []
    for u in range(items.shape[0]):
        fields = {name: np.ascontiguousarray(arr[u]) for name, arr in stacked.items()}
        traces.append(DenoisingTrace(decoder="cpd", order=order, items=items[u], item_scores=item_scores[u], **fields))
    return traces
