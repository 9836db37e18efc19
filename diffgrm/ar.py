"""The autoregressive baseline decoder: catalogue-constrained beam search over a trie of SIDs.

An autoregressive generative recommender (TIGER-style) predicts the digits of a semantic ID left
to right, each conditioned on the ones before. Decoding keeps ``beam`` partial SIDs per user; at
step t every beam is extended by every code of digit t, candidates are scored by the summed
log-probability (the chain rule), and the best ``beam`` survive. With ``constrain=True`` only
codes that keep the prefix inside the catalogue are candidates (a trie walk, answered by
:class:`~diffgrm.sid_index.SIDIndex` with one ``searchsorted`` for all users and beams).

The model is abstracted as ``next_logprob_fn(prefix [B, R, t]) -> log-probs [B, R, K]``, so this
module needs no network and is tested against brute-force enumeration.
"""

from __future__ import annotations

import weakref
from typing import Callable

import numpy as np
import torch

from diffgrm.errors import DiffGRMError
from diffgrm.seen import Seen
from diffgrm.sid_index import MASK, SIDIndex
from diffgrm.trace import DenoisingTrace, SearchResult, check_search_sizes

NextLogProbFn = Callable[[torch.Tensor], torch.Tensor]
"""``prefix [B, R, t]`` long (the t digits chosen so far) -> log-probabilities ``[B, R, K]`` of digit t."""

NEG_INF = float("-inf")


def ar_search(
    next_logprob_fn: NextLogProbFn,
    index: SIDIndex,
    batch_size: int,
    *,
    beam: int,
    topk: int,
    constrain: bool = True,
    trace: bool = False,
    runners_up: int = 3,
    device: torch.device | str | None = None,
    on_reorder: Callable[[torch.Tensor], None] | None = None,
    seen: torch.Tensor | None = None,
) -> SearchResult:
    """Beam search digit by digit, left to right, for ``batch_size`` users at once.

    Each of the ``n`` steps makes one call ``next_logprob_fn(prefix)`` with ``prefix [B, R, t]``
    (``R`` = number of live-or-dead beams at that step: 1 at t = 0, then ``min(beam, R * K)``).
    Beams that died earlier are passed with their last (real) codes; their output is ignored.

    Candidates are ``score + logp``; with ``constrain`` a candidate whose prefix matches no
    catalogue item is dropped. A candidate with score ``-inf`` (including a code the model gives
    probability 0, or NaN) is dead and never returned. The final beams are mapped to items with
    ``index.item_of``; complete SIDs that name no item (possible only with ``constrain=False``)
    are dropped. The result holds the best ``topk`` per user, padded with item ``-1``, score
    ``-inf`` and SID ``-1``.

    ``trace=True`` records one :class:`DenoisingTrace` per user (``decoder="ar"``,
    ``order="left-to-right"``, ``digit[s, r] = s``). ``prob`` is the model's raw probability of
    the chosen code (not renormalised over the allowed codes). ``distributions[s, r]`` is ``[n,
    K]`` with row s the parent beam's predicted distribution of digit s and **zeros** in every
    other row, because an AR model predicts one digit per step. Runners-up are the next-best
    codes for the same digit from the same parent, among the allowed codes when ``constrain``
    (code ``-1``, probability 0 where there are fewer). Dead beams have ``alive = False``,
    ``parent = code = -1``, ``score = -inf`` and tokens all ``-1``.

    ``on_reorder(parent)`` is called after every step with ``parent [B, R']``, the previous beam
    each kept beam came from, so a network wrapper can keep per-beam state in step with the
    search (the decoder's key/value cache: see ``Recommender.search``).

    ``seen`` (item indices ``[B, L]``, -1 pads: each user's history) keeps those items out of the
    result inside the search: at the last digit a code that completes a SID naming a seen item is
    no candidate, so the beam slot goes to the next best one; with ``constrain`` (and the trie
    tables, up to ``TABLE_LIMIT``) a prefix all of whose items are seen is pruned at every digit.
    """
    n, k = index.n_digits, index.codebook_size
    check_search_sizes(batch_size, beam, topk, runners_up)
    dev = torch.device(device) if device is not None else index.codes.device
    b = batch_size
    n_ru = min(runners_up, k - 1)

    sids = torch.full((b, 1, n), MASK, dtype=torch.long, device=dev)  # [B, R, n]
    scores = torch.zeros((b, 1), dtype=torch.float32, device=dev)
    alive = torch.ones((b, 1), dtype=torch.bool, device=dev)
    children = _children_table(index, dev) if constrain else None
    seen_items = Seen(index, torch.as_tensor(seen).to(dev), b) if seen is not None else None
    rec: list[dict[str, torch.Tensor]] = []

    for t in range(n):
        r_cur = sids.shape[1]
        prefix = sids[..., :t].contiguous()
        logp = next_logprob_fn(prefix)
        if not isinstance(logp, torch.Tensor) or tuple(logp.shape) != (b, r_cur, k):
            got = tuple(logp.shape) if isinstance(logp, torch.Tensor) else type(logp).__name__
            raise DiffGRMError(
                f"next_logprob_fn must return log-probs of shape {(b, r_cur, k)} for a prefix of shape "
                f"{tuple(prefix.shape)}, got {got}"
            )
        if not logp.is_floating_point():
            raise DiffGRMError(f"next_logprob_fn must return floating-point log-probs, got {logp.dtype}")
        logp = logp.to(dev)
        dtype = torch.promote_types(scores.dtype, logp.dtype)
        logp, scores = logp.to(dtype), scores.to(dtype)

        bad = torch.isnan(logp)  # NaN counts as impossible
        bad |= ~alive[..., None]
        if constrain:
            bad |= ~(children.allowed(sids, t) if children is not None else _allowed_by_keys(index, sids, t))
        if seen_items is not None:
            if children is not None:  # prefixes (at the last digit: SIDs) every item of which is seen
                bad |= children.hollow(sids, t, seen_items)
            elif t == n - 1:  # the codes that complete a SID naming a seen item
                complete = index.child_keys(index.keys(sids)[..., None], t, torch.arange(k, device=dev))
                bad |= seen_items.holds(index.item_of_keys(complete))
        cand = (scores[..., None] + logp).masked_fill_(bad, NEG_INF).reshape(b, r_cur * k)
        r_new = min(beam, r_cur * k)
        top_val, top_idx = torch.topk(cand, r_new, dim=1)  # sorted descending
        parent = torch.div(top_idx, k, rounding_mode="floor")
        code = top_idx % k
        new_alive = top_val > NEG_INF
        sids = torch.gather(sids, 1, parent[..., None].expand(b, r_new, n)).clone()
        sids[..., t] = code
        scores, alive = top_val, new_alive
        if on_reorder is not None:  # a caller that caches per-beam state (keys/values) follows the beams
            on_reorder(parent)

        if trace:
            par_logp = torch.gather(logp, 1, parent[..., None].expand(b, r_new, k))  # [B, R', K]
            chosen_lp = torch.gather(par_logp, 2, code[..., None]).squeeze(-1)
            if n_ru > 0:
                masked = logp.masked_fill(bad, NEG_INF)  # [B, R, K]
                par_masked = torch.gather(masked, 1, parent[..., None].expand(b, r_new, k))
                par_masked.scatter_(2, code[..., None], NEG_INF)
                ru_lp, ru_code = torch.topk(par_masked, n_ru, dim=2)
                ok = ru_lp > NEG_INF
                ru_code = torch.where(ok, ru_code, torch.full_like(ru_code, -1))
                ru_prob = torch.where(ok, ru_lp.exp(), torch.zeros_like(ru_lp))
            else:
                ru_code = torch.zeros((b, r_new, 0), dtype=torch.long, device=dev)
                ru_prob = torch.zeros((b, r_new, 0), dtype=dtype, device=dev)
            rec.append(
                dict(parent=parent, code=code, prob=chosen_lp.exp(), score=scores, tokens=sids.clone(),
                     alive=alive, ru_code=ru_code, ru_prob=ru_prob, dist=par_logp.exp())
            )

    # finish: drop dead beams and SIDs that name no item, keep the best topk per user
    items = index.item_of(sids)
    ok = alive & (items >= 0)
    final = torch.where(ok, scores, torch.full_like(scores, NEG_INF))
    order = torch.argsort(final, dim=1, descending=True, stable=True)
    take = order[:, :topk]
    out_scores = torch.gather(final, 1, take)
    out_items = torch.gather(items, 1, take)
    out_sids = torch.gather(sids, 1, take[..., None].expand(b, take.shape[1], n))
    keep = out_scores > NEG_INF
    out_items = torch.where(keep, out_items, torch.full_like(out_items, -1))
    out_sids = torch.where(keep[..., None], out_sids, torch.full_like(out_sids, -1))
    if take.shape[1] < topk:  # only if the catalogue search space is smaller than topk
        pad = topk - take.shape[1]
        out_items = torch.cat([out_items, out_items.new_full((b, pad), -1)], 1)
        out_scores = torch.cat([out_scores, out_scores.new_full((b, pad), NEG_INF)], 1)
        out_sids = torch.cat([out_sids, out_sids.new_full((b, pad, n), -1)], 1)

    traces = _build_traces(rec, b, beam, n, k, n_ru, out_items, out_scores) if trace else None
    return SearchResult(items=out_items, scores=out_scores, sids=out_sids, traces=traces)


TABLE_LIMIT = 1 << 27
"""Most bools the per-prefix children tables may hold (summed over digits); larger catalogues
fall back to one ``SIDIndex`` key lookup per candidate (same answer, slower)."""

_TABLES: "weakref.WeakKeyDictionary[SIDIndex, dict[str, _ChildrenTable | None]]" = weakref.WeakKeyDictionary()


class _ChildrenTable:
    """The trie of catalogue prefixes as dense tables: for each digit t, the sorted keys of the
    distinct length-t prefixes and ``[prefixes, K]`` bools of which codes may follow each one.

    A beam's allowed codes are then one ``searchsorted`` per beam plus a row gather, instead of
    one key lookup per (beam, code) candidate.
    """

    def __init__(self, index: SIDIndex, device: torch.device) -> None:
        self.index = index
        codes = index.codes.to(device)
        self.levels: list[tuple[torch.Tensor, torch.Tensor]] = []
        for t in range(index.n_digits):
            partial = codes.clone()
            partial[:, t:] = MASK
            uniq, inv = torch.unique(index.keys(partial), return_inverse=True)
            table = torch.zeros((len(uniq), index.codebook_size), dtype=torch.bool, device=device)
            table[inv, codes[:, t]] = True
            self.levels.append((uniq, table))
        self._counts: dict[int, torch.Tensor] = {}

    def _row(self, sids: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each beam's row in the digit-t tables and whether its prefix is there at all."""
        uniq = self.levels[t][0]
        keys = self.index.keys(sids)
        pos = torch.searchsorted(uniq, keys).clamp(max=len(uniq) - 1)
        return pos, uniq[pos] == keys

    def allowed(self, sids: torch.Tensor, t: int) -> torch.Tensor:
        """Bool ``[B, R, K]``: codes of digit t that keep each beam's prefix in the catalogue.
        ``sids [B, R, n]`` must hold ``MASK`` in digits >= t."""
        pos, there = self._row(sids, t)
        return self.levels[t][1][pos] & there[..., None]

    def hollow(self, sids: torch.Tensor, t: int, seen: Seen) -> torch.Tensor:
        """Bool ``[B, R, K]``: does every item under (prefix, code c) count among the user's seen
        ones? (Counting the items a SID names: where SIDs collide, the lowest index.)"""
        if t not in self._counts:  # [prefixes, K] items under each child prefix, built on first use
            uniq, table = self.levels[t]
            codes = self.index.codes.to(table.device)
            named = self.index.item_of(codes) == torch.arange(len(codes), device=table.device)
            partial = codes[named].clone()
            partial[:, t:] = MASK
            rows = torch.searchsorted(uniq, self.index.keys(partial))
            counts = torch.zeros(table.shape, dtype=torch.int32, device=table.device)
            ones = torch.ones(len(rows), dtype=torch.int32, device=table.device)
            self._counts[t] = counts.index_put_((rows, codes[named, t]), ones, accumulate=True)
        pos, there = self._row(sids, t)
        return (seen.prefix_hits(sids, t, self.index.codebook_size) >= self._counts[t][pos]) | ~there[..., None]


def _children_table(index: SIDIndex, device: torch.device) -> _ChildrenTable | None:
    """The cached children tables of ``index`` on ``device``, or None when they would exceed TABLE_LIMIT."""
    per_index = _TABLES.setdefault(index, {})
    key = str(device)
    if key not in per_index:
        size = 0
        for t in range(index.n_digits):  # an upper bound without building anything
            size += min(index.n_items, index.codebook_size**t) * index.codebook_size
        per_index[key] = _ChildrenTable(index, device) if size <= TABLE_LIMIT else None
    return per_index[key]


def _allowed_by_keys(index: SIDIndex, sids: torch.Tensor, t: int) -> torch.Tensor:
    """Bool ``[B, R, K]`` from the index directly: the keys of the prefixes with digit t set to each code."""
    codes_k = torch.arange(index.codebook_size, device=sids.device)
    return index.exists_keys(index.child_keys(index.keys(sids)[..., None], t, codes_k))


def _build_traces(rec, b, beam, n, k, n_ru, out_items, out_scores) -> list[DenoisingTrace]:
    """Stack the per-step records into ``[B, S, beam, ...]`` arrays (padding dead beams) and split per user."""

    def stack(name: str, fill, dtype) -> np.ndarray:
        first = rec[0][name]
        arr = np.full((b, n, beam) + tuple(first.shape[2:]), fill, dtype=dtype)
        for s, r in enumerate(rec):
            arr[:, s, : r[name].shape[1]] = r[name].detach().cpu().numpy()
        return arr

    alive = stack("alive", False, bool)
    dead = ~alive
    parent = stack("parent", -1, np.int64)
    code = stack("code", -1, np.int64)
    prob = stack("prob", 0.0, np.float64)
    score = stack("score", NEG_INF, np.float64)
    tokens = stack("tokens", -1, np.int64)
    ru_code = stack("ru_code", -1, np.int64)
    ru_prob = stack("ru_prob", 0.0, np.float64)
    parent[dead], code[dead], prob[dead], score[dead] = -1, -1, 0.0, NEG_INF
    tokens[dead], ru_code[dead], ru_prob[dead] = -1, -1, 0.0
    dist = np.zeros((b, n, beam, n, k), dtype=np.float32)
    for s, r in enumerate(rec):
        d = r["dist"].detach().cpu().numpy()
        dist[:, s, : d.shape[1], s, :] = d
    dist[dead] = 0.0
    digit = np.broadcast_to(np.arange(n)[:, None], (n, beam)).copy()
    items_np = out_items.detach().cpu().numpy()
    scores_np = out_scores.detach().cpu().numpy()
    return [
        DenoisingTrace(
            decoder="ar", order="left-to-right", parent=parent[u], digit=digit.copy(), code=code[u],
            prob=prob[u], score=score[u], tokens=tokens[u], alive=alive[u], runner_up_codes=ru_code[u],
            runner_up_probs=ru_prob[u], distributions=dist[u], items=items_np[u], item_scores=scores_np[u],
        )
        for u in range(b)
    ]
